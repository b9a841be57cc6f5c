//! Ranged, checked reads of blobs that are only in the backend.
//!
//! A blob's name is the SHA-256 of all its bytes, which can only be checked once
//! every byte is there. So the uploader also hashes each 1 MiB chunk of a blob as
//! it sends it (the catalog keeps the list), and a read of a blob that is not in
//! the spool fetches just the chunks it touches, checks each against its hash, and
//! keeps them in a sparse file in `spool/partial/`. A chunk whose bytes do not
//! match is never served. Once every chunk is there the file becomes an ordinary
//! spool blob.

use super::{Result, StoreError, blob_key};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

/// Bytes per hashed chunk: small enough that a random 4 KiB read fetches
/// little, large enough that a 1 GiB blob's list is 32 KiB.
pub const CHUNK: u64 = 1 << 20;

/// A ranged fetch takes at least this many chunks (read-ahead: the kernel asks
/// for 128 KiB at a time, and one request per chunk would be slow).
const FETCH_CHUNKS: u64 = 4;

/// The SHA-256 of each `size`-byte chunk of a blob, in order (the last one may
/// be shorter).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunks {
    pub size: u64,
    pub hashes: Vec<[u8; 32]>,
}

impl Chunks {
    /// The hashes as stored: 32 bytes each, concatenated.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.hashes.concat()
    }

    pub fn from_bytes(size: u64, b: &[u8]) -> Option<Chunks> {
        if size == 0 || b.len() % 32 != 0 {
            return None;
        }
        let hashes = b
            .chunks(32)
            .map(|c| c.try_into().expect("32 bytes"))
            .collect();
        Some(Chunks { size, hashes })
    }

    /// The list as kept in the backend: `{"chunk_size": N, "sha256": [hex, …]}`.
    pub fn to_json(&self) -> String {
        let hashes: Vec<String> = self.hashes.iter().map(hex::encode).collect();
        serde_json::json!({"chunk_size": self.size, "sha256": hashes}).to_string()
    }

    pub fn from_json(b: &[u8]) -> Option<Chunks> {
        let v: serde_json::Value = serde_json::from_slice(b).ok()?;
        let size = v["chunk_size"].as_u64().filter(|&s| s > 0)?;
        let hashes = v["sha256"]
            .as_array()?
            .iter()
            .map(|h| {
                let mut k = [0u8; 32];
                hex::decode_to_slice(h.as_str()?, &mut k).ok()?;
                Some(k)
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Chunks { size, hashes })
    }

    /// Whether this list can describe a blob of `len` bytes.
    pub fn fits(&self, len: u64) -> bool {
        self.hashes.len() as u64 == len.div_ceil(self.size)
    }
}

/// Hashes a blob whole and by chunks in one pass.
pub struct ChunkHasher {
    whole: Sha256,
    part: Sha256,
    in_part: u64,
    hashes: Vec<[u8; 32]>,
}

impl Default for ChunkHasher {
    fn default() -> Self {
        ChunkHasher {
            whole: Sha256::new(),
            part: Sha256::new(),
            in_part: 0,
            hashes: Vec::new(),
        }
    }
}

impl ChunkHasher {
    pub fn update(&mut self, mut data: &[u8]) {
        self.whole.update(data);
        while !data.is_empty() {
            let n = ((CHUNK - self.in_part) as usize).min(data.len());
            self.part.update(&data[..n]);
            self.in_part += n as u64;
            data = &data[n..];
            if self.in_part == CHUNK {
                self.hashes.push(self.part.finalize_reset().into());
                self.in_part = 0;
            }
        }
    }

    /// The whole blob's SHA-256 (hex) and its chunk list.
    pub fn finish(mut self) -> (String, Chunks) {
        if self.in_part > 0 {
            self.hashes.push(self.part.finalize().into());
        }
        (
            super::hex_digest(self.whole),
            Chunks {
                size: CHUNK,
                hashes: self.hashes,
            },
        )
    }
}

/// A blob being fetched from the backend a few chunks at a time.
pub struct Partial {
    pub sha: String,
    pub len: u64,
    chunks: Chunks,
    pub(super) path: PathBuf,
    file: File,
    /// Which chunks are in `file`, checked. Held only to look or mark, never
    /// across backend I/O (status and eviction read it).
    present: Mutex<Vec<bool>>,
    /// Held across a fetch: two readers of this blob never fetch the same
    /// chunk twice (the second finds it present).
    fetching: Mutex<()>,
}

/// What a ranged fetch did, for the store's counters.
pub struct Fetched {
    pub bytes: u64,
    /// Every chunk is now present: the file may become a spool blob.
    pub complete: bool,
}

impl Partial {
    pub(super) fn new(sha: &str, len: u64, chunks: Chunks, path: PathBuf) -> Result<Partial> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        file.set_len(len)?;
        let n = chunks.hashes.len();
        Ok(Partial {
            sha: sha.to_string(),
            len,
            chunks,
            path,
            file,
            present: Mutex::new(vec![false; n]),
            fetching: Mutex::new(()),
        })
    }

    /// Bytes of checked chunks held locally.
    pub fn present_bytes(&self) -> u64 {
        let p = self.present.lock();
        (0..p.len())
            .filter(|&i| p[i])
            .map(|i| self.chunk_range(i as u64).1 - self.chunk_range(i as u64).0)
            .sum()
    }

    fn chunk_range(&self, i: u64) -> (u64, u64) {
        let start = i * self.chunks.size;
        (start, (start + self.chunks.size).min(self.len))
    }

    /// Makes bytes `[offset, offset + size)` present (fetching and checking the
    /// chunks they lie in) and returns them.
    pub fn read(
        &self,
        op: &opendal::blocking::Operator,
        offset: u64,
        size: u32,
    ) -> Result<(Vec<u8>, Option<Fetched>)> {
        let end = (offset + size as u64).min(self.len);
        if offset >= end {
            return Ok((Vec::new(), None));
        }
        let first = offset / self.chunks.size;
        let last = (end - 1) / self.chunks.size;
        let fetched = self.fetch(op, first, last)?;
        let mut buf = vec![0u8; (end - offset) as usize];
        self.file.read_exact_at(&mut buf, offset)?;
        Ok((buf, fetched))
    }

    fn fetch(
        &self,
        op: &opendal::blocking::Operator,
        first: u64,
        last: u64,
    ) -> Result<Option<Fetched>> {
        let _one_fetch = self.fetching.lock();
        let (a, b, missing) = {
            let present = self.present.lock();
            let n = present.len() as u64;
            let Some(a) = (first..=last).find(|&i| !present[i as usize]) else {
                return Ok(None);
            };
            // One request from the first missing chunk through the last wanted
            // one, extended over missing chunks that follow (read-ahead).
            let mut b = last.max(a);
            while b + 1 < n && b + 1 < a + FETCH_CHUNKS && !present[(b + 1) as usize] {
                b += 1;
            }
            let missing: Vec<u64> = (a..=b).filter(|&i| !present[i as usize]).collect();
            (a, b, missing)
        };
        let (start, _) = self.chunk_range(a);
        let (_, stop) = self.chunk_range(b);
        let key = blob_key(&self.sha);
        let bytes = op
            .reader(&key)
            .and_then(|r| r.read(start..stop))
            .map_err(|e| {
                if e.kind() == opendal::ErrorKind::NotFound {
                    StoreError::Missing(format!("{key} is in neither spool nor backend"))
                } else {
                    StoreError::Backend(e.to_string())
                }
            })?
            .to_vec();
        if bytes.len() as u64 != stop - start {
            log::error!(
                "backend object {key}: asked for bytes {start}..{stop}, got {}: refusing to serve it",
                bytes.len()
            );
            return Err(StoreError::Corrupt(key));
        }
        let mut got = 0;
        for i in missing {
            let (s, e) = self.chunk_range(i);
            let part = &bytes[(s - start) as usize..(e - start) as usize];
            let sum: [u8; 32] = Sha256::digest(part).into();
            if sum != self.chunks.hashes[i as usize] {
                log::error!(
                    "backend object {key}: chunk {i} (bytes {s}..{e}) does not match its \
                     SHA-256: refusing to serve it"
                );
                return Err(StoreError::Corrupt(format!("{key} chunk {i}")));
            }
            self.file.write_all_at(part, s)?;
            self.present.lock()[i as usize] = true;
            got += e - s;
        }
        Ok(Some(Fetched {
            bytes: got,
            complete: self.present.lock().iter().all(|&p| p),
        }))
    }

    /// The sparse file, for the store to make it a spool blob.
    pub(super) fn file(&self) -> &File {
        &self.file
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Backend, BlobReader, Store};
    use super::*;
    use std::sync::atomic::Ordering;

    fn blob(len: u64, seed: u64) -> (Vec<u8>, String, Chunks) {
        let data: Vec<u8> = (0..len).map(|i| ((i * 7 + seed) % 253) as u8).collect();
        let mut h = ChunkHasher::default();
        h.update(&data);
        let (sha, chunks) = h.finish();
        (data, sha, chunks)
    }

    #[test]
    fn ranged_reads_fetch_only_what_they_touch_and_refuse_a_bad_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::open(dir.path(), Backend::from_url("memory://").unwrap(), false).unwrap();
        let op = &store.backend.op;
        let len = 10 * CHUNK + 123;
        let (data, sha, chunks) = blob(len, 1);
        op.write(&blob_key(&sha), data.clone()).unwrap();

        let r = store
            .open_for_read(&sha, len, || Some(chunks.clone()))
            .unwrap();
        assert!(
            matches!(r, BlobReader::Ranged(_)),
            "not in the spool: ranged"
        );
        let at = 2 * CHUNK + CHUNK / 2;
        let got = store.read(&r, at, 4096).unwrap();
        assert!(got == data[at as usize..at as usize + 4096]);
        let fetched = store.fetched_bytes.load(Ordering::Relaxed);
        assert_eq!(
            fetched,
            FETCH_CHUNKS * CHUNK,
            "one request of read-ahead, not the blob"
        );
        // A read across the end of the blob.
        let got = store.read(&r, len - 100, 4096).unwrap();
        assert!(got == data[(len - 100) as usize..]);

        // The backend's copy goes bad in chunk 8 (not fetched yet): that chunk is
        // refused, chunks already checked are still served.
        let mut bad = data.clone();
        bad[(8 * CHUNK + 17) as usize] ^= 0xff;
        op.write(&blob_key(&sha), bad).unwrap();
        let err = store.read(&r, 8 * CHUNK, 4096).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
        assert!(store.read(&r, 3 * CHUNK, 10).unwrap() == data[(3 * CHUNK) as usize..][..10]);

        // Every chunk read from a good copy: the blob becomes an ordinary spool blob.
        op.write(&blob_key(&sha), data.clone()).unwrap();
        let mut all = Vec::new();
        let mut off = 0;
        while off < len {
            all.extend(store.read(&r, off, 128 * 1024).unwrap());
            off += 128 * 1024;
        }
        assert!(all == data);
        assert!(store.blob_path(&sha).exists(), "promoted to the spool");
        assert_eq!(store.partial_usage(), (0, 0));
        assert!(matches!(
            store.open_for_read(&sha, len, || None).unwrap(),
            BlobReader::File(_)
        ));
    }

    #[test]
    fn the_chunk_list_beside_the_blob_serves_when_the_catalog_has_none() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::open(dir.path(), Backend::from_url("memory://").unwrap(), false).unwrap();
        let len = 3 * CHUNK + 1;
        let (data, sha, chunks) = blob(len, 3);
        assert_eq!(
            Chunks::from_json(chunks.to_json().as_bytes()),
            Some(chunks.clone())
        );
        let op = &store.backend.op;
        op.write(&blob_key(&sha), data.clone()).unwrap();
        op.write(&super::super::chunks_key(&sha), chunks.to_json())
            .unwrap();
        let r = store.open_for_read(&sha, len, || None).unwrap();
        assert!(
            matches!(r, BlobReader::Ranged(_)),
            "ranged, from the backend's list"
        );
        assert!(store.read(&r, 2 * CHUNK, 8).unwrap() == data[(2 * CHUNK) as usize..][..8]);
        assert_eq!(store.fetched_bytes.load(Ordering::Relaxed), CHUNK + 1);
    }

    #[test]
    fn without_chunk_hashes_a_read_fetches_the_whole_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::open(dir.path(), Backend::from_url("memory://").unwrap(), false).unwrap();
        let len = 3 * CHUNK;
        let (data, sha, chunks) = blob(len, 2);
        store
            .backend
            .op
            .write(&blob_key(&sha), data.clone())
            .unwrap();
        // A list that does not fit the blob's size is not trusted either.
        let wrong = Chunks {
            size: CHUNK,
            hashes: chunks.hashes[..2].to_vec(),
        };
        let r = store.open_for_read(&sha, len, || Some(wrong)).unwrap();
        assert!(matches!(r, BlobReader::File(_)));
        assert_eq!(store.fetched_bytes.load(Ordering::Relaxed), len);
        assert!(store.read(&r, CHUNK, 5).unwrap() == data[CHUNK as usize..][..5]);
    }

    #[test]
    fn chunk_hashes_split_at_chunk_boundaries_whatever_the_writes() {
        let data: Vec<u8> = (0..(CHUNK * 2 + 5)).map(|i| (i % 251) as u8).collect();
        let mut one = ChunkHasher::default();
        one.update(&data);
        let mut many = ChunkHasher::default();
        for piece in data.chunks(77_777) {
            many.update(piece);
        }
        let (sha1, c1) = one.finish();
        let (sha2, c2) = many.finish();
        assert_eq!(sha1, sha2);
        assert_eq!(
            sha1,
            super::super::hex_digest(Sha256::new_with_prefix(&data))
        );
        assert_eq!(c1, c2);
        assert_eq!(c1.hashes.len(), 3);
        assert!(c1.fits(data.len() as u64));
        let third: [u8; 32] = Sha256::digest(&data[(2 * CHUNK) as usize..]).into();
        assert_eq!(c1.hashes[2], third);
        assert_eq!(Chunks::from_bytes(CHUNK, &c1.to_bytes()), Some(c1));
    }
}
