//! Access control with real Unix users: the tests create `afs-alice`, `afs-bob` and
//! `afs-carol` (useradd) and run shell commands as them with `setpriv`, against
//! one mount that serves every local user.

mod common;
use common::{BIN, Mount};
use std::process::Command;
use std::sync::OnceLock;

const ALICE: &str = "afs-alice";
const BOB: &str = "afs-bob";
const CAROL: &str = "afs-carol";

/// Creates the users once per test binary (useradd locks /etc/passwd: never in
/// parallel).
fn users() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        for u in [ALICE, BOB, CAROL] {
            let exists = Command::new("id").arg(u).output().unwrap().status.success();
            if !exists {
                let out = Command::new("useradd")
                    .args(["--no-create-home", "--shell", "/bin/sh", u])
                    .output()
                    .expect("useradd");
                assert!(out.status.success(), "useradd {u}: {out:?}");
            }
        }
    });
}

/// A mount the test users can reach (the tempdir is 0700).
fn shared_mount() -> Mount {
    use std::os::unix::fs::PermissionsExt;
    users();
    let m = Mount::new();
    std::fs::set_permissions(m.tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    m
}

/// Runs `script` in the mount as `user`: (exit ok, stdout, stderr).
fn run_as(m: &Mount, user: &str, script: &str) -> (bool, String, String) {
    let out = Command::new("setpriv")
        .args([
            &format!("--reuid={user}"),
            &format!("--regid={user}"),
            "--clear-groups",
            "--reset-env",
            "sh",
            "-c",
            &format!("umask 022; cd {} && {script}", m.mnt.display()),
        ])
        .output()
        .expect("setpriv");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok_as(m: &Mount, user: &str, script: &str) -> String {
    let (ok, out, err) = run_as(m, user, script);
    assert!(ok, "as {user}: {script}\nstdout: {out}\nstderr: {err}");
    out
}

fn err_as(m: &Mount, user: &str, script: &str) -> String {
    let (ok, out, err) = run_as(m, user, script);
    assert!(!ok, "as {user} should fail: {script}\nstdout: {out}");
    err
}

#[test]
fn a_private_artifact_is_invisible_to_others() {
    let m = shared_mount();
    ok_as(
        &m,
        ALICE,
        "mkdir -p t1/s && echo secret > t1/s/p.txt && echo hello > t1/s/open.txt && \
         setfattr -n user.artifact.visibility -v private t1/s/p.txt",
    );
    let id = ok_as(
        &m,
        ALICE,
        "getfattr --only-values -n user.artifact.id t1/s/p.txt",
    );
    // The owner reads it and sees 0600.
    assert_eq!(ok_as(&m, ALICE, "cat t1/s/p.txt"), "secret\n");
    let ls = ok_as(&m, ALICE, "ls -l t1/s/p.txt");
    assert!(ls.starts_with("-rw------- "), "{ls}");
    // Bob: not there, by any name, even right after alice looked it up.
    let err = err_as(&m, BOB, "cat t1/s/p.txt");
    assert!(err.contains("No such file or directory"), "{err}");
    err_as(&m, BOB, "stat t1/s/p.txt");
    assert_eq!(ok_as(&m, BOB, "ls t1/s"), "open.txt\n");
    assert_eq!(
        ok_as(&m, BOB, &format!("ls .by-agent/{ALICE}/t1/s")),
        "open.txt\n"
    );
    assert_eq!(ok_as(&m, BOB, "ls .by-type/artifact/t1/s"), "open.txt\n");
    assert_eq!(ok_as(&m, BOB, "ls t1/s/.versions"), "open.txt\n");
    err_as(&m, BOB, "ls t1/s/.versions/p.txt");
    err_as(&m, BOB, &format!("cat .by-id/{id}"));
    let found = ok_as(&m, BOB, "grep -rl secret . || true");
    assert!(found.is_empty(), "bob's grep found {found}");
    // Nor can bob write it, rename it or set attributes on it.
    err_as(&m, BOB, "mv t1/s/p.txt t1/s/q.txt");
    err_as(&m, BOB, "rm t1/s/p.txt");
    // Alice finds it in her views; root sees everything.
    assert_eq!(
        ok_as(&m, ALICE, &format!("cat .by-agent/{ALICE}/t1/s/p.txt")),
        "secret\n"
    );
    assert_eq!(ok_as(&m, ALICE, &format!("cat .by-id/{id}")), "secret\n");
    assert_eq!(m.sh("cat t1/s/p.txt"), "secret\n");
    assert_eq!(m.sh("ls t1/s"), "open.txt\np.txt\n");
    // Made private after bob looked it up (the kernel caches names for 60 s):
    // gone for him at once.
    ok_as(&m, ALICE, "echo later > t1/s/q.txt");
    ok_as(&m, BOB, "stat t1/s/q.txt >/dev/null && cat t1/s/q.txt");
    ok_as(
        &m,
        ALICE,
        "setfattr -n user.artifact.visibility -v private t1/s/q.txt",
    );
    let err = err_as(&m, BOB, "stat t1/s/q.txt");
    assert!(err.contains("No such file or directory"), "{err}");
    assert_eq!(ok_as(&m, ALICE, "cat t1/s/q.txt"), "later\n");
    // Nor through the data directory: only the daemon's user reads it.
    for secret in ["cat catalog.db", "ls spool", "ls backend"] {
        let err = err_as(&m, BOB, &format!("cd {} && {secret}", m.data.display()));
        assert!(err.contains("Permission denied"), "{secret}: {err}");
    }
    // The catalog CLI answers for whoever runs it (through the daemon).
    let query = |user: &str| {
        let out = if user == "root" {
            m.sh(&format!("{BIN} query --trace t1 --json"))
        } else {
            ok_as(&m, user, &format!("{BIN} query --trace t1 --json"))
        };
        common::json_paths(&out)
    };
    assert_eq!(query(BOB), vec!["t1/s/open.txt"]);
    // The limit counts what bob may see: the newest version (q.txt, private)
    // does not take his one row.
    let limited = ok_as(&m, BOB, &format!("{BIN} query --trace t1 --limit 1 --json"));
    assert_eq!(common::json_paths(&limited), vec!["t1/s/open.txt"]);
    assert_eq!(
        query(ALICE),
        vec!["t1/s/open.txt", "t1/s/p.txt", "t1/s/q.txt"]
    );
    assert_eq!(
        query("root"),
        vec!["t1/s/open.txt", "t1/s/p.txt", "t1/s/q.txt"]
    );
    let err = err_as(&m, BOB, &format!("{BIN} show t1/s/p.txt"));
    assert!(err.contains("no such artifact"), "{err}");
    err_as(&m, BOB, &format!("{BIN} log {id}"));
    assert!(ok_as(&m, ALICE, &format!("{BIN} show {id}")).contains("private"));
    let events = ok_as(&m, BOB, &format!("{BIN} events"));
    assert!(
        events.contains("open.txt") && !events.contains("p.txt"),
        "{events}"
    );
    // gc is root's.
    let err = err_as(&m, BOB, &format!("{BIN} gc ."));
    assert!(err.contains("only root"), "{err}");
    // A hand-made request cannot point the daemon at another catalog: its
    // --data is replaced by the daemon's own.
    let socket = std::fs::read_dir("/run/artifactfs")
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| {
            serde_json::from_slice::<serde_json::Value>(&std::fs::read(e.path()).ok()?).ok()
        })
        .find(|r| r["mountpoint"] == m.mnt.to_string_lossy().as_ref())
        .and_then(|r| r["control"].as_str().map(str::to_string))
        .expect("the mount record names its control socket");
    let out = ok_as(
        &m,
        BOB,
        &format!(
            r#"python3 -c '
import json, socket
s = socket.socket(socket.AF_UNIX); s.connect("{socket}")
s.sendall(json.dumps({{"cmd": "cli", "args": ["query", "--json", "--data", "/nonexistent"]}}).encode() + b"\n")
print(s.makefile().read())'"#
        ),
    );
    assert!(
        out.contains("t1/s/open.txt") && !out.contains("p.txt"),
        "{out}"
    );
}

#[test]
fn trace_participants_decide_who_reads_and_writes() {
    let m = shared_mount();
    ok_as(
        &m,
        ALICE,
        &format!(
            "mkdir -p t2/s && echo a > t2/s/a.txt && \
             setfattr -n user.trace.participants -v {BOB} t2"
        ),
    );
    assert_eq!(
        ok_as(
            &m,
            CAROL,
            "getfattr --only-values -n user.trace.participants t2"
        ),
        BOB
    );
    // Bob takes part: reads and writes new versions, adds files.
    ok_as(&m, BOB, "echo b >> t2/s/a.txt && echo new > t2/s/b.txt");
    assert_eq!(ok_as(&m, BOB, "cat t2/s/a.txt"), "a\nb\n");
    assert_eq!(m.versions("t2/s/a.txt").len(), 2);
    // Carol does not: the names show (mode 0660 says so), the bytes do not.
    let ls = ok_as(&m, CAROL, "ls -l t2/s/a.txt");
    assert!(ls.starts_with("-rw-rw---- "), "{ls}");
    let err = err_as(&m, CAROL, "cat t2/s/a.txt");
    assert!(err.contains("Permission denied"), "{err}");
    let err = err_as(&m, CAROL, "echo c >> t2/s/a.txt");
    assert!(err.contains("Permission denied"), "{err}");
    let err = err_as(&m, CAROL, "echo c > t2/s/c.txt");
    assert!(err.contains("Permission denied"), "{err}");
    err_as(&m, CAROL, "rm t2/s/a.txt");
    assert_eq!(m.versions("t2/s/a.txt").len(), 2);
    assert!(m.log().contains("EACCES: afs-carol may not"), "no log line");
    // Only the trace's owner changes the list.
    let err = err_as(
        &m,
        BOB,
        &format!("setfattr -n user.trace.participants -v {BOB},{CAROL} t2"),
    );
    assert!(err.contains("Operation not permitted"), "{err}");
    let err = err_as(&m, BOB, &format!("{BIN} grant t2 {CAROL}"));
    assert!(err.contains("Operation not permitted"), "{err}");
    // `grant` lets carol in, `revoke` shuts her out again.
    let out = ok_as(&m, ALICE, &format!("{BIN} grant t2 {CAROL}"));
    assert_eq!(out, format!("t2: participants {BOB},{CAROL}\n"));
    ok_as(&m, CAROL, "cat t2/s/a.txt && echo c >> t2/s/a.txt");
    ok_as(&m, ALICE, &format!("{BIN} revoke t2 {CAROL}"));
    err_as(&m, CAROL, "cat t2/s/a.txt");
    // Revoking the last one would open the trace: refused.
    let err = err_as(&m, ALICE, &format!("{BIN} revoke t2 {BOB}"));
    assert!(err.contains("opens the trace"), "{err}");
    // No list: open to every agent.
    ok_as(&m, ALICE, "setfattr -x user.trace.participants t2");
    ok_as(&m, CAROL, "echo d >> t2/s/a.txt && echo e > t2/s/e.txt");
    assert_eq!(m.sh("cat t2/s/a.txt"), "a\nb\nc\nd\n");
    // The list survives a restart.
    ok_as(
        &m,
        ALICE,
        &format!("setfattr -n user.trace.participants -v {BOB} t2"),
    );
    let mut m = m;
    m.remount();
    err_as(&m, CAROL, "cat t2/s/a.txt");
    ok_as(&m, BOB, "cat t2/s/a.txt");
}

#[test]
fn only_the_owner_changes_visibility_and_retention() {
    let m = shared_mount();
    ok_as(&m, ALICE, "mkdir -p t3/s && echo x > t3/s/f.json");
    // Bob may write (open trace) and so set the type and labels…
    ok_as(
        &m,
        BOB,
        "setfattr -n user.artifact.type -v critique t3/s/f.json && \
         setfattr -n user.reviewed -v yes t3/s/f.json",
    );
    // …but not who may see it or how long it is kept, nor its mode.
    for (name, value) in [
        ("user.artifact.visibility", "public"),
        ("user.artifact.retention", "1d"),
    ] {
        let err = err_as(
            &m,
            BOB,
            &format!("setfattr -n {name} -v {value} t3/s/f.json"),
        );
        assert!(err.contains("Operation not permitted"), "{name}: {err}");
    }
    let err = err_as(&m, BOB, "chmod 600 t3/s/f.json");
    assert!(err.contains("Operation not permitted"), "{err}");
    // Alice may; the mode bits follow.
    ok_as(
        &m,
        ALICE,
        "setfattr -n user.artifact.visibility -v public t3/s/f.json && \
         setfattr -n user.artifact.retention -v 30d t3/s/f.json",
    );
    let ls = ok_as(&m, BOB, "ls -l t3/s/f.json");
    assert!(ls.starts_with("-rw-rw-r-- "), "{ls}");
    let got = ok_as(
        &m,
        BOB,
        "getfattr --only-values -n user.artifact.visibility t3/s/f.json; echo; \
         getfattr --only-values -n user.artifact.retention t3/s/f.json",
    );
    assert_eq!(got, "public\n30d");
    // root may as well.
    m.sh("setfattr -n user.artifact.retention -v forever t3/s/f.json");
    // And only alice removes her trace directory.
    ok_as(&m, ALICE, "mkdir t4");
    err_as(&m, BOB, "rmdir t4");
    ok_as(&m, ALICE, "rmdir t4");
}
