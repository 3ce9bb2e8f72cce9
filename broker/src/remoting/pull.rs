//! PULL_MESSAGE (11): a 4.x consumer's pull by queue offset, held while the queue has
//! nothing new (long polling), answered with MessageExt records.

use bytes::BytesMut;
use raftmq_remoting::RemotingCommand;
use raftmq_remoting::code::response as rs;

use super::message_ext::{RecordPlace, put_message_ext};
use super::request::Answer;
use crate::service::{BrokerService, Filter, FilterKind, PullRequest, PullStatus, reconsume_times};

/// Pull sys flag: the request carries the consumer's offset to commit.
const FLAG_COMMIT_OFFSET: i32 = 1;
/// Pull sys flag: hold the pull while nothing is there.
const FLAG_SUSPEND: i32 = 1 << 1;
/// Pull sys flag: the request carries its subscription expression.
const FLAG_SUBSCRIPTION: i32 = 1 << 2;

pub(super) async fn pull(service: &BrokerService, r: &RemotingCommand) -> Answer {
    let group = r.required("consumerGroup")?.to_string();
    let topic = r.required("topic")?.to_string();
    let queue: u32 = r.parsed("queueId", "a queue id")?;
    let offset: u64 = r.parsed("queueOffset", "a queue offset")?;
    let sys_flag: i32 = r.parsed_opt("sysFlag", "a flag set")?.unwrap_or(0);
    let max_messages: u32 = r.parsed_opt("maxMsgNums", "a count")?.unwrap_or(32);
    let suspend_ms: u64 = if sys_flag & FLAG_SUSPEND != 0 {
        r.parsed_opt("suspendTimeoutMillis", "ms")?
            .unwrap_or(15_000)
    } else {
        0
    };
    let expression = if sys_flag & FLAG_SUBSCRIPTION != 0 {
        r.field("subscription").map(String::from)
    } else {
        service.clients().subscription(&group, &topic)
    };
    let kind = match r.field("expressionType") {
        Some(t) if t.eq_ignore_ascii_case("SQL92") => FilterKind::Sql,
        _ => FilterKind::Tag,
    };
    let commit_offset = if sys_flag & FLAG_COMMIT_OFFSET != 0 {
        r.parsed_opt::<i64>("commitOffset", "a queue offset")?
            .and_then(|o| u64::try_from(o).ok())
    } else {
        None
    };
    let pulled = service
        .pull(PullRequest {
            group,
            topic,
            queue,
            offset,
            max_messages,
            filter: expression.map(|expression| Filter { kind, expression }),
            suspend_ms,
            commit_offset,
        })
        .await?;
    let code = match pulled.status {
        PullStatus::Found => rs::SUCCESS,
        PullStatus::NoNewMessage => rs::PULL_NOT_FOUND,
        PullStatus::NoMatch => rs::PULL_RETRY_IMMEDIATELY,
        PullStatus::OffsetMoved => rs::PULL_OFFSET_MOVED,
    };
    let host = &service.config().broker_addr;
    let mut body = BytesMut::new();
    for m in &pulled.messages {
        let at = RecordPlace {
            queue,
            queue_offset: m.offset,
            index: m.unit.index,
            pos: m.unit.pos,
            store_ms: m.store_ms,
            reconsume_times: reconsume_times(&m.message),
        };
        put_message_ext(&mut body, &m.message, at, host);
    }
    Ok(RemotingCommand::response_to(r, code)
        .with_field("nextBeginOffset", pulled.next_offset)
        .with_field("minOffset", pulled.bounds.min)
        .with_field("maxOffset", pulled.bounds.next)
        .with_field("suggestWhichBrokerId", 0)
        .with_body(body.freeze()))
}
