//! Open files. A read handle pins one immutable version (its blob). A write handle
//! owns a private staging file, created on the first write (copy-on-write from the
//! version it opened unless truncated), and hashes bytes while they arrive in order.

use super::error::Result;
use super::namespace::{Content, Ino};
use crate::store::{BlobReader, Store, hex_digest};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::mpsc;

pub struct ReadHandle {
    pub ino: Ino,
    /// SHA-256 of the content this handle reads (page-cache bookkeeping).
    pub key: String,
    pub size: u64,
    /// The blob; `None` for the empty content of a file never committed.
    pub blob: Option<BlobReader>,
    /// True for `.versions` entries, whose inode is not the artifact's.
    pub pinned: bool,
    /// Generated content (`.artifactfs/status`) instead of a blob.
    pub generated: Option<Vec<u8>>,
}

impl ReadHandle {
    pub fn read(&self, store: &Store, offset: u64, size: u32) -> Result<Vec<u8>> {
        if let Some(g) = &self.generated {
            let start = (offset as usize).min(g.len());
            let end = (start + size as usize).min(g.len());
            return Ok(g[start..end].to_vec());
        }
        match &self.blob {
            Some(b) => Ok(store.read(b, offset, size)?),
            None => Ok(Vec::new()),
        }
    }
}

pub fn read_at(f: &File, offset: u64, size: u32) -> Result<Vec<u8>> {
    Ok(crate::store::read_at(f, offset, size)?)
}

/// Past this size a sequential writer's bytes are hashed on a thread of their own.
const BACKGROUND_AFTER: u64 = 8 << 20;

/// The SHA-256 of a staging file's bytes `0..hashed`, kept while writes arrive in
/// order. Small files hash inline. A large one moves to a thread that reads its
/// bytes back from the page cache, so a request thread pays only the `pwrite` and
/// the two halves of the work run on two cores (profiled: hashing was 37 % of the
/// daemon's time in a 1 GiB sequential write, all on the request path).
enum Hasher {
    Inline(Sha256),
    Background {
        /// The new watermark after each write; dropped to finish.
        more: mpsc::Sender<u64>,
        done: std::thread::JoinHandle<std::io::Result<(Sha256, u64)>>,
    },
}

impl Hasher {
    /// Moves hashing of `file` from `from` onwards to a thread.
    fn background(h: Sha256, file: &File, from: u64) -> Option<Hasher> {
        let file = file.try_clone().ok()?;
        let (more, rx) = mpsc::channel::<u64>();
        let done = std::thread::Builder::new()
            .name("hash".into())
            .spawn(move || {
                let mut h = h;
                let mut pos = from;
                let mut buf = vec![0u8; 1 << 20];
                while let Ok(mut upto) = rx.recv() {
                    while let Ok(u) = rx.try_recv() {
                        upto = u;
                    }
                    while pos < upto {
                        let want = ((upto - pos) as usize).min(buf.len());
                        let n = file.read_at(&mut buf[..want], pos)?;
                        if n == 0 {
                            return Err(std::io::ErrorKind::UnexpectedEof.into());
                        }
                        h.update(&buf[..n]);
                        pos += n as u64;
                    }
                }
                Ok((h, pos))
            })
            .ok()?;
        Some(Hasher::Background { more, done })
    }

    /// The hash of bytes `0..hashed`, or `None` when the thread failed.
    fn finish(self, hashed: u64) -> Option<Sha256> {
        match self {
            Hasher::Inline(h) => Some(h),
            Hasher::Background { more, done } => {
                drop(more);
                match done.join() {
                    Ok(Ok((h, pos))) if pos == hashed => Some(h),
                    _ => None,
                }
            }
        }
    }
}

pub struct Staging {
    pub file: File,
    pub path: PathBuf,
    /// The content's size (with `tail`, more than the file holds yet).
    pub size: u64,
    /// SHA-256 of bytes `0..hashed`, valid while writes arrive in order.
    hasher: Option<Hasher>,
    hashed: u64,
    /// Copy-on-write deferred: the file holds bytes `0..prefix`, the base blob
    /// (`sha`) supplies `prefix..size`. A writer that overwrites the whole file
    /// from the start (fio, `dd conv=notrunc`) then never copies the old bytes.
    tail: Option<Tail>,
}

struct Tail {
    sha: String,
    prefix: u64,
}

impl Staging {
    /// Copies the base's bytes past the written prefix into the file, hashing
    /// them on if the hash had reached the prefix. Afterwards the file holds the
    /// whole content.
    fn materialise(&mut self, store: &Store) -> Result<()> {
        let Some(tail) = self.tail.take() else {
            return Ok(());
        };
        if tail.prefix >= self.size {
            return Ok(());
        }
        let src = store.open_blob(&tail.sha)?;
        let in_order = self.hashed == tail.prefix;
        let mut buf = vec![0u8; (self.size - tail.prefix).min(1 << 20) as usize];
        let mut off = tail.prefix;
        while off < self.size {
            let want = ((self.size - off) as usize).min(buf.len());
            let n = src.read_at(&mut buf[..want], off)?;
            if n == 0 {
                break;
            }
            self.file.write_all_at(&buf[..n], off)?;
            off += n as u64;
            if in_order {
                match self.hasher.take() {
                    Some(Hasher::Inline(mut h)) => {
                        h.update(&buf[..n]);
                        self.hasher = Some(Hasher::Inline(h));
                        self.hashed = off;
                    }
                    Some(Hasher::Background { more, done }) => {
                        if more.send(off).is_ok() {
                            self.hasher = Some(Hasher::Background { more, done });
                        }
                        self.hashed = off;
                    }
                    None => {}
                }
            }
        }
        Ok(())
    }
}

impl Staging {
    /// Finishes the SHA-256: hashes whatever the sequential stream missed (a tail
    /// grown by truncate, or everything after an out-of-order write).
    pub fn finish_hash(&mut self) -> Result<String> {
        let hashed = self.hashed;
        let (mut h, from) = match self.hasher.take().and_then(|h| h.finish(hashed)) {
            Some(h) if hashed <= self.size => (h, hashed),
            _ => (Sha256::new(), 0),
        };
        // Sized to what is left (usually nothing): zeroing 1 MiB per close was
        // 3 % of the daemon's time creating small files.
        let mut buf = vec![0u8; (self.size.saturating_sub(from)).min(1 << 20) as usize];
        let mut off = from;
        while off < self.size {
            let want = ((self.size - off) as usize).min(buf.len());
            let n = self.file.read_at(&mut buf[..want], off)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            off += n as u64;
        }
        Ok(hex_digest(h))
    }
}

pub struct WriteHandle {
    pub ino: Ino,
    pub uid: u32,
    pub append: bool,
    /// The committed content this handle builds on (copy-on-write source).
    pub base: Option<Content>,
    pub staging: Option<Staging>,
    /// Bytes written since the last commit: FLUSH commits.
    pub dirty: bool,
    /// Created, or opened with O_TRUNC, without a write since: only RELEASE
    /// commits (bash flushes before its first write, and that must not make an
    /// empty version).
    pub meta_dirty: bool,
    /// Open(O_TRUNC): the first staging file starts empty.
    pub truncated: bool,
    pub last_write_ns: i64,
    /// The thread that opened the handle (FUSE reports thread ids); 0 when
    /// unknown. Only its process's FLUSHes commit (see `ArtifactFs::flush`).
    pub opener: u32,
    base_file: Option<File>,
}

impl WriteHandle {
    pub fn new(ino: Ino, uid: u32, append: bool, base: Option<Content>, truncated: bool) -> Self {
        WriteHandle {
            ino,
            uid,
            append,
            base,
            staging: None,
            dirty: false,
            meta_dirty: false,
            truncated,
            last_write_ns: 0,
            opener: 0,
            base_file: None,
        }
    }

    /// The staging file, made on first use: empty when the handle truncated,
    /// else standing for a copy of the base version whose bytes are copied only
    /// when something needs them (`Staging::materialise`).
    fn staging(&mut self, store: &Store) -> Result<&mut Staging> {
        if self.staging.is_none() {
            let (file, path) = store.new_staging()?;
            let base = if self.truncated {
                None
            } else {
                self.base.as_ref().filter(|b| b.size > 0)
            };
            self.staging = Some(Staging {
                file,
                path,
                size: base.map_or(0, |b| b.size),
                hasher: Some(Hasher::Inline(Sha256::new())),
                hashed: 0,
                tail: base.map(|b| Tail {
                    sha: b.sha256.clone(),
                    prefix: 0,
                }),
            });
        }
        Ok(self.staging.as_mut().expect("made above"))
    }

    pub fn write(&mut self, store: &Store, offset: u64, data: &[u8]) -> Result<u32> {
        let append = self.append;
        let st = self.staging(store)?;
        let offset = if append { st.size } else { offset };
        let end = offset + data.len() as u64;
        // Overwriting the deferred copy from where the written prefix ends keeps
        // it deferred; anything else needs the old bytes in place first.
        // `file_end`: where the bytes the file holds end, before this write.
        let file_end = match &mut st.tail {
            Some(t) if offset == t.prefix => {
                t.prefix = end;
                Some(offset)
            }
            Some(_) => None,
            None => Some(st.size),
        };
        let file_end = match file_end {
            Some(e) => e,
            None => {
                st.materialise(store)?;
                st.size
            }
        };
        if st.tail.as_ref().is_some_and(|t| t.prefix >= st.size) {
            st.tail = None;
        }
        st.file.write_all_at(data, offset)?;
        let in_order = offset == st.hashed && st.hashed == file_end;
        match st.hasher.take() {
            Some(Hasher::Inline(mut h)) if in_order => {
                h.update(data);
                st.hasher = if end >= BACKGROUND_AFTER {
                    Hasher::background(h, &st.file, end)
                } else {
                    Some(Hasher::Inline(h))
                };
                st.hashed = end;
            }
            Some(Hasher::Background { more, done }) if in_order => {
                if more.send(end).is_ok() {
                    st.hasher = Some(Hasher::Background { more, done });
                }
                st.hashed = end;
            }
            // Out of order: the hash is made from the file at commit.
            _ => {}
        }
        st.size = st.size.max(end);
        self.dirty = true;
        self.last_write_ns = crate::timefmt::now_ns();
        Ok(data.len() as u32)
    }

    pub fn truncate(&mut self, store: &Store, size: u64) -> Result<()> {
        if size == 0 {
            self.truncated = true;
            if let Some(st) = self.staging.as_mut() {
                st.file.set_len(0)?;
                st.size = 0;
                st.tail = None;
                st.hasher = Some(Hasher::Inline(Sha256::new()));
                st.hashed = 0;
            }
        }
        let st = self.staging(store)?;
        st.materialise(store)?;
        if st.size != size {
            st.file.set_len(size)?;
            if size < st.hashed {
                st.hasher = None;
            }
            st.size = size;
        }
        // An explicit ftruncate is a change the application made: FLUSH commits it.
        self.dirty = true;
        self.last_write_ns = crate::timefmt::now_ns();
        Ok(())
    }

    pub fn size(&self) -> u64 {
        match (&self.staging, &self.base) {
            (Some(st), _) => st.size,
            (None, _) if self.truncated => 0,
            (None, Some(b)) => b.size,
            (None, None) => 0,
        }
    }

    /// Reads what this handle would commit now: its staging file, else its base.
    pub fn read(&mut self, store: &Store, offset: u64, size: u32) -> Result<Vec<u8>> {
        if let Some(st) = self.staging.as_mut() {
            st.materialise(store)?;
            return read_at(&st.file, offset, size);
        }
        if self.truncated {
            return Ok(Vec::new());
        }
        match self.base.clone() {
            Some(b) => {
                if self.base_file.is_none() {
                    self.base_file = Some(store.open_blob(&b.sha256)?);
                }
                read_at(self.base_file.as_ref().expect("opened"), offset, size)
            }
            None => Ok(Vec::new()),
        }
    }

    /// Makes sure a staging file exists for a commit: an empty one when the handle
    /// only created or truncated.
    pub fn ensure_staging(&mut self, store: &Store) -> Result<()> {
        self.staging(store)?.materialise(store)
    }

    /// Rebases the handle on what it just committed.
    pub fn committed(&mut self, content: Content) {
        self.base = Some(content);
        self.base_file = None;
        self.truncated = false;
        self.dirty = false;
        self.meta_dirty = false;
    }

    /// A commit failed after the bytes became a blob: they stay this handle's
    /// content (still dirty) so that the next attempt commits them.
    pub fn rebase_uncommitted(&mut self, content: Content) {
        self.base = Some(content);
        self.base_file = None;
        self.truncated = false;
        self.dirty = true;
    }

    pub fn sync(&self) -> Result<()> {
        if let Some(st) = &self.staging {
            st.file.sync_data()?;
        }
        Ok(())
    }
}

/// Whether two thread ids (as FUSE reports them) belong to one process. An
/// unknown answer (a pid of 0, a thread already gone) counts as "same", so
/// the FLUSH commits as it would without this check: at worst an extra
/// version, never a lost one.
pub fn same_process(a: u32, b: u32) -> bool {
    if a == b || a == 0 || b == 0 {
        return true;
    }
    match (tgid(a), tgid(b)) {
        (Some(x), Some(y)) => x == y,
        _ => true,
    }
}

/// The thread group (process) of a thread id, from /proc.
fn tgid(tid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}
