//! Faults, with OpenChaos's names: what each one hits and how it is injected and healed.
//!
//! | name | effect |
//! |---|---|
//! | `{random,minor,major,fixed,leader}-kill` | SIGKILL; restarted at the heal |
//! | `{random,minor,major,fixed,leader}-suspend` | SIGSTOP; SIGCONT at the heal |
//! | `{random,minor,leader,all}-power-loss` | SIGKILL and discard what the kernel had not written to disk; restarted at the heal |
//! | `random-partition` | random halves: the smaller side is cut from the rest |
//! | `leader-partition` | the leader and up to a minority are cut from the rest (leader in the minority) |
//! | `leader-majority-partition` | a minority without the leader is cut off (leader in the majority) |
//! | `fixed-partition` | the `--fault-nodes` are cut from the rest |
//! | `bridge` | 5 nodes: two halves that only node 2 connects |
//! | `partition-majorities-ring` | 5 nodes: each sees only its two ring neighbours |
//! | `…-partition-oneway`, `bridge-oneway`, … | only one side drops (OpenChaos's semantics) |
//! | `{random,minor,fixed}-loss` | the targets drop 80 % of packets from every peer |
//! | `{random,minor,fixed,leader}-delay` | 100 ms ± 50 ms on every link to and from the targets |
//! | `rolling-restart` | every node in turn, the leader last: SIGTERM (a leader hands off first), wait for the exit, start it again, wait until it serves |
//!
//! `minor` is ⌊(n−1)/2⌋ nodes, `major` the smallest majority, `random` 1..n nodes at random.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use anyhow::bail;
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::cluster::Cluster;

/// Which nodes a process or link fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// 1..n nodes at random.
    Random,
    /// ⌊(n−1)/2⌋ random nodes.
    Minor,
    /// The smallest majority.
    Major,
    /// `--fault-nodes`.
    Fixed,
    /// The current leader.
    Leader,
    /// Every node.
    All,
}

/// The shape of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Random halves.
    RandomHalves,
    /// The leader in the minority.
    LeaderMinority,
    /// The leader in the majority.
    LeaderMajority,
    /// `--fault-nodes` against the rest.
    Fixed,
    /// Five nodes, two halves joined by one.
    Bridge,
    /// Five nodes, each seeing its ring neighbours only.
    MajoritiesRing,
}

/// One fault kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL, restart at the heal.
    Kill(Target),
    /// SIGSTOP, SIGCONT at the heal.
    Suspend(Target),
    /// Power cut, restart at the heal.
    PowerLoss(Target),
    /// Network partition; `oneway` drops on one side only.
    Partition {
        /// Who is cut from whom.
        shape: Shape,
        /// Only the first side drops packets.
        oneway: bool,
    },
    /// Random packet loss on the targets.
    Loss(Target),
    /// Delay and jitter on the targets' links.
    Delay(Target),
    /// Every node in turn: a graceful stop and a restart (what an operator's rolling upgrade
    /// does). Runs to its end when applied; the heal has nothing left to do.
    RollingRestart,
}

/// How long a node may take to stop on SIGTERM before `rolling-restart` kills it.
pub const STOP_GRACE: Duration = Duration::from_secs(15);
/// How long `rolling-restart` waits for a restarted node to serve and a leader to be known.
pub const REJOIN_WAIT: Duration = Duration::from_secs(30);

/// Probability a packet is dropped under `loss` (OpenChaos's value).
pub const LOSS_PROBABILITY: f64 = 0.8;
/// Delay under `delay`.
pub const DELAY: Duration = Duration::from_millis(100);
/// Extra random delay under `delay`.
pub const JITTER: Duration = Duration::from_millis(50);

impl Fault {
    /// Parses an OpenChaos-style name.
    ///
    /// # Errors
    /// An unknown name, named.
    pub fn parse(name: &str) -> anyhow::Result<Fault> {
        let (base, oneway) = match name.strip_suffix("-oneway") {
            Some(b) => (b, true),
            None => (name, false),
        };
        let partition = |shape| Fault::Partition { shape, oneway };
        let fault = match base {
            "random-partition" => partition(Shape::RandomHalves),
            "leader-partition" => partition(Shape::LeaderMinority),
            "leader-majority-partition" => partition(Shape::LeaderMajority),
            "fixed-partition" => partition(Shape::Fixed),
            "bridge" => partition(Shape::Bridge),
            "partition-majorities-ring" => partition(Shape::MajoritiesRing),
            "rolling-restart" => Fault::RollingRestart,
            _ if oneway => bail!("unknown fault {name:?}: only partitions have a -oneway form"),
            _ => {
                let Some((target, action)) = base.split_once('-') else {
                    bail!("unknown fault {name:?}");
                };
                let target = match target {
                    "random" => Target::Random,
                    "minor" => Target::Minor,
                    "major" => Target::Major,
                    "fixed" => Target::Fixed,
                    "leader" => Target::Leader,
                    "all" => Target::All,
                    _ => bail!("unknown fault {name:?}: no target {target:?}"),
                };
                let fault = match action {
                    "kill" => Fault::Kill(target),
                    "suspend" => Fault::Suspend(target),
                    "power-loss" => Fault::PowerLoss(target),
                    "loss" => Fault::Loss(target),
                    "delay" => Fault::Delay(target),
                    _ => bail!("unknown fault {name:?}: no action {action:?}"),
                };
                if matches!(
                    fault,
                    Fault::Kill(Target::All) | Fault::Suspend(Target::All)
                ) {
                    bail!("{name:?}: use all-power-loss to stop every node");
                }
                fault
            }
        };
        Ok(fault)
    }

    /// The least number of nodes the fault needs.
    pub fn min_nodes(self) -> usize {
        match self {
            Fault::Partition {
                shape: Shape::Bridge | Shape::MajoritiesRing,
                ..
            } => 5,
            _ => 3,
        }
    }

    /// Whether the fault needs loop-mounted disks.
    pub fn needs_disks(self) -> bool {
        matches!(self, Fault::PowerLoss(_))
    }
}

/// The `mixed` schedule draws from these.
pub const MIXED: &[&str] = &[
    "leader-kill",
    "random-kill",
    "leader-suspend",
    "minor-suspend",
    "random-partition",
    "leader-partition",
    "leader-majority-partition-oneway",
    "random-loss",
    "random-delay",
    "minor-power-loss",
];

/// A planned fault: its targets are chosen; [`apply`] injects it, [`heal`] undoes it.
#[derive(Debug)]
pub struct Active {
    /// The requested name.
    pub name: String,
    fault: Fault,
    /// The node indexes it hits.
    pub nodes: Vec<usize>,
    /// Partitions: `(to, from)` pairs, `to` drops packets from `from`.
    grudges: Vec<(usize, usize)>,
}

impl Active {
    /// Whether this is a `rolling-restart`, which runs with [`roll`] instead of [`apply`].
    pub fn is_rolling_restart(&self) -> bool {
        self.fault == Fault::RollingRestart
    }
}

impl fmt::Display for Active {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: Vec<String> = self.nodes.iter().map(|i| format!("n{i}")).collect();
        write!(f, "{} on [{}]", self.name, nodes.join(","))
    }
}

fn pick(
    n: usize,
    target: Target,
    fixed: &[usize],
    leader: Option<usize>,
    rng: &mut StdRng,
) -> Vec<usize> {
    let mut all: Vec<usize> = (0..n).collect();
    all.shuffle(rng);
    let k = match target {
        Target::Random => rng.random_range(1..=n),
        Target::Minor => (n - 1) / 2,
        Target::Major => n / 2 + 1,
        Target::All => n,
        Target::Fixed => return fixed.to_vec(),
        Target::Leader => return leader.into_iter().collect(),
    };
    all.truncate(k.max(1));
    all.sort_unstable();
    all
}

/// Grudges `(to, from)`: `to` drops packets from `from`.
fn grudges(
    n: usize,
    shape: Shape,
    oneway: bool,
    fixed: &[usize],
    leader: Option<usize>,
    rng: &mut StdRng,
) -> (Vec<usize>, Vec<(usize, usize)>) {
    let cut = |side: &BTreeSet<usize>| -> Vec<(usize, usize)> {
        let mut g = Vec::new();
        for &a in side {
            for b in (0..n).filter(|b| !side.contains(b)) {
                g.push((a, b));
                if !oneway {
                    g.push((b, a));
                }
            }
        }
        g
    };
    let mut all: Vec<usize> = (0..n).collect();
    all.shuffle(rng);
    match shape {
        Shape::RandomHalves => {
            let side: BTreeSet<usize> = all.iter().copied().take(n / 2).collect();
            (side.iter().copied().collect(), cut(&side))
        }
        Shape::LeaderMinority => {
            let mut side = BTreeSet::new();
            if let Some(l) = leader {
                side.insert(l);
            }
            for i in all {
                if side.len() >= (n - 1) / 2 {
                    break;
                }
                side.insert(i);
            }
            (side.iter().copied().collect(), cut(&side))
        }
        Shape::LeaderMajority => {
            let side: BTreeSet<usize> = all
                .into_iter()
                .filter(|i| Some(*i) != leader)
                .take((n - 1) / 2)
                .collect();
            (side.iter().copied().collect(), cut(&side))
        }
        Shape::Fixed => {
            let side: BTreeSet<usize> = fixed.iter().copied().collect();
            (fixed.to_vec(), cut(&side))
        }
        Shape::Bridge => {
            // {0,1} and {3,4}; 2 sees everyone. (OpenChaos: nodes 0 and 1 drop 2's and 3's
            // packets — here the halves are cut from each other, keeping the bridge node.)
            let mut g = Vec::new();
            for a in [all[0], all[1]] {
                for b in [all[3], all[4]] {
                    g.push((a, b));
                    if !oneway {
                        g.push((b, a));
                    }
                }
            }
            (all.clone(), g)
        }
        Shape::MajoritiesRing => {
            // Each node keeps only its two ring neighbours.
            let mut g = Vec::new();
            for (pos, &a) in all.iter().enumerate() {
                let prev = all[(pos + n - 1) % n];
                let next = all[(pos + 1) % n];
                for &b in all.iter().filter(|&&b| b != a && b != prev && b != next) {
                    if !oneway || a < b {
                        g.push((a, b));
                    }
                }
            }
            (all.clone(), g)
        }
    }
}

/// Chooses the targets of `fault` (asking the cluster for its leader when the fault aims at
/// it). Nothing is injected yet, so the fault-start can be recorded before [`apply`].
///
/// # Errors
/// A leader fault while no leader is known.
pub async fn plan(
    cluster: &Cluster,
    name: &str,
    fault: Fault,
    fixed: &[usize],
    rng: &mut StdRng,
) -> anyhow::Result<Active> {
    let n = cluster.nodes.len();
    let needs_leader = matches!(
        fault,
        Fault::Kill(Target::Leader)
            | Fault::Suspend(Target::Leader)
            | Fault::PowerLoss(Target::Leader)
            | Fault::Delay(Target::Leader)
            | Fault::Loss(Target::Leader)
            | Fault::Partition {
                shape: Shape::LeaderMinority | Shape::LeaderMajority,
                ..
            }
    );
    let leader = if needs_leader {
        let l = cluster.leader(Duration::from_secs(2)).await;
        if l.is_none() {
            bail!("no leader to aim {name} at");
        }
        l
    } else {
        None
    };
    let (nodes, grudges) = match fault {
        Fault::Partition { shape, oneway } => grudges(n, shape, oneway, fixed, leader, rng),
        Fault::Kill(t)
        | Fault::Suspend(t)
        | Fault::PowerLoss(t)
        | Fault::Loss(t)
        | Fault::Delay(t) => (pick(n, t, fixed, leader, rng), Vec::new()),
        Fault::RollingRestart => (
            restart_order(n, cluster.leader(Duration::from_secs(2)).await),
            Vec::new(),
        ),
    };
    Ok(Active {
        name: name.to_string(),
        fault,
        nodes,
        grudges,
    })
}

/// Every node, the leader (when known) last: one hand-off per roll, as an operator would order it.
fn restart_order(n: usize, leader: Option<usize>) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).filter(|&i| Some(i) != leader).collect();
    order.extend(leader);
    order
}

/// Runs a rolling restart: each node of `active` in turn is stopped gracefully, started again
/// and waited for (it serves and a leader is known) before the next. Prints each step.
///
/// # Errors
/// A failed signal or spawn, a node not stopping on SIGTERM, or no leader after a restart.
pub async fn roll(cluster: &mut Cluster, active: &Active) -> anyhow::Result<()> {
    for &i in &active.nodes {
        let (took, graceful) = cluster.terminate_node(i, STOP_GRACE).await?;
        if !graceful {
            bail!("n{i} did not stop within {STOP_GRACE:?} of SIGTERM");
        }
        println!(
            "chaos:          n{i} stopped gracefully in {} ms",
            took.as_millis()
        );
        cluster.start_node(i)?;
        let deadline = tokio::time::Instant::now() + REJOIN_WAIT;
        loop {
            let serving = cluster.node_serves(i).await;
            if serving && cluster.leader(Duration::from_secs(1)).await.is_some() {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "n{i} restarted but the group had no leader with it serving within {REJOIN_WAIT:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// Injects a planned fault.
///
/// # Errors
/// A failed signal, firewall rule or power cut (heal what was done with [`heal`]).
pub fn apply(cluster: &mut Cluster, active: &Active) -> anyhow::Result<()> {
    let n = cluster.nodes.len();
    match active.fault {
        Fault::Kill(_) => {
            for &i in &active.nodes {
                cluster.kill_node(i);
            }
        }
        Fault::Suspend(_) => {
            for &i in &active.nodes {
                cluster.pause_node(i)?;
            }
        }
        Fault::PowerLoss(_) => {
            // All targets lose power at the same instant: kill all first, then cut disks.
            for &i in &active.nodes {
                cluster.kill_node(i);
            }
            for &i in &active.nodes {
                cluster.power_cut(i)?;
            }
        }
        Fault::Partition { .. } => {
            for &(to, from) in &active.grudges {
                cluster.drop_packets(from, to, 1.0)?;
            }
        }
        Fault::Loss(_) => {
            for &to in &active.nodes {
                for from in (0..n).filter(|&f| f != to) {
                    cluster.drop_packets(from, to, LOSS_PROBABILITY)?;
                }
            }
        }
        Fault::Delay(_) => {
            for &a in &active.nodes {
                for b in (0..n).filter(|&b| b != a) {
                    cluster.delay(a, b, DELAY, JITTER);
                    cluster.delay(b, a, DELAY, JITTER);
                }
            }
        }
        Fault::RollingRestart => bail!("rolling-restart runs with nemesis::roll, not apply"),
    }
    Ok(())
}

/// Undoes `active`: restarts, resumes, heals the network.
///
/// # Errors
/// A node that cannot be restarted, a failed signal or flush.
pub fn heal(cluster: &mut Cluster, active: &Active) -> anyhow::Result<()> {
    match active.fault {
        Fault::Kill(_) | Fault::PowerLoss(_) => {
            for &i in &active.nodes {
                cluster.start_node(i)?;
            }
        }
        Fault::Suspend(_) => {
            for &i in &active.nodes {
                cluster.resume_node(i)?;
            }
        }
        Fault::Partition { .. } | Fault::Loss(_) | Fault::Delay(_) => cluster.heal_network()?,
        // A roll that stopped half-way leaves a node down: start whatever is not running.
        Fault::RollingRestart => {
            for &i in &active.nodes {
                cluster.start_node(i)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn names_parse_like_openchaos_and_bad_ones_are_named() {
        assert_eq!(
            Fault::parse("leader-kill").unwrap(),
            Fault::Kill(Target::Leader)
        );
        assert_eq!(
            Fault::parse("minor-suspend").unwrap(),
            Fault::Suspend(Target::Minor)
        );
        assert_eq!(
            Fault::parse("all-power-loss").unwrap(),
            Fault::PowerLoss(Target::All)
        );
        assert_eq!(
            Fault::parse("random-partition-oneway").unwrap(),
            Fault::Partition {
                shape: Shape::RandomHalves,
                oneway: true
            }
        );
        assert_eq!(Fault::parse("bridge").unwrap().min_nodes(), 5);
        assert_eq!(
            Fault::parse("rolling-restart").unwrap(),
            Fault::RollingRestart
        );
        for bad in [
            "leader-explode",
            "kill",
            "all-kill",
            "leader-kill-oneway",
            "someone-kill",
        ] {
            let e = Fault::parse(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
        for name in MIXED {
            Fault::parse(name).unwrap();
        }
    }

    #[test]
    fn a_rolling_restart_takes_every_node_and_the_leader_last() {
        assert_eq!(restart_order(3, Some(0)), vec![1, 2, 0]);
        assert_eq!(restart_order(5, Some(3)), vec![0, 1, 2, 4, 3]);
        assert_eq!(restart_order(3, None), vec![0, 1, 2]);
    }

    #[test]
    fn targets_have_openchaos_sizes() {
        let mut rng = StdRng::seed_from_u64(7);
        assert_eq!(pick(5, Target::Minor, &[], None, &mut rng).len(), 2);
        assert_eq!(pick(5, Target::Major, &[], None, &mut rng).len(), 3);
        assert_eq!(pick(3, Target::Minor, &[], None, &mut rng).len(), 1);
        assert_eq!(pick(3, Target::Leader, &[], Some(2), &mut rng), vec![2]);
        assert_eq!(pick(3, Target::Fixed, &[0, 1], None, &mut rng), vec![0, 1]);
    }

    #[test]
    fn partitions_cut_the_right_links() {
        let mut rng = StdRng::seed_from_u64(1);
        // Leader 1 alone in the minority of 3, symmetric: 1 drops 0 and 2, and they drop 1.
        let (side, g) = grudges(3, Shape::LeaderMinority, false, &[], Some(1), &mut rng);
        assert_eq!(side, vec![1]);
        let set: BTreeSet<_> = g.into_iter().collect();
        assert_eq!(set, BTreeSet::from([(1, 0), (1, 2), (0, 1), (2, 1)]));
        // One-way: only the minority drops.
        let (_, g) = grudges(3, Shape::LeaderMinority, true, &[], Some(1), &mut rng);
        assert_eq!(
            g.into_iter().collect::<BTreeSet<_>>(),
            BTreeSet::from([(1, 0), (1, 2)])
        );
        // Leader in the majority: the cut-off node is not the leader.
        let (side, _) = grudges(3, Shape::LeaderMajority, false, &[], Some(1), &mut rng);
        assert_eq!(side.len(), 1);
        assert_ne!(side[0], 1);
        // Majorities ring of 5: each node is cut from exactly two others.
        let (_, g) = grudges(5, Shape::MajoritiesRing, false, &[], None, &mut rng);
        for a in 0..5 {
            assert_eq!(g.iter().filter(|(to, _)| *to == a).count(), 2, "{g:?}");
        }
        // Bridge: 4 directed pairs each way, nobody cut from the bridge node.
        let (order, g) = grudges(5, Shape::Bridge, false, &[], None, &mut rng);
        assert_eq!(g.len(), 8);
        assert!(g.iter().all(|(a, b)| *a != order[2] && *b != order[2]));
    }
}
