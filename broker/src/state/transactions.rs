//! Open transactions: half messages stored but not yet delivered, until their producer commits
//! or rolls them back (RocketMQ's half messages and its transactional check service).
//!
//! A half message's record stays in its Send entry; this table holds where it is and how often
//! its producer was asked about it. It is replicated (every replica applies the same Sends,
//! EndTransactions and check rounds), so a new leader goes on checking where the old one
//! stopped, and its size is O(open transactions).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::command::CheckPolicy;

/// A half message waiting for its producer's commit or rollback.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HalfMessage {
    /// The topic it goes to on a commit.
    pub topic: String,
    /// Log index of the Send entry that holds its record.
    pub index: u64,
    /// Position of its record in the entry.
    pub pos: u32,
    /// Length of its record.
    pub len: u32,
    /// When it was stored (the Send's clock, ms since the epoch).
    pub stored_ms: u64,
    /// The 4.x producer group that sent it (the `PGROUP` property), whose producers are asked.
    pub producer_group: Option<String>,
    /// The queue its producer chose (a 4.x queue selector), where a commit puts it.
    pub queue: Option<u32>,
    /// How many check rounds asked about it.
    pub checks: u32,
    /// When it was last checked (its store time before the first check).
    pub last_check_ms: u64,
}

impl HalfMessage {
    /// Whether a check round at `now_ms` asks about it: first once it is the policy's timeout
    /// old, then every interval.
    pub fn due(&self, now_ms: u64, policy: &CheckPolicy) -> bool {
        if self.checks == 0 {
            now_ms >= self.stored_ms.saturating_add(policy.timeout_ms)
        } else {
            now_ms >= self.last_check_ms.saturating_add(policy.interval_ms)
        }
    }
}

/// What a check round did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckRound {
    /// Half messages whose producers are asked now.
    pub checked: u32,
    /// Transaction ids dropped after `transactionCheckMax` checks without an answer (rolled
    /// back, as RocketMQ does).
    pub dropped: Vec<String>,
}

/// The open transactions by transaction id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transactions {
    open: BTreeMap<String, HalfMessage>,
}

impl Transactions {
    /// Records a half message (a repeated transaction id replaces the earlier one: a
    /// producer's retry of the same send).
    pub fn hold(&mut self, transaction_id: &str, half: HalfMessage) {
        self.open.insert(transaction_id.to_string(), half);
    }

    /// Removes and returns an open transaction.
    pub fn resolve(&mut self, transaction_id: &str) -> Option<HalfMessage> {
        self.open.remove(transaction_id)
    }

    /// An open transaction.
    pub fn get(&self, transaction_id: &str) -> Option<&HalfMessage> {
        self.open.get(transaction_id)
    }

    /// Every open transaction, by id.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &HalfMessage)> {
        self.open.iter()
    }

    /// How many are open.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Whether a check round at `now_ms` would ask about any of them.
    pub fn any_due(&self, now_ms: u64, policy: &CheckPolicy) -> bool {
        self.open.values().any(|h| h.due(now_ms, policy))
    }

    /// One check round: every due half message counts one more check, or is dropped once it
    /// was checked the policy's most times.
    pub fn check(&mut self, now_ms: u64, policy: &CheckPolicy) -> CheckRound {
        let mut round = CheckRound::default();
        for (id, half) in &mut self.open {
            if !half.due(now_ms, policy) {
                continue;
            }
            if half.checks >= policy.max_checks {
                round.dropped.push(id.clone());
            } else {
                half.checks += 1;
                half.last_check_ms = now_ms;
                round.checked += 1;
            }
        }
        for id in &round.dropped {
            self.open.remove(id);
        }
        round
    }

    /// Drops the half messages whose records were in entries up to `upto` (retention purged
    /// them: they can no longer be committed). Returns how many.
    pub fn trim(&mut self, upto: u64) -> usize {
        let before = self.open.len();
        self.open.retain(|_, h| h.index > upto);
        before - self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: CheckPolicy = CheckPolicy {
        timeout_ms: 6_000,
        interval_ms: 30_000,
        max_checks: 2,
    };

    fn half(stored_ms: u64) -> HalfMessage {
        HalfMessage {
            topic: "t".into(),
            index: 7,
            pos: 14,
            len: 40,
            stored_ms,
            producer_group: None,
            queue: None,
            checks: 0,
            last_check_ms: stored_ms,
        }
    }

    #[test]
    fn the_first_check_waits_for_the_timeout_then_every_interval_until_the_max() {
        let mut t = Transactions::default();
        t.hold("a", half(1_000));
        assert_eq!(
            t.check(6_999, &POLICY).checked,
            0,
            "younger than the timeout"
        );
        assert_eq!(t.check(7_000, &POLICY).checked, 1);
        assert_eq!(t.check(36_999, &POLICY).checked, 0, "checked recently");
        assert_eq!(t.check(37_000, &POLICY).checked, 1);
        assert_eq!(t.get("a").map(|h| h.checks), Some(2));
        let round = t.check(67_000, &POLICY);
        assert_eq!(
            round.dropped,
            vec!["a".to_string()],
            "checked max times: dropped"
        );
        assert!(t.is_empty());
    }

    #[test]
    fn resolving_removes_and_trim_drops_purged_records() {
        let mut t = Transactions::default();
        t.hold("a", half(0));
        t.hold(
            "b",
            HalfMessage {
                index: 9,
                ..half(0)
            },
        );
        assert_eq!(t.trim(7), 1);
        assert!(t.get("a").is_none());
        assert_eq!(t.resolve("b").map(|h| h.index), Some(9));
        assert_eq!(t.resolve("b"), None, "resolved once");
    }
}
