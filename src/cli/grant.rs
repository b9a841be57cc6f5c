//! `artifactfs grant TRACE AGENT…` and `revoke`: edit a trace's participant list.
//! They go through the mount (the `user.trace.participants` attribute of the trace
//! directory), so the daemon applies its rule as for `setfattr`: only the trace's
//! owner may change it, and the one running the command is who asks.

use super::CliResult;
use crate::fs::access::{format_participants, parse_participants};
use crate::fs::xattr::PARTICIPANTS;
use std::collections::BTreeSet;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The trace directory in a mount (`/artifacts/<trace>`).
    pub trace: PathBuf,
    /// Agents to add (grant) or remove (revoke).
    #[arg(required = true)]
    pub agents: Vec<String>,
}

pub fn grant(a: Args) -> CliResult {
    edit(a, true)
}

pub fn revoke(a: Args) -> CliResult {
    edit(a, false)
}

fn edit(a: Args, add: bool) -> CliResult {
    let path = CString::new(a.trace.as_os_str().as_bytes())?;
    let name = CString::new(PARTICIPANTS)?;
    let current = get(&path, &name)?;
    let mut list: BTreeSet<String> = parse_participants(&current)?.unwrap_or_default();
    for agent in &a.agents {
        if add {
            list.insert(agent.clone());
        } else {
            list.remove(agent);
        }
    }
    if list.is_empty() {
        // An empty list means "open to every agent": revoking the last name
        // must not do that by surprise.
        return Err(format!(
            "{}: that would leave no participants, which opens the trace to every agent; \
             to do that, run `setfattr -x {PARTICIPANTS} {}`",
            a.trace.display(),
            a.trace.display()
        )
        .into());
    }
    let value = format_participants(&Some(list.clone()));
    let rc = {
        unsafe {
            libc::setxattr(
                path.as_ptr(),
                name.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        }
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!("{}: {e}", a.trace.display()).into());
    }
    println!("{}: participants {value}", a.trace.display());
    Ok(0)
}

/// The list as it is now ("" when the trace has none).
fn get(path: &CString, name: &CString) -> Result<String, Box<dyn std::error::Error>> {
    let mut buf = vec![0u8; 64 * 1024];
    let n = unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENODATA) {
            return Ok(String::new());
        }
        return Err(format!("{}: {e}", path.to_string_lossy()).into());
    }
    buf.truncate(n as usize);
    Ok(String::from_utf8(buf)?)
}
