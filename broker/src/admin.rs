//! `raftmq.admin.v1.Admin`: RaftMQ's admin service, what `mqadmin` speaks.
//!
//! It serves on the same listenPort as the RocketMQ MessagingService and works on any node:
//! - reads (cluster view, topic table, queue offsets, consumer progress) answer from this node's
//!   applied state, so a follower may trail the leader by the entries it has not applied yet;
//! - topic writes go through [`MessageStore::execute`], which forwards them to the leader and
//!   answers once this node applied them (read-your-writes on the same node);
//! - a leadership transfer needs the leader. A follower does not forward it, because it knows
//!   the other members' replication addresses but not their listen addresses; it answers
//!   `CODE_NOT_LEADER` naming the leader, and `mqadmin` retries at that node.
//!
//! Every outcome travels in the response's `Status` with gRPC OK (as RocketMQ's v2 API does);
//! [`AdminError::status`] is the single mapping. This module knows nothing of the RocketMQ wire
//! protocol.

use proto::raftmq::admin::v1 as pb;
use proto::raftmq::admin::v1::admin_server::Admin as AdminRpc;
use raft_log::{Config as LogConfig, Error as LogError, Metrics, Role};
use tonic::{Request, Response, Status as GrpcStatus};

use crate::state::{ApplyError, BrokerState};
use crate::store::{MessageStore, StoreError, StoreErrorKind};

/// Why an admin request failed; [`AdminError::status`] turns it into the response's `Status`.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A request field is missing or invalid.
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// The request field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The topic does not exist.
    #[error("topic {topic} does not exist")]
    TopicNotFound {
        /// The topic asked for.
        topic: String,
    },
    /// The consumer group has no progress on any topic.
    #[error("consumer group {group} has not consumed from any topic")]
    GroupNotFound {
        /// The group asked for.
        group: String,
    },
    /// The node is not a member of the group.
    #[error("unknown node {node} (not in dLegerPeers)")]
    UnknownNode {
        /// The node asked for.
        node: String,
    },
    /// Only the leader can do this.
    #[error("{node} is not the leader; {}", leader_hint(.leader))]
    NotLeader {
        /// The node that was asked.
        node: String,
        /// The leader it knows.
        leader: Option<String>,
    },
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Applying the command failed.
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

fn leader_hint(leader: &Option<String>) -> String {
    match leader {
        Some(id) => format!("the leader is {id}"),
        None => "no leader is known".to_string(),
    }
}

impl From<LogError> for AdminError {
    fn from(e: LogError) -> Self {
        AdminError::Store(StoreError::Log(e))
    }
}

impl AdminError {
    /// The code and message the response carries.
    pub fn status(&self) -> pb::Status {
        use pb::Code;
        let code = match self {
            AdminError::InvalidArgument { .. } => Code::InvalidArgument,
            AdminError::TopicNotFound { .. }
            | AdminError::GroupNotFound { .. }
            | AdminError::UnknownNode { .. } => Code::NotFound,
            AdminError::NotLeader { .. } => Code::NotLeader,
            AdminError::Store(e) => store_code(e.kind()),
            AdminError::Apply(ApplyError::TopicNotFound { .. }) => Code::NotFound,
            AdminError::Apply(ApplyError::InvalidHandle { .. } | ApplyError::QueueCount { .. }) => {
                Code::InvalidArgument
            }
        };
        status(code, self.to_string())
    }
}

fn store_code(kind: StoreErrorKind) -> pb::Code {
    use pb::Code;
    match kind {
        // The store already waited for a leader; a refusal here means there still is none.
        StoreErrorKind::NoLeader | StoreErrorKind::Busy | StoreErrorKind::Shutdown => {
            Code::Unavailable
        }
        StoreErrorKind::OutcomeUnknown => Code::Timeout,
        StoreErrorKind::UnknownNode => Code::NotFound,
        StoreErrorKind::TooLarge | StoreErrorKind::Internal => Code::Internal,
    }
}

fn status(code: pb::Code, message: impl Into<String>) -> pb::Status {
    pb::Status {
        code: code as i32,
        message: message.into(),
    }
}

fn ok() -> pb::Status {
    status(pb::Code::Ok, "OK")
}

/// Responses that carry a `Status`.
trait WithStatus: Default {
    fn set_status(&mut self, status: pb::Status);
}

macro_rules! with_status {
    ($($t:ty),* $(,)?) => {
        $(impl WithStatus for $t {
            fn set_status(&mut self, status: pb::Status) {
                self.status = Some(status);
            }
        })*
    };
}

with_status!(
    pb::ClusterListResponse,
    pb::TopicListResponse,
    pb::UpdateTopicResponse,
    pb::DeleteTopicResponse,
    pb::TopicStatusResponse,
    pb::ConsumerProgressResponse,
    pb::LeadershipTransferResponse,
);

/// The response for `result`: the answer with OK, or an empty answer with the error's status.
fn answer<R: WithStatus>(result: Result<R, AdminError>) -> Result<Response<R>, GrpcStatus> {
    let response = match result {
        Ok(mut r) => {
            r.set_status(ok());
            r
        }
        Err(e) => {
            tracing::debug!(error = %e, "admin request refused");
            let mut r = R::default();
            r.set_status(e.status());
            r
        }
    };
    Ok(Response::new(response))
}

/// RocketMQ's topic and group name rule, shared with the messaging API.
fn check_name(field: &'static str, name: &str) -> Result<(), AdminError> {
    crate::grpc::check_name(field, name)
        .map_err(|reason| AdminError::InvalidArgument { field, reason })
}

fn role_to_pb(role: Role) -> pb::Role {
    match role {
        Role::Leader => pb::Role::Leader,
        Role::Follower => pb::Role::Follower,
        Role::Candidate => pb::Role::Candidate,
        Role::Learner => pb::Role::Learner,
        Role::Shutdown => pb::Role::Shutdown,
    }
}

/// This node's view of its group: its own row complete, the others as far as it knows them.
fn cluster_view(
    config: &LogConfig,
    metrics: &Metrics,
    listen_addr: &str,
) -> pb::ClusterListResponse {
    let leader = metrics.leader.clone().unwrap_or_default();
    let nodes = config
        .peers
        .iter()
        .map(|peer| {
            if peer.id == metrics.id {
                let leads = metrics.role == Role::Leader;
                return pb::Node {
                    id: peer.id.clone(),
                    raft_addr: peer.addr.clone(),
                    listen_addr: listen_addr.to_string(),
                    is_self: true,
                    role: role_to_pb(metrics.role) as i32,
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
            let role = if peer.id == leader {
                pb::Role::Leader
            } else {
                pb::Role::Unspecified
            };
            pb::Node {
                id: peer.id.clone(),
                raft_addr: peer.addr.clone(),
                role: role as i32,
                match_index: progress.and_then(|p| p.match_index),
                lag: progress.map(|p| p.lag),
                ..Default::default()
            }
        })
        .collect();
    pb::ClusterListResponse {
        status: None,
        group: config.group.clone(),
        self_id: metrics.id.clone(),
        leader_id: leader,
        nodes,
    }
}

/// Per queue of `topic`, `group`'s progress. Queues the group never touched count as unread;
/// the two lists may differ in length when the queue count changed.
fn progress_rows(
    topic: &str,
    depths: &[u64],
    progress: &[(u64, u64, usize)],
) -> Vec<pb::QueueProgress> {
    let queues = depths.len().max(progress.len());
    (0..queues)
        .map(|queue| {
            let depth = depths.get(queue).copied().unwrap_or(0);
            let (acked, next, inflight) = progress.get(queue).copied().unwrap_or((0, 0, 0));
            pb::QueueProgress {
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
) -> Result<Vec<pb::QueueProgress>, AdminError> {
    let topics: Vec<&String> = if topic.is_empty() {
        let topics: Vec<&String> = state
            .topics()
            .keys()
            .filter(|t| state.group_progress(group, t).is_some())
            .collect();
        if topics.is_empty() {
            return Err(AdminError::GroupNotFound {
                group: group.to_string(),
            });
        }
        topics
    } else {
        let (name, _) =
            state
                .topics()
                .get_key_value(topic)
                .ok_or_else(|| AdminError::TopicNotFound {
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

/// The Admin service of one broker node.
#[derive(Clone, Debug)]
pub struct Admin {
    store: MessageStore,
    listen_addr: String,
}

impl Admin {
    /// A service over `store`. `listen_addr` is this broker's RocketMQ address
    /// (`brokerIP1:listenPort`), reported in its own cluster row.
    pub fn new(store: MessageStore, listen_addr: impl Into<String>) -> Admin {
        Admin {
            store,
            listen_addr: listen_addr.into(),
        }
    }

    /// Checks that a topic command applied.
    fn topic_changed(applied: Result<(), ApplyError>) -> Result<(), AdminError> {
        match applied {
            Ok(()) => Ok(()),
            Err(e @ ApplyError::QueueCount { .. }) => Err(AdminError::InvalidArgument {
                field: "queues",
                reason: e.to_string(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    async fn transfer(&self, to: &str) -> Result<pb::LeadershipTransferResponse, AdminError> {
        let node = self.store.node();
        if to.is_empty() {
            return Err(AdminError::InvalidArgument {
                field: "to",
                reason: "is empty".into(),
            });
        }
        if node.config().peer(to).is_none() {
            return Err(AdminError::UnknownNode {
                node: to.to_string(),
            });
        }
        let metrics = node.metrics();
        // Asking again for a transfer that already happened is not an error.
        if metrics.leader.as_deref() == Some(to) {
            return Ok(transferred(to));
        }
        if metrics.role != Role::Leader {
            return Err(AdminError::NotLeader {
                node: metrics.id,
                leader: metrics.leader,
            });
        }
        tracing::info!(from = %metrics.id, term = metrics.term, "leadership transfer");
        match node.transfer_leadership(to).await {
            Ok(()) => Ok(transferred(to)),
            // Leadership moved elsewhere while we were asked.
            Err(LogError::NotLeader { .. }) => {
                let metrics = node.metrics();
                Err(AdminError::NotLeader {
                    node: metrics.id,
                    leader: metrics.leader,
                })
            }
            Err(e) => Err(e.into()),
        }
    }
}

fn transferred(to: &str) -> pb::LeadershipTransferResponse {
    pb::LeadershipTransferResponse {
        status: None,
        leader_id: to.to_string(),
    }
}

#[tonic::async_trait]
impl AdminRpc for Admin {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn cluster_list(
        &self,
        _request: Request<pb::ClusterListRequest>,
    ) -> Result<Response<pb::ClusterListResponse>, GrpcStatus> {
        let node = self.store.node();
        answer(Ok(cluster_view(
            node.config(),
            &node.metrics(),
            &self.listen_addr,
        )))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn topic_list(
        &self,
        _request: Request<pb::TopicListRequest>,
    ) -> Result<Response<pb::TopicListResponse>, GrpcStatus> {
        let topics = self
            .store
            .state()
            .topics()
            .iter()
            .map(|(name, t)| pb::Topic {
                name: name.clone(),
                queues: t.queues,
            })
            .collect();
        answer(Ok(pb::TopicListResponse {
            status: None,
            topics,
        }))
    }

    #[tracing::instrument(
        skip_all,
        fields(topic = %request.get_ref().topic, queues = request.get_ref().queues)
    )]
    async fn update_topic(
        &self,
        request: Request<pb::UpdateTopicRequest>,
    ) -> Result<Response<pb::UpdateTopicResponse>, GrpcStatus> {
        let req = request.into_inner();
        let result = async {
            check_name("topic", &req.topic)?;
            Self::topic_changed(self.store.update_topic(&req.topic, req.queues).await?)?;
            tracing::info!("topic updated");
            Ok::<_, AdminError>(pb::UpdateTopicResponse::default())
        };
        answer(result.await)
    }

    #[tracing::instrument(skip_all, fields(topic = %request.get_ref().topic))]
    async fn delete_topic(
        &self,
        request: Request<pb::DeleteTopicRequest>,
    ) -> Result<Response<pb::DeleteTopicResponse>, GrpcStatus> {
        let req = request.into_inner();
        let result = async {
            check_name("topic", &req.topic)?;
            Self::topic_changed(self.store.delete_topic(&req.topic).await?)?;
            tracing::info!("topic deleted");
            Ok::<_, AdminError>(pb::DeleteTopicResponse::default())
        };
        answer(result.await)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn topic_status(
        &self,
        request: Request<pb::TopicStatusRequest>,
    ) -> Result<Response<pb::TopicStatusResponse>, GrpcStatus> {
        let topic = request.into_inner().topic;
        let result = check_name("topic", &topic).and_then(|()| {
            let depths = self.store.state().queue_depths(&topic).ok_or_else(|| {
                AdminError::TopicNotFound {
                    topic: topic.clone(),
                }
            })?;
            let queues = depths
                .iter()
                .enumerate()
                .map(|(queue, &depth)| pb::QueueStatus {
                    queue_id: u32::try_from(queue).unwrap_or(u32::MAX),
                    min_offset: 0,
                    max_offset: depth,
                })
                .collect();
            Ok(pb::TopicStatusResponse {
                status: None,
                queues,
            })
        });
        answer(result)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn consumer_progress(
        &self,
        request: Request<pb::ConsumerProgressRequest>,
    ) -> Result<Response<pb::ConsumerProgressResponse>, GrpcStatus> {
        let req = request.into_inner();
        let result = check_name("group", &req.group)
            .and_then(|()| {
                if req.topic.is_empty() {
                    Ok(())
                } else {
                    check_name("topic", &req.topic)
                }
            })
            .and_then(|()| consumer_progress(&self.store.state(), &req.group, &req.topic))
            .map(|queues| pb::ConsumerProgressResponse {
                status: None,
                queues,
            });
        answer(result)
    }

    #[tracing::instrument(skip_all, fields(to = %request.get_ref().to))]
    async fn leadership_transfer(
        &self,
        request: Request<pb::LeadershipTransferRequest>,
    ) -> Result<Response<pb::LeadershipTransferResponse>, GrpcStatus> {
        let to = request.into_inner().to;
        let response = match self.transfer(&to).await {
            Ok(mut r) => {
                r.status = Some(ok());
                r
            }
            Err(e) => {
                // The caller retries at the leader, so name it in the response, not only in text.
                let leader_id = match &e {
                    AdminError::NotLeader { leader, .. } => leader.clone().unwrap_or_default(),
                    _ => String::new(),
                };
                pb::LeadershipTransferResponse {
                    status: Some(e.status()),
                    leader_id,
                }
            }
        };
        Ok(Response::new(response))
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
        }
    }

    #[test]
    fn leader_view_has_every_member_with_progress() {
        let peers = vec![
            PeerProgress {
                id: "n0".into(),
                match_index: Some(40),
                lag: 2,
            },
            PeerProgress {
                id: "n2".into(),
                match_index: None,
                lag: 42,
            },
        ];
        let view = cluster_view(&config(), &metrics(Role::Leader, "n1", peers), "h:1");
        assert_eq!(view.self_id, "n1");
        assert_eq!(view.leader_id, "n1");
        let ids: Vec<&str> = view.nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["n0", "n1", "n2"]);
        let me = &view.nodes[1];
        assert!(me.is_self);
        assert_eq!(me.role, pb::Role::Leader as i32);
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
        assert_eq!(view.nodes[0].role, pb::Role::Unspecified as i32);
        assert!(view.nodes[0].listen_addr.is_empty() && view.nodes[0].commit_index.is_none());
    }

    #[test]
    fn follower_view_names_the_leader_and_no_progress() {
        let view = cluster_view(&config(), &metrics(Role::Follower, "n2", vec![]), "h:1");
        let leaders: Vec<&str> = view
            .nodes
            .iter()
            .filter(|n| n.role == pb::Role::Leader as i32)
            .map(|n| n.id.as_str())
            .collect();
        assert_eq!(leaders, ["n2"]);
        assert_eq!(view.nodes[1].role, pb::Role::Follower as i32);
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

    #[test]
    fn names_follow_rocketmq_rules() {
        assert!(check_name("topic", "Topic_1-a%b|c").is_ok());
        for bad in ["", "a b", "a/b", &"x".repeat(128)] {
            let e = check_name("topic", bad).unwrap_err();
            assert!(e.to_string().starts_with("topic: "), "{e}");
            assert_eq!(e.status().code, pb::Code::InvalidArgument as i32);
        }
    }

    #[test]
    fn every_error_maps_to_its_code() {
        let cases: Vec<(AdminError, pb::Code)> = vec![
            (
                AdminError::TopicNotFound { topic: "t".into() },
                pb::Code::NotFound,
            ),
            (
                AdminError::NotLeader {
                    node: "n1".into(),
                    leader: Some("n0".into()),
                },
                pb::Code::NotLeader,
            ),
            (LogError::Timeout { waited_ms: 1 }.into(), pb::Code::Timeout),
            (LogError::Busy { pending: 1 }.into(), pb::Code::Unavailable),
            (
                LogError::NotLeader {
                    group: "g".into(),
                    leader_id: None,
                    leader_addr: None,
                }
                .into(),
                pb::Code::Unavailable,
            ),
            (
                ApplyError::QueueCount { queues: 0 }.into(),
                pb::Code::InvalidArgument,
            ),
        ];
        for (e, code) in cases {
            assert_eq!(e.status().code, code as i32, "{e}");
        }
        let e = AdminError::NotLeader {
            node: "n1".into(),
            leader: Some("n0".into()),
        };
        assert_eq!(e.to_string(), "n1 is not the leader; the leader is n0");
    }
}
