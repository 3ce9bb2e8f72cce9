//! Message lookups and offset resets for operators (RocketMQ's `queryMsgById`,
//! `queryMsgByKey`, `queryMsgByUniqueKey`, `queryMsgByOffset`, `resetOffsetByTime`).
//!
//! RocketMQ's offset message id is 16 bytes as 32 hex digits: the store host's IPv4 address and
//! port, then the commit-log offset. RaftMQ's commit-log offset names the Send entry and the
//! record in it: `log index << 24 | position` (entries are smaller than 16 MiB).

use std::net::{Ipv4Addr, SocketAddr};

use super::BrokerService;
use super::error::ServiceError;
use super::error::{check_group, check_topic};
use crate::command::StoredMessage;
use crate::message_index::KeyKind;
use crate::store::FoundMessage;

/// Bits of a commit-log offset that hold the record's position in its entry.
const POS_BITS: u32 = 24;
/// RocketMQ's default `maxNum` of a key query.
pub const QUERY_MAX_DEFAULT: usize = 64;

/// What to look up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageQuery {
    /// Messages of `topic` carrying `key` among their keys.
    Key {
        /// Topic.
        topic: String,
        /// Key.
        key: String,
    },
    /// The message of `topic` with the client's message id `id`.
    UniqueKey {
        /// Topic.
        topic: String,
        /// Message id.
        id: String,
    },
    /// The message an offset message id names.
    OffsetMsgId(String),
    /// The message at an offset of a queue.
    QueueOffset {
        /// Topic.
        topic: String,
        /// Queue id.
        queue: u32,
        /// Queue offset.
        offset: u64,
    },
}

/// A message found, as an operator sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageView {
    /// The message.
    pub message: StoredMessage,
    /// Store time (ms since the epoch).
    pub store_ms: u64,
    /// RocketMQ's offset message id (32 hex digits).
    pub offset_msg_id: String,
    /// The commit-log offset it encodes.
    pub commit_log_offset: u64,
    /// Queue and queue offset, when known.
    pub queue_offset: Option<(u32, u64)>,
    /// The broker that answered (brokerIP1:listenPort).
    pub store_host: String,
}

/// RocketMQ's offset message id for a message stored at `commit_log_offset` by `host`.
pub fn offset_msg_id(host: &str, commit_log_offset: u64) -> String {
    let (ip, port) = match host.parse::<SocketAddr>() {
        Ok(SocketAddr::V4(a)) => (*a.ip(), u32::from(a.port())),
        _ => (Ipv4Addr::UNSPECIFIED, 0),
    };
    format!("{:08X}{port:08X}{commit_log_offset:016X}", u32::from(ip))
}

/// The (log index, position) an offset message id names.
///
/// # Errors
/// [`ServiceError::InvalidField`] unless it is 32 hex digits.
pub fn parse_offset_msg_id(id: &str) -> Result<(u64, u32), ServiceError> {
    let invalid = |why: &str| ServiceError::InvalidField {
        field: "offset_msg_id",
        why: format!("{id:?} {why}"),
    };
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid("is not 32 hex digits"));
    }
    let offset = u64::from_str_radix(&id[16..], 16).map_err(|_| invalid("is not hex"))?;
    Ok(split_commit_log_offset(offset))
}

/// The (log index, position) of a commit-log offset.
pub fn split_commit_log_offset(offset: u64) -> (u64, u32) {
    let pos = u32::try_from(offset & ((1 << POS_BITS) - 1)).unwrap_or(0);
    (offset >> POS_BITS, pos)
}

/// The commit-log offset of the record at `pos` of entry `index`.
pub fn commit_log_offset(index: u64, pos: u32) -> u64 {
    (index << POS_BITS) | u64::from(pos)
}

impl BrokerService {
    /// Looks messages up on this node (its index, queues and log). Key lookups return at most
    /// `max` (newest first).
    ///
    /// # Errors
    /// A bad name or id, [`ServiceError::MessageNotFound`] when nothing matches, a store
    /// failure.
    pub fn query_messages(
        &self,
        query: &MessageQuery,
        max: usize,
    ) -> Result<Vec<MessageView>, ServiceError> {
        let store = self.store();
        let found: Vec<FoundMessage> = match query {
            MessageQuery::Key { topic, key } => {
                check_topic("topic", topic)?;
                non_empty("key", key)?;
                store.find_by_key(KeyKind::Key, topic, key, max)?
            }
            MessageQuery::UniqueKey { topic, id } => {
                check_topic("topic", topic)?;
                non_empty("msg_id", id)?;
                store.find_by_key(KeyKind::UniqueKey, topic, id, max)?
            }
            MessageQuery::OffsetMsgId(id) => {
                let (index, pos) = parse_offset_msg_id(id)?;
                match store.find_at(index, pos) {
                    Ok(f) => vec![f],
                    Err(crate::store::StoreError::MessageMissing { .. }) => vec![],
                    Err(e) => return Err(e.into()),
                }
            }
            MessageQuery::QueueOffset {
                topic,
                queue,
                offset,
            } => {
                check_topic("topic", topic)?;
                store
                    .find_at_offset(topic, *queue, *offset)?
                    .into_iter()
                    .collect()
            }
        };
        if found.is_empty() {
            return Err(ServiceError::MessageNotFound {
                what: describe(query),
            });
        }
        let host = &self.config().broker_addr;
        Ok(found
            .into_iter()
            .map(|f| {
                let offset = commit_log_offset(f.index, f.pos);
                MessageView {
                    offset_msg_id: offset_msg_id(host, offset),
                    commit_log_offset: offset,
                    queue_offset: f.queue_offset,
                    store_ms: f.store_ms,
                    message: f.message,
                    store_host: host.clone(),
                }
            })
            .collect())
    }

    /// Moves `group`'s offsets on `topic` to the first message stored at or after `ms`. Returns
    /// per queue (queue id, offset before, offset after).
    ///
    /// # Errors
    /// A bad name, an unknown topic, a store failure.
    pub async fn reset_offset_by_time(
        &self,
        group: &str,
        topic: &str,
        ms: u64,
    ) -> Result<Vec<(u32, u64, u64)>, ServiceError> {
        check_group("group", group)?;
        check_topic("topic", topic)?;
        let moved = self
            .store()
            .reset_offset_by_time(group, topic, ms)
            .await??;
        tracing::info!(
            group,
            topic,
            timestamp_ms = ms,
            "consumer offsets reset by time"
        );
        Ok(moved
            .into_iter()
            .enumerate()
            .map(|(q, (before, after))| (u32::try_from(q).unwrap_or(u32::MAX), before, after))
            .collect())
    }
}

fn non_empty(field: &'static str, v: &str) -> Result<(), ServiceError> {
    if v.is_empty() {
        return Err(ServiceError::MissingField { field });
    }
    Ok(())
}

fn describe(query: &MessageQuery) -> String {
    match query {
        MessageQuery::Key { topic, key } => format!("key {key:?} in topic {topic}"),
        MessageQuery::UniqueKey { topic, id } => format!("msgId {id:?} in topic {topic}"),
        MessageQuery::OffsetMsgId(id) => format!("offsetMsgId {id}"),
        MessageQuery::QueueOffset {
            topic,
            queue,
            offset,
        } => format!("topic {topic} queue {queue} offset {offset}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_msg_ids_are_rocketmqs_layout_and_round_trip() {
        let offset = commit_log_offset(0x1234, 0x56);
        let id = offset_msg_id("127.0.0.1:30911", offset);
        assert_eq!(id, "7F000001000078BF0000001234000056");
        assert_eq!(parse_offset_msg_id(&id).unwrap(), (0x1234, 0x56));
        for bad in ["", "7F00", "ZZ000001000078BF0000001234000056"] {
            assert!(matches!(
                parse_offset_msg_id(bad),
                Err(ServiceError::InvalidField {
                    field: "offset_msg_id",
                    ..
                })
            ));
        }
    }
}
