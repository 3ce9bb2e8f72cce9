//! The broker's wall clock.

use std::time::{SystemTime, UNIX_EPOCH};

/// The broker's wall clock in ms since the epoch: what commands carry as `now_ms`.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
