//! Per-group order: within a message group, messages are delivered in the order they were
//! acknowledged.
//!
//! OpenChaos's order check: per group, the sequence of `ok` enqueue values (in completion order)
//! must be a subsequence of the group's dequeue sequence (values of `ok` dequeues in history
//! order, each mapped to its group through its enqueue invocation). Redeliveries and values
//! whose enqueue was unknown may appear anywhere, since at-least-once delivery allows both.
//!
//! Only acknowledged values that were delivered at least once are checked: a lost message is
//! the queue checker's finding and must not show up here a second time. Values without a group
//! are not ordered and not checked.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use super::{EXAMPLES_MAX, Validity, pairs};
use crate::history::{F, Op, OpType};

/// How many dequeued values either side of the last match a violation's context shows.
const CONTEXT_RADIUS: usize = 3;

/// The per-group order verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderResult {
    /// False on any violation; unknown when no group had a delivered value to check.
    pub valid: Validity,
    /// Groups with at least one acknowledged, delivered value.
    pub group_count: usize,
    /// Acknowledged, delivered values checked over all groups.
    pub value_count: usize,
    /// Groups out of order.
    pub violation_count: usize,
    /// The first violation of each such group, for the first [`EXAMPLES_MAX`] groups by name.
    pub violations: Vec<OrderViolation>,
}

/// A group whose acknowledged sequence is not a subsequence of its deliveries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderViolation {
    /// The message group.
    pub group: String,
    /// The first acknowledged value not delivered after its predecessor.
    pub value: u64,
    /// Its predecessor in acknowledgement order, if any.
    pub previous_value: Option<u64>,
    /// A short description with the dequeue sequence around the predecessor's delivery.
    pub context: String,
}

/// Runs the order check.
pub fn check(history: &[Op]) -> OrderResult {
    let mut group_of: HashMap<u64, &str> = HashMap::new();
    let mut enqueued: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    let enqueue_pairs = pairs(history);
    for pair in enqueue_pairs.iter().filter(|p| p.invoke.f == F::Enqueue) {
        if let (Some(value), Some(group)) = (pair.invoke.value, pair.invoke.group.as_deref()) {
            group_of.insert(value, group);
        }
    }
    // Completion order, not invocation order: the broker orders what it acknowledges.
    let mut acknowledged: Vec<(u64, &str, u64)> = enqueue_pairs
        .iter()
        .filter(|p| p.invoke.f == F::Enqueue)
        .filter_map(|p| {
            let done = p.completion.filter(|c| c.ty == OpType::Ok)?;
            Some((done.index, p.invoke.group.as_deref()?, p.invoke.value?))
        })
        .collect();
    acknowledged.sort_by_key(|(index, _, _)| *index);

    let mut dequeued: HashMap<&str, Vec<u64>> = HashMap::new();
    let mut delivered: HashSet<u64> = HashSet::new();
    let deliveries = history
        .iter()
        .filter(|op| op.f == F::Dequeue && op.ty == OpType::Ok)
        .flat_map(|op| op.values.iter().copied());
    for value in deliveries {
        delivered.insert(value);
        if let Some(group) = group_of.get(&value) {
            dequeued.entry(group).or_default().push(value);
        }
    }
    for (_, group, value) in acknowledged {
        if delivered.contains(&value) {
            enqueued.entry(group).or_default().push(value);
        }
    }

    let mut result = OrderResult {
        valid: Validity::True,
        group_count: enqueued.len(),
        value_count: enqueued.values().map(Vec::len).sum(),
        violation_count: 0,
        violations: Vec::new(),
    };
    for (group, sequence) in &enqueued {
        let deliveries = dequeued.get(group).map_or(&[][..], Vec::as_slice);
        if let Some(violation) = first_violation(group, sequence, deliveries) {
            result.violation_count += 1;
            if result.violations.len() < EXAMPLES_MAX {
                result.violations.push(violation);
            }
        }
    }
    result.valid = if result.violation_count > 0 {
        Validity::False
    } else if result.group_count == 0 {
        Validity::Unknown
    } else {
        Validity::True
    };
    result
}

/// Greedy subsequence match of `enqueued` in `dequeued`; the first value left unmatched is the
/// violation. Greedy is exact here: matching each value at its earliest possible position
/// leaves the longest possible rest of `dequeued` for the values after it.
fn first_violation(group: &str, enqueued: &[u64], dequeued: &[u64]) -> Option<OrderViolation> {
    let mut matched = 0;
    let mut last_match_position: Option<usize> = None;
    for (position, value) in dequeued.iter().enumerate() {
        if enqueued.get(matched) == Some(value) {
            matched += 1;
            last_match_position = Some(position);
        }
    }
    let value = *enqueued.get(matched)?;
    let previous_value = matched
        .checked_sub(1)
        .and_then(|p| enqueued.get(p))
        .copied();
    let context = match (previous_value, last_match_position) {
        (Some(previous), Some(position)) => {
            let from = position.saturating_sub(CONTEXT_RADIUS);
            let to = (position + CONTEXT_RADIUS + 1).min(dequeued.len());
            let around: Vec<String> = dequeued[from..to]
                .iter()
                .enumerate()
                .map(|(offset, v)| {
                    if from + offset == position {
                        format!("[{v}]")
                    } else {
                        v.to_string()
                    }
                })
                .collect();
            format!(
                "{value} was acknowledged after {previous} but not delivered after it; \
                 deliveries {from}..{to} of {}: {}",
                dequeued.len(),
                around.join(", ")
            )
        }
        _ => format!("{value} was acknowledged first but never delivered in order"),
    };
    Some(OrderViolation {
        group: group.to_owned(),
        value,
        previous_value,
        context,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testkit::history;
    use OpType::{Info, Ok};

    struct Case {
        name: &'static str,
        history: Vec<Op>,
        valid: Validity,
        group_count: usize,
        value_count: usize,
        /// (group, value, previous value) of each violation.
        violations: &'static [(&'static str, u64, Option<u64>)],
    }

    fn cases() -> Vec<Case> {
        let two_groups = || {
            history()
                .enq_group("c0", 1, "a", 0, 5, Ok)
                .enq_group("c1", 10, "b", 1, 6, Ok)
                .enq_group("c0", 2, "a", 10, 15, Ok)
                .enq_group("c1", 11, "b", 11, 16, Ok)
                .enq_group("c0", 3, "a", 20, 25, Ok)
        };
        vec![
            Case {
                name: "in order with redelivery passes",
                history: two_groups()
                    .deq("c2", &[1, 10, 2], 30, 35)
                    .deq("c3", &[1, 2, 11, 3, 10, 11], 40, 45)
                    .build(),
                valid: Validity::True,
                group_count: 2,
                value_count: 5,
                violations: &[],
            },
            Case {
                name: "swapped values fail",
                history: two_groups()
                    .deq("c2", &[1, 10, 3, 11], 30, 35)
                    .deq("c3", &[2], 40, 45)
                    .build(),
                valid: Validity::False,
                group_count: 2,
                value_count: 5,
                violations: &[("a", 3, Some(2))],
            },
            Case {
                name: "a lost message is not an order error",
                history: two_groups().deq("c2", &[1, 3, 10, 11], 30, 35).build(),
                valid: Validity::True,
                group_count: 2,
                value_count: 4,
                violations: &[],
            },
            Case {
                name: "unknown enqueues may be delivered anywhere",
                history: history()
                    .enq_group("c0", 1, "a", 0, 5, Ok)
                    .enq_group("c0", 2, "a", 10, 15, Info)
                    .enq_group("c1", 3, "a", 20, 25, Ok)
                    .deq("c2", &[2, 1, 3], 30, 35)
                    .build(),
                valid: Validity::True,
                group_count: 1,
                value_count: 2,
                violations: &[],
            },
            Case {
                name: "completion order counts, not invocation order",
                history: history()
                    .enq_group("c0", 1, "a", 0, 20, Ok)
                    .enq_group("c1", 2, "a", 5, 10, Ok)
                    .deq("c2", &[1, 2], 30, 35)
                    .build(),
                valid: Validity::False,
                group_count: 1,
                value_count: 2,
                violations: &[("a", 1, Some(2))],
            },
            Case {
                name: "ungrouped values are not checked",
                history: history()
                    .enq("c0", 1, 0, 5, Ok)
                    .enq("c0", 2, 10, 15, Ok)
                    .deq("c2", &[2, 1], 30, 35)
                    .build(),
                valid: Validity::Unknown,
                group_count: 0,
                value_count: 0,
                violations: &[],
            },
        ]
    }

    #[test]
    fn order_cases() {
        for case in cases() {
            let result = check(&case.history);
            let name = case.name;
            assert_eq!(result.valid, case.valid, "{name}: valid");
            assert_eq!(result.group_count, case.group_count, "{name}: groups");
            assert_eq!(result.value_count, case.value_count, "{name}: values");
            let violations: Vec<(&str, u64, Option<u64>)> = result
                .violations
                .iter()
                .map(|v| (v.group.as_str(), v.value, v.previous_value))
                .collect();
            assert_eq!(violations, case.violations, "{name}: violations");
            assert_eq!(
                result.violation_count,
                case.violations.len(),
                "{name}: count"
            );
        }
    }

    #[test]
    fn violation_context_shows_the_deliveries_around_the_predecessor() {
        let ops = history()
            .enq_group("c0", 1, "a", 0, 5, Ok)
            .enq_group("c0", 2, "a", 10, 15, Ok)
            .deq("c2", &[2, 1], 30, 35)
            .build();
        let result = check(&ops);
        assert_eq!(
            result.violations[0].context,
            "2 was acknowledged after 1 but not delivered after it; deliveries 0..2 of 2: 2, [1]"
        );
    }
}
