//! Total-queue: every acknowledged message is delivered, nothing else is, and nothing is
//! delivered again once its ack was confirmed.
//!
//! Jepsen's `total-queue` over multisets of values, plus RaftMQ's *failed-but-delivered* and
//! *acked-then-redelivered*:
//!
//! - attempts: values of enqueue invocations; enqueues: values whose enqueue completed `ok`;
//!   dequeues: every value of every `ok` dequeue, the final drain's included.
//! - ok = dequeues ∩ attempts; unexpected = dequeued values never attempted;
//!   duplicated = values dequeued more than once, every repeat whatever its timing (so it
//!   includes acked-then-redelivered); lost = ok-enqueued values never dequeued;
//!   recovered = dequeued values whose enqueue was unknown (`info`, or never completed);
//!   failed-but-delivered = dequeued values whose enqueue completed `fail`;
//!   acked-then-redelivered = values delivered by a dequeue invoked strictly after an earlier
//!   dequeue of the same value had completed `ok` without an `error`, i.e. after the broker had
//!   answered its ack (a value attempted n times has n copies: only a delivery after n such
//!   acks counts).
//!
//! Verdict: lost, unexpected, failed-but-delivered and acked-then-redelivered are bugs. A
//! definite `fail` that was in fact stored breaks the client's contract as surely as a lost ack
//! (a client that retries it creates a duplicate it was told could not happen); so does a
//! confirmed ack that did not remove the message. Other duplicates are allowed: delivery is
//! at-least-once. That covers a receive that overlaps the ack in time (it may have been served
//! before the ack was applied, and the ack may not have been answered yet) and a redelivery
//! after a receive whose ack failed or went unanswered (an `ok` dequeue with an `error`, or a
//! `fail` / `info` one). The history's clock alone orders the two: the later dequeue's invoke
//! time must exceed the earlier one's completion time.
//! Without a completed drain (`drain` op of type `ok`) undelivered messages may still be in the
//! queue, so lost cannot be judged and the verdict is `unknown` unless something that does not
//! depend on the drain (unexpected, failed-but-delivered, acked-then-redelivered) is already
//! wrong.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::{EXAMPLES_MAX, OpPair, Validity, ValueSet, pairs};
use crate::history::{F, Op, OpType};

/// The total-queue verdict and its sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueResult {
    /// False on lost, unexpected, failed-but-delivered or acked-then-redelivered; otherwise
    /// unknown without a completed drain.
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
    /// Delivered more than once, acked-then-redelivered included: allowed by itself, reported.
    pub duplicated: Duplicates,
    /// Delivered again by a dequeue invoked after the value's ack had been confirmed: a bug.
    pub acked_then_redelivered: ValueSet,
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
    let pairs = pairs(history);
    let mut attempts: BTreeMap<u64, usize> = BTreeMap::new();
    let mut outcomes: BTreeMap<u64, Outcome> = BTreeMap::new();
    let (mut ok, mut fail, mut info, mut invoke) = (0, 0, 0, 0);
    for pair in pairs.iter().filter(|p| p.invoke.f == F::Enqueue) {
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
    let acked_then_redelivered = acked_then_redelivered(&pairs, &attempts);

    let drain_verdict = if drain_completed {
        Validity::True
    } else {
        Validity::Unknown
    };
    let at_least_once = Validity::from_bool(lost.is_empty()).merge(drain_verdict);
    let at_most_once = Validity::from_bool(duplicated.count == 0).merge(drain_verdict);
    let valid = verdict(
        drain_completed,
        &lost,
        &[&unexpected, &failed_but_delivered, &acked_then_redelivered],
    );
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
        acked_then_redelivered,
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

/// True when the dequeue completed `ok` with no `error`: every ack it sent was answered OK.
/// The workload lists every received value in an `ok` dequeue and sets `error` when an ack
/// failed or went unanswered, so only such a dequeue proves its values acknowledged.
fn acked(completion: &Op) -> bool {
    completion.f == F::Dequeue && completion.ty == OpType::Ok && completion.error.is_none()
}

/// Per value, the completion times of the dequeues that acked it, ascending.
fn ack_times(pairs: &[OpPair<'_>]) -> BTreeMap<u64, Vec<u64>> {
    let mut times: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for done in pairs
        .iter()
        .filter_map(|p| p.completion)
        .filter(|c| acked(c))
    {
        for value in &done.values {
            times.entry(*value).or_default().push(done.time_ns);
        }
    }
    for list in times.values_mut() {
        list.sort_unstable();
    }
    times
}

/// Per value, the time by which every copy of it had been acked: the n-th ack of a value
/// attempted n times (at least once, so that an unexpected value is judged as a single copy).
fn all_copies_acked_at(
    pairs: &[OpPair<'_>],
    attempts: &BTreeMap<u64, usize>,
) -> BTreeMap<u64, u64> {
    ack_times(pairs)
        .into_iter()
        .filter_map(|(value, times)| {
            let copies = attempts.get(&value).copied().unwrap_or(0).max(1);
            times.get(copies - 1).map(|at| (value, *at))
        })
        .collect()
}

/// Values an `ok` dequeue delivered although it was invoked strictly after every copy of the
/// value had been acked. A dequeue that overlaps the last ack is concurrent with it, not after.
fn acked_then_redelivered(pairs: &[OpPair<'_>], attempts: &BTreeMap<u64, usize>) -> ValueSet {
    let acked_at = all_copies_acked_at(pairs, attempts);
    let mut found: BTreeSet<u64> = BTreeSet::new();
    for pair in pairs.iter().filter(|p| p.invoke.f == F::Dequeue) {
        let Some(done) = pair.completion.filter(|c| c.ty == OpType::Ok) else {
            continue;
        };
        let invoked = pair.invoke.time_ns;
        let after_ack = |v: &&u64| acked_at.get(*v).is_some_and(|at| invoked > *at);
        found.extend(done.values.iter().filter(after_ack));
    }
    ValueSet::from_sorted(found)
}

/// `always_wrong` (unexpected, failed-but-delivered, acked-then-redelivered) is wrong whatever
/// comes later; lost only counts once the drain has shown the queue is empty.
fn verdict(drain_completed: bool, lost: &ValueSet, always_wrong: &[&ValueSet]) -> Validity {
    if always_wrong.iter().any(|set| !set.is_empty()) {
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
        acked_then_redelivered: &'static [u64],
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
                acked_then_redelivered: NONE,
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
                acked_then_redelivered: NONE,
            },
            Case {
                name: "a duplicate is reported but valid",
                // c2's receive starts before c1's ack of 2 was answered.
                history: three_ok()
                    .deq("c1", &[1, 2], 30, 35)
                    .deq("c2", &[2, 3, 2], 32, 45)
                    .build(),
                valid: Validity::True,
                lost: NONE,
                unexpected: NONE,
                duplicated: &[(2, 3)],
                recovered: NONE,
                failed_but_delivered: NONE,
                acked_then_redelivered: NONE,
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
                acked_then_redelivered: NONE,
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
                acked_then_redelivered: NONE,
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
                acked_then_redelivered: NONE,
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
                acked_then_redelivered: NONE,
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
                acked_then_redelivered: NONE,
            },
            Case {
                name: "only ok dequeues deliver",
                history: three_ok()
                    .deq("c1", &[1, 2], 30, 35)
                    .dequeue("c1", &[3], 40, 45, Info)
                    .dequeue("c2", &[77], 40, 45, Fail)
                    .dequeue("c3", &[1], 50, 55, Info)
                    .build(),
                valid: Validity::False,
                lost: &[3],
                unexpected: NONE,
                duplicated: &[],
                recovered: NONE,
                failed_but_delivered: NONE,
                acked_then_redelivered: NONE,
            },
            Case {
                name: "a value delivered again after its ack was answered is a bug",
                history: three_ok()
                    .deq("c1", &[1, 2, 3], 30, 35)
                    .deq("c2", &[2], 40, 45)
                    .build(),
                valid: Validity::False,
                lost: NONE,
                unexpected: NONE,
                duplicated: &[(2, 2)],
                recovered: NONE,
                failed_but_delivered: NONE,
                acked_then_redelivered: &[2],
            },
            Case {
                name: "without a drain an acked-then-redelivered value is still invalid",
                history: history()
                    .enq("c0", 1, 0, 5, Ok)
                    .deq("c1", &[1], 30, 35)
                    .deq("c2", &[1], 40, 45)
                    .build(),
                valid: Validity::False,
                lost: NONE,
                unexpected: NONE,
                duplicated: &[(1, 2)],
                recovered: NONE,
                failed_but_delivered: NONE,
                acked_then_redelivered: &[1],
            },
            Case {
                name: "the drain's redelivery of an acked value is a bug too",
                history: three_ok()
                    .deq("c1", &[1, 2, 3], 30, 35)
                    .deq("drain", &[3], 910, 920)
                    .build(),
                valid: Validity::False,
                lost: NONE,
                unexpected: NONE,
                duplicated: &[(3, 2)],
                recovered: NONE,
                failed_but_delivered: NONE,
                acked_then_redelivered: &[3],
            },
            Case {
                name: "deliveries overlapping the ack are plain duplicates",
                // c2 starts while c1's ack of 2 is unanswered; c3 starts the instant c1
                // completes, which is not after it.
                history: three_ok()
                    .deq("c1", &[1, 2, 3], 30, 40)
                    .deq("c2", &[2], 35, 45)
                    .deq("c3", &[3], 40, 50)
                    .build(),
                valid: Validity::True,
                lost: NONE,
                unexpected: NONE,
                duplicated: &[(2, 2), (3, 2)],
                recovered: NONE,
                failed_but_delivered: NONE,
                acked_then_redelivered: NONE,
            },
            Case {
                name: "a redelivery after an unacknowledged receive is a plain duplicate",
                // c1's ack of 2 went unanswered; 3's receive failed or timed out and lists
                // nothing a checker may count.
                history: three_ok()
                    .deq_ack_failed("c1", &[1, 2], 30, 35)
                    .dequeue("c1", &[3], 40, 45, Info)
                    .dequeue("c1", &[3], 50, 55, Fail)
                    .deq("c2", &[1, 2, 3], 100, 110)
                    .build(),
                valid: Validity::True,
                lost: NONE,
                unexpected: NONE,
                duplicated: &[(1, 2), (2, 2)],
                recovered: NONE,
                failed_but_delivered: NONE,
                acked_then_redelivered: NONE,
            },
            Case {
                name: "a value sent twice may be delivered and acked twice",
                history: three_ok()
                    .enq("c0", 3, 26, 28, Ok)
                    .deq("c1", &[1, 2, 3], 30, 35)
                    .deq("c2", &[3], 40, 45)
                    .build(),
                valid: Validity::True,
                lost: NONE,
                unexpected: NONE,
                duplicated: &[(3, 2)],
                recovered: NONE,
                failed_but_delivered: NONE,
                acked_then_redelivered: NONE,
            },
            Case {
                name: "a value sent twice is redelivered after both copies were acked",
                history: three_ok()
                    .enq("c0", 3, 26, 28, Ok)
                    .deq("c1", &[1, 2, 3], 30, 35)
                    .deq("c2", &[3], 40, 45)
                    .deq("c3", &[3], 50, 55)
                    .build(),
                valid: Validity::False,
                lost: NONE,
                unexpected: NONE,
                duplicated: &[(3, 3)],
                recovered: NONE,
                failed_but_delivered: NONE,
                acked_then_redelivered: &[3],
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
            assert_eq!(
                result.acked_then_redelivered.values, case.acked_then_redelivered,
                "{name}: acked-then-redelivered"
            );
            assert_eq!(
                result.acked_then_redelivered.count,
                case.acked_then_redelivered.len(),
                "{name}: acked-then-redelivered count"
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
        // 2 was acked at 35 ms and delivered again to a receive invoked at 600 ms.
        assert_eq!(result.acked_then_redelivered, ValueSet::from_sorted([2]));
        assert!(result.drain_completed);
        assert_eq!(result.at_least_once, Validity::True);
        assert_eq!(result.at_most_once, Validity::False);
        assert_eq!(result.exactly_once, Validity::False);
        assert_eq!(result.valid, Validity::False);
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
        assert_eq!(
            json["acked_then_redelivered"],
            serde_json::json!({ "count": 0, "values": [] })
        );
    }

    #[test]
    fn acked_then_redelivered_counts_all_and_lists_the_first_hundred() {
        let mut builder = history();
        for value in 0..150 {
            builder = builder.enq("c0", value, 2 * value, 2 * value + 1, Ok);
        }
        let values: Vec<u64> = (0..150).collect();
        let ops = builder
            .deq("c1", &values, 400, 410)
            .deq("c2", &values, 420, 430)
            .build();
        let result = check(&ops);
        assert_eq!(result.acked_then_redelivered.count, 150);
        assert_eq!(result.acked_then_redelivered.values.len(), EXAMPLES_MAX);
        assert_eq!(result.valid, Validity::False);
    }
}
