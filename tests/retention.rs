//! Retention and `artifactfs gc`: short retentions (`1s`, `2s`) stand in for
//! days; the clock is the real one.

mod common;
use common::{BIN, Mount, sha256_hex};
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn gc(m: &Mount, dry: bool) -> serde_json::Value {
    let mnt = m.mnt.to_string_lossy().to_string();
    let mut args = vec!["gc", mnt.as_str(), "--json"];
    if dry {
        args.push("--dry-run");
    }
    let (code, out, err) = cli(&args);
    assert_eq!(code, 0, "gc failed: {out}{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn blob(m: &Mount, where_: &str, content: &str) -> PathBuf {
    let sha = sha256_hex(content.as_bytes());
    match where_ {
        "spool" => m.data.join(format!("spool/blobs/{}/{sha}", &sha[..2])),
        _ => m
            .data
            .join(format!("backend/blobs/sha256/{}/{sha}", &sha[..2])),
    }
}

fn sync(m: &Mount) {
    let (code, out, err) = cli(&["sync", &m.mnt.to_string_lossy(), "--timeout", "30"]);
    assert_eq!(code, 0, "sync: {out}{err}");
}

fn verify_clean(m: &Mount) {
    let (code, out, err) = cli(&["verify", "--data", &m.data.to_string_lossy()]);
    let s: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    assert_eq!((code, s["problems"].as_u64()), (0, Some(0)), "{s}");
}

#[test]
fn expired_versions_and_unshared_blobs_go_and_dry_run_changes_nothing() {
    let m = Mount::with_args(&["--retention", "2s", "--gc-interval", "0"]);
    m.sh(
        "mkdir -p t/s && echo one > t/s/a && echo two > t/s/a && echo three > t/s/a && \
         echo one > t/s/b && setfattr -n user.artifact.retention -v forever t/s/b && \
         echo gone > t/s/c && rm t/s/c",
    );
    let id_a = m.versions("t/s/a")[0]["id"].as_str().unwrap().to_string();
    sync(&m);
    std::thread::sleep(Duration::from_millis(2200));
    // A version that is not old enough yet stays whatever happens.
    m.sh("echo four > t/s/a");

    let dry = gc(&m, true);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["expired_versions"], 4, "{dry}"); // a@1, a@2, a@3, c@1
    assert_eq!(dry["blobs_deleted"], 3, "{dry}"); // two, three, gone
    assert_eq!(dry["blobs_kept_shared"], 1, "{dry}"); // one: b uses it
    assert_eq!(m.sh("ls t/s/.versions/a"), "1\n2\n3\n4\n");
    assert!(blob(&m, "backend", "two\n").exists());

    let done = gc(&m, false);
    assert_eq!(
        (
            &done["expired_versions"],
            &done["blobs_deleted"],
            &done["blobs_kept_shared"],
            &done["sidecars_deleted"]
        ),
        (&4.into(), &3.into(), &1.into(), &4.into()),
        "{done}"
    );
    // Gone from .versions, log, query and the backend…
    assert_eq!(m.sh("ls t/s/.versions/a"), "4\n");
    let log: Vec<u64> = m
        .versions("t/s/a")
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(log, vec![4]);
    let (_, q, _) = cli(&[
        "query",
        "--trace",
        "t",
        "--all-versions",
        "--json",
        "--data",
        &m.data.to_string_lossy(),
    ]);
    let mut got: Vec<String> = q
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            format!("{}@{}", v["path"].as_str().unwrap(), v["version"])
        })
        .collect();
    got.sort();
    assert_eq!(got, vec!["t/s/a@4", "t/s/b@1"]);
    for gone in ["two\n", "three\n", "gone\n"] {
        assert!(
            !blob(&m, "backend", gone).exists(),
            "{gone:?} still in the backend"
        );
        assert!(
            !blob(&m, "spool", gone).exists(),
            "{gone:?} still in the spool"
        );
    }
    assert!(
        !m.data
            .join("backend")
            .join(artifactfs::store::manifest_key(&id_a, 1))
            .exists()
    );
    // …while the blob b shares stays, and the current version reads.
    assert!(blob(&m, "backend", "one\n").exists());
    assert_eq!(m.sh("cat t/s/b t/s/a"), "one\nfour\n");
    // One delete_version event per expired version.
    let (_, ev, _) = cli(&["events", "--data", &m.data.to_string_lossy()]);
    assert_eq!(ev.matches("\"delete_version\"").count(), 4, "{ev}");
    verify_clean(&m);
    // A second pass finds nothing.
    assert_eq!(gc(&m, false)["expired_versions"], 0);
}

#[test]
fn the_daemon_collects_periodically() {
    let m = Mount::with_args(&["--retention", "1s", "--gc-interval", "1s"]);
    m.sh("mkdir -p t/s && echo 1 > t/s/f && echo 2 > t/s/f");
    let deadline = Instant::now() + Duration::from_secs(20);
    while m.sh("ls t/s/.versions/f") != "2\n" {
        assert!(
            Instant::now() < deadline,
            "periodic gc never ran:\n{}",
            m.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(m.log().contains("gc: 1 expired version(s)"), "{}", m.log());
}

#[test]
fn gc_racing_commits_of_the_same_bytes_loses_nothing() {
    // The daemon pauses 400 ms between "no version uses this blob" and deleting
    // it, so the writers below commit the very same bytes inside that window.
    let m = Mount::with_args_env(
        &["--retention", "1s", "--gc-interval", "0"],
        &[("ARTIFACTFS_FAULT_GC_PAUSE_MS", "400")],
    );
    m.sh("mkdir -p t/s");
    let mnt = m.mnt.to_string_lossy().to_string();
    let mut expired = 0;
    for round in 0..3 {
        // v(n): "old" bytes, then v(n+1): other bytes, so once v(n) expires no
        // version uses the "old" blob.
        for w in 0..4 {
            fs::write(m.p(&format!("t/s/f{w}")), format!("old {round} {w}\n")).unwrap();
            fs::write(m.p(&format!("t/s/f{w}")), format!("new {round} {w}\n")).unwrap();
        }
        sync(&m);
        std::thread::sleep(Duration::from_millis(1200));
        let gc_run = {
            let mnt = mnt.clone();
            std::thread::spawn(move || cli(&["gc", &mnt, "--json"]))
        };
        // Inside the pause: write the "old" bytes again.
        std::thread::sleep(Duration::from_millis(150));
        for w in 0..4 {
            fs::write(m.p(&format!("t/s/f{w}")), format!("old {round} {w}\n")).unwrap();
        }
        let (code, out, err) = gc_run.join().unwrap();
        assert_eq!(code, 0, "{out}{err}");
        let r: serde_json::Value = serde_json::from_str(&out).unwrap();
        expired += r["expired_versions"].as_u64().unwrap();
        for w in 0..4 {
            assert_eq!(
                fs::read_to_string(m.p(&format!("t/s/f{w}"))).unwrap(),
                format!("old {round} {w}\n")
            );
        }
    }
    assert!(expired >= 12, "gc expired only {expired} versions");
    sync(&m);
    verify_clean(&m);
    for w in 0..4 {
        let rel = format!("t/s/f{w}");
        // Every version still listed reads back with its checksum.
        for v in m.versions(&rel) {
            let n = v["version"].as_u64().unwrap();
            let bytes = fs::read(m.p(&format!("t/s/.versions/f{w}/{n}"))).unwrap();
            assert_eq!(
                format!("sha256:{}", sha256_hex(&bytes)),
                v["checksum"].as_str().unwrap()
            );
        }
    }
}

#[test]
fn gc_without_a_daemon_runs_in_the_command() {
    let mut m = Mount::with_args(&["--retention", "1s", "--gc-interval", "0"]);
    m.sh("mkdir -p t/s && echo one > t/s/f && echo two > t/s/f");
    sync(&m);
    m.stop();
    std::thread::sleep(Duration::from_millis(1100));
    let data = m.data.to_string_lossy().to_string();
    let (code, out, err) = cli(&["gc", "--data", &data, "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (&r["expired_versions"], &r["blobs_deleted"]),
        (&1.into(), &1.into()),
        "{r}"
    );
    assert!(!blob(&m, "spool", "one\n").exists());
    assert!(!blob(&m, "backend", "one\n").exists());
    m.start();
    assert_eq!(m.sh("ls t/s/.versions/f; cat t/s/f"), "2\ntwo\n");
    // With the daemon up, the same command goes to the daemon: nothing left.
    let (code, out, _) = cli(&["gc", &m.mnt.to_string_lossy(), "--json"]);
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["expired_versions"],
        0
    );
}

#[test]
fn a_failed_deletion_is_tried_again_by_the_next_pass() {
    let m = Mount::with_args(&["--retention", "1s", "--gc-interval", "0"]);
    m.sh("mkdir -p t/s && echo old > t/s/a && echo new > t/s/a");
    let id = m.versions("t/s/a")[0]["id"].as_str().unwrap().to_string();
    sync(&m);
    std::thread::sleep(Duration::from_millis(1500));
    let (spool_blob, backend_blob) = (blob(&m, "spool", "old\n"), blob(&m, "backend", "old\n"));
    let sidecar = m
        .data
        .join("backend")
        .join(artifactfs::store::manifest_key(&id, 1));
    assert!(spool_blob.exists() && backend_blob.exists() && sidecar.exists());
    // Undeletable for now: the spool's blob path and the sidecar path become
    // non-empty directories (the backend keeps the blob: a hard link).
    for p in [&spool_blob, &sidecar] {
        fs::remove_file(p).unwrap();
        fs::create_dir(p).unwrap();
        fs::write(p.join("in-the-way"), "x").unwrap();
    }
    let (code, out, _) = cli(&["gc", &m.mnt.to_string_lossy(), "--json"]);
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(code, 1, "{r}");
    assert_eq!(r["expired_versions"], 1, "{r}");
    assert_eq!(r["errors"].as_array().unwrap().len(), 2, "{r}");
    assert!(
        backend_blob.exists(),
        "the blob stays until its deletion succeeds"
    );
    assert_eq!(m.versions("t/s/a").len(), 1, "the version left the catalog");
    for p in [&spool_blob, &sidecar] {
        fs::remove_dir_all(p).unwrap();
    }
    // The next pass, with nothing newly expired, finishes the job: no blob
    // left behind, and no sidecar for `reindex` to bring the version back from.
    let r = gc(&m, false);
    assert_eq!(r["expired_versions"], 0, "{r}");
    assert_eq!(
        (r["blobs_deleted"].as_u64(), r["sidecars_deleted"].as_u64()),
        (Some(1), Some(1)),
        "{r}"
    );
    assert!(!backend_blob.exists() && !sidecar.exists());
    let (code, _, _) = cli(&["gc", &m.mnt.to_string_lossy(), "--json"]);
    assert_eq!(code, 0, "nothing is owed any more");
    verify_clean(&m);
    assert_eq!(m.sh("cat t/s/a"), "new\n");
}
