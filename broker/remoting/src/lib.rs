//! RocketMQ 4.x remoting: the wire protocol of the 4.x clients, the NameServer and `mqadmin -n`.
//!
//! - [`RemotingCommand`]: one request or response — code, language, version, opaque, flag,
//!   remark, ext fields and body — with both header encodings (JSON and ROCKETMQ binary);
//! - [`FrameCodec`]: the length-prefixed frame, for `tokio_util::codec::Framed`;
//! - [`code`]: request and response codes, with RocketMQ's names;
//! - [`route`]: what the NameServer stores and serves (TopicRouteData, cluster info, broker
//!   registration), as RocketMQ's JSON;
//! - [`message`]: a decoder of the MessageExt records of pull and query answers;
//! - [`subscription`]: subscription group configs, as RocketMQ's JSON;
//! - [`RemotingClient`]: one connection with requests in flight matched by opaque;
//! - [`trace`]: RocketMQ's message trace records, the bodies of the trace topic's messages.
//!
//! The crate knows nothing of the broker: the broker's remoting front end and `mqnamesrv` both
//! build on it.

mod client;
pub mod code;
mod codec;
mod command;
mod error;
pub mod message;
pub mod route;
pub mod subscription;
pub mod trace;

pub use client::RemotingClient;
pub use codec::{FRAME_LEN_MAX, FrameCodec};
pub use command::{ExtFields, LanguageCode, RemotingCommand, SerializeType, ext_fields};
pub use error::{FieldError, RemotingError};
