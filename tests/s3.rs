//! The S3 path against a real S3-compatible server: Garage, installed by the test
//! setup (`cargo install garage --locked`, see .ci/run) and started here on
//! 127.0.0.1 with random ports, once for this file, stopped at the end.

mod common;
use common::*;
use std::fs;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Garage {
    dir: tempfile::TempDir,
    child: Option<Child>,
    s3_port: u16,
    key_id: String,
    secret: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn garage_bin() -> PathBuf {
    if let Ok(p) = std::env::var("GARAGE_BIN") {
        return PathBuf::from(p);
    }
    for p in [
        dirs_home().join(".cargo/bin/garage"),
        PathBuf::from("/usr/local/bin/garage"),
    ] {
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("garage")
}

fn dirs_home() -> PathBuf {
    PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
}

impl Garage {
    fn start() -> Garage {
        let dir = tempfile::Builder::new()
            .prefix("garage-")
            .tempdir()
            .unwrap();
        let (rpc, s3, admin) = (free_port(), free_port(), free_port());
        let secret: String = (0..32)
            .map(|i| format!("{:02x}", (i * 37 + 11) as u8))
            .collect();
        let cfg = format!(
            r#"metadata_dir = "{d}/meta"
data_dir = "{d}/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:{s3}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
admin_token = "test-admin-token"
"#,
            d = dir.path().display()
        );
        fs::write(dir.path().join("garage.toml"), cfg).unwrap();
        let mut g = Garage {
            dir,
            child: None,
            s3_port: s3,
            key_id: String::new(),
            secret: String::new(),
        };
        g.run_server();
        let status = g.cli(&["status"]);
        let node = status
            .lines()
            .find_map(|l| {
                let first = l.split_whitespace().next()?;
                (first.len() >= 16 && first.chars().all(|c| c.is_ascii_hexdigit()))
                    .then(|| first.to_string())
            })
            .unwrap_or_else(|| panic!("no node id in garage status:\n{status}"));
        g.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &node]);
        g.cli(&["layout", "apply", "--version", "1"]);
        g.cli(&["bucket", "create", "artifacts"]);
        let key = g.cli(&["key", "create", "artifactfs-test"]);
        let field = |name: &str| {
            key.lines()
                .find(|l| l.trim_start().starts_with(name))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_string())
                .unwrap_or_else(|| panic!("no {name} in:\n{key}"))
        };
        g.key_id = field("Key ID");
        g.secret = field("Secret key");
        g.cli(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            "artifacts",
            "--key",
            "artifactfs-test",
        ]);
        g
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("garage.toml")
    }

    fn run_server(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .unwrap();
        let child = Command::new(garage_bin())
            .arg("-c")
            .arg(self.config())
            .arg("server")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("garage is installed (cargo install garage --locked)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.s3_port)).is_err() {
            assert!(Instant::now() < deadline, "garage did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop_server(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn cli(&self, args: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = Command::new(garage_bin())
                .arg("-c")
                .arg(self.config())
                .args(args)
                .output()
                .unwrap();
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            assert!(
                Instant::now() < deadline,
                "garage {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn url(&self) -> String {
        format!(
            "s3://artifacts/run?endpoint=http://127.0.0.1:{}&region=garage",
            self.s3_port
        )
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        self.stop_server();
    }
}

fn mount_on(g: &Garage) -> Mount {
    let url = g.url();
    Mount::with_args_env(
        &["--backend", &url],
        &[
            ("AWS_ACCESS_KEY_ID", &g.key_id),
            ("AWS_SECRET_ACCESS_KEY", &g.secret),
        ],
    )
}

/// `artifactfs sync`: waits until no version is waiting for upload.
fn sync(m: &Mount, timeout_s: u64) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["sync", "--timeout", &timeout_s.to_string()])
        .arg(&m.mnt)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn wait_completed(m: &Mount, timeout: Duration) {
    let (ok, pending) = sync(m, timeout.as_secs());
    assert!(ok, "versions still pending after {timeout:?}:\n{pending}");
}

/// Remounts with `--upload-attempts 2 --retry-failed RETRY`, writes `rel`
/// while S3 is down until its upload is marked failed, then starts S3 again.
fn fail_one_upload(m: &mut Mount, g: &mut Garage, retry: &str, rel: &str) {
    let url = g.url();
    m.stop();
    m.set_args(&[
        "--backend",
        &url,
        "--upload-attempts",
        "2",
        "--retry-failed",
        retry,
    ]);
    m.start();
    g.stop_server();
    let failed_before = m.log().matches("marked failed").count();
    fs::write(m.p(rel), format!("{rel}, written while S3 is down")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while m.log().matches("marked failed").count() == failed_before {
        assert!(Instant::now() < deadline, "never marked failed");
        std::thread::sleep(Duration::from_millis(50));
    }
    g.run_server();
}

#[test]
fn s3_backend_round_trip_and_outage() {
    let mut g = Garage::start();
    let mut m = mount_on(&g);
    // The shell round trip on S3.
    let out = m.sh(r#"
        mkdir -p t1/s1/sub t1/s2
        echo hello > t1/s1/a.txt
        head -c 20M /dev/urandom > "$DATA/../big.bin"
        cp "$DATA/../big.bin" t1/s1/big.bin
        cmp "$DATA/../big.bin" t1/s1/big.bin
        echo 'needle' > t1/s1/sub/n.txt
        grep -r needle t1
        tar -C t1 -cf - s1 | tar -C t1/s2 -xf -
        mv t1/s1/a.txt t1/s2/moved.txt
        sed -i s/hello/HELLO/ t1/s2/moved.txt
        cat t1/s2/moved.txt
        "#);
    assert!(out.ends_with("HELLO\n"), "{out}");
    wait_completed(&m, Duration::from_secs(60));
    let v = m.versions("t1/s1/big.bin");
    assert!(
        v[0]["uri"]
            .as_str()
            .unwrap()
            .starts_with("s3://artifacts/run/blobs/sha256/"),
        "{v:?}"
    );
    // Reads of uploaded versions that are not in the spool come from S3.
    m.stop();
    fs::remove_dir_all(m.data.join("spool/blobs")).unwrap();
    m.start();
    let big = fs::read(m.tmp.path().join("big.bin")).unwrap();
    assert!(
        fs::read(m.p("t1/s1/big.bin")).unwrap() == big,
        "bytes fetched from S3 differ"
    );
    assert_eq!(
        fs::read_to_string(m.p("t1/s2/moved.txt")).unwrap(),
        "HELLO\n"
    );

    // Outage: the server stops while 8 writers keep writing; no write fails.
    g.stop_server();
    let writers: Vec<_> = (0..8u64)
        .map(|w| {
            let dir = m.p("t1/s2");
            std::thread::spawn(move || {
                for k in 0..25u64 {
                    let data = bytes(w * 100 + k, 10_000 + (k as usize) * 3000);
                    fs::write(dir.join(format!("out-{w}-{k}")), &data)
                        .expect("a write failed during the outage");
                }
            })
        })
        .collect();
    for h in writers {
        h.join().unwrap();
    }
    std::thread::sleep(Duration::from_secs(1));
    let data = m.data.to_string_lossy().to_string();
    let pending = Command::new(BIN)
        .args([
            "query",
            "--all-versions",
            "--status",
            "uploading",
            "--limit",
            "1000",
            "--json",
            "--data",
            &data,
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&pending.stdout).lines().count() >= 200,
        "versions wait in the spool while S3 is down"
    );
    assert!(m.log().contains("upload of"), "retries are logged");
    let st: serde_json::Value = serde_json::from_str(&m.sh("cat .artifactfs/status")).unwrap();
    assert_eq!(st["backend_reachable"], false, "{st}");
    assert!(st["upload_queue"].as_u64().unwrap() >= 200, "{st}");
    assert!(st["oldest_pending_age_s"].as_f64().unwrap() > 0.0, "{st}");
    g.run_server();
    wait_completed(&m, Duration::from_secs(120));
    // verify against S3 is clean: every blob re-hashed in spool and bucket.
    let summary = verify_clean_on(&g, &m);
    assert!(summary["blobs"].as_u64().unwrap() >= 200, "{summary}");
    for w in 0..8u64 {
        for k in 0..25u64 {
            let want = bytes(w * 100 + k, 10_000 + (k as usize) * 3000);
            assert!(fs::read(m.p(&format!("t1/s2/out-{w}-{k}"))).unwrap() == want);
        }
    }
    println!(
        "outage: 200 versions written by 8 writers while S3 was down (0 write errors, \
         {} queued at the peak check), all completed after restart, verify clean over {} \
         blobs, bytes equal, lost 0",
        st["upload_queue"], summary["blobs"]
    );

    // A backend that stays down: after --upload-attempts the version is `failed`,
    // kept in the spool, reported by sync and status, and retried at the next mount.
    let url = g.url();
    m.stop();
    m.set_args(&["--backend", &url, "--upload-attempts", "2"]);
    m.start();
    g.stop_server();
    fs::write(m.p("t1/s2/late.txt"), "written while S3 is down").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !m.log().contains("marked failed") {
        assert!(
            Instant::now() < deadline,
            "never marked failed:\n{}",
            m.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (ok, pending) = sync(&m, 2);
    assert!(
        !ok && pending.contains("failed t1/s2/late.txt@1"),
        "{pending}"
    );
    let st = Command::new(BIN)
        .arg("status")
        .arg(&m.mnt)
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(status["failed"], 1, "{status}");
    assert_eq!(status["mounted"], true);
    assert_eq!(st.status.code(), Some(1));
    assert_eq!(
        fs::read_to_string(m.p("t1/s2/late.txt")).unwrap(),
        "written while S3 is down"
    );
    g.run_server();
    m.remount();
    wait_completed(&m, Duration::from_secs(60));
    assert_eq!(m.versions("t1/s2/late.txt")[0]["status"], "completed");

    // With --retry-failed the running daemon tries failed versions again: no
    // remount needed once the backend is back.
    fail_one_upload(&mut m, &mut g, "2s", "t1/s2/later.txt");
    wait_completed(&m, Duration::from_secs(60));
    assert_eq!(m.versions("t1/s2/later.txt")[0]["status"], "completed");
    assert!(
        m.log().contains("retrying 1 failed upload(s)"),
        "{}",
        m.log()
    );

    // `sync --retry-failed` asks for that round at once (the timer here would
    // not fire for an hour).
    fail_one_upload(&mut m, &mut g, "1h", "t1/s2/latest.txt");
    let out = Command::new(BIN)
        .args(["sync", "--retry-failed", "--timeout", "60"])
        .arg(&m.mnt)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(m.versions("t1/s2/latest.txt")[0]["status"], "completed");
    assert!(
        m.log()
            .contains("retry of failed uploads requested by uid 0")
    );

    // A spool cap: with the backend down, writes beyond it are ENOSPC with a log
    // line; what was closed before stays readable and is uploaded later.
    m.stop();
    m.set_args(&["--backend", &url, "--spool-max", "1M"]);
    m.start();
    g.stop_server();
    let chunk = bytes(77, 300 * 1024);
    let mut written = 0;
    let err = loop {
        match fs::write(m.p(&format!("t1/s2/cap-{written}")), &chunk) {
            Ok(()) => written += 1,
            Err(e) => break e,
        }
        assert!(written < 10, "the cap never applied");
    };
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    assert_eq!(written, 3, "1 MiB holds three 300 KiB files");
    assert!(m.log().contains("spool is full"));
    for i in 0..written {
        assert!(fs::read(m.p(&format!("t1/s2/cap-{i}"))).unwrap() == chunk);
    }
    g.run_server();
    wait_completed(&m, Duration::from_secs(90));
    fs::write(m.p("t1/s2/cap-after"), &chunk).expect("room again once uploaded");
}

/// create, write, close, with close()'s own result (std's drop ignores it).
fn write_and_close(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::fd::IntoRawFd;
    let mut f = fs::File::create(path)?;
    f.write_all(data)?;
    if unsafe { libc::close(f.into_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// `artifactfs verify` of the mount's data against the bucket: exit 0, no problem.
fn verify_clean_on(g: &Garage, m: &Mount) -> serde_json::Value {
    let out = Command::new(BIN)
        .args([
            "verify",
            "--data",
            &m.data.to_string_lossy(),
            "--backend",
            &g.url(),
        ])
        .env("AWS_ACCESS_KEY_ID", &g.key_id)
        .env("AWS_SECRET_ACCESS_KEY", &g.secret)
        .output()
        .unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (out.status.code(), summary["problems"].as_u64()),
        (Some(0), Some(0)),
        "{summary}"
    );
    summary
}

/// Objects in the test bucket, from `garage bucket info`.
fn object_count(g: &Garage) -> u64 {
    let info = g.cli(&["bucket", "info", "artifacts"]);
    info.lines()
        .find_map(|l| {
            let l = l.trim();
            l.strip_prefix("Objects:")
                .and_then(|v| v.split_whitespace().next())
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or_else(|| panic!("no object count in:\n{info}"))
}

#[test]
fn s3_core_shell_suite_and_gc() {
    let g = Garage::start();
    let url = g.url();
    let m = Mount::with_args_env(
        &["--backend", &url, "--retention", "3s", "--gc-interval", "0"],
        &[
            ("AWS_ACCESS_KEY_ID", &g.key_id),
            ("AWS_SECRET_ACCESS_KEY", &g.secret),
        ],
    );
    suite::shell_tools_round_trip(&m, 20);
    // f.txt@1 and g.txt@1 are made after this instant.
    let t_sed = Instant::now();
    suite::sed_i_and_python_replace_make_one_version_each(&m);
    wait_completed(&m, Duration::from_secs(60));
    // GC on S3: f.txt@1 and g.txt@1 expire (their artifacts are live, the
    // current versions stay); their blobs and sidecars leave the bucket.
    if let Some(wait) = Duration::from_millis(3600).checked_sub(t_sed.elapsed()) {
        std::thread::sleep(wait);
    }
    let before = object_count(&g);
    let out = Command::new(BIN)
        .args(["gc", "--json"])
        .arg(&m.mnt)
        .output()
        .unwrap();
    let r: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(0), "{r}");
    let expired = r["expired_versions"].as_u64().unwrap();
    assert!(expired >= 2, "{r}");
    assert_eq!(r["errors"].as_array().unwrap().len(), 0, "{r}");
    let gone = r["blobs_deleted"].as_u64().unwrap() + r["sidecars_deleted"].as_u64().unwrap();
    assert_eq!(r["sidecars_deleted"].as_u64().unwrap(), expired, "{r}");
    assert_eq!(object_count(&g), before - gone, "{r}");
    assert_eq!(m.version_count("t/s/f.txt"), 1);
    assert_eq!(fs::read_to_string(m.p("t/s/f.txt")).unwrap(), "A\nb\n");
    // What is left is whole: verify against the bucket is clean.
    verify_clean_on(&g, &m);
}

#[test]
fn s3_read_cache_stays_under_its_cap_and_reads_fetch_back() {
    let g = Garage::start();
    let url = g.url();
    let m = Mount::with_args_env(
        &["--backend", &url, "--cache-max", "1M"],
        &[
            ("AWS_ACCESS_KEY_ID", &g.key_id),
            ("AWS_SECRET_ACCESS_KEY", &g.secret),
        ],
    );
    fs::create_dir_all(m.p("t/s")).unwrap();
    let files: Vec<Vec<u8>> = (0..8).map(|i| bytes(900 + i, 400 * 1024)).collect();
    for (i, b) in files.iter().enumerate() {
        fs::write(m.p(&format!("t/s/f{i}")), b).unwrap();
    }
    wait_completed(&m, Duration::from_secs(60));
    let spool = || {
        fs::read_dir(m.data.join("spool/blobs"))
            .unwrap()
            .flatten()
            .flat_map(|d| fs::read_dir(d.path()).unwrap().flatten())
            .map(|f| f.metadata().unwrap().len())
            .sum::<u64>()
    };
    let under_cap = || {
        let deadline = Instant::now() + Duration::from_secs(20);
        while spool() > 1 << 20 {
            assert!(
                Instant::now() < deadline,
                "spool stays at {} bytes",
                spool()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    // 3.2 MiB written; the cache keeps at most 1 MiB of it. (The round logs
    // once it has removed its files: wait for the line too.)
    under_cap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !m.log().contains("read cache: evicted") {
        assert!(Instant::now() < deadline, "{}", m.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every file reads back whole: the evicted ones come from S3 again.
    for (i, b) in files.iter().enumerate() {
        assert!(
            fs::read(m.p(&format!("t/s/f{i}"))).unwrap() == *b,
            "f{i} differs"
        );
    }
    // And the cache goes back under its cap after those fetches.
    under_cap();
    verify_clean_on(&g, &m);
}

impl Garage {
    /// A plain S3 client of the bucket (OpenDAL's S3 service), to reach
    /// objects behind the mount's back.
    fn client(&self) -> artifactfs::store::Backend {
        artifactfs::store::Backend::from_url(&format!(
            "opendal://s3?bucket=artifacts&root=/run&region=garage\
             &endpoint=http://127.0.0.1:{}&access_key_id={}&secret_access_key={}",
            self.s3_port, self.key_id, self.secret
        ))
        .unwrap()
    }
}

#[test]
fn s3_ranged_reads_fetch_only_the_chunks_read_and_refuse_a_corrupt_one() {
    use std::io::{Read, Seek, SeekFrom};
    const MIB: u64 = 1 << 20;
    let mut g = Garage::start();
    let url = g.url();
    let mut m = Mount::with_args_env(
        &["--backend", &url, "--cache-max", "8M"],
        &[
            ("AWS_ACCESS_KEY_ID", &g.key_id),
            ("AWS_SECRET_ACCESS_KEY", &g.secret),
        ],
    );
    fs::create_dir_all(m.p("t/s")).unwrap();
    let data = bytes(77, 12 * MIB as usize);
    let sha = sha256_hex(&data);
    fs::write(m.p("t/s/big"), &data).unwrap();
    wait_completed(&m, Duration::from_secs(60));
    // Over the 8 MiB cache: the spool copy goes once it is in S3.
    let spool_copy = m.data.join("spool/blobs").join(&sha[..2]).join(&sha);
    let deadline = Instant::now() + Duration::from_secs(20);
    while spool_copy.exists() {
        assert!(Instant::now() < deadline, "the blob stays in the spool");
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = || -> serde_json::Value {
        serde_json::from_str(&fs::read_to_string(m.p(".artifactfs/status")).unwrap()).unwrap()
    };
    let read_at = |off: u64, n: usize| -> std::io::Result<Vec<u8>> {
        let mut f = fs::File::open(m.p("t/s/big"))?;
        f.seek(SeekFrom::Start(off))?;
        let mut buf = vec![0u8; n];
        f.read_exact(&mut buf)?;
        Ok(buf)
    };

    // 64 KiB from the middle: right bytes, and only a few chunks fetched.
    let at = 9 * MIB + MIB / 2;
    assert!(read_at(at, 65536).unwrap() == data[at as usize..][..65536]);
    let rc = &status()["read_cache"];
    let fetched = rc["fetched_bytes"].as_u64().unwrap();
    eprintln!("a 64 KiB read at 9.5 MiB fetched {fetched} bytes of 12 MiB");
    assert!(
        (65536..=6 * MIB).contains(&fetched),
        "a 64 KiB read fetched {fetched} bytes of a 12 MiB blob"
    );
    assert_eq!(rc["partial_blobs"], 1, "{rc}");
    assert!(!spool_copy.exists(), "the whole blob was not fetched");

    // A byte of chunk 1 goes bad in S3: reading it is EIO, never wrong bytes;
    // the chunks already checked still read.
    let client = g.client();
    let key = artifactfs::store::blob_key(&sha);
    let mut bad = data.clone();
    bad[(MIB + 5) as usize] ^= 0x01;
    client.op.write(&key, bad).unwrap();
    let err = read_at(MIB, 4096).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert!(
        m.log()
            .contains("chunk 1 (bytes 1048576..2097152) does not match its SHA-256"),
        "{}",
        m.log()
    );
    assert!(read_at(at, 4096).unwrap() == data[at as usize..][..4096]);

    client.op.write(&key, data.clone()).unwrap();
    drop(client);

    // S3 down: a chunk not fetched yet is EIO; fetched ones still read.
    g.stop_server();
    let err = read_at(5 * MIB, 4096).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert!(read_at(at, 4096).unwrap() == data[at as usize..][..4096]);
    g.run_server();

    // The good object back: the whole file reads right, and with every chunk
    // checked the blob is an ordinary spool blob again.
    assert!(fs::read(m.p("t/s/big")).unwrap() == data);
    assert_eq!(status()["read_cache"]["partial_blobs"], 0);
    verify_clean_on(&g, &m);

    // The catalog and the spool lost: after `reindex` from the bucket, reads
    // are still ranged (the chunk list beside the blob).
    m.stop();
    for f in ["catalog.db", "catalog.db-wal", "catalog.db-shm"] {
        let _ = fs::remove_file(m.data.join(f));
    }
    fs::remove_dir_all(m.data.join("spool")).unwrap();
    let out = Command::new(BIN)
        .args(["reindex", "--backend", &url, "--data"])
        .arg(&m.data)
        .env("AWS_ACCESS_KEY_ID", &g.key_id)
        .env("AWS_SECRET_ACCESS_KEY", &g.secret)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    m.start();
    let mut f = fs::File::open(m.p("t/s/big")).unwrap();
    f.seek(SeekFrom::Start(5 * MIB)).unwrap();
    let mut buf = vec![0u8; 4096];
    f.read_exact(&mut buf).unwrap();
    assert!(buf == data[(5 * MIB) as usize..][..4096]);
    let st: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(m.p(".artifactfs/status")).unwrap()).unwrap();
    let fetched = st["read_cache"]["fetched_bytes"].as_u64().unwrap();
    assert!(
        fetched <= 6 * MIB,
        "after reindex, 4 KiB fetched {fetched} bytes"
    );
    assert_eq!(st["read_cache"]["partial_blobs"], 1, "{st}");
}

#[test]
fn kill_9_during_16_writers_loses_no_closed_file_and_uploads_resume() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex as StdMutex};
    let mut g = Garage::start();
    let mut m = mount_on(&g);
    fs::create_dir_all(m.p("t/s")).unwrap();
    // S3 is down: every version waits in the spool, so uploads must resume.
    g.stop_server();
    let content = |w: u64, k: u64| {
        bytes(
            w * 10_000 + k,
            2_000 + ((w * 7 + k * 13) % 64) as usize * 1024,
        )
    };
    let closed = Arc::new(StdMutex::new(Vec::<(u64, u64)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..16u64)
        .map(|w| {
            let dir = m.p("t/s");
            let (closed, stop) = (closed.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut k = 0;
                while !stop.load(Ordering::Relaxed) {
                    // Only a close() that returned 0 counts (fs::write ignores
                    // close's errors): then the version is durable.
                    if write_and_close(&dir.join(format!("w{w}-{k}")), &content(w, k)).is_err() {
                        break;
                    }
                    closed.lock().unwrap().push((w, k));
                    k += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(800));
    m.kill9();
    stop.store(true, Ordering::Relaxed);
    for h in writers {
        h.join().unwrap();
    }
    let closed = closed.lock().unwrap().clone();
    assert!(closed.len() > 50, "only {} files closed", closed.len());
    // The restart comes while S3 is still down: the mount goes on (this data
    // directory was used before), says so, and takes new writes into the spool.
    m.start();
    assert!(
        m.log()
            .contains("mounting anyway (this data directory was used before)"),
        "{}",
        m.log()
    );
    fs::write(m.p("t/s/after-restart"), "written while S3 was still down").unwrap();
    g.run_server();
    // Every file whose close() returned is there, whole, as one version.
    for &(w, k) in &closed {
        let rel = format!("t/s/w{w}-{k}");
        assert!(
            fs::read(m.p(&rel)).unwrap() == content(w, k),
            "{rel} differs"
        );
    }
    // No partial version: every version anywhere has the full bytes of its file.
    let data = m.data.to_string_lossy().to_string();
    let out = Command::new(BIN)
        .args([
            "query",
            "--all-versions",
            "--limit",
            "100000",
            "--json",
            "--data",
            &data,
        ])
        .output()
        .unwrap();
    let versions: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for v in versions.iter().filter(|v| v["path"] != "t/s/after-restart") {
        let name = v["path"].as_str().unwrap().trim_start_matches("t/s/w");
        let (w, k) = name.split_once('-').unwrap();
        let want = content(w.parse().unwrap(), k.parse().unwrap());
        assert_eq!(v["version"], 1, "{v}");
        assert_eq!(
            v["checksum"],
            format!("sha256:{}", sha256_hex(&want)),
            "{v}"
        );
    }
    let versions: Vec<_> = versions
        .into_iter()
        .filter(|v| v["path"] != "t/s/after-restart")
        .collect();
    assert!(versions.len() >= closed.len());
    // Uploads resume and finish; the bucket then matches the catalog.
    wait_completed(&m, Duration::from_secs(120));
    verify_clean_on(&g, &m);
    println!(
        "kill -9 during 16 writers: {} files closed before the kill, {} versions after \
         remount ({} written but not acknowledged), lost 0, all completed, verify clean",
        closed.len(),
        versions.len(),
        versions.len() - closed.len()
    );
}

#[test]
fn s3_url_errors_are_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |url: &str, with_keys: bool| {
        let mut c = Command::new(BIN);
        c.args(["mount", "--foreground", "--backend", url, "--data"])
            .arg(tmp.path().join("d"))
            .arg(tmp.path());
        if with_keys {
            c.env("AWS_ACCESS_KEY_ID", "x")
                .env("AWS_SECRET_ACCESS_KEY", "y");
        } else {
            c.env_remove("AWS_ACCESS_KEY_ID")
                .env_remove("AWS_SECRET_ACCESS_KEY");
        }
        let out = c.stdin(Stdio::null()).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(run("s3://bkt?endpoint=http://127.0.0.1:9", false).contains("no credentials"));
    assert!(run("s3://?endpoint=http://127.0.0.1:9", true).contains("need a bucket"));
    assert!(run("s3://bkt?endpint=http://x", true).contains("unknown s3 option"));
    let e = run("s3://bkt/p?endpoint=http://127.0.0.1:9&region=r", true);
    assert!(e.contains("not writable"), "{e}");
    assert!(!e.contains("panicked"), "{e}");
}
