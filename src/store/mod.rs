//! Blobs: the local spool (staging files and content-addressed blobs) and the
//! OpenDAL backend the uploader copies them to.
//!
//! Layout of the data directory's spool:
//! - `spool/staging/<ulid>`: one private file per writer, never shared;
//! - `spool/blobs/<aa>/<sha256>`: immutable, content-addressed, shared by versions;
//! - `spool/partial/<sha256>`: a blob being fetched from the backend by chunks
//!   (see `chunks`); emptied at start, since which chunks it holds is in memory.
//!
//! Backend keys: `blobs/sha256/<aa>/<sha256>` (and `<sha256>.chunks` beside a blob of
//! more than one chunk),
//! `manifests/<last two characters of the artifact id>/<artifact id>.<version>.json`
//! and `traces/<hex of the trace name>.json`.

mod backend;
pub mod chunks;
pub mod uploader;

pub use backend::Backend;
pub use chunks::Chunks;

use chunks::Partial;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub enum StoreError {
    Io(io::Error),
    BadUrl(String),
    Backend(String),
    /// Bytes that do not hash to the name they are stored under.
    Corrupt(String),
    /// The blob is neither in the spool nor in the backend.
    Missing(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io(e) => write!(f, "spool I/O: {e}"),
            StoreError::BadUrl(s) => write!(f, "bad backend URL {s}"),
            StoreError::Backend(s) => write!(f, "backend: {s}"),
            StoreError::Corrupt(s) => write!(f, "corrupt blob: {s}"),
            StoreError::Missing(s) => write!(f, "missing blob: {s}"),
        }
    }
}
impl std::error::Error for StoreError {}
impl From<io::Error> for StoreError {
    fn from(e: io::Error) -> Self {
        StoreError::Io(e)
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Lower-case hex of a finished SHA-256 (sha2 0.11 digests have no `{:x}`).
pub fn hex_digest(h: Sha256) -> String {
    hex::encode(h.finalize())
}

/// Bytes and files below `p` (unreadable entries are skipped), for `status`.
pub fn dir_usage(p: &Path) -> (u64, u64) {
    let (mut bytes, mut files) = (0, 0);
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => {
                    bytes += m.len();
                    files += 1;
                }
                Err(_) => {}
            }
        }
    }
    (bytes, files)
}

/// `pread` of up to `size` bytes at `offset` (fewer at the end of the file).
pub fn read_at(f: &File, offset: u64, size: u32) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; size as usize];
    let mut done = 0;
    while done < buf.len() {
        let n = f.read_at(&mut buf[done..], offset + done as u64)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    buf.truncate(done);
    Ok(buf)
}

fn hash_reader(mut r: impl Read) -> io::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(hex_digest(h));
        }
        h.update(&buf[..n]);
    }
}

pub fn blob_key(sha: &str) -> String {
    format!("blobs/sha256/{}/{sha}", &sha[..2])
}

/// A blob's chunk list (see `chunks`), beside the blob, so that reads stay
/// ranged after `reindex` rebuilt a catalog that had it.
pub fn chunks_key(sha: &str) -> String {
    format!("{}.chunks", blob_key(sha))
}

/// A trace's sidecar: its owner and participants. Named by the trace name in
/// hex, since a directory name may hold any byte but `/`.
pub fn trace_key(trace: &str) -> String {
    format!("traces/{}.json", hex::encode(trace))
}

/// Sharded by the id's last two characters (random in a ULID: up to 1,024
/// directories) rather than a directory per artifact: on an `fs://` backend a
/// `mkdir` per new artifact was 7 % of the daemon's time creating small files.
pub fn manifest_key(artifact_id: &str, version: u32) -> String {
    let shard = artifact_id
        .get(artifact_id.len().saturating_sub(2)..)
        .unwrap_or("_");
    format!("manifests/{shard}/{artifact_id}.{version}.json")
}

pub struct Store {
    staging: PathBuf,
    blobs: PathBuf,
    pub backend: Backend,
    fsync: bool,
    /// Blobs whose spool copy is known to hash to its name in this process: made
    /// here from hashed bytes, fetched and checked, or checked at first open.
    verified: parking_lot::Mutex<std::collections::HashSet<[u8; 32]>>,
    /// When each spool blob was last opened or made (a counter, not a time):
    /// the read cache evicts the least recently used first.
    last_used: parking_lot::Mutex<std::collections::HashMap<[u8; 32], u64>>,
    clock: std::sync::atomic::AtomicU64,
    partial_dir: PathBuf,
    /// Blobs being fetched by chunks, by name.
    partials: parking_lot::Mutex<std::collections::HashMap<[u8; 32], Arc<Partial>>>,
    /// Bytes fetched from the backend to serve reads, whole or by chunks.
    pub fetched_bytes: AtomicU64,
}

/// Where a reader's bytes come from.
pub enum BlobReader {
    /// A checked spool blob.
    File(File),
    /// The backend, chunk by chunk, each checked before it is served.
    Ranged(Arc<Partial>),
}

fn digest_key(sha: &str) -> [u8; 32] {
    let mut k = [0u8; 32];
    let _ = hex::decode_to_slice(sha, &mut k);
    k
}

impl Store {
    pub fn open(spool: &Path, backend: Backend, fsync: bool) -> Result<Store> {
        let staging = spool.join("staging");
        let blobs = spool.join("blobs");
        fs::create_dir_all(&staging)?;
        fs::create_dir_all(&blobs)?;
        let partial_dir = spool.join("partial");
        fs::create_dir_all(&partial_dir)?;
        Ok(Store {
            partial_dir,
            partials: parking_lot::Mutex::new(std::collections::HashMap::new()),
            fetched_bytes: AtomicU64::new(0),
            staging,
            blobs,
            backend,
            fsync,
            verified: parking_lot::Mutex::new(std::collections::HashSet::new()),
            last_used: parking_lot::Mutex::new(std::collections::HashMap::new()),
            clock: std::sync::atomic::AtomicU64::new(1),
        })
    }

    pub fn staging_dir(&self) -> &Path {
        &self.staging
    }

    /// A new private staging file, opened read-write.
    pub fn new_staging(&self) -> Result<(File, PathBuf)> {
        let path = self.staging.join(ulid::Ulid::new().to_string());
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        Ok((f, path))
    }

    pub fn blob_path(&self, sha: &str) -> PathBuf {
        self.blobs.join(&sha[..2]).join(sha)
    }

    pub fn uri(&self, sha: &str) -> String {
        let url = &self.backend.url;
        let sep = if url.ends_with('/') { "" } else { "/" };
        format!("{url}{sep}{}", blob_key(sha))
    }

    /// Makes a finished staging file the blob `sha`. When the blob exists already
    /// (identical bytes committed before) the staging file is simply dropped.
    /// With full durability the bytes and the directory entry are fsynced first.
    pub fn adopt_staging(&self, staging: &Path, file: &File, sha: &str) -> Result<()> {
        let dest = self.blob_path(sha);
        if dest.exists() {
            fs::remove_file(staging)?;
            return Ok(());
        }
        // `sha` was computed from these very bytes.
        self.verified.lock().insert(digest_key(sha));
        self.touch(sha);
        let dir = dest.parent().expect("blob paths have a parent");
        if !dir.exists() {
            fs::create_dir_all(dir)?;
        }
        if self.fsync {
            file.sync_data()?;
        }
        fs::rename(staging, &dest)?;
        if self.fsync {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    fn touch(&self, sha: &str) {
        let t = self
            .clock
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.last_used.lock().insert(digest_key(sha), t);
    }

    /// The read cache: while the spool's blobs take more than `cap` bytes, removes
    /// spool copies, least recently used first, of blobs `in_backend` says the
    /// backend holds for good (every version using them is `completed`). A later
    /// read fetches them again (and checks them). Returns (blobs, bytes) evicted.
    pub fn evict(&self, cap: u64, in_backend: impl Fn(&str) -> bool) -> (usize, u64) {
        // (last used, bytes, name, a partial fetch?)
        let mut blobs: Vec<(u64, u64, String, bool)> = self
            .spool_blobs()
            .into_iter()
            .filter_map(|sha| {
                let size = fs::metadata(self.blob_path(&sha)).ok()?.len();
                let used = self.last_used.lock().get(&digest_key(&sha)).copied();
                Some((used.unwrap_or(0), size, sha, false))
            })
            .collect();
        let partials: Vec<Arc<Partial>> = self.partials.lock().values().cloned().collect();
        for p in partials {
            let used = self.last_used.lock().get(&digest_key(&p.sha)).copied();
            blobs.push((used.unwrap_or(0), p.present_bytes(), p.sha.clone(), true));
        }
        let mut total: u64 = blobs.iter().map(|b| b.1).sum();
        if total <= cap {
            return (0, 0);
        }
        blobs.sort();
        let (mut n, mut freed) = (0, 0);
        for (_, size, sha, partial) in blobs {
            if total <= cap {
                break;
            }
            let key = digest_key(&sha);
            if partial {
                // Fetched from the backend, so held there for good. A reader
                // still holding it keeps its (unlinked) file.
                if let Some(p) = self.partials.lock().remove(&key) {
                    let _ = fs::remove_file(&p.path);
                }
            } else if !in_backend(&sha) || fs::remove_file(self.blob_path(&sha)).is_err() {
                continue;
            }
            self.verified.lock().remove(&key);
            self.last_used.lock().remove(&key);
            total -= size;
            freed += size;
            n += 1;
        }
        (n, freed)
    }

    /// Removes blob `sha` from the spool and the backend; a copy already gone is
    /// fine. Only `gc` calls this, after the catalog says no version uses it.
    pub fn delete_blob(&self, sha: &str) -> Result<()> {
        self.verified.lock().remove(&digest_key(sha));
        if let Some(p) = self.partials.lock().remove(&digest_key(sha)) {
            let _ = fs::remove_file(&p.path);
        }
        match fs::remove_file(self.blob_path(sha)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        // The chunk list first: a list without its blob would only make reads
        // of a blob that comes back later whole (it does not fit, or it fails).
        self.backend
            .op
            .delete(&chunks_key(sha))
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        self.backend
            .op
            .delete(&blob_key(sha))
            .map_err(|e| StoreError::Backend(e.to_string()))
    }

    /// Removes a version's manifest sidecar from the backend (so `reindex` does
    /// not bring an expired version back).
    pub fn delete_sidecar(&self, artifact_id: &str, version: u32) -> Result<()> {
        self.backend
            .op
            .delete(&manifest_key(artifact_id, version))
            .map_err(|e| StoreError::Backend(e.to_string()))
    }

    /// The names (SHA-256) of every blob in the spool.
    pub fn spool_blobs(&self) -> Vec<String> {
        let mut out = Vec::new();
        for d in fs::read_dir(&self.blobs).into_iter().flatten().flatten() {
            for f in fs::read_dir(d.path()).into_iter().flatten().flatten() {
                if let Some(n) = f.file_name().to_str().filter(|n| n.len() == 64) {
                    out.push(n.to_string());
                }
            }
        }
        out
    }

    /// SHA-256 of the spool's copy of a blob (`None`: not in the spool).
    pub fn hash_spool_blob(&self, sha: &str) -> Result<Option<String>> {
        match File::open(self.blob_path(sha)) {
            Ok(f) => Ok(Some(hash_reader(f)?)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// SHA-256 of the backend's copy of a blob (`None`: not in the backend).
    pub fn hash_backend_blob(&self, sha: &str) -> Result<Option<String>> {
        let key = blob_key(sha);
        match self.backend.op.stat(&key) {
            Ok(_) => {}
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::Backend(e.to_string())),
        }
        let r = self
            .backend
            .op
            .reader(&key)
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let src = r
            .into_std_read(..)
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(Some(hash_reader(src)?))
    }

    /// Opens blob `sha` for reading. A blob that is not in the spool is fetched from
    /// the backend and verified against its name before anyone reads it.
    pub fn open_blob(&self, sha: &str) -> Result<File> {
        match self.open_local(sha)? {
            Some(f) => Ok(f),
            None => {
                self.fetch(sha)?;
                Ok(File::open(self.blob_path(sha))?)
            }
        }
    }

    /// Opens blob `sha` from the spool (`None`: not there), checking its bytes
    /// at the first open in this process of a blob it did not write.
    fn open_local(&self, sha: &str) -> Result<Option<File>> {
        self.touch(sha);
        let path = self.blob_path(sha);
        match File::open(&path) {
            Ok(f) if self.verified.lock().contains(&digest_key(sha)) => Ok(Some(f)),
            Ok(f) => {
                // Wrong bytes are never served.
                let got = hash_reader(&f)?;
                if got != sha {
                    log::error!(
                        "spool blob {} hashes to {got}: refusing to serve it",
                        path.display()
                    );
                    return Err(StoreError::Corrupt(path.display().to_string()));
                }
                self.verified.lock().insert(digest_key(sha));
                // Callers may read sequentially (copy-on-write): start at 0 again.
                let mut f = f;
                io::Seek::seek(&mut f, io::SeekFrom::Start(0))?;
                Ok(Some(f))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens blob `sha` (`len` bytes) for a reader. In the spool: the file. Else,
    /// when `chunks` (or the backend) has the blob's chunk hashes: ranged reads
    /// from the backend (nothing is fetched until read). Else the whole blob is
    /// fetched and checked. One `open(2)` when the blob is in the spool.
    pub fn open_for_read(
        &self,
        sha: &str,
        len: u64,
        chunks: impl FnOnce() -> Option<Chunks>,
    ) -> Result<BlobReader> {
        let key = digest_key(sha);
        if let Some(p) = self.partials.lock().get(&key) {
            self.touch(sha);
            return Ok(BlobReader::Ranged(p.clone()));
        }
        if let Some(f) = self.open_local(sha)? {
            return Ok(BlobReader::File(f));
        }
        if len > chunks::CHUNK {
            let listed = chunks().or_else(|| self.backend_chunks(sha));
            if let Some(c) = listed.filter(|c| c.fits(len)) {
                let mut partials = self.partials.lock();
                if let Some(p) = partials.get(&key) {
                    return Ok(BlobReader::Ranged(p.clone()));
                }
                let p = Arc::new(Partial::new(sha, len, c, self.partial_dir.join(sha))?);
                partials.insert(key, p.clone());
                return Ok(BlobReader::Ranged(p));
            }
        }
        self.fetch(sha)?;
        Ok(BlobReader::File(File::open(self.blob_path(sha))?))
    }

    /// The chunk list the uploader left beside blob `sha` in the backend, if any.
    fn backend_chunks(&self, sha: &str) -> Option<Chunks> {
        let body = self.backend.op.read(&chunks_key(sha)).ok()?.to_vec();
        Chunks::from_json(&body)
    }

    /// Reads `size` bytes at `offset` through `r`.
    pub fn read(&self, r: &BlobReader, offset: u64, size: u32) -> Result<Vec<u8>> {
        match r {
            BlobReader::File(f) => Ok(read_at(f, offset, size)?),
            BlobReader::Ranged(p) => {
                let (bytes, fetched) = p.read(&self.backend.op, offset, size)?;
                if let Some(f) = fetched {
                    self.fetched_bytes.fetch_add(f.bytes, Ordering::Relaxed);
                    if f.complete {
                        self.promote(p);
                    }
                }
                Ok(bytes)
            }
        }
    }

    /// A partial blob with every chunk checked becomes an ordinary spool blob
    /// (readers holding it keep reading the same file).
    fn promote(&self, p: &Arc<Partial>) {
        let key = digest_key(&p.sha);
        let mine = self
            .partials
            .lock()
            .get(&key)
            .is_some_and(|q| Arc::ptr_eq(p, q));
        if !mine {
            return;
        }
        if let Err(e) = self.adopt_staging(&p.path, p.file(), &p.sha) {
            log::warn!("cannot keep fetched blob {} in the spool: {e}", p.sha);
        }
        self.partials.lock().remove(&key);
    }

    /// Empties `spool/partial/`: which chunks a partial file holds was known
    /// only to the daemon that fetched them. For the daemon's start only (a
    /// command run beside a daemon must not pull its files away).
    pub fn clear_partials(&self) -> Result<()> {
        fs::remove_dir_all(&self.partial_dir)?;
        fs::create_dir_all(&self.partial_dir)?;
        Ok(())
    }

    /// Blobs being fetched by chunks, and the bytes they hold.
    pub fn partial_usage(&self) -> (usize, u64) {
        let partials = self.partials.lock();
        let bytes = partials.values().map(|p| p.present_bytes()).sum();
        (partials.len(), bytes)
    }

    fn fetch(&self, sha: &str) -> Result<()> {
        let key = blob_key(sha);
        let op = &self.backend.op;
        match op.stat(&key) {
            Ok(_) => {}
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => {
                return Err(StoreError::Missing(format!(
                    "{key} is in neither spool nor backend"
                )));
            }
            Err(e) => return Err(StoreError::Backend(e.to_string())),
        }
        let reader = op
            .reader(&key)
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let mut src = reader
            .into_std_read(..)
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let (mut tmp, tmp_path) = self.new_staging()?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let copied: io::Result<()> = (|| loop {
            let n = src.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            hasher.update(&buf[..n]);
            tmp.write_all(&buf[..n])?;
        })();
        if let Err(e) = copied {
            // Not a writer's staging file: never leave it to be taken for an orphan.
            let _ = fs::remove_file(&tmp_path);
            return Err(e.into());
        }
        let got = hex_digest(hasher);
        if let Ok(m) = tmp.metadata() {
            self.fetched_bytes.fetch_add(m.len(), Ordering::Relaxed);
        }
        if got != sha {
            let _ = fs::remove_file(&tmp_path);
            log::error!("backend object {key} hashes to {got}: refusing to serve it");
            return Err(StoreError::Corrupt(key));
        }
        self.adopt_staging(&tmp_path, &tmp, sha)
    }
}
