//! Who a client is, as the official SDKs tell the broker: the `x-mq-*` headers every call
//! carries, and message ids in the SDKs' layout.

use std::hash::{BuildHasher as _, Hasher as _};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tonic::Request;
use tonic::metadata::{Ascii, MetadataValue};

use crate::error::ClientError;

/// Seconds since the Unix epoch at 2021-01-01T00:00:00Z, the SDKs' message id epoch.
const MESSAGE_ID_EPOCH_SECS: u64 = 1_609_459_200;

/// Identity of a client as the SDKs build it (`host@pid@index@random`), and the headers they send
/// with every call.
#[derive(Debug)]
pub struct ClientIdentity {
    /// The host name sent as `born_host`.
    pub host: String,
    pid: u32,
    /// Six pseudo-random bytes in place of the SDKs' MAC address.
    node: [u8; 6],
    sequence: AtomicU32,
    client_id: MetadataValue<Ascii>,
}

impl ClientIdentity {
    /// A fresh identity for this process; `index` tells apart several clients in one process.
    ///
    /// # Errors
    /// The host name does not make a valid header value.
    pub fn new(index: u32) -> Result<ClientIdentity, ClientError> {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| {
                h.trim()
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || "-._".contains(*c))
                    .collect::<String>()
            })
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_string());
        let pid = std::process::id();
        // RandomState is seeded randomly per process: a dependency-free source of entropy.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(pid);
        hasher.write_u32(index);
        hasher.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        let random = hasher.finish().to_be_bytes();
        let mut node = [0u8; 6];
        node.copy_from_slice(&random[..6]);
        let client_id =
            MetadataValue::try_from(format!("{host}@{pid}@{index}@{}", hex(&random[2..])))
                .map_err(|source| ClientError::Identity { source })?;
        Ok(ClientIdentity {
            host,
            pid,
            node,
            sequence: AtomicU32::new(0),
            client_id,
        })
    }

    /// The `x-mq-client-id` value.
    pub fn client_id(&self) -> &str {
        self.client_id.to_str().unwrap_or_default()
    }

    /// A message id in the SDKs' layout: version `01`, 6-byte node, 2-byte pid, 4-byte seconds
    /// since 2021-01-01, 4-byte sequence; 34 upper-case hex digits. Returns the sequence too.
    pub fn message_id(&self) -> (String, u32) {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .saturating_sub(MESSAGE_ID_EPOCH_SECS);
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        let mut bytes = [0u8; 17];
        bytes[0] = 1;
        bytes[1..7].copy_from_slice(&self.node);
        bytes[7..9].copy_from_slice(&self.pid.to_be_bytes()[2..]);
        bytes[9..13].copy_from_slice(&u32::try_from(secs).unwrap_or(u32::MAX).to_be_bytes());
        bytes[13..17].copy_from_slice(&sequence.to_be_bytes());
        (hex(&bytes), sequence)
    }

    /// `message` as a request with a deadline and the headers the broker (and the Java proxy)
    /// expect from an SDK.
    pub fn request<T>(&self, message: T, timeout: Duration) -> Request<T> {
        let mut request = self.stream_request(message);
        request.set_timeout(timeout);
        request
    }

    /// `message` as a request with the SDK headers and no deadline, for a stream that lives
    /// as long as the client (Telemetry).
    pub fn stream_request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        let metadata = request.metadata_mut();
        metadata.insert("x-mq-client-id", self.client_id.clone());
        metadata.insert("x-mq-language", MetadataValue::from_static("RUST"));
        metadata.insert("x-mq-protocol", MetadataValue::from_static("v2"));
        metadata.insert(
            "x-mq-client-version",
            MetadataValue::from_static(env!("CARGO_PKG_VERSION")),
        );
        request
    }
}

/// Upper-case hex, as in message ids.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn message_ids_have_the_sdk_layout() {
        let identity = ClientIdentity::new(0).unwrap();
        let ((a, sa), (b, sb)) = (identity.message_id(), identity.message_id());
        assert_eq!(a.len(), 34);
        assert!(a.starts_with("01"));
        assert!(
            a.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())
        );
        assert_ne!(a, b);
        assert_eq!(sb, sa + 1);
        assert!(
            identity
                .client_id()
                .contains(&format!("@{}@0@", std::process::id()))
        );
    }

    #[test]
    fn requests_carry_the_sdk_headers_and_deadline() {
        let identity = ClientIdentity::new(3).unwrap();
        let r = identity.request((), Duration::from_millis(1500));
        let m = r.metadata();
        assert_eq!(m.get("x-mq-client-id").unwrap(), identity.client_id());
        assert_eq!(m.get("x-mq-protocol").unwrap(), "v2");
        assert_eq!(m.get("grpc-timeout").unwrap(), "1500000u");
        assert_eq!(m.get("x-mq-language").unwrap(), "RUST");
        assert_eq!(
            m.get("x-mq-client-version").unwrap(),
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(hex(&[0x0a, 0xff]), "0AFF");
        let stream = identity.stream_request(());
        assert!(stream.metadata().get("grpc-timeout").is_none());
        assert_eq!(
            stream.metadata().get("x-mq-client-id").unwrap(),
            identity.client_id()
        );
    }

    #[test]
    fn client_ids_are_host_pid_index_random() {
        let identity = ClientIdentity::new(7).unwrap();
        let parts: Vec<&str> = identity.client_id().split('@').collect();
        assert_eq!(parts.len(), 4, "{}", identity.client_id());
        assert_eq!(parts[0], identity.host);
        assert_eq!(parts[1], std::process::id().to_string());
        assert_eq!(parts[2], "7");
        assert_eq!(parts[3].len(), 12);
        assert!(parts[3].chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn message_ids_carry_the_pid_and_the_sequence() {
        let identity = ClientIdentity::new(0).unwrap();
        let (id, sequence) = identity.message_id();
        let pid = std::process::id().to_be_bytes();
        assert_eq!(&id[14..18], hex(&pid[2..]));
        assert_eq!(&id[26..34], hex(&sequence.to_be_bytes()));
    }
}
