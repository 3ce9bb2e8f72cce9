//! Follower → leader forwarding of proposals, so every node accepts writes.
//!
//! A follower that is asked to append sends the bodies to the leader it knows over the
//! replication port (the `Forward` service's `Propose` RPC, beside Raft's own `RaftLog`
//! service); the leader appends them as its own through the same [`Appender`] as a local append
//! and answers with their indexes once committed. Errors travel back as kinds, so the caller sees
//! the same [`Error`] it would have seen on the leader.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use proto::raftlog::v1 as pb;
use proto::raftlog::v1::forward_client::ForwardClient;
use proto::raftlog::v1::forward_server::{Forward, ForwardServer};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::append::Appender;
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

    fn client(&self, leader: u64) -> Result<ForwardClient<Channel>> {
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
        Ok(ForwardClient::new(channel)
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

/// The leader's half: appends a follower's proposal as this node's own.
///
/// It holds the append path weakly: tonic's connection tasks outlive the server's shutdown while
/// peers keep their connections open, and a strong reference there would keep the node's store
/// (and its directory lock) open after the node stopped.
#[derive(Debug)]
pub(crate) struct ForwardService {
    group: Arc<str>,
    appender: Weak<Appender>,
}

impl ForwardService {
    /// The service of `group`, ready to be served, with raft-log's message size limit instead of
    /// tonic's 4 MiB default.
    pub(crate) fn server(group: &str, appender: Weak<Appender>) -> ForwardServer<ForwardService> {
        let service = ForwardService {
            group: Arc::from(group),
            appender,
        };
        ForwardServer::new(service)
            .max_decoding_message_size(RPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(RPC_MESSAGE_BYTES_MAX)
    }

    async fn append(&self, bodies: Vec<Bytes>) -> Result<Vec<u64>> {
        let appender = self.appender.upgrade().ok_or(Error::Shutdown)?;
        let appended = appender.append_batch(bodies).await?;
        Ok(appended.into_iter().map(|a| a.index).collect())
    }
}

#[tonic::async_trait]
impl Forward for ForwardService {
    /// Appends a follower's proposal as this node's own (only the leader succeeds).
    #[tracing::instrument(level = "debug", skip_all, fields(group = %self.group))]
    async fn propose(
        &self,
        request: Request<pb::ProposeRequest>,
    ) -> std::result::Result<Response<pb::ProposeResponse>, Status> {
        let message = request.into_inner();
        if message.group != *self.group {
            return Err(Status::failed_precondition(format!(
                "request for raft group {:?} reached a node of group {:?}",
                message.group, self.group
            )));
        }
        let response = match self.append(message.bodies).await {
            Ok(indexes) => pb::ProposeResponse {
                indexes,
                error: None,
            },
            Err(e) => pb::ProposeResponse {
                indexes: Vec::new(),
                error: Some(error_to_pb(&e)),
            },
        };
        Ok(Response::new(response))
    }
}

/// The wire form of an append error.
fn error_to_pb(e: &Error) -> pb::ProposeError {
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
