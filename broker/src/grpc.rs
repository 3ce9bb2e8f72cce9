//! `apache.rocketmq.v2.MessagingService`: the RocketMQ 5 gRPC API the official SDKs speak.
//!
//! Every node serves every RPC. Writes (send, receive bookkeeping, ack, invisible-time changes)
//! are commands executed through the leader by [`MessageStore::execute`]; routes advertise the
//! endpoint the client dialled, so a client never needs another address. Business errors
//! travel in the response's `Status` with gRPC OK, using only codes the 2023 SDKs know
//! (../shared/reference/rocketmq-clients.md lists what each SDK demands).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::Stream;
use proto::apache::rocketmq::v2;
use proto::apache::rocketmq::v2::messaging_service_server::MessagingService;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status as GrpcStatus, Streaming};

use crate::command::{MessageType, Receive, StoredMessage};
use crate::state::{ApplyError, Delivery};
use crate::store::{MessageStore, StoreError, StoreErrorKind};

/// The shortest invisible time a receive may ask for (RocketMQ's `minInvisibleTimeMillsForRecv`).
pub const INVISIBLE_MS_MIN: u64 = 10_000;
/// The longest invisible time (RocketMQ's `maxInvisibleTimeMills`: 12 h).
pub const INVISIBLE_MS_MAX: u64 = 12 * 3600 * 1000;
/// The furthest a delay message may be scheduled (RocketMQ's `timerMaxDelaySec`: 3 days).
pub const DELAY_MS_MAX: u64 = 3 * 24 * 3600 * 1000;
/// Long polls are clamped to this range (as the Java proxy does).
const LONG_POLL_MS_MIN: u64 = 5_000;
const LONG_POLL_MS_MAX: u64 = 20_000;
/// Answer this long before the client's gRPC deadline.
const DEADLINE_MARGIN_MS: u64 = 500;
/// Messages one receive returns at most.
const RECEIVE_BATCH_MAX: u32 = 1024;

/// What the service needs to know from broker.conf.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// `brokerName`, advertised in routes.
    pub broker_name: String,
    /// `maxMessageSize`: the largest body accepted.
    pub max_message_size: usize,
    /// Create unknown topics on first use (`autoCreateTopicEnable`).
    pub auto_create_topic: bool,
    /// Queues of an auto-created topic (`defaultTopicQueueNums`).
    pub default_topic_queues: u32,
    /// Delivery attempts before the dead-letter queue (a group's `retryMaxTimes` + 1).
    pub max_delivery_attempts: u32,
    /// The host:port stored as `store_host`.
    pub store_host: String,
    /// The store directory whose file system is watched for `diskMaxUsedSpaceRatio`.
    pub store_dir: std::path::PathBuf,
    /// Above this disk usage (percent) sends are refused; receives go on.
    pub disk_max_used_space_ratio: u32,
    /// `unsafeAckBeforeReplication` (negative control, tests only): answer a send OK before it
    /// is proposed, and store it in the background.
    pub unsafe_ack_before_replication: bool,
}

/// The MessagingService of one broker node.
#[derive(Clone, Debug)]
pub struct Messaging {
    store: MessageStore,
    config: ServiceConfig,
    disk: std::sync::Arc<DiskGuard>,
}

/// Disk usage of the store's file system, looked up at most once a second.
#[derive(Debug, Default)]
struct DiskGuard {
    checked_ms: std::sync::atomic::AtomicU64,
    used_percent: std::sync::atomic::AtomicU32,
}

impl DiskGuard {
    fn used_percent(&self, dir: &std::path::Path) -> u32 {
        use std::sync::atomic::Ordering::Relaxed;
        let now = now_ms();
        if now.saturating_sub(self.checked_ms.load(Relaxed)) >= 1000 {
            self.checked_ms.store(now, Relaxed);
            if let Some(used) = raft_log::store::disk_used_percent(dir) {
                self.used_percent.store(used, Relaxed);
            }
        }
        self.used_percent.load(Relaxed)
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, GrpcStatus>> + Send + 'static>>;

impl Messaging {
    /// A service over `store`.
    pub fn new(store: MessageStore, config: ServiceConfig) -> Messaging {
        Messaging {
            store,
            config,
            disk: std::sync::Arc::default(),
        }
    }
}

fn status(code: v2::Code, message: impl Into<String>) -> v2::Status {
    v2::Status {
        code: code as i32,
        message: message.into(),
    }
}

fn ok() -> v2::Status {
    status(v2::Code::Ok, "OK")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn timestamp(ms: u64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: i64::try_from(ms / 1000).unwrap_or(i64::MAX),
        nanos: i32::try_from((ms % 1000) * 1_000_000).unwrap_or(0),
    }
}

fn ms_of_timestamp(t: &prost_types::Timestamp) -> u64 {
    u64::try_from(t.seconds).unwrap_or(0) * 1000 + u64::try_from(t.nanos / 1_000_000).unwrap_or(0)
}

fn ms_of_duration(d: &prost_types::Duration) -> Option<u64> {
    if d.seconds < 0 || d.nanos < 0 {
        return None;
    }
    Some(u64::try_from(d.seconds).ok()? * 1000 + u64::try_from(d.nanos / 1_000_000).ok()?)
}

fn duration(ms: u64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(ms / 1000).unwrap_or(i64::MAX),
        nanos: i32::try_from((ms % 1000) * 1_000_000).unwrap_or(0),
    }
}

/// RocketMQ's topic and group name rule: `^[%|a-zA-Z0-9_-]+$`, at most 127 characters.
pub(crate) fn check_name(kind: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{kind} is empty"));
    }
    if name.len() > 127 {
        return Err(format!("{kind} {name:?} is longer than 127 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "%|_-".contains(c))
    {
        return Err(format!(
            "{kind} {name:?} may only contain letters, digits, %, |, _ and -"
        ));
    }
    Ok(())
}

/// The status for a store failure. A timeout's outcome is unknown: the write may still land.
fn store_status(e: &StoreError) -> v2::Status {
    match e.kind() {
        StoreErrorKind::NoLeader => status(
            v2::Code::HaNotAvailable,
            "no leader in the broker group; retry",
        ),
        StoreErrorKind::Busy => status(v2::Code::TooManyRequests, "broker is busy; retry later"),
        StoreErrorKind::OutcomeUnknown => status(
            v2::Code::MasterPersistenceTimeout,
            format!("write not confirmed in time, outcome unknown: {e}"),
        ),
        StoreErrorKind::TooLarge => status(v2::Code::PayloadTooLarge, e.to_string()),
        StoreErrorKind::Shutdown | StoreErrorKind::UnknownNode | StoreErrorKind::Internal => {
            status(v2::Code::InternalServerError, e.to_string())
        }
    }
}

fn apply_status(e: &ApplyError) -> v2::Status {
    let code = match e {
        ApplyError::TopicNotFound { .. } => v2::Code::TopicNotFound,
        ApplyError::InvalidHandle { .. } => v2::Code::InvalidReceiptHandle,
        ApplyError::QueueCount { .. } => v2::Code::BadRequest,
    };
    status(code, e.to_string())
}

fn resource(name: &str, namespace: &str) -> v2::Resource {
    v2::Resource {
        resource_namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

fn message_type_to_pb(t: MessageType) -> v2::MessageType {
    match t {
        MessageType::Normal => v2::MessageType::Normal,
        MessageType::Fifo => v2::MessageType::Fifo,
        MessageType::Delay => v2::MessageType::Delay,
        MessageType::Transaction => v2::MessageType::Transaction,
    }
}

impl Messaging {
    fn endpoints_for(
        &self,
        dialled: Option<v2::Endpoints>,
        local: Option<SocketAddr>,
    ) -> v2::Endpoints {
        // Advertise exactly what the client dialled: it is reachable by construction.
        dialled
            .filter(|e| !e.addresses.is_empty())
            .unwrap_or_else(|| {
                let (host, port) = local.map_or(("127.0.0.1".to_string(), 0), |a| {
                    (a.ip().to_string(), i32::from(a.port()))
                });
                v2::Endpoints {
                    scheme: v2::AddressScheme::IPv4 as i32,
                    addresses: vec![v2::Address { host, port }],
                }
            })
    }

    fn queue(&self, topic: &v2::Resource, id: i32, endpoints: &v2::Endpoints) -> v2::MessageQueue {
        v2::MessageQueue {
            topic: Some(topic.clone()),
            id,
            permission: v2::Permission::ReadWrite as i32,
            broker: Some(v2::Broker {
                name: self.config.broker_name.clone(),
                id: 0,
                endpoints: Some(endpoints.clone()),
            }),
            accept_message_types: [
                v2::MessageType::Normal,
                v2::MessageType::Fifo,
                v2::MessageType::Delay,
                v2::MessageType::Transaction,
            ]
            .iter()
            .map(|t| *t as i32)
            .collect(),
        }
    }

    /// The topic's queue count, creating it first when auto-create is on.
    async fn ensure_topic(&self, topic: &str) -> Result<u32, v2::Status> {
        if let Some(t) = self.store.state().topics().get(topic) {
            return Ok(t.queues);
        }
        if !self.config.auto_create_topic {
            return Err(status(
                v2::Code::TopicNotFound,
                format!("topic {topic} does not exist (autoCreateTopicEnable=false)"),
            ));
        }
        let queues = self.config.default_topic_queues;
        match self.store.update_topic(topic, queues).await {
            Ok(Ok(())) => Ok(queues),
            Ok(Err(e)) => Err(apply_status(&e)),
            Err(e) => Err(store_status(&e)),
        }
    }

    /// Validates one message of a send and converts it; the error names the field.
    fn stored_message(&self, m: &v2::Message, now: u64) -> Result<StoredMessage, v2::Status> {
        let topic = m.topic.as_ref().map(|t| t.name.clone()).unwrap_or_default();
        check_name("message.topic", &topic).map_err(|e| status(v2::Code::IllegalTopic, e))?;
        let sys = m.system_properties.clone().unwrap_or_default();
        if m.body.is_empty() {
            return Err(status(v2::Code::BadRequest, "message.body is empty"));
        }
        if m.body.len() > self.config.max_message_size {
            return Err(status(
                v2::Code::MessageBodyTooLarge,
                format!(
                    "message.body of {} bytes exceeds maxMessageSize {}",
                    m.body.len(),
                    self.config.max_message_size
                ),
            ));
        }
        let message_type =
            match v2::MessageType::try_from(sys.message_type).unwrap_or(v2::MessageType::Normal) {
                v2::MessageType::Fifo => MessageType::Fifo,
                v2::MessageType::Delay => MessageType::Delay,
                v2::MessageType::Transaction => {
                    return Err(status(
                        v2::Code::NotImplemented,
                        "transactional messages are not supported yet",
                    ));
                }
                _ => MessageType::Normal,
            };
        let delivery_ms = sys.delivery_timestamp.as_ref().map_or(0, ms_of_timestamp);
        if delivery_ms > now + DELAY_MS_MAX {
            return Err(status(
                v2::Code::IllegalDeliveryTime,
                format!(
                    "system_properties.delivery_timestamp is more than {} days ahead",
                    DELAY_MS_MAX / 86_400_000
                ),
            ));
        }
        let message_group = sys.message_group.filter(|g| !g.is_empty());
        if message_type == MessageType::Fifo && message_group.is_none() {
            return Err(status(
                v2::Code::BadRequest,
                "FIFO message without system_properties.message_group",
            ));
        }
        let mut properties = Vec::with_capacity(m.user_properties.len() * 2);
        for (k, v) in &m.user_properties {
            properties.push(k.clone());
            properties.push(v.clone());
        }
        Ok(StoredMessage {
            topic,
            message_id: sys.message_id,
            message_type,
            tag: sys.tag.filter(|t| !t.is_empty()),
            keys: sys.keys,
            message_group,
            delivery_ms,
            born_ms: sys.born_timestamp.as_ref().map_or(now, ms_of_timestamp),
            born_host: sys.born_host,
            properties,
            body: m.body.clone(),
        })
    }

    fn delivered_message(&self, d: &Delivery, namespace: &str) -> Result<v2::Message, StoreError> {
        let m = self.store.read_message(&d.entry)?;
        let mut user_properties = HashMap::new();
        for kv in m.properties.chunks(2) {
            if let [k, v] = kv {
                user_properties.insert(k.clone(), v.clone());
            }
        }
        let digest = format!("{:08X}", crc32fast::hash(&m.body));
        let sys = v2::SystemProperties {
            tag: m.tag.clone(),
            keys: m.keys.clone(),
            message_id: m.message_id.clone(),
            body_digest: Some(v2::Digest {
                r#type: v2::DigestType::Crc32 as i32,
                checksum: digest,
            }),
            body_encoding: v2::Encoding::Identity as i32,
            message_type: message_type_to_pb(m.message_type) as i32,
            born_timestamp: Some(timestamp(m.born_ms)),
            born_host: m.born_host.clone(),
            store_timestamp: Some(timestamp(d.entry.store_ms)),
            store_host: self.config.store_host.clone(),
            delivery_timestamp: (m.delivery_ms > 0).then(|| timestamp(m.delivery_ms)),
            receipt_handle: Some(d.handle.clone()),
            queue_id: i32::try_from(d.queue).unwrap_or(i32::MAX),
            queue_offset: Some(i64::try_from(d.offset).unwrap_or(i64::MAX)),
            invisible_duration: Some(duration(d.visible_at_ms.saturating_sub(now_ms()))),
            delivery_attempt: Some(i32::try_from(d.attempt).unwrap_or(i32::MAX)),
            message_group: m.message_group.clone(),
            ..Default::default()
        };
        Ok(v2::Message {
            topic: Some(resource(&d.topic, namespace)),
            user_properties,
            system_properties: Some(sys),
            body: m.body,
        })
    }
}

/// The client's gRPC deadline, from the `grpc-timeout` header (`<n><unit>`).
fn grpc_timeout_ms<T>(request: &Request<T>) -> Option<u64> {
    let v = request.metadata().get("grpc-timeout")?.to_str().ok()?;
    let (n, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "H" => n * 3_600_000,
        "M" => n * 60_000,
        "S" => n * 1000,
        "m" => n,
        "u" => n / 1000,
        "n" => n / 1_000_000,
        _ => return None,
    })
}

fn tags_of(filter: Option<&v2::FilterExpression>) -> Result<Vec<String>, v2::Status> {
    let Some(f) = filter else {
        return Ok(Vec::new());
    };
    if f.r#type == v2::FilterType::Sql as i32 {
        return Err(status(
            v2::Code::NotImplemented,
            "SQL92 filters are not supported yet",
        ));
    }
    let expr = f.expression.trim();
    if expr.is_empty() || expr == "*" {
        return Ok(Vec::new());
    }
    Ok(expr
        .split("||")
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect())
}

#[tonic::async_trait]
impl MessagingService for Messaging {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn query_route(
        &self,
        request: Request<v2::QueryRouteRequest>,
    ) -> Result<Response<v2::QueryRouteResponse>, GrpcStatus> {
        let local = request.local_addr();
        let req = request.into_inner();
        let topic = req.topic.clone().unwrap_or_default();
        let reply = |s: v2::Status, qs: Vec<v2::MessageQueue>| {
            Ok(Response::new(v2::QueryRouteResponse {
                status: Some(s),
                message_queues: qs,
            }))
        };
        if let Err(e) = check_name("topic", &topic.name) {
            return reply(status(v2::Code::IllegalTopic, e), vec![]);
        }
        let queues = match self.ensure_topic(&topic.name).await {
            Ok(q) => q,
            Err(s) => return reply(s, vec![]),
        };
        let endpoints = self.endpoints_for(req.endpoints, local);
        let qs = (0..queues)
            .map(|id| self.queue(&topic, i32::try_from(id).unwrap_or(0), &endpoints))
            .collect();
        reply(ok(), qs)
    }

    async fn heartbeat(
        &self,
        _request: Request<v2::HeartbeatRequest>,
    ) -> Result<Response<v2::HeartbeatResponse>, GrpcStatus> {
        Ok(Response::new(v2::HeartbeatResponse { status: Some(ok()) }))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn send_message(
        &self,
        request: Request<v2::SendMessageRequest>,
    ) -> Result<Response<v2::SendMessageResponse>, GrpcStatus> {
        let req = request.into_inner();
        let now = now_ms();
        if req.messages.is_empty() {
            return Ok(Response::new(v2::SendMessageResponse {
                status: Some(status(v2::Code::BadRequest, "messages is empty")),
                entries: vec![],
            }));
        }
        let used = self.disk.used_percent(&self.config.store_dir);
        if used > self.config.disk_max_used_space_ratio {
            let s = status(
                v2::Code::InternalServerError,
                format!(
                    "disk {used}% full exceeds diskMaxUsedSpaceRatio {}%: sends are refused, receives go on",
                    self.config.disk_max_used_space_ratio
                ),
            );
            let entries = req
                .messages
                .iter()
                .map(|m| v2::SendResultEntry {
                    status: Some(s.clone()),
                    message_id: m
                        .system_properties
                        .as_ref()
                        .map(|p| p.message_id.clone())
                        .unwrap_or_default(),
                    ..Default::default()
                })
                .collect();
            return Ok(Response::new(v2::SendMessageResponse {
                status: Some(s),
                entries,
            }));
        }
        // Validate every message first; an invalid one is answered without writing anything.
        let mut entries: Vec<Option<v2::SendResultEntry>> = vec![None; req.messages.len()];
        let mut accepted = Vec::new();
        for (i, m) in req.messages.iter().enumerate() {
            let id = m
                .system_properties
                .as_ref()
                .map(|s| s.message_id.clone())
                .unwrap_or_default();
            let checked = match self.stored_message(m, now) {
                Ok(sm) => match self.ensure_topic(&sm.topic).await {
                    Ok(_) => Ok(sm),
                    Err(s) => Err(s),
                },
                Err(s) => Err(s),
            };
            match checked {
                Ok(sm) => accepted.push((i, sm)),
                Err(s) => {
                    entries[i] = Some(v2::SendResultEntry {
                        status: Some(s),
                        message_id: id,
                        ..Default::default()
                    })
                }
            }
        }
        if !accepted.is_empty() {
            let (slots, messages): (Vec<usize>, Vec<StoredMessage>) = accepted.into_iter().unzip();
            let ids: Vec<String> = messages.iter().map(|m| m.message_id.clone()).collect();
            let outcome = if self.config.unsafe_ack_before_replication {
                // The negative control: OK now, the write happens (or not) later.
                let store = self.store.clone();
                tokio::spawn(async move {
                    if let Err(e) = store.send(now, messages).await {
                        tracing::warn!("unsafeAckBeforeReplication: acknowledged send lost: {e}");
                    }
                });
                Ok(ids.iter().map(|_| Ok((0, 0))).collect())
            } else {
                self.store.send(now, messages).await
            };
            for (k, &i) in slots.iter().enumerate() {
                let id = ids[k].clone();
                let entry = match &outcome {
                    Ok(results) => match results.get(k) {
                        Some(Ok((_queue, offset))) => v2::SendResultEntry {
                            status: Some(ok()),
                            message_id: id,
                            offset: i64::try_from(*offset).unwrap_or(i64::MAX),
                            ..Default::default()
                        },
                        Some(Err(e)) => v2::SendResultEntry {
                            status: Some(apply_status(e)),
                            message_id: id,
                            ..Default::default()
                        },
                        None => v2::SendResultEntry {
                            status: Some(status(v2::Code::InternalServerError, "missing result")),
                            message_id: id,
                            ..Default::default()
                        },
                    },
                    Err(e) => v2::SendResultEntry {
                        status: Some(store_status(e)),
                        message_id: id,
                        ..Default::default()
                    },
                };
                entries[i] = Some(entry);
            }
        }
        let entries: Vec<v2::SendResultEntry> =
            entries.into_iter().map(Option::unwrap_or_default).collect();
        let top = overall(entries.iter().map(|e| e.status.clone().unwrap_or_default()));
        Ok(Response::new(v2::SendMessageResponse {
            status: Some(top),
            entries,
        }))
    }

    async fn query_assignment(
        &self,
        request: Request<v2::QueryAssignmentRequest>,
    ) -> Result<Response<v2::QueryAssignmentResponse>, GrpcStatus> {
        let local = request.local_addr();
        let req = request.into_inner();
        let topic = req.topic.clone().unwrap_or_default();
        if let Err(s) = self.ensure_topic(&topic.name).await {
            return Ok(Response::new(v2::QueryAssignmentResponse {
                status: Some(s),
                assignments: vec![],
            }));
        }
        let endpoints = self.endpoints_for(req.endpoints, local);
        // One assignment for the whole broker: receives pop across all queues.
        let assignment = v2::Assignment {
            message_queue: Some(self.queue(&topic, -1, &endpoints)),
        };
        Ok(Response::new(v2::QueryAssignmentResponse {
            status: Some(ok()),
            assignments: vec![assignment],
        }))
    }

    type ReceiveMessageStream = BoxStream<v2::ReceiveMessageResponse>;

    #[tracing::instrument(level = "debug", skip_all)]
    async fn receive_message(
        &self,
        request: Request<v2::ReceiveMessageRequest>,
    ) -> Result<Response<Self::ReceiveMessageStream>, GrpcStatus> {
        let deadline_ms = grpc_timeout_ms(&request);
        let req = request.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let this = self.clone();
        tokio::spawn(async move { this.receive(req, deadline_ms, tx).await });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn ack_message(
        &self,
        request: Request<v2::AckMessageRequest>,
    ) -> Result<Response<v2::AckMessageResponse>, GrpcStatus> {
        let req = request.into_inner();
        let group = req.group.map(|g| g.name).unwrap_or_default();
        let topic = req.topic.map(|t| t.name).unwrap_or_default();
        let handles: Vec<String> = req
            .entries
            .iter()
            .map(|e| e.receipt_handle.clone())
            .collect();
        let outcome = self.store.ack(&group, &topic, handles).await;
        let entries: Vec<v2::AckMessageResultEntry> = req
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let s = match &outcome {
                    Ok(r) => match r.get(i) {
                        Some(Ok(())) => ok(),
                        Some(Err(err)) => apply_status(err),
                        None => status(v2::Code::InternalServerError, "missing result"),
                    },
                    Err(err) => store_status(err),
                };
                v2::AckMessageResultEntry {
                    message_id: e.message_id.clone(),
                    receipt_handle: e.receipt_handle.clone(),
                    status: Some(s),
                }
            })
            .collect();
        let top = overall(entries.iter().map(|e| e.status.clone().unwrap_or_default()));
        Ok(Response::new(v2::AckMessageResponse {
            status: Some(top),
            entries,
        }))
    }

    async fn forward_message_to_dead_letter_queue(
        &self,
        request: Request<v2::ForwardMessageToDeadLetterQueueRequest>,
    ) -> Result<Response<v2::ForwardMessageToDeadLetterQueueResponse>, GrpcStatus> {
        let req = request.into_inner();
        let group = req.group.map(|g| g.name).unwrap_or_default();
        let topic = req.topic.map(|t| t.name).unwrap_or_default();
        let s = match self
            .store
            .forward_to_dead_letter(&group, &topic, req.receipt_handle)
            .await
        {
            Ok(Ok(())) => ok(),
            Ok(Err(e)) => apply_status(&e),
            Err(e) => store_status(&e),
        };
        Ok(Response::new(v2::ForwardMessageToDeadLetterQueueResponse {
            status: Some(s),
        }))
    }

    type PullMessageStream = BoxStream<v2::PullMessageResponse>;

    async fn pull_message(
        &self,
        _request: Request<v2::PullMessageRequest>,
    ) -> Result<Response<Self::PullMessageStream>, GrpcStatus> {
        let reply = v2::PullMessageResponse {
            content: Some(v2::pull_message_response::Content::Status(status(
                v2::Code::NotImplemented,
                "PullMessage is not supported yet",
            ))),
        };
        Ok(Response::new(Box::pin(futures::stream::iter([Ok(reply)]))))
    }

    async fn update_offset(
        &self,
        _request: Request<v2::UpdateOffsetRequest>,
    ) -> Result<Response<v2::UpdateOffsetResponse>, GrpcStatus> {
        Ok(Response::new(v2::UpdateOffsetResponse {
            status: Some(not_implemented("UpdateOffset")),
        }))
    }

    async fn get_offset(
        &self,
        _request: Request<v2::GetOffsetRequest>,
    ) -> Result<Response<v2::GetOffsetResponse>, GrpcStatus> {
        Ok(Response::new(v2::GetOffsetResponse {
            status: Some(not_implemented("GetOffset")),
            ..Default::default()
        }))
    }

    async fn query_offset(
        &self,
        _request: Request<v2::QueryOffsetRequest>,
    ) -> Result<Response<v2::QueryOffsetResponse>, GrpcStatus> {
        Ok(Response::new(v2::QueryOffsetResponse {
            status: Some(not_implemented("QueryOffset")),
            ..Default::default()
        }))
    }

    async fn end_transaction(
        &self,
        _request: Request<v2::EndTransactionRequest>,
    ) -> Result<Response<v2::EndTransactionResponse>, GrpcStatus> {
        Ok(Response::new(v2::EndTransactionResponse {
            status: Some(not_implemented("EndTransaction")),
        }))
    }

    type TelemetryStream = BoxStream<v2::TelemetryCommand>;

    #[tracing::instrument(level = "debug", skip_all)]
    async fn telemetry(
        &self,
        request: Request<Streaming<v2::TelemetryCommand>>,
    ) -> Result<Response<Self::TelemetryStream>, GrpcStatus> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let config = self.config.clone();
        // Answer each Settings with merged Settings. The response (and its headers) goes back at
        // once: the Rust SDK waits for headers before it sends anything.
        tokio::spawn(async move {
            while let Ok(Some(cmd)) = inbound.message().await {
                if let Some(v2::telemetry_command::Command::Settings(s)) = cmd.command {
                    let reply = v2::TelemetryCommand {
                        status: Some(ok()),
                        command: Some(v2::telemetry_command::Command::Settings(merged_settings(
                            s, &config,
                        ))),
                    };
                    if tx.send(Ok(reply)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn notify_client_termination(
        &self,
        _request: Request<v2::NotifyClientTerminationRequest>,
    ) -> Result<Response<v2::NotifyClientTerminationResponse>, GrpcStatus> {
        Ok(Response::new(v2::NotifyClientTerminationResponse {
            status: Some(ok()),
        }))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn change_invisible_duration(
        &self,
        request: Request<v2::ChangeInvisibleDurationRequest>,
    ) -> Result<Response<v2::ChangeInvisibleDurationResponse>, GrpcStatus> {
        let req = request.into_inner();
        let reply = |s: v2::Status, handle: String| {
            Ok(Response::new(v2::ChangeInvisibleDurationResponse {
                status: Some(s),
                receipt_handle: handle,
            }))
        };
        let Some(invisible_ms) = req.invisible_duration.as_ref().and_then(ms_of_duration) else {
            return reply(
                status(
                    v2::Code::IllegalInvisibleTime,
                    "invisible_duration is missing or negative",
                ),
                String::new(),
            );
        };
        if invisible_ms > INVISIBLE_MS_MAX {
            return reply(
                status(
                    v2::Code::IllegalInvisibleTime,
                    format!("invisible_duration exceeds {INVISIBLE_MS_MAX} ms"),
                ),
                String::new(),
            );
        }
        let group = req.group.map(|g| g.name).unwrap_or_default();
        let topic = req.topic.map(|t| t.name).unwrap_or_default();
        let changed = self
            .store
            .change_invisible(now_ms(), &group, &topic, req.receipt_handle, invisible_ms)
            .await;
        match changed {
            Ok(Ok(handle)) => reply(ok(), handle),
            Ok(Err(e)) => reply(apply_status(&e), String::new()),
            Err(e) => reply(store_status(&e), String::new()),
        }
    }

    async fn recall_message(
        &self,
        _request: Request<v2::RecallMessageRequest>,
    ) -> Result<Response<v2::RecallMessageResponse>, GrpcStatus> {
        Ok(Response::new(v2::RecallMessageResponse {
            status: Some(not_implemented("RecallMessage")),
            ..Default::default()
        }))
    }

    async fn sync_lite_subscription(
        &self,
        _request: Request<v2::SyncLiteSubscriptionRequest>,
    ) -> Result<Response<v2::SyncLiteSubscriptionResponse>, GrpcStatus> {
        Ok(Response::new(v2::SyncLiteSubscriptionResponse {
            status: Some(not_implemented("SyncLiteSubscription")),
        }))
    }
}

fn not_implemented(rpc: &str) -> v2::Status {
    status(
        v2::Code::NotImplemented,
        format!("{rpc} is not supported yet"),
    )
}

/// Java's rule: all OK → OK; one failure → its status; mixed → MULTIPLE_RESULTS.
fn overall(statuses: impl Iterator<Item = v2::Status>) -> v2::Status {
    let failed: Vec<v2::Status> = statuses.filter(|s| s.code != v2::Code::Ok as i32).collect();
    match failed.len() {
        0 => ok(),
        1 => failed.into_iter().next().unwrap_or_else(ok),
        _ => status(v2::Code::MultipleResults, "entries have different results"),
    }
}

/// The client's settings completed with the server's: retry policy, body limit, receive batch,
/// long-poll timeout, metrics off.
fn merged_settings(mut s: v2::Settings, config: &ServiceConfig) -> v2::Settings {
    let backoff = |attempts: i32| v2::RetryPolicy {
        max_attempts: attempts,
        strategy: Some(v2::retry_policy::Strategy::ExponentialBackoff(
            v2::ExponentialBackoff {
                initial: Some(duration(10)),
                max: Some(duration(1000)),
                multiplier: 2.0,
            },
        )),
    };
    match &mut s.pub_sub {
        Some(v2::settings::PubSub::Publishing(p)) => {
            p.max_body_size = i32::try_from(config.max_message_size).unwrap_or(i32::MAX);
            s.backoff_policy = Some(backoff(3));
        }
        Some(v2::settings::PubSub::Subscription(sub)) => {
            sub.receive_batch_size = Some(32);
            sub.long_polling_timeout = Some(duration(LONG_POLL_MS_MAX));
            sub.fifo.get_or_insert(false);
            s.backoff_policy = Some(backoff(
                i32::try_from(config.max_delivery_attempts).unwrap_or(17),
            ));
        }
        None => {}
    }
    s.metric = Some(v2::Metric {
        on: false,
        endpoints: None,
    });
    s
}

impl Messaging {
    /// One long poll: status, messages, delivery timestamp — or MESSAGE_NOT_FOUND before the
    /// client's deadline.
    async fn receive(
        self,
        req: v2::ReceiveMessageRequest,
        deadline_ms: Option<u64>,
        tx: mpsc::Sender<Result<v2::ReceiveMessageResponse, GrpcStatus>>,
    ) {
        let send_status = |s: v2::Status| v2::ReceiveMessageResponse {
            content: Some(v2::receive_message_response::Content::Status(s)),
        };
        let stamp = || v2::ReceiveMessageResponse {
            content: Some(v2::receive_message_response::Content::DeliveryTimestamp(
                timestamp(now_ms()),
            )),
        };
        let fail = |s: v2::Status| async {
            let _ = tx.send(Ok(send_status(s))).await;
        };
        let group = req.group.clone().map(|g| g.name).unwrap_or_default();
        let topic_res = req
            .message_queue
            .as_ref()
            .and_then(|q| q.topic.clone())
            .unwrap_or_default();
        if let Err(e) = check_name("group", &group) {
            return fail(status(v2::Code::IllegalConsumerGroup, e)).await;
        }
        if let Err(e) = check_name("message_queue.topic", &topic_res.name) {
            return fail(status(v2::Code::IllegalTopic, e)).await;
        }
        let invisible_ms = req
            .invisible_duration
            .as_ref()
            .and_then(ms_of_duration)
            .unwrap_or(30_000);
        if !(INVISIBLE_MS_MIN..=INVISIBLE_MS_MAX).contains(&invisible_ms) {
            return fail(status(
                v2::Code::IllegalInvisibleTime,
                format!("invisible_duration {invisible_ms} ms is outside [{INVISIBLE_MS_MIN}, {INVISIBLE_MS_MAX}] ms"),
            ))
            .await;
        }
        let tags = match tags_of(req.filter_expression.as_ref()) {
            Ok(t) => t,
            Err(s) => return fail(s).await,
        };
        if !self.store.state().topics().contains_key(&topic_res.name) {
            return fail(status(
                v2::Code::TopicNotFound,
                format!("topic {} does not exist", topic_res.name),
            ))
            .await;
        }
        let batch = u32::try_from(req.batch_size.max(1))
            .unwrap_or(1)
            .min(RECEIVE_BATCH_MAX);
        let poll_ms = req
            .long_polling_timeout
            .as_ref()
            .and_then(ms_of_duration)
            .unwrap_or(LONG_POLL_MS_MAX)
            .clamp(LONG_POLL_MS_MIN, LONG_POLL_MS_MAX);
        let budget_ms = deadline_ms.map_or(poll_ms, |d| {
            poll_ms.min(d.saturating_sub(DEADLINE_MARGIN_MS))
        });
        let until = tokio::time::Instant::now() + Duration::from_millis(budget_ms);
        let mut applied = self.store.applied();
        loop {
            let ready =
                self.store
                    .state()
                    .has_deliverable(&group, &topic_res.name, &tags, now_ms());
            if ready {
                let ask = Receive {
                    now_ms: now_ms(),
                    group: group.clone(),
                    topic: topic_res.name.clone(),
                    tags: tags.clone(),
                    batch,
                    invisible_ms,
                    max_attempts: self.config.max_delivery_attempts,
                };
                match self.store.receive(ask).await {
                    Ok(Ok(deliveries)) if !deliveries.is_empty() => {
                        let mut out = vec![Ok(send_status(ok()))];
                        for d in &deliveries {
                            match self.delivered_message(d, &topic_res.resource_namespace) {
                                Ok(m) => out.push(Ok(v2::ReceiveMessageResponse {
                                    content: Some(v2::receive_message_response::Content::Message(
                                        m,
                                    )),
                                })),
                                Err(e) => {
                                    tracing::error!(error = %e, "delivered message could not be read; it will be redelivered")
                                }
                            }
                        }
                        out.push(Ok(stamp()));
                        for item in out {
                            if tx.send(item).await.is_err() {
                                return;
                            }
                        }
                        return;
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return fail(apply_status(&e)).await,
                    Err(e) => return fail(store_status(&e)).await,
                }
            }
            // Wait for the state to change (a send, an ack) or for invisible/delay times to pass.
            let wake = tokio::time::Instant::now() + Duration::from_millis(100);
            let next = wake.min(until);
            if tokio::time::Instant::now() >= until {
                break;
            }
            let _ = tokio::time::timeout_at(next, applied.changed()).await;
        }
        let _ = tx
            .send(Ok(send_status(status(
                v2::Code::MessageNotFound,
                "no new message",
            ))))
            .await;
        let _ = tx.send(Ok(stamp())).await;
    }
}
