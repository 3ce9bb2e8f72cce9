//! raft-log (work in progress)
pub mod config;
pub mod error;
pub(crate) mod engine;
pub mod snapshot;
pub mod store;
