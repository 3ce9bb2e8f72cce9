//! The 4.x clients connected to this node: heartbeats with their groups and subscriptions
//! (HEART_BEAT 34, UNREGISTER_CLIENT 35), a group's members (GET_CONSUMER_LIST_BY_GROUP 38,
//! and NOTIFY_CONSUMER_IDS_CHANGED 40 to each member when they change), and the queue locks
//! of orderly consumers (LOCK_BATCH_MQ 41, UNLOCK_BATCH_MQ 42).
//!
//! This is per node and not replicated, as in RocketMQ: clients heartbeat every 30 s to the
//! brokers of their routes, so a new leader knows them within one round.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use raftmq_remoting::code::{request as rq, response as rs};
use raftmq_remoting::{ExtFields, RemotingCommand};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::request::{Answer, Connection, RequestError};
use crate::service::{BrokerService, CheckerGuard};

/// A client that has not sent a heartbeat for this long is gone (RocketMQ's
/// `channelExpiredTimeout`).
const CLIENT_EXPIRY: Duration = Duration::from_secs(120);
/// A queue lock not renewed for this long is free (RocketMQ's `rebalance.lockMaxLiveTime`).
const LOCK_EXPIRY: Duration = Duration::from_secs(60);

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
    #[serde(default)]
    subscription_data_set: Vec<SubscriptionData>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionData {
    topic: String,
    #[serde(default)]
    sub_string: String,
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

#[derive(Debug)]
struct Member {
    connection: Connection,
    seen: Instant,
    /// Topic → subscription expression.
    subscriptions: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct Tables {
    /// Group → client id → member.
    groups: BTreeMap<String, BTreeMap<String, Member>>,
    /// (group, topic, queue) → (client id, last renewed).
    locks: BTreeMap<(String, String, u32), (String, Instant)>,
    /// Connection id → its producer groups, registered to be asked about their open
    /// transactions while the connection lives.
    producers: BTreeMap<u64, (BTreeSet<String>, CheckerGuard)>,
}

/// Consumer groups and their members on this node.
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

    /// HEART_BEAT: records the client in each of its consumer groups; a group that gains a
    /// member tells its members.
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
            service.ensure_retry_topic(&c.group_name).await?;
        }
        let groups: BTreeSet<String> = data
            .producer_data_set
            .iter()
            .map(|p| p.group_name.clone())
            .collect();
        self.register_producer(groups, conn, service);
        let mut changed = Vec::new();
        {
            let mut t = self.tables();
            for c in data.consumer_data_set {
                let members = t.groups.entry(c.group_name.clone()).or_default();
                let subscriptions = c
                    .subscription_data_set
                    .into_iter()
                    .map(|s| (s.topic, s.sub_string))
                    .collect();
                let fresh = members
                    .insert(
                        data.client_id.clone(),
                        Member {
                            connection: conn.clone(),
                            seen: Instant::now(),
                            subscriptions,
                        },
                    )
                    .is_none();
                if fresh {
                    tracing::info!(group = %c.group_name, client = %data.client_id, peer = %conn.peer, "consumer joined");
                    changed.push(c.group_name);
                }
            }
        }
        for group in changed {
            self.notify(&group);
        }
        Ok(RemotingCommand::response_to(r, rs::SUCCESS))
    }

    /// Registers a connection's producer groups for transaction checks (again when they
    /// change).
    fn register_producer(
        &self,
        groups: BTreeSet<String>,
        conn: &Connection,
        service: &BrokerService,
    ) {
        let mut t = self.tables();
        if groups.is_empty() || t.producers.get(&conn.id).is_some_and(|(g, _)| *g == groups) {
            return;
        }
        let (tx, rx) = mpsc::channel(64);
        let guard = service
            .checkers()
            .register(Vec::new(), groups.iter().cloned().collect(), tx);
        super::transaction::forward_checks(service.clone(), conn.clone(), rx);
        t.producers.insert(conn.id, (groups, guard));
    }

    /// UNREGISTER_CLIENT: the client leaves its consumer group.
    pub(super) fn unregister(&self, r: &RemotingCommand) -> Answer {
        let client = r.required("clientID")?;
        if let Some(group) = r.field("consumerGroup").filter(|g| !g.is_empty()) {
            let removed = self
                .tables()
                .groups
                .get_mut(group)
                .and_then(|m| m.remove(client))
                .is_some();
            if removed {
                tracing::info!(%group, %client, "consumer left");
                self.notify(group);
            }
        }
        Ok(RemotingCommand::response_to(r, rs::SUCCESS))
    }

    /// A connection closed: its clients leave their groups.
    pub(super) fn connection_closed(&self, id: u64) {
        let mut changed = Vec::new();
        {
            let mut t = self.tables();
            t.producers.remove(&id);
            for (group, members) in &mut t.groups {
                let before = members.len();
                members.retain(|_, m| m.connection.id != id);
                if members.len() != before {
                    changed.push(group.clone());
                }
            }
        }
        for group in changed {
            self.notify(&group);
        }
    }

    /// The live client ids of `group`, sorted.
    fn members(&self, group: &str) -> Vec<String> {
        let mut t = self.tables();
        let Some(members) = t.groups.get_mut(group) else {
            return Vec::new();
        };
        members.retain(|_, m| m.seen.elapsed() < CLIENT_EXPIRY);
        members.keys().cloned().collect()
    }

    /// GET_CONSUMER_LIST_BY_GROUP.
    pub(super) fn consumer_list(&self, r: &RemotingCommand) -> Answer {
        let group = r.required("consumerGroup")?;
        let ids = self.members(group);
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

    /// The subscription expression `group` registered for `topic`, if any.
    pub(super) fn subscription(&self, group: &str, topic: &str) -> Option<String> {
        let t = self.tables();
        t.groups
            .get(group)?
            .values()
            .find_map(|m| m.subscriptions.get(topic).cloned())
    }

    /// Tells every member of `group` that its members changed (oneway, best effort).
    fn notify(&self, group: &str) {
        let outboxes: Vec<_> = self
            .tables()
            .groups
            .get(group)
            .map(|m| m.values().map(|m| m.connection.outbox.clone()).collect())
            .unwrap_or_default();
        for outbox in outboxes {
            let mut fields = ExtFields::new();
            fields.insert("consumerGroup".into(), group.to_string());
            let mut note = RemotingCommand::request(rq::NOTIFY_CONSUMER_IDS_CHANGED, fields);
            note.mark_oneway();
            let _ = outbox.try_send(note);
        }
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
