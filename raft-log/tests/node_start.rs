//! A node's replication server answers proposals from its first RPC on.
//!
//! Before, the server started before the node's append path existed and answered `Propose` with
//! `unavailable: node is starting` in between; the append path is now built first.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use proto::raftlog::v1 as pb;
use proto::raftlog::v1::raft_log_client::RaftLogClient;
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
            client = endpoint.connect().await.ok().map(RaftLogClient::new);
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
