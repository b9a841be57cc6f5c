//! `artifactfs events [--since SEQ] [--follow]`: the event log as JSON lines, in
//! sequence order; `--follow` keeps printing new ones (like `journalctl -f`).

use super::CliResult;
use crate::catalog::Catalog;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only events after this sequence number.
    #[arg(long, default_value_t = 0)]
    pub since: i64,
    /// Keep waiting for new events.
    #[arg(long, short = 'f')]
    pub follow: bool,
    #[arg(long)]
    pub data: Option<PathBuf>,
}

pub fn run(a: Args) -> CliResult {
    let (dir, _) = super::data_dir(None, a.data.as_deref());
    if let Some(r) = super::relay_for(&dir) {
        return r;
    }
    let viewer = super::viewer();
    // Artifact id → may the viewer see it (an artifact GC removed: no).
    let mut seen: std::collections::HashMap<String, bool> = Default::default();
    let cat = Catalog::open_read_only(&dir.join("catalog.db"))?;
    let mut seq = a.since;
    let out = std::io::stdout();
    loop {
        let batch = cat.events_since(seq, 1000)?;
        let mut lock = out.lock();
        for e in &batch {
            seq = e.seq;
            if viewer.is_some() {
                let id = e.params["artifact_id"].as_str().unwrap_or("").to_string();
                let ok = match seen.get(&id) {
                    Some(&ok) => ok,
                    None => {
                        let ok = cat
                            .artifact_by_id(&id)?
                            .is_some_and(|a| super::may_see(&viewer, &a.owner, &a.visibility));
                        seen.insert(id, ok);
                        ok
                    }
                };
                if !ok {
                    continue;
                }
            }
            let line = crate::catalog::event_line(e.seq, e.at_ns, &e.action, e.params.clone());
            writeln!(lock, "{line}")?;
            seq = e.seq;
        }
        lock.flush()?;
        drop(lock);
        if batch.len() == 1000 {
            continue;
        }
        if !a.follow {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
