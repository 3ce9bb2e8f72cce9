//! The RocketMQ 4.x remoting front end on `listenPort`, beside gRPC.
//!
//! The listener tells the protocols apart by a connection's first byte (an HTTP/2 client
//! starts with the preface `PRI *`, a remoting frame with its length's high byte, 0 for any
//! frame under 16 MiB) and hands remoting connections here. Every request runs in its own
//! task, so a held pull does not stop the connection; responses go out in the request's
//! header type. Like the gRPC layer this is a mapping: the rules are in [`BrokerService`].
//!
//! - [`send`]: SEND_MESSAGE (10), SEND_MESSAGE_V2 (310), SEND_BATCH_MESSAGE (320) and
//!   CONSUMER_SEND_MSG_BACK (36);
//! - [`pull`]: PULL_MESSAGE (11), with long polling;
//! - [`offset`]: consumer offsets (14, 15) and queue offsets (29, 30, 31);
//! - [`clients`]: heartbeats (34, 35), group membership (38, 40) and queue locks (41, 42);
//! - [`admin`]: topic create (17), lookups (12, 33), runtime info (28), a group's
//!   connections (203, 204), subscription groups (200, 201, 207);
//! - [`transaction`]: END_TRANSACTION (37) and the check-back CHECK_TRANSACTION_STATE (39);
//! - [`register`]: registering at the NameServers (`namesrvAddr`).

mod admin;
mod clients;
pub mod message_ext;
mod offset;
mod pull;
pub mod register;
mod request;
mod send;
mod transaction;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::{SinkExt as _, StreamExt as _};
use raftmq_remoting::code::{request as rq, response as rs};
use raftmq_remoting::{FrameCodec, RemotingCommand};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::codec::Framed;

use crate::metrics::{Rpc, RpcMetrics, RpcResult};
use crate::service::BrokerService;
use clients::ClientTable;
use request::Connection;

/// Responses and notifications that may wait for a connection's writer.
const OUTBOX_LEN: usize = 1024;
/// Requests one connection may have in progress; more are answered SYSTEM_BUSY at once
/// (RocketMQ's answer when its request queues are full), so a client cannot grow a node's
/// memory without bound.
pub const REQUESTS_IN_FLIGHT_MAX: usize = 4096;

/// The remoting front end of one broker node; cheap to clone.
#[derive(Clone, Debug)]
pub struct Remoting {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    service: BrokerService,
    clients: ClientTable,
    next_connection: AtomicU64,
    /// Set when the broker stops: every connection closes.
    stopped: tokio::sync::watch::Sender<bool>,
    /// `rocketmq_rpc_latency`, when metrics are on.
    rpc: Option<RpcMetrics>,
}

impl Remoting {
    /// The front end over `service`, timing requests into `rpc` when given.
    pub fn new(service: BrokerService, rpc: Option<RpcMetrics>) -> Remoting {
        Remoting {
            inner: Arc::new(Inner {
                service,
                clients: ClientTable::default(),
                next_connection: AtomicU64::new(1),
                stopped: tokio::sync::watch::Sender::new(false),
                rpc,
            }),
        }
    }

    /// Closes every connection (requests in progress still answer) and refuses new ones.
    pub fn stop(&self) {
        self.inner.stopped.send_replace(true);
    }

    /// Serves one connection until the client closes it.
    #[tracing::instrument(level = "debug", skip_all, fields(peer = %peer))]
    pub async fn serve(&self, stream: TcpStream, peer: SocketAddr) {
        let (mut sink, mut source) = Framed::new(stream, FrameCodec::default()).split();
        let (outbox, mut rx) = mpsc::channel::<RemotingCommand>(OUTBOX_LEN);
        let conn = Connection {
            id: self.inner.next_connection.fetch_add(1, Ordering::Relaxed),
            peer,
            outbox,
        };
        self.inner.clients.connection_opened(conn.id);
        let writer = tokio::spawn(async move {
            while let Some(cmd) = rx.recv().await {
                if sink.send(cmd).await.is_err() {
                    break;
                }
            }
        });
        let mut stopped = self.inner.stopped.subscribe();
        let in_flight = Arc::new(tokio::sync::Semaphore::new(REQUESTS_IN_FLIGHT_MAX));
        loop {
            if *stopped.borrow_and_update() {
                break;
            }
            let frame = tokio::select! {
                frame = source.next() => frame,
                _ = stopped.changed() => break,
            };
            let Some(frame) = frame else { break };
            match frame {
                Ok(cmd) if cmd.is_response() => {} // a client's answer to a notification
                Ok(request) => {
                    let Ok(permit) = Arc::clone(&in_flight).try_acquire_owned() else {
                        let busy = RemotingCommand::response_to(&request, rs::SYSTEM_BUSY)
                            .with_remark(format!(
                                "more than {REQUESTS_IN_FLIGHT_MAX} requests in progress on this \
                                 connection; try again later"
                            ));
                        let _ = conn.outbox.try_send(busy);
                        continue;
                    };
                    let this = self.clone();
                    let conn = conn.clone();
                    tokio::spawn(async move {
                        this.answer(request, &conn).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    tracing::debug!(error = %e, "remoting connection closed on a bad frame");
                    break;
                }
            }
        }
        self.inner.clients.connection_closed(conn.id);
        drop(conn);
        let _ = writer.await;
    }

    async fn answer(&self, request: RemotingCommand, conn: &Connection) {
        let started = std::time::Instant::now();
        let oneway = request.is_oneway();
        let response = self.dispatch(&request, conn).await;
        let response_code = response.code;
        let written = oneway || conn.outbox.send(response).await.is_ok();
        if let Some(rpc) = &self.inner.rpc {
            let result = match (oneway, written) {
                (true, _) => RpcResult::Oneway,
                (false, true) => RpcResult::Success,
                (false, false) => RpcResult::Cancelled,
            };
            let rpc_labels = Rpc {
                protocol: "remoting",
                request: &code_name(request.code, rq::name(request.code)),
                response: &code_name(response_code, rs::name(response_code)),
                long_polling: request.code == rq::PULL_MESSAGE,
                result,
            };
            rpc.observe(rpc_labels, started.elapsed());
        }
    }

    async fn dispatch(&self, r: &RemotingCommand, conn: &Connection) -> RemotingCommand {
        let inner = &*self.inner;
        let answered = match r.code {
            rq::SEND_MESSAGE | rq::SEND_MESSAGE_V2 | rq::SEND_BATCH_MESSAGE => {
                send::send(&inner.service, r, conn).await
            }
            rq::CONSUMER_SEND_MSG_BACK => send::send_back(&inner.service, r).await,
            rq::END_TRANSACTION => transaction::end_transaction(&inner.service, r).await,
            rq::PULL_MESSAGE => pull::pull(&inner.service, r).await,
            rq::QUERY_CONSUMER_OFFSET => offset::query_consumer_offset(&inner.service, r).await,
            rq::UPDATE_CONSUMER_OFFSET => offset::update_consumer_offset(&inner.service, r).await,
            rq::GET_MAX_OFFSET => offset::max_offset(&inner.service, r),
            rq::GET_MIN_OFFSET => offset::min_offset(&inner.service, r),
            rq::SEARCH_OFFSET_BY_TIMESTAMP => offset::search_by_time(&inner.service, r),
            rq::HEART_BEAT => inner.clients.heartbeat(r, conn, &inner.service).await,
            rq::UNREGISTER_CLIENT => clients::unregister(r, &inner.service),
            rq::GET_CONSUMER_LIST_BY_GROUP => clients::consumer_list(r, &inner.service),
            rq::LOCK_BATCH_MQ => inner.clients.lock(r),
            rq::UNLOCK_BATCH_MQ => inner.clients.unlock(r),
            rq::UPDATE_AND_CREATE_TOPIC => admin::update_topic(&inner.service, r).await,
            rq::VIEW_MESSAGE_BY_ID => admin::view_message(&inner.service, r),
            rq::QUERY_MESSAGE => admin::query_message(&inner.service, r),
            rq::GET_BROKER_RUNTIME_INFO => Ok(admin::runtime_info(&inner.service, r)),
            rq::GET_CONSUMER_CONNECTION_LIST => admin::consumer_connection(&inner.service, r),
            rq::GET_PRODUCER_CONNECTION_LIST => admin::producer_connection(&inner.service, r),
            rq::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP => {
                admin::update_subscription_group(&inner.service, r).await
            }
            rq::GET_ALL_SUBSCRIPTIONGROUP_CONFIG => {
                admin::all_subscription_groups(&inner.service, r)
            }
            rq::DELETE_SUBSCRIPTIONGROUP => {
                admin::delete_subscription_group(&inner.service, r).await
            }
            code => Ok(
                RemotingCommand::response_to(r, rs::REQUEST_CODE_NOT_SUPPORTED)
                    .with_remark(format!("request type {code} not supported")),
            ),
        };
        answered.unwrap_or_else(|e| e.response(r))
    }
}

/// A code as RocketMQ's metrics name it: its constant's name in lower case, or the number.
fn code_name(code: i32, name: Option<&str>) -> String {
    name.map_or_else(|| code.to_string(), str::to_ascii_lowercase)
}
