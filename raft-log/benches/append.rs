//! Replicated append throughput: three raft-log nodes in one process over loopback gRPC.
//!
//! Matrix: entry size 128 B and 1 KiB × entries per `append_batch` call 1, 16 and 256 × flush
//! policy ASYNC_FLUSH and SYNC_FLUSH. `CLIENTS` writers keep appends in flight on the leader;
//! an append counts when a majority has it. Criterion reports entries/s (the "elements"
//! throughput); MB/s is that times the entry size.
//!
//! Run: `cargo bench -p raft-log --bench append` (filter with e.g. `-- async/1024`).

// Test and tool code: unwrapping is how a failure reports itself here, and the numeric
// casts are on small, known-range values.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use raft_log::{Config, FlushDiskType, RaftLogNode, Role};

/// Concurrent writers on the leader.
const CLIENTS: usize = 64;

struct Group {
    _dir: tempfile::TempDir,
    nodes: Vec<RaftLogNode>,
}

impl Group {
    async fn start(flush: FlushDiskType) -> Group {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports: Vec<u16> = (0..3)
            .map(|_| {
                TcpListener::bind("127.0.0.1:0")
                    .expect("bind")
                    .local_addr()
                    .expect("addr")
                    .port()
            })
            .collect();
        let peers = ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("n{i}-127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(";");
        let mut nodes = Vec::new();
        for i in 0..3 {
            let mut c = Config::new("bench", &peers, format!("n{i}"), dir.path()).expect("config");
            c.store.flush_disk_type = flush;
            c.store.data_segment_bytes = 256 << 20;
            c.store.index_segment_bytes = 32 << 20;
            c.max_pending_requests = 1 << 20;
            c.max_wait_ack_ms = 30_000;
            nodes.push(RaftLogNode::start(c).await.expect("start"));
        }
        Group { _dir: dir, nodes }
    }

    async fn leader(&self) -> RaftLogNode {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(n) = self
                .nodes
                .iter()
                .find(|n| n.role().borrow().role == Role::Leader)
            {
                return n.clone();
            }
            assert!(Instant::now() < deadline, "no leader");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Appends `batches` calls of `batch` entries of `size` bytes from CLIENTS writers.
async fn run(leader: &RaftLogNode, batches: u64, batch: usize, size: usize) -> Duration {
    let body = Bytes::from(vec![0x5a; size]);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS as u64 {
        let mine = batches / CLIENTS as u64 + u64::from(c < batches % CLIENTS as u64);
        let leader = leader.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..mine {
                // A leader refuses writes (empty NotLeader) while its check-quorum lease is not
                // renewed, e.g. while the first fsyncs of fresh segments run; clients retry.
                let mut tries = 0;
                loop {
                    match leader.append_batch(vec![body.clone(); batch]).await {
                        Ok(_) => break,
                        Err(raft_log::Error::NotLeader {
                            leader_id: None, ..
                        }) if tries < 500 => {
                            tries += 1;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        Err(e) => panic!("append: {e}"),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    // RUST_LOG=openraft=info,raft_log=info shows elections and lease loss during a run.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "off".into()),
        )
        .try_init();
    let rt = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime"),
    );
    for (name, flush) in [
        ("async", FlushDiskType::AsyncFlush),
        ("sync", FlushDiskType::SyncFlush),
    ] {
        let group = rt.block_on(Group::start(flush));
        let leader = rt.block_on(group.leader());
        let mut g = c.benchmark_group(format!("replicated_append/{name}"));
        g.sample_size(10)
            .measurement_time(Duration::from_secs(5))
            .warm_up_time(Duration::from_secs(1));
        for size in [128usize, 1024] {
            for batch in [1usize, 16, 256] {
                g.throughput(Throughput::Elements(batch as u64));
                g.bench_with_input(
                    BenchmarkId::new(format!("{size}B"), batch),
                    &batch,
                    |b, &batch| {
                        b.iter_custom(|iters| rt.block_on(run(&leader, iters, batch, size)));
                    },
                );
            }
        }
        g.finish();
        rt.block_on(async {
            for n in &group.nodes {
                let _ = n.shutdown().await;
            }
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
