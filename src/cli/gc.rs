//! `artifactfs gc [MOUNTPOINT] [--dry-run] [--json]`: apply retention. Expired
//! versions leave the catalog, then blobs no version uses leave the spool and the
//! backend. With a daemon serving the data directory the pass runs inside it
//! (through its control socket), where it cannot race a commit; without one it
//! runs here, holding the data directory's lock like a daemon would.

use super::CliResult;
use crate::fs::gc::GcReport;
use crate::fs::{ArtifactFs, Options};
use crate::registry;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A mountpoint (or any path in it); default: the only mount, or --data.
    pub mountpoint: Option<PathBuf>,
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Backend URL when no daemon runs (default: fs://DATA/backend).
    #[arg(long)]
    pub backend: Option<String>,
    /// Report what would be removed; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> CliResult {
    let (dir, _) = super::data_dir(a.mountpoint.as_deref(), a.data.as_deref());
    let live = registry::all()
        .into_iter()
        .find(|r| r.data_dir == dir && Path::new(&format!("/proc/{}", r.pid)).exists());
    if let Some(socket) = live.and_then(|r| r.control) {
        let json = a.json;
        // The pass runs in the daemon, which reports only at the end: a spinner.
        let spinner = if std::io::stderr().is_terminal() {
            let s = indicatif::ProgressBar::new_spinner();
            s.set_message("gc running in the daemon");
            s.enable_steady_tick(std::time::Duration::from_millis(120));
            s
        } else {
            indicatif::ProgressBar::hidden()
        };
        return crate::control::request(
            &socket,
            serde_json::json!({"cmd": "gc", "dry_run": a.dry_run}),
            |v| {
                spinner.finish_and_clear();
                let r: GcReport = serde_json::from_value(v).map_err(std::io::Error::other)?;
                print_report(&r, json)
            },
        );
    }
    let mut opts = Options::new(&dir);
    if let Some(b) = a.backend {
        opts.backend_url = b;
    }
    let fs = ArtifactFs::start(&opts)?;
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(0)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let report = fs.gc(a.dry_run, &|phase, done, total| {
        bar.set_length(total);
        bar.set_position(done);
        bar.set_message(phase.to_string());
    });
    bar.finish_and_clear();
    fs.shutdown();
    let report = report?;
    print_report(&report, a.json)?;
    Ok(i32::from(!report.errors.is_empty()))
}

fn print_report(r: &GcReport, json: bool) -> std::io::Result<()> {
    let out = std::io::stdout();
    let mut out = out.lock();
    if json {
        return writeln!(out, "{}", serde_json::to_string(r)?);
    }
    let verb = if r.dry_run { "would remove" } else { "removed" };
    for v in &r.versions {
        writeln!(
            out,
            "{verb} {}@{}  {}  {}  {} bytes",
            v["id"].as_str().unwrap_or(""),
            v["version"],
            v["created_at"].as_str().unwrap_or(""),
            v["path"].as_str().unwrap_or(""),
            v["size_bytes"]
        )?;
    }
    writeln!(
        out,
        "{verb} {} expired version(s), {} bytes; blobs deleted {}, kept (shared) {}; stray spool blobs {}",
        r.expired_versions,
        r.expired_bytes,
        r.blobs_deleted,
        r.blobs_kept_shared,
        r.stray_spool_blobs
    )?;
    for e in &r.errors {
        writeln!(out, "error: {e}")?;
    }
    Ok(())
}
