//! `--on-commit CMD`: runs CMD (with `sh -c`) for every new version, the event JSON
//! on its standard input. It runs on its own thread behind a bounded queue, so a
//! slow or failing hook never delays or fails a write; what it misses stays in
//! the event log (`artifactfs events --since SEQ`).

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

pub struct Hook {
    tx: SyncSender<serde_json::Value>,
}

/// Events waiting for the hook; more are dropped (and logged).
pub const QUEUE: usize = 1024;
/// A hook running longer than this is killed.
pub const TIMEOUT: Duration = Duration::from_secs(60);

impl Hook {
    pub fn start(cmd: String) -> Hook {
        let (tx, rx) = sync_channel::<serde_json::Value>(QUEUE);
        std::thread::Builder::new()
            .name("on-commit".into())
            .spawn(move || {
                for event in rx {
                    if let Err(e) = run(&cmd, &event) {
                        log::warn!("on-commit hook failed for event {}: {e}", event["seq"]);
                    }
                }
            })
            .expect("spawn hook thread");
        Hook { tx }
    }

    pub fn send(&self, event: serde_json::Value) {
        match self.tx.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(e)) => log::warn!(
                "on-commit hook queue full: event {} not passed to it (see `artifactfs events`)",
                e["seq"]
            ),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

fn run(cmd: &str, event: &serde_json::Value) -> Result<(), String> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its input is not an error.
        let _ = writeln!(stdin, "{event}");
    }
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(st) if st.success() => return Ok(()),
            Some(st) => return Err(format!("exited with {st}")),
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("killed after {TIMEOUT:?}"));
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
