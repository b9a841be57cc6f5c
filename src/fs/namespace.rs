//! The in-memory namespace: every directory, live artifact and symlink, loaded from
//! the catalog at mount and kept in step with it, so lookups, getattr and readdir
//! never touch SQL. Virtual nodes (`.versions/…`) live here while the kernel
//! references them.

use super::access::Visibility;
use crate::catalog::{LiveArtifact, Snapshot, trace_step};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub type Ino = u64;
pub const ROOT: Ino = 1;

/// Where a directory sits; it decides what may be created in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Root,
    Trace,
    Step,
    Below,
}

impl Level {
    pub fn child(self) -> Level {
        match self {
            Level::Root => Level::Trace,
            Level::Trace => Level::Step,
            Level::Step | Level::Below => Level::Below,
        }
    }
    /// Files and symlinks live below a step only.
    pub fn holds_files(self) -> bool {
        matches!(self, Level::Step | Level::Below)
    }
}

#[derive(Clone, Debug)]
pub struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

#[derive(Clone, Debug)]
pub struct Dir {
    pub level: Level,
    pub children: BTreeMap<String, Ino>,
    pub subdirs: u32,
    pub meta: Meta,
}

/// The committed content of a version.
#[derive(Clone, Debug, PartialEq)]
pub struct Content {
    pub version: u32,
    pub size: u64,
    pub sha256: String,
}

#[derive(Clone, Debug)]
pub struct FileNode {
    /// Catalog row, `None` until the first commit of a new artifact.
    pub rowid: Option<i64>,
    pub id: String,
    pub owner: String,
    pub visibility: Visibility,
    pub meta: Meta,
    pub current: Option<Content>,
    /// The content (SHA-256) whose pages the kernel may have cached for this inode.
    pub cached_content: Option<String>,
    /// Open read handles per content (SHA-256).
    pub readers: HashMap<String, u32>,
    /// When `utimes` last set the mtime explicitly: a commit after it keeps that
    /// mtime (`cp -a` sets times on the open file before it closes it).
    pub mtime_set_ns: i64,
    /// A writer opened with O_TRUNC and closed a descriptor without writing: the
    /// file reads as empty until that writer's RELEASE commits the empty version
    /// (or its next FLUSH commits what it wrote after).
    pub pending_truncate: bool,
    /// A scratch file: its commits only set `current` (a spool blob), with no
    /// catalog row, manifest, event or upload; it lives until the daemon stops.
    pub scratch: bool,
}

/// SHA-256 of no bytes: the content of a new or pending-truncated file.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

impl FileNode {
    /// The SHA-256 of what an `open` for reading gets now.
    pub fn shown_sha256(&self) -> &str {
        match &self.current {
            Some(c) if !self.pending_truncate => &c.sha256,
            _ => EMPTY_SHA256,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Symlink {
    pub target: String,
    pub meta: Meta,
}

#[derive(Clone, Debug)]
pub struct VersionNode {
    pub rowid: i64,
    pub content: Content,
    pub created_at_ns: i64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// The artifact's, for access checks (a view may be reached by anyone).
    pub owner: String,
    pub visibility: Visibility,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViewKind {
    ByAgent,
    ByType,
    At,
}

/// A read-only tree materialised from the catalog: path → the version it shows.
#[derive(Debug, Default)]
pub struct View {
    pub entries: BTreeMap<String, VersionNode>,
}

impl View {
    /// The names directly below `prefix` ("" is the top), each with whether it
    /// is a directory.
    pub fn children(&self, prefix: &str) -> Vec<(String, bool)> {
        let start = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        let mut out: Vec<(String, bool)> = Vec::new();
        for path in self.entries.range(start.clone()..).map(|(p, _)| p) {
            let Some(rest) = path.strip_prefix(&start) else {
                break;
            };
            let (name, is_dir) = match rest.split_once('/') {
                Some((n, _)) => (n, true),
                None => (rest, false),
            };
            if out.last().is_none_or(|(n, _)| n != name) {
                out.push((name.to_string(), is_dir));
            }
        }
        out
    }

    pub fn same_as(&self, other: &View) -> bool {
        self.entries.len() == other.entries.len()
            && self
                .entries
                .iter()
                .zip(&other.entries)
                .all(|((p, a), (q, b))| {
                    p == q && a.rowid == b.rowid && a.content.version == b.content.version
                })
    }

    pub fn is_dir(&self, path: &str) -> bool {
        let start = format!("{path}/");
        self.entries
            .range(start.clone()..)
            .next()
            .is_some_and(|(p, _)| p.starts_with(&start))
    }
}

#[derive(Clone, Debug)]
pub enum Kind {
    Dir(Dir),
    File(FileNode),
    Symlink(Symlink),
    /// `<dir>/.versions`
    /// `<mount>/.by-agent`, `.by-type`, `.at`
    ViewRoot(ViewKind),
    /// A directory inside a view: `prefix` is its path within the view's tree.
    ViewDir {
        view: Arc<View>,
        prefix: String,
    },
    /// `<mount>/.by-id`
    ByIdRoot,
    /// `<mount>/.artifactfs` and its `status` file (daemon health, generated at open).
    StatusDir,
    StatusFile,
    /// `<mount>/.by-id/<id>`: a symlink to the artifact's current path.
    ByIdLink {
        rowid: i64,
        target: String,
    },
    VersionsRoot {
        dir: Ino,
    },
    /// `<dir>/.versions/<name>`
    VersionList {
        rowid: i64,
    },
    /// `<dir>/.versions/<name>/<N>`
    Version(VersionNode),
}

#[derive(Clone, Debug)]
pub struct Node {
    pub parent: Ino,
    pub name: String,
    pub kind: Kind,
    /// Kernel references (lookup count); a detached node goes when it reaches 0.
    pub lookups: u64,
    /// Reachable from the root under `parent`/`name`.
    pub attached: bool,
}

pub struct Namespace {
    pub nodes: HashMap<Ino, Node>,
    next_ino: Ino,
    /// The attached node of each committed, live artifact.
    pub by_rowid: HashMap<i64, Ino>,
    /// Virtual nodes by (parent, name), so repeated lookups share an inode.
    virtuals: HashMap<(Ino, String), Ino>,
}

impl Namespace {
    pub fn new(root_meta: Meta) -> Namespace {
        let mut nodes = HashMap::new();
        nodes.insert(
            ROOT,
            Node {
                parent: ROOT,
                name: String::new(),
                kind: Kind::Dir(Dir {
                    level: Level::Root,
                    children: BTreeMap::new(),
                    subdirs: 0,
                    meta: root_meta,
                }),
                lookups: 1,
                attached: true,
            },
        );
        Namespace {
            nodes,
            next_ino: ROOT + 1,
            by_rowid: HashMap::new(),
            virtuals: HashMap::new(),
        }
    }

    /// Builds the tree from the catalog. Parents missing from `dirs` (a catalog
    /// written by hand, or a crash between statements of an old version) are made.
    pub fn from_snapshot(snap: Snapshot, root_meta: Meta) -> Namespace {
        let mut ns = Namespace::new(root_meta.clone());
        let mut dirs = snap.dirs;
        dirs.sort_by_key(|d| d.path.matches('/').count());
        for d in dirs {
            let meta = Meta {
                mode: d.mode,
                uid: d.uid,
                gid: d.gid,
                mtime_ns: d.mtime_ns,
                ctime_ns: d.mtime_ns,
            };
            ns.ensure_dir(&d.path, meta);
        }
        for s in snap.symlinks {
            let (parent_path, name) = split(&s.path);
            let parent = ns.ensure_dir(parent_path, root_meta.clone());
            let meta = Meta {
                mode: 0o777,
                uid: s.uid,
                gid: s.gid,
                mtime_ns: s.mtime_ns,
                ctime_ns: s.mtime_ns,
            };
            ns.attach(
                parent,
                name,
                Kind::Symlink(Symlink {
                    target: s.target,
                    meta,
                }),
            );
        }
        ns
    }

    /// Adds one live artifact from the catalog (see `Catalog::load_live`).
    pub fn add_artifact(&mut self, art: LiveArtifact, root_meta: &Meta) {
        let (parent_path, name) = split(&art.path);
        let parent = self.ensure_dir(parent_path, root_meta.clone());
        let meta = Meta {
            mode: art.mode,
            uid: art.uid,
            gid: art.gid,
            mtime_ns: art.mtime_ns,
            ctime_ns: art.mtime_ns,
        };
        let current = art.current.map(|(version, size, sha256)| Content {
            version,
            size,
            sha256,
        });
        let ino = self.attach(
            parent,
            name,
            Kind::File(FileNode {
                rowid: Some(art.rowid),
                id: art.id,
                owner: art.owner,
                visibility: Visibility::parse(&art.visibility),
                meta,
                current,
                cached_content: None,
                readers: HashMap::new(),
                mtime_set_ns: 0,
                pending_truncate: false,
                scratch: false,
            }),
        );
        self.by_rowid.insert(art.rowid, ino);
    }

    fn ensure_dir(&mut self, path: &str, meta: Meta) -> Ino {
        let mut cur = ROOT;
        if path.is_empty() {
            return cur;
        }
        for comp in path.split('/') {
            let existing = self.dir(cur).and_then(|d| d.children.get(comp).copied());
            cur = match existing {
                Some(i) => i,
                None => {
                    let level = self
                        .dir(cur)
                        .map(|d| d.level.child())
                        .unwrap_or(Level::Below);
                    self.attach(
                        cur,
                        comp,
                        Kind::Dir(Dir {
                            level,
                            children: BTreeMap::new(),
                            subdirs: 0,
                            meta: meta.clone(),
                        }),
                    )
                }
            };
        }
        cur
    }

    pub fn get(&self, ino: Ino) -> Option<&Node> {
        self.nodes.get(&ino)
    }

    pub fn get_mut(&mut self, ino: Ino) -> Option<&mut Node> {
        self.nodes.get_mut(&ino)
    }

    pub fn dir(&self, ino: Ino) -> Option<&Dir> {
        match &self.nodes.get(&ino)?.kind {
            Kind::Dir(d) => Some(d),
            _ => None,
        }
    }

    pub fn dir_mut(&mut self, ino: Ino) -> Option<&mut Dir> {
        match &mut self.nodes.get_mut(&ino)?.kind {
            Kind::Dir(d) => Some(d),
            _ => None,
        }
    }

    pub fn file(&self, ino: Ino) -> Option<&FileNode> {
        match &self.nodes.get(&ino)?.kind {
            Kind::File(f) => Some(f),
            _ => None,
        }
    }

    pub fn file_mut(&mut self, ino: Ino) -> Option<&mut FileNode> {
        match &mut self.nodes.get_mut(&ino)?.kind {
            Kind::File(f) => Some(f),
            _ => None,
        }
    }

    pub fn child(&self, parent: Ino, name: &str) -> Option<Ino> {
        self.dir(parent)?.children.get(name).copied()
    }

    /// Adds a new node under `parent` as `name` (which must be free).
    pub fn attach(&mut self, parent: Ino, name: &str, kind: Kind) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        let is_dir = matches!(kind, Kind::Dir(_));
        self.nodes.insert(
            ino,
            Node {
                parent,
                name: name.to_string(),
                kind,
                lookups: 0,
                attached: true,
            },
        );
        if let Some(d) = self.dir_mut(parent) {
            d.children.insert(name.to_string(), ino);
            if is_dir {
                d.subdirs += 1;
            }
        }
        ino
    }

    /// Removes `name` from `parent`; the node stays while the kernel references it.
    pub fn detach(&mut self, parent: Ino, name: &str) -> Option<Ino> {
        let d = self.dir_mut(parent)?;
        let ino = d.children.remove(name)?;
        let is_dir = matches!(self.nodes.get(&ino).map(|n| &n.kind), Some(Kind::Dir(_)));
        if is_dir {
            if let Some(d) = self.dir_mut(parent) {
                d.subdirs -= 1;
            }
        }
        let node = self.nodes.get_mut(&ino)?;
        node.attached = false;
        if let Kind::File(f) = &node.kind {
            if let Some(r) = f.rowid {
                if self.by_rowid.get(&r) == Some(&ino) {
                    self.by_rowid.remove(&r);
                }
            }
        }
        self.reap(ino);
        Some(ino)
    }

    /// Moves an attached node to `newparent`/`newname` (which must be free).
    pub fn move_node(&mut self, ino: Ino, newparent: Ino, newname: &str) {
        let (parent, name, is_dir) = {
            let n = &self.nodes[&ino];
            (n.parent, n.name.clone(), matches!(n.kind, Kind::Dir(_)))
        };
        if let Some(d) = self.dir_mut(parent) {
            d.children.remove(&name);
            if is_dir {
                d.subdirs -= 1;
            }
        }
        if let Some(d) = self.dir_mut(newparent) {
            d.children.insert(newname.to_string(), ino);
            if is_dir {
                d.subdirs += 1;
            }
        }
        let n = self.nodes.get_mut(&ino).expect("moved node exists");
        n.parent = newparent;
        n.name = newname.to_string();
    }

    /// A virtual node under `parent`, shared by repeated lookups.
    /// A node whose identity differs (`.versions/a` after another artifact took
    /// the name `a`) gets a new inode, so the kernel never mixes their pages.
    pub fn virtual_node(&mut self, parent: Ino, name: &str, kind: Kind) -> Ino {
        if let Some(&ino) = self.virtuals.get(&(parent, name.to_string())) {
            if self
                .nodes
                .get(&ino)
                .is_some_and(|n| same_identity(&n.kind, &kind))
            {
                return ino;
            }
            // The old node lives on while the kernel references it.
            self.virtuals.remove(&(parent, name.to_string()));
            self.reap(ino);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(
            ino,
            Node {
                parent,
                name: name.to_string(),
                kind,
                lookups: 0,
                attached: false,
            },
        );
        self.virtuals.insert((parent, name.to_string()), ino);
        ino
    }

    pub fn add_lookup(&mut self, ino: Ino) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.lookups += 1;
        }
    }

    pub fn forget(&mut self, ino: Ino, n: u64) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(n);
            self.reap(ino);
        }
    }

    /// Drops a detached node nobody references any more.
    pub fn reap(&mut self, ino: Ino) {
        if ino == ROOT {
            return;
        }
        let gone = matches!(self.nodes.get(&ino), Some(n) if !n.attached && n.lookups == 0);
        if gone {
            let n = self.nodes.remove(&ino).expect("checked");
            if self.virtuals.get(&(n.parent, n.name.clone())) == Some(&ino) {
                self.virtuals.remove(&(n.parent, n.name));
            }
        }
    }

    /// Path relative to the root (`trace/step/file`), or `None` for detached nodes.
    pub fn path(&self, ino: Ino) -> Option<String> {
        let mut parts = Vec::new();
        let mut cur = ino;
        while cur != ROOT {
            let n = self.nodes.get(&cur)?;
            if !n.attached {
                return None;
            }
            parts.push(n.name.as_str());
            cur = n.parent;
        }
        parts.reverse();
        Some(parts.join("/"))
    }

    /// The artifact rowids of `ino` (a file) or of every file below it (a directory).
    pub fn rowids_below(&self, ino: Ino) -> Vec<i64> {
        let mut out = Vec::new();
        let mut stack = vec![ino];
        while let Some(i) = stack.pop() {
            match self.nodes.get(&i).map(|n| &n.kind) {
                Some(Kind::File(f)) => out.extend(f.rowid),
                Some(Kind::Dir(d)) => stack.extend(d.children.values().copied()),
                _ => {}
            }
        }
        out
    }

    /// True when `ino` is `anc` or lies below it.
    pub fn is_within(&self, mut ino: Ino, anc: Ino) -> bool {
        loop {
            if ino == anc {
                return true;
            }
            if ino == ROOT {
                return false;
            }
            match self.nodes.get(&ino) {
                Some(n) => ino = n.parent,
                None => return false,
            }
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

impl Kind {
    /// A directory the daemon makes (`.versions`, `.by-*`, `.at`, `.artifactfs`):
    /// nothing can be created, removed or renamed in it (EROFS).
    pub fn is_daemon_dir(&self) -> bool {
        matches!(
            self,
            Kind::VersionsRoot { .. }
                | Kind::VersionList { .. }
                | Kind::ByIdRoot
                | Kind::StatusDir
                | Kind::ViewRoot(_)
                | Kind::ViewDir { .. }
        )
    }
}

fn same_identity(a: &Kind, b: &Kind) -> bool {
    match (a, b) {
        (Kind::VersionsRoot { dir: x }, Kind::VersionsRoot { dir: y }) => x == y,
        (Kind::ByIdRoot, Kind::ByIdRoot) => true,
        (Kind::StatusDir, Kind::StatusDir) | (Kind::StatusFile, Kind::StatusFile) => true,
        (Kind::ViewRoot(a), Kind::ViewRoot(b)) => a == b,
        // A rebuilt view with the same content keeps its inode: `cp` and `tar`
        // compare the inode of stat() with that of the open file.
        (Kind::ViewDir { view: a, prefix: x }, Kind::ViewDir { view: b, prefix: y }) => {
            x == y && (Arc::ptr_eq(a, b) || a.same_as(b))
        }
        (
            Kind::ByIdLink {
                rowid: a,
                target: x,
            },
            Kind::ByIdLink {
                rowid: b,
                target: y,
            },
        ) => a == b && x == y,
        (Kind::VersionList { rowid: x }, Kind::VersionList { rowid: y }) => x == y,
        (Kind::Version(x), Kind::Version(y)) => {
            x.rowid == y.rowid && x.content.version == y.content.version
        }
        _ => false,
    }
}

fn split(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some((p, n)) => (p, n),
        None => ("", path),
    }
}

/// Trace and step of a node's path, for log lines.
pub fn describe(path: &str) -> String {
    let (t, s) = trace_step(path);
    format!("trace {t:?} step {s:?}")
}
