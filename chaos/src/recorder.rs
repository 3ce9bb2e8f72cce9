//! Appends ops to `history.jsonl` as they happen and keeps them for the checkers.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use anyhow::Context;

use crate::history::{F, Op, OpType};

/// The history being written. Ops get their index and time when recorded, so the file is in
/// real-time order.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    ops: Vec<Op>,
    file: BufWriter<File>,
    error: Option<String>,
}

impl Recorder {
    /// Creates (truncates) the history file.
    ///
    /// # Errors
    /// The file cannot be created.
    pub fn create(path: &Path) -> anyhow::Result<Recorder> {
        let file = File::create(path).with_context(|| format!("create {}", path.display()))?;
        Ok(Recorder {
            start: Instant::now(),
            inner: Mutex::new(Inner {
                ops: Vec::new(),
                file: BufWriter::new(file),
                error: None,
            }),
        })
    }

    /// Nanoseconds since the run started.
    pub fn now_ns(&self) -> u64 {
        self.ns_at(Instant::now())
    }

    /// `at` as nanoseconds since the run started, the clock of [`Op::time_ns`] (0 before it).
    pub fn ns_at(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.start).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Records `op` (its index and time are assigned here) and returns the recorded copy.
    pub fn record(&self, mut op: Op) -> Op {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        op.index = u64::try_from(inner.ops.len()).unwrap_or(u64::MAX);
        op.time_ns = self.now_ns();
        match serde_json::to_string(&op) {
            Ok(line) => {
                if let Err(e) = writeln!(inner.file, "{line}") {
                    inner.error.get_or_insert(e.to_string());
                }
            }
            Err(e) => {
                inner.error.get_or_insert(e.to_string());
            }
        }
        inner.ops.push(op.clone());
        op
    }

    /// A nemesis op.
    pub fn fault(&self, f: F, fault: &str, nodes: Vec<String>, error: Option<String>) {
        self.record(Op {
            index: 0,
            time_ns: 0,
            process: "nemesis".into(),
            ty: OpType::Info,
            f,
            value: None,
            group: None,
            values: Vec::new(),
            received_ns: None,
            node: None,
            fault: Some(fault.to_string()),
            nodes,
            error,
        });
    }

    /// Flushes the file and returns every op so far.
    ///
    /// # Errors
    /// A write error seen at any point of the run.
    pub fn finish(&self) -> anyhow::Result<Vec<Op>> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.file.flush().context("flush history.jsonl")?;
        if let Some(e) = &inner.error {
            anyhow::bail!("writing history.jsonl: {e}");
        }
        Ok(inner.ops.clone())
    }
}

/// A client op under way: `invoke` recorded, completion pending.
#[derive(Debug)]
pub struct Pending<'a> {
    recorder: &'a Recorder,
    invoke: Op,
}

impl<'a> Pending<'a> {
    /// Records the invocation.
    pub fn invoke(
        recorder: &'a Recorder,
        process: &str,
        f: F,
        value: Option<u64>,
        group: Option<String>,
        node: &str,
    ) -> Pending<'a> {
        let invoke = recorder.record(Op {
            index: 0,
            time_ns: 0,
            process: process.to_string(),
            ty: OpType::Invoke,
            f,
            value,
            group,
            values: Vec::new(),
            received_ns: None,
            node: Some(node.to_string()),
            fault: None,
            nodes: Vec::new(),
            error: None,
        });
        Pending { recorder, invoke }
    }

    /// Records the completion.
    pub fn complete(self, ty: OpType, values: Vec<u64>, error: Option<String>) {
        self.finish(ty, values, None, error);
    }

    /// Records a dequeue's `ok`: `values` in delivery order, `received_at` when the receive
    /// returned (before the acks; see [`Op::received_ns`]), `ack_error` when an ack failed or
    /// went unanswered.
    pub fn complete_dequeue(
        self,
        values: Vec<u64>,
        received_at: Instant,
        ack_error: Option<String>,
    ) {
        let received_ns = self.recorder.ns_at(received_at);
        self.finish(OpType::Ok, values, Some(received_ns), ack_error);
    }

    /// Records the completion as `ty` with these fields.
    fn finish(self, ty: OpType, values: Vec<u64>, received_ns: Option<u64>, error: Option<String>) {
        let mut op = self.invoke;
        op.ty = ty;
        op.values = values;
        op.received_ns = received_ns;
        op.error = error;
        self.recorder.record(op);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dequeue_records_when_its_receive_returned() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = Recorder::create(&dir.path().join("history.jsonl")).unwrap();
        let pending = Pending::invoke(&recorder, "c0", F::Dequeue, None, None, "n0");
        let received_at = Instant::now();
        std::thread::sleep(std::time::Duration::from_millis(20));
        pending.complete_dequeue(vec![7, 8], received_at, Some("ack: no answer".into()));
        Pending::invoke(&recorder, "c1", F::Enqueue, Some(9), None, "n0").complete(
            OpType::Ok,
            Vec::new(),
            None,
        );
        let ops = recorder.finish().unwrap();
        let (invoke, done) = (&ops[0], &ops[1]);
        let received_ns = done.received_ns.unwrap();
        assert!(invoke.time_ns <= received_ns, "{invoke:?} {done:?}");
        // The ack's time is not the receive's: the completion is recorded 20 ms later.
        assert!(received_ns + 20_000_000 <= done.time_ns, "{done:?}");
        assert_eq!(done.values, [7, 8]);
        assert!(ops[2..].iter().all(|op| op.received_ns.is_none()));
    }
}
