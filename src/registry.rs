//! Where running (and past) mounts are recorded, so `umount`, `log` and friends can
//! go from a mountpoint to its daemon and data directory. One small JSON file per
//! mountpoint under `/run/artifactfs` (root) or `$XDG_RUNTIME_DIR/artifactfs`.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MountRecord {
    pub mountpoint: PathBuf,
    pub data_dir: PathBuf,
    pub pid: u32,
    /// The daemon's control socket (`gc`, and catalog reads for other users).
    #[serde(default)]
    pub control: Option<PathBuf>,
}

pub fn dir() -> PathBuf {
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/run/artifactfs");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) => PathBuf::from(d).join("artifactfs"),
        None => std::env::temp_dir().join(format!("artifactfs-{}", unsafe { libc::geteuid() })),
    }
}

/// Where records are looked for: this user's directory, and for other users
/// also root's (a system mount serves everyone).
fn dirs() -> Vec<PathBuf> {
    let mut v = vec![dir()];
    let system = PathBuf::from("/run/artifactfs");
    if v[0] != system {
        v.push(system);
    }
    v
}

fn key(mountpoint: &Path) -> String {
    hex::encode(&sha2_digest(mountpoint.as_os_str().as_encoded_bytes())[..8])
}

fn file_for(mountpoint: &Path) -> PathBuf {
    dir().join(format!("{}.json", key(mountpoint)))
}

/// The daemon's control socket for the mount at `mountpoint` (see `control`).
pub fn socket_for(mountpoint: &Path) -> PathBuf {
    dir().join(format!("{}.sock", key(mountpoint)))
}

fn sha2_digest(b: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(b).to_vec()
}

pub fn write(rec: &MountRecord) -> std::io::Result<()> {
    std::fs::create_dir_all(dir())?;
    let tmp = file_for(&rec.mountpoint).with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(rec)?)?;
    std::fs::rename(tmp, file_for(&rec.mountpoint))
}

/// Forgets the mount at `mountpoint` if `pid` recorded it; `log` and friends
/// then fall back to `--data` or the default data directory.
pub fn remove(mountpoint: &Path, pid: u32) {
    if read(mountpoint).is_some_and(|r| r.pid == pid) {
        let _ = std::fs::remove_file(file_for(mountpoint));
    }
}

pub fn read(mountpoint: &Path) -> Option<MountRecord> {
    let b = std::fs::read(file_for(mountpoint)).ok()?;
    serde_json::from_slice(&b).ok()
}

/// Every mount on record.
pub fn all() -> Vec<MountRecord> {
    dirs()
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flat_map(|entries| entries.flatten())
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect()
}

/// The record of the mount that contains `path`, and `path` relative to it.
pub fn containing(path: &Path) -> Option<(MountRecord, String)> {
    let mut best: Option<(MountRecord, String)> = None;
    for rec in all() {
        if let Ok(rel) = path.strip_prefix(&rec.mountpoint) {
            let better = best.as_ref().is_none_or(|(b, _)| {
                rec.mountpoint.as_os_str().len() > b.mountpoint.as_os_str().len()
            });
            if better {
                best = Some((rec.clone(), rel.to_string_lossy().into_owned()));
            }
        }
    }
    best
}

/// The default data directory: `/var/lib/artifactfs` for root, else
/// `$XDG_DATA_HOME/artifactfs` (`~/.local/share/artifactfs`).
pub fn default_data_dir() -> PathBuf {
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/artifactfs");
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(d).join("artifactfs");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/artifactfs")
}

/// Absolute form of `p` without touching the filesystem below it (a dead FUSE
/// mountpoint cannot be stat'ed, so `canonicalize` is no use there).
pub fn absolute(p: &Path) -> PathBuf {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}
