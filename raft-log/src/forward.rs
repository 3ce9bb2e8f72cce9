//! Follower → leader forwarding of proposals, so every node accepts writes.
//!
//! A follower that is asked to append sends the bodies to the leader it knows over the
//! replication port (`Propose` RPC); the leader appends them as its own and answers with their
//! indexes once committed. Errors travel back as kinds, so the caller sees the same
//! [`Error`] it would have seen on the leader.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use proto::raftlog::v1 as pb;
use proto::raftlog::v1::raft_log_client::RaftLogClient;
use tonic::transport::Channel;

use crate::config::{Config, RPC_MESSAGE_BYTES_MAX};
use crate::error::{Error, Result};
use crate::net::PeerChannels;

/// Sends proposals to the leader over the node's pooled channel to it.
#[derive(Debug)]
pub(crate) struct Forwarder {
    config: Arc<Config>,
    channels: PeerChannels,
}

impl Forwarder {
    pub(crate) fn new(config: Arc<Config>, channels: PeerChannels) -> Forwarder {
        Forwarder { config, channels }
    }

    fn client(&self, leader: u64) -> Result<RaftLogClient<Channel>> {
        let peer = self
            .config
            .peer_by_node_id(leader)
            .ok_or_else(|| Error::UnknownNode {
                node: format!("n{leader}"),
            })?;
        let channel = self
            .channels
            .get(leader, &peer.addr)
            .map_err(|e| Error::Network {
                message: format!("address {} of {}: {e}", peer.addr, peer.id),
            })?;
        Ok(RaftLogClient::new(channel)
            .max_decoding_message_size(RPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(RPC_MESSAGE_BYTES_MAX))
    }

    /// Asks `leader` to append `bodies`; returns their indexes.
    #[tracing::instrument(level = "debug", skip_all, fields(leader, n = bodies.len()))]
    pub(crate) async fn propose(&self, leader: u64, bodies: Vec<Bytes>) -> Result<Vec<u64>> {
        let mut client = self.client(leader)?;
        let request = pb::ProposeRequest {
            group: self.config.group.clone(),
            bodies,
        };
        // The leader waits up to maxWaitAckTimeMs for its quorum; allow for the hop.
        let wait = Duration::from_millis(self.config.max_wait_ack_ms + 1_000);
        let response = match tokio::time::timeout(wait, client.propose(request)).await {
            Err(_) => {
                return Err(Error::Timeout {
                    waited_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                });
            }
            Ok(Err(status)) if status.code() == tonic::Code::Unavailable => {
                // The leader is unreachable: nothing was appended on its behalf.
                return Err(Error::NotLeader {
                    group: self.config.group.clone(),
                    leader_id: None,
                    leader_addr: None,
                });
            }
            // The request may have reached the leader before the connection broke.
            Ok(Err(status)) => {
                return Err(Error::OutcomeUnknown {
                    reason: format!("propose to n{leader} failed in flight: {status}"),
                });
            }
            Ok(Ok(r)) => r.into_inner(),
        };
        match response.error {
            None => Ok(response.indexes),
            Some(e) => Err(error_from_pb(e, &self.config)),
        }
    }
}

/// The wire form of an append error.
pub(crate) fn error_to_pb(e: &Error) -> pb::ProposeError {
    use pb::propose_error::Kind;
    let (kind, leader_id) = match e {
        Error::NotLeader { leader_id, .. } => (Kind::NotLeader, *leader_id),
        Error::Busy { .. } => (Kind::Busy, None),
        Error::Timeout { .. } => (Kind::Timeout, None),
        Error::OutcomeUnknown { .. } => (Kind::OutcomeUnknown, None),
        Error::EntryTooLarge { .. } => (Kind::TooLarge, None),
        _ => (Kind::Other, None),
    };
    pb::ProposeError {
        kind: kind as i32,
        message: e.to_string(),
        leader_id,
    }
}

fn error_from_pb(e: pb::ProposeError, config: &Config) -> Error {
    use pb::propose_error::Kind;
    match Kind::try_from(e.kind).unwrap_or(Kind::Other) {
        Kind::NotLeader => Error::NotLeader {
            group: config.group.clone(),
            leader_id: e.leader_id,
            leader_addr: e
                .leader_id
                .and_then(|l| config.peer_by_node_id(l))
                .map(|p| p.addr.clone()),
        },
        Kind::Busy => Error::Busy { pending: 0 },
        Kind::Timeout => Error::Timeout {
            waited_ms: config.max_wait_ack_ms,
        },
        Kind::OutcomeUnknown => Error::OutcomeUnknown { reason: e.message },
        Kind::TooLarge => Error::EntryTooLarge {
            size_bytes: 0,
            size_bytes_max: 0,
        },
        Kind::Other | Kind::Unspecified => Error::Raft {
            message: format!("leader: {}", e.message),
        },
    }
}
