//! A userspace TCP proxy on every peer link: how delay and jitter are injected (this kernel has
//! no `netem`), and how partitions are cut when network namespaces are not available.
//!
//! Node `i` reaches peer `j` at the listen address of link `i→j`; the proxy connects on to `j`'s
//! replication port. Bytes flowing from node `a` to node `b` (requests on `a→b` links, responses
//! on `b→a` links) are subject to the *direction* `(a, b)`: its delay and jitter, and whether it
//! is cut. A cut direction holds its bytes (the reader stops, TCP backpressure does the rest),
//! as a dropped-packet partition does to an open connection; healing releases them.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How the bytes of one direction are treated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectionFault {
    /// Bytes are held until healed.
    pub cut: bool,
    /// Every chunk is delivered this long after it was read…
    pub delay: Duration,
    /// …plus a uniformly random extra of up to this much (order is kept).
    pub jitter: Duration,
}

/// Faults per direction `(from, to)`; absent means healthy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults(HashMap<(usize, usize), DirectionFault>);

impl Faults {
    fn get(&self, from: usize, to: usize) -> DirectionFault {
        self.0.get(&(from, to)).copied().unwrap_or_default()
    }
}

/// One link to set up: node `from` dials `listen`, the proxy dials `upstream` (from `source`
/// when given, so the peer's firewall can tell who is calling).
#[derive(Debug, Clone)]
pub struct LinkSpec {
    /// The dialling node.
    pub from: usize,
    /// The node dialled.
    pub to: usize,
    /// Where the proxy listens for `from`.
    pub listen: SocketAddr,
    /// `to`'s replication address.
    pub upstream: SocketAddr,
    /// The local address outgoing connections are bound to.
    pub source: Option<SocketAddr>,
}

/// The running proxy. Dropping it stops every link.
#[derive(Debug)]
pub struct Proxy {
    faults: watch::Sender<Faults>,
    tasks: Vec<JoinHandle<()>>,
}

impl Proxy {
    /// Binds every link's listener and starts forwarding.
    ///
    /// # Errors
    /// A listen address that cannot be bound, named in the error.
    pub async fn start(links: &[LinkSpec]) -> anyhow::Result<Proxy> {
        let (faults, rx) = watch::channel(Faults::default());
        let mut tasks = Vec::new();
        for link in links {
            let listener = TcpListener::bind(link.listen).await.with_context(|| {
                format!(
                    "proxy for n{}→n{}: cannot listen on {}",
                    link.from, link.to, link.listen
                )
            })?;
            tasks.push(tokio::spawn(accept_loop(
                listener,
                link.clone(),
                rx.clone(),
            )));
        }
        Ok(Proxy { faults, tasks })
    }

    /// Replaces the fault of direction `(from, to)`.
    pub fn set(&self, from: usize, to: usize, fault: DirectionFault) {
        self.faults.send_modify(|f| {
            if fault == DirectionFault::default() {
                f.0.remove(&(from, to));
            } else {
                f.0.insert((from, to), fault);
            }
        });
    }

    /// The directions currently cut.
    pub fn cut_directions(&self) -> HashSet<(usize, usize)> {
        self.faults
            .borrow()
            .0
            .iter()
            .filter(|(_, f)| f.cut)
            .map(|(d, _)| *d)
            .collect()
    }

    /// Heals every direction: cuts released, delays removed.
    pub fn heal(&self) {
        self.faults.send_replace(Faults::default());
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn accept_loop(listener: TcpListener, link: LinkSpec, faults: watch::Receiver<Faults>) {
    let connections = Arc::new(Mutex::new(Vec::<JoinHandle<()>>::new()));
    loop {
        let Ok((down, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let link = link.clone();
        let faults = faults.clone();
        let handle = tokio::spawn(async move {
            let up = match dial(&link).await {
                Ok(up) => up,
                Err(e) => {
                    tracing::debug!("proxy n{}→n{}: {e:#}", link.from, link.to);
                    return;
                }
            };
            let _ = down.set_nodelay(true);
            let _ = up.set_nodelay(true);
            let (down_r, down_w) = down.into_split();
            let (up_r, up_w) = up.into_split();
            let a = tokio::spawn(pump(down_r, up_w, link.from, link.to, faults.clone()));
            let b = tokio::spawn(pump(up_r, down_w, link.to, link.from, faults));
            // Either side closing ends the connection.
            tokio::select! {
                _ = a => {}
                _ = b => {}
            }
        });
        let mut open = connections.lock().unwrap_or_else(PoisonError::into_inner);
        open.retain(|h| !h.is_finished());
        open.push(handle);
    }
}

async fn dial(link: &LinkSpec) -> anyhow::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(source) = link.source {
        socket
            .bind(source)
            .with_context(|| format!("bind {source}"))?;
    }
    let stream = tokio::time::timeout(Duration::from_secs(2), socket.connect(link.upstream))
        .await
        .with_context(|| format!("connect {} timed out", link.upstream))?
        .with_context(|| format!("connect {}", link.upstream))?;
    Ok(stream)
}

/// Copies bytes from `from`'s side to `to`'s side, applying the direction's fault.
async fn pump(
    mut reader: tokio::net::tcp::OwnedReadHalf,
    mut writer: tokio::net::tcp::OwnedWriteHalf,
    from: usize,
    to: usize,
    mut faults: watch::Receiver<Faults>,
) {
    // Chunks are stamped when read and written when due, so a delay does not throttle.
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(64);
    let read = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let chunk = buf.get(..n).map(<[u8]>::to_vec).unwrap_or_default();
                    if tx.send((Instant::now(), chunk)).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng();
    let mut last_due = Instant::now();
    while let Some((read_at, chunk)) = rx.recv().await {
        loop {
            let f = faults.borrow_and_update().get(from, to);
            if !f.cut {
                let jitter_us = u64::try_from(f.jitter.as_micros()).unwrap_or(u64::MAX);
                let extra = if jitter_us > 0 {
                    Duration::from_micros(rng.random_range(0..=jitter_us))
                } else {
                    Duration::ZERO
                };
                let due = (read_at + f.delay + extra).max(last_due);
                last_due = due;
                tokio::time::sleep_until(due).await;
                // A cut that began while this chunk waited holds it too.
                if !faults.borrow().get(from, to).cut {
                    break;
                }
            }
            if faults.changed().await.is_err() {
                read.abort();
                return;
            }
        }
        if writer.write_all(&chunk).await.is_err() {
            break;
        }
    }
    read.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if s.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    async fn free_addr() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    }

    async fn round_trip(s: &mut TcpStream, msg: &[u8]) -> Duration {
        let t = Instant::now();
        s.write_all(msg).await.unwrap();
        let mut got = vec![0u8; msg.len()];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(got, msg);
        t.elapsed()
    }

    #[tokio::test]
    async fn forwards_delays_and_holds_a_cut_direction_until_healed() {
        let upstream = echo_server().await;
        let listen = free_addr().await;
        let proxy = Proxy::start(&[LinkSpec {
            from: 0,
            to: 1,
            listen,
            upstream,
            source: None,
        }])
        .await
        .unwrap();
        let mut s = TcpStream::connect(listen).await.unwrap();
        assert!(round_trip(&mut s, b"plain").await < Duration::from_millis(150));

        proxy.set(
            0,
            1,
            DirectionFault {
                delay: Duration::from_millis(200),
                ..Default::default()
            },
        );
        let rtt = round_trip(&mut s, b"slow").await;
        assert!(rtt >= Duration::from_millis(200), "{rtt:?}");

        // The reply direction is cut: the echo is held, then released by the heal.
        proxy.heal();
        proxy.set(
            1,
            0,
            DirectionFault {
                cut: true,
                ..Default::default()
            },
        );
        assert_eq!(proxy.cut_directions(), HashSet::from([(1, 0)]));
        s.write_all(b"held").await.unwrap();
        let mut got = [0u8; 4];
        let early = tokio::time::timeout(Duration::from_millis(300), s.read_exact(&mut got)).await;
        assert!(early.is_err(), "bytes crossed a cut direction");
        proxy.heal();
        tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&got, b"held");
    }
}
