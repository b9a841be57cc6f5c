//! Retention: which versions have outlived their artifact's `retention`, and
//! their removal (one `delete_version` event each, in the same transaction).

use super::reads::current_manifest;
use super::*;

/// A version past its retention.
#[derive(Clone, Debug)]
pub struct Expired {
    pub rowid: i64,
    pub artifact_id: String,
    pub path: String,
    pub version: u32,
    pub sha256: String,
    pub size: u64,
    pub created_at_ns: i64,
}

/// `30d`, `12h`, `2s` in nanoseconds; `None` for `forever` (or nonsense, which
/// `setfattr` never lets in: kept forever rather than deleted by mistake).
pub fn retention_ns(s: &str) -> Option<i64> {
    if s == "forever" || !valid_retention(s) {
        return None;
    }
    let (num, unit) = s.split_at(s.len() - 1);
    let n: i64 = num.parse().ok()?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return None,
    };
    n.checked_mul(secs)?.checked_mul(1_000_000_000)
}

impl Catalog {
    /// Every version older than its artifact's retention at `now_ns`, except the
    /// current version of a live artifact (an artifact in the tree keeps its
    /// newest bytes) and versions not yet `completed` in the backend (their
    /// upload is still owed; they expire once it is done).
    pub fn expired(&self, now_ns: i64) -> Result<Vec<Expired>> {
        let arts: Vec<(i64, String, String, bool, u32, String)> = self
            .conn
            .prepare_cached(
                "SELECT rowid, id, path, live, current_version, retention FROM artifacts
                 WHERE retention != 'forever'",
            )?
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })?
            .collect::<std::result::Result<_, _>>()?;
        let mut out = Vec::new();
        let mut st = self.conn.prepare_cached(
            "SELECT version, sha256, size_bytes, created_at_ns, path FROM versions
             WHERE artifact_rowid = ?1 AND created_at_ns < ?2 AND status = 'completed'
             ORDER BY version",
        )?;
        for (rowid, id, _path, live, current, retention) in arts {
            let Some(keep) = retention_ns(&retention) else {
                continue;
            };
            let rows = st.query_map(params![rowid, now_ns.saturating_sub(keep)], |r| {
                Ok(Expired {
                    rowid,
                    artifact_id: id.clone(),
                    version: r.get(0)?,
                    sha256: r.get(1)?,
                    size: r.get::<_, i64>(2)? as u64,
                    created_at_ns: r.get(3)?,
                    path: r.get(4)?,
                })
            })?;
            for e in rows {
                let e = e?;
                if live && e.version == current {
                    continue;
                }
                out.push(e);
            }
        }
        Ok(out)
    }

    /// How many versions use this blob.
    pub fn blob_references(&self, sha256: &str) -> Result<u64> {
        Ok(self
            .conn
            .prepare_cached("SELECT COUNT(*) FROM versions WHERE sha256 = ?1")?
            .query_row([sha256], |r| r.get::<_, i64>(0))? as u64)
    }

    /// Is this blob safe in the backend: used by at least one version, and every
    /// version using it `completed`? (The read cache may then drop the spool copy.)
    pub fn blob_in_backend(&self, sha256: &str) -> Result<bool> {
        let (n, done): (i64, i64) = self
            .conn
            .prepare_cached(
                "SELECT COUNT(*), COALESCE(SUM(status = 'completed'), 0) FROM versions
                 WHERE sha256 = ?1",
            )?
            .query_row([sha256], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(n > 0 && n == done)
    }

    /// What GC still has to delete from the backend (see `Tx::expire_version`).
    pub fn gc_pending(&self) -> Result<Vec<String>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT key FROM gc_pending ORDER BY key")?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
    }

    /// Does any version still use this blob? (Content dedup shares blobs.)
    pub fn blob_referenced(&self, sha256: &str) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM versions WHERE sha256 = ?1 LIMIT 1")?
            .query_row([sha256], |_| Ok(()))
            .optional()?
            .is_some())
    }
}

impl Tx<'_> {
    /// One `gc_pending` deletion done.
    pub fn gc_done(&self, key: &str) -> Result<()> {
        self.tx
            .prepare_cached("DELETE FROM gc_pending WHERE key = ?1")?
            .execute([key])?;
        Ok(())
    }

    /// Removes one expired version and records a `delete_version` event with its
    /// manifest, and the backend deletions it makes owed (`gc_pending`). A
    /// deleted artifact left with no versions goes entirely; one with versions
    /// left points at its newest remaining one.
    pub fn expire_version(&self, e: &Expired, at_ns: i64) -> Result<()> {
        if let Some(m) = current_manifest(self.tx, e.rowid, Some(e.version))? {
            self.event("delete_version", &m, at_ns)?;
        }
        self.tx
            .prepare_cached("DELETE FROM versions WHERE artifact_rowid = ?1 AND version = ?2")?
            .execute(params![e.rowid, e.version])?;
        let mut pending = self
            .tx
            .prepare_cached("INSERT OR IGNORE INTO gc_pending(key) VALUES (?1)")?;
        pending.execute([format!("blob:{}", e.sha256)])?;
        pending.execute([format!("sidecar:{}:{}", e.artifact_id, e.version)])?;
        let newest: Option<u32> = self
            .tx
            .prepare_cached("SELECT MAX(version) FROM versions WHERE artifact_rowid = ?1")?
            .query_row([e.rowid], |r| r.get(0))?;
        match newest {
            None => {
                self.tx
                    .prepare_cached("DELETE FROM artifacts WHERE rowid = ?1 AND live = 0")?
                    .execute([e.rowid])?;
            }
            Some(n) => {
                self.tx
                    .prepare_cached(
                        "UPDATE artifacts SET current_version = ?2
                         WHERE rowid = ?1 AND live = 0 AND current_version > ?2",
                    )?
                    .execute(params![e.rowid, n])?;
            }
        }
        Ok(())
    }
}
