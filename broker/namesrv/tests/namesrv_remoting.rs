//! The NameServer over TCP: `NameServer::start` on port 0, driven by `RemotingClient` (and a raw
//! `Framed` socket where the client would hide what is tested). Brokers are played by the test:
//! each "broker" is one connection that registers, so dropping it is a broker's process dying.
//! Every wait is bounded by `TIMEOUT` or a polling deadline.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::{SinkExt as _, StreamExt as _};
use raftmq_namesrv::{NameServer, NamesrvConfig};
use raftmq_remoting::code::{request, response};
use raftmq_remoting::route::{
    ClusterInfo, KvTable, RegisterBrokerBody, TopicConfig, TopicConfigSerializeWrapper, TopicList,
    TopicRouteData,
};
use raftmq_remoting::{ExtFields, FrameCodec, RemotingClient, RemotingCommand, SerializeType};
use tokio_util::codec::Framed;

const TIMEOUT: Duration = Duration::from_secs(5);

async fn start(scan_interval_ms: u64) -> (NameServer, String) {
    let config = NamesrvConfig {
        listen_port: 0,
        bind_address: [127, 0, 0, 1].into(),
        scan_not_active_broker_interval_ms: scan_interval_ms,
    };
    let server = NameServer::start(config).await.expect("starts");
    let addr = server.local_addr().to_string();
    (server, addr)
}

async fn connect(addr: &str) -> RemotingClient {
    RemotingClient::connect(addr, TIMEOUT)
        .await
        .expect("connects")
}

fn register_request(group: &str, broker_addr: &str, id: u64, topics: &[&str]) -> RemotingCommand {
    let body = RegisterBrokerBody {
        topic_config_serialize_wrapper: TopicConfigSerializeWrapper {
            topic_config_table: topics
                .iter()
                .map(|t| (t.to_string(), TopicConfig::read_write(t, 4)))
                .collect(),
            data_version: Default::default(),
        },
        filter_server_list: Vec::new(),
    };
    RemotingCommand::request(request::REGISTER_BROKER, ExtFields::new())
        .with_field("clusterName", "DefaultCluster")
        .with_field("brokerName", group)
        .with_field("brokerAddr", broker_addr)
        .with_field("brokerId", id)
        .with_field("haServerAddr", format!("{broker_addr}-ha"))
        .with_body(serde_json::to_vec(&body).expect("encodes"))
}

fn route_request(topic: &str) -> RemotingCommand {
    RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC, ExtFields::new())
        .with_field("topic", topic)
}

async fn route(client: &RemotingClient, topic: &str) -> RemotingCommand {
    client
        .invoke(route_request(topic), TIMEOUT)
        .await
        .expect("answered")
}

/// The broker ids → addresses of `group` in `topic`'s route, empty if it has none.
async fn group_addrs(client: &RemotingClient, topic: &str, group: &str) -> BTreeMap<u64, String> {
    let answer = route(client, topic).await;
    if answer.code != response::SUCCESS {
        return BTreeMap::new();
    }
    let route: TopicRouteData = serde_json::from_slice(&answer.body).expect("route JSON");
    route
        .broker_datas
        .into_iter()
        .find(|b| b.broker_name == group)
        .map(|b| b.broker_addrs)
        .unwrap_or_default()
}

/// Polls until `group`'s addresses in `topic`'s route are `want`, or fails at the deadline.
async fn wait_for_addrs(client: &RemotingClient, topic: &str, group: &str, want: &[(u64, &str)]) {
    let want: BTreeMap<u64, String> = want.iter().map(|(id, a)| (*id, a.to_string())).collect();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let got = group_addrs(client, topic, group).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{group} in {topic}: got {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_broker_leaves_the_route_when_its_connection_drops() {
    let (server, addr) = start(5_000).await;
    let query = connect(&addr).await;

    // Phase 1: a master and a slave register over their own connections.
    let master = connect(&addr).await;
    let answer = master
        .invoke_ok(
            register_request("broker-a", "127.0.0.1:10911", 0, &["TopicTest"]),
            TIMEOUT,
        )
        .await
        .expect("registered");
    assert_eq!(answer.field("masterAddr"), Some("127.0.0.1:10911"));
    let slave = connect(&addr).await;
    let answer = slave
        .invoke_ok(
            register_request("broker-a", "127.0.0.1:10921", 1, &["TopicTest"]),
            TIMEOUT,
        )
        .await
        .expect("registered");
    assert_eq!(
        answer.field("masterAddr"),
        Some("127.0.0.1:10911"),
        "a slave learns its master"
    );
    assert_eq!(answer.field("haServerAddr"), Some("127.0.0.1:10911-ha"));
    let data: TopicRouteData =
        serde_json::from_slice(&route(&query, "TopicTest").await.body).expect("route JSON");
    assert_eq!(data.queue_datas.len(), 1);
    assert_eq!(data.queue_datas[0].broker_name, "broker-a");
    assert_eq!(data.broker_datas[0].broker_addrs.len(), 2);

    // Phase 2: the master's process dies — its connection closes — and it leaves at once,
    // long before its two-minute heartbeat timeout.
    drop(master);
    wait_for_addrs(&query, "TopicTest", "broker-a", &[(1, "127.0.0.1:10921")]).await;

    // Phase 3: the slave wins the election and registers as master over its own connection.
    slave
        .invoke_ok(
            register_request("broker-a", "127.0.0.1:10921", 0, &["TopicTest"]),
            TIMEOUT,
        )
        .await
        .expect("registered");
    wait_for_addrs(&query, "TopicTest", "broker-a", &[(0, "127.0.0.1:10921")]).await;

    drop(slave);
    let deadline = Instant::now() + TIMEOUT;
    while route(&query, "TopicTest").await.code != response::TOPIC_NOT_EXIST {
        assert!(Instant::now() < deadline, "the route outlived every broker");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_silent_broker_expires_after_its_heartbeat_timeout() {
    let (server, addr) = start(20).await;
    let broker = connect(&addr).await;
    let query = connect(&addr).await;
    let short = register_request("broker-a", "127.0.0.1:10911", 0, &["TopicTest"])
        .with_field("heartbeatTimeoutMillis", 200);
    broker.invoke_ok(short, TIMEOUT).await.expect("registered");
    let long = register_request("broker-b", "127.0.0.1:20911", 0, &["TopicTest"]);
    broker.invoke_ok(long, TIMEOUT).await.expect("registered");
    assert_eq!(group_addrs(&query, "TopicTest", "broker-a").await.len(), 1);

    // The connection stays open: only the timeout can remove broker-a, and not broker-b.
    wait_for_addrs(&query, "TopicTest", "broker-a", &[]).await;
    assert_eq!(group_addrs(&query, "TopicTest", "broker-b").await.len(), 1);
    assert!(broker.is_open());
    server.shutdown().await;
}

#[tokio::test]
async fn json_and_binary_headers_are_answered_in_their_own_type() {
    let (server, addr) = start(5_000).await;
    let client = connect(&addr).await;
    client
        .invoke_ok(
            register_request("broker-a", "127.0.0.1:10911", 0, &["TopicTest"]),
            TIMEOUT,
        )
        .await
        .expect("registered");
    for kind in [SerializeType::Json, SerializeType::RocketMq] {
        let mut request = route_request("TopicTest");
        request.serialize_type = kind;
        let answer = client.invoke(request, TIMEOUT).await.expect("answered");
        assert_eq!(
            answer.code,
            response::SUCCESS,
            "{kind:?}: {}",
            answer.remark
        );
        assert_eq!(answer.serialize_type, kind);
        let route: TopicRouteData = serde_json::from_slice(&answer.body).expect("route JSON");
        assert_eq!(route.broker_datas[0].broker_addrs[&0], "127.0.0.1:10911");

        let mut missing = route_request("NoSuchTopic");
        missing.serialize_type = kind;
        let answer = client.invoke(missing, TIMEOUT).await.expect("answered");
        assert_eq!(answer.code, response::TOPIC_NOT_EXIST);
        assert_eq!(answer.serialize_type, kind);
        assert_eq!(
            answer.remark,
            "No topic route info in name server for the topic: NoSuchTopic"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_codes_and_bad_headers_are_refused() {
    let (server, addr) = start(5_000).await;
    let client = connect(&addr).await;
    let answer = client
        .invoke(RemotingCommand::request(9999, ExtFields::new()), TIMEOUT)
        .await
        .expect("answered");
    assert_eq!(answer.code, response::REQUEST_CODE_NOT_SUPPORTED);
    assert_eq!(answer.remark, "request type 9999 not supported");

    let mut bad = register_request("broker-a", "127.0.0.1:10911", 0, &[]);
    bad.ext_fields.insert("brokerId".into(), "zero".into());
    let answer = client.invoke(bad, TIMEOUT).await.expect("answered");
    assert_eq!(answer.code, response::SYSTEM_ERROR);
    assert!(answer.remark.contains("brokerId"), "{}", answer.remark);

    let answer = client
        .invoke(
            RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC, ExtFields::new()),
            TIMEOUT,
        )
        .await
        .expect("answered");
    assert_eq!(answer.code, response::SYSTEM_ERROR);
    assert!(answer.remark.contains("topic"), "{}", answer.remark);
    assert!(client.is_open(), "a refused request keeps the connection");
    server.shutdown().await;
}

#[tokio::test]
async fn a_oneway_request_gets_no_answer() {
    let (server, addr) = start(5_000).await;
    let stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connects");
    let mut framed = Framed::new(stream, FrameCodec::default());
    let mut oneway = register_request("broker-a", "127.0.0.1:10911", 0, &["TopicTest"]);
    oneway.mark_oneway();
    oneway.opaque = 1;
    let mut ask = route_request("TopicTest");
    ask.opaque = 2;
    framed.send(oneway).await.expect("sends");
    framed.send(ask).await.expect("sends");
    let first = tokio::time::timeout(TIMEOUT, framed.next())
        .await
        .expect("in time")
        .expect("a frame")
        .expect("decodes");
    assert_eq!(first.opaque, 2, "the oneway request was answered");
    assert_eq!(
        first.code,
        response::SUCCESS,
        "the oneway registration took effect"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn cluster_info_topic_lists_and_unregister() {
    let (server, addr) = start(5_000).await;
    let client = connect(&addr).await;
    client
        .invoke_ok(
            register_request("broker-a", "127.0.0.1:10911", 0, &["A", "TBW102"]),
            TIMEOUT,
        )
        .await
        .expect("registered");
    client
        .invoke_ok(
            register_request("broker-b", "127.0.0.1:20911", 0, &["B"]),
            TIMEOUT,
        )
        .await
        .expect("registered");

    let answer = client
        .invoke_ok(
            RemotingCommand::request(request::GET_BROKER_CLUSTER_INFO, ExtFields::new()),
            TIMEOUT,
        )
        .await
        .expect("answered");
    let info: ClusterInfo = serde_json::from_slice(&answer.body).expect("cluster JSON");
    assert_eq!(info.cluster_addr_table["DefaultCluster"].len(), 2);
    assert_eq!(
        info.broker_addr_table["broker-b"].broker_addrs[&0],
        "127.0.0.1:20911"
    );

    let answer = client
        .invoke_ok(
            RemotingCommand::request(
                request::GET_ALL_TOPIC_LIST_FROM_NAMESERVER,
                ExtFields::new(),
            ),
            TIMEOUT,
        )
        .await
        .expect("answered");
    let all: TopicList = serde_json::from_slice(&answer.body).expect("topic list JSON");
    assert_eq!(
        all.topic_list.into_iter().collect::<Vec<_>>(),
        ["A", "B", "TBW102"]
    );
    let answer = client
        .invoke_ok(
            RemotingCommand::request(request::GET_TOPICS_BY_CLUSTER, ExtFields::new())
                .with_field("cluster", "DefaultCluster"),
            TIMEOUT,
        )
        .await
        .expect("answered");
    let of_cluster: TopicList = serde_json::from_slice(&answer.body).expect("topic list JSON");
    assert_eq!(of_cluster.topic_list.len(), 3);

    let unregister = RemotingCommand::request(request::UNREGISTER_BROKER, ExtFields::new())
        .with_field("clusterName", "DefaultCluster")
        .with_field("brokerName", "broker-b")
        .with_field("brokerAddr", "127.0.0.1:20911")
        .with_field("brokerId", 0);
    client
        .invoke_ok(unregister, TIMEOUT)
        .await
        .expect("unregistered");
    assert_eq!(route(&client, "B").await.code, response::TOPIC_NOT_EXIST);
    assert_eq!(route(&client, "A").await.code, response::SUCCESS);
    server.shutdown().await;
}

#[tokio::test]
async fn kv_config_is_put_read_listed_and_deleted() {
    let (server, addr) = start(5_000).await;
    let client = connect(&addr).await;
    let kv = |code: i32, key: &str| {
        RemotingCommand::request(code, ExtFields::new())
            .with_field("namespace", "ORDER_TOPIC_CONFIG")
            .with_field("key", key)
    };
    client
        .invoke_ok(
            kv(request::PUT_KV_CONFIG, "T").with_field("value", "broker-a:4"),
            TIMEOUT,
        )
        .await
        .expect("put");
    let answer = client
        .invoke_ok(kv(request::GET_KV_CONFIG, "T"), TIMEOUT)
        .await
        .expect("got");
    assert_eq!(answer.field("value"), Some("broker-a:4"));

    let list = RemotingCommand::request(request::GET_KVLIST_BY_NAMESPACE, ExtFields::new())
        .with_field("namespace", "ORDER_TOPIC_CONFIG");
    let answer = client
        .invoke_ok(list.clone(), TIMEOUT)
        .await
        .expect("listed");
    let table: KvTable = serde_json::from_slice(&answer.body).expect("KV JSON");
    assert_eq!(table.table.get("T").map(String::as_str), Some("broker-a:4"));

    client
        .invoke_ok(kv(request::DELETE_KV_CONFIG, "T"), TIMEOUT)
        .await
        .expect("deleted");
    let answer = client
        .invoke(kv(request::GET_KV_CONFIG, "T"), TIMEOUT)
        .await
        .expect("answered");
    assert_eq!(answer.code, response::QUERY_NOT_FOUND);
    assert_eq!(
        answer.remark,
        "No config item, Namespace: ORDER_TOPIC_CONFIG Key: T"
    );
    let answer = client.invoke(list, TIMEOUT).await.expect("answered");
    assert_eq!(answer.code, response::QUERY_NOT_FOUND);
    server.shutdown().await;
}
