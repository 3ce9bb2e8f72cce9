//! Total-queue: every acknowledged message is delivered, and nothing else is.
//!
//! Jepsen's `total-queue` over multisets of values, plus RaftMQ's *failed-but-delivered*:
//!
//! - attempts: values of enqueue invocations; enqueues: values whose enqueue completed `ok`;
//!   dequeues: every value of every `ok` dequeue, the final drain's included.
//! - ok = dequeues ∩ attempts; unexpected = dequeued values never attempted;
//!   duplicated = values dequeued more than once; lost = ok-enqueued values never dequeued;
//!   recovered = dequeued values whose enqueue was unknown (`info`, or never completed);
//!   failed-but-delivered = dequeued values whose enqueue completed `fail`.
//!
//! Verdict: lost, unexpected and failed-but-delivered are bugs. A definite `fail` that was in
//! fact stored breaks the client's contract as surely as a lost ack (a client that retries it
//! creates a duplicate it was told could not happen). Duplicates are allowed: delivery is
//! at-least-once. Without a completed drain (`drain` op of type `ok`) undelivered messages may
//! still be in the queue, so lost cannot be judged and the verdict is `unknown` unless
//! something that does not depend on the drain is already wrong.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{EXAMPLES_MAX, Validity, ValueSet, pairs};
use crate::history::{F, Op, OpType};

/// The total-queue verdict and its sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueResult {
    /// False on lost, unexpected or failed-but-delivered; unknown without a completed drain.
    pub valid: Validity,
    /// Enqueue invocations.
    pub enqueue_invoke_count: usize,
    /// Enqueues completed `ok`.
    pub enqueue_ok_count: usize,
    /// Enqueues completed `fail`.
    pub enqueue_fail_count: usize,
    /// Enqueues completed `info` or never completed.
    pub enqueue_info_count: usize,
    /// Values delivered by `ok` dequeues, each delivery counted.
    pub dequeue_value_count: usize,
    /// Distinct values delivered.
    pub dequeue_distinct_count: usize,
    /// Size of the multiset intersection of dequeues and attempts.
    pub ok_count: usize,
    /// True when a `drain` op completed `ok`.
    pub drain_completed: bool,
    /// Acknowledged but never delivered (judged only with a completed drain).
    pub lost: ValueSet,
    /// Delivered but never sent.
    pub unexpected: ValueSet,
    /// Delivered although the enqueue's outcome was unknown: allowed.
    pub recovered: ValueSet,
    /// Delivered although the enqueue failed definitely: a bug.
    pub failed_but_delivered: ValueSet,
    /// Delivered more than once: allowed, reported.
    pub duplicated: Duplicates,
    /// No acknowledged message lost; unknown without a completed drain.
    pub at_least_once: Validity,
    /// No message delivered twice; unknown without a completed drain.
    pub at_most_once: Validity,
    /// Both of the above.
    pub exactly_once: Validity,
}

/// Values delivered more than once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Duplicates {
    /// Distinct values delivered more than once.
    pub count: usize,
    /// Deliveries beyond the first, summed over those values.
    pub extra_delivery_count: usize,
    /// Value → delivery count, for the smallest [`EXAMPLES_MAX`] values.
    pub values: BTreeMap<u64, usize>,
}

/// What became of a value's enqueue; a value attempted twice keeps its most definite outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Fail,
    Info,
    Ok,
}

/// Runs the total-queue check.
pub fn check(history: &[Op]) -> QueueResult {
    let mut attempts: BTreeMap<u64, usize> = BTreeMap::new();
    let mut outcomes: BTreeMap<u64, Outcome> = BTreeMap::new();
    let (mut ok, mut fail, mut info, mut invoke) = (0, 0, 0, 0);
    for pair in pairs(history).iter().filter(|p| p.invoke.f == F::Enqueue) {
        invoke += 1;
        let outcome = match pair.outcome() {
            OpType::Ok => {
                ok += 1;
                Outcome::Ok
            }
            OpType::Fail => {
                fail += 1;
                Outcome::Fail
            }
            OpType::Info | OpType::Invoke => {
                info += 1;
                Outcome::Info
            }
        };
        let Some(value) = pair.invoke.value else {
            continue;
        };
        *attempts.entry(value).or_default() += 1;
        let best = outcomes.entry(value).or_insert(outcome);
        *best = (*best).max(outcome);
    }

    let mut dequeues: BTreeMap<u64, usize> = BTreeMap::new();
    let delivered = history
        .iter()
        .filter(|op| op.f == F::Dequeue && op.ty == OpType::Ok);
    for value in delivered.flat_map(|op| op.values.iter().copied()) {
        *dequeues.entry(value).or_default() += 1;
    }
    let drain_completed = history
        .iter()
        .any(|op| op.f == F::Drain && op.ty == OpType::Ok);

    let with_outcome = |wanted: Outcome| {
        ValueSet::from_sorted(
            dequeues
                .keys()
                .copied()
                .filter(|v| outcomes.get(v) == Some(&wanted)),
        )
    };
    let lost = ValueSet::from_sorted(
        outcomes
            .iter()
            .filter(|(v, o)| **o == Outcome::Ok && !dequeues.contains_key(v))
            .map(|(v, _)| *v),
    );
    let unexpected = ValueSet::from_sorted(
        dequeues
            .keys()
            .copied()
            .filter(|v| !attempts.contains_key(v)),
    );
    let ok_count = dequeues
        .iter()
        .map(|(v, n)| (*n).min(attempts.get(v).copied().unwrap_or(0)))
        .sum();
    let duplicated = duplicates(&dequeues);
    let recovered = with_outcome(Outcome::Info);
    let failed_but_delivered = with_outcome(Outcome::Fail);

    let drain_verdict = if drain_completed {
        Validity::True
    } else {
        Validity::Unknown
    };
    let at_least_once = Validity::from_bool(lost.is_empty()).merge(drain_verdict);
    let at_most_once = Validity::from_bool(duplicated.count == 0).merge(drain_verdict);
    let valid = verdict(drain_completed, &lost, &unexpected, &failed_but_delivered);
    QueueResult {
        valid,
        enqueue_invoke_count: invoke,
        enqueue_ok_count: ok,
        enqueue_fail_count: fail,
        enqueue_info_count: info,
        dequeue_value_count: dequeues.values().sum(),
        dequeue_distinct_count: dequeues.len(),
        ok_count,
        drain_completed,
        lost,
        unexpected,
        recovered,
        failed_but_delivered,
        duplicated,
        at_least_once,
        at_most_once,
        exactly_once: at_least_once.merge(at_most_once),
    }
}

fn duplicates(dequeues: &BTreeMap<u64, usize>) -> Duplicates {
    let mut result = Duplicates::default();
    for (value, count) in dequeues.iter().filter(|(_, n)| **n > 1) {
        result.count += 1;
        result.extra_delivery_count += count - 1;
        if result.values.len() < EXAMPLES_MAX {
            result.values.insert(*value, *count);
        }
    }
    result
}

/// Unexpected and failed-but-delivered are wrong whatever comes later; lost only counts once
/// the drain has shown the queue is empty.
fn verdict(
    drain_completed: bool,
    lost: &ValueSet,
    unexpected: &ValueSet,
    failed_but_delivered: &ValueSet,
) -> Validity {
    if !unexpected.is_empty() || !failed_but_delivered.is_empty() {
        Validity::False
    } else if !drain_completed {
        Validity::Unknown
    } else {
        Validity::from_bool(lost.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testkit::{HistoryBuilder, history};
    use OpType::{Fail, Info, Ok};

    /// Three values enqueued `ok` by c0 at 0..30 ms, then the drain at 900..1000 ms.
    fn three_ok() -> HistoryBuilder {
        history()
            .enq("c0", 1, 0, 5, Ok)
            .enq("c0", 2, 10, 15, Ok)
            .enq("c0", 3, 20, 25, Ok)
            .drain(900, 1000, Ok)
    }

    struct Case {
        name: &'static str,
        history: Vec<Op>,
        valid: Validity,
        lost: &'static [u64],
        unexpected: &'static [u64],
        duplicated: &'static [(u64, usize)],
        recovered: &'static [u64],
        failed_but_delivered: &'static [u64],
    }

    const NONE: &[u64] = &[];

    fn cases() -> Vec<Case> {
        vec![
            Case {
                name: "clean run",
                history: three_ok()
                    .deq("c1", &[1, 2], 30, 35)
                    .deq("c1", &[3], 40, 45)
                    .build(),
                valid: Validity::True,
                lost: NONE,
                unexpected: NONE,
                duplicated: &[],
                recovered: NONE,
                failed_but_delivered: NONE,
            },
            Case {
                name: "an acknowledged message never delivered is lost",
                history: three_ok().deq("c1", &[1, 3], 30, 35).build(),
                valid: Validity::False,
                lost: &[2],
                unexpected: NONE,
                duplicated: &[],
                recovered: NONE,
                failed_but_delivered: NONE,
            },
            Case {
                name: "a duplicate is reported but valid",
                history: three_ok()
                    .deq("c1", &[1, 2], 30, 35)
                    .deq("c2", &[2, 3, 2], 40, 45)
                    .build(),
                valid: Validity::True,
                lost: NONE,
                unexpected: NONE,
                duplicated: &[(2, 3)],
                recovered: NONE,
                failed_but_delivered: NONE,
            },
            Case {
                name: "a value never sent is unexpected",
                history: three_ok().deq("c1", &[1, 2, 3, 99], 30, 35).build(),
                valid: Validity::False,
                lost: NONE,
                unexpected: &[99],
                duplicated: &[],
                recovered: NONE,
                failed_but_delivered: NONE,
            },
            Case {
                name: "unknown enqueues delivered are recovered and valid",
                history: three_ok()
                    .enq("c2", 4, 26, 500, Info)
                    .enq_open("c3", 5, 27)
                    .enq("c4", 6, 28, 500, Info)
                    .deq("c1", &[1, 2, 3, 4, 5], 600, 610)
                    .build(),
                valid: Validity::True,
                lost: NONE,
                unexpected: NONE,
                duplicated: &[],
                recovered: &[4, 5],
                failed_but_delivered: NONE,
            },
            Case {
                name: "a failed enqueue that is delivered is a bug",
                history: three_ok()
                    .enq("c2", 6, 26, 30, Fail)
                    .enq("c2", 7, 31, 35, Fail)
                    .deq("c1", &[1, 2, 3, 6], 600, 610)
                    .build(),
                valid: Validity::False,
                lost: NONE,
                unexpected: NONE,
                duplicated: &[],
                recovered: NONE,
                failed_but_delivered: &[6],
            },
            Case {
                name: "without a completed drain lost is unknown",
                history: history()
                    .enq("c0", 1, 0, 5, Ok)
                    .enq("c0", 2, 10, 15, Ok)
                    .deq("c1", &[1], 30, 35)
                    .drain(900, 1000, Fail)
                    .build(),
                valid: Validity::Unknown,
                lost: &[2],
                unexpected: NONE,
                duplicated: &[],
                recovered: NONE,
                failed_but_delivered: NONE,
            },
            Case {
                name: "without a drain an unexpected value is still invalid",
                history: history()
                    .enq("c0", 1, 0, 5, Ok)
                    .deq("c1", &[1, 42], 30, 35)
                    .build(),
                valid: Validity::False,
                lost: NONE,
                unexpected: &[42],
                duplicated: &[],
                recovered: NONE,
                failed_but_delivered: NONE,
            },
            Case {
                name: "only ok dequeues deliver",
                history: three_ok()
                    .deq("c1", &[1, 2], 30, 35)
                    .dequeue("c1", &[3], 40, 45, Info)
                    .dequeue("c2", &[77], 40, 45, Fail)
                    .build(),
                valid: Validity::False,
                lost: &[3],
                unexpected: NONE,
                duplicated: &[],
                recovered: NONE,
                failed_but_delivered: NONE,
            },
        ]
    }

    #[test]
    fn total_queue_cases() {
        for case in cases() {
            let result = check(&case.history);
            let name = case.name;
            assert_eq!(result.valid, case.valid, "{name}: valid");
            assert_eq!(result.lost.values, case.lost, "{name}: lost");
            assert_eq!(result.lost.count, case.lost.len(), "{name}: lost count");
            assert_eq!(
                result.unexpected.values, case.unexpected,
                "{name}: unexpected"
            );
            let duplicated: Vec<(u64, usize)> = result
                .duplicated
                .values
                .iter()
                .map(|(v, n)| (*v, *n))
                .collect();
            assert_eq!(duplicated, case.duplicated, "{name}: duplicated");
            assert_eq!(result.recovered.values, case.recovered, "{name}: recovered");
            assert_eq!(
                result.failed_but_delivered.values, case.failed_but_delivered,
                "{name}: failed-but-delivered"
            );
        }
    }

    #[test]
    fn counts_of_a_run_with_every_outcome() {
        let ops = three_ok()
            .enq("c2", 4, 26, 500, Info)
            .enq_open("c3", 5, 27)
            .enq("c4", 6, 28, 30, Fail)
            .deq("c1", &[1, 2], 30, 35)
            .deq("c2", &[2, 3, 4, 2], 600, 610)
            .build();
        let result = check(&ops);
        assert_eq!(result.enqueue_invoke_count, 6);
        assert_eq!(result.enqueue_ok_count, 3);
        assert_eq!(result.enqueue_fail_count, 1);
        assert_eq!(result.enqueue_info_count, 2);
        assert_eq!(result.dequeue_value_count, 6);
        assert_eq!(result.dequeue_distinct_count, 4);
        // 1, 2, 3 and 4 were attempted once each: four of the six deliveries match attempts.
        assert_eq!(result.ok_count, 4);
        assert_eq!(result.duplicated.count, 1);
        assert_eq!(result.duplicated.extra_delivery_count, 2);
        assert!(result.drain_completed);
        assert_eq!(result.at_least_once, Validity::True);
        assert_eq!(result.at_most_once, Validity::False);
        assert_eq!(result.exactly_once, Validity::False);
        assert_eq!(result.valid, Validity::True);
    }

    #[test]
    fn delivery_guarantees_are_unknown_without_a_drain() {
        let ops = history()
            .enq("c0", 1, 0, 5, Ok)
            .deq("c1", &[1], 30, 35)
            .build();
        let result = check(&ops);
        assert!(!result.drain_completed);
        assert_eq!(result.at_least_once, Validity::Unknown);
        assert_eq!(result.at_most_once, Validity::Unknown);
        assert_eq!(result.exactly_once, Validity::Unknown);
        assert_eq!(result.valid, Validity::Unknown);
    }

    #[test]
    fn result_serializes_with_unknown_as_a_string() {
        let ops = history().enq("c0", 1, 0, 5, Ok).build();
        let json = serde_json::to_value(check(&ops)).unwrap();
        assert_eq!(json["valid"], serde_json::json!("unknown"));
        assert_eq!(json["lost"]["count"], serde_json::json!(1));
        assert_eq!(json["lost"]["values"], serde_json::json!([1]));
    }
}
