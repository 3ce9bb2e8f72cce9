//! The other broker groups of the cluster, as the NameServers know them: a RocketMQ 5 SDK
//! connected to any node gets routes and assignments covering every group that has the topic
//! (RocketMQ's proxy does the same from the NameServer's TopicRouteData).
//!
//! Routes are asked of the first NameServer that answers and kept for [`ROUTE_TTL`]; a
//! NameServer that does not answer costs a route only the groups it would have added.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use raftmq_remoting::code::{request as rq, response as rs};
use raftmq_remoting::route::{MASTER_ID, TopicRouteData};
use raftmq_remoting::{RemotingClient, RemotingCommand, ext_fields};

use super::BrokerService;

/// How long a NameServer's route of a topic is used before it is asked again.
pub const ROUTE_TTL: Duration = Duration::from_secs(5);
/// How long a NameServer has to answer.
const NAMESRV_TIMEOUT: Duration = Duration::from_secs(2);

/// Another group's share of a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRoute {
    /// The group (`brokerName`).
    pub broker_name: String,
    /// Its queues of the topic.
    pub queues: u32,
    /// Its master's client address (`host:port`).
    pub master_addr: String,
}

/// The NameServers and the routes they gave.
#[derive(Debug, Default)]
pub(super) struct ClusterRoutes {
    namesrv_addrs: Vec<String>,
    cached: Mutex<HashMap<String, (Instant, Vec<GroupRoute>)>>,
    client: tokio::sync::Mutex<Option<RemotingClient>>,
}

impl ClusterRoutes {
    pub(super) fn new(namesrv_addrs: Vec<String>) -> ClusterRoutes {
        ClusterRoutes {
            namesrv_addrs,
            ..ClusterRoutes::default()
        }
    }

    fn cached(&self, topic: &str) -> Option<Vec<GroupRoute>> {
        let cached = self
            .cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cached
            .get(topic)
            .filter(|(at, _)| at.elapsed() < ROUTE_TTL)
            .map(|(_, r)| r.clone())
    }

    /// The topic's route at the first NameServer that answers; `None` when none does.
    async fn ask(&self, topic: &str) -> Option<TopicRouteData> {
        let mut client = self.client.lock().await;
        for addr in &self.namesrv_addrs {
            if client
                .as_ref()
                .is_none_or(|c| !c.is_open() || c.addr() != addr)
            {
                *client = RemotingClient::connect(addr, NAMESRV_TIMEOUT).await.ok();
            }
            let Some(c) = client.as_ref() else { continue };
            let request = RemotingCommand::request(
                rq::GET_ROUTEINFO_BY_TOPIC,
                ext_fields(&[("topic", topic)]),
            );
            match c.invoke(request, NAMESRV_TIMEOUT).await {
                Ok(r) if r.code == rs::SUCCESS => return serde_json::from_slice(&r.body).ok(),
                Ok(_) => return Some(TopicRouteData::default()), // no route: no other group
                Err(e) => {
                    tracing::debug!(namesrv = %addr, error = %e, "route from NameServer failed");
                    *client = None;
                }
            }
        }
        None
    }
}

/// The groups of `route` other than `own`, with a master and writable queues.
fn other_groups(route: &TopicRouteData, own: &str) -> Vec<GroupRoute> {
    route
        .queue_datas
        .iter()
        .filter(|q| q.broker_name != own && q.write_queue_nums > 0)
        .filter_map(|q| {
            let master = route
                .broker_datas
                .iter()
                .find(|b| b.broker_name == q.broker_name)?
                .broker_addrs
                .get(&MASTER_ID)?;
            Some(GroupRoute {
                broker_name: q.broker_name.clone(),
                queues: q.write_queue_nums.max(q.read_queue_nums),
                master_addr: master.clone(),
            })
        })
        .collect()
}

impl BrokerService {
    /// The other groups that have `topic`, by the NameServers (empty without `namesrvAddr`,
    /// or when no NameServer answers).
    pub async fn other_groups(&self, topic: &str) -> Vec<GroupRoute> {
        let routes = &self.cluster;
        if routes.namesrv_addrs.is_empty() {
            return Vec::new();
        }
        if let Some(r) = routes.cached(topic) {
            return r;
        }
        let Some(route) = routes.ask(topic).await else {
            return Vec::new();
        };
        let others = other_groups(&route, &self.config.broker_name);
        routes
            .cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(topic.to_string(), (Instant::now(), others.clone()));
        others
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftmq_remoting::route::{BrokerData, QueueData};
    use std::collections::BTreeMap;

    fn group(name: &str, queues: u32, master: Option<&str>) -> (QueueData, BrokerData) {
        (
            QueueData {
                broker_name: name.into(),
                read_queue_nums: queues,
                write_queue_nums: queues,
                perm: 6,
                topic_sys_flag: 0,
            },
            BrokerData {
                cluster: "c".into(),
                broker_name: name.into(),
                broker_addrs: master
                    .map(|m| BTreeMap::from([(MASTER_ID, m.to_string()), (1, "slave:1".into())]))
                    .unwrap_or_else(|| BTreeMap::from([(2, "slave:2".into())])),
            },
        )
    }

    #[test]
    fn other_groups_with_a_master_are_listed_and_our_own_is_not() {
        let (qa, ba) = group("broker-a", 8, Some("a:1"));
        let (qb, bb) = group("broker-b", 4, Some("b:1"));
        let (qc, bc) = group("broker-c", 4, None);
        let route = TopicRouteData {
            queue_datas: vec![qa, qb, qc],
            broker_datas: vec![ba, bb, bc],
            ..TopicRouteData::default()
        };
        assert_eq!(
            other_groups(&route, "broker-a"),
            vec![GroupRoute {
                broker_name: "broker-b".into(),
                queues: 4,
                master_addr: "b:1".into()
            }]
        );
    }
}
