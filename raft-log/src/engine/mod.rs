//! The adapter between raft-log and openraft: the only module that names openraft types.
//!
//! openraft 0.10 is an alpha pinned with `=`; alphas are not semver-compatible with each other,
//! so every openraft type, trait implementation and conversion lives under `engine/`. An alpha
//! bump touches this folder and nothing else. Outside it, raft-log speaks in its own terms:
//! log indexes and terms as `u64`, node ids as `u64`, entry bodies as [`bytes::Bytes`].

pub(crate) mod convert;
pub(crate) mod driver;
pub(crate) mod log_store;
pub(crate) mod network;
pub(crate) mod server;
pub(crate) mod state_machine;

pub(crate) use driver::Engine;
#[cfg(test)]
mod storage_suite;

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

openraft::declare_raft_types!(
    /// raft-log's openraft type configuration. Standard Raft leader ids (one leader per term),
    /// so a log id is just (term, index), exactly what the on-disk entry header stores.
    pub TypeConfig:
        D = EntryData,
        R = (),
        NodeId = u64,
        Node = openraft::BasicNode,
        Term = u64,
        LeaderId = openraft::impls::leader_id_std::LeaderId<u64, u64>,
);

/// Snapshot bytes as they travel between the state machine and the network.
pub(crate) type SnapshotData = Bytes;

pub(crate) type Raft = openraft::Raft<TypeConfig, state_machine::StateMachine>;
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
