//! Subscription groups (RocketMQ's `SubscriptionGroupManager`): an operator creates, replaces
//! and deletes a group's record; a consumer's first receive, pull, send-back or heartbeat
//! creates it when `autoCreateSubscriptionGroup` allows (RocketMQ's
//! `findSubscriptionGroupConfig`), and is refused otherwise. The record decides how often a
//! message is delivered before the dead-letter queue (`retryMaxTimes` + 1), whether the group
//! may consume (`consumeEnable`), and the settings its 5.x consumers get.
//!
//! Records are replicated commands, so every node has the same ones; an auto-create proposes
//! the record with `create_only`, so it never undoes an operator's update that committed
//! first.

use super::BrokerService;
use super::clients::MessageModel;
use super::error::{ServiceError, check_group};
use crate::command::{
    GroupRetryPolicy, InvalidGroupField, RETRY_MAX_TIMES_MAX, RETRY_QUEUE_NUMS_MAX,
    SubscriptionGroup,
};
use crate::state::ApplyError;

/// A subscription group's record as a protocol decoded it, not yet checked. A field left out
/// takes RocketMQ's default of a new `SubscriptionGroupConfig` (`retryMaxTimes`: broker.conf's
/// `defaultRetryMaxTimes`): an update replaces the whole record, as RocketMQ's does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupUpdate {
    /// `groupName`.
    pub group_name: String,
    /// `consumeEnable`.
    pub consume_enable: Option<bool>,
    /// `consumeFromMinEnable`.
    pub consume_from_min_enable: Option<bool>,
    /// `consumeBroadcastEnable`.
    pub consume_broadcast_enable: Option<bool>,
    /// `consumeMessageOrderly`.
    pub consume_message_orderly: Option<bool>,
    /// `retryQueueNums` (0..=1024).
    pub retry_queue_nums: Option<i64>,
    /// `retryMaxTimes` (0..=2147483646).
    pub retry_max_times: Option<i64>,
    /// `groupRetryPolicy`.
    pub group_retry_policy: Option<GroupRetryPolicy>,
    /// `notifyConsumerIdsChangedEnable`.
    pub notify_consumer_ids_changed_enable: Option<bool>,
}

fn invalid(e: InvalidGroupField) -> ServiceError {
    ServiceError::InvalidField {
        field: e.field,
        why: e.why,
    }
}

/// A count field in `0..=max`.
fn count(field: &'static str, value: i64, max: u32) -> Result<u32, ServiceError> {
    u32::try_from(value)
        .ok()
        .filter(|v| *v <= max)
        .ok_or_else(|| ServiceError::InvalidField {
            field,
            why: format!("must be 0..={max}, not {value}"),
        })
}

impl GroupUpdate {
    /// The checked record; errors name the field.
    fn into_group(self, default_retry_max_times: u32) -> Result<SubscriptionGroup, ServiceError> {
        check_group("groupName", &self.group_name)?;
        let d = SubscriptionGroup::new(&self.group_name, default_retry_max_times);
        let retry_max_times = self
            .retry_max_times
            .map(|v| count("retryMaxTimes", v, RETRY_MAX_TIMES_MAX))
            .transpose()?;
        let retry_queue_nums = self
            .retry_queue_nums
            .map(|v| count("retryQueueNums", v, RETRY_QUEUE_NUMS_MAX))
            .transpose()?;
        let group = SubscriptionGroup {
            consume_enable: self.consume_enable.unwrap_or(d.consume_enable),
            consume_from_min_enable: self
                .consume_from_min_enable
                .unwrap_or(d.consume_from_min_enable),
            consume_broadcast_enable: self
                .consume_broadcast_enable
                .unwrap_or(d.consume_broadcast_enable),
            consume_message_orderly: self
                .consume_message_orderly
                .unwrap_or(d.consume_message_orderly),
            retry_queue_nums: retry_queue_nums.unwrap_or(d.retry_queue_nums),
            retry_max_times: retry_max_times.unwrap_or(d.retry_max_times),
            group_retry_policy: self
                .group_retry_policy
                .unwrap_or_else(|| d.group_retry_policy.clone()),
            notify_consumer_ids_changed_enable: self
                .notify_consumer_ids_changed_enable
                .unwrap_or(d.notify_consumer_ids_changed_enable),
            group_name: d.group_name,
        };
        group.check().map_err(invalid)?;
        Ok(group)
    }
}

impl BrokerService {
    /// Every subscription group's record, by name.
    pub fn subscription_groups(&self) -> Vec<SubscriptionGroup> {
        self.store
            .state()
            .subscription_groups()
            .iter()
            .cloned()
            .collect()
    }

    /// The log index of the last change to the records (RocketMQ's `dataVersion` counter).
    pub fn subscription_groups_version(&self) -> u64 {
        self.store.state().subscription_groups().version()
    }

    /// What a consumer of `group` goes by: its record, or the record creating it would make
    /// (nothing is created).
    pub fn group_settings(&self, group: &str) -> SubscriptionGroup {
        self.store
            .state()
            .subscription_groups()
            .get(group)
            .cloned()
            .unwrap_or_else(|| self.new_group(group))
    }

    /// A group with RocketMQ's defaults and broker.conf's `defaultRetryMaxTimes`.
    fn new_group(&self, group: &str) -> SubscriptionGroup {
        SubscriptionGroup::new(group, self.config.default_retry_max_times)
    }

    /// Creates or replaces a group's record (RocketMQ's `updateSubGroup`); returns it.
    ///
    /// # Errors
    /// A bad name or a field out of its range (named), a store failure.
    pub async fn update_subscription_group(
        &self,
        update: GroupUpdate,
    ) -> Result<SubscriptionGroup, ServiceError> {
        let group = update.into_group(self.config.default_retry_max_times)?;
        let stored = self.store.update_subscription_group(group, false).await??;
        tracing::info!(group = %stored.group_name, ?stored, "subscription group updated");
        Ok(stored)
    }

    /// Deletes a group's record (RocketMQ's `deleteSubGroup`), with `clean_offset` also its
    /// progress on every topic; returns the record removed.
    ///
    /// # Errors
    /// A bad name, a group without a record, a store failure.
    pub async fn delete_subscription_group(
        &self,
        group: &str,
        clean_offset: bool,
    ) -> Result<SubscriptionGroup, ServiceError> {
        check_group("groupName", group)?;
        match self
            .store
            .delete_subscription_group(group, clean_offset)
            .await?
        {
            Ok(removed) => {
                tracing::info!(group, clean_offset, "subscription group deleted");
                Ok(removed)
            }
            Err(ApplyError::SubscriptionGroupNotFound { group }) => {
                Err(ServiceError::SubscriptionGroupNotFound { group })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The record of `group` (a checked name), created with the defaults when it has none and
    /// `autoCreateSubscriptionGroup` allows (RocketMQ's `findSubscriptionGroupConfig`).
    ///
    /// # Errors
    /// [`ServiceError::SubscriptionGroupNotAutoCreated`], a store failure.
    pub(crate) async fn find_subscription_group(
        &self,
        group: &str,
    ) -> Result<SubscriptionGroup, ServiceError> {
        let found = self.store.state().subscription_groups().get(group).cloned();
        if let Some(found) = found {
            return Ok(found);
        }
        if !self.config.auto_create_subscription_group {
            return Err(ServiceError::SubscriptionGroupNotAutoCreated {
                group: group.to_string(),
            });
        }
        let created = self
            .store
            .update_subscription_group(self.new_group(group), true)
            .await??;
        tracing::info!(group, "subscription group created on first use");
        Ok(created)
    }

    /// The record of a group about to consume: found or auto-created, and allowed to.
    ///
    /// # Errors
    /// As [`BrokerService::find_subscription_group`]; [`ServiceError::ConsumeDisabled`].
    pub(crate) async fn consumable_group(
        &self,
        group: &str,
    ) -> Result<SubscriptionGroup, ServiceError> {
        let found = self.find_subscription_group(group).await?;
        if !found.consume_enable {
            return Err(ServiceError::ConsumeDisabled {
                group: group.to_string(),
            });
        }
        Ok(found)
    }

    /// Refuses a group whose consumers on this node consume by broadcast (their latest
    /// heartbeat's message model, which RocketMQ keeps per group) when its
    /// `consumeBroadcastEnable` is false.
    ///
    /// # Errors
    /// [`ServiceError::BroadcastDisabled`].
    pub(crate) fn check_broadcast(&self, group: &SubscriptionGroup) -> Result<(), ServiceError> {
        let broadcasting = self
            .clients()
            .consumer_connection(&group.group_name)
            .is_some_and(|c| c.mode.message_model == MessageModel::Broadcasting);
        if broadcasting && !group.consume_broadcast_enable {
            return Err(ServiceError::BroadcastDisabled {
                group: group.group_name.clone(),
            });
        }
        Ok(())
    }

    /// Whether `group`'s 4.x consumers are told when its members change (its
    /// `notifyConsumerIdsChangedEnable`; a group without a record is).
    pub fn notifies_consumer_ids_changed(&self, group: &str) -> bool {
        self.group_settings(group)
            .notify_consumer_ids_changed_enable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(group: &str) -> GroupUpdate {
        GroupUpdate {
            group_name: group.into(),
            ..GroupUpdate::default()
        }
    }

    #[test]
    fn fields_left_out_take_rocketmqs_defaults() {
        let g = update("G").into_group(7).unwrap();
        assert_eq!(g, SubscriptionGroup::new("G", 7));
        let g = GroupUpdate {
            consume_enable: Some(false),
            retry_max_times: Some(0),
            retry_queue_nums: Some(0),
            ..update("G")
        }
        .into_group(7)
        .unwrap();
        assert!(!g.consume_enable);
        assert_eq!((g.retry_max_times, g.retry_queue_nums), (0, 0));
    }

    #[test]
    fn bad_input_names_its_field() {
        let cases = [
            (update(""), "groupName is empty"),
            (
                update("a b"),
                "groupName \"a b\" may only contain letters, digits, %, |, _ and -",
            ),
            (
                GroupUpdate {
                    retry_max_times: Some(-1),
                    ..update("G")
                },
                "retryMaxTimes: must be 0..=2147483646, not -1",
            ),
            (
                GroupUpdate {
                    retry_queue_nums: Some(2000),
                    ..update("G")
                },
                "retryQueueNums: must be 0..=1024, not 2000",
            ),
            (
                GroupUpdate {
                    group_retry_policy: Some(GroupRetryPolicy::Customized { next_ms: vec![] }),
                    ..update("G")
                },
                "groupRetryPolicy: a customized policy needs at least one delay in next",
            ),
        ];
        for (u, want) in cases {
            assert_eq!(u.into_group(16).unwrap_err().to_string(), want);
        }
    }
}
