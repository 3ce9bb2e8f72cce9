//! Why a store operation failed, and what kind of failure a protocol sees.

use std::sync::Arc;

use raft_log::Error as LogError;

use super::checkpoint::RecoveryError;
use crate::state::StateError;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The commitlog refused or failed (not leader, busy, timeout, …).
    #[error(transparent)]
    Log(#[from] LogError),
    /// A log entry could not be decoded.
    #[error("log entry {index}: {source}")]
    Decode {
        /// The entry.
        index: u64,
        /// Why.
        #[source]
        source: crate::codec::DecodeError,
    },
    /// The applied result of a command was not found (evicted, or the entry was not ours).
    #[error("result of log entry {index} is no longer available")]
    ResultLost {
        /// The entry.
        index: u64,
    },
    /// The entry at the proposed index applied as another command kind (a bug).
    #[error("log entry {index} was proposed as {proposed} but applied as {applied}")]
    ResultMismatch {
        /// The entry.
        index: u64,
        /// The command kind proposed.
        proposed: &'static str,
        /// The kind of result applying produced.
        applied: &'static str,
    },
    /// The commitlog accepted a proposal but returned no index for it.
    #[error("the commitlog returned no index for a proposal")]
    NoIndex,
    /// This node did not apply its own entry in time; the write may still land.
    #[error("log entry {index} not applied here within {waited_ms} ms; outcome unknown")]
    ApplyTimeout {
        /// The entry.
        index: u64,
        /// How long this node waited.
        waited_ms: u64,
    },
    /// The store is shutting down.
    #[error("the message store is shut down")]
    Shutdown,
    /// One failure reported to several waiters: the sends of one group-commit entry, the
    /// messages of one send.
    #[error(transparent)]
    Shared {
        /// The entry's failure.
        source: Arc<StoreError>,
    },
    /// A consume-queue unit points at a message that is not there (purged by retention, or
    /// a hole: a message this replica never had).
    #[error("message at log index {index} position {pos} not found")]
    MessageMissing {
        /// Log index.
        index: u64,
        /// Byte position inside the entry.
        pos: u32,
    },
    /// The broker state's files failed (a lookup, a reindex).
    #[error("broker state files: {0}")]
    State(#[from] StateError),
    /// The broker state could not be recovered at start-up.
    #[error("recovering the broker state: {0}")]
    Recovery(#[from] RecoveryError),
}

/// What a protocol needs to know of a [`StoreError`] to choose its status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The group has no reachable leader (after [`MessageStore`](super::MessageStore) waited for one).
    NoLeader,
    /// Too many proposals in flight.
    Busy,
    /// A write was not confirmed in time: it may or may not land.
    OutcomeUnknown,
    /// The entry exceeds the commitlog's entry limit.
    TooLarge,
    /// The store or the node is shutting down.
    Shutdown,
    /// A node id that is not a member of the group.
    UnknownNode,
    /// Anything else: a bug or a disk failure.
    Internal,
}

impl StoreError {
    /// The commitlog error at the bottom of this one, if any.
    pub fn log_error(&self) -> Option<&LogError> {
        match self {
            StoreError::Log(e) => Some(e),
            StoreError::Shared { source } => source.log_error(),
            _ => None,
        }
    }

    /// Which kind of failure this is.
    pub fn kind(&self) -> StoreErrorKind {
        match self {
            StoreError::Log(e) => match e {
                LogError::NotLeader { .. } => StoreErrorKind::NoLeader,
                LogError::Busy { .. } => StoreErrorKind::Busy,
                LogError::Timeout { .. }
                | LogError::OutcomeUnknown { .. }
                | LogError::TransferTimeout { .. } => StoreErrorKind::OutcomeUnknown,
                LogError::EntryTooLarge { .. } => StoreErrorKind::TooLarge,
                LogError::Shutdown => StoreErrorKind::Shutdown,
                LogError::UnknownNode { .. } => StoreErrorKind::UnknownNode,
                _ => StoreErrorKind::Internal,
            },
            StoreError::ApplyTimeout { .. } => StoreErrorKind::OutcomeUnknown,
            StoreError::Shutdown => StoreErrorKind::Shutdown,
            StoreError::Shared { source } => source.kind(),
            StoreError::Decode { .. }
            | StoreError::ResultLost { .. }
            | StoreError::ResultMismatch { .. }
            | StoreError::NoIndex
            | StoreError::MessageMissing { .. }
            | StoreError::State(_)
            | StoreError::Recovery(_) => StoreErrorKind::Internal,
        }
    }
}
