//! The filesystem core's error type, and the one place errors become errnos.

use crate::catalog::CatalogError;
use crate::store::StoreError;
use std::fmt;

#[derive(Debug)]
pub enum FsError {
    NotFound,
    Exists,
    NotDir,
    IsDir,
    NotEmpty,
    /// EPERM: the namespace forbids it; the reason is logged.
    Perm(String),
    ReadOnly,
    /// EACCES: the access rules refuse it; the reason is logged.
    Access(String),
    Invalid(String),
    NameTooLong,
    NoSpace,
    BadHandle,
    Busy,
    NotSupported,
    /// ENODATA: no such extended attribute.
    NoData,
    /// ERANGE: the caller's buffer is too small.
    Range,
    /// E2BIG: an attribute value over the limit.
    TooBig,
    /// EIO: anything unexpected (catalog, spool, backend). Never ENOENT.
    Io(String),
}

impl FsError {
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::Exists => libc::EEXIST,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::NotEmpty => libc::ENOTEMPTY,
            FsError::Perm(_) => libc::EPERM,
            FsError::ReadOnly => libc::EROFS,
            FsError::Access(_) => libc::EACCES,
            FsError::Invalid(_) => libc::EINVAL,
            FsError::NameTooLong => libc::ENAMETOOLONG,
            FsError::NoSpace => libc::ENOSPC,
            FsError::BadHandle => libc::EBADF,
            FsError::Busy => libc::EBUSY,
            FsError::NotSupported => libc::EOPNOTSUPP,
            FsError::NoData => libc::ENODATA,
            FsError::Range => libc::ERANGE,
            FsError::TooBig => libc::E2BIG,
            FsError::Io(_) => libc::EIO,
        }
    }

    /// Builds an EACCES and logs why.
    pub fn access(why: impl Into<String>) -> FsError {
        let why = why.into();
        log::info!("EACCES: {why}");
        FsError::Access(why)
    }

    /// Builds an EPERM and logs why, so a refused `open` can be explained.
    pub fn perm(why: impl Into<String>) -> FsError {
        let why = why.into();
        log::warn!("EPERM: {why}");
        FsError::Perm(why)
    }
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsError::Perm(s) | FsError::Access(s) | FsError::Invalid(s) | FsError::Io(s) => {
                write!(
                    f,
                    "{} ({s})",
                    std::io::Error::from_raw_os_error(self.errno())
                )
            }
            _ => write!(f, "{}", std::io::Error::from_raw_os_error(self.errno())),
        }
    }
}
impl std::error::Error for FsError {}

impl From<CatalogError> for FsError {
    fn from(e: CatalogError) -> Self {
        log::error!("{e}");
        FsError::Io(e.to_string())
    }
}

impl From<StoreError> for FsError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Io(io) => io.into(),
            other => {
                log::error!("{other}");
                FsError::Io(other.to_string())
            }
        }
    }
}

impl From<std::io::Error> for FsError {
    fn from(e: std::io::Error) -> Self {
        match e.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => {
                log::error!("spool is full: {e}");
                FsError::NoSpace
            }
            _ => {
                log::error!("spool I/O error: {e}");
                FsError::Io(e.to_string())
            }
        }
    }
}

pub type Result<T> = std::result::Result<T, FsError>;
