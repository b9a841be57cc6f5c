//! What `ls -l`, `cp -a`, editors and Python need beyond reads and writes:
//! attributes, locks, mmap, symlinks, statfs, and the documented errnos.

mod common;
use common::*;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

/// renameat2(2) with flags; the errno when it fails, `None` when it succeeds.
fn renameat2(a: &std::ffi::CString, b: &std::ffi::CString, flags: u32) -> Option<i32> {
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            flags,
        )
    };
    (rc != 0).then(|| std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
}

fn errno_of<T: std::fmt::Debug>(r: std::io::Result<T>) -> i32 {
    r.unwrap_err().raw_os_error().unwrap()
}

#[test]
fn errnos_of_the_storage_spec_table() {
    let m = Mount::new();
    fs::create_dir_all(m.p("t/s")).unwrap();
    // EPERM: files in the root or a trace directory, reserved names, hard links.
    assert_eq!(errno_of(fs::write(m.p("root.txt"), "x")), libc::EPERM);
    assert_eq!(errno_of(fs::write(m.p("t/trace.txt"), "x")), libc::EPERM);
    assert_eq!(
        errno_of(std::os::unix::fs::symlink("x", m.p("t/l"))),
        libc::EPERM
    );
    assert_eq!(errno_of(fs::create_dir(m.p("t/s/.by-agent"))), libc::EPERM);
    // `.versions` exists (it opens by name), so creating it is EEXIST.
    assert_eq!(errno_of(fs::create_dir(m.p("t/s/.versions"))), libc::EEXIST);
    assert_eq!(errno_of(fs::write(m.p("t/s/.by-id"), "x")), libc::EPERM);
    fs::write(m.p("t/s/f"), "x").unwrap();
    assert_eq!(
        errno_of(fs::hard_link(m.p("t/s/f"), m.p("t/s/g"))),
        libc::EPERM
    );
    assert_eq!(
        errno_of(fs::rename(m.p("t/s/f"), m.p("t/s/.artifactfs"))),
        libc::EPERM
    );
    let fifo = std::ffi::CString::new(m.p("t/s/fifo").as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EPERM)
    );
    // A step directory cannot move to the root (it would become a trace).
    assert_eq!(errno_of(fs::rename(m.p("t/s"), m.p("s2"))), libc::EPERM);
    assert!(
        m.log().contains("files live in <trace>/<step>/"),
        "EPERM is logged with its reason"
    );
    // EROFS: anything that would change a stored version.
    assert_eq!(
        errno_of(
            OpenOptions::new()
                .write(true)
                .open(m.p("t/s/.versions/f/1"))
        ),
        libc::EROFS
    );
    assert_eq!(
        errno_of(fs::remove_file(m.p("t/s/.versions/f/1"))),
        libc::EROFS
    );
    assert_eq!(
        errno_of(fs::write(m.p("t/s/.versions/f/9"), "x")),
        libc::EROFS
    );
    // ENOENT for what does not exist, including versions out of range.
    assert_eq!(errno_of(fs::read(m.p("t/s/.versions/f/2"))), libc::ENOENT);
    assert_eq!(errno_of(fs::read(m.p("t/s/nope"))), libc::ENOENT);
    // EINVAL: names that are not UTF-8; RENAME_EXCHANGE; a directory into itself.
    let bad = std::ffi::OsStr::from_bytes(b"t/s/\xff\xfe");
    assert_eq!(errno_of(fs::write(m.p("").join(bad), "x")), libc::EINVAL);
    fs::write(m.p("t/s/g"), "y").unwrap();
    let a = std::ffi::CString::new(m.p("t/s/f").as_os_str().as_bytes()).unwrap();
    let b = std::ffi::CString::new(m.p("t/s/g").as_os_str().as_bytes()).unwrap();
    assert_eq!(renameat2(&a, &b, libc::RENAME_EXCHANGE), Some(libc::EINVAL));
    fs::create_dir_all(m.p("t/s/d/e")).unwrap();
    assert_eq!(
        errno_of(fs::rename(m.p("t/s/d"), m.p("t/s/d/e/d"))),
        libc::EINVAL
    );
    // ENAMETOOLONG: over 255 bytes.
    assert_eq!(
        errno_of(fs::write(m.p(&format!("t/s/{}", "n".repeat(256))), "x")),
        libc::ENAMETOOLONG
    );
    fs::write(m.p(&format!("t/s/{}", "n".repeat(255))), "x").unwrap();
    // EEXIST, ENOTEMPTY, ENOTDIR, EISDIR.
    assert_eq!(
        errno_of(
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(m.p("t/s/f"))
        ),
        libc::EEXIST
    );
    assert_eq!(errno_of(fs::create_dir(m.p("t/s/d"))), libc::EEXIST);
    assert_eq!(errno_of(fs::remove_dir(m.p("t/s/d"))), libc::ENOTEMPTY);
    assert_eq!(errno_of(fs::remove_dir(m.p("t/s/f"))), libc::ENOTDIR);
    assert_eq!(errno_of(fs::remove_file(m.p("t/s/d"))), libc::EISDIR);
    assert_eq!(
        errno_of(fs::rename(m.p("t/s/f"), m.p("t/s/d"))),
        libc::EISDIR
    );
    // RENAME_NOREPLACE onto an existing name.
    assert_eq!(
        renameat2(&a, &b, libc::RENAME_NOREPLACE),
        Some(libc::EEXIST)
    );
    // EISDIR: `.versions` is a directory to unlink, to rename onto, to open for writing.
    assert_eq!(
        errno_of(fs::remove_file(m.p("t/s/.versions"))),
        libc::EISDIR
    );
    assert_eq!(
        errno_of(fs::rename(m.p("t/s/g"), m.p("t/s/.versions"))),
        libc::EISDIR
    );
    assert_eq!(
        errno_of(OpenOptions::new().write(true).open(m.p("t/s/.versions"))),
        libc::EISDIR
    );
    // EBADF: writing through a descriptor opened for reading.
    let mut ro = fs::File::open(m.p("t/s/g")).unwrap();
    assert_eq!(errno_of(ro.write_all(b"x")), libc::EBADF);
    // ENOENT inside `.versions` for what it does not hold.
    assert_eq!(
        errno_of(fs::read(m.p("t/s/.versions/nope/1"))),
        libc::ENOENT
    );
    assert_eq!(errno_of(fs::read(m.p("t/s/.versions/f/x"))), libc::ENOENT);
}

#[test]
fn attributes_survive_cp_a_and_tar() {
    let m = Mount::new();
    let src = m.tmp.path().join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("a.json"), "{}").unwrap();
    fs::write(src.join("sub/b.txt"), "bee").unwrap();
    fs::set_permissions(src.join("a.json"), fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::symlink("sub/b.txt", src.join("link")).unwrap();
    let out = m.sh(&format!(
        "mkdir -p t/s && touch -d '2020-01-02 03:04:05' {src}/a.json && cp -a {src} t/s/copy && \
         stat -c '%a %Y %s' t/s/copy/a.json && readlink t/s/copy/link && cat t/s/copy/link && \
         diff -r {src} t/s/copy && echo same && \
         rsync -a {src}/ t/s/rs/ && diff -r {src} t/s/rs && echo rsync-same && \
         chmod 600 t/s/copy/sub/b.txt && stat -c %a t/s/copy/sub/b.txt && \
         truncate -s 2 t/s/copy/sub/b.txt && cat t/s/copy/sub/b.txt && echo && stat -c %s t/s/copy/sub/b.txt",
        src = src.display()
    ));
    assert_eq!(
        out,
        format!(
            "640 {} 2\nsub/b.txt\nbeesame\nrsync-same\n600\nbe\n2\n",
            1577934245
        )
    );
    assert_eq!(
        m.version_count("t/s/copy/sub/b.txt"),
        2,
        "truncate(1) made a version"
    );
    let md = fs::metadata(m.p("t/s/copy/sub/b.txt")).unwrap();
    assert_eq!(md.nlink(), 1);
    assert_eq!(md.blocks(), 1);
    assert_eq!(md.uid(), 0);
    let st = nix_statfs(&m.mnt);
    assert!(st > 0, "statfs reports the spool's free space");
}

fn nix_statfs(p: &std::path::Path) -> u64 {
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    assert_eq!(st.f_namemax, 255);
    st.f_bavail as u64
}

#[test]
fn flock_and_fcntl_locks_work_within_the_mount() {
    let m = Mount::new();
    fs::create_dir_all(m.p("t/s")).unwrap();
    fs::write(m.p("t/s/lock"), "").unwrap();
    // flock(1): a second exclusive lock fails while the first is held.
    let out = m.sh("exec 9>>t/s/lock; flock -n 9; if flock -n t/s/lock true; then echo second-got-it; else echo busy; fi");
    assert_eq!(out, "busy\n");
    // fcntl (POSIX) locks from Python, in two processes.
    let out = m.sh(
        r#"python3 - <<'PY'
import fcntl, os, subprocess, sys
f = open("t/s/lock", "a")
fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
r = subprocess.run([sys.executable, "-c", "import fcntl; f=open('t/s/lock','a'); fcntl.lockf(f, fcntl.LOCK_EX|fcntl.LOCK_NB)"], capture_output=True)
print("other process blocked" if r.returncode != 0 else "not locked")
PY"#,
    );
    assert_eq!(out, "other process blocked\n");
}

#[test]
fn read_only_mmap_and_python_io() {
    let m = Mount::new();
    fs::create_dir_all(m.p("t/s")).unwrap();
    let data = bytes(9, 1 << 20);
    fs::write(m.p("t/s/m.bin"), &data).unwrap();
    let out = m.sh(r#"python3 - <<'PY'
import mmap, hashlib, json
with open("t/s/m.bin", "rb") as f:
    mm = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    print(hashlib.sha256(mm[:]).hexdigest())
with open("t/s/report.json", "w") as f:
    json.dump({"ok": True}, f)
with open("t/s/report.json") as f:
    print(json.load(f)["ok"])
with open("t/s/report.json", "r+") as f:
    f.seek(0, 2); f.write("\n")
print(open("t/s/report.json").read().endswith("}\n"))
PY"#);
    assert_eq!(out, format!("{}\nTrue\nTrue\n", sha256_hex(&data)));
    assert_eq!(m.version_count("t/s/report.json"), 2);
}

#[test]
fn fsync_and_write_errors_reach_close() {
    let m = Mount::new();
    fs::create_dir_all(m.p("t/s")).unwrap();
    let mut f = fs::File::create(m.p("t/s/f")).unwrap();
    f.write_all(b"durable").unwrap();
    f.sync_all().unwrap();
    drop(f);
    assert_eq!(fs::read_to_string(m.p("t/s/f")).unwrap(), "durable");
    // mkdir/rmdir round trip and directory listing of an emptied step.
    fs::create_dir(m.p("t/s/d")).unwrap();
    fs::remove_dir(m.p("t/s/d")).unwrap();
    fs::remove_file(m.p("t/s/f")).unwrap();
    assert_eq!(fs::read_dir(m.p("t/s")).unwrap().count(), 0);
    fs::remove_dir(m.p("t/s")).unwrap();
    fs::remove_dir(m.p("t")).unwrap();
    assert_eq!(fs::read_dir(&m.mnt).unwrap().count(), 0);
}
