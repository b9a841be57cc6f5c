//! Backends are OpenDAL operators built from a URL (see docs/STORAGE_SPEC.md, "Backends").

use super::{Result, StoreError};
use opendal::{Operator, blocking, services};
use std::path::Path;
use std::time::Duration;

/// An OpenDAL operator plus the URL it came from (without secrets).
pub struct Backend {
    pub op: blocking::Operator,
    pub url: String,
    /// The root directory of an `fs://` backend: blobs can be hard-linked there
    /// from the spool instead of copied.
    pub local_root: Option<std::path::PathBuf>,
    // The runtime must outlive the operator: blocking calls are driven on it.
    _rt: tokio::runtime::Runtime,
}

impl Backend {
    /// Builds the operator for `url`: `fs:///abs/path`, `memory://`, or
    /// `opendal://SCHEME?key=value&…` for any other service compiled in.
    pub fn from_url(url: &str) -> Result<Backend> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("opendal")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Backend(format!("cannot start I/O runtime: {e}")))?;
        opendal::install_default();
        let op = build(url)?.layer(
            opendal::layers::TimeoutLayer::new()
                .with_timeout(Duration::from_secs(60))
                .with_io_timeout(Duration::from_secs(20)),
        );
        let _guard = rt.enter();
        let op = blocking::Operator::new(op).map_err(|e| StoreError::Backend(e.to_string()))?;
        let local_root = url
            .strip_prefix("fs://")
            .map(|p| std::path::PathBuf::from(p.split('?').next().unwrap_or(p)));
        Ok(Backend {
            op,
            local_root,
            url: public_url(url),
            _rt: rt,
        })
    }

    /// Fails with a clear message when the backend cannot be reached or written.
    pub fn check(&self) -> Result<()> {
        self.probe().map_err(|(e, _)| e)
    }

    /// Writes the probe object. On failure, also whether the failure looks
    /// passing (a network error, a timeout) rather than a wrong setting (bad
    /// credentials, no such bucket).
    pub fn probe(&self) -> std::result::Result<(), (StoreError, bool)> {
        self.op
            .write(".artifactfs-probe", b"ok".to_vec())
            .map(|_| ())
            .map_err(|e| {
                let passing = e.is_temporary();
                (
                    StoreError::Backend(format!("backend {} is not writable: {e}", self.url)),
                    passing,
                )
            })
    }
}

/// The URL without its query string, where credentials and options live: this
/// is what manifests (`uri`) and logs show.
fn public_url(url: &str) -> String {
    url.split_once('?')
        .map_or(url, |(base, _)| base)
        .to_string()
}

fn build(url: &str) -> Result<Operator> {
    let shown = public_url(url);
    let bad = |why: &str| StoreError::BadUrl(format!("{shown}: {why}"));
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad("expected SCHEME://…"))?;
    let op = match scheme {
        "fs" => {
            if !rest.starts_with('/') {
                return Err(bad("fs backends need an absolute path: fs:///var/lib/…"));
            }
            std::fs::create_dir_all(Path::new(rest))
                .map_err(|e| bad(&format!("cannot create {rest}: {e}")))?;
            Operator::new(services::Fs::default().root(rest))
        }
        "memory" => Operator::new(services::Memory::default()),
        "s3" => {
            // s3://bucket/prefix?endpoint=URL&region=R; credentials from AWS_* variables.
            let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
            let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
            if bucket.is_empty() {
                return Err(bad(
                    "s3 backends need a bucket: s3://bucket/prefix?endpoint=…&region=…",
                ));
            }
            let mut b = services::S3::default()
                .bucket(bucket)
                .root(&format!("/{prefix}"));
            for kv in query.split('&').filter(|kv| !kv.is_empty()) {
                match kv.split_once('=') {
                    Some(("endpoint", v)) => b = b.endpoint(v),
                    Some(("region", v)) => b = b.region(v),
                    _ => {
                        // Only the key: a value could be a secret.
                        let key = kv.split('=').next().unwrap_or_default();
                        return Err(bad(&format!(
                            "unknown s3 option {key:?} (endpoint, region)"
                        )));
                    }
                }
            }
            let has_key = std::env::var_os("AWS_ACCESS_KEY_ID").is_some()
                && std::env::var_os("AWS_SECRET_ACCESS_KEY").is_some();
            if !has_key {
                return Err(bad(
                    "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                ));
            }
            Operator::new(b)
        }
        "opendal" => {
            let (svc, query) = rest.split_once('?').unwrap_or((rest, ""));
            let pairs = query
                .split('&')
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    (k.to_string(), v.to_string())
                })
                .collect::<Vec<_>>();
            Operator::via_iter(svc, pairs)
        }
        other => return Err(bad(&format!("unknown backend scheme {other:?}"))),
    };
    op.map_err(|e| bad(&e.to_string()))
}
