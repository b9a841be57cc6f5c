//! `artifactfs log PATH`: the versions of an artifact, from the catalog, with or
//! without a running daemon.

use super::CliResult;
use crate::catalog::{Catalog, Manifest};
use crate::registry;
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A path under a mountpoint, or with --data a path relative to the tree
    /// (`trace/step/report.json`).
    pub path: PathBuf,
    /// Data directory, when PATH is not under a known mountpoint.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// One JSON manifest per line.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> CliResult {
    let abs = registry::absolute(&a.path);
    let (data, rel) = match (&a.data, registry::containing(&abs)) {
        (None, Some((rec, rel))) => (rec.data_dir, rel),
        (Some(d), Some((rec, rel))) if registry::absolute(d) == rec.data_dir => (rec.data_dir, rel),
        (Some(d), _) => (
            d.clone(),
            a.path.to_string_lossy().trim_start_matches('/').to_string(),
        ),
        (None, None) => (
            registry::default_data_dir(),
            a.path.to_string_lossy().trim_start_matches('/').to_string(),
        ),
    };
    let cat = Catalog::open_read_only(&data.join("catalog.db"))?;
    let art = cat.artifact_at(&rel)?.ok_or_else(|| {
        format!(
            "{}: no artifact at {rel:?} in {}",
            a.path.display(),
            data.display()
        )
    })?;
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
    Ok(0)
}
