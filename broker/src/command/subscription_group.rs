//! A subscription (consumer) group's settings as a replicated config record: RocketMQ's
//! `SubscriptionGroupConfig`, the fields RaftMQ keeps and uses, with RocketMQ's names and
//! defaults, and their encoding in an UpdateSubscriptionGroup entry.
//!
//! Kept: `groupName`, `consumeEnable`, `consumeFromMinEnable`, `consumeBroadcastEnable`,
//! `consumeMessageOrderly`, `retryQueueNums`, `retryMaxTimes`, `groupRetryPolicy` and
//! `notifyConsumerIdsChangedEnable`. Left out, because a Raft group has one master and no
//! slaves to suggest: `brokerId`, `whichBrokerWhenConsumeSlowly`; and `groupSysFlag`,
//! `consumeTimeoutMinute` (a push consumer's own setting), `subscriptionDataSet`, `attributes`.

use serde::{Deserialize, Serialize};

use crate::codec::{DecodeError, Reader, Writer};

/// RocketMQ's default `messageDelayLevel`: the delay of levels 1..=18, also the steps of a
/// group's default retry policy (`CustomizedRetryPolicy`).
pub const DELAY_LEVELS_MS: [u64; 18] = [
    1_000, 5_000, 10_000, 30_000, 60_000, 120_000, 180_000, 240_000, 300_000, 360_000, 420_000,
    480_000, 540_000, 600_000, 1_200_000, 1_800_000, 3_600_000, 7_200_000,
];
/// RocketMQ's `retryMaxTimes` of a new group.
pub const RETRY_MAX_TIMES_DEFAULT: u32 = 16;
/// The largest `retryMaxTimes`: delivery attempts (`retryMaxTimes + 1`) travel as a protobuf
/// int32 in a consumer's settings.
pub const RETRY_MAX_TIMES_MAX: u32 = 2_147_483_646;
/// RocketMQ's `retryQueueNums` of a new group: the queues of its retry topic.
pub const RETRY_QUEUE_NUMS_DEFAULT: u32 = 1;
/// The largest `retryQueueNums` (a topic's largest queue count).
pub const RETRY_QUEUE_NUMS_MAX: u32 = 1024;
/// The most steps a customized retry policy may list (RocketMQ's default has 18).
pub const RETRY_POLICY_STEPS_MAX: usize = 128;

/// How long a consumer waits before it gets a failed message again (RocketMQ's
/// `GroupRetryPolicy`): sent to 5.x consumers as their settings' backoff policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupRetryPolicy {
    /// `CUSTOMIZED`: the delay of each retry in turn, the last one repeated.
    Customized {
        /// The delays, ms.
        next_ms: Vec<u64>,
    },
    /// `EXPONENTIAL`: `initial × multiplier^n`, at most `max`.
    Exponential {
        /// The first delay, ms (RocketMQ's default 5000).
        initial_ms: u64,
        /// The longest delay, ms (RocketMQ's default 7200000).
        max_ms: u64,
        /// The factor between two delays (RocketMQ's default 2).
        multiplier: u64,
    },
}

impl Default for GroupRetryPolicy {
    /// RocketMQ's default: customized, with the delay levels.
    fn default() -> Self {
        GroupRetryPolicy::Customized {
            next_ms: DELAY_LEVELS_MS.to_vec(),
        }
    }
}

impl GroupRetryPolicy {
    /// RocketMQ's default exponential policy (`ExponentialRetryPolicy`): 5 s, ×2, at most 2 h.
    pub fn exponential_default() -> Self {
        GroupRetryPolicy::Exponential {
            initial_ms: 5_000,
            max_ms: 7_200_000,
            multiplier: 2,
        }
    }

    fn check(&self) -> Result<(), InvalidGroupField> {
        let bad = |why: String| {
            Err(InvalidGroupField {
                field: "groupRetryPolicy",
                why,
            })
        };
        match self {
            GroupRetryPolicy::Customized { next_ms } if next_ms.is_empty() => {
                bad("a customized policy needs at least one delay in next".into())
            }
            GroupRetryPolicy::Customized { next_ms } if next_ms.len() > RETRY_POLICY_STEPS_MAX => {
                bad(format!(
                    "a customized policy lists at most {RETRY_POLICY_STEPS_MAX} delays, not {}",
                    next_ms.len()
                ))
            }
            GroupRetryPolicy::Exponential {
                initial_ms,
                max_ms,
                multiplier,
            } if *initial_ms == 0 || max_ms < initial_ms || *multiplier == 0 => bad(format!(
                "an exponential policy needs 0 < initial <= max and multiplier >= 1, not \
                 initial {initial_ms}, max {max_ms}, multiplier {multiplier}"
            )),
            _ => Ok(()),
        }
    }

    fn encode(&self, w: &mut Writer) {
        match self {
            GroupRetryPolicy::Customized { next_ms } => {
                w.u8(POLICY_CUSTOMIZED).u64s(next_ms);
            }
            GroupRetryPolicy::Exponential {
                initial_ms,
                max_ms,
                multiplier,
            } => {
                w.u8(POLICY_EXPONENTIAL)
                    .u64(*initial_ms)
                    .u64(*max_ms)
                    .u64(*multiplier);
            }
        }
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(match r.u8()? {
            POLICY_CUSTOMIZED => GroupRetryPolicy::Customized { next_ms: r.u64s()? },
            POLICY_EXPONENTIAL => GroupRetryPolicy::Exponential {
                initial_ms: r.u64()?,
                max_ms: r.u64()?,
                multiplier: r.u64()?,
            },
            kind => return Err(DecodeError::RetryPolicy { kind }),
        })
    }
}

const POLICY_CUSTOMIZED: u8 = 1;
const POLICY_EXPONENTIAL: u8 = 2;

/// A subscription group's settings (RocketMQ's `SubscriptionGroupConfig`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionGroup {
    /// `groupName`.
    pub group_name: String,
    /// `consumeEnable` (default true): false refuses the group's receives and pulls.
    pub consume_enable: bool,
    /// `consumeFromMinEnable` (default true): kept and shown; RaftMQ starts a new group at the
    /// queue's min offset either way.
    pub consume_from_min_enable: bool,
    /// `consumeBroadcastEnable` (default true): false refuses the pulls of a group whose 4.x
    /// consumers registered as BROADCASTING.
    pub consume_broadcast_enable: bool,
    /// `consumeMessageOrderly` (default false): the `fifo` of a 5.x consumer's settings.
    pub consume_message_orderly: bool,
    /// `retryQueueNums` (default 1): the queues of `%RETRY%<group>`; 0 drops send-backs.
    pub retry_queue_nums: u32,
    /// `retryMaxTimes` (default 16): retries before the dead-letter queue.
    pub retry_max_times: u32,
    /// `groupRetryPolicy`: the backoff a 5.x consumer gets.
    pub group_retry_policy: GroupRetryPolicy,
    /// `notifyConsumerIdsChangedEnable` (default true): tell 4.x consumers when the group's
    /// members change.
    pub notify_consumer_ids_changed_enable: bool,
}

/// A field of a subscription group that breaks its rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {why}")]
pub struct InvalidGroupField {
    /// RocketMQ's name of the field.
    pub field: &'static str,
    /// What is wrong with it.
    pub why: String,
}

impl SubscriptionGroup {
    /// A group with RocketMQ's defaults (a new `SubscriptionGroupConfig`), except
    /// `retry_max_times` (broker.conf's `defaultRetryMaxTimes`).
    pub fn new(group_name: &str, retry_max_times: u32) -> SubscriptionGroup {
        SubscriptionGroup {
            group_name: group_name.to_string(),
            consume_enable: true,
            consume_from_min_enable: true,
            consume_broadcast_enable: true,
            consume_message_orderly: false,
            retry_queue_nums: RETRY_QUEUE_NUMS_DEFAULT,
            retry_max_times,
            group_retry_policy: GroupRetryPolicy::default(),
            notify_consumer_ids_changed_enable: true,
        }
    }

    /// Deliveries of a message before it moves to the dead-letter queue: the first one and
    /// `retryMaxTimes` retries.
    pub fn max_delivery_attempts(&self) -> u32 {
        self.retry_max_times.saturating_add(1)
    }

    /// Checks the counts and the retry policy (the name is the caller's to check).
    ///
    /// # Errors
    /// The first field out of its range, named.
    pub fn check(&self) -> Result<(), InvalidGroupField> {
        if self.retry_max_times > RETRY_MAX_TIMES_MAX {
            return Err(InvalidGroupField {
                field: "retryMaxTimes",
                why: format!("{} is above {RETRY_MAX_TIMES_MAX}", self.retry_max_times),
            });
        }
        if self.retry_queue_nums > RETRY_QUEUE_NUMS_MAX {
            return Err(InvalidGroupField {
                field: "retryQueueNums",
                why: format!("{} is above {RETRY_QUEUE_NUMS_MAX}", self.retry_queue_nums),
            });
        }
        self.group_retry_policy.check()
    }

    pub(super) fn encode(&self, w: &mut Writer) {
        let flags = [
            self.consume_enable,
            self.consume_from_min_enable,
            self.consume_broadcast_enable,
            self.consume_message_orderly,
            self.notify_consumer_ids_changed_enable,
        ]
        .iter()
        .enumerate()
        .fold(0u8, |acc, (bit, on)| acc | (u8::from(*on) << bit));
        w.str(&self.group_name)
            .u8(flags)
            .u32(self.retry_queue_nums)
            .u32(self.retry_max_times);
        self.group_retry_policy.encode(w);
    }

    pub(super) fn decode(r: &mut Reader) -> Result<SubscriptionGroup, DecodeError> {
        let group_name = r.str()?;
        let flags = r.u8()?;
        let on = |bit: u8| flags & (1 << bit) != 0;
        Ok(SubscriptionGroup {
            group_name,
            consume_enable: on(0),
            consume_from_min_enable: on(1),
            consume_broadcast_enable: on(2),
            consume_message_orderly: on(3),
            notify_consumer_ids_changed_enable: on(4),
            retry_queue_nums: r.u32()?,
            retry_max_times: r.u32()?,
            group_retry_policy: GroupRetryPolicy::decode(r)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_group_has_rocketmqs_defaults() {
        let g = SubscriptionGroup::new("G", RETRY_MAX_TIMES_DEFAULT);
        assert!(g.consume_enable && g.consume_from_min_enable && g.consume_broadcast_enable);
        assert!(!g.consume_message_orderly && g.notify_consumer_ids_changed_enable);
        assert_eq!((g.retry_queue_nums, g.retry_max_times), (1, 16));
        assert_eq!(g.max_delivery_attempts(), 17);
        assert_eq!(
            g.group_retry_policy,
            GroupRetryPolicy::Customized {
                next_ms: DELAY_LEVELS_MS.to_vec()
            }
        );
        assert_eq!(g.check(), Ok(()));
    }

    #[test]
    fn each_bad_field_is_named() {
        let base = SubscriptionGroup::new("G", 1);
        let cases = [
            (
                SubscriptionGroup {
                    retry_max_times: RETRY_MAX_TIMES_MAX + 1,
                    ..base.clone()
                },
                "retryMaxTimes: 2147483647 is above 2147483646",
            ),
            (
                SubscriptionGroup {
                    retry_queue_nums: 1025,
                    ..base.clone()
                },
                "retryQueueNums: 1025 is above 1024",
            ),
            (
                SubscriptionGroup {
                    group_retry_policy: GroupRetryPolicy::Customized { next_ms: vec![] },
                    ..base.clone()
                },
                "groupRetryPolicy: a customized policy needs at least one delay in next",
            ),
            (
                SubscriptionGroup {
                    group_retry_policy: GroupRetryPolicy::Exponential {
                        initial_ms: 10,
                        max_ms: 5,
                        multiplier: 2,
                    },
                    ..base
                },
                "groupRetryPolicy: an exponential policy needs 0 < initial <= max and \
                 multiplier >= 1, not initial 10, max 5, multiplier 2",
            ),
        ];
        for (group, want) in cases {
            assert_eq!(group.check().unwrap_err().to_string(), want);
        }
    }

    #[test]
    fn records_round_trip_with_every_flag() {
        let mut g = SubscriptionGroup::new("G-1", 3);
        for bit in 0..5 {
            g.consume_enable = bit != 0;
            g.consume_from_min_enable = bit != 1;
            g.consume_broadcast_enable = bit != 2;
            g.consume_message_orderly = bit == 3;
            g.notify_consumer_ids_changed_enable = bit != 4;
            g.group_retry_policy = if bit % 2 == 0 {
                GroupRetryPolicy::exponential_default()
            } else {
                GroupRetryPolicy::default()
            };
            let mut w = Writer::with_capacity(64);
            g.encode(&mut w);
            let mut r = Reader::new(w.finish());
            assert_eq!(SubscriptionGroup::decode(&mut r).unwrap(), g);
            r.done().unwrap();
        }
    }
}
