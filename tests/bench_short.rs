//! The benchmark's short mode runs in the test suite to prove it works end to end
//! (every workload, every target, the byte check of the concurrent writers). It
//! asserts nothing about speed: ratios are recorded in docs/BENCHMARKS.md.

mod common;

#[test]
fn short_benchmark_runs_every_workload() {
    let work = tempfile::Builder::new()
        .prefix("afs-bench-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let out = std::process::Command::new("scripts/bench.sh")
        .args(["--short", "--repeat", "1", "--workdir"])
        .arg(work.path().join("w"))
        .env("ARTIFACTFS_BIN", common::BIN)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for row in [
        "seq write",
        "seq read cold",
        "seq read warm",
        "create (files/s)",
        "stat (ms)",
        "ls -l (ms)",
        "grep -r (ms)",
        "read all (ms)",
        "writers x",
        "query --agent",
        "query --trace",
        "daemon peak RSS",
    ] {
        assert!(stdout.contains(row), "no {row:?} row in\n{stdout}");
    }
    assert!(stdout.contains("mount/native"), "{stdout}");
}
