//! `raftmq.admin.v1.Admin`: RaftMQ's admin service, what `mqadmin` speaks.
//!
//! A mapping between the admin protobuf and [`BrokerService`]'s operator operations
//! (`crate::service::manage` has the rules: which node answers what, and why a follower
//! refuses a leadership transfer). It serves on the same listenPort as the RocketMQ
//! MessagingService and works on any node.
//!
//! Every outcome travels in the response's `Status` with gRPC OK (as RocketMQ's v2 API does);
//! [`error_status`] is the single mapping of a [`ServiceError`]. This module knows nothing of
//! the RocketMQ wire protocol.

use proto::raftmq::admin::v1 as pb;
use proto::raftmq::admin::v1::admin_server::Admin as AdminRpc;
use raft_log::Role;
use tonic::{Request, Response, Status as GrpcStatus};

use crate::command::{GroupRetryPolicy, SubscriptionGroup};
use crate::service::{
    BrokerService, ClientInfo, ClientProtocol, ClusterView, ConsumerConnection, GroupUpdate,
    MessageQuery, MessageView, NodeView, QUERY_MAX_DEFAULT, QueueProgress, ServiceError,
    TopicStats,
};
use crate::state::ApplyError;
use crate::store::StoreErrorKind;

/// The code and message a response carries for `e`. Argument errors name the request field.
pub fn error_status(e: &ServiceError) -> pb::Status {
    use ServiceError as E;
    use pb::Code;
    let code = match e {
        E::InvalidName { .. }
        | E::MissingField { .. }
        | E::NoMessages
        | E::EmptyBody
        | E::BodyTooLarge { .. }
        | E::FifoWithoutGroup
        | E::DeliveryTooLate { .. }
        | E::InvisibleTimeMissing
        | E::InvisibleTimeTooLong { .. }
        | E::InvisibleTimeOutOfRange { .. }
        | E::InvalidField { .. } => Code::InvalidArgument,
        E::MessageNotFound { .. }
        | E::TopicNotFound { .. }
        | E::TopicNotAutoCreated { .. }
        | E::GroupNotFound { .. }
        | E::ConsumerNotOnline { .. }
        | E::ProducerNotOnline { .. }
        | E::SubscriptionGroupNotFound { .. }
        | E::SubscriptionGroupNotAutoCreated { .. }
        | E::UnknownNode { .. } => Code::NotFound,
        E::NotLeader { .. } => Code::NotLeader,
        E::Refused { source } => match source {
            ApplyError::TopicNotFound { .. } => Code::NotFound,
            ApplyError::InvalidHandle { .. }
            | ApplyError::QueueCount { .. }
            | ApplyError::QueueNotFound { .. }
            | ApplyError::NotRecallable { .. } => Code::InvalidArgument,
            ApplyError::TransactionNotFound { .. }
            | ApplyError::SubscriptionGroupNotFound { .. } => Code::NotFound,
            ApplyError::InvalidSubscriptionGroup { .. } => Code::InvalidArgument,
        },
        E::Store { source } => store_code(source.kind()),
        E::Unsupported { .. }
        | E::DiskFull { .. }
        | E::ConsumeDisabled { .. }
        | E::BroadcastDisabled { .. }
        | E::ResultMissing => Code::Internal,
    };
    let message = match e {
        E::InvalidName { source, .. } => format!("{}: {source}", source.field()),
        E::MissingField { field } => format!("{field}: is empty"),
        E::Refused {
            source: source @ ApplyError::QueueCount { .. },
        } => format!("queues: {source}"),
        other => other.to_string(),
    };
    status(code, message)
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
    pb::QueryMessageResponse,
    pb::ResetOffsetByTimeResponse,
    pb::StatsAllResponse,
    pb::ConsumerConnectionResponse,
    pb::ProducerConnectionResponse,
    pb::UpdateSubscriptionGroupResponse,
    pb::DeleteSubscriptionGroupResponse,
    pb::SubscriptionGroupListResponse,
);

/// The response for `result`: the answer with OK, or an empty answer with the error's status.
fn answer<R: WithStatus>(result: Result<R, ServiceError>) -> Result<Response<R>, GrpcStatus> {
    let response = match result {
        Ok(mut r) => {
            r.set_status(ok());
            r
        }
        Err(e) => {
            tracing::debug!(error = %e, "admin request refused");
            let mut r = R::default();
            r.set_status(error_status(&e));
            r
        }
    };
    Ok(Response::new(response))
}

fn role_to_pb(role: Option<Role>) -> pb::Role {
    match role {
        None => pb::Role::Unspecified,
        Some(Role::Leader) => pb::Role::Leader,
        Some(Role::Follower) => pb::Role::Follower,
        Some(Role::Candidate) => pb::Role::Candidate,
        Some(Role::Learner) => pb::Role::Learner,
        Some(Role::Shutdown) => pb::Role::Shutdown,
    }
}

fn node_to_pb(n: NodeView) -> pb::Node {
    pb::Node {
        id: n.id,
        raft_addr: n.raft_addr,
        listen_addr: n.listen_addr,
        is_self: n.is_self,
        role: role_to_pb(n.role) as i32,
        term: n.term,
        leader_id: n.leader_id,
        last_index: n.last_index,
        commit_index: n.commit_index,
        applied_index: n.applied_index,
        purged_index: n.purged_index,
        match_index: n.match_index,
        lag: n.lag,
    }
}

fn cluster_to_pb(view: ClusterView) -> pb::ClusterListResponse {
    pb::ClusterListResponse {
        status: None,
        group: view.group,
        self_id: view.self_id,
        leader_id: view.leader_id,
        nodes: view.nodes.into_iter().map(node_to_pb).collect(),
    }
}

fn progress_to_pb(p: QueueProgress) -> pb::QueueProgress {
    pb::QueueProgress {
        topic: p.topic,
        queue_id: p.queue_id,
        broker_offset: p.broker_offset,
        acked_offset: p.acked_offset,
        next_offset: p.next_offset,
        inflight: p.inflight,
        lag: p.lag,
    }
}

fn retry_policy_to_pb(p: &GroupRetryPolicy) -> pb::RetryPolicy {
    use pb::retry_policy::Policy;
    let policy = match p {
        GroupRetryPolicy::Customized { next_ms } => Policy::Customized(pb::CustomizedRetryPolicy {
            next_ms: next_ms.clone(),
        }),
        GroupRetryPolicy::Exponential {
            initial_ms,
            max_ms,
            multiplier,
        } => Policy::Exponential(pb::ExponentialRetryPolicy {
            initial_ms: *initial_ms,
            max_ms: *max_ms,
            multiplier: *multiplier,
        }),
    };
    pb::RetryPolicy {
        policy: Some(policy),
    }
}

fn retry_policy_of_pb(p: pb::RetryPolicy) -> Result<GroupRetryPolicy, ServiceError> {
    use pb::retry_policy::Policy;
    match p.policy {
        Some(Policy::Customized(c)) => Ok(GroupRetryPolicy::Customized { next_ms: c.next_ms }),
        Some(Policy::Exponential(e)) => Ok(GroupRetryPolicy::Exponential {
            initial_ms: e.initial_ms,
            max_ms: e.max_ms,
            multiplier: e.multiplier,
        }),
        None => Err(ServiceError::InvalidField {
            field: "groupRetryPolicy",
            why: "names neither a customized nor an exponential policy".into(),
        }),
    }
}

fn group_to_pb(g: SubscriptionGroup) -> pb::SubscriptionGroup {
    pb::SubscriptionGroup {
        group_retry_policy: Some(retry_policy_to_pb(&g.group_retry_policy)),
        group_name: g.group_name,
        consume_enable: g.consume_enable,
        consume_from_min_enable: g.consume_from_min_enable,
        consume_broadcast_enable: g.consume_broadcast_enable,
        consume_message_orderly: g.consume_message_orderly,
        retry_queue_nums: g.retry_queue_nums,
        retry_max_times: g.retry_max_times,
        notify_consumer_ids_changed_enable: g.notify_consumer_ids_changed_enable,
    }
}

fn group_update_of_pb(r: pb::UpdateSubscriptionGroupRequest) -> Result<GroupUpdate, ServiceError> {
    Ok(GroupUpdate {
        group_retry_policy: r.group_retry_policy.map(retry_policy_of_pb).transpose()?,
        group_name: r.group_name,
        consume_enable: r.consume_enable,
        consume_from_min_enable: r.consume_from_min_enable,
        consume_broadcast_enable: r.consume_broadcast_enable,
        consume_message_orderly: r.consume_message_orderly,
        retry_queue_nums: r.retry_queue_nums,
        retry_max_times: r.retry_max_times,
        notify_consumer_ids_changed_enable: r.notify_consumer_ids_changed_enable,
    })
}

/// The Admin service of one broker node.
#[derive(Clone, Debug)]
pub struct Admin {
    service: BrokerService,
}

impl Admin {
    /// The Admin service over `service`.
    pub fn new(service: BrokerService) -> Admin {
        Admin { service }
    }
}

#[tonic::async_trait]
impl AdminRpc for Admin {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn cluster_list(
        &self,
        _request: Request<pb::ClusterListRequest>,
    ) -> Result<Response<pb::ClusterListResponse>, GrpcStatus> {
        answer(Ok(cluster_to_pb(self.service.cluster())))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn topic_list(
        &self,
        _request: Request<pb::TopicListRequest>,
    ) -> Result<Response<pb::TopicListResponse>, GrpcStatus> {
        let topics = self
            .service
            .topics()
            .into_iter()
            .map(|(name, queues)| pb::Topic { name, queues })
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
        let result = self.service.update_topic(&req.topic, req.queues).await;
        answer(result.map(|()| pb::UpdateTopicResponse::default()))
    }

    #[tracing::instrument(skip_all, fields(topic = %request.get_ref().topic))]
    async fn delete_topic(
        &self,
        request: Request<pb::DeleteTopicRequest>,
    ) -> Result<Response<pb::DeleteTopicResponse>, GrpcStatus> {
        let req = request.into_inner();
        let result = self.service.delete_topic(&req.topic).await;
        answer(result.map(|()| pb::DeleteTopicResponse::default()))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn topic_status(
        &self,
        request: Request<pb::TopicStatusRequest>,
    ) -> Result<Response<pb::TopicStatusResponse>, GrpcStatus> {
        let topic = request.into_inner().topic;
        let result = self.service.queue_bounds(&topic).map(|bounds| {
            let queues = bounds
                .iter()
                .enumerate()
                .map(|(queue, b)| pb::QueueStatus {
                    queue_id: u32::try_from(queue).unwrap_or(u32::MAX),
                    min_offset: b.min,
                    max_offset: b.next,
                })
                .collect();
            pb::TopicStatusResponse {
                status: None,
                queues,
            }
        });
        answer(result)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn consumer_progress(
        &self,
        request: Request<pb::ConsumerProgressRequest>,
    ) -> Result<Response<pb::ConsumerProgressResponse>, GrpcStatus> {
        let req = request.into_inner();
        let result = self
            .service
            .consumer_progress(&req.group, &req.topic)
            .map(|rows| pb::ConsumerProgressResponse {
                status: None,
                queues: rows.into_iter().map(progress_to_pb).collect(),
            });
        answer(result)
    }

    #[tracing::instrument(skip_all, fields(to = %request.get_ref().to))]
    async fn leadership_transfer(
        &self,
        request: Request<pb::LeadershipTransferRequest>,
    ) -> Result<Response<pb::LeadershipTransferResponse>, GrpcStatus> {
        let to = request.into_inner().to;
        let response = match self.service.transfer_leadership(&to).await {
            Ok(()) => pb::LeadershipTransferResponse {
                status: Some(ok()),
                leader_id: to,
            },
            Err(e) => {
                // The caller retries at the leader, so name it in the response, not only in text.
                let leader_id = match &e {
                    ServiceError::NotLeader { leader, .. } => leader.clone().unwrap_or_default(),
                    _ => String::new(),
                };
                pb::LeadershipTransferResponse {
                    status: Some(error_status(&e)),
                    leader_id,
                }
            }
        };
        Ok(Response::new(response))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn query_message(
        &self,
        request: Request<pb::QueryMessageRequest>,
    ) -> Result<Response<pb::QueryMessageResponse>, GrpcStatus> {
        let req = request.into_inner();
        let max = match req.max {
            0 => QUERY_MAX_DEFAULT,
            n => n as usize,
        };
        let result = query_from_pb(req.by)
            .and_then(|q| self.service.query_messages(&q, max))
            .map(|found| pb::QueryMessageResponse {
                status: None,
                messages: found.into_iter().map(found_to_pb).collect(),
            });
        answer(result)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(group = %request.get_ref().group))]
    async fn consumer_connection(
        &self,
        request: Request<pb::ConsumerConnectionRequest>,
    ) -> Result<Response<pb::ConsumerConnectionResponse>, GrpcStatus> {
        let group = request.into_inner().group;
        answer(
            self.service
                .consumer_connection(&group)
                .map(consumers_to_pb),
        )
    }

    #[tracing::instrument(level = "debug", skip_all, fields(group = %request.get_ref().group))]
    async fn producer_connection(
        &self,
        request: Request<pb::ProducerConnectionRequest>,
    ) -> Result<Response<pb::ProducerConnectionResponse>, GrpcStatus> {
        let group = request.into_inner().group;
        let result = self.service.producer_connection(&group);
        answer(result.map(|producers| pb::ProducerConnectionResponse {
            status: None,
            connections: producers.into_iter().map(connection_to_pb).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(group = %request.get_ref().group_name))]
    async fn update_subscription_group(
        &self,
        request: Request<pb::UpdateSubscriptionGroupRequest>,
    ) -> Result<Response<pb::UpdateSubscriptionGroupResponse>, GrpcStatus> {
        let result = match group_update_of_pb(request.into_inner()) {
            Ok(update) => self.service.update_subscription_group(update).await,
            Err(e) => Err(e),
        };
        answer(result.map(|g| pb::UpdateSubscriptionGroupResponse {
            status: None,
            group: Some(group_to_pb(g)),
        }))
    }

    #[tracing::instrument(skip_all, fields(group = %request.get_ref().group_name))]
    async fn delete_subscription_group(
        &self,
        request: Request<pb::DeleteSubscriptionGroupRequest>,
    ) -> Result<Response<pb::DeleteSubscriptionGroupResponse>, GrpcStatus> {
        let req = request.into_inner();
        let result = self
            .service
            .delete_subscription_group(&req.group_name, req.clean_offset)
            .await;
        answer(result.map(|_| pb::DeleteSubscriptionGroupResponse::default()))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn subscription_group_list(
        &self,
        _request: Request<pb::SubscriptionGroupListRequest>,
    ) -> Result<Response<pb::SubscriptionGroupListResponse>, GrpcStatus> {
        let config = self.service.config();
        answer(Ok(pb::SubscriptionGroupListResponse {
            status: None,
            cluster_name: config.cluster_name.clone(),
            broker_name: config.broker_name.clone(),
            groups: self
                .service
                .subscription_groups()
                .into_iter()
                .map(group_to_pb)
                .collect(),
            version: self.service.subscription_groups_version(),
        }))
    }

    #[tracing::instrument(skip_all, fields(group = %request.get_ref().group, topic = %request.get_ref().topic))]
    async fn reset_offset_by_time(
        &self,
        request: Request<pb::ResetOffsetByTimeRequest>,
    ) -> Result<Response<pb::ResetOffsetByTimeResponse>, GrpcStatus> {
        let req = request.into_inner();
        let result = self
            .service
            .reset_offset_by_time(&req.group, &req.topic, req.timestamp_ms)
            .await
            .map(|moved| pb::ResetOffsetByTimeResponse {
                status: None,
                queues: moved
                    .into_iter()
                    .map(|(queue_id, old_offset, new_offset)| pb::QueueReset {
                        queue_id,
                        old_offset,
                        new_offset,
                    })
                    .collect(),
            });
        answer(result)
    }

    #[tracing::instrument(skip_all, fields(topic = %request.get_ref().topic))]
    async fn stats_all(
        &self,
        request: Request<pb::StatsAllRequest>,
    ) -> Result<Response<pb::StatsAllResponse>, GrpcStatus> {
        let req = request.into_inner();
        let topic = (!req.topic.is_empty()).then_some(req.topic.as_str());
        let result = self
            .service
            .topic_stats(topic)
            .map(|topics| pb::StatsAllResponse {
                status: None,
                topics: topics.into_iter().map(topic_stats_to_pb).collect(),
            });
        answer(result)
    }
}

fn topic_stats_to_pb(t: TopicStats) -> pb::TopicStats {
    pb::TopicStats {
        topic: t.topic,
        in_tps: t.put.tps_60s,
        in_msg_24h: t.put.last_24h,
        groups: t
            .groups
            .into_iter()
            .map(|(group, got, accumulation)| pb::GroupStats {
                group,
                out_tps: got.tps_60s,
                out_msg_24h: got.last_24h,
                accumulation,
            })
            .collect(),
    }
}

fn connection_to_pb(c: ClientInfo) -> pb::ClientConnection {
    let protocol = match c.protocol {
        ClientProtocol::Grpc => "5.x",
        ClientProtocol::Remoting => "4.x",
    };
    pb::ClientConnection {
        client_id: c.client_id,
        client_addr: c.addr,
        language: c.language,
        version: c.version,
        protocol: protocol.to_string(),
    }
}

fn consumers_to_pb(c: ConsumerConnection) -> pb::ConsumerConnectionResponse {
    pb::ConsumerConnectionResponse {
        status: None,
        connections: c.connections.into_iter().map(connection_to_pb).collect(),
        subscriptions: c
            .subscriptions
            .into_iter()
            .map(|(topic, filter)| (topic, filter.expression))
            .collect(),
        consume_type: c.mode.consume_type.name().to_string(),
        message_model: c.mode.message_model.name().to_string(),
        consume_from_where: c.mode.consume_from_where.name().to_string(),
    }
}

fn query_from_pb(by: Option<pb::query_message_request::By>) -> Result<MessageQuery, ServiceError> {
    use pb::query_message_request::By;
    Ok(
        match by.ok_or(ServiceError::MissingField { field: "by" })? {
            By::Key(k) => MessageQuery::Key {
                topic: k.topic,
                key: k.key,
            },
            By::UniqueKey(k) => MessageQuery::UniqueKey {
                topic: k.topic,
                id: k.key,
            },
            By::OffsetMsgId(id) => MessageQuery::OffsetMsgId(id),
            By::QueueOffset(q) => MessageQuery::QueueOffset {
                topic: q.topic,
                queue: q.queue_id,
                offset: q.offset,
            },
        },
    )
}

fn found_to_pb(v: MessageView) -> pb::FoundMessage {
    let m = v.message;
    let properties = m
        .property_pairs()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    pb::FoundMessage {
        topic: m.topic,
        msg_id: m.message_id,
        offset_msg_id: v.offset_msg_id,
        tag: m.tag.unwrap_or_default(),
        keys: m.keys,
        queue_id: v.queue_offset.map(|(q, _)| q),
        queue_offset: v.queue_offset.map(|(_, o)| o),
        commit_log_offset: v.commit_log_offset,
        born_timestamp_ms: m.born_ms,
        store_timestamp_ms: v.store_ms,
        born_host: m.born_host,
        store_host: v.store_host,
        properties,
        body: m.body,
        message_group: m.message_group.unwrap_or_default(),
        delivery_timestamp_ms: m.delivery_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::check_name;
    use raft_log::Error as LogError;

    #[test]
    fn bad_names_are_invalid_arguments_naming_the_field() {
        for bad in ["", "a b", "a/b", &"x".repeat(128)] {
            let e = ServiceError::InvalidName {
                kind: crate::service::NameKind::Topic,
                source: check_name("topic", bad).unwrap_err(),
            };
            let s = error_status(&e);
            assert!(s.message.starts_with("topic: "), "{}", s.message);
            assert_eq!(s.code, pb::Code::InvalidArgument as i32);
        }
    }

    #[test]
    fn every_error_maps_to_its_code() {
        let cases: Vec<(ServiceError, pb::Code)> = vec![
            (
                ServiceError::TopicNotFound { topic: "t".into() },
                pb::Code::NotFound,
            ),
            (
                ServiceError::NotLeader {
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
            (
                ServiceError::MissingField { field: "to" },
                pb::Code::InvalidArgument,
            ),
        ];
        for (e, code) in cases {
            assert_eq!(error_status(&e).code, code as i32, "{e}");
        }
        assert_eq!(
            error_status(&ApplyError::QueueCount { queues: 0 }.into()).message,
            "queues: queue count 0 must be 1..=1024"
        );
        assert_eq!(
            error_status(&ServiceError::MissingField { field: "to" }).message,
            "to: is empty"
        );
    }
}
