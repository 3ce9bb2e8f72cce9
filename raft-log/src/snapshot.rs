//! The application snapshot hook.
//!
//! raft-log's log is the application's data; what the application derives from it (the broker's
//! consume queues, topic table, consumer offsets) is its own. Retention deletes old segments only
//! after a snapshot covers them, and a follower that fell behind the purge point restores that
//! snapshot and then reads the log from the entry after it. The hook is how raft-log asks the
//! application for that state and hands it back.
//!
//! A snapshot taken at the applied index S while retention purges only up to P < S would leave
//! a follower that installs it without the entries in (P, S]: they are neither in its log nor
//! sent to it. So retention first asks [`SnapshotHook::build_at_most`] for a state at an index
//! C ≤ P, snapshots at C and purges only up to C; every entry after the snapshot stays in the
//! leader's log for the follower to read.

use std::io;

use bytes::Bytes;
use futures::future::BoxFuture;

/// The application's side of snapshots.
pub trait SnapshotHook: Send + Sync + 'static {
    /// Returns the application state that reflects exactly the entries up to and including
    /// `last_index` (waiting, if needed, until the application has consumed them).
    fn build(&self, last_index: u64) -> BoxFuture<'static, io::Result<Bytes>>;

    /// Replaces the application state with `data`, built at `last_index` on another node. The
    /// application then continues from `last_index + 1`.
    fn install(&self, last_index: u64, data: Bytes) -> BoxFuture<'static, io::Result<()>>;

    /// The newest state the application kept at an index at or below `upto`, as
    /// `(index, data)`; `None` when it has none (retention then snapshots at the applied index,
    /// with the gap described in the module docs). The default keeps none.
    fn build_at_most(&self, upto: u64) -> BoxFuture<'static, io::Result<Option<(u64, Bytes)>>> {
        let _ = upto;
        Box::pin(async { Ok(None) })
    }
}

/// A hook for applications without derived state: snapshots are empty.
#[derive(Clone, Copy, Debug, Default)]
pub struct EmptySnapshot;

impl SnapshotHook for EmptySnapshot {
    fn build(&self, _last_index: u64) -> BoxFuture<'static, io::Result<Bytes>> {
        Box::pin(async { Ok(Bytes::new()) })
    }

    fn install(&self, _last_index: u64, _data: Bytes) -> BoxFuture<'static, io::Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn build_at_most(&self, upto: u64) -> BoxFuture<'static, io::Result<Option<(u64, Bytes)>>> {
        Box::pin(async move { Ok(Some((upto, Bytes::new()))) })
    }
}
