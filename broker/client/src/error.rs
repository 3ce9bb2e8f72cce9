//! The client's one error type.

use std::time::Duration;

/// Why a client operation failed. Display strings name the call and the address, as the tools
/// print them; the cause, when there is one, is the error's `source`.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Neither `-n` nor `$NAMESRV_ADDR` gave an access point.
    #[error("no broker address: pass -n HOST:PORT[;HOST:PORT…] or set NAMESRV_ADDR")]
    NoAccessPoint,
    /// The access point names no address (`";"`, `""`).
    #[error("-n {raw:?} names no address; expected HOST:PORT[;HOST:PORT…]")]
    EmptyAccessPoint {
        /// The access point as given.
        raw: String,
    },
    /// An address that makes no URI.
    #[error("-n: bad address {addr:?}")]
    BadAddress {
        /// The address as given.
        addr: String,
        /// Why tonic refused it.
        #[source]
        source: tonic::transport::Error,
    },
    /// No TCP/HTTP/2 connection to the address.
    #[error("cannot connect to {addr}")]
    Connect {
        /// The address.
        addr: String,
        /// The transport's reason.
        #[source]
        source: tonic::transport::Error,
    },
    /// No address of an access point accepted a connection.
    #[error("no broker reachable: {}", failures.join("; "))]
    NoneReachable {
        /// One line per address, in order, with the whole cause chain.
        failures: Vec<String>,
    },
    /// The call itself failed: transport, deadline, or a gRPC status from the server.
    #[error("{call} at {addr}")]
    Rpc {
        /// The RPC (`SendMessage`, `ClusterList`, …).
        call: &'static str,
        /// The address called.
        addr: String,
        /// The gRPC status.
        #[source]
        source: tonic::Status,
    },
    /// The call succeeded but its response carries no status.
    #[error("{call} at {addr}: the response has no status")]
    NoStatus {
        /// The RPC.
        call: &'static str,
        /// The address called.
        addr: String,
    },
    /// The server answered with a status other than OK.
    #[error("{call} refused by {addr}: {name} ({code}): {message}")]
    Refused {
        /// The RPC.
        call: &'static str,
        /// The address called.
        addr: String,
        /// The status code as sent.
        code: i32,
        /// The code's protobuf name (`UNKNOWN_CODE` when the client does not know it).
        name: &'static str,
        /// The server's message.
        message: String,
    },
    /// The server did not end the call within the caller's guard time.
    #[error("{call} at {addr}: no answer within {timeout:?}")]
    NoAnswer {
        /// The RPC.
        call: &'static str,
        /// The address called.
        addr: String,
        /// The deadline the request carried.
        timeout: Duration,
    },
    /// The host name makes no valid `x-mq-client-id` header.
    #[error("the client id is not a valid header value")]
    Identity {
        /// tonic's reason.
        #[source]
        source: tonic::metadata::errors::InvalidMetadataValue,
    },
}

impl ClientError {
    /// The gRPC status of a failed call, if this is one.
    pub fn grpc_status(&self) -> Option<&tonic::Status> {
        match self {
            ClientError::Rpc { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// `Ok` when a reply's status is `ok_code`: the one rule behind `check_v2` and
/// `check_admin`, whose two protocols have their own status types. `status` is the
/// reply's (code, message); `name` names a code.
pub(crate) fn check_status(
    status: Option<(i32, &str)>,
    ok_code: i32,
    name: fn(i32) -> &'static str,
    call: &'static str,
    addr: &str,
) -> Result<(), ClientError> {
    let Some((code, message)) = status else {
        return Err(ClientError::NoStatus {
            call,
            addr: addr.to_string(),
        });
    };
    if code == ok_code {
        return Ok(());
    }
    Err(ClientError::Refused {
        call,
        addr: addr.to_string(),
        code,
        name: name(code),
        message: message.to_string(),
    })
}

/// `error` and its causes joined by `": "`, the way `anyhow` prints `{:#}`.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_the_call_the_address_and_the_code() {
        let e = ClientError::Refused {
            call: "DeleteTopic",
            addr: "127.0.0.1:1".into(),
            code: 3,
            name: "CODE_NOT_FOUND",
            message: "no such topic".into(),
        };
        assert_eq!(
            e.to_string(),
            "DeleteTopic refused by 127.0.0.1:1: CODE_NOT_FOUND (3): no such topic"
        );
    }

    #[test]
    fn the_chain_joins_every_cause() {
        let e = ClientError::Rpc {
            call: "TopicList",
            addr: "a:1".into(),
            source: tonic::Status::unavailable("down"),
        };
        let chain = error_chain(&e);
        assert!(chain.starts_with("TopicList at a:1: "), "{chain}");
        assert!(chain.contains("down"), "{chain}");
        assert!(e.grpc_status().is_some());
    }
}
