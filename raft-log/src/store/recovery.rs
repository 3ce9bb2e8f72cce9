//! Recovery: rebuilds a store's in-memory state from its files when it opens.
//!
//! The log up to the durable checkpoint (in `meta`) is trusted, but its last entry must verify
//! where the checkpoint says it is, and so must the first entry of every segment it covers:
//! anything else is corruption, reported with the file and offset. Past the checkpoint the scan
//! keeps each entry that verifies and follows its predecessor, re-indexes it, and cuts the log at
//! the first one that does not (a torn tail).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::codec::{self, EntryHeader, Frame, IndexRecord};
use super::meta::{Durable, Meta, TermIndex};
use super::mmap::MmapFile;
use super::shared::{DataSegment, State, durable_of, index_segment, write_index_records};
use crate::config::{ENTRY_HEADER_BYTES, ENTRY_HEADER_LEN, INDEX_RECORD_BYTES, StoreConfig};
use crate::error::StoreError;

/// The index of the first entry of the segment at `start`, verified. A segment is only ever
/// created to hold an entry written at its start, so one that the durable checkpoint covers must
/// begin with an entry that verifies; anything else is corruption, reported with the file and
/// offset rather than read as a shorter log. Past the checkpoint a bad start is a torn tail,
/// which the scan cuts.
fn segment_first_index(
    file: &Arc<MmapFile>,
    start: u64,
    durable: Option<Durable>,
) -> Result<Option<u64>, StoreError> {
    let covered = durable.is_some_and(|d| d.position >= start);
    let corrupt = |reason: String| StoreError::Corrupt {
        path: file.path().to_path_buf(),
        offset: 0,
        reason,
    };
    let header = file.with_bytes(0, ENTRY_HEADER_BYTES.min(file.len()), codec::decode_header);
    let h = match header {
        Frame::Entry(h) if h.position == start && u64::from(h.size) <= file.len() => h,
        Frame::Entry(h) if covered => {
            return Err(corrupt(format!(
                "first entry records position {} and size {}",
                h.position, h.size
            )));
        }
        Frame::Invalid(why) if covered => return Err(corrupt(format!("first entry: {why}"))),
        Frame::Blank { .. } if covered => {
            return Err(corrupt("segment starts with padding".into()));
        }
        _ => return Ok(None),
    };
    if codec::verify_crc(&file.bytes(0, u64::from(h.size)), h.crc) {
        Ok(Some(h.index))
    } else if covered {
        Err(corrupt(format!(
            "first entry {} does not verify (crc)",
            h.index
        )))
    } else {
        Ok(None)
    }
}

/// Lists `dir`'s segment files, named by a 20-digit start.
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| StoreError::io("list", dir, e))? {
        let entry = entry.map_err(|e| StoreError::io("list", dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        match name.parse::<u64>() {
            Ok(start) if name.len() == 20 => out.push((start, entry.path())),
            _ => {
                tracing::warn!(file = %entry.path().display(), "ignoring a file that is not a segment")
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Rebuilds the in-memory state from the files: trusts the log up to the durable checkpoint,
/// scans and re-indexes what follows, and cuts a torn tail.
pub(super) fn recover(
    config: &StoreConfig,
    data_dir: &Path,
    index_dir: &Path,
    meta: Meta,
) -> Result<State, StoreError> {
    let data = open_data_segments(data_dir, meta.durable)?;
    let index = open_index_segments(index_dir)?;
    let mut st = State {
        write_pos: data.first().map_or(0, |s| s.start),
        data,
        index,
        entries: None,
        purged: meta.purged,
        committed: None,
        synced_pos: 0,
        last_written: None,
        truncate_generation: 0,
        failed: None,
    };
    scan_tail(&ScanCtx { config, index_dir }, &mut st, meta.durable)?;
    st.synced_pos = st.write_pos;
    forget_purged(&mut st);
    let last_index = st.entries.map(|(_, l)| l.index);
    st.committed = meta
        .committed
        .filter(|c| last_index.is_some_and(|l| c.index <= l));
    Ok(st)
}

/// Maps the data segments in order, checking that they are contiguous.
fn open_data_segments(
    data_dir: &Path,
    durable: Option<Durable>,
) -> Result<Vec<DataSegment>, StoreError> {
    let mut data: Vec<DataSegment> = Vec::new();
    for (start, path) in list_segments(data_dir)? {
        let file =
            Arc::new(MmapFile::open(&path).map_err(|e| StoreError::io("map segment", &path, e))?);
        if let Some(prev) = data.last()
            && prev.end() != start
        {
            return Err(StoreError::Corrupt {
                path,
                offset: 0,
                reason: format!(
                    "data segments are not contiguous: previous ends at {}",
                    prev.end()
                ),
            });
        }
        let first_index = segment_first_index(&file, start, durable)?;
        data.push(DataSegment {
            start,
            file,
            first_index,
        });
    }
    Ok(data)
}

/// Maps the index segments by their start byte.
fn open_index_segments(index_dir: &Path) -> Result<BTreeMap<u64, Arc<MmapFile>>, StoreError> {
    let mut index = BTreeMap::new();
    for (start, path) in list_segments(index_dir)? {
        let file =
            MmapFile::open(&path).map_err(|e| StoreError::io("map index segment", &path, e))?;
        index.insert(start, Arc::new(file));
    }
    Ok(index)
}

/// Entries at or below the purge point are gone, even if their bytes remain.
fn forget_purged(st: &mut State) {
    if let (Some((first, last)), Some(p)) = (st.entries, st.purged) {
        st.entries = (last.index > p.index).then_some((first.max(p.index + 1), last));
    }
}

struct ScanCtx<'a> {
    config: &'a StoreConfig,
    index_dir: &'a Path,
}

/// Where the scan of the tail stands.
#[derive(Debug, Default)]
struct Cursor {
    /// The index the next entry must have (after the checkpoint or the last entry scanned).
    expected: Option<u64>,
    /// The term of the last entry: the next may not be lower.
    last_term: u64,
    /// The first index present in the log.
    first: Option<u64>,
    /// Entries scanned past the checkpoint.
    scanned: u64,
}

/// Re-reads the log after the durable checkpoint: every entry that verifies and follows its
/// predecessor is kept and re-indexed; the first one that does not ends the log.
fn scan_tail(
    ctx: &ScanCtx<'_>,
    st: &mut State,
    durable: Option<Durable>,
) -> Result<(), StoreError> {
    if st.data.is_empty() {
        return Ok(());
    }
    let mut cursor = match durable {
        Some(d) => resume_at_checkpoint(ctx, st, d)?,
        None => Cursor::default(),
    };
    while let Some(h) = next_entry(st, &cursor) {
        accept_entry(ctx, st, &mut cursor, &h)?;
    }
    cut_tail(st)?;
    tracing::info!(
        scanned = cursor.scanned,
        write_pos = st.write_pos,
        "recovered the log tail"
    );
    Ok(())
}

/// Starts the scan right after the checkpointed entry, which must verify.
fn resume_at_checkpoint(
    ctx: &ScanCtx<'_>,
    st: &mut State,
    d: Durable,
) -> Result<Cursor, StoreError> {
    verify_checkpoint(ctx, st, d)?;
    st.write_pos = d.position + u64::from(d.size);
    let first = first_entry_index(st);
    st.entries = Some((
        first.unwrap_or(d.index).min(d.index),
        TermIndex {
            term: d.term,
            index: d.index,
        },
    ));
    st.last_written = Some(d);
    Ok(Cursor {
        expected: Some(d.index + 1),
        last_term: d.term,
        first,
        scanned: 0,
    })
}

/// The entry the durable checkpoint names must be whole where the checkpoint says it is.
fn verify_checkpoint(ctx: &ScanCtx<'_>, st: &State, d: Durable) -> Result<(), StoreError> {
    let seg_pos = st.data.partition_point(|s| s.start <= d.position);
    let seg = seg_pos
        .checked_sub(1)
        .map(|i| &st.data[i])
        .filter(|s| d.position + u64::from(d.size) <= s.end());
    let Some(seg) = seg else {
        return Err(StoreError::Corrupt {
            path: ctx.config.dir.join("meta"),
            offset: 0,
            reason: format!(
                "durable checkpoint names position {} which no segment holds",
                d.position
            ),
        });
    };
    let offset = d.position - seg.start;
    let frame = seg.file.bytes(offset, u64::from(d.size));
    let ok = matches!(codec::decode_header(&frame), Frame::Entry(h)
        if h.index == d.index && h.term == d.term && h.position == d.position && codec::verify_crc(&frame, h.crc));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Corrupt {
            path: seg.file.path().to_path_buf(),
            offset,
            reason: format!(
                "entry {} named by the durable checkpoint does not verify",
                d.index
            ),
        })
    }
}

/// The header of the entry at the write position, if it verifies and follows the cursor.
/// Skips the padding at a segment's end (moving the write position to the next segment); `None`
/// ends the scan.
fn next_entry(st: &mut State, cursor: &Cursor) -> Option<EntryHeader> {
    loop {
        let seg_pos = st.data.partition_point(|s| s.start <= st.write_pos);
        if seg_pos == 0 || st.write_pos >= st.data[seg_pos - 1].end() {
            return None;
        }
        let seg = &st.data[seg_pos - 1];
        let offset = st.write_pos - seg.start;
        let room = seg.file.len() - offset;
        if room < 8 {
            st.write_pos = seg.end();
            continue;
        }
        let head = seg
            .file
            .with_bytes(offset, ENTRY_HEADER_BYTES.min(room), codec::decode_header);
        let h = match head {
            Frame::Blank { size } if u64::from(size) == room => {
                st.write_pos = seg.end();
                continue;
            }
            Frame::Entry(h) => h,
            Frame::Blank { .. } | Frame::Invalid(_) => return None,
        };
        let size = u64::from(h.size);
        let whole = follows(st, cursor, &h, room)
            && codec::verify_crc(&seg.file.bytes(offset, size), h.crc);
        return whole.then_some(h);
    }
}

/// Whether `h`, read at the write position with `room` bytes left in its segment, can be the
/// next entry of the log.
fn follows(st: &State, cursor: &Cursor, h: &EntryHeader, room: u64) -> bool {
    // Purges past the end of the log leave gaps in the purged region: a jump forward is fine
    // while it lands at or before the first kept index.
    let after_purge = st.purged.is_some_and(|p| {
        cursor
            .expected
            .is_some_and(|x| x < h.index && h.index <= p.index + 1)
    });
    u64::from(h.size) <= room
        && h.position == st.write_pos
        && (cursor.expected.is_none_or(|x| h.index == x) || after_purge)
        && h.term >= cursor.last_term
}

/// Keeps the entry at the write position: re-indexes it and moves the cursor past it.
fn accept_entry(
    ctx: &ScanCtx<'_>,
    st: &mut State,
    cursor: &mut Cursor,
    h: &EntryHeader,
) -> Result<(), StoreError> {
    let rec = IndexRecord {
        position: h.position,
        index: h.index,
        term: h.term,
        size: h.size,
        kind: h.kind,
    };
    rewrite_index(ctx, st, &rec)?;
    let first = *cursor.first.get_or_insert(h.index);
    st.entries = Some((
        first,
        TermIndex {
            term: h.term,
            index: h.index,
        },
    ));
    st.last_written = Some(durable_of(&rec));
    cursor.expected = Some(h.index + 1);
    cursor.last_term = h.term;
    cursor.scanned += 1;
    st.write_pos += u64::from(h.size);
    Ok(())
}

/// The index of the first entry in the oldest segment that has one.
fn first_entry_index(st: &State) -> Option<u64> {
    st.data.iter().find_map(|s| s.first_index)
}

/// Drops everything after the recovered write position: later segments are deleted and the
/// first bytes at the write position zeroed, so a later scan cannot read a stale header there.
fn cut_tail(st: &mut State) -> Result<(), StoreError> {
    let seg_pos = st.data.partition_point(|s| s.start <= st.write_pos);
    if seg_pos == 0 {
        return Ok(());
    }
    let keep = seg_pos.min(st.data.len());
    for s in st.data.drain(keep..) {
        tracing::warn!(path = %s.file.path().display(), "deleting a data segment past the recovered tail");
        if let Err(e) = fs::remove_file(s.file.path()) {
            tracing::warn!(error = %e, "could not delete a segment past the tail");
        }
    }
    let seg = &mut st.data[seg_pos - 1];
    if st.write_pos < seg.end() {
        let offset = st.write_pos - seg.start;
        let n = ENTRY_HEADER_BYTES.min(seg.file.len() - offset);
        let dirty = seg
            .file
            .with_bytes(offset, n, |b| b.iter().any(|&x| x != 0));
        if dirty {
            tracing::warn!(path = %seg.file.path().display(), offset, "cutting a torn tail");
            let zeros = [0u8; ENTRY_HEADER_LEN];
            let zeros = &zeros[..usize::try_from(n).unwrap_or(ENTRY_HEADER_LEN)];
            seg.file
                .write(offset, zeros)
                .map_err(|e| StoreError::io("write", seg.file.path(), e))?;
        }
        if seg.first_index.is_some() && offset == 0 {
            seg.first_index = None;
        }
    }
    Ok(())
}

/// Recovery: makes the index record of `rec` match the data, writing only when it differs.
fn rewrite_index(ctx: &ScanCtx<'_>, st: &mut State, rec: &IndexRecord) -> Result<(), StoreError> {
    let byte = rec.index * INDEX_RECORD_BYTES;
    let start = byte - byte % ctx.config.index_segment_bytes;
    let file = index_segment(
        ctx.index_dir,
        ctx.config.index_segment_bytes,
        &mut st.index,
        start,
    )?;
    let current = file.with_bytes(byte - start, INDEX_RECORD_BYTES, codec::decode_index);
    if current.as_ref() != Some(rec) {
        write_index_records(
            ctx.index_dir,
            ctx.config.index_segment_bytes,
            &mut st.index,
            std::slice::from_ref(rec),
        )?;
    }
    Ok(())
}
