//! The shell round trip: ordinary tools on a real mount.

mod common;
use common::*;

#[test]
fn shell_tools_round_trip() {
    let m = Mount::new();
    let out = m.sh(r#"
        mkdir -p t1/s1/sub t1/s2
        echo hello > t1/s1/a.txt
        cat t1/s1/a.txt
        head -c 100M /dev/urandom > "$DATA/../big.bin"
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
        "#);
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
    assert_eq!(bv[0]["size_bytes"], 100 << 20);
}

#[test]
fn sed_i_and_python_replace_make_one_version_each() {
    let m = Mount::new();
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

#[test]
fn background_mount_returns_when_ready_and_umount_waits() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let st = std::process::Command::new(BIN)
        .arg("mount")
        .arg(&mnt)
        .arg("--data")
        .arg(tmp.path().join("data"))
        .status()
        .unwrap();
    assert!(st.success());
    assert!(is_mounted(&mnt), "mount returned before the mount was up");
    std::fs::create_dir_all(mnt.join("t/s")).unwrap();
    std::fs::write(mnt.join("t/s/x"), b"1").unwrap();
    let st = std::process::Command::new(BIN)
        .arg("umount")
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(st.success());
    assert!(!is_mounted(&mnt));
    let out = std::process::Command::new(BIN)
        .args(["log", "t/s/x", "--data"])
        .arg(tmp.path().join("data"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("sha256:6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b")
    );
}
