//! raft-log: a DLedger-style Raft replicated commitlog.
//!
//! A group of peers (`dLegerPeers=n0-127.0.0.1:40911;n1-…;n2-…`) elects a leader and replicates
//! opaque entries into preallocated, memory-mapped segment files. An append is acknowledged once
//! a majority of the group has the entry: in its page cache under `ASYNC_FLUSH`, fsynced under
//! `SYNC_FLUSH`. Readers tail the committed log from any index; retention deletes whole old
//! segments behind an application snapshot.
//!
//! raft-log knows nothing about messages: entries are bytes. RaftMQ's broker builds its message
//! store on it.
//!
//! # Quickstart
//!
//! ```no_run
//! # async fn run() -> raft_log::Result<()> {
//! use raft_log::{Config, RaftLogNode};
//!
//! let peers = "n0-127.0.0.1:40911;n1-127.0.0.1:40912;n2-127.0.0.1:40913";
//! // One of these per peer, each with its own dLegerSelfId.
//! let node = RaftLogNode::start(Config::new("RaftNode00", peers, "n0", "/tmp/raftlog")?).await?;
//! if node.role().borrow().role == raft_log::Role::Leader {
//!     let at = node.append(bytes::Bytes::from_static(b"hello")).await?;
//!     println!("committed at index {} (position {})", at.index, at.position);
//! }
//! let mut tail = node.committed_entries(1);
//! let first = tail.next().await?;
//! # let _ = first;
//! # Ok(()) }
//! ```
//!
//! # Layers
//!
//! - [`store`]: the segment files, entry framing, recovery and group-commit flushing.
//! - `engine` (private): the only module that names openraft types; storage, state machine,
//!   gRPC network and server.
//! - [`RaftLogNode`]: the public API in DLedger's terms.

#![warn(missing_docs)]

mod append;
pub mod config;
mod engine;
pub mod error;
mod forward;
pub mod metrics;
pub mod net;
mod node;
mod preferred_leader;
mod retention;
pub mod snapshot;
pub mod store;
mod types;

pub use config::{Config, FlushDiskType, StoreConfig};
pub use error::{ConfigError, Error, Result, StoreError};
pub use node::{CommittedEntries, RaftLogNode};
pub use types::{Appended, Metrics, PeerProgress, Role, RoleState};
