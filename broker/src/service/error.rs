//! [`ServiceError`]: every way a broker operation fails, with what a protocol needs to choose
//! its status code; [`NameError`]: RocketMQ's topic and group name rule.

use crate::state::ApplyError;
use crate::store::StoreError;

/// The longest topic or group name RocketMQ accepts.
const NAME_CHARS_MAX: usize = 127;

/// What a name names; a protocol may answer a bad topic and a bad group differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameKind {
    /// A topic.
    Topic,
    /// A consumer group.
    Group,
}

/// A topic or group name that breaks RocketMQ's rule `^[%|a-zA-Z0-9_-]+$`, at most 127
/// characters. `field` is the request field that carried it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("{field} is empty")]
    Empty {
        /// The request field.
        field: &'static str,
    },
    /// The name is too long.
    #[error("{field} {name:?} is longer than 127 characters")]
    TooLong {
        /// The request field.
        field: &'static str,
        /// The name.
        name: String,
    },
    /// The name has a character outside the rule.
    #[error("{field} {name:?} may only contain letters, digits, %, |, _ and -")]
    Character {
        /// The request field.
        field: &'static str,
        /// The name.
        name: String,
    },
}

impl NameError {
    /// The request field that carried the name.
    pub fn field(&self) -> &'static str {
        match self {
            NameError::Empty { field }
            | NameError::TooLong { field, .. }
            | NameError::Character { field, .. } => field,
        }
    }
}

/// Checks `name` against RocketMQ's topic and group name rule.
///
/// # Errors
/// Which part of the rule it breaks.
pub fn check_name(field: &'static str, name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { field });
    }
    if name.len() > NAME_CHARS_MAX {
        return Err(NameError::TooLong {
            field,
            name: name.to_string(),
        });
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "%|_-".contains(c))
    {
        return Err(NameError::Character {
            field,
            name: name.to_string(),
        });
    }
    Ok(())
}

/// Why a broker operation failed. Each protocol maps it to its own status code; the messages
/// are the ones the clients see.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A topic or group name breaks RocketMQ's rule.
    #[error("{source}")]
    InvalidName {
        /// Topic or group.
        kind: NameKind,
        /// Which part of the rule.
        source: NameError,
    },
    /// A send without messages.
    #[error("messages is empty")]
    NoMessages,
    /// A message without a body.
    #[error("message.body is empty")]
    EmptyBody,
    /// A body above `maxMessageSize`.
    #[error("message.body of {size} bytes exceeds maxMessageSize {size_max}")]
    BodyTooLarge {
        /// The body's size.
        size: usize,
        /// `maxMessageSize`.
        size_max: usize,
    },
    /// A FIFO message without a message group.
    #[error("FIFO message without system_properties.message_group")]
    FifoWithoutGroup,
    /// A feature RaftMQ does not have yet.
    #[error("{feature} are not supported yet")]
    Unsupported {
        /// What, in the plural ("transactional messages").
        feature: &'static str,
    },
    /// A delay message scheduled too far ahead.
    #[error("system_properties.delivery_timestamp is more than {days_max} days ahead")]
    DeliveryTooLate {
        /// The limit in days.
        days_max: u64,
    },
    /// An invisible-time change without a (non-negative) duration.
    #[error("invisible_duration is missing or negative")]
    InvisibleTimeMissing,
    /// An invisible-time change above the limit.
    #[error("invisible_duration exceeds {invisible_ms_max} ms")]
    InvisibleTimeTooLong {
        /// The limit.
        invisible_ms_max: u64,
    },
    /// A receive's invisible time outside the allowed range.
    #[error(
        "invisible_duration {invisible_ms} ms is outside [{invisible_ms_min}, {invisible_ms_max}] ms"
    )]
    InvisibleTimeOutOfRange {
        /// What was asked.
        invisible_ms: u64,
        /// The shortest allowed.
        invisible_ms_min: u64,
        /// The longest allowed.
        invisible_ms_max: u64,
    },
    /// An unknown topic, and `autoCreateTopicEnable` is off.
    #[error("topic {topic} does not exist (autoCreateTopicEnable=false)")]
    TopicNotAutoCreated {
        /// The topic.
        topic: String,
    },
    /// An unknown topic.
    #[error("topic {topic} does not exist")]
    TopicNotFound {
        /// The topic.
        topic: String,
    },
    /// A consumer group without progress on any topic.
    #[error("consumer group {group} has not consumed from any topic")]
    GroupNotFound {
        /// The group.
        group: String,
    },
    /// No client of this consumer group is connected to this node (RocketMQ's broker text).
    #[error("the consumer group[{group}] not online")]
    ConsumerNotOnline {
        /// The group.
        group: String,
    },
    /// No client of this producer group is connected to this node (RocketMQ's broker text).
    #[error("the producer group[{group}] not exist")]
    ProducerNotOnline {
        /// The group.
        group: String,
    },
    /// A subscription group without a record (RocketMQ's SUBSCRIPTION_GROUP_NOT_EXIST).
    #[error("subscription group [{group}] does not exist")]
    SubscriptionGroupNotFound {
        /// The group.
        group: String,
    },
    /// A subscription group without a record, and `autoCreateSubscriptionGroup` is off.
    #[error(
        "subscription group [{group}] does not exist (autoCreateSubscriptionGroup=false: create \
         it with mqadmin updateSubGroup -g {group})"
    )]
    SubscriptionGroupNotAutoCreated {
        /// The group.
        group: String,
    },
    /// The group's `consumeEnable` is false (RocketMQ's NO_PERMISSION remark).
    #[error("subscription group no permission, {group} (consumeEnable=false)")]
    ConsumeDisabled {
        /// The group.
        group: String,
    },
    /// The group's 4.x consumers consume by broadcast, and its `consumeBroadcastEnable` is
    /// false (RocketMQ's NO_PERMISSION remark).
    #[error(
        "the consumer group[{group}] can not consume by broadcast way (consumeBroadcastEnable=false)"
    )]
    BroadcastDisabled {
        /// The group.
        group: String,
    },
    /// A required request field is empty.
    #[error("{field} is empty")]
    MissingField {
        /// The request field.
        field: &'static str,
    },
    /// A node id that is not a member of the group.
    #[error("unknown node {node} (not in dLegerPeers)")]
    UnknownNode {
        /// The node asked for.
        node: String,
    },
    /// Only the leader can do this.
    #[error("{node} is not the leader; {}", leader_hint(.leader))]
    NotLeader {
        /// The node that was asked.
        node: String,
        /// The leader it knows.
        leader: Option<String>,
    },
    /// The store's disk is fuller than `diskMaxUsedSpaceRatio`.
    #[error(
        "disk {used_percent}% full exceeds diskMaxUsedSpaceRatio {used_percent_max}%: sends are refused, receives go on"
    )]
    DiskFull {
        /// Current usage.
        used_percent: u32,
        /// The limit.
        used_percent_max: u32,
    },
    /// The store applied no result for this item (a bug).
    #[error("missing result")]
    ResultMissing,
    /// A request field holds something that cannot be right (an offset message id that is
    /// not 32 hex digits, a lookup without a key).
    #[error("{field}: {why}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        why: String,
    },
    /// A lookup found no message.
    #[error("no message found for {what}")]
    MessageNotFound {
        /// What was looked up.
        what: String,
    },
    /// The state refused the command (or one item of it).
    #[error(transparent)]
    Refused {
        /// Why.
        #[from]
        source: ApplyError,
    },
    /// The store could not write or read.
    #[error(transparent)]
    Store {
        /// Why.
        #[from]
        source: StoreError,
    },
}

fn leader_hint(leader: &Option<String>) -> String {
    match leader {
        Some(id) => format!("the leader is {id}"),
        None => "no leader is known".to_string(),
    }
}

impl From<raft_log::Error> for ServiceError {
    fn from(e: raft_log::Error) -> Self {
        ServiceError::Store {
            source: StoreError::Log(e),
        }
    }
}

/// Checks a topic name.
pub(crate) fn check_topic(field: &'static str, name: &str) -> Result<(), ServiceError> {
    check_name(field, name).map_err(|source| ServiceError::InvalidName {
        kind: NameKind::Topic,
        source,
    })
}

/// Checks a consumer group name.
pub(crate) fn check_group(field: &'static str, name: &str) -> Result<(), ServiceError> {
    check_name(field, name).map_err(|source| ServiceError::InvalidName {
        kind: NameKind::Group,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_rocketmq_rules() {
        assert!(check_name("topic", "Topic_1-a%b|c").is_ok());
        for bad in ["", "a b", "a/b", &"x".repeat(128)] {
            let e = check_name("topic", bad).unwrap_err();
            assert!(e.to_string().starts_with("topic"), "{e}");
            assert_eq!(e.field(), "topic");
        }
        assert_eq!(
            check_name("group", "").unwrap_err().to_string(),
            "group is empty"
        );
    }

    #[test]
    fn not_leader_names_the_leader() {
        let e = ServiceError::NotLeader {
            node: "n1".into(),
            leader: Some("n0".into()),
        };
        assert_eq!(e.to_string(), "n1 is not the leader; the leader is n0");
    }
}
