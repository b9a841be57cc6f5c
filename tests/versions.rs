//! Versions: one dirty close = one version, copy-on-write, readers keep their
//! version, history survives unlink and restart.

mod common;
use common::*;
use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};

#[test]
fn three_writes_make_three_versions_hidden_from_listing() {
    let m = Mount::new();
    fs::create_dir_all(m.p("t/s")).unwrap();
    for c in ["one", "two", "three"] {
        fs::write(m.p("t/s/f"), c).unwrap();
    }
    for (n, c) in [(1, "one"), (2, "two"), (3, "three")] {
        assert_eq!(
            fs::read_to_string(m.p(&format!("t/s/.versions/f/{n}"))).unwrap(),
            c
        );
    }
    let listed: Vec<_> = fs::read_dir(m.p("t/s"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(listed, vec!["f"]);
    let mut vs: Vec<_> = fs::read_dir(m.p("t/s/.versions/f"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    vs.sort();
    assert_eq!(vs, vec!["1", "2", "3"]);
    assert!(
        fs::read_dir(m.p("t/s/.versions"))
            .unwrap()
            .any(|e| e.unwrap().file_name() == "f")
    );
    // Identical rewrite: no new version.
    fs::write(m.p("t/s/f"), "three").unwrap();
    assert_eq!(m.version_count("t/s/f"), 3);
    // Versions are read-only.
    let err = OpenOptions::new()
        .write(true)
        .open(m.p("t/s/.versions/f/1"))
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
}

#[test]
fn append_and_offset_writes_copy_on_write() {
    let m = Mount::new();
    fs::create_dir_all(m.p("t/s")).unwrap();
    fs::write(m.p("t/s/log"), "v1 line\n").unwrap();
    let mut f = OpenOptions::new()
        .append(true)
        .open(m.p("t/s/log"))
        .unwrap();
    f.write_all(b"tail\n").unwrap();
    drop(f);
    assert_eq!(
        fs::read_to_string(m.p("t/s/.versions/log/2")).unwrap(),
        "v1 line\ntail\n"
    );
    assert_eq!(
        fs::read_to_string(m.p("t/s/.versions/log/1")).unwrap(),
        "v1 line\n"
    );
    // A write in the middle keeps the rest of the previous version.
    let mut f = OpenOptions::new().write(true).open(m.p("t/s/log")).unwrap();
    f.seek(SeekFrom::Start(1)).unwrap();
    f.write_all(b"9").unwrap();
    drop(f);
    assert_eq!(
        fs::read_to_string(m.p("t/s/log")).unwrap(),
        "v9 line\ntail\n"
    );
    let v = m.versions("t/s/log");
    assert_eq!(v.len(), 3);
    assert_eq!(
        v[2]["checksum"],
        format!("sha256:{}", sha256_hex(b"v9 line\ntail\n"))
    );
}

#[test]
fn a_reader_keeps_the_version_it_opened() {
    let m = Mount::new();
    fs::create_dir_all(m.p("t/s")).unwrap();
    let old = bytes(1, 300_000);
    let new = bytes(2, 200_000);
    fs::write(m.p("t/s/f"), &old).unwrap();
    let mut r = fs::File::open(m.p("t/s/f")).unwrap();
    let mut first = vec![0u8; 1000];
    r.read_exact(&mut first).unwrap();
    fs::write(m.p("t/s/f"), &new).unwrap();
    // A new opener sees the new version (close-to-open)...
    assert!(
        fs::read(m.p("t/s/f")).unwrap() == new,
        "new opener did not see the new version"
    );
    // ...while the old reader reads on in the version it opened.
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    first.extend(rest);
    assert_eq!(first.len(), old.len());
    assert!(first == old, "old reader saw other bytes");
}

#[test]
fn writers_see_nothing_of_each_other_until_close() {
    let m = Mount::new();
    fs::create_dir_all(m.p("t/s")).unwrap();
    fs::write(m.p("t/s/f"), "committed").unwrap();
    let mut w = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(m.p("t/s/f"))
        .unwrap();
    w.write_all(b"in progress").unwrap();
    assert_eq!(fs::read_to_string(m.p("t/s/f")).unwrap(), "committed");
    drop(w);
    assert_eq!(fs::read_to_string(m.p("t/s/f")).unwrap(), "in progress");
}

#[test]
fn flush_per_dup_commits_only_new_writes() {
    let m = Mount::new();
    fs::create_dir_all(m.p("t/s")).unwrap();
    // bash: open, dup2, close (flush before any write), write, close.
    m.sh("exec 3>t/s/f; echo a >&3; exec 3>&-");
    assert_eq!(
        m.version_count("t/s/f"),
        1,
        "the empty flush before the write made no version"
    );
    // One descriptor, dup'ed: each close after new writes is a version; a close with nothing new is not.
    m.sh("exec 3>t/s/g; echo 1 >&3; exec 4>&3; exec 4>&-; exec 5>&3; exec 5>&-; echo 2 >&3; exec 3>&-");
    let v = m.versions("t/s/g");
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(fs::read_to_string(m.p("t/s/.versions/g/1")).unwrap(), "1\n");
    assert_eq!(fs::read_to_string(m.p("t/s/g")).unwrap(), "1\n2\n");
    // touch makes an empty first version; truncating to empty is a version too.
    m.sh("touch t/s/empty; : > t/s/g");
    m.wait_versions("t/s/empty", 1);
    m.wait_versions("t/s/g", 3);
    assert_eq!(fs::metadata(m.p("t/s/g")).unwrap().len(), 0);
}

#[test]
fn a_forked_childs_close_of_an_inherited_descriptor_makes_no_version() {
    use std::io::Write;
    let m = Mount::new();
    fs::create_dir_all(m.p("t/s")).unwrap();
    // fork+exec while a file is open for writing: the child's exec closes
    // its copy of the (close-on-exec) descriptor, and the kernel sends FLUSH.
    {
        let mut f = fs::File::create(m.p("t/s/f")).unwrap();
        f.write_all(b"first half, ").unwrap();
        let st = std::process::Command::new("true").status().unwrap();
        assert!(st.success());
        f.write_all(b"second half").unwrap();
    }
    assert_eq!(m.versions("t/s/f").len(), 1);
    assert_eq!(fs::read(m.p("t/s/f")).unwrap(), b"first half, second half");
    // A shell group: its external commands write through the shell's
    // descriptor and exit; the shell's close makes the one version.
    m.sh("{ echo a; /bin/echo b; echo c; } > t/s/g");
    assert_eq!(m.versions("t/s/g").len(), 1);
    assert_eq!(fs::read_to_string(m.p("t/s/g")).unwrap(), "a\nb\nc\n");
    // A descriptor handed to a child that writes after the parent closed its
    // own: the last reference going (RELEASE) commits the child's bytes.
    m.sh("exec 3>t/s/h; (sleep 0.3; echo late >&3) & exec 3>&-; wait");
    m.wait_versions("t/s/h", 1);
    assert_eq!(fs::read_to_string(m.p("t/s/h")).unwrap(), "late\n");
}

#[test]
fn unlink_keeps_history_and_recreation_continues_the_artifact() {
    let m = Mount::new();
    fs::create_dir_all(m.p("t/s")).unwrap();
    fs::write(m.p("t/s/f"), "first").unwrap();
    let id = m.versions("t/s/f")[0]["id"].clone();
    fs::remove_file(m.p("t/s/f")).unwrap();
    assert!(!m.p("t/s/f").exists());
    let v = m.versions("t/s/f");
    assert_eq!(v.len(), 1, "history stays after unlink");
    fs::write(m.p("t/s/f"), "second").unwrap();
    let v = m.versions("t/s/f");
    assert_eq!(v.len(), 2);
    assert_eq!(v[1]["id"], id);
    assert_eq!(v[1]["version"], 2);
    // A rename over an existing file is a new version of the target.
    fs::write(m.p("t/s/tmp"), "third").unwrap();
    fs::rename(m.p("t/s/tmp"), m.p("t/s/f")).unwrap();
    let v = m.versions("t/s/f");
    assert_eq!(v.len(), 3);
    assert_eq!(v[2]["id"], id);
    assert_eq!(fs::read_to_string(m.p("t/s/f")).unwrap(), "third");
    // And writes through the renamed name continue that artifact.
    fs::write(m.p("t/s/f"), "fourth").unwrap();
    assert_eq!(m.versions("t/s/f").len(), 4);
}

#[test]
fn restart_keeps_every_version_and_byte() {
    let mut m = Mount::new();
    m.sh("mkdir -p t/s/d t/empty && echo 1 > t/s/a && echo 2 > t/s/a && head -c 3000000 /dev/urandom > t/s/d/b && ln -s a t/s/link && chmod 600 t/s/a");
    let before =
        m.sh("find . -printf '%p %s %m %y\\n' | sort; sha256sum t/s/a t/s/d/b; readlink t/s/link");
    let log_before = m.versions("t/s/a");
    m.remount();
    let after =
        m.sh("find . -printf '%p %s %m %y\\n' | sort; sha256sum t/s/a t/s/d/b; readlink t/s/link");
    assert_eq!(before, after);
    let log_after = m.versions("t/s/a");
    // umount waited for the uploader: every version reached the backend.
    assert!(
        log_after.iter().all(|v| v["status"] == "completed"),
        "{log_after:?}"
    );
    let sha = log_after[1]["checksum"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let backend_blob = m
        .data
        .join(format!("backend/blobs/sha256/{}/{sha}", &sha[..2]));
    let spool_blob = m.data.join(format!("spool/blobs/{}/{sha}", &sha[..2]));
    // The default fs backend shares the spool's filesystem: a hard link, not a copy.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        fs::metadata(&backend_blob).unwrap().ino(),
        fs::metadata(&spool_blob).unwrap().ino()
    );
    assert!(
        m.data
            .join("backend")
            .join(artifactfs::store::manifest_key(
                log_after[1]["id"].as_str().unwrap(),
                2
            ))
            .exists()
    );
    assert_eq!(log_before.len(), 2);
    assert_eq!(
        log_before
            .iter()
            .map(|v| v["checksum"].clone())
            .collect::<Vec<_>>(),
        log_after
            .iter()
            .map(|v| v["checksum"].clone())
            .collect::<Vec<_>>()
    );
    assert_eq!(fs::read_to_string(m.p("t/s/.versions/a/1")).unwrap(), "1\n");
}

#[test]
fn kill_9_then_mount_recovers_the_mountpoint_and_never_versions_unclosed_files() {
    let mut m = Mount::new();
    fs::create_dir_all(m.p("t/s")).unwrap();
    fs::write(m.p("t/s/done"), "closed").unwrap();
    let mut w = fs::File::create(m.p("t/s/open")).unwrap();
    w.write_all(b"never closed").unwrap();
    m.kill9();
    drop(w);
    let err = fs::read_dir(&m.mnt).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN));
    m.start();
    assert_eq!(fs::read_to_string(m.p("t/s/done")).unwrap(), "closed");
    assert!(
        !m.p("t/s/open").exists(),
        "a never-closed file became a version"
    );
    let orphans: Vec<_> = fs::read_dir(m.data.join("spool/orphans"))
        .unwrap()
        .collect();
    assert_eq!(orphans.len(), 1, "the unclosed staging file is kept aside");
    assert!(m.log().contains("kept aside"));
}

#[test]
fn rename_over_before_the_first_close_continues_the_target() {
    let m = Mount::new();
    fs::create_dir_all(m.p("t/s")).unwrap();
    fs::write(m.p("t/s/target"), "old").unwrap();
    let id = m.versions("t/s/target")[0]["id"].clone();
    let mut tmp = fs::File::create(m.p("t/s/tmp")).unwrap();
    tmp.write_all(b"new").unwrap();
    fs::rename(m.p("t/s/tmp"), m.p("t/s/target")).unwrap();
    drop(tmp);
    assert_eq!(fs::read_to_string(m.p("t/s/target")).unwrap(), "new");
    let v = m.versions("t/s/target");
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(v[1]["id"], id, "the target artifact continues");
}

#[test]
fn versions_view_follows_the_artifact_that_has_the_name_now() {
    let m = Mount::new();
    fs::create_dir_all(m.p("t/s")).unwrap();
    fs::write(m.p("t/s/a"), "first a").unwrap();
    assert_eq!(
        fs::read_to_string(m.p("t/s/.versions/a/1")).unwrap(),
        "first a"
    );
    fs::rename(m.p("t/s/a"), m.p("t/s/b")).unwrap();
    fs::write(m.p("t/s/a"), "second a").unwrap();
    // The moved artifact's history went with it; the new `a` has its own.
    assert_eq!(
        fs::read_to_string(m.p("t/s/.versions/b/1")).unwrap(),
        "first a"
    );
    assert_eq!(
        fs::read_to_string(m.p("t/s/.versions/a/1")).unwrap(),
        "second a"
    );
}

#[test]
fn a_recreated_artifact_keeps_its_new_attributes_across_restart() {
    use std::os::unix::fs::PermissionsExt;
    let mut m = Mount::new();
    fs::create_dir_all(m.p("t/s")).unwrap();
    fs::write(m.p("t/s/f"), "1").unwrap();
    fs::set_permissions(m.p("t/s/f"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::remove_file(m.p("t/s/f")).unwrap();
    // umask 022 keeps group write (the group is the trace's participants), and
    // the default visibility `trace` caps the mode at 0770.
    m.sh("umask 022; echo 2 > t/s/f");
    assert_eq!(
        fs::metadata(m.p("t/s/f")).unwrap().permissions().mode() & 0o777,
        0o660
    );
    m.remount();
    assert_eq!(
        fs::metadata(m.p("t/s/f")).unwrap().permissions().mode() & 0o777,
        0o660
    );
    assert_eq!(m.version_count("t/s/f"), 2);
}

#[test]
fn large_files_get_the_right_checksum_in_order_and_out_of_order() {
    use std::io::{Seek, SeekFrom, Write};
    let m = Mount::new();
    fs::create_dir_all(m.p("t/s")).unwrap();
    // 24 MiB in 1 MiB writes: past the size where hashing moves to its own thread.
    let data = common::bytes(7, 24 << 20);
    {
        let mut f = fs::File::create(m.p("t/s/seq")).unwrap();
        for chunk in data.chunks(1 << 20) {
            f.write_all(chunk).unwrap();
        }
    }
    // The same, then a write back at offset 5: the streamed hash is abandoned.
    let mut patched = data.clone();
    patched[5..9].copy_from_slice(b"XXXX");
    {
        let mut f = fs::File::create(m.p("t/s/back")).unwrap();
        for chunk in data.chunks(1 << 20) {
            f.write_all(chunk).unwrap();
        }
        f.seek(SeekFrom::Start(5)).unwrap();
        f.write_all(b"XXXX").unwrap();
    }
    for (rel, want) in [("t/s/seq", &data), ("t/s/back", &patched)] {
        // One version, even when another test's fork+exec closed an
        // inherited copy of the descriptor meanwhile.
        let v = m.versions(rel);
        assert_eq!(v.len(), 1, "{rel}");
        assert_eq!(
            v.last().unwrap()["checksum"].as_str().unwrap(),
            format!("sha256:{}", common::sha256_hex(want)),
            "{rel}"
        );
        assert!(fs::read(m.p(rel)).unwrap() == *want, "{rel} bytes differ");
    }
}

#[test]
fn overwriting_in_place_keeps_the_old_tail_and_checksums() {
    use std::io::{Read, Seek, SeekFrom, Write};
    let m = Mount::new();
    fs::create_dir_all(m.p("t/s")).unwrap();
    let old = common::bytes(1, 3 << 20);
    fs::write(m.p("t/s/f"), &old).unwrap();
    let check = |want: &[u8], n: usize| {
        let v = m.versions("t/s/f");
        assert_eq!(v.len(), n);
        assert_eq!(
            v.last().unwrap()["checksum"].as_str().unwrap(),
            format!("sha256:{}", common::sha256_hex(want))
        );
        assert!(fs::read(m.p("t/s/f")).unwrap() == want, "bytes differ");
    };
    // A prefix overwritten from the start (no O_TRUNC): the old tail stays.
    let head = common::bytes(2, 1 << 20);
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(m.p("t/s/f"))
            .unwrap();
        f.write_all(&head).unwrap();
    }
    let mut want = old.clone();
    want[..head.len()].copy_from_slice(&head);
    check(&want, 2);
    // Overwritten past the old end.
    let longer = common::bytes(3, 4 << 20);
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(m.p("t/s/f"))
            .unwrap();
        for c in longer.chunks(1 << 20) {
            f.write_all(c).unwrap();
        }
    }
    check(&longer, 3);
    // A prefix written, then read back through the same descriptor, then more.
    {
        let mut f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(m.p("t/s/f"))
            .unwrap();
        f.write_all(b"ABCD").unwrap();
        let mut buf = vec![0u8; 8];
        f.seek(SeekFrom::Start(2)).unwrap();
        f.read_exact(&mut buf).unwrap();
        assert_eq!(&buf[..2], b"CD");
        assert_eq!(&buf[2..], &longer[4..10]);
        f.write_all(b"xy").unwrap();
    }
    let mut want = longer.clone();
    want[..4].copy_from_slice(b"ABCD");
    want[10..12].copy_from_slice(b"xy");
    check(&want, 4);
}

#[test]
fn durability_process_survives_kill_9() {
    // `process`: no fsync at commit, so it survives a daemon crash (the kernel
    // keeps the written pages), not a power cut.
    let mut m = Mount::with_args(&["--durability", "process"]);
    fs::create_dir_all(m.p("t/s")).unwrap();
    for i in 0..50u64 {
        fs::write(
            m.p(&format!("t/s/f{i}")),
            common::bytes(i, 5000 + i as usize),
        )
        .unwrap();
    }
    let status: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(m.p(".artifactfs/status")).unwrap()).unwrap();
    assert!(status["group_commit"].is_null(), "{status}");
    m.kill9();
    m.start();
    for i in 0..50u64 {
        let rel = format!("t/s/f{i}");
        assert!(
            fs::read(m.p(&rel)).unwrap() == common::bytes(i, 5000 + i as usize),
            "{rel}"
        );
        assert_eq!(m.version_count(&rel), 1);
    }
}
