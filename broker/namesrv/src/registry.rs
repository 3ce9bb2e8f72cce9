//! [`Registry`]: the brokers registered at this NameServer and everything derived from them
//! (routes, cluster info, topic lists). A pure data structure: no sockets, no clock — the caller
//! passes `now` — so that expiry and failover are tested without waiting.
//!
//! The only ground state is one `Node` per broker address, holding what its last registration
//! said (group, id, HA address, topic table), when it came and over which connection. Groups,
//! masters and routes are computed from the nodes on each query, so there is no second table to
//! keep consistent with the first (RocketMQ's `RouteInfoManager` keeps five).
//!
//! Invariant: within a group (`brokerName`) no two nodes have the same broker id. A registration
//! at an id another address holds replaces that address — for id 0 this is a new Raft leader
//! taking over the master slot — and an address registering under a new id moves (RocketMQ's
//! slave → master switch).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use raftmq_remoting::route::{
    BrokerData, ClusterInfo, DataVersion, MASTER_ID, QueueData, TopicConfig,
    TopicConfigSerializeWrapper, TopicList, TopicRouteData,
};

/// How long a broker stays registered without a heartbeat when it does not say (RocketMQ's
/// `BROKER_CHANNEL_EXPIRED_TIME`).
pub const HEARTBEAT_TIMEOUT_DEFAULT: Duration = Duration::from_millis(120_000);

/// The most broker addresses registered at once; a new address beyond it is refused. Far above
/// any real deployment, it bounds what a misbehaving client can make the NameServer hold.
pub const BROKERS_MAX: usize = 4096;

/// The connection a registration arrived on; all its brokers go when it closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

/// One REGISTER_BROKER request, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// `clusterName`.
    pub cluster: String,
    /// `brokerName`: the group.
    pub broker_name: String,
    /// `brokerAddr`: `ip:port` clients dial.
    pub broker_addr: String,
    /// `brokerId`: [`MASTER_ID`] for the master (the Raft leader).
    pub broker_id: u64,
    /// `haServerAddr`.
    pub ha_server_addr: String,
    /// `heartbeatTimeoutMillis`, or [`HEARTBEAT_TIMEOUT_DEFAULT`].
    pub heartbeat_timeout: Duration,
    /// `raftTerm` (RaftMQ brokers): the Raft term in which a master registers. A master of an
    /// older term never takes the slot of one of a newer term (a leader cut off by a partition
    /// still believes it leads until it hears of the new one).
    pub term: Option<u64>,
    /// The topic table; `None` (an empty body) keeps the one registered before.
    pub topics: Option<TopicConfigSerializeWrapper>,
    /// The connection it came over.
    pub connection: ConnectionId,
}

/// What a registration answers: the group's master after it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Registered {
    /// The master's address, empty when the group has none.
    pub master_addr: String,
    /// The master's HA address, empty when the group has none.
    pub ha_server_addr: String,
}

/// A registration that cannot be taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// [`BROKERS_MAX`] addresses are registered already.
    #[error("{count} brokers are registered, the limit: {addr} refused")]
    Full {
        /// The refused address.
        addr: String,
        /// How many are registered.
        count: usize,
    },
    /// A master registration of an older Raft term than the group's current master.
    #[error(
        "{addr} registers as master of {broker_name} in term {term}, but {master} is its \
         master in term {master_term}: refused (a stale leader)"
    )]
    StaleMaster {
        /// The group.
        broker_name: String,
        /// The refused address.
        addr: String,
        /// Its term.
        term: u64,
        /// The current master.
        master: String,
        /// The current master's term.
        master_term: u64,
    },
}

/// Why a node left the registry (for its log line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoveReason {
    /// It unregistered.
    Unregistered,
    /// Its connection closed.
    ConnectionClosed,
    /// No heartbeat within its timeout.
    Expired,
    /// Another address registered at its group and id.
    Replaced,
}

/// One registered broker address.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Node {
    cluster: String,
    broker_name: String,
    broker_id: u64,
    ha_server_addr: String,
    topics: BTreeMap<String, TopicConfig>,
    data_version: DataVersion,
    last_seen: Instant,
    heartbeat_timeout: Duration,
    connection: ConnectionId,
    term: Option<u64>,
}

/// A group as derived from its nodes.
#[derive(Debug)]
struct Group<'a> {
    /// Broker id → (address, node), in id order; the master (if any) first.
    nodes: BTreeMap<u64, (&'a str, &'a Node)>,
}

impl<'a> Group<'a> {
    /// The node whose topic table and cluster speak for the group: the master, else the
    /// lowest id. A group exists only with a node, so there always is one.
    fn speaker(&self) -> Option<&'a Node> {
        self.nodes.values().next().map(|(_, node)| *node)
    }

    fn broker_data(&self, broker_name: &str) -> BrokerData {
        BrokerData {
            cluster: self
                .speaker()
                .map(|n| n.cluster.clone())
                .unwrap_or_default(),
            broker_name: broker_name.to_string(),
            broker_addrs: self
                .nodes
                .iter()
                .map(|(id, (addr, _))| (*id, (*addr).to_string()))
                .collect(),
        }
    }
}

/// The registered brokers.
#[derive(Debug, Default)]
pub struct Registry {
    /// By broker address. Invariant: (broker_name, broker_id) is unique among the values.
    nodes: BTreeMap<String, Node>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// How many broker addresses are registered.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no broker is registered.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Takes a registration (a heartbeat when nothing changed) at `now`.
    ///
    /// # Errors
    /// [`RegisterError::Full`] for a new address beyond [`BROKERS_MAX`].
    pub fn register(
        &mut self,
        registration: Registration,
        now: Instant,
    ) -> Result<Registered, RegisterError> {
        let Registration {
            cluster,
            broker_name,
            broker_addr,
            broker_id,
            ha_server_addr,
            heartbeat_timeout,
            topics,
            connection,
            term,
        } = registration;
        if !self.nodes.contains_key(&broker_addr) && self.nodes.len() >= BROKERS_MAX {
            return Err(RegisterError::Full {
                addr: broker_addr,
                count: self.nodes.len(),
            });
        }
        if broker_id == MASTER_ID {
            self.refuse_stale_master(&broker_name, &broker_addr, term)?;
        }
        self.evict_slot_holder(&broker_name, broker_id, &broker_addr);
        let previous = self.nodes.remove(&broker_addr);
        log_registration(
            previous.as_ref(),
            &cluster,
            &broker_name,
            &broker_addr,
            broker_id,
        );
        let (topics, data_version) = match (topics, previous) {
            (Some(wrapper), _) => (wrapper.topic_config_table, wrapper.data_version),
            (None, Some(previous)) if previous.broker_name == broker_name => {
                (previous.topics, previous.data_version)
            }
            (None, _) => (BTreeMap::new(), DataVersion::default()),
        };
        let node = Node {
            cluster,
            broker_name: broker_name.clone(),
            broker_id,
            ha_server_addr,
            topics,
            data_version,
            last_seen: now,
            heartbeat_timeout,
            connection,
            term,
        };
        self.nodes.insert(broker_addr, node);
        debug_assert!(
            self.slots_unique(&broker_name),
            "two nodes of {broker_name} share an id: {self:?}"
        );
        Ok(self.master_of(&broker_name))
    }

    /// Refuses a master registration whose term is older than the current master's (both
    /// known).
    fn refuse_stale_master(
        &self,
        broker_name: &str,
        broker_addr: &str,
        term: Option<u64>,
    ) -> Result<(), RegisterError> {
        let Some(term) = term else { return Ok(()) };
        let current = self.nodes.iter().find(|(addr, n)| {
            n.broker_name == broker_name && n.broker_id == MASTER_ID && addr.as_str() != broker_addr
        });
        match current {
            Some((master, n)) if n.term.is_some_and(|t| t > term) => {
                Err(RegisterError::StaleMaster {
                    broker_name: broker_name.to_string(),
                    addr: broker_addr.to_string(),
                    term,
                    master: master.clone(),
                    master_term: n.term.unwrap_or_default(),
                })
            }
            _ => Ok(()),
        }
    }

    /// Removes whichever other address holds `broker_id` in `broker_name`.
    fn evict_slot_holder(&mut self, broker_name: &str, broker_id: u64, broker_addr: &str) {
        let holder = self
            .nodes
            .iter()
            .find(|(addr, n)| {
                n.broker_name == broker_name && n.broker_id == broker_id && *addr != broker_addr
            })
            .map(|(addr, _)| addr.clone());
        if let Some(old_addr) = holder {
            if broker_id == MASTER_ID {
                tracing::info!(
                    broker = broker_name,
                    old_master = %old_addr,
                    new_master = broker_addr,
                    "master changed"
                );
            }
            self.remove(&old_addr, RemoveReason::Replaced);
        }
    }

    /// The group's master and its HA address, empty when it has none.
    fn master_of(&self, broker_name: &str) -> Registered {
        self.nodes
            .iter()
            .find(|(_, n)| n.broker_name == broker_name && n.broker_id == MASTER_ID)
            .map(|(addr, n)| Registered {
                master_addr: addr.clone(),
                ha_server_addr: n.ha_server_addr.clone(),
            })
            .unwrap_or_default()
    }

    /// UNREGISTER_BROKER: removes `broker_addr` if it is registered as `broker_id` of
    /// `broker_name` (a late unregister of an address that moved since is ignored). Returns
    /// whether it was removed.
    pub fn unregister(&mut self, broker_name: &str, broker_addr: &str, broker_id: u64) -> bool {
        let matches = self
            .nodes
            .get(broker_addr)
            .is_some_and(|n| n.broker_name == broker_name && n.broker_id == broker_id);
        if matches {
            self.remove(broker_addr, RemoveReason::Unregistered);
        }
        matches
    }

    /// The connection closed: removes every broker whose last registration came over it
    /// (RocketMQ's `onChannelDestroy`). Returns their addresses.
    pub fn connection_closed(&mut self, connection: ConnectionId) -> Vec<String> {
        let gone: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.connection == connection)
            .map(|(addr, _)| addr.clone())
            .collect();
        for addr in &gone {
            self.remove(addr, RemoveReason::ConnectionClosed);
        }
        gone
    }

    /// Removes every broker whose last registration is older than its heartbeat timeout at
    /// `now` (RocketMQ's `scanNotActiveBroker`). Returns their addresses.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let gone: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, n)| now.saturating_duration_since(n.last_seen) > n.heartbeat_timeout)
            .map(|(addr, _)| addr.clone())
            .collect();
        for addr in &gone {
            self.remove(addr, RemoveReason::Expired);
        }
        gone
    }

    fn remove(&mut self, addr: &str, reason: RemoveReason) {
        let Some(node) = self.nodes.remove(addr) else {
            return;
        };
        let message = match reason {
            RemoveReason::Unregistered => "broker unregistered",
            RemoveReason::ConnectionClosed => "broker connection closed: broker removed",
            RemoveReason::Expired => "broker expired",
            RemoveReason::Replaced => "broker replaced by another address at its id",
        };
        tracing::info!(
            cluster = %node.cluster,
            broker = %node.broker_name,
            id = node.broker_id,
            addr,
            "{message}"
        );
        if !self
            .nodes
            .values()
            .any(|n| n.broker_name == node.broker_name)
        {
            tracing::info!(broker = %node.broker_name, "broker group has no node left");
        }
    }

    /// Groups by `brokerName`, derived from the nodes.
    fn groups(&self) -> BTreeMap<&str, Group<'_>> {
        let mut groups: BTreeMap<&str, Group<'_>> = BTreeMap::new();
        for (addr, node) in &self.nodes {
            groups
                .entry(node.broker_name.as_str())
                .or_insert_with(|| Group {
                    nodes: BTreeMap::new(),
                })
                .nodes
                .insert(node.broker_id, (addr.as_str(), node));
        }
        groups
    }

    /// GET_ROUTEINFO_BY_TOPIC: the topic's queues in every group whose speaker (master, else
    /// lowest id) registered it, with every node of those groups; `None` if no group has it.
    pub fn route(&self, topic: &str) -> Option<TopicRouteData> {
        let mut route = TopicRouteData::default();
        for (broker_name, group) in self.groups() {
            let Some(config) = group.speaker().and_then(|n| n.topics.get(topic)) else {
                continue;
            };
            route.queue_datas.push(QueueData {
                broker_name: broker_name.to_string(),
                read_queue_nums: config.read_queue_nums,
                write_queue_nums: config.write_queue_nums,
                perm: config.perm,
                topic_sys_flag: config.topic_sys_flag,
            });
            route.broker_datas.push(group.broker_data(broker_name));
        }
        (!route.queue_datas.is_empty()).then_some(route)
    }

    /// GET_BROKER_CLUSTER_INFO.
    pub fn cluster_info(&self) -> ClusterInfo {
        let mut info = ClusterInfo::default();
        for (broker_name, group) in self.groups() {
            let data = group.broker_data(broker_name);
            info.cluster_addr_table
                .entry(data.cluster.clone())
                .or_default()
                .insert(broker_name.to_string());
            info.broker_addr_table.insert(broker_name.to_string(), data);
        }
        info
    }

    /// GET_ALL_TOPIC_LIST_FROM_NAMESERVER: every topic some group serves.
    pub fn all_topics(&self) -> TopicList {
        self.topics_where(|_| true)
    }

    /// GET_TOPICS_BY_CLUSTER: the topics of the groups in `cluster`.
    pub fn topics_of_cluster(&self, cluster: &str) -> TopicList {
        self.topics_where(|speaker| speaker.cluster == cluster)
    }

    fn topics_where(&self, keep: impl Fn(&Node) -> bool) -> TopicList {
        let topic_list: BTreeSet<String> = self
            .groups()
            .values()
            .filter_map(Group::speaker)
            .filter(|speaker| keep(speaker))
            .flat_map(|speaker| speaker.topics.keys().cloned())
            .collect();
        TopicList {
            topic_list,
            broker_addr: None,
        }
    }

    /// The invariant, for one group (checking all groups on every registration would make
    /// registering n brokers quadratic in debug builds).
    fn slots_unique(&self, broker_name: &str) -> bool {
        let members = self.nodes.values().filter(|n| n.broker_name == broker_name);
        let ids: BTreeSet<u64> = members.clone().map(|n| n.broker_id).collect();
        ids.len() == members.count()
    }
}

/// One info line per change a registration makes; a plain heartbeat logs at debug.
fn log_registration(
    previous: Option<&Node>,
    cluster: &str,
    broker_name: &str,
    addr: &str,
    id: u64,
) {
    match previous {
        None => tracing::info!(
            cluster,
            broker = broker_name,
            id,
            addr,
            "new broker registered"
        ),
        Some(p) if p.broker_name != broker_name || p.cluster != cluster => tracing::info!(
            cluster,
            broker = broker_name,
            id,
            addr,
            old_cluster = %p.cluster,
            old_broker = %p.broker_name,
            "broker moved to another group"
        ),
        Some(p) if p.broker_id != id => tracing::info!(
            cluster,
            broker = broker_name,
            addr,
            old_id = p.broker_id,
            new_id = id,
            "broker role changed"
        ),
        Some(_) => tracing::debug!(broker = broker_name, id, addr, "broker heartbeat"),
    }
}

#[cfg(test)]
mod tests;
