//! `artifactfs mount MOUNTPOINT`: serve the artifact tree. Without `--foreground`
//! the command returns once the mount is ready and a daemon keeps serving it (the
//! same program re-executed with `--foreground`, detached into its own session).

use super::CliResult;
use crate::catalog::Durability;
use crate::config::Config;
use crate::fs::{ArtifactFs, Options};
use crate::fuse::{FuseAdapter, KernelInvalidator};
use crate::registry::{self, MountRecord};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where to mount.
    pub mountpoint: PathBuf,
    /// Data directory (catalog, spool, default backend). Default: /var/lib/artifactfs
    /// for root, $XDG_DATA_HOME/artifactfs otherwise.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Backend URL: fs:///path (default: DATA/backend), memory://, opendal://SCHEME?k=v
    #[arg(long)]
    pub backend: Option<String>,
    /// Stay attached (for systemd); log to stderr.
    #[arg(long, short = 'f')]
    pub foreground: bool,
    /// full: fsync before close() returns; process: survive a daemon crash only.
    /// (default: full)
    #[arg(long, value_parser = ["full", "process"])]
    pub durability: Option<String>,
    /// Every request through this mount is this agent (created_by, owner).
    #[arg(long)]
    pub agent: Option<String>,
    /// Run this shell command for every new version, the event JSON on stdin.
    #[arg(long)]
    pub on_commit: Option<String>,
    /// Upload attempts before a version is marked failed (default 12: about three
    /// minutes of backoff); failed versions are retried every --retry-failed
    /// and at the next mount.
    #[arg(long)]
    pub upload_attempts: Option<u32>,
    /// Cap on bytes waiting for upload (K, M, G suffixes): beyond it writes fail
    /// with ENOSPC until the backend catches up.
    #[arg(long, value_parser = parse_size)]
    pub spool_max: Option<u64>,
    /// Read cache: keep the spool's blobs under this size (K, M, G) by dropping
    /// the least recently used ones the backend holds (completed uploads); reads
    /// fetch them again. Default: no cap (for an fs:// backend on the same disk
    /// it frees nothing: the backend copy is a hard link).
    #[arg(long, value_parser = parse_size)]
    pub cache_max: Option<u64>,
    /// How long a new artifact's versions are kept (`30d`, `12h`, `forever`);
    /// the owner changes it per artifact with setfattr. Default: forever.
    #[arg(long)]
    pub retention: Option<String>,
    /// How often the daemon runs `gc` (`1h`, `10m`; `0` never). Default: 1h.
    #[arg(long)]
    pub gc_interval: Option<String>,
    /// How often failed uploads get another round of attempts (`10m`, `30s`;
    /// `0`: only at the next mount). Default: 10m.
    #[arg(long)]
    pub retry_failed: Option<String>,
    /// Request threads (default: 8).
    #[arg(long)]
    pub threads: Option<usize>,
    /// TOML configuration: any of these options, manifest defaults, type rules
    /// and a uid → agent map (see docs/STORAGE_SPEC.md). Flags win over it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Mount options from fstab/mount(8) (for the mount helper): `data=`,
    /// `backend=`, `agent=`, `durability=`, `spool_max=` and `upload_attempts=`
    /// are honoured, the rest ignored.
    #[arg(short = 'o')]
    pub options: Vec<String>,
}

const READY_FD_ENV: &str = "ARTIFACTFS_READY_FD";

/// `512`, `64K`, `10M`, `2G` (powers of 1024).
fn parse_size(s: &str) -> Result<u64, String> {
    let (num, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("{s:?}: expected a size like 512M"))
}

pub fn run(mut a: Args) -> CliResult {
    apply_fstab_options(&mut a);
    let cfg = match &a.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    a.data = a.data.take().or(cfg.data.clone());
    a.backend = a.backend.take().or(cfg.backend.clone());
    a.agent = a.agent.take().or(cfg.agent.clone());
    a.on_commit = a.on_commit.take().or(cfg.on_commit.clone());
    a.threads = a.threads.or(cfg.threads);
    a.upload_attempts = a.upload_attempts.or(cfg.upload_attempts);
    if a.spool_max.is_none() {
        a.spool_max = cfg.spool_max.as_deref().map(parse_size).transpose()?;
    }
    a.durability = a.durability.take().or(cfg.durability.clone());
    a.gc_interval = a.gc_interval.take().or(cfg.gc_interval.clone());
    a.retry_failed = a.retry_failed.take().or(cfg.retry_failed.clone());
    if a.cache_max.is_none() {
        a.cache_max = cfg.cache_max.as_deref().map(parse_size).transpose()?;
    }
    if let Some(r) = &a.retention {
        if !crate::catalog::valid_retention(r) {
            return Err(format!(
                "retention {r:?}: expected forever or a number and s, m, h, d or w"
            )
            .into());
        }
    }
    gc_interval(a.gc_interval.as_deref())?;
    retry_interval(a.retry_failed.as_deref())?;
    if let Some(ag) = &a.agent {
        if !crate::config::valid_agent(ag) {
            return Err(
                format!("agent {ag:?}: no '/', no control characters, 1 to 64 bytes").into(),
            );
        }
    }
    if let Some(d) = &a.durability {
        if d != "full" && d != "process" {
            return Err(format!("durability {d:?}: expected full or process").into());
        }
    }
    let mountpoint = registry::absolute(&a.mountpoint);
    let data = registry::absolute(&a.data.clone().unwrap_or_else(registry::default_data_dir));
    if !a.foreground {
        return spawn_daemon(&a, &mountpoint, &data);
    }
    let ready = std::env::var(READY_FD_ENV)
        .ok()
        .and_then(|s| s.parse::<i32>().ok());
    // SAFETY: the fd was created for us by the parent and is not used elsewhere.
    let ready = ready.map(|fd| std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) }));
    serve(&a, &mountpoint, &data, ready)
}

/// `-o data=/x,backend=…` as `mount.artifactfs` passes them from /etc/fstab.
fn apply_fstab_options(a: &mut Args) {
    for group in a.options.clone() {
        for opt in group.split(',') {
            if let Some(v) = opt.strip_prefix("data=") {
                a.data = Some(PathBuf::from(v));
            } else if let Some(v) = opt.strip_prefix("backend=") {
                a.backend = Some(v.to_string());
            } else if let Some(v) = opt.strip_prefix("spool_max=") {
                a.spool_max = parse_size(v).ok();
            } else if let Some(v) = opt.strip_prefix("upload_attempts=") {
                a.upload_attempts = v.parse().ok();
            } else if let Some(v) = opt.strip_prefix("agent=") {
                a.agent = Some(v.to_string());
            } else if let Some(v) = opt.strip_prefix("durability=") {
                a.durability = Some(v.to_string());
            } else if let Some(v) = opt.strip_prefix("cache_max=") {
                a.cache_max = parse_size(v).ok();
            } else if let Some(v) = opt.strip_prefix("retention=") {
                a.retention = Some(v.to_string());
            } else if let Some(v) = opt.strip_prefix("gc_interval=") {
                a.gc_interval = Some(v.to_string());
            } else if let Some(v) = opt.strip_prefix("retry_failed=") {
                a.retry_failed = Some(v.to_string());
            }
        }
    }
}

fn spawn_daemon(a: &Args, mountpoint: &Path, data: &Path) -> CliResult {
    std::fs::create_dir_all(data)
        .map_err(|e| format!("cannot create data directory {}: {e}", data.display()))?;
    let log_path = data.join("artifactfs.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let mut fds = [0i32; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: pipe2 just returned these two fresh descriptors.
    let (mut rd, wr) = unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            OwnedFd::from_raw_fd(fds[1]),
        )
    };
    let wr_raw = wr.as_raw_fd();
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("mount")
        .arg(mountpoint)
        .arg("--data")
        .arg(data)
        .arg("--foreground");
    if let Some(d) = &a.durability {
        cmd.arg("--durability").arg(d);
    }
    if let Some(t) = a.threads {
        cmd.arg("--threads").arg(t.to_string());
    }
    if let Some(c) = &a.config {
        cmd.arg("--config").arg(registry::absolute(c));
    }
    if let Some(n) = a.upload_attempts {
        cmd.arg("--upload-attempts").arg(n.to_string());
    }
    if let Some(n) = a.spool_max {
        cmd.arg("--spool-max").arg(n.to_string());
    }
    if let Some(b) = &a.backend {
        cmd.arg("--backend").arg(b);
    }
    if let Some(ag) = &a.agent {
        cmd.arg("--agent").arg(ag);
    }
    if let Some(h) = &a.on_commit {
        cmd.arg("--on-commit").arg(h);
    }
    if let Some(r) = &a.retention {
        cmd.arg("--retention").arg(r);
    }
    if let Some(c) = a.cache_max {
        cmd.arg("--cache-max").arg(c.to_string());
    }
    if let Some(g) = &a.gc_interval {
        cmd.arg("--gc-interval").arg(g);
    }
    if let Some(r) = &a.retry_failed {
        cmd.arg("--retry-failed").arg(r);
    }
    cmd.env(READY_FD_ENV, wr_raw.to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            // Keep the readiness pipe open across exec.
            let flags = libc::fcntl(wr_raw, libc::F_GETFD);
            libc::fcntl(wr_raw, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    drop(wr);
    let mut msg = String::new();
    rd.read_to_string(&mut msg)?;
    if msg.starts_with("ready") {
        return Ok(0);
    }
    let _ = child.wait();
    let why = msg
        .strip_prefix("error: ")
        .unwrap_or(&msg)
        .trim()
        .to_string();
    if why.is_empty() {
        Err(format!(
            "the daemon exited before the mount was ready; see {}",
            log_path.display()
        )
        .into())
    } else {
        Err(why.into())
    }
}

fn serve(a: &Args, mountpoint: &Path, data: &Path, mut ready: Option<std::fs::File>) -> CliResult {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    let fail = |ready: &mut Option<std::fs::File>, msg: String| -> CliResult {
        if let Some(r) = ready.as_mut() {
            let _ = write!(r, "error: {msg}");
        }
        log::error!("{msg}");
        Err(msg.into())
    };
    // Signals are taken by one thread with sigwait; block them before any thread starts.
    let sigs = block_signals();
    if let Err(msg) = prepare_mountpoint(mountpoint) {
        return fail(&mut ready, msg);
    }
    let mut opts = Options::new(data);
    if let Some(b) = &a.backend {
        opts.backend_url = b.clone();
    }
    opts.agent = a.agent.clone();
    opts.on_commit = a.on_commit.clone();
    if let Some(n) = a.upload_attempts {
        opts.upload_attempts = n.max(1);
    }
    opts.spool_max = a.spool_max;
    if let Some(p) = &a.config {
        let cfg = match Config::load(p) {
            Ok(c) => c,
            Err(e) => return fail(&mut ready, e),
        };
        opts.uid_agents = cfg.uid_agents()?;
        opts.type_rules = cfg.type_matchers()?;
        opts.scratch = cfg.scratch_globs()?;
        let d = cfg.defaults;
        opts.defaults.artifact_type = d.artifact_type.unwrap_or(opts.defaults.artifact_type);
        opts.defaults.visibility = d.visibility.unwrap_or(opts.defaults.visibility);
        opts.defaults.retention = d.retention.unwrap_or(opts.defaults.retention);
    }
    if let Some(r) = &a.retention {
        opts.defaults.retention = r.clone();
    }
    opts.durability = if a.durability.as_deref() == Some("process") {
        Durability::Process
    } else {
        Durability::Full
    };
    let fs = match ArtifactFs::start(&opts) {
        Ok(fs) => fs,
        Err(e) => return fail(&mut ready, e),
    };
    let root = unsafe { libc::geteuid() } == 0;
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName(format!("artifactfs:{}", data.display())),
        fuser::MountOption::Subtype("artifactfs".into()),
        // No default_permissions: the daemon decides (owner, visibility, trace
        // participants; see fs::access), and the kernel asks it.
        fuser::MountOption::NoAtime,
    ];
    if root {
        config.acl = fuser::SessionACL::All;
    }
    config.n_threads = Some(a.threads.unwrap_or(8).max(1));
    config.clone_fd = true;
    let session = match fuser::Session::new(FuseAdapter::new(fs.clone()), mountpoint, &config) {
        Ok(s) => s,
        Err(e) => {
            return fail(
                &mut ready,
                format!("cannot mount {}: {e}", mountpoint.display()),
            );
        }
    };
    fs.set_invalidator(Box::new(KernelInvalidator(session.notifier())));
    let bg = session.spawn()?;
    let socket = registry::socket_for(mountpoint);
    let control = match std::fs::create_dir_all(registry::dir())
        .and_then(|()| crate::control::serve(fs.clone(), &socket, data))
    {
        Ok(()) => Some(socket.clone()),
        Err(e) => {
            log::warn!("no control socket at {}: {e}", socket.display());
            None
        }
    };
    if let Some(every) = gc_interval(a.gc_interval.as_deref())? {
        fs.start_gc_timer(every);
    }
    if let Some(cap) = a.cache_max {
        fs.start_cache_evictor(cap, Duration::from_secs(1));
    }
    if let Some(every) = retry_interval(a.retry_failed.as_deref())? {
        fs.start_retry_timer(every);
    }
    let rec = MountRecord {
        mountpoint: mountpoint.to_path_buf(),
        data_dir: data.to_path_buf(),
        pid: std::process::id(),
        control,
    };
    if let Err(e) = registry::write(&rec) {
        log::warn!(
            "cannot record the mount in {}: {e}",
            registry::dir().display()
        );
    }
    log::info!(
        "mounted {} (data {}, backend {})",
        mountpoint.display(),
        data.display(),
        fs.backend_url()
    );
    if let Some(mut r) = ready.take() {
        let _ = r.write_all(b"ready");
    }
    let mp = mountpoint.to_path_buf();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            // Every signal is an unmount attempt: a busy mount can be retried.
            loop {
                let mut sig = 0;
                unsafe { libc::sigwait(&sigs, &mut sig) };
                log::info!("signal {sig}: unmounting {}", mp.display());
                match unmount(&mp) {
                    Ok(()) => break,
                    Err(e) => log::error!("unmount of {} failed: {e}", mp.display()),
                }
            }
        })?;
    bg.join()?;
    log::info!("unmounted {}; waiting for uploads", mountpoint.display());
    if !fs.drain_uploads(Duration::from_secs(60)) {
        log::warn!(
            "{} upload(s) still pending; they resume at the next mount",
            fs.pending_uploads()
        );
    }
    fs.shutdown();
    registry::remove(mountpoint, std::process::id());
    let _ = std::fs::remove_file(&socket);
    Ok(0)
}

/// `--gc-interval` and `--retry-failed`: `None` for "never" (`0`), else the
/// period (`default` when not given).
fn period(what: &str, s: Option<&str>, default: Duration) -> Result<Option<Duration>, String> {
    match s {
        None => Ok(Some(default)),
        Some("0") => Ok(None),
        Some(s) => humantime::parse_duration(s)
            .map(Some)
            .map_err(|_| format!("{what} {s:?}: expected a duration like 10m, or 0")),
    }
}

fn gc_interval(s: Option<&str>) -> Result<Option<Duration>, String> {
    period("gc interval", s, Duration::from_secs(3600))
}

fn retry_interval(s: Option<&str>) -> Result<Option<Duration>, String> {
    period("retry interval", s, Duration::from_secs(600))
}

fn block_signals() -> libc::sigset_t {
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// A mountpoint left by a crashed daemon answers ENOTCONN (statfs is never
/// cached by the kernel, unlike stat); detach it so the new mount can go on
/// top, or say exactly what to run. A live mount there is refused.
fn prepare_mountpoint(mp: &Path) -> Result<(), String> {
    if is_mountpoint(mp) {
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statfs(cpath(mp).as_ptr(), &mut st) };
        let err = std::io::Error::last_os_error();
        if rc == 0 {
            return Err(format!(
                "{} is already a mountpoint (umount it first)",
                mp.display()
            ));
        }
        if err.raw_os_error() == Some(libc::ENOTCONN) {
            log::warn!(
                "{} is a dead FUSE mount (daemon crashed?): detaching it",
                mp.display()
            );
            if lazy_unmount(mp).is_err() || is_mountpoint(mp) {
                return Err(format!(
                    "{} is a dead FUSE mount and could not be detached; run: fusermount3 -uz {}",
                    mp.display(),
                    mp.display()
                ));
            }
        }
    }
    match std::fs::metadata(mp) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!("{} is not a directory", mp.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "mountpoint {} does not exist (mkdir -p it first)",
            mp.display()
        )),
        Err(e) => Err(format!("cannot use mountpoint {}: {e}", mp.display())),
    }
}

/// True when `/proc/self/mountinfo` lists `mp` as a mountpoint.
pub fn is_mountpoint(mp: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = mp.to_string_lossy();
    // Field 5 is the mountpoint, with spaces and friends octal-escaped.
    let want = want
        .replace(' ', "\\040")
        .replace('\t', "\\011")
        .replace('\n', "\\012");
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

fn cpath(p: &Path) -> std::ffi::CString {
    std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap_or_default()
}

fn lazy_unmount(mp: &Path) -> std::io::Result<()> {
    if unsafe { libc::geteuid() } == 0
        && unsafe { libc::umount2(cpath(mp).as_ptr(), libc::MNT_DETACH) } == 0
    {
        return Ok(());
    }
    let st = Command::new("fusermount3").arg("-uz").arg(mp).status()?;
    if st.success() {
        Ok(())
    } else {
        Err(std::io::Error::other("fusermount3 -uz failed"))
    }
}

/// Unmounts `mp` (root: umount(2); others: fusermount3 -u).
pub fn unmount(mp: &Path) -> std::io::Result<()> {
    if unsafe { libc::geteuid() } == 0 {
        if unsafe { libc::umount2(cpath(mp).as_ptr(), 0) } == 0 {
            return Ok(());
        }
        return Err(std::io::Error::last_os_error());
    }
    let out = Command::new("fusermount3").arg("-u").arg(mp).output()?;
    let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
    match out.status.success() {
        true => Ok(()),
        // fusermount3 only prints its reason; keep EBUSY recognisable for retries.
        false if msg.contains("busy") => Err(std::io::Error::from_raw_os_error(libc::EBUSY)),
        false => Err(std::io::Error::other(msg)),
    }
}
