//! `mqadmin`: RaftMQ's admin CLI, with RocketMQ's verbs and flags where they exist.
//!
//! `-n` is RocketMQ's NameServer flag, `;`-separated, falling back to `$NAMESRV_ADDR` as
//! RocketMQ does. It may also name broker nodes (their listenPort) of one Raft group: mqadmin
//! asks the first address that answers what it is ([`namesrv::detect`]).
//!
//! - **A NameServer** (`mqnamesrv`): `clusterList` prints RocketMQ's table of every group and
//!   node, `topicList` and `topicRoute` are the NameServer's answers, `updateTopic -c CLUSTER`
//!   creates the topic on every group of the cluster, and every other verb asks the group that
//!   holds its topic (or the only group), on any of that group's nodes.
//! - **Broker nodes**: every verb uses the first address that accepts a connection, except
//!   `clusterList`, which asks all of them and prints RaftMQ's Raft view: a node knows only its
//!   own role and indexes, so the table merges each node's report of itself.
//!
//! Admin verbs speak `raftmq.admin.v1.Admin` on a broker node; `sendMessage` and
//! `consumeMessage` speak the RocketMQ 5 gRPC API as the SDKs do (client id header,
//! `grpc-timeout`, 34-hex message ids); the NameServer is asked over RocketMQ 4.x remoting.
//!
//! Exit status: 0 on success; 1 when the server refuses (the message carries its code) or no
//! address is reachable; 2 on a usage error (clap names the flag).

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod connection;
mod namesrv;
mod query;
mod stats;
mod subgroup;
mod trace;

use anyhow::{anyhow, bail};
use clap::{Parser, Subcommand};
use proto::apache::rocketmq::v2;
use proto::raftmq::admin::v1 as pb;
use raftmq_client::{
    AdminClient, ClientError, ClientIdentity, MessageSpec, MessagingClient, Receive, check_admin,
    check_v2, cluster_views, resource,
};

use crate::namesrv::{Access, NameServer};

/// How often `--wait-leader` asks again.
const LEADER_POLL_INTERVAL: Duration = Duration::from_millis(200);
/// The broker ends a long poll this long before the request's gRPC deadline (`grpc.rs`), so a
/// deadline of wait + this margin makes it poll for exactly the wait.
const BROKER_DEADLINE_MARGIN: Duration = Duration::from_millis(500);
/// How much later than the gRPC deadline the CLI gives up on its own, should the broker not
/// honour the deadline.
const RECEIVE_GUARD: Duration = Duration::from_millis(1500);
/// How long a received message stays invisible before the broker redelivers it; the CLI acks
/// right after printing, so this only matters when the ack fails.
const INVISIBLE: Duration = Duration::from_secs(30);
/// Messages one ReceiveMessage asks for at most (the SDKs' default batch).
const RECEIVE_BATCH_MAX: u32 = 32;
/// RocketMQ's default queue count for `updateTopic` without `-r`/`-w`.
const DEFAULT_QUEUES: u32 = 8;

/// RaftMQ admin tool (RocketMQ's mqadmin verbs).
#[derive(Debug, Parser)]
#[command(name = "mqadmin", version)]
struct Args {
    /// NameServer addresses HOST:PORT, `;`-separated, or broker nodes of one group (their
    /// listenPort). Defaults to $NAMESRV_ADDR.
    #[arg(
        short = 'n',
        long = "namesrvAddr",
        global = true,
        value_name = "HOST:PORT[;…]"
    )]
    namesrv_addr: Option<String>,

    /// Seconds one request may take.
    #[arg(
        long,
        global = true,
        default_value_t = 20,
        value_name = "SECS",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    timeout: u64,

    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, Subcommand)]
enum Verb {
    /// With a NameServer: every group and node (RocketMQ's table). With broker nodes: the Raft
    /// group's members, role, term, commit and applied index, replication lag.
    #[command(name = "clusterList")]
    ClusterList {
        /// Wait up to SECS for the group to have a leader; exit 1 if it has none by then
        /// (prints the Raft view, also with a NameServer of one group).
        #[arg(long = "wait-leader", value_name = "SECS")]
        wait_leader: Option<u64>,
        /// Print only the leader's id (`n0`); exit 1 when there is no leader.
        #[arg(long = "leader-id")]
        leader_id: bool,
    },
    /// Topic names, one per line.
    #[command(name = "topicList")]
    TopicList,
    /// A topic's route as the NameServer serves it (JSON).
    #[command(name = "topicRoute")]
    TopicRoute {
        /// Topic name.
        #[arg(short = 't', long = "topic")]
        topic: String,
    },
    /// Create a topic or change its queue count.
    #[command(name = "updateTopic")]
    UpdateTopic {
        /// Topic name.
        #[arg(short = 't', long = "topic")]
        topic: String,
        /// Create it on every broker group of this cluster (needs a NameServer in -n).
        #[arg(short = 'c', long = "clusterName", conflicts_with = "broker_addr")]
        cluster: Option<String>,
        /// Create it on the group of this broker node (HOST:PORT, its listenPort).
        #[arg(short = 'b', long = "brokerAddr")]
        broker_addr: Option<String>,
        /// Read queue count. RaftMQ topics have one queue count: the larger of -r and -w.
        #[arg(short = 'r', long = "readQueueNums")]
        read_queues: Option<u32>,
        /// Write queue count (default 8, as RocketMQ's).
        #[arg(short = 'w', long = "writeQueueNums")]
        write_queues: Option<u32>,
    },
    /// Delete a topic, its messages' queues and every group's progress on it.
    #[command(name = "deleteTopic")]
    DeleteTopic {
        /// Topic name.
        #[arg(short = 't', long = "topic")]
        topic: String,
    },
    /// Per queue of a topic: min and max offset.
    #[command(name = "topicStatus")]
    TopicStatus {
        /// Topic name.
        #[arg(short = 't', long = "topic")]
        topic: String,
    },
    /// Per queue: how far a consumer group got, and its lag.
    #[command(name = "consumerProgress")]
    ConsumerProgress {
        /// Consumer group.
        #[arg(short = 'g', long = "groupName")]
        group: String,
        /// Only this topic (default: every topic the group consumed from).
        #[arg(short = 't', long = "topic")]
        topic: Option<String>,
    },
    /// Hand Raft leadership to another member (DLedger's `leadershipTransfer`).
    #[command(name = "leadershipTransfer")]
    LeadershipTransfer {
        /// The DLedger id of the new leader (`n1`).
        #[arg(long = "to", alias = "transfereeId", value_name = "ID")]
        to: String,
    },
    /// The message an offset message id names (RocketMQ's 32-hex OffsetID), in detail.
    #[command(name = "queryMsgById")]
    QueryMsgById {
        /// Offset message ids, comma-separated.
        #[arg(short = 'i', long = "msgId", value_delimiter = ',', required = true)]
        ids: Vec<String>,
    },
    /// Messages of a topic carrying a key: message id, queue and offset.
    #[command(name = "queryMsgByKey")]
    QueryMsgByKey {
        /// Topic name.
        #[arg(short = 't', long = "topic")]
        topic: String,
        /// Message key.
        #[arg(short = 'k', long = "msgKey")]
        key: String,
        /// At most this many, newest first.
        #[arg(short = 'f', long = "maxNum", default_value_t = 64)]
        max: u32,
    },
    /// The message with a client message id (RocketMQ's UNIQ_KEY), in detail.
    #[command(name = "queryMsgByUniqueKey")]
    QueryMsgByUniqueKey {
        /// Topic name.
        #[arg(short = 't', long = "topic")]
        topic: String,
        /// The client's message id.
        #[arg(short = 'i', long = "msgId")]
        id: String,
    },
    /// The message at an offset of a queue, in detail.
    #[command(name = "queryMsgByOffset")]
    QueryMsgByOffset {
        /// Topic name.
        #[arg(short = 't', long = "topic")]
        topic: String,
        /// Broker name (accepted for RocketMQ's scripts; the asked node answers).
        #[arg(short = 'b', long = "brokerName")]
        broker: Option<String>,
        /// Queue id.
        #[arg(short = 'i', long = "queueId")]
        queue: u32,
        /// Queue offset.
        #[arg(short = 'o', long = "offset")]
        offset: u64,
    },
    /// A message's trace from the trace topic: its sends, then each consumer group's acks.
    #[command(name = "queryMsgTraceById")]
    QueryMsgTraceById {
        /// The message id (the client's, RocketMQ's msgId / UNIQ_KEY).
        #[arg(short = 'i', long = "msgId")]
        id: String,
        /// The trace topic.
        #[arg(
            short = 't',
            long = "traceTopic",
            default_value = "RMQ_SYS_TRACE_TOPIC"
        )]
        topic: String,
        /// Only trace messages stored at or after this time (ms since the epoch).
        #[arg(short = 'b', long = "beginTimestamp", default_value_t = 0)]
        begin: u64,
        /// Only trace messages stored at or before this time (ms since the epoch).
        #[arg(short = 'e', long = "endTimestamp")]
        end: Option<u64>,
        /// At most this many trace messages per broker group.
        #[arg(short = 'c', long = "maxNum", default_value_t = 64)]
        max: u32,
    },
    /// Move a consumer group's offsets to the first message stored at or after a time.
    #[command(name = "resetOffsetByTime")]
    ResetOffsetByTime {
        /// Consumer group.
        #[arg(short = 'g', long = "group")]
        group: String,
        /// Topic name.
        #[arg(short = 't', long = "topic")]
        topic: String,
        /// `now`, milliseconds since the epoch, or yyyy-MM-dd#HH:mm:ss:SSS (local time).
        #[arg(short = 's', long = "timestamp")]
        timestamp: String,
        /// Accepted for RocketMQ's scripts (a reset always applies).
        #[arg(short = 'f', long = "force", default_value_t = true, action = clap::ArgAction::Set)]
        force: bool,
    },
    /// Each node's runtime figures (RocketMQ's GET_BROKER_RUNTIME_INFO table), sorted by key.
    #[command(name = "brokerStatus")]
    BrokerStatus {
        /// Only this node (HOST:PORT, its listenPort).
        #[arg(short = 'b', long = "brokerAddr", conflicts_with = "cluster")]
        broker_addr: Option<String>,
        /// Every node of this cluster's groups (needs a NameServer in -n).
        #[arg(short = 'c', long = "clusterName")]
        cluster: Option<String>,
    },
    /// Per topic and consumer group: backlog, in and out TPS, messages in the last 24 hours.
    #[command(name = "statsAll")]
    StatsAll {
        /// Only topics that had traffic in the last 24 hours.
        #[arg(short = 'a', long = "activeTopic")]
        active_topic: bool,
        /// Only this topic.
        #[arg(short = 't', long = "topic")]
        topic: Option<String>,
    },
    /// A consumer group's clients on every node, its subscriptions and how it consumes.
    #[command(name = "consumerConnection")]
    ConsumerConnection {
        /// Consumer group.
        #[arg(short = 'g', long = "consumerGroup")]
        group: String,
        /// Ask only this broker node (HOST:PORT, its listenPort).
        #[arg(short = 'b', long = "brokerAddr")]
        broker_addr: Option<String>,
    },
    /// A producer group's clients on every node (a 5.x producer's groups are its topics).
    #[command(name = "producerConnection")]
    ProducerConnection {
        /// Producer group.
        #[arg(short = 'g', long = "producerGroup")]
        group: String,
        /// A topic the group produces to (finds the broker group at a NameServer).
        #[arg(short = 't', long = "topic")]
        topic: String,
    },
    /// Create a subscription group's config, or replace it whole (RocketMQ's updateSubGroup).
    #[command(name = "updateSubGroup")]
    UpdateSubGroup(subgroup::UpdateArgs),
    /// Delete a subscription group's config (RocketMQ's deleteSubGroup).
    #[command(name = "deleteSubGroup")]
    DeleteSubGroup {
        /// Consumer group name.
        #[arg(short = 'g', long = "groupName")]
        group: String,
        /// Delete it on the group of this broker node (HOST:PORT, its listenPort).
        #[arg(short = 'b', long = "brokerAddr")]
        broker_addr: Option<String>,
        /// Delete it on every broker group of this cluster (needs a NameServer in -n), with
        /// its %RETRY% and %DLQ% topics.
        #[arg(short = 'c', long = "clusterName", conflicts_with = "broker_addr")]
        cluster: Option<String>,
        /// Forget the group's consumer offsets too.
        #[arg(
            short = 'r',
            long = "removeOffset",
            value_name = "BOOL",
            default_value_t = false,
            action = clap::ArgAction::Set
        )]
        remove_offset: bool,
    },
    /// A subscription group's config on every broker group that has it (without -g: every
    /// group's).
    #[command(name = "getConsumerConfig")]
    GetConsumerConfig {
        /// Consumer group name.
        #[arg(short = 'g', long = "groupName")]
        group: Option<String>,
    },
    /// Send one message through the RocketMQ 5 gRPC API.
    #[command(name = "sendMessage")]
    SendMessage {
        /// Topic name.
        #[arg(short = 't', long = "topic")]
        topic: String,
        /// Message body.
        #[arg(short = 'p', long = "body")]
        body: String,
        /// Message tag (RocketMQ's `-c`).
        #[arg(short = 'c', long = "tag")]
        tag: Option<String>,
        /// Message keys, comma-separated.
        #[arg(short = 'k', long = "keys", value_delimiter = ',')]
        keys: Vec<String>,
        /// FIFO message group: makes it a FIFO message.
        #[arg(long = "group", value_name = "MESSAGE_GROUP")]
        message_group: Option<String>,
    },
    /// Receive, print and acknowledge messages through the RocketMQ 5 gRPC API.
    #[command(name = "consumeMessage")]
    ConsumeMessage {
        /// Topic name.
        #[arg(short = 't', long = "topic")]
        topic: String,
        /// Consumer group.
        #[arg(short = 'g', long = "consumerGroup")]
        group: String,
        /// Stop after this many messages.
        #[arg(
            short = 'c',
            long = "count",
            default_value_t = 32,
            value_parser = clap::value_parser!(u32).range(1..)
        )]
        count: u32,
        /// Only messages with this tag (`a||b` for either).
        #[arg(long = "tag")]
        tag: Option<String>,
        /// Wait at most SECS for messages.
        #[arg(long = "wait", default_value_t = 5, value_name = "SECS")]
        wait: u64,
    },
}

impl Verb {
    /// The broker node a `-b` names: the verb goes there, without asking `-n`.
    fn broker_addr(&self) -> Option<String> {
        match self {
            Verb::DeleteSubGroup { broker_addr, .. } => broker_addr.clone(),
            Verb::UpdateSubGroup(args) => args.broker_addr.clone(),
            _ => None,
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mqadmin: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mqadmin: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let timeout = Duration::from_secs(args.timeout);
    // `brokerStatus -b` names its node itself.
    if let Verb::BrokerStatus {
        broker_addr: Some(addr),
        ..
    } = &args.verb
    {
        return stats::broker_status(std::slice::from_ref(addr), timeout).await;
    }
    // `updateTopic -b` names its broker itself; RocketMQ's scripts often give no -n with it.
    if let Verb::UpdateTopic {
        broker_addr: Some(addr),
        topic,
        read_queues,
        write_queues,
        ..
    } = &args.verb
    {
        let queues = queue_count(*read_queues, *write_queues);
        return update_topic(std::slice::from_ref(addr), timeout, topic, queues).await;
    }
    if let Verb::ConsumerConnection {
        group,
        broker_addr: Some(addr),
    } = &args.verb
    {
        return connection::consumer_connection(std::slice::from_ref(addr), timeout, group).await;
    }
    // `updateSubGroup -b` and `deleteSubGroup -b` name their broker themselves.
    let access = match args.verb.broker_addr() {
        Some(addr) => Access::Brokers(vec![addr]),
        None => {
            let addrs = raftmq_client::access_point(args.namesrv_addr.as_deref())?;
            namesrv::detect(&addrs, timeout).await?
        }
    };
    match args.verb {
        Verb::ClusterList {
            wait_leader,
            leader_id,
        } => {
            let nodes = match &access {
                Access::Brokers(addrs) => addrs.clone(),
                Access::NameServer(ns) if wait_leader.is_none() && !leader_id => {
                    return ns_cluster_list(ns, timeout).await;
                }
                Access::NameServer(ns) => ns.only_group(
                    "--wait-leader and --leader-id show one Raft group: give its nodes with -n",
                )?,
            };
            cluster_list(
                &nodes,
                timeout,
                wait_leader.map(Duration::from_secs),
                leader_id,
            )
            .await
        }
        Verb::TopicList => match &access {
            Access::Brokers(addrs) => topic_list(addrs, timeout).await,
            Access::NameServer(ns) => {
                for topic in ns.topic_list().await?.topic_list {
                    println!("{topic}");
                }
                Ok(ExitCode::SUCCESS)
            }
        },
        Verb::TopicRoute { topic } => topic_route(&access, &topic).await,
        Verb::UpdateTopic {
            topic,
            cluster,
            broker_addr: _,
            read_queues,
            write_queues,
        } => {
            let queues = queue_count(read_queues, write_queues);
            let groups = config_groups(
                &access,
                cluster.as_deref(),
                "give -c CLUSTER to create the topic on all of them, or -b HOST:PORT",
            )?;
            for nodes in &groups {
                update_topic(nodes, timeout, &topic, queues).await?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Verb::UpdateSubGroup(update) => {
            let request = update.request()?;
            let groups = config_groups(
                &access,
                update.cluster.as_deref(),
                "give -c CLUSTER to create the group on all of them, or -b HOST:PORT",
            )?;
            subgroup::update(&groups, timeout, &request).await
        }
        Verb::DeleteSubGroup {
            group,
            broker_addr: _,
            cluster,
            remove_offset,
        } => {
            let groups = config_groups(
                &access,
                cluster.as_deref(),
                "give -c CLUSTER to delete the group on all of them, or -b HOST:PORT",
            )?;
            subgroup::delete(&groups, cluster.as_deref(), timeout, &group, remove_offset).await
        }
        Verb::GetConsumerConfig { group } => {
            let groups = match &access {
                Access::Brokers(addrs) => vec![addrs.clone()],
                Access::NameServer(ns) => ns.groups().map(namesrv::nodes).collect(),
            };
            subgroup::get_consumer_config(&groups, timeout, group.as_deref()).await
        }
        Verb::DeleteTopic { topic } => {
            let groups = match &access {
                Access::Brokers(addrs) => vec![addrs.clone()],
                Access::NameServer(ns) => ns.groups_of_topic(&topic).await?,
            };
            for nodes in &groups {
                delete_topic(nodes, timeout, &topic).await?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Verb::TopicStatus { topic } => {
            let nodes = group_nodes(&access, Some(&topic), "").await?;
            topic_status(&nodes, timeout, &topic).await
        }
        Verb::ConsumerProgress { group, topic } => {
            let nodes = group_nodes(&access, topic.as_deref(), "give -t TOPIC").await?;
            consumer_progress(&nodes, timeout, &group, topic.as_deref()).await
        }
        Verb::LeadershipTransfer { to } => {
            let nodes = group_nodes(&access, None, "give the group's nodes with -n").await?;
            leadership_transfer(&nodes, timeout, &to).await
        }
        Verb::QueryMsgById { ids } => {
            let nodes = group_nodes(&access, None, "give the group's nodes with -n").await?;
            query::by_id(&nodes, timeout, &ids).await
        }
        Verb::QueryMsgByKey { topic, key, max } => {
            let nodes = group_nodes(&access, Some(&topic), "").await?;
            query::by_key(&nodes, timeout, &topic, &key, max).await
        }
        Verb::QueryMsgByUniqueKey { topic, id } => {
            let nodes = group_nodes(&access, Some(&topic), "").await?;
            query::by_unique_key(&nodes, timeout, &topic, &id).await
        }
        Verb::QueryMsgByOffset {
            topic,
            broker: _,
            queue,
            offset,
        } => {
            let nodes = group_nodes(&access, Some(&topic), "").await?;
            query::by_offset(&nodes, timeout, &topic, queue, offset).await
        }
        Verb::QueryMsgTraceById {
            id,
            topic,
            begin,
            end,
            max,
        } => {
            let groups = match &access {
                Access::Brokers(addrs) => vec![addrs.clone()],
                Access::NameServer(ns) => ns.groups_of_topic(&topic).await?,
            };
            let q = trace::TraceQuery {
                msg_id: id,
                topic,
                max,
                begin_ms: begin,
                end_ms: end.unwrap_or(u64::MAX),
            };
            trace::query_msg_trace_by_id(&groups, timeout, &q).await
        }
        Verb::ResetOffsetByTime {
            group,
            topic,
            timestamp,
            force,
        } => {
            let nodes = group_nodes(&access, Some(&topic), "").await?;
            query::reset_offset_by_time(&nodes, timeout, &group, &topic, &timestamp, force).await
        }
        Verb::BrokerStatus { cluster, .. } => {
            let nodes = match (&access, cluster) {
                (Access::Brokers(addrs), _) => addrs.clone(),
                (Access::NameServer(ns), Some(cluster)) => ns.cluster_groups(&cluster)?.concat(),
                (Access::NameServer(ns), None) => {
                    ns.only_group("give -c CLUSTER or -b HOST:PORT")?
                }
            };
            stats::broker_status(&nodes, timeout).await
        }
        Verb::StatsAll {
            active_topic,
            topic,
        } => {
            let groups = match &access {
                Access::Brokers(addrs) => vec![addrs.clone()],
                Access::NameServer(ns) => match &topic {
                    Some(t) => ns.groups_of_topic(t).await?,
                    None => ns.all_groups(),
                },
            };
            stats::stats_all(&groups, timeout, topic.as_deref(), active_topic).await
        }
        Verb::ConsumerConnection { group, .. } => {
            let retry_topic = format!("%RETRY%{group}");
            let nodes = group_nodes(&access, Some(&retry_topic), "").await?;
            connection::consumer_connection(&nodes, timeout, &group).await
        }
        Verb::ProducerConnection { group, topic } => {
            let nodes = group_nodes(&access, Some(&topic), "").await?;
            connection::producer_connection(&nodes, timeout, &group, &topic).await
        }
        Verb::SendMessage {
            topic,
            body,
            tag,
            keys,
            message_group,
        } => {
            let nodes = group_nodes(&access, Some(&topic), "").await?;
            let message = OutgoingMessage {
                topic,
                body,
                tag,
                keys,
                message_group,
            };
            send_message(&nodes, timeout, message).await
        }
        Verb::ConsumeMessage {
            topic,
            group,
            count,
            tag,
            wait,
        } => {
            let nodes = group_nodes(&access, Some(&topic), "").await?;
            let consume = Consume {
                topic,
                group,
                count,
                tag,
                wait: Duration::from_secs(wait),
                request_timeout: timeout,
            };
            consume_message(&nodes, &consume).await
        }
    }
}

/// The broker groups (each as its nodes) a config verb writes to: the group of the `-n` (or
/// `-b`) nodes, or with a NameServer every group of `cluster`, or without one the only group
/// (`choose` says how to pick when there are several).
fn config_groups(
    access: &Access,
    cluster: Option<&str>,
    choose: &str,
) -> anyhow::Result<Vec<Vec<String>>> {
    match (access, cluster) {
        (Access::Brokers(addrs), _) => Ok(vec![addrs.clone()]),
        (Access::NameServer(ns), Some(cluster)) => ns.cluster_groups(cluster),
        (Access::NameServer(ns), None) => Ok(vec![ns.only_group(choose)?]),
    }
}

/// The broker nodes a one-group verb asks: the `-n` nodes, or with a NameServer the nodes of
/// the group holding `topic` (without a topic, the only group; `choose` says how to pick when
/// there are several).
async fn group_nodes(
    access: &Access,
    topic: Option<&str>,
    choose: &str,
) -> anyhow::Result<Vec<String>> {
    match (access, topic) {
        (Access::Brokers(addrs), _) => Ok(addrs.clone()),
        (Access::NameServer(ns), Some(topic)) => ns.group_of_topic(topic).await,
        (Access::NameServer(ns), None) => ns.only_group(choose),
    }
}

// ---- NameServer verbs --------------------------------------------------------------------------

/// RocketMQ's `clusterList`: one row per node of every group, from the NameServer's ClusterInfo
/// and each node's GET_BROKER_RUNTIME_INFO (asked at once; a silent node prints `-`).
async fn ns_cluster_list(ns: &NameServer, timeout: Duration) -> anyhow::Result<ExitCode> {
    let mut rows = namesrv::cluster_rows(&ns.cluster);
    let mut asks = tokio::task::JoinSet::new();
    for (index, row) in rows.iter().enumerate() {
        let addr = row.addr.clone();
        asks.spawn(async move { (index, namesrv::runtime_info(addr, timeout).await) });
    }
    while let Some(answer) = asks.join_next().await {
        if let Ok((index, info)) = answer {
            rows[index].info = info;
        }
    }
    let now_ms = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
    println!("{}", namesrv::cluster_header());
    for row in &rows {
        println!("{}", namesrv::cluster_line(row, now_ms));
    }
    if rows.is_empty() {
        eprintln!(
            "mqadmin: no broker is registered at the NameServer {}",
            ns.addr()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// RocketMQ's `topicRoute`: the route JSON, pretty-printed with its keys sorted as fastjson
/// writes them.
async fn topic_route(access: &Access, topic: &str) -> anyhow::Result<ExitCode> {
    let ns = match access {
        Access::NameServer(ns) => ns,
        Access::Brokers(addrs) => bail!(
            "topicRoute asks a NameServer, and -n {} names broker nodes (topicStatus shows a \
             topic's queues on a broker)",
            addrs.join(";")
        ),
    };
    let route = ns.route_json(topic).await?.ok_or_else(|| {
        anyhow!(
            "no route of {topic} at the NameServer {} (TOPIC_NOT_EXIST)",
            ns.addr()
        )
    })?;
    println!("{}", serde_json::to_string_pretty(&route)?);
    Ok(ExitCode::SUCCESS)
}

// ---- clusterList -------------------------------------------------------------------------------

fn self_row(view: &pb::ClusterListResponse) -> Option<&pb::Node> {
    view.nodes.iter().find(|n| n.is_self)
}

fn is_role(node: &pb::Node, role: pb::Role) -> bool {
    node.role == role as i32
}

/// The leader, when the answers confirm one. A node that says it leads wins (the highest term
/// if two do, as after a partition). Otherwise a leader named by the others counts only if every
/// address answered and none of them is that leader: an unreachable address might be a crashed
/// leader the followers have not given up on yet.
fn confirmed_leader(views: &[Option<pb::ClusterListResponse>]) -> Option<String> {
    let answered: Vec<&pb::ClusterListResponse> = views.iter().flatten().collect();
    let claimed = answered
        .iter()
        .filter_map(|v| self_row(v))
        .filter(|n| is_role(n, pb::Role::Leader))
        .max_by_key(|n| n.term.unwrap_or(0));
    if let Some(leader) = claimed {
        return Some(leader.id.clone());
    }
    if answered.len() < views.len() {
        return None;
    }
    answered
        .iter()
        .filter_map(|v| self_row(v).map(|n| (n.term.unwrap_or(0), &v.leader_id)))
        .filter(|(_, id)| !id.is_empty() && !answered.iter().any(|v| &v.self_id == *id))
        .max_by_key(|(term, _)| *term)
        .map(|(_, id)| id.clone())
}

/// One row of the clusterList table; `None` is printed as `-`.
#[derive(Debug)]
struct Row {
    id: String,
    role: Option<&'static str>,
    addr: Option<String>,
    term: Option<u64>,
    commit: Option<u64>,
    applied: Option<u64>,
    lag: Option<u64>,
    raft_addr: String,
}

/// The group as the answers show it: members in the first answer's order, each from its own
/// report when it answered, lag from the leader's report.
fn merge(views: &[Option<pb::ClusterListResponse>]) -> Vec<Row> {
    let answered: Vec<&pb::ClusterListResponse> = views.iter().flatten().collect();
    let Some(base) = answered.first() else {
        return Vec::new();
    };
    let reports: HashMap<&str, &pb::Node> = answered
        .iter()
        .filter_map(|v| self_row(v))
        .map(|n| (n.id.as_str(), n))
        .collect();
    let leader_view = answered
        .iter()
        .filter(|v| self_row(v).is_some_and(|n| is_role(n, pb::Role::Leader)))
        .max_by_key(|v| self_row(v).and_then(|n| n.term).unwrap_or(0));
    base.nodes
        .iter()
        .map(|seen| {
            let node = reports.get(seen.id.as_str()).copied().unwrap_or(seen);
            let lag = leader_view
                .and_then(|v| v.nodes.iter().find(|n| n.id == node.id))
                .and_then(|n| n.lag);
            Row {
                id: node.id.clone(),
                role: role_name(node.role),
                addr: Some(node.listen_addr.clone()).filter(|a| !a.is_empty()),
                term: node.term,
                commit: node.commit_index,
                applied: node.applied_index,
                lag,
                raft_addr: node.raft_addr.clone(),
            }
        })
        .collect()
}

fn role_name(role: i32) -> Option<&'static str> {
    match pb::Role::try_from(role).ok()? {
        pb::Role::Leader => Some("LEADER"),
        pb::Role::Follower => Some("FOLLOWER"),
        pb::Role::Candidate => Some("CANDIDATE"),
        pb::Role::Learner => Some("LEARNER"),
        pb::Role::Shutdown => Some("SHUTDOWN"),
        pb::Role::Unspecified => None,
    }
}

/// RocketMQ's clusterList layout: one header line of `#` columns, then one row per member; every
/// cell is one whitespace-free token so scripts can split rows.
fn print_table(rows: &[Row]) {
    let dash = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    println!(
        "{:<6} {:<10} {:<22} {:>6} {:>10} {:>10} {:>8}  #RaftAddr",
        "#ID", "#Role", "#Addr", "#Term", "#Commit", "#Applied", "#Lag"
    );
    for r in rows {
        println!(
            "{:<6} {:<10} {:<22} {:>6} {:>10} {:>10} {:>8}  {}",
            r.id,
            r.role.unwrap_or("-"),
            r.addr.as_deref().unwrap_or("-"),
            dash(r.term),
            dash(r.commit),
            dash(r.applied),
            dash(r.lag),
            r.raft_addr
        );
    }
}

async fn cluster_list(
    addrs: &[String],
    timeout: Duration,
    wait_leader: Option<Duration>,
    leader_id_only: bool,
) -> anyhow::Result<ExitCode> {
    let deadline = wait_leader.map(|w| Instant::now() + w);
    let (views, leader) = loop {
        let views = cluster_views(addrs, timeout).await;
        let leader = confirmed_leader(&views);
        let waiting = deadline.is_some_and(|d| Instant::now() < d);
        if leader.is_some() || !waiting {
            break (views, leader);
        }
        tokio::time::sleep(LEADER_POLL_INTERVAL).await;
    };
    if views.iter().all(Option::is_none) {
        bail!("no broker answered ClusterList at -n {}", addrs.join(";"));
    }
    if leader_id_only {
        let leader = leader.ok_or_else(|| anyhow!("the group has no leader"))?;
        println!("{leader}");
        return Ok(ExitCode::SUCCESS);
    }
    print_table(&merge(&views));
    if let (Some(wait), None) = (wait_leader, &leader) {
        eprintln!("mqadmin: the group has no leader after {}s", wait.as_secs());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

// ---- topics and progress -----------------------------------------------------------------------

async fn topic_list(addrs: &[String], timeout: Duration) -> anyhow::Result<ExitCode> {
    let mut client = AdminClient::first_reachable(addrs).await?;
    let response = client.topic_list(timeout).await?;
    check_admin(response.status.as_ref(), "TopicList", client.addr())?;
    for topic in &response.topics {
        println!("{}", topic.name);
    }
    Ok(ExitCode::SUCCESS)
}

/// One topic queue count from `-r`/`-w`: RaftMQ's queues are read-write.
fn queue_count(read_queues: Option<u32>, write_queues: Option<u32>) -> u32 {
    let queues = match (read_queues, write_queues) {
        (None, None) => DEFAULT_QUEUES,
        (r, w) => r.unwrap_or(0).max(w.unwrap_or(0)),
    };
    if let (Some(r), Some(w)) = (read_queues, write_queues)
        && r != w
    {
        eprintln!(
            "mqadmin: RaftMQ topics have one queue count; using {queues} (the larger of -r and -w)"
        );
    }
    queues
}

/// Creates or updates `topic` on one group, through the first of its `nodes` that answers.
async fn update_topic(
    nodes: &[String],
    timeout: Duration,
    topic: &str,
    queues: u32,
) -> anyhow::Result<ExitCode> {
    let mut client = AdminClient::first_reachable(nodes).await?;
    let response = client.update_topic(topic, queues, timeout).await?;
    check_admin(response.status.as_ref(), "UpdateTopic", client.addr())?;
    println!("create topic to {} success.", client.addr());
    println!(
        "TopicConfig [topicName={topic}, readQueueNums={queues}, writeQueueNums={queues}, perm=RW-]"
    );
    Ok(ExitCode::SUCCESS)
}

async fn delete_topic(
    addrs: &[String],
    timeout: Duration,
    topic: &str,
) -> anyhow::Result<ExitCode> {
    let mut client = AdminClient::first_reachable(addrs).await?;
    let response = client.delete_topic(topic, timeout).await?;
    check_admin(response.status.as_ref(), "DeleteTopic", client.addr())?;
    println!("delete topic [{topic}] success.");
    Ok(ExitCode::SUCCESS)
}

async fn topic_status(
    addrs: &[String],
    timeout: Duration,
    topic: &str,
) -> anyhow::Result<ExitCode> {
    let mut client = AdminClient::first_reachable(addrs).await?;
    let response = client.topic_status(topic, timeout).await?;
    check_admin(response.status.as_ref(), "TopicStatus", client.addr())?;
    println!(
        "{:<32}  {:<4}  {:<20}  #Max Offset",
        "#Topic", "#QID", "#Min Offset"
    );
    for q in &response.queues {
        println!(
            "{topic:<32}  {:<4}  {:<20}  {}",
            q.queue_id, q.min_offset, q.max_offset
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn consumer_progress(
    addrs: &[String],
    timeout: Duration,
    group: &str,
    topic: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let mut client = AdminClient::first_reachable(addrs).await?;
    let response = client
        .consumer_progress(group, topic.unwrap_or_default(), timeout)
        .await?;
    check_admin(response.status.as_ref(), "ConsumerProgress", client.addr())?;
    println!(
        "{:<32}  {:<4}  {:<16}  {:<16}  {:<16}  {:<10}  #Diff",
        "#Topic", "#QID", "#Broker Offset", "#Consumer Offset", "#Next Offset", "#Inflight"
    );
    let (mut diff_total, mut inflight_total) = (0u64, 0u64);
    for q in &response.queues {
        println!(
            "{:<32}  {:<4}  {:<16}  {:<16}  {:<16}  {:<10}  {}",
            q.topic, q.queue_id, q.broker_offset, q.acked_offset, q.next_offset, q.inflight, q.lag
        );
        diff_total = diff_total.saturating_add(q.lag);
        inflight_total = inflight_total.saturating_add(q.inflight);
    }
    println!();
    println!("Consume Diff Total: {diff_total}");
    println!("Consume Inflight Total: {inflight_total}");
    Ok(ExitCode::SUCCESS)
}

// ---- leadershipTransfer ------------------------------------------------------------------------

/// The `-n` address of node `id`, found by asking every address who it is.
async fn address_of(addrs: &[String], id: &str, timeout: Duration) -> Option<String> {
    let views = cluster_views(addrs, timeout).await;
    addrs
        .iter()
        .zip(&views)
        .find(|(_, view)| view.as_ref().is_some_and(|v| v.self_id == id))
        .map(|(addr, _)| addr.clone())
}

/// Asks the first reachable node; a follower names the leader, which is then found among the
/// `-n` addresses (by asking each who it is) and asked in turn.
async fn leadership_transfer(
    addrs: &[String],
    timeout: Duration,
    to: &str,
) -> anyhow::Result<ExitCode> {
    let mut client = AdminClient::first_reachable(addrs).await?;
    let mut response = client.leadership_transfer(to, timeout).await?;
    let not_leader = response
        .status
        .as_ref()
        .is_some_and(|s| s.code == pb::Code::NotLeader as i32);
    if not_leader {
        let leader = response.leader_id.clone();
        if leader.is_empty() {
            // No leader known: nowhere to retry, report the refusal as it is.
            check_admin(
                response.status.as_ref(),
                "LeadershipTransfer",
                client.addr(),
            )?;
        }
        let addr = address_of(addrs, &leader, timeout).await.ok_or_else(|| {
            anyhow!(
                "{} is not the leader; the leader {leader} is not among -n {}",
                client.addr(),
                addrs.join(";")
            )
        })?;
        client = AdminClient::connect(&addr).await?;
        response = client.leadership_transfer(to, timeout).await?;
    }
    check_admin(
        response.status.as_ref(),
        "LeadershipTransfer",
        client.addr(),
    )?;
    println!("leadership transferred to {}", response.leader_id);
    Ok(ExitCode::SUCCESS)
}

// ---- RocketMQ 5 gRPC client --------------------------------------------------------------------

#[derive(Debug)]
struct OutgoingMessage {
    topic: String,
    body: String,
    tag: Option<String>,
    keys: Vec<String>,
    message_group: Option<String>,
}

/// A RocketMQ 5 client on the first reachable address, with a fresh identity.
async fn messaging_client(addrs: &[String]) -> anyhow::Result<MessagingClient> {
    let identity = Arc::new(ClientIdentity::new(0)?);
    let (addr, channel) = raftmq_client::first_reachable(addrs).await?;
    Ok(MessagingClient::new(addr, channel, identity))
}

async fn send_message(
    addrs: &[String],
    timeout: Duration,
    message: OutgoingMessage,
) -> anyhow::Result<ExitCode> {
    if message.body.is_empty() {
        bail!("-p/--body is empty; RocketMQ refuses empty messages");
    }
    let mut client = messaging_client(addrs).await?;
    let (message_id, _) = client.identity().message_id();
    let body = bytes::Bytes::from(message.body.into_bytes());
    let spec = MessageSpec {
        message_id: message_id.clone(),
        tag: message.tag,
        keys: message.keys,
        message_group: message.message_group,
        transactional: false,
        body_crc32: Some(format!("{:08X}", crc32fast::hash(&body))),
        born_host: client.identity().host.clone(),
        delivery_ms: None,
    };
    let outgoing = raftmq_client::message(resource(&message.topic), body, spec);
    let response = client.send(vec![outgoing], timeout).await?;
    let entry = response.entries.first();
    check_v2(
        entry
            .and_then(|e| e.status.as_ref())
            .or(response.status.as_ref()),
        "SendMessage",
        client.addr(),
    )?;
    let offset = entry.map_or(0, |e| e.offset);
    println!("{:<34}  {:<10}  #Send Result", "#MsgId", "#Offset");
    println!("{message_id:<34}  {offset:<10}  SEND_OK");
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug)]
struct Consume {
    topic: String,
    group: String,
    count: u32,
    tag: Option<String>,
    wait: Duration,
    /// The deadline of each ack.
    request_timeout: Duration,
}

/// Receives, prints and acks until `count` messages came or `wait` passed.
async fn consume_message(addrs: &[String], consume: &Consume) -> anyhow::Result<ExitCode> {
    let mut client = messaging_client(addrs).await?;
    let deadline = Instant::now() + consume.wait;
    let mut received: u32 = 0;
    println!(
        "{:<34}  {:<4}  {:<10}  {:<8}  #Body",
        "#MsgId", "#QID", "#Offset", "#Attempt"
    );
    while received < consume.count {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let batch = (consume.count - received).min(RECEIVE_BATCH_MAX);
        let messages = receive(&mut client, consume, batch, remaining).await?;
        for m in &messages {
            print_message(m);
        }
        ack(&mut client, consume, &messages).await?;
        received = received.saturating_add(u32::try_from(messages.len()).unwrap_or(u32::MAX));
        if Instant::now() >= deadline {
            break;
        }
        if messages.is_empty() {
            // The broker answered before the deadline (it keeps a margin); do not spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    eprintln!(
        "mqadmin: consumed {received} message(s) from {} as {}",
        consume.topic, consume.group
    );
    Ok(ExitCode::SUCCESS)
}

/// One long poll of up to `poll`: the messages, or none when nothing came in time.
async fn receive(
    client: &mut MessagingClient,
    consume: &Consume,
    batch: u32,
    poll: Duration,
) -> anyhow::Result<Vec<v2::Message>> {
    let receive = Receive {
        group: resource(&consume.group),
        topic: resource(&consume.topic),
        tag: consume.tag.clone().unwrap_or_else(|| "*".to_string()),
        batch: i32::try_from(batch).unwrap_or(i32::MAX),
        invisible: INVISIBLE,
        long_poll: poll,
    };
    // The gRPC deadline bounds the long poll: the broker answers shortly before it.
    let timeout = poll + BROKER_DEADLINE_MARGIN;
    let addr = client.addr().to_string();
    let received = tokio::time::timeout(timeout + RECEIVE_GUARD, client.receive(&receive, timeout))
        .await
        .map_err(|_| ClientError::NoAnswer {
            call: "ReceiveMessage",
            addr: addr.clone(),
            timeout,
        })??;
    if received.is_not_found() {
        return Ok(Vec::new());
    }
    check_v2(received.status.as_ref(), "ReceiveMessage", &addr)?;
    Ok(received.messages)
}

fn print_message(m: &v2::Message) {
    let sys = m.system_properties.clone().unwrap_or_default();
    println!(
        "{:<34}  {:<4}  {:<10}  {:<8}  {}",
        sys.message_id,
        sys.queue_id,
        sys.queue_offset.unwrap_or(-1),
        sys.delivery_attempt.unwrap_or(1),
        String::from_utf8_lossy(&m.body)
    );
}

async fn ack(
    client: &mut MessagingClient,
    consume: &Consume,
    messages: &[v2::Message],
) -> anyhow::Result<()> {
    if messages.is_empty() {
        return Ok(());
    }
    let (group, topic) = (resource(&consume.group), resource(&consume.topic));
    let response = client
        .ack(&group, &topic, messages, consume.request_timeout)
        .await?;
    check_v2(response.status.as_ref(), "AckMessage", client.addr())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `self_id`'s answer: it has `role` at `term` and believes `leader` leads.
    fn view(self_id: &str, role: pb::Role, term: u64, leader: &str) -> pb::ClusterListResponse {
        let nodes = ["n0", "n1", "n2"]
            .iter()
            .map(|id| pb::Node {
                id: (*id).to_string(),
                is_self: *id == self_id,
                role: if *id == self_id { role as i32 } else { 0 },
                term: (*id == self_id).then_some(term),
                commit_index: (*id == self_id).then_some(7),
                ..Default::default()
            })
            .collect();
        pb::ClusterListResponse {
            self_id: self_id.into(),
            leader_id: leader.into(),
            nodes,
            ..Default::default()
        }
    }

    #[test]
    fn a_node_that_says_it_leads_is_the_leader() {
        let views = [
            Some(view("n0", pb::Role::Follower, 2, "n1")),
            Some(view("n1", pb::Role::Leader, 2, "n1")),
            None,
        ];
        assert_eq!(confirmed_leader(&views).as_deref(), Some("n1"));
    }

    #[test]
    fn the_higher_term_wins_between_two_claimed_leaders() {
        let views = [
            Some(view("n0", pb::Role::Leader, 2, "n0")),
            Some(view("n1", pb::Role::Leader, 3, "n1")),
        ];
        assert_eq!(confirmed_leader(&views).as_deref(), Some("n1"));
    }

    #[test]
    fn a_leader_named_only_by_followers_needs_every_address_to_answer() {
        // n2 may be a crashed leader that the followers have not given up on yet.
        let followers = [
            Some(view("n0", pb::Role::Follower, 2, "n2")),
            Some(view("n1", pb::Role::Follower, 2, "n2")),
        ];
        let with_dead = [followers[0].clone(), followers[1].clone(), None];
        assert_eq!(confirmed_leader(&with_dead), None);
        assert_eq!(confirmed_leader(&followers).as_deref(), Some("n2"));
        // A node that answered and does not claim to lead is not the leader, whatever others say.
        let stale = [
            Some(view("n0", pb::Role::Follower, 2, "n1")),
            Some(view("n1", pb::Role::Candidate, 3, "")),
        ];
        assert_eq!(confirmed_leader(&stale), None);
    }

    #[test]
    fn merged_rows_take_each_node_from_its_own_answer() {
        let views = [
            Some(view("n0", pb::Role::Follower, 2, "n1")),
            None,
            Some(view("n2", pb::Role::Follower, 2, "n1")),
        ];
        let rows = merge(&views);
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["n0", "n1", "n2"]);
        assert_eq!((rows[0].role, rows[0].commit), (Some("FOLLOWER"), Some(7)));
        assert_eq!((rows[1].role, rows[1].commit), (None, None));
        assert_eq!((rows[2].role, rows[2].commit), (Some("FOLLOWER"), Some(7)));
    }
}
