//! What the producer and consumer loops drive, whatever the protocol: one protocol's
//! [`Sender`] and [`Receiver`], implemented for gRPC (`producer.rs`, `consumer.rs`) and for
//! remoting (`remoting.rs`), and the body every message carries.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;

use crate::plan::Failure;

/// The broker ends a long poll this long before the request's gRPC deadline (`grpc.rs`).
pub(crate) const BROKER_DEADLINE_MARGIN: Duration = Duration::from_millis(500);

/// A body of `size` bytes: printable, not all one byte (so nothing on the path can shortcut it).
pub(crate) fn body(size: usize) -> Bytes {
    let pattern = b"RaftMQ-mqbench-0123456789abcdefghijklmnopqrstuvwxyz.";
    Bytes::from(
        pattern
            .iter()
            .copied()
            .cycle()
            .take(size)
            .collect::<Vec<u8>>(),
    )
}

/// One protocol's send: a request of [`batch`](Sender::batch) messages, one outcome each.
pub(crate) trait Sender: Send + 'static {
    /// Messages per request.
    fn batch(&self) -> u64;
    /// Body bytes of one message.
    fn body_len(&self) -> u64;
    /// Sends one request. Per message: `None` when it was stored, or its failure; and whether
    /// the request itself failed (transport, deadline), which pauses the worker.
    fn send(&mut self) -> impl Future<Output = (Vec<Option<Failure>>, bool)> + Send;
    /// Resends of failed calls since the last ask (`--retries`); a sender that never resends
    /// says 0.
    fn take_retried(&mut self) -> u64 {
        0
    }
}

/// One protocol's receive and acknowledge.
pub(crate) trait Receiver: Send + 'static {
    /// A received message, as the acknowledge needs it.
    type Message: Send + Sync + 'static;
    /// One receive (a long poll when nothing is there): the messages, or a failure.
    fn receive(&mut self) -> impl Future<Output = Result<Vec<Self::Message>, Failure>> + Send;
    /// Acknowledges `messages`; per message: acknowledged (`None`) or the failure.
    fn ack(
        &mut self,
        messages: &[Self::Message],
    ) -> impl Future<Output = Result<Vec<Option<Failure>>, Failure>> + Send;
    /// The body bytes of a message.
    fn body_len(message: &Self::Message) -> u64;
    /// Microseconds from the message's born timestamp to now.
    fn e2e_us(message: &Self::Message) -> Option<u64>;
}
