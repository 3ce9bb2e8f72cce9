//! `mqadmin consumerConnection` and `producerConnection` against a three-node in-process group.
//!
//! Goal: a group's clients are reported wherever they are connected, with the group's
//! subscriptions, in RocketMQ's output shape, and the group is reported offline once they are
//! gone. Method: start three brokers with `Broker::start`; connect a 5.x simple consumer
//! (raftmq-client's Telemetry with Settings) to node 0, a 5.x producer to node 1, and a 4.x
//! client (HEART_BEAT over remoting, as a Java client sends it) that consumes and produces to
//! node 2; run the built `mqadmin` with all three nodes in `-n`, and ask node 2 over remoting
//! (GET_CONSUMER_CONNECTION_LIST 203, GET_PRODUCER_CONNECTION_LIST 204). Then close the
//! consumers' stream and connection and terminate the producer (NotifyClientTermination):
//! mqadmin exits 1 with RocketMQ's errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::mqadmin;

use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::Broker;
use proto::apache::rocketmq::v2;
use raftmq_client::{ClientIdentity, MessagingClient, consumer_settings, producer_settings};
use raftmq_remoting::code::{request as rq, response as rs};
use raftmq_remoting::{ExtFields, LanguageCode, RemotingClient, RemotingCommand};

const TIMEOUT: Duration = Duration::from_secs(10);

/// Three brokers of one Raft group, started as mqbroker starts them; returns once one leads.
async fn start_group(dir: &std::path::Path) -> Vec<Broker> {
    let nodes: Vec<Broker> = support::inprocess::start_group(dir, 3, "")
        .await
        .into_iter()
        .map(|n| n.broker)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !nodes
        .iter()
        .any(|n| n.service().store().node().role().borrow().role == raft_log::Role::Leader)
    {
        assert!(Instant::now() < deadline, "no leader in 15 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    nodes
}

async fn messaging(node: &Broker, index: u32) -> MessagingClient {
    let addr = node.local_addr().to_string();
    let channel = raftmq_client::connect(&addr).await.unwrap();
    MessagingClient::new(addr, channel, Arc::new(ClientIdentity::new(index).unwrap()))
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

fn succeeded(o: &Output) -> String {
    let (out, err) = text(o);
    assert!(o.status.success(), "mqadmin failed\n{out}\n{err}");
    out
}

/// A Java client's HEART_BEAT: consumer of `ConnG` (push, clustering, from the first offset)
/// on ConnT4 with `TagC`, and producer of `ConnPG`, from RocketMQ 4.9.4 (version 401).
fn java_heartbeat(client_id: &str) -> RemotingCommand {
    let body = serde_json::json!({
        "clientID": client_id,
        "producerDataSet": [{"groupName": "ConnPG"}],
        "consumerDataSet": [{
            "groupName": "ConnG",
            "consumeType": "CONSUME_PASSIVELY",
            "messageModel": "CLUSTERING",
            "consumeFromWhere": "CONSUME_FROM_FIRST_OFFSET",
            "subscriptionDataSet": [{
                "topic": "ConnT4", "subString": "TagC", "subVersion": 1_700_000_000_000_u64,
                "tagsSet": ["TagC"], "codeSet": [2_598_921], "classFilterMode": false,
                "expressionType": "TAG"
            }],
            "unitMode": false
        }]
    });
    let mut hb = RemotingCommand::request(rq::HEART_BEAT, ExtFields::new())
        .with_body(serde_json::to_vec(&body).unwrap());
    hb.language = LanguageCode::Java;
    hb.version = 401;
    hb
}

/// The row of `client_id` in mqadmin's output, split into its columns.
fn row<'a>(out: &'a str, client_id: &str) -> Vec<&'a str> {
    out.lines()
        .find(|l| l.split_whitespace().any(|c| c == client_id))
        .unwrap_or_else(|| panic!("no row of {client_id} in\n{out}"))
        .split_whitespace()
        .collect()
}

/// Runs mqadmin until it fails (a gone client may take a moment to be noticed).
async fn until_offline(args: &[&str]) -> (String, String) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let o = mqadmin(args).await;
        if !o.status.success() {
            assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
            return text(&o);
        }
        assert!(Instant::now() < deadline, "still online: {:?}", text(&o));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_reported_from_every_node_until_the_clients_go() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_group(dir.path()).await;
    let n: Vec<String> = nodes.iter().map(|b| b.local_addr().to_string()).collect();
    let all = n.join(";");

    tracing::info!("a 5.x simple consumer on node 0, a 5.x producer on node 1");
    let mut consumer = messaging(&nodes[0], 1).await;
    let settings = consumer_settings(
        v2::ClientType::SimpleConsumer,
        "ConnG",
        &[("ConnT", "TagA || TagB")],
    );
    let consumer_stream = consumer.telemetry(settings, TIMEOUT).await.unwrap();
    raftmq_client::check_v2(consumer_stream.status(), "Telemetry", consumer.addr()).unwrap();
    assert!(
        consumer_stream.settings().is_some(),
        "merged settings come back"
    );
    let consumer_id = consumer.identity().client_id().to_string();
    let mut producer = messaging(&nodes[1], 2).await;
    let producer_stream = producer
        .telemetry(producer_settings(&["ConnT"]), TIMEOUT)
        .await
        .unwrap();
    let producer_id = producer.identity().client_id().to_string();
    let heartbeat = producer
        .heartbeat(None, v2::ClientType::Producer, TIMEOUT)
        .await
        .unwrap();
    raftmq_client::check_v2(heartbeat.status.as_ref(), "Heartbeat", producer.addr()).unwrap();

    tracing::info!("a 4.x Java client heartbeats to node 2");
    let java = RemotingClient::connect(&n[2], TIMEOUT).await.unwrap();
    let answer = java
        .invoke(java_heartbeat("127.0.0.1@java"), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(answer.code, rs::SUCCESS, "{}", answer.remark);

    tracing::info!("consumerConnection merges the three nodes' clients");
    let out = succeeded(&mqadmin(&["consumerConnection", "-n", &all, "-g", "ConnG"]).await);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "#ClientId                            #ClientAddr            #Language  #Version"
    );
    let five = row(&out, &consumer_id);
    assert_eq!(five[2], "RUST", "{out}");
    let four = row(&out, "127.0.0.1@java");
    assert_eq!(&four[2..], ["JAVA", "V4_9_4"], "{out}");
    assert!(four[1].starts_with("127.0.0.1:"), "{out}");
    let below = lines
        .iter()
        .position(|l| *l == "Below is subscription:")
        .unwrap();
    assert_eq!(
        lines[below - 1],
        "",
        "a blank line before the subscriptions"
    );
    assert_eq!(lines[below + 1], "#Topic               #SubExpression");
    assert_eq!(lines[below + 2], "ConnT                TagA || TagB");
    assert_eq!(lines[below + 3], "ConnT4               TagC");
    assert_eq!(
        &lines[below + 4..],
        [
            "",
            // The first node with clients (node 0, the 5.x simple consumer) sets the mode.
            "ConsumeType: CONSUME_ACTIVELY",
            "MessageModel: CLUSTERING",
            "ConsumeFromWhere: CONSUME_FROM_LAST_OFFSET",
        ]
    );
    let only_node2 = succeeded(&mqadmin(&["consumerConnection", "-b", &n[2], "-g", "ConnG"]).await);
    assert!(!only_node2.contains(&consumer_id), "{only_node2}");
    assert!(
        only_node2.contains("ConsumeType: CONSUME_PASSIVELY"),
        "{only_node2}"
    );
    assert!(
        only_node2.contains("ConsumeFromWhere: CONSUME_FROM_FIRST_OFFSET"),
        "{only_node2}"
    );

    tracing::info!("producerConnection: a 5.x producer's group is its topic");
    let out = succeeded(
        &mqadmin(&[
            "producerConnection",
            "-n",
            &all,
            "-g",
            "ConnT",
            "-t",
            "ConnT",
        ])
        .await,
    );
    let p = row(&out, &producer_id);
    assert_eq!((p[0], p[3]), ("0001", "RUST"), "{out}");
    let out = succeeded(
        &mqadmin(&[
            "producerConnection",
            "-n",
            &all,
            "-g",
            "ConnPG",
            "-t",
            "ConnT",
        ])
        .await,
    );
    assert_eq!(
        row(&out, "127.0.0.1@java"),
        ["0001", "127.0.0.1@java", four[1], "JAVA", "V4_9_4"]
    );

    tracing::info!("the 4.x admin codes answer from the node the client is on");
    let admin = RemotingClient::connect(&n[2], TIMEOUT).await.unwrap();
    let ask = |code, field, group| {
        RemotingCommand::request(code, raftmq_remoting::ext_fields(&[(field, group)]))
    };
    let cc = admin
        .invoke(
            ask(rq::GET_CONSUMER_CONNECTION_LIST, "consumerGroup", "ConnG"),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(cc.code, rs::SUCCESS, "{}", cc.remark);
    let body: serde_json::Value = serde_json::from_slice(&cc.body).unwrap();
    assert_eq!(body["connectionSet"][0]["clientId"], "127.0.0.1@java");
    assert_eq!(body["connectionSet"][0]["language"], "JAVA");
    assert_eq!(body["connectionSet"][0]["version"], 401);
    assert_eq!(body["subscriptionTable"]["ConnT4"]["subString"], "TagC");
    assert_eq!(body["consumeType"], "CONSUME_PASSIVELY");
    assert_eq!(body["consumeFromWhere"], "CONSUME_FROM_FIRST_OFFSET");
    let pc = admin
        .invoke(
            ask(rq::GET_PRODUCER_CONNECTION_LIST, "producerGroup", "ConnPG"),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(pc.code, rs::SUCCESS, "{}", pc.remark);
    let node1 = RemotingClient::connect(&n[1], TIMEOUT).await.unwrap();
    let none = node1
        .invoke(
            ask(rq::GET_CONSUMER_CONNECTION_LIST, "consumerGroup", "ConnG"),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(none.code, rs::CONSUMER_NOT_ONLINE);
    assert_eq!(none.remark, "the consumer group[ConnG] not online");

    tracing::info!("the consumers go: the stream ends, the connection closes");
    drop(consumer_stream);
    drop(java);
    let (_, err) = until_offline(&["consumerConnection", "-n", &all, "-g", "ConnG"]).await;
    assert!(
        err.contains("CODE: 206  DESC: Not found the consumer group connection"),
        "{err}"
    );

    tracing::info!("the producer says it terminates; its stream is still open");
    let bye = producer
        .notify_client_termination(None, TIMEOUT)
        .await
        .unwrap();
    raftmq_client::check_v2(
        bye.status.as_ref(),
        "NotifyClientTermination",
        producer.addr(),
    )
    .unwrap();
    let (_, err) = until_offline(&[
        "producerConnection",
        "-n",
        &all,
        "-g",
        "ConnT",
        "-t",
        "ConnT",
    ])
    .await;
    assert!(
        err.contains("Not found the producer group connection"),
        "{err}"
    );
    drop(producer_stream);
    for node in nodes {
        node.shutdown().await.unwrap();
    }
}
