//! Subcommands, one file each. Each `run` returns the process exit code.

pub mod events;
pub mod gc;
pub mod grant;
pub mod log;
pub mod mount;
pub mod query;
pub mod reindex;
pub mod show;
pub mod status;
pub mod sync;
pub mod umount;
pub mod verify;

use clap::{Parser, Subcommand};

pub type CliResult = Result<i32, Box<dyn std::error::Error>>;

#[derive(Parser, Debug)]
#[command(
    name = "artifactfs",
    version,
    about = "A versioned, checksummed artifact store you mount as a directory"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Mount the artifact tree at MOUNTPOINT.
    Mount(mount::Args),
    /// Unmount MOUNTPOINT and wait for its daemon to finish.
    Umount(umount::Args),
    /// List the versions of an artifact, and its renames and deletions.
    Log(log::Args),
    /// Print an artifact's manifest.
    Show(show::Args),
    /// Find artifacts by trace, step, agent, type, status, time or name.
    Query(query::Args),
    /// Print the event log as JSON lines (register_artifact, …).
    Events(events::Args),
    /// Wait until every committed version is in the backend.
    Sync(sync::Args),
    /// Health of a mount as JSON: upload queue, failures, spool, orphans.
    Status(status::Args),
    /// Re-hash blobs in spool and backend against the catalog; --repair fixes.
    Verify(verify::Args),
    /// Rebuild a lost catalog from the backend's manifest sidecars.
    Reindex(reindex::Args),
    /// Apply retention: remove expired versions and the blobs no version uses.
    Gc(gc::Args),
    /// Add agents to a trace's participants (the trace owner only).
    Grant(grant::Args),
    /// Remove agents from a trace's participants; an empty list opens the trace.
    Revoke(grant::Args),
}

use crate::catalog::{ArtifactRow, Catalog};
use crate::registry;
use std::path::{Path, PathBuf};

/// The data directory a command reads: the one of the mount that contains
/// `path`, else `--data`, else the mount the current directory is in, else the
/// only live mount on record, else the default.
pub fn data_dir(path: Option<&Path>, data: Option<&Path>) -> (PathBuf, Option<String>) {
    if let Some(p) = path {
        if let Some((rec, rel)) = registry::containing(&registry::absolute(p)) {
            if data.is_none_or(|d| registry::absolute(d) == rec.data_dir) {
                return (rec.data_dir, Some(rel));
            }
        }
    }
    if let Some(d) = data {
        return (registry::absolute(d), None);
    }
    if let Some((rec, _)) = std::env::current_dir()
        .ok()
        .and_then(|cwd| registry::containing(&cwd))
    {
        return (rec.data_dir, None);
    }
    let records: Vec<_> = registry::all()
        .into_iter()
        .filter(|r| Path::new(&format!("/proc/{}", r.pid)).exists())
        .collect();
    if records.len() == 1 {
        return (records[0].data_dir.clone(), None);
    }
    (registry::default_data_dir(), None)
}

/// Opens the catalog read-only and finds the artifact named by a path (under a
/// mountpoint, or relative to the tree) or by its id.
pub fn resolve(
    what: &str,
    data: Option<&Path>,
) -> Result<(Catalog, ArtifactRow), Box<dyn std::error::Error>> {
    find(what, data)
}

pub enum Resolved {
    Here(Box<(Catalog, ArtifactRow)>),
    /// The daemon ran the command for us; this is its exit code.
    Relayed(i32),
}

/// Like `resolve`, or has the daemon run the whole command when the user cannot
/// read the catalog.
pub fn resolve_or_relay(
    what: &str,
    data: Option<&Path>,
) -> Result<Resolved, Box<dyn std::error::Error>> {
    let (dir, _) = data_dir(Some(Path::new(what)), data);
    if let Some(r) = relay(&dir) {
        return Ok(Resolved::Relayed(r?));
    }
    let (c, a) = find(what, data)?;
    Ok(Resolved::Here(Box::new((c, a))))
}

/// For commands without a path: has the daemon run it when the catalog of
/// `dir` is not readable by the user.
pub fn relay_for(dir: &Path) -> Option<CliResult> {
    relay(dir)
}

fn find(
    what: &str,
    data: Option<&Path>,
) -> Result<(Catalog, ArtifactRow), Box<dyn std::error::Error>> {
    let (dir, rel) = data_dir(Some(Path::new(what)), data);
    let cat = Catalog::open_read_only(&dir.join("catalog.db"))?;
    let viewer = viewer();
    let found = match &rel {
        // In a mount, a bare id looks like a relative path: try both.
        Some(rel) => match cat.artifact_at(rel)? {
            Some(a) => Some(a),
            None => cat.artifact_by_id(what)?,
        },
        None => match cat.artifact_by_id(what)? {
            Some(a) => Some(a),
            None => cat.artifact_at(what.trim_start_matches('/'))?,
        },
    };
    let art = found
        .filter(|a| may_see(&viewer, &a.owner, &a.visibility))
        .ok_or_else(|| format!("{what}: no such artifact (path or id) in {}", dir.display()))?;
    Ok((cat, art))
}

/// Who the catalog commands answer for: `None` shows everything (root, or the
/// daemon's own user, who can read the catalog file anyway); `Some(agent)` when
/// the daemon runs the command for another user (see `control`).
pub fn viewer() -> Option<String> {
    std::env::var(crate::control::AS_AGENT_ENV).ok()
}

/// The access rule of `fs::access` for catalog output: a private artifact
/// exists for its owner only.
pub fn may_see(viewer: &Option<String>, owner: &str, visibility: &str) -> bool {
    use crate::fs::access::{Visibility, may_know};
    may_know(viewer.as_deref(), owner, Visibility::parse(visibility))
}

/// Runs this command in the daemon when the catalog is not readable by the
/// user (see `control::relay_if_needed`).
fn relay(dir: &Path) -> Option<CliResult> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if !args
        .iter()
        .any(|a| a == "--data" || a.starts_with("--data="))
    {
        args.push("--data".into());
        args.push(dir.to_string_lossy().into_owned());
    }
    crate::control::relay_if_needed(dir, &args)
}

/// RFC 3339 (`2026-11-24T10:00:00Z`) or an age (`90m`, `2h`, `7d`: that long ago).
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(crate::timefmt::to_ns(t));
    }
    match humantime::parse_duration(s) {
        Ok(d) => Ok(crate::timefmt::now_ns() - d.as_nanos() as i64),
        Err(_) => Err(format!(
            "{s:?}: expected an RFC 3339 time or an age like 2h"
        )),
    }
}

/// A reader that went away (`artifactfs log … | head`) ends the command quietly.
pub fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}
