//! The broker's operations, independent of any wire protocol.
//!
//! [`BrokerService`] is what every protocol calls: the RocketMQ 5 gRPC API ([`crate::grpc`]),
//! the admin API ([`crate::admin`]) and, next, RocketMQ 4.x remoting. Its operations take and
//! return plain Rust types and fail with one [`ServiceError`]. Everything that is a rule of the
//! broker rather than of a protocol lives here:
//!
//! - **validation**: topic and group names, bodies, delivery and invisible times, filters;
//! - **admission**: the disk guard (`diskMaxUsedSpaceRatio`); busy and no-leader come from the
//!   store as [`StoreErrorKind`](crate::store::StoreErrorKind);
//! - **topic auto-create**: the rule is
//!   [`StateConfig::auto_create_queues`](crate::state::StateConfig::auto_create_queues), applied here
//!   before a route or a send and by the state machine itself on apply;
//! - **subscription groups** ([`subscription`]): a group's record decides its retries, whether
//!   it may consume, and what its 5.x consumers are told; `autoCreateSubscriptionGroup`
//!   creates it on first use;
//! - **the long poll** and the decision to propose a Receive ([`receive`]);
//! - **cluster and progress views** for the admin API ([`manage`]);
//! - **message trace**: the trace topic and the broker's own trace records ([`trace`]).
//! - **the clients connected to this node** ([`clients`]): their groups and subscriptions,
//!   for `consumerConnection`/`producerConnection`, 4.x rebalancing and transaction checks.
//!
//! A protocol layer only decodes its request into these types, calls one operation and
//! encodes the result or maps the error to its status code.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

mod clients;
mod clock;
mod cluster;
mod error;
mod manage;
mod message;
mod pull;
mod query;
mod recall;
mod receive;
mod retry;
mod stats;
mod status;
mod subscription;
mod trace;
mod transaction;

pub use clients::{
    CHANNEL_EXPIRED_TIMEOUT, ClientInfo, ClientNotice, ClientProtocol, ClientSession, Clients,
    ConsumeFromWhere, ConsumeMode, ConsumeType, ConsumerConnection, GroupConsumer, MessageModel,
    Registration, TransactionCheck, grpc_version, version_name, version_ordinal,
};
pub use clock::now_ms;
pub use cluster::{GroupRoute, ROUTE_TTL};
pub use error::{NameError, NameKind, ServiceError, check_name};
pub use manage::{ClusterView, NodeView, QueueProgress};
pub use message::{DELAY_MS_MAX, NewMessage, ReceivedMessage, SendReceipt};
pub use pull::{
    PULL_BATCH_MAX, PULL_SUSPEND_MS_MAX, PullRequest, PullStatus, Pulled, PulledMessage,
    pull_suspend_ms,
};
pub use query::{
    MessageQuery, MessageView, QUERY_MAX_DEFAULT, commit_log_offset, offset_msg_id,
    parse_offset_msg_id, split_commit_log_offset,
};
pub use recall::recall_handle;
pub use receive::{
    Filter, FilterKind, INVISIBLE_MS_MAX, INVISIBLE_MS_MIN, LONG_POLL_MS_MAX, LONG_POLL_MS_MIN,
    Polled, ReceiveRequest,
};
pub use retry::{
    DELAY_LEVELS_MS, ORIGIN_MESSAGE_ID, RECONSUME_TIME, RETRY_TOPIC, SendBack, delay_of_level,
    reconsume_times,
};
pub use stats::{Figures, Stats, Traffic, TrafficTotals};
pub use status::{Backlog, MetricsView, TopicStats, runtime_format};
pub use subscription::GroupUpdate;
pub use trace::TraceConfig;

use crate::command::{CheckPolicy, MessageType, StoredMessage};
use crate::config::BrokerConfig;
use crate::store::{MessageStore, StoreError};
use error::check_topic;

/// What the service needs to know from broker.conf, each setting under one name.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// `brokerName`, advertised in routes.
    pub broker_name: String,
    /// `brokerClusterName`.
    pub cluster_name: String,
    /// `brokerIP1:listenPort`: this broker's client address, stamped as the store host of the
    /// messages it delivers and reported in its own cluster row.
    pub broker_addr: String,
    /// `maxMessageSize`: the largest body accepted.
    pub max_message_size: usize,
    /// `defaultRetryMaxTimes`: the `retryMaxTimes` of a group created without one (on first
    /// use, or by an update that names none), and of a group without a record.
    pub default_retry_max_times: u32,
    /// `autoCreateSubscriptionGroup`: a group without a record is created on first use;
    /// otherwise it is refused.
    pub auto_create_subscription_group: bool,
    /// The store directory whose file system is watched for `diskMaxUsedSpaceRatio`.
    pub store_dir: PathBuf,
    /// Above this disk usage (percent) sends are refused; receives go on.
    pub disk_max_used_space_ratio: u32,
    /// `unsafeAckBeforeReplication` (negative control, tests only): answer a send OK before it
    /// is proposed, and store it in the background.
    pub unsafe_ack_before_replication: bool,
    /// `namesrvAddr`: where the other groups of the cluster are found.
    pub namesrv_addrs: Vec<String>,
    /// When and how often open transactions are checked.
    pub transactions: CheckPolicy,
    /// `unsafeCommitRollbacks` (negative control, tests only): a rollback commits instead.
    pub unsafe_commit_rollbacks: bool,
    /// `traceTopicEnable`, `msgTraceTopicName`, `brokerTraceEnable`.
    pub trace: TraceConfig,
}

impl ServiceConfig {
    /// The service settings of a broker.conf.
    pub fn from_broker_config(config: &BrokerConfig) -> ServiceConfig {
        ServiceConfig {
            broker_name: config.broker_name.clone(),
            cluster_name: config.broker_cluster_name.clone(),
            broker_addr: config.client_addr(),
            max_message_size: usize::try_from(config.max_message_size).unwrap_or(usize::MAX),
            default_retry_max_times: config.default_retry_max_times,
            auto_create_subscription_group: config.auto_create_subscription_group,
            store_dir: config.raft_log.store.dir.clone(),
            disk_max_used_space_ratio: config.raft_log.disk_max_used_space_ratio,
            unsafe_ack_before_replication: config.unsafe_ack_before_replication,
            namesrv_addrs: config.namesrv_addrs(),
            transactions: CheckPolicy {
                timeout_ms: config.transaction_time_out,
                interval_ms: config.transaction_check_interval,
                max_checks: config.transaction_check_max,
            },
            unsafe_commit_rollbacks: config.unsafe_commit_rollbacks,
            trace: TraceConfig {
                topic_enable: config.trace_topic_enable,
                topic: config.msg_trace_topic_name.clone(),
                broker_trace: config.broker_trace_enable,
            },
        }
    }
}

/// The broker's operations on one node; cheap to clone.
#[derive(Clone, Debug)]
pub struct BrokerService {
    store: MessageStore,
    config: Arc<ServiceConfig>,
    disk: Arc<DiskGuard>,
    cluster: Arc<cluster::ClusterRoutes>,
    clients: Arc<Clients>,
    stats: Arc<Stats>,
    /// When this node's service started (ms since the epoch): `bootTimestamp`.
    started_ms: u64,
    tracer: Arc<trace::Tracer>,
    /// Set when the node stops serving: long polls answer at once, Telemetry sessions end.
    stopping: Arc<tokio::sync::watch::Sender<bool>>,
}

/// Disk usage of the store's file system, looked up at most once a second.
#[derive(Debug, Default)]
struct DiskGuard {
    checked_ms: AtomicU64,
    used_percent: AtomicU32,
}

impl DiskGuard {
    fn used_percent(&self, dir: &std::path::Path) -> u32 {
        let now = now_ms();
        if now.saturating_sub(self.checked_ms.load(Relaxed)) >= 1000 {
            self.checked_ms.store(now, Relaxed);
            if let Some(used) = raft_log::store::disk_used_percent(dir) {
                self.used_percent.store(used, Relaxed);
            }
        }
        self.used_percent.load(Relaxed)
    }
}

/// Per message of a send: where it was stored, or why not.
pub type SendResults = Vec<Result<SendReceipt, ServiceError>>;

impl BrokerService {
    /// The service over `store`.
    pub fn new(store: MessageStore, config: ServiceConfig) -> BrokerService {
        let cluster = Arc::new(cluster::ClusterRoutes::new(config.namesrv_addrs.clone()));
        let tracer = Arc::new(trace::Tracer::of_config(&config.trace, &config.broker_addr));
        BrokerService {
            store,
            config: Arc::new(config),
            disk: Arc::default(),
            cluster,
            clients: Arc::default(),
            stats: Arc::default(),
            stopping: Arc::new(tokio::sync::watch::Sender::new(false)),
            started_ms: now_ms(),
            tracer,
        }
    }

    /// The settings.
    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// The store underneath.
    pub fn store(&self) -> &MessageStore {
        &self.store
    }

    /// The topic's queue count, creating the topic first under the auto-create rule.
    async fn ensure_topic(&self, topic: &str) -> Result<u32, ServiceError> {
        let create = {
            let state = self.store.state();
            if let Some(t) = state.topics().get(topic) {
                return Ok(t.queues);
            }
            state.config().auto_create_queues()
        };
        let Some(queues) = create else {
            return Err(ServiceError::TopicNotAutoCreated {
                topic: topic.to_string(),
            });
        };
        self.store.update_topic(topic, queues).await??;
        Ok(queues)
    }

    /// The queue count of `topic` for a route (created on first use when allowed).
    ///
    /// # Errors
    /// A bad name, an unknown topic, a store failure.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn route(&self, topic: &str) -> Result<u32, ServiceError> {
        check_topic("topic", topic)?;
        self.ensure_topic(topic).await
    }

    /// The queue count of `topic` for a consumer's assignment (created on first use when
    /// allowed). The name is not checked, as RocketMQ does not.
    ///
    /// # Errors
    /// An unknown topic, a store failure.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn assignment(&self, topic: &str) -> Result<u32, ServiceError> {
        self.ensure_topic(topic).await
    }

    /// Sends messages. Every message is checked first; an invalid one is answered without
    /// being written, the others share one group-commit entry.
    ///
    /// # Errors
    /// For the whole send: no messages, the disk guard. Per message: a check, an unknown
    /// topic, a store failure.
    #[tracing::instrument(level = "debug", skip_all, fields(messages = messages.len()))]
    pub async fn send(&self, messages: Vec<NewMessage>) -> Result<SendResults, ServiceError> {
        let now = now_ms();
        if messages.is_empty() {
            return Err(ServiceError::NoMessages);
        }
        self.admit_send()?;
        let mut results: SendResults = Vec::with_capacity(messages.len());
        let mut slots = Vec::new();
        let mut accepted = Vec::new();
        for m in messages {
            match self.check_and_create(m, now).await {
                Ok(stored) => {
                    slots.push(results.len());
                    results.push(Err(ServiceError::ResultMissing));
                    accepted.push(stored);
                }
                Err(e) => results.push(Err(e)),
            }
        }
        if !accepted.is_empty() {
            let traced = self.pub_drafts(&accepted);
            self.store_accepted(now, accepted, &slots, &mut results)
                .await;
            self.trace_sent(now, traced, &slots, &results);
        }
        Ok(results)
    }

    /// The node stops serving (a graceful stop): held long polls answer with what they have
    /// and open Telemetry sessions end, so the server's drain does not wait on them.
    pub fn stop_serving(&self) {
        self.stopping.send_replace(true);
    }

    /// Whether [`BrokerService::stop_serving`] was called, as a watch to wait on.
    pub fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// The disk guard: sends stop above `diskMaxUsedSpaceRatio`.
    fn admit_send(&self) -> Result<(), ServiceError> {
        let used_percent = self.disk.used_percent(&self.config.store_dir);
        if used_percent > self.config.disk_max_used_space_ratio {
            return Err(ServiceError::DiskFull {
                used_percent,
                used_percent_max: self.config.disk_max_used_space_ratio,
            });
        }
        Ok(())
    }

    async fn check_and_create(
        &self,
        m: message::NewMessage,
        now: u64,
    ) -> Result<StoredMessage, ServiceError> {
        let stored = message::check_message(m, now, self.config.max_message_size)?;
        self.ensure_topic(&stored.topic).await?;
        Ok(stored)
    }

    /// Stores the accepted messages and fills in their results at `slots`.
    async fn store_accepted(
        &self,
        now: u64,
        accepted: Vec<StoredMessage>,
        slots: &[usize],
        results: &mut SendResults,
    ) {
        if self.config.unsafe_ack_before_replication {
            // The negative control: OK now, the write happens (or not) later.
            let store = self.store.clone();
            tokio::spawn(async move {
                if let Err(e) = store.send(now, accepted).await {
                    tracing::warn!("unsafeAckBeforeReplication: acknowledged send lost: {e}");
                }
            });
            for &slot in slots {
                results[slot] = Ok(SendReceipt {
                    queue: 0,
                    offset: 0,
                    commit_log_offset: 0,
                });
            }
            return;
        }
        let kinds: Vec<(String, MessageType, u64)> = accepted
            .iter()
            .map(|m| (m.topic.clone(), m.message_type, m.body.len() as u64))
            .collect();
        match self.store.send(now, accepted).await {
            Ok(stored) => {
                let stored_kinds = stored
                    .iter()
                    .zip(&kinds)
                    .filter(|(r, _)| r.is_ok())
                    .map(|(_, (t, kind, bytes))| (t.as_str(), *kind, *bytes));
                self.stats.puts(now, stored_kinds);
                for (&slot, r) in slots.iter().zip(stored) {
                    results[slot] = r
                        .map(|p| SendReceipt {
                            queue: p.queue,
                            offset: p.offset,
                            commit_log_offset: query::commit_log_offset(p.index, p.pos),
                        })
                        .map_err(ServiceError::from);
                }
            }
            Err(e) => {
                // One failure for every message of the entry.
                let source = Arc::new(e);
                for &slot in slots {
                    results[slot] = Err(ServiceError::Store {
                        source: StoreError::Shared {
                            source: Arc::clone(&source),
                        },
                    });
                }
            }
        }
    }

    /// Acknowledges messages by receipt handle; one result per handle.
    ///
    /// # Errors
    /// For all handles: a store failure. Per handle: invalid or expired.
    #[tracing::instrument(level = "debug", skip(self, handles))]
    pub async fn ack(
        &self,
        group: &str,
        topic: &str,
        handles: Vec<String>,
    ) -> Result<Vec<Result<(), ServiceError>>, ServiceError> {
        let traced = self.ack_drafts(&handles);
        let acked = self.store.ack(group, topic, handles).await?;
        self.trace_acked(group, topic, traced, &acked);
        Ok(acked
            .into_iter()
            .map(|r| r.map_err(ServiceError::from))
            .collect())
    }

    /// Gives a received message a new invisible time from now; returns its new handle.
    ///
    /// # Errors
    /// No or too long a time, an invalid or expired handle, a store failure.
    #[tracing::instrument(level = "debug", skip(self, handle))]
    pub async fn change_invisible_time(
        &self,
        group: &str,
        topic: &str,
        handle: String,
        invisible_ms: Option<u64>,
    ) -> Result<String, ServiceError> {
        let invisible_ms = invisible_ms.ok_or(ServiceError::InvisibleTimeMissing)?;
        if invisible_ms > INVISIBLE_MS_MAX {
            return Err(ServiceError::InvisibleTimeTooLong {
                invisible_ms_max: INVISIBLE_MS_MAX,
            });
        }
        let changed = self
            .store
            .change_invisible(now_ms(), group, topic, handle, invisible_ms)
            .await??;
        Ok(changed)
    }

    /// Moves a received message to the group's dead-letter queue now.
    ///
    /// # Errors
    /// An invalid or expired handle, a store failure.
    #[tracing::instrument(level = "debug", skip(self, handle))]
    pub async fn forward_to_dead_letter(
        &self,
        group: &str,
        topic: &str,
        handle: String,
    ) -> Result<(), ServiceError> {
        self.store
            .forward_to_dead_letter(group, topic, handle)
            .await??;
        Ok(())
    }
}
