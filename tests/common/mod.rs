//! Test harness: every test mounts its own data directory on its own tempdir with
//! the real binary and the real kernel, and unmounts it, also when it fails.
#![allow(dead_code)]

pub mod suite;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_artifactfs");

pub struct Mount {
    pub tmp: tempfile::TempDir,
    pub mnt: PathBuf,
    pub data: PathBuf,
    child: Option<Child>,
    extra: Vec<String>,
    envs: Vec<(String, String)>,
}

pub fn is_mounted(mnt: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = mnt.to_string_lossy().to_string();
    mounts
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

/// A live mount: stat works (a dead FUSE mount answers ENOTCONN) and the
/// directory is on another device than its parent.
pub fn is_live_mount(mnt: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (
        std::fs::metadata(mnt),
        std::fs::metadata(mnt.parent().unwrap()),
    ) {
        (Ok(m), Ok(p)) => m.dev() != p.dev(),
        _ => false,
    }
}

impl Mount {
    pub fn new() -> Mount {
        Mount::with_args(&[])
    }

    /// Like `with_args`, with environment variables for the daemon only (never
    /// `set_var` in a multi-threaded test process).
    pub fn with_args_env(extra: &[&str], envs: &[(&str, &str)]) -> Mount {
        let mut m = Mount::unstarted(extra);
        m.envs = envs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        m.start();
        m
    }

    pub fn with_args(extra: &[&str]) -> Mount {
        let mut m = Mount::unstarted(extra);
        m.start();
        m
    }

    fn unstarted(extra: &[&str]) -> Mount {
        let tmp = tempfile::Builder::new()
            .prefix("afs-test-")
            .tempdir()
            .unwrap();
        let mnt = tmp.path().join("mnt");
        let data = tmp.path().join("data");
        std::fs::create_dir_all(&mnt).unwrap();
        Mount {
            tmp,
            mnt,
            data,
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            envs: Vec::new(),
        }
    }

    pub fn set_args(&mut self, extra: &[&str]) {
        self.extra = extra.iter().map(|s| s.to_string()).collect();
    }

    /// Starts the daemon in the foreground (as systemd would) and waits for the mount.
    pub fn start(&mut self) {
        assert!(self.child.is_none());
        let mounted_before = self.log().matches(" mounted ").count();
        std::fs::create_dir_all(&self.data).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.join("test.log"))
            .unwrap();
        let child = Command::new(BIN)
            .arg("mount")
            .arg(&self.mnt)
            .arg("--data")
            .arg(&self.data)
            .arg("--foreground")
            .args(&self.extra)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start daemon");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.log().matches(" mounted ").count() == mounted_before || !is_live_mount(&self.mnt)
        {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("daemon exited ({st}) before mounting:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "mount did not come up:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.join("test.log")).unwrap_or_default()
    }

    /// `artifactfs umount`, then waits for the daemon to exit cleanly.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let out = Command::new(BIN)
            .arg("umount")
            .arg(&self.mnt)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "umount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let st = child.wait().unwrap();
        assert!(st.success(), "daemon exited with {st}:\n{}", self.log());
        assert!(!is_mounted(&self.mnt));
    }

    /// Kills the daemon with SIGKILL, leaving a dead mountpoint behind.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    pub fn remount(&mut self) {
        self.stop();
        self.start();
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// Runs a bash script in the mountpoint; panics with its output if it fails.
    pub fn sh(&self, script: &str) -> String {
        let out = self.sh_out(script);
        assert!(
            out.status.success(),
            "script failed ({}):\n{script}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn sh_out(&self, script: &str) -> Output {
        Command::new("bash")
            .arg("-euo")
            .arg("pipefail")
            .arg("-c")
            .arg(script)
            .current_dir(&self.mnt)
            .env("DATA", &self.data)
            .output()
            .unwrap()
    }

    /// The versions of the artifact at `rel`, from `artifactfs log --json`.
    pub fn versions(&self, rel: &str) -> Vec<serde_json::Value> {
        let out = Command::new(BIN)
            .args(["log", "--json"])
            .arg(self.p(rel))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "log failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Waits until `rel` has `n` versions: a file closed without any write
    /// commits at RELEASE, which the kernel sends after `close()` returned.
    pub fn wait_versions(&self, rel: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = Command::new(BIN)
                .args(["log", "--json"])
                .arg(self.p(rel))
                .output()
                .unwrap();
            let have = String::from_utf8_lossy(&out.stdout).lines().count();
            if out.status.success() && have == n {
                return;
            }
            assert!(have <= n, "{rel} has {have} versions, want {n}");
            assert!(
                Instant::now() < deadline,
                "{rel} never reached {n} versions (has {have})"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn version_count(&self, rel: &str) -> usize {
        self.versions(rel).len()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new(BIN).arg("umount").arg(&self.mnt).output();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if is_mounted(&self.mnt) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).output();
        }
    }
}

/// The `path` of each JSON line (`query --json`, `log --json`), sorted.
pub fn json_paths(out: &str) -> Vec<String> {
    let mut paths: Vec<String> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["path"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    paths.sort();
    paths
}

pub fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Runs `artifactfs ARGS`, asserts it exited 0 (its stderr in the message), and
/// returns its stdout.
pub fn afs_ok(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "artifactfs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
