//! Subscription groups: RocketMQ's `updateSubGroup`, `deleteSubGroup` and `getConsumerConfig`,
//! with its flags and output shapes, over the admin API of each broker group.
//!
//! RocketMQ has no verb that lists groups; its tools read a broker's whole table with
//! GET_ALL_SUBSCRIPTIONGROUP_CONFIG, and `getConsumerConfig -g` prints one group's config per
//! broker. RaftMQ's `getConsumerConfig` does the same, and without `-g` prints every group.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use proto::raftmq::admin::v1 as pb;
use raftmq_client::{AdminClient, check_admin};
use raftmq_remoting::subscription as json;

/// RocketMQ's `updateSubGroup` flags. A flag left out takes RocketMQ's default of a new
/// `SubscriptionGroupConfig`, except `-m` and `-d`, which RocketMQ's tool sets to false unless
/// given (and so does this one).
#[derive(Debug, clap::Args)]
pub(crate) struct UpdateArgs {
    /// Consumer group name.
    #[arg(short = 'g', long = "groupName")]
    pub(crate) group: String,
    /// Create it on the group of this broker node (HOST:PORT, its listenPort).
    #[arg(short = 'b', long = "brokerAddr")]
    pub(crate) broker_addr: Option<String>,
    /// Create it on every broker group of this cluster (needs a NameServer in -n).
    #[arg(short = 'c', long = "clusterName", conflicts_with = "broker_addr")]
    pub(crate) cluster: Option<String>,
    /// consumeEnable: false refuses the group's receives and pulls (default true).
    #[arg(short = 's', long = "consumeEnable", value_name = "BOOL")]
    consume_enable: Option<bool>,
    /// consumeFromMinEnable (default false, as RocketMQ's tool sets it).
    #[arg(short = 'm', long = "consumeFromMinEnable", value_name = "BOOL")]
    consume_from_min_enable: Option<bool>,
    /// consumeBroadcastEnable (default false, as RocketMQ's tool sets it).
    #[arg(short = 'd', long = "consumeBroadcastEnable", value_name = "BOOL")]
    consume_broadcast_enable: Option<bool>,
    /// consumeMessageOrderly: the fifo flag of 5.x consumers (default false).
    #[arg(short = 'o', long = "consumeMessageOrderly", value_name = "BOOL")]
    consume_message_orderly: Option<bool>,
    /// retryQueueNums: queues of the retry topic, 0..=1024 (default 1).
    #[arg(
        short = 'q',
        long = "retryQueueNums",
        value_name = "N",
        allow_negative_numbers = true
    )]
    retry_queue_nums: Option<i64>,
    /// retryMaxTimes: retries before the dead-letter queue (default: the broker's
    /// defaultRetryMaxTimes, 16).
    #[arg(
        short = 'r',
        long = "retryMaxTimes",
        value_name = "N",
        allow_negative_numbers = true
    )]
    retry_max_times: Option<i64>,
    /// groupRetryPolicy as RocketMQ's JSON, e.g.
    /// {"type":"EXPONENTIAL","exponentialRetryPolicy":{"initial":5000,"max":7200000,"multiplier":2}}
    /// or {"type":"CUSTOMIZED","customizedRetryPolicy":{"next":[1000,5000,10000]}}.
    #[arg(short = 'p', long = "groupRetryPolicy", value_name = "JSON")]
    group_retry_policy: Option<String>,
    /// notifyConsumerIdsChangedEnable (default true).
    #[arg(short = 'a', long = "notifyConsumerIdsChanged", value_name = "BOOL")]
    notify_consumer_ids_changed: Option<bool>,
}

impl UpdateArgs {
    /// The request the flags describe.
    ///
    /// # Errors
    /// A `-p` that is not RocketMQ's GroupRetryPolicy JSON.
    pub(crate) fn request(&self) -> anyhow::Result<pb::UpdateSubscriptionGroupRequest> {
        let group_retry_policy = match self.group_retry_policy.as_deref() {
            Some(text) => retry_policy_of_json(text).context("-p/--groupRetryPolicy")?,
            None => None,
        };
        Ok(pb::UpdateSubscriptionGroupRequest {
            group_name: self.group.trim().to_string(),
            consume_enable: self.consume_enable,
            consume_from_min_enable: Some(self.consume_from_min_enable.unwrap_or(false)),
            consume_broadcast_enable: Some(self.consume_broadcast_enable.unwrap_or(false)),
            consume_message_orderly: self.consume_message_orderly,
            retry_queue_nums: self.retry_queue_nums,
            retry_max_times: self.retry_max_times,
            group_retry_policy,
            notify_consumer_ids_changed_enable: self.notify_consumer_ids_changed,
        })
    }
}

/// A `groupRetryPolicy` JSON as RocketMQ reads it: a type without its policy takes that type's
/// defaults. `None`: RocketMQ's default policy (customized, without delays: the delay levels),
/// which the broker fills in for an unset field.
fn retry_policy_of_json(text: &str) -> anyhow::Result<Option<pb::RetryPolicy>> {
    use pb::retry_policy::Policy;
    let p: json::GroupRetryPolicy =
        serde_json::from_str(text).context("not RocketMQ's GroupRetryPolicy JSON")?;
    let policy = match p.kind.as_str() {
        json::CUSTOMIZED => {
            let next = p
                .customized_retry_policy
                .map(|c| c.next)
                .unwrap_or_default();
            if next.is_empty() {
                return Ok(None);
            }
            Policy::Customized(pb::CustomizedRetryPolicy { next_ms: next })
        }
        json::EXPONENTIAL => {
            let e = p
                .exponential_retry_policy
                .unwrap_or(json::ExponentialRetryPolicy {
                    initial: 5_000,
                    max: 7_200_000,
                    multiplier: 2,
                });
            Policy::Exponential(pb::ExponentialRetryPolicy {
                initial_ms: e.initial,
                max_ms: e.max,
                multiplier: e.multiplier,
            })
        }
        other => bail!("type must be CUSTOMIZED or EXPONENTIAL, not {other:?}"),
    };
    Ok(Some(pb::RetryPolicy {
        policy: Some(policy),
    }))
}

/// Creates or replaces the group's config on each broker group (`groups`, each as its nodes),
/// through the first node of each that answers.
pub(crate) async fn update(
    groups: &[Vec<String>],
    timeout: Duration,
    request: &pb::UpdateSubscriptionGroupRequest,
) -> anyhow::Result<ExitCode> {
    let mut stored = None;
    for nodes in groups {
        let mut client = AdminClient::first_reachable(nodes).await?;
        let response = client
            .update_subscription_group(request.clone(), timeout)
            .await?;
        check_admin(
            response.status.as_ref(),
            "UpdateSubscriptionGroup",
            client.addr(),
        )?;
        println!("create subscription group to {} success.", client.addr());
        stored = response.group.or(stored);
    }
    if let Some(group) = stored {
        println!("{}", config_string(&group));
    }
    Ok(ExitCode::SUCCESS)
}

/// Deletes the group's config on each broker group. With a cluster (`-c`), as RocketMQ's tool
/// does, the group's retry and dead-letter topics go too.
pub(crate) async fn delete(
    groups: &[Vec<String>],
    cluster: Option<&str>,
    timeout: Duration,
    group: &str,
    remove_offset: bool,
) -> anyhow::Result<ExitCode> {
    for nodes in groups {
        let mut client = AdminClient::first_reachable(nodes).await?;
        let response = client
            .delete_subscription_group(group, remove_offset, timeout)
            .await?;
        check_admin(
            response.status.as_ref(),
            "DeleteSubscriptionGroup",
            client.addr(),
        )?;
        match cluster {
            Some(cluster) => println!(
                "delete subscription group [{group}] from broker [{}] in cluster [{cluster}] \
                 success.",
                client.addr()
            ),
            None => println!(
                "delete subscription group [{group}] from broker [{}] success.",
                client.addr()
            ),
        }
        if cluster.is_some() {
            delete_group_topics(&mut client, group, timeout).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `%RETRY%<group>` and `%DLQ%<group>`, where they exist.
async fn delete_group_topics(
    client: &mut AdminClient,
    group: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    for topic in [format!("%RETRY%{group}"), format!("%DLQ%{group}")] {
        let response = client.delete_topic(&topic, timeout).await?;
        let missing = response
            .status
            .as_ref()
            .is_some_and(|s| s.code == pb::Code::NotFound as i32);
        if !missing {
            check_admin(response.status.as_ref(), "DeleteTopic", client.addr())?;
        }
    }
    Ok(())
}

/// RocketMQ's `getConsumerConfig`: per broker group that has it, a header naming the cluster
/// and broker, then one `name = value` line per field. Without a group, every group.
pub(crate) async fn get_consumer_config(
    groups: &[Vec<String>],
    timeout: Duration,
    group: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let mut printed = 0;
    for nodes in groups {
        let mut client = AdminClient::first_reachable(nodes).await?;
        let response = client.subscription_group_list(timeout).await?;
        check_admin(
            response.status.as_ref(),
            "SubscriptionGroupList",
            client.addr(),
        )?;
        let wanted = response
            .groups
            .iter()
            .filter(|g| group.is_none_or(|name| g.group_name == name));
        for g in wanted {
            println!(
                "============================={}:{}=============================",
                response.cluster_name, response.broker_name
            );
            for (name, value) in fields(g) {
                println!("{name:<40}=  {value}");
            }
            printed += 1;
        }
    }
    if printed == 0 {
        match group {
            Some(name) => bail!("no broker has the subscription group {name}"),
            None => eprintln!("mqadmin: no subscription group"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The fields RaftMQ keeps, in the order of RocketMQ's `SubscriptionGroupConfig`.
fn fields(g: &pb::SubscriptionGroup) -> Vec<(&'static str, String)> {
    vec![
        ("groupName", g.group_name.clone()),
        ("consumeEnable", g.consume_enable.to_string()),
        (
            "consumeFromMinEnable",
            g.consume_from_min_enable.to_string(),
        ),
        (
            "consumeBroadcastEnable",
            g.consume_broadcast_enable.to_string(),
        ),
        (
            "consumeMessageOrderly",
            g.consume_message_orderly.to_string(),
        ),
        ("retryQueueNums", g.retry_queue_nums.to_string()),
        ("retryMaxTimes", g.retry_max_times.to_string()),
        (
            "groupRetryPolicy",
            policy_string(g.group_retry_policy.as_ref()),
        ),
        (
            "notifyConsumerIdsChangedEnable",
            g.notify_consumer_ids_changed_enable.to_string(),
        ),
    ]
}

/// A config as RocketMQ's `SubscriptionGroupConfig.toString()` prints it.
fn config_string(g: &pb::SubscriptionGroup) -> String {
    let inner: Vec<String> = fields(g)
        .into_iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    format!("SubscriptionGroupConfig{{{}}}", inner.join(", "))
}

/// A retry policy as RocketMQ's `GroupRetryPolicy.toString()` prints it.
fn policy_string(p: Option<&pb::RetryPolicy>) -> String {
    use pb::retry_policy::Policy;
    let join = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
    match p.and_then(|p| p.policy.as_ref()) {
        Some(Policy::Exponential(e)) => format!(
            "GroupRetryPolicy{{type=EXPONENTIAL, exponentialRetryPolicy=ExponentialRetryPolicy\
             {{initial={}, max={}, multiplier={}}}, customizedRetryPolicy=null}}",
            e.initial_ms, e.max_ms, e.multiplier
        ),
        Some(Policy::Customized(c)) => format!(
            "GroupRetryPolicy{{type=CUSTOMIZED, exponentialRetryPolicy=null, \
             customizedRetryPolicy=CustomizedRetryPolicy{{next=[{}]}}}}",
            join(&c.next_ms)
        ),
        None => "null".to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn configs_print_as_rocketmqs_to_string() {
        let g = pb::SubscriptionGroup {
            group_name: "G".into(),
            consume_enable: true,
            retry_queue_nums: 1,
            retry_max_times: 2,
            group_retry_policy: retry_policy_of_json(r#"{"type":"EXPONENTIAL"}"#).unwrap(),
            notify_consumer_ids_changed_enable: true,
            ..Default::default()
        };
        assert_eq!(
            config_string(&g),
            "SubscriptionGroupConfig{groupName=G, consumeEnable=true, \
             consumeFromMinEnable=false, consumeBroadcastEnable=false, \
             consumeMessageOrderly=false, retryQueueNums=1, retryMaxTimes=2, \
             groupRetryPolicy=GroupRetryPolicy{type=EXPONENTIAL, \
             exponentialRetryPolicy=ExponentialRetryPolicy{initial=5000, max=7200000, \
             multiplier=2}, customizedRetryPolicy=null}, notifyConsumerIdsChangedEnable=true}"
        );
    }

    #[test]
    fn retry_policies_read_as_rocketmq_reads_them() {
        use pb::retry_policy::Policy;
        let p =
            retry_policy_of_json(r#"{"type":"CUSTOMIZED","customizedRetryPolicy":{"next":[1,2]}}"#)
                .unwrap()
                .unwrap();
        assert_eq!(
            p.policy,
            Some(Policy::Customized(pb::CustomizedRetryPolicy {
                next_ms: vec![1, 2]
            }))
        );
        assert_eq!(
            retry_policy_of_json(r#"{"type":"CUSTOMIZED"}"#).unwrap(),
            None,
            "the default policy: the broker's delay levels"
        );
        let bad = retry_policy_of_json(r#"{"type":"LINEAR"}"#).unwrap_err();
        assert!(format!("{bad:#}").contains("LINEAR"), "{bad:#}");
        assert!(retry_policy_of_json("{").is_err());
    }
}
