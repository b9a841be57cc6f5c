//! Subcommands, one file each. Each `run` returns the process exit code.

pub mod log;
pub mod mount;
pub mod umount;

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
    /// List the versions of an artifact.
    Log(log::Args),
}

/// A reader that went away (`artifactfs log … | head`) ends the command quietly.
pub fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}
