//! The test partition: the peers whose traffic this node drops, both ways.
//!
//! A leaf of `engine/`: the network (outgoing RPCs), the server (incoming ones) and the driver
//! (which sets it) share one [`Blocked`] set.

use std::collections::BTreeSet;
use std::sync::{Arc, PoisonError, RwLock};

/// Peers whose traffic this node drops, both ways (test partitions). Clones share the set.
#[derive(Clone, Debug, Default)]
pub(crate) struct Blocked(Arc<RwLock<BTreeSet<u64>>>);

impl Blocked {
    /// Whether traffic with node `id` is dropped.
    pub(crate) fn contains(&self, id: u64) -> bool {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&id)
    }

    /// Replaces the set of blocked nodes.
    pub(crate) fn set(&self, ids: BTreeSet<u64>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = ids;
    }
}
