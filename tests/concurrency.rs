//! Concurrent writers: every close is a version whose bytes are what that writer
//! wrote; nothing is lost.

mod common;
use common::*;
use std::collections::HashSet;
use std::fs;
use std::io::Write;

#[test]
fn sixteen_writers_of_one_path_each_make_a_version() {
    let m = Mount::new();
    fs::create_dir_all(m.p("t/s")).unwrap();
    let path = m.p("t/s/shared.bin");
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(16));
    let handles: Vec<_> = (0..16u64)
        .map(|i| {
            let path = path.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let data = bytes(i + 100, 64 * 1024 + i as usize * 1000);
                let mut f = fs::File::create(&path).unwrap();
                barrier.wait();
                for chunk in data.chunks(4096) {
                    f.write_all(chunk).unwrap();
                }
                drop(f);
                sha256_hex(&data)
            })
        })
        .collect();
    let written: HashSet<String> = handles
        .into_iter()
        .map(|h| format!("sha256:{}", h.join().unwrap()))
        .collect();
    let v = m.versions("t/s/shared.bin");
    let committed: HashSet<String> = v
        .iter()
        .map(|v| v["checksum"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(v.len(), 16, "one version per close");
    assert_eq!(committed, written, "every writer's bytes are a version");
    let numbers: Vec<u64> = v.iter().map(|v| v["version"].as_u64().unwrap()).collect();
    assert_eq!(numbers, (1..=16).collect::<Vec<_>>());
    // Each version's bytes, read back through .versions, hash to what was recorded.
    for ver in &v {
        let n = ver["version"].as_u64().unwrap();
        let b = fs::read(m.p(&format!("t/s/.versions/shared.bin/{n}"))).unwrap();
        assert_eq!(format!("sha256:{}", sha256_hex(&b)), ver["checksum"]);
    }
    // The current content is the last version committed.
    let cur = fs::read(&path).unwrap();
    assert_eq!(format!("sha256:{}", sha256_hex(&cur)), v[15]["checksum"]);
}

#[test]
fn sixteen_writers_of_distinct_paths_lose_nothing() {
    let m = Mount::new();
    fs::create_dir_all(m.p("t/s")).unwrap();
    let handles: Vec<_> = (0..16u64)
        .map(|i| {
            let dir = m.p("t/s");
            std::thread::spawn(move || {
                for j in 0..20u64 {
                    let data = bytes(i * 1000 + j, 1000 + (j as usize * 7919) % 50_000);
                    fs::write(dir.join(format!("w{i}-{j}")), &data).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    for i in 0..16u64 {
        for j in 0..20u64 {
            let want = bytes(i * 1000 + j, 1000 + (j as usize * 7919) % 50_000);
            let got = fs::read(m.p(&format!("t/s/w{i}-{j}"))).unwrap();
            assert!(got == want, "w{i}-{j} differs");
        }
    }
    assert_eq!(fs::read_dir(m.p("t/s")).unwrap().count(), 320);
    assert_eq!(m.version_count("t/s/w7-19"), 1);
    // Group commit: concurrent closes shared catalog fsyncs.
    let status: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(m.p(".artifactfs/status")).unwrap()).unwrap();
    let g = &status["group_commit"];
    let (versions, syncs) = (
        g["versions"].as_u64().unwrap(),
        g["catalog_syncs"].as_u64().unwrap(),
    );
    println!("{versions} versions, {syncs} catalog fsyncs");
    assert_eq!(versions, 320, "{status}");
    assert!(syncs < versions, "no commit shared an fsync: {status}");
}
