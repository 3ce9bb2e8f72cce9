//! A node's replication server answers proposals from its first RPC on.
//!
//! Before, the server started before the node's append path existed and answered `Propose` with
//! `unavailable: node is starting` in between; the append path is now built first.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use proto::raftlog::v1 as pb;
use proto::raftlog::v1::forward_client::ForwardClient;
use raft_log::{Config, RaftLogNode};
use tracing::info;

fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starting_node_answers_every_proposal_it_accepts() {
    info!("start a pristine one-node group while a client proposes to its port in a loop");
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let config = Config::new("g", &format!("n0-{addr}"), "n0", dir.path()).unwrap();
    info!("every answer is the append path's, never a refusal while the node starts");
    let start = tokio::spawn(RaftLogNode::start(config));
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap();
    let mut answered = 0usize;
    let mut client = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !start.is_finished() || answered == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no answer in time");
        let Some(c) = client.as_mut() else {
            client = endpoint.connect().await.ok().map(ForwardClient::new);
            tokio::task::yield_now().await;
            continue;
        };
        let request = pb::ProposeRequest {
            group: "g".into(),
            bodies: vec![bytes::Bytes::from_static(b"x")],
        };
        match c.propose(request).await {
            Ok(_) => answered += 1,
            Err(status) => panic!("propose refused: {status}"),
        }
    }
    let node = start.await.unwrap().unwrap();
    assert!(answered > 0);
    node.shutdown().await.unwrap();
}

/// A restart does not re-apply the whole log: the applied marker (capped at the durable point)
/// lets the node start applied from there, and every entry still reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_starts_applied_from_its_marker_and_reads_every_entry() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let config = Config::new("g", &format!("n0-{addr}"), "n0", dir.path()).unwrap();
    let node = RaftLogNode::start(config.clone()).await.unwrap();
    let mut last = 0;
    for round in 0..3 {
        let bodies = (0..50)
            .map(|i| bytes::Bytes::from(format!("e{round}-{i}")))
            .collect();
        last = *propose_when_leader(&node, bodies).await.last().unwrap();
        // Past the marker interval and the durable checkpoint interval.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let marker = dir
        .path()
        .join("dledger-n0")
        .join("snapshot")
        .join("applied");
    let marker = if marker.exists() {
        marker
    } else {
        config.store.dir.join("snapshot").join("applied")
    };
    assert!(marker.exists(), "no applied marker at {}", marker.display());
    node.shutdown().await.unwrap();
    drop(node);

    let node = RaftLogNode::start(config).await.unwrap();
    let replayed = node.entries_applied_since_start();
    assert!(
        replayed < 100,
        "the restart re-applied {replayed} of ~152 entries: it did not start from its marker"
    );
    let mut tail = node.committed_entries(1);
    let mut seen = 0;
    while seen < 150 {
        let e = tokio::time::timeout(Duration::from_secs(10), tail.next())
            .await
            .expect("entries readable after the restart")
            .unwrap();
        assert!(e.index <= last);
        seen += 1;
    }
    let more = propose_when_leader(&node, vec![bytes::Bytes::from_static(b"after")]).await;
    assert!(more[0] > last);
    node.shutdown().await.unwrap();
}

async fn propose_when_leader(node: &RaftLogNode, bodies: Vec<bytes::Bytes>) -> Vec<u64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match node.propose(bodies.clone()).await {
            Ok(indexes) => return indexes,
            Err(raft_log::Error::NotLeader { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("propose failed: {e}"),
        }
    }
}

/// A start while something else still holds the store (the last tasks of an instance shut
/// down a moment ago) waits for the lock instead of failing with `Locked`. Method: hold the
/// store open, release it 300 ms into a start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_waits_for_a_store_lock_that_is_released_soon() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let config = Config::new("g", &format!("n0-{addr}"), "n0", dir.path()).unwrap();
    let held = raft_log::store::LogStore::open(config.store.clone()).unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(held);
    });
    let started = std::time::Instant::now();
    let node = RaftLogNode::start(config)
        .await
        .expect("starts once the lock is free");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "it waited for the lock: {:?}",
        started.elapsed()
    );
    release.await.unwrap();
    node.shutdown().await.unwrap();
}
