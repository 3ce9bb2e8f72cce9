//! Two Raft groups of one cluster behind one NameServer, driven as a RocketMQ 4.x producer.
//!
//! Goal: a cluster of several groups keeps taking sends while one group has lost its majority,
//! and nothing a group acknowledged is lost. Method: a real `mqnamesrv` and 2 × 3 real
//! `mqbroker` processes (groups broker-a and broker-b of cluster RaftCluster, confs generated
//! into a temp dir with free ports). The test waits until GET_BROKER_CLUSTER_INFO lists both
//! groups with a master, creates the topic on a follower of each group (it forwards to its
//! leader) and waits for the route to list both groups' queues. Then it acts as a 4.x producer
//! (`DefaultMQProducerImpl.sendDefaultImpl`): queues round-robin over the route, SEND_MESSAGE_V2
//! to the group's master (`brokerAddrs["0"]`), and a failed send retried on a queue of another
//! group. Checks, in phases:
//!
//! 1. before any fault every send succeeds and GET_MAX_OFFSET of each queue of each group equals
//!    the sends acknowledged there;
//! 2. after SIGKILL of broker-b's leader and one follower (its majority), for a few seconds: no
//!    send to broker-a fails, none to broker-b succeeds, and every message is acknowledged (by
//!    broker-a, after the retry);
//! 3. every send broker-a acknowledged is pulled (PULL_MESSAGE) at its queue offset;
//! 4. broker-b's killed nodes restart, a leader is elected, and every send broker-b acknowledged
//!    before the kill is pulled at its queue offset.
//!
//! Sends that fail are "unknown" (they may have been stored) and are never checked to be absent.
//! Logs of every process are kept in the temp dir and printed when the test fails; phase timings
//! are printed always (`--no-capture` shows them).
//!
//! `mqnamesrv` belongs to another package, so cargo does not build it for this test: it is
//! looked for beside `mqbroker` and the test says how to build it when it is missing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use broker::service::now_ms;
use bytes::Bytes;
use raftmq_remoting::code::{request as rq, response as rs};
use raftmq_remoting::ext_fields as fields;
use raftmq_remoting::{ExtFields, RemotingClient, RemotingCommand, RemotingError};

const CLUSTER: &str = "RaftCluster";
const GROUPS: [&str; 2] = ["broker-a", "broker-b"];
/// The group whose majority is killed.
const VICTIM: usize = 1;
const NODES: usize = 3;
const TOPIC: &str = "TwoGroupsTopic";
const QUEUES: u32 = 4;
/// Messages sent before the fault.
const SENDS_BEFORE_KILL: usize = 160;
/// How long the producer keeps sending with broker-b down.
const SENDING_AFTER_KILL: Duration = Duration::from_secs(5);
/// RocketMQ's `sendMsgTimeout` default.
const SEND_TIMEOUT: Duration = Duration::from_secs(3);
/// RocketMQ's `retryTimesWhenSendFailed` default: one try and two retries.
const SEND_RETRIES: usize = 2;
/// Any other request's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long processes may take to come up, elect, register, route or catch up.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(20);
/// How often the producer refreshes the route while a group is down (a 4.x client polls every
/// 30 s; shortened so that the run is short).
const ROUTE_REFRESH: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------------
// The processes.

mod support;

use support::free_ports;

/// `mqnamesrv`, beside `mqbroker` in the same target and profile directory.
fn namesrv_binary() -> PathBuf {
    let broker = Path::new(env!("CARGO_BIN_EXE_mqbroker"));
    let path = broker.with_file_name("mqnamesrv");
    let profile = broker
        .parent()
        .and_then(Path::file_name)
        .and_then(|p| p.to_str())
        .unwrap_or("debug");
    let flag = match profile {
        "debug" => String::new(),
        "release" => " --release".to_string(),
        other => format!(" --profile {other}"),
    };
    assert!(
        path.is_file(),
        "{} is missing: it is in another package, so build it first with \
         `cargo build{flag} -p raftmq-namesrv --bin mqnamesrv` (or run the whole workspace's tests)",
        path.display()
    );
    path
}

/// One process of the test: its program, conf and log, and the child while it runs.
struct Process {
    name: String,
    program: PathBuf,
    conf: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Process {
    fn new(dir: &Path, name: &str, program: PathBuf, conf: String) -> Process {
        let path = dir.join(format!("{name}.conf"));
        std::fs::write(&path, conf).unwrap();
        Process {
            name: name.to_string(),
            program,
            conf: path,
            log: dir.join(format!("{name}.log")),
            child: None,
        }
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} runs already", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(&self.program)
            .arg("-c")
            .arg(&self.conf)
            .env("RUST_LOG", "info,openraft=warn")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.program.display()));
        self.child = Some(child);
    }

    /// SIGKILL, then reap: only this test's own child is signalled.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Panics naming the process when it has exited (a bind failure, a crash).
    fn assert_running(&mut self) {
        let Some(c) = self.child.as_mut() else { return };
        if let Some(status) = c.try_wait().unwrap() {
            panic!("{} exited with {status}", self.name);
        }
    }

    fn dump_log(&self) {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(30)..];
        eprintln!(
            "---- {} log (last 30 lines) ----\n{}",
            self.name,
            tail.join("\n")
        );
    }
}

/// The NameServer and both groups. Dropping it kills every process it started.
struct Cluster {
    _dir: tempfile::TempDir,
    namesrv_addr: String,
    namesrv: Process,
    /// By group, by node number.
    brokers: Vec<Vec<Process>>,
    /// `127.0.0.1:listenPort` by group, by node number.
    addrs: Vec<Vec<String>>,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let ports = free_ports(1 + GROUPS.len() * NODES * 2);
        let namesrv_addr = format!("127.0.0.1:{}", ports[0]);
        let namesrv_conf = format!("listenPort={}\nbindAddress=127.0.0.1\n", ports[0]);
        let mut namesrv = Process::new(dir.path(), "namesrv", namesrv_binary(), namesrv_conf);
        let mut brokers = Vec::new();
        let mut addrs = Vec::new();
        for (g, group) in GROUPS.iter().enumerate() {
            let base = 1 + g * NODES * 2;
            let (listen, raft) = (
                &ports[base..base + NODES],
                &ports[base + NODES..base + 2 * NODES],
            );
            let peers = raft
                .iter()
                .enumerate()
                .map(|(i, p)| format!("n{i}-127.0.0.1:{p}"))
                .collect::<Vec<_>>()
                .join(";");
            let mut nodes = Vec::new();
            for (i, port) in listen.iter().enumerate() {
                let store = dir.path().join(format!("{group}-n{i}"));
                let conf = format!(
                    "brokerClusterName={CLUSTER}\nbrokerName={group}\nlistenPort={port}\n\
                     bindAddress=127.0.0.1\nbrokerIP1=127.0.0.1\nnamesrvAddr={namesrv_addr}\n\
                     storePathRootDir={}\nenableDLegerCommitLog=true\ndLegerGroup={group}\n\
                     dLegerPeers={peers}\ndLegerSelfId=n{i}\n\
                     mappedFileSizeCommitLog=67108864\nmappedFileSizeForEntryIndex=1048576\n\
                     diskMaxUsedSpaceRatio=95\n",
                    store.display()
                );
                let program = PathBuf::from(env!("CARGO_BIN_EXE_mqbroker"));
                nodes.push(Process::new(
                    dir.path(),
                    &format!("{group}-n{i}"),
                    program,
                    conf,
                ));
            }
            brokers.push(nodes);
            addrs.push(listen.iter().map(|p| format!("127.0.0.1:{p}")).collect());
        }
        namesrv.spawn();
        for p in brokers.iter_mut().flatten() {
            p.spawn();
        }
        Cluster {
            _dir: dir,
            namesrv_addr,
            namesrv,
            brokers,
            addrs,
        }
    }

    fn assert_running(&mut self) {
        self.namesrv.assert_running();
        for p in self.brokers.iter_mut().flatten() {
            p.assert_running();
        }
    }

    /// The node number of `addr` in group `g`.
    fn node_of(&self, g: usize, addr: &str) -> usize {
        self.addrs[g]
            .iter()
            .position(|a| a == addr)
            .unwrap_or_else(|| panic!("{addr} is no node of {}: {:?}", GROUPS[g], self.addrs[g]))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.namesrv.kill();
        for p in self.brokers.iter_mut().flatten() {
            p.kill();
        }
        if std::thread::panicking() {
            self.namesrv.dump_log();
            for p in self.brokers.iter().flatten() {
                p.dump_log();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Remoting requests, as the 4.x clients and mqadmin send them.

/// One connection per address, reconnected after a failure, as a client instance keeps them.
#[derive(Default)]
struct Connections {
    by_addr: HashMap<String, RemotingClient>,
}

impl Connections {
    /// `request` to `addr`: the response, or why there is none.
    async fn invoke(
        &mut self,
        addr: &str,
        request: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, RemotingError> {
        if self.by_addr.get(addr).is_none_or(|c| !c.is_open()) {
            let c = RemotingClient::connect(addr, timeout).await?;
            self.by_addr.insert(addr.to_string(), c);
        }
        let answer = self.by_addr[addr].invoke(request, timeout).await;
        if answer.is_err() {
            self.by_addr.remove(addr);
        }
        answer
    }

    /// Like `invoke`, and anything but SUCCESS panics.
    async fn call(&mut self, addr: &str, request: RemotingCommand, what: &str) -> RemotingCommand {
        let r = self.invoke(addr, request, ANSWER_TIMEOUT).await;
        let r = r.unwrap_or_else(|e| panic!("{what} at {addr}: {e}"));
        assert_eq!(
            r.code,
            rs::SUCCESS,
            "{what} at {addr}: remark {:?} fields {:?}",
            r.remark,
            r.ext_fields
        );
        r
    }
}

/// GET_BROKER_CLUSTER_INFO: brokerName → (cluster name listing it, broker id → address).
type Groups = BTreeMap<String, (Option<String>, BTreeMap<String, String>)>;

async fn cluster_info(conns: &mut Connections, namesrv: &str) -> Groups {
    let request = RemotingCommand::request(rq::GET_BROKER_CLUSTER_INFO, ExtFields::new());
    let r = conns
        .call(namesrv, request, "GET_BROKER_CLUSTER_INFO")
        .await;
    let info: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let mut out = Groups::new();
    let table = info["brokerAddrTable"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for (name, data) in table {
        let addrs = data["brokerAddrs"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(id, a)| (id.clone(), a.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let cluster = info["clusterAddrTable"]
            .as_object()
            .and_then(|c| {
                c.iter().find(|(_, names)| {
                    names
                        .as_array()
                        .is_some_and(|n| n.iter().any(|x| x == &name))
                })
            })
            .map(|(c, _)| c.clone());
        out.insert(name, (cluster, addrs));
    }
    out
}

/// Polls the cluster info until every group has a master and `nodes` registered nodes; returns
/// the masters' addresses by group.
async fn await_masters(
    cluster: &mut Cluster,
    conns: &mut Connections,
    nodes: usize,
) -> Vec<String> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        cluster.assert_running();
        let info = cluster_info(conns, &cluster.namesrv_addr).await;
        let masters: Vec<Option<String>> = GROUPS
            .iter()
            .map(|g| {
                let (c, addrs) = info.get(*g)?;
                (c.as_deref() == Some(CLUSTER) && addrs.len() == nodes)
                    .then(|| addrs.get("0").cloned())
                    .flatten()
            })
            .collect();
        if masters.iter().all(Option::is_some) {
            return masters.into_iter().map(Option::unwrap).collect();
        }
        assert!(
            Instant::now() < deadline,
            "cluster info after {SETTLE_TIMEOUT:?}: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// UPDATE_AND_CREATE_TOPIC as `mqadmin updateTopic` sends it.
fn create_topic_request() -> RemotingCommand {
    let q = QUEUES.to_string();
    RemotingCommand::request(
        rq::UPDATE_AND_CREATE_TOPIC,
        fields(&[
            ("topic", TOPIC),
            ("defaultTopic", "TBW102"),
            ("readQueueNums", &q),
            ("writeQueueNums", &q),
            ("perm", "6"),
            ("topicFilterType", "SINGLE_TAG"),
            ("topicSysFlag", "0"),
            ("order", "false"),
        ]),
    )
}

/// A topic's route as a producer uses it: its queues in the order of `TopicPublishInfo`
/// (groups sorted by name, then queue ids), and each group's master address, if any.
#[derive(Clone, Debug, Default)]
struct Route {
    queues: Vec<(String, u32)>,
    masters: BTreeMap<String, String>,
}

async fn route(conns: &mut Connections, namesrv: &str) -> Option<Route> {
    let request = RemotingCommand::request(rq::GET_ROUTEINFO_BY_TOPIC, fields(&[("topic", TOPIC)]));
    let r = conns
        .invoke(namesrv, request, ANSWER_TIMEOUT)
        .await
        .unwrap();
    if r.code != rs::SUCCESS {
        assert_eq!(r.code, rs::TOPIC_NOT_EXIST, "route: {:?}", r.remark);
        return None;
    }
    let data: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let mut queue_datas: Vec<(String, u32)> = data["queueDatas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            let name = q["brokerName"].as_str().unwrap().to_string();
            (
                name,
                u32::try_from(q["writeQueueNums"].as_u64().unwrap()).unwrap(),
            )
        })
        .collect();
    queue_datas.sort();
    let queues = queue_datas
        .iter()
        .flat_map(|(name, n)| (0..*n).map(|q| (name.clone(), q)))
        .collect();
    let masters = data["brokerDatas"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| {
            let master = b["brokerAddrs"]["0"].as_str()?;
            Some((b["brokerName"].as_str()?.to_string(), master.to_string()))
        })
        .collect();
    Some(Route { queues, masters })
}

/// SEND_MESSAGE_V2 (310) with ali-ons' one-letter field names.
fn send_request(queue: u32, body: &str) -> RemotingCommand {
    let q = queue.to_string();
    let born = now_ms().to_string();
    let props = format!("KEYS\u{1}{body}\u{2}");
    RemotingCommand::request(
        rq::SEND_MESSAGE_V2,
        fields(&[
            ("a", "TwoGroupsProducer"),
            ("b", TOPIC),
            ("c", "TBW102"),
            ("d", "4"),
            ("e", &q),
            ("f", "0"),
            ("g", &born),
            ("h", "0"),
            ("i", &props),
            ("j", "0"),
            ("k", "false"),
        ]),
    )
    .with_body(Bytes::from(body.to_string()))
}

// ---------------------------------------------------------------------------------------------
// The producer.

/// A send a group acknowledged.
#[derive(Clone, Debug)]
struct Ack {
    group: usize,
    queue: u32,
    queue_offset: u64,
    body: String,
}

/// What the producer saw, per group (indexed like `GROUPS`).
#[derive(Debug, Default)]
struct Tally {
    acked: [usize; 2],
    failed: [usize; 2],
    /// Why tries failed: "timeout", "closed", "connect", "no master in the route", "code N: …".
    failure_kinds: [BTreeMap<String, usize>; 2],
    /// Time spent in failed tries.
    failed_time: [Duration; 2],
    /// Messages whose every try failed.
    given_up: usize,
}

fn failure_kind(e: &RemotingError) -> String {
    match e {
        RemotingError::Timeout { code: -1, .. } => "connect timeout".into(),
        RemotingError::Timeout { .. } => "timeout".into(),
        RemotingError::Closed { .. } => "closed".into(),
        RemotingError::Io { .. } => "connect".into(),
        other => format!("other: {other}"),
    }
}

/// A 4.x producer (`DefaultMQProducerImpl.sendDefaultImpl` with its defaults, synchronous).
struct Producer {
    conns: Connections,
    namesrv: String,
    route: Route,
    routed_at: Instant,
    /// `TopicPublishInfo.sendWhichQueue`.
    next_queue: usize,
    next_message: usize,
    acks: Vec<Ack>,
}

impl Producer {
    fn new(namesrv: &str, route: Route) -> Producer {
        Producer {
            conns: Connections::default(),
            namesrv: namesrv.to_string(),
            route,
            routed_at: Instant::now(),
            next_queue: 0,
            next_message: 0,
            acks: Vec::new(),
        }
    }

    /// The next queue, not of `avoid` when another group has one (`selectOneMessageQueue`).
    fn select(&mut self, avoid: Option<&str>) -> (String, u32) {
        let count = self.route.queues.len();
        for _ in 0..count {
            let q = self.route.queues[self.next_queue % count].clone();
            self.next_queue += 1;
            if avoid != Some(q.0.as_str()) {
                return q;
            }
        }
        let q = self.route.queues[self.next_queue % count].clone();
        self.next_queue += 1;
        q
    }

    /// One try: the stored queue offset, or why not.
    async fn try_send(&mut self, name: &str, queue: u32, body: &str) -> Result<u64, String> {
        let Some(addr) = self.route.masters.get(name).cloned() else {
            return Err("no master in the route".into());
        };
        let r = self
            .conns
            .invoke(&addr, send_request(queue, body), SEND_TIMEOUT)
            .await
            .map_err(|e| failure_kind(&e))?;
        if r.code != rs::SUCCESS {
            let remark: String = r.remark.chars().take(100).collect();
            return Err(format!("code {}: {remark}", r.code));
        }
        let answered: u32 = r.field("queueId").unwrap().parse().unwrap();
        assert_eq!(answered, queue, "{name} stored {body} in another queue");
        Ok(r.field("queueOffset").unwrap().parse().unwrap())
    }

    /// One message, retried on another group's queue up to `SEND_RETRIES` times.
    async fn send_one(&mut self, tally: &mut Tally) {
        if self.routed_at.elapsed() >= ROUTE_REFRESH {
            if let Some(r) = route(&mut self.conns, &self.namesrv).await {
                self.route = r;
            }
            self.routed_at = Instant::now();
        }
        let body = format!("two-groups-{:06}", self.next_message);
        self.next_message += 1;
        let mut avoid: Option<String> = None;
        for _ in 0..=SEND_RETRIES {
            let (name, queue) = self.select(avoid.as_deref());
            let group = GROUPS.iter().position(|g| *g == name).unwrap();
            let t = Instant::now();
            match self.try_send(&name, queue, &body).await {
                Ok(queue_offset) => {
                    tally.acked[group] += 1;
                    self.acks.push(Ack {
                        group,
                        queue,
                        queue_offset,
                        body,
                    });
                    return;
                }
                Err(kind) => {
                    tally.failed[group] += 1;
                    tally.failed_time[group] += t.elapsed();
                    *tally.failure_kinds[group].entry(kind).or_default() += 1;
                    avoid = Some(name);
                }
            }
        }
        tally.given_up += 1;
    }
}

// ---------------------------------------------------------------------------------------------
// Reading back.

/// (queue offset, topic, body) of each MessageExt record of a pull body.
fn decode_records(body: Bytes) -> Vec<(u64, String, String)> {
    raftmq_remoting::message::decode_records(body)
        .unwrap()
        .into_iter()
        .map(|r| {
            assert_eq!(r.sys_flag & 0x30, 0, "an IPv6 host in a 127.0.0.1 cluster");
            let offset = u64::try_from(r.queue_offset).unwrap();
            (offset, r.topic, String::from_utf8(r.body.to_vec()).unwrap())
        })
        .collect()
}

/// Every record of `queue` below `end` at `addr`, by queue offset, pulled from offset 0.
async fn pull_queue(
    conns: &mut Connections,
    addr: &str,
    queue: u32,
    end: u64,
) -> Result<BTreeMap<u64, String>, String> {
    let mut records = BTreeMap::new();
    let mut offset = 0u64;
    while offset < end {
        let request = RemotingCommand::request(
            rq::PULL_MESSAGE,
            fields(&[
                ("consumerGroup", "TwoGroupsChecker"),
                ("topic", TOPIC),
                ("queueId", &queue.to_string()),
                ("queueOffset", &offset.to_string()),
                ("maxMsgNums", "32"),
                ("sysFlag", "0"),
                ("commitOffset", "0"),
                ("suspendTimeoutMillis", "0"),
                ("subscription", "*"),
                ("subVersion", "0"),
            ]),
        );
        let r = conns.invoke(addr, request, ANSWER_TIMEOUT).await;
        let r = r.map_err(|e| e.to_string())?;
        if r.code != rs::SUCCESS {
            return Err(format!(
                "pull {queue}@{offset}: code {} remark {:?}",
                r.code, r.remark
            ));
        }
        let batch = decode_records(r.body.clone());
        if batch.is_empty() {
            return Err(format!("pull {queue}@{offset}: SUCCESS without records"));
        }
        for (at, topic, body) in batch {
            assert_eq!(topic, TOPIC);
            records.insert(at, body);
        }
        offset = r.field("nextBeginOffset").unwrap().parse().unwrap();
    }
    Ok(records)
}

/// Pulls until every ack of group `g` is found at its queue offset in `addr`'s queues, for at
/// most `SETTLE_TIMEOUT` (a new leader may still be applying). Returns how many were checked.
async fn assert_acks_pulled(conns: &mut Connections, addr: &str, g: usize, acks: &[Ack]) -> usize {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let mine: Vec<&Ack> = acks.iter().filter(|a| a.group == g).collect();
    for queue in 0..QUEUES {
        let wanted: Vec<&&Ack> = mine.iter().filter(|a| a.queue == queue).collect();
        let end = wanted.iter().map(|a| a.queue_offset + 1).max().unwrap_or(0);
        let records = loop {
            match pull_queue(conns, addr, queue, end).await {
                Ok(r) => break r,
                Err(e) => {
                    assert!(Instant::now() < deadline, "{} at {addr}: {e}", GROUPS[g]);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        for a in wanted {
            assert_eq!(
                records.get(&a.queue_offset),
                Some(&a.body),
                "{} acknowledged {} at queue {queue} offset {}",
                GROUPS[g],
                a.body,
                a.queue_offset
            );
        }
    }
    mine.len()
}

async fn max_offset(conns: &mut Connections, addr: &str, queue: u32) -> u64 {
    let request = RemotingCommand::request(
        rq::GET_MAX_OFFSET,
        fields(&[("topic", TOPIC), ("queueId", &queue.to_string())]),
    );
    let r = conns.call(addr, request, "GET_MAX_OFFSET").await;
    r.field("offset").unwrap().parse().unwrap()
}

// ---------------------------------------------------------------------------------------------
// The scenario.

/// Creates the topic on a follower of each group (it forwards to its leader) and waits until
/// the NameServer routes it to both groups' masters.
async fn create_topic_on_both(
    cluster: &Cluster,
    conns: &mut Connections,
    masters: &[String],
) -> Route {
    for (g, master) in masters.iter().enumerate() {
        let leader = cluster.node_of(g, master);
        let follower = cluster.addrs[g][(leader + 1) % NODES].clone();
        let request = create_topic_request();
        conns
            .call(&follower, request, "UPDATE_AND_CREATE_TOPIC")
            .await;
    }
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let routed = |r: &Route| {
        GROUPS.iter().enumerate().all(|(g, name)| {
            let queues = r.queues.iter().filter(|q| q.0 == *name).count();
            queues == QUEUES as usize && r.masters.get(*name) == Some(&masters[g])
        })
    };
    loop {
        let r = route(conns, &cluster.namesrv_addr).await;
        if let Some(r) = r.as_ref()
            && routed(r)
        {
            return r.clone();
        }
        assert!(
            Instant::now() < deadline,
            "route after {SETTLE_TIMEOUT:?}: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every send succeeds, both groups get some, and each queue's max offset counts its acks.
async fn send_while_healthy(producer: &mut Producer, conns: &mut Connections, masters: &[String]) {
    let mut tally = Tally::default();
    let t = Instant::now();
    for _ in 0..SENDS_BEFORE_KILL {
        producer.send_one(&mut tally).await;
    }
    let took = t.elapsed();
    eprintln!(
        "timing: {SENDS_BEFORE_KILL} sends in {took:?} ({:.0}/s), acked {:?}",
        SENDS_BEFORE_KILL as f64 / took.as_secs_f64(),
        tally.acked
    );
    assert_eq!(
        tally.failed,
        [0, 0],
        "sends failed before any fault: {tally:?}"
    );
    for (g, master) in masters.iter().enumerate() {
        assert!(
            tally.acked[g] > 0,
            "{} got no message: {tally:?}",
            GROUPS[g]
        );
        for queue in 0..QUEUES {
            let acks = &producer.acks;
            let acked = acks
                .iter()
                .filter(|a| a.group == g && a.queue == queue)
                .count();
            let max = max_offset(conns, master, queue).await;
            let group = GROUPS[g];
            assert_eq!(
                max, acked as u64,
                "{group} queue {queue}: max offset vs acks"
            );
        }
    }
}

/// With `VICTIM` down for `SENDING_AFTER_KILL`: every message is acknowledged by the other
/// group, whose sends never fail, and no send to `VICTIM` succeeds.
async fn send_while_victim_down(producer: &mut Producer) {
    let (ok, down) = (1 - VICTIM, VICTIM);
    let mut tally = Tally::default();
    let started = Instant::now();
    let mut first_ack: Option<Duration> = None;
    while started.elapsed() < SENDING_AFTER_KILL {
        let acked = tally.acked[ok];
        producer.send_one(&mut tally).await;
        if tally.acked[ok] > acked {
            first_ack.get_or_insert(started.elapsed());
        }
    }
    let messages = tally.acked.iter().sum::<usize>() + tally.given_up;
    eprintln!(
        "timing: {SENDING_AFTER_KILL:?} after the kill: {messages} messages, acked {:?}, failed \
         tries {:?} taking {:?} ({:?}), first ack {first_ack:?}",
        tally.acked, tally.failed, tally.failed_time, tally.failure_kinds
    );
    let (ok_name, down_name) = (GROUPS[ok], GROUPS[down]);
    assert_eq!(tally.failed[ok], 0, "{ok_name} failed sends: {tally:?}");
    assert_eq!(
        tally.acked[down], 0,
        "{down_name} acked without a majority: {tally:?}"
    );
    assert!(
        tally.failed[down] > 0,
        "no send tried {down_name}: {tally:?}"
    );
    assert_eq!(tally.given_up, 0, "messages failed on every try: {tally:?}");
    assert!(
        tally.acked[ok] >= 10,
        "too few sends to {ok_name}: {tally:?}"
    );
}

/// A QueryRoute (RocketMQ 5 gRPC) at `node` lists each group's queues with that group's own
/// endpoint: `node`'s group at the address dialled, the other group at its master's address.
async fn assert_grpc_route_covers_both_groups(node: &str, masters: &[String]) {
    let channel = raftmq_client::endpoint(node).unwrap().connect_lazy();
    let identity = std::sync::Arc::new(raftmq_client::ClientIdentity::new(0).unwrap());
    let mut client = raftmq_client::MessagingClient::new(node, channel, identity);
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let route = client.query_route(TOPIC, ANSWER_TIMEOUT).await.unwrap();
        let mut by_group: BTreeMap<String, (usize, Vec<String>)> = BTreeMap::new();
        for q in &route.message_queues {
            let b = q.broker.as_ref().unwrap();
            let e = by_group.entry(b.name.clone()).or_default();
            e.0 += 1;
            for a in &b.endpoints.as_ref().unwrap().addresses {
                let addr = format!("{}:{}", a.host, a.port);
                if !e.1.contains(&addr) {
                    e.1.push(addr);
                }
            }
        }
        let want: BTreeMap<String, (usize, Vec<String>)> = BTreeMap::from([
            (
                GROUPS[0].to_string(),
                (QUEUES as usize, vec![node.to_string()]),
            ),
            (
                GROUPS[1].to_string(),
                (QUEUES as usize, vec![masters[1].clone()]),
            ),
        ]);
        if by_group == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "gRPC route at {node}: {by_group:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_continue_on_one_group_while_the_other_has_lost_its_majority() {
    let started = Instant::now();
    let mut cluster = Cluster::start();
    let mut conns = Connections::default();

    eprintln!("phase: the NameServer lists both groups, each with a master and three nodes");
    let t = Instant::now();
    let masters = await_masters(&mut cluster, &mut conns, NODES).await;
    eprintln!(
        "timing: both groups up in {:?}: masters {masters:?}",
        t.elapsed()
    );

    eprintln!("phase: the topic is created on a follower of each group and routed to both");
    let t = Instant::now();
    let route = create_topic_on_both(&cluster, &mut conns, &masters).await;
    eprintln!("timing: topic routed to both groups in {:?}", t.elapsed());

    eprintln!("phase: a RocketMQ 5 route from a node of broker-a covers both groups");
    assert_grpc_route_covers_both_groups(&cluster.addrs[0][0], &masters).await;

    eprintln!("phase: {SENDS_BEFORE_KILL} sends round-robin over both groups' queues");
    let mut producer = Producer::new(&cluster.namesrv_addr, route);
    send_while_healthy(&mut producer, &mut conns, &masters).await;
    let acks_before_kill = producer.acks.clone();

    let leader = cluster.node_of(VICTIM, &masters[VICTIM]);
    let victims = [leader, (leader + 1) % NODES];
    let name = GROUPS[VICTIM];
    eprintln!(
        "phase: SIGKILL {name} n{leader} (its leader) and n{}",
        victims[1]
    );
    for &i in &victims {
        cluster.brokers[VICTIM][i].kill();
    }
    send_while_victim_down(&mut producer).await;

    let ok = 1 - VICTIM;
    eprintln!(
        "phase: every send {} acknowledged is pulled from it",
        GROUPS[ok]
    );
    let t = Instant::now();
    let checked = assert_acks_pulled(&mut conns, &masters[ok], ok, &producer.acks).await;
    eprintln!(
        "timing: {checked} acks of {} pulled in {:?}",
        GROUPS[ok],
        t.elapsed()
    );

    eprintln!("phase: {name}'s killed nodes restart; its acks from before the kill are pulled");
    let t = Instant::now();
    for &i in &victims {
        cluster.brokers[VICTIM][i].spawn();
    }
    let masters = await_masters(&mut cluster, &mut conns, NODES).await;
    let master = &masters[VICTIM];
    eprintln!(
        "timing: {name} has a master again {:?} after the restart: {master}",
        t.elapsed()
    );
    let checked = assert_acks_pulled(&mut conns, master, VICTIM, &acks_before_kill).await;
    eprintln!(
        "timing: {checked} acks of {name} pulled {:?} after the restart",
        t.elapsed()
    );
    cluster.assert_running();
    eprintln!("timing: whole test {:?}", started.elapsed());
}
