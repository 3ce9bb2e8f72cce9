//! Consumer send-back (RocketMQ 4.x CONSUMER_SEND_MSG_BACK): a message a consumer failed to
//! consume is stored again in the group's retry topic `%RETRY%<group>` (its `retryQueueNums`
//! queues) with a delay that grows with each attempt (RocketMQ's delay levels), and after
//! `maxReconsumeTimes` (the consumer's, else the group's `retryMaxTimes`) in the group's
//! dead-letter topic `%DLQ%<group>`.

use bytes::Bytes;

use super::BrokerService;
use super::clock::now_ms;
use super::error::ServiceError;
use super::error::check_group;
use super::query::split_commit_log_offset;
use crate::command::{MessageType, StoredMessage, SubscriptionGroup};

pub use crate::command::DELAY_LEVELS_MS;
/// The property holding how often a message was consumed again (RocketMQ's
/// `RECONSUME_TIME`); 4.x consumers see it as the record's reconsume-times field.
pub const RECONSUME_TIME: &str = "RECONSUME_TIME";
/// The property naming a retried message's original topic.
pub const RETRY_TOPIC: &str = "RETRY_TOPIC";
/// The property naming a retried message's original message id.
pub const ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
/// The queue count of a dead-letter topic, as RocketMQ creates them (`DLQ_NUMS_PER_GROUP`).
const DLQ_QUEUES: u32 = 1;

/// A group's retry topic.
fn retry_topic(group: &str) -> String {
    format!("{}{group}", crate::state::RETRY_PREFIX)
}

/// The delay of a RocketMQ delay level (1..=18); levels above 18 count as 18, 0 as none.
pub fn delay_of_level(level: u32) -> u64 {
    match level {
        0 => 0,
        l => DELAY_LEVELS_MS[(l as usize).min(DELAY_LEVELS_MS.len()) - 1],
    }
}

/// A consumer's send-back, as the protocol decoded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendBack {
    /// The consumer group.
    pub group: String,
    /// The commit-log offset of the message (from its offset message id).
    pub commit_log_offset: u64,
    /// The delay level the consumer asked for: 0 = the broker's choice (3 + attempts), -1 =
    /// straight to the dead-letter topic.
    pub delay_level: i32,
    /// Attempts before the dead-letter topic; `None` = the group's `retryMaxTimes`.
    pub max_reconsume_times: Option<u32>,
    /// The message id the consumer knows the message by.
    pub origin_msg_id: Option<String>,
}

/// How often a message has been consumed again (its `RECONSUME_TIME` property).
pub fn reconsume_times(m: &StoredMessage) -> u32 {
    m.property(RECONSUME_TIME)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn set_property(properties: &mut Vec<String>, key: &str, value: String) {
    if let Some(i) = properties.chunks_exact(2).position(|kv| kv[0] == key) {
        properties[2 * i + 1] = value;
    } else {
        properties.push(key.to_string());
        properties.push(value);
    }
}

impl BrokerService {
    /// Stores the message again for a retry, or in the dead-letter topic when it has had its
    /// attempts; returns the topic it went to, or `None` when the group's `retryQueueNums` is
    /// 0 (RocketMQ drops the message then and answers SUCCESS).
    ///
    /// # Errors
    /// A bad group, a group that has no record and is not auto-created, a message this node
    /// cannot find, a store failure.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn send_back(&self, back: SendBack) -> Result<Option<String>, ServiceError> {
        check_group("group", &back.group)?;
        let group = self.find_subscription_group(&back.group).await?;
        if group.retry_queue_nums == 0 {
            return Ok(None);
        }
        let (index, pos) = split_commit_log_offset(back.commit_log_offset);
        let found = self.store().find_at(index, pos).map_err(|e| match e {
            crate::store::StoreError::MessageMissing { .. } => ServiceError::MessageNotFound {
                what: format!("commit-log offset {}", back.commit_log_offset),
            },
            other => other.into(),
        })?;
        let original = found.message;
        let times = reconsume_times(&original);
        let max = back.max_reconsume_times.unwrap_or(group.retry_max_times);
        let dead = back.delay_level < 0 || times >= max;
        let (topic, delay_ms, queues) = if dead {
            (format!("%DLQ%{}", back.group), 0, DLQ_QUEUES)
        } else {
            let level = u32::try_from(back.delay_level).unwrap_or(0);
            let level = if level == 0 { 3 + times } else { level };
            let topic = retry_topic(&back.group);
            (topic, delay_of_level(level), group.retry_queue_nums)
        };
        let message = self.retry_message(original, &topic, times, delay_ms, back.origin_msg_id);
        self.ensure_topic_with(&topic, queues).await?;
        let mut stored = self.store().send(now_ms(), vec![message]).await?;
        match stored.pop() {
            Some(Ok(_)) => Ok(Some(topic)),
            Some(Err(e)) => Err(e.into()),
            None => Err(ServiceError::ResultMissing),
        }
    }

    fn retry_message(
        &self,
        original: StoredMessage,
        topic: &str,
        times: u32,
        delay_ms: u64,
        origin_msg_id: Option<String>,
    ) -> StoredMessage {
        let first_topic = original
            .property(RETRY_TOPIC)
            .map_or_else(|| original.topic.clone(), str::to_string);
        let mut properties = original.properties;
        set_property(&mut properties, RETRY_TOPIC, first_topic);
        set_property(
            &mut properties,
            ORIGIN_MESSAGE_ID,
            origin_msg_id.unwrap_or_else(|| original.message_id.clone()),
        );
        set_property(&mut properties, RECONSUME_TIME, (times + 1).to_string());
        let now = now_ms();
        StoredMessage {
            topic: topic.to_string(),
            message_id: original.message_id,
            message_type: if delay_ms > 0 {
                MessageType::Delay
            } else {
                MessageType::Normal
            },
            tag: original.tag,
            keys: original.keys,
            message_group: None,
            delivery_ms: if delay_ms > 0 { now + delay_ms } else { 0 },
            born_ms: original.born_ms,
            born_host: original.born_host,
            properties,
            body: Bytes::clone(&original.body),
            queue: None,
        }
    }

    /// A 4.x consumer's heartbeat names `group`: its record, created on first use when
    /// `autoCreateSubscriptionGroup` allows (`None` when it has none), and its retry topic
    /// `%RETRY%<group>` with `retryQueueNums` queues unless that exists (RocketMQ creates it
    /// here, so its route exists before any retry).
    ///
    /// # Errors
    /// A bad group name, a store failure.
    pub async fn consumer_heartbeat(
        &self,
        group: &str,
    ) -> Result<Option<SubscriptionGroup>, ServiceError> {
        check_group("groupName", group)?;
        let found = match self.find_subscription_group(group).await {
            Ok(found) => found,
            Err(ServiceError::SubscriptionGroupNotAutoCreated { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        if found.retry_queue_nums > 0 {
            self.ensure_topic_with(&retry_topic(group), found.retry_queue_nums)
                .await?;
        }
        Ok(Some(found))
    }

    /// Creates `topic` with `queues` queues unless it exists; retry and dead-letter topics are
    /// created whatever `autoCreateTopicEnable` says, as RocketMQ does.
    async fn ensure_topic_with(&self, topic: &str, queues: u32) -> Result<(), ServiceError> {
        if self.store().state().topics().contains_key(topic) {
            return Ok(());
        }
        self.store().update_topic(topic, queues).await??;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_levels_are_rocketmqs() {
        assert_eq!(delay_of_level(0), 0);
        assert_eq!(delay_of_level(1), 1_000);
        assert_eq!(delay_of_level(3), 10_000);
        assert_eq!(delay_of_level(18), 7_200_000);
        assert_eq!(delay_of_level(40), 7_200_000);
    }

    #[test]
    fn reconsume_times_come_from_the_property() {
        let mut m = StoredMessage::sample("t", "id");
        assert_eq!(reconsume_times(&m), 0);
        set_property(&mut m.properties, RECONSUME_TIME, "4".into());
        set_property(&mut m.properties, "k", "v".into());
        set_property(&mut m.properties, RECONSUME_TIME, "5".into());
        assert_eq!(reconsume_times(&m), 5);
        assert_eq!(m.properties.len(), 4);
    }
}
