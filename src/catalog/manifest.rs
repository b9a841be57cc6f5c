//! The Artifact Manifest as recorded for every version (see docs/STORAGE_SPEC.md).

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub id: String,
    pub version: u32,
    pub trace_id: String,
    pub step_id: String,
    pub path: String,
    pub size_bytes: u64,
    pub checksum: String,
    pub created_at: String,
    pub created_by: String,
    pub uri: String,
    pub supersedes: Option<String>,
    pub owner: String,
    pub status: String,
}

/// `sha256:<hex>`, the manifest's checksum notation.
pub fn checksum_field(sha256_hex: &str) -> String {
    format!("sha256:{sha256_hex}")
}
