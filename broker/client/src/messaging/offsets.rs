//! The calls of a 5.x pull consumer, which keeps its own place by queue offset (PullMessage,
//! UpdateOffset, GetOffset, QueryOffset), and RecallMessage of a producer's delay message.

use std::time::Duration;

use proto::apache::rocketmq::v2;

use crate::error::ClientError;
use crate::fields::{duration, resource, timestamp_of_ms};

/// What one PullMessage asks for: up to `batch` messages of one queue from `offset` on.
#[derive(Debug, Clone)]
pub struct Pull {
    /// The consumer group.
    pub group: String,
    /// The topic.
    pub topic: String,
    /// The queue id.
    pub queue: i32,
    /// The first offset wanted.
    pub offset: i64,
    /// Messages asked for at most.
    pub batch: i32,
    /// The tag filter expression (`*` for every message).
    pub tag: String,
    /// How long the broker may hold the pull while the queue has nothing there.
    pub long_poll: Duration,
}

/// The frames of one PullMessage stream.
#[derive(Debug, Default)]
pub struct Pulled {
    /// The status frame; `None` when the stream ended without one.
    pub status: Option<v2::Status>,
    /// The messages, in queue order.
    pub messages: Vec<v2::Message>,
    /// Where to pull next; `None` when the broker sent no such frame (an error).
    pub next_offset: Option<i64>,
}

fn queue(topic: &str, id: i32) -> v2::MessageQueue {
    v2::MessageQueue {
        topic: Some(resource(topic)),
        id,
        permission: v2::Permission::ReadWrite as i32,
        broker: None,
        accept_message_types: vec![],
    }
}

impl super::MessagingClient {
    /// One PullMessage, its stream read to the end.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] when the call or the stream fails; the status is not checked.
    #[tracing::instrument(level = "debug", skip_all, fields(addr = %self.addr, offset = pull.offset))]
    pub async fn pull(&mut self, pull: &Pull, timeout: Duration) -> Result<Pulled, ClientError> {
        use v2::pull_message_response::Content;
        let request = v2::PullMessageRequest {
            group: Some(resource(&pull.group)),
            message_queue: Some(queue(&pull.topic, pull.queue)),
            offset: pull.offset,
            batch_size: pull.batch,
            filter_expression: Some(v2::FilterExpression {
                r#type: v2::FilterType::Tag as i32,
                expression: pull.tag.clone(),
            }),
            long_polling_timeout: Some(duration(pull.long_poll)),
        };
        let request = self.identity.request(request, timeout);
        let response = self.rpc.pull_message(request).await;
        let mut stream = response
            .map_err(self.rpc_error("PullMessage"))?
            .into_inner();
        let mut pulled = Pulled::default();
        while let Some(frame) = stream
            .message()
            .await
            .map_err(self.rpc_error("PullMessage"))?
        {
            match frame.content {
                Some(Content::Status(s)) => pulled.status = Some(s),
                Some(Content::Message(m)) => pulled.messages.push(m),
                Some(Content::NextOffset(n)) => pulled.next_offset = Some(n),
                None => {}
            }
        }
        Ok(pulled)
    }

    /// UpdateOffset: commits `group`'s offset in one queue.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] when the call fails; the status is not checked.
    #[tracing::instrument(level = "debug", skip_all, fields(addr = %self.addr, offset))]
    pub async fn update_offset(
        &mut self,
        group: &str,
        topic: &str,
        queue_id: i32,
        offset: i64,
        timeout: Duration,
    ) -> Result<v2::UpdateOffsetResponse, ClientError> {
        let request = v2::UpdateOffsetRequest {
            group: Some(resource(group)),
            message_queue: Some(queue(topic, queue_id)),
            offset,
        };
        let response = self
            .rpc
            .update_offset(self.identity.request(request, timeout))
            .await;
        response
            .map(tonic::Response::into_inner)
            .map_err(self.rpc_error("UpdateOffset"))
    }

    /// GetOffset: `group`'s committed offset in one queue.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] when the call fails; the status is not checked.
    #[tracing::instrument(level = "debug", skip_all, fields(addr = %self.addr))]
    pub async fn get_offset(
        &mut self,
        group: &str,
        topic: &str,
        queue_id: i32,
        timeout: Duration,
    ) -> Result<v2::GetOffsetResponse, ClientError> {
        let request = v2::GetOffsetRequest {
            group: Some(resource(group)),
            message_queue: Some(queue(topic, queue_id)),
        };
        let response = self
            .rpc
            .get_offset(self.identity.request(request, timeout))
            .await;
        response
            .map(tonic::Response::into_inner)
            .map_err(self.rpc_error("GetOffset"))
    }

    /// QueryOffset: a queue's first offset (`policy` BEGINNING), its next (END), or the first
    /// stored at or after `at_ms` (TIMESTAMP).
    ///
    /// # Errors
    /// [`ClientError::Rpc`] when the call fails; the status is not checked.
    #[tracing::instrument(level = "debug", skip_all, fields(addr = %self.addr))]
    pub async fn query_offset(
        &mut self,
        topic: &str,
        queue_id: i32,
        policy: v2::QueryOffsetPolicy,
        at_ms: Option<u64>,
        timeout: Duration,
    ) -> Result<v2::QueryOffsetResponse, ClientError> {
        let request = v2::QueryOffsetRequest {
            message_queue: Some(queue(topic, queue_id)),
            query_offset_policy: policy as i32,
            timestamp: at_ms.map(timestamp_of_ms),
        };
        let response = self
            .rpc
            .query_offset(self.identity.request(request, timeout))
            .await;
        response
            .map(tonic::Response::into_inner)
            .map_err(self.rpc_error("QueryOffset"))
    }

    /// RecallMessage: cancels the delay message whose send returned `recall_handle`.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] when the call fails; the status is not checked.
    #[tracing::instrument(level = "debug", skip_all, fields(addr = %self.addr))]
    pub async fn recall(
        &mut self,
        topic: &str,
        recall_handle: &str,
        timeout: Duration,
    ) -> Result<v2::RecallMessageResponse, ClientError> {
        let request = v2::RecallMessageRequest {
            topic: Some(resource(topic)),
            recall_handle: recall_handle.to_string(),
        };
        let response = self
            .rpc
            .recall_message(self.identity.request(request, timeout))
            .await;
        response
            .map(tonic::Response::into_inner)
            .map_err(self.rpc_error("RecallMessage"))
    }
}
