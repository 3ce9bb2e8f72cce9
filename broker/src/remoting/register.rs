//! Registering at the NameServers (`namesrvAddr`): every `registerNameServerPeriod` (30 s),
//! at once when this node's role changes (the new Raft leader registers as master, id 0;
//! followers as slaves, id = DLedger node number + 1, as RocketMQ's DLedger brokers do) and
//! within a second of a topic change. A stopping broker unregisters.

use std::collections::BTreeMap;
use std::time::Duration;

use raft_log::Role;
use raftmq_remoting::code::request as rq;
use raftmq_remoting::route::{
    DataVersion, MASTER_ID, RegisterBrokerBody, TopicConfig, TopicConfigSerializeWrapper,
};
use raftmq_remoting::{ExtFields, RemotingClient, RemotingCommand, ext_fields};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::service::{BrokerService, now_ms};

/// RocketMQ's default topic that producers' routes fall back to for auto-created topics.
pub const AUTO_CREATE_TOPIC_KEY: &str = "TBW102";
/// How long a NameServer has to answer a registration.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(3);
/// How soon a registration that a NameServer missed is sent again.
const RETRY_AFTER: Duration = Duration::from_secs(3);
/// How often the role and topics are looked at between periodic registrations.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// A NameServer drops a broker it has not heard from for this long (RocketMQ's
/// `BROKER_CHANNEL_EXPIRED_TIME`).
const HEARTBEAT_TIMEOUT_MS: u64 = 120_000;

/// Where and as what this broker registers.
#[derive(Clone, Debug)]
pub struct RegisterConfig {
    /// NameServer addresses (`namesrvAddr`, `;`-separated).
    pub namesrv_addrs: Vec<String>,
    /// `brokerClusterName`.
    pub cluster_name: String,
    /// `brokerName`: the Raft group.
    pub broker_name: String,
    /// `brokerIP1:listenPort`.
    pub broker_addr: String,
    /// The Raft replication address (RocketMQ's HA address).
    pub ha_addr: String,
    /// This node's DLedger node number (n0 → 0).
    pub node_number: u64,
    /// `registerNameServerPeriod`.
    pub period: Duration,
}

/// The registration task; stop it with [`Registrar::stop`] to unregister.
#[derive(Debug)]
pub struct Registrar {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Registrar {
    /// Starts registering `service`'s broker at every NameServer of `config`.
    pub fn start(service: BrokerService, config: RegisterConfig) -> Registrar {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(service, config, stopped));
        Registrar { stop, task }
    }

    /// Unregisters from every NameServer and ends the task.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// What a registration says; a change registers at once.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Registration {
    broker_id: u64,
    /// The Raft term this node is in: a NameServer refuses a master of an older term than
    /// the master it has (a leader cut off by a partition still believes it leads).
    term: u64,
    topics: BTreeMap<String, u32>,
}

fn registration(service: &BrokerService, node_number: u64) -> Registration {
    let (leader, term) = {
        let role = service.store().node().role();
        let r = role.borrow();
        (r.role == Role::Leader, r.term)
    };
    let mut topics: BTreeMap<String, u32> = service.topics().into_iter().collect();
    if let Some(queues) = service.store().state().config().auto_create_queues() {
        topics
            .entry(AUTO_CREATE_TOPIC_KEY.to_string())
            .or_insert(queues);
    }
    Registration {
        broker_id: if leader { MASTER_ID } else { node_number + 1 },
        term,
        topics,
    }
}

async fn run(service: BrokerService, config: RegisterConfig, mut stopped: watch::Receiver<bool>) {
    let mut clients: Vec<Option<RemotingClient>> =
        config.namesrv_addrs.iter().map(|_| None).collect();
    let mut last: Option<Registration> = None;
    let mut last_at = tokio::time::Instant::now();
    let mut role = service.store().node().role();
    let mut version = 0u64;
    loop {
        let now = registration(&service, config.node_number);
        let due = match last {
            Some(_) => last_at.elapsed() >= config.period,
            None => last_at.elapsed() >= RETRY_AFTER || version == 0,
        };
        let changed = last.as_ref().is_some_and(|l| *l != now);
        if changed || due {
            version += 1;
            let request = register_request(&config, &now, version);
            let mut all = true;
            for (addr, client) in config.namesrv_addrs.iter().zip(clients.iter_mut()) {
                all &= register_at(addr, client, request.clone()).await;
            }
            if last.as_ref().is_some_and(|l| l.broker_id != now.broker_id) {
                tracing::info!(
                    broker_id = now.broker_id,
                    "registered at the NameServers with a new role"
                );
            }
            // A NameServer that missed this registration gets it again after RETRY_AFTER,
            // not at the next period.
            last = all.then_some(now);
            last_at = tokio::time::Instant::now();
        }
        tokio::select! {
            _ = tokio::time::sleep(CHECK_EVERY) => {}
            _ = role.changed() => {}
            _ = stopped.changed() => break,
        }
    }
    if let Some(last) = last {
        let request = unregister_request(&config, last.broker_id);
        for client in clients.iter().flatten() {
            let _ = client.invoke(request.clone(), REGISTER_TIMEOUT).await;
        }
    }
}

/// Sends one registration, connecting first when the connection is down; whether it was
/// taken.
async fn register_at(
    addr: &str,
    client: &mut Option<RemotingClient>,
    request: RemotingCommand,
) -> bool {
    if client.as_ref().is_none_or(|c| !c.is_open()) {
        match RemotingClient::connect(addr, REGISTER_TIMEOUT).await {
            Ok(c) => *client = Some(c),
            Err(e) => {
                tracing::warn!(namesrv = %addr, error = %e, "cannot reach NameServer");
                return false;
            }
        }
    }
    let Some(c) = client.as_ref() else {
        return false;
    };
    if let Err(e) = c.invoke_ok(request, REGISTER_TIMEOUT).await {
        tracing::warn!(namesrv = %addr, error = %e, "register broker failed");
        *client = None;
        return false;
    }
    true
}

fn header(config: &RegisterConfig, broker_id: u64) -> ExtFields {
    ext_fields(&[
        ("brokerAddr", &config.broker_addr),
        ("brokerId", &broker_id.to_string()),
        ("brokerName", &config.broker_name),
        ("clusterName", &config.cluster_name),
    ])
}

fn register_request(config: &RegisterConfig, r: &Registration, version: u64) -> RemotingCommand {
    let body = RegisterBrokerBody {
        topic_config_serialize_wrapper: TopicConfigSerializeWrapper {
            topic_config_table: r
                .topics
                .iter()
                .map(|(t, &q)| (t.clone(), TopicConfig::read_write(t, q)))
                .collect(),
            data_version: DataVersion {
                timestamp: now_ms(),
                counter: version,
            },
        },
        filter_server_list: Vec::new(),
    };
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let mut fields = header(config, r.broker_id);
    fields.insert("haServerAddr".into(), config.ha_addr.clone());
    fields.insert("compressed".into(), "false".into());
    fields.insert("raftTerm".into(), r.term.to_string());
    fields.insert(
        "heartbeatTimeoutMillis".into(),
        HEARTBEAT_TIMEOUT_MS.to_string(),
    );
    fields.insert(
        "bodyCrc32".into(),
        (crc32fast::hash(&body) & 0x7FFF_FFFF).to_string(),
    );
    RemotingCommand::request(rq::REGISTER_BROKER, fields).with_body(body)
}

fn unregister_request(config: &RegisterConfig, broker_id: u64) -> RemotingCommand {
    RemotingCommand::request(rq::UNREGISTER_BROKER, header(config, broker_id))
}
