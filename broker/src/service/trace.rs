//! Message trace: the trace topic (`traceTopicEnable`, `msgTraceTopicName`) and the records the
//! broker itself writes into it (`brokerTraceEnable`, RaftMQ's own key).
//!
//! RocketMQ's clients write their own trace: a 4.x client with `enableMsgTrace` sends
//! RocketMQ-format records ([`raftmq_remoting::trace`]) to the trace topic as ordinary messages
//! keyed by the traced message ids. `traceTopicEnable` makes the leader create that topic with
//! one queue, as RocketMQ's TopicConfigManager does (and again should it be deleted).
//!
//! The 5.x SDKs write none, so with `brokerTraceEnable` the node that serves a request writes
//! the records a client would have, in the same format: Pub when a send is stored, SubBefore
//! when a message is delivered to a consumer group, SubAfter when it is acked, EndTransaction
//! when a transaction ends. The node that served the request writes them because it knows the
//! client: a trace message's born host is the client's host (the sent message's born host for
//! Pub, the consumer's address for SubBefore and SubAfter), which is what `mqadmin
//! queryMsgTraceById` prints as ClientHost, as RocketMQ's does.
//!
//! A request only hands its records to a bounded channel (`try_send`); one task per node
//! drains it every [`FLUSH_INTERVAL`] into one send of many trace messages, each holding the
//! records of one client host and keyed by their message ids and keys. When the channel is full
//! or a trace send fails, records are dropped and counted (a warning at each power of two):
//! trace never slows or fails a client's request. Messages of the trace topic are never traced.
//!
//! A SubAfter needs its delivery: each node remembers what it delivered by receipt handle
//! (bounded, forgotten a minute after the handle's invisible time). An ack of a handle this
//! node did not deliver (the consumer acked through another node) still gets its SubAfter, read
//! from the log, with cost time 0 and no client host.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use raftmq_remoting::trace::{
    DEFAULT_TRACE_REGION_ID, EndTransactionRecord, KEY_SEPARATOR, MessageType as TraceMsgType,
    PubRecord, SubAfterRecord, SubBeforeRecord, TraceRecord, TransactionState, encode, trace_keys,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::BrokerService;
use super::clock::now_ms;
use super::error::ServiceError;
use super::message::{NewMessage, ReceivedMessage, SendReceipt};
use super::query::offset_msg_id;
use super::transaction::unit_of;
use crate::command::{MessageType, StoredMessage};
use crate::state::{HalfMessage, decode_handle};

/// How often the writer sends the records that wait.
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Records waiting for the writer at most; more are dropped.
const QUEUE_CAPACITY: usize = 16_384;
/// Records one trace send takes at most (one Send entry of a few hundred KiB).
const RECORDS_PER_SEND_MAX: usize = 4_096;
/// Records per trace message at most.
const RECORDS_PER_MESSAGE_MAX: usize = 64;
/// Deliveries remembered for their acks at most.
const DELIVERED_MAX: usize = 65_536;
/// How long after its invisible time a delivery is still remembered.
const DELIVERED_GRACE_MS: u64 = 60_000;
/// Queues of the trace topic (RocketMQ's TopicConfigManager: read and write queue nums 1).
const TRACE_TOPIC_QUEUES: u32 = 1;
/// RocketMQ's property naming a 4.x message's producer group.
const PROPERTY_PRODUCER_GROUP: &str = "PGROUP";

/// The trace settings of broker.conf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceConfig {
    /// `traceTopicEnable`: the leader creates the trace topic.
    pub topic_enable: bool,
    /// `msgTraceTopicName`: the trace topic.
    pub topic: String,
    /// `brokerTraceEnable`: this node writes trace records of what it serves.
    pub broker_trace: bool,
}

/// A record and the host of the client it is about: the born host of its trace message.
#[derive(Debug)]
struct Traced {
    record: TraceRecord,
    client_host: String,
}

/// What a delivery leaves for the SubAfter of its ack.
#[derive(Clone, Debug)]
pub(crate) struct Delivered {
    group: String,
    request_id: String,
    msg_id: String,
    keys: String,
    delivered_ms: u64,
    visible_at_ms: u64,
    client_host: String,
}

/// This node's trace queue, its remembered deliveries and its id source.
#[derive(Debug)]
pub(crate) struct Tracer {
    on: bool,
    tx: mpsc::Sender<Traced>,
    rx: Mutex<Option<mpsc::Receiver<Traced>>>,
    dropped: AtomicU64,
    delivered: Mutex<HashMap<String, Delivered>>,
    ids: UniqIds,
}

impl Tracer {
    /// A tracer that records when `on`, holding at most `capacity` records; ids name `host`.
    pub(crate) fn new(on: bool, capacity: usize, host: &str) -> Tracer {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        Tracer {
            on,
            tx,
            rx: Mutex::new(Some(rx)),
            dropped: AtomicU64::new(0),
            delivered: Mutex::default(),
            ids: UniqIds::new(host),
        }
    }

    /// The tracer of a node with broker.conf's settings.
    pub(crate) fn of_config(config: &TraceConfig, host: &str) -> Tracer {
        Tracer::new(config.broker_trace, QUEUE_CAPACITY, host)
    }

    fn push(&self, record: TraceRecord, client_host: &str) {
        let traced = Traced {
            record,
            client_host: client_host.to_string(),
        };
        if self.tx.try_send(traced).is_err() {
            self.count_dropped(1, "the trace queue is full");
        }
    }

    fn count_dropped(&self, n: u64, why: &str) {
        let before = self.dropped.fetch_add(n, Relaxed);
        let after = before.saturating_add(n);
        if before == 0 || after.ilog2() > before.ilog2() {
            tracing::warn!(
                dropped = n,
                dropped_total = after,
                "message trace records dropped: {why}"
            );
        }
    }

    fn delivered(&self) -> MutexGuard<'_, HashMap<String, Delivered>> {
        self.delivered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers a delivery by its handle; when full, first forgets the expired ones, and
    /// remembers nothing more while still full (its ack then reads the message).
    fn remember(&self, handle: &str, d: Delivered, now: u64) {
        let mut map = self.delivered();
        if map.len() >= DELIVERED_MAX {
            forget_expired(&mut map, now);
        }
        if map.len() < DELIVERED_MAX {
            map.insert(handle.to_string(), d);
        }
    }

    fn prune(&self, now: u64) {
        forget_expired(&mut self.delivered(), now);
    }
}

fn forget_expired(map: &mut HashMap<String, Delivered>, now: u64) {
    map.retain(|_, d| d.visible_at_ms.saturating_add(DELIVERED_GRACE_MS) > now);
}

/// 32-hex ids in the layout of RocketMQ's `MessageClientIDSetter`: the node's IPv4 address,
/// the process id, a per-start seed, then a counter.
#[derive(Debug)]
struct UniqIds {
    prefix: String,
    next: AtomicU64,
}

impl UniqIds {
    fn new(host: &str) -> UniqIds {
        let ip = host
            .rsplit_once(':')
            .map_or(host, |(ip, _)| ip)
            .parse::<std::net::Ipv4Addr>()
            .map_or(0, u32::from);
        let pid = std::process::id() & 0xFFFF;
        let seed = now_ms() & 0xFFFF_FFFF;
        UniqIds {
            prefix: format!("{ip:08X}{pid:04X}{seed:08X}"),
            next: AtomicU64::new(0),
        }
    }

    fn next(&self) -> String {
        let n = self.next.fetch_add(1, Relaxed) & 0xFFFF_FFFF_FFFF;
        format!("{}{n:012X}", self.prefix)
    }
}

fn trace_msg_type(m: &StoredMessage) -> TraceMsgType {
    match m.message_type {
        MessageType::Normal if m.delivery_ms > 0 => TraceMsgType::DelayMsg,
        MessageType::Normal => TraceMsgType::NormalMsg,
        MessageType::Fifo => TraceMsgType::OrderMsg,
        MessageType::Delay => TraceMsgType::DelayMsg,
        MessageType::Transaction => TraceMsgType::TransMsgHalf,
    }
}

fn producer_group(m: &StoredMessage) -> String {
    m.properties
        .chunks_exact(2)
        .find(|kv| kv[0] == PROPERTY_PRODUCER_GROUP)
        .map(|kv| kv[1].clone())
        .unwrap_or_default()
}

fn ms_i64(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn ms_i32(ms: u64) -> i32 {
    i32::try_from(ms).unwrap_or(i32::MAX)
}

fn keys_of(m: &StoredMessage) -> String {
    m.keys.join(&KEY_SEPARATOR.to_string())
}

impl BrokerService {
    fn traces(&self, topic: &str) -> bool {
        self.tracer.on && topic != self.config.trace.topic
    }

    /// Before a send is stored: the Pub records its stored messages will get (none when trace
    /// is off), in the order of `accepted`.
    pub(super) fn pub_drafts(&self, accepted: &[StoredMessage]) -> Vec<Option<PubRecord>> {
        if !self.tracer.on {
            return Vec::new();
        }
        accepted
            .iter()
            .map(|m| self.traces(&m.topic).then(|| self.pub_draft(m)))
            .collect()
    }

    fn pub_draft(&self, m: &StoredMessage) -> PubRecord {
        PubRecord {
            timestamp_ms: 0,
            region_id: DEFAULT_TRACE_REGION_ID.to_string(),
            group: producer_group(m),
            topic: m.topic.clone(),
            msg_id: m.message_id.clone(),
            tags: m.tag.clone().unwrap_or_default(),
            keys: keys_of(m),
            store_host: self.config.broker_addr.clone(),
            body_length: i32::try_from(m.body.len()).unwrap_or(i32::MAX),
            cost_time_ms: 0,
            msg_type: trace_msg_type(m),
            offset_msg_id: None,
            success: true,
            client_host: Some(m.born_host.clone()),
        }
    }

    /// After a send that began at `started_ms`: a Pub for each draft whose message was stored.
    pub(super) fn trace_sent(
        &self,
        started_ms: u64,
        drafts: Vec<Option<PubRecord>>,
        slots: &[usize],
        results: &[Result<SendReceipt, ServiceError>],
    ) {
        if drafts.is_empty() {
            return;
        }
        let now = now_ms();
        for (draft, &slot) in drafts.into_iter().zip(slots) {
            let (Some(mut r), Some(Ok(receipt))) = (draft, results.get(slot)) else {
                continue;
            };
            r.timestamp_ms = ms_i64(started_ms);
            r.cost_time_ms = ms_i32(now.saturating_sub(started_ms));
            r.offset_msg_id = Some(offset_msg_id(&r.store_host, receipt.commit_log_offset));
            let host = r.client_host.clone().unwrap_or_default();
            self.tracer.push(TraceRecord::Pub(r), &host);
        }
    }

    /// A delivery of `messages` to `group`'s consumer at `client_addr`: one SubBefore each,
    /// under one request id, and each remembered for its ack.
    pub(super) fn trace_delivered(
        &self,
        group: &str,
        client_addr: Option<SocketAddr>,
        messages: &[ReceivedMessage],
    ) {
        if !self.tracer.on {
            return;
        }
        let client_host = client_addr.map(|a| a.to_string()).unwrap_or_default();
        let now = now_ms();
        let request_id = self.tracer.ids.next();
        for m in messages.iter().filter(|m| self.traces(&m.message.topic)) {
            let d = Delivered {
                group: group.to_string(),
                request_id: request_id.clone(),
                msg_id: m.message.message_id.clone(),
                keys: keys_of(&m.message),
                delivered_ms: now,
                visible_at_ms: m.delivery.visible_at_ms,
                client_host: client_host.clone(),
            };
            let record = sub_before(&d, m.delivery.attempt);
            self.tracer
                .push(TraceRecord::SubBefore(record), &client_host);
            self.tracer.remember(&m.delivery.handle, d, now);
        }
    }

    /// Before an ack: each handle with the delivery this node remembers of it (none when
    /// trace is off).
    pub(super) fn ack_drafts(&self, handles: &[String]) -> Vec<(String, Option<Delivered>)> {
        if !self.tracer.on {
            return Vec::new();
        }
        let map = self.tracer.delivered();
        handles
            .iter()
            .map(|h| (h.clone(), map.get(h).cloned()))
            .collect()
    }

    /// After an ack: a SubAfter for each handle acked.
    pub(super) fn trace_acked<E>(
        &self,
        group: &str,
        topic: &str,
        drafts: Vec<(String, Option<Delivered>)>,
        acked: &[Result<(), E>],
    ) {
        if drafts.is_empty() || !self.traces(topic) {
            return;
        }
        let now = now_ms();
        for ((handle, delivered), result) in drafts.into_iter().zip(acked) {
            if result.is_err() {
                continue;
            }
            self.tracer.delivered().remove(&handle);
            let d = match delivered {
                Some(d) if d.group == group => d,
                _ => match self.delivery_from_log(group, topic, &handle, now) {
                    Some(d) => d,
                    None => continue,
                },
            };
            let host = d.client_host.clone();
            self.tracer
                .push(TraceRecord::SubAfter(sub_after(d, now)), &host);
        }
    }

    /// The delivery of a handle this node did not deliver, from the message in the log: no
    /// client host, delivered `now` (cost time 0).
    fn delivery_from_log(
        &self,
        group: &str,
        topic: &str,
        handle: &str,
        now: u64,
    ) -> Option<Delivered> {
        let (queue, offset, _) = decode_handle(handle)?;
        let found = match self.store.find_at_offset(topic, queue, offset) {
            Ok(found) => found?,
            Err(e) => {
                tracing::debug!(handle, "acked message not read for its trace: {e}");
                return None;
            }
        };
        Some(Delivered {
            group: group.to_string(),
            request_id: self.tracer.ids.next(),
            msg_id: found.message.message_id.clone(),
            keys: keys_of(&found.message),
            delivered_ms: now,
            visible_at_ms: now,
            client_host: String::new(),
        })
    }

    /// After a transaction ended: its EndTransaction record, from the half message in the log.
    pub(super) fn trace_end_transaction(
        &self,
        transaction_id: &str,
        half: &HalfMessage,
        commit: bool,
    ) {
        if !self.traces(&half.topic) {
            return;
        }
        match self.store.read_message(&unit_of(half)) {
            Ok((m, _)) => {
                let record = self.end_transaction_record(transaction_id, half, &m, commit);
                self.tracer
                    .push(TraceRecord::EndTransaction(record), &m.born_host);
            }
            Err(e) => tracing::debug!(transaction_id, "half message not read for its trace: {e}"),
        }
    }

    fn end_transaction_record(
        &self,
        transaction_id: &str,
        half: &HalfMessage,
        m: &StoredMessage,
        commit: bool,
    ) -> EndTransactionRecord {
        EndTransactionRecord {
            timestamp_ms: ms_i64(now_ms()),
            region_id: DEFAULT_TRACE_REGION_ID.to_string(),
            group: half.producer_group.clone().unwrap_or_default(),
            topic: half.topic.clone(),
            msg_id: m.message_id.clone(),
            tags: m.tag.clone().unwrap_or_default(),
            keys: keys_of(m),
            store_host: self.config.broker_addr.clone(),
            // RocketMQ's client writes Trans_msg_Commit whatever the state.
            msg_type: TraceMsgType::TransMsgCommit,
            transaction_id: transaction_id.to_string(),
            transaction_state: if commit {
                TransactionState::CommitMessage
            } else {
                TransactionState::RollbackMessage
            },
            from_transaction_check: false,
        }
    }

    /// Trace records dropped by this node so far (queue full, trace send failed).
    pub fn trace_records_dropped(&self) -> u64 {
        self.tracer.dropped.load(Relaxed)
    }

    /// Starts this node's trace task when `traceTopicEnable` or `brokerTraceEnable` is on:
    /// every [`FLUSH_INTERVAL`] the leader creates the trace topic if it is missing, and the
    /// node writes the records that wait.
    pub fn spawn_trace(&self) -> Option<JoinHandle<()>> {
        let trace = &self.config.trace;
        if !trace.topic_enable && !trace.broker_trace {
            return None;
        }
        if trace.broker_trace && !trace.topic_enable {
            tracing::warn!(
                topic = %trace.topic,
                "brokerTraceEnable=true without traceTopicEnable: the trace topic is not \
                 created by the broker; records are written once it exists"
            );
        }
        let mut rx = self
            .tracer
            .rx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let service = self.clone();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(FLUSH_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                service.ensure_trace_topic().await;
                // A full batch: more may wait, so write again before the next tick.
                while let Some(rx) = rx.as_mut()
                    && service.flush_traces(rx).await == RECORDS_PER_SEND_MAX
                {}
                service.tracer.prune(now_ms());
            }
        }))
    }

    /// On the leader with `traceTopicEnable`: creates the trace topic if it does not exist.
    async fn ensure_trace_topic(&self) {
        let topic = &self.config.trace.topic;
        let leads = self.store.node().role().borrow().role == raft_log::Role::Leader;
        if !self.config.trace.topic_enable
            || !leads
            || self.store.state().topics().contains_key(topic)
        {
            return;
        }
        match self.store.update_topic(topic, TRACE_TOPIC_QUEUES).await {
            Ok(Ok(())) => tracing::info!(%topic, "trace topic created (traceTopicEnable)"),
            Ok(Err(e)) => tracing::warn!(%topic, "trace topic not created: {e}"),
            Err(e) => tracing::debug!(%topic, "trace topic not created yet: {e}"),
        }
    }

    /// Writes what waits in the queue, up to [`RECORDS_PER_SEND_MAX`], in one send; returns
    /// how many records it took. With `traceTopicEnable` the records wait until the leader
    /// created the topic (a send before would auto-create it with `defaultTopicQueueNums`).
    async fn flush_traces(&self, rx: &mut mpsc::Receiver<Traced>) -> usize {
        let trace = &self.config.trace;
        if trace.topic_enable && !self.store.state().topics().contains_key(&trace.topic) {
            return 0;
        }
        let mut batch = Vec::new();
        while batch.len() < RECORDS_PER_SEND_MAX {
            match rx.try_recv() {
                Ok(t) => batch.push(t),
                Err(_) => break,
            }
        }
        let taken = batch.len();
        if taken > 0 {
            self.write_traces(batch).await;
        }
        taken
    }

    /// One send of the trace messages of `batch`; what is not stored is counted as dropped.
    async fn write_traces(&self, batch: Vec<Traced>) {
        let (messages, counts): (Vec<NewMessage>, Vec<u64>) =
            self.trace_messages(batch).into_iter().unzip();
        let (lost, error) = match self.send(messages).await {
            Ok(results) => {
                let failed = || results.iter().zip(&counts).filter(|(r, _)| r.is_err());
                let lost = failed().map(|(_, n)| n).sum();
                (
                    lost,
                    failed().find_map(|(r, _)| r.as_ref().err().map(ToString::to_string)),
                )
            }
            Err(e) => (counts.iter().sum(), Some(e.to_string())),
        };
        if let Some(e) = error {
            self.tracer
                .count_dropped(lost, &format!("trace send failed: {e}"));
        }
    }

    /// The trace messages of `batch`: per client host in order of first appearance, at most
    /// [`RECORDS_PER_MESSAGE_MAX`] records each; with each, how many records it holds.
    fn trace_messages(&self, batch: Vec<Traced>) -> Vec<(NewMessage, u64)> {
        let mut by_host: Vec<(String, Vec<TraceRecord>)> = Vec::new();
        let mut place: HashMap<String, usize> = HashMap::new();
        for t in batch {
            let i = *place.entry(t.client_host.clone()).or_insert_with(|| {
                by_host.push((t.client_host, Vec::new()));
                by_host.len() - 1
            });
            by_host[i].1.push(t.record);
        }
        by_host
            .iter()
            .flat_map(|(host, records)| {
                records
                    .chunks(RECORDS_PER_MESSAGE_MAX)
                    .map(move |chunk| (host, chunk))
            })
            .map(|(host, chunk)| (self.trace_message(host, chunk), chunk.len() as u64))
            .collect()
    }

    fn trace_message(&self, client_host: &str, records: &[TraceRecord]) -> NewMessage {
        NewMessage {
            topic: self.config.trace.topic.clone(),
            message_id: self.tracer.ids.next(),
            message_type: MessageType::Normal,
            tag: None,
            keys: trace_keys(records),
            message_group: None,
            delivery_ms: 0,
            born_ms: None,
            born_host: client_host.to_string(),
            properties: Vec::new(),
            body: Bytes::from(encode(records)),
            queue: None,
        }
    }
}

/// The SubBefore of a delivery, its `attempt`-th.
fn sub_before(d: &Delivered, attempt: u32) -> SubBeforeRecord {
    SubBeforeRecord {
        timestamp_ms: ms_i64(d.delivered_ms),
        region_id: DEFAULT_TRACE_REGION_ID.to_string(),
        group: d.group.clone(),
        request_id: d.request_id.clone(),
        msg_id: d.msg_id.clone(),
        retry_times: i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX),
        keys: d.keys.clone(),
        client_host: None,
    }
}

/// The SubAfter of a delivery acked at `now`.
fn sub_after(d: Delivered, now: u64) -> SubAfterRecord {
    SubAfterRecord {
        request_id: d.request_id,
        msg_id: d.msg_id,
        cost_time_ms: ms_i32(now.saturating_sub(d.delivered_ms)),
        success: true,
        keys: d.keys,
        context_code: 0,
        timestamp_ms: Some(ms_i64(now)),
        group: d.group,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivered(visible_at_ms: u64) -> Delivered {
        Delivered {
            group: "g".into(),
            request_id: "r".into(),
            msg_id: "m".into(),
            keys: String::new(),
            delivered_ms: 0,
            visible_at_ms,
            client_host: "h".into(),
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let tracer = Tracer::new(true, 2, "127.0.0.1:10911");
        for _ in 0..5 {
            tracer.push(
                TraceRecord::SubAfter(sub_after(delivered(0), 5)),
                "127.0.0.1",
            );
        }
        assert_eq!(tracer.dropped.load(Relaxed), 3);
    }

    #[test]
    fn deliveries_are_forgotten_a_grace_after_their_invisible_time() {
        let tracer = Tracer::new(true, 1, "h");
        tracer.remember("a", delivered(1_000), 0);
        tracer.remember("b", delivered(100_000), 0);
        tracer.prune(1_000 + DELIVERED_GRACE_MS);
        let left: Vec<String> = tracer.delivered().keys().cloned().collect();
        assert_eq!(left, ["b"]);
    }

    #[test]
    fn ids_are_32_hex_digits_and_distinct() {
        let ids = UniqIds::new("10.0.0.7:10911");
        let (a, b) = (ids.next(), ids.next());
        assert_eq!(a.len(), 32);
        assert!(a.starts_with("0A000007"), "{a}");
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn a_subafter_costs_the_time_since_its_delivery() {
        let r = sub_after(
            Delivered {
                delivered_ms: 1_000,
                ..delivered(0)
            },
            1_250,
        );
        assert_eq!(
            (r.cost_time_ms, r.timestamp_ms, r.success),
            (250, Some(1_250), true)
        );
    }
}
