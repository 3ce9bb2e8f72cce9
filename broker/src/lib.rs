//! RaftMQ's broker: RocketMQ semantics (topics, queues, consumer groups, the RocketMQ 5 gRPC
//! API) on top of the raft-log commitlog, with the binaries `mqbroker`, `mqadmin` and `mqbench`.
//!
//! Built so far: the log commands and the replicated state machine (topics, consume queues,
//! consumer progress with pop/ack/invisible-time semantics, FIFO groups, delay, dead letters).
//! Not built yet: the gRPC services, the binaries and fast-try; see ARCHITECTURE.md.

#![warn(missing_docs)]

mod codec;
pub mod command;
pub mod state;
pub mod store;

pub use codec::DecodeError;
