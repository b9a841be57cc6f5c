//! The catalog: SQLite holds the namespace (directories, live artifacts, symlinks),
//! every version with its manifest, and upload status. Only this module writes SQL.
//!
//! Paths are stored relative to the mount root, `/`-separated, without a leading
//! slash (`trace/step/report.json`). The first component is the trace id, the second
//! the step id.

mod gc;
mod manifest;
mod reads;
mod schema;
#[cfg(test)]
mod tests;
mod tx;
mod wal;

pub use gc::{Expired, retention_ns};
pub use reads::{EventRow, Query, ViewBy, ViewEntry, event_line};
pub use tx::Tx;
pub use wal::WalSync;

pub use manifest::{
    Manifest, VISIBILITIES, checksum_field, default_retention, default_type, default_visibility,
    guess_content_type, valid_retention, valid_type,
};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
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

/// A live artifact as the namespace needs it at mount time: only these columns
/// are read (not the manifests: at 100,000 artifacts they doubled the daemon's
/// peak memory).
#[derive(Clone, Debug)]
pub struct LiveArtifact {
    pub rowid: i64,
    pub id: String,
    pub path: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i64,
    pub owner: String,
    pub visibility: String,
    /// The current version: (number, size, SHA-256).
    pub current: Option<(u32, u64, String)>,
}

/// A trace's owner and participant list (`None`: open to every agent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceRow {
    pub name: String,
    pub owner: String,
    pub participants: Option<Vec<String>>,
}

/// Everything the filesystem needs in memory to serve lookups without SQL.
pub struct Snapshot {
    pub dirs: Vec<DirRow>,
    pub traces: Vec<TraceRow>,
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
    /// The connection's `synchronous` setting (FULL or NORMAL, from `Durability`).
    sync: &'static str,
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
        let mut cat = Catalog { conn, sync };
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
        Ok(Catalog {
            conn,
            sync: "NORMAL",
        })
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
            traces: self.traces()?,
            symlinks,
        })
    }

    /// The artifact that owns `path`: the live one, else the most recently deleted.
    /// Every live artifact, handed to `f` one by one as it is read (never all
    /// at once: at mount this is the daemon's largest allocation).
    pub fn load_live(&self, mut f: impl FnMut(LiveArtifact)) -> Result<()> {
        let mut st = self.conn.prepare(
            "SELECT a.rowid, a.id, a.path, a.mode, a.uid, a.gid, a.mtime_ns, a.owner,
                    a.visibility, v.version, v.size_bytes, v.sha256
             FROM artifacts a LEFT JOIN versions v
               ON v.artifact_rowid = a.rowid AND v.version = a.current_version
             WHERE a.live = 1",
        )?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let current = match r.get::<_, Option<u32>>(9)? {
                Some(n) => Some((n, r.get::<_, i64>(10)? as u64, r.get(11)?)),
                None => None,
            };
            f(LiveArtifact {
                rowid: r.get(0)?,
                id: r.get(1)?,
                path: r.get(2)?,
                mode: r.get(3)?,
                uid: r.get(4)?,
                gid: r.get(5)?,
                mtime_ns: r.get(6)?,
                owner: r.get(7)?,
                visibility: r.get(8)?,
                current,
            });
        }
        Ok(())
    }

    pub fn traces(&self) -> Result<Vec<TraceRow>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT name, owner, participants FROM traces")?;
        let rows = st.query_map([], |r| {
            let p: Option<String> = r.get(2)?;
            Ok(TraceRow {
                name: r.get(0)?,
                owner: r.get(1)?,
                participants: p.and_then(|p| serde_json::from_str(&p).ok()),
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

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

    pub fn artifact(&self, rowid: i64) -> Result<Option<ArtifactRow>> {
        Ok(self
            .conn
            .prepare_cached(&format!("SELECT {ART} FROM artifacts a WHERE a.rowid = ?1"))?
            .query_row([rowid], |r| artifact_row(r, 0))
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

    /// Runs `f` in one transaction without an fsync at COMMIT; the caller makes
    /// it durable with `WalSync::wait_durable(ticket)` after releasing the
    /// catalog (group commit, see `wal`). Under `--durability process` the
    /// connection never fsyncs at COMMIT anyway and the ticket need not be waited for.
    pub fn write_deferred<T>(
        &mut self,
        wal: &WalSync,
        f: impl FnOnce(&Tx<'_>) -> Result<T>,
    ) -> Result<(T, u64)> {
        let out = self.write_unsynced(f)?;
        Ok((out, wal.ticket()))
    }

    /// Records an upload's outcome. Without an fsync: losing it to a power cut
    /// only means the version is uploaded again at the next mount (uploads are
    /// idempotent), and the next durable commit persists it anyway. Saves one
    /// fsync per version.
    /// Sets an upload's outcome, with the chunk hashes the uploader computed
    /// (`(sha256, chunk size, hashes)`). Not synced: a lost status is found
    /// `uploading` at the next start and uploaded again, and lost chunk hashes
    /// only make reads of the blob whole again.
    pub fn set_status(
        &mut self,
        rowid: i64,
        version: u32,
        status: &str,
        chunks: Option<(&str, u64, &[u8])>,
    ) -> Result<()> {
        self.write_unsynced(|tx| {
            tx.set_status(rowid, version, status)?;
            if let Some((sha, size, hashes)) = chunks {
                tx.put_chunks(sha, size, hashes)?;
            }
            Ok(())
        })
    }

    /// A pending GC deletion done (not synced: losing it means one more,
    /// harmless, deletion attempt).
    pub fn gc_done(&mut self, key: &str) -> Result<()> {
        self.write_unsynced(|tx| tx.gc_done(key))
    }

    /// Forgets the chunk hashes of a blob that left the backend (GC).
    pub fn forget_chunks(&mut self, sha256: &str) -> Result<()> {
        self.write_unsynced(|tx| tx.forget_chunks(sha256))
    }

    /// `write` with `synchronous=NORMAL` for this one transaction (no fsync at
    /// COMMIT), then the connection's own setting again.
    fn write_unsynced<T>(&mut self, f: impl FnOnce(&Tx<'_>) -> Result<T>) -> Result<T> {
        if self.sync == "NORMAL" {
            return self.write(f);
        }
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        let out = self.write(f);
        self.conn.pragma_update(None, "synchronous", self.sync)?;
        out
    }
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

const ART: &str = "a.rowid, a.id, a.path, a.live, a.mode, a.uid, a.gid, a.mtime_ns, a.owner,
    a.current_version, a.artifact_type, a.content_type, a.visibility, a.retention, a.labels";
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
