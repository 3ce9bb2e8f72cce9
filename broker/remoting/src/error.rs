//! Errors of the remoting layer.

/// A frame or connection failed.
#[derive(Debug, thiserror::Error)]
pub enum RemotingError {
    /// The socket failed.
    #[error("remoting I/O")]
    Io {
        /// Why.
        #[from]
        source: std::io::Error,
    },
    /// A frame announced more bytes than a frame may have.
    #[error("frame of {len} bytes exceeds the limit of {len_max}")]
    FrameTooLarge {
        /// Announced length.
        len: usize,
        /// The limit.
        len_max: usize,
    },
    /// A frame's lengths or header do not parse.
    #[error("malformed frame: {reason}")]
    Malformed {
        /// What is wrong.
        reason: &'static str,
    },
    /// The JSON header does not parse.
    #[error("malformed JSON header")]
    Json {
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The header names an unknown serialize type.
    #[error("unknown header serialize type {value}")]
    SerializeType {
        /// The byte.
        value: u8,
    },
    /// No response within the time.
    #[error("no response to request code {code} within {timeout_ms} ms from {addr}")]
    Timeout {
        /// The request code.
        code: i32,
        /// The wait.
        timeout_ms: u64,
        /// The peer.
        addr: String,
    },
    /// The connection closed with the request in flight: it may have reached the peer.
    #[error("connection to {addr} closed")]
    Closed {
        /// The peer.
        addr: String,
    },
    /// The connection was closed before the request was sent: it certainly did not reach
    /// the peer.
    #[error("connection to {addr} is closed: not sent")]
    NotSent {
        /// The peer.
        addr: String,
    },
    /// A request or response header field is missing or bad.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// The peer answered with an error code.
    #[error("{addr} answered code {code}: {remark}")]
    Refused {
        /// The peer.
        addr: String,
        /// The response code.
        code: i32,
        /// Its remark.
        remark: String,
    },
}

/// A header field of a request that is missing or does not parse; names the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// Absent.
    #[error("the header field {field} is missing")]
    Missing {
        /// Field name.
        field: String,
    },
    /// Present but not of its type.
    #[error("the header field {field} = {value:?} is not {expected}")]
    Invalid {
        /// Field name.
        field: String,
        /// Its value.
        value: String,
        /// What it should be.
        expected: &'static str,
    },
}
