//! `artifactfs reindex --backend URL --data DIR`: rebuilds a lost catalog from the
//! backend's manifest sidecars: same ids, versions and manifests; events are
//! regenerated. Traces get back their owners and participant lists from their
//! own sidecars. Blobs stay in the backend and are fetched on first read.

use super::CliResult;
use crate::catalog::{Catalog, Durability, Manifest, TraceRow};
use crate::store::Backend;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Backend URL holding `manifests/<xx>/<id>.<version>.json` (AWS_* for s3://).
    #[arg(long)]
    pub backend: String,
    /// Data directory to create the catalog in; it must not have one.
    #[arg(long)]
    pub data: PathBuf,
}

pub fn run(a: Args) -> CliResult {
    let db = a.data.join("catalog.db");
    if db.exists() {
        return Err(format!(
            "{} exists: reindex only builds a missing catalog (move it aside first)",
            db.display()
        )
        .into());
    }
    let backend = Backend::from_url(&a.backend)?;
    let entries = backend
        .op
        .list_options(
            "manifests/",
            opendal::options::ListOptions {
                recursive: true,
                ..Default::default()
            },
        )
        .map_err(|e| format!("cannot list manifests in {}: {e}", backend.url))?;
    let mut by_id: BTreeMap<String, Vec<Manifest>> = BTreeMap::new();
    // Sidecars of deleted artifacts say `"live": false` (rewritten at the
    // deletion); older ones have no such field.
    let mut deleted: BTreeMap<(String, u32), bool> = BTreeMap::new();
    let mut skipped = 0;
    for e in entries {
        if !e.path().ends_with(".json") {
            continue;
        }
        let bytes = backend
            .op
            .read(e.path())
            .map_err(|err| format!("{}: {err}", e.path()))?
            .to_vec();
        let parsed = serde_json::from_slice::<serde_json::Value>(&bytes).and_then(|v| {
            let gone = v["live"] == false;
            serde_json::from_value::<Manifest>(v).map(|m| (m, gone))
        });
        match parsed {
            Ok((m, gone)) => {
                deleted.insert((m.id.clone(), m.version), gone);
                by_id.entry(m.id.clone()).or_default().push(m)
            }
            Err(err) => {
                eprintln!("artifactfs: skipping {}: {err}", e.path());
                skipped += 1;
            }
        }
    }
    for v in by_id.values_mut() {
        v.sort_by_key(|m| m.version);
    }
    // Two artifacts last seen at one path: the newer one keeps it, the other is
    // restored as deleted (its history stays).
    let mut newest_at: BTreeMap<&str, (&str, &str)> = BTreeMap::new();
    for (id, v) in &by_id {
        let last = v.last().expect("non-empty");
        if deleted.get(&(id.clone(), last.version)) == Some(&true) {
            continue;
        }
        let slot = newest_at
            .entry(last.path.as_str())
            .or_insert((id.as_str(), last.created_at.as_str()));
        if last.created_at.as_str() > slot.1 {
            *slot = (id.as_str(), last.created_at.as_str());
        }
    }
    let traces = read_traces(&backend, &mut skipped)?;
    std::fs::create_dir_all(&a.data)?;
    let mut cat = Catalog::open(&db, Durability::Full)?;
    let versions: usize = by_id.values().map(Vec::len).sum();
    cat.write(|tx| {
        for (id, v) in &by_id {
            let live = newest_at
                .get(v.last().expect("non-empty").path.as_str())
                .is_some_and(|(w, _)| w == id);
            tx.restore_artifact(v, live)?;
        }
        traces.iter().try_for_each(|t| tx.put_trace(t))
    })?;
    let summary = serde_json::json!({
        "artifacts": by_id.len(),
        "versions": versions,
        "traces": traces.len(),
        "skipped": skipped,
    });
    writeln!(std::io::stdout().lock(), "{summary}")?;
    Ok(0)
}

/// The traces' owners and participant lists, from `traces/*.json`.
fn read_traces(backend: &Backend, skipped: &mut usize) -> Result<Vec<TraceRow>, String> {
    #[derive(serde::Deserialize)]
    struct Sidecar {
        trace: String,
        owner: String,
        participants: Option<Vec<String>>,
    }
    let entries = match backend.op.list("traces/") {
        Ok(e) => e,
        Err(e) if e.kind() == opendal::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(format!("cannot list traces in {}: {e}", backend.url)),
    };
    let mut out = Vec::new();
    for e in entries.iter().filter(|e| e.path().ends_with(".json")) {
        let bytes = backend
            .op
            .read(e.path())
            .map_err(|err| format!("{}: {err}", e.path()))?
            .to_vec();
        match serde_json::from_slice::<Sidecar>(&bytes) {
            Ok(t) => out.push(TraceRow {
                name: t.trace,
                owner: t.owner,
                participants: t.participants,
            }),
            Err(err) => {
                eprintln!("artifactfs: skipping {}: {err}", e.path());
                *skipped += 1;
            }
        }
    }
    Ok(out)
}
