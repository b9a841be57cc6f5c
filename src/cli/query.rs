//! `artifactfs query`: find artifacts by trace, step, agent, type, status, time
//! and name. Every filter is an indexed column.

use super::CliResult;
use crate::catalog::{Catalog, Query};
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long)]
    pub trace: Option<String>,
    #[arg(long)]
    pub step: Option<String>,
    /// Versions created by this agent.
    #[arg(long)]
    pub agent: Option<String>,
    /// artifact_type
    #[arg(long = "type")]
    pub artifact_type: Option<String>,
    /// uploading | completed | failed
    #[arg(long)]
    pub status: Option<String>,
    /// Created at or after: RFC 3339, or an age like 2h.
    #[arg(long)]
    pub since: Option<String>,
    /// Created before: RFC 3339, or an age like 2h.
    #[arg(long)]
    pub until: Option<String>,
    /// Glob on the file name (or on the path when it contains '/').
    #[arg(long)]
    pub name: Option<String>,
    /// Every version, not only the current version of live artifacts.
    #[arg(long)]
    pub all_versions: bool,
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// One manifest per line.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> CliResult {
    let (dir, _) = super::data_dir(None, a.data.as_deref());
    if let Some(r) = super::relay_for(&dir) {
        return r;
    }
    let cat = Catalog::open_read_only(&dir.join("catalog.db"))?;
    let q = Query {
        trace: a.trace,
        step: a.step,
        agent: a.agent,
        artifact_type: a.artifact_type,
        status: a.status,
        since_ns: a.since.as_deref().map(super::parse_time).transpose()?,
        until_ns: a.until.as_deref().map(super::parse_time).transpose()?,
        name_glob: a.name,
        all_versions: a.all_versions,
        limit: a.limit,
        viewer: super::viewer(),
    };
    let viewer = q.viewer.clone();
    let found: Vec<_> = cat
        .query(&q)?
        .into_iter()
        .filter(|m| super::may_see(&viewer, &m.owner, &m.visibility))
        .collect();
    let out = std::io::stdout();
    let mut out = out.lock();
    if !a.json {
        writeln!(
            out,
            "{:<34} {:<16} {:>10}  {:<24} {:<12} PATH",
            "ID@VERSION", "TYPE", "SIZE", "CREATED", "CREATED_BY"
        )?;
    }
    for m in &found {
        if a.json {
            writeln!(out, "{}", serde_json::to_string(m)?)?;
        } else {
            writeln!(
                out,
                "{:<34} {:<16} {:>10}  {:<24} {:<12} {}",
                format!("{}@{}", m.id, m.version),
                m.artifact_type,
                m.size_bytes,
                m.created_at,
                m.created_by,
                m.path
            )?;
        }
    }
    Ok(if found.is_empty() { 1 } else { 0 })
}
