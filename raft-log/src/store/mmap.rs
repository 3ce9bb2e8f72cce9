//! Memory-mapped segment files: the only `unsafe` code in raft-log.
//!
//! A [`MmapFile`] is one preallocated, fixed-size segment file. Reads go through a shared,
//! read-only mapping; writes go through `pwrite`/`pwritev` on the file descriptor into the same
//! page cache. Writing through the mapping was measured at about half the CPU of a replicated
//! 1 KiB append: every write to a page the flusher had just cleaned faulted again, the kernel
//! zeroed the unwritten-extent page inside the fault, and cleaning writable mapped pages cost a
//! TLB shootdown. `pwrite` has none of that (RocketMQ's `transientStorePoolEnable` exists for the
//! same reason).
//!
//! Bytes are split by a watermark into two regions:
//!
//! - below [`MmapFile::frozen`] the bytes are immutable: they hold committed entries, which Raft
//!   never truncates. Reads there are lock-free and may be handed out without a copy
//!   ([`MmapFile::bytes`]), because nothing writes them again.
//! - at and above the watermark, writes and reads are serialized by a per-file `RwLock`; reads of
//!   that region happen while holding the read lock and copy the bytes out.
//!
//! Why the file cannot change under the map in ways that would be undefined behaviour: the store
//! takes an exclusive `flock` on its directory, so no other process writes the files; this
//! process writes only through [`MmapFile::write`], under the rules above; segment files are
//! created at their full size and never truncated while mapped (a shrinking file under a mapping
//! raises SIGBUS); deleting a file (retention) only unlinks it, and the mapping stays valid until
//! the last [`MmapFile`] handle drops.

#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use memmap2::Mmap;

/// One mapped segment file.
#[derive(Debug)]
pub(crate) struct MmapFile {
    map: Mmap,
    // Writes (pwrite) and syncs (fdatasync) go through the descriptor.
    file: File,
    path: PathBuf,
    len: u64,
    // Invariant: bytes [0, frozen) are never written again.
    frozen: AtomicU64,
    // Serializes writes with reads of the unfrozen region.
    tail: RwLock<()>,
}

impl MmapFile {
    /// Creates `path` at `len` bytes with its blocks allocated (fallocate), and maps it.
    pub(crate) fn create(path: &Path, len: u64) -> io::Result<MmapFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        // Allocate the blocks now so a full disk fails here, at roll time, not in a later write.
        rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, len)?;
        Self::map(file, path, len)
    }

    /// Maps an existing segment file; its length is the file's length.
    pub(crate) fn open(path: &Path) -> io::Result<MmapFile> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let len = file.metadata()?.len();
        Self::map(file, path, len)
    }

    fn map(file: File, path: &Path, len: u64) -> io::Result<MmapFile> {
        if len == 0 || usize::try_from(len).is_err() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("segment length {len} cannot be mapped"),
            ));
        }
        // SAFETY: the store holds an exclusive flock on its directory, so no other process
        // modifies the file; this process writes it only through `write`, which never touches
        // bytes below the frozen watermark (the only bytes read without the tail lock) and never
        // shrinks the file, so every mapped page stays backed while the mapping lives.
        let map = unsafe { Mmap::map(&file)? };
        assert_eq!(
            map.len() as u64,
            len,
            "mapped length differs from the file length of {}",
            path.display()
        );
        Ok(MmapFile {
            map,
            file,
            path: path.to_path_buf(),
            len,
            frozen: AtomicU64::new(0),
            tail: RwLock::new(()),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The immutability watermark: bytes below it are never written again.
    pub(crate) fn frozen(&self) -> u64 {
        self.frozen.load(Ordering::Acquire)
    }

    /// Raises the watermark to `offset` (never lowers it).
    pub(crate) fn freeze_to(&self, offset: u64) {
        assert!(
            offset <= self.len,
            "freeze_to({offset}) past the end of {}",
            self.path.display()
        );
        // The write lock orders every earlier write before the watermark moves past it.
        let _guard = self.tail.write().unwrap_or_else(|e| e.into_inner());
        self.frozen.fetch_max(offset, Ordering::AcqRel);
    }

    /// Writes `src` at `offset`.
    ///
    /// # Errors
    /// The OS error of `pwrite`.
    pub(crate) fn write(&self, offset: u64, src: &[u8]) -> io::Result<()> {
        self.write_vectored(offset, &[src])
    }

    /// Writes the concatenation of `parts` at `offset`, with as few `pwritev` calls as the
    /// kernel allows.
    ///
    /// # Errors
    /// The OS error of `pwritev`.
    ///
    /// # Panics
    /// If the range is out of bounds or starts below the frozen watermark: writing committed
    /// bytes would be a Raft bug (truncating committed entries), and would race with lock-free
    /// readers.
    pub(crate) fn write_vectored(&self, offset: u64, parts: &[&[u8]]) -> io::Result<()> {
        let total: u64 = parts.iter().map(|p| p.len() as u64).sum();
        let end = offset.checked_add(total).expect("offset overflow");
        assert!(
            end <= self.len,
            "write [{offset}, {end}) past the end ({}) of {}",
            self.len,
            self.path.display()
        );
        let _guard = self.tail.write().unwrap_or_else(|e| e.into_inner());
        let frozen = self.frozen.load(Ordering::Acquire);
        assert!(
            offset >= frozen,
            "write at {offset} below the frozen watermark {frozen} of {}",
            self.path.display()
        );
        let mut at = offset;
        // (part, bytes of it already written)
        let mut next = 0usize;
        let mut skip = 0usize;
        while next < parts.len() {
            if parts[next].len() == skip {
                next += 1;
                skip = 0;
                continue;
            }
            if next + 1 == parts.len() || skip > 0 {
                // One buffer left, or a partly written one: a plain pwrite finishes it.
                let rest = &parts[next][skip..];
                self.file.write_all_at(rest, at)?;
                at += rest.len() as u64;
                next += 1;
                skip = 0;
                continue;
            }
            let slices: Vec<IoSlice<'_>> = parts[next..]
                .iter()
                .take(IOV_MAX)
                .map(|p| IoSlice::new(p))
                .collect();
            let mut n = rustix::io::pwritev(&self.file, &slices, at)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "pwritev wrote nothing",
                ));
            }
            at += n as u64;
            while n > 0 && next < parts.len() {
                let left = parts[next].len() - skip;
                if n >= left {
                    n -= left;
                    next += 1;
                    skip = 0;
                } else {
                    skip += n;
                    n = 0;
                }
            }
        }
        debug_assert_eq!(at, end);
        Ok(())
    }

    /// Calls `f` with the bytes at `[offset, offset + len)`.
    ///
    /// # Panics
    /// If the range is out of bounds.
    pub(crate) fn with_bytes<R>(&self, offset: u64, len: u64, f: impl FnOnce(&[u8]) -> R) -> R {
        let end = offset.checked_add(len).expect("offset overflow");
        assert!(
            end <= self.len,
            "read [{offset}, {end}) past the end ({}) of {}",
            self.len,
            self.path.display()
        );
        if end <= self.frozen() {
            return f(self.frozen_slice(offset, len));
        }
        // The read guard excludes writers while `f` looks at the bytes (the slice does not
        // escape `f`).
        let _guard = self.tail.read().unwrap_or_else(|e| e.into_inner());
        let (start, end) = (to_usize(offset), to_usize(end));
        f(&self.map[start..end])
    }

    /// The bytes at `[offset, offset + len)` as [`Bytes`]: without a copy when the range is
    /// frozen, copied otherwise.
    pub(crate) fn bytes(self: &Arc<Self>, offset: u64, len: u64) -> Bytes {
        let end = offset.checked_add(len).expect("offset overflow");
        if end <= self.frozen() {
            Bytes::from_owner(FrozenSlice {
                file: Arc::clone(self),
                offset,
                len,
            })
        } else {
            self.with_bytes(offset, len, Bytes::copy_from_slice)
        }
    }

    fn frozen_slice(&self, offset: u64, len: u64) -> &[u8] {
        let end = offset.checked_add(len).expect("offset overflow");
        assert!(
            end <= self.frozen(),
            "frozen read [{offset}, {end}) above the watermark of {}",
            self.path.display()
        );
        // Below the frozen watermark, which only rises and which `write` refuses, the bytes
        // never change while the slice (bounded by `&self`) lives.
        &self.map[to_usize(offset)..to_usize(end)]
    }

    /// Writes the file's dirty pages to disk and waits (fdatasync). Appends dirty only the tail,
    /// so syncing the whole file costs what syncing the appended range would.
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

/// The most buffers one `pwritev` takes (Linux's IOV_MAX).
const IOV_MAX: usize = 1024;

fn to_usize(v: u64) -> usize {
    usize::try_from(v).expect("segment lengths fit usize: checked when mapped")
}

/// A frozen range of a segment, owned by a [`Bytes`].
struct FrozenSlice {
    file: Arc<MmapFile>,
    offset: u64,
    len: u64,
}

impl AsRef<[u8]> for FrozenSlice {
    fn as_ref(&self) -> &[u8] {
        self.file.frozen_slice(self.offset, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frozen_bytes_are_zero_copy_and_outlive_the_handle() {
        let dir = tempfile::tempdir().unwrap();
        let f = Arc::new(MmapFile::create(&dir.path().join("seg"), 4096).unwrap());
        f.write(0, b"hello world").unwrap();
        f.freeze_to(11);
        let b = f.bytes(6, 5);
        drop(f);
        assert_eq!(&b[..], b"world");
    }

    #[test]
    #[should_panic(expected = "below the frozen watermark")]
    fn writing_below_the_watermark_panics() {
        let dir = tempfile::tempdir().unwrap();
        let f = MmapFile::create(&dir.path().join("seg"), 4096).unwrap();
        f.write(0, b"abc").unwrap();
        f.freeze_to(3);
        let _ = f.write(2, b"x");
    }

    #[test]
    fn unfrozen_reads_copy() {
        let dir = tempfile::tempdir().unwrap();
        let f = Arc::new(MmapFile::create(&dir.path().join("seg"), 4096).unwrap());
        f.write(100, b"tail").unwrap();
        let b = f.bytes(100, 4);
        f.write(100, b"TAIL").unwrap();
        assert_eq!(&b[..], b"tail");
        f.sync().unwrap();
    }

    #[test]
    fn vectored_writes_land_contiguously_even_past_iov_max() {
        let dir = tempfile::tempdir().unwrap();
        let f = MmapFile::create(&dir.path().join("seg"), 1 << 20).unwrap();
        let parts: Vec<Vec<u8>> = (0..3000u32)
            .map(|i| vec![(i % 251) as u8; (i % 7) as usize + 1])
            .collect();
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        f.write_vectored(10, &refs).unwrap();
        let want: Vec<u8> = parts.concat();
        f.with_bytes(10, want.len() as u64, |got| assert_eq!(got, &want[..]));
    }
}
