//! The queue and consumer-restart workloads over the 4.x remoting protocol
//! ([`remoting_client`](crate::remoting_client)), recorded as the same history the gRPC
//! workload writes, so the same checkers judge it.
//!
//! How a pull consumer maps onto the history's model (see [`F::Dequeue`]):
//!
//! - each PULL_MESSAGE is one `dequeue`; its `ok` lists the values the pull returned, by the
//!   time the pull answered (`received_ns`);
//! - right after a pull that returned values, the consumer commits the pull's
//!   `nextBeginOffset` (UPDATE_CONSUMER_OFFSET) and waits for the answer. Only a commit
//!   answered SUCCESS makes the dequeue's `ok` error-free, i.e. "acknowledged": the checker's
//!   *acked-then-redelivered* then means "delivered again by a pull invoked after a commit
//!   covering it was acknowledged" — a committed offset that went back;
//! - a commit that failed or went unanswered sets the `ok`'s `error`: a consumer that later
//!   starts from the committed offset (a restart, the final drain) may see those values again,
//!   which is at-least-once delivery, a plain duplicate;
//! - each consumer owns a fixed set of queues (queue `q` belongs to consumer `q mod m`), as
//!   after a rebalance, so no two consumers commit the same queue; the drain starts after the
//!   consumers stopped, from the committed offsets.
//!
//! A producer sends each value with up to [`SEND_ATTEMPTS`] tries like a 4.x producer:
//! after a failed try it refreshes the route and tries the next node of the route. Every try
//! is its own `enqueue` op of the same value; the checker keeps a value's most definite
//! outcome and allows one delivery per try.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use crate::client::Outcome;
use crate::history::{F, OpType};
use crate::recorder::Pending;
use crate::remoting_client::{Remoting, Route};
use crate::workload::{GROUP, Kind, Role, Shared, TOPIC};
use raftmq_remoting::code::response as rs;

/// Queues of the workload's topic (created at setup).
pub const QUEUES: u32 = 8;
/// Tries of one send (a 4.x producer's `retryTimesWhenSendFailed` 2, plus the first).
pub const SEND_ATTEMPTS: usize = 3;
/// One try's deadline: above the broker's 5 s wait for a leader, so its answer arrives.
const SEND_TIMEOUT: Duration = Duration::from_secs(8);
/// Long-poll time of a consumer's pull.
const SUSPEND: Duration = Duration::from_secs(1);
/// Long-poll time of a drain pull (short: the drain goes round every queue).
const DRAIN_SUSPEND: Duration = Duration::from_millis(200);
/// How often a client asks the NameServer again although nothing failed (4.x: 30 s).
const ROUTE_REFRESH: Duration = Duration::from_secs(10);
/// How often a consumer-restart consumer is replaced.
const RESTART_EVERY: Duration = Duration::from_secs(7);

/// What every remoting client shares: where the NameServer is and the nodes' names.
#[derive(Debug, Clone)]
pub struct Setup {
    /// `ip:port` of the NameServer.
    pub namesrv: String,
    /// Broker address → node id (`n0`…), for the history's `node` field.
    pub node_ids: Arc<HashMap<String, String>>,
}

impl Setup {
    fn node_of(&self, addr: &str) -> String {
        self.node_ids
            .get(addr)
            .cloned()
            .unwrap_or_else(|| addr.to_string())
    }
}

/// Creates the workload's topic and waits until the NameServer routes it.
///
/// # Errors
/// No route for the topic within `timeout`.
pub async fn prepare(setup: &Setup, timeout: Duration) -> anyhow::Result<Route> {
    let mut r = Remoting::new(setup.namesrv.clone());
    r.create_topic(TOPIC, QUEUES, timeout).await
}

/// A client's cached route, refreshed on failure and every [`ROUTE_REFRESH`].
struct RouteCache {
    route: Option<Route>,
    fetched: Instant,
}

impl RouteCache {
    fn new() -> RouteCache {
        RouteCache {
            route: None,
            fetched: Instant::now(),
        }
    }

    async fn get(&mut self, r: &mut Remoting, force: bool) -> Option<Route> {
        if force || self.route.is_none() || self.fetched.elapsed() >= ROUTE_REFRESH {
            match r.route(TOPIC).await {
                Ok(route) => {
                    self.route = Some(route);
                    self.fetched = Instant::now();
                }
                Err(e) => tracing::debug!("route: {e:#}"),
            }
        }
        self.route.clone()
    }
}

/// Runs one remoting client until `shared.stop_producing` (producers and consumers alike:
/// the drain must start after the consumers stopped committing).
pub async fn client(
    shared: Arc<Shared>,
    setup: Setup,
    index: usize,
    kind: Kind,
    role: Role,
    consumer: (usize, usize),
    period: Duration,
) {
    let process = format!("c{index}");
    match role {
        Role::Producer => producer(&shared, &setup, &process, index, period).await,
        Role::Consumer => consumer_loop(&shared, &setup, &process, kind, consumer).await,
    }
}

async fn producer(shared: &Shared, setup: &Setup, process: &str, index: usize, period: Duration) {
    let mut r = Remoting::new(setup.namesrv.clone());
    let mut routes = RouteCache::new();
    let mut next_queue = u32::try_from(index).unwrap_or(0);
    let mut next_at = Instant::now();
    while !shared.stop_producing.load(Ordering::Relaxed) && !shared.stop.load(Ordering::Relaxed) {
        tokio::time::sleep_until(next_at).await;
        next_at += period;
        if Instant::now() > next_at + period * 4 {
            next_at = Instant::now() + period; // far behind: no burst
        }
        let value = shared.next_value.fetch_add(1, Ordering::Relaxed);
        let mut refresh = false;
        for attempt in 0..SEND_ATTEMPTS {
            let Some(route) = routes.get(&mut r, refresh).await else {
                // No route: nothing was sent, so no op; a 4.x send throws "No route info".
                tokio::time::sleep(Duration::from_millis(200)).await;
                refresh = true;
                continue;
            };
            let Some(addr) = route.target(attempt).map(str::to_string) else {
                refresh = true;
                continue;
            };
            let queue = next_queue % route.queues.max(1);
            next_queue = next_queue.wrapping_add(1);
            let pending = Pending::invoke(
                &shared.recorder,
                process,
                F::Enqueue,
                Some(value),
                None,
                &setup.node_of(&addr),
            );
            match r.send(&addr, TOPIC, queue, value, SEND_TIMEOUT).await {
                Outcome::Ok(()) => {
                    pending.complete(OpType::Ok, Vec::new(), None);
                    break;
                }
                Outcome::Fail(e) => pending.complete(OpType::Fail, Vec::new(), Some(e)),
                Outcome::Unknown(e) => pending.complete(OpType::Info, Vec::new(), Some(e)),
            }
            refresh = true;
        }
    }
}

/// A pull consumer's state for the queues it owns.
struct Consumer {
    r: Remoting,
    routes: RouteCache,
    /// Queue → next offset to pull; absent until asked from the broker.
    offsets: HashMap<u32, u64>,
}

async fn consumer_loop(
    shared: &Shared,
    setup: &Setup,
    process: &str,
    kind: Kind,
    (k, m): (usize, usize),
) {
    let queues: Vec<u32> = (0..QUEUES)
        .filter(|q| usize::try_from(*q).unwrap_or(0) % m.max(1) == k)
        .collect();
    if queues.is_empty() {
        return;
    }
    let mut c = Consumer {
        r: Remoting::new(setup.namesrv.clone()),
        routes: RouteCache::new(),
        offsets: HashMap::new(),
    };
    let mut last_restart = Instant::now();
    let mut turn = 0usize;
    while !shared.stop_producing.load(Ordering::Relaxed) && !shared.stop.load(Ordering::Relaxed) {
        let queue = queues[turn % queues.len()];
        turn += 1;
        if pull_once(shared, setup, process, &mut c, queue, SUSPEND)
            .await
            .is_none()
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if kind == Kind::ConsumerRestart && last_restart.elapsed() >= RESTART_EVERY {
            // A new consumer instance: new connections, offsets from the broker again.
            c = Consumer {
                r: Remoting::new(setup.namesrv.clone()),
                routes: RouteCache::new(),
                offsets: HashMap::new(),
            };
            last_restart = Instant::now();
            Pending::invoke(
                &shared.recorder,
                process,
                F::ConsumerRestart,
                None,
                None,
                "all",
            )
            .complete(OpType::Ok, Vec::new(), None);
        }
    }
}

/// One dequeue op: the committed offset first if this consumer has none for `queue`, then
/// one pull and, when it returned values, the commit of its next offset. Returns how many
/// values came, `None` when nothing could be pulled.
async fn pull_once(
    shared: &Shared,
    setup: &Setup,
    process: &str,
    c: &mut Consumer,
    queue: u32,
    suspend: Duration,
) -> Option<usize> {
    let route = c.routes.get(&mut c.r, false).await?;
    let addr = route.target(0)?.to_string();
    let pending = Pending::invoke(
        &shared.recorder,
        process,
        F::Dequeue,
        None,
        None,
        &setup.node_of(&addr),
    );
    let offset = match c.offsets.get(&queue) {
        Some(o) => *o,
        None => match c.r.query_offset(&addr, TOPIC, GROUP, queue).await {
            Outcome::Ok(o) => {
                c.offsets.insert(queue, o);
                o
            }
            Outcome::Fail(e) | Outcome::Unknown(e) => {
                pending.complete(OpType::Fail, Vec::new(), Some(e));
                c.routes.route = None;
                return None;
            }
        },
    };
    let pulled = match c.r.pull(&addr, TOPIC, GROUP, queue, offset, suspend).await {
        Outcome::Ok(p) => p,
        Outcome::Fail(e) | Outcome::Unknown(e) => {
            // A pull changes nothing on the broker: its failure is definite either way.
            pending.complete(OpType::Fail, Vec::new(), Some(e));
            c.routes.route = None;
            return None;
        }
    };
    let received_at = std::time::Instant::now();
    c.offsets.insert(queue, pulled.next_offset);
    if pulled.values.is_empty() {
        // A 4.x consumer follows PULL_OFFSET_MOVED to `nextBeginOffset`; noted in the op (an
        // error on an empty dequeue changes no verdict) since a move back means redelivery.
        let moved = (pulled.code == rs::PULL_OFFSET_MOVED).then(|| {
            tracing::warn!(queue, offset, next = pulled.next_offset, %addr, "pull offset moved");
            format!(
                "PULL_OFFSET_MOVED queue {queue}: {offset} -> {}",
                pulled.next_offset
            )
        });
        pending.complete_dequeue(Vec::new(), received_at, moved);
        return Some(0);
    }
    let commit =
        c.r.commit_offset(&addr, TOPIC, GROUP, queue, pulled.next_offset)
            .await;
    let commit_error = match commit {
        Outcome::Ok(()) => None,
        Outcome::Fail(e) | Outcome::Unknown(e) => Some(e),
    };
    let n = pulled.values.len();
    pending.complete_dequeue(pulled.values, received_at, commit_error);
    Some(n)
}

/// The final drain, after every consumer stopped: one consumer reads every queue from the
/// committed offsets until a full round found nothing new and `quiet` passed since the last
/// new value, or `deadline`. Recorded as a `drain` op around ordinary dequeues.
pub async fn drain(
    shared: &Arc<Shared>,
    setup: &Setup,
    quiet: Duration,
    deadline: Duration,
) -> bool {
    let pending = Pending::invoke(&shared.recorder, "drain", F::Drain, None, None, "all");
    let start = Instant::now();
    let mut c = Consumer {
        r: Remoting::new(setup.namesrv.clone()),
        routes: RouteCache::new(),
        offsets: HashMap::new(),
    };
    let mut last_new = Instant::now();
    let done = loop {
        let mut round_empty = true;
        for queue in 0..QUEUES {
            match pull_once(shared, setup, "drain", &mut c, queue, DRAIN_SUSPEND).await {
                Some(0) => {}
                Some(_) => {
                    round_empty = false;
                    last_new = Instant::now();
                }
                None => {
                    round_empty = false;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        if round_empty && last_new.elapsed() >= quiet {
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
                "queues still delivering or not answering after {deadline:?}"
            )),
        );
    }
    done
}

#[cfg(test)]
mod tests {
    //! The pull consumer's mapping, judged by the total-queue checker: a value delivered again
    //! after a commit that was not confirmed is at-least-once delivery; after a confirmed
    //! commit covering it, a bug.
    use crate::checker::Validity;
    use crate::checker::queue::check;
    use crate::checker::testkit::history;
    use crate::history::OpType::{Info, Ok};

    #[test]
    fn a_restart_from_the_committed_offset_may_see_uncommitted_values_again() {
        // c1 pulls 1 and 2 but its commit goes unanswered (`ok` with an error); after a
        // restart it starts from the committed offset and pulls them again, then commits.
        let h = history()
            .enq("c0", 1, 0, 5, Ok)
            .enq("c0", 2, 10, 15, Ok)
            .deq_ack_failed("c1", &[1, 2], 20, 30)
            .deq("c1", &[1, 2], 100, 110)
            .drain(900, 1000, Ok)
            .build();
        let r = check(&h);
        assert_eq!(r.valid, Validity::True, "{r:?}");
        assert_eq!(r.duplicated.count, 2);
        assert!(r.acked_then_redelivered.is_empty());
    }

    #[test]
    fn a_value_pulled_again_after_its_commit_was_confirmed_is_flagged() {
        // The commit after the first pull was answered SUCCESS; a later pull (a restart, the
        // drain) that returns the value again means the committed offset went back.
        let h = history()
            .enq("c0", 1, 0, 5, Ok)
            .enq("c0", 2, 10, 15, Ok)
            .deq("c1", &[1, 2], 20, 30)
            .deq("drain", &[2], 900, 910)
            .drain(890, 1000, Ok)
            .build();
        let r = check(&h);
        assert_eq!(r.valid, Validity::False, "{r:?}");
        assert_eq!(r.acked_then_redelivered.values, vec![2]);
    }

    #[test]
    fn a_retried_send_may_be_delivered_once_per_try() {
        // The first try timed out (it may have been written), the retry to another node was
        // acknowledged: both copies may be in the queue, and both are acked separately.
        let h = history()
            .enq("c0", 7, 0, 8000, Info)
            .enq("c0", 7, 8001, 8010, Ok)
            .deq("c1", &[7], 8100, 8110)
            .deq("c1", &[7], 8200, 8210)
            .drain(9000, 9100, Ok)
            .build();
        let r = check(&h);
        assert_eq!(r.valid, Validity::True, "{r:?}");
        assert!(r.acked_then_redelivered.is_empty());
    }
}
