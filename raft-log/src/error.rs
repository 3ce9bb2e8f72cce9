//! raft-log's errors: one enum per concern, fielded variants, and a crate-wide `Result`.
//!
//! Operating errors (a full disk, a torn tail that cannot be repaired, a peer that is down, a
//! request that arrives at a follower) are values of these types. Broken invariants inside
//! raft-log are programmer errors and panic with the values involved.

use std::io;
use std::path::PathBuf;

/// The result type of raft-log's public API.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything raft-log's public API can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid; the error names the key.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The on-disk store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// This node is not the leader. Retry at `leader_id` when it is known.
    #[error("not the leader of group {group}; leader is {}", leader_display(.leader_id, .leader_addr))]
    NotLeader {
        /// The Raft group.
        group: String,
        /// The current leader, when this node knows one.
        leader_id: Option<u64>,
        /// The current leader's address, when known.
        leader_addr: Option<String>,
    },
    /// Too many appends are waiting for their quorum; retry later.
    #[error("busy: {pending} appends already wait for a quorum (maxPendingRequestsNum)")]
    Busy {
        /// The number of appends in flight.
        pending: usize,
    },
    /// The append was not confirmed in time. Its outcome is unknown: it may still commit.
    #[error("append not confirmed within {waited_ms} ms (maxWaitAckTimeMs): outcome unknown")]
    Timeout {
        /// How long the caller waited.
        waited_ms: u64,
    },
    /// A leadership transfer was asked for and `to` had not taken over in time; the old leader
    /// may still lead, or the transfer may still finish.
    #[error("leadership transfer to {to} not done within {waited_ms} ms")]
    TransferTimeout {
        /// The node asked to take over.
        to: String,
        /// How long the caller waited.
        waited_ms: u64,
    },
    /// The append may or may not have committed (its entry was discarded on this node when
    /// leadership changed, but another leader may have it). Deduplicate before retrying.
    #[error("append outcome unknown: {reason}")]
    OutcomeUnknown {
        /// Why.
        reason: String,
    },
    /// The requested index was deleted by retention; the application must restore from a
    /// snapshot and read from `first_index`.
    #[error("index {requested} was purged; the log starts at {first_index}")]
    Purged {
        /// The index asked for.
        requested: u64,
        /// The first index still present.
        first_index: u64,
    },
    /// The entry is larger than the configured maximum.
    #[error("entry body of {size_bytes} bytes exceeds the maximum of {size_bytes_max} bytes")]
    EntryTooLarge {
        /// The body size.
        size_bytes: usize,
        /// The configured maximum.
        size_bytes_max: usize,
    },
    /// The node is shutting down or has stopped.
    #[error("raft-log node is shut down")]
    Shutdown,
    /// A request named a node that is not in `dLegerPeers`.
    #[error("unknown node {node} (not in dLegerPeers)")]
    UnknownNode {
        /// The node asked for.
        node: String,
    },
    /// The Raft engine failed or refused in a way not listed above.
    #[error("raft: {message}")]
    Raft {
        /// What the engine said.
        message: String,
    },
    /// The network layer failed (binding the listen address, for example).
    #[error("network: {message}")]
    Network {
        /// What failed.
        message: String,
    },
}

fn leader_display(id: &Option<u64>, addr: &Option<String>) -> String {
    match (id, addr) {
        (Some(id), Some(addr)) => format!("n{id} at {addr}"),
        (Some(id), None) => format!("n{id}"),
        _ => "unknown".to_string(),
    }
}

/// A configuration error, naming the key and, when read from a file, the line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required key is missing.
    #[error("missing required key {key}")]
    Missing {
        /// The key.
        key: &'static str,
    },
    /// A key has a value raft-log cannot use.
    #[error("invalid value {value:?} for {key}{}: {reason}", line_suffix(.line))]
    Invalid {
        /// The key.
        key: String,
        /// The value as written.
        value: String,
        /// The 1-based line of the conf file, when known.
        line: Option<usize>,
        /// Why it is invalid.
        reason: String,
    },
}

fn line_suffix(line: &Option<usize>) -> String {
    line.map(|l| format!(" (line {l})")).unwrap_or_default()
}

/// An error of the on-disk store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem call failed.
    #[error("{op} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Data before the tail of the log does not verify. Never skipped: an operator must look.
    #[error("corrupt log: {} at offset {offset}: {reason}", .path.display())]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// The byte offset inside that file.
        offset: u64,
        /// What did not verify.
        reason: String,
    },
    /// Another process holds the store's lock file.
    #[error("store {} is locked by another process", .path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// An append did not continue the log.
    #[error("append of index {got} does not continue the log (expected {expected})")]
    NonContiguous {
        /// The next index the log expects.
        expected: u64,
        /// The index offered.
        got: u64,
    },
    /// An entry does not fit in one segment.
    #[error("entry of {size_bytes} bytes does not fit a segment of {segment_bytes} bytes")]
    EntryTooLarge {
        /// The framed entry size.
        size_bytes: u64,
        /// The configured segment size.
        segment_bytes: u64,
    },
    /// The store was closed.
    #[error("store is closed")]
    Closed,
}

impl StoreError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StoreError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

impl From<StoreError> for io::Error {
    fn from(e: StoreError) -> Self {
        let kind = match &e {
            StoreError::Io { source, .. } => source.kind(),
            StoreError::Corrupt { .. } => io::ErrorKind::InvalidData,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}
