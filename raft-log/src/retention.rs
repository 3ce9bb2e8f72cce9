//! Retention: RocketMQ's rules for deleting old segments, and the task that applies them.
//!
//! Whole segments are deleted, oldest first and never the active one: expired ones
//! (`fileReservedTime`) during the `deleteWhen` hours, and the oldest one at any hour while the
//! disk is fuller than `diskMaxUsedSpaceRatio`. The engine takes a snapshot before it purges,
//! so a follower behind the purge point catches up from the snapshot.
//!
//! The policy reads the wall clock, the local hour and the file system; the engine knows
//! none of that and only offers [`Engine::snapshot_and_purge`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;

use crate::config::Config;
use crate::engine::driver::Engine;
use crate::store::{LogStore, SegmentInfo};

/// What retention looks at on one tick, besides the segments.
#[derive(Clone, Copy, Debug)]
struct Surroundings {
    /// The wall clock, compared with each segment's modification time.
    now: SystemTime,
    /// The local hour of the day, compared with `deleteWhen`.
    hour: u32,
    /// Whether the store's file system is fuller than `diskMaxUsedSpaceRatio`.
    over_disk: bool,
}

impl Surroundings {
    fn observe(config: &Config) -> Surroundings {
        use chrono::Timelike;
        Surroundings {
            now: SystemTime::now(),
            hour: chrono::Local::now().hour(),
            over_disk: crate::store::disk_used_percent(&config.store.dir)
                .is_some_and(|p| p > config.disk_max_used_space_ratio),
        }
    }
}

/// Every `cleanResourceInterval` ms: purges the log up to the retention point, if any.
pub(crate) fn spawn(config: Arc<Config>, engine: Engine, store: LogStore) -> JoinHandle<()> {
    tokio::spawn(async move {
        let period = Duration::from_millis(config.clean_resource_interval_ms);
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            let seen = Surroundings::observe(&config);
            let Some(upto) = retention_point(&config, &store.segments(), seen) else {
                continue;
            };
            if seen.over_disk {
                tracing::warn!(
                    ratio = config.disk_max_used_space_ratio,
                    "disk over diskMaxUsedSpaceRatio: deleting the oldest segment"
                );
            }
            match engine.snapshot_and_purge(upto).await {
                Ok(p) => tracing::info!(purged = ?p, "retention purged the log"),
                Err(e) => tracing::warn!(error = %e, "retention could not purge"),
            }
        }
    })
}

/// The last index retention may delete now, if any: the index before the first segment kept.
fn retention_point(config: &Config, segments: &[SegmentInfo], seen: Surroundings) -> Option<u64> {
    let (_active, old) = segments.split_last()?;
    let in_hours = config.delete_when_hours.contains(&seen.hour);
    let reserved = Duration::from_secs(config.file_reserved_time_hours * 3600);
    let doomed = old
        .iter()
        .enumerate()
        .take_while(|(i, s)| {
            let expired = seen
                .now
                .duration_since(s.modified)
                .is_ok_and(|age| age > reserved);
            (expired && in_hours) || (seen.over_disk && *i == 0)
        })
        .count();
    if doomed == 0 {
        return None;
    }
    segments[doomed].first_index.map(|f| f.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(first_index: u64, age_hours: u64, now: SystemTime) -> SegmentInfo {
        SegmentInfo {
            path: format!("{first_index:020}").into(),
            start: first_index * 100,
            first_index: Some(first_index),
            modified: now - Duration::from_secs(age_hours * 3600),
            size_bytes: 100,
        }
    }

    fn config() -> Config {
        let mut c = Config::new("g", "n0-127.0.0.1:1", "n0", "/tmp/unused").unwrap();
        c.file_reserved_time_hours = 72;
        c.delete_when_hours = [4].into();
        c
    }

    #[test]
    fn expired_segments_go_in_the_delete_hours_only_and_never_the_active_one() {
        let now = SystemTime::now();
        let segments = [
            segment(1, 100, now),
            segment(50, 90, now),
            segment(90, 1, now),
        ];
        let at = |hour| Surroundings {
            now,
            hour,
            over_disk: false,
        };
        assert_eq!(retention_point(&config(), &segments, at(4)), Some(89));
        assert_eq!(retention_point(&config(), &segments, at(5)), None);
        let all_old = [segment(1, 100, now), segment(50, 90, now)];
        assert_eq!(retention_point(&config(), &all_old, at(4)), Some(49));
        assert_eq!(retention_point(&config(), &all_old[..1], at(4)), None);
    }

    #[test]
    fn a_full_disk_deletes_the_oldest_segment_at_any_hour() {
        let now = SystemTime::now();
        let segments = [segment(1, 1, now), segment(50, 1, now), segment(90, 1, now)];
        let seen = Surroundings {
            now,
            hour: 13,
            over_disk: true,
        };
        assert_eq!(retention_point(&config(), &segments, seen), Some(49));
    }
}
