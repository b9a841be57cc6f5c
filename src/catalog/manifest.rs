//! The Artifact Manifest v0.1 (see docs/STORAGE_SPEC.md, "Manifest").

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub id: String,
    pub version: u32,
    pub trace_id: String,
    pub step_id: String,
    pub path: String,
    pub created_by: String,
    pub created_at: String,
    #[serde(default = "default_type")]
    pub artifact_type: String,
    #[serde(default = "default_content_type")]
    pub content_type: String,
    pub uri: String,
    pub size_bytes: u64,
    pub checksum: String,
    pub status: String,
    #[serde(default = "default_retention")]
    pub retention: String,
    pub supersedes: Option<String>,
    pub owner: String,
    #[serde(default = "default_visibility")]
    pub visibility: String,
    /// Free `user.*` labels set with setfattr.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

pub const VISIBILITIES: &[&str] = &["private", "trace", "public"];

pub fn default_type() -> String {
    "artifact".into()
}
pub fn default_content_type() -> String {
    "application/octet-stream".into()
}
pub fn default_retention() -> String {
    "forever".into()
}
pub fn default_visibility() -> String {
    "trace".into()
}

/// `sha256:<hex>`, the manifest's checksum notation.
pub fn checksum_field(sha256_hex: &str) -> String {
    format!("sha256:{sha256_hex}")
}

/// An artifact type: `[a-z0-9_-]`, 1 to 64 characters.
pub fn valid_type(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 64
        && t.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// `30d`, `12h`, `90m`, `45s`, `2w` or `forever`.
pub fn valid_retention(s: &str) -> bool {
    if s == "forever" {
        return true;
    }
    let Some(unit) = s.chars().last() else {
        return false;
    };
    let num = &s[..s.len() - unit.len_utf8()];
    matches!(unit, 's' | 'm' | 'h' | 'd' | 'w')
        && !num.is_empty()
        && num.len() <= 9
        && num.bytes().all(|b| b.is_ascii_digit())
        && num.parse::<u64>().is_ok_and(|n| n > 0)
}

/// A MIME type from the name, else from the first bytes.
pub fn guess_content_type(name: &str, head: &[u8]) -> String {
    if let Some(m) = mime_guess::from_path(name).first() {
        let m = m.essence_str().to_string();
        return if m.starts_with("text/") || m == "application/json" {
            format!("{m}; charset=utf-8")
        } else {
            m
        };
    }
    let sniff: &[(&[u8], &str)] = &[
        (b"%PDF-", "application/pdf"),
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"GIF8", "image/gif"),
        (b"PK\x03\x04", "application/zip"),
        (b"\x1f\x8b", "application/gzip"),
        (b"SQLite format 3\0", "application/vnd.sqlite3"),
    ];
    for (magic, m) in sniff {
        if head.starts_with(magic) {
            return m.to_string();
        }
    }
    let text = match std::str::from_utf8(head) {
        Ok(t) => Some(t),
        // A multi-byte character cut at the end of the sample is still text.
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&head[..e.valid_up_to()]).ok(),
        Err(_) => None,
    };
    match text {
        Some(t) if !t.contains('\0') => {
            let t = t.trim_start();
            if (t.starts_with('{') || t.starts_with('['))
                && serde_json::from_str::<serde_json::Value>(t).is_ok()
            {
                "application/json; charset=utf-8".into()
            } else {
                "text/plain; charset=utf-8".into()
            }
        }
        _ => default_content_type(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_syntax() {
        for ok in ["30d", "12h", "2s", "forever", "1w", "90m"] {
            assert!(valid_retention(ok), "{ok}");
        }
        for bad in [
            "",
            "d",
            "0d",
            "30",
            "30x",
            "-1d",
            "1.5d",
            "forever!",
            "9999999999d",
        ] {
            assert!(!valid_retention(bad), "{bad}");
        }
    }

    #[test]
    fn content_type_from_name_then_bytes() {
        assert_eq!(
            guess_content_type("report.json", b""),
            "application/json; charset=utf-8"
        );
        assert_eq!(
            guess_content_type("notes.md", b""),
            "text/markdown; charset=utf-8"
        );
        assert_eq!(guess_content_type("blob", b"%PDF-1.7"), "application/pdf");
        assert_eq!(
            guess_content_type("out", b"{\"a\": 1}"),
            "application/json; charset=utf-8"
        );
        assert_eq!(
            guess_content_type("out", b"hello\n"),
            "text/plain; charset=utf-8"
        );
        assert_eq!(
            guess_content_type("out", b"\x00\x01\x02"),
            "application/octet-stream"
        );
    }
}
