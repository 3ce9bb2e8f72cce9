//! The admin service and the `mqadmin` binary against in-process broker nodes.
//!
//! Goal: what an operator sees through `raftmq.admin.v1.Admin` matches what happened through the
//! RocketMQ API, on any node. Method: start a group of brokers with `Broker::start` from a
//! broker.conf each, as mqbroker does, then drive them with the generated clients (three nodes)
//! and with the built `mqadmin` binary (one and three nodes).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::inprocess::{Node, shutdown, start_group};

/// The topic queue count these tests expect of auto-created topics.
const QUEUES4: &str = "defaultTopicQueueNums=4\n";

use support::mqadmin;

use std::net::SocketAddr;
use std::process::Output;
use std::time::{Duration, Instant};

use broker::grpc::Messaging;
use broker::service::{BrokerService, ServiceConfig};
use proto::apache::rocketmq::v2;
use proto::apache::rocketmq::v2::messaging_service_client::MessagingServiceClient;
use proto::apache::rocketmq::v2::messaging_service_server::MessagingServiceServer;
use proto::raftmq::admin::v1 as pb;
use proto::raftmq::admin::v1::admin_client::AdminClient;
use tonic::transport::Channel;

impl Node {
    fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    fn admin(&self) -> AdminClient<Channel> {
        AdminClient::new(channel(self.addr))
    }

    fn messaging(&self) -> MessagingServiceClient<Channel> {
        MessagingServiceClient::new(channel(self.addr))
    }
}

fn channel(addr: SocketAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy()
}

/// A second front end on `node`'s store whose service refuses sends above
/// `disk_max_used_space_ratio` percent of disk usage. Built by hand because two brokers cannot
/// share a store; everything else in this file goes through `Broker::start`.
async fn serve_with_disk_ratio(node: &Node, disk_max_used_space_ratio: u32) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = node.broker.service();
    let config = ServiceConfig {
        disk_max_used_space_ratio,
        ..service.config().clone()
    };
    let service = BrokerService::new(service.store().clone(), config);
    let messaging = MessagingServiceServer::new(Messaging::new(service));
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(messaging)
            .serve_with_incoming(incoming),
    );
    addr
}

fn code(status: Option<&pb::Status>) -> pb::Code {
    pb::Code::try_from(status.expect("every response has a status").code).unwrap()
}

fn self_row(view: &pb::ClusterListResponse) -> &pb::Node {
    view.nodes.iter().find(|n| n.is_self).unwrap()
}

/// Each node's own report once exactly one of them leads, the leader sees every peer's
/// progress and every node knows a commit index.
async fn settled_views(nodes: &[Node]) -> Vec<pb::ClusterListResponse> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut views = Vec::new();
        for n in nodes {
            let view = n
                .admin()
                .cluster_list(pb::ClusterListRequest {})
                .await
                .unwrap()
                .into_inner();
            assert_eq!(code(view.status.as_ref()), pb::Code::Ok);
            views.push(view);
        }
        let leaders: Vec<&pb::ClusterListResponse> = views
            .iter()
            .filter(|v| self_row(v).role == pb::Role::Leader as i32)
            .collect();
        let settled = leaders.len() == 1
            && leaders[0].nodes.iter().all(|n| n.match_index.is_some())
            && views.iter().all(|v| v.leader_id == leaders[0].self_id)
            // A follower knows a commit index only once the leader's first commit reached it.
            && views.iter().all(|v| self_row(v).commit_index.is_some());
        if settled {
            return views;
        }
        assert!(
            Instant::now() < deadline,
            "group did not settle: {views:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn leader_index(views: &[pb::ClusterListResponse]) -> usize {
    views
        .iter()
        .position(|v| self_row(v).role == pb::Role::Leader as i32)
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn assert_success(o: &Output) {
    assert!(
        o.status.success(),
        "mqadmin failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        o.status,
        stdout(o),
        stderr(o)
    );
}

fn message(topic: &str, id: usize) -> v2::Message {
    v2::Message {
        topic: Some(v2::Resource {
            resource_namespace: String::new(),
            name: topic.into(),
        }),
        user_properties: Default::default(),
        system_properties: Some(v2::SystemProperties {
            message_id: format!("m{id}"),
            message_type: v2::MessageType::Normal as i32,
            ..Default::default()
        }),
        body: format!("body-{id}").into(),
    }
}

async fn topic_names(node: &Node) -> Vec<(String, u32)> {
    let r = node
        .admin()
        .topic_list(pb::TopicListRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(r.status.as_ref()), pb::Code::Ok);
    r.topics.into_iter().map(|t| (t.name, t.queues)).collect()
}

async fn progress(node: &Node, group: &str, topic: &str) -> pb::ConsumerProgressResponse {
    node.admin()
        .consumer_progress(pb::ConsumerProgressRequest {
            group: group.into(),
            topic: topic.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_reports_what_the_rocketmq_api_did_on_any_node() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_group(dir.path(), 3, QUEUES4).await;

    // Phase 1: every node answers for itself; exactly one leads and all have a commit index.
    let views = settled_views(&nodes).await;
    let l = leader_index(&views);
    let (f1, f2) = ((l + 1) % 3, (l + 2) % 3);
    for (i, v) in views.iter().enumerate() {
        assert_eq!(v.group, "g");
        assert_eq!(v.self_id, format!("n{i}"));
        assert_eq!(v.nodes.len(), 3);
        let me = self_row(v);
        assert!(
            me.commit_index.is_some() && me.applied_index.is_some(),
            "{me:?}"
        );
        assert_eq!(me.listen_addr, nodes[i].endpoint());
    }
    let leader_view = &views[l];
    assert!(leader_view.nodes.iter().all(|n| n.lag.is_some()));

    // Phase 2: a topic created through a follower is listed there at once.
    let update = |queues| pb::UpdateTopicRequest {
        topic: "orders".into(),
        queues,
    };
    let r = nodes[f1]
        .admin()
        .update_topic(update(4))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(r.status.as_ref()), pb::Code::Ok, "{r:?}");
    assert!(
        topic_names(&nodes[f1])
            .await
            .contains(&("orders".into(), 4))
    );
    let r = nodes[f1]
        .admin()
        .update_topic(update(0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(r.status.as_ref()), pb::Code::InvalidArgument);
    assert!(r.status.unwrap().message.starts_with("queues"));
    let bad_name = pb::UpdateTopicRequest {
        topic: "a b".into(),
        queues: 1,
    };
    let r = nodes[f1]
        .admin()
        .update_topic(bad_name)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(r.status.as_ref()), pb::Code::InvalidArgument);
    assert!(r.status.unwrap().message.starts_with("topic"));

    // Phase 3: ten sends through the other follower show up as max offsets there.
    let sent = nodes[f2]
        .messaging()
        .send_message(v2::SendMessageRequest {
            messages: (0..10).map(|i| message("orders", i)).collect(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sent.status.unwrap().code, v2::Code::Ok as i32);
    let status = nodes[f2]
        .admin()
        .topic_status(pb::TopicStatusRequest {
            topic: "orders".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(status.status.as_ref()), pb::Code::Ok);
    assert_eq!(status.queues.len(), 4);
    assert_eq!(status.queues.iter().map(|q| q.max_offset).sum::<u64>(), 10);

    // Phase 4: receive everything through f2: all in flight, nothing acked; then ack it all.
    let mut client = nodes[f2].messaging();
    let mut stream = client
        .receive_message(v2::ReceiveMessageRequest {
            group: Some(v2::Resource {
                resource_namespace: String::new(),
                name: "cg".into(),
            }),
            message_queue: Some(v2::MessageQueue {
                topic: Some(v2::Resource {
                    resource_namespace: String::new(),
                    name: "orders".into(),
                }),
                id: -1,
                ..Default::default()
            }),
            batch_size: 32,
            invisible_duration: Some(prost_types::Duration {
                seconds: 30,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut handles = Vec::new();
    while let Some(frame) = stream.message().await.unwrap() {
        if let Some(v2::receive_message_response::Content::Message(m)) = frame.content {
            let sys = m.system_properties.unwrap();
            handles.push(v2::AckMessageEntry {
                message_id: sys.message_id,
                receipt_handle: sys.receipt_handle.unwrap(),
                lite_topic: None,
            });
        }
    }
    assert_eq!(handles.len(), 10);
    let before = progress(&nodes[f2], "cg", "orders").await;
    assert_eq!(code(before.status.as_ref()), pb::Code::Ok);
    assert_eq!(before.queues.len(), 4);
    assert!(
        before
            .queues
            .iter()
            .all(|q| q.next_offset == q.broker_offset)
    );
    assert_eq!(before.queues.iter().map(|q| q.inflight).sum::<u64>(), 10);
    assert_eq!(before.queues.iter().map(|q| q.lag).sum::<u64>(), 10);
    let acked = client
        .ack_message(v2::AckMessageRequest {
            group: Some(v2::Resource {
                resource_namespace: String::new(),
                name: "cg".into(),
            }),
            topic: Some(v2::Resource {
                resource_namespace: String::new(),
                name: "orders".into(),
            }),
            entries: handles,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(acked.status.unwrap().code, v2::Code::Ok as i32);
    let after = progress(&nodes[f2], "cg", "").await;
    assert_eq!(code(after.status.as_ref()), pb::Code::Ok);
    assert!(after.queues.iter().all(|q| q.topic == "orders"));
    assert!(
        after
            .queues
            .iter()
            .all(|q| q.acked_offset == q.broker_offset && q.inflight == 0 && q.lag == 0),
        "{after:?}"
    );
    let unknown = progress(&nodes[f2], "nobody", "").await;
    assert_eq!(code(unknown.status.as_ref()), pb::Code::NotFound);

    // Phase 5: a follower refuses a transfer and names the leader; the leader performs it.
    let to = format!("n{f1}");
    let refused = nodes[f2]
        .admin()
        .leadership_transfer(pb::LeadershipTransferRequest { to: to.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(refused.status.as_ref()), pb::Code::NotLeader);
    assert_eq!(refused.leader_id, format!("n{l}"));
    let unknown = nodes[l]
        .admin()
        .leadership_transfer(pb::LeadershipTransferRequest { to: "n9".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(unknown.status.as_ref()), pb::Code::NotFound);
    let done = nodes[l]
        .admin()
        .leadership_transfer(pb::LeadershipTransferRequest { to: to.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(done.status.as_ref()), pb::Code::Ok, "{done:?}");
    let views = settled_views(&nodes).await;
    assert_eq!(leader_index(&views), f1);

    // Phase 6: mqadmin merges every node's report, and retries a transfer at the leader it is
    // told about (the first address is a follower).
    let all = format!(
        "{};{};{}",
        nodes[0].endpoint(),
        nodes[1].endpoint(),
        nodes[2].endpoint()
    );
    let table = mqadmin(&["clusterList", "-n", &all]).await;
    assert_success(&table);
    let rows: Vec<Vec<String>> = stdout(&table)
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect();
    assert_eq!(rows.len(), 3, "{}", stdout(&table));
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row[0], format!("n{i}"));
        assert_eq!(row[2], nodes[i].endpoint());
        assert!(
            row[4].parse::<u64>().is_ok() && row[5].parse::<u64>().is_ok(),
            "{row:?}"
        );
    }
    let leaders: Vec<&Vec<String>> = rows.iter().filter(|r| r[1] == "LEADER").collect();
    assert_eq!(leaders.len(), 1, "{}", stdout(&table));
    assert_eq!(leaders[0][0], to);
    let follower_first = format!("{};{}", nodes[f2].endpoint(), all);
    let back = format!("n{l}");
    let moved = mqadmin(&["leadershipTransfer", "-n", &follower_first, "--to", &back]).await;
    assert_success(&moved);
    let leader_id = mqadmin(&["clusterList", "-n", &all, "--leader-id"]).await;
    assert_success(&leader_id);
    assert_eq!(stdout(&leader_id).trim(), back);

    // Phase 7: deleting through another node removes the topic and the group's progress.
    let delete = || pb::DeleteTopicRequest {
        topic: "orders".into(),
    };
    let r = nodes[f2]
        .admin()
        .delete_topic(delete())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(r.status.as_ref()), pb::Code::Ok, "{r:?}");
    assert!(
        !topic_names(&nodes[f2])
            .await
            .iter()
            .any(|(t, _)| t == "orders")
    );
    let r = nodes[f2]
        .admin()
        .delete_topic(delete())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(r.status.as_ref()), pb::Code::NotFound);
    let gone = progress(&nodes[f2], "cg", "").await;
    assert_eq!(code(gone.status.as_ref()), pb::Code::NotFound);

    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqadmin_binary_drives_a_single_node() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_group(dir.path(), 1, QUEUES4).await;
    let addr = nodes[0].endpoint();
    // The first address refuses connections: mqadmin moves on to the next.
    let with_dead = format!("127.0.0.1:1;{addr}");

    let waited = mqadmin(&["clusterList", "-n", &with_dead, "--wait-leader", "10"]).await;
    assert_success(&waited);
    let out = stdout(&waited);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("#ID"), "{out}");
    assert_eq!(lines.len(), 2, "{out}");
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(&row[..3], ["n0", "LEADER", addr.as_str()], "{out}");
    let leader = mqadmin(&["clusterList", "-n", &addr, "--leader-id"]).await;
    assert_success(&leader);
    assert_eq!(stdout(&leader).trim(), "n0");

    let created = mqadmin(&[
        "updateTopic",
        "-n",
        &addr,
        "-t",
        "TopicTest",
        "-r",
        "2",
        "-w",
        "3",
    ])
    .await;
    assert_success(&created);
    let listed = mqadmin(&["topicList", "-n", &addr]).await;
    assert_success(&listed);
    assert!(
        stdout(&listed).lines().any(|l| l == "TopicTest"),
        "{}",
        stdout(&listed)
    );
    let status = mqadmin(&["topicStatus", "-n", &addr, "-t", "TopicTest"]).await;
    assert_success(&status);
    assert_eq!(
        stdout(&status).lines().count(),
        1 + 3,
        "{}",
        stdout(&status)
    );

    let sent = mqadmin(&[
        "sendMessage",
        "-n",
        &addr,
        "-t",
        "TopicTest",
        "-p",
        "hello RaftMQ",
        "-c",
        "a",
    ])
    .await;
    assert_success(&sent);
    let sent_out = stdout(&sent);
    let message_id = sent_out
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    assert_eq!(message_id.len(), 34, "{sent_out}");
    assert!(message_id.starts_with("01"));
    assert!(
        message_id.chars().all(|c| c.is_ascii_hexdigit()),
        "{sent_out}"
    );
    let consumed = mqadmin(&[
        "consumeMessage",
        "-n",
        &addr,
        "-t",
        "TopicTest",
        "-g",
        "GroupTest",
        "-c",
        "1",
        "--wait",
        "10",
    ])
    .await;
    assert_success(&consumed);
    let consumed_out = stdout(&consumed);
    let line = consumed_out
        .lines()
        .find(|l| l.starts_with(message_id))
        .unwrap_or_else(|| panic!("{consumed_out}"));
    assert!(line.ends_with("hello RaftMQ"), "{line}");
    let progress = mqadmin(&["consumerProgress", "-n", &addr, "-g", "GroupTest"]).await;
    assert_success(&progress);
    assert!(
        stdout(&progress).contains("Consume Diff Total: 0"),
        "{}",
        stdout(&progress)
    );

    // Errors name the flag or carry the server's code.
    let no_topic = mqadmin(&["updateTopic", "-n", &addr]).await;
    assert_eq!(no_topic.status.code(), Some(2));
    assert!(
        stderr(&no_topic).contains("--topic"),
        "{}",
        stderr(&no_topic)
    );
    let missing = mqadmin(&["deleteTopic", "-n", &addr, "-t", "NoSuchTopic"]).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("CODE_NOT_FOUND"),
        "{}",
        stderr(&missing)
    );
    let no_addr = mqadmin(&["topicList"]).await;
    assert_eq!(no_addr.status.code(), Some(1));
    assert!(stderr(&no_addr).contains("-n"), "{}", stderr(&no_addr));
    let dead = mqadmin(&["clusterList", "-n", "127.0.0.1:1", "--wait-leader", "1"]).await;
    assert_eq!(dead.status.code(), Some(1));

    let deleted = mqadmin(&["deleteTopic", "-n", &addr, "-t", "TopicTest"]).await;
    assert_success(&deleted);
    let listed = mqadmin(&["topicList", "-n", &addr]).await;
    assert!(!stdout(&listed).lines().any(|l| l == "TopicTest"));

    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn above_the_disk_ratio_sends_are_refused_while_receives_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_group(dir.path(), 1, QUEUES4).await;
    settled_views(&nodes).await;
    let node = &nodes[0];
    let mut ok_client = node.messaging();
    let r = ok_client
        .send_message(v2::SendMessageRequest {
            messages: vec![message("DiskTopic", 1)],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.status.unwrap().code, v2::Code::Ok as i32);

    // The same store behind a service whose ratio every disk exceeds.
    let full = serve_with_disk_ratio(node, 0).await;
    let mut c = MessagingServiceClient::new(channel(full));
    let r = c
        .send_message(v2::SendMessageRequest {
            messages: vec![message("DiskTopic", 2)],
        })
        .await
        .unwrap()
        .into_inner();
    let s = r.status.unwrap();
    assert_ne!(s.code, v2::Code::Ok as i32);
    assert!(s.message.contains("diskMaxUsedSpaceRatio"), "{}", s.message);
    assert_eq!(r.entries.len(), 1, "one result entry per message");

    let mut req = tonic::Request::new(v2::ReceiveMessageRequest {
        group: Some(v2::Resource {
            resource_namespace: String::new(),
            name: "DiskGroup".into(),
        }),
        message_queue: Some(v2::MessageQueue {
            topic: Some(v2::Resource {
                resource_namespace: String::new(),
                name: "DiskTopic".into(),
            }),
            ..Default::default()
        }),
        batch_size: 8,
        invisible_duration: Some(prost_types::Duration {
            seconds: 30,
            nanos: 0,
        }),
        long_polling_timeout: Some(prost_types::Duration {
            seconds: 5,
            nanos: 0,
        }),
        ..Default::default()
    });
    req.set_timeout(std::time::Duration::from_secs(10));
    let mut stream = c.receive_message(req).await.unwrap().into_inner();
    let mut bodies = 0;
    while let Some(item) = stream.message().await.unwrap() {
        if let Some(v2::receive_message_response::Content::Message(_)) = item.content {
            bodies += 1;
        }
    }
    assert_eq!(
        bodies, 1,
        "the message stored before the disk filled is still delivered"
    );
    shutdown(nodes).await;
}

/// Goal: `Broker::start` wires a node from nothing but a broker.conf, as mqbroker runs it.
/// Method: a single-node group on a free port; the admin view reports `brokerIP1:listenPort`
/// as the node's address, a route auto-creates the topic with `defaultTopicQueueNums` queues,
/// and a shutdown returns cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_start_serves_both_services_from_a_broker_conf() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = format!(
        "brokerName=b\nbrokerIP1=127.0.0.1\nbindAddress=127.0.0.1\nlistenPort={port}\n\
         defaultTopicQueueNums=3\nstorePathRootDir={}\n",
        dir.path().join("store").display()
    );
    let (config, _) = broker::BrokerConfig::from_str(&text, "test.conf").unwrap();
    let broker = broker::Broker::start(config).await.unwrap();
    let addr = broker.local_addr();
    assert_eq!(addr.port(), port);

    let deadline = Instant::now() + Duration::from_secs(10);
    let view = loop {
        let view = AdminClient::new(channel(addr))
            .cluster_list(pb::ClusterListRequest {})
            .await
            .unwrap()
            .into_inner();
        if self_row(&view).role == pb::Role::Leader as i32 {
            break view;
        }
        assert!(Instant::now() < deadline, "no leader: {view:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(self_row(&view).listen_addr, format!("127.0.0.1:{port}"));

    let route = MessagingServiceClient::new(channel(addr))
        .query_route(v2::QueryRouteRequest {
            topic: Some(v2::Resource {
                name: "auto".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        route.status.as_ref().map(|s| s.code),
        Some(v2::Code::Ok as i32),
        "{route:?}"
    );
    assert_eq!(route.message_queues.len(), 3);
    broker.shutdown().await.unwrap();
}

/// The first status of a receive stream.
async fn receive_code(node: &Node, req: v2::ReceiveMessageRequest) -> v2::Code {
    let mut stream = node
        .messaging()
        .receive_message(req)
        .await
        .unwrap()
        .into_inner();
    match stream.message().await.unwrap().and_then(|f| f.content) {
        Some(v2::receive_message_response::Content::Status(s)) => {
            v2::Code::try_from(s.code).unwrap()
        }
        other => panic!("first frame is not a status: {other:?}"),
    }
}

fn receive_request(group: &str, topic: &str, invisible_s: i64) -> v2::ReceiveMessageRequest {
    v2::ReceiveMessageRequest {
        group: Some(v2::Resource {
            resource_namespace: String::new(),
            name: group.into(),
        }),
        message_queue: Some(v2::MessageQueue {
            topic: Some(v2::Resource {
                resource_namespace: String::new(),
                name: topic.into(),
            }),
            id: -1,
            ..Default::default()
        }),
        batch_size: 1,
        invisible_duration: Some(prost_types::Duration {
            seconds: invisible_s,
            nanos: 0,
        }),
        long_polling_timeout: Some(prost_types::Duration {
            seconds: 5,
            nanos: 0,
        }),
        ..Default::default()
    }
}

/// Goal: invalid input gets the same RocketMQ code as before the service layer existed (the
/// SDKs depend on them). Method: one node, one bad field per request, the code of each answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_requests_get_their_rocketmq_codes() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_group(dir.path(), 1, QUEUES4).await;
    let node = &nodes[0];
    let send_code = |m: Vec<v2::Message>| async move {
        let r = node
            .messaging()
            .send_message(v2::SendMessageRequest { messages: m })
            .await
            .unwrap()
            .into_inner();
        v2::Code::try_from(r.status.unwrap().code).unwrap()
    };
    let with_sys = |f: &dyn Fn(&mut v2::SystemProperties)| {
        let mut m = message("codes", 0);
        f(m.system_properties.as_mut().unwrap());
        m
    };
    tracing::info!("phase 1: sends; a good one first creates the topic");
    assert_eq!(send_code(vec![message("codes", 0)]).await, v2::Code::Ok);
    assert_eq!(send_code(vec![]).await, v2::Code::BadRequest);
    assert_eq!(
        send_code(vec![message("bad topic", 0)]).await,
        v2::Code::IllegalTopic
    );
    let mut empty = message("codes", 0);
    empty.body = Default::default();
    assert_eq!(send_code(vec![empty]).await, v2::Code::BadRequest);
    let transactional = with_sys(&|s| s.message_type = v2::MessageType::Transaction as i32);
    assert_eq!(send_code(vec![transactional]).await, v2::Code::Ok);
    let timed_transaction = with_sys(&|s| {
        s.message_type = v2::MessageType::Transaction as i32;
        s.delivery_timestamp = Some(prost_types::Timestamp {
            seconds: 4_000_000_000,
            nanos: 0,
        });
    });
    assert_eq!(
        send_code(vec![timed_transaction]).await,
        v2::Code::BadRequest,
        "RocketMQ refuses a transactional message with a delivery time"
    );
    let fifo = with_sys(&|s| s.message_type = v2::MessageType::Fifo as i32);
    assert_eq!(send_code(vec![fifo]).await, v2::Code::BadRequest);
    let far = with_sys(&|s| {
        s.delivery_timestamp = Some(prost_types::Timestamp {
            seconds: i64::MAX / 2_000,
            nanos: 0,
        })
    });
    assert_eq!(send_code(vec![far]).await, v2::Code::IllegalDeliveryTime);
    assert_eq!(
        send_code(vec![message("codes", 1), message("bad topic", 2)]).await,
        v2::Code::IllegalTopic,
        "one failure among OKs is that failure"
    );

    tracing::info!("phase 2: receives");
    assert_eq!(
        receive_code(node, receive_request("bad group", "codes", 30)).await,
        v2::Code::IllegalConsumerGroup
    );
    assert_eq!(
        receive_code(node, receive_request("cg", "bad topic", 30)).await,
        v2::Code::IllegalTopic
    );
    assert_eq!(
        receive_code(node, receive_request("cg", "codes", 1)).await,
        v2::Code::IllegalInvisibleTime
    );
    assert_eq!(
        receive_code(node, receive_request("cg", "missing", 30)).await,
        v2::Code::TopicNotFound
    );
    let mut sql = receive_request("cg", "codes", 30);
    sql.filter_expression = Some(v2::FilterExpression {
        r#type: v2::FilterType::Sql as i32,
        expression: "a > 1".into(),
    });
    assert_eq!(receive_code(node, sql).await, v2::Code::NotImplemented);

    tracing::info!("phase 3: handles and routes");
    let resource = |name: &str| {
        Some(v2::Resource {
            resource_namespace: String::new(),
            name: name.into(),
        })
    };
    let ack = node
        .messaging()
        .ack_message(v2::AckMessageRequest {
            group: resource("cg"),
            topic: resource("codes"),
            entries: vec![v2::AckMessageEntry {
                message_id: "m0".into(),
                receipt_handle: "v1.0.0.1".into(),
                ..Default::default()
            }],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        ack.status.unwrap().code,
        v2::Code::InvalidReceiptHandle as i32
    );
    let change = |invisible_duration| v2::ChangeInvisibleDurationRequest {
        group: resource("cg"),
        topic: resource("codes"),
        receipt_handle: "v1.0.0.1".into(),
        invisible_duration,
        ..Default::default()
    };
    for (req, want) in [
        (change(None), v2::Code::IllegalInvisibleTime),
        (
            change(Some(prost_types::Duration {
                seconds: 13 * 3600,
                nanos: 0,
            })),
            v2::Code::IllegalInvisibleTime,
        ),
        (
            change(Some(prost_types::Duration {
                seconds: 30,
                nanos: 0,
            })),
            v2::Code::InvalidReceiptHandle,
        ),
    ] {
        let r = node
            .messaging()
            .change_invisible_duration(req)
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status.unwrap().code, want as i32);
        assert!(r.receipt_handle.is_empty());
    }
    let route = node
        .messaging()
        .query_route(v2::QueryRouteRequest {
            topic: resource("bad topic"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(route.status.unwrap().code, v2::Code::IllegalTopic as i32);
    shutdown(nodes).await;
}

/// The message index and offset resets through `mqadmin`, as RocketMQ's verbs print them:
/// queryMsgByKey finds every message with a key, queryMsgByUniqueKey the one with a client id,
/// queryMsgById and queryMsgByOffset the same message by where it is, and resetOffsetByTime
/// makes a group consume again from a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqadmin_queries_messages_by_key_id_and_offset_and_resets_offsets_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_group(dir.path(), 1, QUEUES4).await;
    let addr = nodes[0].endpoint();
    assert_success(&mqadmin(&["clusterList", "-n", &addr, "--wait-leader", "10"]).await);
    let topic = "IndexTest";
    assert_success(&mqadmin(&["updateTopic", "-n", &addr, "-t", topic, "-w", "2"]).await);
    let mut ids = Vec::new();
    for i in 1..=3 {
        let keys = format!("order-{i},shared");
        let body = format!("body-{i}");
        let sent = mqadmin(&[
            "sendMessage",
            "-n",
            &addr,
            "-t",
            topic,
            "-p",
            &body,
            "-k",
            &keys,
            "-c",
            "TagA",
        ])
        .await;
        assert_success(&sent);
        let out = stdout(&sent);
        ids.push(
            out.lines()
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .to_string(),
        );
    }

    let shared = mqadmin(&["queryMsgByKey", "-n", &addr, "-t", topic, "-k", "shared"]).await;
    assert_success(&shared);
    let out = stdout(&shared);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("#Message ID"), "{out}");
    assert_eq!(lines.len(), 4, "three messages carry the key: {out}");
    for id in &ids {
        assert!(out.contains(id.as_str()), "{id} missing: {out}");
    }
    let one = mqadmin(&["queryMsgByKey", "-n", &addr, "-t", topic, "-k", "order-2"]).await;
    assert_success(&one);
    let out = stdout(&one);
    assert_eq!(out.lines().count(), 2, "{out}");
    let row: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[0], ids[1], "{out}");
    let (queue, offset) = (row[1].to_string(), row[2].to_string());

    let by_unique = mqadmin(&[
        "queryMsgByUniqueKey",
        "-n",
        &addr,
        "-t",
        topic,
        "-i",
        &ids[1],
    ])
    .await;
    assert_success(&by_unique);
    let detail = stdout(&by_unique);
    let field = |text: &str, name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing: {text}"))[20..]
            .trim()
            .to_string()
    };
    assert_eq!(field(&detail, "Message Body:"), "body-2");
    assert_eq!(field(&detail, "Keys:"), "[order-2 shared]");
    assert_eq!(field(&detail, "Tags:"), "[TagA]");
    assert_eq!(field(&detail, "Queue Offset:"), offset);
    let offset_id = field(&detail, "OffsetID:");
    assert_eq!(offset_id.len(), 32, "{detail}");

    let by_id = mqadmin(&["queryMsgById", "-n", &addr, "-i", &offset_id]).await;
    assert_success(&by_id);
    assert_eq!(field(&stdout(&by_id), "Message Body:"), "body-2");
    assert_eq!(field(&stdout(&by_id), "Queue ID:"), queue);
    let by_offset = mqadmin(&[
        "queryMsgByOffset",
        "-n",
        &addr,
        "-t",
        topic,
        "-b",
        "RaftNode00",
        "-i",
        &queue,
        "-o",
        &offset,
    ])
    .await;
    assert_success(&by_offset);
    assert_eq!(field(&stdout(&by_offset), "OffsetID:"), offset_id);

    let none = mqadmin(&[
        "queryMsgByKey",
        "-n",
        &addr,
        "-t",
        topic,
        "-k",
        "no-such-key",
    ])
    .await;
    assert_eq!(none.status.code(), Some(1));
    assert!(
        stderr(&none).contains("CODE_NOT_FOUND"),
        "{}",
        stderr(&none)
    );
    let bad = mqadmin(&["queryMsgById", "-n", &addr, "-i", "XYZ"]).await;
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("offset_msg_id"), "{}", stderr(&bad));

    // Consume everything, then rewind to the beginning of time: all three come again.
    let consume_args = [
        "consumeMessage",
        "-n",
        &addr,
        "-t",
        topic,
        "-g",
        "ResetGroup",
        "-c",
        "3",
        "--wait",
        "10",
    ];
    let first = mqadmin(&consume_args).await;
    assert_success(&first);
    assert_eq!(
        stdout(&first).matches("body-").count(),
        3,
        "{}",
        stdout(&first)
    );
    let reset = mqadmin(&[
        "resetOffsetByTime",
        "-n",
        &addr,
        "-g",
        "ResetGroup",
        "-t",
        topic,
        "-s",
        "0",
    ])
    .await;
    assert_success(&reset);
    let out = stdout(&reset);
    assert!(
        out.starts_with("rollback consumer offset by specified group[ResetGroup]"),
        "{out}"
    );
    assert!(
        out.lines().nth(1).unwrap().starts_with("#brokerName"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 2 + 2, "one row per queue: {out}");
    let again = mqadmin(&consume_args).await;
    assert_success(&again);
    assert_eq!(
        stdout(&again).matches("body-").count(),
        3,
        "{}",
        stdout(&again)
    );
    // To now: nothing is left to consume.
    assert_success(
        &mqadmin(&[
            "resetOffsetByTime",
            "-n",
            &addr,
            "-g",
            "ResetGroup",
            "-t",
            topic,
            "-s",
            "now",
        ])
        .await,
    );
    let progress = mqadmin(&["consumerProgress", "-n", &addr, "-g", "ResetGroup"]).await;
    assert!(
        stdout(&progress).contains("Consume Diff Total: 0"),
        "{}",
        stdout(&progress)
    );
    shutdown(nodes).await;
}
