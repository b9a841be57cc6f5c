//! `artifactfs verify [--repair]`: re-hashes every blob in the spool and in the
//! backend against the catalog and checks every sidecar; reports what is missing
//! or corrupt (progress bar on a terminal, JSON summary on stdout). `--repair`
//! re-uploads from a good spool copy, drops a corrupt spool copy when the
//! backend's is good (it is fetched again on read), and rewrites sidecars.
//! Exit 0 when clean (or fully repaired), 1 otherwise.

use super::CliResult;
use crate::catalog::{Catalog, Durability};
use crate::store::{Backend, Store, blob_key, manifest_key};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Data directory (default: the only live mount's, else the default).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Backend URL (default: fs://DATA/backend). Credentials from AWS_* as for mount.
    #[arg(long)]
    pub backend: Option<String>,
    #[arg(long)]
    pub repair: bool,
}

pub fn run(a: Args) -> CliResult {
    let (dir, _) = super::data_dir(None, a.data.as_deref());
    let url = a
        .backend
        .clone()
        .unwrap_or_else(|| format!("fs://{}", dir.join("backend").display()));
    let cat = Catalog::open_read_only(&dir.join("catalog.db"))?;
    let store = Store::open(&dir.join("spool"), Backend::from_url(&url)?, true)?;
    let versions = cat.every_version()?;
    let mut blobs: BTreeMap<String, u64> = BTreeMap::new();
    for (_, v) in &versions {
        blobs.insert(v.sha256.clone(), v.size);
    }
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new((blobs.len() + versions.len()) as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut problems: Vec<serde_json::Value> = Vec::new();
    let mut repaired = 0u64;
    let mut problem = |kind: &str, what: &str, fixed: bool| {
        problems.push(serde_json::json!({"problem": kind, "object": what, "repaired": fixed}));
        if fixed {
            repaired += 1;
        }
    };
    for sha in blobs.keys() {
        bar.inc(1);
        let spool = store.hash_spool_blob(sha)?;
        let backend = store.hash_backend_blob(sha)?;
        let spool_ok = spool.as_deref() == Some(sha);
        let backend_ok = backend.as_deref() == Some(sha);
        if spool.is_some() && !spool_ok {
            let fixed =
                a.repair && backend_ok && std::fs::remove_file(store.blob_path(sha)).is_ok();
            problem(
                "corrupt spool blob",
                &store.blob_path(sha).display().to_string(),
                fixed,
            );
        }
        if !backend_ok {
            let kind = if backend.is_some() {
                "corrupt backend blob"
            } else {
                "missing backend blob"
            };
            let fixed = a.repair
                && spool_ok
                && std::fs::read(store.blob_path(sha))
                    .ok()
                    .is_some_and(|b| store.backend.op.write(&blob_key(sha), b).is_ok());
            problem(kind, &blob_key(sha), fixed);
        }
        if spool.is_none() && backend.is_none() {
            problem("blob in neither spool nor backend", sha, false);
        }
    }
    let mut completed = Vec::new();
    let mut current: BTreeMap<i64, u32> = BTreeMap::new();
    for (id, v) in &versions {
        bar.inc(1);
        let key = manifest_key(id, v.version);
        let write_sidecar = || -> bool {
            cat.sidecar(v.artifact_rowid, v.version)
                .ok()
                .flatten()
                .is_some_and(|s| store.backend.op.write(&key, s.to_string()).is_ok())
        };
        if v.status == "completed" {
            let is_current = match current.get(&v.artifact_rowid) {
                Some(&n) => n == v.version,
                None => {
                    let n = cat
                        .artifact(v.artifact_rowid)?
                        .map_or(0, |a| a.current_version);
                    current.insert(v.artifact_rowid, n);
                    n == v.version
                }
            };
            if is_current {
                // The current version's sidecar follows renames, deletions and
                // `setfattr` (rewritten after each); a rewrite still queued when
                // the daemon died leaves it behind the catalog, and `reindex`
                // would restore the old state: its content is checked.
                let want = cat.sidecar(v.artifact_rowid, v.version)?;
                let put = || {
                    want.as_ref()
                        .is_some_and(|s| store.backend.op.write(&key, s.to_string()).is_ok())
                };
                match store.backend.op.read(&key) {
                    Err(e) if e.kind() == opendal::ErrorKind::NotFound => {
                        problem("missing sidecar", &key, a.repair && put());
                    }
                    Err(e) => return Err(format!("{key}: {e}").into()),
                    Ok(body) => {
                        let have: Option<serde_json::Value> =
                            serde_json::from_slice(&body.to_vec()).ok();
                        if have != want {
                            problem("stale sidecar", &key, a.repair && put());
                        }
                    }
                }
            } else if !store.backend.op.exists(&key).unwrap_or(false) {
                // Older versions' sidecars: their presence only.
                problem("missing sidecar", &key, a.repair && write_sidecar());
            }
        }
        if v.status != "completed" {
            let blob_there =
                store.hash_backend_blob(&v.sha256)?.as_deref() == Some(v.sha256.as_str());
            if a.repair && blob_there && write_sidecar() {
                completed.push((v.artifact_rowid, v.version));
            }
        }
    }
    bar.finish_and_clear();
    if !completed.is_empty() {
        let mut w = Catalog::open(&dir.join("catalog.db"), Durability::Full)?;
        w.write(|tx| {
            completed
                .iter()
                .try_for_each(|(r, n)| tx.set_status(*r, *n, "completed"))
        })?;
    }
    let unrepaired = problems.iter().filter(|p| p["repaired"] == false).count();
    let summary = serde_json::json!({
        "blobs": blobs.len(),
        "versions": versions.len(),
        "problems": problems.len(),
        "repaired": repaired,
        "marked_completed": completed.len(),
        "details": problems,
    });
    writeln!(std::io::stdout().lock(), "{summary}")?;
    Ok(if unrepaired == 0 { 0 } else { 1 })
}
