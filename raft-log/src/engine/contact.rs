//! When this node last heard from a leader that it accepted: the follower's side of "is the
//! group reachable", for readiness. (With pre-vote a cut-off follower never campaigns, so it
//! keeps its old leader and term; only the silence tells.)
//!
//! A leaf of `engine/`: the server touches it on each append it does not refuse for a higher
//! vote; the driver reads it into [`crate::Metrics`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Clones share one timestamp.
#[derive(Clone, Debug)]
pub(crate) struct LeaderContact {
    base: Instant,
    /// Milliseconds after `base`, plus one; 0 = never.
    last_ms: Arc<AtomicU64>,
}

impl Default for LeaderContact {
    fn default() -> LeaderContact {
        LeaderContact {
            base: Instant::now(),
            last_ms: Arc::default(),
        }
    }
}

impl LeaderContact {
    /// A leader's append arrived now.
    pub(crate) fn touch(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.last_ms.store(ms + 1, Ordering::Relaxed);
    }

    /// How long ago the last one arrived; `None` when none has.
    pub(crate) fn elapsed(&self) -> Option<Duration> {
        let last = self.last_ms.load(Ordering::Relaxed).checked_sub(1)?;
        Some(
            self.base
                .elapsed()
                .saturating_sub(Duration::from_millis(last)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_until_touched_then_the_time_since() {
        let c = LeaderContact::default();
        assert_eq!(c.elapsed(), None);
        c.clone().touch();
        assert!(c.elapsed().is_some_and(|d| d < Duration::from_secs(1)));
    }
}
