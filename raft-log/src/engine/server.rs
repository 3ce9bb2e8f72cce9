//! The server half of replication: raft-log's gRPC service, handing each peer RPC to openraft.
//!
//! This module owns what a node accepts from the network: it refuses messages addressed to
//! another Raft group, decodes them (a malformed message is `invalid_argument`, never a panic),
//! reassembles snapshots from their chunks, and maps openraft's answers and errors back to the
//! wire. A stopped or failed Raft node answers `unavailable`, which the peer treats as
//! unreachable and backs off from.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::BytesMut;
use futures::{Stream, StreamExt};
use openraft::errors::{Fatal, RaftError};
use proto::raftlog::v1 as pb;
use proto::raftlog::v1::raft_log_server::{RaftLog, RaftLogServer};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::Routes;
use tonic::{Request, Response, Status, Streaming};

use super::contact::LeaderContact;
use super::convert::{self, AppendEntriesRequest};
use super::partition::Blocked;
use super::state_machine::Raft;
use super::types::{Snapshot, TypeConfig};
use crate::config::RPC_MESSAGE_BYTES_MAX;

/// The most snapshot bytes reserved up front. `total_bytes` comes from the peer; reserving it
/// unchecked would let one message allocate any amount. Larger snapshots grow the buffer.
const SNAPSHOT_PREALLOC_BYTES_MAX: u64 = 64 << 20;

/// The gRPC service of one Raft group on this node.
#[derive(Clone)]
pub(crate) struct RaftLogService {
    raft: Raft,
    group: Arc<str>,
    blocked: Blocked,
    contact: LeaderContact,
}

impl std::fmt::Debug for RaftLogService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftLogService")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl RaftLogService {
    pub(crate) fn new(raft: Raft, group: String, blocked: Blocked, contact: LeaderContact) -> Self {
        RaftLogService {
            raft,
            group: Arc::from(group),
            blocked,
            contact,
        }
    }

    /// Checks the group, and drops messages from a peer this node is partitioned from (tests).
    fn admit(&self, group: &str, sender: Option<&pb::Vote>) -> Result<(), Status> {
        check_group(&self.group, group)?;
        check_sender(&self.blocked, sender)
    }
}

/// Refuses messages from peers in the test partition set, as a cut link would.
fn check_sender(blocked: &Blocked, sender: Option<&pb::Vote>) -> Result<(), Status> {
    match sender {
        Some(v) if blocked.contains(v.node_id) => Err(Status::unavailable(format!(
            "partitioned from n{}",
            v.node_id
        ))),
        _ => Ok(()),
    }
}

/// Refuses a message for another group: a peer configured with a different `dLegerGroup` (or an
/// address reused by another group) must not vote in or append to this one.
fn check_group(expected: &str, got: &str) -> Result<(), Status> {
    if got == expected {
        Ok(())
    } else {
        Err(Status::failed_precondition(format!(
            "request for raft group {got:?} reached a node of group {expected:?}"
        )))
    }
}

fn fatal_status(fatal: &Fatal<TypeConfig>) -> Status {
    Status::unavailable(format!("raft node is not serving: {fatal}"))
}

fn raft_error_status(e: RaftError<TypeConfig>) -> Status {
    match e {
        RaftError::Fatal(fatal) => fatal_status(&fatal),
        RaftError::APIError(never) => match never {},
    }
}

/// Decodes one message of a `StreamAppend` call.
fn decode_stream_request(
    group: &str,
    blocked: &Blocked,
    item: Result<pb::AppendEntriesRequest, Status>,
) -> Result<AppendEntriesRequest, Status> {
    let message = item?;
    check_group(group, &message.group)?;
    check_sender(blocked, message.vote.as_ref())?;
    convert::append_request_from_pb(message)
}

type ResponseStream =
    Pin<Box<dyn Stream<Item = Result<pb::AppendEntriesResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl RaftLog for RaftLogService {
    #[tracing::instrument(level = "debug", skip_all, fields(group = %self.group))]
    async fn vote(
        &self,
        request: Request<pb::VoteRequest>,
    ) -> Result<Response<pb::VoteResponse>, Status> {
        let message = request.into_inner();
        self.admit(&message.group, message.vote.as_ref())?;
        let rpc = convert::vote_request_from_pb(message)?;
        let resp = self.raft.vote(rpc).await.map_err(raft_error_status)?;
        Ok(Response::new(convert::vote_response_to_pb(&resp)))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(group = %self.group))]
    async fn pre_vote(
        &self,
        request: Request<pb::VoteRequest>,
    ) -> Result<Response<pb::VoteResponse>, Status> {
        let message = request.into_inner();
        self.admit(&message.group, message.vote.as_ref())?;
        let rpc = convert::vote_request_from_pb(message)?;
        let resp = self.raft.pre_vote(rpc).await.map_err(raft_error_status)?;
        Ok(Response::new(convert::vote_response_to_pb(&resp)))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(group = %self.group))]
    async fn append_entries(
        &self,
        request: Request<pb::AppendEntriesRequest>,
    ) -> Result<Response<pb::AppendEntriesResponse>, Status> {
        let message = request.into_inner();
        self.admit(&message.group, message.vote.as_ref())?;
        let rpc = convert::append_request_from_pb(message)?;
        let resp = self
            .raft
            .append_entries(rpc)
            .await
            .map_err(raft_error_status)?;
        if !matches!(resp, openraft::raft::AppendEntriesResponse::HigherVote(_)) {
            self.contact.touch();
        }
        Ok(Response::new(convert::append_response_to_pb(&resp)))
    }

    type StreamAppendStream = ResponseStream;

    /// Feeds the decoded requests to openraft's pipelined `stream_append` and returns its results
    /// in order. A message that cannot be accepted ends the input; its error is sent after the
    /// results of the requests before it, so the peer learns how far it got.
    #[tracing::instrument(level = "debug", skip_all, fields(group = %self.group))]
    async fn stream_append(
        &self,
        request: Request<Streaming<pb::AppendEntriesRequest>>,
    ) -> Result<Response<Self::StreamAppendStream>, Status> {
        let inbound = request.into_inner();
        let failure: Arc<Mutex<Option<Status>>> = Arc::new(Mutex::new(None));

        let group = self.group.clone();
        let blocked = self.blocked.clone();
        let failed = failure.clone();
        let requests = futures::stream::unfold(inbound, move |mut inbound| {
            let group = group.clone();
            let blocked = blocked.clone();
            let failed = failed.clone();
            async move {
                match decode_stream_request(&group, &blocked, inbound.next().await?) {
                    Ok(req) => Some((req, inbound)),
                    Err(status) => {
                        tracing::debug!("stream_append input refused: {status}");
                        *failed.lock().unwrap_or_else(PoisonError::into_inner) = Some(status);
                        None
                    }
                }
            }
        });

        let contact = self.contact.clone();
        let results = self.raft.stream_append(requests).map(move |r| match r {
            Ok(result) => {
                if !matches!(
                    result,
                    Err(openraft::raft::StreamAppendError::HigherVote(_))
                ) {
                    contact.touch();
                }
                Ok(convert::stream_result_to_pb(&result))
            }
            Err(fatal) => Err(fatal_status(&fatal)),
        });
        // openraft's stream ends only after its input ended, so the failure (if any) is recorded
        // by the time the tail is polled.
        let tail = futures::stream::once(async move {
            failure
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
        })
        .filter_map(|failure| async move { failure.map(Err) });
        let out: ResponseStream = Box::pin(results.chain(tail));
        Ok(Response::new(out))
    }

    /// Reassembles the snapshot (header first, then exactly `total_bytes` of data) and installs it.
    #[tracing::instrument(level = "debug", skip_all, fields(group = %self.group))]
    async fn install_snapshot(
        &self,
        request: Request<Streaming<pb::SnapshotChunk>>,
    ) -> Result<Response<pb::SnapshotResponse>, Status> {
        use pb::snapshot_chunk::Item;

        let mut chunks = request.into_inner();
        let header = match chunks.next().await.transpose()?.and_then(|c| c.item) {
            Some(Item::Header(h)) => h,
            Some(Item::Data(_)) => {
                return Err(Status::invalid_argument(
                    "SnapshotChunk: data before the header",
                ));
            }
            None => return Err(Status::invalid_argument("SnapshotChunk: missing header")),
        };
        self.admit(&header.group, header.vote.as_ref())?;
        let vote = convert::vote_from_pb(header.vote, "SnapshotHeader.vote")?;
        let meta = header.meta.ok_or_else(|| {
            Status::invalid_argument("missing required field SnapshotHeader.meta")
        })?;
        let (meta, total_bytes) = convert::snapshot_meta_from_pb(meta)?;

        let reserve = usize::try_from(total_bytes.min(SNAPSHOT_PREALLOC_BYTES_MAX)).unwrap_or(0);
        let mut data = BytesMut::with_capacity(reserve);
        while let Some(chunk) = chunks.next().await.transpose()? {
            match chunk.item {
                Some(Item::Data(bytes)) => {
                    if data.len() as u64 + bytes.len() as u64 > total_bytes {
                        return Err(Status::invalid_argument(format!(
                            "snapshot data exceeds SnapshotMeta.total_bytes ({total_bytes})"
                        )));
                    }
                    data.extend_from_slice(&bytes);
                }
                Some(Item::Header(_)) => {
                    return Err(Status::invalid_argument("SnapshotChunk: second header"));
                }
                None => return Err(Status::invalid_argument("SnapshotChunk: empty chunk")),
            }
        }
        if data.len() as u64 != total_bytes {
            return Err(Status::invalid_argument(format!(
                "snapshot ended after {} of SnapshotMeta.total_bytes ({total_bytes})",
                data.len()
            )));
        }

        tracing::info!(bytes = total_bytes, last_log_id = ?meta.last_log_id, "installing snapshot");
        let snapshot = Snapshot {
            meta,
            snapshot: data.freeze(),
        };
        let resp = self
            .raft
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(|f| fatal_status(&f))?;
        Ok(Response::new(convert::snapshot_response_to_pb(&resp)))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(group = %self.group))]
    async fn transfer_leader(
        &self,
        request: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::TransferLeaderResponse>, Status> {
        let message = request.into_inner();
        self.admit(&message.group, message.from_leader.as_ref())?;
        let req = convert::transfer_leader_request_from_pb(message)?;
        let resp = self
            .raft
            .handle_transfer_leader(req)
            .await
            .map_err(|f| fatal_status(&f))?;
        Ok(Response::new(convert::transfer_leader_response_to_pb(
            &resp,
        )?))
    }
}

/// The service of `group` on this node, ready to be served, with raft-log's message size limit
/// instead of tonic's 4 MiB default.
pub(crate) fn grpc_service(
    raft: Raft,
    group: String,
    blocked: Blocked,
    contact: LeaderContact,
) -> RaftLogServer<RaftLogService> {
    RaftLogServer::new(RaftLogService::new(raft, group, blocked, contact))
        .max_decoding_message_size(RPC_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(RPC_MESSAGE_BYTES_MAX)
}

/// Serves `routes` (the Raft service and whatever the node serves beside it) on `listener` until
/// `shutdown` completes, then drains open connections.
///
/// # Errors
/// When the server fails (not when one connection does).
pub(crate) async fn serve(
    listener: TcpListener,
    routes: Routes,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    // tonic ignores its own TCP settings for a caller-supplied listener, so TCP_NODELAY is set
    // here on each accepted socket: small replication replies must not wait for Nagle.
    let incoming = TcpListenerStream::new(listener).map(|conn| {
        conn.inspect(|stream| {
            if let Err(e) = stream.set_nodelay(true) {
                tracing::warn!("setting TCP_NODELAY on a replication connection: {e}");
            }
        })
    });
    tonic::transport::Server::builder()
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
