//! The operator's operations: the topic table, queue offsets, consumer progress, the cluster
//! view and leadership transfer.
//!
//! Reads answer from this node's applied state, so a follower may trail the leader by the
//! entries it has not applied yet; topic writes go through the leader and answer once this
//! node applied them (read-your-writes on the same node). A leadership transfer needs the
//! leader: a follower knows the other members' replication addresses but not their listen
//! addresses, so it answers [`ServiceError::NotLeader`] naming the leader and the caller
//! retries there.

use raft_log::{Config as LogConfig, Error as LogError, Metrics, Role};

use super::BrokerService;
use super::error::{ServiceError, check_group, check_topic};
use crate::state::BrokerState;

/// One member of the group as this node sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeView {
    /// DLedger id (`n0`).
    pub id: String,
    /// Replication address from dLegerPeers.
    pub raft_addr: String,
    /// The broker's client address; only known for this node itself.
    pub listen_addr: String,
    /// This row is the answering node.
    pub is_self: bool,
    /// The role; `None` = not known here (another member that is not the leader).
    pub role: Option<Role>,
    /// This node's term (self only).
    pub term: Option<u64>,
    /// The leader this node knows (self only).
    pub leader_id: String,
    /// Log indexes (self only).
    pub last_index: Option<u64>,
    /// Commit index (self only).
    pub commit_index: Option<u64>,
    /// Applied index (self only).
    pub applied_index: Option<u64>,
    /// Purged index (self only).
    pub purged_index: Option<u64>,
    /// The last index known to be on this member (leader's view only).
    pub match_index: Option<u64>,
    /// Entries this member is behind the leader's last index (leader's view only).
    pub lag: Option<u64>,
}

/// This node's view of its group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// The group name.
    pub group: String,
    /// This node's id.
    pub self_id: String,
    /// The leader it knows; empty = none.
    pub leader_id: String,
    /// Every member, in dLegerPeers order.
    pub nodes: Vec<NodeView>,
}

/// A group's progress in one queue of one topic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueProgress {
    /// The topic.
    pub topic: String,
    /// Queue id.
    pub queue_id: u32,
    /// Messages in the queue.
    pub broker_offset: u64,
    /// Everything below is acknowledged.
    pub acked_offset: u64,
    /// Everything below was delivered or examined.
    pub next_offset: u64,
    /// Delivered and not yet acknowledged.
    pub inflight: u64,
    /// Messages not yet acknowledged.
    pub lag: u64,
}

/// A follower that acknowledged the leader longer ago than this is not handed leadership.
const HAND_OFF_CONTACT_MAX_MS: u64 = 1000;

/// The follower a leader hands off to: among those heard from within `contact_max_ms`, the
/// least behind (by id on a tie); `None` when this node does not lead or none is live.
pub(crate) fn hand_off_target(metrics: &Metrics, contact_max_ms: u64) -> Option<String> {
    if metrics.role != Role::Leader {
        return None;
    }
    metrics
        .peers
        .iter()
        .filter(|p| p.match_index.is_some())
        .filter(|p| p.contact_ms.is_some_and(|ms| ms <= contact_max_ms))
        .min_by(|a, b| (a.lag, &a.id).cmp(&(b.lag, &b.id)))
        .map(|p| p.id.clone())
}

/// This node's view of its group: its own row complete, the others as far as it knows them.
pub(crate) fn cluster_view(
    config: &LogConfig,
    metrics: &Metrics,
    listen_addr: &str,
) -> ClusterView {
    let leader = metrics.leader.clone().unwrap_or_default();
    let nodes = config
        .peers
        .iter()
        .map(|peer| {
            if peer.id == metrics.id {
                let leads = metrics.role == Role::Leader;
                return NodeView {
                    id: peer.id.clone(),
                    raft_addr: peer.addr.clone(),
                    listen_addr: listen_addr.to_string(),
                    is_self: true,
                    role: Some(metrics.role),
                    term: Some(metrics.term),
                    leader_id: leader.clone(),
                    last_index: metrics.last_index,
                    commit_index: metrics.commit_index,
                    applied_index: metrics.applied_index,
                    purged_index: metrics.purged_index,
                    // The leader is by definition caught up with itself.
                    match_index: if leads { metrics.last_index } else { None },
                    lag: leads.then_some(0),
                };
            }
            // Replication progress is known on the leader only.
            let progress = metrics.peers.iter().find(|p| p.id == peer.id);
            NodeView {
                id: peer.id.clone(),
                raft_addr: peer.addr.clone(),
                role: (peer.id == leader).then_some(Role::Leader),
                match_index: progress.and_then(|p| p.match_index),
                lag: progress.map(|p| p.lag),
                ..NodeView::default()
            }
        })
        .collect();
    ClusterView {
        group: config.group.clone(),
        self_id: metrics.id.clone(),
        leader_id: leader,
        nodes,
    }
}

/// Per queue of `topic`, `group`'s progress. Queues the group never touched count as unread;
/// the two lists may differ in length when the queue count changed.
pub(crate) fn progress_rows(
    topic: &str,
    depths: &[u64],
    progress: &[(u64, u64, usize)],
) -> Vec<QueueProgress> {
    let queues = depths.len().max(progress.len());
    (0..queues)
        .map(|queue| {
            let depth = depths.get(queue).copied().unwrap_or(0);
            let (acked, next, inflight) = progress.get(queue).copied().unwrap_or((0, 0, 0));
            QueueProgress {
                topic: topic.to_string(),
                queue_id: u32::try_from(queue).unwrap_or(u32::MAX),
                broker_offset: depth,
                acked_offset: acked,
                next_offset: next,
                inflight: u64::try_from(inflight).unwrap_or(u64::MAX),
                lag: depth.saturating_sub(acked),
            }
        })
        .collect()
}

fn consumer_progress(
    state: &BrokerState,
    group: &str,
    topic: &str,
) -> Result<Vec<QueueProgress>, ServiceError> {
    let topics: Vec<&String> = if topic.is_empty() {
        let topics: Vec<&String> = state
            .topics()
            .keys()
            .filter(|t| state.group_progress(group, t).is_some())
            .collect();
        if topics.is_empty() {
            return Err(ServiceError::GroupNotFound {
                group: group.to_string(),
            });
        }
        topics
    } else {
        let (name, _) =
            state
                .topics()
                .get_key_value(topic)
                .ok_or_else(|| ServiceError::TopicNotFound {
                    topic: topic.to_string(),
                })?;
        vec![name]
    };
    Ok(topics
        .into_iter()
        .flat_map(|t| {
            let depths = state.queue_depths(t).unwrap_or_default();
            let progress = state.group_progress(group, t).unwrap_or_default();
            progress_rows(t, &depths, &progress)
        })
        .collect())
}

impl BrokerService {
    /// This node's view of its group.
    pub fn cluster(&self) -> ClusterView {
        let node = self.store.node();
        cluster_view(node.config(), &node.metrics(), &self.config.broker_addr)
    }

    /// Every topic with its queue count, sorted by name (dead-letter topics included).
    pub fn topics(&self) -> Vec<(String, u32)> {
        self.store
            .state()
            .topics()
            .iter()
            .map(|(name, t)| (name.clone(), t.queues))
            .collect()
    }

    /// Creates or updates a topic.
    ///
    /// # Errors
    /// A bad name, a queue count out of range, a store failure.
    pub async fn update_topic(&self, topic: &str, queues: u32) -> Result<(), ServiceError> {
        check_topic("topic", topic)?;
        self.store.update_topic(topic, queues).await??;
        tracing::info!(topic, queues, "topic updated");
        Ok(())
    }

    /// Deletes a topic.
    ///
    /// # Errors
    /// A bad name, an unknown topic, a store failure.
    pub async fn delete_topic(&self, topic: &str) -> Result<(), ServiceError> {
        check_topic("topic", topic)?;
        self.store.delete_topic(topic).await??;
        self.stats.forget_topic(topic);
        tracing::info!(topic, "topic deleted");
        Ok(())
    }

    /// Each queue's offsets still held (min, next) of `topic`.
    ///
    /// # Errors
    /// A bad name, an unknown topic.
    pub fn queue_bounds(&self, topic: &str) -> Result<Vec<crate::state::Bounds>, ServiceError> {
        check_topic("topic", topic)?;
        self.store
            .state()
            .queue_bounds(topic)
            .map(<[_]>::to_vec)
            .ok_or_else(|| ServiceError::TopicNotFound {
                topic: topic.to_string(),
            })
    }

    /// The number of messages in each queue of `topic`.
    ///
    /// # Errors
    /// A bad name, an unknown topic.
    pub fn queue_depths(&self, topic: &str) -> Result<Vec<u64>, ServiceError> {
        check_topic("topic", topic)?;
        self.store
            .state()
            .queue_depths(topic)
            .ok_or_else(|| ServiceError::TopicNotFound {
                topic: topic.to_string(),
            })
    }

    /// `group`'s progress on `topic`, or on every topic it consumed when `topic` is empty.
    ///
    /// # Errors
    /// A bad name, an unknown topic, a group without progress.
    pub fn consumer_progress(
        &self,
        group: &str,
        topic: &str,
    ) -> Result<Vec<QueueProgress>, ServiceError> {
        check_group("group", group)?;
        if !topic.is_empty() {
            check_topic("topic", topic)?;
        }
        consumer_progress(&self.store.state(), group, topic)
    }

    /// On a graceful stop: when this node leads, hands leadership to its most caught-up live
    /// follower and waits until that one leads, so the group has a leader before this node
    /// stops serving. Returns who took over; `None` when this node did not lead, no follower
    /// answered lately, or the transfer did not finish (the group then elects as after a
    /// crash).
    pub async fn hand_off_leadership(&self) -> Option<String> {
        let node = self.store.node();
        let metrics = node.metrics();
        let to = hand_off_target(&metrics, HAND_OFF_CONTACT_MAX_MS)?;
        match node.transfer_leadership(&to).await {
            Ok(()) => Some(to),
            Err(e) => {
                tracing::warn!(to = %to, error = %e, "leadership hand-off did not finish");
                None
            }
        }
    }

    /// Moves leadership to `to`; only the leader can.
    ///
    /// # Errors
    /// An empty or unknown node, [`ServiceError::NotLeader`] naming the leader, a store
    /// failure.
    pub async fn transfer_leadership(&self, to: &str) -> Result<(), ServiceError> {
        let node = self.store.node();
        if to.is_empty() {
            return Err(ServiceError::MissingField { field: "to" });
        }
        if node.config().peer(to).is_none() {
            return Err(ServiceError::UnknownNode {
                node: to.to_string(),
            });
        }
        let metrics = node.metrics();
        // Asking again for a transfer that already happened is not an error.
        if metrics.leader.as_deref() == Some(to) {
            return Ok(());
        }
        if metrics.role != Role::Leader {
            return Err(ServiceError::NotLeader {
                node: metrics.id,
                leader: metrics.leader,
            });
        }
        tracing::info!(from = %metrics.id, to, term = metrics.term, "leadership transfer");
        match node.transfer_leadership(to).await {
            Ok(()) => Ok(()),
            // Leadership moved elsewhere while we were asked.
            Err(LogError::NotLeader { .. }) => {
                let metrics = node.metrics();
                Err(ServiceError::NotLeader {
                    node: metrics.id,
                    leader: metrics.leader,
                })
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_log::PeerProgress;

    fn config() -> LogConfig {
        LogConfig::new(
            "g",
            "n0-127.0.0.1:1;n1-127.0.0.1:2;n2-127.0.0.1:3",
            "n1",
            "/nonexistent",
        )
        .unwrap()
    }

    fn metrics(role: Role, leader: &str, peers: Vec<PeerProgress>) -> Metrics {
        Metrics {
            id: "n1".into(),
            role,
            term: 7,
            leader: Some(leader.into()),
            last_index: Some(42),
            commit_index: Some(41),
            applied_index: Some(40),
            purged_index: None,
            peers,
            leader_contact_ms: Some(0),
        }
    }

    #[test]
    fn the_hand_off_goes_to_the_least_behind_live_follower() {
        let peer = |id: &str, lag: u64, contact: Option<u64>| PeerProgress {
            id: id.into(),
            match_index: Some(100 - lag),
            lag,
            contact_ms: contact,
        };
        let leading = |peers| metrics(Role::Leader, "n1", peers);
        let both = vec![peer("n0", 5, Some(10)), peer("n2", 1, Some(20))];
        assert_eq!(hand_off_target(&leading(both), 1000).as_deref(), Some("n2"));
        let n2_silent = vec![peer("n0", 5, Some(10)), peer("n2", 1, Some(5000))];
        assert_eq!(
            hand_off_target(&leading(n2_silent), 1000).as_deref(),
            Some("n0")
        );
        let none_live = vec![peer("n0", 0, None), peer("n2", 0, Some(5000))];
        assert_eq!(hand_off_target(&leading(none_live), 1000), None);
        let follower = metrics(Role::Follower, "n1", vec![peer("n0", 0, Some(1))]);
        assert_eq!(hand_off_target(&follower, 1000), None);
    }

    #[test]
    fn leader_view_has_every_member_with_progress() {
        let peers = vec![
            PeerProgress {
                id: "n0".into(),
                match_index: Some(40),
                lag: 2,
                contact_ms: Some(10),
            },
            PeerProgress {
                id: "n2".into(),
                match_index: None,
                lag: 42,
                contact_ms: None,
            },
        ];
        let view = cluster_view(&config(), &metrics(Role::Leader, "n1", peers), "h:1");
        assert_eq!(view.self_id, "n1");
        assert_eq!(view.leader_id, "n1");
        let ids: Vec<&str> = view.nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["n0", "n1", "n2"]);
        let me = &view.nodes[1];
        assert!(me.is_self);
        assert_eq!(me.role, Some(Role::Leader));
        assert_eq!(me.listen_addr, "h:1");
        assert_eq!((me.commit_index, me.applied_index), (Some(41), Some(40)));
        assert_eq!((me.match_index, me.lag), (Some(42), Some(0)));
        assert_eq!(
            (view.nodes[0].match_index, view.nodes[0].lag),
            (Some(40), Some(2))
        );
        assert_eq!(
            (view.nodes[2].match_index, view.nodes[2].lag),
            (None, Some(42))
        );
        assert_eq!(view.nodes[0].role, None);
        assert!(view.nodes[0].listen_addr.is_empty() && view.nodes[0].commit_index.is_none());
    }

    #[test]
    fn follower_view_names_the_leader_and_no_progress() {
        let view = cluster_view(&config(), &metrics(Role::Follower, "n2", vec![]), "h:1");
        let leaders: Vec<&str> = view
            .nodes
            .iter()
            .filter(|n| n.role == Some(Role::Leader))
            .map(|n| n.id.as_str())
            .collect();
        assert_eq!(leaders, ["n2"]);
        assert_eq!(view.nodes[1].role, Some(Role::Follower));
        assert!(view.nodes.iter().all(|n| n.lag.is_none()));
    }

    #[test]
    fn progress_rows_cover_queues_the_group_never_read() {
        let rows = progress_rows("t", &[5, 3, 0], &[(2, 4, 2)]);
        let got: Vec<(u32, u64, u64, u64, u64, u64)> = rows
            .iter()
            .map(|r| {
                (
                    r.queue_id,
                    r.broker_offset,
                    r.acked_offset,
                    r.next_offset,
                    r.inflight,
                    r.lag,
                )
            })
            .collect();
        assert_eq!(
            got,
            [(0, 5, 2, 4, 2, 3), (1, 3, 0, 0, 0, 3), (2, 0, 0, 0, 0, 0)]
        );
    }
}
