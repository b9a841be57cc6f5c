//! The daemon's control socket (`/run/artifactfs/<key>.sock`, recorded in the
//! mount registry). The kernel tells us who connected (SO_PEERCRED), so the
//! daemon can serve requests it must decide on itself:
//!
//! - `gc`: runs in the daemon, where commits happen, so a GC pass and a commit of
//!   the same bytes cannot race (see `fs::gc`). Root (or the daemon's user) only.
//! - `cli`: a read-only catalog command (`log`, `show`, `query`, `events`) for a
//!   user who cannot read the catalog (the data directory is the daemon's
//!   alone). The daemon runs it as itself with `ARTIFACTFS_AS_AGENT` set to the
//!   caller's identity, so the command shows only what that agent may see.
//!
//! Protocol: the client sends one JSON line; the daemon answers with JSON lines
//! `{"out": text}`, `{"err": text}`, `{"report": {...}}` and finally `{"exit": n}`.

use crate::fs::ArtifactFs;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

/// Set by the daemon for `cli` requests: the agent the command answers for.
pub const AS_AGENT_ENV: &str = "ARTIFACTFS_AS_AGENT";
/// Catalog commands other users may run through the daemon.
const RELAYED: &[&str] = &["log", "show", "query", "events"];

/// Listens on `path` for as long as the process lives.
pub fn serve(fs: Arc<ArtifactFs>, path: &Path, data: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    // Anyone may connect; each request is checked against the peer's uid.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    let data = data.to_path_buf();
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                let fs = fs.clone();
                let data = data.clone();
                let _ = std::thread::Builder::new()
                    .name("control-conn".into())
                    .spawn(move || {
                        if let Err(e) = handle(&fs, &data, conn) {
                            log::debug!("control connection: {e}");
                        }
                    });
            }
        })?;
    Ok(())
}

fn peer_uid(s: &UnixStream) -> std::io::Result<u32> {
    use std::os::fd::AsRawFd;
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cred.uid)
}

fn send(w: &mut impl Write, v: Value) -> std::io::Result<()> {
    writeln!(w, "{v}")?;
    w.flush()
}

fn handle(fs: &ArtifactFs, data: &Path, conn: UnixStream) -> std::io::Result<()> {
    let uid = peer_uid(&conn)?;
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line)?;
    let mut out = &conn;
    let req: Value = match serde_json::from_str(&line) {
        Ok(v) => v,
        Err(e) => {
            send(&mut out, json!({"err": format!("bad request: {e}\n")}))?;
            return send(&mut out, json!({"exit": 2}));
        }
    };
    let me = unsafe { libc::geteuid() };
    match req["cmd"].as_str() {
        Some("gc") => {
            if uid != 0 && uid != me {
                send(
                    &mut out,
                    json!({"err": "gc: only root may collect garbage\n"}),
                )?;
                return send(&mut out, json!({"exit": 1}));
            }
            let dry = req["dry_run"].as_bool().unwrap_or(false);
            log::info!("gc requested by uid {uid} (dry run: {dry})");
            match fs.gc(dry, &|_, _, _| {}) {
                Ok(r) => {
                    let failed = !r.errors.is_empty();
                    send(&mut out, json!({"report": r}))?;
                    send(&mut out, json!({"exit": i32::from(failed)}))
                }
                Err(e) => {
                    send(&mut out, json!({"err": format!("gc: {e}\n")}))?;
                    send(&mut out, json!({"exit": 1}))
                }
            }
        }
        // Harmless for anyone: another round of attempts for failed uploads.
        Some("retry") => {
            log::info!("retry of failed uploads requested by uid {uid}");
            match fs.retry_failed() {
                Ok(n) => {
                    send(&mut out, json!({"report": {"retried": n}}))?;
                    send(&mut out, json!({"exit": 0}))
                }
                Err(e) => {
                    send(&mut out, json!({"err": format!("retry: {e}\n")}))?;
                    send(&mut out, json!({"exit": 1}))
                }
            }
        }
        Some("cli") => {
            let args: Vec<String> = req["args"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            // The command runs as the daemon's user: it reads this daemon's catalog
            // and no other, whatever `--data` the client gave.
            let mut args = without_data(args);
            args.push("--data".into());
            args.push(data.to_string_lossy().into_owned());
            if !args.first().is_some_and(|c| RELAYED.contains(&c.as_str())) {
                send(
                    &mut out,
                    json!({"err": "only log, show, query and events\n"}),
                )?;
                return send(&mut out, json!({"exit": 2}));
            }
            let caller = fs.caller_of(uid);
            let mut cmd = Command::new(std::env::current_exe()?);
            cmd.args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            if !caller.superuser {
                cmd.env(AS_AGENT_ENV, caller.agent());
            }
            if let Some(cwd) = req["cwd"].as_str().filter(|c| Path::new(c).is_dir()) {
                cmd.current_dir(cwd);
            }
            let mut child = cmd.spawn()?;
            let stdout = child.stdout.take().expect("piped");
            let stderr = child.stderr.take().expect("piped");
            let shared = Arc::new(parking_lot::Mutex::new(conn.try_clone()?));
            let s2 = shared.clone();
            let errs = std::thread::spawn(move || {
                for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let _ = send(&mut *s2.lock(), json!({"err": format!("{l}\n")}));
                }
            });
            for l in BufReader::new(stdout).lines() {
                let Ok(l) = l else { break };
                if send(&mut *shared.lock(), json!({"out": format!("{l}\n")})).is_err() {
                    // The client went away (`| head`, Ctrl-C): stop the command.
                    let _ = child.kill();
                    break;
                }
            }
            let _ = errs.join();
            let code = child.wait()?.code().unwrap_or(1);
            send(&mut *shared.lock(), json!({"exit": code}))
        }
        _ => {
            send(&mut out, json!({"err": "unknown request\n"}))?;
            send(&mut out, json!({"exit": 2}))
        }
    }
}

/// `args` without any `--data DIR` / `--data=DIR`.
fn without_data(args: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        if a == "--data" {
            it.next();
        } else if !a.starts_with("--data=") {
            out.push(a);
        }
    }
    out
}

/// Sends `req` to the daemon at `socket` and prints what it answers. `on_report`
/// gets a `report` frame. Returns the command's exit code.
pub fn request(
    socket: &Path,
    req: Value,
    mut on_report: impl FnMut(Value) -> std::io::Result<()>,
) -> Result<i32, Box<dyn std::error::Error>> {
    let mut conn = UnixStream::connect(socket)
        .map_err(|e| format!("cannot reach the daemon at {}: {e}", socket.display()))?;
    send(&mut conn, req)?;
    let stdout = std::io::stdout();
    for line in BufReader::new(&conn).lines() {
        let v: Value = serde_json::from_str(&line?)?;
        if let Some(t) = v["out"].as_str() {
            let mut o = stdout.lock();
            o.write_all(t.as_bytes())?;
            o.flush()?;
        } else if let Some(t) = v["err"].as_str() {
            eprint!("{t}");
        } else if v.get("report").is_some() {
            on_report(v["report"].clone())?;
        } else if let Some(c) = v["exit"].as_i64() {
            return Ok(c as i32);
        }
    }
    Err("the daemon closed the connection without an answer".into())
}

/// For `log`, `show`, `query`, `events` run by a user who cannot read the
/// catalog: the live daemon of that data directory runs it for them. `None`
/// when the command can read the catalog itself (or no daemon can help).
pub fn relay_if_needed(
    data: &Path,
    args: &[String],
) -> Option<Result<i32, Box<dyn std::error::Error>>> {
    let db = data.join("catalog.db");
    match std::fs::File::open(&db) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {}
        _ => return None,
    }
    let rec = crate::registry::all()
        .into_iter()
        .find(|r| r.data_dir == data && Path::new(&format!("/proc/{}", r.pid)).exists())?;
    let socket: PathBuf = rec.control?;
    let cwd = std::env::current_dir().ok();
    Some(request(
        &socket,
        json!({"cmd": "cli", "args": args, "cwd": cwd}),
        |_| Ok(()),
    ))
}
