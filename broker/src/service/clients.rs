//! The clients connected to this node: who they are, their producer and consumer groups, and
//! how to reach them. Per node and not replicated, as in RocketMQ, where each broker knows the
//! channels connected to it: clients heartbeat to the nodes they use, so a node learns its
//! clients within one heartbeat round.
//!
//! Each protocol opens a [`ClientSession`] per client connection (a 4.x remoting connection at
//! its first HEART_BEAT, a 5.x Telemetry stream) and registers what the client says: a 4.x
//! heartbeat's producer and consumer data, a 5.x client's Settings (a producer's topics are
//! its producer groups, as RocketMQ's proxy registers them). Dropping the session (the
//! connection closed, the stream ended) removes the client; so do UNREGISTER_CLIENT and
//! NotifyClientTermination. A client not heard from (heartbeat, settings) for
//! [`CHANNEL_EXPIRED_TIMEOUT`] is not reported until it is heard from again.
//!
//! The registry answers `consumerConnection` and `producerConnection`, a 4.x group's members
//! for rebalancing (only 4.x consumers rebalance: a 5.x consumer pops from every queue), and
//! which producer to ask about an open transaction. What the broker tells a client goes down
//! its session's [`ClientNotice`] channel; the protocol that opened it writes it out.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::BrokerService;
use super::error::ServiceError;
use super::receive::Filter;
use crate::command::StoredMessage;

mod kinds;

pub use kinds::{
    ConsumeFromWhere, ConsumeType, MessageModel, grpc_version, version_name, version_ordinal,
};

/// A client not heard from for this long is gone (RocketMQ's `channelExpiredTimeout`).
pub const CHANNEL_EXPIRED_TIMEOUT: Duration = Duration::from_secs(120);

/// The API a client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientProtocol {
    /// RocketMQ 5 gRPC (`x-mq-*` headers, Telemetry).
    Grpc,
    /// RocketMQ 4.x remoting.
    Remoting,
}

/// Who a client is, as its connection tells (RocketMQ's `Connection`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientInfo {
    /// The client id (`clientID`, `x-mq-client-id`).
    pub client_id: String,
    /// The client's address as this node sees it (`ip:port`).
    pub addr: String,
    /// RocketMQ's language name (`JAVA`, `CPP`, …) as the client sent it.
    pub language: String,
    /// The client's version, as RocketMQ names versions when it is one ([`version_name`]).
    pub version: String,
    /// Its API.
    pub protocol: ClientProtocol,
}

/// How a client consumes in a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsumeMode {
    /// Push, pull or pop.
    pub consume_type: ConsumeType,
    /// Clustering or broadcasting.
    pub message_model: MessageModel,
    /// Where a new group starts.
    pub consume_from_where: ConsumeFromWhere,
}

impl Default for ConsumeMode {
    /// A 4.x push consumer's defaults.
    fn default() -> Self {
        ConsumeMode {
            consume_type: ConsumeType::Passively,
            message_model: MessageModel::Clustering,
            consume_from_where: ConsumeFromWhere::LastOffset,
        }
    }
}

/// A client's part in one consumer group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupConsumer {
    /// Topic → its filter.
    pub subscriptions: BTreeMap<String, Filter>,
    /// How it consumes.
    pub mode: ConsumeMode,
}

/// Everything a client registered; each heartbeat (4.x) or Settings (5.x) replaces it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Registration {
    /// Its producer groups (a 5.x producer: the topics it publishes).
    pub producer_groups: BTreeSet<String>,
    /// Consumer group → its part in it.
    pub consumer_groups: BTreeMap<String, GroupConsumer>,
}

/// A producer is asked whether to commit a half message.
#[derive(Clone, Debug)]
pub struct TransactionCheck {
    /// The transaction id (the id to end it with).
    pub transaction_id: String,
    /// The half message.
    pub message: StoredMessage,
    /// When it was stored (ms since the epoch).
    pub store_ms: u64,
    /// Its RocketMQ commit-log offset (`log index << 24 | position`), for 4.x message ids.
    pub commit_log_offset: u64,
}

/// What the broker tells a client.
#[derive(Clone, Debug)]
pub enum ClientNotice {
    /// The members of a consumer group it is in changed (4.x NOTIFY_CONSUMER_IDS_CHANGED).
    ConsumerIdsChanged {
        /// The group.
        group: String,
    },
    /// Asks a producer about an open transaction.
    CheckTransaction(Box<TransactionCheck>),
}

/// A consumer group's clients on this node (RocketMQ's `ConsumerConnection`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerConnection {
    /// Its clients, by client id and address.
    pub connections: Vec<ClientInfo>,
    /// Topic → filter, over all its clients (the latest heard-from client's wins a topic).
    pub subscriptions: BTreeMap<String, Filter>,
    /// The latest heard-from client's mode (RocketMQ keeps one per group, the last
    /// heartbeat's).
    pub mode: ConsumeMode,
}

#[derive(Debug)]
struct Entry {
    info: ClientInfo,
    seen: Instant,
    registration: Registration,
    notices: mpsc::Sender<ClientNotice>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.seen) < CHANNEL_EXPIRED_TIMEOUT
    }

    fn consumer(&self, group: &str) -> Option<&GroupConsumer> {
        self.registration.consumer_groups.get(group)
    }

    /// Whether this client rebalances in `group` (a 4.x consumer of it).
    fn rebalances_in(&self, group: &str) -> bool {
        self.info.protocol == ClientProtocol::Remoting
            && self.registration.consumer_groups.contains_key(group)
    }

    /// The consumer groups this client rebalances in (a 4.x client's).
    fn rebalancing_groups(&self) -> BTreeSet<String> {
        if self.info.protocol != ClientProtocol::Remoting {
            return BTreeSet::new();
        }
        self.registration.consumer_groups.keys().cloned().collect()
    }
}

type Entries = BTreeMap<u64, Entry>;

/// This node's clients.
#[derive(Debug, Default)]
pub struct Clients {
    next: AtomicU64,
    entries: Mutex<Entries>,
}

/// One client connection's place in [`Clients`]; dropping it removes the client.
#[derive(Debug)]
pub struct ClientSession {
    clients: Arc<Clients>,
    id: u64,
}

impl ClientSession {
    /// Replaces what the client registered, and counts as hearing from it.
    pub fn register(&self, registration: Registration) {
        self.clients
            .register_at(self.id, registration, Instant::now());
    }
}

impl Drop for ClientSession {
    fn drop(&mut self) {
        self.clients.close(self.id);
    }
}

/// Tells the live 4.x members of each of `groups` that its members changed.
fn notify_members(entries: &Entries, groups: &BTreeSet<String>, now: Instant) {
    for group in groups {
        let members = entries
            .values()
            .filter(|e| e.live(now) && e.rebalances_in(group));
        for member in members {
            // Best effort, as RocketMQ's oneway notification: a full channel drops it.
            let _ = member.notices.try_send(ClientNotice::ConsumerIdsChanged {
                group: group.clone(),
            });
        }
    }
}

impl Clients {
    fn entries(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens a session for a client connection; what the broker tells it arrives on
    /// `notices`. The client is reported once it registers.
    pub fn open(
        self: &Arc<Self>,
        info: ClientInfo,
        notices: mpsc::Sender<ClientNotice>,
    ) -> ClientSession {
        self.open_at(info, notices, Instant::now())
    }

    fn open_at(
        self: &Arc<Self>,
        info: ClientInfo,
        notices: mpsc::Sender<ClientNotice>,
        now: Instant,
    ) -> ClientSession {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let entry = Entry {
            info,
            seen: now,
            registration: Registration::default(),
            notices,
        };
        self.entries().insert(id, entry);
        ClientSession {
            clients: Arc::clone(self),
            id,
        }
    }

    /// A session's registration; a 4.x group that gains or loses the client is told.
    fn register_at(&self, id: u64, registration: Registration, now: Instant) {
        let mut entries = self.entries();
        let Some(entry) = entries.get_mut(&id) else {
            return; // terminated: the client said it is gone
        };
        let before = if entry.live(now) {
            entry.rebalancing_groups()
        } else {
            BTreeSet::new()
        };
        entry.registration = registration;
        entry.seen = now;
        let after = entry.rebalancing_groups();
        let changed = before.symmetric_difference(&after).cloned().collect();
        notify_members(&entries, &changed, now);
    }

    fn close(&self, id: u64) {
        let mut entries = self.entries();
        if let Some(gone) = entries.remove(&id) {
            tracing::debug!(client = %gone.info.client_id, addr = %gone.info.addr, "client gone");
            notify_members(&entries, &gone.rebalancing_groups(), Instant::now());
        }
    }

    /// A 5.x Heartbeat: the client is alive.
    pub fn heartbeat(&self, client_id: &str) {
        self.heartbeat_at(client_id, Instant::now());
    }

    fn heartbeat_at(&self, client_id: &str, now: Instant) {
        for e in self.entries().values_mut() {
            if e.info.client_id == client_id {
                e.seen = now;
            }
        }
    }

    /// A 5.x NotifyClientTermination: the client is gone, even while its streams live on.
    pub fn terminate(&self, client_id: &str) {
        self.entries().retain(|_, e| {
            !(e.info.protocol == ClientProtocol::Grpc && e.info.client_id == client_id)
        });
    }

    /// UNREGISTER_CLIENT: a 4.x client leaves a producer group, a consumer group or both.
    pub fn unregister(
        &self,
        client_id: &str,
        producer_group: Option<&str>,
        consumer_group: Option<&str>,
    ) {
        let now = Instant::now();
        let mut entries = self.entries();
        let mut left = BTreeSet::new();
        let of_client = entries.values_mut().filter(|e| {
            e.info.protocol == ClientProtocol::Remoting && e.info.client_id == client_id
        });
        for e in of_client {
            if let Some(group) = producer_group {
                e.registration.producer_groups.remove(group);
            }
            let removed =
                consumer_group.and_then(|group| e.registration.consumer_groups.remove_entry(group));
            if let Some((group, _)) = removed {
                left.insert(group);
            }
        }
        notify_members(&entries, &left, now);
    }

    /// The clients of consumer group `group`; `None` when none is live.
    pub fn consumer_connection(&self, group: &str) -> Option<ConsumerConnection> {
        self.consumer_connection_at(group, Instant::now())
    }

    fn consumer_connection_at(&self, group: &str, now: Instant) -> Option<ConsumerConnection> {
        let entries = self.entries();
        let mut members: Vec<(&Entry, &GroupConsumer)> = entries
            .values()
            .filter(|e| e.live(now))
            .filter_map(|e| e.consumer(group).map(|c| (e, c)))
            .collect();
        members.sort_by_key(|(e, _)| e.seen);
        let mode = members.last()?.1.mode;
        let mut subscriptions = BTreeMap::new();
        for (_, c) in &members {
            subscriptions.extend(c.subscriptions.clone());
        }
        let connections = sorted(members.iter().map(|(e, _)| e.info.clone()).collect());
        Some(ConsumerConnection {
            connections,
            subscriptions,
            mode,
        })
    }

    /// Live clients per producer group and per consumer group, sorted by group (the
    /// connection gauges).
    pub fn group_counts(&self) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
        let now = Instant::now();
        let entries = self.entries();
        let (mut producers, mut consumers) = (BTreeMap::new(), BTreeMap::new());
        for e in entries.values().filter(|e| e.live(now)) {
            for g in &e.registration.producer_groups {
                *producers.entry(g.clone()).or_insert(0) += 1;
            }
            for g in e.registration.consumer_groups.keys() {
                *consumers.entry(g.clone()).or_insert(0) += 1;
            }
        }
        (producers, consumers)
    }

    /// The live clients of producer group `group`, by client id and address.
    pub fn producer_connection(&self, group: &str) -> Vec<ClientInfo> {
        self.producer_connection_at(group, Instant::now())
    }

    fn producer_connection_at(&self, group: &str, now: Instant) -> Vec<ClientInfo> {
        let entries = self.entries();
        let producers = entries
            .values()
            .filter(|e| e.live(now) && e.registration.producer_groups.contains(group))
            .map(|e| e.info.clone())
            .collect();
        sorted(producers)
    }

    /// The client ids of `group`'s live 4.x consumers, sorted (GET_CONSUMER_LIST_BY_GROUP).
    pub fn rebalance_members(&self, group: &str) -> Vec<String> {
        let now = Instant::now();
        let entries = self.entries();
        let ids: BTreeSet<String> = entries
            .values()
            .filter(|e| e.live(now) && e.rebalances_in(group))
            .map(|e| e.info.client_id.clone())
            .collect();
        ids.into_iter().collect()
    }

    /// The expression a live 4.x consumer of `group` subscribed `topic` with.
    pub fn subscription(&self, group: &str, topic: &str) -> Option<String> {
        let now = Instant::now();
        let entries = self.entries();
        entries
            .values()
            .filter(|e| e.live(now) && e.info.protocol == ClientProtocol::Remoting)
            .find_map(|e| e.consumer(group)?.subscriptions.get(topic))
            .map(|f| f.expression.clone())
    }

    /// Where to ask about a half message of `topic` from producer group `group`: a live
    /// producer of the group, else a live 5.x producer that publishes the topic.
    pub(super) fn transaction_checker(
        &self,
        topic: &str,
        group: Option<&str>,
    ) -> Option<mpsc::Sender<ClientNotice>> {
        let now = Instant::now();
        let entries = self.entries();
        let live = || entries.values().filter(|e| e.live(now));
        let of_group =
            group.and_then(|g| live().find(|e| e.registration.producer_groups.contains(g)));
        of_group
            .or_else(|| {
                live().find(|e| {
                    e.info.protocol == ClientProtocol::Grpc
                        && e.registration.producer_groups.contains(topic)
                })
            })
            .map(|e| e.notices.clone())
    }
}

fn sorted(mut clients: Vec<ClientInfo>) -> Vec<ClientInfo> {
    clients.sort_by(|a, b| (&a.client_id, &a.addr).cmp(&(&b.client_id, &b.addr)));
    clients
}

impl BrokerService {
    /// The clients connected to this node.
    pub fn clients(&self) -> &Arc<Clients> {
        &self.clients
    }

    /// `consumerConnection`: the clients of consumer group `group` on this node.
    ///
    /// # Errors
    /// [`ServiceError::ConsumerNotOnline`] when none is connected here.
    #[tracing::instrument(level = "debug", skip(self))]
    pub fn consumer_connection(&self, group: &str) -> Result<ConsumerConnection, ServiceError> {
        self.clients
            .consumer_connection(group)
            .ok_or_else(|| ServiceError::ConsumerNotOnline {
                group: group.to_string(),
            })
    }

    /// `producerConnection`: the clients of producer group `group` on this node.
    ///
    /// # Errors
    /// [`ServiceError::ProducerNotOnline`] when none is connected here.
    #[tracing::instrument(level = "debug", skip(self))]
    pub fn producer_connection(&self, group: &str) -> Result<Vec<ClientInfo>, ServiceError> {
        let producers = self.clients.producer_connection(group);
        if producers.is_empty() {
            return Err(ServiceError::ProducerNotOnline {
                group: group.to_string(),
            });
        }
        Ok(producers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::FilterKind;

    fn info(id: &str, protocol: ClientProtocol) -> ClientInfo {
        ClientInfo {
            client_id: id.into(),
            addr: format!("127.0.0.1:{}", id.len()),
            language: "JAVA".into(),
            version: "V4_9_4".into(),
            protocol,
        }
    }

    fn consumer(group: &str, topic: &str, tags: &str) -> Registration {
        let filter = Filter {
            kind: FilterKind::Tag,
            expression: tags.into(),
        };
        let part = GroupConsumer {
            subscriptions: BTreeMap::from([(topic.to_string(), filter)]),
            mode: ConsumeMode::default(),
        };
        Registration {
            producer_groups: BTreeSet::new(),
            consumer_groups: BTreeMap::from([(group.to_string(), part)]),
        }
    }

    fn producer(group: &str) -> Registration {
        Registration {
            producer_groups: BTreeSet::from([group.to_string()]),
            ..Registration::default()
        }
    }

    fn ids(c: &ConsumerConnection) -> Vec<&str> {
        c.connections.iter().map(|c| c.client_id.as_str()).collect()
    }

    #[test]
    fn a_registered_consumer_is_reported_until_its_session_ends() {
        let clients = Arc::new(Clients::default());
        let t0 = Instant::now();
        let (tx, _rx) = mpsc::channel(4);
        let session = clients.open_at(info("c1", ClientProtocol::Grpc), tx, t0);
        assert_eq!(
            clients.consumer_connection_at("G", t0),
            None,
            "opened, not registered yet"
        );
        clients.register_at(session.id, consumer("G", "T", "TagA"), t0);
        let seen = clients.consumer_connection_at("G", t0).expect("online");
        assert_eq!(ids(&seen), ["c1"]);
        assert_eq!(seen.subscriptions["T"].expression, "TagA");
        assert_eq!(seen.mode.consume_type, ConsumeType::Passively);
        assert_eq!(clients.consumer_connection_at("Other", t0), None);
        drop(session);
        assert_eq!(
            clients.consumer_connection_at("G", t0),
            None,
            "stream ended"
        );
    }

    #[test]
    fn clients_expire_without_heartbeats_and_come_back_with_one() {
        let clients = Arc::new(Clients::default());
        let t0 = Instant::now();
        let (tx, _rx) = mpsc::channel(4);
        let session = clients.open_at(info("p1", ClientProtocol::Grpc), tx, t0);
        clients.register_at(session.id, producer("T"), t0);
        let almost = t0 + CHANNEL_EXPIRED_TIMEOUT - Duration::from_secs(1);
        assert_eq!(clients.producer_connection_at("T", almost).len(), 1);
        clients.heartbeat_at("p1", almost);
        let later = almost + CHANNEL_EXPIRED_TIMEOUT - Duration::from_secs(1);
        assert_eq!(
            clients.producer_connection_at("T", later).len(),
            1,
            "the heartbeat refreshed it"
        );
        let expired = almost + CHANNEL_EXPIRED_TIMEOUT;
        assert!(clients.producer_connection_at("T", expired).is_empty());
        clients.heartbeat_at("p1", expired);
        assert_eq!(clients.producer_connection_at("T", expired).len(), 1);
    }

    #[test]
    fn termination_and_unregister_remove_the_client() {
        let clients = Arc::new(Clients::default());
        let t0 = Instant::now();
        let (tx, _rx) = mpsc::channel(4);
        let grpc = clients.open_at(info("g1", ClientProtocol::Grpc), tx.clone(), t0);
        clients.register_at(grpc.id, consumer("G", "T", "*"), t0);
        let remoting = clients.open_at(info("r1", ClientProtocol::Remoting), tx, t0);
        let mut both = consumer("G", "T", "*");
        both.producer_groups.insert("P".into());
        clients.register_at(remoting.id, both, t0);
        clients.terminate("g1");
        let seen = clients.consumer_connection_at("G", t0).expect("r1 remains");
        assert_eq!(ids(&seen), ["r1"]);
        clients.register_at(grpc.id, consumer("G", "T", "*"), t0);
        assert_eq!(
            ids(&clients.consumer_connection_at("G", t0).unwrap()),
            ["r1"],
            "a terminated client's stream registers nothing"
        );
        clients.unregister("r1", Some("P"), None);
        assert!(clients.producer_connection_at("P", t0).is_empty());
        assert!(clients.consumer_connection_at("G", t0).is_some());
        clients.unregister("r1", None, Some("G"));
        assert_eq!(clients.consumer_connection_at("G", t0), None);
    }

    #[test]
    fn the_latest_heartbeat_sets_the_groups_mode_and_subscriptions_merge() {
        let clients = Arc::new(Clients::default());
        let t0 = Instant::now();
        let (tx, _rx) = mpsc::channel(4);
        let a = clients.open_at(info("a", ClientProtocol::Remoting), tx.clone(), t0);
        let b = clients.open_at(info("b", ClientProtocol::Grpc), tx, t0);
        clients.register_at(a.id, consumer("G", "T1", "x"), t0);
        let mut simple = consumer("G", "T2", "y");
        if let Some(part) = simple.consumer_groups.get_mut("G") {
            part.mode.consume_type = ConsumeType::Actively;
        }
        clients.register_at(b.id, simple, t0 + Duration::from_secs(1));
        let seen = clients
            .consumer_connection_at("G", t0 + Duration::from_secs(2))
            .unwrap();
        assert_eq!(ids(&seen), ["a", "b"]);
        assert_eq!(seen.subscriptions.keys().collect::<Vec<_>>(), ["T1", "T2"]);
        assert_eq!(seen.mode.consume_type, ConsumeType::Actively);
        assert_eq!(clients.rebalance_members("G"), ["a"], "5.x clients pop");
    }

    #[test]
    fn a_4x_group_is_told_when_its_members_change() {
        let clients = Arc::new(Clients::default());
        let t0 = Instant::now();
        let (tx_a, mut rx_a) = mpsc::channel(4);
        let (tx_b, _rx_b) = mpsc::channel(4);
        let a = clients.open_at(info("a", ClientProtocol::Remoting), tx_a, t0);
        clients.register_at(a.id, consumer("G", "T", "*"), t0);
        assert!(matches!(
            rx_a.try_recv(),
            Ok(ClientNotice::ConsumerIdsChanged { group }) if group == "G"
        ));
        clients.register_at(a.id, consumer("G", "T", "*"), t0);
        assert!(
            rx_a.try_recv().is_err(),
            "a repeated heartbeat changes nothing"
        );
        let b = clients.open_at(info("b", ClientProtocol::Remoting), tx_b, t0);
        clients.register_at(b.id, consumer("G", "T", "*"), t0);
        assert!(rx_a.try_recv().is_ok(), "b joined");
        drop(b);
        assert!(rx_a.try_recv().is_ok(), "b left");
    }

    #[test]
    fn checks_go_to_the_group_else_to_a_5x_publisher_of_the_topic() {
        let clients = Arc::new(Clients::default());
        let t0 = Instant::now();
        let (tx_4, _rx_4) = mpsc::channel(4);
        let (tx_5, _rx_5) = mpsc::channel(4);
        let four = clients.open_at(info("four", ClientProtocol::Remoting), tx_4.clone(), t0);
        clients.register_at(four.id, producer("PG"), t0);
        let five = clients.open_at(info("five", ClientProtocol::Grpc), tx_5.clone(), t0);
        clients.register_at(five.id, producer("T"), t0);
        let to = |topic, group| clients.transaction_checker(topic, group);
        assert!(to("T", Some("PG")).unwrap().same_channel(&tx_4));
        assert!(to("T", None).unwrap().same_channel(&tx_5));
        assert!(to("T", Some("Unknown")).unwrap().same_channel(&tx_5));
        assert!(to("PG", None).is_none(), "a 4.x group is not a topic");
        drop(five);
        assert!(to("T", None).is_none());
    }
}
