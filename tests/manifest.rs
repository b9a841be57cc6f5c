//! Manifests as extended attributes, identity, query and events (issue 3).

mod common;
use common::*;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::process::Command;

fn setfattr(m: &Mount, args: &str) -> (bool, String) {
    let out = m.sh_out(&format!("setfattr {args}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn cli(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn getfattr_and_setfattr_round_trips_and_errors() {
    let m = Mount::new();
    m.sh("mkdir -p t/s && echo '{\"k\": 1}' > t/s/report.json && echo two > t/s/report.json");
    let dump = m.sh("getfattr -d -m user.artifact t/s/report.json");
    for field in [
        "id",
        "version",
        "trace_id",
        "step_id",
        "path",
        "created_by",
        "created_at",
        "artifact_type",
        "content_type",
        "uri",
        "size_bytes",
        "checksum",
        "status",
        "retention",
        "supersedes",
        "owner",
        "visibility",
        "manifest",
    ] {
        assert!(
            dump.contains(&format!("user.artifact.{field}=")),
            "{field} missing in\n{dump}"
        );
    }
    assert!(dump.contains("user.artifact.version=\"2\""), "{dump}");
    assert!(dump.contains("user.artifact.trace_id=\"t\""), "{dump}");
    assert!(
        dump.contains("user.artifact.content_type=\"application/json; charset=utf-8\""),
        "{dump}"
    );
    let manifest: serde_json::Value = serde_json::from_str(
        &m.sh("getfattr --only-values -n user.artifact.manifest t/s/report.json"),
    )
    .unwrap();
    let id = manifest["id"].as_str().unwrap().to_string();
    assert_eq!(manifest["supersedes"], format!("{id}@1"));
    assert!(!id.contains("report"), "ids are not derived from paths");

    // Settable fields, validated.
    assert!(setfattr(&m, "-n user.artifact.type -v critique t/s/report.json").0);
    assert!(setfattr(&m, "-n user.artifact.visibility -v private t/s/report.json").0);
    assert!(setfattr(&m, "-n user.artifact.retention -v 30d t/s/report.json").0);
    assert!(
        setfattr(
            &m,
            "-n user.artifact.content_type -v text/x-report t/s/report.json"
        )
        .0
    );
    let (ok, err) = setfattr(
        &m,
        "-n user.artifact.visibility -v everyone t/s/report.json",
    );
    assert!(!ok && err.contains("Invalid argument"), "{err}");
    let (ok, err) = setfattr(&m, "-n user.artifact.retention -v soon t/s/report.json");
    assert!(!ok && err.contains("Invalid argument"), "{err}");
    // Read-only fields.
    let (ok, err) = setfattr(&m, "-n user.artifact.checksum -v sha256:00 t/s/report.json");
    assert!(!ok && err.contains("Operation not permitted"), "{err}");
    let (ok, err) = setfattr(&m, "-x user.artifact.owner t/s/report.json");
    assert!(!ok && err.contains("Operation not permitted"), "{err}");
    // Other namespaces.
    let (ok, err) = setfattr(&m, "-n trusted.x -v 1 t/s/report.json");
    assert!(!ok && err.contains("Operation not supported"), "{err}");
    // Free labels: kept, listed, in the manifest, removable.
    assert!(setfattr(&m, "-n user.team -v red t/s/report.json").0);
    let dump = m.sh("getfattr -d t/s/report.json");
    assert!(dump.contains("user.team=\"red\""), "{dump}");
    let m2: serde_json::Value = serde_json::from_str(
        &m.sh("getfattr --only-values -n user.artifact.manifest t/s/report.json"),
    )
    .unwrap();
    assert_eq!(m2["labels"]["team"], "red");
    assert_eq!(m2["artifact_type"], "critique");
    assert_eq!(m2["visibility"], "private");
    assert_eq!(m2["retention"], "30d");
    assert_eq!(m2["content_type"], "text/x-report");
    // xattr(7) flags and limits.
    let (ok, err) = setfattr(&m, "-x user.nope t/s/report.json");
    assert!(!ok && err.contains("No such attribute"), "{err}");
    let big = "x".repeat(5000);
    let (ok, err) = setfattr(&m, &format!("-n user.big -v {big} t/s/report.json"));
    assert!(!ok && err.contains("Argument list too long"), "{err}");
    let path = CString::new(m.p("t/s/report.json").as_os_str().as_bytes()).unwrap();
    let name = CString::new("user.team").unwrap();
    let mut buf = [0u8; 2];
    let rc = unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    assert_eq!(
        (rc, std::io::Error::last_os_error().raw_os_error()),
        (-1, Some(libc::ERANGE))
    );
    let rc = unsafe {
        libc::setxattr(
            path.as_ptr(),
            name.as_ptr(),
            b"blue".as_ptr().cast(),
            4,
            libc::XATTR_CREATE,
        )
    };
    assert_eq!(
        (rc, std::io::Error::last_os_error().raw_os_error()),
        (-1, Some(libc::EEXIST))
    );
    let other = CString::new("user.other").unwrap();
    let rc = unsafe {
        libc::setxattr(
            path.as_ptr(),
            other.as_ptr(),
            b"x".as_ptr().cast(),
            1,
            libc::XATTR_REPLACE,
        )
    };
    assert_eq!(
        (rc, std::io::Error::last_os_error().raw_os_error()),
        (-1, Some(libc::ENODATA))
    );
    assert!(setfattr(&m, "-x user.team t/s/report.json").0);
    assert!(!m.sh("getfattr -d t/s/report.json").contains("user.team"));
    // A stored version exposes its own manifest, read-only.
    let v1 = m.sh("getfattr --only-values -n user.artifact.version t/s/.versions/report.json/1");
    assert_eq!(v1, "1");
    let v1c = m.sh("getfattr --only-values -n user.artifact.checksum t/s/.versions/report.json/1");
    assert_eq!(v1c, format!("sha256:{}", sha256_hex(b"{\"k\": 1}\n")));
    let (ok, err) = setfattr(&m, "-n user.team -v x t/s/.versions/report.json/1");
    assert!(!ok && err.contains("Read-only file system"), "{err}");
    // ls -l still works and shows no noise.
    m.sh("ls -l t/s > /dev/null");
}

#[test]
fn agents_are_told_apart_by_created_by_owner_and_query() {
    let mut m = Mount::with_args(&["--agent", "alice"]);
    m.sh("mkdir -p t/s && echo a > t/s/by-alice && echo shared > t/s/shared");
    m.stop();
    m.set_args(&["--agent", "bob"]);
    m.start();
    let mut b = m;
    b.sh("echo b > t/s/by-bob && echo changed > t/s/shared");
    let alice = b.versions("t/s/by-alice");
    assert_eq!(alice[0]["created_by"], "alice");
    assert_eq!(alice[0]["owner"], "alice");
    let shared = b.versions("t/s/shared");
    assert_eq!(shared[1]["created_by"], "bob");
    assert_eq!(
        shared[1]["owner"], "alice",
        "owner is the creator of version 1"
    );
    let data = b.data.to_string_lossy().to_string();
    let q = cli(&["query", "--data", &data, "--agent", "bob", "--json"]);
    assert_eq!(json_paths(&q), vec!["t/s/by-bob", "t/s/shared"]);
    let q = cli(&["query", "--data", &data, "--agent", "alice", "--json"]);
    assert_eq!(q.lines().count(), 1, "only alice's current version: {q}");
    let q = cli(&[
        "query",
        "--data",
        &data,
        "--agent",
        "alice",
        "--all-versions",
        "--json",
    ]);
    assert_eq!(q.lines().count(), 2, "{q}");
    // show by id, with and without the daemon.
    let id = alice[0]["id"].as_str().unwrap().to_string();
    let shown = cli(&["show", &id, "--data", &data, "--json"]);
    assert!(shown.contains("\"path\":\"t/s/by-alice\""), "{shown}");
    b.stop();
    let shown = cli(&["show", &id, "--data", &data]);
    assert!(shown.contains("created_by: alice"), "{shown}");
}

#[test]
fn events_record_commits_renames_updates_and_deletes_in_order() {
    let m = Mount::new();
    m.sh("mkdir -p t/s && echo 1 > t/s/f && mv t/s/f t/s/g && setfattr -n user.artifact.type -v draft t/s/g && rm t/s/g");
    let data = m.data.to_string_lossy().to_string();
    let out = cli(&["events", "--data", &data]);
    let ev: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let actions: Vec<&str> = ev.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        vec![
            "register_artifact",
            "rename_artifact",
            "update_artifact",
            "delete_artifact"
        ]
    );
    let seqs: Vec<i64> = ev.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let p = &ev[0]["params"];
    for k in [
        "artifact_id",
        "version",
        "path",
        "uri",
        "size_bytes",
        "checksum",
        "trace_id",
        "step_id",
        "created_by",
        "artifact_type",
    ] {
        assert!(!p[k].is_null(), "register_artifact lacks {k}: {p}");
    }
    assert_eq!(p["path"], "t/s/f");
    assert_eq!(ev[1]["params"]["path"], "t/s/g");
    assert_eq!(ev[2]["params"]["artifact_type"], "draft");
    let after = cli(&["events", "--data", &data, "--since", &seqs[1].to_string()]);
    assert_eq!(after.lines().count(), 2);
    // The log shows the rename and the deletion too.
    let log = cli(&["log", "--data", &data, "t/s/g"]);
    assert!(
        log.contains("rename_artifact t/s/g") && log.contains("delete_artifact"),
        "{log}"
    );
}

#[test]
fn query_uses_indexes_on_a_catalog_of_100k_versions() {
    use artifactfs::catalog::{Catalog, Durability, NewVersion, Query, Target};
    let dir = tempfile::tempdir().unwrap();
    let mut cat = Catalog::open(&dir.path().join("catalog.db"), Durability::Process).unwrap();
    let ids: Vec<String> = (0..10_000).map(|i| format!("A{i:05}")).collect();
    cat.write(|tx| {
        for (i, id) in ids.iter().enumerate() {
            let path = format!("trace{}/step{}/file{i}.md", i % 100, i % 7);
            let mut rowid = None;
            for v in 0..10u64 {
                let sha = format!("{:064x}", i as u64 * 16 + v);
                let target = match rowid {
                    Some(r) => Target::Existing(r),
                    None => Target::New {
                        id,
                        owner: "o",
                        artifact_type: if i % 3 == 0 { "critique" } else { "draft" },
                        content_type: "text/markdown",
                        visibility: "trace",
                        retention: "forever",
                    },
                };
                let agent = format!("agent{}", (i + v as usize) % 20);
                let out = tx.commit(&NewVersion {
                    target,
                    path: Some(&path),
                    live: true,
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                    size: v,
                    sha256: &sha,
                    created_by: &agent,
                    created_at_ns: (i as i64) * 1_000_000 + v as i64,
                    mtime_ns: 0,
                    uri: "fs:///x".into(),
                })?;
                if let artifactfs::catalog::CommitOutcome::Committed { rowid: r, .. } = out {
                    rowid = Some(r);
                }
            }
        }
        Ok(())
    })
    .unwrap();
    let queries = [
        Query {
            agent: Some("agent7".into()),
            limit: 50,
            ..Default::default()
        },
        Query {
            trace: Some("trace42".into()),
            limit: 50,
            ..Default::default()
        },
        Query {
            trace: Some("trace42".into()),
            step: Some("step3".into()),
            limit: 50,
            ..Default::default()
        },
        Query {
            artifact_type: Some("critique".into()),
            limit: 50,
            ..Default::default()
        },
        Query {
            status: Some("uploading".into()),
            limit: 50,
            ..Default::default()
        },
        Query {
            agent: Some("agent7".into()),
            all_versions: true,
            limit: 50,
            ..Default::default()
        },
    ];
    for q in &queries {
        let plan = cat.explain(q).unwrap();
        let scans: Vec<&String> = plan
            .iter()
            .filter(|l| l.starts_with("SCAN") && !l.contains("USING"))
            .collect();
        assert!(scans.is_empty(), "{q:?} scans a table: {plan:?}");
        let t = std::time::Instant::now();
        let found = cat.query(q).unwrap();
        eprintln!(
            "{q:?}: {} rows in {:?}; plan {plan:?}",
            found.len(),
            t.elapsed()
        );
        assert!(!found.is_empty());
    }
    let found = cat.query(&queries[1]).unwrap();
    assert!(
        found
            .iter()
            .all(|m| m.trace_id == "trace42" && m.version == 10)
    );
    let found = cat.query(&queries[0]).unwrap();
    assert!(found.iter().all(|m| m.created_by == "agent7"));
}

#[test]
fn by_id_resolves_with_readlink_and_cat() {
    let m = Mount::new();
    m.sh("mkdir -p t/s/sub && echo hello > t/s/sub/r.txt");
    let id = m.versions("t/s/sub/r.txt")[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(m.sh(&format!("readlink .by-id/{id}")), "../t/s/sub/r.txt\n");
    assert_eq!(m.sh(&format!("cat .by-id/{id}")), "hello\n");
    // It follows renames, is hidden from the root listing, and refuses writes.
    m.sh("mv t/s/sub/r.txt t/s/moved.txt");
    assert_eq!(m.sh(&format!("readlink .by-id/{id}")), "../t/s/moved.txt\n");
    assert_eq!(m.sh("ls -a"), ".\n..\nt\n");
    assert!(!m.sh_out("touch .by-id/x").status.success());
    assert!(!m.sh_out("cat .by-id/NOSUCHID").status.success());
    m.sh("rm t/s/moved.txt");
    assert!(
        !m.sh_out(&format!("cat .by-id/{id}")).status.success(),
        "a deleted artifact has no current path"
    );
}

#[test]
fn config_file_sets_types_defaults_and_agents_and_hook_sees_commits() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("artifactfs.toml");
    let hook_out = tmp.path().join("hook.jsonl");
    std::fs::write(
        &cfg,
        format!(
            r#"
            on_commit = "cat >> {hook}"
            spool_max = "32M"
            [defaults]
            retention = "30d"
            visibility = "public"
            [[types]]
            glob = "critique*.md"
            type = "critique"
            [[types]]
            glob = "*/final/*"
            type = "final"
            [agents]
            0 = "root-agent"
            "#,
            hook = hook_out.display()
        ),
    )
    .unwrap();
    let m = Mount::with_args(&["--config", cfg.to_str().unwrap()]);
    m.sh("mkdir -p t/s t/final && echo c > t/s/critique-1.md && echo d > t/s/draft.md && echo f > t/final/report.md");
    let c = &m.versions("t/s/critique-1.md")[0];
    assert_eq!(c["artifact_type"], "critique");
    assert_eq!(c["retention"], "30d");
    assert_eq!(c["visibility"], "public");
    assert_eq!(c["created_by"], "root-agent");
    assert_eq!(m.versions("t/s/draft.md")[0]["artifact_type"], "artifact");
    assert_eq!(m.versions("t/final/report.md")[0]["artifact_type"], "final");
    let st: serde_json::Value = serde_json::from_str(&m.sh("cat .artifactfs/status")).unwrap();
    assert_eq!(st["spool_max"], 32 << 20, "spool_max from the config file");
    // grep over the critiques only, through query by type.
    let data = m.data.to_string_lossy().to_string();
    let q = cli(&["query", "--data", &data, "--type", "critique", "--json"]);
    assert_eq!(q.lines().count(), 1);
    // The hook got one register_artifact event per new version, off the write path.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let lines = loop {
        let text = std::fs::read_to_string(&hook_out).unwrap_or_default();
        if text.lines().count() >= 3 || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let ev: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(ev.len(), 3, "{lines}");
    assert!(ev.iter().all(|e| e["action"] == "register_artifact"));
    assert_eq!(ev[0]["params"]["path"], "t/s/critique-1.md");
}

#[test]
fn a_failing_hook_never_fails_a_write() {
    let m = Mount::with_args(&["--on-commit", "exit 3"]);
    m.sh("mkdir -p t/s && for i in 1 2 3; do echo $i > t/s/f$i; done");
    assert_eq!(m.version_count("t/s/f3"), 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !m.log().contains("on-commit hook failed") {
        assert!(
            std::time::Instant::now() < deadline,
            "no log line for the failing hook"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_bad_config_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("bad.toml");
    std::fs::write(&cfg, "[[types]]\nglob = \"*.md\"\ntype = \"Bad Type\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["mount", "--config", cfg.to_str().unwrap(), "/nonexistent"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("artifact type \"Bad Type\""),
        "{out:?}"
    );
    std::fs::write(&cfg, "retenshun = \"1d\"\n").unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let out = Command::new(BIN)
        .args(["mount", "--config", cfg.to_str().unwrap(), "--data"])
        .arg(tmp.path().join("d"))
        .arg(&mnt)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown field `retenshun`"),
        "{out:?}"
    );
}

#[test]
fn by_agent_and_by_type_views_show_what_each_made() {
    let mut m = Mount::with_args(&["--agent", "alice"]);
    m.sh("mkdir -p t/s && echo 'alice text' > t/s/a.md && echo 'critique: weak intro' > t/s/c1.md");
    m.sh("setfattr -n user.artifact.type -v critique t/s/c1.md");
    m.stop();
    m.set_args(&["--agent", "bob"]);
    m.start();
    m.sh("mkdir -p t/s2 && echo 'critique: too long' > t/s2/c2.md && echo 'bob text' > t/s2/b.md");
    m.sh("setfattr -n user.artifact.type -v critique t/s2/c2.md");
    assert_eq!(m.sh("ls .by-agent"), "alice\nbob\n");
    assert_eq!(
        m.sh("find .by-agent/alice -type f | sort"),
        ".by-agent/alice/t/s/a.md\n.by-agent/alice/t/s/c1.md\n"
    );
    assert_eq!(m.sh("cat .by-agent/bob/t/s2/b.md"), "bob text\n");
    assert!(!m.sh_out("cat .by-agent/bob/t/s/a.md").status.success());
    // grep -r over the critiques finds only critiques, from both agents.
    let out = m.sh("grep -r critique .by-type/critique | sort");
    assert_eq!(
        out,
        ".by-type/critique/t/s/c1.md:critique: weak intro\n.by-type/critique/t/s2/c2.md:critique: too long\n"
    );
    assert_eq!(m.sh("grep -rl text .by-type/critique || true"), "");
    // Views are read-only and hidden from the root listing.
    assert!(
        !m.sh_out("echo x > .by-type/critique/t/s/new.md")
            .status
            .success()
    );
    assert_eq!(m.sh("ls -a"), ".\n..\nt\n");
    // A view follows new writes.
    m.sh("echo 'critique: v2' > t/s2/c2.md");
    assert_eq!(m.sh("cat .by-type/critique/t/s2/c2.md"), "critique: v2\n");
    // Bob writes a new version of alice's file: it shows under bob now, in both
    // the view and its listing, like `query --agent`.
    m.sh("echo 'bob took over' > t/s/a.md");
    assert_eq!(m.sh("ls .by-agent/alice/t/s"), "c1.md\n");
    assert_eq!(m.sh("cat .by-agent/bob/t/s/a.md"), "bob took over\n");
    m.sh("echo 'bob again' > t/s/c1.md");
    assert_eq!(
        m.sh("ls .by-agent"),
        "bob\n",
        "alice made no current version any more"
    );
}

#[test]
fn at_view_shows_the_tree_of_that_instant() {
    fn now() -> String {
        std::thread::sleep(std::time::Duration::from_millis(20));
        let t = humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string();
        std::thread::sleep(std::time::Duration::from_millis(20));
        t
    }
    let m = Mount::new();
    let t0 = now();
    m.sh("mkdir -p t/s && echo one > t/s/f && echo keep > t/s/k");
    let t1 = now();
    m.sh("echo two > t/s/f && echo new > t/s/n");
    let t2 = now();
    m.sh("rm t/s/f && mv t/s/k t/s/k2");
    let t3 = now();
    assert!(
        !m.sh_out(&format!("ls '.at/{t0}'")).status.success(),
        "nothing existed at t0"
    );
    assert_eq!(
        m.sh(&format!(
            "cd '.at/{t1}' && find . -type f | sort && cat t/s/f"
        )),
        "./t/s/f\n./t/s/k\none\n"
    );
    assert_eq!(
        m.sh(&format!(
            "cd '.at/{t2}' && find . -type f | sort && cat t/s/f"
        )),
        "./t/s/f\n./t/s/k\n./t/s/n\ntwo\n"
    );
    assert_eq!(
        m.sh(&format!("cd '.at/{t3}' && find . -type f | sort")),
        "./t/s/k2\n./t/s/n\n"
    );
    // Point-in-time recovery with cp, no second mount.
    m.sh(&format!("cp '.at/{t2}/t/s/f' t/s/f"));
    assert_eq!(m.sh("cat t/s/f"), "two\n");
    // The same bytes as its version 2: the artifact is live again, with no new version.
    let v = m.versions("t/s/f");
    assert_eq!(v.len(), 2, "{v:?}");
    let data = m.data.to_string_lossy().to_string();
    assert!(!cli(&["log", "--data", &data, "t/s/f"]).contains("(deleted)"));
    let events = cli(&["events", "--data", &data]);
    assert!(
        events
            .lines()
            .last()
            .unwrap()
            .contains("\"restore_artifact\""),
        "{events}"
    );
    let t4 = now();
    assert_eq!(m.sh(&format!("cat '.at/{t4}/t/s/f'")), "two\n");
    assert!(!m.sh_out("ls .at/not-a-time").status.success());
    // A writer still open on a deleted file commits a version that is kept but
    // not in the tree, at any instant.
    m.sh("exec 3>t/s/ghost; rm t/s/ghost; echo boo >&3; exec 3>&-");
    let t5 = now();
    assert!(
        !m.sh_out(&format!("test -e '.at/{t5}/t/s/ghost'"))
            .status
            .success()
    );
    let ghost = m.versions("t/s/ghost");
    assert_eq!(
        ghost.len(),
        1,
        "nothing written and closed is lost: {ghost:?}"
    );
}

#[test]
fn events_follow_tails_new_events_and_show_takes_a_version() {
    use std::io::BufRead;
    let m = Mount::new();
    m.sh("mkdir -p t/s && echo 1 > t/s/f");
    let data = m.data.to_string_lossy().to_string();
    let mut child = Command::new(BIN)
        .args(["events", "--follow", "--since", "1", "--data", &data])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    m.sh("echo 2 > t/s/f");
    let line = lines.next().unwrap().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let e: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(e["seq"], 2);
    assert_eq!(e["action"], "register_artifact");
    assert_eq!(e["params"]["version"], 2);
    let v1 = cli(&["show", "t/s/f", "--data", &data, "--version", "1", "--json"]);
    let v1: serde_json::Value = serde_json::from_str(&v1).unwrap();
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["checksum"], format!("sha256:{}", sha256_hex(b"1\n")));
}
