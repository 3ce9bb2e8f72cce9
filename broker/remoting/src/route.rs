//! What a NameServer stores and serves, in RocketMQ's JSON shapes (field names as RocketMQ's
//! fastjson writes them).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// The broker id of a group's master; slaves have other ids.
pub const MASTER_ID: u64 = 0;
/// Queue permission bits (RocketMQ's `PermName`).
pub const PERM_READ: u32 = 1 << 2;
/// Write permission.
pub const PERM_WRITE: u32 = 1 << 1;

/// One group's queues of a topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueData {
    /// The group (`brokerName`).
    pub broker_name: String,
    /// Readable queues.
    pub read_queue_nums: u32,
    /// Writable queues.
    pub write_queue_nums: u32,
    /// Permission bits.
    pub perm: u32,
    /// RocketMQ's topic sys flag (0).
    #[serde(default)]
    pub topic_sys_flag: u32,
}

/// One group's nodes: broker id → address, the master at [`MASTER_ID`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokerData {
    /// `brokerClusterName`.
    pub cluster: String,
    /// `brokerName`.
    pub broker_name: String,
    /// Broker id → `ip:port`.
    pub broker_addrs: BTreeMap<u64, String>,
}

/// A topic's route (RocketMQ's `TopicRouteData`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicRouteData {
    /// Ordered-topic config (unused: empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_topic_conf: Option<String>,
    /// Queues per group.
    pub queue_datas: Vec<QueueData>,
    /// Nodes per group.
    pub broker_datas: Vec<BrokerData>,
    /// Filter servers (none).
    #[serde(default)]
    pub filter_server_table: BTreeMap<String, Vec<String>>,
}

/// Clusters and their groups (RocketMQ's `ClusterInfo`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInfo {
    /// `brokerName` → its nodes.
    pub broker_addr_table: BTreeMap<String, BrokerData>,
    /// Cluster name → its `brokerName`s.
    pub cluster_addr_table: BTreeMap<String, BTreeSet<String>>,
}

/// A topic's config as a broker registers it (RocketMQ's `TopicConfig`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicConfig {
    /// Name.
    pub topic_name: String,
    /// Readable queues.
    pub read_queue_nums: u32,
    /// Writable queues.
    pub write_queue_nums: u32,
    /// Permission bits.
    pub perm: u32,
    /// RocketMQ's `TopicFilterType` ("SINGLE_TAG").
    #[serde(default = "single_tag")]
    pub topic_filter_type: String,
    /// 0.
    #[serde(default)]
    pub topic_sys_flag: u32,
    /// Ordered topic.
    #[serde(default)]
    pub order: bool,
}

fn single_tag() -> String {
    "SINGLE_TAG".to_string()
}

impl TopicConfig {
    /// A read-write topic with `queues` queues.
    pub fn read_write(topic: &str, queues: u32) -> TopicConfig {
        TopicConfig {
            topic_name: topic.to_string(),
            read_queue_nums: queues,
            write_queue_nums: queues,
            perm: PERM_READ | PERM_WRITE,
            topic_filter_type: single_tag(),
            topic_sys_flag: 0,
            order: false,
        }
    }
}

/// When a broker's topic table last changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataVersion {
    /// Ms since the epoch.
    pub timestamp: u64,
    /// Changes so far.
    pub counter: u64,
}

/// A broker's topics with their version.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicConfigSerializeWrapper {
    /// Topic name → config.
    pub topic_config_table: BTreeMap<String, TopicConfig>,
    /// The table's version.
    pub data_version: DataVersion,
}

/// The body of REGISTER_BROKER (RocketMQ's `RegisterBrokerBody`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterBrokerBody {
    /// The broker's topics.
    pub topic_config_serialize_wrapper: TopicConfigSerializeWrapper,
    /// Filter servers (none).
    #[serde(default)]
    pub filter_server_list: Vec<String>,
}

/// The body of GET_ALL_TOPIC_LIST_FROM_NAMESERVER and GET_TOPICS_BY_CLUSTER (`TopicList`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicList {
    /// Topic names.
    pub topic_list: BTreeSet<String>,
    /// The broker address, when one broker answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_addr: Option<String>,
}

/// The body of GET_CONSUMER_LIST_BY_GROUP's response.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerIdList {
    /// Client ids.
    pub consumer_id_list: Vec<String>,
}

/// The body of GET_KVLIST_BY_NAMESPACE's response: one namespace's NameServer KV config
/// (RocketMQ's `KVTable`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvTable {
    /// Key → value.
    pub table: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_addrs_keys_are_quoted_integers() {
        let b = BrokerData {
            cluster: "DefaultCluster".into(),
            broker_name: "broker-a".into(),
            broker_addrs: BTreeMap::from([(0, "127.0.0.1:30911".into())]),
        };
        let json = serde_json::to_string(&b).expect("serializes");
        assert_eq!(
            json,
            r#"{"cluster":"DefaultCluster","brokerName":"broker-a","brokerAddrs":{"0":"127.0.0.1:30911"}}"#
        );
        let back: BrokerData = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, b);
    }
}
