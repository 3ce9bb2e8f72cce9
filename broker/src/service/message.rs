//! Messages as a protocol hands them in ([`NewMessage`]) and gets them back
//! ([`ReceivedMessage`]), and the checks a message passes before it is stored.

use bytes::Bytes;

use super::error::{ServiceError, check_topic};
use crate::command::{MessageType, StoredMessage};
use crate::state::Delivery;

/// The furthest a delay message may be scheduled (RocketMQ's `timerMaxDelaySec`: 3 days).
pub const DELAY_MS_MAX: u64 = 3 * 24 * 3600 * 1000;

/// A message a producer sends, as the protocol decoded it, not yet checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMessage {
    /// Topic name.
    pub topic: String,
    /// The client-generated message id.
    pub message_id: String,
    /// How the client declared it.
    pub message_type: MessageType,
    /// Tag; empty counts as none.
    pub tag: Option<String>,
    /// Keys.
    pub keys: Vec<String>,
    /// FIFO group; empty counts as none.
    pub message_group: Option<String>,
    /// When a delay message becomes deliverable (ms since the epoch; 0 = now).
    pub delivery_ms: u64,
    /// Client's send time (ms since the epoch); `None` = the broker's clock.
    pub born_ms: Option<u64>,
    /// Client host.
    pub born_host: String,
    /// User properties as `key, value, key, value …`.
    pub properties: Vec<String>,
    /// The body.
    pub body: Bytes,
    /// The queue the producer chose; `None` = the broker places it.
    pub queue: Option<u32>,
}

/// Where a sent message was stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendReceipt {
    /// Queue id.
    pub queue: u32,
    /// Offset in the queue.
    pub offset: u64,
    /// Its commit-log offset (`log index << 24 | record position`: RocketMQ's offset message
    /// id names it); 0 when the send was answered before it was stored.
    pub commit_log_offset: u64,
}

/// A message handed to a consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// Where it came from, its attempt and receipt handle.
    pub delivery: Delivery,
    /// The message as stored.
    pub message: StoredMessage,
    /// When the broker stored it (ms since the epoch).
    pub store_ms: u64,
    /// How long it stays invisible from now (ms).
    pub invisible_ms_left: u64,
}

/// Checks one message of a send at `now_ms` and converts it; the error names the field.
/// The checks run in this order, so a message with two faults always gets the same answer.
pub(crate) fn check_message(
    m: NewMessage,
    now_ms: u64,
    size_max: usize,
) -> Result<StoredMessage, ServiceError> {
    check_topic("message.topic", &m.topic)?;
    if m.body.is_empty() {
        return Err(ServiceError::EmptyBody);
    }
    if m.body.len() > size_max {
        return Err(ServiceError::BodyTooLarge {
            size: m.body.len(),
            size_max,
        });
    }
    let transactional = m.message_type == MessageType::Transaction;
    if transactional
        && (m.delivery_ms > 0 || m.message_group.as_deref().is_some_and(|g| !g.is_empty()))
    {
        // RocketMQ refuses these too: a half message is neither timed nor ordered.
        return Err(ServiceError::InvalidField {
            field: "system_properties.message_type",
            why: "a transactional message cannot have a delivery time or a message group".into(),
        });
    }
    if m.delivery_ms > now_ms + DELAY_MS_MAX {
        return Err(ServiceError::DeliveryTooLate {
            days_max: DELAY_MS_MAX / 86_400_000,
        });
    }
    let message_group = m.message_group.filter(|g| !g.is_empty());
    if m.message_type == MessageType::Fifo && message_group.is_none() {
        return Err(ServiceError::FifoWithoutGroup);
    }
    Ok(StoredMessage {
        topic: m.topic,
        message_id: m.message_id,
        message_type: m.message_type,
        tag: m.tag.filter(|t| !t.is_empty()),
        keys: m.keys,
        message_group,
        delivery_ms: m.delivery_ms,
        born_ms: m.born_ms.unwrap_or(now_ms),
        born_host: m.born_host,
        properties: m.properties,
        body: m.body,
        queue: m.queue,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> NewMessage {
        NewMessage {
            topic: "t".into(),
            message_id: "id".into(),
            message_type: MessageType::Normal,
            tag: Some(String::new()),
            keys: vec![],
            message_group: Some(String::new()),
            delivery_ms: 0,
            born_ms: None,
            born_host: "h".into(),
            properties: vec![],
            body: Bytes::from_static(b"x"),
            queue: None,
        }
    }

    #[test]
    fn a_valid_message_is_normalised() {
        let stored = check_message(message(), 5, 10).unwrap();
        assert_eq!(
            (stored.tag, stored.message_group, stored.born_ms),
            (None, None, 5)
        );
    }

    #[test]
    fn each_fault_is_named() {
        let cases: Vec<(NewMessage, &str)> = vec![
            (
                NewMessage {
                    topic: "a b".into(),
                    ..message()
                },
                "message.topic \"a b\" may only contain letters, digits, %, |, _ and -",
            ),
            (
                NewMessage {
                    body: Bytes::new(),
                    ..message()
                },
                "message.body is empty",
            ),
            (
                NewMessage {
                    body: Bytes::from_static(b"too long"),
                    ..message()
                },
                "message.body of 8 bytes exceeds maxMessageSize 4",
            ),
            (
                NewMessage {
                    message_type: MessageType::Transaction,
                    delivery_ms: 3,
                    ..message()
                },
                "system_properties.message_type: a transactional message cannot have a delivery \
                 time or a message group",
            ),
            (
                NewMessage {
                    delivery_ms: DELAY_MS_MAX + 2,
                    ..message()
                },
                "system_properties.delivery_timestamp is more than 3 days ahead",
            ),
            (
                NewMessage {
                    message_type: MessageType::Fifo,
                    ..message()
                },
                "FIFO message without system_properties.message_group",
            ),
        ];
        for (m, want) in cases {
            assert_eq!(check_message(m, 1, 4).unwrap_err().to_string(), want);
        }
    }
}
