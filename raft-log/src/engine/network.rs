//! The client half of replication: openraft's network traits over raft-log's gRPC service.
//!
//! This module owns the connections to the peers and the policy of every outgoing RPC: which
//! timeout applies, how a transport failure is reported to openraft (so that it backs off from
//! a peer that is down but retries a peer that merely timed out), and how large one message may
//! grow. [`NetworkFactory`] takes the channel to each peer from the node's [`PeerChannels`]
//! (shared with the forwarder); every [`PeerClient`] openraft creates for that peer
//! (replication, heartbeat, snapshot) multiplexes its RPCs over it.
//!
//! Timeouts follow [`RPCOption`]'s contract: the transport enforces `soft_ttl()` so that it
//! reports [`RPCError::Timeout`] before openraft abandons the call at `hard_ttl()`. A stream is
//! not bounded as a whole (openraft keeps a replication stream open while it waits for new
//! entries); it fails when a sent request is not answered in time.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use openraft::base::{BoxFuture, BoxStream};
use openraft::errors::{
    NetworkError, RPCError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::v2::RaftNetworkV2;
use openraft::network::{RPCOption, RPCTypes};
use openraft::{BasicNode, OptionalSend, RaftNetworkFactory};
use prost::Message as _;
use proto::raftlog::v1 as pb;
use proto::raftlog::v1::raft_log_client::RaftLogClient;
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tracing::Instrument as _;

use super::convert::{
    self, AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult,
    TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use super::partition::Blocked;
use super::types::{LogId, Snapshot, SnapshotData, TypeConfig, Vote, log_id};
use crate::config::{
    Config, RPC_MESSAGE_BYTES_MAX, RPC_PAYLOAD_BYTES_TARGET, SNAPSHOT_CHUNK_BYTES,
};
use crate::net::PeerChannels;

type RpcError = RPCError<TypeConfig>;

/// The slowest link raft-log is expected to replicate over. A response to a request of `n` bytes
/// may take `n / STREAM_MIN_BYTES_PER_SEC` longer than the soft TTL before the stream counts as
/// stalled, so a 16 MiB batch on a slow link is not mistaken for a dead peer.
const STREAM_MIN_BYTES_PER_SEC: u64 = 8 << 20;

/// Creates the per-peer clients openraft asks for; shares one channel per peer among them.
#[derive(Clone, Debug)]
pub(crate) struct NetworkFactory {
    inner: Arc<FactoryInner>,
}

#[derive(Debug)]
struct FactoryInner {
    group: Arc<str>,
    self_id: u64,
    /// This node's `dLegerPeers` addresses. They win over the address in openraft's membership
    /// (which is the initializing node's view): each node reaches a peer by its own route — a
    /// proxy, a NAT, another interface. The membership's address is used only for a node this
    /// config does not list.
    peer_addrs: HashMap<u64, String>,
    /// The node's channels to its peers, shared with the forwarder.
    channels: PeerChannels,
    /// Peers this node is partitioned from (tests): every RPC to them is unreachable.
    blocked: Blocked,
}

impl NetworkFactory {
    /// A factory for the group and peers of `config`. Connects to nothing until an RPC is sent.
    pub(crate) fn new(config: &Config, blocked: Blocked, channels: PeerChannels) -> Self {
        NetworkFactory {
            inner: Arc::new(FactoryInner {
                group: Arc::from(config.group.as_str()),
                self_id: config.node_id(),
                peer_addrs: config
                    .peers
                    .iter()
                    .map(|p| (p.node_id, p.addr.clone()))
                    .collect(),
                channels,
                blocked,
            }),
        }
    }

    /// The pooled channel to `target` at `addr`.
    fn channel(&self, target: u64, addr: &str) -> Result<Channel, String> {
        self.inner
            .channels
            .get(target, addr)
            .map_err(|e| format!("invalid address {addr:?} of node {target}: {e}"))
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    #[tracing::instrument(level = "debug", skip_all, fields(target = target))]
    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Self::Network {
        let addr = self
            .inner
            .peer_addrs
            .get(&target)
            .cloned()
            .unwrap_or_else(|| node.addr.clone());
        let client = self.channel(target, &addr).map(|channel| {
            RaftLogClient::new(channel)
                .max_decoding_message_size(RPC_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(RPC_MESSAGE_BYTES_MAX)
        });
        if let Err(e) = &client {
            // openraft cannot take an error here; every RPC of this client reports it instead.
            tracing::warn!(node = target, "{e}");
        }
        PeerClient {
            target,
            blocked: self.inner.blocked.clone(),
            self_id: self.inner.self_id,
            group: self.inner.group.clone(),
            client: client.map_err(Arc::from),
            setup_failed: false,
        }
    }
}

/// openraft's client to one peer.
#[derive(Debug)]
pub(crate) struct PeerClient {
    target: u64,
    blocked: Blocked,
    self_id: u64,
    group: Arc<str>,
    /// The gRPC client, or why none could be built (an address that does not parse).
    client: Result<RaftLogClient<Channel>, Arc<str>>,
    /// The last stream setup failed (see [`PeerClient::stream_append`]).
    setup_failed: bool,
}

impl PeerClient {
    fn client(&self) -> Result<RaftLogClient<Channel>, RpcError> {
        if self.blocked.contains(self.target) {
            return Err(RPCError::Unreachable(Unreachable::from_string(format!(
                "partitioned from n{}",
                self.target
            ))));
        }
        self.client
            .clone()
            .map_err(|e| RPCError::Unreachable(Unreachable::from_string(e)))
    }

    fn timeout_error(&self, action: RPCTypes, timeout: Duration) -> RpcError {
        RPCError::Timeout(Timeout {
            action,
            id: self.self_id,
            target: self.target,
            timeout,
        })
    }

    /// Runs one unary call within the soft TTL.
    async fn unary<T, Fut>(
        &self,
        action: RPCTypes,
        option: &RPCOption,
        call: impl FnOnce(RaftLogClient<Channel>) -> Fut,
    ) -> Result<T, RpcError>
    where
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let ttl = option.soft_ttl();
        match tokio::time::timeout(ttl, call(self.client()?)).await {
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) => Err(status_error(status)),
            Err(_elapsed) => Err(self.timeout_error(action, ttl)),
        }
    }
}

/// Maps a failed call onto openraft's error kinds. A peer that cannot be reached (tonic reports
/// connect failures as `Unavailable`), or that serves another group and will keep doing so, is
/// `Unreachable`: openraft then backs off instead of retrying at once.
fn status_error(status: Status) -> RpcError {
    match status.code() {
        Code::Unavailable | Code::FailedPrecondition => {
            RPCError::Unreachable(Unreachable::new(&status))
        }
        _ => RPCError::Network(NetworkError::new(&status)),
    }
}

/// A message that could not be encoded, or a reply that could not be decoded (the peer runs an
/// incompatible version). Not a transport failure, so not worth a backoff.
fn protocol_error(status: Status) -> RpcError {
    RPCError::Network(NetworkError::new(&status))
}

/// An AppendEntries request on the wire, possibly cut to fit [`RPC_PAYLOAD_BYTES_TARGET`].
#[derive(Debug)]
struct EncodedAppend {
    message: pb::AppendEntriesRequest,
    /// The encoded size of `message`.
    bytes: usize,
    /// When entries were cut off: the id of the last entry kept.
    cut_after: Option<LogId>,
}

/// Encodes a request; if it is larger than [`RPC_PAYLOAD_BYTES_TARGET`] and has more than one
/// entry, keeps only the longest prefix of entries that fits (at least one).
///
/// openraft 0.10.0-alpha.37 has no `PayloadTooLarge` error to ask for a smaller batch, but it
/// does understand a partial success: the caller reports the kept prefix as accepted and
/// openraft sends the rest in the next request. The size is thus bounded by bytes, not only by
/// openraft's entry count (`max_payload_entries`).
fn encode_append(group: &str, req: AppendEntriesRequest) -> Result<EncodedAppend, Status> {
    let mut message = convert::append_request_to_pb(group, req)?;
    let bytes = message.encoded_len();
    if bytes <= RPC_PAYLOAD_BYTES_TARGET || message.entries.len() <= 1 {
        return Ok(EncodedAppend {
            message,
            bytes,
            cut_after: None,
        });
    }
    // Each entry costs its length-delimited body plus one key byte (field 4 fits in one byte).
    let entry_len = |e: &pb::Entry| {
        let len = e.encoded_len();
        1 + prost::length_delimiter_len(len) + len
    };
    let entries_len: usize = message.entries.iter().map(entry_len).sum();
    let mut kept_bytes = bytes - entries_len;
    let mut keep = 0;
    for e in &message.entries {
        let len = entry_len(e);
        if keep > 0 && kept_bytes + len > RPC_PAYLOAD_BYTES_TARGET {
            break;
        }
        kept_bytes += len;
        keep += 1;
    }
    message.entries.truncate(keep);
    let cut_after = message.entries.last().map(|e| log_id(e.term, e.index));
    Ok(EncodedAppend {
        message,
        bytes: kept_bytes,
        cut_after,
    })
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = SnapshotData;

    #[tracing::instrument(level = "debug", skip_all, fields(target = self.target, entries = rpc.entries.len()))]
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse, RpcError> {
        let encoded = encode_append(&self.group, rpc).map_err(protocol_error)?;
        let message = encoded.message;
        let resp = self
            .unary(RPCTypes::AppendEntries, &option, |mut c| async move {
                c.append_entries(message).await
            })
            .await?;
        let resp = convert::append_response_from_pb(resp).map_err(protocol_error)?;
        Ok(match (encoded.cut_after, resp) {
            // The peer accepted everything it was sent, which is only a prefix of the request.
            (Some(last), AppendEntriesResponse::Success) => {
                AppendEntriesResponse::PartialSuccess(Some(last))
            }
            (_, resp) => resp,
        })
    }

    /// Pipelines the requests over one `StreamAppend` call: each request is sent as soon as
    /// openraft yields it, and the results come back in order.
    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<'s, Result<BoxStream<'s, Result<StreamAppendResult, RpcError>>, RpcError>>
    where
        S: Stream<Item = AppendEntriesRequest> + OptionalSend + Unpin + 'static,
    {
        let span = tracing::debug_span!("stream_append", target = self.target);
        let fut = async move {
            // After a failed setup, take the first request before dialing again. openraft backs
            // off an unreachable peer inside its request stream (cancellably), but a setup that
            // fails to connect polls no request, so without this a leader re-dialed a dead
            // follower in a tight loop: ~9,000 times a second, two WARN lines each, half a
            // gigabyte of log in 30 s with one fast-try node down.
            let mut input = input;
            let first = if self.setup_failed {
                let Some(first) = input.next().await else {
                    return Ok(Box::pin(futures::stream::empty()) as BoxStream<'s, _>);
                };
                Some(first)
            } else {
                None
            };
            let requests = futures::stream::iter(first).chain(input);
            self.setup_failed = true; // until the setup below succeeds
            let mut client = self.client()?;
            let ttl = option.soft_ttl();
            let inflight = Arc::new(Mutex::new(Inflight::new()));
            let outbound = outbound_requests(self.group.clone(), requests, inflight.clone());

            // Setup (connect if needed, and the peer's response headers) gets the soft TTL.
            let inbound = match tokio::time::timeout(ttl, client.stream_append(outbound)).await {
                Ok(Ok(resp)) => resp.into_inner(),
                Ok(Err(status)) => return Err(status_error(status)),
                Err(_elapsed) => return Err(self.timeout_error(RPCTypes::AppendEntries, ttl)),
            };
            self.setup_failed = false;

            let reader = StreamReader {
                inbound,
                inflight,
                ttl,
                timeout: self.timeout_error(RPCTypes::AppendEntries, ttl),
            };
            let (blocked, target) = (self.blocked.clone(), self.target);
            let results = futures::stream::unfold(Some(reader), move |reader| {
                let blocked = blocked.clone();
                async move {
                    let mut reader = reader?;
                    let next = reader.next_result().await;
                    // The test partition also cuts a stream that is already open: a result
                    // that arrives once the peer is blocked is dropped.
                    if blocked.contains(target) {
                        let cut = RPCError::Unreachable(Unreachable::from_string(format!(
                            "partitioned from n{target}"
                        )));
                        return Some((Err(cut), None));
                    }
                    match next {
                        // After a conflict or a higher vote the peer ends the stream; so do we.
                        Some(Ok(Ok(ok))) => Some((Ok(Ok(ok)), Some(reader))),
                        Some(other) => Some((other, None)),
                        None => None,
                    }
                }
            });
            let results: BoxStream<'s, Result<StreamAppendResult, RpcError>> = Box::pin(results);
            Ok(results)
        };
        Box::pin(fut.instrument(span))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(target = self.target))]
    async fn vote(
        &mut self,
        rpc: VoteRequest,
        option: RPCOption,
    ) -> Result<VoteResponse, RpcError> {
        let message = convert::vote_request_to_pb(&self.group, &rpc);
        let resp = self
            .unary(RPCTypes::Vote, &option, |mut c| async move {
                c.vote(message).await
            })
            .await?;
        convert::vote_response_from_pb(resp).map_err(protocol_error)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(target = self.target))]
    async fn pre_vote(
        &mut self,
        rpc: VoteRequest,
        option: RPCOption,
    ) -> Result<VoteResponse, RpcError> {
        let message = convert::vote_request_to_pb(&self.group, &rpc);
        let resp = self
            .unary(RPCTypes::Vote, &option, |mut c| async move {
                c.pre_vote(message).await
            })
            .await?;
        convert::vote_response_from_pb(resp).map_err(protocol_error)
    }

    /// Streams the snapshot as a header and [`SNAPSHOT_CHUNK_BYTES`] chunks. The soft TTL bounds
    /// the wait for each chunk to be taken by the transport and, after the last, for the reply.
    #[tracing::instrument(level = "debug", skip_all, fields(target = self.target, bytes = snapshot.snapshot.len()))]
    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse, StreamingError<TypeConfig>> {
        let mut client = self.client()?;
        let ttl = option.soft_ttl();
        let data = snapshot.snapshot;
        let meta = convert::snapshot_meta_to_pb(&snapshot.meta, data.len() as u64)
            .map_err(protocol_error)?;
        let header = pb::SnapshotChunk {
            item: Some(pb::snapshot_chunk::Item::Header(pb::SnapshotHeader {
                group: self.group.to_string(),
                vote: Some(convert::vote_to_pb(&vote)),
                meta: Some(meta),
            })),
        };
        let progress = Arc::new(Mutex::new(Instant::now()));
        let touched = progress.clone();
        let chunks = futures::stream::iter(std::iter::once(header).chain(data_chunks(data).map(
            |chunk| pb::SnapshotChunk {
                item: Some(pb::snapshot_chunk::Item::Data(chunk)),
            },
        )))
        .inspect(move |_| *touched.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now());

        let call = client.install_snapshot(chunks);
        tokio::pin!(call);
        tokio::pin!(cancel);
        loop {
            let deadline = *progress.lock().unwrap_or_else(PoisonError::into_inner) + ttl;
            tokio::select! {
                res = &mut call => {
                    let resp = res.map_err(status_error)?.into_inner();
                    return convert::snapshot_response_from_pb(resp).map_err(|s| protocol_error(s).into());
                }
                // Dropping `call` resets the HTTP/2 stream; the peer discards what it received.
                closed = &mut cancel => return Err(StreamingError::Closed(closed)),
                () = tokio::time::sleep_until(deadline) => {
                    let last = *progress.lock().unwrap_or_else(PoisonError::into_inner);
                    if Instant::now() >= last + ttl {
                        return Err(self.timeout_error(RPCTypes::InstallSnapshot, ttl).into());
                    }
                }
            }
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(target = self.target))]
    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse, RpcError> {
        let message = convert::transfer_leader_request_to_pb(&self.group, &req);
        let resp = self
            .unary(RPCTypes::TransferLeader, &option, |mut c| async move {
                c.transfer_leader(message).await
            })
            .await?;
        convert::transfer_leader_response_from_pb(resp).map_err(protocol_error)
    }
}

/// Splits snapshot data into wire chunks without copying.
fn data_chunks(data: Bytes) -> impl Iterator<Item = Bytes> + Send {
    let len = data.len();
    (0..len.div_ceil(SNAPSHOT_CHUNK_BYTES)).map(move |i| {
        let start = i * SNAPSHOT_CHUNK_BYTES;
        data.slice(start..len.min(start + SNAPSHOT_CHUNK_BYTES))
    })
}

/// The requests of a stream that were sent and not yet answered, shared by the sending and the
/// receiving half so the receiver knows whether silence means "idle" or "stalled".
#[derive(Debug)]
struct Inflight {
    /// Send time and encoded size of each unanswered request, oldest first.
    sent: VecDeque<(Instant, usize)>,
    last_response: Instant,
    /// Why the sending half stopped early, reported after the last result.
    failure: Option<RpcError>,
}

impl Inflight {
    fn new() -> Self {
        Inflight {
            sent: VecDeque::new(),
            last_response: Instant::now(),
            failure: None,
        }
    }

    /// When the oldest unanswered request counts as stalled: its answer may take the soft TTL
    /// plus the time to move its bytes over the slowest expected link, counted from when it
    /// was sent or, if later, from the previous answer (answers come in order).
    fn deadline(&self, ttl: Duration) -> Option<Instant> {
        let &(sent_at, bytes) = self.sent.front()?;
        let transfer =
            Duration::from_millis((bytes as u64).saturating_mul(1000) / STREAM_MIN_BYTES_PER_SEC);
        Some(sent_at.max(self.last_response) + ttl + transfer)
    }
}

fn lock(inflight: &Mutex<Inflight>) -> std::sync::MutexGuard<'_, Inflight> {
    inflight.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Maps openraft's requests to wire messages. Stops after a request that had to be cut (the
/// rest of openraft's batch would not follow on from what the peer receives) or that cannot be
/// encoded (recorded in `inflight.failure`).
fn outbound_requests<S>(
    group: Arc<str>,
    input: S,
    inflight: Arc<Mutex<Inflight>>,
) -> impl Stream<Item = pb::AppendEntriesRequest> + Send + 'static
where
    S: Stream<Item = AppendEntriesRequest> + OptionalSend + Unpin + 'static,
{
    futures::stream::unfold(Some(input), move |input| {
        let group = group.clone();
        let inflight = inflight.clone();
        async move {
            let mut input = input?;
            let req = input.next().await?;
            match encode_append(&group, req) {
                Ok(encoded) => {
                    lock(&inflight)
                        .sent
                        .push_back((Instant::now(), encoded.bytes));
                    let next = if encoded.cut_after.is_some() {
                        None
                    } else {
                        Some(input)
                    };
                    Some((encoded.message, next))
                }
                Err(status) => {
                    lock(&inflight).failure = Some(protocol_error(status));
                    None
                }
            }
        }
    })
}

/// The receiving half of a `StreamAppend` call.
struct StreamReader {
    inbound: tonic::Streaming<pb::AppendEntriesResponse>,
    inflight: Arc<Mutex<Inflight>>,
    ttl: Duration,
    timeout: RpcError,
}

impl StreamReader {
    /// The next result, or `None` when the stream ended cleanly.
    async fn next_result(&mut self) -> Option<Result<StreamAppendResult, RpcError>> {
        loop {
            let deadline = lock(&self.inflight).deadline(self.ttl);
            // With nothing in flight, silence is legitimate: wake up after a TTL only to look
            // again, as the sending half may have sent a request meanwhile. The floor keeps a
            // degenerate TTL from turning this into a busy loop.
            let wake =
                deadline.unwrap_or_else(|| Instant::now() + self.ttl.max(Duration::from_millis(1)));
            match tokio::time::timeout_at(wake, self.inbound.next()).await {
                Ok(Some(Ok(resp))) => {
                    {
                        let mut inflight = lock(&self.inflight);
                        inflight.sent.pop_front();
                        inflight.last_response = Instant::now();
                    }
                    return Some(convert::stream_result_from_pb(resp).map_err(protocol_error));
                }
                Ok(Some(Err(status))) => return Some(Err(status_error(status))),
                Ok(None) => return lock(&self.inflight).failure.take().map(Err),
                Err(_elapsed) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Some(Err(self.timeout.clone()));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use openraft::entry::RaftEntry as _;

    use super::*;
    use crate::engine::types::{Entry, EntryData};

    fn request(bodies: &[usize]) -> AppendEntriesRequest {
        AppendEntriesRequest {
            vote: Vote::new_committed(2, 0),
            prev_log_id: Some(log_id(2, 9)),
            entries: bodies
                .iter()
                .enumerate()
                .map(|(i, &n)| {
                    Entry::new_normal(
                        log_id(2, 10 + i as u64),
                        EntryData(Bytes::from(vec![0u8; n])),
                    )
                })
                .collect(),
            leader_commit: None,
        }
    }

    #[test]
    fn small_requests_are_sent_whole() {
        let e = encode_append("g", request(&[10, 20, 30])).unwrap();
        assert_eq!((e.message.entries.len(), e.cut_after), (3, None));
        assert_eq!(e.bytes, e.message.encoded_len());
    }

    #[test]
    fn large_requests_keep_the_prefix_that_fits() {
        let mib = 1 << 20;
        let e = encode_append("g", request(&[6 * mib, 6 * mib, 6 * mib, 1])).unwrap();
        assert_eq!(e.message.entries.len(), 2);
        assert_eq!(e.cut_after, Some(log_id(2, 11)));
        assert_eq!(
            e.bytes,
            e.message.encoded_len(),
            "size estimate must be exact"
        );
        assert!(e.bytes <= RPC_PAYLOAD_BYTES_TARGET);

        // One entry larger than the target still goes alone, and whole.
        let e = encode_append("g", request(&[20 * mib, 1])).unwrap();
        assert_eq!(
            (e.message.entries.len(), e.cut_after),
            (1, Some(log_id(2, 10)))
        );
        let e = encode_append("g", request(&[20 * mib])).unwrap();
        assert_eq!((e.message.entries.len(), e.cut_after), (1, None));
    }

    #[test]
    fn snapshot_chunks_cover_the_data_without_copying() {
        let data = Bytes::from(vec![1u8; 2 * SNAPSHOT_CHUNK_BYTES + 5]);
        let chunks: Vec<Bytes> = data_chunks(data.clone()).collect();
        assert_eq!(
            chunks.iter().map(Bytes::len).collect::<Vec<_>>(),
            [SNAPSHOT_CHUNK_BYTES, SNAPSHOT_CHUNK_BYTES, 5]
        );
        assert_eq!(chunks[1].as_ptr(), data[SNAPSHOT_CHUNK_BYTES..].as_ptr());
        assert_eq!(data_chunks(Bytes::new()).count(), 0);
    }

    /// A peer that accepts every append and echoes the last log id of each request, so the
    /// client's streaming can be checked without a Raft node.
    #[derive(Debug)]
    struct EchoPeer;

    #[tonic::async_trait]
    impl pb::raft_log_server::RaftLog for EchoPeer {
        async fn vote(
            &self,
            _: tonic::Request<pb::VoteRequest>,
        ) -> Result<tonic::Response<pb::VoteResponse>, Status> {
            Err(Status::unimplemented("vote"))
        }
        async fn pre_vote(
            &self,
            _: tonic::Request<pb::VoteRequest>,
        ) -> Result<tonic::Response<pb::VoteResponse>, Status> {
            Err(Status::unimplemented("pre_vote"))
        }
        async fn append_entries(
            &self,
            _: tonic::Request<pb::AppendEntriesRequest>,
        ) -> Result<tonic::Response<pb::AppendEntriesResponse>, Status> {
            Err(Status::unimplemented("append_entries"))
        }
        type StreamAppendStream = std::pin::Pin<
            Box<dyn Stream<Item = Result<pb::AppendEntriesResponse, Status>> + Send + 'static>,
        >;
        async fn stream_append(
            &self,
            request: tonic::Request<tonic::Streaming<pb::AppendEntriesRequest>>,
        ) -> Result<tonic::Response<Self::StreamAppendStream>, Status> {
            let out = request.into_inner().map(|req| {
                let req = convert::append_request_from_pb(req?)?;
                let last = req.entries.last().map(|e| e.log_id).or(req.prev_log_id);
                Ok(convert::stream_result_to_pb(&Ok(last)))
            });
            Ok(tonic::Response::new(Box::pin(out)))
        }
        async fn install_snapshot(
            &self,
            _: tonic::Request<tonic::Streaming<pb::SnapshotChunk>>,
        ) -> Result<tonic::Response<pb::SnapshotResponse>, Status> {
            Err(Status::unimplemented("install_snapshot"))
        }
        async fn transfer_leader(
            &self,
            _: tonic::Request<pb::TransferLeaderRequest>,
        ) -> Result<tonic::Response<pb::TransferLeaderResponse>, Status> {
            Err(Status::unimplemented("transfer_leader"))
        }
    }

    async fn client_to(addr: &str) -> PeerClient {
        let config = Config::new(
            "g",
            &format!("n0-127.0.0.1:1;n1-{addr}"),
            "n0",
            "/nonexistent",
        )
        .unwrap();
        NetworkFactory::new(&config, Blocked::default(), PeerChannels::new(50))
            .new_client(1, &BasicNode::new(addr))
            .await
    }

    #[tokio::test]
    async fn a_peer_is_dialled_at_this_nodes_own_address_not_the_memberships() {
        // n1 listens on a real port; the membership names it at an address nobody serves.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(pb::raft_log_server::RaftLogServer::new(EchoPeer))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let config = Config::new(
            "g",
            &format!("n0-127.0.0.1:1;n1-{addr}"),
            "n0",
            "/nonexistent",
        )
        .unwrap();
        let mut client = NetworkFactory::new(&config, Blocked::default(), PeerChannels::new(50))
            .new_client(1, &BasicNode::new("127.0.0.1:9"))
            .await;
        let results: Vec<_> = client
            .stream_append(
                futures::stream::iter(vec![request(&[10])]),
                RPCOption::new(Duration::from_secs(5)),
            )
            .await
            .unwrap()
            .collect()
            .await;
        assert_eq!(results.len(), 1);
        assert_eq!(
            results.into_iter().next().unwrap().unwrap(),
            Ok(Some(log_id(2, 10)))
        );
    }

    #[tokio::test]
    async fn stream_append_pipelines_and_ends_with_its_input() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(
                    pb::raft_log_server::RaftLogServer::new(EchoPeer)
                        .max_decoding_message_size(RPC_MESSAGE_BYTES_MAX),
                )
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let mut client = client_to(&addr).await;
        let option = RPCOption::new(Duration::from_secs(5));

        let mib = 1 << 20;
        let requests = vec![request(&[10]), request(&[]), request(&[10, 20])];
        let results: Vec<_> = client
            .stream_append(futures::stream::iter(requests), option.clone())
            .await
            .unwrap()
            .collect()
            .await;
        let expected = [Some(log_id(2, 10)), Some(log_id(2, 9)), Some(log_id(2, 11))];
        assert_eq!(results.len(), 3);
        for (r, e) in results.into_iter().zip(expected) {
            assert_eq!(r.unwrap(), Ok(e));
        }

        // An oversized request is cut; the stream reports the kept prefix and ends there.
        let requests = vec![request(&[9 * mib, 9 * mib]), request(&[1])];
        let results: Vec<_> = client
            .stream_append(futures::stream::iter(requests), option)
            .await
            .unwrap()
            .collect()
            .await;
        assert_eq!(results.len(), 1);
        assert_eq!(
            results.into_iter().next().unwrap().unwrap(),
            Ok(Some(log_id(2, 10)))
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let mut client = client_to(&addr).await;
        let req = VoteRequest::new(Vote::new(1, 0), None);
        let err = client
            .vote(req, RPCOption::new(Duration::from_secs(5)))
            .await
            .unwrap_err();
        assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
    }
}
