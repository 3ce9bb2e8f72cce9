//! `metricsExporterType=PROM`: `/metrics`, `/health/live` and `/health/ready` of a real
//! three-node group in this process, checked by Debian's `promtool` and scraped by a real
//! Prometheus.
//!
//! Goal: what an operator's Prometheus reads is valid, names RocketMQ's metrics, and moves with
//! what clients do; readiness says whether a node can serve.
//! Method: send and receive through known nodes, then read each node's text; stop nodes and
//! read readiness; run `prometheus` against the group and ask it for its targets.
//! Needs `promtool` and `prometheus` (Debian's `prometheus` package; `.ci/run` installs it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use broker::Broker;
use bytes::Bytes;
use proto::apache::rocketmq::v2;
use raftmq_client::{MessageSpec, Receive, resource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const RPC: Duration = Duration::from_secs(10);
const SENT: usize = 25;
const BODY: &[u8] = b"metrics-body-of-32-bytes-exactly";
const PROM: &str = "metricsExporterType=PROM\nmetricsPromExporterPort=0\n";

/// A status line and body of `GET path` over HTTP/1.1.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// The status and body of `POST path` with a JSON `body`.
async fn post(addr: SocketAddr, path: &str, body: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    (
        head.split(' ').nth(1).unwrap().parse().unwrap(),
        body.to_string(),
    )
}

fn http(b: &Broker) -> SocketAddr {
    b.http_addr()
        .expect("metricsExporterType=PROM starts the HTTP listener")
}

fn leader_of(nodes: &[support::inprocess::Node]) -> Option<usize> {
    nodes.iter().position(|n| {
        n.broker.service().store().node().role().borrow().role == raft_log::Role::Leader
    })
}

async fn wait_leader(nodes: &[support::inprocess::Node]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(l) = leader_of(nodes) {
            return l;
        }
        assert!(Instant::now() < deadline, "no leader in 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of the sample `name{labels}` whose label set contains every one of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .map(|v| v.parse().unwrap())
}

/// `promtool check metrics` on `text`: its lint must find nothing.
fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool not found: install Debian's prometheus package (.ci/run does)");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_move_with_sends_and_receives() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = support::inprocess::start_group(dir.path(), 3, PROM).await;
    let leader = wait_leader(&nodes).await;
    let (a, b) = ((leader + 1) % 3, (leader + 2) % 3);
    // Sends through follower a, receives through follower b.
    let mut producer = support::client(nodes[a].addr.port());
    for i in 0..SENT {
        let spec = MessageSpec {
            message_id: format!("m{i}"),
            ..MessageSpec::default()
        };
        let m = raftmq_client::message(resource("MetricsTopic"), Bytes::from_static(BODY), spec);
        let r = producer.send(vec![m], RPC).await.unwrap();
        assert_eq!(r.status.unwrap().code, v2::Code::Ok as i32);
    }
    let mut consumer = support::client(nodes[b].addr.port());
    let receive = Receive {
        group: resource("MetricsGroup"),
        topic: resource("MetricsTopic"),
        tag: "*".into(),
        batch: 10,
        invisible: Duration::from_secs(60),
        long_poll: Duration::from_secs(5),
    };
    let got = consumer.receive(&receive, RPC).await.unwrap();
    assert_eq!(got.messages.len(), 10);

    let texts: Vec<String> = {
        let mut t = Vec::new();
        for n in &nodes {
            let (status, body) = get(http(&n.broker), "/metrics").await;
            assert_eq!(status, 200);
            t.push(body);
        }
        t
    };
    for text in &texts {
        promtool_check(text);
    }
    let topic = "topic=\"MetricsTopic\"";
    let normal = "message_type=\"normal\"";
    let group = "consumer_group=\"MetricsGroup\"";
    // Node a stored them all for its producer; b handed out the ten.
    let sent = SENT as f64;
    assert_eq!(
        sample(&texts[a], "rocketmq_messages_in_total", &[topic, normal]),
        Some(sent)
    );
    assert_eq!(
        sample(&texts[a], "rocketmq_throughput_in_total", &[topic, normal]),
        Some(sent * BODY.len() as f64)
    );
    assert_eq!(
        sample(&texts[b], "rocketmq_messages_in_total", &[topic]),
        None
    );
    assert_eq!(
        sample(&texts[b], "rocketmq_messages_out_total", &[topic, group]),
        Some(10.0)
    );
    assert_eq!(
        sample(&texts[b], "rocketmq_throughput_out_total", &[topic, group]),
        Some(10.0 * BODY.len() as f64)
    );
    // The backlog is replicated: once applied everywhere, every node reports the same. The
    // ten received are in flight; nothing is acknowledged.
    assert_eq!(
        sample(&texts[b], "rocketmq_consumer_lag_messages", &[topic, group]),
        Some(sent)
    );
    assert_eq!(
        sample(
            &texts[b],
            "rocketmq_consumer_inflight_messages",
            &[topic, group]
        ),
        Some(10.0)
    );
    assert_eq!(
        sample(
            &texts[b],
            "rocketmq_consumer_ready_messages",
            &[topic, group]
        ),
        Some(sent - 10.0)
    );
    // RocketMQ's constant labels, and this node's Raft view.
    for (i, text) in texts.iter().enumerate() {
        let me = format!("self_id=\"n{i}\"");
        let labels = [
            "cluster=\"DefaultCluster\"",
            "node_type=\"broker\"",
            "node_id=\"RaftNode00\"",
            &me,
        ];
        assert!(
            sample(text, "raft_log_term", &labels).is_some_and(|t| t >= 1.0),
            "{text}"
        );
        let leads = sample(text, "raft_log_role", &["role=\"leader\""]).unwrap();
        assert_eq!(leads, if i == leader { 1.0 } else { 0.0 }, "node {i}");
        assert!(sample(text, "rocketmq_storage_size", &[]).is_some_and(|s| s > 0.0));
        assert!(sample(text, "raft_log_append_seconds_count", &[]).is_some_and(|c| c > 0.0));
    }
    let peer_lag = sample(
        &texts[leader],
        "raft_log_peer_lag_entries",
        &[&format!("peer=\"n{a}\"")],
    );
    assert!(
        peer_lag.is_some(),
        "the leader reports its peers:\n{}",
        texts[leader]
    );
    assert!(
        sample(&texts[a], "raft_log_peer_lag_entries", &[]).is_none(),
        "only the leader does"
    );
    // Every send was timed on node a, by method.
    let sends = sample(
        &texts[a],
        "rocketmq_rpc_latency_count",
        &[
            "protocol_type=\"grpc\"",
            "request_code=\"SendMessage\"",
            "result=\"success\"",
        ],
    );
    assert_eq!(sends, Some(sent));
    support::inprocess::shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_needs_a_leader_and_live_only_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = support::inprocess::start_group(dir.path(), 3, PROM).await;
    let leader = wait_leader(&nodes).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    for n in &nodes {
        loop {
            let (status, body) = get(http(&n.broker), "/health/ready").await;
            if status == 200 {
                assert!(body.contains("\"status\":\"UP\""), "{body}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "a node of a healthy group not ready: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Left alone, the last node loses its leader and is no longer ready, but still live.
    let last = nodes.remove((leader + 1) % 3);
    support::inprocess::shutdown(nodes).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = get(http(&last.broker), "/health/ready").await;
        if status == 503 {
            assert!(
                body.contains("\"status\":\"DOWN\"") && body.contains("no leader"),
                "{body}"
            );
            // With pre-vote a cut-off follower keeps its old leader; only the silence tells.
            assert!(
                body.contains("heard from for") || body.contains("no leader is known"),
                "{body}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a node without a quorum stays ready: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, body) = get(http(&last.broker), "/health/live").await;
    assert_eq!(status, 200, "{body}");
    support::inprocess::shutdown(vec![last]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_api_creates_topics_and_names_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = support::inprocess::start_group(dir.path(), 3, PROM).await;
    let leader = wait_leader(&nodes).await;
    let follower = http(&nodes[(leader + 1) % 3].broker);
    let (status, page) = get(follower, "/").await;
    assert_eq!(status, 200);
    assert!(page.contains("<title>RaftMQ dashboard</title>"));
    // A follower creates a topic through the log; every node lists it.
    let (status, body) = post(follower, "/api/topics", r#"{"topic":"DashApi","queues":3}"#).await;
    assert_eq!(status, 200, "{body}");
    for n in &nodes {
        // Applied on the follower that answered; the others apply it within moments.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, topics) = get(http(&n.broker), "/api/topics").await;
            if topics.contains(r#""topic":"DashApi""#) && topics.contains(r#""queues":3"#) {
                break;
            }
            assert!(Instant::now() < deadline, "not listed: {topics}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let (status, body) = post(follower, "/api/topics", r#"{"topic":"DashApi"}"#).await;
    assert_eq!(status, 400);
    assert!(body.contains("queues"), "names the missing field: {body}");
    let (status, body) = post(
        follower,
        "/api/topics",
        r#"{"topic":"bad name","queues":1}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("topic"), "{body}");
    let (status, body) = get(follower, "/api/messages?key=k").await;
    assert_eq!(status, 400);
    assert!(body.contains("needs the topic"), "{body}");
    let (status, body) = get(follower, "/api/messages?topic=DashApi&key=none").await;
    assert_eq!(status, 404, "{body}");
    let (status, cluster) = get(follower, "/api/cluster").await;
    assert_eq!(status, 200);
    assert!(
        cluster.contains(&format!(r#""leader_id":"n{leader}""#)),
        "{cluster}"
    );
    support::inprocess::shutdown(nodes).await;
}

/// Stops the Prometheus this test started.
struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_every_node_up() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = support::inprocess::start_group(&dir.path().join("group"), 3, PROM).await;
    wait_leader(&nodes).await;
    let targets: Vec<String> = nodes
        .iter()
        .map(|n| format!("'{}'", http(&n.broker)))
        .collect();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: raftmq\n    \
         static_configs:\n      - targets: [{}]\n",
        targets.join(", ")
    );
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, config).unwrap();
    let web = SocketAddr::from(([127, 0, 0, 1], support::free_port()));
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus not found: install Debian's prometheus package (.ci/run does)");
    let _prometheus = Prometheus(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    loop {
        // Every target up, and the samples readable by name.
        if let Ok(s) = tokio::net::TcpStream::connect(web).await {
            drop(s);
            let (_, targets) = get(web, "/api/v1/targets?state=active").await;
            let (_, query) = get(web, "/api/v1/query?query=count(raft_log_term)").await;
            let up = targets.matches("\"health\":\"up\"").count();
            if up == 3 && query.contains("\"value\":[") && query.contains(",\"3\"]") {
                break;
            }
            last = format!("{targets}\n{query}");
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not find 3 targets up:\n{last}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    support::inprocess::shutdown(nodes).await;
}
