//! The harness's view of the RocketMQ 5 calls it makes through `raftmq-client`: SendMessage,
//! ReceiveMessage (long polling) and AckMessage, with SDK-style identity headers.
//!
//! Every call ends in an [`Outcome`]: `Ok`, `Fail` only when the broker's answer proves nothing
//! was written, and `Unknown` for everything else — a timeout, a broken connection, a status
//! that does not promise the write was refused.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use proto::apache::rocketmq::v2;
use raftmq_client::{
    ClientError, ClientIdentity, MessageSpec, MessagingClient, Receive, code_name, resource,
};

/// How long a lazily made connection may take; shorter than the tools' default so that a
/// partitioned node fails a call quickly.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

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

/// A broker status as an outcome: OK, a refusal `definite` says came before any write, or
/// unknown.
fn status_outcome(status: Option<&v2::Status>, definite: impl Fn(i32) -> bool) -> Outcome<()> {
    match status {
        Some(s) if s.code == v2::Code::Ok as i32 => Outcome::Ok(()),
        Some(s) if definite(s.code) => {
            Outcome::Fail(format!("{}: {}", code_name(s.code), s.message))
        }
        Some(s) => Outcome::Unknown(format!("{}: {}", code_name(s.code), s.message)),
        None => Outcome::Unknown("answer without status".into()),
    }
}

/// A call's answer, or its outcome when it failed or took longer than `timeout` (+1 s).
async fn answer<T, U>(
    timeout: Duration,
    call: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, Outcome<U>> {
    match tokio::time::timeout(timeout + Duration::from_secs(1), call).await {
        Err(_) => Err(Outcome::Unknown(format!("no answer in {timeout:?}"))),
        Ok(Err(error)) => Err(call_outcome(&error)),
        Ok(Ok(r)) => Ok(r),
    }
}

/// A failed call's outcome: its status decides, as for [`transport_outcome`].
fn call_outcome<T>(error: &ClientError) -> Outcome<T> {
    match error.grpc_status() {
        Some(status) => transport_outcome(status),
        None => Outcome::Unknown(error.to_string()),
    }
}

/// A failed call as text, `grpc <status>` as the harness has always logged it.
fn grpc_text(error: &ClientError) -> String {
    error
        .grpc_status()
        .map_or_else(|| error.to_string(), |status| format!("grpc {status}"))
}

/// What one receive + ack delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The values received, in delivery order, whether or not the ack went through: a message
    /// that reached the consumer was delivered.
    pub values: Vec<u64>,
    /// When the ReceiveMessage call returned, before any ack was sent: the values were
    /// delivered by then, however long the acks take.
    pub received_at: std::time::Instant,
    /// The ack errors, if an ack failed or went unanswered.
    pub ack_error: Option<String>,
}

/// One client connection to one broker node.
#[derive(Debug, Clone)]
pub struct Client {
    /// The node's client address.
    pub addr: SocketAddr,
    rpc: MessagingClient,
}

impl Client {
    /// A lazily connecting client for `addr`; `index` tells apart the clients of this process
    /// (a new index is a new consumer instance).
    ///
    /// # Errors
    /// An address tonic cannot parse, or a host name that makes no header.
    pub fn new(addr: SocketAddr, index: u32) -> anyhow::Result<Client> {
        let channel = raftmq_client::endpoint(&addr.to_string())?
            .connect_timeout(CONNECT_TIMEOUT)
            .connect_lazy();
        let identity = Arc::new(ClientIdentity::new(index)?);
        Ok(Client {
            addr,
            rpc: MessagingClient::new(addr.to_string(), channel, identity),
        })
    }

    /// A message to `topic` whose body is `value` in decimal, with a fresh message id (returned
    /// too) and the harness's born host; `spec` gives the rest.
    fn value_message(&self, topic: &str, value: u64, spec: MessageSpec) -> (String, v2::Message) {
        let message_id = self.rpc.identity().message_id().0;
        let spec = MessageSpec {
            message_id: message_id.clone(),
            body_crc32: Some(String::new()),
            born_host: "chaos".into(),
            ..spec
        };
        let body = bytes::Bytes::from(value.to_string().into_bytes());
        (
            message_id,
            raftmq_client::message(resource(topic), body, spec),
        )
    }

    /// Sends one message whose body is `value` in decimal, FIFO in `group` when given.
    pub async fn send(
        &mut self,
        topic: &str,
        value: u64,
        group: Option<&str>,
        timeout: Duration,
    ) -> Outcome<()> {
        let spec = MessageSpec {
            message_group: group.map(str::to_string),
            ..MessageSpec::default()
        };
        let (_, message) = self.value_message(topic, value, spec);
        let response = match answer(timeout, self.rpc.send(vec![message], timeout)).await {
            Ok(r) => r,
            Err(outcome) => return outcome,
        };
        let status = response
            .entries
            .first()
            .and_then(|e| e.status.clone())
            .or(response.status);
        status_outcome(status.as_ref(), definite_refusal)
    }

    /// Sends `value` as a transactional half message; its outcome carries the message id and
    /// the transaction id to end it with.
    pub async fn send_half(
        &mut self,
        topic: &str,
        value: u64,
        timeout: Duration,
    ) -> Outcome<(String, String)> {
        let spec = MessageSpec {
            transactional: true,
            ..MessageSpec::default()
        };
        let (message_id, message) = self.value_message(topic, value, spec);
        let response = match answer(timeout, self.rpc.send(vec![message], timeout)).await {
            Ok(r) => r,
            Err(outcome) => return outcome,
        };
        let Some(entry) = response.entries.first() else {
            return Outcome::Unknown("answer without entries".into());
        };
        match status_outcome(entry.status.as_ref(), definite_refusal) {
            Outcome::Ok(()) => Outcome::Ok((message_id, entry.transaction_id.clone())),
            Outcome::Fail(e) => Outcome::Fail(e),
            Outcome::Unknown(e) => Outcome::Unknown(e),
        }
    }

    /// Commits or rolls back a half message. "No such open transaction" is a definite failure:
    /// this call ended nothing.
    pub async fn end_transaction(
        &mut self,
        topic: &str,
        ids: &(String, String),
        commit: bool,
        timeout: Duration,
    ) -> Outcome<()> {
        let call = self
            .rpc
            .end_transaction(topic, &ids.0, &ids.1, commit, timeout);
        let response = match answer(timeout, call).await {
            Ok(r) => r,
            Err(outcome) => return outcome,
        };
        status_outcome(response.status.as_ref(), |code| {
            code == v2::Code::InvalidTransactionId as i32 || definite_refusal(code)
        })
    }

    /// One long poll for up to `batch` messages, then an ack of each. Returns the [`Delivery`]:
    /// the values received, when the receive returned, and the ack errors, if any.
    pub async fn receive_and_ack(
        &mut self,
        topic: &str,
        group: &str,
        batch: i32,
        poll: Duration,
        invisible: Duration,
    ) -> Outcome<Delivery> {
        let receive = Receive {
            group: resource(group),
            topic: resource(topic),
            tag: "*".into(),
            batch,
            invisible,
            long_poll: poll,
        };
        let timeout = poll + Duration::from_secs(3);
        let call = self.rpc.receive(&receive, timeout);
        let answer = tokio::time::timeout(timeout + Duration::from_secs(1), call).await;
        let received_at = std::time::Instant::now();
        let received = match answer {
            Err(_) => return Outcome::Unknown(format!("no answer in {timeout:?}")),
            Ok(Err(error)) => return Outcome::Unknown(grpc_text(&error)),
            Ok(Ok(r)) => r,
        };
        let delivery = |values: Vec<u64>, ack_error: Option<String>| Delivery {
            values,
            received_at,
            ack_error,
        };
        let (status, messages) = (received.status, received.messages);
        match &status {
            Some(s) if s.code == v2::Code::MessageNotFound as i32 => {
                return Outcome::Ok(delivery(Vec::new(), None));
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
        for m in &messages {
            match std::str::from_utf8(&m.body)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
            {
                Some(v) => values.push(v),
                None => tracing::warn!("a message not written by the harness: {:?}", m.body),
            }
        }
        // Only messages with system properties carry a receipt handle to ack.
        let ackable: Vec<v2::Message> = messages
            .into_iter()
            .filter(|m| m.system_properties.is_some())
            .collect();
        if ackable.is_empty() {
            return Outcome::Ok(delivery(values, None));
        }
        let (group, topic) = (resource(group), resource(topic));
        let call = self
            .rpc
            .ack(&group, &topic, &ackable, Duration::from_secs(5));
        let ack_error = match tokio::time::timeout(Duration::from_secs(6), call).await {
            Err(_) => Some("ack: no answer".to_string()),
            Ok(Err(error)) => Some(format!("ack: {}", grpc_text(&error))),
            Ok(Ok(r)) => {
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
        Outcome::Ok(delivery(values, ack_error))
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
