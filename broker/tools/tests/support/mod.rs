//! In-process servers for the tools' tests: a NameServer on a free port and a single-node
//! broker that registers at it, plus running the built binaries.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::process::Output;
use std::time::{Duration, Instant};

use broker::Broker;
use raftmq_namesrv::{NameServer, NamesrvConfig};
use raftmq_remoting::code::{request as rq, response as rs};
use raftmq_remoting::route::ClusterInfo;
use raftmq_remoting::{ExtFields, RemotingClient, RemotingCommand};

/// How long a fresh single-node broker may take to elect itself.
pub const LEADER_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a registration (or a re-registration after a topic change) may take to show.
pub const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);
/// The cluster and group names of the test broker.
pub const CLUSTER: &str = "TestCluster";
pub const BROKER_NAME: &str = "broker-t";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A NameServer and one single-node broker registered at it; the store lives in `dir`.
pub struct Setup {
    pub namesrv: Option<NameServer>,
    pub namesrv_addr: String,
    pub broker: Option<Broker>,
    pub broker_addr: String,
    _dir: tempfile::TempDir,
}

impl Setup {
    /// Starts both and returns once the NameServer lists the broker as its group's master.
    pub async fn start() -> Setup {
        let namesrv = NameServer::start(NamesrvConfig {
            listen_port: 0,
            bind_address: [127, 0, 0, 1].into(),
            ..Default::default()
        })
        .await
        .unwrap();
        let namesrv_addr = namesrv.local_addr().to_string();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let text = format!(
            "brokerName={BROKER_NAME}\nbrokerClusterName={CLUSTER}\nbrokerIP1=127.0.0.1\n\
             bindAddress=127.0.0.1\nlistenPort={port}\ndefaultTopicQueueNums=4\n\
             storePathRootDir={}\nnamesrvAddr={namesrv_addr}\n\
             diskMaxUsedSpaceRatio=95\n",
            dir.path().join("store").display()
        );
        let (config, _) = broker::BrokerConfig::from_str(&text, "test.conf").unwrap();
        let broker = Broker::start(config).await.unwrap();
        let mut role = broker.service().store().node().role();
        tokio::time::timeout(
            LEADER_TIMEOUT,
            role.wait_for(|r| r.role == raft_log::Role::Leader),
        )
        .await
        .expect("the single node leads in time")
        .unwrap();
        let setup = Setup {
            namesrv: Some(namesrv),
            namesrv_addr,
            broker: Some(broker),
            broker_addr: format!("127.0.0.1:{port}"),
            _dir: dir,
        };
        let addr = setup.broker_addr.clone();
        setup
            .await_cluster(|c| {
                c.broker_addr_table
                    .get(BROKER_NAME)
                    .and_then(|b| b.broker_addrs.get(&0))
                    == Some(&addr)
            })
            .await;
        setup
    }

    async fn namesrv_client(&self) -> RemotingClient {
        RemotingClient::connect(&self.namesrv_addr, Duration::from_secs(5))
            .await
            .unwrap()
    }

    /// Polls the NameServer's ClusterInfo until `want` holds.
    pub async fn await_cluster(&self, want: impl Fn(&ClusterInfo) -> bool) {
        let client = self.namesrv_client().await;
        let started = Instant::now();
        loop {
            let r = RemotingCommand::request(rq::GET_BROKER_CLUSTER_INFO, ExtFields::new());
            let resp = client.invoke_ok(r, Duration::from_secs(5)).await.unwrap();
            let info: ClusterInfo = serde_json::from_slice(&resp.body).unwrap();
            if want(&info) {
                return;
            }
            assert!(
                started.elapsed() < REGISTER_TIMEOUT,
                "cluster info after {REGISTER_TIMEOUT:?}: {info:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls the NameServer until `topic` has a route.
    pub async fn await_route(&self, topic: &str) {
        let client = self.namesrv_client().await;
        let started = Instant::now();
        loop {
            let fields = ExtFields::from([("topic".to_string(), topic.to_string())]);
            let r = RemotingCommand::request(rq::GET_ROUTEINFO_BY_TOPIC, fields);
            let resp = client.invoke(r, Duration::from_secs(5)).await.unwrap();
            if resp.code == rs::SUCCESS {
                return;
            }
            assert!(
                started.elapsed() < REGISTER_TIMEOUT,
                "no route of {topic} after {REGISTER_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(&mut self) {
        if let Some(b) = self.broker.take() {
            b.shutdown().await.unwrap();
        }
        if let Some(n) = self.namesrv.take() {
            n.shutdown().await;
        }
    }
}

/// Runs the built tool `binary` with `args` (without `$NAMESRV_ADDR`) off the runtime.
pub async fn run(binary: &'static str, args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_string()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(binary)
            .args(&args)
            .env_remove("NAMESRV_ADDR")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

pub fn assert_success(o: &Output) {
    assert!(
        o.status.success(),
        "failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        o.status,
        stdout(o),
        stderr(o)
    );
}
