//! Scratch files (DESIGN.md): editors' swap, backup and lock files and
//! temporaries are ordinary files that are never versioned, manifested or
//! evented; a temporary renamed to an ordinary name becomes an artifact.

mod common;
use common::*;
use std::fs;
use std::process::Command;

#[test]
fn scratch_files_are_ordinary_files_that_are_never_versioned() {
    let mut m = Mount::new();
    fs::create_dir_all(m.p("t/s")).unwrap();
    // vim's swap file (written twice), a backup, an emacs lock, a temporary.
    m.sh(
        "echo swap > t/s/.r.json.swp && echo more >> t/s/.r.json.swp && \
         echo bak > 't/s/r.json~' && echo lock > 't/s/.#r.json' && echo tmp > t/s/x.tmp",
    );
    assert_eq!(
        fs::read_to_string(m.p("t/s/.r.json.swp")).unwrap(),
        "swap\nmore\n"
    );
    assert_eq!(m.sh("ls -A t/s"), ".#r.json\n.r.json.swp\nr.json~\nx.tmp\n");
    // No version, no manifest, no event, no query result.
    for name in [".r.json.swp", "r.json~", ".#r.json", "x.tmp"] {
        let out = Command::new(BIN)
            .args(["log", "--json"])
            .arg(m.p(&format!("t/s/{name}")))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{name} has a log");
        let x = m.sh_out(&format!("getfattr -n user.artifact.version 't/s/{name}'"));
        assert!(!x.status.success(), "{name} has a manifest");
        let x = m.sh_out(&format!("setfattr -n user.artifact.type -v x 't/s/{name}'"));
        assert!(
            String::from_utf8_lossy(&x.stderr).contains("Operation not supported"),
            "{name}: {}",
            String::from_utf8_lossy(&x.stderr)
        );
    }
    let data = m.data.to_string_lossy().to_string();
    let q = Command::new(BIN)
        .args(["query", "--all-versions", "--json", "--data", &data])
        .output()
        .unwrap();
    assert!(
        q.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&q.stdout)
    );
    let ev = |m: &Mount| {
        let out = Command::new(BIN)
            .args(["events", "--data", &m.data.to_string_lossy()])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(ev(&m), "", "scratch files made events");
    fs::remove_file(m.p("t/s/r.json~")).unwrap();

    // A temporary renamed to an ordinary name becomes an artifact with its
    // bytes; renamed over one, a new version of it (the atomic-writer pattern).
    m.sh("echo first > t/s/a.tmp && mv t/s/a.tmp t/s/report.json");
    let v = m.versions("t/s/report.json");
    assert_eq!(v.len(), 1);
    assert_eq!(
        v[0]["checksum"],
        format!("sha256:{}", sha256_hex(b"first\n"))
    );
    m.sh("echo second > t/s/b.tmp && mv t/s/b.tmp t/s/report.json");
    assert_eq!(m.versions("t/s/report.json").len(), 2);
    assert_eq!(
        fs::read_to_string(m.p("t/s/report.json")).unwrap(),
        "second\n"
    );
    // Renamed before its writer closes: the close makes the version.
    m.sh(
        "python3 -c \"import os; f = open('t/s/c.tmp', 'w'); f.write('third'); f.flush(); \
         os.rename('t/s/c.tmp', 't/s/report.json'); f.close()\"",
    );
    assert_eq!(m.versions("t/s/report.json").len(), 3);
    assert_eq!(fs::read_to_string(m.p("t/s/report.json")).unwrap(), "third");
    let q = Command::new(BIN)
        .args(["query", "--all-versions", "--json", "--data", &data])
        .output()
        .unwrap();
    assert_eq!(
        common::json_paths(&String::from_utf8_lossy(&q.stdout)),
        vec!["t/s/report.json"; 3]
    );
    let events = ev(&m);
    assert_eq!(events.lines().count(), 3, "{events}");
    assert!(
        !events.contains(".tmp") && !events.contains(".swp"),
        "{events}"
    );

    // GC keeps a live scratch file's bytes, though no version uses them.
    afs_ok(&["gc", &m.mnt.to_string_lossy(), "--json"]);
    assert_eq!(
        fs::read_to_string(m.p("t/s/.r.json.swp")).unwrap(),
        "swap\nmore\n"
    );
    // They live as long as the daemon: a remount has none.
    m.remount();
    assert_eq!(m.sh("ls -A t/s"), "report.json\n");
    assert_eq!(fs::read_to_string(m.p("t/s/report.json")).unwrap(), "third");
}
