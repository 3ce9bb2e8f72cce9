//! RaftMQ's client for the RocketMQ 5 gRPC API (`apache.rocketmq.v2.MessagingService`) and for
//! RaftMQ's admin service (`raftmq.admin.v1.Admin`): the one client implementation that
//! `mqadmin`, `mqbench`, the chaos harness and the multi-process tests share.
//!
//! # Concepts
//!
//! - An **access point** is what RocketMQ's `-n` flag names: `host:port` addresses separated by
//!   `;` ([`access_point`], [`parse_access_point`]). RaftMQ has no nameserver, so the addresses
//!   are broker nodes.
//! - A **connection** is one HTTP/2 channel to one address, made in one place ([`endpoint`],
//!   [`connect`], [`first_reachable`]): same connect timeout and `TCP_NODELAY` for every tool.
//! - A client **identity** ([`ClientIdentity`]) is what the official SDKs send with every call
//!   (the `x-mq-*` headers) and the source of SDK-layout message ids.
//! - [`MessagingClient`] makes the RocketMQ 5 calls (QueryRoute, SendMessage, ReceiveMessage,
//!   AckMessage, ChangeInvisibleDuration, …, and a [`Telemetry`] stream with Heartbeat and
//!   NotifyClientTermination, by which a broker knows the client) with that identity;
//!   [`AdminClient`] the admin ones.
//!
//! Calls return the broker's response as it came: how a status is judged (a failure to count, a
//! refusal to print, an unknown outcome) is the caller's business. [`check_v2`] and
//! [`check_admin`] turn a status into a [`ClientError::Refused`] for callers that only want OK.
//!
//! Architecture invariant: this crate depends on `proto` only, never on `broker`; it speaks the
//! wire protocol and knows no broker internals.
#![warn(missing_docs)]

mod access;
mod admin;
mod error;
mod fields;
mod identity;
mod messaging;

pub use access::{
    CONNECT_TIMEOUT, access_point, connect, endpoint, first_reachable, parse_access_point,
};
pub use admin::{AdminClient, check_admin, cluster_views};
pub use error::{ClientError, error_chain};
pub use fields::{duration, resource, timestamp_now, timestamp_of_ms};
pub use identity::{ClientIdentity, hex};
pub use messaging::{
    MessageSpec, MessagingClient, Pull, Pulled, Receive, Received, Telemetry, ack_entries,
    check_v2, code_name, consumer_settings, message, producer_settings,
};
