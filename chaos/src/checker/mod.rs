//! Checkers: pure functions over a [`history`](crate::history), one file per property.
//!
//! Each checker returns a serde-serializable result whose `valid` field is a [`Validity`]:
//! `true`, `false`, or `"unknown"` when the history cannot settle the question (the final drain
//! never completed, too few operations succeeded). A run's verdict is the [`Validity::merge`] of
//! all its checkers: one `false` makes the run invalid, otherwise one `unknown` makes it unknown.
//!
//! Shared here: pairing each invocation with its completion ([`pairs`]) and the fault windows
//! ([`fault_windows`]). Both follow Jepsen's model: a process has at most one operation in
//! flight, so its next completion belongs to its last invocation; an invocation that never
//! completes is unknown (`info`), never failed.

pub mod availability;
pub mod coverage;
pub mod order;
pub mod queue;

#[cfg(test)]
pub(crate) mod testkit;

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::history::{F, Op, OpType};

/// How many example values a result lists for each set; the counts are always exact.
pub const EXAMPLES_MAX: usize = 100;

/// A checker's verdict, serialized as JSON `true`, `false` or `"unknown"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// The property holds on this history.
    True,
    /// The property is violated.
    False,
    /// The history cannot decide (for example, the final drain did not complete).
    Unknown,
}

impl Validity {
    /// `True` for `true`, `False` for `false`.
    pub fn from_bool(holds: bool) -> Self {
        if holds {
            Validity::True
        } else {
            Validity::False
        }
    }

    /// Combines two verdicts: `False` beats `Unknown`, which beats `True`.
    #[must_use]
    pub fn merge(self, other: Validity) -> Validity {
        match (self, other) {
            (Validity::False, _) | (_, Validity::False) => Validity::False,
            (Validity::Unknown, _) | (_, Validity::Unknown) => Validity::Unknown,
            (Validity::True, Validity::True) => Validity::True,
        }
    }

    /// Merges all verdicts; `True` for none.
    pub fn merge_all(verdicts: impl IntoIterator<Item = Validity>) -> Validity {
        verdicts.into_iter().fold(Validity::True, Validity::merge)
    }

    /// The JSON spelling, for text output: `true`, `false` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Validity::True => "true",
            Validity::False => "false",
            Validity::Unknown => "unknown",
        }
    }
}

impl Serialize for Validity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Validity::True => serializer.serialize_bool(true),
            Validity::False => serializer.serialize_bool(false),
            Validity::Unknown => serializer.serialize_str("unknown"),
        }
    }
}

impl<'de> Deserialize<'de> for Validity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Bool(bool),
            Text(String),
        }
        match Repr::deserialize(deserializer)? {
            Repr::Bool(holds) => Ok(Validity::from_bool(holds)),
            Repr::Text(text) if text == "unknown" => Ok(Validity::Unknown),
            Repr::Text(text) => Err(serde::de::Error::custom(format!(
                "expected true, false or \"unknown\", found {text:?}"
            ))),
        }
    }
}

/// A set of message values: its exact size and the smallest [`EXAMPLES_MAX`] of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ValueSet {
    /// How many distinct values the set holds.
    pub count: usize,
    /// The smallest values, ascending, at most [`EXAMPLES_MAX`].
    pub values: Vec<u64>,
}

impl ValueSet {
    /// Builds the set from values in ascending order (as a `BTreeSet` or `BTreeMap` yields them).
    pub fn from_sorted(values: impl IntoIterator<Item = u64>) -> Self {
        let mut set = ValueSet::default();
        for value in values {
            debug_assert!(set.values.last().is_none_or(|last| *last < value));
            if set.values.len() < EXAMPLES_MAX {
                set.values.push(value);
            }
            set.count += 1;
        }
        set
    }

    /// True when the set holds no value.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// Counts of one operation kind by op type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OpCounts {
    /// `invoke` ops.
    pub invoke: usize,
    /// `ok` completions.
    pub ok: usize,
    /// `fail` completions.
    pub fail: usize,
    /// `info` ops: unknown completions, and every nemesis op.
    pub info: usize,
}

/// Counts every op of the history by `f` (keyed by [`F::name`]) and type.
pub fn count_ops(history: &[Op]) -> BTreeMap<String, OpCounts> {
    let mut counts: BTreeMap<String, OpCounts> = BTreeMap::new();
    for op in history {
        let entry = counts.entry(op.f.name().to_owned()).or_default();
        match op.ty {
            OpType::Invoke => entry.invoke += 1,
            OpType::Ok => entry.ok += 1,
            OpType::Fail => entry.fail += 1,
            OpType::Info => entry.info += 1,
        }
    }
    counts
}

/// A client invocation and its completion, if any.
#[derive(Debug, Clone, Copy)]
pub struct OpPair<'a> {
    /// The `invoke` op.
    pub invoke: &'a Op,
    /// The matching `ok` / `fail` / `info` op of the same process and `f`; `None` if the
    /// history ended first.
    pub completion: Option<&'a Op>,
}

impl OpPair<'_> {
    /// `Ok`, `Fail` or `Info`; an invocation that never completed is `Info` (unknown).
    pub fn outcome(&self) -> OpType {
        self.completion.map_or(OpType::Info, |op| op.ty)
    }

    /// Completion time minus invocation time, if the op completed.
    pub fn latency_ns(&self) -> Option<u64> {
        self.completion
            .map(|op| op.time_ns.saturating_sub(self.invoke.time_ns))
    }
}

/// Pairs every `invoke` with the next completion of the same process and `f`, in invocation
/// order. Completions without an open invocation (nemesis ops, malformed lines) are skipped; a
/// second invocation while one is open leaves the first without completion.
pub fn pairs(history: &[Op]) -> Vec<OpPair<'_>> {
    let mut result: Vec<OpPair<'_>> = Vec::new();
    let mut open: HashMap<&str, usize> = HashMap::new();
    for op in history {
        if op.ty == OpType::Invoke {
            open.insert(op.process.as_str(), result.len());
            result.push(OpPair {
                invoke: op,
                completion: None,
            });
            continue;
        }
        let Some(&position) = open.get(op.process.as_str()) else {
            continue;
        };
        if let Some(pair) = result.get_mut(position)
            && pair.invoke.f == op.f
        {
            pair.completion = Some(op);
            open.remove(op.process.as_str());
        }
    }
    result
}

/// The time of the last op, or 0 for an empty history.
pub fn history_end_ns(history: &[Op]) -> u64 {
    history.iter().map(|op| op.time_ns).max().unwrap_or(0)
}

/// One fault: from its `fault-start` to the matching `fault-end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultWindow {
    /// The fault's name (`kill-leader`, ...).
    pub fault: String,
    /// The nodes it hit.
    pub nodes: Vec<String>,
    /// When it started.
    pub start_ns: u64,
    /// When it was healed, or the end of the history if it never was.
    pub end_ns: u64,
    /// False when no `fault-end` matched the start.
    pub healed: bool,
}

/// The fault windows in start order. A `fault-end` closes the oldest open start of the same
/// fault name; a start never closed ends at the end of the history; an end with no open start
/// is ignored.
pub fn fault_windows(history: &[Op]) -> Vec<FaultWindow> {
    let end_ns = history_end_ns(history);
    let mut windows: Vec<FaultWindow> = Vec::new();
    let mut open: HashMap<String, VecDeque<usize>> = HashMap::new();
    for op in history {
        match op.f {
            F::FaultStart => {
                let fault = fault_name(op);
                open.entry(fault.clone())
                    .or_default()
                    .push_back(windows.len());
                windows.push(FaultWindow {
                    fault,
                    nodes: op.nodes.clone(),
                    start_ns: op.time_ns,
                    end_ns,
                    healed: false,
                });
            }
            F::FaultEnd => {
                let position = open.get_mut(&fault_name(op)).and_then(VecDeque::pop_front);
                if let Some(window) = position.and_then(|p| windows.get_mut(p)) {
                    window.end_ns = op.time_ns;
                    window.healed = true;
                }
            }
            _ => {}
        }
    }
    windows
}

/// A nemesis op's fault name: `fault`, else `node` (which the format also allows), else
/// `unknown`.
pub fn fault_name(op: &Op) -> String {
    op.fault
        .clone()
        .or_else(|| op.node.clone())
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testkit::history;

    #[test]
    fn validity_serializes_as_bool_or_unknown() {
        let json =
            serde_json::to_string(&[Validity::True, Validity::False, Validity::Unknown]).unwrap();
        assert_eq!(json, r#"[true,false,"unknown"]"#);
        let back: Vec<Validity> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, [Validity::True, Validity::False, Validity::Unknown]);
        assert!(serde_json::from_str::<Validity>(r#""maybe""#).is_err());
    }

    #[test]
    fn validity_merge_false_beats_unknown_beats_true() {
        use Validity::{False, True, Unknown};
        let table = [
            (True, True, True),
            (True, Unknown, Unknown),
            (Unknown, True, Unknown),
            (Unknown, False, False),
            (False, Unknown, False),
            (True, False, False),
            (Unknown, Unknown, Unknown),
        ];
        for (left, right, merged) in table {
            assert_eq!(left.merge(right), merged, "{left:?} + {right:?}");
        }
        assert_eq!(Validity::merge_all([]), True);
        assert_eq!(Validity::merge_all([True, Unknown, True]), Unknown);
    }

    #[test]
    fn value_set_counts_all_and_lists_the_first_hundred() {
        let set = ValueSet::from_sorted(0..150);
        assert_eq!(set.count, 150);
        assert_eq!(set.values.len(), EXAMPLES_MAX);
        assert_eq!(set.values.last(), Some(&99));
    }

    #[test]
    fn pairs_match_by_process_and_leave_open_invokes_unknown() {
        let ops = history()
            .enq("c0", 1, 0, 10, OpType::Ok)
            .enq_open("c1", 2, 5)
            .enq("c2", 3, 6, 8, OpType::Fail)
            .fault("kill-leader", &["n0"], 7, 9)
            .build();
        let pairs = pairs(&ops);
        let outcomes: Vec<(Option<u64>, OpType, Option<u64>)> = pairs
            .iter()
            .map(|p| (p.invoke.value, p.outcome(), p.latency_ns()))
            .collect();
        assert_eq!(
            outcomes,
            [
                (Some(1), OpType::Ok, Some(10_000_000)),
                (Some(2), OpType::Info, None),
                (Some(3), OpType::Fail, Some(2_000_000)),
            ]
        );
    }

    #[test]
    fn fault_windows_match_by_name_in_order() {
        let ops = history()
            .fault_start("pause", &["n1"], 100)
            .fault_start("kill", &["n0"], 150)
            .fault_start("pause", &["n2"], 200)
            .fault_end("pause", 300)
            .fault_end("kill", 350)
            .fault_end("random-loss", 360)
            .enq("c0", 1, 400, 500, OpType::Ok)
            .build();
        let windows: Vec<(String, u64, u64, bool)> = fault_windows(&ops)
            .into_iter()
            .map(|w| {
                (
                    w.fault,
                    w.start_ns / 1_000_000,
                    w.end_ns / 1_000_000,
                    w.healed,
                )
            })
            .collect();
        assert_eq!(
            windows,
            [
                ("pause".to_owned(), 100, 300, true),
                ("kill".to_owned(), 150, 350, true),
                ("pause".to_owned(), 200, 500, false),
            ]
        );
    }
}
