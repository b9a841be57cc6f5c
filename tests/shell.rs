//! The shell round trip: ordinary tools on a real mount.

mod common;
use common::*;

#[test]
fn shell_tools_round_trip() {
    suite::shell_tools_round_trip(&Mount::new(), 100);
}

#[test]
fn sed_i_and_python_replace_make_one_version_each() {
    suite::sed_i_and_python_replace_make_one_version_each(&Mount::new());
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
