//! Who is asking: Unix user names for uids (the manifest's `created_by`).

use parking_lot::Mutex;
use std::collections::HashMap;
use std::ffi::CStr;
use std::sync::OnceLock;

/// The user name of `uid`, or the number as text when the user database has no entry
/// (containers often run uids that `/etc/passwd` does not know). Cached: `getpwuid_r`
/// may read files and must stay off the hot path.
pub fn user_name(uid: u32) -> String {
    static CACHE: OnceLock<Mutex<HashMap<u32, String>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(name) = cache.lock().get(&uid) {
        return name.clone();
    }
    let name = lookup(uid).unwrap_or_else(|| uid.to_string());
    cache.lock().insert(uid, name.clone());
    name
}

fn lookup(uid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() {
        return None;
    }
    let name = unsafe { CStr::from_ptr(pwd.pw_name) };
    Some(name.to_string_lossy().into_owned())
}
