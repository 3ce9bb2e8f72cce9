//! A compact builder for hand-written test histories.
//!
//! Times are whole milliseconds. Each helper pushes an invocation and its completion; `build`
//! sorts all ops by time (stably, so ops pushed earlier win ties) and numbers them, so a test
//! reads as a list of operations rather than an interleaving.

use crate::history::{F, Op, OpType};

/// Starts an empty history.
pub(crate) fn history() -> HistoryBuilder {
    HistoryBuilder { ops: Vec::new() }
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct HistoryBuilder {
    ops: Vec<Op>,
}

fn op(time_ms: u64, process: &str, ty: OpType, f: F) -> Op {
    Op {
        index: 0,
        time_ns: time_ms * 1_000_000,
        process: process.to_owned(),
        ty,
        f,
        value: None,
        group: None,
        values: Vec::new(),
        received_ns: None,
        node: None,
        fault: None,
        nodes: Vec::new(),
        error: None,
    }
}

impl HistoryBuilder {
    /// An enqueue of `value`, invoked at `invoke_ms` and completed as `ty` at `complete_ms`.
    pub(crate) fn enq(
        self,
        process: &str,
        value: u64,
        invoke_ms: u64,
        complete_ms: u64,
        ty: OpType,
    ) -> Self {
        self.enqueue(process, value, None, invoke_ms, Some((complete_ms, ty)))
    }

    /// An enqueue in message group `group`.
    pub(crate) fn enq_group(
        self,
        process: &str,
        value: u64,
        group: &str,
        invoke_ms: u64,
        complete_ms: u64,
        ty: OpType,
    ) -> Self {
        self.enqueue(
            process,
            value,
            Some(group),
            invoke_ms,
            Some((complete_ms, ty)),
        )
    }

    /// An enqueue that never completes.
    pub(crate) fn enq_open(self, process: &str, value: u64, invoke_ms: u64) -> Self {
        self.enqueue(process, value, None, invoke_ms, None)
    }

    fn enqueue(
        mut self,
        process: &str,
        value: u64,
        group: Option<&str>,
        invoke_ms: u64,
        completion: Option<(u64, OpType)>,
    ) -> Self {
        let mut invoke = op(invoke_ms, process, OpType::Invoke, F::Enqueue);
        invoke.value = Some(value);
        invoke.group = group.map(str::to_owned);
        if let Some((complete_ms, ty)) = completion {
            let mut done = invoke.clone();
            done.time_ns = complete_ms * 1_000_000;
            done.ty = ty;
            if ty != OpType::Ok {
                done.error = Some("test error".to_owned());
            }
            self.ops.push(invoke);
            self.ops.push(done);
        } else {
            self.ops.push(invoke);
        }
        self
    }

    /// An `ok` dequeue of `values`.
    pub(crate) fn deq(
        self,
        process: &str,
        values: &[u64],
        invoke_ms: u64,
        complete_ms: u64,
    ) -> Self {
        self.dequeue(process, values, invoke_ms, complete_ms, OpType::Ok)
    }

    /// An `ok` dequeue of `values` whose ack failed: `ok` with an `error`, as the workload
    /// records a receive that delivered but could not acknowledge.
    pub(crate) fn deq_ack_failed(
        mut self,
        process: &str,
        values: &[u64],
        invoke_ms: u64,
        complete_ms: u64,
    ) -> Self {
        self = self.dequeue(process, values, invoke_ms, complete_ms, OpType::Ok);
        if let Some(done) = self.ops.last_mut() {
            done.error = Some("ack: no answer".to_owned());
        }
        self
    }

    /// Sets when the receive of the dequeue just pushed returned (its `received_ns`), as the
    /// workload records it on every `ok` dequeue; without it the dequeue is as in histories
    /// written before the field existed.
    pub(crate) fn received(mut self, received_ms: u64) -> Self {
        let done = self.ops.last_mut().expect("a dequeue before received()");
        assert_eq!(done.f, F::Dequeue, "received() follows a dequeue");
        done.received_ns = Some(received_ms * 1_000_000);
        self
    }

    /// A dequeue completed as `ty`; `values` is recorded whatever the type, so tests can check
    /// that only `ok` dequeues count.
    pub(crate) fn dequeue(
        mut self,
        process: &str,
        values: &[u64],
        invoke_ms: u64,
        complete_ms: u64,
        ty: OpType,
    ) -> Self {
        self.ops
            .push(op(invoke_ms, process, OpType::Invoke, F::Dequeue));
        let mut done = op(complete_ms, process, ty, F::Dequeue);
        done.values = values.to_vec();
        self.ops.push(done);
        self
    }

    /// The final drain, completed as `ty`.
    pub(crate) fn drain(mut self, invoke_ms: u64, complete_ms: u64, ty: OpType) -> Self {
        self.ops
            .push(op(invoke_ms, "drain", OpType::Invoke, F::Drain));
        self.ops.push(op(complete_ms, "drain", ty, F::Drain));
        self
    }

    /// A fault from `start_ms` to `end_ms`.
    pub(crate) fn fault(self, fault: &str, nodes: &[&str], start_ms: u64, end_ms: u64) -> Self {
        self.fault_start(fault, nodes, start_ms)
            .fault_end(fault, end_ms)
    }

    /// A `fault-start` alone.
    pub(crate) fn fault_start(mut self, fault: &str, nodes: &[&str], time_ms: u64) -> Self {
        let mut start = op(time_ms, "nemesis", OpType::Info, F::FaultStart);
        start.fault = Some(fault.to_owned());
        start.nodes = nodes.iter().map(|n| (*n).to_owned()).collect();
        self.ops.push(start);
        self
    }

    /// A `fault-end` alone.
    pub(crate) fn fault_end(mut self, fault: &str, time_ms: u64) -> Self {
        let mut end = op(time_ms, "nemesis", OpType::Info, F::FaultEnd);
        end.fault = Some(fault.to_owned());
        self.ops.push(end);
        self
    }

    /// The ops sorted by time and numbered from 0.
    pub(crate) fn build(mut self) -> Vec<Op> {
        self.ops.sort_by_key(|op| op.time_ns);
        for (index, op) in (0u64..).zip(self.ops.iter_mut()) {
            op.index = index;
        }
        self.ops
    }
}
