//! `mqadmin statsAll` and `brokerStatus` against three real `mqbroker` processes.
//!
//! Goal: the figures an operator reads are what the clients did, wherever they did it.
//! Method: send through one node, receive and pull through others, then read the tables; each
//! node counts what it served, so the figures must add up over the nodes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use proto::apache::rocketmq::v2;
use raftmq_client::{MessageSpec, Pull, Receive, resource};
use support::client;
use support::process_group::Group;

const RPC: Duration = Duration::from_secs(10);
const SENT: usize = 30;

fn stdout(o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "mqadmin failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// Sends, receives and acks, and pulls, through different nodes.
async fn traffic(g: &Group, leader: usize) {
    let (a, b) = ((leader + 1) % 3, (leader + 2) % 3);
    let mut producer = client(g.listen[a]);
    for i in 0..SENT {
        let spec = MessageSpec {
            message_id: format!("s{i}"),
            ..MessageSpec::default()
        };
        let m = raftmq_client::message(resource("StatsTopic"), Bytes::from_static(b"x"), spec);
        let r = producer.send(vec![m], RPC).await.unwrap();
        assert_eq!(r.status.unwrap().code, v2::Code::Ok as i32);
    }
    let mut consumer = client(g.listen[b]);
    let receive = Receive {
        group: resource("StatsGroup"),
        topic: resource("StatsTopic"),
        tag: "*".into(),
        batch: 10,
        invisible: Duration::from_secs(60),
        long_poll: Duration::from_secs(5),
    };
    let got = consumer.receive(&receive, RPC).await.unwrap();
    assert_eq!(got.messages.len(), 10);
    let acked = consumer
        .ack(&receive.group, &receive.topic, &got.messages, RPC)
        .await
        .unwrap();
    assert_eq!(acked.status.unwrap().code, v2::Code::Ok as i32);
    let pull = Pull {
        group: "StatsPuller".into(),
        topic: "StatsTopic".into(),
        queue: 0,
        offset: 0,
        batch: 5,
        tag: "*".into(),
        long_poll: Duration::ZERO,
    };
    // Through the node that delivered 10: it has applied at least those.
    let pulled = consumer.pull(&pull, RPC).await.unwrap();
    assert_eq!(pulled.messages.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_all_and_broker_status_add_up_over_the_nodes() {
    let g = Group::start();
    let leader = g.leader(Duration::from_secs(20));
    let out = g.mqadmin(&[
        "updateTopic",
        "-n",
        &g.endpoints(),
        "-t",
        "StatsTopic",
        "-w",
        "1",
    ]);
    stdout(&out);
    traffic(&g, leader).await;

    let table = stdout(&g.mqadmin(&["statsAll", "-n", &g.endpoints(), "-t", "StatsTopic"]));
    let rows: BTreeMap<String, Vec<String>> = table
        .lines()
        .skip(1)
        .map(|l| {
            let cols: Vec<String> = l.split_whitespace().map(String::from).collect();
            (cols[1].clone(), cols)
        })
        .collect();
    assert!(table.starts_with("#Topic"), "{table}");
    // Topic, group, accumulation, in TPS, out TPS, in 24 h, out 24 h.
    let group = &rows["StatsGroup"];
    assert_eq!(group[0], "StatsTopic");
    assert_eq!(group[2], (SENT - 10).to_string(), "backlog: {table}");
    assert!(group[3].parse::<f64>().unwrap() > 0.0, "{table}");
    assert_eq!(group[5], SENT.to_string(), "in: {table}");
    assert_eq!(group[6], "10", "out: {table}");
    let puller = &rows["StatsPuller"];
    assert_eq!(puller[6], "5", "pulled: {table}");
    assert_eq!(
        puller[2],
        SENT.to_string(),
        "a puller that committed nothing: {table}"
    );

    let missing = g.mqadmin(&["statsAll", "-n", &g.endpoints(), "-t", "NoSuchTopic"]);
    assert!(!missing.status.success());

    let status = stdout(&g.mqadmin(&["brokerStatus", "-n", &g.endpoints()]));
    let value = |key: &str| -> Vec<String> {
        status
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some(key))
            .map(|l| l.rsplit(": ").next().unwrap().trim().to_string())
            .collect()
    };
    let puts: u64 = value("msgPutTotalTodayNow")
        .iter()
        .map(|v| v.parse::<u64>().unwrap())
        .sum();
    let gets: u64 = value("msgGetTotalTodayNow")
        .iter()
        .map(|v| v.parse::<u64>().unwrap())
        .sum();
    assert_eq!((puts, gets), (SENT as u64, 15), "{status}");
    assert_eq!(
        value("dLedgerRole")
            .iter()
            .filter(|r| *r == "LEADER")
            .count(),
        1
    );
    let one = stdout(&g.mqadmin(&[
        "brokerStatus",
        "-b",
        &format!("127.0.0.1:{}", g.listen[leader]),
    ]));
    assert!(
        one.lines()
            .any(|l| l.starts_with("dLedgerRole") && l.ends_with(": LEADER")),
        "{one}"
    );
}
