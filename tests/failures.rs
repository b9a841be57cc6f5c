//! Bad days: missing or corrupt blobs, a full spool, another backend. Every one
//! is a clear errno and a log line, never wrong bytes.

mod common;
use common::*;
use std::fs;
use std::io::Write;
use std::process::Command;

fn blob_files(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn missing_or_corrupt_blobs_are_eio_never_wrong_bytes() {
    let mut m = Mount::new();
    fs::create_dir_all(m.p("t/s")).unwrap();
    fs::write(m.p("t/s/gone"), "bytes that will vanish").unwrap();
    fs::write(m.p("t/s/bad"), "bytes that will rot").unwrap();
    m.stop();
    let gone = sha256_hex(b"bytes that will vanish");
    let bad = sha256_hex(b"bytes that will rot");
    // `gone`: in neither spool nor backend. `bad`: not in the spool, corrupt in the backend.
    for p in blob_files(&m.data.join("spool/blobs"))
        .into_iter()
        .chain(blob_files(&m.data.join("backend/blobs")))
    {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name == gone || (name == bad && p.starts_with(m.data.join("spool"))) {
            fs::remove_file(&p).unwrap();
        } else if name == bad {
            fs::write(&p, "bytes that will rut").unwrap();
        }
    }
    m.start();
    let e = fs::read(m.p("t/s/gone")).unwrap_err();
    assert_eq!(
        e.raw_os_error(),
        Some(libc::EIO),
        "a missing blob is EIO, not ENOENT"
    );
    let e = fs::read(m.p("t/s/bad")).unwrap_err();
    assert_eq!(
        e.raw_os_error(),
        Some(libc::EIO),
        "a corrupt blob is never served"
    );
    let log = m.log();
    assert!(log.contains("missing blob"), "{log}");
    assert!(log.contains("refusing to serve it"), "{log}");
    // The names are still there, with their recorded sizes.
    assert_eq!(fs::metadata(m.p("t/s/bad")).unwrap().len(), 19);
}

#[test]
fn blobs_missing_from_the_spool_are_fetched_from_the_backend() {
    let mut m = Mount::new();
    fs::create_dir_all(m.p("t/s")).unwrap();
    let data = bytes(5, 2_000_000);
    fs::write(m.p("t/s/f"), &data).unwrap();
    m.stop();
    fs::remove_dir_all(m.data.join("spool/blobs")).unwrap();
    m.start();
    assert!(fs::read(m.p("t/s/f")).unwrap() == data);
    // And an append copies from the fetched blob.
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(m.p("t/s/f"))
        .unwrap();
    f.write_all(b"tail").unwrap();
    drop(f);
    assert_eq!(fs::metadata(m.p("t/s/f")).unwrap().len(), 2_000_004);
}

#[test]
fn a_full_spool_is_enospc_and_nothing_closed_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    fs::create_dir_all(&data).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
        .arg(&data)
        .status()
        .unwrap();
    assert!(st.success());
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _guard = Unmount(data.clone());
    let mnt = tmp.path().join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let child = Command::new(BIN)
        .arg("mount")
        .arg(&mnt)
        .arg("--data")
        .arg(&data)
        .arg("--backend")
        .arg("memory://")
        .arg("--foreground")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !is_live_mount(&mnt) {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    fs::create_dir_all(mnt.join("t/s")).unwrap();
    fs::write(mnt.join("t/s/small"), "kept").unwrap();
    let mut f = fs::File::create(mnt.join("t/s/huge")).unwrap();
    let chunk = vec![7u8; 1 << 20];
    let mut err = None;
    for _ in 0..16 {
        if let Err(e) = f.write_all(&chunk) {
            err = Some(e);
            break;
        }
    }
    let err = match err {
        Some(e) => e,
        None => f
            .sync_all()
            .and_then(|_| Err::<(), _>(std::io::Error::other("no error")))
            .unwrap_err(),
    };
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    drop(f);
    assert_eq!(fs::read_to_string(mnt.join("t/s/small")).unwrap(), "kept");
    let st = Command::new(BIN).arg("umount").arg(&mnt).status().unwrap();
    assert!(st.success());
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("spool is full"), "{log}");
}

#[test]
fn memory_backend_round_trip() {
    let m = Mount::with_args(&["--backend", "memory://"]);
    fs::create_dir_all(m.p("t/s")).unwrap();
    fs::write(m.p("t/s/f"), "in memory").unwrap();
    assert_eq!(fs::read_to_string(m.p("t/s/f")).unwrap(), "in memory");
    let uri = m.versions("t/s/f")[0]["uri"].as_str().unwrap().to_string();
    let sha = sha256_hex(b"in memory");
    assert_eq!(uri, format!("memory://blobs/sha256/{}/{sha}", &sha[..2]));
}

#[test]
fn bad_backend_url_and_mountpoint_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["mount", "--foreground", "--backend", "nosuch://x", "--data"])
        .arg(tmp.path().join("d"))
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown backend scheme"),
        "{out:?}"
    );
    let out = Command::new(BIN)
        .args(["mount", "/nonexistent/mnt", "--data"])
        .arg(tmp.path().join("d"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not exist"),
        "{out:?}"
    );
}

#[test]
fn one_daemon_per_data_directory() {
    let m = Mount::new();
    let other = m.tmp.path().join("mnt2");
    fs::create_dir_all(&other).unwrap();
    let out = Command::new(BIN)
        .arg("mount")
        .arg(&other)
        .arg("--data")
        .arg(&m.data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another artifactfs daemon"), "{err}");
    assert!(!is_mounted(&other));
}

#[test]
fn backend_url_options_stay_out_of_manifests_and_logs() {
    let m = Mount::with_args(&["--backend", "opendal://memory?root=/secret-token-123"]);
    fs::create_dir_all(m.p("t/s")).unwrap();
    fs::write(m.p("t/s/f"), "x").unwrap();
    let uri = m.versions("t/s/f")[0]["uri"].as_str().unwrap().to_string();
    assert!(uri.starts_with("opendal://memory/blobs/sha256/"), "{uri}");
    assert!(!m.log().contains("secret-token-123"));
}

#[test]
fn status_file_reports_health_and_is_read_only() {
    let m = Mount::with_args(&["--spool-max", "64M"]);
    m.sh("mkdir -p t/s && echo 1 > t/s/f");
    let st: serde_json::Value = serde_json::from_str(&m.sh("cat .artifactfs/status")).unwrap();
    for k in [
        "backend",
        "backend_reachable",
        "upload_queue",
        "failed",
        "spool_bytes",
        "orphans",
        "uptime_s",
    ] {
        assert!(st.get(k).is_some(), "no {k} in {st}");
    }
    assert_eq!(st["failed"], 0);
    assert_eq!(st["spool_max"], 64 << 20);
    assert!(st["spool_bytes"].as_u64().unwrap() > 0);
    assert_eq!(m.sh("ls -a"), ".\n..\nt\n", ".artifactfs is hidden");
    assert_eq!(m.sh("ls .artifactfs"), "status\n");
    assert!(!m.sh_out("echo x > .artifactfs/status").status.success());
    assert!(!m.sh_out("touch .artifactfs/other").status.success());
    let cli: serde_json::Value = serde_json::from_slice(
        &Command::new(BIN)
            .arg("status")
            .arg(&m.mnt)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(cli["mounted"], true);
    assert_eq!(cli["failed"], 0);
}

#[test]
fn verify_finds_missing_and_corrupt_objects_and_repairs_them() {
    let mut m = Mount::new();
    fs::create_dir_all(m.p("t/s")).unwrap();
    fs::write(m.p("t/s/a"), "alpha bytes").unwrap();
    fs::write(m.p("t/s/b"), "beta bytes").unwrap();
    let id_a = m.versions("t/s/a")[0]["id"].as_str().unwrap().to_string();
    let id_b = m.versions("t/s/b")[0]["id"].as_str().unwrap().to_string();
    m.stop();
    let data = m.data.to_string_lossy().to_string();
    let sidecar_b = m
        .data
        .join("backend")
        .join(artifactfs::store::manifest_key(&id_b, 1));
    let verify = |repair: bool| {
        let mut c = Command::new(BIN);
        c.args(["verify", "--data", &data]);
        if repair {
            c.arg("--repair");
        }
        let out = c.output().unwrap();
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code(), summary)
    };
    let (code, s) = verify(false);
    assert_eq!((code, s["problems"].as_u64()), (Some(0), Some(0)), "{s}");
    let (a, b) = (sha256_hex(b"alpha bytes"), sha256_hex(b"beta bytes"));
    // a: gone from the backend; b: rotten in the spool (a new inode, the backend's
    // copy is a hard link and stays good); a's sidecar: gone.
    fs::remove_file(m.data.join(format!("backend/blobs/sha256/{}/{a}", &a[..2]))).unwrap();
    let spool_b = m.data.join(format!("spool/blobs/{}/{b}", &b[..2]));
    fs::remove_file(&spool_b).unwrap();
    fs::write(&spool_b, "beta bytez").unwrap();
    fs::remove_file(
        m.data
            .join("backend")
            .join(artifactfs::store::manifest_key(&id_a, 1)),
    )
    .unwrap();
    // b's sidecar behind the catalog: as if the daemon died with the rewrite
    // after a rename still queued.
    let mut stale: serde_json::Value =
        serde_json::from_slice(&fs::read(&sidecar_b).unwrap()).unwrap();
    stale["path"] = "t/s/old-name".into();
    fs::write(&sidecar_b, stale.to_string()).unwrap();
    let (code, s) = verify(false);
    assert_eq!(code, Some(1), "{s}");
    let mut kinds: Vec<&str> = s["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["problem"].as_str().unwrap())
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            "corrupt spool blob",
            "missing backend blob",
            "missing sidecar",
            "stale sidecar"
        ],
        "{s}"
    );
    assert_eq!(s["problems"], 4, "{s}");
    let (code, s) = verify(true);
    assert_eq!((code, s["repaired"].as_u64()), (Some(0), Some(4)), "{s}");
    let (code, s) = verify(false);
    assert_eq!((code, s["problems"].as_u64()), (Some(0), Some(0)), "{s}");
    let fixed: serde_json::Value = serde_json::from_slice(&fs::read(&sidecar_b).unwrap()).unwrap();
    assert_eq!(fixed["path"], "t/s/b");
    m.start();
    assert_eq!(
        fs::read_to_string(m.p("t/s/b")).unwrap(),
        "beta bytes",
        "refetched from the backend"
    );
}

#[test]
fn reindex_rebuilds_a_lost_catalog_from_the_backend() {
    let mut m = Mount::new();
    // Renames, attribute changes and deletions after the upload rewrite the
    // sidecars, so the rebuilt catalog has them too.
    m.sh(
        "mkdir -p t/s t/s2 && echo v1 > t/s/a && echo v2 > t/s/a && echo b > t/s/b && \
         echo c > t/s/c && sleep 0.3 && mv t/s/b t/s2/b && setfattr -n user.team -v blue t/s/a && \
         setfattr -n user.artifact.type -v critique t/s/a && rm t/s/c && \
         setfattr -n user.trace.participants -v alice,bob t && \
         mkdir -p t2/s && echo x > t2/s/x && setfattr -n user.trace.participants -v carol t2 && \
         mv t2 t3",
    );
    let before_a = m.versions("t/s/a");
    let before_b = m.versions("t/s2/b");
    let query = |m: &Mount| {
        let out = Command::new(BIN)
            .args(["query", "--all-versions", "--json", "--data"])
            .arg(&m.data)
            .output()
            .unwrap();
        let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        lines.sort();
        lines
    };
    let query_before = query(&m);
    m.stop();
    let data = m.data.clone();
    for f in ["catalog.db", "catalog.db-wal", "catalog.db-shm"] {
        let _ = fs::remove_file(data.join(f));
    }
    fs::remove_dir_all(data.join("spool/blobs")).unwrap();
    let reindex = || {
        Command::new(BIN)
            .args([
                "reindex",
                "--backend",
                &format!("fs://{}", data.join("backend").display()),
                "--data",
            ])
            .arg(&data)
            .output()
            .unwrap()
    };
    let out = reindex();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            summary["artifacts"].as_u64(),
            summary["versions"].as_u64(),
            summary["traces"].as_u64()
        ),
        (Some(4), Some(5), Some(2)),
        "{summary}"
    );
    m.start();
    assert_eq!(fs::read_to_string(m.p("t/s/a")).unwrap(), "v2\n");
    assert_eq!(
        fs::read_to_string(m.p("t/s/.versions/a/1")).unwrap(),
        "v1\n"
    );
    let after_a = m.versions("t/s/a");
    assert_eq!(after_a.len(), 2);
    for (x, y) in before_a.iter().zip(&after_a) {
        for k in [
            "id",
            "version",
            "checksum",
            "created_at",
            "created_by",
            "supersedes",
        ] {
            assert_eq!(x[k], y[k], "{k}");
        }
    }
    // The rename, the attributes and the deletion came back with it.
    assert_eq!(m.versions("t/s2/b")[0]["id"], before_b[0]["id"]);
    assert!(!m.p("t/s/b").exists() && !m.p("t/s/c").exists());
    assert_eq!(m.sh("getfattr --only-values -n user.team t/s/a"), "blue");
    // Who may see the traces came back too, under the traces' present names.
    assert_eq!(
        m.sh("getfattr --only-values -n user.trace.participants t"),
        "alice,bob"
    );
    assert_eq!(
        m.sh("getfattr --only-values -n user.trace.participants t3"),
        "carol"
    );
    assert!(!m.p("t2").exists());
    assert_eq!(query(&m), query_before);
    // And reindex never overwrites a catalog that exists.
    let out = reindex();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_rotten_spool_blob_is_eio_not_wrong_bytes() {
    let mut m = Mount::new();
    fs::create_dir_all(m.p("t/s")).unwrap();
    fs::write(m.p("t/s/f"), "the right bytes").unwrap();
    fs::write(m.p("t/s/g"), "other bytes").unwrap();
    m.stop();
    let sha = sha256_hex(b"the right bytes");
    let blob = m.data.join(format!("spool/blobs/{}/{sha}", &sha[..2]));
    fs::remove_file(&blob).unwrap(); // break the hard link with the backend copy
    fs::write(&blob, "the wrong bytes").unwrap();
    m.start();
    let e = fs::read(m.p("t/s/f")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
    assert!(m.log().contains("refusing to serve it"));
    // Blobs checked at first open read normally, also for copy-on-write appends.
    assert_eq!(fs::read_to_string(m.p("t/s/g")).unwrap(), "other bytes");
    m.sh("echo -n ' and more' >> t/s/g");
    assert_eq!(
        fs::read_to_string(m.p("t/s/g")).unwrap(),
        "other bytes and more"
    );
}
