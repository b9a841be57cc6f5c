//! The core without the kernel: the same calls the FUSE adapter makes.

use super::*;
use std::ffi::OsStr;

fn start() -> (tempfile::TempDir, Arc<ArtifactFs>, Ino) {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::new(dir.path());
    opts.backend_url = "memory://".into();
    opts.durability = Durability::Process;
    let fs = ArtifactFs::start(&opts).unwrap();
    let t = fs.mkdir(ROOT, OsStr::new("t"), 0o755, 0, 0).unwrap();
    let s = fs.mkdir(t.ino, OsStr::new("s"), 0o755, 0, 0).unwrap();
    (dir, fs, s.ino)
}

fn versions(fs: &ArtifactFs, path: &str) -> Vec<(u32, u64)> {
    let r = fs.reader.lock();
    match r.artifact_at(path).unwrap() {
        Some(a) => r
            .versions(a.rowid)
            .unwrap()
            .iter()
            .map(|v| (v.version, v.size))
            .collect(),
        None => vec![],
    }
}

/// A new file `name` in `dir`, opened for writing, as root.
fn create(fs: &ArtifactFs, dir: Ino, name: &str) -> (Attr, OpenReply) {
    fs.create(
        dir,
        OsStr::new(name),
        0o644,
        libc::O_WRONLY,
        Requester::default(),
    )
    .unwrap()
}

#[test]
fn flush_commits_written_bytes_and_release_commits_a_bare_create() {
    let (_d, fs, step) = start();
    let (_, h) = create(&fs, step, "f");
    fs.flush(h.fh, 0).unwrap();
    assert!(
        versions(&fs, "t/s/f").is_empty(),
        "a flush before any write commits nothing"
    );
    fs.write(h.fh, 0, b"hello").unwrap();
    fs.flush(h.fh, 0).unwrap();
    fs.flush(h.fh, 0).unwrap();
    assert_eq!(
        versions(&fs, "t/s/f"),
        vec![(1, 5)],
        "one flush with new writes, one version"
    );
    fs.write(h.fh, 5, b" world").unwrap();
    fs.release(h.fh).unwrap();
    assert_eq!(versions(&fs, "t/s/f"), vec![(1, 5), (2, 11)]);

    let (_, h) = create(&fs, step, "empty");
    fs.flush(h.fh, 0).unwrap();
    assert!(versions(&fs, "t/s/empty").is_empty());
    fs.release(h.fh).unwrap();
    assert_eq!(versions(&fs, "t/s/empty"), vec![(1, 0)]);
}

#[test]
fn identical_content_and_out_of_order_writes() {
    let (_d, fs, step) = start();
    let (a, h) = create(&fs, step, "f");
    // Out of order: the incremental hash is abandoned and the file rehashed.
    fs.write(h.fh, 3, b"def").unwrap();
    fs.write(h.fh, 0, b"abc").unwrap();
    fs.release(h.fh).unwrap();
    let r = fs
        .open(a.ino, libc::O_RDONLY, Requester::default())
        .unwrap();
    assert_eq!(fs.read(r.fh, 0, 100).unwrap(), b"abcdef");
    fs.release(r.fh).unwrap();
    let v = fs.reader.lock().artifact_at("t/s/f").unwrap().unwrap();
    let sha = fs.reader.lock().versions(v.rowid).unwrap()[0]
        .sha256
        .clone();
    assert_eq!(
        sha,
        crate::store::hex_digest(<sha2::Sha256 as sha2::Digest>::new_with_prefix(b"abcdef"))
    );
    // The same bytes again: no new version.
    let w = fs
        .open(a.ino, libc::O_WRONLY | libc::O_TRUNC, Requester::default())
        .unwrap();
    fs.write(w.fh, 0, b"abcdef").unwrap();
    fs.release(w.fh).unwrap();
    assert_eq!(versions(&fs, "t/s/f").len(), 1);
}

#[test]
fn namespace_rules_without_the_kernel() {
    let (_d, fs, step) = start();
    let e = fs
        .create(
            ROOT,
            OsStr::new("x"),
            0o644,
            libc::O_WRONLY,
            Requester::default(),
        )
        .unwrap_err();
    assert_eq!(e.errno(), libc::EPERM);
    let e = fs
        .mkdir(step, OsStr::new(".by-type"), 0o755, 0, 0)
        .unwrap_err();
    assert_eq!(e.errno(), libc::EPERM);
    let e = fs
        .lookup(step, OsStr::new(&"n".repeat(256)), 0)
        .unwrap_err();
    assert_eq!(e.errno(), libc::ENAMETOOLONG);
    let v = fs.lookup(step, OsStr::new(".versions"), 0).unwrap();
    assert_eq!(v.kind, FileKind::Dir);
    let fh = fs.opendir(step, 0).unwrap();
    let names: Vec<_> = fs
        .readdir(fh, 0)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, vec![".", ".."], ".versions is never listed");
    fs.releasedir(fh);
}

#[test]
fn only_the_openers_process_commits_in_flush() {
    let (_d, fs, step) = start();
    let me = std::process::id();
    // A real other process: its FLUSH stands for a forked child closing its
    // inherited copy of the descriptor at exec or exit.
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let (_, h) = fs
        .create(
            step,
            OsStr::new("f"),
            0o644,
            libc::O_WRONLY,
            Requester {
                pid: me,
                ..Default::default()
            },
        )
        .unwrap();
    fs.write(h.fh, 0, b"half").unwrap();
    fs.flush(h.fh, child.id()).unwrap();
    assert!(
        versions(&fs, "t/s/f").is_empty(),
        "another process's flush cut no version"
    );
    fs.write(h.fh, 4, b" and the rest").unwrap();
    fs.flush(h.fh, me).unwrap();
    assert_eq!(versions(&fs, "t/s/f"), vec![(1, 17)]);
    // Written after the opener's last close, by the child: RELEASE commits.
    fs.write(h.fh, 17, b"!").unwrap();
    fs.flush(h.fh, child.id()).unwrap();
    assert_eq!(versions(&fs, "t/s/f"), vec![(1, 17)]);
    fs.release(h.fh).unwrap();
    assert_eq!(versions(&fs, "t/s/f"), vec![(1, 17), (2, 18)]);
    child.kill().unwrap();
    child.wait().unwrap();
}
