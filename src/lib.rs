//! artifactfs: a FUSE filesystem that turns a directory tree into a versioned,
//! checksummed artifact store. See docs/ARCHITECTURE.md for the module map.

pub mod catalog;
pub mod cli;
pub mod config;
pub mod control;
pub mod fs;
pub mod fuse;
pub mod hook;
pub mod identity;
pub mod registry;
pub mod store;
pub mod timefmt;
