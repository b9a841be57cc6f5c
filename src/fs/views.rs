//! The hidden, read-only parts of the namespace: `.versions`, `.by-id`, and the
//! views `.by-agent`, `.by-type` and `.at`, resolved from the catalog on lookup.

use super::access::{Caller, Visibility, may_know};
use super::names::{self, VERSIONS};
use super::namespace::{Content, Kind, Level, VersionNode, View, ViewKind};
use super::{ArtifactFs, FsError, Ino, Result};
use crate::catalog::ViewBy;
use std::sync::Arc;

/// Only a private artifact is hidden, from everyone but its owner.
fn visible(caller: &Caller, owner: &str, visibility: &str) -> bool {
    may_know(caller.viewer(), owner, Visibility::parse(visibility))
}

impl ArtifactFs {
    /// Resolves `name` in `parent` for `caller`: what it may not see is not there.
    pub(super) fn resolve(&self, parent: Ino, name: &str, caller: &Caller) -> Result<Ino> {
        let virt = {
            let ns = self.ns.read();
            let node = ns.get(parent).ok_or(FsError::NotFound)?;
            match &node.kind {
                Kind::Dir(d) => {
                    if let Some(&ino) = d.children.get(name) {
                        return Ok(ino);
                    }
                    if name == VERSIONS && d.level.holds_files() {
                        Virtual::Root
                    } else if name == names::STATUS_DIR && d.level == Level::Root {
                        Virtual::Ready(Kind::StatusDir)
                    } else if name == names::BY_ID && d.level == Level::Root {
                        Virtual::ById
                    } else if d.level == Level::Root && view_kind(name).is_some() {
                        Virtual::ViewRoot(view_kind(name).expect("checked"))
                    } else {
                        return Err(FsError::NotFound);
                    }
                }
                Kind::ByIdRoot => Virtual::Link(name.to_string()),
                Kind::StatusDir if name == "status" => Virtual::Ready(Kind::StatusFile),
                Kind::StatusDir => return Err(FsError::NotFound),
                Kind::ViewRoot(k) => Virtual::ViewTop(*k, name.to_string()),
                Kind::ViewDir { view, prefix } => {
                    let p = if prefix.is_empty() {
                        name.to_string()
                    } else {
                        format!("{prefix}/{name}")
                    };
                    if let Some(v) = view.entries.get(&p) {
                        Virtual::Ready(Kind::Version(v.clone()))
                    } else if view.is_dir(&p) {
                        Virtual::Ready(Kind::ViewDir {
                            view: view.clone(),
                            prefix: p,
                        })
                    } else {
                        return Err(FsError::NotFound);
                    }
                }
                Kind::VersionsRoot { dir } => {
                    let path = ns.path(*dir).ok_or(FsError::NotFound)?;
                    Virtual::List(format!("{path}/{name}"))
                }
                Kind::VersionList { rowid } => {
                    let n: u32 = name.parse().map_err(|_| FsError::NotFound)?;
                    Virtual::Version(*rowid, n)
                }
                Kind::File(_)
                | Kind::Version(_)
                | Kind::Symlink(_)
                | Kind::ByIdLink { .. }
                | Kind::StatusFile => {
                    return Err(FsError::NotDir);
                }
            }
        };
        // Catalog reads happen without the namespace lock.
        let kind = match virt {
            Virtual::Root => Kind::VersionsRoot { dir: parent },
            Virtual::ById => Kind::ByIdRoot,
            Virtual::ViewRoot(k) => Kind::ViewRoot(k),
            Virtual::Ready(kind) => kind,
            Virtual::ViewTop(k, key) => Kind::ViewDir {
                view: Arc::new(self.materialise(k, &key, caller)?),
                prefix: String::new(),
            },
            Virtual::Link(id) => {
                let a = self.reader.lock().artifact_by_id(&id)?;
                let a = a
                    .filter(|a| a.live && a.current_version > 0)
                    .filter(|a| visible(caller, &a.owner, &a.visibility))
                    .ok_or(FsError::NotFound)?;
                Kind::ByIdLink {
                    rowid: a.rowid,
                    target: format!("../{}", a.path),
                }
            }
            Virtual::List(path) => {
                let a = self
                    .reader
                    .lock()
                    .artifact_at(&path)?
                    .ok_or(FsError::NotFound)?;
                if a.current_version == 0 || !visible(caller, &a.owner, &a.visibility) {
                    return Err(FsError::NotFound);
                }
                Kind::VersionList { rowid: a.rowid }
            }
            Virtual::Version(rowid, n) => {
                let (v, a) = {
                    let cat = self.reader.lock();
                    let v = cat.version(rowid, n)?.ok_or(FsError::NotFound)?;
                    (v, cat.artifact(rowid)?.ok_or(FsError::NotFound)?)
                };
                let ns = self.ns.read();
                let (mode, uid, gid) = ns
                    .by_rowid
                    .get(&rowid)
                    .and_then(|&i| ns.file(i))
                    .map_or((0o444, 0, 0), |f| (f.meta.mode, f.meta.uid, f.meta.gid));
                Kind::Version(VersionNode {
                    rowid,
                    content: Content {
                        version: v.version,
                        size: v.size,
                        sha256: v.sha256,
                    },
                    created_at_ns: v.created_at_ns,
                    mode,
                    uid,
                    gid,
                    owner: a.owner,
                    visibility: Visibility::parse(&a.visibility),
                })
            }
        };
        Ok(self.ns.write().virtual_node(parent, name, kind))
    }
}

enum Virtual {
    Root,
    ById,
    Link(String),
    ViewRoot(ViewKind),
    ViewTop(ViewKind, String),
    Ready(Kind),
    List(String),
    Version(i64, u32),
}

fn view_kind(name: &str) -> Option<ViewKind> {
    match name {
        names::BY_AGENT => Some(ViewKind::ByAgent),
        names::BY_TYPE => Some(ViewKind::ByType),
        names::AT => Some(ViewKind::At),
        _ => None,
    }
}

impl ArtifactFs {
    /// Builds one view's tree from the catalog: `.by-agent/<key>`, `.by-type/<key>`
    /// or `.at/<RFC 3339 time>`.
    fn materialise(&self, kind: ViewKind, key: &str, caller: &Caller) -> Result<View> {
        let cat = self.reader.lock();
        let entries = match kind {
            ViewKind::ByAgent => cat.view(ViewBy::Agent(key))?,
            ViewKind::ByType => cat.view(ViewBy::Type(key))?,
            ViewKind::At => {
                let t = humantime::parse_rfc3339_weak(key).map_err(|_| FsError::NotFound)?;
                cat.view_at(crate::timefmt::to_ns(t))?
            }
        };
        drop(cat);
        let entries: Vec<_> = entries
            .into_iter()
            .filter(|e| visible(caller, &e.owner, &e.visibility))
            .collect();
        if entries.is_empty() {
            return Err(FsError::NotFound);
        }
        let mut view = View::default();
        for e in entries {
            let v = e.version;
            view.entries.insert(
                e.path,
                VersionNode {
                    rowid: v.artifact_rowid,
                    content: Content {
                        version: v.version,
                        size: v.size,
                        sha256: v.sha256,
                    },
                    created_at_ns: v.created_at_ns,
                    mode: e.mode,
                    uid: e.uid,
                    gid: e.gid,
                    owner: e.owner,
                    visibility: Visibility::parse(&e.visibility),
                },
            );
        }
        Ok(view)
    }
}
