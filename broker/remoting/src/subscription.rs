//! Subscription groups as RocketMQ's JSON: the body of UPDATE_AND_CREATE_SUBSCRIPTIONGROUP
//! (`SubscriptionGroupConfig`) and of GET_ALL_SUBSCRIPTIONGROUP_CONFIG's answer
//! (`SubscriptionGroupWrapper`), and the `groupRetryPolicy` JSON that `mqadmin updateSubGroup
//! -p` takes. A field left out takes the default of RocketMQ's class.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::route::DataVersion;

fn yes() -> bool {
    true
}

fn one() -> i64 {
    1
}

fn sixteen() -> i64 {
    16
}

fn fifteen() -> i64 {
    15
}

/// RocketMQ's `SubscriptionGroupConfig`, every field its JSON carries. Counts are signed, as
/// Java's ints, so that a negative one reaches the broker's check (which names it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionGroupConfig {
    /// The group.
    pub group_name: String,
    /// May consume.
    #[serde(default = "yes")]
    pub consume_enable: bool,
    /// May start from the queue's min offset.
    #[serde(default = "yes")]
    pub consume_from_min_enable: bool,
    /// May consume by broadcast.
    #[serde(default = "yes")]
    pub consume_broadcast_enable: bool,
    /// Its consumers consume in order.
    #[serde(default)]
    pub consume_message_orderly: bool,
    /// Queues of its retry topic.
    #[serde(default = "one")]
    pub retry_queue_nums: i64,
    /// Retries before the dead-letter queue.
    #[serde(default = "sixteen")]
    pub retry_max_times: i64,
    /// Its consumers' backoff.
    #[serde(default)]
    pub group_retry_policy: GroupRetryPolicy,
    /// The broker to consume from (RocketMQ's; a Raft group has one master, 0).
    #[serde(default)]
    pub broker_id: i64,
    /// The broker to consume from when slow (RocketMQ's; unused by a Raft group).
    #[serde(default = "one")]
    pub which_broker_when_consume_slowly: i64,
    /// Tell its consumers when its members change.
    #[serde(default = "yes")]
    pub notify_consumer_ids_changed_enable: bool,
    /// RocketMQ's group flags (unused).
    #[serde(default)]
    pub group_sys_flag: i64,
    /// A push consumer's consume timeout (its own setting).
    #[serde(default = "fifteen")]
    pub consume_timeout_minute: i64,
    /// RocketMQ's extra attributes (unused).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// RocketMQ's `GroupRetryPolicy`: `type` `CUSTOMIZED` (the default) or `EXPONENTIAL`, with the
/// policy of that type (absent: that type's defaults).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupRetryPolicy {
    /// `CUSTOMIZED` or `EXPONENTIAL`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The exponential policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exponential_retry_policy: Option<ExponentialRetryPolicy>,
    /// The customized policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customized_retry_policy: Option<CustomizedRetryPolicy>,
}

impl Default for GroupRetryPolicy {
    fn default() -> Self {
        GroupRetryPolicy {
            kind: CUSTOMIZED.to_string(),
            exponential_retry_policy: None,
            customized_retry_policy: None,
        }
    }
}

/// The `type` of a customized policy.
pub const CUSTOMIZED: &str = "CUSTOMIZED";
/// The `type` of an exponential policy.
pub const EXPONENTIAL: &str = "EXPONENTIAL";

/// RocketMQ's `ExponentialRetryPolicy` (ms).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExponentialRetryPolicy {
    /// The first delay (default 5000).
    #[serde(default = "initial_default")]
    pub initial: u64,
    /// The longest delay (default 7200000).
    #[serde(default = "max_default")]
    pub max: u64,
    /// The factor between two delays (default 2).
    #[serde(default = "multiplier_default")]
    pub multiplier: u64,
}

fn initial_default() -> u64 {
    5_000
}

fn max_default() -> u64 {
    7_200_000
}

fn multiplier_default() -> u64 {
    2
}

/// RocketMQ's `CustomizedRetryPolicy`: the delay of each retry (ms).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomizedRetryPolicy {
    /// The delays; absent: RocketMQ's delay levels.
    #[serde(default)]
    pub next: Vec<u64>,
}

/// The answer to GET_ALL_SUBSCRIPTIONGROUP_CONFIG (RocketMQ's `SubscriptionGroupWrapper`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionGroupWrapper {
    /// Group name → config.
    pub subscription_group_table: BTreeMap<String, SubscriptionGroupConfig>,
    /// The table's version.
    pub data_version: DataVersion,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_left_out_take_rocketmqs_defaults() {
        let c: SubscriptionGroupConfig =
            serde_json::from_str(r#"{"groupName":"G","retryMaxTimes":-1}"#).expect("parses");
        assert!(c.consume_enable && c.consume_broadcast_enable && !c.consume_message_orderly);
        assert_eq!((c.retry_queue_nums, c.retry_max_times), (1, -1));
        assert_eq!(c.group_retry_policy.kind, CUSTOMIZED);
        let p: GroupRetryPolicy = serde_json::from_str(
            r#"{"type":"EXPONENTIAL","exponentialRetryPolicy":{"initial":1000}}"#,
        )
        .expect("parses");
        let e = p.exponential_retry_policy.expect("exponential");
        assert_eq!((e.initial, e.max, e.multiplier), (1000, 7_200_000, 2));
    }
}
