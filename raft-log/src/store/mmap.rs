//! Memory-mapped segment files: the only `unsafe` code in raft-log.
//!
//! A [`MmapFile`] maps one preallocated, fixed-size segment file read-write and shared. Bytes are
//! split by a watermark into two regions:
//!
//! - below [`MmapFile::frozen`] the bytes are immutable: they hold committed entries, which Raft
//!   never truncates. Reads there are lock-free and may be handed out without a copy
//!   ([`MmapFile::bytes`]), because nothing writes them again.
//! - at and above the watermark, writes and reads are serialized by a per-file `RwLock`; reads of
//!   that region copy the bytes out while holding the read lock.
//!
//! Why the file cannot change under the map in ways that would be undefined behaviour: the store
//! takes an exclusive `flock` on its directory, so no other process writes the files; segment
//! files are created at their full size and never truncated while mapped (a shrinking file under
//! a mapping raises SIGBUS); deleting a file (retention) only unlinks it, and the mapping stays
//! valid until the last [`MmapFile`] handle drops.

#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use memmap2::MmapRaw;

/// One mapped segment file.
#[derive(Debug)]
pub(crate) struct MmapFile {
    map: MmapRaw,
    // Kept open for the lifetime of the map (fsync of the file, and the map's backing).
    _file: File,
    path: PathBuf,
    len: u64,
    // Invariant: bytes [0, frozen) are never written again.
    frozen: AtomicU64,
    // Serializes writes with copying reads of the unfrozen region.
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
        // Allocate the blocks now so a full disk fails here, at roll time, not as SIGBUS on a
        // later page fault inside a write.
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
        let map = MmapRaw::map_raw(&file)?;
        assert_eq!(
            map.len() as u64,
            len,
            "mapped length differs from file length of {}",
            path.display()
        );
        Ok(MmapFile {
            map,
            _file: file,
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

    /// Copies `src` into the file at `offset`.
    ///
    /// # Panics
    /// If the range is out of bounds or starts below the frozen watermark: writing committed
    /// bytes would be a Raft bug (truncating committed entries), and would race with lock-free
    /// readers.
    pub(crate) fn write(&self, offset: u64, src: &[u8]) {
        let end = offset
            .checked_add(src.len() as u64)
            .expect("offset overflow");
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
        let start = usize::try_from(offset).expect("checked by map()");
        // SAFETY: `start + src.len() <= self.len == map.len()`, so the destination lies inside the
        // mapping, which lives as long as `self`. The region is at or above the frozen watermark,
        // so no lock-free reader can observe it, and the write lock excludes copying readers and
        // other writers. `src` is a separate Rust allocation, so the ranges do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                src.as_ptr(),
                self.map.as_mut_ptr().add(start),
                src.len(),
            );
        }
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
        let _guard = self.tail.read().unwrap_or_else(|e| e.into_inner());
        let start = usize::try_from(offset).expect("checked by map()");
        let len = usize::try_from(len).expect("checked by map()");
        // SAFETY: the range is inside the mapping (asserted above), which lives as long as `self`.
        // Writers take the write lock, which this read guard excludes for as long as the slice
        // lives (the slice does not escape `f`).
        let bytes = unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(start), len) };
        f(bytes)
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
        let start = usize::try_from(offset).expect("checked by map()");
        let len = usize::try_from(len).expect("checked by map()");
        // SAFETY: the range is inside the mapping (frozen <= len) and below the frozen watermark,
        // which only rises; `write` refuses offsets below it, so these bytes never change while
        // the slice (bounded by `&self`) lives.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(start), len) }
    }

    /// Writes dirty pages of `[offset, offset + len)` to disk and waits (msync MS_SYNC, which
    /// on Linux is an fdatasync of that range).
    pub(crate) fn sync_range(&self, offset: u64, len: u64) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        let end = offset.saturating_add(len).min(self.len);
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let len = usize::try_from(end - offset).map_err(io::Error::other)?;
        self.map.flush_range(start, len)
    }
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
        f.write(0, b"hello world");
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
        f.write(0, b"abc");
        f.freeze_to(3);
        f.write(2, b"x");
    }

    #[test]
    fn unfrozen_reads_copy() {
        let dir = tempfile::tempdir().unwrap();
        let f = Arc::new(MmapFile::create(&dir.path().join("seg"), 4096).unwrap());
        f.write(100, b"tail");
        let b = f.bytes(100, 4);
        f.write(100, b"TAIL");
        assert_eq!(&b[..], b"tail");
        f.sync_range(0, 4096).unwrap();
    }
}
