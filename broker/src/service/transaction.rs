//! Transactional messages: ending a transaction, and asking producers about the open ones.
//!
//! A transactional send stores a half message (see [`crate::state::Transactions`]). The
//! producer commits or rolls it back with [`BrokerService::end_transaction`] on any node: a
//! commit reads the half message's record from this node's log and proposes it as a normal
//! message, a rollback just closes it, both through one replicated `EndTransaction`.
//!
//! A half message left open is checked back. The leader proposes a check round every second
//! when one is due (RocketMQ's `transactionTimeOut`, `transactionCheckInterval`,
//! `transactionCheckMax`, from the proposer's broker.conf), so the count of checks is
//! replicated and a new leader goes on where the old one stopped. Every node then asks the
//! producers connected to it, found in its [`Clients`](super::Clients): a 4.x producer of
//! the message's producer group, else a 5.x producer that publishes its topic (as RocketMQ 5
//! does for gRPC clients). Each node asks once per counted check.

use std::collections::HashMap;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::BrokerService;
use super::clients::{ClientNotice, TransactionCheck};
use super::clock::now_ms;
use super::error::ServiceError;
use crate::command::StoredMessage;
use crate::consume_queue::Unit;
use crate::state::{ApplyError, HalfMessage};

/// How often a node looks for due checks.
const CHECK_TICK: Duration = Duration::from_secs(1);

pub(super) fn unit_of(half: &HalfMessage) -> Unit {
    Unit {
        index: half.index,
        pos: half.pos,
        len: half.len,
        tag_hash: 0,
        group_hash: 0,
        delivery_ms: 0,
    }
}

impl BrokerService {
    fn open_half(&self, transaction_id: &str) -> Option<HalfMessage> {
        self.store
            .state()
            .transactions()
            .get(transaction_id)
            .cloned()
    }

    /// Commits (`commit`) or rolls back the open transaction `transaction_id`, on any node.
    ///
    /// # Errors
    /// No open transaction of that id (unknown, already ended, or dropped after its checks),
    /// the half message's record cannot be read, a store failure.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn end_transaction(
        &self,
        transaction_id: &str,
        commit: bool,
    ) -> Result<(), ServiceError> {
        // The negative control: a rollback commits, as a broken broker would.
        let commit = commit || self.config.unsafe_commit_rollbacks;
        let not_found = || ApplyError::TransactionNotFound {
            transaction_id: transaction_id.to_string(),
        };
        let half = match self.open_half(transaction_id) {
            Some(half) => half,
            None => {
                // This node may not have applied the half message yet.
                self.store.barrier().await?;
                self.open_half(transaction_id).ok_or_else(not_found)?
            }
        };
        let message = if commit {
            let (m, _) = self.store.read_message(&unit_of(&half))?;
            Some(StoredMessage { queue: None, ..m })
        } else {
            None
        };
        self.store
            .end_transaction(now_ms(), transaction_id, message)
            .await??;
        self.trace_end_transaction(transaction_id, &half, commit);
        Ok(())
    }

    /// Starts this node's check task: every second the leader proposes a check round when a
    /// half message is due, and every node asks its own producers about what was counted.
    pub fn spawn_transaction_checks(&self) -> JoinHandle<()> {
        let service = self.clone();
        tokio::spawn(async move {
            let mut asked: HashMap<String, u32> = HashMap::new();
            let mut tick = tokio::time::interval(CHECK_TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                service.propose_check_round().await;
                service.ask_producers(&mut asked);
            }
        })
    }

    async fn propose_check_round(&self) {
        let policy = self.config.transactions;
        let now = now_ms();
        let leads = self.store.node().role().borrow().role == raft_log::Role::Leader;
        let due = leads && self.store.state().transactions().any_due(now, &policy);
        if !due {
            return;
        }
        match self.store.check_transactions(now, policy).await {
            Ok(round) => tracing::debug!(
                checked = round.checked,
                dropped = round.dropped.len(),
                "transaction check round"
            ),
            Err(e) => tracing::debug!("transaction check round not proposed: {e}"),
        }
    }

    /// Asks producers about every half message whose check count went up since this node
    /// last asked; forgets the transactions that ended.
    fn ask_producers(&self, asked: &mut HashMap<String, u32>) {
        let due: Vec<(String, HalfMessage)> = {
            let state = self.store.state();
            let open = state.transactions();
            asked.retain(|id, _| open.get(id).is_some());
            open.iter()
                .filter(|(id, h)| h.checks > asked.get(*id).copied().unwrap_or(0))
                .map(|(id, h)| (id.clone(), h.clone()))
                .collect()
        };
        for (id, half) in due {
            asked.insert(id.clone(), half.checks);
            let Some(tx) = self
                .clients
                .transaction_checker(&half.topic, half.producer_group.as_deref())
            else {
                continue;
            };
            let (message, store_ms) = match self.store.read_message(&unit_of(&half)) {
                Ok(read) => read,
                Err(e) => {
                    tracing::warn!(transaction_id = %id, "half message unreadable: {e}");
                    continue;
                }
            };
            let check = TransactionCheck {
                transaction_id: id,
                message,
                store_ms,
                commit_log_offset: super::query::commit_log_offset(half.index, half.pos),
            };
            // A producer that is not keeping up is asked again at the next counted check.
            let _ = tx.try_send(ClientNotice::CheckTransaction(Box::new(check)));
        }
    }
}
