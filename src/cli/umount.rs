//! `artifactfs umount MOUNTPOINT`: unmount, then wait for the daemon to exit
//! (it finishes pending commits and drains uploads first).

use super::CliResult;
use crate::registry;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Args {
    pub mountpoint: PathBuf,
    /// Do not wait for the daemon to finish its uploads.
    #[arg(long)]
    pub no_wait: bool,
    /// Seconds to wait for the daemon.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
}

pub fn run(a: Args) -> CliResult {
    let mp = registry::absolute(&a.mountpoint);
    let rec = registry::read(&mp);
    if let Err(e) = unmount_retrying(&mp) {
        let alive = rec.as_ref().is_some_and(|r| pid_alive(r.pid));
        if e.raw_os_error() == Some(libc::EINVAL) && !alive {
            return Err(format!("{} is not mounted", mp.display()).into());
        }
        if e.raw_os_error() == Some(libc::EBUSY) {
            return Err(format!(
                "{} is busy (a process has a file or directory open there)",
                mp.display()
            )
            .into());
        }
        return Err(format!("cannot unmount {}: {e}", mp.display()).into());
    }
    let Some(rec) = rec else { return Ok(0) };
    if a.no_wait {
        return Ok(0);
    }
    let deadline = Instant::now() + Duration::from_secs(a.timeout);
    while pid_alive(rec.pid) {
        if Instant::now() > deadline {
            return Err(format!("daemon {} still running after {}s", rec.pid, a.timeout).into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(0)
}

/// A process that just closed its last file there can keep the mount busy for a
/// moment (the kernel releases files asynchronously): retry EBUSY briefly.
fn unmount_retrying(mp: &std::path::Path) -> std::io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match super::mount::unmount(mp) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

fn pid_alive(pid: u32) -> bool {
    // A zombie (exited, not yet reaped by its parent) counts as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
