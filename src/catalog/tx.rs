//! Writes of the catalog, inside one transaction (see [`Catalog::write`]).

use super::reads::current_manifest;
use super::*;
use rusqlite::Transaction;

/// Operations inside one transaction (see [`Catalog::write`]).
pub struct Tx<'a> {
    pub(super) tx: &'a Transaction<'a>,
}

impl Tx<'_> {
    pub fn insert_dir(&self, d: &DirRow) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT OR REPLACE INTO dirs(path, mode, uid, gid, mtime_ns) VALUES (?1,?2,?3,?4,?5)",
            )?
            .execute(params![d.path, d.mode, d.uid, d.gid, d.mtime_ns])?;
        Ok(())
    }

    /// Records (or replaces) a trace's owner and participant list.
    pub fn put_trace(&self, t: &TraceRow) -> Result<()> {
        let p = t
            .participants
            .as_ref()
            .map(|p| serde_json::to_string(p).expect("strings serialise"));
        self.tx
            .prepare_cached(
                "INSERT OR REPLACE INTO traces(name, owner, participants) VALUES (?1,?2,?3)",
            )?
            .execute(params![t.name, t.owner, p])?;
        Ok(())
    }

    pub fn delete_trace(&self, name: &str) -> Result<()> {
        self.tx
            .prepare_cached("DELETE FROM traces WHERE name = ?1")?
            .execute([name])?;
        Ok(())
    }

    pub fn rename_trace(&self, old: &str, new: &str) -> Result<()> {
        self.tx
            .prepare_cached("UPDATE traces SET name = ?2 WHERE name = ?1")?
            .execute([old, new])?;
        Ok(())
    }

    pub fn delete_dir(&self, path: &str) -> Result<()> {
        self.tx
            .prepare_cached("DELETE FROM dirs WHERE path = ?1")?
            .execute([path])?;
        Ok(())
    }

    pub fn set_dir_attrs(
        &self,
        path: &str,
        mode: u32,
        uid: u32,
        gid: u32,
        mtime_ns: i64,
    ) -> Result<()> {
        self.tx
            .prepare_cached("UPDATE dirs SET mode=?2, uid=?3, gid=?4, mtime_ns=?5 WHERE path=?1")?
            .execute(params![path, mode, uid, gid, mtime_ns])?;
        Ok(())
    }

    /// Moves a directory and everything live below it from `old` to `new`,
    /// re-deriving trace and step ids. Deleted artifacts keep the path they had.
    pub fn rename_tree(&self, old: &str, new: &str) -> Result<()> {
        let like = format!("{}/%", escape_like(old));
        let cut = old.len() as i64 + 1;
        self.tx.execute(
            "UPDATE dirs SET path = ?2 || substr(path, ?3) WHERE path = ?1 OR path LIKE ?4 ESCAPE '\\'",
            params![old, new, cut, like],
        )?;
        self.tx.execute(
            "UPDATE symlinks SET path = ?2 || substr(path, ?3) WHERE path LIKE ?4 ESCAPE '\\'",
            params![old, new, cut, like],
        )?;
        let moved: Vec<(i64, String)> = {
            let mut st = self.tx.prepare(
                "SELECT rowid, path FROM artifacts WHERE live = 1 AND path LIKE ?1 ESCAPE '\\'",
            )?;
            st.query_map([&like], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<std::result::Result<_, _>>()?
        };
        for (rowid, path) in moved {
            let np = format!("{new}{}", &path[old.len()..]);
            self.rename_artifact(rowid, &np)?;
        }
        Ok(())
    }

    pub fn rename_artifact(&self, rowid: i64, path: &str) -> Result<()> {
        let (t, s) = trace_step(path);
        self.tx
            .prepare_cached("UPDATE artifacts SET path=?2, trace_id=?3, step_id=?4 WHERE rowid=?1")?
            .execute(params![rowid, path, t, s])?;
        self.event_for(rowid, "rename_artifact")
    }

    pub fn set_live(&self, rowid: i64, live: bool) -> Result<()> {
        self.tx
            .prepare_cached("UPDATE artifacts SET live=?2 WHERE rowid=?1")?
            .execute(params![rowid, live])?;
        if !live {
            self.event_for(rowid, "delete_artifact")?;
        }
        Ok(())
    }

    pub fn set_artifact_attrs(
        &self,
        rowid: i64,
        mode: u32,
        uid: u32,
        gid: u32,
        mtime_ns: i64,
    ) -> Result<()> {
        self.tx
            .prepare_cached(
                "UPDATE artifacts SET mode=?2, uid=?3, gid=?4, mtime_ns=?5 WHERE rowid=?1",
            )?
            .execute(params![rowid, mode, uid, gid, mtime_ns])?;
        Ok(())
    }

    pub fn insert_symlink(&self, s: &SymlinkRow) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT OR REPLACE INTO symlinks(path, target, uid, gid, mtime_ns) VALUES (?1,?2,?3,?4,?5)",
            )?
            .execute(params![s.path, s.target, s.uid, s.gid, s.mtime_ns])?;
        Ok(())
    }

    pub fn delete_symlink(&self, path: &str) -> Result<()> {
        self.tx
            .prepare_cached("DELETE FROM symlinks WHERE path=?1")?
            .execute([path])?;
        Ok(())
    }

    pub fn rename_symlink(&self, old: &str, new: &str) -> Result<()> {
        self.tx
            .prepare_cached("UPDATE symlinks SET path=?2 WHERE path=?1")?
            .execute([old, new])?;
        Ok(())
    }

    pub fn set_status(&self, rowid: i64, version: u32, status: &str) -> Result<()> {
        self.tx
            .prepare_cached("UPDATE versions SET status=?3 WHERE artifact_rowid=?1 AND version=?2")?
            .execute(params![rowid, version, status])?;
        Ok(())
    }

    /// Records blob `sha256`'s chunk hashes (see `store::chunks`).
    pub fn put_chunks(&self, sha256: &str, chunk_size: u64, hashes: &[u8]) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT OR REPLACE INTO blob_chunks(sha256, chunk_size, hashes) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![sha256, chunk_size as i64, hashes])?;
        Ok(())
    }

    pub fn forget_chunks(&self, sha256: &str) -> Result<()> {
        self.tx
            .prepare_cached("DELETE FROM blob_chunks WHERE sha256 = ?1")?
            .execute([sha256])?;
        Ok(())
    }

    /// Records a version unless its bytes equal the artifact's current version.
    /// The version number is taken here, inside the transaction, so concurrent
    /// writers of one path get consecutive numbers in commit order.
    pub fn commit(&self, v: &NewVersion<'_>) -> Result<CommitOutcome> {
        let rowid =
            match v.target {
                Target::Existing(rowid) => rowid,
                Target::New {
                    id,
                    owner,
                    artifact_type,
                    content_type,
                    visibility,
                    retention,
                } => {
                    let path = v.path.unwrap_or_default();
                    let (trace_id, step_id) = trace_step(path);
                    self.tx
                    .prepare_cached(
                        "INSERT INTO artifacts(id, path, trace_id, step_id, live, mode, uid, gid,
                           mtime_ns, owner, created_at_ns, current_version, artifact_type,
                           content_type, visibility, retention)
                         VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,0,?12,?13,?14,?15)",
                    )?
                    .execute(params![
                        id, path, trace_id, step_id, v.live, v.mode, v.uid, v.gid, v.mtime_ns,
                        owner, v.created_at_ns, artifact_type, content_type, visibility, retention
                    ])?;
                    self.tx.last_insert_rowid()
                }
            };
        let a = self
            .tx
            .prepare_cached(&format!("SELECT {ART} FROM artifacts a WHERE a.rowid=?1"))?
            .query_row([rowid], |r| artifact_row(r, 0))?;
        let path = v.path.map_or(a.path.clone(), str::to_string);
        let (trace_id, step_id) = trace_step(&path);
        self.tx
            .prepare_cached(
                "UPDATE artifacts SET path=?2, trace_id=?3, step_id=?4, live=?5, mode=?6, uid=?7,
                   gid=?8 WHERE rowid=?1",
            )?
            .execute(params![
                rowid, path, trace_id, step_id, v.live, v.mode, v.uid, v.gid
            ])?;
        let current = a.current_version;
        if current > 0 {
            let same: Option<u64> = self
                .tx
                .prepare_cached(
                    "SELECT size_bytes FROM versions WHERE artifact_rowid=?1 AND version=?2 AND sha256=?3",
                )?
                .query_row(params![rowid, current, v.sha256], |r| r.get(0))
                .optional()?;
            if same == Some(v.size) {
                if !a.live && v.live {
                    // Re-created with the bytes it had: live again, no new version.
                    self.event_for(rowid, "restore_artifact")?;
                }
                return Ok(CommitOutcome::Unchanged {
                    rowid,
                    version: current,
                });
            }
        }
        let version = current + 1;
        let manifest = Manifest {
            id: a.id.clone(),
            version,
            trace_id: trace_id.to_string(),
            step_id: step_id.to_string(),
            path: path.clone(),
            created_by: v.created_by.to_string(),
            created_at: crate::timefmt::rfc3339(v.created_at_ns),
            artifact_type: a.artifact_type.clone(),
            content_type: a.content_type.clone(),
            uri: v.uri.clone(),
            size_bytes: v.size,
            checksum: checksum_field(v.sha256),
            status: "uploading".to_string(),
            retention: a.retention.clone(),
            supersedes: (current > 0).then(|| format!("{}@{current}", a.id)),
            owner: a.owner.clone(),
            visibility: a.visibility.clone(),
            labels: a.labels.clone(),
        };
        let json = serde_json::to_string(&manifest)?;
        self.tx
            .prepare_cached(
                "INSERT INTO versions(artifact_rowid, version, size_bytes, sha256, created_at_ns,
                   created_by, path, status, manifest)
                 VALUES (?1,?2,?3,?4,?5,?6,?7,'uploading',?8)",
            )?
            .execute(params![
                rowid,
                version,
                v.size,
                v.sha256,
                v.created_at_ns,
                v.created_by,
                path,
                json
            ])?;
        self.tx
            .prepare_cached("UPDATE artifacts SET current_version=?2, mtime_ns=?3 WHERE rowid=?1")?
            .execute(params![rowid, version, v.mtime_ns])?;
        let mut event = self.event("register_artifact", &manifest, v.created_at_ns)?;
        if !v.live {
            // Kept (nothing is lost) but not in the tree: say so in the event.
            self.tx
                .prepare_cached("UPDATE events SET body = json_set(body, '$.live', json('false')) WHERE seq = ?1")?
                .execute([event["seq"].as_i64().unwrap_or_default()])?;
            event["params"]["live"] = false.into();
        }
        Ok(CommitOutcome::Committed {
            rowid,
            version,
            manifest: Box::new(manifest),
            event,
        })
    }

    /// Appends an event in the seed's `register_artifact` shape: pointers and
    /// metadata, never payloads.
    /// Returns the event as `artifactfs events` prints it.
    pub fn event(&self, action: &str, m: &Manifest, at_ns: i64) -> Result<serde_json::Value> {
        let params = serde_json::json!({
            "artifact_id": m.id,
            "version": m.version,
            "path": m.path,
            "uri": m.uri,
            "size_bytes": m.size_bytes,
            "checksum": m.checksum,
            "trace_id": m.trace_id,
            "step_id": m.step_id,
            "created_by": m.created_by,
            "artifact_type": m.artifact_type,
        });
        self.tx
            .prepare_cached(
                "INSERT INTO events(at_ns, action, artifact_id, version, body) VALUES (?1,?2,?3,?4,?5)",
            )?
            .execute(params![at_ns, action, m.id, m.version, params.to_string()])?;
        Ok(event_line(
            self.tx.last_insert_rowid(),
            at_ns,
            action,
            params,
        ))
    }

    /// Sets one settable manifest field of an artifact (already validated).
    pub fn set_field(&self, rowid: i64, field: Field, value: &str) -> Result<()> {
        let col = match field {
            Field::Type => "artifact_type",
            Field::ContentType => "content_type",
            Field::Visibility => "visibility",
            Field::Retention => "retention",
        };
        self.tx
            .prepare_cached(&format!("UPDATE artifacts SET {col}=?2 WHERE rowid=?1"))?
            .execute(params![rowid, value])?;
        Ok(())
    }

    /// Appends an event describing the artifact as it is now.
    pub fn event_for(&self, rowid: i64, action: &str) -> Result<()> {
        match current_manifest(self.tx, rowid, None)? {
            Some(m) => self.event(action, &m, crate::timefmt::now_ns()).map(|_| ()),
            None => Ok(()),
        }
    }

    pub fn set_labels(&self, rowid: i64, labels: &BTreeMap<String, String>) -> Result<()> {
        self.tx
            .prepare_cached("UPDATE artifacts SET labels=?2 WHERE rowid=?1")?
            .execute(params![rowid, serde_json::to_string(labels)?])?;
        Ok(())
    }

    /// `reindex`: puts back an artifact with its recorded versions (manifests as
    /// they were written to the backend), regenerating its events. The newest
    /// manifest gives its path and metadata.
    pub fn restore_artifact(&self, versions: &[Manifest], live: bool) -> Result<()> {
        let Some(last) = versions.last() else {
            return Ok(());
        };
        let created_at = |m: &Manifest| {
            humantime::parse_rfc3339_weak(&m.created_at).map_or(0, crate::timefmt::to_ns)
        };
        self.tx
            .prepare_cached(
                "INSERT INTO artifacts(id, path, trace_id, step_id, live, mode, uid, gid, mtime_ns,
                   owner, created_at_ns, current_version, artifact_type, content_type, visibility,
                   retention, labels)
                 VALUES (?1,?2,?3,?4,?5,420,0,0,?6,?7,?8,?9,?10,?11,?12,?13,?14)",
            )?
            .execute(params![
                last.id,
                last.path,
                last.trace_id,
                last.step_id,
                live,
                created_at(last),
                last.owner,
                created_at(&versions[0]),
                last.version,
                last.artifact_type,
                last.content_type,
                last.visibility,
                last.retention,
                serde_json::to_string(&last.labels)?
            ])?;
        let rowid = self.tx.last_insert_rowid();
        for m in versions {
            let sha = m.checksum.trim_start_matches("sha256:");
            self.tx
                .prepare_cached(
                    "INSERT INTO versions(artifact_rowid, version, size_bytes, sha256, created_at_ns,
                       created_by, path, status, manifest)
                     VALUES (?1,?2,?3,?4,?5,?6,?7,'completed',?8)",
                )?
                .execute(params![
                    rowid,
                    m.version,
                    m.size_bytes,
                    sha,
                    created_at(m),
                    m.created_by,
                    m.path,
                    serde_json::to_string(m)?
                ])?;
            self.event("register_artifact", m, created_at(m))?;
        }
        if !live {
            self.event("delete_artifact", last, created_at(last))?;
        }
        // The directories the path needs.
        let mut dir = String::new();
        for comp in last
            .path
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map_or(&[][..], |(_, d)| d)
        {
            if !dir.is_empty() {
                dir.push('/');
            }
            dir.push_str(comp);
            self.tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO dirs(path, mode, uid, gid, mtime_ns) VALUES (?1, 493, 0, 0, ?2)",
                )?
                .execute(params![dir, created_at(last)])?;
        }
        Ok(())
    }
}
