//! broker.conf: RocketMQ's key names and defaults, read into a typed [`BrokerConfig`].
//!
//! A broker.conf is a Java properties file. Its keys go to two readers:
//!
//! - **the broker** (`listenPort`, `brokerName`, `maxMessageSize`, …), parsed here;
//! - **raft-log** (`dLegerPeers`, `flushDiskType`, `fileReservedTime`, …), parsed by
//!   [`raft_log::Config::from_properties`] and kept whole in [`BrokerConfig::raft_log`], so the
//!   broker never parses a raft-log key a second time.
//!
//! Every key the broker knows is a row of one table, `KEYS`: how its value is set on and printed
//! from a snake_case field, which raft-log key it is another name for, or why RaftMQ ignores it.
//! raft-log's keys are rows of raft-log's own table ([`raft_log::config::KEYS`]), which parses
//! and prints them; the broker names none of them except the store paths both read.
//!
//! # What a file may contain
//!
//! - A value that cannot be used is an error naming the key, the value, the file and the line.
//! - A key RaftMQ does not use is a [`Warning`], never an error, so a RocketMQ broker.conf loads
//!   as it is. Known RocketMQ keys that RaftMQ ignores say why; anything else is "unknown key".
//! - A repeated key: the last one wins, as in `java.util.Properties`, with a warning.
//!
//! # enableDLegerCommitLog
//!
//! RaftMQ always stores messages in raft-log. `enableDLegerCommitLog=true` runs the Raft group
//! of `dLegerPeers` (both `dLegerPeers` and `dLegerSelfId` are then required). `false`, the
//! RocketMQ default, runs a **single-node group**: self id `n0`, group name `brokerName`,
//! replication server on an ephemeral loopback port; `dLegerGroup`, `dLegerPeers`,
//! `dLegerSelfId` and `preferredLeaderIds` are then ignored with a warning. A store created
//! in single-node mode cannot later join a group under another membership.
//!
//! # Where RaftMQ differs from RocketMQ on DLedger
//!
//! - `flushDiskType=SYNC_FLUSH` is honoured (raft-log syncs before it acknowledges); RocketMQ
//!   ignores it in DLedger mode.
//! - `brokerRole` is ignored: the role follows the Raft election, as RocketMQ does in DLedger
//!   mode. `brokerId` is always 0: every RaftMQ node serves every request as the master and
//!   forwards writes to the leader.
//! - `mappedFileSizeCommitLog` sets raft-log's data segment size, as RocketMQ passes it to
//!   DLedger; `mappedFileSizeForEntryData` wins when both are set.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use raft_log::config::{Property, describes_group, parse_properties};

/// The key that switches between a Raft group and a single-node group.
const KEY_ENABLE_DLEDGER: &str = "enableDLegerCommitLog";

/// The peer list of the single-node group. Port 0: nobody dials a group of one, so the
/// replication server takes any free loopback port instead of one the operator must reserve.
const SINGLE_NODE_PEERS: &str = "n0-127.0.0.1:0";
/// The self id of the single-node group.
const SINGLE_NODE_SELF_ID: &str = "n0";

/// RocketMQ's `brokerName` when the host name cannot be read (`BrokerIdentity`).
const BROKER_NAME_FALLBACK: &str = "DEFAULT_BROKER";

/// The effective broker.conf: the broker's own settings plus raft-log's [`raft_log::Config`].
///
/// Built by [`BrokerConfig::from_file`] or [`BrokerConfig::from_str`]; every value has been
/// validated. Field docs name the key and RocketMQ's default.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// `brokerClusterName`, default `DefaultCluster`.
    pub broker_cluster_name: String,
    /// `brokerName`, default the host name (RocketMQ's default; `DEFAULT_BROKER` when the host
    /// name cannot be read).
    pub broker_name: String,
    /// `brokerId`: always 0. RocketMQ makes a master 0 and derives the id from the Raft role
    /// in DLedger mode; every RaftMQ node serves as the master, so another value is dropped
    /// with a warning.
    pub broker_id: u64,
    /// `listenPort`, default 10911: the port clients connect to.
    pub listen_port: u16,
    /// `bindAddress` (RocketMQ's `NettyServerConfig`), default `0.0.0.0`: the interface the
    /// client port is bound on.
    pub bind_address: IpAddr,
    /// `namesrvAddr`, default none: `;`-separated `host:port` name servers.
    pub namesrv_addr: Option<String>,
    /// `brokerIP1`: the host advertised to clients. None (the default here) advertises the
    /// address the client dialled, which is what a Raft group behind one endpoint needs.
    pub broker_ip1: Option<String>,
    /// `storePathRootDir`, default `$HOME/store`. raft-log keeps its data in
    /// `<storePathRootDir>/dledger-<dLegerSelfId>`.
    pub store_path_root_dir: PathBuf,
    /// `storePathCommitLog`, default `<storePathRootDir>/commitlog`. Accepted for
    /// compatibility; messages live in raft-log's store, as in RocketMQ's DLedger mode.
    pub store_path_commit_log: PathBuf,
    /// `enableDLegerCommitLog`, default false: whether to run the Raft group of `dLegerPeers`
    /// (true) or a single-node group (false). See the module docs.
    pub enable_dleger_commit_log: bool,
    /// `sendMessageThreadPoolNums`, default `min(CPU count, 4)`. Kept and validated so
    /// RocketMQ's DLedger files load; how the async server applies it is decided with the
    /// server.
    pub send_message_thread_pool_nums: u32,
    /// `autoCreateTopicEnable`, default true: create a topic on its first send.
    pub auto_create_topic_enable: bool,
    /// `autoCreateSubscriptionGroup`, default true: create a consumer group on first use.
    pub auto_create_subscription_group: bool,
    /// `defaultTopicQueueNums`, default 8: queues of an auto-created topic, 1..=1024.
    pub default_topic_queue_nums: u32,
    /// `maxMessageSize`, default 4194304 (4 MiB): the largest message body accepted. At most
    /// raft-log's largest entry body.
    pub max_message_size: u32,
    /// `defaultRetryMaxTimes`, default 16. **RaftMQ's own key**: RocketMQ has no broker-level
    /// setting and gives every auto-created subscription group `retryMaxTimes=16`; this is
    /// that 16, made configurable.
    pub default_retry_max_times: u32,
    /// `transactionTimeOut`, default 6000 (ms): how old a half message is before its producer
    /// is first asked whether to commit it.
    pub transaction_time_out: u64,
    /// `transactionCheckInterval`, default 30000 (ms, RocketMQ 5's default): the time between
    /// two checks of a half message.
    pub transaction_check_interval: u64,
    /// `transactionCheckMax`, default 15: checks without an answer before a half message is
    /// dropped (rolled back).
    pub transaction_check_max: u32,
    /// `unsafeAckBeforeReplication`, default false. **Unsafe, for fault-injection tests only**:
    /// SendMessage answers OK before the message is even proposed to the Raft group, so a
    /// crash or partition loses acknowledged messages — the negative control that proves the
    /// chaos harness sees loss. Never set in production.
    pub unsafe_ack_before_replication: bool,
    /// `unsafeCommitRollbacks`, default false. **Unsafe, for fault-injection tests only**: a
    /// rollback of a transaction commits it instead, so rolled-back messages are delivered —
    /// the negative control that proves the chaos harness sees them. Never set in production.
    pub unsafe_commit_rollbacks: bool,
    /// `traceTopicEnable`, default false: the leader creates the trace topic
    /// (`msgTraceTopicName`) with one queue, as RocketMQ's TopicConfigManager does, so clients
    /// with message trace on can send their records to it without auto-create.
    pub trace_topic_enable: bool,
    /// `msgTraceTopicName`, default `RMQ_SYS_TRACE_TOPIC`: the trace topic.
    pub msg_trace_topic_name: String,
    /// `brokerTraceEnable`, default false. **RaftMQ's own key**: the broker itself writes
    /// RocketMQ-format trace records (Pub, SubBefore, SubAfter, EndTransaction) of the messages
    /// it handles into the trace topic, for clients that write none (the 5.x SDKs).
    pub broker_trace_enable: bool,
    /// `metricsExporterType`, default `DISABLE`: `PROM` serves Prometheus text on
    /// `/metrics`, with `/health/live`, `/health/ready` and the dashboard, at
    /// `metricsPromExporterHost:metricsPromExporterPort`. RocketMQ's `OTLP_GRPC` and `LOG`
    /// are refused.
    pub metrics_exporter_type: MetricsExporterType,
    /// `metricsPromExporterHost`, default empty: the interface of the HTTP listener (empty:
    /// `bindAddress`, where RocketMQ takes `brokerIP1`).
    pub metrics_prom_exporter_host: Option<IpAddr>,
    /// `metricsPromExporterPort`, default 5557 (0: any free port).
    pub metrics_prom_exporter_port: u16,
    /// The raft-log keys: group, peers, store, durability, timers, retention.
    pub raft_log: raft_log::Config,
}

/// A key the broker does not use, reported so the binary can log it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// The key as written.
    pub key: String,
    /// The 1-based line of the key in the file.
    pub line: Option<usize>,
    /// What happens to it: "ignored: …why", "unknown key", "duplicate key: …".
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}: {}",
            self.key,
            line_suffix(&self.line),
            self.message
        )
    }
}

/// Why a broker.conf could not be loaded. Each variant names the file and, where one is to
/// blame, the key and line.
#[derive(Debug, thiserror::Error)]
pub enum BrokerConfigError {
    /// The file could not be read.
    #[error("cannot read {}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A line is not `key=value`.
    #[error("{source_name}{}: expected key=value, found {text:?}", line_suffix(.line))]
    Syntax {
        /// The file, or what the text came from.
        source_name: String,
        /// The 1-based line.
        line: Option<usize>,
        /// The line as written.
        text: String,
    },
    /// A key has a value RaftMQ cannot use.
    #[error("invalid value {value:?} for {key} in {source_name}{}: {reason}", line_suffix(.line))]
    Invalid {
        /// The file, or what the text came from.
        source_name: String,
        /// The key.
        key: String,
        /// The value as written.
        value: String,
        /// The 1-based line of the key.
        line: Option<usize>,
        /// Why it cannot be used.
        reason: String,
    },
    /// A required key is missing.
    #[error("missing required key {key} in {source_name}: {reason}")]
    Missing {
        /// The file, or what the text came from.
        source_name: String,
        /// The key.
        key: &'static str,
        /// Why it is required.
        reason: &'static str,
    },
}

fn line_suffix(line: &Option<usize>) -> String {
    line.map(|l| format!(" (line {l})")).unwrap_or_default()
}

/// Sets a broker field from a value; the error is the reason the value is unusable.
type Setter = fn(&mut BrokerConfig, &str) -> Result<(), String>;
/// Prints a broker field as a broker.conf value; None prints no line (RocketMQ prints no
/// line for a null value either).
type Getter = fn(&BrokerConfig) -> Option<String>;

/// Who reads a key.
#[derive(Clone, Copy)]
enum Owner {
    /// The broker: parsed by `set`, printed by `get`.
    Broker { set: Setter, get: Getter },
    /// Another name for a raft-log key, handed to raft-log under that name.
    Alias { of: &'static str },
    /// A RocketMQ key RaftMQ does not use: loading warns with `why`.
    Ignored { why: &'static str },
}

/// One row of the key table.
#[derive(Clone, Copy)]
struct KeySpec {
    key: &'static str,
    owner: Owner,
}

const fn broker(key: &'static str, set: Setter, get: Getter) -> KeySpec {
    KeySpec {
        key,
        owner: Owner::Broker { set, get },
    }
}

const fn ignored(key: &'static str, why: &'static str) -> KeySpec {
    KeySpec {
        key,
        owner: Owner::Ignored { why },
    }
}

const NOT_YET: &str = "ignored: RocketMQ feature not implemented by RaftMQ yet";
const NO_HA: &str =
    "ignored: replication runs over raft-log between the dLegerPeers addresses, not RocketMQ HA";
const NO_THREAD_POOLS: &str =
    "ignored: RaftMQ's async gRPC server has no per-request-type thread pool";
const RAFT_LOG_FLUSH: &str =
    "ignored: raft-log's flusher follows flushDiskType and flushIntervalCommitLog";
const NO_NETTY: &str = "ignored: a Netty setting; RaftMQ serves gRPC with tonic";

/// Every key RaftMQ knows: the one place where broker.conf names meet snake_case fields.
const KEYS: &[KeySpec] = &[
    // The broker's own keys.
    broker(
        "brokerClusterName",
        |c, v| set_name(&mut c.broker_cluster_name, v),
        |c| Some(c.broker_cluster_name.clone()),
    ),
    broker(
        "brokerName",
        |c, v| set_name(&mut c.broker_name, v),
        |c| Some(c.broker_name.clone()),
    ),
    broker(
        "brokerId",
        |c, v| parse_int(v, 0, u64::MAX).map(|n| c.broker_id = n),
        |c| Some(c.broker_id.to_string()),
    ),
    broker(
        "listenPort",
        |c, v| parse_int(v, 1, u16::MAX).map(|n| c.listen_port = n),
        |c| Some(c.listen_port.to_string()),
    ),
    broker(
        "bindAddress",
        |c, v| parse_ip(v).map(|ip| c.bind_address = ip),
        |c| Some(c.bind_address.to_string()),
    ),
    broker(
        "namesrvAddr",
        |c, v| parse_namesrv_addr(v).map(|a| c.namesrv_addr = a),
        |c| c.namesrv_addr.clone(),
    ),
    broker(
        "brokerIP1",
        |c, v| parse_host(v).map(|h| c.broker_ip1 = h),
        |c| c.broker_ip1.clone(),
    ),
    broker(
        "storePathRootDir",
        |c, v| parse_path(v).map(|p| c.store_path_root_dir = p),
        |c| Some(c.store_path_root_dir.display().to_string()),
    ),
    broker(
        "storePathCommitLog",
        |c, v| parse_path(v).map(|p| c.store_path_commit_log = p),
        |c| Some(c.store_path_commit_log.display().to_string()),
    ),
    broker(
        KEY_ENABLE_DLEDGER,
        |c, v| parse_bool(v).map(|b| c.enable_dleger_commit_log = b),
        |c| Some(c.enable_dleger_commit_log.to_string()),
    ),
    broker(
        "sendMessageThreadPoolNums",
        |c, v| parse_int(v, 1, 1024).map(|n| c.send_message_thread_pool_nums = n),
        |c| Some(c.send_message_thread_pool_nums.to_string()),
    ),
    broker(
        "autoCreateTopicEnable",
        |c, v| parse_bool(v).map(|b| c.auto_create_topic_enable = b),
        |c| Some(c.auto_create_topic_enable.to_string()),
    ),
    broker(
        "autoCreateSubscriptionGroup",
        |c, v| parse_bool(v).map(|b| c.auto_create_subscription_group = b),
        |c| Some(c.auto_create_subscription_group.to_string()),
    ),
    broker(
        "defaultTopicQueueNums",
        |c, v| parse_int(v, 1, 1024).map(|n| c.default_topic_queue_nums = n),
        |c| Some(c.default_topic_queue_nums.to_string()),
    ),
    // Up to i32::MAX because RocketMQ's field is a Java int; `finish` then holds it to
    // raft-log's far smaller entry limit.
    broker(
        "maxMessageSize",
        |c, v| parse_int(v, 1, i32::MAX.unsigned_abs()).map(|n| c.max_message_size = n),
        |c| Some(c.max_message_size.to_string()),
    ),
    // RaftMQ's own key: RocketMQ keeps retryMaxTimes per subscription group only.
    broker(
        "defaultRetryMaxTimes",
        |c, v| parse_int(v, 0, u32::MAX).map(|n| c.default_retry_max_times = n),
        |c| Some(c.default_retry_max_times.to_string()),
    ),
    broker(
        "transactionTimeOut",
        |c, v| parse_int(v, 1, u64::MAX).map(|n| c.transaction_time_out = n),
        |c| Some(c.transaction_time_out.to_string()),
    ),
    broker(
        "transactionCheckInterval",
        |c, v| parse_int(v, 1, u64::MAX).map(|n| c.transaction_check_interval = n),
        |c| Some(c.transaction_check_interval.to_string()),
    ),
    broker(
        "transactionCheckMax",
        |c, v| parse_int(v, 1, u32::MAX).map(|n| c.transaction_check_max = n),
        |c| Some(c.transaction_check_max.to_string()),
    ),
    // Modes RocketMQ offers and RaftMQ does not: accepted when off, an error when on, because
    // running without them would not be what the operator asked for.
    broker(
        "enableControllerMode",
        |_, v| {
            require_false(
                v,
                "RaftMQ replicates through raft-log; controller mode is not supported",
            )
        },
        |_| None,
    ),
    broker(
        "aclEnable",
        |_, v| require_false(v, "RaftMQ has no access control yet"),
        |_| None,
    ),
    broker(
        "authenticationEnabled",
        |_, v| require_false(v, "RaftMQ has no authentication yet"),
        |_| None,
    ),
    broker(
        "authorizationEnabled",
        |_, v| require_false(v, "RaftMQ has no authorization yet"),
        |_| None,
    ),
    broker(
        "traceTopicEnable",
        |c, v| parse_bool(v).map(|b| c.trace_topic_enable = b),
        |c| Some(c.trace_topic_enable.to_string()),
    ),
    broker(
        "msgTraceTopicName",
        |c, v| set_topic(&mut c.msg_trace_topic_name, v),
        |c| Some(c.msg_trace_topic_name.clone()),
    ),
    // RaftMQ's own key: RocketMQ's brokers write no trace records, its clients do.
    broker(
        "brokerTraceEnable",
        |c, v| parse_bool(v).map(|b| c.broker_trace_enable = b),
        |c| Some(c.broker_trace_enable.to_string()),
    ),
    broker(
        "metricsExporterType",
        |c, v| MetricsExporterType::parse(v).map(|t| c.metrics_exporter_type = t),
        |c| Some(c.metrics_exporter_type.as_str().to_string()),
    ),
    broker(
        "metricsPromExporterHost",
        |c, v| {
            let v = v.trim();
            if v.is_empty() {
                c.metrics_prom_exporter_host = None;
                return Ok(());
            }
            parse_ip(v).map(|ip| c.metrics_prom_exporter_host = Some(ip))
        },
        |c| c.metrics_prom_exporter_host.map(|ip| ip.to_string()),
    ),
    broker(
        "metricsPromExporterPort",
        |c, v| parse_int(v, 0, u16::MAX).map(|n| c.metrics_prom_exporter_port = n),
        |c| Some(c.metrics_prom_exporter_port.to_string()),
    ),
    broker(
        "unsafeAckBeforeReplication",
        |c, v| parse_bool(v).map(|b| c.unsafe_ack_before_replication = b),
        |c| Some(c.unsafe_ack_before_replication.to_string()),
    ),
    broker(
        "unsafeCommitRollbacks",
        |c, v| parse_bool(v).map(|b| c.unsafe_commit_rollbacks = b),
        |c| Some(c.unsafe_commit_rollbacks.to_string()),
    ),
    // RocketMQ hands this to DLedger as the data file size.
    KeySpec {
        key: "mappedFileSizeCommitLog",
        owner: Owner::Alias {
            of: "mappedFileSizeForEntryData",
        },
    },
    // RocketMQ keys RaftMQ deliberately ignores.
    ignored(
        "brokerRole",
        "ignored: the role follows the Raft election (RocketMQ overrides it in DLedger mode too)",
    ),
    ignored("brokerIP2", NO_HA),
    ignored("haListenPort", NO_HA),
    ignored("haMasterAddress", NO_HA),
    ignored("haSendHeartbeatInterval", NO_HA),
    ignored(
        "enableSlaveActingMaster",
        "ignored: every RaftMQ node serves every request",
    ),
    ignored(
        "slaveReadEnable",
        "ignored: every RaftMQ node serves every request",
    ),
    ignored(
        "storePathDLedgerCommitLog",
        "ignored: raft-log stores in <storePathRootDir>/dledger-<dLegerSelfId>",
    ),
    ignored(
        "enableBatchPush",
        "ignored: raft-log always batches replication (see maxBatchAppendEntries)",
    ),
    ignored(
        "cleanFileForciblyEnable",
        "ignored: raft-log deletes the oldest segments whenever diskMaxUsedSpaceRatio is exceeded",
    ),
    ignored(
        "transientStorePoolEnable",
        "ignored: raft-log writes into the page cache; there is no off-heap write pool",
    ),
    ignored(
        "transientStorePoolSize",
        "ignored: raft-log writes into the page cache; there is no off-heap write pool",
    ),
    ignored("flushCommitLogLeastPages", RAFT_LOG_FLUSH),
    ignored("flushCommitLogThoroughInterval", RAFT_LOG_FLUSH),
    ignored("commitIntervalCommitLog", RAFT_LOG_FLUSH),
    ignored("commitCommitLogLeastPages", RAFT_LOG_FLUSH),
    ignored("warmMapedFileEnable", RAFT_LOG_FLUSH),
    ignored("pullMessageThreadPoolNums", NO_THREAD_POOLS),
    ignored("putMessageFutureThreadPoolNums", NO_THREAD_POOLS),
    ignored("queryMessageThreadPoolNums", NO_THREAD_POOLS),
    ignored("ackMessageThreadPoolNums", NO_THREAD_POOLS),
    ignored("adminBrokerThreadPoolNums", NO_THREAD_POOLS),
    ignored("clientManageThreadPoolNums", NO_THREAD_POOLS),
    ignored("consumerManageThreadPoolNums", NO_THREAD_POOLS),
    ignored("heartbeatThreadPoolNums", NO_THREAD_POOLS),
    ignored("endTransactionThreadPoolNums", NO_THREAD_POOLS),
    ignored("serverWorkerThreads", NO_NETTY),
    ignored("serverSelectorThreads", NO_NETTY),
    ignored("useEpollNativeSelector", NO_NETTY),
    ignored("rocketmqHome", "ignored: RaftMQ needs no ROCKETMQ_HOME"),
    ignored("brokerPermission", NOT_YET),
    ignored("mappedFileSizeConsumeQueue", NOT_YET),
    ignored("flushIntervalConsumeQueue", NOT_YET),
    ignored("messageDelayLevel", NOT_YET),
    ignored("timerWheelEnable", NOT_YET),
    ignored("enablePropertyFilter", NOT_YET),
    ignored("duplicationEnable", NOT_YET),
];

fn spec(key: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|s| s.key == key)
}

impl BrokerConfig {
    /// Loads a broker.conf file. See [`BrokerConfig::from_str`].
    ///
    /// # Errors
    /// The file cannot be read, or see [`BrokerConfig::from_str`].
    pub fn from_file(path: impl AsRef<Path>) -> Result<(Self, Vec<Warning>), BrokerConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| BrokerConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_str(&text, &path.display().to_string())
    }

    /// Reads broker.conf text; `source_name` (usually the file path) appears in errors. Returns
    /// the config and the warnings about keys RaftMQ does not use.
    ///
    /// # Errors
    /// A line that is not `key=value`; a value that cannot be used; a missing `dLegerPeers` or
    /// `dLegerSelfId` when `enableDLegerCommitLog=true`. Each names the key and line.
    ///
    /// # Examples
    /// ```
    /// use broker::config::BrokerConfig;
    ///
    /// let text = "listenPort = 30911\nbrokerRole = SLAVE\n";
    /// let (config, warnings) = BrokerConfig::from_str(text, "example.conf")?;
    /// assert_eq!(config.listen_port, 30911);
    /// assert_eq!(config.max_message_size, 4 * 1024 * 1024); // RocketMQ's default
    /// assert_eq!(warnings[0].key, "brokerRole"); // known to RocketMQ, unused here
    /// assert!(config.render().contains("listenPort=30911\n"));
    /// # Ok::<(), broker::config::BrokerConfigError>(())
    /// ```
    pub fn from_str(
        text: &str,
        source_name: &str,
    ) -> Result<(Self, Vec<Warning>), BrokerConfigError> {
        let props = parse_properties(text).map_err(|e| syntax_error(e, source_name))?;
        let mut warnings = Vec::new();
        let props = last_wins(props, &mut warnings);
        let loader = Loader {
            props: &props,
            source_name,
        };
        let enabled = match loader.find(KEY_ENABLE_DLEDGER) {
            Some(p) => parse_bool(&p.value).map_err(|reason| loader.invalid(p, reason))?,
            None => false,
        };
        let raft_log = loader.raft_log(enabled, &mut warnings)?;
        let mut config = BrokerConfig::defaults(raft_log);
        // raft-log's keys were read above, and the warnings for the rest were given there.
        for p in &props {
            if let Some(Owner::Broker { set, .. }) = spec(&p.key).map(|s| s.owner) {
                set(&mut config, &p.value).map_err(|reason| loader.invalid(p, reason))?;
            }
        }
        loader.finish(&mut config, &mut warnings)?;
        // In file order, so a log reads top to bottom; the sort is stable for equal lines.
        warnings.sort_by_key(|w| w.line);
        Ok((config, warnings))
    }

    /// RocketMQ's defaults around a parsed raft-log config.
    fn defaults(raft_log: raft_log::Config) -> Self {
        let store_path_root_dir = default_store_root();
        BrokerConfig {
            broker_cluster_name: "DefaultCluster".to_string(),
            broker_name: default_broker_name(),
            broker_id: 0,
            listen_port: 10911,
            bind_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            namesrv_addr: None,
            broker_ip1: None,
            store_path_commit_log: store_path_root_dir.join("commitlog"),
            store_path_root_dir,
            enable_dleger_commit_log: false,
            send_message_thread_pool_nums: default_send_threads(),
            auto_create_topic_enable: true,
            auto_create_subscription_group: true,
            default_topic_queue_nums: 8,
            max_message_size: 4 * 1024 * 1024,
            default_retry_max_times: 16,
            transaction_time_out: 6_000,
            transaction_check_interval: 30_000,
            transaction_check_max: 15,
            unsafe_ack_before_replication: false,
            unsafe_commit_rollbacks: false,
            trace_topic_enable: false,
            msg_trace_topic_name: "RMQ_SYS_TRACE_TOPIC".to_string(),
            broker_trace_enable: false,
            metrics_exporter_type: MetricsExporterType::Disable,
            metrics_prom_exporter_host: None,
            metrics_prom_exporter_port: 5557,
            raft_log,
        }
    }

    /// The effective configuration as `key=value` lines sorted by key, one per set value:
    /// what `mqbroker -p` prints (RocketMQ's printConfigItem). Loading it again gives the
    /// same configuration.
    pub fn render(&self) -> String {
        // raft-log prints its own keys; a group of one prints none of the group's. Where both
        // read a key (the store paths), the broker's value is printed.
        let mut lines: BTreeMap<&str, String> = self
            .raft_log
            .properties()
            .into_iter()
            .filter(|(key, _)| self.enable_dleger_commit_log || !describes_group(key))
            .collect();
        for s in KEYS {
            if let Owner::Broker { get, .. } = s.owner
                && let Some(value) = get(self)
            {
                lines.insert(s.key, value);
            }
        }
        lines
            .into_iter()
            .map(|(key, value)| format!("{key}={value}\n"))
            .collect()
    }

    /// This broker's client address, `brokerIP1:listenPort` (127.0.0.1 without `brokerIP1`):
    /// what it registers at the NameServers and stamps as the store host of its messages.
    pub fn client_addr(&self) -> String {
        let host = self.broker_ip1.as_deref().unwrap_or("127.0.0.1");
        format!("{host}:{}", self.listen_port)
    }

    /// The NameServer addresses of `namesrvAddr`, in order (empty without it).
    pub fn namesrv_addrs(&self) -> Vec<String> {
        self.namesrv_addr
            .as_deref()
            .unwrap_or_default()
            .split(';')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(String::from)
            .collect()
    }

    /// The address the client port is bound on: `bindAddress:listenPort`.
    pub fn bind_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind_address, self.listen_port)
    }

    /// Where the HTTP listener (metrics, health, dashboard) binds, when
    /// `metricsExporterType=PROM`: `metricsPromExporterHost:metricsPromExporterPort`.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        (self.metrics_exporter_type == MetricsExporterType::Prom).then(|| {
            SocketAddr::new(
                self.metrics_prom_exporter_host.unwrap_or(self.bind_address),
                self.metrics_prom_exporter_port,
            )
        })
    }
}

/// RocketMQ's `metricsExporterType`: RaftMQ serves `DISABLE` and `PROM`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricsExporterType {
    /// No metrics and no HTTP listener.
    Disable,
    /// Prometheus text on `/metrics` (pulled by Prometheus).
    Prom,
}

impl MetricsExporterType {
    /// RocketMQ's names (as its enum's `valueOf`, any case) or its ordinals 0–3.
    fn parse(v: &str) -> Result<MetricsExporterType, String> {
        match v.trim().to_ascii_uppercase().as_str() {
            "DISABLE" | "0" => Ok(MetricsExporterType::Disable),
            "PROM" | "2" => Ok(MetricsExporterType::Prom),
            "OTLP_GRPC" | "1" | "LOG" | "3" => Err(format!(
                "{} is not supported by RaftMQ: use PROM (Prometheus pulls /metrics) or DISABLE",
                v.trim()
            )),
            _ => Err(
                "must be DISABLE, OTLP_GRPC, PROM or LOG (RaftMQ serves DISABLE and PROM)".into(),
            ),
        }
    }

    /// The name RocketMQ prints.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricsExporterType::Disable => "DISABLE",
            MetricsExporterType::Prom => "PROM",
        }
    }
}

/// Keeps the last of each repeated key, as `java.util.Properties` does, and warns about the
/// others. Earlier values are dropped before parsing, so an overridden bad value is no error.
fn last_wins(props: Vec<Property>, warnings: &mut Vec<Warning>) -> Vec<Property> {
    let mut last: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, p) in props.iter().enumerate() {
        last.insert(&p.key, i);
    }
    let keep: Vec<bool> = (0..props.len())
        .map(|i| last.get(props[i].key.as_str()) == Some(&i))
        .collect();
    for (i, p) in props.iter().enumerate() {
        if !keep[i] {
            let winner = last
                .get(p.key.as_str())
                .and_then(|&w| props[w].line)
                .map_or_else(|| "a later line".to_string(), |l| format!("line {l}"));
            warnings.push(Warning {
                key: p.key.clone(),
                line: p.line,
                message: format!("duplicate key: the value on {winner} wins"),
            });
        }
    }
    props
        .into_iter()
        .zip(keep)
        .filter_map(|(p, k)| k.then_some(p))
        .collect()
}

/// The properties of one file after duplicates were removed, and the file's name for errors.
struct Loader<'a> {
    props: &'a [Property],
    source_name: &'a str,
}

impl Loader<'_> {
    fn find(&self, key: &str) -> Option<&Property> {
        self.props.iter().find(|p| p.key == key)
    }

    fn invalid(&self, p: &Property, reason: impl Into<String>) -> BrokerConfigError {
        BrokerConfigError::Invalid {
            source_name: self.source_name.to_string(),
            key: p.key.clone(),
            value: p.value.clone(),
            line: p.line,
            reason: reason.into(),
        }
    }

    /// Hands raft-log its keys and builds its config; warns about keys nobody uses.
    fn raft_log(
        &self,
        enabled: bool,
        warnings: &mut Vec<Warning>,
    ) -> Result<raft_log::Config, BrokerConfigError> {
        if enabled {
            for key in ["dLegerPeers", "dLegerSelfId"] {
                if self.find(key).is_none() {
                    return Err(BrokerConfigError::Missing {
                        source_name: self.source_name.to_string(),
                        key,
                        reason: "required when enableDLegerCommitLog=true",
                    });
                }
            }
        }
        // Broker keys stay here; storePathRootDir is added below so both readers agree on it.
        let mut input: Vec<Property> = Vec::new();
        // (raft-log's key, the key written in the file) for errors raft-log reports.
        let mut renamed: Vec<(&'static str, String)> = Vec::new();
        for p in self.props {
            match spec(&p.key).map(|s| s.owner) {
                Some(Owner::Broker { .. }) => {}
                None if describes_group(&p.key) && !enabled => warnings.push(Warning {
                    key: p.key.clone(),
                    line: p.line,
                    message: "ignored: enableDLegerCommitLog=false runs a single-node group"
                        .to_string(),
                }),
                Some(Owner::Alias { of }) if self.find(of).is_some() => warnings.push(Warning {
                    key: p.key.clone(),
                    line: p.line,
                    message: format!("ignored: {of} is set and wins"),
                }),
                Some(Owner::Alias { of }) => {
                    renamed.push((of, p.key.clone()));
                    input.push(Property {
                        key: of.to_string(),
                        ..p.clone()
                    });
                }
                _ => input.push(p.clone()),
            }
        }
        let root = self.find("storePathRootDir").cloned().unwrap_or_else(|| {
            Property::new(
                "storePathRootDir",
                default_store_root().display().to_string(),
            )
        });
        input.push(root);
        if !enabled {
            // A group of one named after the broker. Lines point at brokerName, and an error
            // about the group name is reported against brokerName.
            let name = self.find("brokerName");
            let line = name.and_then(|p| p.line);
            let group = name.map_or_else(default_broker_name, |p| p.value.clone());
            for (key, value) in [
                ("dLegerGroup", group),
                ("dLegerPeers", SINGLE_NODE_PEERS.to_string()),
                ("dLegerSelfId", SINGLE_NODE_SELF_ID.to_string()),
            ] {
                input.push(Property {
                    key: key.to_string(),
                    value,
                    line,
                });
            }
            renamed.push(("dLegerGroup", "brokerName".to_string()));
        }
        let (config, unused) = raft_log::Config::from_properties(&input)
            .map_err(|e| self.raft_log_error(e, &renamed))?;
        for p in unused {
            let message = match spec(&p.key).map(|s| s.owner) {
                Some(Owner::Ignored { why }) => why.to_string(),
                _ => unknown_key_message(&p.key),
            };
            warnings.push(Warning {
                key: p.key,
                line: p.line,
                message,
            });
        }
        Ok(config)
    }

    fn raft_log_error(
        &self,
        e: raft_log::ConfigError,
        renamed: &[(&'static str, String)],
    ) -> BrokerConfigError {
        let source_name = self.source_name.to_string();
        match e {
            raft_log::ConfigError::Missing { key } => BrokerConfigError::Missing {
                source_name,
                key,
                reason: "required by raft-log",
            },
            raft_log::ConfigError::Invalid {
                key,
                value,
                line,
                reason,
            } => {
                let (key, reason) = match renamed.iter().find(|(of, _)| *of == key) {
                    Some((of, written)) => {
                        (written.clone(), format!("as raft-log's {of}: {reason}"))
                    }
                    None => (key, reason),
                };
                BrokerConfigError::Invalid {
                    source_name,
                    key,
                    value,
                    line,
                    reason,
                }
            }
        }
    }

    /// Checks between keys, run once every key is set.
    fn finish(
        &self,
        config: &mut BrokerConfig,
        warnings: &mut Vec<Warning>,
    ) -> Result<(), BrokerConfigError> {
        if self.find("storePathCommitLog").is_none() {
            config.store_path_commit_log = config.store_path_root_dir.join("commitlog");
        }
        if let Some(p) = self.find("brokerId")
            && config.broker_id != 0
        {
            warnings.push(Warning {
                key: p.key.clone(),
                line: p.line,
                message: "ignored: every RaftMQ node serves as broker id 0 (the master) and \
                          forwards writes to the Raft leader"
                    .to_string(),
            });
            config.broker_id = 0;
        }
        let entry_max = config.raft_log.store.entry_body_bytes_max;
        if u64::from(config.max_message_size) > entry_max {
            let p = self.find("maxMessageSize").cloned().unwrap_or_else(|| {
                Property::new("maxMessageSize", config.max_message_size.to_string())
            });
            return Err(self.invalid(
                &p,
                format!("must not exceed raft-log's largest entry body ({entry_max} bytes)"),
            ));
        }
        Ok(())
    }
}

fn syntax_error(e: raft_log::ConfigError, source_name: &str) -> BrokerConfigError {
    // parse_properties reports a line without a separator as Invalid with the line as key.
    match e {
        raft_log::ConfigError::Invalid { key, line, .. } => BrokerConfigError::Syntax {
            source_name: source_name.to_string(),
            line,
            text: key,
        },
        raft_log::ConfigError::Missing { key } => BrokerConfigError::Syntax {
            source_name: source_name.to_string(),
            line: None,
            text: key.to_string(),
        },
    }
}

/// "unknown key", with the known key when only the letter case differs (`dlegerPeers`).
fn unknown_key_message(key: &str) -> String {
    let known = KEYS
        .iter()
        .map(|s| s.key)
        .chain(raft_log::config::KEYS.iter().copied());
    match known.into_iter().find(|k| k.eq_ignore_ascii_case(key)) {
        Some(k) => format!("unknown key (did you mean {k}?)"),
        None => "unknown key".to_string(),
    }
}

/// raft-log's boolean rule, so every key of a broker.conf reads booleans alike.
fn parse_bool(v: &str) -> Result<bool, String> {
    raft_log::config::parse_bool(v).map_err(|e| e.to_string())
}

fn require_false(v: &str, why: &str) -> Result<(), String> {
    if parse_bool(v)? {
        Err(format!("must be false: {why}"))
    } else {
        Ok(())
    }
}

fn parse_int<T>(v: &str, min: T, max: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
{
    match v.parse::<T>() {
        Ok(n) if min <= n && n <= max => Ok(n),
        _ => Err(format!("must be an integer in {min}..={max}")),
    }
}

fn set_name(field: &mut String, v: &str) -> Result<(), String> {
    if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must be non-empty, without spaces".to_string());
    }
    *field = v.to_string();
    Ok(())
}

/// A topic name under RocketMQ's rule (`TopicValidator`): 1..=127 of letters, digits, `%|_-`.
fn set_topic(field: &mut String, v: &str) -> Result<(), String> {
    let valid = |c: char| c.is_ascii_alphanumeric() || "%|_-".contains(c);
    if v.is_empty() || v.len() > 127 || !v.chars().all(valid) {
        return Err("must be 1 to 127 letters, digits, %, |, _ or -".to_string());
    }
    *field = v.to_string();
    Ok(())
}

fn parse_ip(v: &str) -> Result<IpAddr, String> {
    v.parse()
        .map_err(|_| "must be an IP address, like 0.0.0.0".to_string())
}

fn parse_path(v: &str) -> Result<PathBuf, String> {
    if v.is_empty() {
        return Err("must be a non-empty path".to_string());
    }
    Ok(PathBuf::from(v))
}

/// An IP address or a DNS name, without a port. Empty means unset.
fn parse_host(v: &str) -> Result<Option<String>, String> {
    if v.is_empty() {
        return Ok(None);
    }
    let is_name = v.len() <= 253
        && v.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if v.parse::<IpAddr>().is_ok() || is_name {
        Ok(Some(v.to_string()))
    } else {
        Err("must be an IP address or host name, without a port".to_string())
    }
}

/// `host:port;host:port`, checked as RocketMQ's BrokerStartup does. Empty means unset.
fn parse_namesrv_addr(v: &str) -> Result<Option<String>, String> {
    if v.is_empty() {
        return Ok(None);
    }
    for addr in v.split(';') {
        let ok = addr.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !ok {
            return Err(format!(
                "{addr:?} is not host:port; write it like 127.0.0.1:9876;192.168.0.1:9876"
            ));
        }
    }
    Ok(Some(v.to_string()))
}

/// RocketMQ's `storePathRootDir` default, `${user.home}/store`.
fn default_store_root() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join("store")
}

/// RocketMQ's `brokerName` default: the host name. Read from the kernel rather than through a
/// new dependency; `DEFAULT_BROKER` (RocketMQ's own fallback) where that is unavailable.
fn default_broker_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| {
            let name = std::fs::read_to_string(path).ok()?;
            let name = name.trim();
            set_name(&mut String::new(), name).ok()?;
            Some(name.to_string())
        })
        .unwrap_or_else(|| BROKER_NAME_FALLBACK.to_string())
}

/// RocketMQ's `sendMessageThreadPoolNums` default, `min(availableProcessors, 4)`.
fn default_send_threads() -> u32 {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    u32::try_from(cpus.min(4)).unwrap_or(4)
}

#[cfg(test)]
mod tests;
