//! Broker nodes in this test process, started as mqbroker starts them: `Broker::start` from a
//! broker.conf each, on ports from [`super::free_ports`], the store of node `i` under
//! `dir/n<i>`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;

use broker::{Broker, BrokerConfig};

/// One running node and its client address.
pub struct Node {
    /// The broker.
    pub broker: Broker,
    /// Where it listens for clients.
    pub addr: SocketAddr,
}

/// Ports for a group of `count` nodes: (listen, raft) per node.
pub fn group_ports(count: usize) -> Vec<(u16, u16)> {
    let ports = super::free_ports(2 * count);
    ports.chunks(2).map(|p| (p[0], p[1])).collect()
}

/// The nodes on `ports` (started, or started again over the same stores); `extra` adds
/// broker.conf lines to every node's.
pub async fn start_nodes(dir: &Path, ports: &[(u16, u16)], extra: &str) -> Vec<Node> {
    let peers = ports
        .iter()
        .enumerate()
        .map(|(i, (_, raft))| format!("n{i}-127.0.0.1:{raft}"))
        .collect::<Vec<_>>()
        .join(";");
    let mut nodes = Vec::new();
    for (i, (listen, _)) in ports.iter().enumerate() {
        let text = format!(
            "brokerName=RaftNode00\nbrokerIP1=127.0.0.1\nbindAddress=127.0.0.1\n\
             listenPort={listen}\nenableDLegerCommitLog=true\ndLegerGroup=g\n\
             dLegerPeers={peers}\ndLegerSelfId=n{i}\nstorePathRootDir={}\n\
             diskMaxUsedSpaceRatio=95\nmappedFileSizeForEntryData=16777216\n\
             mappedFileSizeForEntryIndex=1048576\n{extra}",
            dir.join(format!("n{i}")).display()
        );
        let (config, _) = BrokerConfig::from_str(&text, &format!("broker-n{i}.conf")).unwrap();
        let broker = Broker::start(config).await.unwrap();
        let addr = broker.local_addr();
        nodes.push(Node { broker, addr });
    }
    nodes
}

/// A group of `count` nodes on fresh ports.
pub async fn start_group(dir: &Path, count: usize, extra: &str) -> Vec<Node> {
    start_nodes(dir, &group_ports(count), extra).await
}

/// Stops every node gracefully.
pub async fn shutdown(nodes: Vec<Node>) {
    for n in nodes {
        n.broker.shutdown().await.unwrap();
    }
}
