//! What `mqadmin` and the 4.x tools ask a broker: create or update a topic (17), a message by
//! its offset id (33) or by key (12), runtime info (28), the clients of a consumer group (203)
//! or a producer group (204) on this node, and subscription groups: create or replace (200),
//! list (201), delete (207).

use bytes::BytesMut;
use raftmq_remoting::RemotingCommand;
use raftmq_remoting::code::response as rs;
use raftmq_remoting::route::DataVersion;
use raftmq_remoting::subscription::{
    self as json, SubscriptionGroupConfig, SubscriptionGroupWrapper,
};
use serde::Serialize;
use std::collections::BTreeMap;

use super::message_ext::{RecordPlace, put_message_ext};
use super::request::{Answer, RequestError};
use crate::command::{DELAY_LEVELS_MS, GroupRetryPolicy, SubscriptionGroup};
use crate::service::{
    BrokerService, ClientInfo, Filter, FilterKind, GroupUpdate, MessageQuery, MessageView,
    QUERY_MAX_DEFAULT, ServiceError, now_ms, offset_msg_id, reconsume_times,
    split_commit_log_offset, version_ordinal,
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

/// UPDATE_AND_CREATE_SUBSCRIPTIONGROUP: the body is the whole `SubscriptionGroupConfig`; it
/// replaces the group's record.
pub(super) async fn update_subscription_group(
    service: &BrokerService,
    r: &RemotingCommand,
) -> Answer {
    let config: SubscriptionGroupConfig =
        serde_json::from_slice(&r.body).map_err(|e| RequestError::Body {
            what: format!("body is not RocketMQ's SubscriptionGroupConfig JSON: {e}"),
        })?;
    let update = GroupUpdate {
        group_name: config.group_name,
        consume_enable: Some(config.consume_enable),
        consume_from_min_enable: Some(config.consume_from_min_enable),
        consume_broadcast_enable: Some(config.consume_broadcast_enable),
        consume_message_orderly: Some(config.consume_message_orderly),
        retry_queue_nums: Some(config.retry_queue_nums),
        retry_max_times: Some(config.retry_max_times),
        group_retry_policy: Some(retry_policy_of_json(config.group_retry_policy)?),
        notify_consumer_ids_changed_enable: Some(config.notify_consumer_ids_changed_enable),
    };
    service.update_subscription_group(update).await?;
    Ok(RemotingCommand::response_to(r, rs::SUCCESS))
}

/// A `groupRetryPolicy` as RocketMQ reads it: a type without its policy takes that type's
/// defaults (the Java proxy's reading).
fn retry_policy_of_json(p: json::GroupRetryPolicy) -> Result<GroupRetryPolicy, ServiceError> {
    match p.kind.as_str() {
        json::CUSTOMIZED => {
            let next = p
                .customized_retry_policy
                .map(|c| c.next)
                .unwrap_or_default();
            Ok(GroupRetryPolicy::Customized {
                next_ms: if next.is_empty() {
                    DELAY_LEVELS_MS.to_vec()
                } else {
                    next
                },
            })
        }
        json::EXPONENTIAL => Ok(match p.exponential_retry_policy {
            Some(e) => GroupRetryPolicy::Exponential {
                initial_ms: e.initial,
                max_ms: e.max,
                multiplier: e.multiplier,
            },
            None => GroupRetryPolicy::exponential_default(),
        }),
        other => Err(ServiceError::InvalidField {
            field: "groupRetryPolicy",
            why: format!("type must be CUSTOMIZED or EXPONENTIAL, not {other:?}"),
        }),
    }
}

fn retry_policy_to_json(p: &GroupRetryPolicy) -> json::GroupRetryPolicy {
    match p {
        GroupRetryPolicy::Customized { next_ms } => json::GroupRetryPolicy {
            kind: json::CUSTOMIZED.to_string(),
            exponential_retry_policy: None,
            customized_retry_policy: Some(json::CustomizedRetryPolicy {
                next: next_ms.clone(),
            }),
        },
        GroupRetryPolicy::Exponential {
            initial_ms,
            max_ms,
            multiplier,
        } => json::GroupRetryPolicy {
            kind: json::EXPONENTIAL.to_string(),
            exponential_retry_policy: Some(json::ExponentialRetryPolicy {
                initial: *initial_ms,
                max: *max_ms,
                multiplier: *multiplier,
            }),
            customized_retry_policy: None,
        },
    }
}

/// A record as RocketMQ's JSON: the fields RaftMQ does not keep at RocketMQ's defaults.
fn config_json(g: &SubscriptionGroup) -> SubscriptionGroupConfig {
    SubscriptionGroupConfig {
        group_name: g.group_name.clone(),
        consume_enable: g.consume_enable,
        consume_from_min_enable: g.consume_from_min_enable,
        consume_broadcast_enable: g.consume_broadcast_enable,
        consume_message_orderly: g.consume_message_orderly,
        retry_queue_nums: i64::from(g.retry_queue_nums),
        retry_max_times: i64::from(g.retry_max_times),
        group_retry_policy: retry_policy_to_json(&g.group_retry_policy),
        broker_id: 0,
        which_broker_when_consume_slowly: 1,
        notify_consumer_ids_changed_enable: g.notify_consumer_ids_changed_enable,
        group_sys_flag: 0,
        consume_timeout_minute: 15,
        attributes: BTreeMap::new(),
    }
}

/// GET_ALL_SUBSCRIPTIONGROUP_CONFIG: every record, as RocketMQ's `SubscriptionGroupWrapper`
/// (its version counter is the log index of the last change).
pub(super) fn all_subscription_groups(service: &BrokerService, r: &RemotingCommand) -> Answer {
    let wrapper = SubscriptionGroupWrapper {
        subscription_group_table: service
            .subscription_groups()
            .iter()
            .map(|g| (g.group_name.clone(), config_json(g)))
            .collect(),
        data_version: DataVersion {
            timestamp: now_ms(),
            counter: service.subscription_groups_version(),
        },
    };
    let body = serde_json::to_vec(&wrapper).map_err(|e| RequestError::Body {
        what: e.to_string(),
    })?;
    Ok(RemotingCommand::response_to(r, rs::SUCCESS).with_body(body))
}

/// DELETE_SUBSCRIPTIONGROUP: `groupName`, and with `cleanOffset=true` its offsets too. A group
/// without a record answers SUCCESS, as RocketMQ's does.
pub(super) async fn delete_subscription_group(
    service: &BrokerService,
    r: &RemotingCommand,
) -> Answer {
    let group = r.required("groupName")?;
    let clean_offset = r
        .field("cleanOffset")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    match service.delete_subscription_group(group, clean_offset).await {
        Ok(_) | Err(ServiceError::SubscriptionGroupNotFound { .. }) => {
            Ok(RemotingCommand::response_to(r, rs::SUCCESS))
        }
        Err(e) => Err(e.into()),
    }
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

/// The version ordinal of a client whose version has no RocketMQ name (a 5.x client sending
/// its SDK's own version): `V5_0_0`, as RocketMQ's proxy reports gRPC clients it unregisters.
const GRPC_CLIENT_VERSION: i32 = 413;

/// RocketMQ's `Connection`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConnectionBody<'a> {
    client_id: &'a str,
    client_addr: &'a str,
    language: &'a str,
    version: i32,
}

impl<'a> ConnectionBody<'a> {
    fn of(c: &'a ClientInfo) -> Self {
        ConnectionBody {
            client_id: &c.client_id,
            client_addr: &c.addr,
            language: &c.language,
            version: version_ordinal(&c.version).unwrap_or(GRPC_CLIENT_VERSION),
        }
    }
}

/// RocketMQ's `SubscriptionData` (`FilterAPI.build`: tags and their Java hash codes).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionBody<'a> {
    class_filter_mode: bool,
    topic: &'a str,
    sub_string: &'a str,
    tags_set: Vec<&'a str>,
    code_set: Vec<i32>,
    sub_version: u64,
    expression_type: &'static str,
}

/// Java's `String.hashCode`, which RocketMQ's tag codes are.
fn java_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

fn subscription_body<'a>(topic: &'a str, f: &'a Filter) -> SubscriptionBody<'a> {
    let (sub_string, tags_set, expression_type) = match f.kind {
        FilterKind::Sql => (f.expression.as_str(), Vec::new(), "SQL92"),
        FilterKind::Tag => {
            let e = f.expression.trim();
            let tags = if e.is_empty() || e == "*" {
                Vec::new()
            } else {
                e.split("||")
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .collect()
            };
            (if e.is_empty() { "*" } else { e }, tags, "TAG")
        }
    };
    SubscriptionBody {
        class_filter_mode: false,
        topic,
        sub_string,
        code_set: tags_set.iter().map(|t| java_hash(t)).collect(),
        tags_set,
        sub_version: 0,
        expression_type,
    }
}

/// RocketMQ's `ConsumerConnection`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConsumerConnectionBody<'a> {
    connection_set: Vec<ConnectionBody<'a>>,
    subscription_table: BTreeMap<&'a str, SubscriptionBody<'a>>,
    consume_type: &'static str,
    message_model: &'static str,
    consume_from_where: &'static str,
}

fn json<T: Serialize>(r: &RemotingCommand, body: &T) -> Answer {
    let body = serde_json::to_vec(body).map_err(|e| RequestError::Body {
        what: e.to_string(),
    })?;
    Ok(RemotingCommand::response_to(r, rs::SUCCESS).with_body(body))
}

/// GET_CONSUMER_CONNECTION_LIST: the group's clients on this node; CONSUMER_NOT_ONLINE
/// when it has none.
pub(super) fn consumer_connection(service: &BrokerService, r: &RemotingCommand) -> Answer {
    let cc = service.consumer_connection(r.required("consumerGroup")?)?;
    json(
        r,
        &ConsumerConnectionBody {
            connection_set: cc.connections.iter().map(ConnectionBody::of).collect(),
            subscription_table: cc
                .subscriptions
                .iter()
                .map(|(t, f)| (t.as_str(), subscription_body(t, f)))
                .collect(),
            consume_type: cc.mode.consume_type.name(),
            message_model: cc.mode.message_model.name(),
            consume_from_where: cc.mode.consume_from_where.name(),
        },
    )
}

/// RocketMQ's `ProducerConnection`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProducerConnectionBody<'a> {
    connection_set: Vec<ConnectionBody<'a>>,
}

/// GET_PRODUCER_CONNECTION_LIST: the group's clients on this node; SYSTEM_ERROR when it has
/// none, as RocketMQ answers.
pub(super) fn producer_connection(service: &BrokerService, r: &RemotingCommand) -> Answer {
    let producers = service.producer_connection(r.required("producerGroup")?)?;
    json(
        r,
        &ProducerConnectionBody {
            connection_set: producers.iter().map(ConnectionBody::of).collect(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_codes_are_javas_string_hashes() {
        // "TagA".hashCode() in Java.
        assert_eq!(java_hash("TagA"), 2_598_919);
        assert_eq!(java_hash(""), 0);
        let f = Filter {
            kind: FilterKind::Tag,
            expression: "TagA || TagB".into(),
        };
        let body = serde_json::to_value(subscription_body("T", &f)).unwrap();
        assert_eq!(body["tagsSet"], serde_json::json!(["TagA", "TagB"]));
        assert_eq!(body["subString"], "TagA || TagB");
        assert_eq!(body["expressionType"], "TAG");
    }
}
