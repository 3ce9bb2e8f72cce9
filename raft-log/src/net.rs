//! Sockets between peers: the one pool of channels to the peers ([`PeerChannels`]), the one
//! dialer every channel uses, and a bind that waits out a port briefly held by someone else.
//!
//! **One channel per peer.** Replication, votes and heartbeats (`engine/network.rs`) and
//! forwarded proposals (`forward.rs`) to a peer multiplex over one lazily connecting HTTP/2
//! channel, with one connect timeout. Traffic does not compete in practice: a leader dials its
//! followers to replicate and never forwards, a follower forwards to its leader and dials it only
//! to vote.
//!
//! **TCP self-connection.** While a node is down, its peers keep dialing its address. On
//! loopback the kernel picks the dialer's source port from the ephemeral range (32768–60999 on
//! Linux), which contains RocketMQ's usual ports (30911…, 40911…). When it picks the very port
//! being dialed, the connect succeeds *to itself* (TCP simultaneous open): a socket
//! `127.0.0.1:40912 ↔ 127.0.0.1:40912` that holds the port the restarting node needs, so its
//! bind fails with EADDRINUSE. [`dial`] drops such a connection at once (the channel reconnects
//! later), and [`bind_retrying`] waits out the short window in which one may still exist.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::{Channel, Endpoint, Uri};

/// How long a TCP connect to a peer may take, in heartbeat intervals: long enough for a slow
/// handshake, short enough that a dead address is reported (and backed off from) quickly.
const CONNECT_TIMEOUT_HEARTBEATS: u32 = 4;

/// The channels to a node's peers, one per peer, created lazily; clones share the pool.
#[derive(Clone, Debug)]
pub(crate) struct PeerChannels {
    inner: Arc<PoolInner>,
}

#[derive(Debug)]
struct PoolInner {
    connect_timeout: Duration,
    /// By node id: the address the channel dials, and the channel.
    channels: Mutex<HashMap<u64, (String, Channel)>>,
}

impl PeerChannels {
    /// An empty pool whose connects time out after [`CONNECT_TIMEOUT_HEARTBEATS`] heartbeats.
    pub(crate) fn new(heartbeat_interval_ms: u64) -> PeerChannels {
        let heartbeat = Duration::from_millis(heartbeat_interval_ms.max(1));
        PeerChannels {
            inner: Arc::new(PoolInner {
                connect_timeout: heartbeat.saturating_mul(CONNECT_TIMEOUT_HEARTBEATS),
                channels: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The channel to node `node_id` at `addr`: the pooled one, or a new one when there is none
    /// or the node's address changed (a membership change may move a node).
    ///
    /// # Errors
    /// When `addr` is not a valid `host:port`.
    pub(crate) fn get(&self, node_id: u64, addr: &str) -> Result<Channel, tonic::transport::Error> {
        // A panic while holding the lock cannot leave the map half-updated: keep using it.
        let mut channels = self
            .inner
            .channels
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((pooled_addr, channel)) = channels.get(&node_id)
            && pooled_addr == addr
        {
            return Ok(channel.clone());
        }
        let channel = lazy_channel(addr, self.inner.connect_timeout)?;
        channels.insert(node_id, (addr.to_string(), channel.clone()));
        Ok(channel)
    }
}

/// How long [`bind_retrying`] waits between two attempts.
const BIND_RETRY_INTERVAL: Duration = Duration::from_millis(50);

/// A lazily connecting HTTP/2 channel to the peer at `addr` (`host:port`). Every connection it
/// makes has TCP_NODELAY, takes at most `connect_timeout`, and is never a self-connection.
///
/// # Errors
/// When `addr` is not a valid `host:port`.
fn lazy_channel(addr: &str, connect_timeout: Duration) -> Result<Channel, tonic::transport::Error> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))?;
    let target = addr.to_string();
    let connector = tower::service_fn(move |_: Uri| {
        let target = target.clone();
        async move {
            let stream = tokio::time::timeout(connect_timeout, dial(&target))
                .await
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("connect to {target} took over {connect_timeout:?}"),
                    )
                })??;
            Ok::<_, io::Error>(TokioIo::new(stream))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(connector))
}

/// Connects to `target`, with TCP_NODELAY, refusing a connection to itself.
#[tracing::instrument(level = "trace")]
pub(crate) async fn dial(target: &str) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(target).await?;
    let stream = refuse_self_connection(stream)?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// `stream`, unless its two ends are one socket; then it is aborted (freeing the port at once)
/// and the dial fails as if nobody listened.
fn refuse_self_connection(stream: TcpStream) -> io::Result<TcpStream> {
    let (local, peer) = (stream.local_addr()?, stream.peer_addr()?);
    if local == peer {
        // Abort (RST) rather than close: a closed self-connection would sit in TIME_WAIT for a
        // minute and keep the port from its owner just the same.
        stream.set_zero_linger()?;
        drop(stream);
        tracing::debug!(%local, "dropped a TCP self-connection to a peer that is down");
        return Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!("{peer} is down (the connect reached itself)"),
        ));
    }
    Ok(stream)
}

/// Binds `addr`, retrying every 50 ms for up to `patience` while the port is in use (a peer's
/// self-connection lasts until its dialer notices; a restarted process's old sockets may linger).
///
/// # Errors
/// The last bind error: EADDRINUSE after `patience`, any other at once.
pub async fn bind_retrying(addr: &str, patience: Duration) -> io::Result<TcpListener> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match TcpListener::bind(addr).await {
            Err(e)
                if e.kind() == io::ErrorKind::AddrInUse
                    && tokio::time::Instant::now() + BIND_RETRY_INTERVAL <= deadline =>
            {
                tracing::debug!(%addr, "address in use; retrying the bind");
                tokio::time::sleep(BIND_RETRY_INTERVAL).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::SocketAddr;

    use super::*;
    use tokio::net::TcpSocket;

    /// A free loopback port: bound, read, released.
    fn free_port() -> SocketAddr {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    }

    /// What the kernel does when the dialer's source port is the port it dials. No
    /// SO_REUSEADDR, like a dialer's socket: a listener cannot bind beside it.
    async fn self_connected(addr: SocketAddr) -> TcpStream {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(addr).unwrap();
        socket.connect(addr).await.unwrap()
    }

    #[tokio::test]
    async fn a_self_connection_is_refused_and_frees_the_port() {
        let addr = free_port();
        let stream = self_connected(addr).await;
        assert_eq!(stream.local_addr().unwrap(), stream.peer_addr().unwrap());
        let err = refuse_self_connection(stream).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        // The port is free again for the node that owns it, at once.
        TcpListener::bind(addr).await.unwrap();
    }

    #[tokio::test]
    async fn a_connection_to_a_listener_is_kept() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stream = dial(&addr).await.unwrap();
        assert!(stream.nodelay().unwrap());
        assert_ne!(stream.local_addr().unwrap(), stream.peer_addr().unwrap());
    }

    #[tokio::test]
    async fn bind_waits_out_a_port_held_for_a_moment() {
        let addr = free_port();
        let held = self_connected(addr).await;
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            // What the dialer does once it sees what it connected to.
            assert!(refuse_self_connection(held).is_err());
        });
        let listener = bind_retrying(&addr.to_string(), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(listener.local_addr().unwrap(), addr);
        release.await.unwrap();
    }

    #[tokio::test]
    async fn bind_gives_up_after_its_patience() {
        let addr = free_port();
        let _held = self_connected(addr).await;
        let started = std::time::Instant::now();
        let err = bind_retrying(&addr.to_string(), Duration::from_millis(200))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(started.elapsed() >= Duration::from_millis(150));
    }
}
