//! The adapter between raft-log and openraft: the only module that names openraft types.
//!
//! openraft 0.10 is an alpha pinned with `=`; alphas are not semver-compatible with each other,
//! so every openraft type, trait implementation and conversion lives under `engine/`. An alpha
//! bump touches this folder and nothing else. Outside it, raft-log speaks in its own terms:
//! log indexes and terms as `u64`, node ids as `u64`, entry bodies as [`bytes::Bytes`].

mod contact;
pub(crate) mod convert;
pub(crate) mod driver;
pub(crate) mod log_store;
pub(crate) mod network;
mod partition;
pub(crate) mod server;
pub(crate) mod state_machine;
pub(crate) mod types;

#[cfg(test)]
mod storage_suite;
