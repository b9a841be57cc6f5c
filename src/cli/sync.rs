//! `artifactfs sync MOUNTPOINT [--timeout S]`: waits until every committed version
//! is `completed` in the backend (exit 0), or says what is still pending (exit 1).

use super::CliResult;
use crate::catalog::Catalog;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The mountpoint (or any path below it).
    pub mountpoint: PathBuf,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// First ask the daemon to retry `failed` uploads now (instead of at its
    /// next --retry-failed round), then wait for them too.
    #[arg(long)]
    pub retry_failed: bool,
}

pub fn run(a: Args) -> CliResult {
    let (dir, _) = super::data_dir(Some(&a.mountpoint), a.data.as_deref());
    let cat = Catalog::open_read_only(&dir.join("catalog.db"))?;
    let deadline = Instant::now() + Duration::from_secs(a.timeout);
    if a.retry_failed {
        let socket = crate::registry::all()
            .into_iter()
            .find(|r| r.data_dir == dir && Path::new(&format!("/proc/{}", r.pid)).exists())
            .and_then(|r| r.control)
            .ok_or_else(|| format!("--retry-failed: no running daemon for {}", dir.display()))?;
        let code =
            crate::control::request(&socket, serde_json::json!({"cmd": "retry"}), |_| Ok(()))?;
        if code != 0 {
            return Ok(code);
        }
    }
    loop {
        let (uploading, failed, _) = cat.upload_summary()?;
        if uploading == 0 && failed == 0 {
            return Ok(0);
        }
        // Failed versions are retried by the daemon (--retry-failed, the next
        // mount, or this command's --retry-failed), so they are waited for too.
        if Instant::now() >= deadline {
            let out = std::io::stdout();
            let mut out = out.lock();
            writeln!(out, "{uploading} version(s) uploading, {failed} failed:")?;
            for v in cat.pending_uploads()?.iter().take(50) {
                writeln!(out, "  {} {}@{} {}", v.status, v.path, v.version, v.sha256)?;
            }
            return Ok(1);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
