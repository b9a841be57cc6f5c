//! Open files and the commit of a version: staging → SHA-256 → blob → one catalog
//! transaction → namespace → kernel invalidation → upload queue.

use super::access::{self, Visibility};
use super::handle::{ReadHandle, WriteHandle, same_process};
use super::names;
use super::namespace::{Content, EMPTY_SHA256, FileNode, Kind, Meta, Namespace};
use super::ops::touch_dir;
use super::{ArtifactFs, Attr, FsError, Handle, Ino, OpenReply, Requester, Result};
use crate::catalog::{Catalog, CommitOutcome, NewVersion, Target, guess_content_type};
use crate::store::Chunks;
use crate::store::uploader::Job;
use crate::timefmt::now_ns;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::ffi::OsStr;

impl ArtifactFs {
    pub fn open(&self, ino: Ino, flags: i32, req: Requester) -> Result<OpenReply> {
        let Requester { uid, pid, .. } = req;
        let write = flags & libc::O_ACCMODE != libc::O_RDONLY;
        let want = match flags & libc::O_ACCMODE {
            libc::O_RDONLY => access::R,
            libc::O_WRONLY => access::W,
            _ => access::R | access::W,
        } | if flags & libc::O_TRUNC != 0 {
            access::W
        } else {
            0
        };
        let (content, pinned) = {
            let ns = self.ns.read();
            self.check(&ns, &self.caller(uid), ino, want)?;
            match &ns.get(ino).ok_or(FsError::NotFound)?.kind {
                Kind::File(f) if f.pending_truncate => (None, false),
                Kind::File(f) => (f.current.clone(), false),
                Kind::Version(v) if !write => (Some(v.content.clone()), true),
                Kind::StatusFile if !write => {
                    drop(ns);
                    let fh = self.new_fh(Handle::Read(ReadHandle {
                        ino,
                        key: String::new(),
                        size: 0,
                        blob: None,
                        pinned: true,
                        generated: Some(self.status_json()?.into_bytes()),
                    }));
                    // Generated at open, its size is not known to stat: no page cache.
                    return Ok(OpenReply {
                        fh,
                        direct_io: true,
                        no_flush: true,
                        ..Default::default()
                    });
                }
                Kind::StatusFile => return Err(FsError::ReadOnly),
                Kind::Version(_) => return Err(FsError::ReadOnly),
                Kind::Symlink(_) => return Err(FsError::Invalid("open of a symlink".into())),
                _ => return Err(FsError::IsDir),
            }
        };
        if write {
            let trunc = flags & libc::O_TRUNC != 0;
            let mut h = WriteHandle::new(
                ino,
                uid,
                flags & libc::O_APPEND != 0,
                content.clone(),
                trunc,
            );
            h.opener = pid;
            if trunc && content.as_ref().is_some_and(|c| c.size > 0) {
                h.meta_dirty = true;
            }
            let fh = self.new_fh(Handle::Write(Mutex::new(h)));
            return Ok(OpenReply {
                fh,
                direct_io: true,
                ..Default::default()
            });
        }
        let blob = match &content {
            Some(c) => Some(self.store.open_for_read(&c.sha256, c.size, || {
                let (size, hashes) = self.reader.lock().chunks(&c.sha256).ok().flatten()?;
                Chunks::from_bytes(size, &hashes)
            })?),
            None => None,
        };
        // Page-cache bookkeeping is by content, not version number: equal bytes
        // may share pages, and numbers change meaning after a rename over.
        let key = content
            .as_ref()
            .map_or(EMPTY_SHA256, |c| c.sha256.as_str())
            .to_string();
        // A reader commits nothing: no FLUSH round trip at close() (posix locks
        // are the kernel's: the daemon implements none).
        let mut reply = OpenReply {
            fh: 0,
            keep_cache: pinned,
            no_flush: true,
            ..Default::default()
        };
        if !pinned {
            let mut ns = self.ns.write();
            if let Some(f) = ns.file_mut(ino) {
                let others = f.readers.iter().any(|(k, &n)| *k != key && n > 0);
                if others {
                    // The kernel's pages are another version's, still being read.
                    reply.direct_io = true;
                } else if f.cached_content.as_deref() == Some(key.as_str()) {
                    reply.keep_cache = true;
                } else {
                    // Pages and size the kernel holds are of another version.
                    f.cached_content = Some(key.clone());
                    reply.inval_attrs = true;
                }
                *f.readers.entry(key.clone()).or_insert(0) += 1;
            }
        }
        let size = content.as_ref().map_or(0, |c| c.size);
        reply.fh = self.new_fh(Handle::Read(ReadHandle {
            ino,
            key,
            size,
            blob,
            pinned,
            generated: None,
        }));
        if reply.inval_attrs {
            self.invalidate(ino);
        }
        Ok(reply)
    }

    /// `open(O_CREAT)` of a name that does not exist: a new artifact, or the
    /// deleted artifact that last had this path, continued.
    pub fn create(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        flags: i32,
        req: Requester,
    ) -> Result<(Attr, OpenReply)> {
        let Requester { uid, gid, pid } = req;
        let name = names::check_new(name)?;
        let existing = self.ns.read().child(parent, name);
        if let Some(ino) = existing {
            if flags & libc::O_EXCL != 0 {
                return Err(FsError::Exists);
            }
            let reply = self.open(ino, flags, req)?;
            let mut ns = self.ns.write();
            ns.add_lookup(ino);
            return Ok((
                ArtifactFs::attr_of(&ns, ino).ok_or(FsError::NotFound)?,
                reply,
            ));
        }
        let caller = self.caller(uid);
        let path = {
            let ns = self.ns.read();
            let path = Self::creation_path(&ns, parent, name, "file")?;
            self.check(&ns, &caller, parent, access::W | access::X)?;
            path
        };
        // The deleted artifact that had this path continues, if the caller could
        // have written it; otherwise this is a new artifact.
        let trace = crate::catalog::trace_step(&path).0;
        let scratch = self.is_scratch(name);
        let dead = if scratch {
            None
        } else {
            self.reader.lock().artifact_at(&path)?
        }
        .filter(|a| !a.live)
        .filter(|a| {
            caller.superuser
                || a.owner == caller.agent()
                || (a.visibility != "private" && self.trace_acl_of(trace).admits(caller.agent()))
        });
        let now = now_ns();
        let (rowid, id, owner, visibility) = match dead {
            Some(a) => (
                Some(a.rowid),
                a.id,
                a.owner,
                Visibility::parse(&a.visibility),
            ),
            None => (
                None,
                ulid::Ulid::new().to_string(),
                caller.agent().to_string(),
                Visibility::parse(&self.defaults.visibility),
            ),
        };
        let ino = {
            let mut ns = self.ns.write();
            if ns.child(parent, name).is_some() {
                return Err(FsError::Exists);
            }
            let meta = Meta {
                mode: mode & 0o7777,
                uid,
                gid,
                mtime_ns: now,
                ctime_ns: now,
            };
            let ino = ns.attach(
                parent,
                name,
                Kind::File(FileNode {
                    rowid,
                    id,
                    owner,
                    visibility,
                    meta,
                    current: None,
                    cached_content: None,
                    readers: HashMap::new(),
                    mtime_set_ns: 0,
                    pending_truncate: false,
                    scratch,
                }),
            );
            if let Some(r) = rowid {
                ns.by_rowid.insert(r, ino);
            }
            touch_dir(&mut ns, parent, now);
            ns.add_lookup(ino);
            ino
        };
        let mut h = WriteHandle::new(ino, uid, flags & libc::O_APPEND != 0, None, true);
        h.meta_dirty = true;
        h.opener = pid;
        let fh = self.new_fh(Handle::Write(Mutex::new(h)));
        let attr = ArtifactFs::attr_of(&self.ns.read(), ino).ok_or(FsError::NotFound)?;
        Ok((
            attr,
            OpenReply {
                fh,
                direct_io: true,
                ..Default::default()
            },
        ))
    }

    pub fn read(&self, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>> {
        match &*self.handle(fh)? {
            Handle::Read(r) => r.read(&self.store, offset, size),
            Handle::Write(w) => w.lock().read(&self.store, offset, size),
            Handle::Dir(_) => Err(FsError::IsDir),
        }
    }

    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> Result<u32> {
        match &*self.handle(fh)? {
            Handle::Write(w) => {
                let mut h = w.lock();
                self.check_spool_cap(h.size(), offset, data.len())?;
                h.write(&self.store, offset, data)
            }
            _ => Err(FsError::BadHandle),
        }
    }

    /// With `--spool-max`, a write that would take the bytes waiting for upload
    /// plus this writer's file over the cap is ENOSPC (the backend is down or
    /// behind). What is already closed stays in the spool until it is uploaded.
    fn check_spool_cap(&self, size: u64, offset: u64, len: usize) -> Result<()> {
        let Some(cap) = self.spool_max else {
            return Ok(());
        };
        let waiting = self.uploader.waiting_bytes();
        let after = size.max(offset + len as u64);
        if waiting + after > cap {
            log::error!(
                "spool is full: {waiting} bytes wait for upload and this file would need {after} \
                 (cap {cap} bytes); is the backend down?"
            );
            return Err(FsError::NoSpace);
        }
        Ok(())
    }

    /// FLUSH (every `close()` of a descriptor): commits when bytes were written
    /// since the last commit, so `close()` returns after the version exists.
    ///
    /// Only a FLUSH from the opener's process commits. Every fork duplicates
    /// the descriptors of all the parent's threads, and the child's exec or
    /// exit closes them: FLUSHes that would otherwise cut a version in the
    /// middle of another thread's writes. A descriptor handed to a child on
    /// purpose is committed by the parent's `close()`, or at RELEASE.
    pub fn flush(&self, fh: u64, pid: u32) -> Result<()> {
        if let Handle::Write(w) = &*self.handle(fh)? {
            let mut h = w.lock();
            if h.dirty && !same_process(h.opener, pid) {
                log::debug!(
                    "flush of inode {} by pid {pid}, not the opener {}: no commit",
                    h.ino,
                    h.opener
                );
            } else if h.dirty {
                self.commit(&mut h)?;
            } else if h.meta_dirty && h.truncated {
                // `: > f`, or bash's flush between open(O_TRUNC) and its first
                // write: no version yet, but whoever opens the file now must see
                // what the writer did to it, an empty file.
                if let Some(f) = self.ns.write().file_mut(h.ino) {
                    f.pending_truncate = true;
                }
                self.invalidate(h.ino);
            }
        }
        Ok(())
    }

    /// RELEASE (last reference gone): commits what FLUSH did not (a created or
    /// truncated file without writes). Errors here cannot reach the application,
    /// so they are logged and the staging file is kept.
    pub fn release(&self, fh: u64) -> Result<()> {
        let h = self.handles.write().remove(&fh).ok_or(FsError::BadHandle)?;
        match &*h {
            Handle::Write(w) => {
                let mut h = w.lock();
                if h.dirty || h.meta_dirty {
                    if let Err(e) = self.commit(&mut h) {
                        log::error!("commit at release of inode {} failed: {e}", h.ino);
                        match (&h.staging, &h.base) {
                            (Some(st), _) => {
                                log::error!("its bytes are kept in {}", st.path.display())
                            }
                            (None, Some(b)) => log::error!(
                                "its bytes are kept as blob {}",
                                self.store.blob_path(&b.sha256).display()
                            ),
                            _ => {}
                        }
                        if let Some(f) = self.ns.write().file_mut(h.ino) {
                            f.pending_truncate = false;
                        }
                        return Err(e);
                    }
                }
                if let Some(st) = h.staging.take() {
                    let _ = std::fs::remove_file(&st.path);
                }
            }
            Handle::Read(r) if !r.pinned => {
                let mut ns = self.ns.write();
                if let Some(f) = ns.file_mut(r.ino) {
                    if let Some(n) = f.readers.get_mut(&r.key) {
                        *n -= 1;
                        if *n == 0 {
                            f.readers.remove(&r.key);
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    pub fn fsync(&self, fh: u64) -> Result<()> {
        match &*self.handle(fh)? {
            Handle::Write(w) => w.lock().sync(),
            _ => Ok(()),
        }
    }

    /// Makes the handle's content a version (or nothing, when it equals the
    /// current version). Data I/O happens before the catalog lock is taken.
    pub(super) fn commit(&self, h: &mut WriteHandle) -> Result<()> {
        h.ensure_staging(&self.store)?;
        let st = h.staging.as_mut().expect("made above");
        let sha = st.finish_hash()?;
        let size = st.size;
        // The first bytes, for guessing a new artifact's content type.
        let mut head = vec![0u8; 512];
        let n = std::os::unix::fs::FileExt::read_at(&st.file, &mut head, 0)?;
        head.truncate(n);
        // Held until the version row is committed: GC must not delete this blob
        // between "it exists" and "a version uses it" (see `gc`).
        let _gc = self.gc_lock.read();
        self.store.adopt_staging(&st.path, &st.file, &sha)?;
        h.staging = None;
        let content = Content {
            version: 0,
            size,
            sha256: sha.clone(),
        };
        match self.record(h, &content, &head) {
            Ok(content) => {
                h.committed(content);
                Ok(())
            }
            Err(e) => {
                // The bytes are a blob now; keep them as this handle's content so a
                // later FLUSH or the RELEASE retries with them, not the old base.
                h.rebase_uncommitted(content);
                Err(e)
            }
        }
    }

    /// The metadata half of a commit: one catalog transaction, then the namespace,
    /// the kernel's caches and the upload queue. The namespace lock is not held
    /// while SQLite syncs, so lookups go on; the catalog mutex keeps concurrent
    /// metadata changes in order.
    fn record(&self, h: &WriteHandle, content: &Content, head: &[u8]) -> Result<Content> {
        let now = now_ns();
        if let Some(c) = self.record_scratch(h, content, now) {
            return Ok(c);
        }
        let created_by = self.who(h.uid);
        let uri = self.store.uri(&content.sha256);
        let mut cat = self.catalog.lock();
        let (node, target, path, meta, node_name) = {
            let ns = self.ns.read();
            let node = ns.file(h.ino).ok_or(FsError::BadHandle)?.clone();
            let node_name = ns.get(h.ino).map(|n| n.name.clone()).unwrap_or_default();
            // The artifact's attached node: after a rename over it, another inode.
            let target = match node.rowid {
                Some(r) => ns.by_rowid.get(&r).copied(),
                None => ns.get(h.ino).filter(|n| n.attached).map(|_| h.ino),
            };
            let path = match target {
                Some(t) => ns.path(t),
                None if node.rowid.is_none() => {
                    let n = ns.get(h.ino).ok_or(FsError::BadHandle)?;
                    Some(
                        ns.path(n.parent)
                            .map_or(n.name.clone(), |p| format!("{p}/{}", n.name)),
                    )
                }
                None => None,
            };
            let tnode = target.and_then(|t| ns.file(t)).unwrap_or(&node);
            (node.clone(), target, path, tnode.meta.clone(), node_name)
        };
        let mtime_ns = if node.mtime_set_ns > h.last_write_ns {
            meta.mtime_ns
        } else {
            now
        };
        let v = NewVersion {
            target: match node.rowid {
                Some(r) => Target::Existing(r),
                None => Target::New {
                    id: &node.id,
                    owner: &node.owner,
                    artifact_type: self.type_for(path.as_deref().unwrap_or(&node_name)),
                    content_type: &guess_content_type(&node_name, head),
                    visibility: &self.defaults.visibility,
                    retention: &self.defaults.retention,
                },
            },
            path: path.as_deref(),
            live: target.is_some(),
            mode: meta.mode,
            uid: meta.uid,
            gid: meta.gid,
            size: content.size,
            sha256: &content.sha256,
            created_by: &created_by,
            created_at_ns: now,
            mtime_ns,
            uri,
        };
        let (outcome, ticket) = match &self.wal {
            Some(wal) => cat.write_deferred(wal, |tx| tx.commit(&v))?,
            None => (commit_in(&mut cat, &v)?, 0),
        };
        let (rowid, version, manifest, event) = match outcome {
            CommitOutcome::Committed {
                rowid,
                version,
                manifest,
                event,
            } => (rowid, version, Some(manifest), Some(event)),
            CommitOutcome::Unchanged { rowid, version } => (rowid, version, None, None),
        };
        let content = Content {
            version,
            ..content.clone()
        };
        {
            let mut ns = self.ns.write();
            if node.rowid.is_none() {
                if let Some(f) = ns.file_mut(h.ino) {
                    f.rowid = Some(rowid);
                }
                if target.is_some() {
                    ns.by_rowid.insert(rowid, h.ino);
                }
            }
            if let Some(f) = target.and_then(|t| ns.file_mut(t)) {
                f.current = Some(content.clone());
                f.pending_truncate = false;
                if manifest.is_some() {
                    f.meta.mtime_ns = mtime_ns;
                    f.meta.ctime_ns = now;
                }
            }
        }
        drop(cat);
        if let Some(t) = target {
            self.invalidate(t);
        }
        // Durable before close() returns, the hook hears of it, or it is uploaded;
        // concurrent commits share the fsync (see `catalog::wal`).
        if let Some(wal) = &self.wal {
            wal.wait_durable(ticket).map_err(|e| {
                log::error!("cannot sync the catalog: {e}");
                FsError::from(e)
            })?;
        }
        if let Some(e) = event {
            self.tell_hook(e);
        }
        if let Some(m) = manifest {
            log::debug!(
                "committed {}@{} {} ({} bytes)",
                m.id,
                m.version,
                m.path,
                m.size_bytes
            );
            let json = serde_json::to_string(&m).map_err(|e| FsError::Io(e.to_string()))?;
            self.uploader.enqueue(Job {
                rowid,
                version,
                artifact_id: m.id,
                sha256: content.sha256.clone(),
                manifest: json,
                size: content.size,
                sidecar_only: false,
                trace: None,
            });
        }
        Ok(content)
    }

    /// Records the bytes a scratch file has as the first version of the
    /// artifact it became by a rename (see `rename`).
    pub(super) fn promote_scratch(&self, ino: Ino, content: Content, uid: u32) -> Result<()> {
        let mut head = vec![0u8; 512];
        let blob = self.store.open_blob(&content.sha256)?;
        let n = std::os::unix::fs::FileExt::read_at(&blob, &mut head, 0)?;
        head.truncate(n);
        let h = WriteHandle::new(ino, uid, false, None, false);
        // As in `commit`: GC must not take the blob before a version uses it.
        let _gc = self.gc_lock.read();
        self.record(&h, &content, &head)?;
        Ok(())
    }

    /// A scratch file's commit: its bytes are a spool blob (made by `commit`),
    /// and only the namespace learns of them. `None`: not a scratch file.
    fn record_scratch(&self, h: &WriteHandle, content: &Content, now: i64) -> Option<Content> {
        // Every commit asks: a read lock, not the write lock, for the common "no".
        if !self.ns.read().file(h.ino).is_some_and(|f| f.scratch) {
            return None;
        }
        {
            let mut ns = self.ns.write();
            let f = ns.file_mut(h.ino).filter(|f| f.scratch)?;
            f.current = Some(content.clone());
            f.pending_truncate = false;
            if f.mtime_set_ns <= h.last_write_ns {
                f.meta.mtime_ns = now;
            }
            f.meta.ctime_ns = now;
        }
        self.invalidate(h.ino);
        Some(content.clone())
    }

    /// `rename(src, dst)` where both are committed artifacts: the target gets a
    /// new version with the source's bytes and the source artifact's name goes.
    /// The source inode now stands for the target artifact, because that is the
    /// inode the kernel will find under the target name.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn rename_over(
        &self,
        cat: &mut Catalog,
        ns: &mut Namespace,
        src: Ino,
        sf: &FileNode,
        dst: Ino,
        df: &FileNode,
        new_path: &str,
    ) -> Result<()> {
        let (src_parent, src_name, newparent, newname) = {
            let s = ns.get(src).ok_or(FsError::NotFound)?;
            let d = ns.get(dst).ok_or(FsError::NotFound)?;
            (s.parent, s.name.clone(), d.parent, d.name.clone())
        };
        let cur = sf.current.clone().expect("caller checked");
        let now = now_ns();
        let created_by = self.who(sf.meta.uid);
        let drow = df.rowid.expect("caller checked");
        let v = NewVersion {
            target: Target::Existing(drow),
            path: Some(new_path),
            live: true,
            mode: sf.meta.mode,
            uid: sf.meta.uid,
            gid: sf.meta.gid,
            size: cur.size,
            sha256: &cur.sha256,
            created_by: &created_by,
            created_at_ns: now,
            mtime_ns: now,
            uri: self.store.uri(&cur.sha256),
        };
        let outcome = cat.write(|tx| {
            if let Some(r) = sf.rowid {
                tx.set_live(r, false)?;
            }
            let out = tx.commit(&v)?;
            tx.set_artifact_attrs(
                drow,
                sf.meta.mode,
                sf.meta.uid,
                sf.meta.gid,
                sf.meta.mtime_ns,
            )?;
            Ok(out)
        })?;
        let (version, manifest) = match outcome {
            CommitOutcome::Committed {
                version,
                manifest,
                event,
                ..
            } => {
                self.tell_hook(event);
                (version, Some(manifest))
            }
            CommitOutcome::Unchanged { version, .. } => (version, None),
        };
        ns.detach(newparent, &newname);
        ns.move_node(src, newparent, &newname);
        if let Some(r) = sf.rowid {
            if ns.by_rowid.get(&r) == Some(&src) {
                ns.by_rowid.remove(&r);
            }
        }
        if let Some(f) = ns.file_mut(src) {
            f.rowid = Some(drow);
            f.id = df.id.clone();
            f.owner = df.owner.clone();
            f.current = Some(Content {
                version,
                ..cur.clone()
            });
            f.meta.ctime_ns = now;
        }
        ns.by_rowid.insert(drow, src);
        touch_dir(ns, src_parent, now);
        touch_dir(ns, newparent, now);
        log::debug!(
            "rename of {src_name:?} over {new_path:?}: version {version} of {}",
            df.id
        );
        if let Some(m) = manifest {
            let json = serde_json::to_string(&m).map_err(|e| FsError::Io(e.to_string()))?;
            self.uploader.enqueue(Job {
                rowid: drow,
                version,
                artifact_id: m.id,
                size: cur.size,
                sha256: cur.sha256,
                manifest: json,
                sidecar_only: false,
                trace: None,
            });
        }
        Ok(())
    }
}

impl ArtifactFs {
    /// Hands a new version's event to the `--on-commit` hook, if any (never blocks).
    fn tell_hook(&self, event: serde_json::Value) {
        if let Some(h) = &self.hook {
            h.send(event);
        }
    }
}

fn commit_in(cat: &mut Catalog, v: &NewVersion<'_>) -> Result<CommitOutcome> {
    Ok(cat.write(|tx| tx.commit(v))?)
}
