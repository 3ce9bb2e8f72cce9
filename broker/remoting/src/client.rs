//! [`RemotingClient`]: one remoting connection; requests in flight are matched to their
//! responses by opaque. Used by brokers registering at NameServers, by `mqadmin -n` and by
//! tests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::Framed;

use crate::codec::FrameCodec;
use crate::command::RemotingCommand;
use crate::error::RemotingError;

/// Requests waiting for a response, by opaque.
type Pending = Arc<Mutex<HashMap<i32, oneshot::Sender<RemotingCommand>>>>;

/// How many frames may wait for the writer.
const OUTBOX_LEN: usize = 1024;

/// A connection to a NameServer or broker. Dropping it closes the connection.
#[derive(Debug)]
pub struct RemotingClient {
    addr: String,
    outbox: mpsc::Sender<RemotingCommand>,
    pending: Pending,
    next_opaque: AtomicI32,
    /// Set when the reader ends (the peer closed or sent garbage): calls fail at once.
    closed: Arc<AtomicBool>,
}

impl RemotingClient {
    /// Connects to `addr` (`host:port`) within `timeout`.
    ///
    /// # Errors
    /// The connect failed or timed out.
    pub async fn connect(addr: &str, timeout: Duration) -> Result<RemotingClient, RemotingError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| RemotingError::Timeout {
                code: -1,
                timeout_ms: millis(timeout),
                addr: addr.to_string(),
            })??;
        stream.set_nodelay(true)?;
        let (mut sink, mut source) = Framed::new(stream, FrameCodec::default()).split();
        let (outbox, mut rx) = mpsc::channel::<RemotingCommand>(OUTBOX_LEN);
        let pending: Pending = Arc::default();
        tokio::spawn(async move {
            while let Some(cmd) = rx.recv().await {
                if sink.send(cmd).await.is_err() {
                    break;
                }
            }
            // The reader half keeps the socket alive: shut the write side down (FIN) so the
            // peer sees the close when the client is dropped, and closes its side in turn.
            let _ = sink.close().await;
        });
        let reader_pending = Arc::clone(&pending);
        let closed = Arc::new(AtomicBool::new(false));
        let reader_closed = Arc::clone(&closed);
        let peer = addr.to_string();
        tokio::spawn(async move {
            while let Some(frame) = source.next().await {
                match frame {
                    Ok(cmd) if cmd.is_response() => {
                        let waiter = lock(&reader_pending).remove(&cmd.opaque);
                        if let Some(w) = waiter {
                            let _ = w.send(cmd);
                        }
                    }
                    Ok(cmd) => {
                        tracing::debug!(code = cmd.code, %peer, "request from server ignored")
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, %peer, "remoting connection failed");
                        break;
                    }
                }
            }
            reader_closed.store(true, Ordering::Release);
            lock(&reader_pending).clear(); // every waiter sees Closed
        });
        Ok(RemotingClient {
            addr: addr.to_string(),
            outbox,
            pending,
            next_opaque: AtomicI32::new(1),
            closed,
        })
    }

    /// The peer's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends `request` and waits up to `timeout` for its response (of any code).
    ///
    /// # Errors
    /// Closed connection or timeout; the caller checks the response code.
    #[tracing::instrument(level = "debug", skip_all, fields(code = request.code, addr = %self.addr))]
    pub async fn invoke(
        &self,
        mut request: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, RemotingError> {
        let opaque = self.next_opaque.fetch_add(1, Ordering::Relaxed);
        request.opaque = opaque;
        let code = request.code;
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(opaque, tx);
        // Checked after the waiter is in: a close from now on drops it (rx fails at once),
        // and one before it is seen here.
        if self.closed.load(Ordering::Acquire) || self.outbox.send(request).await.is_err() {
            lock(&self.pending).remove(&opaque);
            return Err(self.not_sent());
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(_)) => Err(self.closed()),
            Err(_) => {
                lock(&self.pending).remove(&opaque);
                Err(RemotingError::Timeout {
                    code,
                    timeout_ms: millis(timeout),
                    addr: self.addr.clone(),
                })
            }
        }
    }

    /// Like [`invoke`](Self::invoke), and a response code other than SUCCESS is an error.
    ///
    /// # Errors
    /// As `invoke`, or [`RemotingError::Refused`] with the code and remark.
    pub async fn invoke_ok(
        &self,
        request: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, RemotingError> {
        let response = self.invoke(request, timeout).await?;
        if response.code != crate::code::response::SUCCESS {
            return Err(RemotingError::Refused {
                addr: self.addr.clone(),
                code: response.code,
                remark: response.remark,
            });
        }
        Ok(response)
    }

    /// Sends `request` without waiting for an answer.
    ///
    /// # Errors
    /// The connection is closed.
    pub async fn oneway(&self, mut request: RemotingCommand) -> Result<(), RemotingError> {
        request.mark_oneway();
        request.opaque = self.next_opaque.fetch_add(1, Ordering::Relaxed);
        if self.closed.load(Ordering::Acquire) {
            return Err(self.not_sent());
        }
        self.outbox.send(request).await.map_err(|_| self.not_sent())
    }

    /// Whether the connection is still up (its writer still runs).
    pub fn is_open(&self) -> bool {
        !self.outbox.is_closed() && !self.closed.load(Ordering::Acquire)
    }

    fn closed(&self) -> RemotingError {
        RemotingError::Closed {
            addr: self.addr.clone(),
        }
    }

    fn not_sent(&self) -> RemotingError {
        RemotingError::NotSent {
            addr: self.addr.clone(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::ExtFields;
    use tokio::net::TcpListener;

    /// A server that answers every request with its code + 1000 and a field echoing `x`,
    /// in reverse order of arrival for each pair, to show matching by opaque.
    async fn echo_server() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accepts");
            let mut framed = Framed::new(stream, FrameCodec::default());
            let mut held: Option<RemotingCommand> = None;
            while let Some(Ok(req)) = framed.next().await {
                let resp = RemotingCommand::response_to(&req, req.code + 1000)
                    .with_field("x", req.field("x").unwrap_or_default());
                match held.take() {
                    None => held = Some(resp),
                    Some(first) => {
                        framed.send(resp).await.expect("sends");
                        framed.send(first).await.expect("sends");
                    }
                }
            }
        });
        addr
    }

    #[tokio::test]
    async fn responses_find_their_requests_by_opaque() {
        let addr = echo_server().await;
        let client = Arc::new(
            RemotingClient::connect(&addr, Duration::from_secs(2))
                .await
                .expect("connects"),
        );
        let call = |code: i32, x: &str| {
            let c = Arc::clone(&client);
            let req = RemotingCommand::request(code, ExtFields::new()).with_field("x", x);
            async move { c.invoke(req, Duration::from_secs(2)).await }
        };
        let (a, b) = tokio::join!(call(1, "one"), call(2, "two"));
        let (a, b) = (a.expect("answered"), b.expect("answered"));
        assert_eq!((a.code, a.field("x")), (1001, Some("one")));
        assert_eq!((b.code, b.field("x")), (1002, Some("two")));
    }

    #[tokio::test]
    async fn dropping_the_client_closes_the_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("addr").to_string();
        let client = RemotingClient::connect(&addr, Duration::from_secs(2))
            .await
            .expect("connects");
        let (stream, _) = listener.accept().await.expect("accepts");
        drop(client);
        let mut framed = Framed::new(stream, FrameCodec::default());
        let end = tokio::time::timeout(Duration::from_secs(2), framed.next())
            .await
            .expect("the server sees the close in time");
        assert!(end.is_none(), "{end:?}");
    }

    #[tokio::test]
    async fn a_connection_the_peer_closed_fails_calls_at_once() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("addr").to_string();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accepts");
            drop(stream); // the peer goes away
        });
        let client = RemotingClient::connect(&addr, Duration::from_secs(2))
            .await
            .expect("connects");
        server.await.expect("server task");
        for _ in 0..200 {
            if !client.is_open() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!client.is_open(), "a closed peer is seen");
        let started = std::time::Instant::now();
        let err = client
            .invoke(
                RemotingCommand::request(105, ExtFields::new()),
                Duration::from_secs(5),
            )
            .await
            .expect_err("closed");
        assert!(matches!(err, RemotingError::NotSent { .. }), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "not after the timeout"
        );
    }

    #[tokio::test]
    async fn an_unanswered_request_times_out_naming_the_peer() {
        let addr = echo_server().await; // holds the first response until a second request
        let client = RemotingClient::connect(&addr, Duration::from_secs(2))
            .await
            .expect("connects");
        let err = client
            .invoke(
                RemotingCommand::request(105, ExtFields::new()),
                Duration::from_millis(100),
            )
            .await
            .expect_err("times out");
        assert!(err.to_string().contains(&addr), "{err}");
    }
}
