//! `mqnamesrv`: RaftMQ's RocketMQ 4.x NameServer.
//!
//! Brokers register with every NameServer (REGISTER_BROKER, every 30 s by default), clients
//! ask any of them for topic routes (GET_ROUTEINFO_BY_TOPIC) and cluster info. NameServers do
//! not talk to each other and keep nothing on disk: all they know is what the live brokers last
//! told them, plus an in-memory KV config.
//!
//! - [`registry`]: the pure core — registered brokers, master switches, expiry, routes;
//! - [`kv`]: the KV config;
//! - [`processor`]: request codes to responses;
//! - [`NameServer`]: the TCP listener over [`raftmq_remoting`] frames, the expiry scan and
//!   connection loss (a broker whose registering connection closes is removed at once);
//! - [`config`]: namesrv.conf and its key table.
//!
//! ```no_run
//! # async fn run() -> Result<(), raftmq_namesrv::NamesrvError> {
//! use raftmq_namesrv::{NameServer, NamesrvConfig};
//!
//! let config = NamesrvConfig { listen_port: 0, ..NamesrvConfig::default() };
//! let server = NameServer::start(config).await?;
//! println!("serving on {}", server.local_addr());
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! The crate knows nothing of the broker's storage or Raft: a broker group's master is
//! whichever node last registered with broker id 0.

pub mod config;
mod error;
pub mod kv;
pub mod processor;
pub mod registry;
mod server;

pub use config::NamesrvConfig;
pub use error::{ConfigError, NamesrvError, Result};
pub use server::{CONNECTIONS_MAX, NameServer, RESPONSE_WRITE_TIMEOUT};
