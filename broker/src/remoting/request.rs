//! What every remoting handler shares: the connection a request came on, and a request's
//! result with the one table from service errors to RocketMQ response codes.

use std::net::SocketAddr;

use raftmq_remoting::code::response as rs;
use raftmq_remoting::{FieldError, RemotingCommand};
use tokio::sync::mpsc;

use crate::service::ServiceError;
use crate::state::ApplyError;
use crate::store::StoreErrorKind;

/// One accepted remoting connection, as the client table knows it.
#[derive(Clone, Debug)]
pub(crate) struct Connection {
    pub(super) id: u64,
    pub(super) peer: SocketAddr,
    pub(super) outbox: mpsc::Sender<RemotingCommand>,
}

/// Why a request failed, as a remoting response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestError {
    /// A header field is missing or bad.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// A body does not decode.
    #[error("{what}")]
    Body {
        /// What is wrong.
        what: String,
    },
    /// The service refused or failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<crate::store::StoreError> for RequestError {
    fn from(e: crate::store::StoreError) -> Self {
        RequestError::Service(e.into())
    }
}

impl RequestError {
    pub(super) fn response(&self, request: &RemotingCommand) -> RemotingCommand {
        let code = match self {
            RequestError::Field(_) | RequestError::Body { .. } => rs::SYSTEM_ERROR,
            RequestError::Service(e) => service_code(e),
        };
        RemotingCommand::response_to(request, code).with_remark(self.to_string())
    }
}

/// The RocketMQ response code for a service error: the codes a 4.x producer retries on
/// another broker (SYSTEM_BUSY, SERVICE_NOT_AVAILABLE, TOPIC_NOT_EXIST) where RocketMQ uses
/// them; FLUSH_SLAVE_TIMEOUT for a write whose outcome is unknown.
fn service_code(e: &ServiceError) -> i32 {
    use ServiceError as E;
    match e {
        E::InvalidName { .. }
        | E::NoMessages
        | E::EmptyBody
        | E::BodyTooLarge { .. }
        | E::FifoWithoutGroup
        | E::DeliveryTooLate { .. } => rs::MESSAGE_ILLEGAL,
        E::TopicNotAutoCreated { .. } | E::TopicNotFound { .. } => rs::TOPIC_NOT_EXIST,
        E::Refused { source } => match source {
            ApplyError::TopicNotFound { .. } => rs::TOPIC_NOT_EXIST,
            ApplyError::QueueNotFound { .. }
            | ApplyError::QueueCount { .. }
            | ApplyError::InvalidHandle { .. }
            | ApplyError::TransactionNotFound { .. }
            | ApplyError::NotRecallable { .. }
            | ApplyError::InvalidSubscriptionGroup { .. } => rs::SYSTEM_ERROR,
            ApplyError::SubscriptionGroupNotFound { .. } => rs::SUBSCRIPTION_GROUP_NOT_EXIST,
        },
        E::SubscriptionGroupNotFound { .. } | E::SubscriptionGroupNotAutoCreated { .. } => {
            rs::SUBSCRIPTION_GROUP_NOT_EXIST
        }
        E::ConsumeDisabled { .. } | E::BroadcastDisabled { .. } => rs::NO_PERMISSION,
        E::MessageNotFound { .. } => rs::QUERY_NOT_FOUND,
        E::DiskFull { .. } | E::NotLeader { .. } => rs::SERVICE_NOT_AVAILABLE,
        E::Store { source } => match source.kind() {
            StoreErrorKind::NoLeader | StoreErrorKind::Shutdown => rs::SERVICE_NOT_AVAILABLE,
            StoreErrorKind::Busy => rs::SYSTEM_BUSY,
            StoreErrorKind::OutcomeUnknown => rs::FLUSH_SLAVE_TIMEOUT,
            StoreErrorKind::TooLarge => rs::MESSAGE_ILLEGAL,
            StoreErrorKind::UnknownNode | StoreErrorKind::Internal => rs::SYSTEM_ERROR,
        },
        E::Unsupported { .. } => rs::REQUEST_CODE_NOT_SUPPORTED,
        E::ConsumerNotOnline { .. } => rs::CONSUMER_NOT_ONLINE,
        E::InvisibleTimeMissing
        | E::InvisibleTimeTooLong { .. }
        | E::InvisibleTimeOutOfRange { .. }
        | E::GroupNotFound { .. }
        | E::ProducerNotOnline { .. }
        | E::MissingField { .. }
        | E::UnknownNode { .. }
        | E::InvalidField { .. }
        | E::ResultMissing => rs::SYSTEM_ERROR,
    }
}

/// A request's result: the response, or why there is none but an error.
pub(crate) type Answer = Result<RemotingCommand, RequestError>;
