#!/usr/bin/env bash
# Fresh Debian machine, as root: install what is missing, build, mount /artifacts
# on the embedded default (local directory backend + SQLite) and make a version.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
if ! command -v fusermount3 >/dev/null || ! command -v getfattr >/dev/null; then
  apt-get update -qq && apt-get install -y -qq fuse3 attr >/dev/null
fi
cargo build --release --locked
install -m 755 target/release/artifactfs /usr/local/bin/artifactfs
mkdir -p /artifacts
if grep -q ' /artifacts ' /proc/mounts; then
  artifactfs umount /artifacts
fi
artifactfs mount /artifacts            # returns once the mount is ready
mkdir -p /artifacts/demo-trace/step-1
echo '{"status": "draft"}' > /artifacts/demo-trace/step-1/report.json
echo '{"status": "final"}' > /artifacts/demo-trace/step-1/report.json
set -x
ls -l /artifacts/demo-trace/step-1
cat /artifacts/demo-trace/step-1/report.json
ls /artifacts/demo-trace/step-1/.versions/report.json
cat /artifacts/demo-trace/step-1/.versions/report.json/1
artifactfs log /artifacts/demo-trace/step-1/report.json
