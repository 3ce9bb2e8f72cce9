//! What `-n` names, and the NameServer's view of the brokers.
//!
//! `-n` is RocketMQ's NameServer flag. RaftMQ's tools also accept broker nodes there (any
//! node's listenPort), so [`detect`] asks the first address that accepts a connection for
//! GET_BROKER_CLUSTER_INFO (106) over remoting: a NameServer answers SUCCESS with ClusterInfo;
//! a RaftMQ broker answers REQUEST_CODE_NOT_SUPPORTED, and a gRPC-only server closes the
//! connection on the bytes it cannot read. Either of the latter makes the whole list broker
//! nodes, as before. With a NameServer, the verbs find their brokers in ClusterInfo and in topic
//! routes; the gRPC admin service works on any node's listenPort, so every node address of a
//! group is usable (a follower forwards writes to its leader).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use raftmq_remoting::code::{request as rq, response as rs};
use raftmq_remoting::route::{BrokerData, ClusterInfo, TopicList, TopicRouteData};
use raftmq_remoting::{ExtFields, RemotingClient, RemotingCommand};

/// How long to wait for a TCP connection to one `-n` address.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the kind probe waits for its answer; brokers and NameServers answer 106 at once.
const PROBE_TIMEOUT_MAX: Duration = Duration::from_secs(5);

/// What `-n` named.
#[derive(Debug)]
pub(crate) enum Access {
    /// Broker nodes of one Raft group, in `-n` order.
    Brokers(Vec<String>),
    /// A NameServer, with the cluster info it answered the probe with.
    NameServer(NameServer),
}

/// One NameServer connection and its ClusterInfo.
#[derive(Debug)]
pub(crate) struct NameServer {
    client: RemotingClient,
    pub(crate) cluster: ClusterInfo,
    timeout: Duration,
}

enum Probe {
    NameServer(NameServer),
    Broker,
    Unreachable,
}

/// Asks the `-n` addresses in order until one answers; its answer decides for the whole list.
/// When none answers, the list is taken as broker nodes, so the verbs report each address's
/// failure as before (and `clusterList --wait-leader` keeps waiting for nodes to come up).
///
/// # Errors
/// A NameServer whose ClusterInfo does not parse.
pub(crate) async fn detect(addrs: &[String], timeout: Duration) -> anyhow::Result<Access> {
    for addr in addrs {
        match probe(addr, timeout).await? {
            Probe::NameServer(ns) => return Ok(Access::NameServer(ns)),
            Probe::Broker => return Ok(Access::Brokers(addrs.to_vec())),
            Probe::Unreachable => {}
        }
    }
    Ok(Access::Brokers(addrs.to_vec()))
}

async fn probe(addr: &str, timeout: Duration) -> anyhow::Result<Probe> {
    let Ok(client) = RemotingClient::connect(addr, CONNECT_TIMEOUT).await else {
        return Ok(Probe::Unreachable);
    };
    let request = RemotingCommand::request(rq::GET_BROKER_CLUSTER_INFO, ExtFields::new());
    match client.invoke(request, timeout.min(PROBE_TIMEOUT_MAX)).await {
        Ok(response) if response.code == rs::SUCCESS => {
            let cluster: ClusterInfo =
                serde_json::from_slice(&response.body).with_context(|| {
                    format!("{addr} answered 106 with a body that is not ClusterInfo")
                })?;
            Ok(Probe::NameServer(NameServer {
                client,
                cluster,
                timeout,
            }))
        }
        // REQUEST_CODE_NOT_SUPPORTED from a RaftMQ broker; any other refusal is not a
        // NameServer either. An HTTP/2-only server drops a connection that does not open
        // with its preface (Closed); one that keeps silent (Timeout) is no NameServer either.
        Ok(_) | Err(_) => Ok(Probe::Broker),
    }
}

/// A group's node addresses, master (broker id 0) first.
pub(crate) fn nodes(group: &BrokerData) -> Vec<String> {
    group.broker_addrs.values().cloned().collect()
}

impl NameServer {
    /// The NameServer's address.
    pub(crate) fn addr(&self) -> &str {
        self.client.addr()
    }

    async fn call(&self, code: i32, fields: &[(&str, &str)]) -> anyhow::Result<RemotingCommand> {
        let fields: ExtFields = fields
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        let request = RemotingCommand::request(code, fields);
        Ok(self.client.invoke(request, self.timeout).await?)
    }

    /// The route of `topic`, or `None` when the NameServer has none (TOPIC_NOT_EXIST).
    ///
    /// # Errors
    /// No answer, another refusal, or a body that is not TopicRouteData.
    pub(crate) async fn route(&self, topic: &str) -> anyhow::Result<Option<TopicRouteData>> {
        Ok(match self.route_json(topic).await? {
            Some(json) => Some(serde_json::from_value(json).with_context(|| {
                format!("the route of {topic} from {} does not parse", self.addr())
            })?),
            None => None,
        })
    }

    /// The route of `topic` as the NameServer wrote it (JSON), or `None` for TOPIC_NOT_EXIST.
    ///
    /// # Errors
    /// No answer, another refusal, or a body that is not JSON.
    pub(crate) async fn route_json(
        &self,
        topic: &str,
    ) -> anyhow::Result<Option<serde_json::Value>> {
        let response = self
            .call(rq::GET_ROUTEINFO_BY_TOPIC, &[("topic", topic)])
            .await?;
        match response.code {
            rs::SUCCESS => Ok(Some(serde_json::from_slice(&response.body).with_context(
                || format!("the route of {topic} from {} is not JSON", self.addr()),
            )?)),
            rs::TOPIC_NOT_EXIST => Ok(None),
            code => bail!(
                "GET_ROUTEINFO_BY_TOPIC {topic} refused by {}: code {code}: {}",
                self.addr(),
                response.remark
            ),
        }
    }

    /// Every topic the NameServer knows (GET_ALL_TOPIC_LIST_FROM_NAMESERVER).
    ///
    /// # Errors
    /// No answer, a refusal, or a body that is not TopicList.
    pub(crate) async fn topic_list(&self) -> anyhow::Result<TopicList> {
        let response = self
            .call(rq::GET_ALL_TOPIC_LIST_FROM_NAMESERVER, &[])
            .await?;
        if response.code != rs::SUCCESS {
            bail!(
                "GET_ALL_TOPIC_LIST_FROM_NAMESERVER refused by {}: code {}: {}",
                self.addr(),
                response.code,
                response.remark
            );
        }
        serde_json::from_slice(&response.body)
            .with_context(|| format!("the topic list from {} does not parse", self.addr()))
    }

    /// Every group (brokerName) with its nodes, by name.
    pub(crate) fn groups(&self) -> impl Iterator<Item = &BrokerData> {
        self.cluster.broker_addr_table.values()
    }

    /// Every group's nodes.
    pub(crate) fn all_groups(&self) -> Vec<Vec<String>> {
        self.groups().map(nodes).collect()
    }

    fn group_names(&self) -> String {
        let names: Vec<&str> = self.groups().map(|g| g.broker_name.as_str()).collect();
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    }

    /// The nodes of the only group, for a verb that needs one group and has no topic to find it.
    ///
    /// # Errors
    /// No group registered, or several (`what` names the verb's way to choose).
    pub(crate) fn only_group(&self, what: &str) -> anyhow::Result<Vec<String>> {
        let mut groups = self.groups();
        match (groups.next(), groups.next()) {
            (Some(g), None) => Ok(nodes(g)),
            (None, _) => bail!("no broker is registered at the NameServer {}", self.addr()),
            (Some(_), Some(_)) => bail!(
                "the NameServer {} knows several broker groups ({}); {what}",
                self.addr(),
                self.group_names()
            ),
        }
    }

    /// The groups holding `topic` (from its route), each as its nodes; when the topic has no
    /// route, the only group (where a verb may create it, or report it missing).
    ///
    /// # Errors
    /// No route and not exactly one group, or the route names no registered group.
    pub(crate) async fn groups_of_topic(&self, topic: &str) -> anyhow::Result<Vec<Vec<String>>> {
        let Some(route) = self.route(topic).await? else {
            return self
                .only_group(&format!(
                    "{topic} has no route, so none of them is the topic's"
                ))
                .map(|nodes| vec![nodes]);
        };
        let by_name: BTreeMap<&str, &BrokerData> = route
            .broker_datas
            .iter()
            .map(|b| (b.broker_name.as_str(), b))
            .collect();
        let groups: Vec<Vec<String>> = route
            .queue_datas
            .iter()
            .filter_map(|q| by_name.get(q.broker_name.as_str()))
            .map(|b| nodes(b))
            .filter(|n| !n.is_empty())
            .collect();
        if groups.is_empty() {
            bail!(
                "the route of {topic} at {} names no broker with an address",
                self.addr()
            );
        }
        Ok(groups)
    }

    /// The nodes of the group holding `topic` (the first, when several do).
    ///
    /// # Errors
    /// As [`groups_of_topic`](Self::groups_of_topic).
    pub(crate) async fn group_of_topic(&self, topic: &str) -> anyhow::Result<Vec<String>> {
        let mut groups = self.groups_of_topic(topic).await?;
        if groups.len() > 1 {
            eprintln!(
                "mqadmin: {topic} is on {} broker groups; asking the first ({})",
                groups.len(),
                groups[0].join(";")
            );
        }
        Ok(groups.swap_remove(0))
    }

    /// The groups of `cluster`, each as its nodes.
    ///
    /// # Errors
    /// The NameServer does not know the cluster.
    pub(crate) fn cluster_groups(&self, cluster: &str) -> anyhow::Result<Vec<Vec<String>>> {
        let names = self
            .cluster
            .cluster_addr_table
            .get(cluster)
            .ok_or_else(|| {
                let known: Vec<&str> = self
                    .cluster
                    .cluster_addr_table
                    .keys()
                    .map(String::as_str)
                    .collect();
                anyhow!(
                    "the NameServer {} knows no cluster {cluster} (clusters: {})",
                    self.addr(),
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )
            })?;
        Ok(names
            .iter()
            .filter_map(|name| self.cluster.broker_addr_table.get(name))
            .map(nodes)
            .filter(|n| !n.is_empty())
            .collect())
    }
}

/// A broker node's GET_BROKER_RUNTIME_INFO table (RocketMQ's KVTable), or `None` when it does
/// not answer.
pub(crate) async fn runtime_info(
    addr: String,
    timeout: Duration,
) -> Option<BTreeMap<String, String>> {
    #[derive(serde::Deserialize)]
    struct KvTable {
        table: BTreeMap<String, String>,
    }
    let client = RemotingClient::connect(&addr, CONNECT_TIMEOUT).await.ok()?;
    let request = RemotingCommand::request(rq::GET_BROKER_RUNTIME_INFO, ExtFields::new());
    let response = client.invoke_ok(request, timeout).await.ok()?;
    serde_json::from_slice::<KvTable>(&response.body)
        .ok()
        .map(|t| t.table)
}

/// One row of RocketMQ's clusterList table, from ClusterInfo and the node's runtime info.
#[derive(Debug, PartialEq)]
pub(crate) struct ClusterRow {
    pub(crate) cluster: String,
    pub(crate) broker_name: String,
    pub(crate) broker_id: u64,
    pub(crate) addr: String,
    pub(crate) info: Option<BTreeMap<String, String>>,
}

/// Every node of every group of every cluster, in RocketMQ's order (cluster, brokerName, id).
pub(crate) fn cluster_rows(cluster: &ClusterInfo) -> Vec<ClusterRow> {
    let mut rows = Vec::new();
    for (cluster_name, names) in &cluster.cluster_addr_table {
        for name in names {
            let Some(group) = cluster.broker_addr_table.get(name) else {
                continue;
            };
            for (id, addr) in &group.broker_addrs {
                rows.push(ClusterRow {
                    cluster: cluster_name.clone(),
                    broker_name: name.clone(),
                    broker_id: *id,
                    addr: addr.clone(),
                    info: None,
                });
            }
        }
    }
    rows
}

/// The header of RocketMQ's `clusterList` (ClusterListSubCommand's base info).
pub(crate) fn cluster_header() -> String {
    format_cluster_line([
        "#Cluster Name",
        "#Broker Name",
        "#BID",
        "#Addr",
        "#Version",
        "#InTPS(LOAD)",
        "#OutTPS(LOAD)",
        "#PCWait(ms)",
        "#Hour",
        "#SPACE",
    ])
}

fn format_cluster_line(c: [&str; 10]) -> String {
    format!(
        "{:<16}  {:<22}  {:<4}  {:<22} {:<16} {:>19} {:>19} {:>10} {:>5} {:>6}",
        c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9]
    )
}

/// One row as RocketMQ prints it. What RaftMQ does not report prints as `-` (RocketMQ prints
/// `null`), except the hours and disk ratio, which RocketMQ prints as 0 when absent. A node
/// that did not answer gets `-` for its version. Every cell is one whitespace-free token, so
/// the version's spaces become `-`.
pub(crate) fn cluster_line(row: &ClusterRow, now_ms: u64) -> String {
    let info = row.info.as_ref();
    let get = |k: &str| info.and_then(|t| t.get(k)).map(String::as_str);
    let first_number = |k: &str| {
        get(k)
            .and_then(|v| v.split(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let or_dash = |k: &str| get(k).unwrap_or("-").to_string();
    let version = get("brokerVersionDesc").map_or_else(
        || "-".to_string(),
        |v| v.split_whitespace().collect::<Vec<_>>().join("-"),
    );
    let in_tps = format!(
        "{:9.2}({},{}ms)",
        first_number("putTps"),
        or_dash("sendThreadPoolQueueSize"),
        or_dash("sendThreadPoolQueueHeadWaitTimeMills")
    );
    let out_tps = format!(
        "{:9.2}({},{}ms)",
        first_number("getTransferedTps"),
        or_dash("pullThreadPoolQueueSize"),
        or_dash("pullThreadPoolQueueHeadWaitTimeMills")
    );
    #[allow(clippy::cast_precision_loss)]
    let hour = get("earliestMessageTimeStamp")
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0.0, |t| now_ms.saturating_sub(t) as f64 / 3_600_000.0);
    let space = get("commitLogDiskRatio")
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    format_cluster_line([
        &row.cluster,
        &row.broker_name,
        &row.broker_id.to_string(),
        &row.addr,
        &version,
        &in_tps,
        &out_tps,
        &or_dash("pageCacheLockTimeMills"),
        &format!("{hour:2.2}"),
        &format!("{space:.4}"),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn info() -> ClusterInfo {
        let group = |name: &str, addrs: &[(u64, &str)]| BrokerData {
            cluster: "c".into(),
            broker_name: name.into(),
            broker_addrs: addrs.iter().map(|(i, a)| (*i, (*a).to_string())).collect(),
        };
        ClusterInfo {
            broker_addr_table: BTreeMap::from([
                ("b".to_string(), group("b", &[(2, "h:3"), (0, "h:1")])),
                ("a".to_string(), group("a", &[(0, "h:9")])),
            ]),
            cluster_addr_table: BTreeMap::from([(
                "c".to_string(),
                BTreeSet::from(["b".to_string(), "a".to_string()]),
            )]),
        }
    }

    #[test]
    fn rows_go_by_cluster_then_broker_name_then_id() {
        let rows = cluster_rows(&info());
        let keys: Vec<(&str, u64, &str)> = rows
            .iter()
            .map(|r| (r.broker_name.as_str(), r.broker_id, r.addr.as_str()))
            .collect();
        assert_eq!(keys, [("a", 0, "h:9"), ("b", 0, "h:1"), ("b", 2, "h:3")]);
    }

    #[test]
    fn a_row_splits_into_the_ten_columns_of_the_header() {
        let mut row = cluster_rows(&info()).remove(0);
        row.info = Some(BTreeMap::from([
            ("brokerVersionDesc".to_string(), "RaftMQ 0.1.0".to_string()),
            ("putTps".to_string(), "12.5 3.0 1.0".to_string()),
        ]));
        let line = cluster_line(&row, 0);
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "c",
                "a",
                "0",
                "h:9",
                "RaftMQ-0.1.0",
                "12.50(-,-ms)",
                "0.00(-,-ms)",
                "-",
                "0.00",
                "0.0000"
            ],
            "{line}"
        );
        // The header has the same column starts as the rows (RocketMQ's format string).
        assert_eq!(
            cluster_header().find("#BID"),
            line.find(" 0 ").map(|i| i + 1)
        );
    }
}
