//! Three raft-log nodes in one process over real loopback gRPC, seeded.
//!
//! Each test is a sequence of phases (logged with `info!`): elect, write, fault, check. Every
//! acknowledged append is remembered by its tag and looked for on the survivors afterwards;
//! appends that timed out are "unknown" and neither required nor forbidden.

// Test and tool code: unwrapping is how a failure reports itself here, and the numeric
// casts are on small, known-range values.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Cluster, IDS, body, seeded, tag_of};
use futures::future::BoxFuture;
use raft_log::config::FlushDiskType;
use raft_log::snapshot::SnapshotHook;
use raft_log::{Error, RaftLogNode, Role};
use rand::Rng;
use tracing::info;

const ELECTION_WAIT: Duration = Duration::from_secs(10);

/// Appends `count` entries from `clients` concurrent writers in batches, starting at node
/// `first`; returns index → tag of every acknowledged one.
///
/// `NotLeader` is a definite refusal (nothing was appended), so a writer that gets it waits for
/// a node that leads and sends the same batch there: on a loaded machine a stall longer than the
/// leader lease makes the leader step down, and that is not what these tests are about. Any
/// other error fails the test.
async fn write(
    c: &common::Cluster,
    first: usize,
    first_tag: u64,
    count: u64,
    clients: u64,
    seed: u64,
) -> BTreeMap<u64, u64> {
    let per = count / clients;
    let mut tasks = Vec::new();
    for w in 0..clients {
        let nodes: Vec<RaftLogNode> = c.nodes.iter().flatten().cloned().collect();
        let mut node = c.node(first).clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed ^ w);
            let mut acked = BTreeMap::new();
            let mut tag = first_tag + w * per;
            let end = tag + per;
            while tag < end {
                let n = rng.random_range(1..=64).min(end - tag);
                let bodies: Vec<Bytes> = (tag..tag + n).map(|t| body(&mut rng, t)).collect();
                let deadline = Instant::now() + ELECTION_WAIT;
                let done = loop {
                    match node.append_batch(bodies.clone()).await {
                        Ok(done) => break done,
                        Err(e @ Error::NotLeader { .. }) => {
                            assert!(Instant::now() < deadline, "no leader took the batch: {e}");
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            if let Some(l) = nodes
                                .iter()
                                .find(|n| n.role().borrow().role == Role::Leader)
                            {
                                node = l.clone();
                            }
                        }
                        Err(e) => panic!("append on the leader: {e}"),
                    }
                };
                for (i, a) in done.iter().enumerate() {
                    acked.insert(a.index, tag + i as u64);
                }
                tag += n;
            }
            acked
        }));
    }
    let mut all = BTreeMap::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

/// Checks that `node` holds every acknowledged entry at its index.
fn assert_has(node: &RaftLogNode, acked: &BTreeMap<u64, u64>) {
    for (&index, &tag) in acked {
        let e = node
            .read(index)
            .unwrap()
            .unwrap_or_else(|| panic!("{}: acked index {index} missing", node.config().self_id));
        assert_eq!(
            tag_of(&e.body),
            tag,
            "{}: wrong entry at {index}",
            node.config().self_id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_is_elected_and_10k_appends_commit_on_every_replica() {
    let (mut rng, _guard) = seeded();
    let c = Cluster::start(1 << 20, FlushDiskType::AsyncFlush).await;
    info!("elect a leader");
    let l = c.wait_leader(ELECTION_WAIT).await;
    info!("write 10,000 entries through 8 concurrent clients");
    let acked = write(&c, l, 0, 10_000, 8, rng.random()).await;
    assert_eq!(acked.len(), 10_000);
    let last = *acked.keys().last().unwrap();
    info!("every replica applies them and streams them in index order");
    for (i, id) in IDS.iter().enumerate() {
        c.wait_applied(i, last, Duration::from_secs(20)).await;
        let mut tail = c.node(i).committed_entries(1);
        for (&index, &tag) in &acked {
            let e = tail.next().await.unwrap();
            assert_eq!((e.index, tag_of(&e.body)), (index, tag), "{id}");
        }
        assert_has(c.node(i), &acked);
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_elects_another_and_keeps_every_acked_entry() {
    let (mut rng, _guard) = seeded();
    let mut c = Cluster::start(256 << 10, FlushDiskType::SyncFlush).await;
    let l = c.wait_leader(ELECTION_WAIT).await;
    info!("write 2,000 entries under SYNC_FLUSH");
    let mut acked = write(&c, l, 0, 2_000, 4, rng.random()).await;
    info!("stop the leader {}", IDS[l]);
    c.stop(l).await;
    let l2 = c.wait_leader(ELECTION_WAIT).await;
    assert_ne!(l2, l);
    info!("every acknowledged entry is on both survivors");
    let last = *acked.keys().last().unwrap();
    for i in (0..3).filter(|&i| i != l) {
        c.wait_applied(i, last, Duration::from_secs(10)).await;
        assert_has(c.node(i), &acked);
    }
    info!("the new leader {} accepts writes", IDS[l2]);
    acked.extend(write(&c, l2, 10_000, 500, 2, rng.random()).await);
    info!("the old leader restarts and catches up");
    c.restart(l).await;
    let last = *acked.keys().last().unwrap();
    c.wait_applied(l, last, Duration::from_secs(20)).await;
    assert_has(c.node(l), &acked);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_old_leader_cannot_commit_and_rejoins_with_its_tail_truncated() {
    let (mut rng, _guard) = seeded();
    let c = Cluster::start(1 << 20, FlushDiskType::AsyncFlush).await;
    let mut acked = BTreeMap::new();
    // A machine stall longer than the 300 ms lease can make the isolated leader refuse the write
    // instead of appending it; then the round proves nothing about truncation, so heal and redo
    // it (a few times at most). Any other outcome is checked strictly.
    let mut round = 0;
    let (l, others, before) = loop {
        round += 1;
        let l = c.wait_leader(ELECTION_WAIT).await;
        acked.extend(write(&c, l, round * 10_000, 200, 2, rng.random()).await);
        let others: Vec<usize> = (0..3).filter(|&i| i != l).collect();
        info!("partition the leader {} from both followers", IDS[l]);
        c.node(l)
            .set_partitioned_from(&[IDS[others[0]], IDS[others[1]]]);
        for &o in &others {
            c.node(o).set_partitioned_from(&[IDS[l]]);
        }
        info!(
            "a write on the isolated leader (its lease still valid) is appended locally but never commits"
        );
        let before = c.node(l).metrics().last_index.unwrap();
        let r = c
            .node(l)
            .append(Bytes::from_static(b"isolated-write-xxxxxxxx"))
            .await;
        match r {
            Err(Error::Timeout { .. }) => break (l, others, before),
            Err(Error::NotLeader {
                leader_id: None, ..
            }) if round < 3 => {
                info!("the lease lapsed before the write arrived (machine stall); heal and retry");
                for i in 0..3 {
                    c.node(i).set_partitioned_from(&[]);
                }
            }
            other => panic!("isolated leader: expected an unknown outcome, got {other:?}"),
        }
    };
    let old_tail = c.node(l).metrics().last_index.unwrap();
    assert!(
        old_tail > before,
        "the isolated leader did not append the write locally"
    );
    info!("once its lease lapses, check-quorum makes it refuse new writes");
    let r = c
        .node(l)
        .append(Bytes::from_static(b"isolated-write-xxxxxxxx"))
        .await;
    assert!(
        matches!(
            r,
            Err(Error::NotLeader {
                leader_id: None,
                ..
            })
        ),
        "expected a refusal, got {r:?}"
    );
    info!("the majority elects a new leader and commits");
    let deadline = Instant::now() + ELECTION_WAIT;
    let l2 = loop {
        if let Some(&o) = others
            .iter()
            .find(|&&o| c.node(o).role().borrow().role == Role::Leader)
        {
            break o;
        }
        assert!(Instant::now() < deadline, "majority elected no leader");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let after = write(&c, l2, 1_000, 100, 1, rng.random()).await;
    info!("heal; the old leader becomes a follower and takes the new leader's log");
    for i in 0..3 {
        c.node(i).set_partitioned_from(&[]);
    }
    let last = *after.keys().last().unwrap();
    c.wait_applied(l, last, Duration::from_secs(10)).await;
    assert_ne!(c.node(l).role().borrow().role, Role::Leader);
    assert_has(c.node(l), &acked);
    assert_has(c.node(l), &after);
    for index in (before + 1)..=old_tail.min(last) {
        let e = c.node(l).read(index).unwrap().unwrap();
        assert_ne!(
            &e.body[..],
            b"isolated-write-xxxxxxxx",
            "uncommitted entry {index} survived the heal"
        );
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_transfer_moves_leadership_to_the_named_node() {
    let (mut rng, _guard) = seeded();
    let c = Cluster::start(1 << 20, FlushDiskType::AsyncFlush).await;
    let l = c.wait_leader(ELECTION_WAIT).await;
    write(&c, l, 0, 100, 1, rng.random()).await;
    let target = (l + 1 + rng.random_range(0..2)) % 3;
    info!("transfer from {} to {}", IDS[l], IDS[target]);
    c.node(l).transfer_leadership(IDS[target]).await.unwrap();
    assert_eq!(c.wait_leader(ELECTION_WAIT).await, target);
    info!("a follower refuses to transfer");
    let follower = (target + 1) % 3;
    assert!(matches!(
        c.node(follower).transfer_leadership(IDS[l]).await,
        Err(Error::NotLeader { .. })
    ));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_leader_wins_a_new_election_instead_of_resuming_its_term() {
    // A leader may lose (power cut) entries it sent to followers before its own fsync. Resuming
    // its old term after a restart would write different entries under the same (term, index)
    // ids the followers hold, and the logs would diverge; it must be elected in a higher term.
    let (mut rng, _guard) = seeded();
    let mut c = Cluster::start(1 << 20, FlushDiskType::SyncFlush).await;
    let l = c.wait_leader(ELECTION_WAIT).await;
    write(&c, l, 0, 50, 1, rng.random()).await;
    let term = c.node(l).role().borrow().term;
    for i in 0..3 {
        c.stop(i).await;
    }
    c.restart(l).await;
    // Alone, the old leader must not lead: it needs a majority in a new term.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_ne!(
        c.node(l).role().borrow().role,
        Role::Leader,
        "{} resumed leadership of term {term} alone after a restart",
        IDS[l]
    );
    for i in (0..3).filter(|&i| i != l) {
        c.restart(i).await;
    }
    let l2 = c.wait_leader(ELECTION_WAIT).await;
    let term2 = c.node(l2).role().borrow().term;
    assert!(
        term2 > term,
        "leader {} in term {term2}, not above {term}",
        IDS[l2]
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_to_a_replaced_leader_ends_unknown_without_waiting_out_its_timeout() {
    let (mut rng, _guard) = seeded();
    // A long wait for quorum: without the early exit the forward would hang for 10 s.
    let c = Cluster::start_tweaked(1 << 20, FlushDiskType::AsyncFlush, |c| {
        c.max_wait_ack_ms = 10_000;
    })
    .await;
    let l = c.wait_leader(ELECTION_WAIT).await;
    let f = (l + 1 + rng.random_range(0..2)) % 3;
    let others: Vec<&str> = (0..3).filter(|&i| i != l).map(|i| IDS[i]).collect();
    info!(
        "{} can no longer reach the others; they still reach it",
        IDS[l]
    );
    c.node(l).set_partitioned_from(&others);
    // The forward reaches the old leader, which appends and waits for a quorum it cannot get.
    let t0 = Instant::now();
    let r = c
        .node(f)
        .propose(vec![Bytes::from_static(b"to-the-old-leader")])
        .await;
    let waited = t0.elapsed();
    match &r {
        Err(Error::OutcomeUnknown { reason }) => {
            assert!(reason.contains("leader changed"), "{reason}")
        }
        // The forward may also land after the old leader's lease lapsed: a definite refusal.
        Err(Error::NotLeader { .. }) => {}
        other => panic!("expected an unknown outcome, got {other:?} after {waited:?}"),
    }
    assert!(
        waited < Duration::from_secs(9),
        "the forward waited out the old leader ({waited:?})"
    );
    c.node(l).set_partitioned_from(&[]);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_forwards_proposals_to_the_leader() {
    let (mut rng, _guard) = seeded();
    let c = Cluster::start(1 << 20, FlushDiskType::AsyncFlush).await;
    let l = c.wait_leader(ELECTION_WAIT).await;
    let f = (l + 1 + rng.random_range(0..2)) % 3;
    info!("propose through follower {}", IDS[f]);
    let bodies: Vec<Bytes> = (0..50).map(|t| body(&mut rng, t)).collect();
    let indexes = c.node(f).propose(bodies.clone()).await.unwrap();
    assert_eq!(indexes.len(), 50);
    assert!(
        indexes.windows(2).all(|w| w[0] < w[1]),
        "indexes out of order: {indexes:?}"
    );
    c.node(f)
        .wait_applied(*indexes.last().unwrap(), Duration::from_secs(5))
        .await
        .unwrap();
    for (i, index) in indexes.iter().enumerate() {
        assert_eq!(c.node(f).read(*index).unwrap().unwrap().body, bodies[i]);
    }
    info!("a follower cut off from the leader refuses instead of hanging");
    c.node(f).set_partitioned_from(&[IDS[l]]);
    let r = c
        .node(f)
        .propose(vec![Bytes::from_static(b"cut-off")])
        .await;
    assert!(
        matches!(r, Err(Error::NotLeader { .. })),
        "expected NotLeader, got {r:?}"
    );
    c.node(f).set_partitioned_from(&[]);
    c.shutdown().await;
}

/// Counts snapshot installs, so the test can tell the follower restored one.
#[derive(Default)]
struct CountingHook {
    installs: AtomicUsize,
}

impl SnapshotHook for CountingHook {
    fn build(&self, last_index: u64) -> BoxFuture<'static, std::io::Result<Bytes>> {
        Box::pin(async move { Ok(Bytes::from(format!("state@{last_index}"))) })
    }
    fn install(&self, last_index: u64, data: Bytes) -> BoxFuture<'static, std::io::Result<()>> {
        self.installs.fetch_add(1, Ordering::SeqCst);
        assert_eq!(data, Bytes::from(format!("state@{last_index}")));
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_behind_the_purge_point_recovers_through_a_snapshot() {
    let (mut rng, _guard) = seeded();
    let hooks: Vec<Arc<CountingHook>> = (0..3).map(|_| Arc::new(CountingHook::default())).collect();
    let dyn_hooks = hooks
        .iter()
        .map(|h| Some(Arc::clone(h) as Arc<dyn SnapshotHook>))
        .collect();
    let mut c = Cluster::start_with_hooks(128 << 10, FlushDiskType::AsyncFlush, dyn_hooks).await;
    let l = c.wait_leader(ELECTION_WAIT).await;
    let f = (l + 1) % 3;
    info!("stop follower {}", IDS[f]);
    c.stop(f).await;
    info!("write across several segments, then purge them on the leader");
    let acked = write(&c, l, 0, 3_000, 4, rng.random()).await;
    let last = *acked.keys().last().unwrap();
    c.wait_applied(l, last, Duration::from_secs(10)).await;
    let purged = c
        .node(l)
        .purge_upto(last - 10)
        .await
        .unwrap()
        .expect("purged");
    assert!(purged > 100, "purge point {purged} too low");
    assert!(matches!(c.node(l).read(1), Err(Error::Purged { .. })));
    info!("restart the follower; it installs the snapshot and reads the rest of the log");
    c.restart(f).await;
    c.wait_applied(f, last, Duration::from_secs(20)).await;
    assert!(
        hooks[f].installs.load(Ordering::SeqCst) >= 1,
        "follower did not install a snapshot"
    );
    // The snapshot covers what the leader had applied when it was built (at least the purge
    // point); the follower's log starts right after it.
    let follower_purged = c
        .node(f)
        .metrics()
        .purged_index
        .expect("follower purged through the snapshot");
    assert!(
        follower_purged >= purged,
        "follower purge point {follower_purged} < leader's {purged}"
    );
    let kept: BTreeMap<u64, u64> = acked
        .range(follower_purged + 1..)
        .map(|(k, v)| (*k, *v))
        .collect();
    assert!(!kept.is_empty() || follower_purged >= last);
    assert_has(c.node(f), &kept);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_expired_segments_behind_a_snapshot_on_every_node() {
    let (mut rng, _guard) = seeded();
    // Every segment is expired at once and every hour is a deleteWhen hour.
    let c = Cluster::start_tweaked(128 << 10, FlushDiskType::AsyncFlush, |c| {
        c.file_reserved_time_hours = 0;
        c.delete_when_hours = (0..24).collect();
        c.clean_resource_interval_ms = 100;
    })
    .await;
    let l = c.wait_leader(ELECTION_WAIT).await;
    info!("write enough to fill several segments");
    let acked = write(&c, l, 0, 3_000, 4, rng.random()).await;
    let last = *acked.keys().last().unwrap();
    info!("retention purges whole old segments on every node, keeping the active one");
    for (i, id) in IDS.iter().enumerate() {
        c.wait_applied(i, last, Duration::from_secs(10)).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        // Rounds that ran while writes were still landing purge only what had expired by then;
        // later rounds take the rest. Wait for the end state: only the newest segments remain.
        let data_dir = c.store_dir(i).join("data");
        let purged = loop {
            let files = std::fs::read_dir(&data_dir).unwrap().count();
            let purged = c.node(i).metrics().purged_index;
            if let Some(p) = purged.filter(|&p| p > 100 && files <= 3) {
                break p;
            }
            assert!(
                Instant::now() < deadline,
                "{id}: retention left {files} data segments (purged up to {purged:?})"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(
            purged < last,
            "{id}: retention purged the active segment ({purged} >= {last})"
        );
        assert!(matches!(c.node(i).read(1), Err(Error::Purged { .. })));
        assert_eq!(
            tag_of(&c.node(i).read(last).unwrap().unwrap().body),
            acked[&last]
        );
    }
    c.shutdown().await;
}

/// Election speed: time from stopping the leader to a new leader accepting an append.
/// Measured and printed, not asserted (beyond the run completing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn election_time_after_leader_kill_is_measured() {
    let (_rng, _guard) = seeded();
    let mut c = Cluster::start(1 << 20, FlushDiskType::AsyncFlush).await;
    let kills: usize = std::env::var("RAFT_LOG_ELECTION_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let mut samples = Vec::new();
    for round in 0..kills {
        let l = c.wait_leader(ELECTION_WAIT).await;
        c.node(l).append(Bytes::from_static(b"warm")).await.unwrap();
        let t0 = Instant::now();
        c.stop(l).await;
        let ms = loop {
            let leader = (0..3).filter(|&i| i != l).find(|&i| {
                c.nodes[i]
                    .as_ref()
                    .is_some_and(|n| n.role().borrow().role == Role::Leader)
            });
            if let Some(n) = leader
                && c.node(n)
                    .append(Bytes::from_static(b"after-kill"))
                    .await
                    .is_ok()
            {
                break t0.elapsed().as_secs_f64() * 1000.0;
            }
            assert!(
                t0.elapsed() < ELECTION_WAIT,
                "round {round}: no leader accepted an append"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        samples.push(ms);
        c.restart(l).await;
    }
    samples.sort_by(f64::total_cmp);
    let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "election after leader kill over {} kills: min {:.0} ms, p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        samples.len(),
        samples[0],
        pct(0.5),
        pct(0.9),
        pct(0.99),
        samples[samples.len() - 1]
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_while_its_peers_dial_it_always_gets_its_port_back() {
    // While a node is down its peers keep dialing its loopback address, and the kernel picks
    // their source ports from a range that holds the node's own port: now and then a dial
    // connects to itself and holds that port (TCP simultaneous open), and the node's restart
    // failed with EADDRINUSE. Method: stop one follower, let the leader and the other follower
    // dial it for a second, restart it, and have it rejoin; 15 times in a row.
    let (mut rng, _guard) = seeded();
    let mut c = Cluster::start(1 << 20, FlushDiskType::AsyncFlush).await;
    let l = c.wait_leader(ELECTION_WAIT).await;
    let down = (l + 1 + rng.random_range(0..2)) % 3;
    let mut next_tag = 0;
    for round in 0..15 {
        info!("round {round}: stop {} while its peers dial it", IDS[down]);
        c.stop(down).await;
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        // `restart` unwraps the start: a bind that fails fails the test.
        c.restart(down).await;
        let l = c.wait_leader(ELECTION_WAIT).await;
        let acked = write(&c, l, next_tag, 10, 1, rng.random()).await;
        next_tag += 10;
        let last = *acked.keys().last().unwrap();
        c.wait_applied(down, last, Duration::from_secs(10)).await;
    }
    c.shutdown().await;
}
