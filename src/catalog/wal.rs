//! Group commit. With `--durability full` a version's catalog transaction runs
//! with `synchronous=NORMAL` (no fsync at COMMIT, under the catalog mutex), and the
//! committer then waits here, outside the mutex, until the WAL file has been
//! fsynced past its transaction. Concurrent committers share one fsync: whoever
//! finds no sync running starts one covering every transaction committed so far,
//! the others wait for it (or the next). `close()` still returns only once the
//! version is durable; the disk sees one flush per batch instead of one per file.
//!
//! Sound because the WAL frames of a committed transaction are in the WAL file
//! when COMMIT returns; a checkpoint that moves them into the database meanwhile
//! syncs the database itself (SQLite does at every checkpoint).

use parking_lot::{Condvar, Mutex};
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct WalSync {
    path: PathBuf,
    file: Mutex<Option<File>>,
    /// Tickets handed out: one per deferred transaction, in commit order.
    committed: AtomicU64,
    /// (highest ticket known durable, a sync is running)
    state: Mutex<(u64, bool)>,
    cv: Condvar,
    /// fsyncs done, for `.artifactfs/status` (how well commits group).
    syncs: AtomicU64,
}

impl WalSync {
    pub fn new(db: &std::path::Path) -> WalSync {
        let mut p = db.as_os_str().to_owned();
        p.push("-wal");
        WalSync {
            path: PathBuf::from(p),
            file: Mutex::new(None),
            committed: AtomicU64::new(0),
            state: Mutex::new((0, false)),
            cv: Condvar::new(),
            syncs: AtomicU64::new(0),
        }
    }

    /// Called under the catalog mutex right after a deferred COMMIT.
    pub fn ticket(&self) -> u64 {
        self.committed.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Returns once the transaction of `ticket` is on disk.
    pub fn wait_durable(&self, ticket: u64) -> std::io::Result<()> {
        let mut st = self.state.lock();
        loop {
            if st.0 >= ticket {
                return Ok(());
            }
            if !st.1 {
                st.1 = true;
                let upto = self.committed.load(Ordering::SeqCst);
                drop(st);
                let res = self.sync();
                st = self.state.lock();
                st.1 = false;
                if res.is_ok() {
                    st.0 = st.0.max(upto);
                }
                self.cv.notify_all();
                res?;
            } else {
                self.cv.wait(&mut st);
            }
        }
    }

    /// (transactions committed, fsyncs that made them durable)
    pub fn counts(&self) -> (u64, u64) {
        (
            self.committed.load(Ordering::SeqCst),
            self.syncs.load(Ordering::SeqCst),
        )
    }

    fn sync(&self) -> std::io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        self.syncs.fetch_add(1, Ordering::SeqCst);
        let mut f = self.file.lock();
        // SQLite removes the WAL only when its last connection closes (the daemon
        // holds two), but an fsync of a removed file would sync nothing: check.
        let current = std::fs::metadata(&self.path)?.ino();
        if f.as_ref().and_then(|f| f.metadata().ok()).map(|m| m.ino()) != Some(current) {
            *f = Some(File::open(&self.path)?);
        }
        f.as_ref().expect("opened").sync_data()
    }
}
