//! A three-node raft-log group in one process, over real loopback gRPC.
//!
//! Every random choice comes from one seed (`RAFT_LOG_SEED`, or the clock), printed when a test
//! fails so the run can be repeated.

#![allow(dead_code, clippy::unwrap_used, clippy::cast_possible_truncation)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use raft_log::config::{Config, FlushDiskType};
use raft_log::snapshot::SnapshotHook;
use raft_log::{RaftLogNode, Role};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Prints the seed if the test panics.
pub struct SeedGuard(pub u64);

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "test failed with RAFT_LOG_SEED={} (rerun with that variable set)",
                self.0
            );
        }
    }
}

pub fn seeded() -> (StdRng, SeedGuard) {
    let seed = std::env::var("RAFT_LOG_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(7, |d| d.as_nanos() as u64)
        });
    eprintln!("RAFT_LOG_SEED={seed}");
    (StdRng::seed_from_u64(seed), SeedGuard(seed))
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub peers: String,
    pub nodes: Vec<Option<RaftLogNode>>,
    pub segment_bytes: u64,
    pub flush: FlushDiskType,
    pub hooks: Vec<Option<Arc<dyn SnapshotHook>>>,
    /// Applied to every node's config before it starts.
    pub tweak: fn(&mut Config),
}

pub const IDS: [&str; 3] = ["n0", "n1", "n2"];

/// `n` free loopback ports, all even. Linux's connect() draws source ports of even parity
/// (bind(0) hands out odd ones), so only an even port can be hit by a peer's self-connection
/// while its node is down — as RocketMQ's 40912 is: the tests run where the hazard is.
fn free_ports(n: usize) -> Vec<u16> {
    let mut held = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < n {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        let even = port & !1;
        if let Ok(l) = TcpListener::bind(("127.0.0.1", even)) {
            held.push(l);
            ports.push(even);
        }
        held.push(probe);
    }
    ports
}

impl Cluster {
    pub async fn start(segment_bytes: u64, flush: FlushDiskType) -> Cluster {
        Self::start_with_hooks(segment_bytes, flush, vec![None, None, None]).await
    }

    pub async fn start_with_hooks(
        segment_bytes: u64,
        flush: FlushDiskType,
        hooks: Vec<Option<Arc<dyn SnapshotHook>>>,
    ) -> Cluster {
        Self::launch(segment_bytes, flush, hooks, |_| {}).await
    }

    /// Like [`Cluster::start`], with `tweak` applied to every node's config.
    pub async fn start_tweaked(
        segment_bytes: u64,
        flush: FlushDiskType,
        tweak: fn(&mut Config),
    ) -> Cluster {
        Self::launch(segment_bytes, flush, vec![None, None, None], tweak).await
    }

    async fn launch(
        segment_bytes: u64,
        flush: FlushDiskType,
        hooks: Vec<Option<Arc<dyn SnapshotHook>>>,
        tweak: fn(&mut Config),
    ) -> Cluster {
        init_tracing();
        let ports = free_ports(3);
        let peers = IDS
            .iter()
            .zip(&ports)
            .map(|(id, p)| format!("{id}-127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(";");
        let mut c = Cluster {
            dir: tempfile::tempdir().unwrap(),
            peers,
            nodes: vec![None, None, None],
            segment_bytes,
            flush,
            hooks,
            tweak,
        };
        for i in 0..3 {
            c.restart(i).await;
        }
        c
    }

    pub fn config(&self, i: usize) -> Config {
        let mut c = Config::new("RaftNode00", &self.peers, IDS[i], self.dir.path()).unwrap();
        c.store.data_segment_bytes = self.segment_bytes;
        c.store.index_segment_bytes = 64 << 10;
        c.store.entry_body_bytes_max = 16 << 10;
        c.store.flush_disk_type = self.flush;
        c.max_wait_ack_ms = 3_000;
        // The host's disk is not the test's: at the default 75% a full build machine made
        // retention purge the oldest segment mid-test (reads then failed with Purged).
        c.disk_max_used_space_ratio = 95;
        (self.tweak)(&mut c);
        c
    }

    pub fn store_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("dledger-{}", IDS[i]))
    }

    pub async fn restart(&mut self, i: usize) {
        let config = self.config(i);
        let node = match &self.hooks[i] {
            Some(h) => RaftLogNode::start_with_hook(config, Arc::clone(h))
                .await
                .unwrap(),
            None => RaftLogNode::start(config).await.unwrap(),
        };
        self.nodes[i] = Some(node);
    }

    pub async fn stop(&mut self, i: usize) {
        if let Some(n) = self.nodes[i].take() {
            n.shutdown().await.unwrap();
        }
    }

    pub fn node(&self, i: usize) -> &RaftLogNode {
        self.nodes[i].as_ref().expect("node is running")
    }

    /// Waits until one running node is leader and every running node agrees; returns its slot.
    pub async fn wait_leader(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let running: Vec<(usize, &RaftLogNode)> = self
                .nodes
                .iter()
                .enumerate()
                .filter_map(|(i, n)| n.as_ref().map(|n| (i, n)))
                .collect();
            let leaders: Vec<usize> = running
                .iter()
                .filter(|(_, n)| n.role().borrow().role == Role::Leader)
                .map(|(i, _)| *i)
                .collect();
            if let [l] = leaders[..] {
                let agreed = running
                    .iter()
                    .all(|(_, n)| n.role().borrow().leader.as_deref() == Some(IDS[l]));
                if agreed {
                    return l;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until node `i` has applied at least `index`.
    pub async fn wait_applied(&self, i: usize, index: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self
            .node(i)
            .metrics()
            .applied_index
            .is_none_or(|a| a < index)
        {
            assert!(
                Instant::now() < deadline,
                "node {} did not apply {index} within {timeout:?}: {:?}",
                IDS[i],
                self.node(i).metrics()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn shutdown(mut self) {
        for i in 0..3 {
            self.stop(i).await;
        }
    }
}

pub fn body(rng: &mut StdRng, tag: u64) -> Bytes {
    let len = rng.random_range(8..512);
    let mut v = tag.to_le_bytes().to_vec();
    v.resize(len, (tag % 251) as u8);
    Bytes::from(v)
}

pub fn tag_of(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().unwrap())
}
