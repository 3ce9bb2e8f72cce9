//! The types raft-log's modules share: a node's role, its metrics and an append's place.
//!
//! A leaf: this module imports nothing else of the crate, so every other module (the engine,
//! the node, the policies) can name these types without depending on each other.

/// Where an append landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// The Raft index of the entry: the same on every replica.
    pub index: u64,
    /// The byte position of the entry in the leader's data log.
    pub position: u64,
}

/// A node's role in its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Accepts appends (while it hears from a quorum).
    Leader,
    /// Replicates the leader's log.
    Follower,
    /// Campaigning.
    Candidate,
    /// Replicates but does not vote.
    Learner,
    /// Stopped.
    Shutdown,
}

/// What the role watch publishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleState {
    /// This node's role.
    pub role: Role,
    /// The current term.
    pub term: u64,
    /// The leader this node knows, by DLedger id (`n0`).
    pub leader: Option<String>,
}

/// Replication progress of one peer, as seen by the leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerProgress {
    /// The peer's DLedger id.
    pub id: String,
    /// The last index known to be on the peer.
    pub match_index: Option<u64>,
    /// Entries the peer is behind the leader's last index.
    pub lag: u64,
    /// Milliseconds since the peer last acknowledged a heartbeat or append; `None` when it
    /// never has in this term.
    pub contact_ms: Option<u64>,
}

/// A snapshot of a node's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metrics {
    /// This node's DLedger id.
    pub id: String,
    /// Its role.
    pub role: Role,
    /// The current term.
    pub term: u64,
    /// The leader, if known.
    pub leader: Option<String>,
    /// The last index in the local log.
    pub last_index: Option<u64>,
    /// The highest index known committed.
    pub commit_index: Option<u64>,
    /// The highest index applied (visible to readers).
    pub applied_index: Option<u64>,
    /// The last index deleted by retention.
    pub purged_index: Option<u64>,
    /// Per-peer progress; present on the leader only.
    pub peers: Vec<PeerProgress>,
    /// Milliseconds since this node last heard from a leader: on the leader, since a quorum
    /// last acknowledged it; on a follower, since the last append it accepted. `None` when
    /// never (a node cut off since it started).
    pub leader_contact_ms: Option<u64>,
}
