//! What a name may be, and which names the daemon keeps for itself.

use super::error::{FsError, Result};
use std::ffi::OsStr;

/// Hidden, daemon-owned names: never listed, openable by name, never creatable.
pub const VERSIONS: &str = ".versions";
pub const BY_ID: &str = ".by-id";
pub const BY_AGENT: &str = ".by-agent";
pub const BY_TYPE: &str = ".by-type";
pub const AT: &str = ".at";
pub const STATUS_DIR: &str = ".artifactfs";
const RESERVED: &[&str] = &[
    VERSIONS,
    ".by-id",
    ".by-agent",
    ".by-type",
    ".at",
    ".artifactfs",
];

pub fn is_reserved(name: &str) -> bool {
    RESERVED.contains(&name) || name.starts_with(".by-")
}

/// A component as UTF-8 of at most 255 bytes; anything else is refused.
pub fn check(name: &OsStr) -> Result<&str> {
    if name.len() > 255 {
        return Err(FsError::NameTooLong);
    }
    let s = name
        .to_str()
        .ok_or_else(|| FsError::Invalid(format!("name {name:?} is not UTF-8")))?;
    if s.is_empty() || s == "." || s == ".." || s.contains('/') || s.contains('\0') {
        return Err(FsError::Invalid(format!("bad name {s:?}")));
    }
    Ok(s)
}

/// A component the user is creating: valid and not reserved.
pub fn check_new(name: &OsStr) -> Result<&str> {
    let s = check(name)?;
    if is_reserved(s) {
        return Err(FsError::perm(format!("{s:?} is a reserved name")));
    }
    Ok(s)
}
