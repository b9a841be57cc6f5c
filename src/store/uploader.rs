//! Write-back: committed versions are durable in the spool and the catalog before
//! `close()` returns; this uploader copies their blobs and manifest sidecars to the
//! backend in the background, retrying with capped, jittered exponential backoff.

use super::chunks::{ChunkHasher, Chunks};
use super::{Store, blob_key, chunks_key, manifest_key, trace_key};
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Debug, Default)]
pub struct Job {
    pub rowid: i64,
    pub version: u32,
    pub artifact_id: String,
    pub sha256: String,
    pub manifest: String,
    /// Bytes of the blob, counted against the spool cap until it is uploaded.
    pub size: u64,
    /// Only rewrite the sidecar (the artifact was renamed, deleted or had its
    /// attributes changed): no blob, and no status change when done.
    pub sidecar_only: bool,
    /// A trace's sidecar (owner and participants) instead of a version's:
    /// written as `Fresh` says when the job runs, deleted when it says `None`.
    /// Always `sidecar_only`.
    pub trace: Option<String>,
}

/// How an upload ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Blob and sidecar are in the backend.
    Completed,
    /// Every attempt failed: the version stays in the spool, marked `failed`, and
    /// is queued again at the next mount.
    Failed,
}

/// Called when a job ends, with the blob's chunk hashes when this upload sent
/// its bytes (so reads from the backend can be ranged and checked).
type Done = dyn Fn(&Job, Outcome, Option<&Chunks>) + Send + Sync;
/// The sidecar to write for a job, read when it is written (so a rename or
/// `setfattr` since the commit is in it); `None`: the version is gone, write none.
pub type Fresh = dyn Fn(&Job) -> Option<String> + Send + Sync;

struct State {
    queue: VecDeque<Job>,
    in_flight: usize,
    stop: bool,
}

pub struct Uploader {
    state: Mutex<State>,
    cv: Condvar,
    /// Bytes of versions committed but not yet in the backend (queued,
    /// uploading, or failed): what a spool cap limits.
    waiting: AtomicU64,
    /// Whether the last upload attempt reached the backend (None: none yet).
    last_ok: Mutex<Option<bool>>,
}

const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl Uploader {
    /// Starts `workers` upload threads. `done` runs after a job's blob and sidecar
    /// are both in the backend (it marks the version `completed`).
    pub fn start(
        store: Arc<Store>,
        workers: usize,
        max_attempts: u32,
        done: Box<Done>,
        fresh: Box<Fresh>,
    ) -> Arc<Uploader> {
        let up = Arc::new(Uploader {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                in_flight: 0,
                stop: false,
            }),
            cv: Condvar::new(),
            waiting: AtomicU64::new(0),
            last_ok: Mutex::new(None),
        });
        let done: Arc<Done> = Arc::from(done);
        let fresh: Arc<Fresh> = Arc::from(fresh);
        for i in 0..workers {
            let up = up.clone();
            let store = store.clone();
            let done = done.clone();
            let fresh = fresh.clone();
            std::thread::Builder::new()
                .name(format!("upload-{i}"))
                .spawn(move || up.work(&store, max_attempts, &*done, &*fresh))
                .expect("spawn uploader");
        }
        up
    }

    /// Queues a job whose bytes are already counted as waiting (a `failed`
    /// version's retry).
    pub fn retry(&self, job: Job) {
        self.state.lock().queue.push_back(job);
        self.cv.notify_all();
    }

    pub fn enqueue(&self, job: Job) {
        self.waiting.fetch_add(job.size, Ordering::Relaxed);
        self.state.lock().queue.push_back(job);
        // notify_all: the condvar is shared by idle workers and drain().
        self.cv.notify_all();
    }

    /// The backend as the uploader last saw it: reachable, not, or untried.
    pub fn backend_reachable(&self) -> Option<bool> {
        *self.last_ok.lock()
    }

    pub fn waiting_bytes(&self) -> u64 {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Jobs queued or being uploaded.
    pub fn pending(&self) -> usize {
        let s = self.state.lock();
        s.queue.len() + s.in_flight
    }

    /// Waits until nothing is pending or `timeout` passes; true when drained.
    pub fn drain(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.state.lock();
        while s.queue.len() + s.in_flight > 0 {
            if self.cv.wait_until(&mut s, deadline).timed_out() {
                return s.queue.len() + s.in_flight == 0;
            }
        }
        true
    }

    pub fn stop(&self) {
        self.state.lock().stop = true;
        self.cv.notify_all();
    }

    fn work(&self, store: &Store, max_attempts: u32, done: &Done, fresh: &Fresh) {
        loop {
            let job = {
                let mut s = self.state.lock();
                loop {
                    if s.stop {
                        return;
                    }
                    if let Some(j) = s.queue.pop_front() {
                        s.in_flight += 1;
                        break j;
                    }
                    self.cv.wait(&mut s);
                }
            };
            let mut attempt = 0u32;
            loop {
                let result = upload(store, &job, fresh);
                *self.last_ok.lock() = Some(result.is_ok());
                match result {
                    Ok(chunks) => {
                        // Saturating: a miscount must never turn into a full
                        // spool (ENOSPC for every writer).
                        let _ =
                            self.waiting
                                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                                    Some(w.saturating_sub(job.size))
                                });
                        done(&job, Outcome::Completed, chunks.as_ref());
                        break;
                    }
                    Err(e) if attempt + 1 >= max_attempts => {
                        log::error!(
                            "upload of {}@{} failed {} times, marked failed (kept in the spool, \
                             retried at the next mount): {e}",
                            job.artifact_id,
                            job.version,
                            attempt + 1
                        );
                        done(&job, Outcome::Failed, None);
                        break;
                    }
                    Err(e) => {
                        attempt += 1;
                        let wait = backoff(attempt);
                        log::warn!(
                            "upload of {}@{} failed (attempt {attempt}), retrying in {:?}: {e}",
                            job.artifact_id,
                            job.version,
                            wait
                        );
                        let mut s = self.state.lock();
                        if s.stop {
                            s.in_flight -= 1;
                            return;
                        }
                        // Other jobs' notifications must not cut the backoff short.
                        let until = Instant::now() + wait;
                        while !s.stop && Instant::now() < until {
                            let _ = self.cv.wait_until(&mut s, until);
                        }
                    }
                }
            }
            self.state.lock().in_flight -= 1;
            self.cv.notify_all();
        }
    }
}

/// 200 ms doubling to 30 s, with up to 50% random jitter so that many retries do
/// not hit a recovering backend at the same instant.
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(100)
        .saturating_mul(1 << attempt.min(16))
        .min(MAX_BACKOFF);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    base + base.mul_f64((nanos % 1000) as f64 / 2000.0)
}

/// Places `key` into a local `fs://` backend: `make` writes a temporary file
/// beside it, which is then renamed into place (so a reader never sees half an
/// object). No fsync: the spool and the catalog are the durable copies, and after
/// a power cut `verify --repair` restores what the backend lost. `false` (for
/// another kind of backend, or any failure) means: go through OpenDAL instead.
fn place_in_fs_backend(
    store: &Store,
    key: &str,
    make: impl FnOnce(&std::path::Path) -> std::io::Result<()>,
) -> bool {
    let Some(root) = &store.backend.local_root else {
        return false;
    };
    let dest = root.join(key);
    let tmp = dest.with_extension("part");
    let ok = dest
        .parent()
        .is_some_and(|d| std::fs::create_dir_all(d).is_ok())
        && make(&tmp).is_ok()
        && std::fs::rename(&tmp, &dest).is_ok();
    if !ok {
        let _ = std::fs::remove_file(&tmp);
    }
    ok
}

fn upload(store: &Store, job: &Job, fresh: &Fresh) -> Result<Option<Chunks>, String> {
    let op = &store.backend.op;
    if let Some(name) = &job.trace {
        let key = trace_key(name);
        return match fresh(job) {
            Some(body) => {
                let body = body.into_bytes();
                if !place_in_fs_backend(store, &key, |tmp| std::fs::write(tmp, &body)) {
                    op.write(&key, body).map_err(|e| e.to_string())?;
                }
                Ok(None)
            }
            None => op.delete(&key).map(|_| None).map_err(|e| e.to_string()),
        };
    }
    let manifest = match fresh(job) {
        Some(m) => m,
        None if job.sidecar_only => return Ok(None),
        None => job.manifest.clone(),
    };
    let chunks = if job.sidecar_only {
        None
    } else {
        upload_blob(store, job)?
    };
    // The sidecar describes the version as it will be once this upload is done.
    let mut sidecar: serde_json::Value =
        serde_json::from_str(&manifest).map_err(|e| e.to_string())?;
    sidecar["status"] = "completed".into();
    let key = manifest_key(&job.artifact_id, job.version);
    let body = sidecar.to_string().into_bytes();
    // Into a local backend without OpenDAL's fs writer, which fsyncs every
    // close: a whole fsync per small version.
    if !place_in_fs_backend(store, &key, |tmp| std::fs::write(tmp, &body)) {
        op.write(&key, body).map_err(|e| e.to_string())?;
    }
    Ok(chunks)
}

/// Puts the job's blob into the backend, unless it is there already. When the
/// bytes are sent, returns their chunk hashes, computed on the way; bytes that
/// do not hash to the blob's name are not sent (the spool copy is bad).
fn upload_blob(store: &Store, job: &Job) -> Result<Option<Chunks>, String> {
    let op = &store.backend.op;
    let key = blob_key(&job.sha256);
    let present = op.exists(&key).map_err(|e| e.to_string())?;
    // On the spool's filesystem a hard link makes the (immutable) blob part of
    // the backend without writing its bytes again (another filesystem: EXDEV,
    // and the copy below).
    let linked = !present
        && place_in_fs_backend(store, &key, |tmp| {
            std::fs::hard_link(store.blob_path(&job.sha256), tmp)
        });
    if present || linked {
        return Ok(None);
    }
    let mut f = store.open_blob(&job.sha256).map_err(|e| e.to_string())?;
    let mut w = op.writer(&key).map_err(|e| e.to_string())?;
    let mut hasher = ChunkHasher::default();
    let mut buf = vec![0u8; 8 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        w.write(buf[..n].to_vec()).map_err(|e| e.to_string())?;
    }
    let (sha, chunks) = hasher.finish();
    if sha != job.sha256 {
        // Dropped unclosed: the object is never completed in the backend.
        drop(w);
        log::error!(
            "spool blob {} hashes to {sha}: not uploaded",
            store.blob_path(&job.sha256).display()
        );
        return Err(format!("spool blob {} is corrupt", job.sha256));
    }
    w.close().map_err(|e| e.to_string())?;
    // Ranged reads are for blobs of more than one chunk: no extra object (and
    // PUT) for every small version.
    if chunks.hashes.len() > 1 {
        op.write(&chunks_key(&job.sha256), chunks.to_json())
            .map_err(|e| e.to_string())?;
    }
    Ok(Some(chunks))
}
