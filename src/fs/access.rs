//! Who may do what: DESIGN.md's owner + visibility model, enforced by the daemon
//! (the mount has no `default_permissions`, so the kernel asks us).
//!
//! The model maps onto Unix mode bits so that `ls -l` shows what is enforced:
//! - the **user** class is the artifact's owner (the agent that made version 1);
//! - the **group** class is the participants of its trace (every agent when the
//!   trace has no participant list);
//! - **other** is everyone else.
//!
//! Visibility caps the stored mode: `private` keeps only the owner's bits (and
//! hides the file from everyone else: ENOENT, not EACCES, so its existence does
//! not leak), `trace` keeps owner and group, `public` keeps all three.
//! Directories below a trace use their stored mode with the same classes; the
//! root is world-writable with the sticky rule: only a trace's owner removes it.

use super::namespace::{Kind, Namespace, ROOT};
use super::{ArtifactFs, FsError, Ino, Result};
use std::collections::BTreeSet;

pub const R: u32 = 4;
pub const W: u32 = 2;
pub const X: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visibility {
    Private,
    Trace,
    Public,
}

impl Visibility {
    /// Unknown text (a catalog edited by hand) reads as `trace`: never wider.
    pub fn parse(s: &str) -> Visibility {
        match s {
            "private" => Visibility::Private,
            "public" => Visibility::Public,
            _ => Visibility::Trace,
        }
    }

    /// The mode bits this visibility lets through.
    fn cap(self) -> u32 {
        match self {
            Visibility::Private => 0o7700,
            Visibility::Trace => 0o7770,
            Visibility::Public => 0o7777,
        }
    }
}

/// The one rule of existence: a private artifact is known to its owner only.
/// `viewer` `None` sees everything (the superuser, the catalog's own user).
pub fn may_know(viewer: Option<&str>, owner: &str, visibility: Visibility) -> bool {
    viewer.is_none_or(|v| visibility != Visibility::Private || owner == v)
}

/// A file's mode as shown and enforced: its stored mode capped by its visibility.
pub fn file_mode(stored: u32, vis: Visibility) -> u32 {
    stored & vis.cap()
}

/// The mode a new file or directory gets. The mount negotiates FUSE_DONT_MASK so
/// it sees the caller's umask, and keeps group write whatever the umask says:
/// the group is the trace's participants, and DESIGN.md lets them write.
pub fn creation_mode(mode: u32, umask: u32) -> u32 {
    mode & !(umask & !0o020) & 0o7777
}

/// A trace's access list (`user.trace.participants` on its directory).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceAcl {
    /// The agent that made the trace directory ("" when unknown: made before
    /// access control existed, or implied by a deeper path).
    pub owner: String,
    /// `None`: open to every agent.
    pub participants: Option<BTreeSet<String>>,
}

impl TraceAcl {
    pub fn admits(&self, agent: &str) -> bool {
        match &self.participants {
            None => true,
            Some(list) => agent == self.owner || list.contains(agent),
        }
    }
}

/// Parses `alice,bob` (commas or white space); an empty list means "open".
pub fn parse_participants(v: &str) -> std::result::Result<Option<BTreeSet<String>>, String> {
    let names: BTreeSet<String> = v
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if let Some(bad) = names.iter().find(|n| n.len() > 255 || n.contains('/')) {
        return Err(format!("{bad:?} is not an agent name"));
    }
    Ok(if names.is_empty() { None } else { Some(names) })
}

pub fn format_participants(p: &Option<BTreeSet<String>>) -> String {
    p.as_ref()
        .map(|s| s.iter().cloned().collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

/// The identity of one request. The agent name is resolved only when a rule
/// needs it: lookups, getattr and opens of non-private files by root (the hot
/// path) never look a user name up.
pub struct Caller<'a> {
    fs: &'a ArtifactFs,
    pub uid: u32,
    agent: std::cell::OnceCell<String>,
    /// root on a mount without `--agent`: sees and may do everything.
    pub superuser: bool,
}

impl Caller<'_> {
    pub fn agent(&self) -> &str {
        self.agent.get_or_init(|| self.fs.who(self.uid))
    }

    /// Whom `may_know` asks about: `None` for the superuser.
    pub fn viewer(&self) -> Option<&str> {
        (!self.superuser).then(|| self.agent())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    User,
    Group,
    Other,
}

fn permits(mode: u32, class: Class, want: u32) -> bool {
    let shift = match class {
        Class::User => 6,
        Class::Group => 3,
        Class::Other => 0,
    };
    (mode >> shift) & want == want
}

/// The first component of a node's path: its trace (`None` for the root).
/// Works for detached nodes too (an open, unlinked file keeps its parent chain).
pub fn trace_of(ns: &Namespace, mut ino: Ino) -> Option<&str> {
    loop {
        let n = ns.get(ino)?;
        if ino == ROOT {
            return None;
        }
        if n.parent == ROOT {
            return Some(n.name.as_str());
        }
        ino = n.parent;
    }
}

impl ArtifactFs {
    /// The identity of a request from `uid` (for the control socket).
    pub fn caller_of(&self, uid: u32) -> Caller<'_> {
        self.caller(uid)
    }

    pub(super) fn caller(&self, uid: u32) -> Caller<'_> {
        Caller {
            fs: self,
            uid,
            agent: std::cell::OnceCell::new(),
            superuser: uid == 0 && self.agent.is_none(),
        }
    }

    fn trace_acl(&self, trace: &str) -> TraceAcl {
        self.traces.read().get(trace).cloned().unwrap_or_default()
    }

    /// May `caller` know that `ino` exists? Only a private artifact (or one of its
    /// versions) is hidden, from everyone but its owner.
    pub(super) fn may_see(ns: &Namespace, caller: &Caller, ino: Ino) -> bool {
        let (owner, visibility) = match ns.get(ino).map(|n| &n.kind) {
            Some(Kind::File(f)) => (f.owner.as_str(), f.visibility),
            Some(Kind::Version(v)) => (v.owner.as_str(), v.visibility),
            _ => return true,
        };
        // Only a private one needs the caller's name.
        visibility != Visibility::Private || may_know(caller.viewer(), owner, visibility)
    }

    /// ENOENT unless `caller` may see `ino`, then EACCES unless the mode bits of
    /// its class grant `want` (R, W, X, or'ed).
    pub(super) fn check(&self, ns: &Namespace, caller: &Caller, ino: Ino, want: u32) -> Result<()> {
        if !Self::may_see(ns, caller, ino) {
            return Err(FsError::NotFound);
        }
        let Some(attr) = ArtifactFs::attr_of(ns, ino) else {
            return Err(FsError::NotFound);
        };
        let mode = u32::from(attr.perm);
        if caller.superuser {
            // root may do anything but execute a file no one may execute.
            let is_file = attr.kind == super::FileKind::File;
            if want & X != 0 && is_file && mode & 0o111 == 0 {
                return Err(FsError::access(format!(
                    "inode {ino}: no execute bit for anyone"
                )));
            }
            return Ok(());
        }
        let class = self.class(ns, caller, ino);
        if permits(mode, class, want) {
            Ok(())
        } else {
            let what = ns.get(ino).map(|n| n.name.clone()).unwrap_or_default();
            Err(FsError::access(format!(
                "{} may not {} {what:?} (mode {mode:o}, {class:?} class)",
                caller.agent(),
                describe_want(want)
            )))
        }
    }

    fn class(&self, ns: &Namespace, caller: &Caller, ino: Ino) -> Class {
        if ino == ROOT {
            return Class::Other;
        }
        let trace = trace_of(ns, ino).unwrap_or("");
        let traces = self.traces.read();
        let acl = traces.get(trace);
        let owner = match ns.get(ino).map(|n| &n.kind) {
            Some(Kind::File(f)) => f.owner.as_str(),
            Some(Kind::Version(v)) => v.owner.as_str(),
            _ => acl.map_or("", |a| a.owner.as_str()),
        };
        if !owner.is_empty() && owner == caller.agent() {
            Class::User
        } else if acl.is_none_or(|a| a.admits(caller.agent())) {
            Class::Group
        } else {
            Class::Other
        }
    }

    /// Removing or renaming `name` out of `parent`: write permission on the
    /// directory, and for a trace directory (the root is sticky) being its owner.
    pub(super) fn check_remove(
        &self,
        ns: &Namespace,
        caller: &Caller,
        parent: Ino,
        child: Ino,
    ) -> Result<()> {
        if !Self::may_see(ns, caller, child) {
            return Err(FsError::NotFound);
        }
        if parent == ROOT && !caller.superuser {
            let name = ns.get(child).map(|n| n.name.as_str()).unwrap_or("");
            let acl = self.trace_acl(name);
            if acl.owner != caller.agent() {
                return Err(FsError::access(format!(
                    "{} may not remove or rename trace {name:?}: owned by {:?}",
                    caller.agent(),
                    acl.owner
                )));
            }
            return Ok(());
        }
        self.check(ns, caller, parent, W | X)
    }

    /// Only an artifact's owner (or the superuser) changes who can see or keep it.
    pub(super) fn check_owner(&self, caller: &Caller, owner: &str, what: &str) -> Result<()> {
        if caller.superuser || (!owner.is_empty() && owner == caller.agent()) {
            Ok(())
        } else {
            Err(FsError::perm(format!(
                "{} may not change {what}: only its owner {owner:?} may",
                caller.agent()
            )))
        }
    }

    /// Replaces one trace's owner and list in memory (the catalog already has
    /// it), and queues the rewrite (or deletion) of its sidecar in the backend,
    /// so that `reindex` restores who may see the trace.
    pub(super) fn set_trace_acl(&self, trace: &str, acl: Option<TraceAcl>) {
        {
            let mut t = self.traces.write();
            match acl {
                Some(a) => {
                    t.insert(trace.to_string(), a);
                }
                None => {
                    t.remove(trace);
                }
            }
        }
        self.uploader.enqueue(crate::store::uploader::Job {
            sidecar_only: true,
            trace: Some(trace.to_string()),
            ..Default::default()
        });
    }

    pub(super) fn trace_acl_of(&self, trace: &str) -> TraceAcl {
        self.trace_acl(trace)
    }

    /// `access(2)`: `mask` is R_OK|W_OK|X_OK, or F_OK (0) for existence.
    pub fn access(&self, ino: Ino, mask: u32, uid: u32) -> Result<()> {
        let ns = self.ns.read();
        self.check(&ns, &self.caller(uid), ino, mask & 7)
    }
}

fn describe_want(want: u32) -> &'static str {
    if want & W != 0 {
        "write"
    } else if want & R != 0 {
        "read"
    } else {
        "enter"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visibility_caps_mode_and_group_write_survives_the_umask() {
        assert_eq!(file_mode(0o664, Visibility::Private), 0o600);
        assert_eq!(file_mode(0o664, Visibility::Trace), 0o660);
        assert_eq!(file_mode(0o664, Visibility::Public), 0o664);
        assert_eq!(creation_mode(0o666, 0o022), 0o664);
        assert_eq!(creation_mode(0o777, 0o077), 0o720);
        assert!(permits(0o640, Class::Group, R));
        assert!(!permits(0o640, Class::Group, W));
        assert!(!permits(0o640, Class::Other, R));
    }

    #[test]
    fn participants_parse_and_admit() {
        let p = parse_participants("bob, carol\n").unwrap();
        assert_eq!(format_participants(&p), "bob,carol");
        let acl = TraceAcl {
            owner: "alice".into(),
            participants: p,
        };
        assert!(acl.admits("alice") && acl.admits("bob") && !acl.admits("dave"));
        assert_eq!(parse_participants(" ").unwrap(), None);
        assert!(TraceAcl::default().admits("anyone"));
        assert!(parse_participants("a/b").is_err());
    }
}
