//! `artifactfs`: parses the command line and dispatches to one function per
//! subcommand in `artifactfs::cli`. Exit codes: 0 success, 1 failure, 2 usage.

use artifactfs::cli::{self, Cli, Command};
use clap::Parser;

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Mount(a) => cli::mount::run(a),
        Command::Umount(a) => cli::umount::run(a),
        Command::Log(a) => cli::log::run(a),
        Command::Show(a) => cli::show::run(a),
        Command::Query(a) => cli::query::run(a),
        Command::Events(a) => cli::events::run(a),
        Command::Sync(a) => cli::sync::run(a),
        Command::Status(a) => cli::status::run(a),
        Command::Verify(a) => cli::verify::run(a),
        Command::Reindex(a) => cli::reindex::run(a),
        Command::Gc(a) => cli::gc::run(a),
        Command::Grant(a) => cli::grant::grant(a),
        Command::Revoke(a) => cli::grant::revoke(a),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) if cli::is_broken_pipe(e.as_ref()) => std::process::exit(0),
        Err(e) => {
            eprintln!("artifactfs: {e}");
            std::process::exit(1);
        }
    }
}
