//! Namespace operations: lookup, attributes, directories, symlinks, unlink, rename.

use super::access::{self, TraceAcl};
use super::handle::WriteHandle;
use super::names::{self};
use super::namespace::ROOT;
use super::namespace::{Dir, Kind, Meta, Namespace, Symlink, ViewKind, describe};
use super::{ArtifactFs, Attr, DirEntry, FileKind, FsError, Handle, Ino, Result, SetAttr, Statfs};
use crate::catalog::{DirRow, SymlinkRow, TraceRow};
use crate::timefmt::{now_ns, to_ns};
use std::collections::BTreeMap;
use std::ffi::OsStr;

impl ArtifactFs {
    /// Resolves `name` in `parent`, including the hidden `.versions` tree, and
    /// counts one kernel reference to the result.
    pub fn lookup(&self, parent: Ino, name: &OsStr, uid: u32) -> Result<Attr> {
        let name = names::check(name)?;
        let caller = self.caller(uid);
        let ino = self.resolve(parent, name, &caller)?;
        let mut ns = self.ns.write();
        if !Self::may_see(&ns, &caller, ino) {
            return Err(FsError::NotFound);
        }
        ns.add_lookup(ino);
        ArtifactFs::attr_of(&ns, ino).ok_or(FsError::NotFound)
    }

    pub fn forget(&self, ino: Ino, n: u64) {
        self.ns.write().forget(ino, n);
    }

    pub fn getattr(&self, ino: Ino, fh: Option<u64>, uid: u32) -> Result<Attr> {
        let mut attr = {
            let ns = self.ns.read();
            if !Self::may_see(&ns, &self.caller(uid), ino) {
                return Err(FsError::NotFound);
            }
            ArtifactFs::attr_of(&ns, ino).ok_or(FsError::NotFound)?
        };
        // Asked through an open file (a read past the cached size, lseek): the
        // size of what that handle sees, its version or its writes.
        if let Some(fh) = fh {
            if let Ok(h) = self.handle(fh) {
                match &*h {
                    Handle::Write(w) => attr.size = w.lock().size(),
                    Handle::Read(r) if !r.pinned => attr.size = r.size,
                    _ => {}
                }
                attr.blocks = attr.size.div_ceil(512);
            }
        }
        Ok(attr)
    }

    pub fn setattr(&self, ino: Ino, fh: Option<u64>, set: &SetAttr, uid: u32) -> Result<Attr> {
        self.check_setattr(ino, fh, set, uid)?;
        if let Some(size) = set.size {
            let through_handle = match fh.map(|fh| self.handle(fh)) {
                Some(Ok(h)) => match &*h {
                    Handle::Write(w) => {
                        w.lock().truncate(&self.store, size)?;
                        true
                    }
                    _ => false,
                },
                _ => false,
            };
            if !through_handle {
                self.truncate_path(ino, size, uid)?;
            }
        }
        if set.mode.is_some() || set.uid.is_some() || set.gid.is_some() || set.mtime.is_some() {
            let mut cat = self.catalog.lock();
            let mut ns = self.ns.write();
            let path = ns.path(ino);
            let now = now_ns();
            let apply = |m: &mut Meta| {
                if let Some(mode) = set.mode {
                    m.mode = mode & 0o7777;
                }
                if let Some(u) = set.uid {
                    m.uid = u;
                }
                if let Some(g) = set.gid {
                    m.gid = g;
                }
                if let Some(t) = set.mtime {
                    m.mtime_ns = to_ns(t);
                }
                m.ctime_ns = now;
            };
            match &mut ns.get_mut(ino).ok_or(FsError::NotFound)?.kind {
                Kind::File(f) => {
                    apply(&mut f.meta);
                    if set.mtime.is_some() {
                        f.mtime_set_ns = now;
                    }
                    if let Some(rowid) = f.rowid {
                        let m = f.meta.clone();
                        cat.write(|tx| {
                            tx.set_artifact_attrs(rowid, m.mode, m.uid, m.gid, m.mtime_ns)
                        })?;
                    }
                }
                Kind::Dir(d) => {
                    apply(&mut d.meta);
                    let m = d.meta.clone();
                    if let Some(p) = path.filter(|p| !p.is_empty()) {
                        cat.write(|tx| tx.set_dir_attrs(&p, m.mode, m.uid, m.gid, m.mtime_ns))?;
                    }
                }
                Kind::Symlink(s) => apply(&mut s.meta),
                _ => return Err(FsError::ReadOnly),
            }
        }
        self.getattr(ino, fh, uid)
    }

    /// POSIX's rules with the artifact's owner as the file's owner: the size and
    /// times need write permission (or a writer's handle), the mode the owner,
    /// a new owner or group the superuser.
    fn check_setattr(&self, ino: Ino, fh: Option<u64>, set: &SetAttr, uid: u32) -> Result<()> {
        let caller = self.caller(uid);
        if caller.superuser {
            return Ok(());
        }
        let ns = self.ns.read();
        let owner_uid = ArtifactFs::attr_of(&ns, ino).map(|a| a.uid);
        let owner = match ns.get(ino).map(|n| &n.kind) {
            Some(Kind::File(f)) => Some(f.owner.clone()),
            _ => None,
        };
        let is_owner = match &owner {
            Some(o) => *o == caller.agent(),
            None => owner_uid == Some(uid),
        };
        if set.uid.is_some_and(|u| Some(u) != owner_uid) || set.gid.is_some() && !is_owner {
            return Err(FsError::perm(format!(
                "{} may not change the owner or group of inode {ino}",
                caller.agent()
            )));
        }
        if set.mode.is_some() && !is_owner {
            return Err(FsError::perm(format!(
                "{} may not chmod inode {ino}: only its owner may",
                caller.agent()
            )));
        }
        let via_writer = fh
            .and_then(|fh| self.handle(fh).ok())
            .is_some_and(|h| matches!(&*h, Handle::Write(_)));
        if (set.size.is_some() || set.mtime.is_some()) && !via_writer && !is_owner {
            self.check(&ns, &caller, ino, access::W)?;
        }
        if !Self::may_see(&ns, &caller, ino) {
            return Err(FsError::NotFound);
        }
        Ok(())
    }

    /// `truncate(2)` by path: a one-shot writer that commits at once.
    fn truncate_path(&self, ino: Ino, size: u64, uid: u32) -> Result<()> {
        let base = {
            let ns = self.ns.read();
            match &ns.get(ino).ok_or(FsError::NotFound)?.kind {
                Kind::File(f) => f.current.clone(),
                Kind::Dir(_)
                | Kind::VersionsRoot { .. }
                | Kind::VersionList { .. }
                | Kind::ByIdRoot => {
                    return Err(FsError::IsDir);
                }
                _ => return Err(FsError::ReadOnly),
            }
        };
        let mut h = WriteHandle::new(ino, uid, false, base, size == 0);
        h.truncate(&self.store, size)?;
        self.commit(&mut h)
    }

    pub fn readlink(&self, ino: Ino) -> Result<String> {
        match &self.ns.read().get(ino).ok_or(FsError::NotFound)?.kind {
            Kind::Symlink(s) => Ok(s.target.clone()),
            Kind::ByIdLink { target, .. } => Ok(target.clone()),
            _ => Err(FsError::Invalid("not a symlink".into())),
        }
    }

    /// The directory `parent` as a place to create `name` in: the path the new
    /// entry will have, after the namespace rules agree.
    pub(super) fn creation_path(
        ns: &Namespace,
        parent: Ino,
        name: &str,
        what: &str,
    ) -> Result<String> {
        let d = match &ns.get(parent).ok_or(FsError::NotFound)?.kind {
            Kind::Dir(d) => d,
            k if k.is_daemon_dir() => return Err(FsError::ReadOnly),
            _ => return Err(FsError::NotDir),
        };
        if d.children.contains_key(name) {
            return Err(FsError::Exists);
        }
        let ppath = ns.path(parent).ok_or(FsError::NotFound)?;
        if what != "directory" && !d.level.holds_files() {
            let place = if ppath.is_empty() {
                "the root".to_string()
            } else {
                format!("trace directory {ppath:?}")
            };
            return Err(FsError::perm(format!(
                "cannot create {what} {name:?} in {place}: files live in <trace>/<step>/"
            )));
        }
        Ok(if ppath.is_empty() {
            name.to_string()
        } else {
            format!("{ppath}/{name}")
        })
    }

    pub fn mkdir(&self, parent: Ino, name: &OsStr, mode: u32, uid: u32, gid: u32) -> Result<Attr> {
        let name = names::check_new(name)?;
        let caller = self.caller(uid);
        let mut cat = self.catalog.lock();
        // Checked and attached under one namespace lock: `create` does not take
        // the catalog mutex, so the name must not be taken in between.
        let mut ns = self.ns.write();
        let path = Self::creation_path(&ns, parent, name, "directory")?;
        self.check(&ns, &caller, parent, access::W | access::X)?;
        let now = now_ns();
        let row = DirRow {
            path,
            mode: mode & 0o7777,
            uid,
            gid,
            mtime_ns: now,
        };
        // A new trace belongs to its maker and starts open to every agent.
        let trace = (parent == ROOT).then(|| TraceRow {
            name: name.to_string(),
            owner: caller.agent().to_string(),
            participants: None,
        });
        cat.write(|tx| {
            tx.insert_dir(&row)?;
            trace.as_ref().map_or(Ok(()), |t| tx.put_trace(t))
        })?;
        if let Some(t) = trace {
            self.set_trace_acl(
                &t.name,
                Some(TraceAcl {
                    owner: t.owner,
                    participants: None,
                }),
            );
        }
        let level = ns.dir(parent).ok_or(FsError::NotFound)?.level.child();
        let meta = Meta {
            mode: row.mode,
            uid,
            gid,
            mtime_ns: now,
            ctime_ns: now,
        };
        let ino = ns.attach(
            parent,
            name,
            Kind::Dir(Dir {
                level,
                children: BTreeMap::new(),
                subdirs: 0,
                meta,
            }),
        );
        touch_dir(&mut ns, parent, now);
        ns.add_lookup(ino);
        ArtifactFs::attr_of(&ns, ino).ok_or(FsError::NotFound)
    }

    pub fn symlink(
        &self,
        parent: Ino,
        name: &OsStr,
        target: &str,
        uid: u32,
        gid: u32,
    ) -> Result<Attr> {
        let name = names::check_new(name)?;
        let caller = self.caller(uid);
        let mut cat = self.catalog.lock();
        // Checked and attached under one namespace lock: `create` does not take
        // the catalog mutex, so the name must not be taken in between.
        let mut ns = self.ns.write();
        let path = Self::creation_path(&ns, parent, name, "symlink")?;
        self.check(&ns, &caller, parent, access::W | access::X)?;
        let now = now_ns();
        let row = SymlinkRow {
            path,
            target: target.to_string(),
            uid,
            gid,
            mtime_ns: now,
        };
        cat.write(|tx| tx.insert_symlink(&row))?;
        let meta = Meta {
            mode: 0o777,
            uid,
            gid,
            mtime_ns: now,
            ctime_ns: now,
        };
        let ino = ns.attach(
            parent,
            name,
            Kind::Symlink(Symlink {
                target: row.target,
                meta,
            }),
        );
        touch_dir(&mut ns, parent, now);
        ns.add_lookup(ino);
        ArtifactFs::attr_of(&ns, ino).ok_or(FsError::NotFound)
    }

    pub fn link(&self) -> Result<Attr> {
        Err(FsError::perm(
            "hard links are not supported: an artifact has one path",
        ))
    }

    /// Removes a file or symlink name. The artifact's history stays in the catalog.
    pub fn unlink(&self, parent: Ino, name: &OsStr, uid: u32) -> Result<()> {
        let name = names::check(name)?;
        if names::is_reserved(name) {
            return Err(FsError::perm(format!(
                "{name:?} is reserved and cannot be removed"
            )));
        }
        let mut cat = self.catalog.lock();
        let (ino, path) = {
            let ns = self.ns.read();
            let ino =
                ns.child(parent, name)
                    .ok_or_else(|| match ns.get(parent).map(|n| &n.kind) {
                        Some(k) if k.is_daemon_dir() => FsError::ReadOnly,
                        _ => FsError::NotFound,
                    })?;
            self.check_remove(&ns, &self.caller(uid), parent, ino)?;
            (ino, ns.path(ino).ok_or(FsError::NotFound)?)
        };
        let mut ns = self.ns.write();
        let mut deleted = None;
        match &ns.get(ino).ok_or(FsError::NotFound)?.kind {
            Kind::Dir(_) => return Err(FsError::IsDir),
            Kind::File(f) => {
                if let Some(rowid) = f.rowid {
                    cat.write(|tx| tx.set_live(rowid, false))?;
                    deleted = Some(rowid);
                }
                log::debug!("unlinked {path} ({})", describe(&path));
            }
            Kind::Symlink(_) => cat.write(|tx| tx.delete_symlink(&path))?,
            _ => return Err(FsError::ReadOnly),
        }
        ns.detach(parent, name);
        touch_dir(&mut ns, parent, now_ns());
        drop(ns);
        drop(cat);
        // The sidecar says the artifact is deleted, for `reindex`.
        self.refresh_sidecars(deleted);
        Ok(())
    }

    pub fn rmdir(&self, parent: Ino, name: &OsStr, uid: u32) -> Result<()> {
        let name = names::check(name)?;
        if names::is_reserved(name) {
            return Err(FsError::perm(format!(
                "{name:?} is reserved and cannot be removed"
            )));
        }
        let mut cat = self.catalog.lock();
        let mut ns = self.ns.write();
        let ino = ns.child(parent, name).ok_or(FsError::NotFound)?;
        self.check_remove(&ns, &self.caller(uid), parent, ino)?;
        match &ns.get(ino).ok_or(FsError::NotFound)?.kind {
            Kind::Dir(d) if !d.children.is_empty() => return Err(FsError::NotEmpty),
            Kind::Dir(_) => {}
            _ => return Err(FsError::NotDir),
        }
        let path = ns.path(ino).ok_or(FsError::NotFound)?;
        let trace = parent == ROOT;
        cat.write(|tx| {
            tx.delete_dir(&path)?;
            if trace {
                tx.delete_trace(&path)
            } else {
                Ok(())
            }
        })?;
        if trace {
            self.set_trace_acl(&path, None);
        }
        ns.detach(parent, name);
        touch_dir(&mut ns, parent, now_ns());
        Ok(())
    }

    pub fn opendir(&self, ino: Ino, uid: u32) -> Result<u64> {
        let caller = self.caller(uid);
        let listing: Vec<(String, Option<Ino>, FileKind)> = {
            let ns = self.ns.read();
            let node = ns.get(ino).ok_or(FsError::NotFound)?;
            self.check(&ns, &caller, ino, access::R)?;
            // Names the caller may not know of are not listed.
            let seen = |i: &Ino| Self::may_see(&ns, &caller, *i);
            match &node.kind {
                Kind::Dir(d) => d
                    .children
                    .iter()
                    .filter(|(_, i)| seen(i))
                    .map(|(n, &i)| (n.clone(), Some(i), kind_of(&ns, i)))
                    .collect(),
                Kind::VersionsRoot { dir } => {
                    let d = ns.dir(*dir).ok_or(FsError::NotFound)?;
                    d.children
                        .iter()
                        .filter(|(_, i)| seen(i))
                        .filter(|(_, i)| ns.file(**i).is_some_and(|f| f.rowid.is_some()))
                        .map(|(n, _)| (n.clone(), None, FileKind::Dir))
                        .collect()
                }
                Kind::VersionList { rowid } => {
                    let rowid = *rowid;
                    drop(ns);
                    self.reader
                        .lock()
                        .versions(rowid)?
                        .into_iter()
                        .map(|v| (v.version.to_string(), None, FileKind::File))
                        .collect()
                }
                // Open by id only: listing every id would be a catalog scan.
                Kind::ByIdRoot => Vec::new(),
                Kind::StatusDir => vec![("status".to_string(), None, FileKind::File)],
                Kind::ViewRoot(ViewKind::At) => Vec::new(),
                Kind::ViewRoot(k) => {
                    let owners = *k == ViewKind::ByAgent;
                    drop(ns);
                    self.reader
                        .lock()
                        .view_keys(owners)?
                        .into_iter()
                        .map(|n| (n, None, FileKind::Dir))
                        .collect()
                }
                Kind::ViewDir { view, prefix } => view
                    .children(prefix)
                    .into_iter()
                    .map(|(n, d)| (n, None, if d { FileKind::Dir } else { FileKind::File }))
                    .collect(),
                _ => return Err(FsError::NotDir),
            }
        };
        let parent = self.ns.read().get(ino).map_or(ino, |n| n.parent);
        let mut entries = vec![
            DirEntry {
                ino,
                offset: 1,
                kind: FileKind::Dir,
                name: ".".into(),
            },
            DirEntry {
                ino: parent,
                offset: 2,
                kind: FileKind::Dir,
                name: "..".into(),
            },
        ];
        for (name, child, kind) in listing {
            let child = match child {
                Some(c) => c,
                // A view key whose files are all hidden from the caller is empty
                // for it, so it is not listed.
                None => match self.resolve(ino, &name, &caller) {
                    Ok(c) => c,
                    Err(FsError::NotFound) => continue,
                    Err(e) => return Err(e),
                },
            };
            let offset = entries.len() as u64 + 1;
            entries.push(DirEntry {
                ino: child,
                offset,
                kind,
                name,
            });
        }
        Ok(self.new_fh(Handle::Dir(entries)))
    }

    /// Entries after `offset` of an open directory.
    pub fn readdir(&self, fh: u64, offset: u64) -> Result<Vec<DirEntry>> {
        match &*self.handle(fh)? {
            Handle::Dir(entries) => Ok(entries.iter().skip(offset as usize).cloned().collect()),
            _ => Err(FsError::BadHandle),
        }
    }

    /// `readdirplus`: like `readdir` with attributes; `add` returns true when the
    /// reply buffer is full. Every entry handed to the kernel counts as a lookup.
    pub fn readdir_plus(
        &self,
        fh: u64,
        offset: u64,
        mut add: impl FnMut(&DirEntry, &Attr) -> bool,
    ) -> Result<()> {
        let entries = self.readdir(fh, offset)?;
        let mut ns = self.ns.write();
        for e in entries {
            let Some(attr) = ArtifactFs::attr_of(&ns, e.ino) else {
                continue;
            };
            if add(&e, &attr) {
                break;
            }
            if e.name != "." && e.name != ".." {
                ns.add_lookup(e.ino);
            }
        }
        Ok(())
    }

    pub fn releasedir(&self, fh: u64) {
        let h = self.handles.write().remove(&fh);
        // `.versions` listings made nodes the kernel may never have looked up.
        if let Some(Handle::Dir(entries)) = h.as_deref() {
            let mut ns = self.ns.write();
            for e in entries {
                ns.reap(e.ino);
            }
        }
    }

    pub fn statfs(&self) -> Result<Statfs> {
        let path = std::ffi::CString::new(self.store.staging_dir().as_os_str().as_encoded_bytes())
            .map_err(|_| FsError::Invalid("spool path".into()))?;
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(Statfs {
            blocks: st.f_blocks as u64 * st.f_frsize / 4096,
            bfree: st.f_bfree as u64 * st.f_frsize / 4096,
            bavail: st.f_bavail as u64 * st.f_frsize / 4096,
            files: st.f_files as u64,
            ffree: st.f_ffree as u64,
            bsize: 4096,
        })
    }
}

fn kind_of(ns: &Namespace, ino: Ino) -> FileKind {
    match ns.get(ino).map(|n| &n.kind) {
        Some(Kind::File(_)) | Some(Kind::Version(_)) | Some(Kind::StatusFile) => FileKind::File,
        Some(Kind::Symlink(_)) | Some(Kind::ByIdLink { .. }) => FileKind::Symlink,
        _ => FileKind::Dir,
    }
}

pub(super) fn touch_dir(ns: &mut Namespace, dir: Ino, now: i64) {
    if let Some(d) = ns.dir_mut(dir) {
        d.meta.mtime_ns = now;
        d.meta.ctime_ns = now;
    }
}
