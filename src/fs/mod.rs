//! The filesystem core: namespace rules, open handles and the commit of a version.
//! Everything here is callable in-process without the kernel; `crate::fuse` only
//! translates `fuser` callbacks into these calls.
//!
//! Locks: `catalog` serialises every metadata change (SQLite does anyway); inside
//! it the namespace lock is taken briefly. No lock is held across data I/O except
//! a write handle's own mutex.

pub mod access;
mod commit;
pub mod error;
pub mod gc;
mod handle;
pub mod names;
pub mod namespace;
mod ops;
mod rename;
mod views;
pub mod xattr;

pub use error::{FsError, Result};
pub use namespace::{Ino, ROOT};

use crate::catalog::VersionRow;
use crate::catalog::{Catalog, Durability};
use crate::store::uploader::{Job, Outcome, Uploader};
use crate::store::{Backend, Chunks, Store};
use access::{TraceAcl, Visibility, file_mode};
use handle::{ReadHandle, WriteHandle};
use namespace::{Kind, Meta, Namespace};
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Dir,
    File,
    Symlink,
}

/// What `stat` shows.
#[derive(Clone, Debug)]
pub struct Attr {
    pub ino: Ino,
    pub size: u64,
    pub blocks: u64,
    pub kind: FileKind,
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    /// Readers of an older version are still open: the kernel must not trust a
    /// cached size (theirs differs), so the adapter answers with a zero TTL.
    pub volatile: bool,
}

/// Who sent an OPEN or CREATE, as the kernel reports it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Requester {
    pub uid: u32,
    pub gid: u32,
    /// The calling thread's id; decides which FLUSHes commit.
    pub pid: u32,
}

/// How the kernel should cache an open file.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenReply {
    pub fh: u64,
    /// The pages the kernel holds are of this very version: keep them.
    pub keep_cache: bool,
    /// Bypass the page cache (writers, and readers of a version other than the
    /// one cached for the inode).
    pub direct_io: bool,
    pub inval_attrs: bool,
    /// Nothing to do at close (a reader): the kernel need not send FLUSH.
    pub no_flush: bool,
}

#[derive(Clone, Debug)]
pub struct DirEntry {
    pub ino: Ino,
    pub offset: u64,
    pub kind: FileKind,
    pub name: String,
}

#[derive(Default, Clone, Debug)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub mtime: Option<SystemTime>,
}

#[derive(Clone, Debug)]
pub struct Statfs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
}

/// Tells the kernel that what it cached for an inode is stale. The FUSE adapter
/// implements it; in-process tests go without.
pub trait Invalidator: Send + Sync {
    fn inval_attrs(&self, ino: Ino);
    /// Drops the kernel's cached name `name` in `parent` (a file that became
    /// private must be looked up again, per user).
    fn inval_entry(&self, parent: Ino, name: &str);
}

pub struct Options {
    pub data_dir: PathBuf,
    pub backend_url: String,
    pub durability: Durability,
    pub upload_workers: usize,
    /// Attempts (with backoff: 200 ms doubling to 30 s) before a version is `failed`.
    pub upload_attempts: u32,
    /// `--spool-max`: bytes waiting for upload plus an open writer's file may
    /// not exceed this (ENOSPC).
    pub spool_max: Option<u64>,
    /// `--agent`: every request through this mount is this agent.
    pub agent: Option<String>,
    /// `--on-commit`: a command run for every new version.
    pub on_commit: Option<String>,
    /// uid → agent, for requests when there is no `agent`.
    pub uid_agents: std::collections::BTreeMap<u32, String>,
    /// name glob → artifact_type for new artifacts.
    pub type_rules: Vec<crate::config::TypeMatcher>,
    /// File-name globs of scratch files: never versioned (see `is_scratch`).
    pub scratch: Vec<glob::Pattern>,
    pub defaults: Defaults,
}

/// Manifest values a new artifact starts with.
#[derive(Clone, Debug)]
pub struct Defaults {
    pub artifact_type: String,
    pub visibility: String,
    pub retention: String,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            artifact_type: crate::catalog::default_type(),
            visibility: crate::catalog::default_visibility(),
            retention: crate::catalog::default_retention(),
        }
    }
}

impl Options {
    pub fn new(data_dir: &Path) -> Options {
        Options {
            data_dir: data_dir.to_path_buf(),
            backend_url: format!("fs://{}", data_dir.join("backend").display()),
            durability: Durability::Full,
            upload_workers: 2,
            upload_attempts: 12,
            spool_max: None,
            agent: None,
            on_commit: None,
            uid_agents: Default::default(),
            type_rules: Vec::new(),
            scratch: crate::config::default_scratch(),
            defaults: Defaults::default(),
        }
    }
}

enum Handle {
    Read(ReadHandle),
    Write(Mutex<WriteHandle>),
    Dir(Vec<DirEntry>),
}

pub struct ArtifactFs {
    ns: RwLock<Namespace>,
    catalog: Mutex<Catalog>,
    /// A second connection for reads (`.versions`), so they never wait on commits.
    reader: Mutex<Catalog>,
    store: Arc<Store>,
    uploader: Arc<Uploader>,
    handles: RwLock<HashMap<u64, Arc<Handle>>>,
    /// Every trace's owner and participants (access checks never touch SQL).
    traces: RwLock<HashMap<String, TraceAcl>>,
    /// Shared by a commit from "the blob is in the spool" to "its version row is
    /// in the catalog"; exclusive while GC deletes a blob (see `gc`).
    gc_lock: RwLock<()>,
    /// One GC pass at a time (the timer and `artifactfs gc`).
    gc_running: Mutex<()>,
    /// One retry of failed uploads at a time (the timer and `sync
    /// --retry-failed`): two would queue a version twice, and count its bytes
    /// out of the spool cap twice.
    retry_running: Mutex<()>,
    /// Group commit of versions (`None` under `--durability process`).
    wal: Option<crate::catalog::WalSync>,
    next_fh: AtomicU64,
    invalidator: RwLock<Option<Box<dyn Invalidator>>>,
    agent: Option<String>,
    spool_max: Option<u64>,
    started: std::time::Instant,
    uid_agents: std::collections::BTreeMap<u32, String>,
    type_rules: Vec<crate::config::TypeMatcher>,
    scratch: Vec<glob::Pattern>,
    defaults: Defaults,
    hook: Option<crate::hook::Hook>,
    /// Held for the daemon's life: one daemon per data directory.
    _lock: std::fs::File,
}

impl ArtifactFs {
    /// Opens the data directory: catalog, spool, backend; loads the namespace and
    /// queues every version still waiting for upload.
    pub fn start(opts: &Options) -> std::result::Result<Arc<ArtifactFs>, String> {
        let data = &opts.data_dir;
        let new = !data.exists();
        std::fs::create_dir_all(data)
            .map_err(|e| format!("cannot create {}: {e}", data.display()))?;
        if new {
            make_private(data);
        }
        let lock = lock_data_dir(data)?;
        let db = data.join("catalog.db");
        let catalog = Catalog::open(&db, opts.durability).map_err(|e| e.to_string())?;
        let reader = Catalog::open(&db, opts.durability).map_err(|e| e.to_string())?;
        let backend = Backend::from_url(&opts.backend_url).map_err(|e| e.to_string())?;
        // The backend this data directory was last mounted with, probe passed
        // (no query string: no secrets).
        let known_backend = data.join("backend.url");
        match backend.probe() {
            Ok(()) => {
                if let Err(e) = std::fs::write(&known_backend, &backend.url) {
                    log::warn!("cannot write {}: {e}", known_backend.display());
                }
            }
            // Mounted with this backend before, the backend down for now: the
            // agents keep writing into the spool, as they would had it gone
            // down a minute after the mount.
            Err((e, true))
                if std::fs::read_to_string(&known_backend).ok().as_deref()
                    == Some(backend.url.as_str()) =>
            {
                log::warn!(
                    "{e}; mounting anyway (this data directory was used before): commits \
                     go to the spool and uploads retry until the backend is back"
                )
            }
            Err((e, _)) => return Err(e.to_string()),
        }
        let spool = data.join("spool");
        let store = Store::open(&spool, backend, opts.durability == Durability::Full)
            .map_err(|e| e.to_string())?;
        store.clear_partials().map_err(|e| e.to_string())?;
        // What holds artifacts' bytes and manifests is the daemon's user's alone,
        // or a private artifact would be one `cat DATA/spool/...` away. Only these
        // paths: the data directory may be shared with other things.
        for p in [
            "catalog.db",
            "catalog.db-wal",
            "catalog.db-shm",
            "spool",
            "backend",
        ] {
            make_private(&data.join(p));
        }
        set_aside_orphans(&spool, store.staging_dir());
        let store = Arc::new(store);
        let mut snap = catalog.load().map_err(|e| e.to_string())?;
        let traces: HashMap<String, TraceAcl> = std::mem::take(&mut snap.traces)
            .into_iter()
            .map(|t| {
                let acl = TraceAcl {
                    owner: t.owner,
                    participants: t.participants.map(|p| p.into_iter().collect()),
                };
                (t.name, acl)
            })
            .collect();
        let now = crate::timefmt::now_ns();
        // World-writable and sticky: any agent starts a trace, only its owner
        // removes it (see `access`).
        let root_meta = Meta {
            mode: 0o1777,
            uid: unsafe { libc::geteuid() },
            gid: unsafe { libc::getegid() },
            mtime_ns: now,
            ctime_ns: now,
        };
        let mut ns = Namespace::from_snapshot(snap, root_meta.clone());
        catalog
            .load_live(|a| ns.add_artifact(a, &root_meta))
            .map_err(|e| e.to_string())?;
        let pending = catalog.pending_uploads().map_err(|e| e.to_string())?;

        let fs = Arc::new_cyclic(|weak: &std::sync::Weak<ArtifactFs>| {
            let weak = weak.clone();
            let for_sidecars = weak.clone();
            let uploader = Uploader::start(
                store.clone(),
                opts.upload_workers,
                opts.upload_attempts,
                Box::new(
                    move |job: &Job, outcome: Outcome, chunks: Option<&Chunks>| {
                        if job.sidecar_only {
                            // A metadata refresh: the version's status is its upload's.
                            return;
                        }
                        let status = match outcome {
                            Outcome::Completed => "completed",
                            Outcome::Failed => "failed",
                        };
                        if let Some(fs) = weak.upgrade() {
                            if let Err(e) = fs.catalog.lock().set_status(
                                job.rowid,
                                job.version,
                                status,
                                chunks
                                    .map(|c| (c.size, c.to_bytes()))
                                    .as_ref()
                                    .map(|(size, b)| (job.sha256.as_str(), *size, &b[..])),
                            ) {
                                log::error!(
                                    "cannot mark {}@{} {status}: {e}",
                                    job.artifact_id,
                                    job.version
                                );
                            }
                        }
                    },
                ),
                Box::new(move |job: &Job| {
                    let fs = for_sidecars.upgrade()?;
                    match &job.trace {
                        Some(t) => fs.trace_sidecar(t),
                        None => fs.sidecar_of(job.rowid, job.version),
                    }
                }),
            );
            ArtifactFs {
                ns: RwLock::new(ns),
                catalog: Mutex::new(catalog),
                reader: Mutex::new(reader),
                store,
                uploader,
                handles: RwLock::new(HashMap::new()),
                traces: RwLock::new(traces),
                gc_lock: RwLock::new(()),
                gc_running: Mutex::new(()),
                retry_running: Mutex::new(()),
                wal: (opts.durability == Durability::Full)
                    .then(|| crate::catalog::WalSync::new(&db)),
                next_fh: AtomicU64::new(1),
                invalidator: RwLock::new(None),
                agent: opts.agent.clone(),
                spool_max: opts.spool_max,
                started: std::time::Instant::now(),
                uid_agents: opts.uid_agents.clone(),
                type_rules: opts.type_rules.clone(),
                scratch: opts.scratch.clone(),
                hook: opts.on_commit.clone().map(crate::hook::Hook::start),
                defaults: opts.defaults.clone(),
                _lock: lock,
            }
        });
        if !pending.is_empty() {
            log::info!("resuming {} pending upload(s)", pending.len());
        }
        fs.queue_uploads(pending, true)?;
        Ok(fs)
    }

    /// Queues uploads of these versions; `failed` ones get another round of
    /// attempts, so they are `uploading` again. `fresh`: this process has not
    /// counted their bytes as waiting yet (at mount); a retry of failed versions
    /// in a running daemon has (they stay counted against `--spool-max`).
    fn queue_uploads(
        &self,
        versions: Vec<VersionRow>,
        fresh: bool,
    ) -> std::result::Result<(), String> {
        let failed: Vec<(i64, u32)> = versions
            .iter()
            .filter(|v| v.status == "failed")
            .map(|v| (v.artifact_rowid, v.version))
            .collect();
        if !failed.is_empty() {
            self.catalog
                .lock()
                .write(|tx| {
                    failed
                        .iter()
                        .try_for_each(|(r, n)| tx.set_status(*r, *n, "uploading"))
                })
                .map_err(|e| e.to_string())?;
        }
        for v in versions {
            let id = serde_json::from_str::<serde_json::Value>(&v.manifest)
                .ok()
                .and_then(|m| m["id"].as_str().map(str::to_string))
                .unwrap_or_default();
            let job = Job {
                rowid: v.artifact_rowid,
                version: v.version,
                artifact_id: id,
                size: v.size,
                sha256: v.sha256,
                manifest: v.manifest,
                sidecar_only: false,
                trace: None,
            };
            if fresh {
                self.uploader.enqueue(job);
            } else {
                self.uploader.retry(job);
            }
        }
        Ok(())
    }

    /// Gives every `failed` version another round of upload attempts (the
    /// daemon does this every `--retry-failed`).
    pub fn retry_failed(&self) -> std::result::Result<usize, String> {
        let _one = self.retry_running.lock();
        let failed: Vec<VersionRow> = self
            .reader
            .lock()
            .pending_uploads()
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|v| v.status == "failed")
            .collect();
        let n = failed.len();
        if n > 0 {
            log::info!("retrying {n} failed upload(s)");
            self.queue_uploads(failed, false)?;
        }
        Ok(n)
    }

    /// The sidecar of a version as it should read now: its manifest (the current
    /// version's with the artifact's present path and metadata) and whether the
    /// artifact is live, so `reindex` restores renames, `setfattr` changes and
    /// deletions. `None` when the version is gone (GC).
    fn sidecar_of(&self, rowid: i64, version: u32) -> Option<String> {
        let v = self.reader.lock().sidecar(rowid, version).ok()??;
        Some(v.to_string())
    }

    /// A trace's sidecar as it is now; `None` once the trace is gone.
    fn trace_sidecar(&self, trace: &str) -> Option<String> {
        let t = self.traces.read();
        let acl = t.get(trace)?;
        Some(
            serde_json::json!({
                "trace": trace,
                "owner": acl.owner,
                "participants": acl.participants,
            })
            .to_string(),
        )
    }

    /// Queues a rewrite of the current version's sidecar of these artifacts
    /// (after a rename, a deletion or a `setfattr`).
    fn refresh_sidecars(&self, rowids: impl IntoIterator<Item = i64>) {
        let cat = self.reader.lock();
        for rowid in rowids {
            let Ok(Some(a)) = cat.artifact(rowid) else {
                continue;
            };
            if a.current_version == 0 {
                continue;
            }
            self.uploader.enqueue(Job {
                rowid,
                version: a.current_version,
                artifact_id: a.id,
                sha256: String::new(),
                manifest: String::new(),
                size: 0,
                sidecar_only: true,
                trace: None,
            });
        }
    }

    /// `<mount>/.artifactfs/status`: the daemon's health as JSON.
    pub fn status_json(&self) -> Result<String> {
        let (uploading, failed, oldest) = self.reader.lock().upload_summary()?;
        let spool = self
            .store
            .staging_dir()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let usage = crate::store::dir_usage;
        let now = crate::timefmt::now_ns();
        let (partial_blobs, partial_bytes) = self.store.partial_usage();
        let status = serde_json::json!({
            "backend": self.backend_url(),
            "backend_reachable": self.uploader.backend_reachable(),
            "upload_queue": uploading,
            "upload_queue_bytes": self.uploader.waiting_bytes(),
            "oldest_pending_age_s": oldest.map(|t| (now - t) as f64 / 1e9),
            "failed": failed,
            "spool_bytes": usage(&spool).0,
            "spool_max": self.spool_max,
            "orphans": usage(&spool.join("orphans")).1,
            "uptime_s": self.started.elapsed().as_secs_f64(),
            "group_commit": self.wal.as_ref().map(|w| {
                let (versions, syncs) = w.counts();
                serde_json::json!({"versions": versions, "catalog_syncs": syncs})
            }),
            "read_cache": {
                "fetched_bytes": self.store.fetched_bytes.load(std::sync::atomic::Ordering::Relaxed),
                "partial_blobs": partial_blobs,
                "partial_bytes": partial_bytes,
            },
            "version": env!("CARGO_PKG_VERSION"),
        });
        Ok(format!("{status}\n"))
    }

    /// The backend URL as shown in manifests and logs (no query string).
    pub fn backend_url(&self) -> &str {
        &self.store.backend.url
    }

    pub fn set_invalidator(&self, inv: Box<dyn Invalidator>) {
        *self.invalidator.write() = Some(inv);
    }

    /// Waits until every committed version is in the backend, or `timeout` passes.
    pub fn drain_uploads(&self, timeout: std::time::Duration) -> bool {
        self.uploader.drain(timeout)
    }

    pub fn pending_uploads(&self) -> usize {
        self.uploader.pending()
    }

    pub fn shutdown(&self) {
        self.uploader.stop();
    }

    /// The identity of a request: the mount's agent, else the uid map of the
    /// configuration, else the Unix user name.
    fn who(&self, uid: u32) -> String {
        if let Some(a) = &self.agent {
            return a.clone();
        }
        match self.uid_agents.get(&uid) {
            Some(a) => a.clone(),
            None => crate::identity::user_name(uid),
        }
    }

    /// Whether a new file of this name is a scratch file (an editor's swap or
    /// backup file, a temporary): never versioned, manifested or evented.
    pub(super) fn is_scratch(&self, name: &str) -> bool {
        self.scratch.iter().any(|g| g.matches(name))
    }

    /// A new artifact's type: the first `[[types]]` glob that matches, else the default.
    fn type_for(&self, path: &str) -> &str {
        self.type_rules
            .iter()
            .find(|r| r.matches(path))
            .map_or(self.defaults.artifact_type.as_str(), |r| {
                r.artifact_type.as_str()
            })
    }

    fn invalidate(&self, ino: Ino) {
        if let Some(inv) = self.invalidator.read().as_ref() {
            inv.inval_attrs(ino);
        }
    }

    fn invalidate_entry(&self, ino: Ino) {
        let entry = self
            .ns
            .read()
            .get(ino)
            .filter(|n| n.attached)
            .map(|n| (n.parent, n.name.clone()));
        if let (Some((parent, name)), Some(inv)) = (entry, self.invalidator.read().as_ref()) {
            inv.inval_entry(parent, &name);
        }
    }

    fn new_fh(&self, h: Handle) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles.write().insert(fh, Arc::new(h));
        fh
    }

    fn handle(&self, fh: u64) -> Result<Arc<Handle>> {
        self.handles
            .read()
            .get(&fh)
            .cloned()
            .ok_or(FsError::BadHandle)
    }

    /// Number of inodes held in memory (for tests of the forget path).
    pub fn inode_count(&self) -> usize {
        self.ns.read().len()
    }

    fn attr_of(ns: &Namespace, ino: Ino) -> Option<Attr> {
        let node = ns.get(ino)?;
        let t = crate::timefmt::from_ns;
        Some(match &node.kind {
            Kind::Dir(d) => Attr {
                ino,
                size: 4096,
                blocks: 8,
                kind: FileKind::Dir,
                perm: (d.meta.mode & 0o7777) as u16,
                nlink: 2 + d.subdirs,
                uid: d.meta.uid,
                gid: d.meta.gid,
                mtime: t(d.meta.mtime_ns),
                ctime: t(d.meta.ctime_ns),
                volatile: false,
            },
            Kind::File(f) => {
                let size = match &f.current {
                    Some(c) if !f.pending_truncate => c.size,
                    _ => 0,
                };
                Attr {
                    ino,
                    size,
                    blocks: size.div_ceil(512),
                    kind: FileKind::File,
                    perm: file_mode(f.meta.mode, f.visibility) as u16,
                    nlink: u32::from(node.attached),
                    uid: f.meta.uid,
                    gid: f.meta.gid,
                    mtime: t(f.meta.mtime_ns),
                    ctime: t(f.meta.ctime_ns),
                    // A private file exists for its owner only: the kernel must
                    // ask every time, or another user would find it in its cache.
                    volatile: f.visibility == Visibility::Private
                        || f.readers.keys().any(|k| k != f.shown_sha256()),
                }
            }
            Kind::Symlink(s) => Attr {
                ino,
                size: s.target.len() as u64,
                blocks: 0,
                kind: FileKind::Symlink,
                perm: 0o777,
                nlink: 1,
                uid: s.meta.uid,
                gid: s.meta.gid,
                mtime: t(s.meta.mtime_ns),
                ctime: t(s.meta.ctime_ns),
                volatile: false,
            },
            // A view's top directory is rebuilt at every lookup.
            Kind::ViewRoot(_) | Kind::ViewDir { .. } => read_only_dir(
                ino,
                ns.dir(ROOT)?,
                matches!(&node.kind, Kind::ViewDir { prefix, .. } if prefix.is_empty()),
            ),
            Kind::StatusDir | Kind::StatusFile => {
                let root = ns.dir(ROOT)?;
                let dir = matches!(node.kind, Kind::StatusDir);
                Attr {
                    ino,
                    size: if dir { 4096 } else { 0 },
                    blocks: 0,
                    kind: if dir { FileKind::Dir } else { FileKind::File },
                    perm: if dir { 0o555 } else { 0o444 },
                    nlink: if dir { 2 } else { 1 },
                    uid: root.meta.uid,
                    gid: root.meta.gid,
                    mtime: SystemTime::now(),
                    ctime: SystemTime::now(),
                    volatile: true,
                }
            }
            Kind::ByIdRoot => read_only_dir(ino, ns.dir(ROOT)?, false),
            Kind::ByIdLink { target, .. } => {
                let root = ns.dir(ROOT)?;
                Attr {
                    ino,
                    size: target.len() as u64,
                    blocks: 0,
                    kind: FileKind::Symlink,
                    perm: 0o777,
                    nlink: 1,
                    uid: root.meta.uid,
                    gid: root.meta.gid,
                    mtime: t(root.meta.mtime_ns),
                    ctime: t(root.meta.ctime_ns),
                    // The artifact can move: always ask again.
                    volatile: true,
                }
            }
            Kind::VersionsRoot { dir } => read_only_dir(ino, ns.dir(*dir)?, false),
            Kind::VersionList { .. } => {
                let root = ns.get(node.parent)?;
                let (uid, gid) = match &root.kind {
                    Kind::VersionsRoot { dir } => {
                        ns.dir(*dir).map_or((0, 0), |d| (d.meta.uid, d.meta.gid))
                    }
                    _ => (0, 0),
                };
                let now = SystemTime::now();
                Attr {
                    ino,
                    size: 4096,
                    blocks: 8,
                    kind: FileKind::Dir,
                    perm: 0o555,
                    nlink: 2,
                    uid,
                    gid,
                    mtime: now,
                    ctime: now,
                    // `.versions/<name>` follows whichever artifact has the name now.
                    volatile: true,
                }
            }
            Kind::Version(v) => Attr {
                ino,
                size: v.content.size,
                blocks: v.content.size.div_ceil(512),
                kind: FileKind::File,
                perm: file_mode(v.mode & 0o555, v.visibility) as u16,
                nlink: 1,
                uid: v.uid,
                gid: v.gid,
                mtime: t(v.created_at_ns),
                ctime: t(v.created_at_ns),
                volatile: v.visibility == Visibility::Private,
            },
        })
    }
}

/// The attributes of a daemon-made, read-only directory (`.versions`, `.by-id`,
/// views), owned and timed like `root` (the directory it stands for).
fn read_only_dir(ino: Ino, root: &namespace::Dir, volatile: bool) -> Attr {
    let t = crate::timefmt::from_ns;
    Attr {
        ino,
        size: 4096,
        blocks: 8,
        kind: FileKind::Dir,
        perm: 0o555,
        nlink: 2,
        uid: root.meta.uid,
        gid: root.meta.gid,
        mtime: t(root.meta.mtime_ns),
        ctime: t(root.meta.ctime_ns),
        volatile,
    }
}

/// Narrows `p` (a directory to 0700, a file to 0600) when group or others may
/// read it, and says so; a path that does not exist is left alone.
fn make_private(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(p) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return;
    }
    let narrow = mode & 0o700;
    match std::fs::set_permissions(p, std::fs::Permissions::from_mode(narrow)) {
        Ok(()) => log::info!(
            "{} narrowed from {mode:o} to {narrow:o}: artifacts' bytes and manifests are the daemon's",
            p.display()
        ),
        Err(e) => log::warn!("cannot narrow {} to {narrow:o}: {e}", p.display()),
    }
}

/// Takes `DATA/lock` (flock) so a second daemon cannot share the data directory:
/// it would move the first one's live staging files aside as orphans.
fn lock_data_dir(data: &Path) -> std::result::Result<std::fs::File, String> {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsRawFd;
    let path = data.join("lock");
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let mut pid = String::new();
        let _ = f.read_to_string(&mut pid);
        return Err(format!(
            "data directory {} is in use by another artifactfs daemon (pid {})",
            data.display(),
            pid.trim()
        ));
    }
    let _ = f.set_len(0);
    let _ = f.rewind();
    let _ = write!(f, "{}", std::process::id());
    Ok(f)
}

/// Staging files left by a crash were never closed, so they never become versions;
/// they are moved to `spool/orphans/` for a human to look at, and logged.
fn set_aside_orphans(spool: &Path, staging: &Path) {
    let Ok(entries) = std::fs::read_dir(staging) else {
        return;
    };
    let orphans = spool.join("orphans");
    for e in entries.flatten() {
        if std::fs::create_dir_all(&orphans).is_ok() {
            let dest = orphans.join(e.file_name());
            match std::fs::rename(e.path(), &dest) {
                Ok(()) => log::warn!(
                    "staging file of a writer that never closed kept aside at {} (not a version)",
                    dest.display()
                ),
                Err(err) => log::error!("cannot set aside {}: {err}", e.path().display()),
            }
        }
    }
}

#[cfg(test)]
mod tests;
