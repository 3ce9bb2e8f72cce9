//! raft-log's openraft type configuration and the aliases the adapter speaks in: a leaf that
//! every other module of `engine/` names, and that names none of them.

use std::fmt;

use bytes::Bytes;

/// The application payload of a normal entry: opaque bytes.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EntryData(pub Bytes);

impl fmt::Debug for EntryData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EntryData({} bytes)", self.0.len())
    }
}

impl fmt::Display for EntryData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0.len())
    }
}

/// raft-log's openraft type configuration. Standard Raft leader ids (one leader per term), so a
/// log id is just (term, index), exactly what the on-disk entry header stores. Written out by
/// hand because `declare_raft_types!` cannot set the generic `Responder<T>`.
#[derive(Debug, Clone, Copy, Default, Eq, PartialEq, Ord, PartialOrd)]
pub struct TypeConfig;

impl openraft::RaftTypeConfig for TypeConfig {
    type D = EntryData;
    type R = ();
    type NodeId = u64;
    type Node = openraft::BasicNode;
    type Term = u64;
    type LeaderId = openraft::impls::leader_id_std::LeaderId<u64, u64>;
    type Vote = openraft::impls::Vote<Self::LeaderId>;
    type Payload = openraft::EntryPayload<Self::D, Self::NodeId, Self::Node>;
    type Entry =
        openraft::Entry<<Self::LeaderId as openraft::vote::RaftLeaderId>::Committed, Self::Payload>;
    type AsyncRuntime = openraft::impls::TokioRuntime;
    type Responder<T>
        = CommitResponder<T>
    where
        T: openraft::OptionalSend + 'static;
    type Batch<T>
        = openraft::impls::InlineBatch<T>
    where
        T: openraft::OptionalSend + 'static;
    type ErrorSource = openraft::impls::BoxedErrorSource;
}

/// Tells a writer that its entry committed (with its log id), or, when it never commits on this
/// leader, what happened instead. An append is acknowledged at commit, not at apply.
pub struct CommitResponder<T> {
    tx: Option<tokio::sync::oneshot::Sender<Result<LogId, T>>>,
}

impl<T> CommitResponder<T> {
    pub(crate) fn new() -> (Self, tokio::sync::oneshot::Receiver<Result<LogId, T>>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (CommitResponder { tx: Some(tx) }, rx)
    }
}

impl<T: openraft::OptionalSend + 'static> openraft::raft::responder::Responder<TypeConfig, T>
    for CommitResponder<T>
{
    fn on_commit(&mut self, log_id: LogId) {
        if let Some(tx) = self.tx.take() {
            // The writer may have given up (timeout); nobody else wants the answer.
            let _ = tx.send(Ok(log_id));
        }
    }

    fn on_complete(self, result: T) {
        if let Some(tx) = self.tx {
            let _ = tx.send(Err(result));
        }
    }
}

/// Snapshot bytes as they travel between the state machine and the network.
pub(crate) type SnapshotData = Bytes;

pub(crate) type Entry = openraft::alias::EntryOf<TypeConfig>;
pub(crate) type LogId = openraft::alias::LogIdOf<TypeConfig>;
pub(crate) type Vote = openraft::alias::VoteOf<TypeConfig>;
pub(crate) type Membership = openraft::Membership<u64, openraft::BasicNode>;
pub(crate) type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
pub(crate) type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
pub(crate) type Snapshot = openraft::alias::SnapshotOf<TypeConfig, SnapshotData>;

/// Builds a log id from raft-log's own terms.
pub(crate) fn log_id(term: u64, index: u64) -> LogId {
    use openraft::vote::RaftLeaderIdExt as _;
    openraft::LogId::new(
        <TypeConfig as openraft::RaftTypeConfig>::LeaderId::new_committed(term, 0),
        index,
    )
}
