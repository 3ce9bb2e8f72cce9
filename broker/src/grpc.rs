//! `apache.rocketmq.v2.MessagingService`: the RocketMQ 5 gRPC API the official SDKs speak.
//!
//! A mapping between protobuf and [`BrokerService`], nothing more: each RPC decodes its request
//! into the service's types, calls one operation, and encodes the result, or maps the
//! [`ServiceError`] to a `Code` in [`error_status`]. Routes advertise the endpoint the client
//! dialled, so a client never needs another address. Business errors travel in the response's
//! `Status` with gRPC OK, using only codes the 2023 SDKs know
//! (../shared/reference/rocketmq-clients.md lists what each SDK demands).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;

use futures::Stream;
use proto::apache::rocketmq::v2;
use proto::apache::rocketmq::v2::messaging_service_server::MessagingService;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status as GrpcStatus, Streaming};

use crate::command::{GroupRetryPolicy, MessageType, StoredMessage, SubscriptionGroup};
use crate::service::{
    BrokerService, ClientInfo, ClientNotice, ClientProtocol, ConsumeType, Filter, FilterKind,
    GroupConsumer, LONG_POLL_MS_MAX, NameKind, NewMessage, Polled, PullRequest, PullStatus, Pulled,
    PulledMessage, ReceiveRequest, ReceivedMessage, Registration, SendReceipt, SendResults,
    ServiceConfig, ServiceError, TransactionCheck, grpc_version, now_ms, pull_suspend_ms,
    recall_handle,
};
use crate::state::ApplyError;
use crate::store::StoreErrorKind;

/// The MessagingService of one broker node.
#[derive(Clone, Debug)]
pub struct Messaging {
    service: BrokerService,
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, GrpcStatus>> + Send + 'static>>;

impl Messaging {
    /// The MessagingService over `service`.
    pub fn new(service: BrokerService) -> Messaging {
        Messaging { service }
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

/// The status for a service error: the one mapping of this protocol. A timeout's outcome is
/// unknown: the write may still land.
fn error_status(e: &ServiceError) -> v2::Status {
    use ServiceError as E;
    let code = match e {
        E::InvalidName {
            kind: NameKind::Topic,
            ..
        } => v2::Code::IllegalTopic,
        E::InvalidName {
            kind: NameKind::Group,
            ..
        } => v2::Code::IllegalConsumerGroup,
        E::NoMessages
        | E::EmptyBody
        | E::FifoWithoutGroup
        | E::MissingField { .. }
        | E::InvalidField { .. } => v2::Code::BadRequest,
        // Not MESSAGE_NOT_FOUND: the SDKs take that for an empty receive and report success.
        E::MessageNotFound { .. } => v2::Code::NotFound,
        E::BodyTooLarge { .. } => v2::Code::MessageBodyTooLarge,
        E::Unsupported { .. } => v2::Code::NotImplemented,
        E::DeliveryTooLate { .. } => v2::Code::IllegalDeliveryTime,
        E::InvisibleTimeMissing
        | E::InvisibleTimeTooLong { .. }
        | E::InvisibleTimeOutOfRange { .. } => v2::Code::IllegalInvisibleTime,
        E::TopicNotAutoCreated { .. } | E::TopicNotFound { .. } => v2::Code::TopicNotFound,
        E::Refused { source } => match source {
            ApplyError::TopicNotFound { .. } => v2::Code::TopicNotFound,
            ApplyError::InvalidHandle { .. } => v2::Code::InvalidReceiptHandle,
            ApplyError::QueueCount { .. } | ApplyError::QueueNotFound { .. } => {
                v2::Code::BadRequest
            }
            ApplyError::TransactionNotFound { .. } => v2::Code::InvalidTransactionId,
            ApplyError::NotRecallable { .. } => v2::Code::BadRequest,
            ApplyError::SubscriptionGroupNotFound { .. } => v2::Code::ConsumerGroupNotFound,
            ApplyError::InvalidSubscriptionGroup { .. } => v2::Code::BadRequest,
        },
        // The Java proxy's answer to the broker's SUBSCRIPTION_GROUP_NOT_EXIST.
        E::SubscriptionGroupNotFound { .. } | E::SubscriptionGroupNotAutoCreated { .. } => {
            v2::Code::ConsumerGroupNotFound
        }
        // The broker's NO_PERMISSION; the Java proxy passes it on as INTERNAL_SERVER_ERROR (no
        // entry in its table), FORBIDDEN says what it is and every SDK knows it.
        E::ConsumeDisabled { .. } | E::BroadcastDisabled { .. } => v2::Code::Forbidden,
        E::Store { source } => return store_status(source.kind(), e),
        E::GroupNotFound { .. }
        | E::ConsumerNotOnline { .. }
        | E::ProducerNotOnline { .. }
        | E::UnknownNode { .. }
        | E::NotLeader { .. }
        | E::DiskFull { .. }
        | E::ResultMissing => v2::Code::InternalServerError,
    };
    status(code, e.to_string())
}

fn store_status(kind: StoreErrorKind, e: &ServiceError) -> v2::Status {
    match kind {
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

fn message_type_of_pb(t: i32) -> MessageType {
    match v2::MessageType::try_from(t).unwrap_or(v2::MessageType::Normal) {
        v2::MessageType::Fifo => MessageType::Fifo,
        v2::MessageType::Delay => MessageType::Delay,
        v2::MessageType::Transaction => MessageType::Transaction,
        _ => MessageType::Normal,
    }
}

fn message_id(m: &v2::Message) -> String {
    m.system_properties
        .as_ref()
        .map(|p| p.message_id.clone())
        .unwrap_or_default()
}

/// A message of a send, decoded; the service checks it.
fn new_message(m: &v2::Message) -> NewMessage {
    let sys = m.system_properties.clone().unwrap_or_default();
    let mut properties = Vec::with_capacity(m.user_properties.len() * 2);
    for (k, v) in &m.user_properties {
        properties.push(k.clone());
        properties.push(v.clone());
    }
    NewMessage {
        topic: m.topic.as_ref().map(|t| t.name.clone()).unwrap_or_default(),
        message_id: sys.message_id,
        message_type: message_type_of_pb(sys.message_type),
        tag: sys.tag,
        keys: sys.keys,
        message_group: sys.message_group,
        delivery_ms: sys.delivery_timestamp.as_ref().map_or(0, ms_of_timestamp),
        born_ms: sys.born_timestamp.as_ref().map(ms_of_timestamp),
        born_host: sys.born_host,
        properties,
        body: m.body.clone(),
        queue: None,
    }
}

/// A request header as text, empty when absent.
fn header<'a, T>(request: &'a Request<T>, name: &str) -> &'a str {
    let value = request.metadata().get(name).and_then(|v| v.to_str().ok());
    value.unwrap_or_default()
}

/// Who a 5.x client is: its `x-mq-*` headers and address; `None` without a client id.
fn client_info<T>(request: &Request<T>) -> Option<ClientInfo> {
    let client_id = header(request, "x-mq-client-id");
    if client_id.is_empty() {
        return None;
    }
    Some(ClientInfo {
        client_id: client_id.to_string(),
        addr: request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        language: header(request, "x-mq-language").to_string(),
        version: grpc_version(header(request, "x-mq-client-version")),
        protocol: ClientProtocol::Grpc,
    })
}

/// What a client's Settings register, as RocketMQ's proxy does: a producer's topics are its
/// producer groups; a consumer joins its group.
fn registration_of(s: &v2::Settings) -> Registration {
    let mut registration = Registration::default();
    match &s.pub_sub {
        Some(v2::settings::PubSub::Publishing(p)) => {
            registration.producer_groups = p.topics.iter().map(|t| t.name.clone()).collect();
        }
        Some(v2::settings::PubSub::Subscription(sub)) => {
            let group = group_name(sub.group.as_ref());
            if !group.is_empty() {
                let part = group_consumer(s.client_type, sub);
                registration.consumer_groups.insert(group, part);
            }
        }
        None => {}
    }
    registration
}

/// A 5.x consumer's part in its group, as RocketMQ's proxy registers it: its subscriptions, a
/// push consumer CONSUME_PASSIVELY and the others CONSUME_ACTIVELY, CLUSTERING from the last
/// offset.
fn group_consumer(client_type: Option<i32>, sub: &v2::Subscription) -> GroupConsumer {
    let push = [
        v2::ClientType::PushConsumer,
        v2::ClientType::LitePushConsumer,
    ]
    .map(|t| Some(t as i32))
    .contains(&client_type);
    let mut part = GroupConsumer::default();
    part.mode.consume_type = if push {
        ConsumeType::Passively
    } else {
        ConsumeType::Actively
    };
    for e in &sub.subscriptions {
        let topic = e.topic.as_ref().map(|t| t.name.clone()).unwrap_or_default();
        let filter = e.expression.as_ref().map_or_else(
            || Filter {
                kind: FilterKind::Tag,
                expression: "*".into(),
            },
            filter_of_pb,
        );
        part.subscriptions.insert(topic, filter);
    }
    part
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

fn filter_of_pb(f: &v2::FilterExpression) -> Filter {
    Filter {
        kind: if f.r#type == v2::FilterType::Sql as i32 {
            FilterKind::Sql
        } else {
            FilterKind::Tag
        },
        expression: f.expression.clone(),
    }
}

fn receive_request(
    req: &v2::ReceiveMessageRequest,
    deadline_ms: Option<u64>,
    client_addr: Option<SocketAddr>,
) -> ReceiveRequest {
    ReceiveRequest {
        group: req
            .group
            .as_ref()
            .map(|g| g.name.clone())
            .unwrap_or_default(),
        topic: req
            .message_queue
            .as_ref()
            .and_then(|q| q.topic.as_ref())
            .map(|t| t.name.clone())
            .unwrap_or_default(),
        filter: req.filter_expression.as_ref().map(filter_of_pb),
        batch_size: req.batch_size,
        invisible_ms: req.invisible_duration.as_ref().and_then(ms_of_duration),
        long_poll_ms: req.long_polling_timeout.as_ref().and_then(ms_of_duration),
        deadline_ms,
        client_addr,
    }
}

/// A response stream whose headers go back at once and whose items follow when `items` is
/// ready (the end of a long poll).
fn deferred_stream<T: Send + 'static>(
    items: impl Future<Output = Vec<T>> + Send + 'static,
) -> BoxStream<T> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        for item in items.await {
            if tx.send(Ok(item)).await.is_err() {
                return;
            }
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

/// The namespace of a request's queue's topic.
fn namespace_of(queue: Option<&v2::MessageQueue>) -> String {
    queue
        .and_then(|q| q.topic.as_ref())
        .map(|t| t.resource_namespace.clone())
        .unwrap_or_default()
}

fn group_name(group: Option<&v2::Resource>) -> String {
    group.map(|g| g.name.clone()).unwrap_or_default()
}

/// The (topic, queue id) a pull or offset request names.
fn queue_of_request(queue: Option<&v2::MessageQueue>) -> Result<(String, u32), ServiceError> {
    let queue = queue.ok_or(ServiceError::MissingField {
        field: "message_queue",
    })?;
    let topic = queue
        .topic
        .as_ref()
        .map(|t| t.name.clone())
        .unwrap_or_default();
    let id = u32::try_from(queue.id).map_err(|_| ServiceError::InvalidField {
        field: "message_queue.id",
        why: format!("{} is not a queue id", queue.id),
    })?;
    Ok((topic, id))
}

fn offset_of_request(offset: i64) -> Result<u64, ServiceError> {
    u64::try_from(offset).map_err(|_| ServiceError::InvalidField {
        field: "offset",
        why: format!("{offset} is negative"),
    })
}

fn pull_request(
    req: &v2::PullMessageRequest,
    deadline_ms: Option<u64>,
) -> Result<PullRequest, ServiceError> {
    let (topic, queue) = queue_of_request(req.message_queue.as_ref())?;
    let max_messages = u32::try_from(req.batch_size)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| ServiceError::InvalidField {
            field: "batch_size",
            why: format!("{} is not a positive count", req.batch_size),
        })?;
    let asked_ms = req.long_polling_timeout.as_ref().and_then(ms_of_duration);
    Ok(PullRequest {
        group: group_name(req.group.as_ref()),
        topic,
        queue,
        offset: offset_of_request(req.offset)?,
        max_messages,
        filter: req.filter_expression.as_ref().map(filter_of_pb),
        suspend_ms: pull_suspend_ms(asked_ms, deadline_ms),
        // A 5.x consumer commits with UpdateOffset.
        commit_offset: None,
    })
}

impl Messaging {
    /// The response items of one pull, in stream order: its status, the messages, and where
    /// the consumer pulls next.
    fn pull_items(
        &self,
        pulled: Result<(u32, Pulled), ServiceError>,
        namespace: &str,
    ) -> Vec<v2::PullMessageResponse> {
        use v2::pull_message_response::Content;
        let item = |content| v2::PullMessageResponse {
            content: Some(content),
        };
        let (queue, pulled) = match pulled {
            Ok(p) => p,
            Err(e) => return vec![item(Content::Status(error_status(&e)))],
        };
        let s = match pulled.status {
            PullStatus::Found => ok(),
            PullStatus::NoNewMessage => status(v2::Code::MessageNotFound, "no new message"),
            PullStatus::NoMatch => status(v2::Code::MessageNotFound, "no matched message"),
            PullStatus::OffsetMoved => status(
                v2::Code::IllegalOffset,
                format!(
                    "the offset is below the queue's min offset {}: pull from there",
                    pulled.bounds.min
                ),
            ),
        };
        let next = i64::try_from(pulled.next_offset).unwrap_or(i64::MAX);
        let mut items = vec![item(Content::Status(s))];
        for m in pulled.messages {
            items.push(item(Content::Message(
                self.pulled_message(m, queue, namespace),
            )));
        }
        items.push(item(Content::NextOffset(next)));
        items
    }

    fn pulled_message(&self, p: PulledMessage, queue: u32, namespace: &str) -> v2::Message {
        let mut message = self.message_pb(p.message, namespace, p.store_ms);
        if let Some(sys) = message.system_properties.as_mut() {
            sys.queue_id = i32::try_from(queue).unwrap_or(i32::MAX);
            sys.queue_offset = Some(i64::try_from(p.offset).unwrap_or(i64::MAX));
        }
        message
    }

    /// The offset a QueryOffset asks for: a queue's first, its next, or the first stored at
    /// or after a time.
    fn queue_offset(&self, req: &v2::QueryOffsetRequest) -> Result<u64, ServiceError> {
        let (topic, queue) = queue_of_request(req.message_queue.as_ref())?;
        match v2::QueryOffsetPolicy::try_from(req.query_offset_policy) {
            Ok(v2::QueryOffsetPolicy::Beginning) => {
                Ok(self.service.queue_bounds_of(&topic, queue)?.min)
            }
            Ok(v2::QueryOffsetPolicy::End) => Ok(self.service.queue_bounds_of(&topic, queue)?.next),
            Ok(v2::QueryOffsetPolicy::Timestamp) => {
                let ms = req
                    .timestamp
                    .as_ref()
                    .map(ms_of_timestamp)
                    .ok_or(ServiceError::MissingField { field: "timestamp" })?;
                self.service.offset_at_time(&topic, queue, ms)
            }
            Err(_) => Err(ServiceError::InvalidField {
                field: "query_offset_policy",
                why: format!(
                    "{} is not BEGINNING, END or TIMESTAMP",
                    req.query_offset_policy
                ),
            }),
        }
    }

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

    /// One client's Telemetry stream: each Settings is answered with merged Settings at once
    /// (the Rust SDK waits for the response headers before it sends anything) and registers
    /// the client in this node's [`Clients`](crate::service::Clients) for as long as the
    /// stream lives; a producer is asked about its open transactions on it.
    async fn telemetry_session(
        self,
        client: Option<ClientInfo>,
        mut inbound: Streaming<v2::TelemetryCommand>,
        tx: mpsc::Sender<Result<v2::TelemetryCommand, GrpcStatus>>,
    ) {
        let config = self.service.config().clone();
        let (notice_tx, mut notices) = mpsc::channel::<ClientNotice>(64);
        let session = client.map(|c| self.service.clients().open(c, notice_tx));
        let mut stopping = self.service.stopping();
        loop {
            if *stopping.borrow_and_update() {
                return; // the node stops: the client reopens its stream elsewhere
            }
            let reply = tokio::select! {
                _ = stopping.changed() => continue,
                cmd = inbound.message() => {
                    let Ok(Some(cmd)) = cmd else { return };
                    let Some(v2::telemetry_command::Command::Settings(s)) = cmd.command else {
                        continue;
                    };
                    if let Some(session) = &session {
                        session.register(registration_of(&s));
                    }
                    let group = self.consumer_group_of(&s);
                    v2::TelemetryCommand {
                        status: Some(ok()),
                        command: Some(v2::telemetry_command::Command::Settings(
                            merged_settings(s, &config, group.as_ref()),
                        )),
                    }
                }
                Some(notice) = notices.recv() => match notice {
                    ClientNotice::CheckTransaction(check) => self.recover_orphaned(*check),
                    ClientNotice::ConsumerIdsChanged { .. } => continue, // 4.x rebalancing only
                },
            };
            if tx.send(Ok(reply)).await.is_err() {
                return;
            }
        }
    }

    /// A consumer's subscription group, as its settings go by (its record, or what creating it
    /// would make); `None` for a producer.
    fn consumer_group_of(&self, s: &v2::Settings) -> Option<SubscriptionGroup> {
        let Some(v2::settings::PubSub::Subscription(sub)) = &s.pub_sub else {
            return None;
        };
        let name = sub.group.as_ref().map_or("", |g| g.name.as_str());
        Some(self.service.group_settings(name))
    }

    /// The check-back of a half message, as a 5.x producer's TransactionChecker gets it.
    fn recover_orphaned(&self, check: TransactionCheck) -> v2::TelemetryCommand {
        let message = self.message_pb(check.message, "", check.store_ms);
        v2::TelemetryCommand {
            status: Some(ok()),
            command: Some(
                v2::telemetry_command::Command::RecoverOrphanedTransactionCommand(
                    v2::RecoverOrphanedTransactionCommand {
                        message: Some(message),
                        transaction_id: check.transaction_id,
                    },
                ),
            ),
        }
    }

    /// A stored message as the SDKs read it: its system properties (digest, times, hosts),
    /// its user properties and body; delivery details are the caller's to add.
    fn message_pb(&self, m: StoredMessage, namespace: &str, store_ms: u64) -> v2::Message {
        let user_properties: HashMap<String, String> = m
            .property_pairs()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let sys = v2::SystemProperties {
            tag: m.tag,
            keys: m.keys,
            message_id: m.message_id,
            body_digest: Some(v2::Digest {
                r#type: v2::DigestType::Crc32 as i32,
                checksum: format!("{:08X}", crc32fast::hash(&m.body)),
            }),
            body_encoding: v2::Encoding::Identity as i32,
            message_type: message_type_to_pb(m.message_type) as i32,
            born_timestamp: Some(timestamp(m.born_ms)),
            born_host: m.born_host,
            store_timestamp: Some(timestamp(store_ms)),
            store_host: self.service.config().broker_addr.clone(),
            delivery_timestamp: (m.delivery_ms > 0).then(|| timestamp(m.delivery_ms)),
            message_group: m.message_group,
            ..Default::default()
        };
        v2::Message {
            topic: Some(resource(&m.topic, namespace)),
            user_properties,
            system_properties: Some(sys),
            body: m.body,
        }
    }

    fn delivered_message(&self, r: ReceivedMessage, namespace: &str) -> v2::Message {
        let ReceivedMessage {
            delivery: d,
            message: m,
            store_ms,
            invisible_ms_left,
        } = r;
        let mut message = self.message_pb(m, namespace, store_ms);
        message.topic = Some(resource(&d.topic, namespace));
        if let Some(sys) = message.system_properties.as_mut() {
            sys.receipt_handle = Some(d.handle);
            sys.queue_id = i32::try_from(d.queue).unwrap_or(i32::MAX);
            sys.queue_offset = Some(i64::try_from(d.offset).unwrap_or(i64::MAX));
            sys.invisible_duration = Some(duration(invisible_ms_left));
            sys.delivery_attempt = Some(i32::try_from(d.attempt).unwrap_or(i32::MAX));
        }
        message
    }

    /// The response items of one receive, in stream order.
    fn receive_items(
        &self,
        polled: Result<Polled, ServiceError>,
        namespace: &str,
    ) -> Vec<v2::ReceiveMessageResponse> {
        use v2::receive_message_response::Content;
        let item = |content| v2::ReceiveMessageResponse {
            content: Some(content),
        };
        let stamp = || item(Content::DeliveryTimestamp(timestamp(now_ms())));
        match polled {
            Ok(Polled::Messages(messages)) => {
                let mut items = vec![item(Content::Status(ok()))];
                items.extend(
                    messages
                        .into_iter()
                        .map(|m| item(Content::Message(self.delivered_message(m, namespace)))),
                );
                items.push(stamp());
                items
            }
            Ok(Polled::Nothing) => vec![
                item(Content::Status(status(
                    v2::Code::MessageNotFound,
                    "no new message",
                ))),
                stamp(),
            ],
            Err(e) => vec![item(Content::Status(error_status(&e)))],
        }
    }
}

/// The send response: per message its result, on top Java's rule over them.
fn send_response(
    req: &v2::SendMessageRequest,
    results: Result<SendResults, ServiceError>,
) -> v2::SendMessageResponse {
    let entry = |m: &v2::Message, s: v2::Status, receipt: Option<&SendReceipt>| {
        let sys = m.system_properties.as_ref();
        let transactional =
            sys.is_some_and(|p| p.message_type == v2::MessageType::Transaction as i32);
        let delayed = sys.is_some_and(|p| p.delivery_timestamp.is_some());
        v2::SendResultEntry {
            status: Some(s),
            message_id: message_id(m),
            // A half message's transaction id is its message id: valid on every node.
            transaction_id: match receipt {
                Some(_) if transactional => message_id(m),
                _ => String::new(),
            },
            offset: receipt.map_or(0, |r| i64::try_from(r.offset).unwrap_or(i64::MAX)),
            // Only where the message is known to be stored (not under the negative control).
            recall_handle: match receipt {
                Some(r) if delayed && r.commit_log_offset > 0 => {
                    recall_handle(r.queue, r.offset, r.commit_log_offset)
                }
                _ => String::new(),
            },
        }
    };
    let entries: Vec<v2::SendResultEntry> = match &results {
        Ok(results) => req
            .messages
            .iter()
            .zip(results)
            .map(|(m, r)| match r {
                Ok(receipt) => entry(m, ok(), Some(receipt)),
                Err(e) => entry(m, error_status(e), None),
            })
            .collect(),
        Err(e) => req
            .messages
            .iter()
            .map(|m| entry(m, error_status(e), None))
            .collect(),
    };
    let top = match &results {
        Err(e) => error_status(e),
        Ok(_) => overall(entries.iter().map(|e| e.status.clone().unwrap_or_default())),
    };
    v2::SendMessageResponse {
        status: Some(top),
        entries,
    }
}

fn ack_response(
    req: &v2::AckMessageRequest,
    acked: Result<Vec<Result<(), ServiceError>>, ServiceError>,
) -> v2::AckMessageResponse {
    let entries: Vec<v2::AckMessageResultEntry> = req
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let s = match &acked {
                Ok(r) => match r.get(i) {
                    Some(Ok(())) => ok(),
                    Some(Err(err)) => error_status(err),
                    None => error_status(&ServiceError::ResultMissing),
                },
                Err(err) => error_status(err),
            };
            v2::AckMessageResultEntry {
                message_id: e.message_id.clone(),
                receipt_handle: e.receipt_handle.clone(),
                status: Some(s),
            }
        })
        .collect();
    let top = overall(entries.iter().map(|e| e.status.clone().unwrap_or_default()));
    v2::AckMessageResponse {
        status: Some(top),
        entries,
    }
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
        let (s, message_queues) = match self.service.route(&topic.name).await {
            Ok(queues) => {
                let endpoints = self.endpoints_for(req.endpoints, local);
                let own = &self.service.config().broker_name;
                let mut qs: Vec<v2::MessageQueue> = (0..queues)
                    .map(|id| queue_of(&topic, own, i32::try_from(id).unwrap_or(0), &endpoints))
                    .collect();
                for g in self.service.other_groups(&topic.name).await {
                    let endpoints = endpoints_of(&g.master_addr);
                    qs.extend((0..g.queues).map(|id| {
                        let id = i32::try_from(id).unwrap_or(0);
                        queue_of(&topic, &g.broker_name, id, &endpoints)
                    }));
                }
                (ok(), qs)
            }
            Err(e) => (error_status(&e), vec![]),
        };
        Ok(Response::new(v2::QueryRouteResponse {
            status: Some(s),
            message_queues,
        }))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn heartbeat(
        &self,
        request: Request<v2::HeartbeatRequest>,
    ) -> Result<Response<v2::HeartbeatResponse>, GrpcStatus> {
        self.service
            .clients()
            .heartbeat(header(&request, "x-mq-client-id"));
        Ok(Response::new(v2::HeartbeatResponse { status: Some(ok()) }))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn send_message(
        &self,
        request: Request<v2::SendMessageRequest>,
    ) -> Result<Response<v2::SendMessageResponse>, GrpcStatus> {
        let req = request.into_inner();
        let messages = req.messages.iter().map(new_message).collect();
        let results = self.service.send(messages).await;
        Ok(Response::new(send_response(&req, results)))
    }

    async fn query_assignment(
        &self,
        request: Request<v2::QueryAssignmentRequest>,
    ) -> Result<Response<v2::QueryAssignmentResponse>, GrpcStatus> {
        let local = request.local_addr();
        let req = request.into_inner();
        let topic = req.topic.clone().unwrap_or_default();
        if let Err(e) = self.service.assignment(&topic.name).await {
            return Ok(Response::new(v2::QueryAssignmentResponse {
                status: Some(error_status(&e)),
                assignments: vec![],
            }));
        }
        let endpoints = self.endpoints_for(req.endpoints, local);
        // One assignment per group: receives pop across all of a group's queues.
        let own = &self.service.config().broker_name;
        let mut assignments = vec![v2::Assignment {
            message_queue: Some(queue_of(&topic, own, -1, &endpoints)),
        }];
        for g in self.service.other_groups(&topic.name).await {
            assignments.push(v2::Assignment {
                message_queue: Some(queue_of(
                    &topic,
                    &g.broker_name,
                    -1,
                    &endpoints_of(&g.master_addr),
                )),
            });
        }
        Ok(Response::new(v2::QueryAssignmentResponse {
            status: Some(ok()),
            assignments,
        }))
    }

    type ReceiveMessageStream = BoxStream<v2::ReceiveMessageResponse>;

    #[tracing::instrument(level = "debug", skip_all)]
    async fn receive_message(
        &self,
        request: Request<v2::ReceiveMessageRequest>,
    ) -> Result<Response<Self::ReceiveMessageStream>, GrpcStatus> {
        let deadline_ms = grpc_timeout_ms(&request);
        let client_addr = request.remote_addr();
        let req = request.into_inner();
        let namespace = namespace_of(req.message_queue.as_ref());
        let this = self.clone();
        Ok(Response::new(deferred_stream(async move {
            let polled = this
                .service
                .receive(receive_request(&req, deadline_ms, client_addr))
                .await;
            this.receive_items(polled, &namespace)
        })))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn ack_message(
        &self,
        request: Request<v2::AckMessageRequest>,
    ) -> Result<Response<v2::AckMessageResponse>, GrpcStatus> {
        let req = request.into_inner();
        let group = req
            .group
            .as_ref()
            .map(|g| g.name.as_str())
            .unwrap_or_default();
        let topic = req
            .topic
            .as_ref()
            .map(|t| t.name.as_str())
            .unwrap_or_default();
        let handles = req
            .entries
            .iter()
            .map(|e| e.receipt_handle.clone())
            .collect();
        let acked = self.service.ack(group, topic, handles).await;
        Ok(Response::new(ack_response(&req, acked)))
    }

    async fn forward_message_to_dead_letter_queue(
        &self,
        request: Request<v2::ForwardMessageToDeadLetterQueueRequest>,
    ) -> Result<Response<v2::ForwardMessageToDeadLetterQueueResponse>, GrpcStatus> {
        let req = request.into_inner();
        let group = req.group.map(|g| g.name).unwrap_or_default();
        let topic = req.topic.map(|t| t.name).unwrap_or_default();
        let s = match self
            .service
            .forward_to_dead_letter(&group, &topic, req.receipt_handle)
            .await
        {
            Ok(()) => ok(),
            Err(e) => error_status(&e),
        };
        Ok(Response::new(v2::ForwardMessageToDeadLetterQueueResponse {
            status: Some(s),
        }))
    }

    type PullMessageStream = BoxStream<v2::PullMessageResponse>;

    #[tracing::instrument(level = "debug", skip_all)]
    async fn pull_message(
        &self,
        request: Request<v2::PullMessageRequest>,
    ) -> Result<Response<Self::PullMessageStream>, GrpcStatus> {
        let deadline_ms = grpc_timeout_ms(&request);
        let req = request.into_inner();
        let namespace = namespace_of(req.message_queue.as_ref());
        let this = self.clone();
        Ok(Response::new(deferred_stream(async move {
            let pulled = match pull_request(&req, deadline_ms) {
                Ok(pull) => {
                    let queue = pull.queue;
                    this.service.pull(pull).await.map(|p| (queue, p))
                }
                Err(e) => Err(e),
            };
            this.pull_items(pulled, &namespace)
        })))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn update_offset(
        &self,
        request: Request<v2::UpdateOffsetRequest>,
    ) -> Result<Response<v2::UpdateOffsetResponse>, GrpcStatus> {
        let req = request.into_inner();
        let updated = async {
            let (topic, queue) = queue_of_request(req.message_queue.as_ref())?;
            let offset = offset_of_request(req.offset)?;
            self.service
                .commit_offset(&group_name(req.group.as_ref()), &topic, queue, offset)
                .await
        };
        Ok(Response::new(v2::UpdateOffsetResponse {
            status: Some(match updated.await {
                Ok(()) => ok(),
                Err(e) => error_status(&e),
            }),
        }))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn get_offset(
        &self,
        request: Request<v2::GetOffsetRequest>,
    ) -> Result<Response<v2::GetOffsetResponse>, GrpcStatus> {
        let req = request.into_inner();
        let group = group_name(req.group.as_ref());
        let committed = async {
            let (topic, queue) = queue_of_request(req.message_queue.as_ref())?;
            let offset = self.service.consumer_offset(&group, &topic, queue).await?;
            Ok::<_, ServiceError>((topic, queue, offset))
        };
        let (s, offset) = match committed.await {
            Ok((_, _, Some(offset))) => (ok(), offset),
            Ok((topic, queue, None)) => (
                status(
                    v2::Code::OffsetNotFound,
                    format!(
                        "consumer group {group} has no committed offset in {topic} queue {queue}"
                    ),
                ),
                0,
            ),
            Err(e) => (error_status(&e), 0),
        };
        Ok(Response::new(v2::GetOffsetResponse {
            status: Some(s),
            offset: i64::try_from(offset).unwrap_or(i64::MAX),
        }))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn query_offset(
        &self,
        request: Request<v2::QueryOffsetRequest>,
    ) -> Result<Response<v2::QueryOffsetResponse>, GrpcStatus> {
        let req = request.into_inner();
        let (s, offset) = match self.queue_offset(&req) {
            Ok(offset) => (ok(), offset),
            Err(e) => (error_status(&e), 0),
        };
        Ok(Response::new(v2::QueryOffsetResponse {
            status: Some(s),
            offset: i64::try_from(offset).unwrap_or(i64::MAX),
        }))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn end_transaction(
        &self,
        request: Request<v2::EndTransactionRequest>,
    ) -> Result<Response<v2::EndTransactionResponse>, GrpcStatus> {
        let req = request.into_inner();
        let commit = match v2::TransactionResolution::try_from(req.resolution) {
            Ok(v2::TransactionResolution::Commit) => Some(true),
            Ok(v2::TransactionResolution::Rollback) => Some(false),
            _ => None,
        };
        let id = if req.transaction_id.is_empty() {
            &req.message_id
        } else {
            &req.transaction_id
        };
        let ended = match commit {
            Some(commit) => self.service.end_transaction(id, commit).await,
            None => Err(ServiceError::InvalidField {
                field: "resolution",
                why: "must be COMMIT or ROLLBACK".into(),
            }),
        };
        Ok(Response::new(v2::EndTransactionResponse {
            status: Some(match ended {
                Ok(()) => ok(),
                Err(e) => error_status(&e),
            }),
        }))
    }

    type TelemetryStream = BoxStream<v2::TelemetryCommand>;

    #[tracing::instrument(level = "debug", skip_all)]
    async fn telemetry(
        &self,
        request: Request<Streaming<v2::TelemetryCommand>>,
    ) -> Result<Response<Self::TelemetryStream>, GrpcStatus> {
        let client = client_info(&request);
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let messaging = self.clone();
        tokio::spawn(async move { messaging.telemetry_session(client, inbound, tx).await });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn notify_client_termination(
        &self,
        request: Request<v2::NotifyClientTerminationRequest>,
    ) -> Result<Response<v2::NotifyClientTerminationResponse>, GrpcStatus> {
        self.service
            .clients()
            .terminate(header(&request, "x-mq-client-id"));
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
        let group = req.group.map(|g| g.name).unwrap_or_default();
        let topic = req.topic.map(|t| t.name).unwrap_or_default();
        let invisible_ms = req.invisible_duration.as_ref().and_then(ms_of_duration);
        let changed = self
            .service
            .change_invisible_time(&group, &topic, req.receipt_handle, invisible_ms)
            .await;
        let (s, receipt_handle) = match changed {
            Ok(handle) => (ok(), handle),
            Err(e) => (error_status(&e), String::new()),
        };
        Ok(Response::new(v2::ChangeInvisibleDurationResponse {
            status: Some(s),
            receipt_handle,
        }))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn recall_message(
        &self,
        request: Request<v2::RecallMessageRequest>,
    ) -> Result<Response<v2::RecallMessageResponse>, GrpcStatus> {
        let req = request.into_inner();
        let topic = req.topic.map(|t| t.name).unwrap_or_default();
        let (s, message_id) = match self.service.recall(&topic, &req.recall_handle).await {
            Ok(id) => (ok(), id),
            Err(e) => (error_status(&e), String::new()),
        };
        Ok(Response::new(v2::RecallMessageResponse {
            status: Some(s),
            message_id,
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

/// The client's settings completed with the server's, as the Java proxy merges them: a
/// producer's retry policy (3 attempts, 10 ms ×2 up to 1 s) and body limit; a consumer's
/// receive batch, long-poll timeout, and from its subscription group `group` the delivery
/// attempts (`retryMaxTimes` + 1), the backoff (`groupRetryPolicy`) and `fifo`
/// (`consumeMessageOrderly`); metrics off.
fn merged_settings(
    mut s: v2::Settings,
    config: &ServiceConfig,
    group: Option<&SubscriptionGroup>,
) -> v2::Settings {
    match (&mut s.pub_sub, group) {
        (Some(v2::settings::PubSub::Publishing(p)), _) => {
            p.max_body_size = i32::try_from(config.max_message_size).unwrap_or(i32::MAX);
            s.backoff_policy = Some(v2::RetryPolicy {
                max_attempts: 3,
                strategy: Some(v2::retry_policy::Strategy::ExponentialBackoff(
                    v2::ExponentialBackoff {
                        initial: Some(duration(10)),
                        max: Some(duration(1000)),
                        multiplier: 2.0,
                    },
                )),
            });
        }
        (Some(v2::settings::PubSub::Subscription(sub)), Some(group)) => {
            sub.receive_batch_size = Some(32);
            sub.long_polling_timeout = Some(duration(LONG_POLL_MS_MAX));
            sub.fifo = Some(group.consume_message_orderly);
            s.backoff_policy = Some(consumer_backoff(group));
        }
        _ => {}
    }
    s.metric = Some(v2::Metric {
        on: false,
        endpoints: None,
    });
    s
}

/// A consumer's backoff policy from its group: `retryMaxTimes` + 1 attempts, with the delays
/// of its `groupRetryPolicy`.
fn consumer_backoff(group: &SubscriptionGroup) -> v2::RetryPolicy {
    use v2::retry_policy::Strategy;
    let strategy = match &group.group_retry_policy {
        GroupRetryPolicy::Customized { next_ms } => {
            Strategy::CustomizedBackoff(v2::CustomizedBackoff {
                next: next_ms.iter().map(|ms| duration(*ms)).collect(),
            })
        }
        GroupRetryPolicy::Exponential {
            initial_ms,
            max_ms,
            multiplier,
        } => Strategy::ExponentialBackoff(v2::ExponentialBackoff {
            initial: Some(duration(*initial_ms)),
            max: Some(duration(*max_ms)),
            // f32 is the protocol's type; exact for every multiplier below 2^24.
            multiplier: *multiplier as f32,
        }),
    };
    v2::RetryPolicy {
        max_attempts: i32::try_from(group.max_delivery_attempts()).unwrap_or(i32::MAX),
        strategy: Some(strategy),
    }
}

/// The endpoints of a `host:port` another group's master registered.
fn endpoints_of(addr: &str) -> v2::Endpoints {
    let (host, port) = addr.rsplit_once(':').unwrap_or((addr, "0"));
    v2::Endpoints {
        scheme: v2::AddressScheme::IPv4 as i32,
        addresses: vec![v2::Address {
            host: host.to_string(),
            port: port.parse().unwrap_or(0),
        }],
    }
}

/// Queue `id` of `topic` at group `broker_name`, reached at `endpoints`.
fn queue_of(
    topic: &v2::Resource,
    broker_name: &str,
    id: i32,
    endpoints: &v2::Endpoints,
) -> v2::MessageQueue {
    v2::MessageQueue {
        topic: Some(topic.clone()),
        id,
        permission: v2::Permission::ReadWrite as i32,
        broker: Some(v2::Broker {
            name: broker_name.to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BrokerConfig;

    fn config() -> ServiceConfig {
        let (broker, _) = BrokerConfig::from_str("", "test.conf").unwrap();
        ServiceConfig::from_broker_config(&broker)
    }

    fn consumer(fifo: Option<bool>) -> v2::Settings {
        v2::Settings {
            pub_sub: Some(v2::settings::PubSub::Subscription(v2::Subscription {
                fifo,
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn subscription(s: &v2::Settings) -> &v2::Subscription {
        match &s.pub_sub {
            Some(v2::settings::PubSub::Subscription(sub)) => sub,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_consumer_gets_attempts_backoff_and_fifo_from_its_group() {
        let group = SubscriptionGroup {
            retry_max_times: 1,
            consume_message_orderly: true,
            group_retry_policy: GroupRetryPolicy::exponential_default(),
            ..SubscriptionGroup::new("g", 16)
        };
        let s = merged_settings(consumer(Some(false)), &config(), Some(&group));
        let backoff = s.backoff_policy.clone().unwrap();
        assert_eq!(backoff.max_attempts, 2, "retryMaxTimes + 1");
        assert_eq!(
            backoff.strategy,
            Some(v2::retry_policy::Strategy::ExponentialBackoff(
                v2::ExponentialBackoff {
                    initial: Some(duration(5_000)),
                    max: Some(duration(7_200_000)),
                    multiplier: 2.0,
                }
            ))
        );
        assert_eq!(
            subscription(&s).fifo,
            Some(true),
            "the group's, not the client's"
        );

        let plain = SubscriptionGroup::new("g", 16);
        let s = merged_settings(consumer(Some(true)), &config(), Some(&plain));
        assert_eq!(subscription(&s).fifo, Some(false));
        let backoff = s.backoff_policy.unwrap();
        assert_eq!(backoff.max_attempts, 17);
        let Some(v2::retry_policy::Strategy::CustomizedBackoff(c)) = backoff.strategy else {
            panic!("RocketMQ's default policy is customized");
        };
        assert_eq!(c.next.len(), 18);
        assert_eq!(c.next[0], duration(1_000));
    }

    #[test]
    fn a_producer_keeps_the_producer_backoff() {
        let producer = v2::Settings {
            pub_sub: Some(v2::settings::PubSub::Publishing(v2::Publishing::default())),
            ..Default::default()
        };
        let s = merged_settings(producer, &config(), None);
        assert_eq!(s.backoff_policy.map(|b| b.max_attempts), Some(3));
    }
}
