//! Subscription groups: each consumer group's config record (RocketMQ's
//! `SubscriptionGroupManager` table), replicated like the topic table.
//!
//! A record is created or replaced by an UpdateSubscriptionGroup (an operator's
//! `updateSubGroup`, or the auto-create of a group on first use, which never replaces one) and
//! removed by a DeleteSubscriptionGroup. The table is O(groups) and travels in the snapshot
//! after the open transactions (a snapshot without it reads as no groups).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::command::SubscriptionGroup;

/// Every subscription group's record, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionGroups {
    table: BTreeMap<String, SubscriptionGroup>,
    /// The log index of the last change (RocketMQ's `dataVersion` counter).
    version: u64,
}

impl SubscriptionGroups {
    /// The record of `name`.
    pub fn get(&self, name: &str) -> Option<&SubscriptionGroup> {
        self.table.get(name)
    }

    /// Every record, by name.
    pub fn iter(&self) -> impl Iterator<Item = &SubscriptionGroup> {
        self.table.values()
    }

    /// How many groups have a record.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no group has a record.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The log index of the last change, 0 before any.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Stores `group` at `index` (unless `create_only` and it has a record); returns the record
    /// in effect afterwards.
    pub(super) fn update(
        &mut self,
        index: u64,
        group: &SubscriptionGroup,
        create_only: bool,
    ) -> SubscriptionGroup {
        if create_only && let Some(existing) = self.table.get(&group.group_name) {
            return existing.clone();
        }
        self.version = index;
        self.table.insert(group.group_name.clone(), group.clone());
        group.clone()
    }

    /// Removes the record of `name` at `index`; returns it, or `None` when there was none.
    pub(super) fn delete(&mut self, index: u64, name: &str) -> Option<SubscriptionGroup> {
        let removed = self.table.remove(name)?;
        self.version = index;
        Some(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_only_keeps_an_existing_record_and_delete_removes_it() {
        let mut t = SubscriptionGroups::default();
        let set = SubscriptionGroup {
            retry_max_times: 1,
            ..SubscriptionGroup::new("g", 16)
        };
        assert_eq!(t.update(3, &set, false), set);
        let auto = SubscriptionGroup::new("g", 16);
        assert_eq!(t.update(4, &auto, true), set, "auto-create leaves it");
        assert_eq!(t.version(), 3);
        assert_eq!(t.update(5, &auto, false), auto, "an update replaces it");
        assert_eq!(t.delete(6, "g"), Some(auto));
        assert_eq!((t.delete(7, "g"), t.version()), (None, 6));
        assert!(t.is_empty());
    }
}
