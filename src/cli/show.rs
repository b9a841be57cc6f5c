//! `artifactfs show PATH|ID [--version N]`: one manifest.

use super::CliResult;
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A path under a mountpoint, a path relative to the tree, or an artifact id.
    pub artifact: String,
    /// That version instead of the current one.
    #[arg(long)]
    pub version: Option<u32>,
    /// Data directory, when the artifact is not named by a path under a mountpoint.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The manifest as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> CliResult {
    let (cat, art) = match super::resolve_or_relay(&a.artifact, a.data.as_deref())? {
        super::Resolved::Here(found) => *found,
        super::Resolved::Relayed(code) => return Ok(code),
    };
    let m = cat.manifest(art.rowid, a.version)?.ok_or_else(|| {
        format!(
            "{}: no version {}",
            a.artifact,
            a.version.unwrap_or(art.current_version)
        )
    })?;
    let out = std::io::stdout();
    let mut out = out.lock();
    if a.json {
        writeln!(out, "{}", serde_json::to_string(&m)?)?;
        return Ok(0);
    }
    let v = serde_json::to_value(&m)?;
    for (k, val) in v.as_object().into_iter().flatten() {
        let shown = match val {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => "-".into(),
            other => other.to_string(),
        };
        writeln!(out, "{k:>14}: {shown}")?;
    }
    Ok(0)
}
