//! `artifactfs log PATH`: the versions of an artifact, from the catalog, with or
//! without a running daemon.

use super::CliResult;
use crate::catalog::Manifest;
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A path under a mountpoint, a path relative to the tree
    /// (`trace/step/report.json`), or an artifact id.
    pub path: PathBuf,
    /// Data directory, when PATH is not under a known mountpoint.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// One JSON manifest per line.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> CliResult {
    let (cat, art) = match super::resolve_or_relay(&a.path.to_string_lossy(), a.data.as_deref())? {
        super::Resolved::Here(found) => *found,
        super::Resolved::Relayed(code) => return Ok(code),
    };
    let out = std::io::stdout();
    let mut out = out.lock();
    if !a.json {
        writeln!(
            out,
            "artifact {}  {}{}",
            art.id,
            art.path,
            if art.live { "" } else { "  (deleted)" }
        )?;
        writeln!(
            out,
            "{:>7}  {:<24}  {:>12}  {:<71}  CREATOR",
            "VERSION", "CREATED", "SIZE", "CHECKSUM"
        )?;
    }
    for v in cat.versions(art.rowid)? {
        if a.json {
            let mut m: Manifest = serde_json::from_str(&v.manifest)?;
            m.status = v.status.clone();
            writeln!(out, "{}", serde_json::to_string(&m)?)?;
        } else {
            writeln!(
                out,
                "{:>7}  {:<24}  {:>12}  sha256:{:<64}  {}",
                v.version,
                crate::timefmt::rfc3339(v.created_at_ns),
                v.size,
                v.sha256,
                v.created_by
            )?;
        }
    }
    if !a.json {
        // Renames and deletions are history too.
        for e in cat.events_of(&art.id)? {
            if e.action == "register_artifact" {
                continue;
            }
            writeln!(
                out,
                "{:>7}  {:<24}  {} {}",
                "-",
                crate::timefmt::rfc3339(e.at_ns),
                e.action,
                e.params["path"].as_str().unwrap_or_default()
            )?;
        }
    }
    Ok(0)
}
