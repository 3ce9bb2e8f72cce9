//! What this node served, counted as RocketMQ's `BrokerStatsManager` counts it: messages put
//! per topic (`TOPIC_PUT_NUMS`) and got per topic and consumer group (`GROUP_GET_NUMS`), with
//! rates over the last 10, 60 and 600 seconds, the last 24 hours' sum, and the day totals
//! `brokerStatus` prints (`msgPutTotalTodayNow`, `…TodayMorning`, `…YesterdayMorning`).
//!
//! Beside the windows, totals of messages and bytes by topic and message type (in) and by topic
//! and consumer group (out) for Prometheus (`rocketmq_messages_in_total` and its kin).
//!
//! Per node and not replicated, as in RocketMQ (each broker counts its own requests): the node
//! that served a client's request counts it, so a group's figures are the sum over its nodes.
//! Days are UTC days.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::command::MessageType;

/// Width of one rate bucket.
const BUCKET_MS: u64 = 10_000;
/// Rate buckets kept: 600 s.
const BUCKETS: usize = 60;
const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * HOUR_MS;

/// One counter's history.
#[derive(Clone, Debug)]
struct Counter {
    total: u64,
    /// Counts per 10 s bucket, by bucket number modulo [`BUCKETS`].
    buckets: [u64; BUCKETS],
    /// The bucket number `buckets` was last written for.
    bucket: u64,
    /// Counts per hour, by hour number modulo 24.
    hours: [u64; 24],
    hour: u64,
    /// The UTC day `total_at_day_start` belongs to, and the totals at its start and the
    /// day's before.
    day: u64,
    total_at_day_start: u64,
    total_at_yesterday_start: u64,
}

impl Default for Counter {
    fn default() -> Counter {
        Counter {
            total: 0,
            buckets: [0; BUCKETS],
            bucket: 0,
            hours: [0; 24],
            hour: 0,
            day: 0,
            total_at_day_start: 0,
            total_at_yesterday_start: 0,
        }
    }
}

impl Counter {
    fn add(&mut self, now_ms: u64, n: u64) {
        self.roll(now_ms);
        self.total += n;
        self.buckets[ix(self.bucket)] += n;
        self.hours[hour_ix(self.hour)] += n;
    }

    /// Clears the buckets and hours that passed since the last write; moves the day marks.
    fn roll(&mut self, now_ms: u64) {
        let bucket = now_ms / BUCKET_MS;
        for b in (self.bucket + 1)..=bucket.min(self.bucket + BUCKETS as u64) {
            self.buckets[ix(b)] = 0;
        }
        self.bucket = self.bucket.max(bucket);
        let hour = now_ms / HOUR_MS;
        for h in (self.hour + 1)..=hour.min(self.hour + 24) {
            self.hours[hour_ix(h)] = 0;
        }
        self.hour = self.hour.max(hour);
        let day = now_ms / DAY_MS;
        if day > self.day {
            self.total_at_yesterday_start = if day == self.day + 1 {
                self.total_at_day_start
            } else {
                self.total
            };
            self.total_at_day_start = self.total;
            self.day = day;
        }
    }

    /// Messages per second over the last `seconds` (a multiple of 10, at most 600), counting
    /// the current bucket as a whole one.
    fn tps(&self, now_ms: u64, seconds: u64) -> f64 {
        let now_bucket = now_ms / BUCKET_MS;
        let n = (seconds * 1000 / BUCKET_MS).clamp(1, BUCKETS as u64);
        let sum: u64 = (0..n)
            .filter_map(|k| now_bucket.checked_sub(k))
            .filter(|&b| b <= self.bucket && self.bucket - b < BUCKETS as u64)
            .map(|b| self.buckets[ix(b)])
            .sum();
        sum as f64 / seconds.max(1) as f64
    }

    /// The last 24 hours' sum (the current hour included).
    fn last_24h(&self, now_ms: u64) -> u64 {
        let now_hour = now_ms / HOUR_MS;
        (0..24)
            .filter_map(|k| now_hour.checked_sub(k))
            .filter(|&h| h <= self.hour && self.hour - h < 24)
            .map(|h| self.hours[hour_ix(h)])
            .sum()
    }

    fn view(&self, now_ms: u64) -> Figures {
        let mut c = self.clone();
        c.roll(now_ms);
        Figures {
            total: c.total,
            tps_10s: c.tps(now_ms, 10),
            tps_60s: c.tps(now_ms, 60),
            tps_600s: c.tps(now_ms, 600),
            last_24h: c.last_24h(now_ms),
            today_morning: c.total_at_day_start,
            yesterday_morning: c.total_at_yesterday_start,
        }
    }
}

fn ix(bucket: u64) -> usize {
    usize::try_from(bucket % BUCKETS as u64).unwrap_or(0)
}

fn hour_ix(hour: u64) -> usize {
    usize::try_from(hour % 24).unwrap_or(0)
}

/// One counter as `brokerStatus` and `statsAll` show it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Figures {
    /// Everything counted since the node started.
    pub total: u64,
    /// Per second over the last 10 s.
    pub tps_10s: f64,
    /// Per second over the last minute (RocketMQ's `statsMinute` TPS, what `statsAll` shows).
    pub tps_60s: f64,
    /// Per second over the last 10 minutes.
    pub tps_600s: f64,
    /// The last 24 hours' sum (`statsAll`'s `#InMsg24Hour` / `#OutMsg24Hour`).
    pub last_24h: u64,
    /// `total` at the start of today (UTC).
    pub today_morning: u64,
    /// `total` at the start of yesterday (UTC).
    pub yesterday_morning: u64,
}

/// Messages and bytes since the node started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Messages.
    pub messages: u64,
    /// Body bytes.
    pub bytes: u64,
}

impl Traffic {
    fn add(&mut self, messages: u64, bytes: u64) {
        self.messages += messages;
        self.bytes += bytes;
    }
}

/// The message types in [`MessageType`]'s order, by the names RocketMQ's metrics use.
pub const MESSAGE_TYPES: [(MessageType, &str); 4] = [
    (MessageType::Normal, "normal"),
    (MessageType::Fifo, "fifo"),
    (MessageType::Delay, "delay"),
    (MessageType::Transaction, "transaction"),
];

fn type_ix(t: MessageType) -> usize {
    MESSAGE_TYPES.iter().position(|(m, _)| *m == t).unwrap_or(0)
}

#[derive(Debug, Default)]
struct Counters {
    put: Counter,
    get: Counter,
    topic_put: HashMap<String, Counter>,
    group_get: HashMap<(String, String), Counter>,
    /// In, per topic, by message type (indexed as [`MESSAGE_TYPES`]).
    topic_in: HashMap<String, [Traffic; 4]>,
    /// Out, per (topic, consumer group).
    group_out: HashMap<(String, String), Traffic>,
}

impl Counters {
    fn count_put(&mut self, now_ms: u64, topic: &str, kind: MessageType, bytes: u64) {
        self.put.add(now_ms, 1);
        match self.topic_put.get_mut(topic) {
            Some(t) => t.add(now_ms, 1),
            None => self
                .topic_put
                .entry(topic.to_string())
                .or_default()
                .add(now_ms, 1),
        }
        let by_type = match self.topic_in.get_mut(topic) {
            Some(t) => t,
            None => self.topic_in.entry(topic.to_string()).or_default(),
        };
        by_type[type_ix(kind)].add(1, bytes);
    }
}

/// What Prometheus reads of the counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrafficTotals {
    /// In, per (topic, message type name), sorted.
    pub inbound: Vec<(String, &'static str, Traffic)>,
    /// Out, per (topic, consumer group), sorted.
    pub outbound: Vec<(String, String, Traffic)>,
}

/// The node's counters.
#[derive(Debug, Default)]
pub struct Stats {
    counters: Mutex<Counters>,
}

impl Stats {
    fn with<T>(&self, f: impl FnOnce(&mut Counters) -> T) -> T {
        let mut c = self
            .counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut c)
    }

    /// One message stored per item of `stored` (a send's messages: topic, type, body bytes),
    /// under one lock.
    pub fn puts<'a>(&self, now_ms: u64, stored: impl Iterator<Item = (&'a str, MessageType, u64)>) {
        self.with(|c| {
            for (topic, kind, bytes) in stored {
                c.count_put(now_ms, topic, kind, bytes);
            }
        });
    }

    /// `n` messages (`bytes` of bodies) of `topic` handed to consumer group `group` (receive
    /// or pull).
    pub fn got(&self, now_ms: u64, topic: &str, group: &str, n: u64, bytes: u64) {
        if n == 0 {
            return;
        }
        self.with(|c| {
            c.get.add(now_ms, n);
            let key = (topic.to_string(), group.to_string());
            c.group_out.entry(key.clone()).or_default().add(n, bytes);
            c.group_get.entry(key).or_default().add(now_ms, n);
        });
    }

    /// Messages and bytes in and out since the node started, for Prometheus.
    pub fn traffic(&self) -> TrafficTotals {
        self.with(|c| {
            let mut inbound: Vec<(String, &'static str, Traffic)> = c
                .topic_in
                .iter()
                .flat_map(|(topic, by_type)| {
                    MESSAGE_TYPES
                        .iter()
                        .zip(by_type)
                        .filter(|(_, t)| t.messages > 0)
                        .map(|((_, name), t)| (topic.clone(), *name, *t))
                })
                .collect();
            inbound.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
            let mut outbound: Vec<(String, String, Traffic)> = c
                .group_out
                .iter()
                .map(|((t, g), traffic)| (t.clone(), g.clone(), *traffic))
                .collect();
            outbound.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
            TrafficTotals { inbound, outbound }
        })
    }

    /// All puts and all gets of this node.
    pub fn totals(&self, now_ms: u64) -> (Figures, Figures) {
        self.with(|c| (c.put.view(now_ms), c.get.view(now_ms)))
    }

    /// Puts of `topic`, and gets of it per consumer group (sorted by group).
    pub fn of_topic(&self, now_ms: u64, topic: &str) -> (Figures, Vec<(String, Figures)>) {
        self.with(|c| {
            let put = c
                .topic_put
                .get(topic)
                .map(|t| t.view(now_ms))
                .unwrap_or_default();
            let mut groups: Vec<(String, Figures)> = c
                .group_get
                .iter()
                .filter(|((t, _), _)| t == topic)
                .map(|((_, g), counter)| (g.clone(), counter.view(now_ms)))
                .collect();
            groups.sort_by(|a, b| a.0.cmp(&b.0));
            (put, groups)
        })
    }

    /// Forgets a deleted topic's counters.
    pub fn forget_topic(&self, topic: &str) {
        self.with(|c| {
            c.topic_put.remove(topic);
            c.group_get.retain(|(t, _), _| t != topic);
            c.topic_in.remove(topic);
            c.group_out.retain(|(t, _), _| t != topic);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_764_547_200_000; // 2025-12-01T00:00:00Z, a UTC midnight

    fn normal(topic: &str, n: usize) -> impl Iterator<Item = (&str, MessageType, u64)> {
        std::iter::repeat_n((topic, MessageType::Normal, 10), n)
    }

    #[test]
    fn traffic_counts_messages_and_bytes_by_type_and_by_group() {
        let s = Stats::default();
        s.puts(
            T0,
            [
                ("a", MessageType::Normal, 100),
                ("a", MessageType::Delay, 7),
                ("a", MessageType::Normal, 50),
                ("b", MessageType::Fifo, 1),
            ]
            .into_iter(),
        );
        s.got(T0, "a", "g1", 2, 150);
        s.got(T0, "a", "g1", 0, 0);
        let t = s.traffic();
        let at = |m, b| Traffic {
            messages: m,
            bytes: b,
        };
        assert_eq!(
            t.inbound,
            vec![
                ("a".to_string(), "delay", at(1, 7)),
                ("a".to_string(), "normal", at(2, 150)),
                ("b".to_string(), "fifo", at(1, 1)),
            ]
        );
        assert_eq!(t.outbound, vec![("a".into(), "g1".into(), at(2, 150))]);
        s.forget_topic("a");
        assert_eq!(s.traffic().inbound.len(), 1);
        assert!(s.traffic().outbound.is_empty());
    }

    #[test]
    fn rates_cover_their_windows_and_old_buckets_fall_out() {
        let s = Stats::default();
        s.puts(T0 + 1_000, normal("t", 100));
        s.puts(T0 + 12_000, normal("t", 50));
        let (put, _) = s.of_topic(T0 + 15_000, "t");
        assert_eq!(put.total, 150);
        assert!((put.tps_10s - 5.0).abs() < 1e-9, "{put:?}");
        assert!((put.tps_60s - 2.5).abs() < 1e-9, "{put:?}");
        // Ten minutes later the rates are 0, the day's sum still counts them.
        let (later, _) = s.of_topic(T0 + 700_000, "t");
        assert_eq!(later.tps_600s, 0.0);
        assert_eq!(later.last_24h, 150);
        // A write after a long pause does not count stale buckets.
        s.puts(T0 + 700_000, normal("t", 10));
        let (after, _) = s.of_topic(T0 + 700_000, "t");
        assert!((after.tps_10s - 1.0).abs() < 1e-9, "{after:?}");
        assert!((after.tps_600s - 10.0 / 600.0).abs() < 1e-9, "{after:?}");
    }

    #[test]
    fn day_marks_and_24_hours_follow_the_clock() {
        let s = Stats::default();
        s.puts(T0 + HOUR_MS, normal("t", 7));
        s.got(T0 + HOUR_MS, "t", "g", 3, 30);
        s.puts(T0 + DAY_MS + HOUR_MS, normal("t", 5));
        let (put, get) = s.totals(T0 + DAY_MS + 2 * HOUR_MS);
        assert_eq!(
            (put.total, put.today_morning, put.yesterday_morning),
            (12, 7, 0)
        );
        assert_eq!(put.last_24h, 5, "yesterday's 1 am is more than 24 h ago");
        assert_eq!((get.total, get.today_morning), (3, 3));
        let (_, groups) = s.of_topic(T0 + DAY_MS, "t");
        assert_eq!(groups.len(), 1);
        assert_eq!((groups[0].0.as_str(), groups[0].1.total), ("g", 3));
        s.forget_topic("t");
        assert_eq!(s.of_topic(T0 + DAY_MS, "t"), (Figures::default(), vec![]));
    }
}
