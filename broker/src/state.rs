//! The broker's replicated state: topics, queue bounds and consumer progress.
//!
//! [`BrokerState::apply`] is a function of the state, its consume queues and one command at
//! one log index. Every replica applies the same commands in the same order and reaches the
//! same state, so a new leader has exactly what the old one had: topic table, queue offsets,
//! in-flight messages, delivery attempts. Applying is idempotent by index (entries at or below
//! `last_index` are skipped), which lets a snapshot taken slightly after its nominal index be
//! restored safely.
//!
//! What is replicated costs O(topics + queues + messages in flight), never O(messages): the
//! per-message data lives in the consume-queue files ([`crate::consume_queue`]), which the
//! same applies write on every replica, and the messages themselves stay in the log. A
//! snapshot ([`BrokerState::snapshot`]) is therefore small, and restoring one keeps the local
//! queue files up to the snapshot's queue offsets.
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

use crate::command::{
    CheckPolicy, Command, InvalidGroupField, MessageType, Recall, Receive, SEND_HEADER_LEN,
    StoredMessage, SubscriptionGroup,
};
use crate::consume_queue::{ConsumeQueues, CqError, Unit, name_hash};
use crate::message_index::{IndexError, KeyKind, MessageIndex, Record, key_hash};

mod subscription_groups;
mod transactions;

pub use subscription_groups::SubscriptionGroups;
pub use transactions::{CheckRound, HalfMessage, Transactions};

/// Entries a receive examines at most in one queue (bounds the work of one command).
const SCAN_PER_QUEUE_MAX: usize = 4096;
/// Units read from a consume queue at a time while scanning.
const SCAN_CHUNK: usize = 64;
/// Messages of one queue a group may have in flight (RocketMQ's `popInflightMessageThreshold`):
/// beyond, new messages wait (expired ones are still redelivered), so consumer state stays
/// bounded however far consumers fall behind on acking.
pub const POP_INFLIGHT_MAX: usize = 10_000;

/// The prefix of dead-letter topics.
pub const DLQ_PREFIX: &str = "%DLQ%";
/// The prefix of a consumer group's retry topic (`%RETRY%<group>`).
pub const RETRY_PREFIX: &str = "%RETRY%";

/// The first bytes of a snapshot: format 2 (binary). Format 1 was JSON with every queue entry.
const SNAPSHOT_MAGIC: &[u8; 4] = b"RMQ2";

/// Settings that shape how commands apply; identical on every replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateConfig {
    /// Create an unknown topic on first send (`autoCreateTopicEnable`).
    pub auto_create_topic_enable: bool,
    /// Queues of an auto-created topic (`defaultTopicQueueNums`).
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

/// The offsets one queue holds: `min..next` (RocketMQ's min and max offset).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bounds {
    /// The first offset still held (moves up when retention trims the queue).
    pub min: u64,
    /// The offset the next message gets.
    pub next: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Inflight {
    visible_at_ms: u64,
    attempt: u32,
    epoch: u64,
    unit: Unit,
}

/// A group's progress in one queue.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct QueueProgress {
    // Invariant: every offset below `next` is in exactly one of: below `acked_below` (done),
    // `done`, `deferred`, `inflight`. `done` holds only offsets above `acked_below` (acked
    // ahead of the floor), so every set here is bounded by what is in flight or held back.
    acked_below: u64,
    next: u64,
    done: BTreeSet<u64>,
    deferred: BTreeMap<u64, Unit>,
    inflight: BTreeMap<u64, Inflight>,
}

impl QueueProgress {
    /// Everything below `offset` consumed, nothing in flight or held back.
    fn at(offset: u64) -> QueueProgress {
        QueueProgress {
            acked_below: offset,
            next: offset,
            ..QueueProgress::default()
        }
    }
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
    pub unit: Unit,
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
    /// A producer chose a queue the topic does not have.
    #[error("topic {topic} has {queues} queues; there is no queue {queue}")]
    QueueNotFound {
        /// The topic.
        topic: String,
        /// The queue asked for.
        queue: u32,
        /// The topic's queue count.
        queues: u32,
    },
    /// A topic update asked for a queue count outside [`TOPIC_QUEUES`].
    #[error("queue count {queues} must be 1..=1024")]
    QueueCount {
        /// The count asked for.
        queues: u32,
    },
    /// No open transaction has this id (never sent, already committed or rolled back, or
    /// dropped after its checks).
    #[error("no open transaction {transaction_id:?}")]
    TransactionNotFound {
        /// The transaction id.
        transaction_id: String,
    },
    /// A recall of a message that is due already, or that its queue no longer holds.
    #[error("cannot recall the message at {topic} queue {queue} offset {offset}: {why}")]
    NotRecallable {
        /// The topic.
        topic: String,
        /// The queue.
        queue: u32,
        /// The queue offset.
        offset: u64,
        /// Why not.
        why: &'static str,
    },
    /// No subscription group of this name has a record.
    #[error("subscription group [{group}] does not exist")]
    SubscriptionGroupNotFound {
        /// The group.
        group: String,
    },
    /// A subscription group record with a field out of its range.
    #[error(transparent)]
    InvalidSubscriptionGroup {
        /// The field and why.
        #[from]
        source: InvalidGroupField,
    },
}

/// Why the state could not apply a command or restore a snapshot: its files failed, or a
/// snapshot is not one this version reads. Applying stops at such an error (the replica would
/// otherwise drift from the others); the checkpoint and the log bring it back on restart.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A consume-queue file operation failed.
    #[error(transparent)]
    Queue(#[from] CqError),
    /// A message-index file operation failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// A snapshot or checkpoint that does not decode.
    #[error("broker state snapshot: {why}")]
    Snapshot {
        /// What is wrong with it.
        why: String,
    },
}

/// Per message of a send: (queue, offset) or why it was not stored.
pub type SendResults = Vec<Result<Placed, ApplyError>>;

/// Where a sent message was placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placed {
    /// Queue id.
    pub queue: u32,
    /// Offset in the queue.
    pub offset: u64,
    /// Log index of its Send entry.
    pub index: u64,
    /// Position of its record in the entry.
    pub pos: u32,
}

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
    /// Queues trimmed after a purge: how many messages left the queues.
    Trimmed(u64),
    /// One result per command of a [`Command::Batch`], in order.
    Batch(Vec<ApplyResult>),
    /// Per queue: the consumer offset before and after a reset.
    Reset(Result<Vec<(u64, u64)>, ApplyError>),
    /// A consumer offset committed.
    Committed(Result<(), ApplyError>),
    /// A barrier passed.
    Barrier,
    /// A transaction resolved: where a committed message was placed (`None` for a rollback).
    Ended(Result<Option<Placed>, ApplyError>),
    /// A check round of the open transactions.
    Checked(CheckRound),
    /// A delay message recalled.
    Recalled(Result<(), ApplyError>),
    /// A subscription group's record after an update, or the record a delete removed.
    SubscriptionGroupChanged(Result<SubscriptionGroup, ApplyError>),
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
            ApplyResult::Trimmed(_) => "Trim",
            ApplyResult::Batch(_) => "Batch",
            ApplyResult::Reset(_) => "ResetOffset",
            ApplyResult::Committed(_) => "CommitOffset",
            ApplyResult::Barrier => "Barrier",
            ApplyResult::Ended(_) => "EndTransaction",
            ApplyResult::Checked(_) => "CheckTransactions",
            ApplyResult::Recalled(_) => "Recall",
            ApplyResult::SubscriptionGroupChanged(_) => {
                "UpdateSubscriptionGroup or DeleteSubscriptionGroup"
            }
        }
    }
}

/// What every replica agrees on: the part of the state a snapshot carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Replicated {
    config: StateConfig,
    last_index: u64,
    topics: BTreeMap<String, Topic>,
    queues: BTreeMap<String, Vec<Bounds>>,
    // group → topic → per-queue progress
    groups: BTreeMap<String, BTreeMap<String, Vec<QueueProgress>>>,
    round_robin: u64,
    /// The last log index a Trim removed from the queues.
    trimmed_upto: u64,
}

/// The replicated broker state with this replica's consume queues.
#[derive(Debug)]
pub struct BrokerState {
    r: Replicated,
    /// The open transactions: replicated too, kept apart so that snapshots of earlier
    /// versions (without them) still read.
    tx: Transactions,
    /// The subscription groups' records: replicated, kept apart for the same reason.
    subscriptions: SubscriptionGroups,
    cq: ConsumeQueues,
    index: MessageIndex,
}

impl PartialEq for BrokerState {
    /// Replicas agree when their replicated parts do; the queue files follow from those.
    fn eq(&self, other: &BrokerState) -> bool {
        self.r == other.r && self.tx == other.tx && self.subscriptions == other.subscriptions
    }
}

impl BrokerState {
    /// An empty state over `cq` (which should be empty too).
    pub fn new(config: StateConfig, cq: ConsumeQueues) -> BrokerState {
        BrokerState {
            r: Replicated {
                config,
                last_index: 0,
                topics: BTreeMap::new(),
                queues: BTreeMap::new(),
                groups: BTreeMap::new(),
                round_robin: 0,
                trimmed_upto: 0,
            },
            tx: Transactions::default(),
            subscriptions: SubscriptionGroups::default(),
            cq,
            index: MessageIndex::in_memory(),
        }
    }

    /// Uses `index` as this replica's message index from now on (the store's, in files).
    pub fn set_index(&mut self, index: MessageIndex) {
        self.index = index;
    }

    /// The message index.
    pub fn index(&self) -> &MessageIndex {
        &self.index
    }

    /// The consume queues.
    pub fn consume_queues(&self) -> &ConsumeQueues {
        &self.cq
    }

    /// Indexes again the messages of entries after the index's runs, up to the last applied
    /// one, from the consume queues (start-up: records that were only in memory were lost).
    /// `read` gets a message's keys and id from the log; messages it cannot read are skipped.
    ///
    /// # Errors
    /// A queue or index file failure.
    pub fn reindex(
        &mut self,
        read: impl Fn(&Unit) -> Option<StoredMessage>,
    ) -> Result<u64, StateError> {
        let after = self.index.indexed_upto();
        let upto = self.r.last_index;
        let mut added = 0;
        for (topic, queues) in &self.r.queues {
            if topic.starts_with(DLQ_PREFIX) {
                continue;
            }
            for (qi, b) in queues.iter().enumerate() {
                let queue = u32::try_from(qi).unwrap_or(u32::MAX);
                let mut offset = first_after(&self.cq, topic, queue, *b, after)?;
                'queue: while offset < b.next {
                    let units = self.cq.read(topic, queue, offset, SCAN_CHUNK)?;
                    if units.is_empty() {
                        break;
                    }
                    for unit in units {
                        if unit.index > upto {
                            break 'queue;
                        }
                        if let Some(m) = read(&unit) {
                            added += index_message(&mut self.index, &m, &unit, queue, offset);
                        }
                        offset += 1;
                    }
                }
            }
        }
        self.index.end_entry()?;
        Ok(added)
    }

    /// The index of the last command applied.
    pub fn last_index(&self) -> u64 {
        self.r.last_index
    }

    /// The settings commands apply with.
    pub fn config(&self) -> &StateConfig {
        &self.r.config
    }

    /// The topic table.
    pub fn topics(&self) -> &BTreeMap<String, Topic> {
        &self.r.topics
    }

    /// The last log index retention removed from the queues (see [`Command::Trim`]).
    pub fn trimmed_upto(&self) -> u64 {
        self.r.trimmed_upto
    }

    /// The consume queues, for the store's checkpoint.
    pub fn consume_queues_mut(&mut self) -> &mut ConsumeQueues {
        &mut self.cq
    }

    /// Each queue's next offset (RocketMQ's max offset: messages ever stored in it).
    pub fn queue_depths(&self, topic: &str) -> Option<Vec<u64>> {
        self.r
            .queues
            .get(topic)
            .map(|qs| qs.iter().map(|b| b.next).collect())
    }

    /// Each queue's offsets still held.
    pub fn queue_bounds(&self, topic: &str) -> Option<&[Bounds]> {
        self.r.queues.get(topic).map(Vec::as_slice)
    }

    /// Per queue of `topic`: (acked below, delivered-or-examined below, in flight) for `group`.
    pub fn group_progress(&self, group: &str, topic: &str) -> Option<Vec<(u64, u64, usize)>> {
        let qs = self.r.groups.get(group)?.get(topic)?;
        Some(
            qs.iter()
                .map(|p| (p.acked_below, p.next, p.inflight.len()))
                .collect(),
        )
    }

    /// Consumer groups that have progress on `topic`.
    pub fn groups_of(&self, topic: &str) -> Vec<String> {
        self.r
            .groups
            .iter()
            .filter(|(_, t)| t.contains_key(topic))
            .map(|(g, _)| g.clone())
            .collect()
    }

    /// The replicated part as bytes: topics, queue bounds, consumer progress, then the open
    /// transactions, then the subscription groups. Its size depends on topics, queues, groups
    /// and messages in flight, not on how many messages the log holds.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = SNAPSHOT_MAGIC.to_vec();
        // Serializing plain maps and integers into a Vec cannot fail.
        out.extend(postcard::to_stdvec(&self.r).unwrap_or_default());
        out.extend(postcard::to_stdvec(&self.tx).unwrap_or_default());
        out.extend(postcard::to_stdvec(&self.subscriptions).unwrap_or_default());
        out
    }

    /// The state a [`BrokerState::snapshot`] describes, over this replica's queues `cq`.
    /// Returns it with the number of holes made (see [`BrokerState::install`]).
    ///
    /// # Errors
    /// As [`BrokerState::install`].
    pub fn restore(data: &[u8], cq: ConsumeQueues) -> Result<(BrokerState, u64), StateError> {
        let parts = decode_snapshot(data)?;
        let mut state = BrokerState::new(parts.r.config.clone(), cq);
        let holes = state.adopt(parts)?;
        Ok((state, holes))
    }

    /// Replaces the replicated part with a [`BrokerState::snapshot`]. The queue files keep the
    /// units they have below each queue's next offset (the same on every replica, since they
    /// come from the same entries), lose what lies beyond, and get holes for what this replica
    /// never had. Returns how many holes were made.
    ///
    /// # Errors
    /// A snapshot of another format (nothing changes), or a queue file that cannot be resized
    /// (the state is then unusable, as after any queue-file failure).
    pub fn install(&mut self, data: &[u8]) -> Result<u64, StateError> {
        self.adopt(decode_snapshot(data)?)
    }

    /// The index a [`BrokerState::snapshot`] was taken at.
    ///
    /// # Errors
    /// As [`BrokerState::install`] (format only).
    pub fn snapshot_index(data: &[u8]) -> Result<u64, StateError> {
        Ok(decode_snapshot(data)?.r.last_index)
    }

    /// Takes the settings over from broker.conf (a restart may change them;
    /// every replica restarts with the same conf).
    pub fn set_config(&mut self, config: StateConfig) {
        self.r.config = config;
    }

    fn adopt(&mut self, parts: SnapshotParts) -> Result<u64, StateError> {
        let SnapshotParts {
            r,
            tx,
            subscriptions,
        } = parts;
        for topic in self.cq.topics_on_disk()? {
            if !r.queues.contains_key(&topic) {
                self.cq.remove_topic(&topic)?;
            }
        }
        let mut holes = 0;
        for (topic, queues) in &r.queues {
            for (q, b) in queues.iter().enumerate() {
                let q = u32::try_from(q).unwrap_or(u32::MAX);
                holes += self.cq.set_len(topic, q, b.min, b.next)?;
            }
        }
        self.r = r;
        self.tx = tx;
        self.subscriptions = subscriptions;
        Ok(holes)
    }

    /// Whether `group` could receive something from `topic` at `now_ms` (a read-only check, so
    /// an empty long poll does not write to the log). When in doubt (a queue file that cannot
    /// be read, a long run of other tags) it says yes and lets the Receive decide.
    pub fn has_deliverable(&self, group: &str, topic: &str, tags: &[String], now_ms: u64) -> bool {
        let Some(queues) = self.r.queues.get(topic) else {
            return false;
        };
        let progress = self.r.groups.get(group).and_then(|t| t.get(topic));
        let tags = tag_hashes(tags);
        queues.iter().enumerate().any(|(qi, b)| {
            let Some(p) = progress.and_then(|ps| ps.get(qi)) else {
                return b.next > b.min;
            };
            p.inflight.values().any(|f| f.visible_at_ms <= now_ms)
                || p.deferred
                    .iter()
                    .any(|(&o, u)| deliverable(p, o, u, now_ms))
                || self.unexamined_match(topic, qi, p.next.max(b.min), b.next, &tags)
        })
    }

    /// Whether a unit in `from..next` of the queue passes the tag filter.
    fn unexamined_match(&self, topic: &str, qi: usize, from: u64, next: u64, tags: &[u64]) -> bool {
        if from >= next {
            return false;
        }
        if tags.is_empty() {
            return true;
        }
        let queue = u32::try_from(qi).unwrap_or(u32::MAX);
        let n = usize::try_from(next - from).unwrap_or(usize::MAX);
        match self.cq.read(topic, queue, from, n.min(SCAN_PER_QUEUE_MAX)) {
            Ok(units) => n > units.len() || units.iter().any(|u| tags_match(tags, u)),
            Err(_) => true,
        }
    }

    /// Records that the entry at `index` changes nothing (a Raft no-op, or an entry every
    /// replica failed to decode).
    pub fn skip(&mut self, index: u64) {
        self.r.last_index = self.r.last_index.max(index);
    }

    /// Applies the command at `index`. Returns `None` for an index already applied.
    ///
    /// # Errors
    /// A consume-queue file failed: the state is now unusable (stop applying).
    pub fn apply(
        &mut self,
        index: u64,
        command: &Command,
    ) -> Result<Option<ApplyResult>, StateError> {
        if index <= self.r.last_index {
            return Ok(None);
        }
        self.r.last_index = index;
        self.apply_command(index, command).map(Some)
    }

    fn apply_command(&mut self, index: u64, command: &Command) -> Result<ApplyResult, StateError> {
        Ok(match command {
            Command::Send { now_ms, messages } => {
                ApplyResult::Sent(self.send(index, *now_ms, messages)?)
            }
            Command::UpdateTopic { topic, queues } => {
                ApplyResult::TopicChanged(self.update_topic(topic, *queues))
            }
            Command::DeleteTopic { topic } => ApplyResult::TopicChanged(self.delete_topic(topic)?),
            Command::Receive(receive) => ApplyResult::Received(self.receive(index, receive)?),
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
            } => ApplyResult::DeadLettered(self.forward_to_dlq(group, topic, handle)?),
            Command::Trim { upto } => ApplyResult::Trimmed(self.trim(*upto)?),
            Command::ResetOffset {
                group,
                topic,
                offsets,
            } => ApplyResult::Reset(self.reset_offset(group, topic, offsets)),
            Command::CommitOffset {
                group,
                topic,
                queue,
                offset,
            } => ApplyResult::Committed(self.commit_offset(group, topic, *queue, *offset)),
            Command::Barrier => ApplyResult::Barrier,
            Command::EndTransaction {
                transaction_id,
                message,
                ..
            } => {
                ApplyResult::Ended(self.end_transaction(index, transaction_id, message.as_ref())?)
            }
            Command::CheckTransactions { now_ms, policy } => {
                ApplyResult::Checked(self.check_transactions(*now_ms, policy))
            }
            Command::Recall(recall) => ApplyResult::Recalled(self.recall(recall)?),
            Command::UpdateSubscriptionGroup { group, create_only } => {
                ApplyResult::SubscriptionGroupChanged(self.update_subscription_group(
                    index,
                    group,
                    *create_only,
                ))
            }
            Command::DeleteSubscriptionGroup {
                group,
                clean_offset,
            } => ApplyResult::SubscriptionGroupChanged(self.delete_subscription_group(
                index,
                group,
                *clean_offset,
            )),
            Command::Batch(commands) => ApplyResult::Batch(
                commands
                    .iter()
                    .map(|c| self.apply_command(index, c))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }

    /// Recalls a delay message: every group that held it back is done with it, and this
    /// replica's unit of it (when it has the message) is marked never due, so no receive or
    /// pull hands it out. The decision rests on the command and the replicated bounds only.
    fn recall(&mut self, r: &Recall) -> Result<Result<(), ApplyError>, StateError> {
        let refuse = |why| {
            Ok(Err(ApplyError::NotRecallable {
                topic: r.topic.clone(),
                queue: r.queue,
                offset: r.offset,
                why,
            }))
        };
        let held = self
            .r
            .queues
            .get(&r.topic)
            .and_then(|b| b.get(ix(u64::from(r.queue))))
            .is_some_and(|b| b.min <= r.offset && r.offset < b.next);
        if !held {
            return refuse("the queue does not hold it");
        }
        if r.delivery_ms <= r.now_ms {
            return refuse("it is due already");
        }
        for topics in self.r.groups.values_mut() {
            let queue = topics
                .get_mut(&r.topic)
                .and_then(|qs| qs.get_mut(ix(u64::from(r.queue))));
            if let Some(p) = queue
                && p.deferred.remove(&r.offset).is_some()
            {
                mark_done(p, r.offset);
            }
        }
        if let Some(unit) = self.cq.get(&r.topic, r.queue, r.offset)?
            && unit.index == r.index
            && unit.pos == r.pos
        {
            self.cq
                .write(&r.topic, r.queue, r.offset, &[unit.recalled()])?;
        }
        Ok(Ok(()))
    }

    /// Sets `group`'s offset in each queue of `topic` (clamped to the queue's bounds); what was
    /// in flight or held back is forgotten, so its handles stop working.
    fn reset_offset(
        &mut self,
        group: &str,
        topic: &str,
        offsets: &[u64],
    ) -> Result<Vec<(u64, u64)>, ApplyError> {
        let (bounds, progress) = queues_and_progress(&mut self.r, group, topic)?;
        let mut out = Vec::with_capacity(bounds.len());
        for ((p, b), want) in progress.iter_mut().zip(bounds).zip(offsets) {
            let before = p.acked_below.max(b.min);
            let to = (*want).clamp(b.min, b.next);
            *p = QueueProgress::at(to);
            out.push((before, to));
        }
        Ok(out)
    }

    /// Sets `group`'s offset in one queue of `topic` (clamped to the queue's bounds), as a 4.x
    /// consumer commits it; what was in flight in that queue is forgotten, as by a reset.
    fn commit_offset(
        &mut self,
        group: &str,
        topic: &str,
        queue: u32,
        offset: u64,
    ) -> Result<(), ApplyError> {
        let (bounds, progress) = queues_and_progress(&mut self.r, group, topic)?;
        let (Some(b), Some(p)) = (bounds.get(queue as usize), progress.get_mut(queue as usize))
        else {
            return Err(ApplyError::QueueNotFound {
                topic: topic.to_string(),
                queue,
                queues: u32::try_from(bounds.len()).unwrap_or(u32::MAX),
            });
        };
        let to = offset.clamp(b.min, b.next);
        if p.acked_below != to || p.next != to {
            *p = QueueProgress::at(to);
        }
        Ok(())
    }

    /// Moves every queue's min offset past the units of entries up to `upto`, drops the
    /// files below it, and moves consumers behind it up to it.
    fn trim(&mut self, upto: u64) -> Result<u64, StateError> {
        if upto <= self.r.trimmed_upto {
            return Ok(0);
        }
        self.r.trimmed_upto = upto;
        self.index.trim(upto)?;
        let purged = self.tx.trim(upto);
        if purged > 0 {
            tracing::warn!(purged, upto, "retention purged open half messages");
        }
        let mut removed = 0;
        for (topic, queues) in &mut self.r.queues {
            for (qi, b) in queues.iter_mut().enumerate() {
                let queue = u32::try_from(qi).unwrap_or(u32::MAX);
                let min = first_after(&self.cq, topic, queue, *b, upto)?;
                if min == b.min {
                    continue;
                }
                removed += min - b.min;
                b.min = min;
                self.cq.trim(topic, queue, min)?;
            }
        }
        for topics in self.r.groups.values_mut() {
            for (topic, progress) in topics.iter_mut() {
                let Some(bounds) = self.r.queues.get(topic) else {
                    continue;
                };
                for (p, b) in progress.iter_mut().zip(bounds) {
                    skip_to(p, b.min);
                }
            }
        }
        Ok(removed)
    }

    fn update_topic(&mut self, topic: &str, queues: u32) -> Result<(), ApplyError> {
        if !TOPIC_QUEUES.contains(&queues) {
            return Err(ApplyError::QueueCount { queues });
        }
        self.r.topics.insert(topic.to_string(), Topic { queues });
        let qs = self.r.queues.entry(topic.to_string()).or_default();
        if qs.len() < ix(u64::from(queues)) {
            qs.resize(ix(u64::from(queues)), Bounds::default());
        }
        Ok(())
    }

    fn delete_topic(&mut self, topic: &str) -> Result<Result<(), ApplyError>, StateError> {
        if self.r.topics.remove(topic).is_none() {
            return Ok(Err(ApplyError::TopicNotFound {
                topic: topic.to_string(),
            }));
        }
        self.r.queues.remove(topic);
        for topics in self.r.groups.values_mut() {
            topics.remove(topic);
        }
        self.cq.remove_topic(topic)?;
        Ok(Ok(()))
    }

    /// The queue a message goes to: FIFO groups hash to one queue so their order holds;
    /// others go round robin. Creates the topic when the auto-create rule allows.
    fn place(&mut self, m: &StoredMessage) -> Result<u32, ApplyError> {
        if !self.r.topics.contains_key(&m.topic) {
            let queues =
                self.r
                    .config
                    .auto_create_queues()
                    .ok_or_else(|| ApplyError::TopicNotFound {
                        topic: m.topic.clone(),
                    })?;
            self.update_topic(&m.topic, queues)?;
        }
        let queues = self.r.topics[&m.topic].queues;
        if let Some(queue) = m.queue {
            if queue >= queues {
                return Err(ApplyError::QueueNotFound {
                    topic: m.topic.clone(),
                    queue,
                    queues,
                });
            }
            return Ok(queue);
        }
        Ok(match &m.message_group {
            Some(g) => crc32c::crc32c(g.as_bytes()) % queues,
            None => {
                self.r.round_robin += 1;
                u32::try_from(self.r.round_robin % u64::from(queues)).unwrap_or(0)
            }
        })
    }

    /// Stores the messages of a Send entry: each goes to its queue, except a transactional
    /// one, which waits as a half message for its producer's commit.
    fn send(
        &mut self,
        index: u64,
        now_ms: u64,
        messages: &[StoredMessage],
    ) -> Result<SendResults, StateError> {
        self.store_messages(index, messages, |state, m, unit| {
            (m.message_type == MessageType::Transaction).then(|| state.hold_half(m, unit, now_ms))
        })
    }

    /// Holds a transactional message as a half message until it is committed or rolled back.
    fn hold_half(&mut self, m: &StoredMessage, unit: Unit, now_ms: u64) -> Placed {
        let half = HalfMessage {
            topic: m.topic.clone(),
            index: unit.index,
            pos: unit.pos,
            len: unit.len,
            stored_ms: now_ms,
            producer_group: m.property(PROPERTY_PRODUCER_GROUP).map(str::to_string),
            queue: m.queue,
            checks: 0,
            last_check_ms: now_ms,
        };
        self.tx.hold(&m.message_id, half);
        // A half message has no queue offset yet (it gets one at its commit); the receipt
        // names its record, as RocketMQ's names the half topic's.
        Placed {
            queue: 0,
            offset: 0,
            index: unit.index,
            pos: unit.pos,
        }
    }

    /// Commits (stores `message`, the half message's record) or rolls back a transaction.
    fn end_transaction(
        &mut self,
        index: u64,
        transaction_id: &str,
        message: Option<&StoredMessage>,
    ) -> Result<Result<Option<Placed>, ApplyError>, StateError> {
        let Some(half) = self.tx.resolve(transaction_id) else {
            return Ok(Err(ApplyError::TransactionNotFound {
                transaction_id: transaction_id.to_string(),
            }));
        };
        let Some(m) = message else {
            return Ok(Ok(None));
        };
        // The queue the producer chose for the half message, from the replicated table.
        let m = StoredMessage {
            queue: half.queue,
            ..m.clone()
        };
        let mut placed = self.store_messages(index, std::slice::from_ref(&m), |_, _, _| None)?;
        Ok(placed
            .pop()
            .unwrap_or(Err(ApplyError::TopicNotFound {
                topic: m.topic.clone(),
            }))
            .map(Some))
    }

    fn check_transactions(&mut self, now_ms: u64, policy: &CheckPolicy) -> CheckRound {
        let round = self.tx.check(now_ms, policy);
        for id in &round.dropped {
            tracing::warn!(
                transaction_id = %id,
                "half message dropped after transactionCheckMax checks without an answer"
            );
        }
        round
    }

    /// The open transactions.
    pub fn transactions(&self) -> &Transactions {
        &self.tx
    }

    /// The subscription groups' records.
    pub fn subscription_groups(&self) -> &SubscriptionGroups {
        &self.subscriptions
    }

    /// Creates or replaces a group's record (see [`Command::UpdateSubscriptionGroup`]); the
    /// record is checked here too, so a bad one from any proposer changes nothing anywhere.
    fn update_subscription_group(
        &mut self,
        index: u64,
        group: &SubscriptionGroup,
        create_only: bool,
    ) -> Result<SubscriptionGroup, ApplyError> {
        group.check()?;
        Ok(self.subscriptions.update(index, group, create_only))
    }

    /// Deletes a group's record and, with `clean_offset`, its progress on every topic.
    fn delete_subscription_group(
        &mut self,
        index: u64,
        group: &str,
        clean_offset: bool,
    ) -> Result<SubscriptionGroup, ApplyError> {
        let removed = self.subscriptions.delete(index, group).ok_or_else(|| {
            ApplyError::SubscriptionGroupNotFound {
                group: group.to_string(),
            }
        })?;
        if clean_offset {
            self.r.groups.remove(group);
        }
        Ok(removed)
    }

    /// Places each message of the entry at `index` in its queue, unless `hold` keeps it
    /// aside (a half message) and answers for it.
    fn store_messages(
        &mut self,
        index: u64,
        messages: &[StoredMessage],
        mut hold: impl FnMut(&mut Self, &StoredMessage, Unit) -> Option<Placed>,
    ) -> Result<SendResults, StateError> {
        let mut out = Vec::with_capacity(messages.len());
        // Units go to the files one write per queue, after the loop.
        let mut writes: BTreeMap<(String, u32), (u64, Vec<Unit>)> = BTreeMap::new();
        let mut pos = SEND_HEADER_LEN;
        for m in messages {
            let len = u32::try_from(m.encoded_len()).unwrap_or(u32::MAX);
            let unit = Unit {
                index,
                pos,
                len,
                tag_hash: m.tag.as_deref().map_or(0, name_hash),
                group_hash: m.message_group.as_deref().map_or(0, name_hash),
                delivery_ms: m.delivery_ms,
            };
            pos = pos.saturating_add(len);
            if let Some(placed) = hold(self, m, unit) {
                out.push(Ok(placed));
                continue;
            }
            let queue = match self.place(m) {
                Ok(q) => q,
                Err(e) => {
                    out.push(Err(e));
                    continue;
                }
            };
            let Some(b) = self
                .r
                .queues
                .get_mut(&m.topic)
                .and_then(|qs| qs.get_mut(queue as usize))
            else {
                out.push(Err(ApplyError::TopicNotFound {
                    topic: m.topic.clone(),
                }));
                continue;
            };
            let offset = b.next;
            b.next += 1;
            writes
                .entry((m.topic.clone(), queue))
                .or_insert_with(|| (offset, Vec::new()))
                .1
                .push(unit);
            index_message(&mut self.index, m, &unit, queue, offset);
            out.push(Ok(Placed {
                queue,
                offset,
                index,
                pos: unit.pos,
            }));
        }
        for ((topic, queue), (from, units)) in writes {
            self.cq.write(&topic, queue, from, &units)?;
        }
        self.index.end_entry()?;
        Ok(out)
    }

    fn receive(
        &mut self,
        index: u64,
        ask: &Receive,
    ) -> Result<Result<Vec<Delivery>, ApplyError>, StateError> {
        let Some(bounds) = self.r.queues.get(&ask.topic) else {
            return Ok(Err(ApplyError::TopicNotFound {
                topic: ask.topic.clone(),
            }));
        };
        let n = bounds.len();
        let progress = self
            .r
            .groups
            .entry(ask.group.clone())
            .or_default()
            .entry(ask.topic.clone())
            .or_default();
        progress.resize(n, QueueProgress::default());
        let tags = tag_hashes(&ask.tags);
        let mut out = Vec::new();
        let mut dead: Vec<Unit> = Vec::new();
        // Start at a different queue each time so no queue starves.
        let start = usize::try_from(index).unwrap_or(0) % n.max(1);
        for k in 0..n {
            let qi = (start + k) % n;
            let mut queue = QueueReceive {
                index,
                ask,
                tags: &tags,
                queue: u32::try_from(qi).unwrap_or(u32::MAX),
                bounds: bounds[qi],
                cq: &self.cq,
                p: &mut progress[qi],
                out: &mut out,
            };
            if queue.full() {
                break;
            }
            queue.skip_below_min();
            queue.redeliver_expired(&mut dead);
            queue.deliver_deferred();
            queue.deliver_unexamined()?;
        }
        self.dead_letter(&ask.group, dead)?;
        Ok(Ok(out))
    }

    /// Appends `units` to `group`'s dead-letter topic, creating it (one queue) if needed.
    fn dead_letter(&mut self, group: &str, units: Vec<Unit>) -> Result<(), StateError> {
        if units.is_empty() {
            return Ok(());
        }
        let dlq = format!("{DLQ_PREFIX}{group}");
        if !self.r.topics.contains_key(&dlq) {
            let _ = self.update_topic(&dlq, 1);
        }
        let Some(b) = self.r.queues.get_mut(&dlq).and_then(|qs| qs.first_mut()) else {
            return Ok(());
        };
        let from = b.next;
        b.next += units.len() as u64;
        self.cq.write(&dlq, 0, from, &units)?;
        Ok(())
    }

    fn inflight_mut(
        &mut self,
        group: &str,
        topic: &str,
        handle: &str,
    ) -> Result<(&mut QueueProgress, u32, u64), ApplyError> {
        let invalid = || ApplyError::InvalidHandle {
            handle: handle.to_string(),
        };
        let (queue, offset, epoch) = decode_handle(handle).ok_or_else(invalid)?;
        let p = self
            .r
            .groups
            .get_mut(group)
            .and_then(|t| t.get_mut(topic))
            .and_then(|qs| qs.get_mut(ix(u64::from(queue))))
            .ok_or_else(invalid)?;
        match p.inflight.get(&offset) {
            Some(f) if f.epoch == epoch => Ok((p, queue, offset)),
            _ => Err(invalid()),
        }
    }

    fn ack(&mut self, group: &str, topic: &str, handle: &str) -> Result<(), ApplyError> {
        let (p, _, offset) = self.inflight_mut(group, topic, handle)?;
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
        let (p, queue, offset) = self.inflight_mut(group, topic, handle)?;
        if let Some(f) = p.inflight.get_mut(&offset) {
            f.visible_at_ms = now_ms.saturating_add(invisible_ms);
            f.epoch = index;
        }
        Ok(encode_handle(queue, offset, index))
    }

    fn forward_to_dlq(
        &mut self,
        group: &str,
        topic: &str,
        handle: &str,
    ) -> Result<Result<(), ApplyError>, StateError> {
        let (p, _, offset) = match self.inflight_mut(group, topic, handle) {
            Ok(found) => found,
            Err(e) => return Ok(Err(e)),
        };
        let unit = p.inflight.remove(&offset).map(|f| f.unit);
        mark_done(p, offset);
        self.dead_letter(group, unit.into_iter().collect())?;
        Ok(Ok(()))
    }
}

/// One receive's pass over one queue: what it hands out goes to `out`.
struct QueueReceive<'a> {
    /// The index of the Receive command: the epoch of the handles it issues.
    index: u64,
    ask: &'a Receive,
    tags: &'a [u64],
    queue: u32,
    bounds: Bounds,
    cq: &'a ConsumeQueues,
    p: &'a mut QueueProgress,
    out: &'a mut Vec<Delivery>,
}

impl QueueReceive<'_> {
    fn full(&self) -> bool {
        self.out.len() >= self.ask.batch as usize
    }

    fn deliver(&mut self, offset: u64, attempt: u32, unit: Unit) {
        let visible_at_ms = self.ask.now_ms.saturating_add(self.ask.invisible_ms);
        self.p.inflight.insert(
            offset,
            Inflight {
                visible_at_ms,
                attempt,
                epoch: self.index,
                unit,
            },
        );
        self.out.push(Delivery {
            topic: self.ask.topic.clone(),
            queue: self.queue,
            offset,
            attempt,
            handle: encode_handle(self.queue, offset, self.index),
            unit,
            visible_at_ms,
        });
    }

    /// 0. A group behind the queue's min offset (new, or trimmed by retention) starts there,
    ///    as RocketMQ's consumers do.
    fn skip_below_min(&mut self) {
        skip_to(self.p, self.bounds.min);
    }

    /// 1. Messages whose invisible time ran out: again, or to the dead-letter queue.
    fn redeliver_expired(&mut self, dead: &mut Vec<Unit>) {
        let now_ms = self.ask.now_ms;
        let expired: Vec<(u64, u32, Unit)> = self
            .p
            .inflight
            .iter()
            .filter(|(_, f)| f.visible_at_ms <= now_ms)
            .map(|(o, f)| (*o, f.attempt, f.unit))
            .collect();
        for (offset, attempt, unit) in expired {
            if self.full() {
                break;
            }
            if attempt >= self.ask.max_attempts {
                self.p.inflight.remove(&offset);
                mark_done(self.p, offset);
                dead.push(unit);
                continue;
            }
            self.deliver(offset, attempt + 1, unit);
        }
    }

    /// 2. Messages held back earlier (delay not due, FIFO predecessor unacked).
    fn deliver_deferred(&mut self) {
        let held: Vec<(u64, Unit)> = self.p.deferred.iter().map(|(o, u)| (*o, *u)).collect();
        for (offset, unit) in held {
            if self.full() {
                break;
            }
            if deliverable(self.p, offset, &unit, self.ask.now_ms) {
                self.p.deferred.remove(&offset);
                self.deliver(offset, 1, unit);
            }
        }
    }

    /// 3. Messages never examined by this group, read from the consume queue.
    fn deliver_unexamined(&mut self) -> Result<(), StateError> {
        let mut scanned = 0;
        while !self.full()
            && self.p.next < self.bounds.next
            && scanned < SCAN_PER_QUEUE_MAX
            && self.p.inflight.len() + self.p.deferred.len() < POP_INFLIGHT_MAX
        {
            let left = usize::try_from(self.bounds.next - self.p.next).unwrap_or(usize::MAX);
            let want = left.min(SCAN_CHUNK).min(SCAN_PER_QUEUE_MAX - scanned);
            let units = self
                .cq
                .read(&self.ask.topic, self.queue, self.p.next, want)?;
            if units.is_empty() {
                // The files end before the bounds do: only after a lost file (the checkpoint
                // said more than the disk had). Nothing more can be read here.
                break;
            }
            for unit in units {
                if self.full() || self.p.inflight.len() + self.p.deferred.len() >= POP_INFLIGHT_MAX
                {
                    break;
                }
                let offset = self.p.next;
                self.p.next += 1;
                scanned += 1;
                self.examine(offset, unit);
            }
        }
        Ok(())
    }

    fn examine(&mut self, offset: u64, unit: Unit) {
        if unit.is_hole() || unit.is_recalled() || !tags_match(self.tags, &unit) {
            mark_done(self.p, offset);
        } else if deliverable(self.p, offset, &unit, self.ask.now_ms) {
            self.deliver(offset, 1, unit);
        } else {
            self.p.deferred.insert(offset, unit);
        }
    }
}

/// The bounds of `topic`'s queues and `group`'s progress in them, one entry per queue.
fn queues_and_progress<'a>(
    r: &'a mut Replicated,
    group: &str,
    topic: &str,
) -> Result<(&'a [Bounds], &'a mut Vec<QueueProgress>), ApplyError> {
    let bounds = r
        .queues
        .get(topic)
        .ok_or_else(|| ApplyError::TopicNotFound {
            topic: topic.to_string(),
        })?;
    let progress = r
        .groups
        .entry(group.to_string())
        .or_default()
        .entry(topic.to_string())
        .or_default();
    if progress.len() < bounds.len() {
        progress.resize(bounds.len(), QueueProgress::default());
    }
    Ok((bounds, progress))
}

/// A queue offset or count as a vector index: it indexes a `Vec`, so it fits.
fn ix(v: u64) -> usize {
    usize::try_from(v).expect("queue offsets index in-memory vectors")
}

fn tag_hashes(tags: &[String]) -> Vec<u64> {
    tags.iter().map(|t| name_hash(t)).collect()
}

fn tags_match(tags: &[u64], u: &Unit) -> bool {
    tags.is_empty() || (u.tag_hash != 0 && tags.contains(&u.tag_hash))
}

/// Due, and (for a FIFO group) no earlier message of the same group still open in this queue.
fn deliverable(p: &QueueProgress, offset: u64, u: &Unit, now_ms: u64) -> bool {
    if u.delivery_ms > now_ms {
        return false;
    }
    if u.group_hash == 0 {
        return true;
    }
    let earlier_same_group = |o: u64, other: &Unit| o < offset && other.group_hash == u.group_hash;
    !p.inflight
        .iter()
        .any(|(&o, f)| earlier_same_group(o, &f.unit))
        && !p.deferred.iter().any(|(&o, d)| earlier_same_group(o, d))
}

/// Adds the index records of one message: its unique key and each of its keys. Returns how
/// many.
/// The property a 4.x producer names its group with (RocketMQ's `PGROUP`).
pub const PROPERTY_PRODUCER_GROUP: &str = "PGROUP";

fn index_message(
    index: &mut MessageIndex,
    m: &StoredMessage,
    unit: &Unit,
    queue: u32,
    offset: u64,
) -> u64 {
    let record = |hash| Record {
        hash,
        index: unit.index,
        pos: unit.pos,
        len: unit.len,
        queue,
        offset,
    };
    let mut n = 0;
    if !m.message_id.is_empty() {
        index.add(record(key_hash(
            KeyKind::UniqueKey,
            &m.topic,
            &m.message_id,
        )));
        n += 1;
    }
    for key in m.keys.iter().filter(|k| !k.is_empty()) {
        index.add(record(key_hash(KeyKind::Key, &m.topic, key)));
        n += 1;
    }
    n
}

/// Moves a group that is behind `min` up to it: what was below is gone (never delivered, in
/// flight or held back alike).
fn skip_to(p: &mut QueueProgress, min: u64) {
    if p.next >= min && p.acked_below >= min {
        return;
    }
    p.next = p.next.max(min);
    p.acked_below = p.acked_below.max(min);
    p.done.retain(|&o| o >= min);
    p.deferred.retain(|&o, _| o >= min);
    p.inflight.retain(|&o, _| o >= min);
    while p.done.remove(&p.acked_below) {
        p.acked_below += 1;
    }
}

/// The first offset in `b` whose unit belongs to an entry after `upto`. Units of a queue are
/// in log order (a dead-letter queue's copies may not be; there it stops at the first later
/// one, which only keeps some purged units readable as missing).
fn first_after(
    cq: &ConsumeQueues,
    topic: &str,
    queue: u32,
    b: Bounds,
    upto: u64,
) -> Result<u64, StateError> {
    let (mut lo, mut hi) = (b.min, b.next);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let gone = cq.get(topic, queue, mid)?.is_none_or(|u| u.index <= upto);
        if gone {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

fn mark_done(p: &mut QueueProgress, offset: u64) {
    p.done.insert(offset);
    while p.done.remove(&p.acked_below) {
        p.acked_below += 1;
    }
}

/// What a snapshot holds, section by section.
struct SnapshotParts {
    r: Replicated,
    tx: Transactions,
    subscriptions: SubscriptionGroups,
}

/// The replicated part, then the open transactions, then the subscription groups. A section
/// later versions added is absent from older snapshots and reads as empty: none open, no
/// groups.
fn decode_snapshot(data: &[u8]) -> Result<SnapshotParts, StateError> {
    let bad = |why: String| StateError::Snapshot { why };
    let body = data.strip_prefix(SNAPSHOT_MAGIC).ok_or_else(|| {
        bad(match data.first() {
            Some(b'{') => "format 1 (JSON, RaftMQ before store v2) is not readable by this \
                           version"
                .into(),
            _ => "unknown format (no RMQ2 magic)".into(),
        })
    })?;
    let (r, rest) = postcard::take_from_bytes(body).map_err(|e| bad(e.to_string()))?;
    let (tx, rest) = optional_section(rest, "open transactions")?;
    let (subscriptions, rest) = optional_section(rest, "subscription groups")?;
    if !rest.is_empty() {
        return Err(bad(format!(
            "{} bytes after the last section this version knows",
            rest.len()
        )));
    }
    Ok(SnapshotParts {
        r,
        tx,
        subscriptions,
    })
}

/// One snapshot section after the first, or its empty value when the snapshot ends before it.
fn optional_section<'a, T: Default + Deserialize<'a>>(
    data: &'a [u8],
    what: &str,
) -> Result<(T, &'a [u8]), StateError> {
    if data.is_empty() {
        return Ok((T::default(), data));
    }
    postcard::take_from_bytes(data).map_err(|e| StateError::Snapshot {
        why: format!("{what}: {e}"),
    })
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
mod model;

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
            queue: None,
        }
    }

    struct Harness {
        state: BrokerState,
        index: u64,
    }

    impl Harness {
        fn new() -> Harness {
            Harness {
                state: BrokerState::new(
                    StateConfig {
                        auto_create_topic_enable: true,
                        default_topic_queue_nums: 4,
                    },
                    ConsumeQueues::in_memory(),
                ),
                index: 0,
            }
        }
        fn apply(&mut self, c: Command) -> ApplyResult {
            self.index += 1;
            self.state
                .apply(self.index, &c)
                .unwrap()
                .expect("fresh index")
        }
        fn send(&mut self, now: u64, ms: Vec<StoredMessage>) -> Vec<(u32, u64)> {
            match self.apply(Command::Send {
                now_ms: now,
                messages: ms,
            }) {
                ApplyResult::Sent(r) => r
                    .into_iter()
                    .map(|p| {
                        let p = p.unwrap();
                        (p.queue, p.offset)
                    })
                    .collect(),
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

    fn half(id: &str) -> StoredMessage {
        StoredMessage {
            message_id: id.into(),
            message_type: MessageType::Transaction,
            properties: vec![PROPERTY_PRODUCER_GROUP.into(), "pg".into()],
            ..msg("t", None, None, 0)
        }
    }

    fn end(
        h: &mut Harness,
        id: &str,
        message: Option<StoredMessage>,
    ) -> Result<Option<Placed>, ApplyError> {
        match h.apply(Command::EndTransaction {
            now_ms: 9,
            transaction_id: id.into(),
            message,
        }) {
            ApplyResult::Ended(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_half_message_waits_for_its_commit_and_a_rollback_drops_it() {
        let mut h = Harness::new();
        h.apply(Command::UpdateTopic {
            topic: "t".into(),
            queues: 4,
        });
        h.send(1, vec![half("a"), half("b")]);
        assert!(
            h.receive(10, "g", 32, 1000).is_empty(),
            "half messages are not delivered"
        );
        let open = h.state.transactions();
        assert_eq!(open.len(), 2);
        assert_eq!(
            open.get("a").and_then(|x| x.producer_group.as_deref()),
            Some("pg")
        );
        let placed = end(&mut h, "a", Some(half("a")))
            .unwrap()
            .expect("committed");
        assert_eq!(
            placed.index, h.index,
            "the committed record is in the EndTransaction entry"
        );
        assert_eq!(placed.pos, SEND_HEADER_LEN);
        assert_eq!(end(&mut h, "b", None), Ok(None), "rolled back");
        let got = h.receive(20, "g", 32, 1000);
        assert_eq!(got.len(), 1, "only the committed one is delivered");
        assert!(matches!(
            end(&mut h, "a", Some(half("a"))),
            Err(ApplyError::TransactionNotFound { .. })
        ));
        assert!(h.state.transactions().is_empty());
    }

    #[test]
    fn check_rounds_count_on_every_replica_and_survive_a_snapshot() {
        let mut h = Harness::new();
        h.send(1_000, vec![half("a")]);
        let round = |h: &mut Harness, now| match h.apply(Command::CheckTransactions {
            now_ms: now,
            policy: CheckPolicy {
                max_checks: 1,
                ..CheckPolicy::default()
            },
        }) {
            ApplyResult::Checked(r) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(round(&mut h, 7_000).checked, 1);
        let snapshot = h.state.snapshot();
        let (restored, _) = BrokerState::restore(&snapshot, ConsumeQueues::in_memory()).unwrap();
        assert_eq!(restored.transactions(), h.state.transactions());
        assert_eq!(restored.transactions().get("a").map(|x| x.checks), Some(1));
        assert_eq!(round(&mut h, 37_000).dropped, vec!["a".to_string()]);
        assert!(h.state.transactions().is_empty());
    }

    #[test]
    fn a_snapshot_without_transactions_reads_as_none_open() {
        let mut h = Harness::new();
        h.send(1, vec![msg("t", None, None, 0)]);
        let mut old = SNAPSHOT_MAGIC.to_vec();
        old.extend(postcard::to_stdvec(&h.state.r).unwrap());
        let (restored, _) = BrokerState::restore(&old, ConsumeQueues::in_memory()).unwrap();
        assert!(restored.transactions().is_empty());
        assert_eq!(restored.r, h.state.r);
    }

    fn group_change(h: &mut Harness, c: Command) -> Result<SubscriptionGroup, ApplyError> {
        match h.apply(c) {
            ApplyResult::SubscriptionGroupChanged(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn update_group(group: SubscriptionGroup, create_only: bool) -> Command {
        Command::UpdateSubscriptionGroup { group, create_only }
    }

    #[test]
    fn subscription_groups_are_created_replaced_and_deleted_by_commands() {
        let mut h = Harness::new();
        let set = SubscriptionGroup {
            retry_max_times: 1,
            consume_enable: false,
            ..SubscriptionGroup::new("g", 16)
        };
        assert_eq!(
            group_change(&mut h, update_group(set.clone(), false)),
            Ok(set.clone())
        );
        let auto = SubscriptionGroup::new("g", 16);
        assert_eq!(
            group_change(&mut h, update_group(auto.clone(), true)),
            Ok(set.clone()),
            "an auto-create that lost the race leaves the operator's record"
        );
        assert_eq!(h.state.subscription_groups().get("g"), Some(&set));
        let bad = SubscriptionGroup {
            retry_queue_nums: 5000,
            ..auto.clone()
        };
        assert!(matches!(
            group_change(&mut h, update_group(bad, false)),
            Err(ApplyError::InvalidSubscriptionGroup { .. })
        ));
        assert_eq!(
            h.state.subscription_groups().get("g"),
            Some(&set),
            "unchanged"
        );
        h.send(1, vec![msg("t", None, None, 0)]);
        h.receive(10, "g", 32, 1000);
        let delete = |clean_offset| Command::DeleteSubscriptionGroup {
            group: "g".into(),
            clean_offset,
        };
        assert_eq!(group_change(&mut h, delete(false)), Ok(set));
        assert!(h.state.group_progress("g", "t").is_some(), "offsets kept");
        assert_eq!(
            group_change(&mut h, delete(false)),
            Err(ApplyError::SubscriptionGroupNotFound { group: "g".into() })
        );
        group_change(&mut h, update_group(auto, false)).unwrap();
        group_change(&mut h, delete(true)).unwrap();
        assert_eq!(
            h.state.group_progress("g", "t"),
            None,
            "cleanOffset forgets them"
        );
        assert!(h.state.subscription_groups().is_empty());
    }

    #[test]
    fn subscription_groups_survive_a_snapshot_and_replicas_agree_on_them() {
        let mut h = Harness::new();
        let g = SubscriptionGroup {
            consume_message_orderly: true,
            retry_max_times: 2,
            ..SubscriptionGroup::new("orderly", 16)
        };
        group_change(&mut h, update_group(g.clone(), false)).unwrap();
        group_change(
            &mut h,
            update_group(SubscriptionGroup::new("plain", 16), true),
        )
        .unwrap();
        let version = h.state.subscription_groups().version();
        let (restored, _) =
            BrokerState::restore(&h.state.snapshot(), ConsumeQueues::in_memory()).unwrap();
        assert_eq!(
            restored.subscription_groups(),
            h.state.subscription_groups()
        );
        assert_eq!(restored.subscription_groups().get("orderly"), Some(&g));
        assert_eq!(restored.subscription_groups().version(), version);
        assert_eq!(restored, h.state);
        let mut other = BrokerState::new(h.state.config().clone(), ConsumeQueues::in_memory());
        other.install(&h.state.snapshot()).unwrap();
        assert_eq!(other.subscription_groups().len(), 2);
    }

    #[test]
    fn a_snapshot_without_subscription_groups_reads_as_none() {
        let mut h = Harness::new();
        h.send(1_000, vec![half("a")]);
        group_change(&mut h, update_group(SubscriptionGroup::new("g", 16), false)).unwrap();
        // As the version before subscription groups wrote it: the state, then transactions.
        let mut old = SNAPSHOT_MAGIC.to_vec();
        old.extend(postcard::to_stdvec(&h.state.r).unwrap());
        old.extend(postcard::to_stdvec(&h.state.tx).unwrap());
        let (restored, _) = BrokerState::restore(&old, ConsumeQueues::in_memory()).unwrap();
        assert!(restored.subscription_groups().is_empty());
        assert_eq!(restored.transactions(), h.state.transactions());
        assert_eq!(restored.r, h.state.r);
        let mut newer = h.state.snapshot();
        newer.push(0);
        assert!(
            matches!(
                BrokerState::restore(&newer, ConsumeQueues::in_memory()),
                Err(StateError::Snapshot { .. })
            ),
            "a section this version does not know is refused, not dropped"
        );
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
    fn a_recalled_delay_message_is_never_handed_out_and_its_queue_goes_on() {
        let mut h = Harness::new();
        h.apply(Command::UpdateTopic {
            topic: "t".into(),
            queues: 1,
        });
        h.send(
            1,
            vec![
                msg("t", None, None, 1000),
                msg("t", None, None, 1000),
                msg("t", None, None, 0),
            ],
        );
        // Group g examined the first two already (held back); group late has not.
        assert_eq!(h.receive(10, "g", 32, 100_000).len(), 1);
        let unit = |h: &Harness, offset| h.state.cq.get("t", 0, offset).unwrap().unwrap();
        let first = unit(&h, 0);
        let recall = |now_ms, offset, u: Unit| {
            Command::Recall(Recall {
                now_ms,
                topic: "t".into(),
                queue: 0,
                offset,
                index: u.index,
                pos: u.pos,
                delivery_ms: u.delivery_ms,
            })
        };
        assert_eq!(h.apply(recall(20, 0, first)), ApplyResult::Recalled(Ok(())));
        assert!(unit(&h, 0).is_recalled());
        let refused = |why| {
            ApplyResult::Recalled(Err(ApplyError::NotRecallable {
                topic: "t".into(),
                queue: 0,
                offset: 1,
                why,
            }))
        };
        let second = unit(&h, 1);
        assert_eq!(
            h.apply(recall(1000, 1, second)),
            refused("it is due already")
        );
        let gone = Command::Recall(Recall {
            offset: 3,
            ..match recall(20, 1, second) {
                Command::Recall(r) => r,
                _ => unreachable!(),
            }
        });
        assert!(matches!(
            h.apply(gone),
            ApplyResult::Recalled(Err(ApplyError::NotRecallable { offset: 3, .. }))
        ));
        for group in ["g", "late"] {
            let due: Vec<u64> = h
                .receive(2000, group, 32, 100_000)
                .iter()
                .map(|d| d.offset)
                .collect();
            let want = if group == "g" { vec![1] } else { vec![1, 2] };
            assert_eq!(due, want, "{group}: only what was not recalled");
        }
        // The recalled offset counts as done: g's ack floor moves past it.
        let progress = h.state.group_progress("g", "t").unwrap();
        assert_eq!(progress[0].0, 1, "g's floor is past the recalled offset 0");
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
        let mut s = BrokerState::new(
            StateConfig {
                auto_create_topic_enable: false,
                default_topic_queue_nums: 4,
            },
            ConsumeQueues::in_memory(),
        );
        let r = s.apply(
            1,
            &Command::Send {
                now_ms: 1,
                messages: vec![msg("nope", None, None, 0)],
            },
        );
        assert_eq!(
            r.unwrap(),
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
        let mut s = BrokerState::new(
            StateConfig {
                auto_create_topic_enable: true,
                default_topic_queue_nums: 0,
            },
            ConsumeQueues::in_memory(),
        );
        let r = s.apply(
            1,
            &Command::Send {
                now_ms: 1,
                messages: vec![msg("new", None, None, 0)],
            },
        );
        assert_eq!(
            r.unwrap(),
            Some(ApplyResult::Sent(vec![Err(ApplyError::QueueCount {
                queues: 0
            })]))
        );
        assert!(s.topics().is_empty());
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
        let config = StateConfig {
            auto_create_topic_enable: true,
            default_topic_queue_nums: 4,
        };
        let mut a = BrokerState::new(config.clone(), ConsumeQueues::in_memory());
        let mut b = BrokerState::new(config, ConsumeQueues::in_memory());
        for (i, c) in cmds.iter().enumerate() {
            a.apply(i as u64 + 1, c).unwrap();
            b.apply(i as u64 + 1, c).unwrap();
            assert_eq!(
                b.apply(i as u64 + 1, c).unwrap(),
                None,
                "re-applying an index is a no-op"
            );
        }
        assert_eq!(a, b);
    }

    #[test]
    fn a_snapshot_restores_over_the_replicas_own_queues_and_applying_goes_on_alike() {
        let mut h = Harness::new();
        h.send(1, (0..20).map(|_| msg("t", Some("a"), None, 0)).collect());
        let got = h.receive(10, "g", 5, 1000);
        h.ack("g", &got[0].handle).unwrap();
        let snap = h.state.snapshot();
        assert!(
            snap.len() < 1024,
            "no per-message data: {} bytes",
            snap.len()
        );
        // The replica restoring it has the same units (it applied the same entries).
        let mut cq = ConsumeQueues::in_memory();
        for (q, b) in h.state.queue_bounds("t").unwrap().iter().enumerate() {
            let q = u32::try_from(q).unwrap();
            let units = h.state.cq.read("t", q, 0, 100).unwrap();
            cq.write("t", q, 0, &units).unwrap();
            assert_eq!(units.len() as u64, b.next);
        }
        let (restored, holes) = BrokerState::restore(&snap, cq).unwrap();
        assert_eq!(holes, 0);
        assert_eq!(restored, h.state);
        let mut other = Harness {
            state: restored,
            index: h.index,
        };
        assert_eq!(
            other.receive(2000, "g", 32, 1000),
            h.receive(2000, "g", 32, 1000),
            "the same next receive on both"
        );
        assert!(matches!(
            BrokerState::restore(b"{\"config\":1}", ConsumeQueues::in_memory()),
            Err(StateError::Snapshot { .. })
        ));
    }

    #[test]
    fn a_replica_without_the_units_gets_holes_and_skips_them() {
        let mut h = Harness::new();
        h.apply(Command::UpdateTopic {
            topic: "t".into(),
            queues: 1,
        });
        h.send(1, (0..4).map(|_| msg("t", None, None, 0)).collect());
        let (mut restored, holes) =
            BrokerState::restore(&h.state.snapshot(), ConsumeQueues::in_memory()).unwrap();
        assert_eq!(holes, 4);
        let r = restored
            .apply(
                h.index + 1,
                &Command::Receive(Receive {
                    now_ms: 5,
                    group: "g".into(),
                    topic: "t".into(),
                    tags: vec![],
                    batch: 32,
                    invisible_ms: 100,
                    max_attempts: 3,
                }),
            )
            .unwrap();
        assert_eq!(r, Some(ApplyResult::Received(Ok(vec![]))));
        assert_eq!(restored.group_progress("g", "t"), Some(vec![(4, 4, 0)]));
    }

    #[test]
    fn a_trim_moves_queues_and_consumers_past_purged_entries_with_messages_in_flight() {
        let mut h = Harness::new();
        h.apply(Command::UpdateTopic {
            topic: "t".into(),
            queues: 1,
        });
        h.send(1, (0..4).map(|_| msg("t", None, None, 0)).collect());
        let purged_entry = h.index;
        let out = h.receive(10, "g", 2, 1000);
        h.send(2, (0..3).map(|_| msg("t", None, None, 0)).collect());
        let r = h.apply(Command::Trim { upto: purged_entry });
        assert_eq!(r, ApplyResult::Trimmed(4));
        assert_eq!(
            h.state.queue_bounds("t").unwrap()[0],
            Bounds { min: 4, next: 7 }
        );
        assert_eq!(
            h.state.group_progress("g", "t"),
            Some(vec![(4, 4, 0)]),
            "in-flight messages of the purged entry are gone; the offset moved up"
        );
        assert!(
            h.ack("g", &out[0].handle).is_err(),
            "their handles are dead"
        );
        let rest = h.receive(20, "g", 32, 1000);
        assert_eq!(
            rest.iter().map(|d| d.offset).collect::<Vec<_>>(),
            vec![4, 5, 6]
        );
        assert_eq!(
            h.apply(Command::Trim { upto: purged_entry }),
            ApplyResult::Trimmed(0)
        );
        let fresh = h.receive(30, "new-group", 32, 1000);
        assert_eq!(fresh.len(), 3, "a new group starts at the min offset");
    }

    #[test]
    fn in_flight_messages_of_a_queue_are_capped() {
        let mut h = Harness::new();
        h.apply(Command::UpdateTopic {
            topic: "t".into(),
            queues: 1,
        });
        let n = POP_INFLIGHT_MAX + 10;
        h.send(1, (0..n).map(|_| msg("t", None, None, 0)).collect());
        let mut out = Vec::new();
        for round in 0..(n / 1000 + 2) {
            out.extend(h.receive(10 + round as u64, "g", 1000, 1_000_000));
        }
        assert_eq!(
            out.len(),
            POP_INFLIGHT_MAX,
            "no more than the cap in flight"
        );
        assert_eq!(
            h.state.group_progress("g", "t").unwrap()[0].2,
            POP_INFLIGHT_MAX
        );
        // An ack makes room for one new message.
        h.ack("g", &out[0].handle).unwrap();
        let more = h.receive(100, "g", 1000, 1_000_000);
        assert_eq!(more.len(), 1);
        assert_eq!(more[0].offset, POP_INFLIGHT_MAX as u64);
        // At the cap, expired messages are still redelivered.
        let again = h.receive(2_000_000, "g", 5, 1_000_000);
        assert_eq!(again.len(), 5);
        assert!(again.iter().all(|d| d.attempt == 2));
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
