//! RaftMQ's broker: RocketMQ semantics (topics, queues, consumer groups, the RocketMQ 5 gRPC
//! API) on top of the raft-log commitlog, with the binaries `mqbroker`, `mqadmin` and `mqbench`.
//!
//! Not built yet. This crate is empty on purpose: it holds a place in the workspace layout and
//! offers nothing that could be mistaken for a working broker. The design it will follow is in
//! ARCHITECTURE.md ("broker (planned)").
