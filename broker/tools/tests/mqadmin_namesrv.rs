//! `mqadmin -n` given a NameServer, as RocketMQ's mqadmin is used.
//!
//! Goal: with a NameServer address, clusterList prints RocketMQ's table of the registered
//! nodes, `updateTopic -c` creates the topic on the cluster's group, `topicList` and
//! `topicRoute` show the NameServer's answers, and one-group verbs find their broker through the
//! route; broker addresses keep working as before. Method: an in-process `mqnamesrv` and a
//! single-node broker registering at it, then the built `mqadmin` binary, checking its output.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{BROKER_NAME, CLUSTER, Setup, assert_success, stderr, stdout};

const MQADMIN: &str = env!("CARGO_BIN_EXE_mqadmin");

async fn mqadmin(args: &[&str]) -> std::process::Output {
    support::run(MQADMIN, args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqadmin_with_a_nameserver_finds_the_brokers_there() {
    let mut setup = Setup::start().await;
    let ns = setup.namesrv_addr.clone();
    let broker = setup.broker_addr.clone();

    // clusterList: RocketMQ's header, one row for the node as broker id 0 (the leader).
    let listed = mqadmin(&["clusterList", "-n", &ns]).await;
    assert_success(&listed);
    let out = stdout(&listed);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("#Cluster Name"), "{out}");
    for column in [
        "#Broker Name",
        "#BID",
        "#Addr",
        "#Version",
        "#InTPS(LOAD)",
        "#SPACE",
    ] {
        assert!(lines[0].contains(column), "{column} missing: {out}");
    }
    assert_eq!(lines.len(), 2, "{out}");
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        &row[..4],
        [CLUSTER, BROKER_NAME, "0", broker.as_str()],
        "{out}"
    );
    assert!(
        row[4].starts_with("RaftMQ"),
        "version from runtime info: {out}"
    );
    assert_eq!(row.len(), 10, "{out}");

    // updateTopic -c: created on every group of the cluster (here one), through its node.
    let created = mqadmin(&[
        "updateTopic",
        "-n",
        &ns,
        "-c",
        CLUSTER,
        "-t",
        "NsTopic",
        "-w",
        "4",
    ])
    .await;
    assert_success(&created);
    assert!(
        stdout(&created).contains(&format!("create topic to {broker} success.")),
        "{}",
        stdout(&created)
    );
    setup.await_route("NsTopic").await;

    let topics = mqadmin(&["topicList", "-n", &ns]).await;
    assert_success(&topics);
    assert!(
        stdout(&topics).lines().any(|l| l == "NsTopic"),
        "{}",
        stdout(&topics)
    );

    let route = mqadmin(&["topicRoute", "-n", &ns, "-t", "NsTopic"]).await;
    assert_success(&route);
    let json: serde_json::Value = serde_json::from_str(&stdout(&route)).unwrap();
    assert_eq!(json["queueDatas"][0]["brokerName"], BROKER_NAME, "{json}");
    assert_eq!(json["queueDatas"][0]["writeQueueNums"], 4, "{json}");
    assert_eq!(
        json["brokerDatas"][0]["brokerAddrs"]["0"],
        broker.as_str(),
        "{json}"
    );

    // A one-group verb resolves its broker through the topic's route.
    let status = mqadmin(&["topicStatus", "-n", &ns, "-t", "NsTopic"]).await;
    assert_success(&status);
    assert_eq!(
        stdout(&status).lines().count(),
        1 + 4,
        "{}",
        stdout(&status)
    );

    // Errors name what is missing and where.
    let no_route = mqadmin(&["topicRoute", "-n", &ns, "-t", "NoSuchTopic"]).await;
    assert_eq!(no_route.status.code(), Some(1));
    assert!(stderr(&no_route).contains(&ns), "{}", stderr(&no_route));
    let no_cluster = mqadmin(&["updateTopic", "-n", &ns, "-c", "Nope", "-t", "X"]).await;
    assert_eq!(no_cluster.status.code(), Some(1));
    assert!(
        stderr(&no_cluster).contains("Nope"),
        "{}",
        stderr(&no_cluster)
    );
    let dead = mqadmin(&["topicList", "-n", "127.0.0.1:1"]).await;
    assert_eq!(dead.status.code(), Some(1));
    assert!(stderr(&dead).contains("127.0.0.1:1"), "{}", stderr(&dead));

    // Broker addresses still mean broker nodes: the Raft view, and -b on one broker.
    let raft = mqadmin(&["clusterList", "-n", &broker]).await;
    assert_success(&raft);
    assert!(stdout(&raft).starts_with("#ID"), "{}", stdout(&raft));
    let on_broker = mqadmin(&["updateTopic", "-b", &broker, "-t", "ByAddr"]).await;
    assert_success(&on_broker);
    let route_of_broker = mqadmin(&["topicRoute", "-n", &broker, "-t", "NsTopic"]).await;
    assert_eq!(route_of_broker.status.code(), Some(1));
    assert!(
        stderr(&route_of_broker).contains("NameServer"),
        "{}",
        stderr(&route_of_broker)
    );

    setup.stop().await;
}
