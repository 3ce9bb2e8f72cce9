//! A minimal RocketMQ 5 gRPC client, the way the SDKs talk to a broker: SendMessage,
//! ReceiveMessage (long polling) and AckMessage, with SDK-style identity headers.
//!
//! Every call ends in an [`Outcome`]: `Ok`, `Fail` only when the broker's answer proves nothing
//! was written, and `Unknown` for everything else — a timeout, a broken connection, a status
//! that does not promise the write was refused.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use proto::apache::rocketmq::v2;
use proto::apache::rocketmq::v2::messaging_service_client::MessagingServiceClient;
use proto::client::{ClientIdentity, duration, resource, timestamp_now};
use tonic::transport::{Channel, Endpoint};

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<T> {
    /// It happened.
    Ok(T),
    /// It certainly did not happen.
    Fail(String),
    /// It may or may not have happened.
    Unknown(String),
}

/// The broker codes that promise a send was not written: refused before any proposal.
fn definite_refusal(code: i32) -> bool {
    [
        v2::Code::BadRequest,
        v2::Code::HaNotAvailable,
        v2::Code::TooManyRequests,
        v2::Code::PayloadTooLarge,
        v2::Code::TopicNotFound,
        v2::Code::IllegalTopic,
        v2::Code::IllegalMessageGroup,
        v2::Code::Forbidden,
        v2::Code::Unauthorized,
    ]
    .iter()
    .any(|c| *c as i32 == code)
}

/// A transport failure: definite only when the connection was never made (the request was
/// never sent); anything later — a reset, a timeout — may have reached the broker.
fn transport_outcome<T>(status: &tonic::Status) -> Outcome<T> {
    if status.code() == tonic::Code::Unavailable && status.message() == "tcp connect error" {
        Outcome::Fail(format!("not sent: {}", status.message()))
    } else {
        Outcome::Unknown(format!("grpc {status}"))
    }
}

fn code_name(code: i32) -> &'static str {
    v2::Code::try_from(code).map_or("UNKNOWN_CODE", |c| c.as_str_name())
}

/// One client connection to one broker node.
#[derive(Debug, Clone)]
pub struct Client {
    /// The node's client address.
    pub addr: SocketAddr,
    identity: Arc<ClientIdentity>,
    rpc: MessagingServiceClient<Channel>,
}

impl Client {
    /// A lazily connecting client for `addr`; `index` tells apart the clients of this process
    /// (a new index is a new consumer instance).
    ///
    /// # Errors
    /// An address tonic cannot parse, or a host name that makes no header.
    pub fn new(addr: SocketAddr, index: u32) -> anyhow::Result<Client> {
        let channel = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .connect_lazy();
        Ok(Client {
            addr,
            identity: Arc::new(ClientIdentity::new(index)?),
            rpc: MessagingServiceClient::new(channel),
        })
    }

    /// Sends one message whose body is `value` in decimal, FIFO in `group` when given.
    pub async fn send(
        &mut self,
        topic: &str,
        value: u64,
        group: Option<&str>,
        timeout: Duration,
    ) -> Outcome<()> {
        let body = bytes::Bytes::from(value.to_string().into_bytes());
        let system_properties = v2::SystemProperties {
            message_id: self.identity.message_id().0,
            body_digest: Some(v2::Digest {
                r#type: v2::DigestType::Crc32 as i32,
                checksum: String::new(),
            }),
            body_encoding: v2::Encoding::Identity as i32,
            message_type: if group.is_some() {
                v2::MessageType::Fifo as i32
            } else {
                v2::MessageType::Normal as i32
            },
            born_timestamp: Some(timestamp_now()),
            born_host: "chaos".into(),
            message_group: group.map(str::to_string),
            ..Default::default()
        };
        let send = v2::SendMessageRequest {
            messages: vec![v2::Message {
                topic: Some(resource(topic)),
                user_properties: Default::default(),
                system_properties: Some(system_properties),
                body,
            }],
        };
        let request = self.identity.request(send, timeout);
        let call = self.rpc.send_message(request);
        let response = match tokio::time::timeout(timeout + Duration::from_secs(1), call).await {
            Err(_) => return Outcome::Unknown(format!("no answer in {timeout:?}")),
            Ok(Err(status)) => return transport_outcome(&status),
            Ok(Ok(r)) => r.into_inner(),
        };
        let status = response
            .entries
            .first()
            .and_then(|e| e.status.clone())
            .or(response.status);
        match status {
            Some(s) if s.code == v2::Code::Ok as i32 => Outcome::Ok(()),
            Some(s) if definite_refusal(s.code) => {
                Outcome::Fail(format!("{}: {}", code_name(s.code), s.message))
            }
            Some(s) => Outcome::Unknown(format!("{}: {}", code_name(s.code), s.message)),
            None => Outcome::Unknown("answer without status".into()),
        }
    }

    /// One long poll for up to `batch` messages, then an ack of each. Returns the values
    /// received (whether or not the ack went through: a message that reached the consumer was
    /// delivered) and the ack errors, if any.
    pub async fn receive_and_ack(
        &mut self,
        topic: &str,
        group: &str,
        batch: i32,
        poll: Duration,
        invisible: Duration,
    ) -> Outcome<(Vec<u64>, Option<String>)> {
        use v2::receive_message_response::Content;
        let receive = v2::ReceiveMessageRequest {
            group: Some(resource(group)),
            message_queue: Some(v2::MessageQueue {
                topic: Some(resource(topic)),
                id: -1,
                permission: v2::Permission::ReadWrite as i32,
                broker: None,
                accept_message_types: vec![],
            }),
            filter_expression: Some(v2::FilterExpression {
                r#type: v2::FilterType::Tag as i32,
                expression: "*".into(),
            }),
            batch_size: batch,
            invisible_duration: Some(duration(invisible)),
            auto_renew: false,
            long_polling_timeout: Some(duration(poll)),
            attempt_id: None,
        };
        let timeout = poll + Duration::from_secs(3);
        let request = self.identity.request(receive, timeout);
        let mut rpc = self.rpc.clone();
        let call = async move {
            let mut stream = rpc.receive_message(request).await?.into_inner();
            let (mut status, mut messages) = (None, Vec::new());
            while let Some(frame) = stream.message().await? {
                match frame.content {
                    Some(Content::Status(s)) => status = Some(s),
                    Some(Content::Message(m)) => messages.push(m),
                    Some(Content::DeliveryTimestamp(_)) | None => {}
                }
            }
            Ok::<_, tonic::Status>((status, messages))
        };
        let (status, messages) =
            match tokio::time::timeout(timeout + Duration::from_secs(1), call).await {
                Err(_) => return Outcome::Unknown(format!("no answer in {timeout:?}")),
                Ok(Err(status)) => return Outcome::Unknown(format!("grpc {status}")),
                Ok(Ok(r)) => r,
            };
        match &status {
            Some(s) if s.code == v2::Code::MessageNotFound as i32 => {
                return Outcome::Ok((Vec::new(), None));
            }
            Some(s) if s.code == v2::Code::Ok as i32 => {}
            // Messages that came with a failed status are still delivered.
            Some(s) if messages.is_empty() => {
                return Outcome::Unknown(format!("{}: {}", code_name(s.code), s.message));
            }
            Some(_) => {}
            None if messages.is_empty() => {
                return Outcome::Unknown("answer without status".into());
            }
            None => {}
        }
        let mut values = Vec::new();
        let mut entries = Vec::new();
        for m in &messages {
            match std::str::from_utf8(&m.body)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
            {
                Some(v) => values.push(v),
                None => tracing::warn!("a message not written by the harness: {:?}", m.body),
            }
            if let Some(sys) = &m.system_properties {
                entries.push(v2::AckMessageEntry {
                    message_id: sys.message_id.clone(),
                    receipt_handle: sys.receipt_handle.clone().unwrap_or_default(),
                    lite_topic: None,
                });
            }
        }
        if entries.is_empty() {
            return Outcome::Ok((values, None));
        }
        let ack = v2::AckMessageRequest {
            group: Some(resource(group)),
            topic: Some(resource(topic)),
            entries,
        };
        let request = self.identity.request(ack, Duration::from_secs(5));
        let ack_error =
            match tokio::time::timeout(Duration::from_secs(6), self.rpc.ack_message(request)).await
            {
                Err(_) => Some("ack: no answer".to_string()),
                Ok(Err(status)) => Some(format!("ack: grpc {status}")),
                Ok(Ok(r)) => {
                    let r = r.into_inner();
                    let bad: Vec<String> = r
                        .entries
                        .iter()
                        .filter_map(|e| e.status.as_ref())
                        .filter(|s| s.code != v2::Code::Ok as i32)
                        .map(|s| code_name(s.code).to_string())
                        .collect();
                    (!bad.is_empty()).then(|| format!("ack: {}", bad.join(",")))
                }
            };
        Outcome::Ok((values, ack_error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refusals_before_any_write_are_definite() {
        assert!(definite_refusal(v2::Code::HaNotAvailable as i32));
        assert!(definite_refusal(v2::Code::BadRequest as i32));
        // A persistence timeout or an internal error may have written: unknown.
        assert!(!definite_refusal(v2::Code::MasterPersistenceTimeout as i32));
        assert!(!definite_refusal(v2::Code::InternalServerError as i32));
        assert!(!definite_refusal(v2::Code::Ok as i32));
    }
}
