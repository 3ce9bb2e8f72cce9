//! The on-disk log: DLedger-shaped mmap segments with CRC32C-framed entries.
//!
//! Layout of a store directory (`<storePathRootDir>/dledger-<selfId>/`):
//!
//! ```text
//! lock                      flock'ed while open: one process per store
//! meta                      vote, committed, purged, durable checkpoint (see meta.rs)
//! data/00000000000000000000 preallocated data segments, named by their start position
//! index/00000000000000000000 preallocated index segments of 32-byte records, named by start byte
//! ```
//!
//! Invariants (checked with asserts, kept in release builds):
//! - data segments are contiguous: each starts where the previous one ends;
//! - entries in the data log have consecutive indexes, and each header records its own position;
//! - an index record for index `i` lives at byte `i * 32` of the index files and points at `i`;
//! - bytes of committed entries are frozen (never written again), see mmap.rs.
//!
//! raft-log's store knows nothing about openraft: the engine adapter converts.

mod codec;
mod entry;
mod flusher;
mod meta;
mod mmap;
mod recovery;
mod shared;
mod verified;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

pub use codec::EntryKind;
pub use entry::{LogState, NewEntry, SegmentInfo, StoredEntry};
pub use meta::{TermIndex, VoteRecord};

use crate::config::{
    ENTRY_HEADER_BYTES, ENTRY_HEADER_LEN, FlushDiskType, INDEX_RECORD_BYTES, StoreConfig,
};
use crate::error::StoreError;
use crate::metrics::LogMetrics;
use flusher::{Completion, FlushHandle};
use meta::MetaFile;
use shared::{DataSegment, Shared, durable_of, failed_error, lock_dir};

/// The on-disk log. Cheap to clone; all clones share one store.
#[derive(Clone, Debug)]
pub struct LogStore {
    shared: Arc<Shared>,
    flusher: Arc<FlushHandle>,
}

impl LogStore {
    /// Opens (or creates) the store in `config.dir`, recovering its tail.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when data the durable checkpoint covers does not verify,
    /// [`StoreError::Locked`] when another process has the store open, and I/O errors.
    #[tracing::instrument(level = "info", skip_all, fields(dir = %config.dir.display()))]
    pub fn open(config: StoreConfig) -> Result<LogStore, StoreError> {
        config.validate().map_err(|e| StoreError::Corrupt {
            path: config.dir.clone(),
            offset: 0,
            reason: format!("invalid store config: {e}"),
        })?;
        let data_dir = config.dir.join("data");
        let index_dir = config.dir.join("index");
        for d in [&config.dir, &data_dir, &index_dir] {
            fs::create_dir_all(d).map_err(|e| StoreError::io("create directory", d, e))?;
        }
        let lock = lock_dir(&config.dir)?;
        let meta = MetaFile::load(&config.dir)?;
        let state = recovery::recover(&config, &data_dir, &index_dir, meta.get())?;
        tracing::info!(
            entries = ?state.entries,
            purged = ?state.purged,
            write_pos = state.write_pos,
            "store opened"
        );
        let shared = Arc::new(Shared {
            config,
            metrics: Arc::new(LogMetrics::new()),
            data_dir,
            index_dir,
            state: RwLock::new(state),
            meta: Mutex::new(meta),
            verified: verified::Verified::default(),
            _lock: lock,
        });
        let flusher = Arc::new(FlushHandle::start(Arc::clone(&shared))?);
        Ok(LogStore { shared, flusher })
    }

    /// The store's event metrics (append and fsync latency, purges; the engine adds snapshot
    /// and leader-change counts).
    pub fn metrics(&self) -> Arc<LogMetrics> {
        Arc::clone(&self.shared.metrics)
    }

    /// The store's configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.shared.config
    }

    /// The extent of the log.
    pub fn log_state(&self) -> LogState {
        let st = self.shared.read_state();
        LogState {
            entries: st.entries,
            purged: st.purged,
        }
    }

    /// Appends `entries`, which must continue the log. They are readable when this returns;
    /// `on_durable` runs once they count as stored under the flush policy: at once under
    /// ASYNC_FLUSH, after fdatasync under SYNC_FLUSH.
    ///
    /// # Errors
    /// [`StoreError::NonContiguous`] or [`StoreError::EntryTooLarge`] (nothing is written), I/O
    /// errors creating segments, or an earlier fsync failure.
    #[tracing::instrument(level = "trace", skip_all, fields(n = entries.len()))]
    pub fn append(
        &self,
        entries: &[NewEntry<'_>],
        on_durable: Option<Completion>,
    ) -> Result<(), StoreError> {
        let upto = {
            let mut st = self.shared.write_state();
            if let Some(reason) = &st.failed {
                return Err(failed_error(&self.shared.config.dir, reason));
            }
            self.shared.check_append(&st, entries)?;
            let _timer = self.shared.metrics.append_seconds.start_timer();
            if let Err(e) = self.shared.append_all(&mut st, entries) {
                // Bytes may be half written and the write position has moved: stop here and let
                // recovery, which cuts a torn tail, sort it out on the next open.
                st.failed.get_or_insert_with(|| e.to_string());
                return Err(e);
            }
            st.write_pos
        };
        if let Some(done) = on_durable {
            match self.shared.config.flush_disk_type {
                FlushDiskType::AsyncFlush => done(Ok(())),
                FlushDiskType::SyncFlush => self.flusher.wait_for(upto, done),
            }
        }
        Ok(())
    }

    /// Reads the entry at `index`; `None` when it is not in the log.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when the entry does not verify.
    pub fn read(&self, index: u64) -> Result<Option<StoredEntry>, StoreError> {
        let st = self.shared.read_state();
        match st.entries {
            Some((first, last)) if first <= index && index <= last.index => {
                self.shared.read_at(&st, index).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Reads entries in `[start, end)`, stopping early after `bytes_max` bytes of bodies (always
    /// returning at least one entry when `start` is present).
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when an entry does not verify.
    pub fn read_range(
        &self,
        start: u64,
        end: u64,
        bytes_max: usize,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        let st = self.shared.read_state();
        let Some((first, last)) = st.entries else {
            return Ok(Vec::new());
        };
        let start = start.max(first);
        let end = end.min(last.index.saturating_add(1));
        let mut out = Vec::with_capacity(
            usize::try_from(end.saturating_sub(start))
                .unwrap_or(0)
                .min(4096),
        );
        let mut bytes = 0usize;
        for i in start..end {
            let e = self.shared.read_at(&st, i)?;
            bytes += e.body.len();
            out.push(e);
            if bytes >= bytes_max {
                break;
            }
        }
        Ok(out)
    }

    /// Where the next entry will be written: the end of this replica's data log.
    pub fn write_position(&self) -> u64 {
        self.shared.read_state().write_pos
    }

    /// The position of entry `index` in this replica's data log.
    pub fn position_of(&self, index: u64) -> Option<u64> {
        let st = self.shared.read_state();
        match st.entries {
            Some((first, last)) if first <= index && index <= last.index => {
                self.shared.index_record(&st, index).map(|r| r.position)
            }
            _ => None,
        }
    }

    /// Removes every entry after `last_kept` (all of them when `None`). Durable on return.
    ///
    /// # Errors
    /// I/O errors; the log is unchanged if the first write fails.
    ///
    /// # Panics
    /// When asked to remove a committed entry: Raft never does, so it is a bug.
    #[tracing::instrument(level = "debug", skip(self))]
    pub fn truncate_after(&self, last_kept: Option<u64>) -> Result<(), StoreError> {
        let mut st = self.shared.write_state();
        let Some((first, last)) = st.entries else {
            return Ok(());
        };
        let first_removed = last_kept.map_or(first, |k| k + 1).max(first);
        if first_removed > last.index {
            return Ok(());
        }
        if let Some(c) = st.committed {
            assert!(
                first_removed > c.index,
                "truncate from {first_removed} would remove committed entry {}",
                c.index
            );
        }
        let rec = self
            .shared
            .index_record(&st, first_removed)
            .ok_or_else(|| self.shared.missing_index(first_removed))?;
        let seg_pos = self.shared.segment_of(&st, rec.position);
        let seg = &st.data[seg_pos];
        let offset = rec.position - seg.start;
        // Zero the first removed header and sync it before anything else: a crash after this
        // point can never resurrect the removed entries.
        let zero_len = (ENTRY_HEADER_BYTES).min(seg.file.len() - offset);
        let zeros = [0u8; ENTRY_HEADER_LEN];
        let zeros = &zeros[..usize::try_from(zero_len).unwrap_or(ENTRY_HEADER_LEN)];
        seg.file
            .write(offset, zeros)
            .map_err(|e| StoreError::io("write", seg.file.path(), e))?;
        seg.file
            .sync()
            .map_err(|e| StoreError::io("fdatasync", seg.file.path(), e))?;
        if seg.first_index == Some(first_removed) {
            st.data[seg_pos].first_index = None;
        }
        let removed: Vec<DataSegment> = st.data.drain(seg_pos + 1..).collect();
        st.write_pos = rec.position;
        st.synced_pos = st.synced_pos.min(rec.position);
        st.truncate_generation += 1;
        st.entries = if first_removed > first {
            let kept = self
                .shared
                .index_record(&st, first_removed - 1)
                .ok_or_else(|| self.shared.missing_index(first_removed - 1))?;
            st.last_written = Some(durable_of(&kept));
            Some((
                first,
                TermIndex {
                    term: kept.term,
                    index: kept.index,
                },
            ))
        } else {
            st.last_written = None;
            None
        };
        // The durable checkpoint must not name a removed entry.
        let keep = st.last_written;
        self.shared.lock_meta().update(|m| {
            if m.durable.is_some_and(|d| d.index >= first_removed) {
                m.durable = keep;
            }
        })?;
        drop(st);
        self.shared.delete_files(
            removed.iter().map(|s| s.file.path().to_path_buf()),
            &self.shared.data_dir,
        )
    }

    /// Deletes every entry up to and including `upto`, which is recorded durably first. Whole
    /// segments are deleted once none of their entries remain.
    ///
    /// # Errors
    /// I/O errors writing the meta file or deleting segments.
    #[tracing::instrument(level = "debug", skip(self))]
    pub fn purge(&self, upto: TermIndex) -> Result<(), StoreError> {
        self.shared.lock_meta().update(|m| {
            if m.purged.is_none_or(|p| p.index < upto.index) {
                m.purged = Some(upto);
            }
        })?;
        let (data_files, index_files) = {
            let mut st = self.shared.write_state();
            if st.purged.is_some_and(|p| p.index >= upto.index) {
                return Ok(());
            }
            st.purged = Some(upto);
            st.entries = match st.entries {
                Some((first, last)) if upto.index < last.index => {
                    Some((first.max(upto.index + 1), last))
                }
                _ => None,
            };
            let first_kept = upto.index + 1;
            self.shared.verified.forget_below(first_kept);
            let mut data_files = Vec::new();
            while st.data.len() > 1 && st.data[1].first_index.is_some_and(|f| f <= first_kept) {
                data_files.push(st.data.remove(0).file.path().to_path_buf());
            }
            self.shared
                .metrics
                .segments_purged
                .inc_by(data_files.len() as u64);
            let index_seg = self.shared.config.index_segment_bytes;
            let keep_from = first_kept.saturating_mul(INDEX_RECORD_BYTES);
            let doomed: Vec<u64> = st
                .index
                .range(..keep_from)
                .filter(|(s, _)| *s + index_seg <= keep_from)
                .map(|(s, _)| *s)
                .collect();
            let index_files: Vec<PathBuf> = doomed
                .iter()
                .filter_map(|s| st.index.remove(s))
                .map(|f| f.path().to_path_buf())
                .collect();
            (data_files, index_files)
        };
        // A checkpoint in a deleted segment could not be found at recovery: drop it.
        let first_start = self.shared.read_state().data.first().map(|s| s.start);
        self.shared.lock_meta().update(|m| {
            if m.durable
                .is_some_and(|d| first_start.is_none_or(|s| d.position < s))
            {
                m.durable = None;
            }
        })?;
        self.shared
            .delete_files(data_files, &self.shared.data_dir)?;
        self.shared
            .delete_files(index_files, &self.shared.index_dir)
    }

    /// Saves the vote durably.
    ///
    /// # Errors
    /// I/O errors writing the meta file.
    #[tracing::instrument(level = "debug", skip(self))]
    pub fn save_vote(&self, vote: VoteRecord) -> Result<(), StoreError> {
        self.shared.lock_meta().update(|m| m.vote = Some(vote))
    }

    /// The last saved vote.
    pub fn read_vote(&self) -> Option<VoteRecord> {
        self.shared.lock_meta().get().vote
    }

    /// Records the committed entry. Its bytes (and everything before) become immutable, so reads
    /// of them share the mapping without a copy. Persisted with the next checkpoint.
    pub fn save_committed(&self, committed: Option<TermIndex>) {
        let mut st = self.shared.write_state();
        let Some(c) = committed else { return };
        if st.committed.is_some_and(|old| old.index >= c.index) {
            return;
        }
        st.committed = Some(c);
        let present = st
            .entries
            .is_some_and(|(first, last)| first <= c.index && c.index <= last.index);
        if let Some(rec) = present
            .then(|| self.shared.index_record(&st, c.index))
            .flatten()
        {
            let end = rec.position + u64::from(rec.size);
            for seg in st.data.iter().take_while(|s| s.start < end) {
                seg.file.freeze_to((end - seg.start).min(seg.file.len()));
            }
        }
    }

    /// The committed entry, as last saved (possibly older than the cluster's).
    pub fn read_committed(&self) -> Option<TermIndex> {
        self.shared.read_state().committed
    }

    /// The entry the durable checkpoint names: on disk together with everything before it.
    pub fn durable_point(&self) -> Option<TermIndex> {
        self.shared.lock_meta().get().durable.map(|d| TermIndex {
            term: d.term,
            index: d.index,
        })
    }

    /// Syncs everything written so far and writes a durable checkpoint. Blocks.
    ///
    /// # Errors
    /// I/O errors of the sync or checkpoint.
    pub fn sync(&self) -> Result<(), StoreError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.flusher.sync_now(Box::new(move |r| {
            let _ = tx.send(r);
        }));
        match rx.recv() {
            Ok(r) => r.map_err(|e| StoreError::io("sync", &self.shared.config.dir, e)),
            Err(_) => Err(StoreError::Closed),
        }
    }

    /// Stops the store as a crash would: no final sync, no checkpoint. For crash tests, which
    /// then damage the files the way lost page-cache writes would.
    #[doc(hidden)]
    pub fn simulate_crash(self) {
        self.flusher.mark_crashed();
    }

    /// Data segments, oldest first, for retention.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        let st = self.shared.read_state();
        st.data
            .iter()
            .map(|s| SegmentInfo {
                path: s.file.path().to_path_buf(),
                start: s.start,
                first_index: s.first_index,
                modified: fs::metadata(s.file.path())
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH),
                size_bytes: s.file.len(),
            })
            .collect()
    }

    /// Checks every present entry (CRC, header, index record). Slow: reads the whole log.
    ///
    /// # Errors
    /// The first entry that does not verify, as [`StoreError::Corrupt`].
    pub fn verify(&self) -> Result<u64, StoreError> {
        let st = self.shared.read_state();
        let Some((first, last)) = st.entries else {
            return Ok(0);
        };
        for i in first..=last.index {
            self.shared.read_at(&st, i)?;
        }
        Ok(last.index - first + 1)
    }
}

/// Disk usage of the file system holding `dir`, in percent, as `df` shows it: used / (used +
/// available to unprivileged users). Blocks reserved for root count as neither, so a file system
/// with a large reserve does not look fuller than the operator sees.
pub fn disk_used_percent(dir: &Path) -> Option<u32> {
    let s = rustix::fs::statvfs(dir).ok()?;
    let used = s.f_blocks.checked_sub(s.f_bfree)?;
    let total = used.checked_add(s.f_bavail).filter(|t| *t > 0)?;
    u32::try_from((used * 100).div_ceil(total)).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn disk_usage_is_a_percentage_like_df() {
        let dir = tempfile::tempdir().unwrap();
        let used = super::disk_used_percent(dir.path()).expect("statvfs works on a temp dir");
        assert!(used <= 100, "{used}");
    }
}
