//! The history: every client operation and every fault, in the order they happened.
//!
//! Written as `history.jsonl`, one [`Op`] per line. The model is Jepsen's: a client *process*
//! issues an `invoke`, then exactly one completion: `ok` (it happened), `fail` (it certainly did
//! not happen) or `info` (unknown — a timeout or a broken connection: it may or may not have
//! happened, and checkers must treat it as both possible). Faults are `info` ops of the
//! `nemesis` process with `f` = `fault-start` / `fault-end`.

use serde::{Deserialize, Serialize};

/// What kind of completion (or the invocation itself) an op records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    /// The client started the operation.
    Invoke,
    /// The operation happened.
    Ok,
    /// The operation certainly did not happen.
    Fail,
    /// Unknown: the operation may or may not have happened (also every nemesis op).
    Info,
}

/// The operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum F {
    /// A send of one message carrying the unique `value` (and `group` for FIFO sends).
    Enqueue,
    /// A receive (+ ack) by a consumer; `ok` carries every received value in delivery order
    /// (possibly empty), acked or not: a message that reached the consumer was delivered, by
    /// the `ok`'s `received_ns`. The `ok` has an `error` when an ack failed or went unanswered,
    /// so only an `ok` without `error` proves its values acknowledged, by its completion time.
    Dequeue,
    /// The final drain after the heal: `invoke` when it starts, `ok` when the consumers saw no
    /// new message for the quiet period, `fail` when it hit its deadline. The messages it reads
    /// are recorded as ordinary `dequeue` ops.
    Drain,
    /// A consumer process stopped and a new one took its place (consumer-restart workload).
    ConsumerRestart,
    /// Nemesis: a fault began. `fault` names it, `nodes` lists its targets.
    FaultStart,
    /// Nemesis: the fault of the matching `fault-start` was healed.
    FaultEnd,
}

/// One line of `history.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// Position in the history, from 0.
    pub index: u64,
    /// Nanoseconds since the run started.
    pub time_ns: u64,
    /// `c0`, `c1`, … for clients, `nemesis` for faults.
    pub process: String,
    /// Invocation or completion kind.
    #[serde(rename = "type")]
    pub ty: OpType,
    /// The operation.
    pub f: F,
    /// Enqueue: the unique message value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<u64>,
    /// Enqueue: the message group (FIFO workloads), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Dequeue `ok`: the values received, in delivery order (acknowledged unless `error`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<u64>,
    /// Dequeue `ok`: when the receive returned, in nanoseconds since the run started (the clock
    /// of `time_ns`), before any ack was sent. The values were delivered by then; `time_ns` is
    /// later by the acks, seconds later when one times out. Absent from histories written before
    /// it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_ns: Option<u64>,
    /// The broker node the client talked to (`n0`…), or the fault's name for nemesis ops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Nemesis ops: the fault, e.g. `kill-leader`, `partition-random-halves`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    /// Nemesis ops: the nodes the fault hit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// `fail` / `info`: what went wrong (status code and message, or the transport error).
    /// Dequeue `ok`: the ack's error, when an ack failed or went unanswered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl F {
    /// The name as written in `history.jsonl` (`enqueue`, `fault-start`, ...).
    pub fn name(self) -> &'static str {
        match self {
            F::Enqueue => "enqueue",
            F::Dequeue => "dequeue",
            F::Drain => "drain",
            F::ConsumerRestart => "consumer-restart",
            F::FaultStart => "fault-start",
            F::FaultEnd => "fault-end",
        }
    }
}

impl Op {
    /// Milliseconds since the run started.
    pub fn time_ms(&self) -> f64 {
        ns_to_ms(self.time_ns)
    }
}

/// Converts a nanosecond timestamp or duration to fractional milliseconds.
pub fn ns_to_ms(ns: u64) -> f64 {
    // Exact below 2^53 ns (104 days), far beyond any run.
    ns as f64 / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f_names_match_the_serialized_form() {
        for f in [
            F::Enqueue,
            F::Dequeue,
            F::Drain,
            F::ConsumerRestart,
            F::FaultStart,
            F::FaultEnd,
        ] {
            assert_eq!(
                serde_json::to_value(f).unwrap(),
                serde_json::json!(f.name())
            );
        }
    }

    #[test]
    fn a_history_line_round_trips() {
        let line = r#"{"index":3,"time_ns":1500000,"process":"c0","type":"ok","f":"enqueue","value":7,"node":"n1"}"#;
        let op: Op = serde_json::from_str(line).unwrap();
        assert_eq!((op.ty, op.f, op.value), (OpType::Ok, F::Enqueue, Some(7)));
        assert_eq!(op.time_ms(), 1.5);
        assert_eq!(serde_json::to_string(&op).unwrap(), line);
        assert_eq!(op.received_ns, None);
    }

    #[test]
    fn a_dequeue_line_round_trips_with_its_receive_time() {
        let line = r#"{"index":9,"time_ns":72691000000,"process":"c3","type":"ok","f":"dequeue","values":[2785,2786],"received_ns":70190000000,"node":"n0","error":"ack: MASTER_PERSISTENCE_TIMEOUT"}"#;
        let op: Op = serde_json::from_str(line).unwrap();
        assert_eq!(op.received_ns, Some(70_190_000_000));
        assert_eq!(op.values, [2785, 2786]);
        assert_eq!(serde_json::to_string(&op).unwrap(), line);
    }
}
