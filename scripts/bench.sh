#!/usr/bin/env bash
# The benchmark (docs/BENCHMARKS.md): plain directory vs artifactfs vs bindfs, one run.
#   scripts/bench.sh            full sizes (1 GiB, 5,000 files, 100 writers, 1M versions)
#   scripts/bench.sh --short    small sizes, as CI runs it
# Needs root (drop_caches, mounts). ARTIFACTFS_BIN=path skips the release build.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v fio >/dev/null || missing+=(fio)
command -v bindfs >/dev/null || missing+=(bindfs)
if [ "${#missing[@]}" -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; }
fi
if [ -z "${ARTIFACTFS_BIN:-}" ]; then
  cargo build --release --locked -q
  export ARTIFACTFS_BIN=target/release/artifactfs
fi
exec python3 scripts/bench.py "$@"
