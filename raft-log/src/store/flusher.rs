//! The flusher: one thread that syncs the data log as a group and writes durable checkpoints.
//!
//! Under SYNC_FLUSH every append queues a waiter with the position it needs on disk. The flusher
//! takes every waiter queued so far, syncs the dirty segments once (fdatasync), and completes all
//! of them: many appends share one fsync, so throughput
//! is not capped at the disk's sync rate. Under ASYNC_FLUSH appends do not wait, and the flusher
//! syncs every `flush_interval`.
//!
//! Every `checkpoint_interval` (and on close) it also syncs the index files and records the last
//! synced entry in the meta file. A failed sync is final: durability of the written data is
//! unknown (on Linux a failed fsync may drop the dirty pages), so the store refuses further
//! appends instead of retrying.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use super::shared::Shared;
use crate::config::INDEX_RECORD_BYTES;
use crate::error::StoreError;

/// Called once appended data counts as stored.
pub type Completion = Box<dyn FnOnce(io::Result<()>) + Send + 'static>;

/// Waiters the flusher holds at most; appends block when it is full (backpressure).
const QUEUE_CAPACITY_MAX: usize = 1 << 16;

enum Msg {
    Wait { upto: u64, done: Completion },
    SyncNow(Completion),
}

/// The handle that owns the flusher thread; dropping it flushes, checkpoints and joins.
pub(crate) struct FlushHandle {
    // Set by `LogStore::simulate_crash`: stop without the final sync and checkpoint.
    crashed: Arc<AtomicBool>,
    tx: Mutex<Option<SyncSender<Msg>>>,
    join: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for FlushHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlushHandle")
    }
}

impl FlushHandle {
    pub(crate) fn start(shared: Arc<Shared>) -> Result<FlushHandle, StoreError> {
        let (tx, rx) = mpsc::sync_channel(QUEUE_CAPACITY_MAX);
        let dir = shared.config.dir.clone();
        let crashed = Arc::new(AtomicBool::new(false));
        let flusher = Flusher::new(shared, Arc::clone(&crashed));
        let join = std::thread::Builder::new()
            .name("raft-log-flusher".into())
            .spawn(move || flusher.run(rx))
            .map_err(|e| StoreError::io("spawn flusher", &dir, e))?;
        Ok(FlushHandle {
            crashed,
            tx: Mutex::new(Some(tx)),
            join: Mutex::new(Some(join)),
        })
    }

    pub(crate) fn mark_crashed(&self) {
        self.crashed.store(true, Ordering::SeqCst);
    }

    pub(crate) fn wait_for(&self, upto: u64, done: Completion) {
        self.send(Msg::Wait { upto, done });
    }

    pub(crate) fn sync_now(&self, done: Completion) {
        self.send(Msg::SyncNow(done));
    }

    fn send(&self, msg: Msg) {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(tx) = tx else {
            return fail(msg, "store is closed");
        };
        if let Err(mpsc::SendError(msg)) = tx.send(msg) {
            fail(msg, "flusher stopped");
        }
    }
}

fn fail(msg: Msg, why: &str) {
    let done = match msg {
        Msg::Wait { done, .. } | Msg::SyncNow(done) => done,
    };
    done(Err(io::Error::other(why.to_string())));
}

impl Drop for FlushHandle {
    fn drop(&mut self) {
        // Closing the channel makes the flusher sync, checkpoint and exit.
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(join) = self.join.lock().unwrap_or_else(|e| e.into_inner()).take()
            && join.join().is_err()
        {
            tracing::error!("raft-log flusher panicked");
        }
    }
}

struct Flusher {
    shared: Arc<Shared>,
    crashed: Arc<AtomicBool>,
    waiters: Vec<(u64, Completion)>,
    last_checkpoint: Instant,
    index_synced_below: u64,
}

impl Flusher {
    fn new(shared: Arc<Shared>, crashed: Arc<AtomicBool>) -> Flusher {
        let index_synced_below = shared
            .lock_meta()
            .get()
            .durable
            .map_or(0, |d| (d.index + 1) * INDEX_RECORD_BYTES);
        Flusher {
            shared,
            crashed,
            waiters: Vec::new(),
            last_checkpoint: Instant::now(),
            index_synced_below,
        }
    }

    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        let interval = self.shared.config.flush_interval;
        loop {
            let mut force = false;
            let closed = match rx.recv_timeout(interval) {
                Ok(msg) => {
                    force |= self.take(msg);
                    while let Ok(msg) = rx.try_recv() {
                        force |= self.take(msg);
                    }
                    false
                }
                Err(RecvTimeoutError::Timeout) => false,
                Err(RecvTimeoutError::Disconnected) => true,
            };
            if closed && self.crashed.load(Ordering::SeqCst) {
                return;
            }
            let result = self.sync_data();
            let due = self.last_checkpoint.elapsed() >= self.shared.config.checkpoint_interval;
            let result = match result {
                Ok(()) if force || closed || due => self.checkpoint(),
                other => other,
            };
            if let Err(e) = &result {
                tracing::error!(error = %e, "flush failed; the store refuses further appends");
                self.shared
                    .write_state()
                    .failed
                    .get_or_insert_with(|| e.to_string());
            }
            self.complete(&result);
            if closed {
                return;
            }
        }
    }

    /// Queues a waiter; returns whether it asks for an immediate checkpoint.
    fn take(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Wait { upto, done } => {
                self.waiters.push((upto, done));
                false
            }
            Msg::SyncNow(done) => {
                self.waiters.push((0, done));
                true
            }
        }
    }

    /// Syncs `[synced_pos, write_pos)` and advances `synced_pos` unless a truncation raced.
    fn sync_data(&mut self) -> Result<(), StoreError> {
        let (from, to, generation, files) = {
            let st = self.shared.read_state();
            if let Some(reason) = &st.failed {
                return Err(StoreError::io(
                    "flush",
                    &self.shared.config.dir,
                    io::Error::other(reason.clone()),
                ));
            }
            let (from, to) = (st.synced_pos, st.write_pos);
            let files: Vec<_> = st
                .data
                .iter()
                .filter(|s| s.end() > from && s.start < to)
                .map(|s| (s.start, Arc::clone(&s.file)))
                .collect();
            (from, to, st.truncate_generation, files)
        };
        if to <= from {
            return Ok(());
        }
        // Every segment overlapping the unsynced range; appends dirty only that range.
        // (The unsafe negative control skips the sync and reports the range durable anyway.)
        let files = if self.shared.config.unsafe_skip_fsync {
            Vec::new()
        } else {
            files
        };
        let timer = (!files.is_empty()).then(|| self.shared.metrics.fsync_seconds.start_timer());
        for (_, file) in files {
            file.sync()
                .map_err(|e| StoreError::io("fdatasync", file.path(), e))?;
        }
        if let Some(t) = timer {
            t.observe_duration();
        }
        let mut st = self.shared.write_state();
        if st.truncate_generation == generation {
            st.synced_pos = st.synced_pos.max(to);
        }
        Ok(())
    }

    /// Syncs the index records up to the last synced entry and names that entry in `meta`.
    fn checkpoint(&mut self) -> Result<(), StoreError> {
        let st = self.shared.read_state();
        // Under the unsafe negative control nothing is really synced, so nothing is checkpointed.
        let durable = st
            .last_written
            .filter(|d| d.position + u64::from(d.size) <= st.synced_pos)
            .filter(|_| !self.shared.config.unsafe_skip_fsync);
        let committed = st.committed;
        let index_files: Vec<_> = st.index.iter().map(|(s, f)| (*s, Arc::clone(f))).collect();
        if let Some(d) = durable {
            let hi = (d.index + 1) * INDEX_RECORD_BYTES;
            let lo = self.index_synced_below.min(hi);
            for (start, file) in &index_files {
                let (a, b) = (lo.max(*start), hi.min(start + file.len()));
                if a < b {
                    file.sync()
                        .map_err(|e| StoreError::io("fdatasync", file.path(), e))?;
                }
            }
            self.index_synced_below = hi;
        }
        // Holding the state lock while writing meta orders this checkpoint with truncations,
        // which take the state lock and then the meta lock.
        self.shared.lock_meta().update(|m| {
            if durable.is_some() {
                m.durable = durable;
            }
            if committed.is_some() {
                m.committed = committed;
            }
        })?;
        drop(st);
        self.last_checkpoint = Instant::now();
        Ok(())
    }

    fn complete(&mut self, result: &Result<(), StoreError>) {
        let (synced, write_pos) = {
            let st = self.shared.read_state();
            (st.synced_pos, st.write_pos)
        };
        let waiters = std::mem::take(&mut self.waiters);
        for (upto, done) in waiters {
            match result {
                Err(e) => done(Err(io::Error::other(e.to_string()))),
                Ok(()) if upto <= synced => done(Ok(())),
                // The entries were truncated away; there is nothing left to wait for.
                Ok(()) if upto > write_pos => done(Ok(())),
                // A truncation raced with this sync: wait for the next round.
                Ok(()) => self.waiters.push((upto, done)),
            }
        }
    }
}
