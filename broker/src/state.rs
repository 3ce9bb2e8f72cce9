//! The broker's replicated state: topics, consume queues and consumer progress.
//!
//! [`BrokerState::apply`] is a pure function of the state and one command at one log index. Every
//! replica applies the same commands in the same order and reaches the same state, so a new
//! leader has exactly what the old one had: topic table, queue offsets, in-flight messages,
//! delivery attempts. Applying is idempotent by index (entries at or below `last_index` are
//! skipped), which lets a snapshot taken slightly after its nominal index be restored safely.
//!
//! Consume queues hold (log index, slot) pointers into the commitlog, never message bytes, so
//! they can be rebuilt from the log at any time.
//!
//! Delivery rules (RocketMQ 5 "pop" semantics):
//! - a received message is invisible until `now + invisible_ms`; an ack removes it; after the
//!   invisible time it is delivered again with `attempt + 1`;
//! - after `max_attempts` deliveries it moves to the group's dead-letter topic `%DLQ%<group>`;
//! - a delay message is not delivered before its delivery time;
//! - within a FIFO message group, a message is not delivered while an earlier one of the same
//!   group (same queue) is still unacknowledged;
//! - a receipt handle names (queue, offset, epoch): the epoch is the index of the command that
//!   last delivered or re-timed the message, so a handle from an earlier delivery is refused.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::command::{Command, Receive, StoredMessage};

/// Entries a receive examines at most in one queue (bounds the work of one command).
const SCAN_PER_QUEUE_MAX: usize = 4096;

/// The prefix of dead-letter topics.
pub const DLQ_PREFIX: &str = "%DLQ%";

/// Settings that shape how commands apply; identical on every replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateConfig {
    /// Create an unknown topic on first send (`autoCreateTopicEnable`). The snapshot keeps
    /// the field's earlier name.
    #[serde(rename = "auto_create_topic")]
    pub auto_create_topic_enable: bool,
    /// Queues of an auto-created topic (`defaultTopicQueueNums`).
    #[serde(rename = "default_queues")]
    pub default_topic_queue_nums: u32,
}

impl StateConfig {
    /// The state-machine settings of a broker.conf.
    pub fn from_broker_config(config: &crate::config::BrokerConfig) -> StateConfig {
        StateConfig {
            auto_create_topic_enable: config.auto_create_topic_enable,
            default_topic_queue_nums: config.default_topic_queue_nums,
        }
    }

    /// The auto-create rule, the one copy of it: a topic nobody created gets this many queues
    /// on first use, or `None` when `autoCreateTopicEnable` is off.
    pub fn auto_create_queues(&self) -> Option<u32> {
        self.auto_create_topic_enable
            .then_some(self.default_topic_queue_nums)
    }
}

/// The queue counts a topic may have.
pub const TOPIC_QUEUES: std::ops::RangeInclusive<u32> = 1..=1024;

/// A topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topic {
    /// Number of queues.
    pub queues: u32,
}

/// One consume-queue entry: where the message is in the log, and what filtering needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueEntry {
    /// Log index of the Send command.
    pub index: u64,
    /// Position of the message inside that command.
    pub slot: u32,
    /// Store time (ms).
    pub store_ms: u64,
    /// Not deliverable before (ms; 0 = at once).
    pub delivery_ms: u64,
    /// Tag, for filtering.
    pub tag: Option<String>,
    /// FIFO group.
    pub message_group: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Inflight {
    visible_at_ms: u64,
    attempt: u32,
    epoch: u64,
}

/// A group's progress in one queue.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct QueueProgress {
    // Invariant: every offset below `next` is in exactly one of: below `acked_below` (done),
    // `done`, `deferred`, `inflight`.
    acked_below: u64,
    next: u64,
    done: BTreeSet<u64>,
    deferred: BTreeSet<u64>,
    inflight: BTreeMap<u64, Inflight>,
}

/// One message handed to a consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Topic it was read from (the DLQ topic for dead letters).
    pub topic: String,
    /// Queue id.
    pub queue: u32,
    /// Offset in the queue.
    pub offset: u64,
    /// 1-based delivery attempt.
    pub attempt: u32,
    /// The receipt handle for ack and change-invisible.
    pub handle: String,
    /// Where the message is.
    pub entry: QueueEntry,
    /// When it becomes visible again (ms).
    pub visible_at_ms: u64,
}

/// Why a command (or one message or handle in it) failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The topic does not exist (and is not auto-created).
    #[error("topic {topic} does not exist")]
    TopicNotFound {
        /// The topic.
        topic: String,
    },
    /// The handle is malformed, or the message was acked, redelivered or re-timed since.
    #[error("receipt handle {handle:?} is invalid or expired")]
    InvalidHandle {
        /// The handle.
        handle: String,
    },
    /// A topic update asked for a queue count outside [`TOPIC_QUEUES`].
    #[error("queue count {queues} must be 1..=1024")]
    QueueCount {
        /// The count asked for.
        queues: u32,
    },
}

/// Per message of a send: (queue, offset) or why it was not stored.
pub type SendResults = Vec<Result<(u32, u64), ApplyError>>;

/// What applying a command produced, for the proposer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyResult {
    /// Per message: (queue, offset) or why not.
    Sent(SendResults),
    /// The messages handed out.
    Received(Result<Vec<Delivery>, ApplyError>),
    /// Per handle.
    Acked(Vec<Result<(), ApplyError>>),
    /// The new handle.
    Changed(Result<String, ApplyError>),
    /// Topic created, updated or deleted.
    TopicChanged(Result<(), ApplyError>),
    /// Moved to the dead-letter queue.
    DeadLettered(Result<(), ApplyError>),
}

impl ApplyResult {
    /// The name of the command kind that produces this result, for errors.
    pub fn kind(&self) -> &'static str {
        match self {
            ApplyResult::Sent(_) => "Send",
            ApplyResult::Received(_) => "Receive",
            ApplyResult::Acked(_) => "Ack",
            ApplyResult::Changed(_) => "ChangeInvisible",
            ApplyResult::TopicChanged(_) => "UpdateTopic or DeleteTopic",
            ApplyResult::DeadLettered(_) => "ForwardToDeadLetter",
        }
    }
}

/// The replicated broker state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerState {
    config: StateConfig,
    last_index: u64,
    topics: BTreeMap<String, Topic>,
    queues: BTreeMap<String, Vec<Vec<QueueEntry>>>,
    // group → topic → per-queue progress
    groups: BTreeMap<String, BTreeMap<String, Vec<QueueProgress>>>,
    round_robin: u64,
}

impl BrokerState {
    /// An empty state.
    pub fn new(config: StateConfig) -> BrokerState {
        BrokerState {
            config,
            last_index: 0,
            topics: BTreeMap::new(),
            queues: BTreeMap::new(),
            groups: BTreeMap::new(),
            round_robin: 0,
        }
    }

    /// The index of the last command applied.
    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    /// The settings commands apply with.
    pub fn config(&self) -> &StateConfig {
        &self.config
    }

    /// The topic table.
    pub fn topics(&self) -> &BTreeMap<String, Topic> {
        &self.topics
    }

    /// Number of messages in each queue of `topic`.
    pub fn queue_depths(&self, topic: &str) -> Option<Vec<u64>> {
        self.queues
            .get(topic)
            .map(|qs| qs.iter().map(|q| q.len() as u64).collect())
    }

    /// Per queue of `topic`: (acked below, delivered-or-examined below, in flight) for `group`.
    pub fn group_progress(&self, group: &str, topic: &str) -> Option<Vec<(u64, u64, usize)>> {
        let qs = self.groups.get(group)?.get(topic)?;
        Some(
            qs.iter()
                .map(|p| (p.acked_below, p.next, p.inflight.len()))
                .collect(),
        )
    }

    /// Consumer groups that have progress on `topic`.
    pub fn groups_of(&self, topic: &str) -> Vec<String> {
        self.groups
            .iter()
            .filter(|(_, t)| t.contains_key(topic))
            .map(|(g, _)| g.clone())
            .collect()
    }

    /// Whether `group` could receive something from `topic` at `now_ms` (a read-only check, so
    /// an empty long poll does not write to the log).
    pub fn has_deliverable(&self, group: &str, topic: &str, tags: &[String], now_ms: u64) -> bool {
        let Some(queues) = self.queues.get(topic) else {
            return false;
        };
        let progress = self.groups.get(group).and_then(|t| t.get(topic));
        for (qi, cq) in queues.iter().enumerate() {
            let Some(p) = progress.and_then(|ps| ps.get(qi)) else {
                if !cq.is_empty() {
                    return true;
                }
                continue;
            };
            if p.inflight.values().any(|f| f.visible_at_ms <= now_ms) {
                return true;
            }
            if p.deferred.iter().any(|&o| {
                cq.get(ix(o))
                    .is_some_and(|e| deliverable(cq, p, o, e, now_ms))
            }) {
                return true;
            }
            let next = usize::try_from(p.next).unwrap_or(usize::MAX);
            if cq
                .get(next..)
                .is_some_and(|rest| rest.iter().any(|e| tags_match(tags, e)))
            {
                return true;
            }
        }
        false
    }

    /// Records that the entry at `index` changes nothing (a Raft no-op, or an entry every
    /// replica failed to decode).
    pub fn skip(&mut self, index: u64) {
        self.last_index = self.last_index.max(index);
    }

    /// Applies the command at `index`. Returns `None` for an index already applied.
    pub fn apply(&mut self, index: u64, command: &Command) -> Option<ApplyResult> {
        if index <= self.last_index {
            return None;
        }
        self.last_index = index;
        Some(match command {
            Command::Send { now_ms, messages } => {
                ApplyResult::Sent(self.send(index, *now_ms, messages))
            }
            Command::UpdateTopic { topic, queues } => {
                ApplyResult::TopicChanged(self.update_topic(topic, *queues))
            }
            Command::DeleteTopic { topic } => ApplyResult::TopicChanged(self.delete_topic(topic)),
            Command::Receive(receive) => ApplyResult::Received(self.receive(index, receive)),
            Command::Ack {
                group,
                topic,
                handles,
            } => ApplyResult::Acked(handles.iter().map(|h| self.ack(group, topic, h)).collect()),
            Command::ChangeInvisible {
                now_ms,
                group,
                topic,
                handle,
                invisible_ms,
            } => ApplyResult::Changed(self.change_invisible(
                index,
                *now_ms,
                group,
                topic,
                handle,
                *invisible_ms,
            )),
            Command::ForwardToDeadLetter {
                group,
                topic,
                handle,
            } => ApplyResult::DeadLettered(self.forward_to_dlq(group, topic, handle)),
        })
    }

    fn update_topic(&mut self, topic: &str, queues: u32) -> Result<(), ApplyError> {
        if !TOPIC_QUEUES.contains(&queues) {
            return Err(ApplyError::QueueCount { queues });
        }
        self.topics.insert(topic.to_string(), Topic { queues });
        let qs = self.queues.entry(topic.to_string()).or_default();
        if qs.len() < ix(u64::from(queues)) {
            qs.resize(ix(u64::from(queues)), Vec::new());
        }
        Ok(())
    }

    fn delete_topic(&mut self, topic: &str) -> Result<(), ApplyError> {
        if self.topics.remove(topic).is_none() {
            return Err(ApplyError::TopicNotFound {
                topic: topic.to_string(),
            });
        }
        self.queues.remove(topic);
        for topics in self.groups.values_mut() {
            topics.remove(topic);
        }
        Ok(())
    }

    fn send(&mut self, index: u64, now_ms: u64, messages: &[StoredMessage]) -> SendResults {
        let mut out = Vec::with_capacity(messages.len());
        for (slot, m) in messages.iter().enumerate() {
            if !self.topics.contains_key(&m.topic) {
                let Some(queues) = self.config.auto_create_queues() else {
                    out.push(Err(ApplyError::TopicNotFound {
                        topic: m.topic.clone(),
                    }));
                    continue;
                };
                if let Err(e) = self.update_topic(&m.topic, queues) {
                    out.push(Err(e));
                    continue;
                }
            }
            let queues = self.topics[&m.topic].queues;
            // FIFO groups hash to one queue so their order holds; others go round robin.
            let queue = match &m.message_group {
                Some(g) => crc32c::crc32c(g.as_bytes()) % queues,
                None => {
                    self.round_robin += 1;
                    u32::try_from(self.round_robin % u64::from(queues)).unwrap_or(0)
                }
            };
            let cq = &mut self.queues.entry(m.topic.clone()).or_default()[queue as usize];
            let offset = cq.len() as u64;
            cq.push(QueueEntry {
                index,
                slot: u32::try_from(slot).unwrap_or(u32::MAX),
                store_ms: now_ms,
                delivery_ms: m.delivery_ms,
                tag: m.tag.clone(),
                message_group: m.message_group.clone(),
            });
            out.push(Ok((queue, offset)));
        }
        out
    }

    fn receive(&mut self, index: u64, ask: &Receive) -> Result<Vec<Delivery>, ApplyError> {
        let Some(cqs) = self.queues.get(&ask.topic) else {
            return Err(ApplyError::TopicNotFound {
                topic: ask.topic.clone(),
            });
        };
        let n = cqs.len();
        let progress = self
            .groups
            .entry(ask.group.clone())
            .or_default()
            .entry(ask.topic.clone())
            .or_default();
        progress.resize(n, QueueProgress::default());
        let mut out = Vec::new();
        let mut dead: Vec<QueueEntry> = Vec::new();
        // Start at a different queue each time so no queue starves.
        let start = usize::try_from(index).unwrap_or(0) % n.max(1);
        for k in 0..n {
            let qi = (start + k) % n;
            let mut queue = QueueReceive {
                index,
                ask,
                queue: u32::try_from(qi).unwrap_or(u32::MAX),
                cq: &cqs[qi],
                p: &mut progress[qi],
                out: &mut out,
            };
            if queue.full() {
                break;
            }
            queue.redeliver_expired(&mut dead);
            queue.deliver_deferred();
            queue.deliver_unexamined();
        }
        self.dead_letter(&ask.group, dead);
        Ok(out)
    }

    /// Appends `entries` to `group`'s dead-letter topic, creating it (one queue) if needed.
    fn dead_letter(&mut self, group: &str, entries: Vec<QueueEntry>) {
        if entries.is_empty() {
            return;
        }
        let dlq = format!("{DLQ_PREFIX}{group}");
        if !self.topics.contains_key(&dlq) {
            let _ = self.update_topic(&dlq, 1);
        }
        self.queues.entry(dlq).or_default()[0].extend(entries);
    }

    fn inflight_mut(
        &mut self,
        group: &str,
        topic: &str,
        handle: &str,
    ) -> Result<(&mut QueueProgress, u64, u64), ApplyError> {
        let invalid = || ApplyError::InvalidHandle {
            handle: handle.to_string(),
        };
        let (queue, offset, epoch) = decode_handle(handle).ok_or_else(invalid)?;
        let p = self
            .groups
            .get_mut(group)
            .and_then(|t| t.get_mut(topic))
            .and_then(|qs| qs.get_mut(ix(u64::from(queue))))
            .ok_or_else(invalid)?;
        match p.inflight.get(&offset) {
            Some(f) if f.epoch == epoch => Ok((p, offset, epoch)),
            _ => Err(invalid()),
        }
    }

    fn ack(&mut self, group: &str, topic: &str, handle: &str) -> Result<(), ApplyError> {
        let (p, offset, _) = self.inflight_mut(group, topic, handle)?;
        p.inflight.remove(&offset);
        mark_done(p, offset);
        Ok(())
    }

    fn change_invisible(
        &mut self,
        index: u64,
        now_ms: u64,
        group: &str,
        topic: &str,
        handle: &str,
        invisible_ms: u64,
    ) -> Result<String, ApplyError> {
        let invalid = || ApplyError::InvalidHandle {
            handle: handle.to_string(),
        };
        let (queue, _, _) = decode_handle(handle).ok_or_else(invalid)?;
        let (p, offset, _) = self.inflight_mut(group, topic, handle)?;
        let f = p.inflight.get_mut(&offset).ok_or_else(invalid)?;
        f.visible_at_ms = now_ms.saturating_add(invisible_ms);
        f.epoch = index;
        Ok(encode_handle(queue, offset, index))
    }

    fn forward_to_dlq(&mut self, group: &str, topic: &str, handle: &str) -> Result<(), ApplyError> {
        let (p, offset, _) = self.inflight_mut(group, topic, handle)?;
        p.inflight.remove(&offset);
        mark_done(p, offset);
        let (queue, _, _) = decode_handle(handle).ok_or_else(|| ApplyError::InvalidHandle {
            handle: handle.to_string(),
        })?;
        let entry = self
            .queues
            .get(topic)
            .and_then(|qs| qs.get(ix(u64::from(queue))))
            .and_then(|q| q.get(ix(offset)))
            .cloned();
        self.dead_letter(group, entry.into_iter().collect());
        Ok(())
    }
}

/// One receive's pass over one queue: what it hands out goes to `out`.
struct QueueReceive<'a> {
    /// The index of the Receive command: the epoch of the handles it issues.
    index: u64,
    ask: &'a Receive,
    queue: u32,
    cq: &'a [QueueEntry],
    p: &'a mut QueueProgress,
    out: &'a mut Vec<Delivery>,
}

impl QueueReceive<'_> {
    fn full(&self) -> bool {
        self.out.len() >= self.ask.batch as usize
    }

    fn deliver(&mut self, offset: u64, attempt: u32) {
        let visible_at_ms = self.ask.now_ms.saturating_add(self.ask.invisible_ms);
        self.p.inflight.insert(
            offset,
            Inflight {
                visible_at_ms,
                attempt,
                epoch: self.index,
            },
        );
        self.out.push(Delivery {
            topic: self.ask.topic.clone(),
            queue: self.queue,
            offset,
            attempt,
            handle: encode_handle(self.queue, offset, self.index),
            entry: self.cq[ix(offset)].clone(),
            visible_at_ms,
        });
    }

    /// 1. Messages whose invisible time ran out: again, or to the dead-letter queue.
    fn redeliver_expired(&mut self, dead: &mut Vec<QueueEntry>) {
        let now_ms = self.ask.now_ms;
        let expired: Vec<(u64, u32)> = self
            .p
            .inflight
            .iter()
            .filter(|(_, f)| f.visible_at_ms <= now_ms)
            .map(|(o, f)| (*o, f.attempt))
            .collect();
        for (offset, attempt) in expired {
            if self.full() {
                break;
            }
            if attempt >= self.ask.max_attempts {
                self.p.inflight.remove(&offset);
                mark_done(self.p, offset);
                dead.push(self.cq[ix(offset)].clone());
                continue;
            }
            self.deliver(offset, attempt + 1);
        }
    }

    /// 2. Messages held back earlier (delay not due, FIFO predecessor unacked).
    fn deliver_deferred(&mut self) {
        let held: Vec<u64> = self.p.deferred.iter().copied().collect();
        for offset in held {
            if self.full() {
                break;
            }
            if deliverable(
                self.cq,
                self.p,
                offset,
                &self.cq[ix(offset)],
                self.ask.now_ms,
            ) {
                self.p.deferred.remove(&offset);
                self.deliver(offset, 1);
            }
        }
    }

    /// 3. Messages never examined by this group.
    fn deliver_unexamined(&mut self) {
        let mut scanned = 0;
        while !self.full() && ix(self.p.next) < self.cq.len() && scanned < SCAN_PER_QUEUE_MAX {
            let offset = self.p.next;
            self.p.next += 1;
            scanned += 1;
            let e = &self.cq[ix(offset)];
            if !tags_match(&self.ask.tags, e) {
                mark_done(self.p, offset);
            } else if deliverable(self.cq, self.p, offset, e, self.ask.now_ms) {
                self.deliver(offset, 1);
            } else {
                self.p.deferred.insert(offset);
            }
        }
    }
}

/// A queue offset or count as a vector index: it indexes a `Vec`, so it fits.
fn ix(v: u64) -> usize {
    usize::try_from(v).expect("queue offsets index in-memory vectors")
}

fn tags_match(tags: &[String], e: &QueueEntry) -> bool {
    tags.is_empty() || e.tag.as_ref().is_some_and(|t| tags.iter().any(|x| x == t))
}

/// Due, and (for a FIFO group) no earlier message of the same group still open in this queue.
fn deliverable(
    cq: &[QueueEntry],
    p: &QueueProgress,
    offset: u64,
    e: &QueueEntry,
    now_ms: u64,
) -> bool {
    if e.delivery_ms > now_ms {
        return false;
    }
    let Some(group) = &e.message_group else {
        return true;
    };
    let same_group_open = |o: &u64| {
        *o < offset && cq.get(ix(*o)).and_then(|x| x.message_group.as_ref()) == Some(group)
    };
    !p.inflight.keys().any(same_group_open) && !p.deferred.iter().any(same_group_open)
}

fn mark_done(p: &mut QueueProgress, offset: u64) {
    p.done.insert(offset);
    while p.done.remove(&p.acked_below) {
        p.acked_below += 1;
    }
}

/// `v1.<queue>.<offset>.<epoch>`: opaque to clients, valid on every replica.
pub fn encode_handle(queue: u32, offset: u64, epoch: u64) -> String {
    format!("v1.{queue}.{offset}.{epoch}")
}

/// Parses a receipt handle; `None` when malformed.
pub fn decode_handle(handle: &str) -> Option<(u32, u64, u64)> {
    let mut parts = handle.split('.');
    if parts.next()? != "v1" {
        return None;
    }
    let queue = parts.next()?.parse().ok()?;
    let offset = parts.next()?.parse().ok()?;
    let epoch = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((queue, offset, epoch))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::command::MessageType;

    fn msg(topic: &str, tag: Option<&str>, group: Option<&str>, delivery_ms: u64) -> StoredMessage {
        StoredMessage {
            topic: topic.into(),
            message_id: "id".into(),
            message_type: if group.is_some() {
                MessageType::Fifo
            } else {
                MessageType::Normal
            },
            tag: tag.map(String::from),
            keys: vec![],
            message_group: group.map(String::from),
            delivery_ms,
            born_ms: 0,
            born_host: "h".into(),
            properties: vec![],
            body: Bytes::from_static(b"x"),
        }
    }

    struct Harness {
        state: BrokerState,
        index: u64,
    }

    impl Harness {
        fn new() -> Harness {
            Harness {
                state: BrokerState::new(StateConfig {
                    auto_create_topic_enable: true,
                    default_topic_queue_nums: 4,
                }),
                index: 0,
            }
        }
        fn apply(&mut self, c: Command) -> ApplyResult {
            self.index += 1;
            self.state.apply(self.index, &c).expect("fresh index")
        }
        fn send(&mut self, now: u64, ms: Vec<StoredMessage>) -> Vec<(u32, u64)> {
            match self.apply(Command::Send {
                now_ms: now,
                messages: ms,
            }) {
                ApplyResult::Sent(r) => r.into_iter().map(Result::unwrap).collect(),
                other => panic!("{other:?}"),
            }
        }
        fn receive(&mut self, now: u64, group: &str, batch: u32, invisible: u64) -> Vec<Delivery> {
            self.receive_tags(now, group, &[], batch, invisible)
        }
        fn receive_tags(
            &mut self,
            now: u64,
            group: &str,
            tags: &[&str],
            batch: u32,
            invisible: u64,
        ) -> Vec<Delivery> {
            let c = Command::Receive(Receive {
                now_ms: now,
                group: group.into(),
                topic: "t".into(),
                tags: tags.iter().map(|s| s.to_string()).collect(),
                batch,
                invisible_ms: invisible,
                max_attempts: 3,
            });
            match self.apply(c) {
                ApplyResult::Received(r) => r.unwrap(),
                other => panic!("{other:?}"),
            }
        }
        fn ack(&mut self, group: &str, handle: &str) -> Result<(), ApplyError> {
            match self.apply(Command::Ack {
                group: group.into(),
                topic: "t".into(),
                handles: vec![handle.into()],
            }) {
                ApplyResult::Acked(mut r) => r.remove(0),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn sent_messages_are_received_once_and_acked() {
        let mut h = Harness::new();
        h.send(1, (0..10).map(|_| msg("t", None, None, 0)).collect());
        let got = h.receive(10, "g", 32, 1000);
        assert_eq!(got.len(), 10);
        assert!(
            h.receive(20, "g", 32, 1000).is_empty(),
            "invisible messages were delivered again"
        );
        for d in &got {
            assert_eq!(d.attempt, 1);
            h.ack("g", &d.handle).unwrap();
        }
        assert!(
            h.receive(5000, "g", 32, 1000).is_empty(),
            "acked messages came back"
        );
        for q in h.state.group_progress("g", "t").unwrap() {
            assert_eq!(q.0, q.1, "acked_below == next after acking everything");
        }
        assert_eq!(
            h.receive(30, "other-group", 32, 1000).len(),
            10,
            "groups are independent"
        );
    }

    #[test]
    fn unacked_messages_come_back_after_the_invisible_time_then_go_to_the_dlq() {
        let mut h = Harness::new();
        h.send(1, vec![msg("t", None, None, 0)]);
        let first = h.receive(10, "g", 1, 100);
        assert_eq!(first[0].attempt, 1);
        assert!(h.receive(50, "g", 1, 100).is_empty());
        let second = h.receive(111, "g", 1, 100);
        assert_eq!((second[0].offset, second[0].attempt), (first[0].offset, 2));
        assert_eq!(
            h.ack("g", &first[0].handle),
            Err(ApplyError::InvalidHandle {
                handle: first[0].handle.clone()
            }),
            "stale handle"
        );
        let third = h.receive(300, "g", 1, 100);
        assert_eq!(third[0].attempt, 3);
        assert!(
            h.receive(500, "g", 1, 100).is_empty(),
            "past max attempts it leaves the queue"
        );
        assert_eq!(h.state.queue_depths("%DLQ%g"), Some(vec![1]));
    }

    #[test]
    fn change_invisible_extends_and_issues_a_new_handle() {
        let mut h = Harness::new();
        h.send(1, vec![msg("t", None, None, 0)]);
        let d = h.receive(10, "g", 1, 100).remove(0);
        let new = match h.apply(Command::ChangeInvisible {
            now_ms: 50,
            group: "g".into(),
            topic: "t".into(),
            handle: d.handle.clone(),
            invisible_ms: 1000,
        }) {
            ApplyResult::Changed(r) => r.unwrap(),
            other => panic!("{other:?}"),
        };
        assert_ne!(new, d.handle);
        assert!(
            h.receive(200, "g", 1, 100).is_empty(),
            "still invisible after the old deadline"
        );
        assert!(h.ack("g", &d.handle).is_err(), "the old handle is dead");
        h.ack("g", &new).unwrap();
    }

    #[test]
    fn fifo_group_is_delivered_in_order_one_at_a_time() {
        let mut h = Harness::new();
        h.send(
            1,
            (0..3).map(|_| msg("t", None, Some("order-1"), 0)).collect(),
        );
        let a = h.receive(10, "g", 32, 1000);
        assert_eq!(a.len(), 1, "only the head of a FIFO group is out at a time");
        assert!(h.receive(20, "g", 32, 1000).is_empty());
        h.ack("g", &a[0].handle).unwrap();
        let b = h.receive(30, "g", 32, 1000);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].offset, a[0].offset + 1);
        h.ack("g", &b[0].handle).unwrap();
        let c = h.receive(40, "g", 32, 1000);
        assert_eq!(c[0].offset, a[0].offset + 2);
    }

    #[test]
    fn delay_messages_wait_for_their_time_without_blocking_others() {
        let mut h = Harness::new();
        h.apply(Command::UpdateTopic {
            topic: "t".into(),
            queues: 1,
        });
        h.send(1, vec![msg("t", None, None, 1000), msg("t", None, None, 0)]);
        let now = h.receive(10, "g", 32, 100_000);
        assert_eq!(now.len(), 1);
        assert_eq!(now[0].offset, 1);
        let later = h.receive(1000, "g", 32, 100_000);
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].offset, 0);
    }

    #[test]
    fn tag_filter_skips_other_tags() {
        let mut h = Harness::new();
        h.apply(Command::UpdateTopic {
            topic: "t".into(),
            queues: 1,
        });
        h.send(
            1,
            vec![
                msg("t", Some("a"), None, 0),
                msg("t", Some("b"), None, 0),
                msg("t", Some("a"), None, 0),
            ],
        );
        let got = h.receive_tags(10, "g", &["a"], 32, 1000);
        assert_eq!(got.iter().map(|d| d.offset).collect::<Vec<_>>(), vec![0, 2]);
    }

    #[test]
    fn unknown_topic_without_auto_create_is_refused() {
        let mut s = BrokerState::new(StateConfig {
            auto_create_topic_enable: false,
            default_topic_queue_nums: 4,
        });
        let r = s.apply(
            1,
            &Command::Send {
                now_ms: 1,
                messages: vec![msg("nope", None, None, 0)],
            },
        );
        assert_eq!(
            r,
            Some(ApplyResult::Sent(vec![Err(ApplyError::TopicNotFound {
                topic: "nope".into()
            })]))
        );
        assert!(s.topics().is_empty());
    }

    #[test]
    fn an_auto_create_queue_count_out_of_range_refuses_the_message_instead_of_panicking() {
        // broker.conf checks 1..=1024, but the state must not trust its caller: before this
        // test, a send to a new topic with 0 default queues panicked on every replica.
        let mut s = BrokerState::new(StateConfig {
            auto_create_topic_enable: true,
            default_topic_queue_nums: 0,
        });
        let r = s.apply(
            1,
            &Command::Send {
                now_ms: 1,
                messages: vec![msg("new", None, None, 0)],
            },
        );
        assert_eq!(
            r,
            Some(ApplyResult::Sent(vec![Err(ApplyError::QueueCount {
                queues: 0
            })]))
        );
        assert!(s.topics().is_empty());
    }

    #[test]
    fn snapshots_keep_the_state_config_field_names() {
        let json = serde_json::to_value(StateConfig {
            auto_create_topic_enable: true,
            default_topic_queue_nums: 8,
        })
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"auto_create_topic": true, "default_queues": 8})
        );
    }

    #[test]
    fn applying_is_idempotent_by_index_and_replicas_agree() {
        let cmds = [
            Command::Send {
                now_ms: 1,
                messages: (0..5).map(|_| msg("t", None, None, 0)).collect(),
            },
            Command::Receive(Receive {
                now_ms: 2,
                group: "g".into(),
                topic: "t".into(),
                tags: vec![],
                batch: 3,
                invisible_ms: 10,
                max_attempts: 3,
            }),
        ];
        let mut a = BrokerState::new(StateConfig {
            auto_create_topic_enable: true,
            default_topic_queue_nums: 4,
        });
        let mut b = a.clone();
        for (i, c) in cmds.iter().enumerate() {
            a.apply(i as u64 + 1, c);
            b.apply(i as u64 + 1, c);
            assert_eq!(
                b.apply(i as u64 + 1, c),
                None,
                "re-applying an index is a no-op"
            );
        }
        assert_eq!(a, b);
        let json = serde_json::to_vec(&a).unwrap();
        assert_eq!(
            serde_json::from_slice::<BrokerState>(&json).unwrap(),
            a,
            "snapshot round trip"
        );
    }

    #[test]
    fn handles_round_trip_and_garbage_is_rejected() {
        assert_eq!(
            decode_handle(&encode_handle(3, 99, 1234)),
            Some((3, 99, 1234))
        );
        for bad in ["", "v2.1.2.3", "v1.1.2", "v1.a.2.3", "v1.1.2.3.4"] {
            assert_eq!(decode_handle(bad), None, "{bad}");
        }
    }
}
