//! The catalog: SQLite holds the namespace (directories, live artifacts, symlinks),
//! every version with its manifest, and upload status. Only this module writes SQL.
//!
//! Paths are stored relative to the mount root, `/`-separated, without a leading
//! slash (`trace/step/report.json`). The first component is the trace id, the second
//! the step id.

mod manifest;
mod schema;

pub use manifest::{
    Manifest, VISIBILITIES, checksum_field, default_retention, default_type, default_visibility,
    guess_content_type, valid_retention,
};

use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, params};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

#[derive(Debug)]
pub struct CatalogError(pub String);

impl fmt::Display for CatalogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "catalog: {}", self.0)
    }
}
impl std::error::Error for CatalogError {}
impl From<rusqlite::Error> for CatalogError {
    fn from(e: rusqlite::Error) -> Self {
        CatalogError(e.to_string())
    }
}
impl From<serde_json::Error> for CatalogError {
    fn from(e: serde_json::Error) -> Self {
        CatalogError(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, CatalogError>;

/// How hard a commit is pushed to disk before `close()` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// fsync of staging data and SQLite `synchronous=FULL`: survives power loss.
    Full,
    /// Survives a daemon crash, not a power loss.
    Process,
}

#[derive(Clone, Debug)]
pub struct DirRow {
    pub path: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i64,
}

#[derive(Clone, Debug)]
pub struct SymlinkRow {
    pub path: String,
    pub target: String,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i64,
}

#[derive(Clone, Debug)]
pub struct ArtifactRow {
    pub rowid: i64,
    pub id: String,
    pub path: String,
    pub live: bool,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i64,
    pub owner: String,
    pub current_version: u32,
    pub artifact_type: String,
    pub content_type: String,
    pub visibility: String,
    pub retention: String,
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug)]
pub struct VersionRow {
    pub artifact_rowid: i64,
    pub version: u32,
    pub size: u64,
    pub sha256: String,
    pub created_at_ns: i64,
    pub created_by: String,
    pub path: String,
    pub status: String,
    pub manifest: String,
}

/// A live artifact with its current version, as loaded at mount time.
#[derive(Clone, Debug)]
pub struct LiveArtifact {
    pub artifact: ArtifactRow,
    pub current: Option<VersionRow>,
}

/// Everything the filesystem needs in memory to serve lookups without SQL.
pub struct Snapshot {
    pub dirs: Vec<DirRow>,
    pub artifacts: Vec<LiveArtifact>,
    pub symlinks: Vec<SymlinkRow>,
}

/// Which artifact a commit is for.
pub enum Target<'a> {
    Existing(i64),
    New {
        id: &'a str,
        owner: &'a str,
        artifact_type: &'a str,
        content_type: &'a str,
        visibility: &'a str,
        retention: &'a str,
    },
}

/// The manifest fields `setfattr` may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Type,
    ContentType,
    Visibility,
    Retention,
}

pub struct NewVersion<'a> {
    pub target: Target<'a>,
    /// Where the artifact lives now; `None` keeps the catalog's path (a writer
    /// still open on an artifact whose name is gone).
    pub path: Option<&'a str>,
    pub live: bool,
    /// Attributes the artifact has now (a re-created artifact takes the new ones).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub sha256: &'a str,
    pub created_by: &'a str,
    pub created_at_ns: i64,
    pub mtime_ns: i64,
    pub uri: String,
}

#[derive(Debug)]
pub enum CommitOutcome {
    /// A new version row was written.
    Committed {
        rowid: i64,
        version: u32,
        manifest: Box<Manifest>,
        /// The `register_artifact` event, as `artifactfs events` prints it.
        event: serde_json::Value,
    },
    /// The content equals the current version: nothing was written.
    Unchanged { rowid: i64, version: u32 },
}

pub struct Catalog {
    conn: Connection,
}

/// The trace and step a path belongs to (empty strings above step level).
pub fn trace_step(path: &str) -> (&str, &str) {
    let mut it = path.splitn(3, '/');
    (it.next().unwrap_or(""), it.next().unwrap_or(""))
}

impl Catalog {
    /// Opens (creating and migrating when needed) the catalog for the daemon.
    pub fn open(path: &Path, durability: Durability) -> Result<Catalog> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        let sync = match durability {
            Durability::Full => "FULL",
            Durability::Process => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", sync)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let mut cat = Catalog { conn };
        cat.migrate()?;
        Ok(cat)
    }

    /// Opens an existing catalog for reading only, as the CLI does while a daemon
    /// may be writing it.
    pub fn open_read_only(path: &Path) -> Result<Catalog> {
        if !path.exists() {
            return Err(CatalogError(format!("no catalog at {}", path.display())));
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let have: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if have != schema::MIGRATIONS.len() {
            return Err(CatalogError(format!(
                "catalog {} has schema version {have}, this artifactfs reads version {}: mount it once with this version to upgrade it",
                path.display(),
                schema::MIGRATIONS.len()
            )));
        }
        Ok(Catalog { conn })
    }

    fn migrate(&mut self) -> Result<()> {
        let have: usize = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, sql) in schema::MIGRATIONS.iter().enumerate().skip(have) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i + 1)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// Runs `f` in one IMMEDIATE transaction: all of it lands, or none of it.
    pub fn write<T>(&mut self, f: impl FnOnce(&Tx<'_>) -> Result<T>) -> Result<T> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let out = f(&Tx { tx: &tx })?;
        tx.commit()?;
        Ok(out)
    }

    pub fn load(&self) -> Result<Snapshot> {
        let mut dirs = Vec::new();
        let mut st = self
            .conn
            .prepare("SELECT path, mode, uid, gid, mtime_ns FROM dirs")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            dirs.push(DirRow {
                path: r.get(0)?,
                mode: r.get(1)?,
                uid: r.get(2)?,
                gid: r.get(3)?,
                mtime_ns: r.get(4)?,
            });
        }
        let mut artifacts = Vec::new();
        let mut st = self.conn.prepare(&format!(
            "SELECT {ART}, {VER} FROM artifacts a LEFT JOIN versions v
               ON v.artifact_rowid = a.rowid AND v.version = a.current_version
             WHERE a.live = 1"
        ))?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let artifact = artifact_row(r, 0)?;
            let current = if r.get::<_, Option<i64>>(ART_COLS)?.is_some() {
                Some(version_row(r, ART_COLS)?)
            } else {
                None
            };
            artifacts.push(LiveArtifact { artifact, current });
        }
        let mut symlinks = Vec::new();
        let mut st = self
            .conn
            .prepare("SELECT path, target, uid, gid, mtime_ns FROM symlinks")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            symlinks.push(SymlinkRow {
                path: r.get(0)?,
                target: r.get(1)?,
                uid: r.get(2)?,
                gid: r.get(3)?,
                mtime_ns: r.get(4)?,
            });
        }
        Ok(Snapshot {
            dirs,
            artifacts,
            symlinks,
        })
    }

    /// The artifact that owns `path`: the live one, else the most recently deleted.
    pub fn artifact_at(&self, path: &str) -> Result<Option<ArtifactRow>> {
        Ok(self
            .conn
            .query_row(
                &format!(
                    "SELECT {ART} FROM artifacts a WHERE a.path = ?1
                     ORDER BY a.live DESC, a.rowid DESC LIMIT 1"
                ),
                [path],
                |r| artifact_row(r, 0),
            )
            .optional()?)
    }

    pub fn artifact_by_id(&self, id: &str) -> Result<Option<ArtifactRow>> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {ART} FROM artifacts a WHERE a.id = ?1"),
                [id],
                |r| artifact_row(r, 0),
            )
            .optional()?)
    }

    /// Every version of an artifact, oldest first.
    pub fn versions(&self, rowid: i64) -> Result<Vec<VersionRow>> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {VER} FROM versions v WHERE v.artifact_rowid = ?1 ORDER BY v.version"
        ))?;
        let rows = st.query_map([rowid], |r| version_row(r, 0))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    pub fn version(&self, rowid: i64, version: u32) -> Result<Option<VersionRow>> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {VER} FROM versions v WHERE v.artifact_rowid = ?1 AND v.version = ?2"
        ))?;
        Ok(st
            .query_row(params![rowid, version], |r| version_row(r, 0))
            .optional()?)
    }

    /// Versions whose bytes have not reached the backend yet, oldest first.
    pub fn pending_uploads(&self) -> Result<Vec<VersionRow>> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {VER} FROM versions v WHERE v.status != 'completed' ORDER BY v.created_at_ns"
        ))?;
        let rows = st.query_map([], |r| version_row(r, 0))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    pub fn set_status(&mut self, rowid: i64, version: u32, status: &str) -> Result<()> {
        self.write(|tx| tx.set_status(rowid, version, status))
    }
}

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
}

/// Which artifacts a `.by-*` view shows.
#[derive(Clone, Copy, Debug)]
pub enum ViewBy<'a> {
    Owner(&'a str),
    Type(&'a str),
}

/// One file of a view: where it appears and which version it reads.
#[derive(Clone, Debug)]
pub struct ViewEntry {
    pub path: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
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

    /// The current versions of live artifacts owned by `owner` or of type
    /// `artifact_type`, for the `.by-agent` and `.by-type` views.
    pub fn view(&self, by: ViewBy<'_>) -> Result<Vec<ViewEntry>> {
        let (col, val) = match by {
            ViewBy::Owner(o) => ("a.owner", o),
            ViewBy::Type(t) => ("a.artifact_type", t),
        };
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT a.path, a.mode, a.uid, a.gid, {VER} FROM artifacts a JOIN versions v
               ON v.artifact_rowid = a.rowid AND v.version = a.current_version
             WHERE a.live = 1 AND {col} = ?1"
        ))?;
        let rows = st.query_map([val], |r| {
            Ok(ViewEntry {
                path: r.get(0)?,
                mode: r.get(1)?,
                uid: r.get(2)?,
                gid: r.get(3)?,
                version: version_row(r, 4)?,
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Distinct owners or types of live artifacts (the listing of `.by-agent`,
    /// `.by-type`).
    pub fn view_keys(&self, owners: bool) -> Result<Vec<String>> {
        let col = if owners { "owner" } else { "artifact_type" };
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT DISTINCT {col} FROM artifacts WHERE live = 1 ORDER BY 1"
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
               JOIN (SELECT artifact_id, MAX(seq) AS seq FROM events WHERE at_ns <= ?1
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
            if let Some(version) = v {
                out.push(ViewEntry {
                    path: path.to_string(),
                    mode: a.mode,
                    uid: a.uid,
                    gid: a.gid,
                    version,
                });
            }
        }
        Ok(out)
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
        let rows = st.query_map(params![seq, limit], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, String>(3)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, at_ns, action, body) = row?;
            out.push(EventRow {
                seq,
                at_ns,
                action,
                params: serde_json::from_str(&body)?,
            });
        }
        Ok(out)
    }

    /// Events of one artifact, oldest first (its history: commits, renames, deletes).
    pub fn events_of(&self, artifact_id: &str) -> Result<Vec<EventRow>> {
        let mut st = self.conn.prepare_cached(
            "SELECT seq, at_ns, action, body FROM events WHERE artifact_id = ?1 ORDER BY seq",
        )?;
        let rows = st.query_map([artifact_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, String>(3)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, at_ns, action, body) = row?;
            out.push(EventRow {
                seq,
                at_ns,
                action,
                params: serde_json::from_str(&body)?,
            });
        }
        Ok(out)
    }
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

fn current_manifest(
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

/// Operations inside one transaction (see [`Catalog::write`]).
pub struct Tx<'a> {
    tx: &'a Transaction<'a>,
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
        let event = self.event("register_artifact", &manifest, v.created_at_ns)?;
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
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

const ART: &str = "a.rowid, a.id, a.path, a.live, a.mode, a.uid, a.gid, a.mtime_ns, a.owner,
    a.current_version, a.artifact_type, a.content_type, a.visibility, a.retention, a.labels";
const ART_COLS: usize = 15;
const VER: &str = "v.artifact_rowid, v.version, v.size_bytes, v.sha256, v.created_at_ns, v.created_by, v.path, v.status, v.manifest";

fn artifact_row(r: &rusqlite::Row<'_>, o: usize) -> rusqlite::Result<ArtifactRow> {
    Ok(ArtifactRow {
        rowid: r.get(o)?,
        id: r.get(o + 1)?,
        path: r.get(o + 2)?,
        live: r.get(o + 3)?,
        mode: r.get(o + 4)?,
        uid: r.get(o + 5)?,
        gid: r.get(o + 6)?,
        mtime_ns: r.get(o + 7)?,
        owner: r.get(o + 8)?,
        current_version: r.get(o + 9)?,
        artifact_type: r.get(o + 10)?,
        content_type: r.get(o + 11)?,
        visibility: r.get(o + 12)?,
        retention: r.get(o + 13)?,
        labels: serde_json::from_str(&r.get::<_, String>(o + 14)?).unwrap_or_default(),
    })
}

fn version_row(r: &rusqlite::Row<'_>, o: usize) -> rusqlite::Result<VersionRow> {
    Ok(VersionRow {
        artifact_rowid: r.get(o)?,
        version: r.get(o + 1)?,
        size: r.get(o + 2)?,
        sha256: r.get(o + 3)?,
        created_at_ns: r.get(o + 4)?,
        created_by: r.get(o + 5)?,
        path: r.get(o + 6)?,
        status: r.get(o + 7)?,
        manifest: r.get(o + 8)?,
    })
}

#[cfg(test)]
mod tests {
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
        c.set_status(rowid, 1, "completed").unwrap();
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
}
