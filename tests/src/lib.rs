//! RaftMQ's workspace integration tests: three real `mqbroker` processes started from
//! `conf/dledger/*.conf`, driven through the public gRPC API.
//!
//! Not built yet: they need the broker. raft-log's in-process three-node tests are in
//! `raft-log/tests/cluster.rs`.
