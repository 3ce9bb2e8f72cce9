//! RaftMQ's workspace-level tests.
//!
//! - `tests/sdk/`: the official RocketMQ 5 Python SDK against a fast-try group, before and after
//!   SIGKILL of the Raft leader (`tests/sdk/run.sh`, run by `.ci/run`).
//! - Multi-process Rust scenarios live in `broker/tests/processes.rs`, where cargo builds and
//!   locates the `mqbroker` and `mqadmin` binaries.
//!
//! This crate has no Rust code of its own yet.
