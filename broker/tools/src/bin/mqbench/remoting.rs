//! `--protocol remoting`: the load as RocketMQ 4.x clients make it (tests/sdk4/WIRE.md).
//!
//! Setup finds the broker groups and the topic's queues:
//! - `-n` a **NameServer** (it answers GET_BROKER_CLUSTER_INFO, 106): the producer creates the
//!   topic (UPDATE_AND_CREATE_TOPIC, 17) on every group's master and waits for the route;
//!   both modes then take the route (GET_ROUTEINFO_BY_TOPIC, 105) and load each group's master
//!   (broker id 0, the Raft leader), or with `--target all` every node of the group;
//! - `-n` **broker nodes** (they answer 106 with REQUEST_CODE_NOT_SUPPORTED): one group, whose
//!   leader is found with the admin ClusterList as in gRPC mode; the producer creates the topic
//!   with 17, the consumer reads the queue ids with the admin TopicStatus.
//!
//! The load: `--connections` remoting connections per group (round-robin over its addresses),
//! `--inflight` workers on each. A producer worker sends SEND_MESSAGE_V2 (310) round-robin over
//! the group's write queues. The read queues are split between a group's consumer workers; a
//! worker pulls (PULL_MESSAGE, 11) its queues in turn from their min offset (GET_MIN_OFFSET,
//! 31) without holding, and once every one of its queues came back empty it long-polls (the
//! suspend flag, `--long-poll`). After each pull that brought messages it commits the next
//! offset with UPDATE_CONSUMER_OFFSET (15), which is what the report counts as the ack.
//!
//! Only SUCCESS counts as a success; any other code is counted under its RocketMQ name and a
//! failed call is never retried. A closed connection is reopened by the next call on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use raftmq_client::{AdminClient, check_admin, error_chain};
use raftmq_remoting::code::{request as rq, response as rs};
use raftmq_remoting::message;
use raftmq_remoting::route::{ClusterInfo, MASTER_ID, PERM_READ, PERM_WRITE, TopicRouteData};
use raftmq_remoting::{ExtFields, RemotingClient, RemotingCommand, RemotingError};

use crate::args::{Common, ConsumerArgs, ProducerArgs, Target};
use crate::connect::{SETUP_TIMEOUT, targets};
use crate::plan::Failure;
use crate::worker::{BROKER_DEADLINE_MARGIN, Receiver, Sender, body};

/// How long a remoting connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How often setup asks the NameServer whether the created topic is routed yet.
const ROUTE_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// The producer group of the sends (WIRE.md: SEND_MESSAGE_V2 field `a`).
const PRODUCER_GROUP: &str = "mqbench_producer";
/// Pull sys flags (RocketMQ's `PullSysFlag`): hold the pull; the request carries its
/// subscription.
const PULL_FLAG_SUSPEND: i32 = 1 << 1;
const PULL_FLAG_SUBSCRIPTION: i32 = 1 << 2;

// ---- connections -------------------------------------------------------------------------------

/// One remoting connection shared by the workers on it; reopened by the call after it closed.
#[derive(Debug)]
struct Link {
    addr: String,
    client: tokio::sync::Mutex<Option<Arc<RemotingClient>>>,
}

impl Link {
    async fn open(addr: &str) -> anyhow::Result<Arc<Link>> {
        let client = RemotingClient::connect(addr, CONNECT_TIMEOUT)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        Ok(Arc::new(Link {
            addr: addr.to_string(),
            client: tokio::sync::Mutex::new(Some(Arc::new(client))),
        }))
    }

    async fn client(&self) -> Result<Arc<RemotingClient>, RemotingError> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref().filter(|c| c.is_open()) {
            return Ok(Arc::clone(client));
        }
        let client = Arc::new(RemotingClient::connect(&self.addr, CONNECT_TIMEOUT).await?);
        *slot = Some(Arc::clone(&client));
        Ok(client)
    }

    /// The response (of any code), or the transport failure.
    async fn invoke(
        &self,
        request: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, Failure> {
        let client = self.client().await.map_err(|e| transport_failure(&e))?;
        client
            .invoke(request, timeout)
            .await
            .map_err(|e| transport_failure(&e))
    }
}

fn transport_failure(error: &RemotingError) -> Failure {
    let code = match error {
        RemotingError::Timeout { .. } => "REMOTING_TIMEOUT",
        RemotingError::Closed { .. } => "REMOTING_CLOSED",
        RemotingError::Io { .. } => "REMOTING_IO",
        _ => "REMOTING",
    };
    Failure {
        code: code.to_string(),
        message: error_chain(error),
    }
}

/// A response code as counted: RocketMQ's name for it.
fn code_failure(response: &RemotingCommand) -> Failure {
    let name = match response.code {
        rs::SYSTEM_ERROR => "SYSTEM_ERROR".to_string(),
        rs::SYSTEM_BUSY => "SYSTEM_BUSY".to_string(),
        rs::REQUEST_CODE_NOT_SUPPORTED => "REQUEST_CODE_NOT_SUPPORTED".to_string(),
        rs::FLUSH_SLAVE_TIMEOUT => "FLUSH_SLAVE_TIMEOUT".to_string(),
        rs::MESSAGE_ILLEGAL => "MESSAGE_ILLEGAL".to_string(),
        rs::SERVICE_NOT_AVAILABLE => "SERVICE_NOT_AVAILABLE".to_string(),
        rs::NO_PERMISSION => "NO_PERMISSION".to_string(),
        rs::TOPIC_NOT_EXIST => "TOPIC_NOT_EXIST".to_string(),
        rs::PULL_NOT_FOUND => "PULL_NOT_FOUND".to_string(),
        rs::QUERY_NOT_FOUND => "QUERY_NOT_FOUND".to_string(),
        rs::SUBSCRIPTION_GROUP_NOT_EXIST => "SUBSCRIPTION_GROUP_NOT_EXIST".to_string(),
        other => format!("CODE_{other}"),
    };
    Failure {
        code: name,
        message: response.remark.clone(),
    }
}

fn request(code: i32, fields: &[(&str, String)]) -> RemotingCommand {
    let fields: ExtFields = fields
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect();
    RemotingCommand::request(code, fields)
}

/// Calls and requires SUCCESS, for setup: the error names the call and the address.
async fn setup_call(
    client: &RemotingClient,
    what: &str,
    request: RemotingCommand,
) -> anyhow::Result<RemotingCommand> {
    client
        .invoke_ok(request, SETUP_TIMEOUT)
        .await
        .with_context(|| format!("{what} at {}", client.addr()))
}

// ---- setup -------------------------------------------------------------------------------------

/// A broker group as the load sees it: where to connect and the topic's queues there.
#[derive(Debug)]
struct Group {
    addrs: Vec<String>,
    queues: Vec<u32>,
}

/// Which of a route's queue counts a mode uses.
#[derive(Clone, Copy, Debug)]
enum Use {
    Write,
    Read,
}

/// The NameServer among `addrs` (the first that answers decides), or `None` for broker nodes.
async fn find_namesrv(addrs: &[String]) -> anyhow::Result<Option<(RemotingClient, ClusterInfo)>> {
    for addr in addrs {
        let Ok(client) = RemotingClient::connect(addr, CONNECT_TIMEOUT).await else {
            continue;
        };
        let probe = request(rq::GET_BROKER_CLUSTER_INFO, &[]);
        return match client.invoke(probe, SETUP_TIMEOUT).await {
            Ok(r) if r.code == rs::SUCCESS => {
                let info = serde_json::from_slice(&r.body)
                    .with_context(|| format!("the ClusterInfo from {addr} does not parse"))?;
                Ok(Some((client, info)))
            }
            // A broker answers REQUEST_CODE_NOT_SUPPORTED; a gRPC-only server closes.
            Ok(_) | Err(_) => Ok(None),
        };
    }
    Ok(None)
}

async fn create_topic(addr: &str, topic: &str, queues: u32) -> anyhow::Result<()> {
    let client = RemotingClient::connect(addr, CONNECT_TIMEOUT)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    let create = request(
        rq::UPDATE_AND_CREATE_TOPIC,
        &[
            ("topic", topic.to_string()),
            ("defaultTopic", "TBW102".to_string()),
            ("readQueueNums", queues.to_string()),
            ("writeQueueNums", queues.to_string()),
            ("perm", (PERM_READ | PERM_WRITE).to_string()),
            ("topicFilterType", "SINGLE_TAG".to_string()),
        ],
    );
    setup_call(&client, &format!("UPDATE_AND_CREATE_TOPIC {topic}"), create).await?;
    Ok(())
}

/// The route of `topic`, or `None` while the NameServer has none.
async fn route(ns: &RemotingClient, topic: &str) -> anyhow::Result<Option<TopicRouteData>> {
    let ask = request(rq::GET_ROUTEINFO_BY_TOPIC, &[("topic", topic.to_string())]);
    let response = ns
        .invoke(ask, SETUP_TIMEOUT)
        .await
        .with_context(|| format!("GET_ROUTEINFO_BY_TOPIC {topic} at {}", ns.addr()))?;
    match response.code {
        rs::SUCCESS => Ok(Some(serde_json::from_slice(&response.body).with_context(
            || format!("the route of {topic} from {} does not parse", ns.addr()),
        )?)),
        rs::TOPIC_NOT_EXIST => Ok(None),
        _ => {
            let f = code_failure(&response);
            bail!(
                "GET_ROUTEINFO_BY_TOPIC {topic} refused by {}: {}: {}",
                ns.addr(),
                f.code,
                f.message
            )
        }
    }
}

/// Creates `topic` on every group's master, then waits until the route shows it there with
/// `queues` queues (a broker registers a topic change within a few seconds).
async fn create_via_namesrv(
    ns: &RemotingClient,
    cluster: &ClusterInfo,
    topic: &str,
    queues: u32,
) -> anyhow::Result<()> {
    let masters: Vec<(&str, &str)> = cluster
        .broker_addr_table
        .values()
        .filter_map(|g| {
            Some((
                g.broker_name.as_str(),
                g.broker_addrs.get(&MASTER_ID)?.as_str(),
            ))
        })
        .collect();
    if masters.is_empty() {
        bail!(
            "no broker group with a master (broker id 0) is registered at {}",
            ns.addr()
        );
    }
    for (_, addr) in &masters {
        create_topic(addr, topic, queues).await?;
    }
    let deadline = tokio::time::Instant::now() + SETUP_TIMEOUT;
    loop {
        let routed = route(ns, topic).await?.is_some_and(|r| {
            masters.iter().all(|(name, _)| {
                r.queue_datas
                    .iter()
                    .any(|q| q.broker_name == *name && q.write_queue_nums == queues)
            })
        });
        if routed {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "{topic} was created but {} shows no route with {queues} queues after {}s",
                ns.addr(),
                SETUP_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(ROUTE_POLL_INTERVAL).await;
    }
}

/// The groups of `topic` from the NameServer's route.
async fn groups_via_namesrv(
    ns: &RemotingClient,
    topic: &str,
    target: Target,
    using: Use,
) -> anyhow::Result<(Vec<Group>, String)> {
    let route = route(ns, topic)
        .await?
        .ok_or_else(|| anyhow!("{} has no route of {topic} (TOPIC_NOT_EXIST)", ns.addr()))?;
    let mut groups = Vec::new();
    let mut described = Vec::new();
    for q in &route.queue_datas {
        let Some(data) = route
            .broker_datas
            .iter()
            .find(|b| b.broker_name == q.broker_name)
        else {
            continue;
        };
        let master = data.broker_addrs.get(&MASTER_ID).ok_or_else(|| {
            anyhow!(
                "the group {} of {topic} has no master (broker id 0) at {}",
                q.broker_name,
                ns.addr()
            )
        })?;
        let addrs: Vec<String> = match target {
            Target::Leader => vec![master.clone()],
            Target::All => data.broker_addrs.values().cloned().collect(),
        };
        let count = match using {
            Use::Write => q.write_queue_nums,
            Use::Read => q.read_queue_nums,
        };
        described.push(format!("{} {}", q.broker_name, addrs.join(";")));
        groups.push(Group {
            addrs,
            queues: (0..count).collect(),
        });
    }
    if groups.is_empty() {
        bail!("the route of {topic} at {} names no broker", ns.addr());
    }
    Ok((
        groups,
        format!("NameServer {} → {}", ns.addr(), described.join(", ")),
    ))
}

/// The broker groups to load for `topic`, creating it first (producer) with `create` queues.
async fn groups(
    common: &Common,
    topic: &str,
    create: Option<u32>,
    using: Use,
) -> anyhow::Result<(Vec<Group>, String)> {
    let addrs = raftmq_client::access_point(common.namesrv_addr.as_deref())?;
    if let Some((ns, cluster)) = find_namesrv(&addrs).await? {
        if let Some(queues) = create {
            create_via_namesrv(&ns, &cluster, topic, queues).await?;
        }
        return groups_via_namesrv(&ns, topic, common.target, using).await;
    }
    // Broker nodes of one group: the leader (or all of them) as in gRPC mode.
    let (addrs, described) = targets(common).await?;
    let queues = match create {
        Some(queues) => {
            create_topic(&addrs[0], topic, queues).await?;
            (0..queues).collect()
        }
        None => {
            let mut admin = AdminClient::connect(&addrs[0]).await?;
            let status = admin.topic_status(topic, SETUP_TIMEOUT).await?;
            check_admin(status.status.as_ref(), "TopicStatus", admin.addr())?;
            status.queues.iter().map(|q| q.queue_id).collect()
        }
    };
    Ok((vec![Group { addrs, queues }], described))
}

/// `connections` links round-robin over the group's addresses.
async fn links(group: &Group, connections: u32) -> anyhow::Result<Vec<Arc<Link>>> {
    let mut out = Vec::new();
    for i in 0..connections as usize {
        out.push(Link::open(&group.addrs[i % group.addrs.len()]).await?);
    }
    Ok(out)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

// ---- producer ----------------------------------------------------------------------------------

/// What every send shares.
#[derive(Debug)]
struct SendTemplate {
    topic: String,
    body: Bytes,
    tag: Option<String>,
    timeout: Duration,
    /// The first 16 hex digits of every UNIQ_KEY (pid and start time); a counter completes it.
    id_prefix: String,
    sequence: AtomicU64,
}

impl SendTemplate {
    /// A 32-hex UNIQ_KEY, as 4.x producers set it, and the properties carrying it.
    fn properties(&self) -> String {
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        let mut p = format!(
            "UNIQ_KEY\u{1}{}{sequence:016X}\u{2}WAIT\u{1}true\u{2}",
            self.id_prefix
        );
        if let Some(tag) = &self.tag {
            p.push_str(&format!("TAGS\u{1}{tag}\u{2}"));
        }
        p
    }
}

/// A remoting sender: SEND_MESSAGE_V2 round-robin over its group's write queues.
#[derive(Debug)]
pub(crate) struct RemotingSender {
    link: Arc<Link>,
    queues: Arc<[u32]>,
    next: usize,
    template: Arc<SendTemplate>,
}

impl Sender for RemotingSender {
    fn batch(&self) -> u64 {
        1
    }

    fn body_len(&self) -> u64 {
        self.template.body.len() as u64
    }

    async fn send(&mut self) -> (Vec<Option<Failure>>, bool) {
        let queue = self.queues[self.next % self.queues.len()];
        self.next = self.next.wrapping_add(1);
        let t = &self.template;
        // SEND_MESSAGE_V2's one-letter fields (WIRE.md §3).
        let send = request(
            rq::SEND_MESSAGE_V2,
            &[
                ("a", PRODUCER_GROUP.to_string()),
                ("b", t.topic.clone()),
                ("c", "TBW102".to_string()),
                ("d", "4".to_string()),
                ("e", queue.to_string()),
                ("f", "0".to_string()),
                ("g", now_ms().to_string()),
                ("h", "0".to_string()),
                ("i", t.properties()),
                ("j", "0".to_string()),
                ("k", "false".to_string()),
            ],
        )
        .with_body(t.body.clone());
        match self.link.invoke(send, t.timeout).await {
            Ok(r) if r.code == rs::SUCCESS => (vec![None], false),
            Ok(r) => (vec![Some(code_failure(&r))], false),
            Err(f) => (vec![Some(f)], true),
        }
    }
}

/// `--inflight` senders on each of `--connections` links per group, after creating the topic.
pub(crate) async fn senders(args: &ProducerArgs) -> anyhow::Result<(Vec<RemotingSender>, String)> {
    let common = &args.common;
    if args.batch != 1 {
        bail!(
            "--batch {}: --protocol remoting sends one message per SEND_MESSAGE_V2",
            args.batch
        );
    }
    if args.message_groups != 0 {
        bail!("--message-groups: --protocol remoting sends normal messages only");
    }
    let (groups, target) = groups(common, &args.topic, Some(args.queues), Use::Write).await?;
    let started_s = now_ms() / 1000;
    let template = Arc::new(SendTemplate {
        topic: args.topic.clone(),
        body: body(args.size as usize),
        tag: args.tag.clone(),
        timeout: Duration::from_secs(common.timeout),
        id_prefix: format!("{:08X}{:08X}", std::process::id(), started_s & 0xFFFF_FFFF),
        sequence: AtomicU64::new(0),
    });
    let mut senders = Vec::new();
    for group in &groups {
        let queues: Arc<[u32]> = group.queues.clone().into();
        if queues.is_empty() {
            continue;
        }
        for link in links(group, common.connections).await? {
            for _ in 0..args.inflight {
                senders.push(RemotingSender {
                    link: Arc::clone(&link),
                    queues: Arc::clone(&queues),
                    // Spread the workers' round-robins so they do not move in step.
                    next: senders.len(),
                    template: Arc::clone(&template),
                });
            }
        }
    }
    if senders.is_empty() {
        bail!("{} has no writable queue", args.topic);
    }
    Ok((senders, target))
}

// ---- consumer ----------------------------------------------------------------------------------

/// What every pull shares.
#[derive(Debug)]
struct PullTemplate {
    topic: String,
    group: String,
    tag: String,
    batch: u32,
    long_poll: Duration,
    timeout: Duration,
}

/// One queue's position: the offset of the next pull.
#[derive(Debug)]
struct Cursor {
    queue: u32,
    offset: u64,
}

/// A pulled message, as the report needs it.
#[derive(Debug)]
pub(crate) struct Pulled {
    body_len: u64,
    born_ms: u64,
}

/// A remoting receiver: pulls its queues in turn and commits the offsets it reached.
#[derive(Debug)]
pub(crate) struct RemotingReceiver {
    link: Arc<Link>,
    template: Arc<PullTemplate>,
    cursors: Vec<Cursor>,
    next: usize,
    /// Pulls in a row that found nothing; at `cursors.len()` every queue is drained and the
    /// worker long-polls.
    empty_in_a_row: usize,
    /// The queue of the last pull that brought messages and the offset to commit for it.
    to_commit: Option<(u32, u64)>,
}

impl RemotingReceiver {
    fn pull_request(&self, cursor: &Cursor, suspend: bool) -> RemotingCommand {
        let t = &self.template;
        let mut flag = PULL_FLAG_SUBSCRIPTION;
        if suspend {
            flag |= PULL_FLAG_SUSPEND;
        }
        request(
            rq::PULL_MESSAGE,
            &[
                ("consumerGroup", t.group.clone()),
                ("topic", t.topic.clone()),
                ("queueId", cursor.queue.to_string()),
                ("queueOffset", cursor.offset.to_string()),
                ("maxMsgNums", t.batch.to_string()),
                ("sysFlag", flag.to_string()),
                ("commitOffset", "0".to_string()),
                ("suspendTimeoutMillis", t.long_poll.as_millis().to_string()),
                ("subscription", t.tag.clone()),
                ("subVersion", "0".to_string()),
            ],
        )
    }
}

impl Receiver for RemotingReceiver {
    type Message = Pulled;

    async fn receive(&mut self) -> Result<Vec<Pulled>, Failure> {
        let index = self.next % self.cursors.len();
        self.next = self.next.wrapping_add(1);
        let suspend = self.empty_in_a_row >= self.cursors.len();
        let pull = self.pull_request(&self.cursors[index], suspend);
        let timeout = if suspend {
            self.template.long_poll + self.template.timeout
        } else {
            self.template.timeout
        };
        let response = self.link.invoke(pull, timeout).await?;
        let next_offset: Option<u64> = response
            .field("nextBeginOffset")
            .and_then(|v| v.parse().ok());
        let cursor = &mut self.cursors[index];
        match response.code {
            rs::SUCCESS => {
                let messages = decode_records(&response.body)?;
                let next = next_offset.unwrap_or(cursor.offset + messages.len() as u64);
                cursor.offset = next;
                if messages.is_empty() {
                    self.empty_in_a_row += 1;
                } else {
                    self.empty_in_a_row = 0;
                    self.to_commit = Some((cursor.queue, next));
                }
                Ok(messages)
            }
            rs::PULL_NOT_FOUND | rs::PULL_RETRY_IMMEDIATELY | rs::PULL_OFFSET_MOVED => {
                if let Some(next) = next_offset {
                    cursor.offset = next;
                }
                self.empty_in_a_row += 1;
                Ok(Vec::new())
            }
            _ => Err(code_failure(&response)),
        }
    }

    async fn ack(&mut self, messages: &[Pulled]) -> Result<Vec<Option<Failure>>, Failure> {
        let Some((queue, offset)) = self.to_commit.take() else {
            return Ok(messages.iter().map(|_| None).collect());
        };
        let t = &self.template;
        let commit = request(
            rq::UPDATE_CONSUMER_OFFSET,
            &[
                ("consumerGroup", t.group.clone()),
                ("topic", t.topic.clone()),
                ("queueId", queue.to_string()),
                ("commitOffset", offset.to_string()),
            ],
        );
        let response = self.link.invoke(commit, t.timeout).await?;
        if response.code != rs::SUCCESS {
            return Err(code_failure(&response));
        }
        Ok(messages.iter().map(|_| None).collect())
    }

    fn body_len(message: &Pulled) -> u64 {
        message.body_len
    }

    fn e2e_us(message: &Pulled) -> Option<u64> {
        Some(now_ms().saturating_sub(message.born_ms) * 1000)
    }
}

/// The messages of a pull body (MessageExt records back to back): their born times and body
/// lengths.
fn decode_records(body: &Bytes) -> Result<Vec<Pulled>, Failure> {
    let records = message::decode_records(body.clone()).map_err(|e| Failure {
        code: "MALFORMED_RECORD".to_string(),
        message: e.to_string(),
    })?;
    Ok(records
        .into_iter()
        .map(|r| Pulled {
            body_len: r.body.len() as u64,
            born_ms: u64::try_from(r.born_ms).unwrap_or(0),
        })
        .collect())
}

/// The group's read queues split between `--inflight` workers on each of `--connections`
/// links, each queue from its min offset (GET_MIN_OFFSET).
pub(crate) async fn receivers(
    args: &ConsumerArgs,
) -> anyhow::Result<(Vec<RemotingReceiver>, String)> {
    let common = &args.common;
    let (groups, target) = groups(common, &args.topic, None, Use::Read).await?;
    let template = Arc::new(PullTemplate {
        topic: args.topic.clone(),
        group: args.group.clone(),
        tag: args.tag.clone(),
        batch: args.batch,
        long_poll: Duration::from_secs(args.long_poll),
        timeout: Duration::from_secs(common.timeout).max(BROKER_DEADLINE_MARGIN),
    });
    let mut receivers = Vec::new();
    for group in &groups {
        let links = links(group, common.connections).await?;
        let workers = links.len() * args.inflight as usize;
        let mut assigned: Vec<Vec<Cursor>> = (0..workers).map(|_| Vec::new()).collect();
        for (i, &queue) in group.queues.iter().enumerate() {
            let offset = min_offset(&links[0], &args.topic, queue).await?;
            assigned[i % workers].push(Cursor { queue, offset });
        }
        for (i, cursors) in assigned.into_iter().enumerate() {
            if cursors.is_empty() {
                continue; // more workers than queues: a queue has one puller
            }
            receivers.push(RemotingReceiver {
                link: Arc::clone(&links[i % links.len()]),
                template: Arc::clone(&template),
                cursors,
                next: 0,
                empty_in_a_row: 0,
                to_commit: None,
            });
        }
    }
    if receivers.is_empty() {
        bail!("{} has no readable queue", args.topic);
    }
    Ok((receivers, target))
}

async fn min_offset(link: &Link, topic: &str, queue: u32) -> anyhow::Result<u64> {
    let client = link.client().await?;
    let ask = request(
        rq::GET_MIN_OFFSET,
        &[("topic", topic.to_string()), ("queueId", queue.to_string())],
    );
    let response = setup_call(
        &client,
        &format!("GET_MIN_OFFSET {topic} queue {queue}"),
        ask,
    )
    .await?;
    response
        .parsed("offset", "a queue offset")
        .with_context(|| format!("GET_MIN_OFFSET {topic} queue {queue} at {}", link.addr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut as _;

    /// A MessageExt record as WIRE.md §4 lays it out, with IPv4 hosts.
    fn record(born_ms: i64, body: &[u8]) -> Vec<u8> {
        let mut r = Vec::new();
        r.put_i32(0); // totalSize, set below
        r.put_u32(0xDAA3_20A7);
        r.put_i32(0);
        r.put_i32(1); // queueId
        r.put_i32(0);
        r.put_i64(7); // queueOffset
        r.put_i64(1234);
        r.put_i32(0); // sysFlag
        r.put_i64(born_ms);
        r.put_slice(&[127, 0, 0, 1]);
        r.put_i32(5000);
        r.put_i64(born_ms + 1);
        r.put_slice(&[127, 0, 0, 1]);
        r.put_i32(10911);
        r.put_i32(0);
        r.put_i64(0);
        r.put_i32(i32::try_from(body.len()).expect("short"));
        r.put_slice(body);
        r.put_i8(1);
        r.put_slice(b"T");
        r.put_i16(0);
        let total = i32::try_from(r.len()).expect("short");
        r[..4].copy_from_slice(&total.to_be_bytes());
        r
    }

    #[test]
    fn records_back_to_back_decode_to_their_bodies_and_born_times() {
        let mut body = record(1_000, b"hello");
        body.extend(record(2_000, b"RaftMQ!"));
        let pulled = decode_records(&Bytes::from(body)).expect("decodes");
        let got: Vec<(u64, u64)> = pulled.iter().map(|p| (p.born_ms, p.body_len)).collect();
        assert_eq!(got, [(1_000, 5), (2_000, 7)]);
    }

    #[test]
    fn a_cut_record_is_malformed() {
        let body = record(1_000, b"hello");
        for cut in [3, 20, body.len() - 1] {
            let f = decode_records(&Bytes::copy_from_slice(&body[..cut])).expect_err("cut");
            assert_eq!(f.code, "MALFORMED_RECORD", "cut at {cut}");
        }
    }

    #[test]
    fn unique_keys_are_32_hex_and_distinct() {
        let t = SendTemplate {
            topic: "T".into(),
            body: Bytes::new(),
            tag: Some("a".into()),
            timeout: Duration::from_secs(1),
            id_prefix: format!("{:08X}{:08X}", 42, 7),
            sequence: AtomicU64::new(0),
        };
        let key = |p: &str| {
            p.split('\u{2}')
                .next()
                .and_then(|kv| kv.split('\u{1}').nth(1))
                .map(String::from)
        };
        let (a, b) = (t.properties(), t.properties());
        let (ka, kb) = (key(&a).expect("a key"), key(&b).expect("a key"));
        assert_eq!(ka.len(), 32);
        assert!(ka.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(ka, kb);
        assert!(a.ends_with("TAGS\u{1}a\u{2}"), "{a:?}");
    }
}
