//! What `mqadmin brokerStatus` and `statsAll` show of a node: RocketMQ's runtime table
//! (GET_BROKER_RUNTIME_INFO's KVTable, by RocketMQ's key names) and per topic its put and get
//! figures with each consumer group's backlog.

use std::collections::BTreeMap;

use super::BrokerService;
use super::clock::now_ms;
use super::error::{ServiceError, check_topic};
use super::stats::{Figures, TrafficTotals};
use crate::state::{BrokerState, DLQ_PREFIX, RETRY_PREFIX};

/// One topic as `statsAll` shows it, from this node.
#[derive(Clone, Debug, PartialEq)]
pub struct TopicStats {
    /// The topic.
    pub topic: String,
    /// Messages put through this node.
    pub put: Figures,
    /// Per consumer group: messages this node handed out, and the group's backlog (messages
    /// not yet acknowledged; replicated, the same on every node).
    pub groups: Vec<(String, Figures, u64)>,
}

/// What Prometheus shows of this node's service, read at each scrape.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricsView {
    /// Messages and bytes this node took in and handed out since it started.
    pub traffic: TrafficTotals,
    /// Topics (retry and dead-letter topics included, as RocketMQ counts them).
    pub topics: usize,
    /// Subscription groups.
    pub subscription_groups: usize,
    /// Live producers per producer group.
    pub producers: BTreeMap<String, u64>,
    /// Live consumers per consumer group.
    pub consumers: BTreeMap<String, u64>,
    /// Per (topic, group) that has progress: its backlog (replicated, the same on every node).
    pub backlogs: Vec<Backlog>,
    /// Half messages of open transactions.
    pub half_messages: u64,
    /// Bytes of the commit log's segment files.
    pub storage_bytes: u64,
}

/// One consumer group's backlog on one topic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Backlog {
    /// The topic.
    pub topic: String,
    /// The consumer group.
    pub group: String,
    /// Messages not yet acknowledged (`rocketmq_consumer_lag_messages`).
    pub lag: u64,
    /// Delivered and not yet acknowledged (`rocketmq_consumer_inflight_messages`).
    pub inflight: u64,
}

/// RocketMQ's runtime text: `[ 0 days, 1 hours, 2 minutes, 3 seconds ]`.
pub fn runtime_format(ms: u64) -> String {
    let (s, m, h, d) = (1000, 60_000, 3_600_000, 86_400_000);
    format!(
        "[ {} days, {} hours, {} minutes, {} seconds ]",
        ms / d,
        (ms % d) / h,
        (ms % h) / m,
        (ms % m) / s
    )
}

/// RocketMQ's three rates of a counter: over 10, 60 and 600 seconds.
fn rates(f: &Figures) -> String {
    format!("{:.2} {:.2} {:.2}", f.tps_10s, f.tps_60s, f.tps_600s)
}

impl BrokerService {
    /// This node's runtime table, by RocketMQ's key names where RocketMQ has the figure, and
    /// the Raft view under DLedger's (`dLedgerRole`, `dLedgerTerm`, …).
    pub fn runtime_info(&self) -> BTreeMap<String, String> {
        let now = now_ms();
        let (put, get) = self.stats.totals(now);
        let mut t = BTreeMap::new();
        let mut kv = |k: &str, v: String| {
            t.insert(k.to_string(), v);
        };
        kv(
            "brokerVersionDesc",
            format!("RaftMQ {}", env!("CARGO_PKG_VERSION")),
        );
        kv("brokerActive", "true".into());
        kv("bootTimestamp", self.started_ms.to_string());
        kv(
            "runtime",
            runtime_format(now.saturating_sub(self.started_ms)),
        );
        kv("msgPutTotalTodayNow", put.total.to_string());
        kv("msgPutTotalTodayMorning", put.today_morning.to_string());
        kv(
            "msgPutTotalYesterdayMorning",
            put.yesterday_morning.to_string(),
        );
        kv("msgGetTotalTodayNow", get.total.to_string());
        kv("msgGetTotalTodayMorning", get.today_morning.to_string());
        kv(
            "msgGetTotalYesterdayMorning",
            get.yesterday_morning.to_string(),
        );
        kv("putTps", rates(&put));
        kv("getTransferredTps", rates(&get));
        // RocketMQ 4.x spelled it so (its clusterList reads this key).
        kv("getTransferedTps", rates(&get));
        let used = self.disk.used_percent(&self.config.store_dir);
        kv(
            "commitLogDiskRatio",
            format!("{:.2}", f64::from(used) / 100.0),
        );
        let view = self.cluster();
        if let Some(n) = view.nodes.iter().find(|n| n.is_self) {
            let role = n
                .role
                .map_or("UNKNOWN".into(), |r| format!("{r:?}").to_uppercase());
            kv("dLedgerRole", role);
            kv("dLedgerTerm", n.term.unwrap_or(0).to_string());
            kv("dLedgerLeaderId", view.leader_id.clone());
            kv("commitLogMaxOffset", n.last_index.unwrap_or(0).to_string());
            kv(
                "commitLogMinOffset",
                n.purged_index.map_or(0, |p| p + 1).to_string(),
            );
            kv(
                "dLedgerCommitIndex",
                n.commit_index.unwrap_or(0).to_string(),
            );
            kv(
                "dLedgerAppliedIndex",
                n.applied_index.unwrap_or(0).to_string(),
            );
            let behind = n
                .commit_index
                .unwrap_or(0)
                .saturating_sub(n.applied_index.unwrap_or(0));
            kv("dispatchBehindBytes", behind.to_string());
        }
        t
    }

    /// `statsAll` from this node: every topic (or only `topic`), except retry and dead-letter
    /// topics, sorted by name.
    ///
    /// # Errors
    /// A bad topic name; an unknown one.
    pub fn topic_stats(&self, topic: Option<&str>) -> Result<Vec<TopicStats>, ServiceError> {
        if let Some(t) = topic {
            check_topic("topic", t)?;
            if !self.store.state().topics().contains_key(t) {
                return Err(ServiceError::TopicNotFound {
                    topic: t.to_string(),
                });
            }
        }
        let now = now_ms();
        let names: Vec<String> = self
            .topics()
            .into_iter()
            .map(|(name, _)| name)
            .filter(|n| topic.is_none_or(|t| t == n))
            .filter(|n| !n.starts_with(RETRY_PREFIX) && !n.starts_with(DLQ_PREFIX))
            .collect();
        Ok(names
            .into_iter()
            .map(|name| self.one_topic_stats(now, name))
            .collect())
    }

    /// The figures Prometheus scrapes.
    pub fn metrics_view(&self) -> MetricsView {
        let traffic = self.stats.traffic();
        let (producers, consumers) = self.clients.group_counts();
        let storage_bytes = self.store.node().data_bytes();
        let backlogs = self.backlogs();
        let state = self.store.state();
        MetricsView {
            traffic,
            topics: state.topics().len(),
            subscription_groups: state.subscription_groups().len(),
            producers,
            consumers,
            backlogs,
            half_messages: state.transactions().len() as u64,
            storage_bytes,
        }
    }

    /// Every (topic, group) with progress and its backlog, by topic then group.
    pub fn backlogs(&self) -> Vec<Backlog> {
        let state = self.store.state();
        let mut out = Vec::new();
        for topic in state.topics().keys() {
            for group in state.groups_of(topic) {
                let (lag, inflight) = backlog(&state, &group, topic);
                out.push(Backlog {
                    topic: topic.clone(),
                    group,
                    lag,
                    inflight,
                });
            }
        }
        out
    }

    fn one_topic_stats(&self, now: u64, topic: String) -> TopicStats {
        let (put, got) = self.stats.of_topic(now, &topic);
        let state = self.store.state();
        let mut groups: BTreeMap<String, Figures> = state
            .groups_of(&topic)
            .into_iter()
            .map(|g| (g, Figures::default()))
            .collect();
        groups.extend(got);
        let groups = groups
            .into_iter()
            .map(|(g, f)| {
                let (lag, _) = backlog(&state, &g, &topic);
                (g, f, lag)
            })
            .collect();
        TopicStats { topic, put, groups }
    }
}

/// `group`'s backlog on `topic`: messages not yet acknowledged (a group that never consumed a
/// queue is behind all of what it still holds) and messages delivered and not yet acknowledged.
fn backlog(state: &BrokerState, group: &str, topic: &str) -> (u64, u64) {
    let bounds = state.queue_bounds(topic).unwrap_or_default();
    let progress = state.group_progress(group, topic).unwrap_or_default();
    let (mut lag, mut inflight) = (0, 0);
    for (q, b) in bounds.iter().enumerate() {
        let (acked, _, held) = progress.get(q).copied().unwrap_or((0, 0, 0));
        lag += b.next.saturating_sub(acked.max(b.min));
        inflight += held as u64;
    }
    (lag, inflight)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_reads_as_rocketmq_prints_it() {
        assert_eq!(
            runtime_format(90_061_000),
            "[ 1 days, 1 hours, 1 minutes, 1 seconds ]"
        );
        assert_eq!(
            runtime_format(0),
            "[ 0 days, 0 hours, 0 minutes, 0 seconds ]"
        );
    }
}
