//! Prometheus metrics of one node: what the disk and the consensus are doing.
//!
//! Two kinds, both under the prefix `raft_log_`:
//! - **Events**, counted where they happen and kept in [`LogMetrics`] (one per open store):
//!   append and fsync latency histograms, snapshots built and installed, data segments purged,
//!   leader changes seen.
//! - **State**, read from [`Metrics`] when Prometheus scrapes: term, role, last / commit /
//!   applied / purged index, and on the leader each peer's match index and lag.
//!
//! [`RaftLogNode::prometheus_collector`](crate::RaftLogNode::prometheus_collector) returns both
//! as one [`Collector`] for the application's registry; the application adds its own labels
//! (which node this is) as the registry's constant labels.

use std::sync::Mutex;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, IntGaugeVec, Opts};

use crate::types::{Metrics, Role};

/// Append buckets, in seconds: a memory copy into a mapped segment, 10 µs to 250 ms.
const APPEND_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25,
];
/// fdatasync buckets, in seconds: 50 µs to 2.5 s.
const FSYNC_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5,
];
/// Every role, so each has a series (0 or 1) and a dashboard can stack them.
const ROLES: [(Role, &str); 5] = [
    (Role::Leader, "leader"),
    (Role::Follower, "follower"),
    (Role::Candidate, "candidate"),
    (Role::Learner, "learner"),
    (Role::Shutdown, "shutdown"),
];

/// The event metrics of one store, shared by its appender, flusher, state machine and role
/// watch.
#[derive(Debug)]
pub struct LogMetrics {
    pub(crate) append_seconds: Histogram,
    pub(crate) fsync_seconds: Histogram,
    pub(crate) snapshots_built: IntCounter,
    pub(crate) snapshots_installed: IntCounter,
    pub(crate) segments_purged: IntCounter,
    pub(crate) leader_changes: IntCounter,
}

impl LogMetrics {
    pub(crate) fn new() -> LogMetrics {
        LogMetrics {
            append_seconds: histogram(
                "raft_log_append_seconds",
                "Time to write a batch of entries into the mapped data segments",
                APPEND_BUCKETS,
            ),
            fsync_seconds: histogram(
                "raft_log_fsync_seconds",
                "Time of one fdatasync of the data segments (group flush)",
                FSYNC_BUCKETS,
            ),
            snapshots_built: counter(
                "raft_log_snapshots_built_total",
                "Snapshots this node built",
            ),
            snapshots_installed: counter(
                "raft_log_snapshots_installed_total",
                "Snapshots this node installed from a leader",
            ),
            segments_purged: counter(
                "raft_log_segments_purged_total",
                "Data segments deleted by log purges (retention or compaction)",
            ),
            leader_changes: counter(
                "raft_log_leader_changes_total",
                "Times the leader this node knows changed (including to none)",
            ),
        }
    }

    fn collectors(&self) -> [&dyn Collector; 6] {
        [
            &self.append_seconds,
            &self.fsync_seconds,
            &self.snapshots_built,
            &self.snapshots_installed,
            &self.segments_purged,
            &self.leader_changes,
        ]
    }
}

fn histogram(name: &str, help: &str, buckets: &[f64]) -> Histogram {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    Histogram::with_opts(opts).unwrap_or_else(|e| unreachable!("histogram {name}: {e}"))
}

fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).unwrap_or_else(|e| unreachable!("counter {name}: {e}"))
}

fn gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::new(name, help).unwrap_or_else(|e| unreachable!("gauge {name}: {e}"))
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable!("gauge {name}: {e}"))
}

/// The state gauges, filled from one [`Metrics`] per scrape.
#[derive(Debug)]
struct StateGauges {
    term: IntGauge,
    role: IntGaugeVec,
    last_index: IntGauge,
    commit_index: IntGauge,
    applied_index: IntGauge,
    purged_index: IntGauge,
    peer_match_index: IntGaugeVec,
    peer_lag: IntGaugeVec,
}

impl StateGauges {
    fn new() -> StateGauges {
        StateGauges {
            term: gauge("raft_log_term", "The current Raft term"),
            role: gauge_vec(
                "raft_log_role",
                "1 for this node's current role, 0 for the others",
                &["role"],
            ),
            last_index: gauge("raft_log_last_index", "The last index in the local log"),
            commit_index: gauge(
                "raft_log_commit_index",
                "The highest index this node knows committed",
            ),
            applied_index: gauge(
                "raft_log_applied_index",
                "The highest index applied to the state machine",
            ),
            purged_index: gauge(
                "raft_log_purged_index",
                "The last index deleted from the log (0 when none)",
            ),
            peer_match_index: gauge_vec(
                "raft_log_peer_match_index",
                "On the leader: the last index known replicated to each peer",
                &["peer"],
            ),
            peer_lag: gauge_vec(
                "raft_log_peer_lag_entries",
                "On the leader: entries each peer is behind the leader's last index",
                &["peer"],
            ),
        }
    }

    fn fill(&self, m: &Metrics) {
        let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.term.set(int(m.term));
        for (role, name) in ROLES {
            self.role
                .with_label_values(&[name])
                .set(i64::from(role == m.role));
        }
        self.last_index.set(int(m.last_index.unwrap_or(0)));
        self.commit_index.set(int(m.commit_index.unwrap_or(0)));
        self.applied_index.set(int(m.applied_index.unwrap_or(0)));
        self.purged_index.set(int(m.purged_index.unwrap_or(0)));
        self.peer_match_index.reset();
        self.peer_lag.reset();
        for p in &m.peers {
            self.peer_match_index
                .with_label_values(&[p.id.as_str()])
                .set(int(p.match_index.unwrap_or(0)));
            self.peer_lag
                .with_label_values(&[p.id.as_str()])
                .set(int(p.lag));
        }
    }

    fn collectors(&self) -> [&dyn Collector; 8] {
        [
            &self.term,
            &self.role,
            &self.last_index,
            &self.commit_index,
            &self.applied_index,
            &self.purged_index,
            &self.peer_match_index,
            &self.peer_lag,
        ]
    }
}

/// A node's metrics as one Prometheus [`Collector`]: the events as counted, the state as read
/// at collection time from `read_state`.
pub struct RaftCollector {
    events: std::sync::Arc<LogMetrics>,
    /// Held while a collection fills and reads the gauges, so two scrapes do not mix.
    state: Mutex<StateGauges>,
    read_state: Box<dyn Fn() -> Metrics + Send + Sync>,
}

impl std::fmt::Debug for RaftCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftCollector")
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl RaftCollector {
    pub(crate) fn new(
        events: std::sync::Arc<LogMetrics>,
        read_state: Box<dyn Fn() -> Metrics + Send + Sync>,
    ) -> RaftCollector {
        RaftCollector {
            events,
            state: Mutex::new(StateGauges::new()),
            read_state,
        }
    }
}

impl Collector for RaftCollector {
    fn desc(&self) -> Vec<&Desc> {
        // The gauges' descriptors live behind the mutex; their names are static, so the
        // events' descriptors stand for the collector (the registry uses them to reject
        // duplicates).
        self.events
            .collectors()
            .into_iter()
            .flat_map(|c| c.desc())
            .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let metrics = (self.read_state)();
        let state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.fill(&metrics);
        let mut families: Vec<MetricFamily> = self
            .events
            .collectors()
            .into_iter()
            .flat_map(|c| c.collect())
            .collect();
        families.extend(state.collectors().into_iter().flat_map(|c| c.collect()));
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::PeerProgress;

    fn encode(c: &RaftCollector) -> String {
        let mut out = String::new();
        let families: Vec<MetricFamily> = c
            .collect()
            .into_iter()
            .filter(|f| !f.get_metric().is_empty()) // as the registry prunes them
            .collect();
        prometheus::TextEncoder::new()
            .encode_utf8(&families, &mut out)
            .expect("encode");
        out
    }

    #[test]
    fn the_state_is_read_at_each_collection_and_old_peers_disappear() {
        let events = std::sync::Arc::new(LogMetrics::new());
        let leader = std::sync::Arc::new(Mutex::new(true));
        let flag = std::sync::Arc::clone(&leader);
        let c = RaftCollector::new(
            std::sync::Arc::clone(&events),
            Box::new(move || {
                let leading = *flag.lock().expect("lock");
                Metrics {
                    id: "n0".into(),
                    role: if leading {
                        Role::Leader
                    } else {
                        Role::Follower
                    },
                    term: 7,
                    leader: Some("n0".into()),
                    last_index: Some(120),
                    commit_index: Some(118),
                    applied_index: Some(117),
                    purged_index: None,
                    peers: if leading {
                        vec![PeerProgress {
                            id: "n1".into(),
                            match_index: Some(100),
                            lag: 20,
                            contact_ms: Some(0),
                        }]
                    } else {
                        vec![]
                    },
                    leader_contact_ms: Some(10),
                }
            }),
        );
        events.leader_changes.inc();
        events.fsync_seconds.observe(0.003);
        let first = encode(&c);
        for line in [
            "raft_log_term 7",
            "raft_log_role{role=\"leader\"} 1",
            "raft_log_role{role=\"follower\"} 0",
            "raft_log_commit_index 118",
            "raft_log_applied_index 117",
            "raft_log_purged_index 0",
            "raft_log_peer_match_index{peer=\"n1\"} 100",
            "raft_log_peer_lag_entries{peer=\"n1\"} 20",
            "raft_log_leader_changes_total 1",
            "raft_log_fsync_seconds_bucket{le=\"0.005\"} 1",
            "raft_log_fsync_seconds_count 1",
        ] {
            assert!(
                first.lines().any(|l| l == line),
                "{line} missing in\n{first}"
            );
        }
        *leader.lock().expect("lock") = false;
        let second = encode(&c);
        assert!(
            second.contains("raft_log_role{role=\"follower\"} 1"),
            "{second}"
        );
        assert!(!second.contains("raft_log_peer_lag_entries{"), "{second}");
    }
}
