//! `artifactfs status MOUNTPOINT`: health as one JSON object (daemon, upload queue,
//! failures, spool use, orphans), from the catalog and the data directory; works
//! with or without the daemon.

use super::CliResult;
use crate::catalog::Catalog;
use crate::registry;
use crate::store::dir_usage;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    pub mountpoint: PathBuf,
    #[arg(long)]
    pub data: Option<PathBuf>,
}

pub fn run(a: Args) -> CliResult {
    let mp = registry::absolute(&a.mountpoint);
    let (dir, _) = super::data_dir(Some(&mp), a.data.as_deref());
    let cat = Catalog::open_read_only(&dir.join("catalog.db"))?;
    let (uploading, failed, oldest) = cat.upload_summary()?;
    let daemon = registry::containing(&mp)
        .map(|(r, _)| r)
        .filter(|r| Path::new(&format!("/proc/{}", r.pid)).exists());
    let (spool_bytes, _) = dir_usage(&dir.join("spool"));
    let (_, orphans) = dir_usage(&dir.join("spool/orphans"));
    let now = crate::timefmt::now_ns();
    let status = serde_json::json!({
        "mountpoint": mp,
        "data_dir": dir,
        "daemon_pid": daemon.as_ref().map(|r| r.pid),
        "mounted": daemon.is_some(),
        "upload_queue": uploading,
        "oldest_pending_age_s": oldest.map(|t| (now - t) as f64 / 1e9),
        "failed": failed,
        "spool_bytes": spool_bytes,
        "orphans": orphans,
    });
    writeln!(std::io::stdout().lock(), "{status}")?;
    Ok(if failed > 0 { 1 } else { 0 })
}
