//! Catalog unit tests.
use super::*;

fn new_version<'a>(target: Target<'a>, sha: &'a str, size: u64) -> NewVersion<'a> {
    NewVersion {
        target,
        path: Some("t/s/f"),
        live: true,
        mode: 0o644,
        uid: 0,
        gid: 0,
        size,
        sha256: sha,
        created_by: "u",
        created_at_ns: 1,
        mtime_ns: 1,
        uri: "fs://x".into(),
    }
}

#[test]
fn commit_numbers_versions_and_skips_identical_content() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Catalog::open(&dir.path().join("c.db"), Durability::Process).unwrap();
    let t = Target::New {
        id: "A",
        owner: "u",
        artifact_type: "artifact",
        content_type: "text/plain",
        visibility: "trace",
        retention: "forever",
    };
    let out = c.write(|tx| tx.commit(&new_version(t, "aa", 1))).unwrap();
    let rowid = match out {
        CommitOutcome::Committed {
            rowid,
            version,
            ref manifest,
            ref event,
        } => {
            assert_eq!(version, 1);
            assert_eq!(event["action"], "register_artifact");
            assert_eq!(event["params"]["checksum"], "sha256:aa");
            assert_eq!(manifest.supersedes, None);
            assert_eq!(manifest.trace_id, "t");
            assert_eq!(manifest.step_id, "s");
            rowid
        }
        other => panic!("{other:?}"),
    };
    let out = c
        .write(|tx| tx.commit(&new_version(Target::Existing(rowid), "aa", 1)))
        .unwrap();
    assert!(
        matches!(out, CommitOutcome::Unchanged { version: 1, .. }),
        "{out:?}"
    );
    let out = c
        .write(|tx| tx.commit(&new_version(Target::Existing(rowid), "bb", 2)))
        .unwrap();
    match out {
        CommitOutcome::Committed {
            version, manifest, ..
        } => {
            assert_eq!(version, 2);
            assert_eq!(manifest.supersedes.as_deref(), Some("A@1"));
            assert_eq!(manifest.checksum, "sha256:bb");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.versions(rowid).unwrap().len(), 2);
    assert_eq!(c.pending_uploads().unwrap().len(), 2);
    c.set_status(rowid, 1, "completed", None).unwrap();
    assert_eq!(c.pending_uploads().unwrap().len(), 1);
}

#[test]
fn rename_tree_moves_live_artifacts_and_rederives_ids() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Catalog::open(&dir.path().join("c.db"), Durability::Process).unwrap();
    let t = Target::New {
        id: "A",
        owner: "u",
        artifact_type: "artifact",
        content_type: "text/plain",
        visibility: "trace",
        retention: "forever",
    };
    c.write(|tx| {
        tx.insert_dir(&DirRow {
            path: "t".into(),
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
        })?;
        tx.insert_dir(&DirRow {
            path: "t/s".into(),
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
        })?;
        tx.commit(&new_version(t, "aa", 1))
    })
    .unwrap();
    c.write(|tx| tx.rename_tree("t/s", "t/s2")).unwrap();
    let a = c.artifact_by_id("A").unwrap().unwrap();
    assert_eq!(a.path, "t/s2/f");
    let snap = c.load().unwrap();
    let mut dirs: Vec<_> = snap.dirs.iter().map(|d| d.path.clone()).collect();
    dirs.sort();
    assert_eq!(dirs, vec!["t", "t/s2"]);
}
