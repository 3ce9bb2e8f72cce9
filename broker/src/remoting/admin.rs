//! What `mqadmin` and the 4.x tools ask a broker: create or update a topic (17), a message by
//! its offset id (33) or by key (12), runtime info (28).

use bytes::BytesMut;
use raftmq_remoting::RemotingCommand;
use raftmq_remoting::code::response as rs;
use serde::Serialize;
use std::collections::BTreeMap;

use super::message_ext::{RecordPlace, put_message_ext};
use super::request::{Answer, RequestError};
use crate::service::{
    BrokerService, MessageQuery, MessageView, QUERY_MAX_DEFAULT, offset_msg_id, reconsume_times,
    split_commit_log_offset,
};

/// UPDATE_AND_CREATE_TOPIC: the topic gets `writeQueueNums` queues (RaftMQ's queues are
/// read-write; `readQueueNums` is accepted and must not be smaller).
pub(super) async fn update_topic(service: &BrokerService, r: &RemotingCommand) -> Answer {
    let topic = r.required("topic")?;
    let write: u32 = r.parsed("writeQueueNums", "a queue count")?;
    let read: u32 = r
        .parsed_opt("readQueueNums", "a queue count")?
        .unwrap_or(write);
    if read < write {
        return Ok(
            RemotingCommand::response_to(r, rs::SYSTEM_ERROR).with_remark(format!(
                "readQueueNums {read} < writeQueueNums {write}: RaftMQ's queues are read-write"
            )),
        );
    }
    service.update_topic(topic, write).await?;
    Ok(RemotingCommand::response_to(r, rs::SUCCESS))
}

fn records(service: &BrokerService, found: &[MessageView]) -> BytesMut {
    let mut body = BytesMut::new();
    for v in found {
        let (index, pos) = split_commit_log_offset(v.commit_log_offset);
        let (queue, queue_offset) = v.queue_offset.unwrap_or((0, 0));
        let at = RecordPlace {
            queue,
            queue_offset,
            index,
            pos,
            store_ms: v.store_ms,
            reconsume_times: reconsume_times(&v.message),
        };
        put_message_ext(&mut body, &v.message, at, &service.config().broker_addr);
    }
    body
}

/// VIEW_MESSAGE_BY_ID: the header's `offset` is the commit-log offset of an offset message id.
pub(super) fn view_message(service: &BrokerService, r: &RemotingCommand) -> Answer {
    let offset: u64 = r.parsed("offset", "a commit-log offset")?;
    let id = offset_msg_id(&service.config().broker_addr, offset);
    let found = service.query_messages(&MessageQuery::OffsetMsgId(id), 1)?;
    Ok(RemotingCommand::response_to(r, rs::SUCCESS).with_body(records(service, &found).freeze()))
}

/// QUERY_MESSAGE: messages of `topic` by key (or by unique key when `_UNIQUE_KEY_QUERY` is
/// true), at most `maxNum`, stored between `beginTimestamp` and `endTimestamp`.
pub(super) fn query_message(service: &BrokerService, r: &RemotingCommand) -> Answer {
    let topic = r.required("topic")?.to_string();
    let key = r.required("key")?.to_string();
    let max: usize = r
        .parsed_opt("maxNum", "a count")?
        .unwrap_or(QUERY_MAX_DEFAULT);
    let begin: u64 = r.parsed_opt("beginTimestamp", "ms")?.unwrap_or(0);
    let end: u64 = r.parsed_opt("endTimestamp", "ms")?.unwrap_or(u64::MAX);
    let unique = r.field("_UNIQUE_KEY_QUERY") == Some("true");
    let query = if unique {
        MessageQuery::UniqueKey { topic, id: key }
    } else {
        MessageQuery::Key { topic, key }
    };
    let found: Vec<MessageView> = service
        .query_messages(&query, max)?
        .into_iter()
        .filter(|v| v.store_ms >= begin && v.store_ms <= end)
        .collect();
    if found.is_empty() {
        return Ok(RemotingCommand::response_to(r, rs::QUERY_NOT_FOUND)
            .with_remark("can not find message, maybe time range not correct"));
    }
    Ok(RemotingCommand::response_to(r, rs::SUCCESS)
        .with_field("indexLastUpdateTimestamp", 0)
        .with_field("indexLastUpdatePhyoffset", 0)
        .with_body(records(service, &found).freeze()))
}

#[derive(Serialize)]
struct KvTable {
    table: BTreeMap<String, String>,
}

/// GET_BROKER_RUNTIME_INFO: this node's runtime table (RocketMQ's KVTable), as
/// [`BrokerService::runtime_info`] reports it.
pub(super) fn runtime_info(service: &BrokerService, r: &RemotingCommand) -> RemotingCommand {
    let table = service.runtime_info();
    match serde_json::to_vec(&KvTable { table }) {
        Ok(body) => RemotingCommand::response_to(r, rs::SUCCESS).with_body(body),
        Err(e) => RequestError::Body {
            what: e.to_string(),
        }
        .response(r),
    }
}
