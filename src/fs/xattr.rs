//! Extended attributes: the manifest as `user.artifact.<field>` (and
//! `user.artifact.manifest`), settable fields, and free `user.*` labels.

use super::access::{self, Caller, TraceAcl, Visibility};
use super::namespace::{Kind, ROOT};
use super::{ArtifactFs, FsError, Ino, Result};
use crate::catalog::{Field, Manifest, TraceRow, VISIBILITIES, valid_retention};
use std::ffi::OsStr;

pub enum XattrReply {
    /// The caller asked for the size only (size 0).
    Size(u32),
    Data(Vec<u8>),
}

const PREFIX: &str = "user.artifact.";
/// Manifest fields in the order DESIGN.md lists them.
const FIELDS: &[&str] = &[
    "id",
    "version",
    "trace_id",
    "step_id",
    "path",
    "created_by",
    "created_at",
    "artifact_type",
    "content_type",
    "uri",
    "size_bytes",
    "checksum",
    "status",
    "retention",
    "supersedes",
    "owner",
    "visibility",
];
/// On a trace directory: who may take part (`alice,bob`; empty: every agent).
pub const PARTICIPANTS: &str = "user.trace.participants";
/// Largest label value; a larger one is E2BIG.
pub const MAX_LABEL: usize = 4096;

fn sized(data: Vec<u8>, size: u32) -> Result<XattrReply> {
    if size == 0 {
        Ok(XattrReply::Size(data.len() as u32))
    } else if data.len() > size as usize {
        Err(FsError::Range)
    } else {
        Ok(XattrReply::Data(data))
    }
}

fn settable(field: &str) -> Option<Field> {
    match field {
        "type" | "artifact_type" => Some(Field::Type),
        "content_type" => Some(Field::ContentType),
        "visibility" => Some(Field::Visibility),
        "retention" => Some(Field::Retention),
        _ => None,
    }
}

fn field_value(m: &Manifest, field: &str) -> Option<String> {
    if field == "manifest" {
        return serde_json::to_string(m).ok();
    }
    let field = if field == "type" {
        "artifact_type"
    } else {
        field
    };
    match serde_json::to_value(m).ok()?.get(field)? {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn validate(field: Field, v: &str) -> Result<()> {
    let ok = match field {
        Field::Visibility => VISIBILITIES.contains(&v),
        Field::Retention => valid_retention(v),
        Field::Type => {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        }
        Field::ContentType => v.contains('/') && v.len() <= 255 && !v.contains(char::is_control),
    };
    if ok {
        Ok(())
    } else {
        Err(FsError::Invalid(format!("{v:?} is not a valid {field:?}")))
    }
}

impl ArtifactFs {
    /// The manifest an inode exposes: the artifact's current one, or a stored
    /// version's. `None` for directories and files never committed.
    fn manifest_of(&self, ino: Ino) -> Result<Option<(i64, Manifest, bool)>> {
        let (rowid, version, read_only) = {
            let ns = self.ns.read();
            match &ns.get(ino).ok_or(FsError::NotFound)?.kind {
                Kind::File(f) => match f.rowid {
                    Some(r) if f.current.is_some() => (r, None, false),
                    _ => return Ok(None),
                },
                Kind::Version(v) => (v.rowid, Some(v.content.version), true),
                _ => return Ok(None),
            }
        };
        Ok(self
            .reader
            .lock()
            .manifest(rowid, version)?
            .map(|m| (rowid, m, read_only)))
    }

    pub fn getxattr(&self, ino: Ino, name: &OsStr, size: u32, uid: u32) -> Result<XattrReply> {
        // security.*, system.* (SELinux label and POSIX ACL, asked for every file
        // by `ls -l`): not supported. EOPNOTSUPP, not ENODATA: coreutils then
        // stops asking for the rest of the file system, which makes `ls -l` one
        // round trip per file cheaper.
        let Some(name) = name.to_str().filter(|n| n.starts_with("user.")) else {
            return Err(FsError::NotSupported);
        };
        self.check(&self.ns.read(), &self.caller(uid), ino, access::R)?;
        if let Some(trace) = self.trace_dir(ino) {
            let acl = self.trace_acl_of(&trace);
            return match acl.participants {
                Some(_) if name == PARTICIPANTS => sized(
                    access::format_participants(&acl.participants).into_bytes(),
                    size,
                ),
                _ => Err(FsError::NoData),
            };
        }
        let Some((_, m, _)) = self.manifest_of(ino)? else {
            return Err(FsError::NoData);
        };
        let value = match name.strip_prefix(PREFIX) {
            Some(field) => field_value(&m, field),
            None => m.labels.get(&name["user.".len()..]).cloned(),
        };
        sized(value.ok_or(FsError::NoData)?.into_bytes(), size)
    }

    pub fn listxattr(&self, ino: Ino, size: u32, uid: u32) -> Result<XattrReply> {
        self.check(&self.ns.read(), &self.caller(uid), ino, access::R)?;
        let mut out = Vec::new();
        if let Some(trace) = self.trace_dir(ino) {
            if self.trace_acl_of(&trace).participants.is_some() {
                out.extend_from_slice(format!("{PARTICIPANTS}\0").as_bytes());
            }
            return sized(out, size);
        }
        if let Some((_, m, _)) = self.manifest_of(ino)? {
            for f in FIELDS.iter().chain(std::iter::once(&"manifest")) {
                if field_value(&m, f).is_some() {
                    out.extend_from_slice(format!("{PREFIX}{f}\0").as_bytes());
                }
            }
            for k in m.labels.keys() {
                out.extend_from_slice(format!("user.{k}\0").as_bytes());
            }
        }
        sized(out, size)
    }

    pub fn setxattr(
        &self,
        ino: Ino,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        uid: u32,
    ) -> Result<()> {
        let name = name.to_str().ok_or(FsError::NotSupported)?;
        if !name.starts_with("user.") {
            return Err(FsError::NotSupported);
        }
        let caller = self.caller(uid);
        let value = std::str::from_utf8(value)
            .map_err(|_| FsError::Invalid(format!("{name}: value is not UTF-8")))?;
        if let Some(trace) = self.trace_dir(ino) {
            if name != PARTICIPANTS {
                return Err(FsError::NotSupported);
            }
            let list = access::parse_participants(value).map_err(FsError::Invalid)?;
            return self.set_participants(&caller, &trace, list, flags);
        }
        // Read-modify-write of the labels under the catalog mutex: concurrent
        // setfattr calls must not lose each other's labels.
        let mut cat = self.catalog.lock();
        let (rowid, m) = self.xattr_target(ino)?;
        self.check_xattr_write(&caller, ino, name, &m)?;
        let mut made_private = false;
        let exists = match name.strip_prefix(PREFIX) {
            Some(f) => field_value(&m, f).is_some(),
            None => m.labels.contains_key(&name["user.".len()..]),
        };
        if flags & libc::XATTR_CREATE != 0 && exists {
            return Err(FsError::Exists);
        }
        if flags & libc::XATTR_REPLACE != 0 && !exists {
            return Err(FsError::NoData);
        }
        match name.strip_prefix(PREFIX) {
            Some(f) => {
                let Some(field) = settable(f) else {
                    return Err(FsError::perm(format!("{name} is read-only")));
                };
                validate(field, value)?;
                cat.write(|tx| {
                    tx.set_field(rowid, field, value)?;
                    tx.event_for(rowid, "update_artifact")
                })?;
                if field == Field::Visibility {
                    if let Some(f) = self.ns.write().file_mut(ino) {
                        f.visibility = Visibility::parse(value);
                    }
                    // The mode bits shown follow the visibility.
                    self.invalidate(ino);
                    made_private = Visibility::parse(value) == Visibility::Private;
                }
            }
            None => {
                if value.len() > MAX_LABEL {
                    return Err(FsError::TooBig);
                }
                let mut labels = m.labels.clone();
                labels.insert(name["user.".len()..].to_string(), value.to_string());
                cat.write(|tx| {
                    tx.set_labels(rowid, &labels)?;
                    tx.event_for(rowid, "update_artifact")
                })?;
            }
        }
        drop(cat);
        if made_private {
            // Not under the catalog mutex: the kernel takes the directory's lock,
            // which a request waiting for that mutex may hold.
            self.invalidate_entry(ino);
        }
        self.refresh_sidecars([rowid]);
        Ok(())
    }

    pub fn removexattr(&self, ino: Ino, name: &OsStr, uid: u32) -> Result<()> {
        let name = name.to_str().ok_or(FsError::NotSupported)?;
        if !name.starts_with("user.") {
            return Err(FsError::NotSupported);
        }
        let caller = self.caller(uid);
        if let Some(trace) = self.trace_dir(ino) {
            if name != PARTICIPANTS || self.trace_acl_of(&trace).participants.is_none() {
                return Err(FsError::NoData);
            }
            return self.set_participants(&caller, &trace, None, 0);
        }
        let mut cat = self.catalog.lock();
        let (rowid, m) = self.xattr_target(ino)?;
        self.check_xattr_write(&caller, ino, name, &m)?;
        if name.starts_with(PREFIX) {
            return Err(FsError::perm(format!(
                "{name} is a manifest field and cannot be removed"
            )));
        }
        let mut labels = m.labels.clone();
        if labels.remove(&name["user.".len()..]).is_none() {
            return Err(FsError::NoData);
        }
        cat.write(|tx| {
            tx.set_labels(rowid, &labels)?;
            tx.event_for(rowid, "update_artifact")
        })?;
        drop(cat);
        self.refresh_sidecars([rowid]);
        Ok(())
    }

    /// The trace a trace directory stands for (`None` for anything else).
    fn trace_dir(&self, ino: Ino) -> Option<String> {
        let ns = self.ns.read();
        let n = ns.get(ino)?;
        (n.parent == ROOT && ino != ROOT && n.attached && matches!(n.kind, Kind::Dir(_)))
            .then(|| n.name.clone())
    }

    /// Visibility and retention are the owner's to change; the other fields and
    /// labels anyone's who may write the artifact.
    fn check_xattr_write(&self, caller: &Caller, ino: Ino, name: &str, m: &Manifest) -> Result<()> {
        if !Self::may_see(&self.ns.read(), caller, ino) {
            return Err(FsError::NotFound);
        }
        let field = name.strip_prefix(PREFIX).and_then(settable);
        if matches!(field, Some(Field::Visibility | Field::Retention)) {
            return self.check_owner(caller, &m.owner, name);
        }
        self.check(&self.ns.read(), caller, ino, access::W)
    }

    /// Replaces a trace's participant list (the trace owner's call).
    fn set_participants(
        &self,
        caller: &Caller,
        trace: &str,
        list: Option<std::collections::BTreeSet<String>>,
        flags: i32,
    ) -> Result<()> {
        let mut cat = self.catalog.lock();
        let acl = self.trace_acl_of(trace);
        let exists = acl.participants.is_some();
        if flags & libc::XATTR_CREATE != 0 && exists {
            return Err(FsError::Exists);
        }
        if flags & libc::XATTR_REPLACE != 0 && !exists {
            return Err(FsError::NoData);
        }
        self.check_owner(
            caller,
            &acl.owner,
            &format!("the participants of trace {trace:?}"),
        )?;
        let row = TraceRow {
            name: trace.to_string(),
            owner: acl.owner.clone(),
            participants: list.as_ref().map(|l| l.iter().cloned().collect()),
        };
        cat.write(|tx| tx.put_trace(&row))?;
        log::info!(
            "trace {trace:?}: participants {} (set by {})",
            list.as_ref()
                .map_or("open to every agent".into(), |l| format!("{l:?}")),
            caller.agent()
        );
        self.set_trace_acl(
            trace,
            Some(TraceAcl {
                owner: acl.owner,
                participants: list,
            }),
        );
        Ok(())
    }

    /// The artifact a `setxattr`/`removexattr` changes.
    fn xattr_target(&self, ino: Ino) -> Result<(i64, Manifest)> {
        match self.manifest_of(ino)? {
            Some((_, _, true)) => Err(FsError::ReadOnly),
            Some((rowid, m, false)) => Ok((rowid, m)),
            None => {
                let (is_file, scratch) = match self.ns.read().get(ino).map(|n| &n.kind) {
                    Some(Kind::File(f)) => (true, f.scratch),
                    _ => (false, false),
                };
                if scratch {
                    log::warn!("setxattr on inode {ino}: a scratch file has no manifest");
                    Err(FsError::NotSupported)
                } else if is_file {
                    log::warn!(
                        "setxattr on inode {ino}: no version yet; set attributes after close"
                    );
                    Err(FsError::Busy)
                } else {
                    Err(FsError::NotSupported)
                }
            }
        }
    }
}
