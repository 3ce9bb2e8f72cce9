//! The store's public record types: what is appended, what is read back, and the log's extent.

use std::path::PathBuf;
use std::time::SystemTime;

use bytes::Bytes;

use super::codec::EntryKind;
use super::meta::TermIndex;

/// An entry to append.
#[derive(Clone, Copy, Debug)]
pub struct NewEntry<'a> {
    /// Raft index.
    pub index: u64,
    /// Raft term.
    pub term: u64,
    /// What it holds.
    pub kind: EntryKind,
    /// The body.
    pub body: &'a [u8],
}

/// An entry read back from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEntry {
    /// Raft index.
    pub index: u64,
    /// Raft term.
    pub term: u64,
    /// What it holds.
    pub kind: EntryKind,
    /// This replica's byte position of the entry header in the data log.
    pub position: u64,
    /// The body; shares the mapped file without a copy once the entry is committed.
    pub body: Bytes,
}

/// The extent of the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogState {
    /// The first and last present entries; `None` when the log holds no entry.
    pub entries: Option<(u64, TermIndex)>,
    /// The last purged entry.
    pub purged: Option<TermIndex>,
}

impl LogState {
    /// The last entry present, or the last purged one when the log is empty.
    pub fn last(&self) -> Option<TermIndex> {
        self.entries.map(|(_, last)| last).or(self.purged)
    }
}

/// What retention needs to know about one data segment.
#[derive(Clone, Debug)]
pub struct SegmentInfo {
    /// The file.
    pub path: PathBuf,
    /// Its start position.
    pub start: u64,
    /// The index of the first entry that starts in it.
    pub first_index: Option<u64>,
    /// Last modification time.
    pub modified: SystemTime,
    /// Its size in bytes.
    pub size_bytes: u64,
}
