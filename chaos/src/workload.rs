//! Workloads through the public gRPC API only: `queue` (unique values, producers and consumers
//! in one group), `ordered` (message groups split among producers), `consumer-restart`
//! (consumers are replaced by new instances mid-run; progress must carry over) and
//! `transactional` (every value a half message, two in three committed, the rest rolled back).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::client::{Client, Outcome};
use crate::history::{F, OpType};
use crate::recorder::{Pending, Recorder};

/// The workload kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Unique values, concurrent producers and consumers in one group.
    Queue,
    /// As `queue`, with message groups split disjointly among producers (FIFO).
    Ordered,
    /// As `queue`, and every consumer is replaced by a new instance now and then.
    ConsumerRestart,
    /// Every value is sent as a transactional half message, then committed (two in three) or
    /// rolled back. Only a commit is recorded as the value's enqueue, so a rolled-back value
    /// that is delivered shows as unexpected, and a commit acknowledged OK must be delivered.
    Transactional,
}

/// The topic and consumer group the workload uses.
pub const TOPIC: &str = "chaos-topic";
/// The consumer group.
pub const GROUP: &str = "chaos-group";
/// Message groups per producer in the ordered workload.
const GROUPS_PER_CLIENT: usize = 2;
/// Every send's deadline. Above the broker's 5 s wait for a leader, so its answer arrives.
const SEND_TIMEOUT: Duration = Duration::from_secs(8);
/// Long-poll time of one receive.
const POLL: Duration = Duration::from_secs(1);
/// Invisible time of received messages (the broker's minimum).
pub const INVISIBLE: Duration = Duration::from_secs(10);
/// How often a consumer-restart consumer is replaced.
const RESTART_EVERY: Duration = Duration::from_secs(7);

/// Shared state of the client tasks.
#[derive(Debug)]
pub struct Shared {
    /// The history.
    pub recorder: Arc<Recorder>,
    /// Next unique value.
    pub(crate) next_value: AtomicU64,
    /// Producers stop when set.
    pub stop_producing: AtomicBool,
    /// Everyone stops when set.
    pub stop: AtomicBool,
}

impl Shared {
    /// Fresh state over `recorder`.
    pub fn new(recorder: Arc<Recorder>) -> Arc<Shared> {
        Arc::new(Shared {
            recorder,
            next_value: AtomicU64::new(1),
            stop_producing: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        })
    }
}

/// What a client process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends unique values at its share of the rate until production stops.
    Producer,
    /// Receives and acks in a loop (long polls pace it) until the run stops.
    Consumer,
}

/// One client process's settings.
#[derive(Debug, Clone)]
pub struct ClientSpec {
    /// Index (process name `c<index>`).
    pub index: usize,
    /// The workload.
    pub kind: Kind,
    /// Producer or consumer.
    pub role: Role,
    /// The node it talks to (it keeps its access point, as SDK clients do).
    pub node: (String, SocketAddr),
    /// Time between its sends (producers).
    pub period: Duration,
}

/// Runs one client until `shared.stop` (a producer until `shared.stop_producing`).
pub async fn client(shared: Arc<Shared>, spec: ClientSpec) {
    let process = format!("c{}", spec.index);
    let mut incarnation = 0u32;
    let new_client = |incarnation: u32| {
        Client::new(
            spec.node.1,
            u32::try_from(spec.index * 1000).unwrap_or(0) + incarnation,
        )
    };
    let Ok(mut c) = new_client(incarnation) else {
        tracing::error!("{process}: bad address {}", spec.node.1);
        return;
    };
    match spec.role {
        Role::Consumer => {
            let mut last_restart = Instant::now();
            while !shared.stop.load(Ordering::Relaxed) {
                if dequeue_once(&shared, &process, &spec.node.0, &mut c)
                    .await
                    .is_none()
                {
                    // The node is down or refusing: do not spin.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                if spec.kind == Kind::ConsumerRestart && last_restart.elapsed() >= RESTART_EVERY {
                    // The consumer instance goes away; a new one with a new client id takes
                    // over where the group's progress says.
                    incarnation += 1;
                    if let Ok(fresh) = new_client(incarnation) {
                        c = fresh;
                    }
                    last_restart = Instant::now();
                    Pending::invoke(
                        &shared.recorder,
                        &process,
                        F::ConsumerRestart,
                        None,
                        None,
                        &spec.node.0,
                    )
                    .complete(OpType::Ok, Vec::new(), None);
                }
            }
        }
        Role::Producer => {
            let groups: Vec<String> = (0..GROUPS_PER_CLIENT)
                .map(|g| format!("g{}", spec.index * GROUPS_PER_CLIENT + g))
                .collect();
            let mut next_group = 0usize;
            let mut next_at = Instant::now();
            while !shared.stop_producing.load(Ordering::Relaxed)
                && !shared.stop.load(Ordering::Relaxed)
            {
                tokio::time::sleep_until(next_at).await;
                next_at += spec.period;
                if Instant::now() > next_at + spec.period * 4 {
                    // Far behind (a long call): do not burst to catch up.
                    next_at = Instant::now() + spec.period;
                }
                let value = shared.next_value.fetch_add(1, Ordering::Relaxed);
                let group = (spec.kind == Kind::Ordered).then(|| {
                    let g = groups[next_group % groups.len()].clone();
                    next_group += 1;
                    g
                });
                if spec.kind == Kind::Transactional {
                    transact_once(&shared, &process, &spec.node.0, &mut c, value).await;
                    continue;
                }
                let pending = Pending::invoke(
                    &shared.recorder,
                    &process,
                    F::Enqueue,
                    Some(value),
                    group.clone(),
                    &spec.node.0,
                );
                record(
                    pending,
                    c.send(TOPIC, value, group.as_deref(), SEND_TIMEOUT).await,
                );
            }
        }
    }
}

/// One transactional value: its half message, then a commit (recorded as the value's enqueue,
/// with the commit's outcome) or a rollback (not recorded: the value was never sent). A half
/// message whose send failed or went unanswered is left alone: nobody commits it, and the
/// harness's clients answer no check-back, so it is dropped after its checks.
async fn transact_once(shared: &Shared, process: &str, node: &str, c: &mut Client, value: u64) {
    let ids = match c.send_half(TOPIC, value, SEND_TIMEOUT).await {
        Outcome::Ok(ids) => ids,
        Outcome::Fail(e) | Outcome::Unknown(e) => {
            tracing::debug!("{process}: half message {value} not sent: {e}");
            return;
        }
    };
    if value.is_multiple_of(3) {
        if let Outcome::Fail(e) | Outcome::Unknown(e) =
            c.end_transaction(TOPIC, &ids, false, SEND_TIMEOUT).await
        {
            tracing::debug!("{process}: rollback of {value}: {e}");
        }
        return;
    }
    let pending = Pending::invoke(
        &shared.recorder,
        process,
        F::Enqueue,
        Some(value),
        None,
        node,
    );
    record(
        pending,
        c.end_transaction(TOPIC, &ids, true, SEND_TIMEOUT).await,
    );
}

/// Completes an enqueue with its call's outcome: ok, fail, or info (unknown).
fn record(pending: Pending<'_>, outcome: Outcome<()>) {
    match outcome {
        Outcome::Ok(()) => pending.complete(OpType::Ok, Vec::new(), None),
        Outcome::Fail(e) => pending.complete(OpType::Fail, Vec::new(), Some(e)),
        Outcome::Unknown(e) => pending.complete(OpType::Info, Vec::new(), Some(e)),
    }
}

/// One receive + ack, recorded as a dequeue (its `ok` with the time the receive returned, see
/// [`Op::received_ns`](crate::history::Op::received_ns)). Returns how many values came, `None`
/// when the receive failed.
async fn dequeue_once(shared: &Shared, process: &str, node: &str, c: &mut Client) -> Option<usize> {
    let pending = Pending::invoke(&shared.recorder, process, F::Dequeue, None, None, node);
    match c.receive_and_ack(TOPIC, GROUP, 16, POLL, INVISIBLE).await {
        Outcome::Ok(delivery) => {
            let n = delivery.values.len();
            pending.complete_dequeue(delivery.values, delivery.received_at, delivery.ack_error);
            Some(n)
        }
        Outcome::Fail(e) => {
            pending.complete(OpType::Fail, Vec::new(), Some(e));
            None
        }
        Outcome::Unknown(e) => {
            pending.complete(OpType::Info, Vec::new(), Some(e));
            None
        }
    }
}

/// The final drain: consumers on every node read until nothing new came for `quiet` (longer
/// than the invisible time, so messages popped by a lost receive come back), or `deadline`.
/// Recorded as a `drain` op around ordinary dequeues; returns whether it completed.
pub async fn drain(
    shared: &Arc<Shared>,
    nodes: &[(String, SocketAddr)],
    quiet: Duration,
    deadline: Duration,
) -> bool {
    let pending = Pending::invoke(&shared.recorder, "drain", F::Drain, None, None, "all");
    let start = Instant::now();
    let mut clients: Vec<(String, Client)> = nodes
        .iter()
        .enumerate()
        .filter_map(|(i, (id, addr))| {
            Client::new(*addr, 900_000 + u32::try_from(i).unwrap_or(0))
                .ok()
                .map(|c| (id.clone(), c))
        })
        .collect();
    let mut last_new = Instant::now();
    let mut any_ok_since_new = false;
    let mut turn = 0usize;
    let done = loop {
        if clients.is_empty() {
            break false;
        }
        let k = turn % clients.len();
        turn += 1;
        let (id, c) = &mut clients[k];
        let id = id.clone();
        let pending_dq = Pending::invoke(&shared.recorder, "drain", F::Dequeue, None, None, &id);
        match c.receive_and_ack(TOPIC, GROUP, 32, POLL, INVISIBLE).await {
            Outcome::Ok(delivery) => {
                if !delivery.values.is_empty() {
                    last_new = Instant::now();
                    any_ok_since_new = false;
                } else {
                    any_ok_since_new = true;
                }
                pending_dq.complete_dequeue(
                    delivery.values,
                    delivery.received_at,
                    delivery.ack_error,
                );
            }
            Outcome::Fail(e) => pending_dq.complete(OpType::Fail, Vec::new(), Some(e)),
            Outcome::Unknown(e) => pending_dq.complete(OpType::Info, Vec::new(), Some(e)),
        }
        // Done only when a quiet period passed and an empty receive succeeded in it.
        if last_new.elapsed() >= quiet && any_ok_since_new {
            break true;
        }
        if start.elapsed() >= deadline {
            break false;
        }
    };
    if done {
        pending.complete(OpType::Ok, Vec::new(), None);
    } else {
        pending.complete(
            OpType::Fail,
            Vec::new(),
            Some(format!(
                "messages still arriving or no node answering after {deadline:?}"
            )),
        );
    }
    done
}
