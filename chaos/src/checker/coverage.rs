//! Coverage: every requested fault really ran, and enough work succeeded for the other verdicts
//! to mean something.
//!
//! A fault ran when the history holds both a `fault-start` and a `fault-end` with its name: a
//! start alone means the heal never happened or was never recorded, so the fault's effect on
//! the run is not what was asked for. Fewer than [`ENQUEUE_OK_MIN`] acknowledged enqueues make
//! the run `unknown`: a cluster that accepted nothing trivially loses nothing.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::{OpCounts, Validity, count_ops, fault_name, pairs};
use crate::history::{F, Op, OpType};

/// Fewer acknowledged enqueues than this make the verdict `unknown`.
pub const ENQUEUE_OK_MIN: usize = 10;

/// The coverage verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CoverageResult {
    /// False when a requested fault never ran; unknown when too few enqueues succeeded.
    pub valid: Validity,
    /// Each requested fault, in the order requested.
    pub faults: Vec<FaultCoverage>,
    /// Requested faults that never ran.
    pub missing: Vec<String>,
    /// Faults that ran without being requested (a harness bug or a composite name).
    pub unrequested: Vec<String>,
    /// Enqueues completed `ok`.
    pub enqueue_ok_count: usize,
    /// The threshold below which the verdict is `unknown`.
    pub enqueue_ok_min: usize,
    /// Ops by `f` and type.
    pub ops: BTreeMap<String, OpCounts>,
}

/// How often one requested fault started and ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaultCoverage {
    /// The fault's name.
    pub fault: String,
    /// `fault-start` ops with this name.
    pub start_count: usize,
    /// `fault-end` ops with this name.
    pub end_count: usize,
    /// Started and ended at least once.
    pub ran: bool,
}

/// Runs the coverage check against the faults the run was asked for.
pub fn check(history: &[Op], requested: &[String]) -> CoverageResult {
    let mut starts: BTreeMap<String, usize> = BTreeMap::new();
    let mut ends: BTreeMap<String, usize> = BTreeMap::new();
    for op in history {
        match op.f {
            F::FaultStart => *starts.entry(fault_name(op)).or_default() += 1,
            // A fault whose injection or heal failed did not run as asked.
            F::FaultEnd if op.error.is_none() => *ends.entry(fault_name(op)).or_default() += 1,
            _ => {}
        }
    }
    let faults: Vec<FaultCoverage> = requested
        .iter()
        .map(|fault| {
            let start_count = starts.get(fault).copied().unwrap_or(0);
            let end_count = ends.get(fault).copied().unwrap_or(0);
            FaultCoverage {
                fault: fault.clone(),
                start_count,
                end_count,
                ran: start_count > 0 && end_count > 0,
            }
        })
        .collect();
    let missing: Vec<String> = faults
        .iter()
        .filter(|f| !f.ran)
        .map(|f| f.fault.clone())
        .collect();
    let requested_set: BTreeSet<&String> = requested.iter().collect();
    let unrequested: Vec<String> = starts
        .keys()
        .filter(|fault| !requested_set.contains(fault))
        .cloned()
        .collect();
    let enqueue_ok_count = pairs(history)
        .iter()
        .filter(|p| p.invoke.f == F::Enqueue && p.outcome() == OpType::Ok)
        .count();

    let valid = if !missing.is_empty() {
        Validity::False
    } else if enqueue_ok_count < ENQUEUE_OK_MIN {
        Validity::Unknown
    } else {
        Validity::True
    };
    CoverageResult {
        valid,
        faults,
        missing,
        unrequested,
        enqueue_ok_count,
        enqueue_ok_min: ENQUEUE_OK_MIN,
        ops: count_ops(history),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testkit::{HistoryBuilder, history};
    use OpType::{Fail, Info, Ok};

    /// `count` ok enqueues by c0, 10 ms apart from `from_ms`.
    fn oks(mut builder: HistoryBuilder, from_value: u64, count: u64) -> HistoryBuilder {
        for i in 0..count {
            let t = 10 * (from_value + i);
            builder = builder.enq("c0", from_value + i, t, t + 5, Ok);
        }
        builder
    }

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn coverage_cases() {
        struct Case {
            name: &'static str,
            history: Vec<Op>,
            requested: Vec<String>,
            valid: Validity,
            missing: Vec<String>,
            unrequested: Vec<String>,
        }
        let cases = [
            Case {
                name: "every requested fault ran",
                history: oks(history(), 0, 10)
                    .fault("kill-leader", &["n0"], 20, 40)
                    .fault("pause-minor", &["n1"], 50, 70)
                    .build(),
                requested: names(&["kill-leader", "pause-minor"]),
                valid: Validity::True,
                missing: vec![],
                unrequested: vec![],
            },
            Case {
                name: "a requested fault that never started is invalid",
                history: oks(history(), 0, 10)
                    .fault("kill-leader", &["n0"], 20, 40)
                    .fault("delay", &["n1"], 50, 70)
                    .build(),
                requested: names(&["kill-leader", "partition-random-halves"]),
                valid: Validity::False,
                missing: names(&["partition-random-halves"]),
                unrequested: names(&["delay"]),
            },
            Case {
                name: "a fault that started but never ended did not run",
                history: oks(history(), 0, 10)
                    .fault_start("kill-leader", &["n0"], 20)
                    .build(),
                requested: names(&["kill-leader"]),
                valid: Validity::False,
                missing: names(&["kill-leader"]),
                unrequested: vec![],
            },
            Case {
                name: "too few acknowledged enqueues is unknown",
                history: oks(history(), 0, 9)
                    .enq("c1", 100, 0, 5, Fail)
                    .fault("kill-leader", &["n0"], 20, 40)
                    .build(),
                requested: names(&["kill-leader"]),
                valid: Validity::Unknown,
                missing: vec![],
                unrequested: vec![],
            },
        ];
        for case in cases {
            let result = check(&case.history, &case.requested);
            let name = case.name;
            assert_eq!(result.valid, case.valid, "{name}: valid");
            assert_eq!(result.missing, case.missing, "{name}: missing");
            assert_eq!(result.unrequested, case.unrequested, "{name}: unrequested");
        }
    }

    #[test]
    fn a_fault_whose_injection_failed_did_not_run() {
        let mut ops = oks(history(), 0, 10)
            .fault("all-power-loss", &["n0", "n1", "n2"], 20, 40)
            .build();
        let end = ops
            .iter_mut()
            .find(|op| op.f == F::FaultEnd)
            .expect("the fault-end");
        end.error = Some("inject: no loop device".to_owned());
        let result = check(&ops, &names(&["all-power-loss"]));
        assert_eq!(result.valid, Validity::False);
        assert_eq!(result.missing, names(&["all-power-loss"]));
    }

    #[test]
    fn counts_faults_and_ops() {
        let ops = oks(history(), 0, 10)
            .enq("c1", 100, 0, 5, Fail)
            .enq("c2", 101, 0, 5, Info)
            .enq_open("c3", 102, 0)
            .deq("c4", &[1, 2], 10, 20)
            .fault("kill-leader", &["n0"], 20, 40)
            .fault("kill-leader", &["n1"], 50, 70)
            .build();
        let result = check(&ops, &names(&["kill-leader"]));
        assert_eq!(
            result.faults,
            [FaultCoverage {
                fault: "kill-leader".to_owned(),
                start_count: 2,
                end_count: 2,
                ran: true
            }]
        );
        assert_eq!(result.enqueue_ok_count, 10);
        assert_eq!(
            result.ops["enqueue"],
            OpCounts {
                invoke: 13,
                ok: 10,
                fail: 1,
                info: 1
            }
        );
        assert_eq!(
            result.ops["dequeue"],
            OpCounts {
                invoke: 1,
                ok: 1,
                fail: 0,
                info: 0
            }
        );
        assert_eq!(
            result.ops["fault-start"],
            OpCounts {
                invoke: 0,
                ok: 0,
                fail: 0,
                info: 2
            }
        );
        assert_eq!(result.valid, Validity::True);
    }
}
