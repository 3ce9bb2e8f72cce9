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
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
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
            node: Some(node.to_string()),
            fault: None,
            nodes: Vec::new(),
            error: None,
        });
        Pending { recorder, invoke }
    }

    /// Records the completion.
    pub fn complete(self, ty: OpType, values: Vec<u64>, error: Option<String>) {
        let mut op = self.invoke;
        op.ty = ty;
        op.values = values;
        op.error = error;
        self.recorder.record(op);
    }
}
