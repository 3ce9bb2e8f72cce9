//! How a broker knows a 5.x client: the Telemetry stream an SDK keeps open with its Settings
//! (a producer's topics, a consumer's group and subscriptions), the Heartbeat it sends every
//! few seconds, and NotifyClientTermination when it shuts down.

use std::time::Duration;

use futures::channel::mpsc;
use proto::apache::rocketmq::v2;
use tonic::Streaming;

use crate::error::ClientError;
use crate::fields::resource;

/// An open Telemetry stream. The broker knows the client as its Settings say while the stream
/// is open; dropping it ends the stream.
#[derive(Debug)]
pub struct Telemetry {
    addr: String,
    /// Keeps the request stream open.
    _outbound: mpsc::UnboundedSender<v2::TelemetryCommand>,
    inbound: Streaming<v2::TelemetryCommand>,
    /// The broker's first answer; `None` when the stream ended without one.
    answer: Option<v2::TelemetryCommand>,
}

impl Telemetry {
    /// The status of the broker's answer to the client's Settings (`None` without an answer).
    pub fn status(&self) -> Option<&v2::Status> {
        self.answer.as_ref()?.status.as_ref()
    }

    /// The broker's answer to the client's Settings: its merged settings, if it sent them.
    pub fn settings(&self) -> Option<&v2::Settings> {
        match self.answer.as_ref()?.command.as_ref()? {
            v2::telemetry_command::Command::Settings(s) => Some(s),
            _ => None,
        }
    }

    /// The next command the broker sends (a transaction check, …); `None` when it ended the
    /// stream.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] when the stream fails.
    pub async fn next_command(&mut self) -> Result<Option<v2::TelemetryCommand>, ClientError> {
        self.inbound
            .message()
            .await
            .map_err(|source| ClientError::Rpc {
                call: "Telemetry",
                addr: self.addr.clone(),
                source,
            })
    }
}

/// The Settings of a producer that publishes `topics`.
pub fn producer_settings(topics: &[&str]) -> v2::Settings {
    v2::Settings {
        client_type: Some(v2::ClientType::Producer as i32),
        pub_sub: Some(v2::settings::PubSub::Publishing(v2::Publishing {
            topics: topics.iter().map(|t| resource(t)).collect(),
            max_body_size: 0,
            validate_message_type: false,
        })),
        ..Default::default()
    }
}

/// The Settings of a consumer (`client_type` SIMPLE_CONSUMER, PUSH_CONSUMER, …) of `group`,
/// subscribed to each `(topic, tag expression)`.
pub fn consumer_settings(
    client_type: v2::ClientType,
    group: &str,
    subscriptions: &[(&str, &str)],
) -> v2::Settings {
    let subscriptions = subscriptions
        .iter()
        .map(|(topic, tags)| v2::SubscriptionEntry {
            topic: Some(resource(topic)),
            expression: Some(v2::FilterExpression {
                r#type: v2::FilterType::Tag as i32,
                expression: (*tags).to_string(),
            }),
        })
        .collect();
    v2::Settings {
        client_type: Some(client_type as i32),
        pub_sub: Some(v2::settings::PubSub::Subscription(v2::Subscription {
            group: Some(resource(group)),
            subscriptions,
            ..Default::default()
        })),
        ..Default::default()
    }
}

impl super::MessagingClient {
    /// Opens a Telemetry stream and sends `settings`, as an SDK does at start-up; returns once
    /// the broker answered them (within `timeout`) or ended the stream. The stream itself has
    /// no deadline.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] when the call fails, [`ClientError::NoAnswer`] without an answer
    /// in time; the answer's status is not checked.
    #[tracing::instrument(level = "debug", skip_all, fields(addr = %self.addr))]
    pub async fn telemetry(
        &mut self,
        settings: v2::Settings,
        timeout: Duration,
    ) -> Result<Telemetry, ClientError> {
        let (outbound, commands) = mpsc::unbounded();
        let first = v2::TelemetryCommand {
            status: None,
            command: Some(v2::telemetry_command::Command::Settings(settings)),
        };
        // The receiver is alive: it is in the request below.
        let _ = outbound.unbounded_send(first);
        let request = self.identity.stream_request(commands);
        let addr = self.addr.clone();
        let rpc_error = |source| ClientError::Rpc {
            call: "Telemetry",
            addr: addr.clone(),
            source,
        };
        let opened = async {
            let mut inbound = self
                .rpc
                .telemetry(request)
                .await
                .map_err(rpc_error)?
                .into_inner();
            let answer = inbound.message().await.map_err(rpc_error)?;
            Ok::<_, ClientError>((inbound, answer))
        };
        let (inbound, answer) =
            tokio::time::timeout(timeout, opened)
                .await
                .map_err(|_| ClientError::NoAnswer {
                    call: "Telemetry",
                    addr: addr.clone(),
                    timeout,
                })??;
        Ok(Telemetry {
            addr,
            _outbound: outbound,
            inbound,
            answer,
        })
    }

    /// Heartbeat: the client is alive (a consumer names its `group`).
    ///
    /// # Errors
    /// [`ClientError::Rpc`] when the call fails; the status is not checked.
    #[tracing::instrument(level = "debug", skip_all, fields(addr = %self.addr))]
    pub async fn heartbeat(
        &mut self,
        group: Option<&str>,
        client_type: v2::ClientType,
        timeout: Duration,
    ) -> Result<v2::HeartbeatResponse, ClientError> {
        let heartbeat = v2::HeartbeatRequest {
            group: group.map(resource),
            client_type: client_type as i32,
        };
        let request = self.identity.request(heartbeat, timeout);
        let response = self.rpc.heartbeat(request).await;
        response
            .map(tonic::Response::into_inner)
            .map_err(self.rpc_error("Heartbeat"))
    }

    /// NotifyClientTermination: the client shuts down (a consumer names its `group`).
    ///
    /// # Errors
    /// [`ClientError::Rpc`] when the call fails; the status is not checked.
    #[tracing::instrument(level = "debug", skip_all, fields(addr = %self.addr))]
    pub async fn notify_client_termination(
        &mut self,
        group: Option<&str>,
        timeout: Duration,
    ) -> Result<v2::NotifyClientTerminationResponse, ClientError> {
        let notify = v2::NotifyClientTerminationRequest {
            group: group.map(resource),
        };
        let request = self.identity.request(notify, timeout);
        let response = self.rpc.notify_client_termination(request).await;
        response
            .map(tonic::Response::into_inner)
            .map_err(self.rpc_error("NotifyClientTermination"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_say_what_the_client_is() {
        let p = producer_settings(&["T1", "T2"]);
        assert_eq!(p.client_type, Some(v2::ClientType::Producer as i32));
        let Some(v2::settings::PubSub::Publishing(publishing)) = p.pub_sub else {
            panic!("a producer publishes");
        };
        assert_eq!(publishing.topics.len(), 2);
        let c = consumer_settings(v2::ClientType::SimpleConsumer, "G", &[("T", "TagA")]);
        let Some(v2::settings::PubSub::Subscription(sub)) = c.pub_sub else {
            panic!("a consumer subscribes");
        };
        assert_eq!(sub.group.map(|g| g.name).as_deref(), Some("G"));
        let entry = &sub.subscriptions[0];
        assert_eq!(
            entry.expression.as_ref().map(|e| e.expression.as_str()),
            Some("TagA")
        );
    }
}
