//! The RocketMQ 5 calls a producer and a simple consumer make, with an SDK identity.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use proto::apache::rocketmq::v2;
use proto::apache::rocketmq::v2::messaging_service_client::MessagingServiceClient;
use tonic::transport::Channel;

use crate::error::ClientError;
use crate::fields::{duration, resource, timestamp_now, timestamp_of_ms};

mod offsets;
mod telemetry;

use crate::identity::ClientIdentity;
pub use offsets::{Pull, Pulled};
pub use telemetry::{Telemetry, consumer_settings, producer_settings};

/// A RocketMQ 5 client on one channel to one node. Cloning shares the channel and the identity.
#[derive(Debug, Clone)]
pub struct MessagingClient {
    addr: String,
    identity: Arc<ClientIdentity>,
    rpc: MessagingServiceClient<Channel>,
}

/// What one ReceiveMessage asks for: a long poll of `group` on any queue of `topic`.
#[derive(Debug, Clone)]
pub struct Receive {
    /// The consumer group.
    pub group: v2::Resource,
    /// The topic.
    pub topic: v2::Resource,
    /// The tag filter expression (`*` for every message).
    pub tag: String,
    /// Messages asked for at most.
    pub batch: i32,
    /// How long received messages stay invisible to other consumers.
    pub invisible: Duration,
    /// How long the broker may wait for a message.
    pub long_poll: Duration,
}

/// The frames of one ReceiveMessage stream: its status frame (the last one when several came)
/// and every message, in order.
#[derive(Debug, Default)]
pub struct Received {
    /// The status frame; `None` when the stream ended without one.
    pub status: Option<v2::Status>,
    /// The messages delivered.
    pub messages: Vec<v2::Message>,
}

impl Received {
    /// Whether the broker said there was nothing to receive (`MESSAGE_NOT_FOUND`).
    pub fn is_not_found(&self) -> bool {
        self.status
            .as_ref()
            .is_some_and(|s| s.code == v2::Code::MessageNotFound as i32)
    }
}

/// The system properties of a message to send, besides its topic and body.
#[derive(Debug, Clone, Default)]
pub struct MessageSpec {
    /// The message id, from [`ClientIdentity::message_id`] or the caller's own scheme.
    pub message_id: String,
    /// The tag, if any.
    pub tag: Option<String>,
    /// The keys.
    pub keys: Vec<String>,
    /// The FIFO message group; a message with one is sent as FIFO, without as NORMAL.
    pub message_group: Option<String>,
    /// Sent as a TRANSACTION half message (no message group then).
    pub transactional: bool,
    /// The CRC32 body digest as upper-case hex (may be empty); `None` sends no digest.
    pub body_crc32: Option<String>,
    /// The `born_host` property.
    pub born_host: String,
    /// Sent as a DELAY message due at this time (ms since the epoch).
    pub delivery_ms: Option<u64>,
}

/// A message to `topic` with `body`, born now, as the SDKs build it.
pub fn message(topic: v2::Resource, body: Bytes, spec: MessageSpec) -> v2::Message {
    let message_type = if spec.transactional {
        v2::MessageType::Transaction
    } else if spec.delivery_ms.is_some() {
        v2::MessageType::Delay
    } else if spec.message_group.is_some() {
        v2::MessageType::Fifo
    } else {
        v2::MessageType::Normal
    };
    let system_properties = v2::SystemProperties {
        tag: spec.tag,
        keys: spec.keys,
        message_id: spec.message_id,
        body_digest: spec.body_crc32.map(|checksum| v2::Digest {
            r#type: v2::DigestType::Crc32 as i32,
            checksum,
        }),
        body_encoding: v2::Encoding::Identity as i32,
        message_type: message_type as i32,
        born_timestamp: Some(timestamp_now()),
        born_host: spec.born_host,
        message_group: spec.message_group,
        delivery_timestamp: spec.delivery_ms.map(timestamp_of_ms),
        ..Default::default()
    };
    v2::Message {
        topic: Some(topic),
        user_properties: HashMap::new(),
        system_properties: Some(system_properties),
        body,
    }
}

/// One ack entry per message, in order (empty id and handle where a message has no system
/// properties, so that the answer's entries still line up with `messages`).
pub fn ack_entries(messages: &[v2::Message]) -> Vec<v2::AckMessageEntry> {
    messages
        .iter()
        .map(|m| {
            let sys = m.system_properties.as_ref();
            v2::AckMessageEntry {
                message_id: sys.map(|s| s.message_id.clone()).unwrap_or_default(),
                receipt_handle: sys
                    .and_then(|s| s.receipt_handle.clone())
                    .unwrap_or_default(),
                lite_topic: None,
            }
        })
        .collect()
}

/// The protobuf name of a v2 status code, `UNKNOWN_CODE` for a code this client does not know.
pub fn code_name(code: i32) -> &'static str {
    v2::Code::try_from(code).map_or("UNKNOWN_CODE", |c| c.as_str_name())
}

/// `Ok` when `status` is OK.
///
/// # Errors
/// [`ClientError::NoStatus`] without a status, [`ClientError::Refused`] with any other code.
pub fn check_v2(
    status: Option<&v2::Status>,
    call: &'static str,
    addr: &str,
) -> Result<(), ClientError> {
    crate::error::check_status(
        status.map(|s| (s.code, s.message.as_str())),
        v2::Code::Ok as i32,
        code_name,
        call,
        addr,
    )
}

impl MessagingClient {
    /// A client for the node at `addr` (used in errors) over `channel`, sending `identity`.
    pub fn new(
        addr: impl Into<String>,
        channel: Channel,
        identity: Arc<ClientIdentity>,
    ) -> MessagingClient {
        MessagingClient {
            addr: addr.into(),
            identity,
            rpc: MessagingServiceClient::new(channel),
        }
    }

    /// The node's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The identity this client sends.
    pub fn identity(&self) -> &ClientIdentity {
        &self.identity
    }

    fn rpc_error(&self, call: &'static str) -> impl FnOnce(tonic::Status) -> ClientError + '_ {
        move |source| ClientError::Rpc {
            call,
            addr: self.addr.clone(),
            source,
        }
    }

    /// QueryRoute for `topic`, as an SDK asks before its first send or receive; the route
    /// names this client's own address as the endpoint it reached.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] when the call fails; the response's status is not checked.
    #[tracing::instrument(level = "debug", skip_all, fields(addr = %self.addr, topic = %topic))]
    pub async fn query_route(
        &mut self,
        topic: &str,
        timeout: Duration,
    ) -> Result<v2::QueryRouteResponse, ClientError> {
        let (host, port) = self.addr.rsplit_once(':').unwrap_or((&self.addr, "0"));
        let route = v2::QueryRouteRequest {
            topic: Some(resource(topic)),
            endpoints: Some(v2::Endpoints {
                scheme: v2::AddressScheme::IPv4 as i32,
                addresses: vec![v2::Address {
                    host: host.to_string(),
                    port: port.parse().unwrap_or(0),
                }],
            }),
        };
        let request = self.identity.request(route, timeout);
        let response = self.rpc.query_route(request).await;
        response
            .map(tonic::Response::into_inner)
            .map_err(self.rpc_error("QueryRoute"))
    }

    /// One SendMessage of `messages` (one request, one result entry per message).
    ///
    /// # Errors
    /// [`ClientError::Rpc`] when the call fails; the statuses are not checked.
    #[tracing::instrument(level = "debug", skip_all, fields(addr = %self.addr))]
    pub async fn send(
        &mut self,
        messages: Vec<v2::Message>,
        timeout: Duration,
    ) -> Result<v2::SendMessageResponse, ClientError> {
        let request = self
            .identity
            .request(v2::SendMessageRequest { messages }, timeout);
        let response = self.rpc.send_message(request).await;
        response
            .map(tonic::Response::into_inner)
            .map_err(self.rpc_error("SendMessage"))
    }

    /// EndTransaction: commits (`commit`) or rolls back the half message `message_id` of
    /// `topic` with the transaction id its send returned, as a producer does.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] when the call fails; the response's status is not checked.
    #[tracing::instrument(level = "debug", skip_all, fields(addr = %self.addr, commit))]
    pub async fn end_transaction(
        &mut self,
        topic: &str,
        message_id: &str,
        transaction_id: &str,
        commit: bool,
        timeout: Duration,
    ) -> Result<v2::EndTransactionResponse, ClientError> {
        let resolution = if commit {
            v2::TransactionResolution::Commit
        } else {
            v2::TransactionResolution::Rollback
        };
        let request = v2::EndTransactionRequest {
            topic: Some(resource(topic)),
            message_id: message_id.to_string(),
            transaction_id: transaction_id.to_string(),
            resolution: resolution as i32,
            source: v2::TransactionSource::SourceClient as i32,
            trace_context: String::new(),
        };
        let response = self
            .rpc
            .end_transaction(self.identity.request(request, timeout))
            .await;
        response
            .map(tonic::Response::into_inner)
            .map_err(self.rpc_error("EndTransaction"))
    }

    /// One long poll, its stream read to the end. `timeout` is the gRPC deadline; the broker
    /// answers shortly before it, so it bounds the poll.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] when the call or the stream fails; the status is not checked.
    #[tracing::instrument(level = "debug", skip_all, fields(addr = %self.addr))]
    pub async fn receive(
        &mut self,
        receive: &Receive,
        timeout: Duration,
    ) -> Result<Received, ClientError> {
        use v2::receive_message_response::Content;
        let request = v2::ReceiveMessageRequest {
            group: Some(receive.group.clone()),
            message_queue: Some(v2::MessageQueue {
                topic: Some(receive.topic.clone()),
                id: -1,
                permission: v2::Permission::ReadWrite as i32,
                broker: None,
                accept_message_types: vec![],
            }),
            filter_expression: Some(v2::FilterExpression {
                r#type: v2::FilterType::Tag as i32,
                expression: receive.tag.clone(),
            }),
            batch_size: receive.batch,
            invisible_duration: Some(duration(receive.invisible)),
            auto_renew: false,
            long_polling_timeout: Some(duration(receive.long_poll)),
            attempt_id: None,
        };
        let request = self.identity.request(request, timeout);
        let response = self.rpc.receive_message(request).await;
        let mut stream = response
            .map_err(self.rpc_error("ReceiveMessage"))?
            .into_inner();
        let mut received = Received::default();
        while let Some(frame) = stream
            .message()
            .await
            .map_err(self.rpc_error("ReceiveMessage"))?
        {
            match frame.content {
                Some(Content::Status(s)) => received.status = Some(s),
                Some(Content::Message(m)) => received.messages.push(m),
                Some(Content::DeliveryTimestamp(_)) | None => {}
            }
        }
        Ok(received)
    }

    /// One AckMessage of `messages` ([`ack_entries`]) for `group` on `topic`.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] when the call fails; the statuses are not checked.
    #[tracing::instrument(level = "debug", skip_all, fields(addr = %self.addr))]
    pub async fn ack(
        &mut self,
        group: &v2::Resource,
        topic: &v2::Resource,
        messages: &[v2::Message],
        timeout: Duration,
    ) -> Result<v2::AckMessageResponse, ClientError> {
        let ack = v2::AckMessageRequest {
            group: Some(group.clone()),
            topic: Some(topic.clone()),
            entries: ack_entries(messages),
        };
        let request = self.identity.request(ack, timeout);
        let response = self.rpc.ack_message(request).await;
        response
            .map(tonic::Response::into_inner)
            .map_err(self.rpc_error("AckMessage"))
    }

    /// ChangeInvisibleDuration of one received message: it becomes visible again after
    /// `invisible`. The answer carries the receipt handle that replaces the old one.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] when the call fails; the status is not checked.
    #[tracing::instrument(level = "debug", skip_all, fields(addr = %self.addr))]
    pub async fn change_invisible(
        &mut self,
        group: &v2::Resource,
        topic: &v2::Resource,
        message: &v2::Message,
        invisible: Duration,
        timeout: Duration,
    ) -> Result<v2::ChangeInvisibleDurationResponse, ClientError> {
        let sys = message.system_properties.as_ref();
        let change = v2::ChangeInvisibleDurationRequest {
            group: Some(group.clone()),
            topic: Some(topic.clone()),
            receipt_handle: sys
                .and_then(|s| s.receipt_handle.clone())
                .unwrap_or_default(),
            invisible_duration: Some(duration(invisible)),
            message_id: sys.map(|s| s.message_id.clone()).unwrap_or_default(),
            lite_topic: None,
            suspend: None,
        };
        let request = self.identity.request(change, timeout);
        let response = self.rpc.change_invisible_duration(request).await;
        response
            .map(tonic::Response::into_inner)
            .map_err(self.rpc_error("ChangeInvisibleDuration"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_message_group_makes_a_fifo_message() {
        let spec = MessageSpec {
            message_id: "id".into(),
            message_group: Some("g".into()),
            body_crc32: Some("0000".into()),
            ..MessageSpec::default()
        };
        let m = message(resource("T"), Bytes::from_static(b"x"), spec);
        let sys = m.system_properties.unwrap();
        assert_eq!(sys.message_type, v2::MessageType::Fifo as i32);
        assert_eq!(sys.body_digest.unwrap().checksum, "0000");
        assert!(sys.born_timestamp.is_some());
        let plain = message(resource("T"), Bytes::new(), MessageSpec::default());
        let sys = plain.system_properties.unwrap();
        assert_eq!(sys.message_type, v2::MessageType::Normal as i32);
        assert!(sys.body_digest.is_none());
    }

    #[test]
    fn ack_entries_line_up_with_the_messages() {
        let with = message(
            resource("T"),
            Bytes::new(),
            MessageSpec {
                message_id: "m1".into(),
                ..MessageSpec::default()
            },
        );
        let without = v2::Message::default();
        let entries = ack_entries(&[with, without]);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].message_id, "m1");
        assert_eq!(entries[1].message_id, "");
    }

    #[test]
    fn only_ok_passes_the_check() {
        let ok = v2::Status {
            code: v2::Code::Ok as i32,
            message: String::new(),
        };
        assert!(check_v2(Some(&ok), "SendMessage", "a:1").is_ok());
        let busy = v2::Status {
            code: v2::Code::TooManyRequests as i32,
            message: "busy".into(),
        };
        let refused = check_v2(Some(&busy), "SendMessage", "a:1").unwrap_err();
        assert!(matches!(
            refused,
            ClientError::Refused {
                name: "TOO_MANY_REQUESTS",
                ..
            }
        ));
        assert!(matches!(
            check_v2(None, "SendMessage", "a:1"),
            Err(ClientError::NoStatus { .. })
        ));
        assert_eq!(code_name(99_999), "UNKNOWN_CODE");
        let not_found = Received {
            status: Some(v2::Status {
                code: v2::Code::MessageNotFound as i32,
                message: String::new(),
            }),
            messages: vec![],
        };
        assert!(not_found.is_not_found());
    }
}
