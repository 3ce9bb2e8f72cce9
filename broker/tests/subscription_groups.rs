//! Subscription groups as replicated config, through the admin API, the RocketMQ 5 gRPC API and
//! 4.x remoting, on in-process brokers started from broker.conf files.
//!
//! Goal: a group's record decides when its messages go to the dead-letter queue
//! (`retryMaxTimes`), whether it may consume (`consumeEnable`) and what its 5.x consumers are
//! told (Telemetry settings); every node has the same records, through a leader change and a
//! restart from the checkpoint; `autoCreateSubscriptionGroup=false` refuses unknown groups with
//! RocketMQ's codes. Method: a three-node group (and a single node for the auto-create switch),
//! driven with the generated gRPC clients and `RemotingClient`, checking each answer's code.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::inprocess::{Node, group_ports, shutdown, start_nodes};

/// What every node of these tests adds to its broker.conf.
const BASE: &str = "brokerClusterName=SubCluster\ndefaultTopicQueueNums=1\n";

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proto::apache::rocketmq::v2;
use proto::apache::rocketmq::v2::messaging_service_client::MessagingServiceClient;
use proto::raftmq::admin::v1 as pb;
use proto::raftmq::admin::v1::admin_client::AdminClient;
use raftmq_remoting::code::{request as rq, response as rs};
use raftmq_remoting::ext_fields as fields;
use raftmq_remoting::{ExtFields, RemotingClient, RemotingCommand};
use tonic::transport::Channel;

/// How long a group may take to elect a leader, or a follower to apply a write.
const SETTLE: Duration = Duration::from_secs(15);

impl Node {
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

fn code(status: Option<&pb::Status>) -> pb::Code {
    pb::Code::try_from(status.expect("every response has a status").code).unwrap()
}

/// The index of the node that leads, once one does and every node knows it.
async fn leader(nodes: &[Node]) -> usize {
    let deadline = Instant::now() + SETTLE;
    loop {
        let mut views = Vec::new();
        for n in nodes {
            views.push(
                n.admin()
                    .cluster_list(pb::ClusterListRequest {})
                    .await
                    .unwrap()
                    .into_inner(),
            );
        }
        let leads = |v: &pb::ClusterListResponse| {
            v.nodes
                .iter()
                .any(|n| n.is_self && n.role == pb::Role::Leader as i32)
        };
        let leaders: Vec<usize> = (0..views.len()).filter(|&i| leads(&views[i])).collect();
        if let [l] = leaders[..]
            && views.iter().all(|v| v.leader_id == views[l].self_id)
        {
            return l;
        }
        assert!(Instant::now() < deadline, "no leader: {views:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn update_group(
    node: &Node,
    request: pb::UpdateSubscriptionGroupRequest,
) -> pb::UpdateSubscriptionGroupResponse {
    node.admin()
        .update_subscription_group(request)
        .await
        .unwrap()
        .into_inner()
}

fn group_request(group: &str) -> pb::UpdateSubscriptionGroupRequest {
    pb::UpdateSubscriptionGroupRequest {
        group_name: group.into(),
        ..Default::default()
    }
}

async fn groups_on(node: &Node) -> Vec<pb::SubscriptionGroup> {
    let list = node
        .admin()
        .subscription_group_list(pb::SubscriptionGroupListRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(list.status.as_ref()), pb::Code::Ok);
    list.groups
}

/// Waits until every node has `group`'s record and it satisfies `want`.
async fn await_group_everywhere(
    nodes: &[Node],
    group: &str,
    want: impl Fn(&pb::SubscriptionGroup) -> bool,
) {
    let deadline = Instant::now() + SETTLE;
    for (i, n) in nodes.iter().enumerate() {
        loop {
            let groups = groups_on(n).await;
            if groups.iter().any(|g| g.group_name == group && want(g)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {i} lacks the record of {group}: {groups:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn resource(name: &str) -> v2::Resource {
    v2::Resource {
        resource_namespace: String::new(),
        name: name.into(),
    }
}

async fn send(node: &Node, topic: &str, id: &str) {
    let message = v2::Message {
        topic: Some(resource(topic)),
        user_properties: Default::default(),
        system_properties: Some(v2::SystemProperties {
            message_id: id.into(),
            message_type: v2::MessageType::Normal as i32,
            ..Default::default()
        }),
        body: bytes::Bytes::from_static(b"body"),
    };
    let r = node
        .messaging()
        .send_message(v2::SendMessageRequest {
            messages: vec![message],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.status.unwrap().code, v2::Code::Ok as i32, "send {id}");
}

/// One ReceiveMessage: the status and the messages.
async fn receive(node: &Node, group: &str, topic: &str) -> (v2::Status, Vec<v2::Message>) {
    let request = v2::ReceiveMessageRequest {
        group: Some(resource(group)),
        message_queue: Some(v2::MessageQueue {
            topic: Some(resource(topic)),
            id: -1,
            ..Default::default()
        }),
        batch_size: 8,
        invisible_duration: Some(prost_types::Duration {
            seconds: 10,
            nanos: 0,
        }),
        long_polling_timeout: Some(prost_types::Duration {
            seconds: 5,
            nanos: 0,
        }),
        ..Default::default()
    };
    let mut stream = node
        .messaging()
        .receive_message(request)
        .await
        .unwrap()
        .into_inner();
    let (mut status, mut messages) = (None, Vec::new());
    while let Some(item) = stream.message().await.unwrap() {
        use v2::receive_message_response::Content;
        match item.content {
            Some(Content::Status(s)) => status = Some(s),
            Some(Content::Message(m)) => messages.push(m),
            _ => {}
        }
    }
    (status.expect("a receive answers a status"), messages)
}

fn status_code(s: &v2::Status) -> v2::Code {
    v2::Code::try_from(s.code).unwrap()
}

/// Makes a received message visible again now (its invisible time ends).
async fn release(node: &Node, group: &str, topic: &str, m: &v2::Message) {
    let handle = m
        .system_properties
        .as_ref()
        .and_then(|s| s.receipt_handle.clone())
        .unwrap();
    let r = node
        .messaging()
        .change_invisible_duration(v2::ChangeInvisibleDurationRequest {
            group: Some(resource(group)),
            topic: Some(resource(topic)),
            receipt_handle: handle,
            invisible_duration: Some(prost_types::Duration::default()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.status.unwrap().code, v2::Code::Ok as i32);
}

fn attempt(m: &v2::Message) -> i32 {
    m.system_properties
        .as_ref()
        .and_then(|s| s.delivery_attempt)
        .unwrap()
}

async fn max_offset(node: &Node, topic: &str) -> Option<u64> {
    let r = node
        .admin()
        .topic_status(pb::TopicStatusRequest {
            topic: topic.into(),
        })
        .await
        .unwrap()
        .into_inner();
    r.queues.first().map(|q| q.max_offset)
}

/// The settings a consumer of `group` gets back on its Telemetry stream, which then ends (an
/// open one would hold up the broker's graceful shutdown).
async fn consumer_settings(node: &Node, group: &str) -> v2::Settings {
    let settings = v2::Settings {
        client_type: Some(v2::ClientType::SimpleConsumer as i32),
        pub_sub: Some(v2::settings::PubSub::Subscription(v2::Subscription {
            group: Some(resource(group)),
            ..Default::default()
        })),
        ..Default::default()
    };
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(v2::TelemetryCommand {
        status: None,
        command: Some(v2::telemetry_command::Command::Settings(settings)),
    })
    .await
    .unwrap();
    let outbound = tokio_stream::wrappers::ReceiverStream::new(rx);
    let mut inbound = node
        .messaging()
        .telemetry(outbound)
        .await
        .unwrap()
        .into_inner();
    let reply = tokio::time::timeout(SETTLE, inbound.message())
        .await
        .expect("settings answered")
        .unwrap()
        .unwrap();
    drop(tx);
    while inbound.message().await.ok().flatten().is_some() {}
    match reply.command {
        Some(v2::telemetry_command::Command::Settings(s)) => s,
        other => panic!("not settings: {other:?}"),
    }
}

fn fifo(s: &v2::Settings) -> Option<bool> {
    match &s.pub_sub {
        Some(v2::settings::PubSub::Subscription(sub)) => sub.fifo,
        _ => None,
    }
}

/// Goal: `retryMaxTimes` decides the dead-letter queue, `consumeEnable=false` refuses
/// receives, the settings follow the group, an unknown group is created on first use on every
/// node, and all of it survives a leader change and a restart of every node. Method: three
/// nodes; updates through a follower; receives made visible again with a zero invisible time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_groups_config_decides_retries_and_consumption_on_every_node_and_survives() {
    let dir = tempfile::tempdir().unwrap();
    let ports = group_ports(3);
    let nodes = start_nodes(dir.path(), &ports, BASE).await;
    let l = leader(&nodes).await;
    let follower = &nodes[(l + 1) % 3];

    // retryMaxTimes=1 through a follower: every node has it.
    let updated = update_group(
        follower,
        pb::UpdateSubscriptionGroupRequest {
            retry_max_times: Some(1),
            ..group_request("Once")
        },
    )
    .await;
    assert_eq!(code(updated.status.as_ref()), pb::Code::Ok);
    let stored = updated.group.unwrap();
    assert_eq!((stored.retry_max_times, stored.consume_enable), (1, true));
    await_group_everywhere(&nodes, "Once", |g| g.retry_max_times == 1).await;

    // Two deliveries, then the dead-letter queue.
    send(follower, "SubT", "m1").await;
    let (_, first) = receive(follower, "Once", "SubT").await;
    assert_eq!(first.len(), 1);
    assert_eq!(attempt(&first[0]), 1);
    release(follower, "Once", "SubT", &first[0]).await;
    let (_, second) = receive(&nodes[l], "Once", "SubT").await;
    assert_eq!(second.len(), 1, "retried once");
    assert_eq!(attempt(&second[0]), 2);
    release(&nodes[l], "Once", "SubT", &second[0]).await;
    let (status, third) = receive(follower, "Once", "SubT").await;
    assert!(third.is_empty(), "no third delivery: {third:?}");
    assert_eq!(status_code(&status), v2::Code::MessageNotFound);
    assert_eq!(max_offset(follower, "%DLQ%Once").await, Some(1));

    // A group without a record keeps the broker's default: 17 attempts told, 16 retries.
    let settings = consumer_settings(follower, "Once").await;
    assert_eq!(fifo(&settings), Some(false));
    assert_eq!(settings.backoff_policy.unwrap().max_attempts, 2);
    let default = consumer_settings(follower, "NoRecordYet").await;
    assert_eq!(default.backoff_policy.unwrap().max_attempts, 17);

    // consumeEnable=false refuses receives; consumeMessageOrderly shows as fifo.
    let off = update_group(
        &nodes[l],
        pb::UpdateSubscriptionGroupRequest {
            consume_enable: Some(false),
            consume_message_orderly: Some(true),
            ..group_request("Off")
        },
    )
    .await;
    assert_eq!(code(off.status.as_ref()), pb::Code::Ok);
    await_group_everywhere(&nodes, "Off", |g| !g.consume_enable).await;
    let (status, got) = receive(follower, "Off", "SubT").await;
    assert_eq!(status_code(&status), v2::Code::Forbidden, "{status:?}");
    assert!(status.message.contains("Off"), "{status:?}");
    assert!(got.is_empty());
    assert_eq!(fifo(&consumer_settings(follower, "Off").await), Some(true));

    // A group's first receive creates its record, with the broker's defaults, on every node.
    let (status, got) = receive(follower, "Auto", "SubT").await;
    assert_eq!(status_code(&status), v2::Code::Ok, "{status:?}");
    assert_eq!(got.len(), 1, "a new group reads the topic from its start");
    await_group_everywhere(&nodes, "Auto", |g| {
        g.retry_max_times == 16 && g.consume_enable && !g.consume_message_orderly
    })
    .await;

    // Leadership moves: the new leader has the records and applies them.
    let to = format!("n{}", (l + 1) % 3);
    let moved = nodes[l]
        .admin()
        .leadership_transfer(pb::LeadershipTransferRequest { to: to.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(moved.status.as_ref()), pb::Code::Ok, "{moved:?}");
    let l2 = leader(&nodes).await;
    assert_eq!(format!("n{l2}"), to);
    let (status, _) = receive(&nodes[l2], "Off", "SubT").await;
    assert_eq!(status_code(&status), v2::Code::Forbidden);
    assert!(
        groups_on(&nodes[l2])
            .await
            .iter()
            .any(|g| g.group_name == "Once" && g.retry_max_times == 1)
    );

    // Every node restarts from its checkpoint, taken after the last group change: the records
    // come from the checkpoint, not from entries replayed after it.
    for n in &nodes {
        n.broker
            .service()
            .store()
            .checkpoint_now_for_tests()
            .await
            .unwrap();
    }
    shutdown(nodes).await;
    let nodes = start_nodes(dir.path(), &ports, BASE).await;
    let l = leader(&nodes).await;
    for n in &nodes {
        let names: Vec<String> = groups_on(n)
            .await
            .into_iter()
            .map(|g| g.group_name)
            .collect();
        assert_eq!(names, ["Auto", "Off", "Once"], "records after the restart");
    }
    let (status, _) = receive(&nodes[(l + 2) % 3], "Off", "SubT").await;
    assert_eq!(status_code(&status), v2::Code::Forbidden, "still refused");
    send(&nodes[l], "SubT", "m2").await;
    let (_, again) = receive(&nodes[l], "Once", "SubT").await;
    assert_eq!(again.len(), 1);
    release(&nodes[l], "Once", "SubT", &again[0]).await;
    let (_, retry) = receive(&nodes[l], "Once", "SubT").await;
    release(&nodes[l], "Once", "SubT", &retry[0]).await;
    let (_, none) = receive(&nodes[l], "Once", "SubT").await;
    assert!(none.is_empty());
    assert_eq!(
        max_offset(&nodes[l], "%DLQ%Once").await,
        Some(2),
        "retryMaxTimes=1 still applies after the restart"
    );

    // Deleting a record: the next receive creates it again (auto-create is on).
    let deleted = nodes[l]
        .admin()
        .delete_subscription_group(pb::DeleteSubscriptionGroupRequest {
            group_name: "Off".into(),
            clean_offset: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(deleted.status.as_ref()), pb::Code::Ok);
    let (status, _) = receive(&nodes[l], "Off", "SubT").await;
    assert_ne!(status_code(&status), v2::Code::Forbidden, "{status:?}");
    shutdown(nodes).await;
}

async fn remoting(node: &Node) -> RemotingClient {
    RemotingClient::connect(&node.addr.to_string(), Duration::from_secs(5))
        .await
        .unwrap()
}

async fn call(c: &RemotingClient, request: RemotingCommand) -> RemotingCommand {
    c.invoke(request, Duration::from_secs(10)).await.unwrap()
}

fn pull(group: &str, topic: &str) -> RemotingCommand {
    RemotingCommand::request(
        rq::PULL_MESSAGE,
        fields(&[
            ("consumerGroup", group),
            ("topic", topic),
            ("queueId", "0"),
            ("queueOffset", "0"),
            ("maxMsgNums", "32"),
            ("sysFlag", "0"),
            ("commitOffset", "0"),
            ("suspendTimeoutMillis", "0"),
            ("subscription", "*"),
            ("subVersion", "0"),
        ]),
    )
}

fn heartbeat(group: &str, model: &str) -> RemotingCommand {
    let body = serde_json::json!({
        "clientID": "c@1",
        "consumerDataSet": [{
            "groupName": group,
            "consumeType": "CONSUME_PASSIVELY",
            "messageModel": model,
            "consumeFromWhere": "CONSUME_FROM_FIRST_OFFSET",
            "subscriptionDataSet": [{"topic": "AutoOffT", "subString": "*", "subVersion": 1}],
            "unitMode": false
        }]
    });
    RemotingCommand::request(rq::HEART_BEAT, ExtFields::new())
        .with_body(serde_json::to_vec(&body).unwrap())
}

fn update_request(config: serde_json::Value) -> RemotingCommand {
    RemotingCommand::request(rq::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, ExtFields::new())
        .with_body(serde_json::to_vec(&config).unwrap())
}

fn assert_code(r: &RemotingCommand, want: i32, what: &str) {
    assert_eq!(r.code, want, "{what}: {} {:?}", r.code, r.remark);
}

/// Goal: with `autoCreateSubscriptionGroup=false` a group without a record is refused with
/// RocketMQ's codes on both protocols, and RocketMQ's admin requests (200, 201, 207) create,
/// list and delete records; bad input names its field. Method: one node, gRPC and remoting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auto_create_an_unknown_group_is_refused_until_it_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_nodes(
        dir.path(),
        &group_ports(1),
        &format!("{BASE}autoCreateSubscriptionGroup=false\n"),
    )
    .await;
    leader(&nodes).await;
    let node = &nodes[0];
    send(node, "AutoOffT", "m1").await;
    let c = remoting(node).await;

    // Unknown: CONSUMER_GROUP_NOT_FOUND over gRPC, SUBSCRIPTION_GROUP_NOT_EXIST over remoting.
    let (status, _) = receive(node, "Unknown", "AutoOffT").await;
    assert_eq!(
        status_code(&status),
        v2::Code::ConsumerGroupNotFound,
        "{status:?}"
    );
    assert!(
        status.message.contains("Unknown")
            && status.message.contains("autoCreateSubscriptionGroup"),
        "{status:?}"
    );
    let refused = call(&c, pull("Unknown", "AutoOffT")).await;
    assert_code(&refused, rs::SUBSCRIPTION_GROUP_NOT_EXIST, "pull");
    assert!(refused.remark.contains("Unknown"), "{:?}", refused.remark);
    assert_code(
        &call(&c, heartbeat("Unknown", "CLUSTERING")).await,
        rs::SUCCESS,
        "a heartbeat registers the consumer anyway",
    );
    assert!(
        groups_on(node).await.is_empty(),
        "nothing was created: heartbeat, receive nor pull"
    );

    // RocketMQ's UPDATE_AND_CREATE_SUBSCRIPTIONGROUP: the whole config as JSON.
    let created = call(
        &c,
        update_request(serde_json::json!({
            "groupName": "Unknown", "consumeEnable": true, "consumeBroadcastEnable": false,
            "retryMaxTimes": 3, "retryQueueNums": 1,
            "groupRetryPolicy": {"type": "EXPONENTIAL"}
        })),
    )
    .await;
    assert_code(&created, rs::SUCCESS, "update");
    assert_code(
        &call(&c, pull("Unknown", "AutoOffT")).await,
        rs::SUCCESS,
        "pull",
    );
    let (status, got) = receive(node, "Unknown", "AutoOffT").await;
    assert_eq!(status_code(&status), v2::Code::Ok, "{status:?}");
    assert_eq!(got.len(), 1);
    let settings = consumer_settings(node, "Unknown").await;
    let backoff = settings.backoff_policy.unwrap();
    assert_eq!(backoff.max_attempts, 4);
    assert!(matches!(
        backoff.strategy,
        Some(v2::retry_policy::Strategy::ExponentialBackoff(_))
    ));

    // Broadcast consumers of a group with consumeBroadcastEnable=false may not pull.
    assert_code(
        &call(&c, heartbeat("Unknown", "BROADCASTING")).await,
        rs::SUCCESS,
        "heartbeat",
    );
    let broadcast = call(&c, pull("Unknown", "AutoOffT")).await;
    assert_code(&broadcast, rs::NO_PERMISSION, "broadcast pull");
    assert!(
        broadcast.remark.contains("broadcast"),
        "{:?}",
        broadcast.remark
    );

    // GET_ALL_SUBSCRIPTIONGROUP_CONFIG: RocketMQ's SubscriptionGroupWrapper.
    let all = call(
        &c,
        RemotingCommand::request(rq::GET_ALL_SUBSCRIPTIONGROUP_CONFIG, ExtFields::new()),
    )
    .await;
    assert_code(&all, rs::SUCCESS, "get all");
    let table: serde_json::Value = serde_json::from_slice(&all.body).unwrap();
    let g = &table["subscriptionGroupTable"]["Unknown"];
    assert_eq!(g["retryMaxTimes"], 3, "{table}");
    assert_eq!(g["consumeBroadcastEnable"], false, "{table}");
    assert_eq!(g["groupRetryPolicy"]["type"], "EXPONENTIAL", "{table}");
    assert_eq!(
        g["groupRetryPolicy"]["exponentialRetryPolicy"]["initial"], 5000,
        "{table}"
    );
    assert!(
        table["dataVersion"]["counter"].as_u64().unwrap() > 0,
        "{table}"
    );

    // consumeEnable=false: NO_PERMISSION over remoting, FORBIDDEN over gRPC.
    let disabled = call(
        &c,
        update_request(serde_json::json!({"groupName": "Unknown", "consumeEnable": false})),
    )
    .await;
    assert_code(&disabled, rs::SUCCESS, "disable");
    let no = call(&c, pull("Unknown", "AutoOffT")).await;
    assert_code(&no, rs::NO_PERMISSION, "pull of a disabled group");
    assert!(no.remark.contains("consumeEnable"), "{:?}", no.remark);
    let (status, _) = receive(node, "Unknown", "AutoOffT").await;
    assert_eq!(status_code(&status), v2::Code::Forbidden);

    // Bad input names its field, on both admin paths.
    let negative = call(
        &c,
        update_request(serde_json::json!({"groupName": "Bad", "retryMaxTimes": -1})),
    )
    .await;
    assert_code(&negative, rs::SYSTEM_ERROR, "negative retryMaxTimes");
    assert!(
        negative.remark.contains("retryMaxTimes"),
        "{:?}",
        negative.remark
    );
    for (request, field) in [
        (
            pb::UpdateSubscriptionGroupRequest {
                retry_max_times: Some(-1),
                ..group_request("Bad")
            },
            "retryMaxTimes",
        ),
        (
            pb::UpdateSubscriptionGroupRequest {
                retry_queue_nums: Some(-2),
                ..group_request("Bad")
            },
            "retryQueueNums",
        ),
        (group_request(""), "groupName"),
        (group_request("a/b"), "groupName"),
    ] {
        let r = update_group(node, request).await;
        let status = r.status.unwrap();
        assert_eq!(status.code, pb::Code::InvalidArgument as i32, "{status:?}");
        assert!(status.message.starts_with(field), "{status:?}");
    }

    // DELETE_SUBSCRIPTIONGROUP: SUCCESS, also for a group without a record (RocketMQ's).
    let delete = |group: &str| {
        RemotingCommand::request(
            rq::DELETE_SUBSCRIPTIONGROUP,
            fields(&[("groupName", group)]),
        )
    };
    assert_code(&call(&c, delete("Unknown")).await, rs::SUCCESS, "delete");
    assert_code(
        &call(&c, delete("Never")).await,
        rs::SUCCESS,
        "delete unknown",
    );
    assert_code(
        &call(&c, pull("Unknown", "AutoOffT")).await,
        rs::SUBSCRIPTION_GROUP_NOT_EXIST,
        "pull after the delete",
    );
    let gone = node
        .admin()
        .delete_subscription_group(pb::DeleteSubscriptionGroupRequest {
            group_name: "Unknown".into(),
            clean_offset: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(gone.status.as_ref()), pb::Code::NotFound, "{gone:?}");
    shutdown(nodes).await;
}
