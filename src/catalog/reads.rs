//! Read queries of the catalog: manifests, `query`, the views and the event log.

use super::*;

/// What `artifactfs query` filters on; `None` is "any".
#[derive(Default, Debug, Clone)]
pub struct Query {
    pub trace: Option<String>,
    pub step: Option<String>,
    pub agent: Option<String>,
    pub artifact_type: Option<String>,
    pub status: Option<String>,
    pub since_ns: Option<i64>,
    pub until_ns: Option<i64>,
    pub name_glob: Option<String>,
    /// Every version, not only the current version of live artifacts.
    pub all_versions: bool,
    pub limit: u32,
    /// Only what this agent may know of: another owner's private artifacts are
    /// left out before the limit applies. `None`: everything.
    pub viewer: Option<String>,
}

/// Which artifacts a `.by-*` view shows.
#[derive(Clone, Copy, Debug)]
pub enum ViewBy<'a> {
    Agent(&'a str),
    Type(&'a str),
}

/// One file of a view: where it appears and which version it reads.
#[derive(Clone, Debug)]
pub struct ViewEntry {
    pub path: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub owner: String,
    pub visibility: String,
    pub version: VersionRow,
}

#[derive(Debug, Clone)]
pub struct EventRow {
    pub seq: i64,
    pub at_ns: i64,
    pub action: String,
    pub params: serde_json::Value,
}

impl Catalog {
    /// The manifest of an artifact's `version` (default: current). The current
    /// version shows the artifact's metadata as it is now (type, labels, path…);
    /// an older one shows what was recorded when it was committed. Status is
    /// always the live upload status.
    pub fn manifest(&self, rowid: i64, version: Option<u32>) -> Result<Option<Manifest>> {
        current_manifest(&self.conn, rowid, version)
    }

    /// The statement `query` runs, for `EXPLAIN QUERY PLAN` in tests.
    pub fn query_sql(q: &Query) -> (String, Vec<rusqlite::types::Value>) {
        use rusqlite::types::Value;
        let mut sql = format!(
            "SELECT {VER} FROM versions v JOIN artifacts a ON a.rowid = v.artifact_rowid WHERE 1=1"
        );
        let mut args: Vec<Value> = Vec::new();
        let mut arg = |sql: &mut String, cond: &str, v: Value| {
            args.push(v);
            sql.push_str(&cond.replace('?', &format!("?{}", args.len())));
        };
        if !q.all_versions {
            sql.push_str(" AND a.live = 1 AND v.version = a.current_version");
        }
        if let Some(t) = &q.trace {
            arg(&mut sql, " AND a.trace_id = ?", Value::Text(t.clone()));
        }
        if let Some(st) = &q.step {
            arg(&mut sql, " AND a.step_id = ?", Value::Text(st.clone()));
        }
        if let Some(ag) = &q.agent {
            arg(&mut sql, " AND v.created_by = ?", Value::Text(ag.clone()));
        }
        if let Some(ty) = &q.artifact_type {
            arg(
                &mut sql,
                " AND a.artifact_type = ?",
                Value::Text(ty.clone()),
            );
        }
        if let Some(st) = &q.status {
            arg(&mut sql, " AND v.status = ?", Value::Text(st.clone()));
        }
        if let Some(t) = q.since_ns {
            arg(&mut sql, " AND v.created_at_ns >= ?", Value::Integer(t));
        }
        if let Some(t) = q.until_ns {
            arg(&mut sql, " AND v.created_at_ns < ?", Value::Integer(t));
        }
        if let Some(g) = &q.name_glob {
            // Matches the file name, or the whole path when the glob has a '/'.
            let col = if g.contains('/') {
                "a.path"
            } else {
                "substr(a.path, length(rtrim(a.path, replace(a.path, '/', ''))) + 1)"
            };
            arg(
                &mut sql,
                &format!(" AND {col} GLOB ?"),
                Value::Text(g.clone()),
            );
        }
        if let Some(v) = &q.viewer {
            // The rule of `fs::access::may_know`, in SQL.
            arg(
                &mut sql,
                " AND (a.visibility != 'private' OR a.owner = ?)",
                Value::Text(v.clone()),
            );
        }
        sql.push_str(" ORDER BY v.created_at_ns DESC, v.artifact_rowid, v.version");
        arg(
            &mut sql,
            " LIMIT ?",
            Value::Integer(i64::from(q.limit.max(1))),
        );
        (sql, args)
    }

    pub fn query(&self, q: &Query) -> Result<Vec<Manifest>> {
        let (sql, args) = Catalog::query_sql(q);
        let mut st = self.conn.prepare(&sql)?;
        let rows = st.query_map(rusqlite::params_from_iter(args), |r| version_row(r, 0))?;
        let mut out = Vec::new();
        for v in rows {
            let v = v?;
            if let Some(m) = self.manifest(v.artifact_rowid, Some(v.version))? {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// The current versions of live artifacts made by an agent (like `query
    /// --agent`) or of a type, for the `.by-agent` and `.by-type` views.
    pub fn view(&self, by: ViewBy<'_>) -> Result<Vec<ViewEntry>> {
        let (col, val) = match by {
            ViewBy::Agent(o) => ("v.created_by", o),
            ViewBy::Type(t) => ("a.artifact_type", t),
        };
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT a.path, a.mode, a.uid, a.gid, a.owner, a.visibility, {VER} FROM artifacts a JOIN versions v
               ON v.artifact_rowid = a.rowid AND v.version = a.current_version
             WHERE a.live = 1 AND {col} = ?1"
        ))?;
        let rows = st.query_map([val], |r| {
            Ok(ViewEntry {
                path: r.get(0)?,
                mode: r.get(1)?,
                uid: r.get(2)?,
                gid: r.get(3)?,
                owner: r.get(4)?,
                visibility: r.get(5)?,
                version: version_row(r, 6)?,
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Distinct owners or types of live artifacts (the listing of `.by-agent`,
    /// `.by-type`).
    pub fn view_keys(&self, agents: bool) -> Result<Vec<String>> {
        let col = if agents {
            "v.created_by"
        } else {
            "a.artifact_type"
        };
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT DISTINCT {col} FROM artifacts a JOIN versions v
               ON v.artifact_rowid = a.rowid AND v.version = a.current_version
             WHERE a.live = 1 ORDER BY 1"
        ))?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// The tree as it was at `at_ns`: for every artifact its latest event at or
    /// before then decides whether it existed and under which path, and its
    /// newest version created by then is the content.
    pub fn view_at(&self, at_ns: i64) -> Result<Vec<ViewEntry>> {
        let mut st = self.conn.prepare_cached(
            "SELECT e.artifact_id, e.action, e.body FROM events e
               JOIN (SELECT artifact_id, MAX(seq) AS seq FROM events
                     WHERE at_ns <= ?1 AND action != 'delete_version'
                     GROUP BY artifact_id) last ON e.seq = last.seq",
        )?;
        let rows: Vec<(String, String, String)> = st
            .query_map([at_ns], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<std::result::Result<_, _>>()?;
        let mut out = Vec::new();
        for (id, action, body) in rows {
            if action == "delete_artifact" {
                continue;
            }
            let params: serde_json::Value = serde_json::from_str(&body)?;
            // A version committed by a writer still open on a deleted file.
            if params["live"] == false {
                continue;
            }
            let Some(path) = params["path"].as_str() else {
                continue;
            };
            let Some(a) = self.artifact_by_id(&id)? else {
                continue;
            };
            let v = self
                .conn
                .prepare_cached(&format!(
                    "SELECT {VER} FROM versions v WHERE v.artifact_rowid = ?1 AND v.created_at_ns <= ?2
                     ORDER BY v.version DESC LIMIT 1"
                ))?
                .query_row(params![a.rowid, at_ns], |r| version_row(r, 0))
                .optional()?;
            // The version current then was removed by retention: nothing to show.
            let then = params["version"].as_u64().unwrap_or(0);
            if let Some(version) = v.filter(|v| u64::from(v.version) >= then) {
                out.push(ViewEntry {
                    path: path.to_string(),
                    mode: a.mode,
                    uid: a.uid,
                    gid: a.gid,
                    owner: a.owner,
                    visibility: a.visibility,
                    version,
                });
            }
        }
        Ok(out)
    }

    /// Every version with its artifact id, for `verify` and `reindex` (a scan, by
    /// design: they look at everything).
    pub fn every_version(&self) -> Result<Vec<(String, VersionRow)>> {
        let mut st = self.conn.prepare(&format!(
            "SELECT a.id, {VER} FROM versions v JOIN artifacts a ON a.rowid = v.artifact_rowid
             ORDER BY v.artifact_rowid, v.version"
        ))?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, version_row(r, 1)?)))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Versions not yet in the backend: (uploading, failed, oldest uploading
    /// created_at_ns), for `sync` and `status`.
    /// A version's sidecar as it should read in the backend now: its manifest
    /// (for the current version, with the artifact's present path and
    /// metadata), whether the artifact is live, and status `completed` (it is
    /// written once the blob is there). `None` when the version is gone.
    pub fn sidecar(&self, rowid: i64, version: u32) -> Result<Option<serde_json::Value>> {
        let Some(a) = self.artifact(rowid)? else {
            return Ok(None);
        };
        let Some(m) = self.manifest(rowid, Some(version))? else {
            return Ok(None);
        };
        let mut v = serde_json::to_value(&m)?;
        v["live"] = a.live.into();
        v["status"] = "completed".into();
        Ok(Some(v))
    }

    /// Blob `sha256`'s chunk size and concatenated chunk hashes, if recorded.
    pub fn chunks(&self, sha256: &str) -> Result<Option<(u64, Vec<u8>)>> {
        Ok(self
            .conn
            .prepare_cached("SELECT chunk_size, hashes FROM blob_chunks WHERE sha256 = ?1")?
            .query_row([sha256], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
            .optional()?)
    }

    pub fn upload_summary(&self) -> Result<(u64, u64, Option<i64>)> {
        let mut st = self.conn.prepare_cached(
            "SELECT status, COUNT(*), MIN(created_at_ns) FROM versions
             WHERE status != 'completed' GROUP BY status",
        )?;
        let mut rows = st.query([])?;
        let (mut uploading, mut failed, mut oldest) = (0, 0, None);
        while let Some(r) = rows.next()? {
            match r.get::<_, String>(0)?.as_str() {
                "failed" => failed = r.get(1)?,
                _ => {
                    uploading += r.get::<_, u64>(1)?;
                    oldest = r.get(2)?;
                }
            }
        }
        Ok((uploading, failed, oldest))
    }

    /// `EXPLAIN QUERY PLAN` of the query, one line per step.
    pub fn explain(&self, q: &Query) -> Result<Vec<String>> {
        let (sql, args) = Catalog::query_sql(q);
        let mut st = self.conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
        let rows = st.query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    pub fn events_since(&self, seq: i64, limit: u32) -> Result<Vec<EventRow>> {
        let mut st = self.conn.prepare_cached(
            "SELECT seq, at_ns, action, body FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        event_rows(st.query(params![seq, limit])?)
    }

    /// Events of one artifact, oldest first (its history: commits, renames, deletes).
    pub fn events_of(&self, artifact_id: &str) -> Result<Vec<EventRow>> {
        let mut st = self.conn.prepare_cached(
            "SELECT seq, at_ns, action, body FROM events WHERE artifact_id = ?1 ORDER BY seq",
        )?;
        event_rows(st.query([artifact_id])?)
    }
}

fn event_rows(mut rows: rusqlite::Rows<'_>) -> Result<Vec<EventRow>> {
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let body: String = r.get(3)?;
        out.push(EventRow {
            seq: r.get(0)?,
            at_ns: r.get(1)?,
            action: r.get(2)?,
            params: serde_json::from_str(&body)?,
        });
    }
    Ok(out)
}

/// One line of `artifactfs events`.
pub fn event_line(
    seq: i64,
    at_ns: i64,
    action: &str,
    params: serde_json::Value,
) -> serde_json::Value {
    serde_json::json!({
        "seq": seq,
        "at": crate::timefmt::rfc3339(at_ns),
        "action": action,
        "params": params,
    })
}

pub(super) fn current_manifest(
    conn: &Connection,
    rowid: i64,
    version: Option<u32>,
) -> Result<Option<Manifest>> {
    let Some(a) = conn
        .prepare_cached(&format!("SELECT {ART} FROM artifacts a WHERE a.rowid=?1"))?
        .query_row([rowid], |r| artifact_row(r, 0))
        .optional()?
    else {
        return Ok(None);
    };
    let n = version.unwrap_or(a.current_version);
    let Some((json, status)) = conn
        .prepare_cached(
            "SELECT manifest, status FROM versions WHERE artifact_rowid=?1 AND version=?2",
        )?
        .query_row(params![rowid, n], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .optional()?
    else {
        return Ok(None);
    };
    let mut m: Manifest = serde_json::from_str(&json)?;
    m.status = status;
    if n == a.current_version {
        let (t, s) = trace_step(&a.path);
        m.trace_id = t.to_string();
        m.step_id = s.to_string();
        m.path = a.path;
        m.artifact_type = a.artifact_type;
        m.content_type = a.content_type;
        m.visibility = a.visibility;
        m.retention = a.retention;
        m.labels = a.labels;
    }
    Ok(Some(m))
}
