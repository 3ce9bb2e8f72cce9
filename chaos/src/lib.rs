//! RaftMQ's chaos harness: real `mqbroker` processes under kills, pauses, partitions and power
//! loss, with checkers over the recorded history.
//!
//! Not built yet: it drives the broker, which does not exist yet. This crate is empty on purpose.
//! raft-log's own fault tests (leader kill, partition, crash cuts, bit flips) live in
//! `raft-log/tests/`.
