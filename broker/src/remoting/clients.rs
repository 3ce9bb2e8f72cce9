//! The 4.x clients connected to this node: heartbeats with their groups and subscriptions
//! (HEART_BEAT 34, UNREGISTER_CLIENT 35), a group's members (GET_CONSUMER_LIST_BY_GROUP 38,
//! and NOTIFY_CONSUMER_IDS_CHANGED 40 to each member when they change), and the queue locks
//! of orderly consumers (LOCK_BATCH_MQ 41, UNLOCK_BATCH_MQ 42).
//!
//! A connection's clients are registered in the service's [`Clients`](crate::service::Clients)
//! (per node and not replicated, as in RocketMQ: clients heartbeat every 30 s to the brokers of
//! their routes, so a new leader knows them within one round): one session per connection,
//! opened at its first heartbeat and closed with it. What the service tells the session
//! (membership changes, transaction checks) goes out on the connection.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use raftmq_remoting::code::{request as rq, response as rs};
use raftmq_remoting::{ExtFields, RemotingCommand};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::request::{Answer, Connection, RequestError};
use crate::service::{
    BrokerService, ClientInfo, ClientNotice, ClientProtocol, ClientSession, ConsumeFromWhere,
    ConsumeMode, ConsumeType, Filter, FilterKind, GroupConsumer, MessageModel, Registration,
    version_name,
};

/// A queue lock not renewed for this long is free (RocketMQ's `rebalance.lockMaxLiveTime`).
const LOCK_EXPIRY: Duration = Duration::from_secs(60);
/// Notices that may wait for a connection's writer.
const NOTICES_LEN: usize = 64;

/// RocketMQ's `HeartbeatData` (the parts the broker uses).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HeartbeatData {
    #[serde(rename = "clientID")]
    client_id: String,
    #[serde(default)]
    consumer_data_set: Vec<ConsumerData>,
    #[serde(default)]
    producer_data_set: Vec<ProducerData>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProducerData {
    group_name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConsumerData {
    group_name: String,
    /// A name (Java, ali-ons) or an ordinal (the C++ client).
    #[serde(default)]
    consume_type: serde_json::Value,
    #[serde(default)]
    message_model: serde_json::Value,
    #[serde(default)]
    consume_from_where: serde_json::Value,
    #[serde(default)]
    subscription_data_set: Vec<SubscriptionData>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionData {
    topic: String,
    #[serde(default)]
    sub_string: String,
    #[serde(default)]
    expression_type: Option<String>,
}

/// A RocketMQ enum as a heartbeat carries it: its name or its ordinal.
fn rocketmq_enum<T>(
    value: &serde_json::Value,
    from_name: fn(&str) -> Option<T>,
    from_ordinal: fn(u64) -> Option<T>,
) -> Option<T> {
    match value {
        serde_json::Value::String(name) => from_name(name),
        serde_json::Value::Number(n) => n.as_u64().and_then(from_ordinal),
        _ => None,
    }
}

impl ConsumerData {
    fn mode(&self) -> ConsumeMode {
        let default = ConsumeMode::default();
        ConsumeMode {
            consume_type: rocketmq_enum(
                &self.consume_type,
                ConsumeType::from_name,
                ConsumeType::from_ordinal,
            )
            .unwrap_or(default.consume_type),
            message_model: rocketmq_enum(
                &self.message_model,
                MessageModel::from_name,
                MessageModel::from_ordinal,
            )
            .unwrap_or(default.message_model),
            consume_from_where: rocketmq_enum(
                &self.consume_from_where,
                ConsumeFromWhere::from_name,
                ConsumeFromWhere::from_ordinal,
            )
            .unwrap_or(default.consume_from_where),
        }
    }

    fn group_consumer(self) -> GroupConsumer {
        let mode = self.mode();
        let subscriptions = self
            .subscription_data_set
            .into_iter()
            .map(|s| {
                let kind = match s.expression_type.as_deref() {
                    Some(t) if t.eq_ignore_ascii_case("SQL92") => FilterKind::Sql,
                    _ => FilterKind::Tag,
                };
                let filter = Filter {
                    kind,
                    expression: s.sub_string,
                };
                (s.topic, filter)
            })
            .collect();
        GroupConsumer {
            subscriptions,
            mode,
        }
    }
}

impl HeartbeatData {
    fn registration(self) -> Registration {
        Registration {
            producer_groups: self
                .producer_data_set
                .into_iter()
                .map(|p| p.group_name)
                .collect(),
            consumer_groups: self
                .consumer_data_set
                .into_iter()
                .map(|c| (c.group_name.clone(), c.group_consumer()))
                .collect(),
        }
    }
}

/// A message queue in a lock request (RocketMQ's `MessageQueue`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageQueue {
    topic: String,
    broker_name: String,
    queue_id: u32,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LockBatchRequest {
    // RocketMQ's field names: consumerGroup, clientId, mqSet.
    consumer_group: String,
    client_id: String,
    #[serde(default)]
    mq_set: BTreeSet<MessageQueue>,
}

#[derive(Debug, Serialize)]
struct LockBatchResponse {
    #[serde(rename = "lockOKMQSet")]
    lock_ok_mq_set: BTreeSet<MessageQueue>,
}

#[derive(Debug, Default)]
struct Tables {
    /// Open connection id → its client's session in the service's registry, from its first
    /// heartbeat on.
    sessions: HashMap<u64, Option<ClientSession>>,
    /// (group, topic, queue) → (client id, last renewed).
    locks: BTreeMap<(String, String, u32), (String, Instant)>,
}

/// The sessions of this node's 4.x connections, and the queue locks of their consumers.
#[derive(Debug, Default)]
pub(crate) struct ClientTable {
    tables: Mutex<Tables>,
}

impl ClientTable {
    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// HEART_BEAT: registers the connection's client with its producer and consumer groups
    /// (the service creates a consumer group's record and retry topic on first use, and tells
    /// a group that gains a member).
    pub(super) async fn heartbeat(
        &self,
        r: &RemotingCommand,
        conn: &Connection,
        service: &BrokerService,
    ) -> Answer {
        let data: HeartbeatData =
            serde_json::from_slice(&r.body).map_err(|e| RequestError::Body {
                what: format!("heartbeat body is not RocketMQ's HeartbeatData JSON: {e}"),
            })?;
        for c in &data.consumer_data_set {
            service.consumer_heartbeat(&c.group_name).await?;
        }
        let info = ClientInfo {
            client_id: data.client_id.clone(),
            addr: conn.peer.to_string(),
            language: r.language.name().to_string(),
            version: version_name(r.version),
            protocol: ClientProtocol::Remoting,
        };
        let mut t = self.tables();
        // A heartbeat still in progress when its connection closed registers nothing.
        if let Some(slot) = t.sessions.get_mut(&conn.id) {
            let session = slot.get_or_insert_with(|| {
                tracing::info!(client = %info.client_id, peer = %conn.peer, "4.x client registered");
                let (tx, rx) = mpsc::channel(NOTICES_LEN);
                forward_notices(service.clone(), conn.clone(), rx);
                service.clients().open(info, tx)
            });
            session.register(data.registration());
        }
        Ok(RemotingCommand::response_to(r, rs::SUCCESS))
    }

    /// A connection opened: its client registers with its first heartbeat.
    pub(super) fn connection_opened(&self, id: u64) {
        self.tables().sessions.insert(id, None);
    }

    /// A connection closed: its client leaves its groups.
    pub(super) fn connection_closed(&self, id: u64) {
        let session = self.tables().sessions.remove(&id);
        drop(session); // outside the lock: the registry tells the groups
    }

    /// LOCK_BATCH_MQ: locks the queues that are free, expired or already the client's.
    pub(super) fn lock(&self, r: &RemotingCommand) -> Answer {
        let ask: LockBatchRequest =
            serde_json::from_slice(&r.body).map_err(|e| RequestError::Body {
                what: format!("lock body is not RocketMQ's LockBatchRequestBody JSON: {e}"),
            })?;
        let now = Instant::now();
        let mut ok = BTreeSet::new();
        {
            let mut t = self.tables();
            for mq in ask.mq_set {
                let key = (ask.consumer_group.clone(), mq.topic.clone(), mq.queue_id);
                let free = t.locks.get(&key).is_none_or(|(holder, at)| {
                    *holder == ask.client_id || now.duration_since(*at) >= LOCK_EXPIRY
                });
                if free {
                    t.locks.insert(key, (ask.client_id.clone(), now));
                    ok.insert(mq);
                }
            }
        }
        let body = serde_json::to_vec(&LockBatchResponse { lock_ok_mq_set: ok }).map_err(|e| {
            RequestError::Body {
                what: e.to_string(),
            }
        })?;
        Ok(RemotingCommand::response_to(r, rs::SUCCESS).with_body(body))
    }

    /// UNLOCK_BATCH_MQ: releases the client's locks on the queues.
    pub(super) fn unlock(&self, r: &RemotingCommand) -> Answer {
        let ask: LockBatchRequest =
            serde_json::from_slice(&r.body).map_err(|e| RequestError::Body {
                what: format!("unlock body is not RocketMQ's UnlockBatchRequestBody JSON: {e}"),
            })?;
        let mut t = self.tables();
        for mq in ask.mq_set {
            let key = (ask.consumer_group.clone(), mq.topic, mq.queue_id);
            if t.locks.get(&key).is_some_and(|(h, _)| *h == ask.client_id) {
                t.locks.remove(&key);
            }
        }
        Ok(RemotingCommand::response_to(r, rs::SUCCESS))
    }
}

/// UNREGISTER_CLIENT: the client leaves its producer and/or consumer group.
pub(super) fn unregister(r: &RemotingCommand, service: &BrokerService) -> Answer {
    let client = r.required("clientID")?;
    let group = |name| r.field(name).filter(|g| !g.is_empty());
    let (producer, consumer) = (group("producerGroup"), group("consumerGroup"));
    tracing::info!(%client, ?producer, ?consumer, "4.x client unregistered");
    service.clients().unregister(client, producer, consumer);
    Ok(RemotingCommand::response_to(r, rs::SUCCESS))
}

/// GET_CONSUMER_LIST_BY_GROUP.
pub(super) fn consumer_list(r: &RemotingCommand, service: &BrokerService) -> Answer {
    let group = r.required("consumerGroup")?;
    let ids = service.clients().rebalance_members(group);
    if ids.is_empty() {
        return Ok(RemotingCommand::response_to(r, rs::SYSTEM_ERROR)
            .with_remark(format!("no consumer for this group, {group}")));
    }
    let body = serde_json::to_vec(&raftmq_remoting::route::ConsumerIdList {
        consumer_id_list: ids,
    })
    .map_err(|e| RequestError::Body {
        what: e.to_string(),
    })?;
    Ok(RemotingCommand::response_to(r, rs::SUCCESS).with_body(body))
}

/// Writes out what the service tells a connection's session, until the session is gone:
/// membership changes as NOTIFY_CONSUMER_IDS_CHANGED (unless the group's
/// `notifyConsumerIdsChangedEnable` is false), checks as CHECK_TRANSACTION_STATE (both oneway,
/// best effort).
fn forward_notices(
    service: BrokerService,
    conn: Connection,
    mut notices: mpsc::Receiver<ClientNotice>,
) {
    tokio::spawn(async move {
        while let Some(notice) = notices.recv().await {
            let request = match notice {
                ClientNotice::ConsumerIdsChanged { group }
                    if !service.notifies_consumer_ids_changed(&group) =>
                {
                    continue;
                }
                ClientNotice::ConsumerIdsChanged { group } => {
                    let mut fields = ExtFields::new();
                    fields.insert("consumerGroup".into(), group);
                    let mut note =
                        RemotingCommand::request(rq::NOTIFY_CONSUMER_IDS_CHANGED, fields);
                    note.mark_oneway();
                    note
                }
                ClientNotice::CheckTransaction(check) => {
                    super::transaction::check_request(&service, &check)
                }
            };
            if conn.outbox.send(request).await.is_err() {
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_replies_use_rocketmqs_field_name() {
        let body = serde_json::to_string(&LockBatchResponse {
            lock_ok_mq_set: BTreeSet::new(),
        })
        .expect("serializes");
        assert_eq!(body, r#"{"lockOKMQSet":[]}"#);
    }

    #[test]
    fn heartbeats_of_both_clients_parse() {
        let cpp = r#"{"clientID":"127.0.0.1@1","consumerDataSet":[{"consumeFromWhere":0,"consumeType":1,"groupName":"G","messageModel":1,"subscriptionDataSet":[{"codeSet":[],"subString":"*","subVersion":1,"tagsSet":[],"topic":"T"}],"unitMode":false}],"producerDataSet":[]}"#;
        let node = r#"{"clientID":"n@2","producerDataSet":[{"groupName":"P"}],"consumerDataSet":[{"groupName":"G","consumeType":"CONSUME_PASSIVELY","messageModel":"CLUSTERING","consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","subscriptionDataSet":[{"topic":"T","subString":"TagA || TagB","classFilterMode":false,"tagsSet":["TagA","TagB"],"codeSet":[],"subVersion":5}],"unitMode":false}]}"#;
        for body in [cpp, node] {
            let h: HeartbeatData = serde_json::from_str(body).expect("parses");
            assert_eq!(h.consumer_data_set[0].group_name, "G");
            assert_eq!(h.consumer_data_set[0].subscription_data_set[0].topic, "T");
        }
    }
}
