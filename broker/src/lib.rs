//! RaftMQ's broker: RocketMQ semantics (topics, queues, consumer groups, the RocketMQ 5 gRPC
//! API) on top of the raft-log commitlog, and its binary `mqbroker` (the tools `mqadmin` and
//! `mqbench` are in `broker/tools`, on the client library `broker/client`).
//!
//! - [`config`]: a RocketMQ broker.conf read into a typed [`BrokerConfig`].
//! - [`command`] and [`state`]: the log commands and the replicated state machine (topics,
//!   consume queues, consumer progress with pop/ack/invisible-time semantics, FIFO groups,
//!   delay, dead letters).
//! - [`store`]: the state machine driven by raft-log on every replica; writes from any node,
//!   one typed method per command.
//! - [`service`]: the broker's operations, independent of any protocol: validation, admission,
//!   topic auto-create, the long poll, the admin views. Every protocol calls it.
//! - [`grpc`]: `apache.rocketmq.v2.MessagingService` for the official SDKs, a mapping onto
//!   [`service`].
//! - [`listener`]: accepted client connections (TCP_NODELAY, the multi-address `:authority`
//!   repair) for the gRPC server.
//! - [`admin`]: RaftMQ's admin service (`raftmq.admin.v1.Admin`), spoken by `mqadmin`.
//! - [`server`]: [`Broker::start`](server::Broker::start), one node wired from a
//!   [`BrokerConfig`]: store, service, listener, gRPC server.
//!
//! See ARCHITECTURE.md for the layers and their invariants.

#![warn(missing_docs)]

pub mod admin;
mod codec;
pub mod command;
pub mod config;
pub mod consume_queue;
pub mod grpc;
pub mod http;
pub mod listener;
pub mod message_index;
pub mod metrics;
pub mod remoting;
pub mod server;
pub mod service;
pub mod state;
pub mod store;

pub use codec::DecodeError;
pub use config::{BrokerConfig, BrokerConfigError, Warning};
pub use server::{Broker, BrokerError};
