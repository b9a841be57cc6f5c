//! Retention garbage collection: versions past their artifact's `retention` leave
//! the catalog (a `delete_version` event each), then the blobs no version uses
//! any more leave the spool and the backend, with the versions' sidecars.
//!
//! Race with commits: content dedup means a commit may reuse a blob GC is about
//! to delete. A commit holds `gc_lock` shared from "blob is in the spool" until
//! its version row is committed; GC holds it exclusively from "no version uses
//! this blob" until the blob is gone. So either the commit finds the blob gone
//! and writes it again, or GC finds the new version and keeps the blob.

use super::namespace::Kind;
use super::{ArtifactFs, Result};
use crate::catalog::Expired;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct GcReport {
    pub dry_run: bool,
    pub expired_versions: usize,
    pub expired_bytes: u64,
    /// Blobs removed from spool and backend (in a dry run: that would be).
    pub blobs_deleted: usize,
    /// Blobs of expired versions kept because a live version shares them.
    pub blobs_kept_shared: usize,
    pub sidecars_deleted: usize,
    /// Spool blobs no version ever recorded (a crash between the blob and the
    /// catalog commit), removed.
    pub stray_spool_blobs: usize,
    pub errors: Vec<String>,
    pub versions: Vec<serde_json::Value>,
}

/// `ARTIFACTFS_FAULT_GC_PAUSE_MS`: a test-only pause inside the blob deletion
/// window, so the race test can make commits land in it.
fn fault_pause() -> Option<Duration> {
    static PAUSE: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
    *PAUSE.get_or_init(|| {
        std::env::var("ARTIFACTFS_FAULT_GC_PAUSE_MS")
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Duration::from_millis)
    })
}

/// Reports progress: (phase, done, total).
pub type Progress<'a> = &'a dyn Fn(&str, u64, u64);

impl ArtifactFs {
    /// One GC pass at the current time. `dry_run` changes nothing and reports
    /// what a real pass would remove.
    pub fn gc(&self, dry_run: bool, progress: Progress<'_>) -> Result<GcReport> {
        let _one = self.gc_running.lock();
        let now = crate::timefmt::now_ns();
        // An unlinked file still open by a writer may commit to its artifact: it
        // is not collected until the writer is done.
        let pinned: HashSet<i64> = self
            .ns
            .read()
            .nodes
            .values()
            .filter_map(|n| match &n.kind {
                Kind::File(f) if !n.attached => f.rowid,
                _ => None,
            })
            .collect();
        let expired: Vec<Expired> = self
            .reader
            .lock()
            .expired(now)?
            .into_iter()
            .filter(|e| !pinned.contains(&e.rowid))
            .collect();
        let mut report = GcReport {
            dry_run,
            expired_versions: expired.len(),
            expired_bytes: expired.iter().map(|e| e.size).sum(),
            versions: expired
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "id": e.artifact_id,
                        "version": e.version,
                        "path": e.path,
                        "created_at": crate::timefmt::rfc3339(e.created_at_ns),
                        "size_bytes": e.size,
                        "checksum": format!("sha256:{}", e.sha256),
                    })
                })
                .collect(),
            ..Default::default()
        };
        // Expired references per blob.
        let mut refs: BTreeMap<&str, u64> = BTreeMap::new();
        for e in &expired {
            *refs.entry(e.sha256.as_str()).or_default() += 1;
        }
        if dry_run {
            let cat = self.reader.lock();
            for (sha, n) in &refs {
                if cat.blob_references(sha)? > *n {
                    report.blobs_kept_shared += 1;
                } else {
                    report.blobs_deleted += 1;
                }
            }
            report.sidecars_deleted = expired.len();
            return Ok(report);
        }
        let total = expired.len() as u64;
        for (i, chunk) in expired.chunks(256).enumerate() {
            self.catalog
                .lock()
                .write(|tx| chunk.iter().try_for_each(|e| tx.expire_version(e, now)))?;
            progress(
                "versions",
                ((i * 256 + chunk.len()) as u64).min(total),
                total,
            );
        }
        // Every deletion still to do: this pass's (recorded with the expiry)
        // and any an earlier pass left (a failed deletion, a crash). Each leaves
        // the list only once done, so an expired version's sidecar can never
        // stay behind in the backend for `reindex` to bring back.
        let pending = self.reader.lock().gc_pending()?;
        let total = pending.len() as u64;
        let mut handled: HashSet<String> = HashSet::new();
        for (i, key) in pending.iter().enumerate() {
            let done = if let Some(sha) = key.strip_prefix("blob:") {
                handled.insert(sha.to_string());
                self.collect_blob(sha, &mut report, false)?
            } else if let Some((id, v)) = key
                .strip_prefix("sidecar:")
                .and_then(|r| r.rsplit_once(':'))
                .and_then(|(id, v)| Some((id, v.parse::<u32>().ok()?)))
            {
                match self.store.delete_sidecar(id, v) {
                    Ok(()) => {
                        report.sidecars_deleted += 1;
                        true
                    }
                    Err(err) => {
                        report.errors.push(format!("sidecar of {id}@{v}: {err}"));
                        false
                    }
                }
            } else {
                log::warn!("gc: dropping unknown pending deletion {key:?}");
                true
            };
            if done {
                if let Err(e) = self.catalog.lock().gc_done(key) {
                    log::warn!("gc: cannot mark {key} done: {e}");
                }
            }
            progress("backend", i as u64 + 1, total);
        }
        for sha in self.store.spool_blobs() {
            if !handled.contains(sha.as_str()) {
                self.collect_blob(&sha, &mut report, true)?;
            }
        }
        for e in &report.errors {
            log::error!("gc: {e}");
        }
        log::info!(
            "gc: {} expired version(s) ({} bytes) removed, {} blob(s) deleted, {} kept (shared), {} stray",
            report.expired_versions,
            report.expired_bytes,
            report.blobs_deleted,
            report.blobs_kept_shared,
            report.stray_spool_blobs
        );
        Ok(report)
    }

    /// Deletes blob `sha` if no version uses it (see the module comment).
    /// Deletes blob `sha` from the spool and the backend unless a version uses
    /// it. `Ok(false)`: the deletion failed (reported; to be tried again).
    fn collect_blob(&self, sha: &str, report: &mut GcReport, stray: bool) -> Result<bool> {
        let _excl = self.gc_lock.write();
        if self.reader.lock().blob_referenced(sha)? || self.scratch_uses(sha) {
            if !stray {
                report.blobs_kept_shared += 1;
            }
            return Ok(true);
        }
        if let Some(pause) = fault_pause() {
            // Fault injection for the race test: widen the window between "no
            // version uses it" and the deletion.
            std::thread::sleep(pause);
        }
        let deleted = self.store.delete_blob(sha);
        if deleted.is_ok() {
            if let Err(e) = self.catalog.lock().forget_chunks(sha) {
                log::warn!("cannot forget the chunk hashes of blob {sha}: {e}");
            }
        }
        match deleted {
            Ok(()) if stray => report.stray_spool_blobs += 1,
            Ok(()) => report.blobs_deleted += 1,
            Err(e) => {
                report.errors.push(format!("blob {sha}: {e}"));
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Whether a scratch file (no catalog row) has these bytes now.
    fn scratch_uses(&self, sha: &str) -> bool {
        self.ns.read().nodes.values().any(|n| match &n.kind {
            Kind::File(f) => f.scratch && f.current.as_ref().is_some_and(|c| c.sha256 == sha),
            _ => false,
        })
    }

    /// Keeps the spool's blobs under `cap` bytes (the read cache, `--cache-max`),
    /// checking every `interval`.
    pub fn start_cache_evictor(self: &Arc<Self>, cap: u64, interval: Duration) {
        self.every("cache", interval, move |fs| {
            let (n, bytes) = fs.store.evict(cap, |sha| {
                fs.reader.lock().blob_in_backend(sha).unwrap_or(false)
            });
            if n > 0 {
                log::info!(
                    "read cache: evicted {n} blob(s), {bytes} bytes, from the spool (cap {cap})"
                );
            }
        });
    }

    /// Runs `gc` every `interval` for as long as the filesystem lives.
    pub fn start_gc_timer(self: &Arc<Self>, interval: Duration) {
        self.every("gc", interval, |fs| {
            if let Err(e) = fs.gc(false, &|_, _, _| {}) {
                log::error!("periodic gc failed: {e}");
            }
        });
    }

    /// Retries `failed` uploads every `interval` (a backend that was down for
    /// longer than the attempts' backoff gets them without a remount).
    pub fn start_retry_timer(self: &Arc<Self>, interval: Duration) {
        self.every("retry", interval, |fs| {
            if let Err(e) = fs.retry_failed() {
                log::error!("cannot retry failed uploads: {e}");
            }
        });
    }

    /// A thread `name` that runs `f` every `interval` while the filesystem lives
    /// (it holds only a weak reference between runs).
    fn every(
        self: &Arc<Self>,
        name: &str,
        interval: Duration,
        f: impl Fn(&ArtifactFs) + Send + 'static,
    ) {
        let weak: Weak<ArtifactFs> = Arc::downgrade(self);
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                loop {
                    std::thread::sleep(interval);
                    let Some(fs) = weak.upgrade() else { return };
                    f(&fs);
                }
            })
            .expect("spawn a periodic thread");
    }
}
