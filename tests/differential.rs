//! Differential test: random sequences of file operations applied through the
//! kernel to a plain directory and to the mount must give the same observable
//! results (contents, listings, errnos).

mod common;
use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

const NAMES: &[&str] = &["a", "b", "d", "d/x", "d/y", "e", "e/z"];

#[derive(Debug, Clone)]
enum Op {
    Write(usize, Vec<u8>),
    WriteAt(usize, u64, Vec<u8>),
    Append(usize, Vec<u8>),
    Truncate(usize, u64),
    Rename(usize, usize),
    Unlink(usize),
    Mkdir(usize),
    Rmdir(usize),
    Read(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let n = 0..NAMES.len();
    let data = proptest::collection::vec(any::<u8>(), 0..48);
    prop_oneof![
        3 => (n.clone(), data.clone()).prop_map(|(i, d)| Op::Write(i, d)),
        2 => (n.clone(), 0..80u64, data.clone()).prop_map(|(i, o, d)| Op::WriteAt(i, o, d)),
        2 => (n.clone(), data).prop_map(|(i, d)| Op::Append(i, d)),
        1 => (n.clone(), 0..80u64).prop_map(|(i, l)| Op::Truncate(i, l)),
        2 => (n.clone(), n.clone()).prop_map(|(a, b)| Op::Rename(a, b)),
        1 => n.clone().prop_map(Op::Unlink),
        2 => n.clone().prop_map(Op::Mkdir),
        1 => n.clone().prop_map(Op::Rmdir),
        2 => n.prop_map(Op::Read),
    ]
}

fn res<T>(r: std::io::Result<T>, ok: impl FnOnce(T) -> String) -> String {
    match r {
        Ok(v) => ok(v),
        Err(e) => format!("errno {}", e.raw_os_error().unwrap_or(-1)),
    }
}

fn apply(root: &Path, op: &Op) -> String {
    let p = |i: usize| root.join(NAMES[i]);
    match op {
        Op::Write(i, d) => res(fs::write(p(*i), d), |_| "ok".into()),
        Op::WriteAt(i, off, d) => res(
            OpenOptions::new()
                .write(true)
                .open(p(*i))
                .and_then(|mut f| {
                    f.seek(SeekFrom::Start(*off))?;
                    f.write_all(d)
                }),
            |_| "ok".into(),
        ),
        Op::Append(i, d) => res(
            OpenOptions::new()
                .append(true)
                .open(p(*i))
                .and_then(|mut f| f.write_all(d)),
            |_| "ok".into(),
        ),
        Op::Truncate(i, l) => res(
            OpenOptions::new()
                .write(true)
                .open(p(*i))
                .and_then(|f| f.set_len(*l)),
            |_| "ok".into(),
        ),
        Op::Rename(a, b) => res(fs::rename(p(*a), p(*b)), |_| "ok".into()),
        Op::Unlink(i) => res(fs::remove_file(p(*i)), |_| "ok".into()),
        Op::Mkdir(i) => res(fs::create_dir(p(*i)), |_| "ok".into()),
        Op::Rmdir(i) => res(fs::remove_dir(p(*i)), |_| "ok".into()),
        Op::Read(i) => res(fs::read(p(*i)), |b| format!("read {}", sha256_hex(&b))),
    }
}

/// Every entry below `root`: path, type, size and content hash of files.
fn snapshot(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let md = fs::symlink_metadata(&path).unwrap();
            if md.is_dir() {
                out.push(format!("{rel}/"));
                stack.push(path);
            } else {
                let b = fs::read(&path).unwrap();
                assert_eq!(
                    b.len() as u64,
                    md.len(),
                    "stat size of {rel} disagrees with its bytes"
                );
                out.push(format!("{rel} {} {}", md.len(), sha256_hex(&b)));
            }
        }
    }
    out.sort();
    out
}

fn reset(root: &Path) {
    if root.exists() {
        fs::remove_dir_all(root).unwrap();
    }
    fs::create_dir_all(root).unwrap();
}

#[test]
fn random_operations_match_a_plain_directory() {
    let m = Mount::new();
    let plain = m.tmp.path().join("plain/t/s");
    let mounted = m.p("t/s");
    let cases: u32 = std::env::var("DIFF_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(48);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&proptest::collection::vec(op(), 1..40), |ops| {
        reset(&plain);
        reset(&mounted);
        for (n, op) in ops.iter().enumerate() {
            let want = apply(&plain, op);
            let got = apply(&mounted, op);
            prop_assert_eq!(&got, &want, "op {} {:?} of {:?}", n, op, ops);
            prop_assert_eq!(
                snapshot(&mounted),
                snapshot(&plain),
                "after op {} {:?} of {:?}",
                n,
                op,
                ops
            );
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}\n--- daemon log ---\n{}", m.log());
    }
}
