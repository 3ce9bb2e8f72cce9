//! RaftMQ's admin service (`raftmq.admin.v1.Admin`), what `mqadmin` speaks. Admin calls carry a
//! deadline and no SDK identity.

use std::time::Duration;

use proto::raftmq::admin::v1 as pb;
use tonic::Request;
use tonic::transport::Channel;

use crate::access::{connect, first_reachable};
use crate::error::ClientError;

/// An admin client on one channel to one node.
#[derive(Debug, Clone)]
pub struct AdminClient {
    addr: String,
    rpc: pb::admin_client::AdminClient<Channel>,
}

fn request<T>(message: T, timeout: Duration) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(timeout);
    request
}

/// `Ok` when `status` is OK.
///
/// # Errors
/// [`ClientError::NoStatus`] without a status, [`ClientError::Refused`] with any other code.
pub fn check_admin(
    status: Option<&pb::Status>,
    call: &'static str,
    addr: &str,
) -> Result<(), ClientError> {
    crate::error::check_status(
        status.map(|s| (s.code, s.message.as_str())),
        pb::Code::Ok as i32,
        |code| pb::Code::try_from(code).map_or("UNKNOWN_CODE", |c| c.as_str_name()),
        call,
        addr,
    )
}

/// Every address's ClusterList answer, asked at once, in `addrs` order; `None` where the node
/// is unreachable, the call failed or the answer is not OK.
pub async fn cluster_views(
    addrs: &[String],
    timeout: Duration,
) -> Vec<Option<pb::ClusterListResponse>> {
    let ask = |addr: String| async move {
        let mut client = AdminClient::connect(&addr).await.ok()?;
        let response = client.cluster_list(timeout).await.ok()?;
        check_admin(response.status.as_ref(), "ClusterList", &addr).ok()?;
        Some(response)
    };
    futures::future::join_all(addrs.iter().cloned().map(ask)).await
}

impl AdminClient {
    /// A client for the node at `addr` (used in errors) over `channel`.
    pub fn new(addr: impl Into<String>, channel: Channel) -> AdminClient {
        AdminClient {
            addr: addr.into(),
            rpc: pb::admin_client::AdminClient::new(channel),
        }
    }

    /// A client connected to `addr`.
    ///
    /// # Errors
    /// See [`connect`].
    pub async fn connect(addr: &str) -> Result<AdminClient, ClientError> {
        Ok(AdminClient::new(addr, connect(addr).await?))
    }

    /// A client connected to the first of `addrs` that accepts a connection.
    ///
    /// # Errors
    /// See [`first_reachable`].
    pub async fn first_reachable(addrs: &[String]) -> Result<AdminClient, ClientError> {
        let (addr, channel) = first_reachable(addrs).await?;
        Ok(AdminClient::new(addr, channel))
    }

    /// The node's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    fn rpc_error(&self, call: &'static str) -> impl FnOnce(tonic::Status) -> ClientError + '_ {
        move |source| ClientError::Rpc {
            call,
            addr: self.addr.clone(),
            source,
        }
    }

    /// ClusterList: the node's view of the group.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] when the call fails; the status is not checked.
    #[tracing::instrument(level = "debug", skip_all, fields(addr = %self.addr))]
    pub async fn cluster_list(
        &mut self,
        timeout: Duration,
    ) -> Result<pb::ClusterListResponse, ClientError> {
        let response = self
            .rpc
            .cluster_list(request(pb::ClusterListRequest {}, timeout))
            .await;
        response
            .map(tonic::Response::into_inner)
            .map_err(self.rpc_error("ClusterList"))
    }

    /// TopicList.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] when the call fails; the status is not checked.
    #[tracing::instrument(level = "debug", skip_all, fields(addr = %self.addr))]
    pub async fn topic_list(
        &mut self,
        timeout: Duration,
    ) -> Result<pb::TopicListResponse, ClientError> {
        let response = self
            .rpc
            .topic_list(request(pb::TopicListRequest {}, timeout))
            .await;
        response
            .map(tonic::Response::into_inner)
            .map_err(self.rpc_error("TopicList"))
    }

    /// UpdateTopic: creates `topic` with `queues` queues, or sets its queue count.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] when the call fails; the status is not checked.
    #[tracing::instrument(level = "debug", skip_all, fields(addr = %self.addr, topic = %topic))]
    pub async fn update_topic(
        &mut self,
        topic: &str,
        queues: u32,
        timeout: Duration,
    ) -> Result<pb::UpdateTopicResponse, ClientError> {
        let update = pb::UpdateTopicRequest {
            topic: topic.to_string(),
            queues,
        };
        let response = self.rpc.update_topic(request(update, timeout)).await;
        response
            .map(tonic::Response::into_inner)
            .map_err(self.rpc_error("UpdateTopic"))
    }

    /// DeleteTopic.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] when the call fails; the status is not checked.
    #[tracing::instrument(level = "debug", skip_all, fields(addr = %self.addr, topic = %topic))]
    pub async fn delete_topic(
        &mut self,
        topic: &str,
        timeout: Duration,
    ) -> Result<pb::DeleteTopicResponse, ClientError> {
        let delete = pb::DeleteTopicRequest {
            topic: topic.to_string(),
        };
        let response = self.rpc.delete_topic(request(delete, timeout)).await;
        response
            .map(tonic::Response::into_inner)
            .map_err(self.rpc_error("DeleteTopic"))
    }

    /// TopicStatus: the offsets of every queue of `topic`.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] when the call fails; the status is not checked.
    #[tracing::instrument(level = "debug", skip_all, fields(addr = %self.addr, topic = %topic))]
    pub async fn topic_status(
        &mut self,
        topic: &str,
        timeout: Duration,
    ) -> Result<pb::TopicStatusResponse, ClientError> {
        let status = pb::TopicStatusRequest {
            topic: topic.to_string(),
        };
        let response = self.rpc.topic_status(request(status, timeout)).await;
        response
            .map(tonic::Response::into_inner)
            .map_err(self.rpc_error("TopicStatus"))
    }

    /// ConsumerProgress of `group`, on `topic` or (empty) every topic.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] when the call fails; the status is not checked.
    #[tracing::instrument(level = "debug", skip_all, fields(addr = %self.addr, group = %group))]
    pub async fn consumer_progress(
        &mut self,
        group: &str,
        topic: &str,
        timeout: Duration,
    ) -> Result<pb::ConsumerProgressResponse, ClientError> {
        let progress = pb::ConsumerProgressRequest {
            group: group.to_string(),
            topic: topic.to_string(),
        };
        let response = self.rpc.consumer_progress(request(progress, timeout)).await;
        response
            .map(tonic::Response::into_inner)
            .map_err(self.rpc_error("ConsumerProgress"))
    }

    /// QueryMessage: messages by key, unique key, offset message id or queue offset.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] when the call fails; the status is not checked.
    #[tracing::instrument(level = "debug", skip_all, fields(addr = %self.addr))]
    pub async fn query_message(
        &mut self,
        query: pb::QueryMessageRequest,
        timeout: Duration,
    ) -> Result<pb::QueryMessageResponse, ClientError> {
        let response = self.rpc.query_message(request(query, timeout)).await;
        response
            .map(tonic::Response::into_inner)
            .map_err(self.rpc_error("QueryMessage"))
    }

    /// ResetOffsetByTime: `group`'s offsets on `topic` to the first message stored at or after
    /// `timestamp_ms`.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] when the call fails; the status is not checked.
    #[tracing::instrument(level = "debug", skip_all, fields(addr = %self.addr, group = %group, topic = %topic))]
    pub async fn reset_offset_by_time(
        &mut self,
        group: &str,
        topic: &str,
        timestamp_ms: u64,
        timeout: Duration,
    ) -> Result<pb::ResetOffsetByTimeResponse, ClientError> {
        let reset = pb::ResetOffsetByTimeRequest {
            group: group.to_string(),
            topic: topic.to_string(),
            timestamp_ms,
        };
        let response = self.rpc.reset_offset_by_time(request(reset, timeout)).await;
        response
            .map(tonic::Response::into_inner)
            .map_err(self.rpc_error("ResetOffsetByTime"))
    }

    /// StatsAll: this node's put and get figures per topic (`topic` empty: every topic).
    ///
    /// # Errors
    /// [`ClientError::Rpc`] when the call fails; the status is not checked.
    #[tracing::instrument(level = "debug", skip_all, fields(addr = %self.addr))]
    pub async fn stats_all(
        &mut self,
        topic: &str,
        timeout: Duration,
    ) -> Result<pb::StatsAllResponse, ClientError> {
        let ask = pb::StatsAllRequest {
            topic: topic.to_string(),
        };
        let response = self.rpc.stats_all(request(ask, timeout)).await;
        response
            .map(tonic::Response::into_inner)
            .map_err(self.rpc_error("StatsAll"))
    }

    /// ConsumerConnection: the clients of consumer group `group` connected to this node.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] when the call fails; the status is not checked.
    #[tracing::instrument(level = "debug", skip_all, fields(addr = %self.addr, group = %group))]
    pub async fn consumer_connection(
        &mut self,
        group: &str,
        timeout: Duration,
    ) -> Result<pb::ConsumerConnectionResponse, ClientError> {
        let ask = pb::ConsumerConnectionRequest {
            group: group.to_string(),
        };
        let response = self.rpc.consumer_connection(request(ask, timeout)).await;
        response
            .map(tonic::Response::into_inner)
            .map_err(self.rpc_error("ConsumerConnection"))
    }

    /// ProducerConnection: the clients of producer group `group` (producing to `topic`)
    /// connected to this node.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] when the call fails; the status is not checked.
    #[tracing::instrument(level = "debug", skip_all, fields(addr = %self.addr, group = %group))]
    pub async fn producer_connection(
        &mut self,
        group: &str,
        topic: &str,
        timeout: Duration,
    ) -> Result<pb::ProducerConnectionResponse, ClientError> {
        let ask = pb::ProducerConnectionRequest {
            group: group.to_string(),
            topic: topic.to_string(),
        };
        let response = self.rpc.producer_connection(request(ask, timeout)).await;
        response
            .map(tonic::Response::into_inner)
            .map_err(self.rpc_error("ProducerConnection"))
    }

    /// UpdateSubscriptionGroup: creates or replaces a group's config.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] when the call fails; the status is not checked.
    #[tracing::instrument(level = "debug", skip_all, fields(addr = %self.addr, group = %update.group_name))]
    pub async fn update_subscription_group(
        &mut self,
        update: pb::UpdateSubscriptionGroupRequest,
        timeout: Duration,
    ) -> Result<pb::UpdateSubscriptionGroupResponse, ClientError> {
        let response = self
            .rpc
            .update_subscription_group(request(update, timeout))
            .await;
        response
            .map(tonic::Response::into_inner)
            .map_err(self.rpc_error("UpdateSubscriptionGroup"))
    }

    /// DeleteSubscriptionGroup: deletes `group`'s config, with `clean_offset` its offsets too.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] when the call fails; the status is not checked.
    #[tracing::instrument(level = "debug", skip_all, fields(addr = %self.addr, group = %group))]
    pub async fn delete_subscription_group(
        &mut self,
        group: &str,
        clean_offset: bool,
        timeout: Duration,
    ) -> Result<pb::DeleteSubscriptionGroupResponse, ClientError> {
        let delete = pb::DeleteSubscriptionGroupRequest {
            group_name: group.to_string(),
            clean_offset,
        };
        let response = self
            .rpc
            .delete_subscription_group(request(delete, timeout))
            .await;
        response
            .map(tonic::Response::into_inner)
            .map_err(self.rpc_error("DeleteSubscriptionGroup"))
    }

    /// SubscriptionGroupList: every group's config.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] when the call fails; the status is not checked.
    #[tracing::instrument(level = "debug", skip_all, fields(addr = %self.addr))]
    pub async fn subscription_group_list(
        &mut self,
        timeout: Duration,
    ) -> Result<pb::SubscriptionGroupListResponse, ClientError> {
        let response = self
            .rpc
            .subscription_group_list(request(pb::SubscriptionGroupListRequest {}, timeout))
            .await;
        response
            .map(tonic::Response::into_inner)
            .map_err(self.rpc_error("SubscriptionGroupList"))
    }

    /// LeadershipTransfer to node `to`; a follower answers `NOT_LEADER` naming the leader.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] when the call fails; the status is not checked.
    #[tracing::instrument(level = "debug", skip_all, fields(addr = %self.addr, to = %to))]
    pub async fn leadership_transfer(
        &mut self,
        to: &str,
        timeout: Duration,
    ) -> Result<pb::LeadershipTransferResponse, ClientError> {
        let transfer = pb::LeadershipTransferRequest { to: to.to_string() };
        let response = self
            .rpc
            .leadership_transfer(request(transfer, timeout))
            .await;
        response
            .map(tonic::Response::into_inner)
            .map_err(self.rpc_error("LeadershipTransfer"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn admin_refusals_carry_the_code_name() {
        let missing = pb::Status {
            code: pb::Code::NotFound as i32,
            message: "no such topic".into(),
        };
        let err = check_admin(Some(&missing), "DeleteTopic", "a:1").unwrap_err();
        assert!(err.to_string().contains("CODE_NOT_FOUND"), "{err}");
        let ok = pb::Status {
            code: pb::Code::Ok as i32,
            message: String::new(),
        };
        assert!(check_admin(Some(&ok), "DeleteTopic", "a:1").is_ok());
    }

    #[tokio::test]
    async fn unreachable_nodes_have_no_view() {
        let views = cluster_views(&["127.0.0.1:1".to_string()], Duration::from_secs(1)).await;
        assert_eq!(views.len(), 1);
        assert!(views[0].is_none());
    }
}
