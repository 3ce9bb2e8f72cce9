//! The store's state behind its lock and the operations on it: the segments, the write and
//! sync positions, and the index records. `LogStore` (mod.rs) is the public face; the flusher
//! and recovery work on this directly.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::config::{
    ENTRY_HEADER_BYTES, ENTRY_HEADER_LEN, INDEX_RECORD_BYTES, INDEX_RECORD_LEN, StoreConfig,
};
use crate::error::StoreError;
use crate::metrics::LogMetrics;

use super::codec::{self, Frame, IndexRecord};
use super::entry::{NewEntry, StoredEntry};
use super::meta::{self, Durable, MetaFile, TermIndex};
use super::mmap::MmapFile;
use super::verified;

#[derive(Debug)]
pub(super) struct DataSegment {
    pub(super) start: u64,
    pub(super) file: Arc<MmapFile>,
    // The index of the first entry that starts in this segment, once one does.
    pub(super) first_index: Option<u64>,
}

impl DataSegment {
    pub(super) fn end(&self) -> u64 {
        self.start + self.file.len()
    }
}

#[derive(Debug)]
pub(super) struct State {
    // Invariant: sorted by start, contiguous (`data[i].end() == data[i + 1].start`), never empty
    // once the first entry was written.
    pub(super) data: Vec<DataSegment>,
    pub(super) index: BTreeMap<u64, Arc<MmapFile>>,
    // The first present index and the last present entry.
    pub(super) entries: Option<(u64, TermIndex)>,
    pub(super) purged: Option<TermIndex>,
    pub(super) committed: Option<TermIndex>,
    // Where the next entry is written.
    pub(super) write_pos: u64,
    // Data below this position is on disk.
    pub(super) synced_pos: u64,
    // The last entry written: what the next durable checkpoint will name.
    pub(super) last_written: Option<Durable>,
    // Bumped by every truncation, so the flusher can tell its snapshot went stale.
    pub(super) truncate_generation: u64,
    // Set after a failed fsync: data durability is unknown, so nothing more is acknowledged.
    pub(super) failed: Option<String>,
}

#[derive(Debug)]
pub(super) struct Shared {
    pub(super) config: StoreConfig,
    /// Append, fsync and purge counts for Prometheus.
    pub(super) metrics: Arc<LogMetrics>,
    pub(super) data_dir: PathBuf,
    pub(super) index_dir: PathBuf,
    pub(super) state: RwLock<State>,
    pub(super) meta: Mutex<MetaFile>,
    /// Committed entries whose CRC already checked out in this process.
    pub(super) verified: verified::Verified,
    // Held for the flock; released when the last handle drops.
    pub(super) _lock: File,
}

impl Shared {
    pub(super) fn read_state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn lock_meta(&self) -> std::sync::MutexGuard<'_, MetaFile> {
        self.meta.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn check_append(
        &self,
        st: &State,
        entries: &[NewEntry<'_>],
    ) -> Result<(), StoreError> {
        let mut expected = match (st.entries, st.purged) {
            (Some((_, last)), _) => Some(last.index + 1),
            (None, Some(p)) => Some(p.index + 1),
            (None, None) => None,
        };
        for e in entries {
            if let Some(x) = expected
                && e.index != x
            {
                return Err(StoreError::NonContiguous {
                    expected: x,
                    got: e.index,
                });
            }
            if e.body.len() as u64 > self.config.entry_body_bytes_max {
                return Err(StoreError::EntryTooLarge {
                    size_bytes: e.body.len() as u64 + ENTRY_HEADER_BYTES,
                    segment_bytes: self.config.data_segment_bytes,
                });
            }
            expected = Some(e.index + 1);
        }
        Ok(())
    }

    /// Frames and writes `entries` (already checked to continue the log): one `pwritev` per run
    /// of entries in the same segment, one write per run of index records.
    pub(super) fn append_all(
        &self,
        st: &mut State,
        entries: &[NewEntry<'_>],
    ) -> Result<(), StoreError> {
        let mut headers: Vec<[u8; ENTRY_HEADER_LEN]> = Vec::with_capacity(entries.len());
        let mut records: Vec<IndexRecord> = Vec::with_capacity(entries.len());
        // (segment slot, offset in it, first entry, end entry)
        let mut runs: Vec<(usize, u64, usize, usize)> = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let size = ENTRY_HEADER_BYTES + e.body.len() as u64;
            self.ensure_room(st, size)?;
            let slot = st.data.len() - 1;
            let position = st.write_pos;
            let seg = &mut st.data[slot];
            let offset = position - seg.start;
            headers.push(codec::encode_header(
                e.index, e.term, position, e.kind, e.body,
            ));
            match runs.last_mut() {
                Some(run) if run.0 == slot => run.3 = i + 1,
                _ => runs.push((slot, offset, i, i + 1)),
            }
            seg.first_index.get_or_insert(e.index);
            let size = u32::try_from(size).expect("checked against entry_body_bytes_max");
            records.push(IndexRecord {
                position,
                index: e.index,
                term: e.term,
                size,
                kind: e.kind,
            });
            st.write_pos = position + u64::from(size);
        }
        for (slot, offset, first, end) in runs {
            let mut parts: Vec<&[u8]> = Vec::with_capacity(2 * (end - first));
            for (h, e) in headers[first..end].iter().zip(&entries[first..end]) {
                parts.push(h);
                parts.push(e.body);
            }
            let file = &st.data[slot].file;
            file.write_vectored(offset, &parts)
                .map_err(|e| StoreError::io("write", file.path(), e))?;
        }
        write_index_records(
            &self.index_dir,
            self.config.index_segment_bytes,
            &mut st.index,
            &records,
        )?;
        if let (Some(first), Some(last)) = (records.first(), records.last()) {
            st.entries = Some((
                st.entries.map_or(first.index, |(f, _)| f),
                TermIndex {
                    term: last.term,
                    index: last.index,
                },
            ));
            st.last_written = Some(durable_of(last));
        }
        Ok(())
    }

    /// Makes sure `size` bytes fit at the write position, rolling to a new segment if needed.
    pub(super) fn ensure_room(&self, st: &mut State, size: u64) -> Result<(), StoreError> {
        let segment_bytes = self.config.data_segment_bytes;
        if size > segment_bytes {
            return Err(StoreError::EntryTooLarge {
                size_bytes: size,
                segment_bytes,
            });
        }
        if let Some(seg) = st.data.last() {
            if st.write_pos + size <= seg.end() {
                return Ok(());
            }
            let remaining = seg.end() - st.write_pos;
            if remaining >= 8 {
                let blank = codec::encode_blank(u32::try_from(remaining).unwrap_or(u32::MAX));
                seg.file
                    .write(st.write_pos - seg.start, &blank)
                    .map_err(|e| StoreError::io("write", seg.file.path(), e))?;
            }
            st.write_pos = seg.end();
        }
        let start = st.write_pos;
        let path = self.data_dir.join(format!("{start:020}"));
        let file = MmapFile::create(&path, segment_bytes)
            .map_err(|e| StoreError::io("create segment", &path, e))?;
        meta::sync_dir(&self.data_dir)?;
        tracing::debug!(path = %path.display(), "rolled to a new data segment");
        st.data.push(DataSegment {
            start,
            file: Arc::new(file),
            first_index: None,
        });
        Ok(())
    }

    pub(super) fn index_record(&self, st: &State, index: u64) -> Option<IndexRecord> {
        let byte = index.checked_mul(INDEX_RECORD_BYTES)?;
        let (start, file) = st.index.range(..=byte).next_back()?;
        if byte + INDEX_RECORD_BYTES > start + file.len() {
            return None;
        }
        file.with_bytes(byte - start, INDEX_RECORD_BYTES, codec::decode_index)
            .filter(|r| r.index == index)
    }

    pub(super) fn missing_index(&self, index: u64) -> StoreError {
        StoreError::Corrupt {
            path: self.index_dir.clone(),
            offset: index * INDEX_RECORD_BYTES,
            reason: format!("no index record for present entry {index}"),
        }
    }

    pub(super) fn segment_of(&self, st: &State, position: u64) -> usize {
        let i = st.data.partition_point(|s| s.start <= position);
        assert!(
            i > 0 && position < st.data[i - 1].end(),
            "position {position} is in no data segment"
        );
        i - 1
    }

    pub(super) fn read_at(&self, st: &State, index: u64) -> Result<StoredEntry, StoreError> {
        let rec = self
            .index_record(st, index)
            .ok_or_else(|| self.missing_index(index))?;
        let seg = &st.data[self.segment_of(st, rec.position)];
        let offset = rec.position - seg.start;
        let corrupt = |reason: String| StoreError::Corrupt {
            path: seg.file.path().to_path_buf(),
            offset,
            reason,
        };
        if offset + u64::from(rec.size) > seg.file.len() {
            return Err(corrupt(format!(
                "entry {index} of {} bytes runs past the segment end",
                rec.size
            )));
        }
        let frame = seg.file.bytes(offset, u64::from(rec.size));
        let h = match codec::decode_header(&frame) {
            Frame::Entry(h) => h,
            Frame::Blank { .. } => {
                return Err(corrupt(format!(
                    "entry {index}: blank record where an entry belongs"
                )));
            }
            Frame::Invalid(why) => return Err(corrupt(format!("entry {index}: {why}"))),
        };
        if (h.index, h.term, h.position, h.size) != (rec.index, rec.term, rec.position, rec.size) {
            return Err(corrupt(format!(
                "entry {index}: header {h:?} does not match index record {rec:?}"
            )));
        }
        // Committed bytes never change: hash them once per process, not on every read.
        let committed = st.committed.is_some_and(|c| index <= c.index);
        if !(committed && self.verified.contains(index)) {
            if !codec::verify_crc(&frame, h.crc) {
                return Err(corrupt(format!("entry {index}: crc mismatch")));
            }
            if committed {
                self.verified.insert(index);
            }
        }
        Ok(StoredEntry {
            index,
            term: h.term,
            kind: h.kind,
            position: rec.position,
            body: frame.slice(ENTRY_HEADER_LEN..),
        })
    }

    pub(super) fn delete_files(
        &self,
        files: impl IntoIterator<Item = PathBuf>,
        dir: &Path,
    ) -> Result<(), StoreError> {
        let mut any = false;
        for f in files {
            tracing::info!(path = %f.display(), "deleting segment");
            fs::remove_file(&f).map_err(|e| StoreError::io("delete segment", &f, e))?;
            any = true;
        }
        if any {
            meta::sync_dir(dir)?;
        }
        Ok(())
    }
}

pub(super) fn durable_of(r: &IndexRecord) -> Durable {
    Durable {
        index: r.index,
        term: r.term,
        position: r.position,
        size: r.size,
    }
}

pub(super) fn failed_error(dir: &Path, reason: &str) -> StoreError {
    StoreError::io(
        "append after failed fsync",
        dir,
        std::io::Error::other(reason.to_string()),
    )
}

pub(super) fn lock_dir(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join("lock");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StoreError::io("open", &path, e))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(StoreError::Locked { path }),
        Err(e) => Err(StoreError::io("flock", &path, e.into())),
    }
}

/// Writes records of consecutive indexes at byte `index * 32` of the index files, creating the
/// segments that hold them: one write per index segment.
pub(super) fn write_index_records(
    index_dir: &Path,
    segment_bytes: u64,
    segments: &mut BTreeMap<u64, Arc<MmapFile>>,
    records: &[IndexRecord],
) -> Result<(), StoreError> {
    let mut rest = records;
    while let Some(first) = rest.first() {
        let byte = first
            .index
            .checked_mul(INDEX_RECORD_BYTES)
            .expect("index overflow");
        let start = byte - byte % segment_bytes;
        let room = usize::try_from((start + segment_bytes - byte) / INDEX_RECORD_BYTES)
            .unwrap_or(usize::MAX);
        let (run, after) = rest.split_at(rest.len().min(room));
        let file = index_segment(index_dir, segment_bytes, segments, start)?;
        let mut buf = Vec::with_capacity(run.len() * INDEX_RECORD_LEN);
        for (i, r) in run.iter().enumerate() {
            assert_eq!(
                r.index,
                first.index + i as u64,
                "index records of one append are consecutive"
            );
            buf.extend_from_slice(&codec::encode_index(r));
        }
        file.write(byte - start, &buf)
            .map_err(|e| StoreError::io("write", file.path(), e))?;
        rest = after;
    }
    Ok(())
}

/// The index segment starting at byte `start`, created (and its directory synced) if missing.
pub(super) fn index_segment<'a>(
    index_dir: &Path,
    segment_bytes: u64,
    segments: &'a mut BTreeMap<u64, Arc<MmapFile>>,
    start: u64,
) -> Result<&'a Arc<MmapFile>, StoreError> {
    Ok(match segments.entry(start) {
        std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
        std::collections::btree_map::Entry::Vacant(v) => {
            let path = index_dir.join(format!("{start:020}"));
            let file = MmapFile::create(&path, segment_bytes)
                .map_err(|e| StoreError::io("create index segment", &path, e))?;
            meta::sync_dir(index_dir)?;
            v.insert(Arc::new(file))
        }
    })
}
