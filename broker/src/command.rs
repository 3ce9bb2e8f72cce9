//! Commands: what the broker writes into the raft-log, one command per entry.
//!
//! Everything that changes broker state is a command, applied in log order on every replica by
//! [`crate::state::BrokerState`]: sends, receives (which make messages invisible), acks,
//! invisibility changes, topic and subscription group changes. A command carries the
//! proposer's clock reading (`now_ms`) so that applying it is deterministic everywhere.

use bytes::Bytes;

use crate::codec::{DecodeError, Reader, Writer};

mod subscription_group;

pub use subscription_group::{
    DELAY_LEVELS_MS, GroupRetryPolicy, InvalidGroupField, RETRY_MAX_TIMES_DEFAULT,
    RETRY_MAX_TIMES_MAX, RETRY_POLICY_STEPS_MAX, RETRY_QUEUE_NUMS_DEFAULT, RETRY_QUEUE_NUMS_MAX,
    SubscriptionGroup,
};

/// Format version of the record, first byte of every entry.
const VERSION: u8 = 1;

/// RocketMQ's message types, as the client declares them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MessageType {
    /// Plain message.
    Normal,
    /// Ordered within its message group.
    Fifo,
    /// Delivered at `delivery_ms`.
    Delay,
    /// Transactional (not supported yet).
    Transaction,
}

impl MessageType {
    fn code(self) -> u8 {
        match self {
            MessageType::Normal => 1,
            MessageType::Fifo => 2,
            MessageType::Delay => 3,
            MessageType::Transaction => 4,
        }
    }
    fn from_code(c: u8) -> Result<Self, DecodeError> {
        Ok(match c {
            1 => MessageType::Normal,
            2 => MessageType::Fifo,
            3 => MessageType::Delay,
            4 => MessageType::Transaction,
            _ => return Err(DecodeError::MessageType { code: c }),
        })
    }
}

/// A message as stored: everything the consumer gets back, except what the store assigns
/// (queue, offset, store time), which lives in the consume queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    /// Topic name.
    pub topic: String,
    /// The client-generated message id (echoed back).
    pub message_id: String,
    /// How the client declared it.
    pub message_type: MessageType,
    /// Tag, for filtering.
    pub tag: Option<String>,
    /// Keys, for lookups.
    pub keys: Vec<String>,
    /// FIFO group.
    pub message_group: Option<String>,
    /// When a delay message becomes deliverable (ms since the epoch; 0 = now).
    pub delivery_ms: u64,
    /// Client's send time (ms since the epoch).
    pub born_ms: u64,
    /// Client host.
    pub born_host: String,
    /// User properties as `key, value, key, value …`.
    pub properties: Vec<String>,
    /// The body.
    pub body: Bytes,
    /// The queue the producer chose (a 4.x producer's queue selector); `None` = the broker
    /// places it. Carried in the Send entry's trailer, not in the message record.
    pub queue: Option<u32>,
}

impl Receive {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.now_ms)
            .str(&self.group)
            .str(&self.topic)
            .strs(&self.tags)
            .u32(self.batch)
            .u64(self.invisible_ms)
            .u32(self.max_attempts);
    }

    fn decode(r: &mut Reader) -> Result<Receive, DecodeError> {
        Ok(Receive {
            now_ms: r.u64()?,
            group: r.str()?,
            topic: r.str()?,
            tags: r.strs()?,
            batch: r.u32()?,
            invisible_ms: r.u64()?,
            max_attempts: r.u32()?,
        })
    }
}

/// A Send: the records, then, when any message carries the producer's queue choice, one u32
/// per message ([`SEND_TO_QUEUES`]).
fn encode_send(w: &mut Writer, now_ms: u64, messages: &[StoredMessage]) {
    let queued = messages.iter().any(|m| m.queue.is_some());
    w.u8(if queued { SEND_TO_QUEUES } else { SEND })
        .u64(now_ms)
        .count(messages.len());
    for m in messages {
        m.encode(w);
    }
    if queued {
        for m in messages {
            w.u32(m.queue.unwrap_or(NO_QUEUE));
        }
    }
}

fn decode_send(r: &mut Reader, queued: bool) -> Result<Command, DecodeError> {
    let now_ms = r.u64()?;
    let n = r.u32()? as usize;
    let mut messages = Vec::with_capacity(n.min(4096));
    for _ in 0..n {
        messages.push(StoredMessage::decode(r)?);
    }
    if queued {
        for m in &mut messages {
            m.queue = Some(r.u32()?).filter(|&q| q != NO_QUEUE);
        }
    }
    Ok(Command::Send { now_ms, messages })
}

/// An EndTransaction: laid out as a Send of zero or one message (so the record of a commit is
/// where a Send's first record is), then the transaction id.
fn encode_end_transaction(
    w: &mut Writer,
    now_ms: u64,
    transaction_id: &str,
    message: Option<&StoredMessage>,
) {
    w.u8(END_TRANSACTION)
        .u64(now_ms)
        .count(usize::from(message.is_some()));
    if let Some(m) = message {
        m.encode(w);
    }
    w.str(transaction_id);
}

fn decode_end_transaction(r: &mut Reader) -> Result<Command, DecodeError> {
    let now_ms = r.u64()?;
    let message = match r.u32()? {
        0 => None,
        1 => Some(StoredMessage::decode(r)?),
        count => {
            return Err(DecodeError::ListTooLong {
                count: count as usize,
            });
        }
    };
    Ok(Command::EndTransaction {
        now_ms,
        transaction_id: r.str()?,
        message,
    })
}

fn decode_batch(r: &mut Reader) -> Result<Command, DecodeError> {
    let n = r.u32()? as usize;
    // Each command takes at least its kind byte: bound the allocation by the input.
    let mut commands = Vec::with_capacity(n.min(r.remaining()));
    for _ in 0..n {
        commands.push(Command::decode_from(r, false)?);
    }
    Ok(Command::Batch(commands))
}

#[cfg(test)]
impl StoredMessage {
    /// A plain message for tests: normal, no tag, keys or group, body `x`.
    pub(crate) fn sample(topic: &str, message_id: &str) -> StoredMessage {
        StoredMessage {
            topic: topic.into(),
            message_id: message_id.into(),
            message_type: MessageType::Normal,
            tag: None,
            keys: vec![],
            message_group: None,
            delivery_ms: 0,
            born_ms: 0,
            born_host: "h".into(),
            properties: vec![],
            body: Bytes::from_static(b"x"),
            queue: None,
        }
    }
}

/// Bytes before the first message record of a Send entry: version, kind, `now_ms`, count.
pub const SEND_HEADER_LEN: u32 = 1 + 1 + 8 + 4;

impl StoredMessage {
    fn encode(&self, w: &mut Writer) {
        w.str(&self.topic)
            .str(&self.message_id)
            .u8(self.message_type.code())
            .opt_str(self.tag.as_deref())
            .strs(&self.keys)
            .opt_str(self.message_group.as_deref())
            .u64(self.delivery_ms)
            .u64(self.born_ms)
            .str(&self.born_host)
            .strs(&self.properties)
            .bytes(&self.body);
    }

    fn decode(r: &mut Reader) -> Result<StoredMessage, DecodeError> {
        Ok(StoredMessage {
            topic: r.str()?,
            message_id: r.str()?,
            message_type: MessageType::from_code(r.u8()?)?,
            tag: r.opt_str()?,
            keys: r.strs()?,
            message_group: r.opt_str()?,
            delivery_ms: r.u64()?,
            born_ms: r.u64()?,
            born_host: r.str()?,
            properties: r.strs()?,
            body: r.bytes()?,
            queue: None,
        })
    }

    /// The value of property `key`, if the message has it.
    pub fn property(&self, key: &str) -> Option<&str> {
        self.property_pairs()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// The user properties as (key, value) pairs, in the order stored.
    pub fn property_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.properties
            .chunks_exact(2)
            .map(|kv| (kv[0].as_str(), kv[1].as_str()))
    }

    /// The length of this message's record in a Send entry (what [`StoredMessage::encode`]
    /// writes), so the store can point at a record without encoding it again.
    pub fn encoded_len(&self) -> usize {
        let s = |v: &str| 4 + v.len();
        let opt = |v: &Option<String>| 1 + v.as_deref().map_or(0, s);
        let list = |v: &[String]| 4 + v.iter().map(|x| s(x)).sum::<usize>();
        s(&self.topic)
            + s(&self.message_id)
            + 1
            + opt(&self.tag)
            + list(&self.keys)
            + opt(&self.message_group)
            + 8
            + 8
            + s(&self.born_host)
            + list(&self.properties)
            + 4
            + self.body.len()
    }

    /// Decodes the one message whose record is at `pos..pos + len` of a Send entry, without
    /// decoding the others; returns it with the entry's store time (`now_ms`). The body shares
    /// `entry`.
    ///
    /// # Errors
    /// The entry is no Send entry of this version, or the record is not there.
    pub fn decode_at(
        entry: &Bytes,
        pos: u32,
        len: u32,
    ) -> Result<(StoredMessage, u64), DecodeError> {
        Self::decode_record(entry, pos, Some(len))
    }

    /// As [`StoredMessage::decode_at`] for a record whose length is not known (a lookup by
    /// offset message id, which names only the position).
    ///
    /// # Errors
    /// As [`StoredMessage::decode_at`].
    pub fn decode_starting_at(
        entry: &Bytes,
        pos: u32,
    ) -> Result<(StoredMessage, u64), DecodeError> {
        Self::decode_record(entry, pos, None)
    }

    fn decode_record(
        entry: &Bytes,
        pos: u32,
        len: Option<u32>,
    ) -> Result<(StoredMessage, u64), DecodeError> {
        let mut head = Reader::new(entry.slice(..entry.len().min(SEND_HEADER_LEN as usize)));
        let version = head.u8()?;
        if version != VERSION {
            return Err(DecodeError::Version { version });
        }
        let kind = head.u8()?;
        if kind != SEND && kind != SEND_TO_QUEUES && kind != END_TRANSACTION {
            return Err(DecodeError::CommandKind { kind });
        }
        let store_ms = head.u64()?;
        let start = pos as usize;
        let end = len.map_or(entry.len(), |len| start + len as usize);
        if end > entry.len() || start < SEND_HEADER_LEN as usize {
            return Err(DecodeError::Truncated {
                what: "message record",
                need: end,
                have: entry.len(),
            });
        }
        let mut r = Reader::new(entry.slice(start..end));
        let message = StoredMessage::decode(&mut r)?;
        if len.is_some() {
            r.done()?;
        }
        Ok((message, store_ms))
    }
}

/// A log command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Store messages (one producer request).
    Send {
        /// Proposer's clock: the store timestamp.
        now_ms: u64,
        /// The messages, in order.
        messages: Vec<StoredMessage>,
    },
    /// Create or update a topic.
    UpdateTopic {
        /// Topic name.
        topic: String,
        /// Number of queues.
        queues: u32,
    },
    /// Delete a topic.
    DeleteTopic {
        /// Topic name.
        topic: String,
    },
    /// Hand out messages to a consumer group.
    Receive(Receive),
    /// Acknowledge messages by receipt handle.
    Ack {
        /// Consumer group.
        group: String,
        /// Topic.
        topic: String,
        /// Receipt handles.
        handles: Vec<String>,
    },
    /// Change a message's invisible time; returns a new handle.
    ChangeInvisible {
        /// Proposer's clock.
        now_ms: u64,
        /// Consumer group.
        group: String,
        /// Topic.
        topic: String,
        /// Current receipt handle.
        handle: String,
        /// New invisible time from now.
        invisible_ms: u64,
    },
    /// Move a message to the group's dead-letter queue now.
    ForwardToDeadLetter {
        /// Consumer group.
        group: String,
        /// Topic.
        topic: String,
        /// Receipt handle.
        handle: String,
    },
    /// Retention deleted the log up to `upto`: every queue's min offset moves past the
    /// messages that were there, and consumers behind it skip ahead (RocketMQ's
    /// `correctMinOffset`). Proposed by the leader after its own log was purged.
    Trim {
        /// The last purged index.
        upto: u64,
    },
    /// Moves a group's consumer offset in each queue of a topic (RocketMQ's
    /// `resetOffsetByTime`): everything from the new offset on is delivered again, what was in
    /// flight is forgotten.
    ResetOffset {
        /// Consumer group.
        group: String,
        /// Topic.
        topic: String,
        /// The new offset of each queue, by queue id.
        offsets: Vec<u64>,
    },
    /// Sets a group's consumer offset in one queue (RocketMQ 4.x UPDATE_CONSUMER_OFFSET, or a
    /// pull that carries its commit offset).
    CommitOffset {
        /// Consumer group.
        group: String,
        /// Topic.
        topic: String,
        /// Queue id.
        queue: u32,
        /// The offset of the next message the group wants.
        offset: u64,
    },
    /// Changes nothing: once it is applied on the proposing node, that node's state holds
    /// everything committed before it (a linearizable read, for a 4.x consumer's offset
    /// query on a node that may lag or be a stale leader).
    Barrier,
    /// Resolves a half (transactional) message: a commit stores `message`, the half message's
    /// record as the proposer read it, as a normal message of its topic; a rollback drops it.
    /// Either way the half message is gone. The record sits where a Send's first record sits,
    /// so a consume-queue unit points into this entry as into a Send.
    EndTransaction {
        /// Proposer's clock: the store timestamp of a committed message.
        now_ms: u64,
        /// The half message's transaction id.
        transaction_id: String,
        /// The message to store on a commit; `None` rolls back.
        message: Option<StoredMessage>,
    },
    /// A check round of the open transactions (RocketMQ's transactional check service),
    /// proposed by the leader with its settings so that every replica decides alike (see
    /// [`CheckPolicy`]); every node then asks its own producers about the ones counted.
    CheckTransactions {
        /// Proposer's clock.
        now_ms: u64,
        /// The proposer's broker.conf settings.
        policy: CheckPolicy,
    },
    /// Consumer commands of concurrent requests in one entry (group commit of receives, acks,
    /// invisibility changes and dead-letter moves), applied in order; never nested.
    Batch(Vec<Command>),
    /// Cancels a delay message that is not due yet (5.x RecallMessage).
    Recall(Recall),
    /// Creates or replaces a subscription group's config (RocketMQ's
    /// UPDATE_AND_CREATE_SUBSCRIPTIONGROUP); with `create_only`, only when the group has none
    /// yet (the auto-create of a group on first use, which must not undo an operator's update
    /// that committed first).
    UpdateSubscriptionGroup {
        /// The whole record.
        group: SubscriptionGroup,
        /// Leave an existing record as it is.
        create_only: bool,
    },
    /// Deletes a subscription group's config (RocketMQ's DELETE_SUBSCRIPTIONGROUP); with
    /// `clean_offset`, also the group's progress on every topic.
    DeleteSubscriptionGroup {
        /// The group name.
        group: String,
        /// Forget the group's consumer offsets too (RocketMQ's `cleanOffset`).
        clean_offset: bool,
    },
}

/// When open transactions are checked back, in broker.conf's names and defaults: a half
/// message is first checked once it is `timeout_ms` old, then every `interval_ms`, and dropped
/// (rolled back) once it was checked `max_checks` times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckPolicy {
    /// `transactionTimeOut` (ms).
    pub timeout_ms: u64,
    /// `transactionCheckInterval` (ms).
    pub interval_ms: u64,
    /// `transactionCheckMax`.
    pub max_checks: u32,
}

impl Default for CheckPolicy {
    fn default() -> Self {
        CheckPolicy {
            timeout_ms: 6_000,
            interval_ms: 30_000,
            max_checks: 15,
        }
    }
}

/// Cancels the delay message at (topic, queue, offset), which the proposer read there: its
/// record at (`index`, `pos`), due at `delivery_ms`. Every replica decides from these fields
/// and the proposer's clock alone: a message already due at `now_ms` is not recalled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recall {
    /// Proposer's clock.
    pub now_ms: u64,
    /// Topic.
    pub topic: String,
    /// Queue id.
    pub queue: u32,
    /// Queue offset.
    pub offset: u64,
    /// Log index of the message's entry.
    pub index: u64,
    /// Position of its record in the entry.
    pub pos: u32,
    /// When it is due (ms since the epoch).
    pub delivery_ms: u64,
}

impl Recall {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.now_ms)
            .str(&self.topic)
            .u32(self.queue)
            .u64(self.offset)
            .u64(self.index)
            .u32(self.pos)
            .u64(self.delivery_ms);
    }

    fn decode(r: &mut Reader) -> Result<Recall, DecodeError> {
        Ok(Recall {
            now_ms: r.u64()?,
            topic: r.str()?,
            queue: r.u32()?,
            offset: r.u64()?,
            index: r.u64()?,
            pos: r.u32()?,
            delivery_ms: r.u64()?,
        })
    }
}

/// Hand out up to `batch` messages to `group`, invisible for `invisible_ms`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receive {
    /// Proposer's clock.
    pub now_ms: u64,
    /// Consumer group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Tags to accept; empty = all.
    pub tags: Vec<String>,
    /// At most this many messages.
    pub batch: u32,
    /// Invisible time.
    pub invisible_ms: u64,
    /// Delivery attempts before the dead-letter queue.
    pub max_attempts: u32,
}

const SEND: u8 = 1;
const UPDATE_TOPIC: u8 = 2;
const DELETE_TOPIC: u8 = 3;
const RECEIVE: u8 = 4;
const ACK: u8 = 5;
const CHANGE_INVISIBLE: u8 = 6;
const FORWARD_DLQ: u8 = 7;
const TRIM: u8 = 8;
const BATCH: u8 = 9;
const RESET_OFFSET: u8 = 10;
/// A Send whose messages carry the producer's queue choice: the same records, then one u32
/// per message ([`NO_QUEUE`] = the broker places it).
const SEND_TO_QUEUES: u8 = 11;
/// The trailer value of a message without a queue choice.
const NO_QUEUE: u32 = u32::MAX;
const COMMIT_OFFSET: u8 = 12;
const BARRIER: u8 = 13;
const END_TRANSACTION: u8 = 14;
const CHECK_TRANSACTIONS: u8 = 15;
const RECALL: u8 = 16;
const UPDATE_SUBSCRIPTION_GROUP: u8 = 17;
const DELETE_SUBSCRIPTION_GROUP: u8 = 18;

impl Command {
    /// The command's name, for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::Send { .. } => "Send",
            Command::UpdateTopic { .. } => "UpdateTopic",
            Command::DeleteTopic { .. } => "DeleteTopic",
            Command::Receive(_) => "Receive",
            Command::Ack { .. } => "Ack",
            Command::ChangeInvisible { .. } => "ChangeInvisible",
            Command::ForwardToDeadLetter { .. } => "ForwardToDeadLetter",
            Command::Trim { .. } => "Trim",
            Command::Batch(_) => "Batch",
            Command::ResetOffset { .. } => "ResetOffset",
            Command::CommitOffset { .. } => "CommitOffset",
            Command::Barrier => "Barrier",
            Command::EndTransaction { .. } => "EndTransaction",
            Command::CheckTransactions { .. } => "CheckTransactions",
            Command::Recall(_) => "Recall",
            Command::UpdateSubscriptionGroup { .. } => "UpdateSubscriptionGroup",
            Command::DeleteSubscriptionGroup { .. } => "DeleteSubscriptionGroup",
        }
    }

    /// Encodes the command as a log entry body.
    pub fn encode(&self) -> Bytes {
        let body_bytes: usize = match self {
            Command::Send { messages, .. } => messages.iter().map(|m| m.body.len() + 256).sum(),
            Command::Batch(commands) => commands.len() * 128,
            _ => 128,
        };
        let mut w = Writer::with_capacity(body_bytes + 16);
        w.u8(VERSION);
        self.encode_into(&mut w);
        w.finish()
    }

    fn encode_into(&self, w: &mut Writer) {
        match self {
            Command::Send { now_ms, messages } => encode_send(w, *now_ms, messages),
            Command::UpdateTopic { topic, queues } => {
                w.u8(UPDATE_TOPIC).str(topic).u32(*queues);
            }
            Command::DeleteTopic { topic } => {
                w.u8(DELETE_TOPIC).str(topic);
            }
            Command::Receive(receive) => receive.encode(w.u8(RECEIVE)),
            Command::Recall(recall) => recall.encode(w.u8(RECALL)),
            Command::Ack {
                group,
                topic,
                handles,
            } => {
                w.u8(ACK).str(group).str(topic).strs(handles);
            }
            Command::ChangeInvisible {
                now_ms,
                group,
                topic,
                handle,
                invisible_ms,
            } => {
                w.u8(CHANGE_INVISIBLE)
                    .u64(*now_ms)
                    .str(group)
                    .str(topic)
                    .str(handle)
                    .u64(*invisible_ms);
            }
            Command::ForwardToDeadLetter {
                group,
                topic,
                handle,
            } => {
                w.u8(FORWARD_DLQ).str(group).str(topic).str(handle);
            }
            Command::Trim { upto } => {
                w.u8(TRIM).u64(*upto);
            }
            Command::ResetOffset {
                group,
                topic,
                offsets,
            } => {
                w.u8(RESET_OFFSET).str(group).str(topic).u64s(offsets);
            }
            Command::CommitOffset {
                group,
                topic,
                queue,
                offset,
            } => {
                w.u8(COMMIT_OFFSET)
                    .str(group)
                    .str(topic)
                    .u32(*queue)
                    .u64(*offset);
            }
            Command::Barrier => {
                w.u8(BARRIER);
            }
            Command::EndTransaction {
                now_ms,
                transaction_id,
                message,
            } => encode_end_transaction(w, *now_ms, transaction_id, message.as_ref()),
            Command::CheckTransactions { now_ms, policy } => {
                w.u8(CHECK_TRANSACTIONS)
                    .u64(*now_ms)
                    .u64(policy.timeout_ms)
                    .u64(policy.interval_ms)
                    .u32(policy.max_checks);
            }
            Command::Batch(commands) => {
                w.u8(BATCH).count(commands.len());
                for c in commands {
                    c.encode_into(w);
                }
            }
            Command::UpdateSubscriptionGroup { group, create_only } => {
                group.encode(w.u8(UPDATE_SUBSCRIPTION_GROUP));
                w.u8(u8::from(*create_only));
            }
            Command::DeleteSubscriptionGroup {
                group,
                clean_offset,
            } => {
                w.u8(DELETE_SUBSCRIPTION_GROUP)
                    .str(group)
                    .u8(u8::from(*clean_offset));
            }
        }
    }

    /// Decodes a log entry body. Bodies of messages share `entry` without a copy.
    ///
    /// # Errors
    /// A record this version cannot read.
    pub fn decode(entry: Bytes) -> Result<Command, DecodeError> {
        let mut r = Reader::new(entry);
        let version = r.u8()?;
        if version != VERSION {
            return Err(DecodeError::Version { version });
        }
        let cmd = Command::decode_from(&mut r, true)?;
        r.done()?;
        Ok(cmd)
    }

    /// One command; a Batch only at the top (`batch_allowed`).
    fn decode_from(r: &mut Reader, batch_allowed: bool) -> Result<Command, DecodeError> {
        let cmd = match r.u8()? {
            kind @ (SEND | SEND_TO_QUEUES) => decode_send(r, kind == SEND_TO_QUEUES)?,
            UPDATE_TOPIC => Command::UpdateTopic {
                topic: r.str()?,
                queues: r.u32()?,
            },
            DELETE_TOPIC => Command::DeleteTopic { topic: r.str()? },
            RECEIVE => Command::Receive(Receive::decode(r)?),
            RECALL => Command::Recall(Recall::decode(r)?),
            ACK => Command::Ack {
                group: r.str()?,
                topic: r.str()?,
                handles: r.strs()?,
            },
            CHANGE_INVISIBLE => Command::ChangeInvisible {
                now_ms: r.u64()?,
                group: r.str()?,
                topic: r.str()?,
                handle: r.str()?,
                invisible_ms: r.u64()?,
            },
            FORWARD_DLQ => Command::ForwardToDeadLetter {
                group: r.str()?,
                topic: r.str()?,
                handle: r.str()?,
            },
            TRIM => Command::Trim { upto: r.u64()? },
            RESET_OFFSET => Command::ResetOffset {
                group: r.str()?,
                topic: r.str()?,
                offsets: r.u64s()?,
            },
            BARRIER => Command::Barrier,
            END_TRANSACTION => decode_end_transaction(r)?,
            CHECK_TRANSACTIONS => Command::CheckTransactions {
                now_ms: r.u64()?,
                policy: CheckPolicy {
                    timeout_ms: r.u64()?,
                    interval_ms: r.u64()?,
                    max_checks: r.u32()?,
                },
            },
            COMMIT_OFFSET => Command::CommitOffset {
                group: r.str()?,
                topic: r.str()?,
                queue: r.u32()?,
                offset: r.u64()?,
            },
            UPDATE_SUBSCRIPTION_GROUP => Command::UpdateSubscriptionGroup {
                group: SubscriptionGroup::decode(r)?,
                create_only: r.u8()? != 0,
            },
            DELETE_SUBSCRIPTION_GROUP => Command::DeleteSubscriptionGroup {
                group: r.str()?,
                clean_offset: r.u8()? != 0,
            },
            BATCH if batch_allowed => decode_batch(r)?,
            other => return Err(DecodeError::CommandKind { kind: other }),
        };
        Ok(cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(i: u8) -> StoredMessage {
        StoredMessage {
            topic: "t".into(),
            message_id: format!("id{i}"),
            message_type: MessageType::Fifo,
            tag: Some("a".into()),
            keys: vec!["k1".into(), "k2".into()],
            message_group: Some("g".into()),
            delivery_ms: 5,
            born_ms: 6,
            born_host: "h".into(),
            properties: vec!["p".into(), "v".into()],
            body: Bytes::from(vec![i; 100]),
            queue: None,
        }
    }

    #[test]
    fn every_command_round_trips() {
        let cmds = vec![
            Command::Send {
                now_ms: 1,
                messages: vec![msg(1), msg(2)],
            },
            Command::UpdateTopic {
                topic: "t".into(),
                queues: 8,
            },
            Command::DeleteTopic { topic: "t".into() },
            Command::Receive(Receive {
                now_ms: 2,
                group: "g".into(),
                topic: "t".into(),
                tags: vec!["a".into()],
                batch: 32,
                invisible_ms: 30_000,
                max_attempts: 17,
            }),
            Command::Ack {
                group: "g".into(),
                topic: "t".into(),
                handles: vec!["h".into()],
            },
            Command::ChangeInvisible {
                now_ms: 3,
                group: "g".into(),
                topic: "t".into(),
                handle: "h".into(),
                invisible_ms: 9,
            },
            Command::ForwardToDeadLetter {
                group: "g".into(),
                topic: "t".into(),
                handle: "h".into(),
            },
            Command::Trim { upto: 77 },
            Command::Send {
                now_ms: 4,
                messages: vec![
                    StoredMessage {
                        queue: Some(3),
                        ..msg(4)
                    },
                    msg(5),
                ],
            },
            Command::CommitOffset {
                group: "g".into(),
                topic: "t".into(),
                queue: 2,
                offset: 99,
            },
            Command::Barrier,
            Command::ResetOffset {
                group: "g".into(),
                topic: "t".into(),
                offsets: vec![1, 2, 3],
            },
            Command::Batch(vec![
                Command::Ack {
                    group: "g".into(),
                    topic: "t".into(),
                    handles: vec!["h1".into(), "h2".into()],
                },
                Command::Trim { upto: 3 },
            ]),
            Command::EndTransaction {
                now_ms: 5,
                transaction_id: "tx".into(),
                message: Some(msg(6)),
            },
            Command::EndTransaction {
                now_ms: 6,
                transaction_id: "tx2".into(),
                message: None,
            },
            Command::CheckTransactions {
                now_ms: 7,
                policy: CheckPolicy::default(),
            },
            Command::Recall(Recall {
                now_ms: 8,
                topic: "t".into(),
                queue: 3,
                offset: 41,
                index: 1 << 40,
                pos: 77,
                delivery_ms: 9,
            }),
            Command::UpdateSubscriptionGroup {
                group: SubscriptionGroup {
                    consume_enable: false,
                    consume_message_orderly: true,
                    retry_max_times: 1,
                    group_retry_policy: GroupRetryPolicy::exponential_default(),
                    ..SubscriptionGroup::new("g", 16)
                },
                create_only: true,
            },
            Command::UpdateSubscriptionGroup {
                group: SubscriptionGroup::new("g2", 16),
                create_only: false,
            },
            Command::DeleteSubscriptionGroup {
                group: "g".into(),
                clean_offset: true,
            },
        ];
        for c in cmds {
            assert_eq!(Command::decode(c.encode()).unwrap(), c);
        }
    }

    #[test]
    fn a_committed_message_decodes_where_a_sends_first_record_is() {
        let m = msg(9);
        let entry = Command::EndTransaction {
            now_ms: 88,
            transaction_id: "tx".into(),
            message: Some(m.clone()),
        }
        .encode();
        let len = u32::try_from(m.encoded_len()).unwrap();
        assert_eq!(
            StoredMessage::decode_at(&entry, SEND_HEADER_LEN, len).unwrap(),
            (m, 88)
        );
    }

    #[test]
    fn one_message_decodes_at_its_position_without_the_others() {
        let messages = vec![msg(1), msg(2), msg(3)];
        let entry = Command::Send {
            now_ms: 77,
            messages: messages.clone(),
        }
        .encode();
        let mut pos = SEND_HEADER_LEN;
        for m in &messages {
            let len = u32::try_from(m.encoded_len()).unwrap();
            assert_eq!(
                StoredMessage::decode_at(&entry, pos, len).unwrap(),
                (m.clone(), 77)
            );
            pos += len;
        }
        assert_eq!(
            pos as usize,
            entry.len(),
            "encoded_len matches the encoding"
        );
        assert!(
            StoredMessage::decode_at(&entry, pos - 3, 10).is_err(),
            "past the end"
        );
        assert!(StoredMessage::decode_at(&entry, SEND_HEADER_LEN + 1, 20).is_err());
        let other = Command::DeleteTopic { topic: "t".into() }.encode();
        assert!(
            StoredMessage::decode_at(&other, 2, 1).is_err(),
            "not a Send"
        );
    }

    #[test]
    fn subscription_group_commands_take_kinds_17_and_18() {
        let update = Command::UpdateSubscriptionGroup {
            group: SubscriptionGroup::new("g", 16),
            create_only: false,
        };
        let delete = Command::DeleteSubscriptionGroup {
            group: "g".into(),
            clean_offset: false,
        };
        assert_eq!((update.encode()[1], delete.encode()[1]), (17, 18));
    }

    #[test]
    fn a_batch_inside_a_batch_is_refused() {
        let inner = Command::Batch(vec![Command::Trim { upto: 1 }]);
        let nested = Command::Batch(vec![inner]).encode();
        assert_eq!(
            Command::decode(nested),
            Err(DecodeError::CommandKind { kind: BATCH })
        );
    }

    #[test]
    fn garbage_and_trailing_bytes_are_errors() {
        assert!(Command::decode(Bytes::from_static(&[9, 1])).is_err());
        let mut b = Command::DeleteTopic { topic: "t".into() }.encode().to_vec();
        b.push(0);
        assert!(Command::decode(Bytes::from(b)).is_err());
    }
}
