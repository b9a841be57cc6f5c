//! Scenarios run on more than one backend (`tests/shell.rs` on the default fs
//! backend, `tests/s3.rs` on a real S3 server).

use super::*;

/// The shell round trip: mkdir, echo, cat, cp of a big file, cmp, ls -l, grep -r,
/// find, tar, mv; the move keeps the artifact; cp makes one version.
pub fn shell_tools_round_trip(m: &Mount, big_mib: usize) {
    let out = m.sh(&r#"
        mkdir -p t1/s1/sub t1/s2
        echo hello > t1/s1/a.txt
        cat t1/s1/a.txt
        head -c BIGM /dev/urandom > "$DATA/../big.bin"
        cp "$DATA/../big.bin" t1/s1/big.bin
        cmp "$DATA/../big.bin" t1/s1/big.bin
        echo 'needle in sub' > t1/s1/sub/n.txt
        ls -l t1/s1 | grep -c big.bin
        grep -r needle t1
        find t1 -type f | sort
        tar -C t1 -cf - s1/a.txt s1/sub | tar -C t1/s2 -xf -
        cat t1/s2/s1/sub/n.txt
        mv t1/s1/a.txt t1/s2/moved.txt
        test ! -e t1/s1/a.txt
        cat t1/s2/moved.txt
        "#
    .replace("BIG", &big_mib.to_string()));
    assert!(out.contains("hello\n"), "{out}");
    assert!(out.contains("t1/s1/sub/n.txt:needle in sub"), "{out}");
    assert!(out.contains("t1/s1/big.bin\nt1/s1/sub/n.txt"), "{out}");
    assert!(out.ends_with("needle in sub\nhello\n"), "{out}");
    // The move kept the artifact: same id, its history now under the new path.
    let v = m.versions("t1/s2/moved.txt");
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["path"], "t1/s1/a.txt");
    let big = std::fs::read(m.tmp.path().join("big.bin")).unwrap();
    let bv = m.versions("t1/s1/big.bin");
    assert_eq!(bv.len(), 1, "cp makes exactly one version");
    assert_eq!(bv[0]["checksum"], format!("sha256:{}", sha256_hex(&big)));
    assert_eq!(bv[0]["size_bytes"], (big_mib as u64) << 20);
}

/// `sed -i` and Python's tempfile + os.replace each make exactly one version.
pub fn sed_i_and_python_replace_make_one_version_each(m: &Mount) {
    m.sh("mkdir -p t/s && printf 'a\\nb\\n' > t/s/f.txt && printf 'x' > t/s/g.txt");
    assert_eq!(m.version_count("t/s/f.txt"), 1);
    m.sh("sed -i s/a/A/ t/s/f.txt");
    assert_eq!(std::fs::read_to_string(m.p("t/s/f.txt")).unwrap(), "A\nb\n");
    let v = m.versions("t/s/f.txt");
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(
        v[1]["supersedes"],
        format!("{}@1", v[0]["id"].as_str().unwrap())
    );
    m.sh(r#"python3 - <<'PY'
import os, tempfile
fd, tmp = tempfile.mkstemp(dir="t/s")
with os.fdopen(fd, "w") as f:
    f.write("atomic")
os.replace(tmp, "t/s/g.txt")
PY"#);
    assert_eq!(std::fs::read_to_string(m.p("t/s/g.txt")).unwrap(), "atomic");
    assert_eq!(m.version_count("t/s/g.txt"), 2);
    let names = m.sh("ls -a t/s");
    assert_eq!(
        names, ".\n..\nf.txt\ng.txt\n",
        "no temp files left, no .versions listed"
    );
}
