//! [`NameServer`]: the listener, one task per connection, and the expiry scan.
//!
//! A connection task reads a frame, answers it under the state lock (every request is a short
//! in-memory operation, so one `std` mutex is enough and never held across an await), writes
//! the answer, and — when the connection ends for any reason — removes the brokers that last
//! registered over it. That removal is what makes a SIGKILLed leader vanish from routes at once
//! instead of after its heartbeat timeout.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures::{SinkExt as _, StreamExt as _};
use raftmq_remoting::{FrameCodec, RemotingCommand};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::codec::Framed;
use tracing::Instrument as _;

use crate::config::NamesrvConfig;
use crate::error::{NamesrvError, Result};
use crate::processor::{State, process};
use crate::registry::ConnectionId;

/// The most connections served at once; one beyond it is closed on accept.
pub const CONNECTIONS_MAX: usize = 8192;

/// How long writing one response may take before the connection is given up (a peer that does
/// not read must not hold its task forever).
pub const RESPONSE_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long to pause accepting after an accept error (out of file descriptors, say), so the
/// loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// How long [`NameServer::shutdown`] waits for its tasks.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// A running NameServer. Dropping it stops it too, without waiting for its tasks.
#[derive(Debug)]
pub struct NameServer {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl NameServer {
    /// Binds `bindAddress:listenPort` and starts serving and scanning.
    ///
    /// # Errors
    /// [`NamesrvError::Bind`] when the address cannot be bound.
    pub async fn start(config: NamesrvConfig) -> Result<NameServer> {
        let addr = SocketAddr::new(config.bind_address, config.listen_port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| NamesrvError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| NamesrvError::Bind {
            addr: addr.to_string(),
            source,
        })?;
        let state = Arc::new(Mutex::new(State::default()));
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        tasks.spawn(accept_loop(listener, Arc::clone(&state), stopped.clone()));
        tasks.spawn(scan_loop(
            config.scan_not_active_broker_interval(),
            state,
            stopped,
        ));
        tracing::info!(%local_addr, "name server listening");
        Ok(NameServer {
            local_addr,
            stop,
            tasks,
        })
    }

    /// The bound address (with the real port when `listenPort` was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, closes every connection and the scan, and waits (a bounded time) for
    /// them to end.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        let drained = tokio::time::timeout(SHUTDOWN_WAIT, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("name server tasks did not stop in time: aborted");
            self.tasks.shutdown().await;
        }
        tracing::info!(local_addr = %self.local_addr, "name server stopped");
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic under the lock leaves plain maps behind, still consistent enough to serve.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<Mutex<State>>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    let mut next_id: u64 = 0;
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if connections.len() >= CONNECTIONS_MAX {
                        tracing::warn!(%peer, count = connections.len(), "too many connections: closed");
                        continue;
                    }
                    next_id += 1;
                    let id = ConnectionId(next_id);
                    let span = tracing::info_span!("connection", %peer, id = next_id);
                    connections.spawn(
                        serve_connection(stream, id, Arc::clone(&state), stopped.clone())
                            .instrument(span),
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
        }
    }
    drop(listener);
    // Each connection task sees `stopped` too and ends after its current request.
    while connections.join_next().await.is_some() {}
}

async fn serve_connection(
    stream: TcpStream,
    id: ConnectionId,
    state: Arc<Mutex<State>>,
    mut stopped: watch::Receiver<bool>,
) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    let mut framed = Framed::new(stream, FrameCodec::default());
    tracing::debug!("connection opened");
    loop {
        let frame = tokio::select! {
            _ = stopped.changed() => break,
            frame = framed.next() => frame,
        };
        let request = match frame {
            None => break,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "bad frame: connection closed");
                break;
            }
            Some(Ok(request)) if request.is_response() => {
                tracing::debug!(code = request.code, "unexpected response ignored");
                continue;
            }
            Some(Ok(request)) => request,
        };
        let Some(response) = answer(&state, &request, id) else {
            continue;
        };
        match tokio::time::timeout(RESPONSE_WRITE_TIMEOUT, framed.send(response)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "write failed: connection closed");
                break;
            }
            Err(_) => {
                tracing::warn!("peer does not read its responses: connection closed");
                break;
            }
        }
    }
    let removed = lock(&state).registry.connection_closed(id);
    tracing::debug!(removed = removed.len(), "connection closed");
}

/// The response to `request`, `None` for a oneway request.
fn answer(
    state: &Mutex<State>,
    request: &RemotingCommand,
    id: ConnectionId,
) -> Option<RemotingCommand> {
    let span = tracing::debug_span!("request", code = request.code, opaque = request.opaque);
    let _entered = span.enter();
    let response = process(&mut lock(state), request, id, Instant::now());
    tracing::debug!(code = response.code, "answered");
    (!request.is_oneway()).then_some(response)
}

async fn scan_loop(
    interval: Duration,
    state: Arc<Mutex<State>>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await; // the first tick is immediate
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            _ = ticks.tick() => {
                lock(&state).registry.expire(Instant::now());
            }
        }
    }
}
