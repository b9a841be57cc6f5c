//! `rename(2)`: the one namespace operation that can touch two artifacts.

use super::access;
use super::names::{self};
use super::namespace::{Kind, ROOT};
use super::ops::touch_dir;
use super::{ArtifactFs, FsError, Ino, Result};
use crate::timefmt::now_ns;
use std::ffi::OsStr;

impl ArtifactFs {
    /// `rename(2)`. A file keeps its artifact id and history; over an existing
    /// file it becomes a new version of the target (the write-temp-then-rename
    /// pattern). Directories move with everything below them, within their level.
    pub fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        flags: u32,
        uid: u32,
    ) -> Result<()> {
        let mut touched = Vec::new();
        self.rename_in(parent, name, newparent, newname, flags, uid, &mut touched)?;
        // The backend's sidecars follow: new paths, and deleted targets.
        self.refresh_sidecars(touched);
        // A file that is not an artifact is scratch by its (new) name. A scratch
        // file given an ordinary name (`x.tmp` → `report.json`) becomes an
        // artifact now, with the bytes it has.
        let promote = {
            let mut ns = self.ns.write();
            let newname = newname.to_str().unwrap_or_default();
            let scratch = self.is_scratch(newname);
            ns.child(newparent, newname)
                .and_then(|ino| Some((ino, ns.file_mut(ino)?)))
                .and_then(|(ino, f)| {
                    let was = f.scratch;
                    f.scratch = f.rowid.is_none() && scratch;
                    let c = f
                        .current
                        .clone()
                        .filter(|_| was && !f.scratch && f.rowid.is_none());
                    c.map(|c| (ino, c, f.meta.uid))
                })
        };
        if let Some((ino, content, owner_uid)) = promote {
            self.promote_scratch(ino, content, owner_uid)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn rename_in(
        &self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        flags: u32,
        uid: u32,
        touched: &mut Vec<i64>,
    ) -> Result<()> {
        let name = names::check(name)?;
        let newname = names::check_new(newname)?;
        if flags & libc::RENAME_EXCHANGE != 0 {
            return Err(FsError::Invalid("RENAME_EXCHANGE is not supported".into()));
        }
        let mut cat = self.catalog.lock();
        let mut ns = self.ns.write();
        let src = ns.child(parent, name).ok_or_else(|| {
            if names::is_reserved(name) {
                FsError::perm(format!("{name:?} is reserved"))
            } else {
                FsError::NotFound
            }
        })?;
        let (nlevel, dst) = match &ns.get(newparent).ok_or(FsError::NotFound)?.kind {
            Kind::Dir(d) => (d.level, d.children.get(newname).copied()),
            k if k.is_daemon_dir() => return Err(FsError::ReadOnly),
            _ => return Err(FsError::NotDir),
        };
        let caller = self.caller(uid);
        self.check_remove(&ns, &caller, parent, src)?;
        if newparent != ROOT {
            self.check(&ns, &caller, newparent, access::W | access::X)?;
        }
        if let Some(d) = dst {
            // Over a file: a new version of that artifact, so a write to it.
            if ns.file(d).is_some() {
                self.check(&ns, &caller, d, access::W)?;
            } else {
                self.check_remove(&ns, &caller, newparent, d)?;
            }
        }
        if dst == Some(src) {
            return Ok(());
        }
        touched.extend(ns.rowids_below(src));
        if let Some(d) = dst {
            touched.extend(ns.rowids_below(d));
        }
        if dst.is_some() && flags & libc::RENAME_NOREPLACE != 0 {
            return Err(FsError::Exists);
        }
        let old_path = ns.path(src).ok_or(FsError::NotFound)?;
        let npath = ns.path(newparent).ok_or(FsError::NotFound)?;
        let new_path = if npath.is_empty() {
            newname.to_string()
        } else {
            format!("{npath}/{newname}")
        };
        let now = now_ns();
        let src_kind = ns
            .get(src)
            .map(|n| n.kind.clone())
            .ok_or(FsError::NotFound)?;
        match src_kind {
            Kind::Dir(sd) => {
                if sd.level != nlevel.child() {
                    return Err(FsError::perm(format!(
                        "cannot move directory {old_path:?} to {new_path:?}: traces stay at the root, steps in traces"
                    )));
                }
                if ns.is_within(newparent, src) {
                    return Err(FsError::Invalid(
                        "cannot move a directory into itself".into(),
                    ));
                }
                if let Some(d) = dst {
                    match &ns.get(d).map(|n| &n.kind) {
                        Some(Kind::Dir(dd)) if !dd.children.is_empty() => {
                            return Err(FsError::NotEmpty);
                        }
                        Some(Kind::Dir(_)) => {}
                        _ => return Err(FsError::NotDir),
                    }
                }
                let trace = parent == ROOT;
                cat.write(|tx| {
                    if dst.is_some() {
                        tx.delete_dir(&new_path)?;
                    }
                    if trace {
                        tx.delete_trace(&new_path)?;
                        tx.rename_trace(&old_path, &new_path)?;
                    }
                    tx.rename_tree(&old_path, &new_path)
                })?;
                if trace {
                    let acl = self.trace_acl_of(&old_path);
                    self.set_trace_acl(&old_path, None);
                    self.set_trace_acl(&new_path, Some(acl));
                }
                if dst.is_some() {
                    ns.detach(newparent, newname);
                }
                ns.move_node(src, newparent, newname);
            }
            Kind::File(sf) => {
                if !nlevel.holds_files() {
                    return Err(FsError::perm(format!(
                        "cannot move file {old_path:?} to {new_path:?}: files live in <trace>/<step>/"
                    )));
                }
                let dst_kind = dst.and_then(|d| ns.get(d)).map(|n| n.kind.clone());
                match dst_kind {
                    Some(Kind::Dir(_)) => return Err(FsError::IsDir),
                    Some(Kind::File(df)) if df.rowid.is_some() && sf.current.is_some() => {
                        return self.rename_over(
                            &mut cat,
                            &mut ns,
                            src,
                            &sf,
                            dst.expect("some"),
                            &df,
                            &new_path,
                        );
                    }
                    Some(Kind::File(df)) if df.rowid.is_some() && sf.current.is_none() => {
                        // Renamed over the target before its first commit (write to a
                        // temp name, rename, then close): the source becomes the target
                        // artifact, and its writer's close makes the next version of it.
                        if let Some(r) = sf.rowid {
                            cat.write(|tx| tx.set_live(r, false))?;
                            if ns.by_rowid.get(&r) == Some(&src) {
                                ns.by_rowid.remove(&r);
                            }
                        }
                        ns.detach(newparent, newname);
                        ns.move_node(src, newparent, newname);
                        let drow = df.rowid.expect("guarded");
                        if let Some(f) = ns.file_mut(src) {
                            f.rowid = Some(drow);
                            f.id = df.id.clone();
                            f.owner = df.owner.clone();
                            f.visibility = df.visibility;
                        }
                        ns.by_rowid.insert(drow, src);
                        touch_dir(&mut ns, parent, now);
                        touch_dir(&mut ns, newparent, now);
                        return Ok(());
                    }
                    Some(Kind::File(df)) => {
                        // The target has no committed content: plain replacement.
                        cat.write(|tx| {
                            if let Some(r) = df.rowid {
                                tx.set_live(r, false)?;
                            }
                            if let Some(r) = sf.rowid {
                                tx.rename_artifact(r, &new_path)?;
                            }
                            Ok(())
                        })?;
                        ns.detach(newparent, newname);
                    }
                    Some(Kind::Symlink(_)) => {
                        cat.write(|tx| {
                            tx.delete_symlink(&new_path)?;
                            if let Some(r) = sf.rowid {
                                tx.rename_artifact(r, &new_path)?;
                            }
                            Ok(())
                        })?;
                        ns.detach(newparent, newname);
                    }
                    Some(_) => return Err(FsError::ReadOnly),
                    None => {
                        if let Some(r) = sf.rowid {
                            cat.write(|tx| tx.rename_artifact(r, &new_path))?;
                        }
                    }
                }
                ns.move_node(src, newparent, newname);
            }
            Kind::Symlink(_) => {
                if !nlevel.holds_files() {
                    return Err(FsError::perm(format!(
                        "cannot move symlink to {new_path:?}: not below a step"
                    )));
                }
                match dst.and_then(|d| ns.get(d)).map(|n| n.kind.clone()) {
                    Some(Kind::Dir(_)) => return Err(FsError::IsDir),
                    Some(Kind::File(df)) => {
                        if let Some(r) = df.rowid {
                            cat.write(|tx| tx.set_live(r, false))?;
                        }
                        ns.detach(newparent, newname);
                    }
                    Some(Kind::Symlink(_)) => {
                        cat.write(|tx| tx.delete_symlink(&new_path))?;
                        ns.detach(newparent, newname);
                    }
                    _ => {}
                }
                cat.write(|tx| tx.rename_symlink(&old_path, &new_path))?;
                ns.move_node(src, newparent, newname);
            }
            _ => return Err(FsError::ReadOnly),
        }
        touch_dir(&mut ns, parent, now);
        touch_dir(&mut ns, newparent, now);
        Ok(())
    }
}
