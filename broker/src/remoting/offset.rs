//! Consumer offsets (QUERY_CONSUMER_OFFSET 14, UPDATE_CONSUMER_OFFSET 15), replicated through
//! the log, and queue offsets (SEARCH_OFFSET_BY_TIMESTAMP 29, GET_MAX_OFFSET 30,
//! GET_MIN_OFFSET 31).

use raftmq_remoting::RemotingCommand;
use raftmq_remoting::code::response as rs;

use super::request::{Answer, RequestError};
use crate::service::BrokerService;

fn group_topic_queue(r: &RemotingCommand) -> Result<(&str, &str, u32), RequestError> {
    Ok((
        r.required("consumerGroup")?,
        r.required("topic")?,
        r.parsed("queueId", "a queue id")?,
    ))
}

/// The group's committed offset. A group that never committed in a queue that still holds
/// its first message starts there (offset 0), as RocketMQ answers a group's first boot while
/// the queue's head is in memory; otherwise QUERY_NOT_FOUND lets the client apply its
/// `consumeFromWhere`.
pub(super) async fn query_consumer_offset(service: &BrokerService, r: &RemotingCommand) -> Answer {
    let (group, topic, queue) = group_topic_queue(r)?;
    let offset = match service.consumer_offset(group, topic, queue).await? {
        Some(o) => Some(o),
        None => service
            .queue_bounds_of(topic, queue)
            .ok()
            .filter(|b| b.min == 0)
            .map(|_| 0),
    };
    Ok(match offset {
        Some(o) => RemotingCommand::response_to(r, rs::SUCCESS).with_field("offset", o),
        None => RemotingCommand::response_to(r, rs::QUERY_NOT_FOUND)
            .with_remark("Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first"),
    })
}

/// Commits the group's offset (through the log, so a failover does not rewind the group).
pub(super) async fn update_consumer_offset(service: &BrokerService, r: &RemotingCommand) -> Answer {
    let (group, topic, queue) = group_topic_queue(r)?;
    let offset: i64 = r.parsed("commitOffset", "a queue offset")?;
    if let Ok(offset) = u64::try_from(offset) {
        service.commit_offset(group, topic, queue, offset).await?;
    }
    Ok(RemotingCommand::response_to(r, rs::SUCCESS))
}

fn topic_queue(r: &RemotingCommand) -> Result<(&str, u32), RequestError> {
    Ok((r.required("topic")?, r.parsed("queueId", "a queue id")?))
}

/// The queue's max offset: the offset its next message gets.
pub(super) fn max_offset(service: &BrokerService, r: &RemotingCommand) -> Answer {
    let (topic, queue) = topic_queue(r)?;
    let b = service.queue_bounds_of(topic, queue)?;
    Ok(RemotingCommand::response_to(r, rs::SUCCESS).with_field("offset", b.next))
}

/// The queue's min offset: its first message still held.
pub(super) fn min_offset(service: &BrokerService, r: &RemotingCommand) -> Answer {
    let (topic, queue) = topic_queue(r)?;
    let b = service.queue_bounds_of(topic, queue)?;
    Ok(RemotingCommand::response_to(r, rs::SUCCESS).with_field("offset", b.min))
}

/// The first offset stored at or after `timestamp`.
pub(super) fn search_by_time(service: &BrokerService, r: &RemotingCommand) -> Answer {
    let (topic, queue) = topic_queue(r)?;
    let ms: u64 = r.parsed("timestamp", "ms since the epoch")?;
    let offset = service.offset_at_time(topic, queue, ms)?;
    Ok(RemotingCommand::response_to(r, rs::SUCCESS).with_field("offset", offset))
}
