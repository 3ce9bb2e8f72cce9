//! The message store: raft-log as the commitlog, [`BrokerState`] as the derived state.
//!
//! A dispatcher task tails committed entries on every replica and applies each command to the
//! state, which writes the consume-queue units of sends into files. [`MessageStore::execute`]
//! proposes a command from any node (a follower forwards it to the leader), waits until this
//! node has applied it, and returns what applying it produced, which is the same on every
//! replica. Message bodies stay in the log; consume-queue units point at their records and
//! [`MessageStore::read_message`] decodes the one record (zero-copy once committed).
//!
//! A checkpoint task ([`checkpoint`]) saves the state every second, so a restart goes on from
//! there instead of replaying the whole log.

mod batch;
mod checkpoint;
mod error;
mod query;

pub use checkpoint::RecoveryError;
pub use error::{StoreError, StoreErrorKind};
pub use query::FoundMessage;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use raft_log::snapshot::SnapshotHook;
use raft_log::{Error as LogError, RaftLogNode};
use tokio::sync::{mpsc, oneshot, watch};

use crate::command::{CheckPolicy, Command, Recall, Receive, StoredMessage, SubscriptionGroup};
use crate::consume_queue::Unit;
use crate::state::{
    ApplyError, ApplyResult, BrokerState, CheckRound, Delivery, Placed, SendResults, StateConfig,
    StateError,
};

/// Results kept for proposers that have not picked theirs up yet.
const RESULTS_MAX: usize = 1 << 16;
/// How long `execute` keeps retrying while the group has no reachable leader.
const LEADER_WAIT: Duration = Duration::from_secs(5);
/// How often the dispatcher looks whether retention purged the log.
const TRIM_CHECK: Duration = Duration::from_secs(1);
/// How long `execute` waits for this node to apply its own command.
const APPLY_WAIT: Duration = Duration::from_secs(10);

struct Shared {
    state: RwLock<BrokerState>,
    /// Where the checkpoint and the consume queues are.
    dir: PathBuf,
    processed: watch::Sender<u64>,
    /// Results of applied entries this node proposed, until their proposer takes them.
    results: Mutex<BTreeMap<u64, ApplyResult>>,
    /// Entries this node has proposed and waits for, by CRC32C of the body (with a count: two
    /// proposals may carry equal bodies). Only their results are kept: a replica keeps no
    /// result nobody will read.
    proposed: Mutex<HashMap<u32, usize>>,
}

/// Registers a proposal in [`Shared::proposed`] for as long as it lives.
struct ProposalGuard<'a> {
    shared: &'a Shared,
    key: u32,
}

impl<'a> ProposalGuard<'a> {
    fn new(shared: &'a Shared, body: &[u8]) -> Self {
        let key = crc32c::crc32c(body);
        *shared
            .proposed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_insert(0) += 1;
        ProposalGuard { shared, key }
    }
}

impl Drop for ProposalGuard<'_> {
    fn drop(&mut self) {
        let mut proposed = self
            .shared
            .proposed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = proposed.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                proposed.remove(&self.key);
            }
        }
    }
}

/// The broker's store; cheap to clone.
#[derive(Clone)]
pub struct MessageStore {
    node: RaftLogNode,
    shared: Arc<Shared>,
    sends: mpsc::Sender<SendRequest>,
    ops: mpsc::Sender<batch::OpRequest>,
}

/// One producer request waiting for group commit.
struct SendRequest {
    now_ms: u64,
    messages: Vec<StoredMessage>,
    reply: oneshot::Sender<Result<SendResults, StoreError>>,
}

/// Group commit: messages of concurrent sends share one log entry, up to these limits.
const SEND_BATCH_MESSAGES_MAX: usize = 1024;
const SEND_BATCH_BYTES_MAX: usize = 4 << 20;
/// Send entries in flight at once. While all are taken, new sends queue up and go out together
/// in the next entry: that is what makes batches grow under load.
const SEND_BATCHES_IN_FLIGHT_MAX: usize = 8;
/// Sends waiting for a batch.
const SEND_QUEUE_MAX: usize = 16 * 1024;

impl std::fmt::Debug for MessageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageStore")
            .field("id", &self.node.config().self_id)
            .finish()
    }
}

impl MessageStore {
    /// Recovers the broker state kept in `dir` (checkpoint and consume queues; RocketMQ's
    /// `storePathRootDir`), then starts the raft-log node, the dispatcher and the checkpoint
    /// task.
    ///
    /// # Errors
    /// When the state cannot be recovered or the node cannot start (bad config, store recovery
    /// failure, address in use).
    pub async fn start(
        config: raft_log::Config,
        state: StateConfig,
        dir: &Path,
    ) -> Result<MessageStore, StoreError> {
        let recovered = checkpoint::recover(dir, &config.store.dir, state)?;
        let (processed, _) = watch::channel(recovered.last_index());
        let shared = Arc::new(Shared {
            state: RwLock::new(recovered),
            dir: dir.to_path_buf(),
            processed,
            results: Mutex::new(BTreeMap::new()),
            proposed: Mutex::new(HashMap::new()),
        });
        let hook = Arc::new(StateSnapshot {
            shared: Arc::clone(&shared),
        });
        let node = RaftLogNode::start_with_hook(config, hook).await?;
        let (sends, queue) = mpsc::channel(SEND_QUEUE_MAX);
        let (ops, op_queue) = mpsc::channel(batch::OPS_QUEUE_MAX);
        let store = MessageStore {
            node,
            shared,
            sends,
            ops,
        };
        store.reindex()?;
        tokio::spawn(store.clone().dispatch());
        // The committers' own copy must not hold a sender of the queues they drain: then the
        // queues close when the last user's store drops, the tasks end and let go of the
        // node (and its store lock), so the same process can open the store again.
        let committer = MessageStore {
            sends: mpsc::channel(1).0,
            ops: mpsc::channel(1).0,
            ..store.clone()
        };
        tokio::spawn(committer.clone().group_commit(queue));
        tokio::spawn(committer.commit_ops(op_queue));
        tokio::spawn(MessageStore::checkpoints(Arc::downgrade(&store.shared)));
        Ok(store)
    }

    /// The raft-log node (role, metrics, transfer).
    pub fn node(&self) -> &RaftLogNode {
        &self.node
    }

    /// The state as this replica has applied it.
    pub fn state(&self) -> RwLockReadGuard<'_, BrokerState> {
        self.shared
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A watch of the last index this replica applied; changes whenever state changes.
    pub fn applied(&self) -> watch::Receiver<u64> {
        self.shared.processed.subscribe()
    }

    /// Creates or updates a topic.
    ///
    /// # Errors
    /// The outer error: the write failed (see [`MessageStore::send`]); the inner one: the
    /// state refused it (queue count out of range).
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn update_topic(
        &self,
        topic: &str,
        queues: u32,
    ) -> Result<Result<(), ApplyError>, StoreError> {
        let command = Command::UpdateTopic {
            topic: topic.to_string(),
            queues,
        };
        self.execute_as(&command, |r| match r {
            ApplyResult::TopicChanged(r) => Ok(r),
            other => Err(other),
        })
        .await
    }

    /// Deletes a topic with its queues and every group's progress on it.
    ///
    /// # Errors
    /// As [`MessageStore::update_topic`]; the inner error: the topic does not exist.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn delete_topic(&self, topic: &str) -> Result<Result<(), ApplyError>, StoreError> {
        let command = Command::DeleteTopic {
            topic: topic.to_string(),
        };
        self.execute_as(&command, |r| match r {
            ApplyResult::TopicChanged(r) => Ok(r),
            other => Err(other),
        })
        .await
    }

    /// Creates or replaces a subscription group's record; with `create_only`, only creates it
    /// (an existing record stays). Returns the record in effect.
    ///
    /// # Errors
    /// As [`MessageStore::update_topic`]; the inner error: a field out of its range.
    #[tracing::instrument(level = "debug", skip(self, group), fields(group = %group.group_name))]
    pub async fn update_subscription_group(
        &self,
        group: SubscriptionGroup,
        create_only: bool,
    ) -> Result<Result<SubscriptionGroup, ApplyError>, StoreError> {
        let command = Command::UpdateSubscriptionGroup { group, create_only };
        self.execute_as(&command, |r| match r {
            ApplyResult::SubscriptionGroupChanged(r) => Ok(r),
            other => Err(other),
        })
        .await
    }

    /// Deletes a subscription group's record (and with `clean_offset` its progress); returns
    /// the record removed.
    ///
    /// # Errors
    /// As [`MessageStore::update_topic`]; the inner error: the group has no record.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn delete_subscription_group(
        &self,
        group: &str,
        clean_offset: bool,
    ) -> Result<Result<SubscriptionGroup, ApplyError>, StoreError> {
        let command = Command::DeleteSubscriptionGroup {
            group: group.to_string(),
            clean_offset,
        };
        self.execute_as(&command, |r| match r {
            ApplyResult::SubscriptionGroupChanged(r) => Ok(r),
            other => Err(other),
        })
        .await
    }

    /// Hands out messages to a consumer group (they become invisible).
    ///
    /// # Errors
    /// As [`MessageStore::update_topic`]; the inner error: the topic does not exist.
    pub async fn receive(
        &self,
        receive: Receive,
    ) -> Result<Result<Vec<Delivery>, ApplyError>, StoreError> {
        self.execute_batched_as(Command::Receive(receive), |r| match r {
            ApplyResult::Received(r) => Ok(r),
            other => Err(other),
        })
        .await
    }

    /// Acknowledges messages; one result per handle.
    ///
    /// # Errors
    /// As [`MessageStore::update_topic`].
    pub async fn ack(
        &self,
        group: &str,
        topic: &str,
        handles: Vec<String>,
    ) -> Result<Vec<Result<(), ApplyError>>, StoreError> {
        let command = Command::Ack {
            group: group.to_string(),
            topic: topic.to_string(),
            handles,
        };
        self.execute_batched_as(command, |r| match r {
            ApplyResult::Acked(r) => Ok(r),
            other => Err(other),
        })
        .await
    }

    /// Commits `group`'s consumer offset of one queue (group-committed with other consumer
    /// commands).
    ///
    /// # Errors
    /// As [`MessageStore::update_topic`]; the inner error: no such topic or queue.
    pub async fn commit_offset(
        &self,
        group: &str,
        topic: &str,
        queue: u32,
        offset: u64,
    ) -> Result<Result<(), ApplyError>, StoreError> {
        let command = Command::CommitOffset {
            group: group.to_string(),
            topic: topic.to_string(),
            queue,
            offset,
        };
        self.execute_batched_as(command, |r| match r {
            ApplyResult::Committed(r) => Ok(r),
            other => Err(other),
        })
        .await
    }

    /// Commits a transaction (`message` is the half message's record, stored now as a normal
    /// message) or rolls it back (`None`).
    ///
    /// # Errors
    /// As [`MessageStore::update_topic`]; the inner error: no open transaction of that id, or
    /// the topic is gone.
    pub async fn end_transaction(
        &self,
        now_ms: u64,
        transaction_id: &str,
        message: Option<StoredMessage>,
    ) -> Result<Result<Option<Placed>, ApplyError>, StoreError> {
        let command = Command::EndTransaction {
            now_ms,
            transaction_id: transaction_id.to_string(),
            message,
        };
        self.execute_as(&command, |r| match r {
            ApplyResult::Ended(r) => Ok(r),
            other => Err(other),
        })
        .await
    }

    /// Recalls a delay message that is not due yet (see [`Command::Recall`]).
    ///
    /// # Errors
    /// As [`MessageStore::update_topic`]; the inner error: it is due already, or its queue no
    /// longer holds it.
    pub async fn recall(&self, recall: Recall) -> Result<Result<(), ApplyError>, StoreError> {
        self.execute_as(&Command::Recall(recall), |r| match r {
            ApplyResult::Recalled(r) => Ok(r),
            other => Err(other),
        })
        .await
    }

    /// One check round of the open transactions (see [`Command::CheckTransactions`]).
    ///
    /// # Errors
    /// As [`MessageStore::update_topic`].
    pub async fn check_transactions(
        &self,
        now_ms: u64,
        policy: CheckPolicy,
    ) -> Result<CheckRound, StoreError> {
        let command = Command::CheckTransactions { now_ms, policy };
        self.execute_as(&command, |r| match r {
            ApplyResult::Checked(round) => Ok(round),
            other => Err(other),
        })
        .await
    }

    /// Waits until this node has applied everything committed before now: a barrier entry
    /// through the log (group-committed with other consumer commands). A node that cannot
    /// reach a quorum fails it instead of answering from stale state.
    ///
    /// # Errors
    /// As [`MessageStore::update_topic`].
    pub async fn barrier(&self) -> Result<(), StoreError> {
        self.execute_batched_as(Command::Barrier, |r| match r {
            ApplyResult::Barrier => Ok(()),
            other => Err(other),
        })
        .await
    }

    /// Makes a delivered message invisible for `invisible_ms` from `now_ms`; returns its new
    /// receipt handle.
    ///
    /// # Errors
    /// As [`MessageStore::update_topic`]; the inner error: the handle is invalid or expired.
    pub async fn change_invisible(
        &self,
        now_ms: u64,
        group: &str,
        topic: &str,
        handle: String,
        invisible_ms: u64,
    ) -> Result<Result<String, ApplyError>, StoreError> {
        let command = Command::ChangeInvisible {
            now_ms,
            group: group.to_string(),
            topic: topic.to_string(),
            handle,
            invisible_ms,
        };
        self.execute_batched_as(command, |r| match r {
            ApplyResult::Changed(r) => Ok(r),
            other => Err(other),
        })
        .await
    }

    /// Moves a delivered message to the group's dead-letter queue now.
    ///
    /// # Errors
    /// As [`MessageStore::change_invisible`].
    pub async fn forward_to_dead_letter(
        &self,
        group: &str,
        topic: &str,
        handle: String,
    ) -> Result<Result<(), ApplyError>, StoreError> {
        let command = Command::ForwardToDeadLetter {
            group: group.to_string(),
            topic: topic.to_string(),
            handle,
        };
        self.execute_batched_as(command, |r| match r {
            ApplyResult::DeadLettered(r) => Ok(r),
            other => Err(other),
        })
        .await
    }

    /// Executes `command` and takes its result with `take`, which hands back a result of
    /// another kind. That can only be a bug; it is the one place that checks for it.
    async fn execute_as<T>(
        &self,
        command: &Command,
        take: impl FnOnce(ApplyResult) -> Result<T, ApplyResult>,
    ) -> Result<T, StoreError> {
        let (index, result) = self.execute(command).await?;
        take(result).map_err(|other| StoreError::ResultMismatch {
            index,
            proposed: command.kind(),
            applied: other.kind(),
        })
    }

    /// Writes `command` through the leader and returns its index and what applying it produced.
    ///
    /// # Errors
    /// [`StoreError::Log`] from the commitlog (a timeout there means the outcome is unknown).
    async fn execute(&self, command: &Command) -> Result<(u64, ApplyResult), StoreError> {
        let body = command.encode();
        // Registered before the entry exists, so the dispatcher keeps its result however
        // early it applies it.
        let _proposal = ProposalGuard::new(&self.shared, &body);
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        // Clients like the Rust SDK never retry, so ride out an election here. Only a refusal
        // (nothing appended) is retried; a timeout's outcome is unknown and goes back as is.
        let index = loop {
            match self.node.propose(vec![body.clone()]).await {
                Ok(indexes) => break indexes.first().copied().ok_or(StoreError::NoIndex)?,
                Err(LogError::NotLeader { .. }) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let mut rx = self.shared.processed.subscribe();
        let reached = rx.wait_for(|p| *p >= index);
        match tokio::time::timeout(APPLY_WAIT, reached).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Err(StoreError::Shutdown),
            Err(_) => {
                return Err(StoreError::ApplyTimeout {
                    index,
                    waited_ms: u64::try_from(APPLY_WAIT.as_millis()).unwrap_or(u64::MAX),
                });
            }
        }
        let result = self
            .shared
            .results
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&index)
            .ok_or(StoreError::ResultLost { index })?;
        Ok((index, result))
    }

    /// How many applied entries' results wait for their proposer (it takes them at once, so
    /// this stays near 0; a growing figure is a leak).
    pub fn results_held(&self) -> usize {
        self.shared
            .results
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Writes a checkpoint now, kept in the history too (tests: retention snapshots at a kept
    /// one).
    #[doc(hidden)]
    pub async fn checkpoint_now_for_tests(&self) -> std::io::Result<u64> {
        checkpoint::take(&self.shared.dir, &self.shared.state, true).await
    }

    /// Waits until this node's dispatcher has applied `index` (tests).
    #[doc(hidden)]
    pub async fn wait_processed_for_tests(&self, index: u64) {
        let mut rx = self.shared.processed.subscribe();
        let _ = rx.wait_for(|p| *p >= index).await;
    }

    /// Stores messages, sharing a log entry with concurrent sends (group commit). Each message
    /// keeps its own queue and offset.
    ///
    /// # Errors
    /// As [`MessageStore::execute`]; a timeout means the outcome is unknown.
    pub async fn send(
        &self,
        now_ms: u64,
        messages: Vec<StoredMessage>,
    ) -> Result<SendResults, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.sends
            .send(SendRequest {
                now_ms,
                messages,
                reply,
            })
            .await
            .map_err(|_| StoreError::Shutdown)?;
        rx.await.map_err(|_| StoreError::Shutdown)?
    }

    async fn group_commit(self, mut queue: mpsc::Receiver<SendRequest>) {
        let in_flight = Arc::new(tokio::sync::Semaphore::new(SEND_BATCHES_IN_FLIGHT_MAX));
        while let Some(first) = queue.recv().await {
            let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
                return;
            };
            let mut batch = vec![first];
            let mut count = batch[0].messages.len();
            let mut bytes: usize = batch[0].messages.iter().map(|m| m.body.len()).sum();
            while count < SEND_BATCH_MESSAGES_MAX && bytes < SEND_BATCH_BYTES_MAX {
                match queue.try_recv() {
                    Ok(r) => {
                        count += r.messages.len();
                        bytes += r.messages.iter().map(|m| m.body.len()).sum::<usize>();
                        batch.push(r);
                    }
                    Err(_) => break,
                }
            }
            let store = self.clone();
            tokio::spawn(async move {
                store.commit_batch(batch).await;
                drop(permit);
            });
        }
    }

    async fn commit_batch(&self, batch: Vec<SendRequest>) {
        let now_ms = batch.iter().map(|r| r.now_ms).max().unwrap_or(0);
        let mut sizes = Vec::with_capacity(batch.len());
        let mut messages = Vec::new();
        let mut replies = Vec::with_capacity(batch.len());
        for r in batch {
            sizes.push(r.messages.len());
            messages.extend(r.messages);
            replies.push(r.reply);
        }
        let command = Command::Send { now_ms, messages };
        let outcome = self
            .execute_as(&command, |r| match r {
                ApplyResult::Sent(results) => Ok(results),
                other => Err(other),
            })
            .await;
        let mut results = match outcome {
            Ok(results) => results.into_iter(),
            Err(e) => {
                let source = Arc::new(e);
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Shared {
                        source: Arc::clone(&source),
                    }));
                }
                return;
            }
        };
        for (reply, n) in replies.into_iter().zip(sizes) {
            let _ = reply.send(Ok(results.by_ref().take(n).collect()));
        }
    }

    /// Reads the message a consume-queue unit points at, with its store time (ms).
    ///
    /// # Errors
    /// When the message is gone (purged, or a hole) or does not decode.
    pub fn read_message(&self, unit: &Unit) -> Result<(StoredMessage, u64), StoreError> {
        let missing = || StoreError::MessageMissing {
            index: unit.index,
            pos: unit.pos,
        };
        if unit.is_hole() {
            return Err(missing());
        }
        let stored = self.node.read(unit.index)?.ok_or_else(missing)?;
        StoredMessage::decode_at(&stored.body, unit.pos, unit.len).map_err(|source| {
            StoreError::Decode {
                index: unit.index,
                source,
            }
        })
    }

    /// Indexes again, from the queues and the log, the messages whose index records were only
    /// in memory when the node stopped (before the dispatcher applies anything new).
    fn reindex(&self) -> Result<(), StoreError> {
        let mut state = self
            .shared
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let added = state
            .reindex(|unit| self.read_message(unit).ok().map(|(m, _)| m))
            .map_err(|e| StoreError::Recovery(RecoveryError::State(e)))?;
        if added > 0 {
            tracing::info!(
                records = added,
                "message index caught up with the checkpoint"
            );
        }
        Ok(())
    }

    /// Writes a checkpoint every [`checkpoint::INTERVAL`] while entries are applied, until
    /// the store is dropped (the task holds no strong reference).
    async fn checkpoints(shared: std::sync::Weak<Shared>) {
        // What start-up recovered is on disk already.
        let Some(mut written) = shared.upgrade().map(|s| *s.processed.borrow()) else {
            return;
        };
        let mut taken: u32 = 0;
        let mut tick = tokio::time::interval(checkpoint::INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(shared) = shared.upgrade() else {
                return;
            };
            if *shared.processed.borrow() == written {
                continue;
            }
            let history = taken.is_multiple_of(checkpoint::HISTORY_EVERY);
            match checkpoint::take(&shared.dir, &shared.state, history).await {
                Ok(index) => {
                    written = index;
                    taken = taken.wrapping_add(1);
                }
                Err(e) => tracing::error!(error = %e, "could not write the broker checkpoint"),
            }
        }
    }

    /// Applies committed commands in order, forever.
    async fn dispatch(self) {
        loop {
            let from = self.state().last_index() + 1;
            let mut tail = self.node.committed_entries(from).include_internal();
            let mut trim_check = tokio::time::Instant::now();
            loop {
                if trim_check.elapsed() >= TRIM_CHECK {
                    trim_check = tokio::time::Instant::now();
                    self.trim_after_purge();
                }
                let next = match tokio::time::timeout(TRIM_CHECK, tail.next()).await {
                    Ok(next) => next,
                    Err(_) => continue,
                };
                let entry = match next {
                    Ok(e) => e,
                    Err(LogError::Purged { .. }) => {
                        // A snapshot is being installed; resume after it.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        break;
                    }
                    Err(LogError::Shutdown) => return,
                    Err(e) => {
                        tracing::error!(error = %e, "dispatcher cannot read the log; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        break;
                    }
                };
                if entry.kind == raft_log::store::EntryKind::Normal {
                    if let Err(e) = self.apply_entry(entry.index, entry.body) {
                        // Going on would let this replica drift from the others. Waiters time
                        // out (outcome unknown); a restart recovers from the checkpoint.
                        tracing::error!(
                            index = entry.index,
                            error = %e,
                            "the dispatcher stopped: the broker state failed; restart the node"
                        );
                        return;
                    }
                } else {
                    // Leader no-ops and membership entries change nothing but the index.
                    self.shared
                        .state
                        .write()
                        .unwrap_or_else(PoisonError::into_inner)
                        .skip(entry.index);
                    self.shared.processed.send_replace(entry.index);
                }
            }
        }
    }

    /// On the leader: when retention purged the log past what the queues were trimmed to,
    /// proposes the [`Command::Trim`] that moves every replica's queues past it.
    fn trim_after_purge(&self) {
        let m = self.node.metrics();
        let Some(purged) = m.purged_index else {
            return;
        };
        if m.role != raft_log::Role::Leader || purged <= self.state().trimmed_upto() {
            return;
        }
        let store = self.clone();
        tokio::spawn(async move {
            let command = Command::Trim { upto: purged };
            match store.execute(&command).await {
                Ok((_, ApplyResult::Trimmed(n))) => {
                    tracing::info!(upto = purged, messages = n, "queues trimmed after a purge");
                }
                Ok((index, other)) => {
                    tracing::error!(index, result = ?other.kind(), "Trim applied as another kind")
                }
                Err(e) => tracing::warn!(error = %e, "could not trim the queues after a purge"),
            }
        });
    }

    fn apply_entry(&self, index: u64, body: Bytes) -> Result<(), StateError> {
        let wanted = {
            let proposed = self
                .shared
                .proposed
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            !proposed.is_empty() && proposed.contains_key(&crc32c::crc32c(&body))
        };
        let command = match Command::decode(body) {
            Ok(c) => c,
            Err(e) => {
                // Every replica skips the same entry, so state stays identical; say so loudly.
                tracing::error!(index, error = %e, "skipping an undecodable log entry");
                self.shared
                    .state
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .skip(index);
                self.shared.processed.send_replace(index);
                return Ok(());
            }
        };
        let result = self
            .shared
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .apply(index, &command)?;
        if let Some(result) = result.filter(|_| wanted) {
            let mut results = self
                .shared
                .results
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            results.insert(index, result);
            while results.len() > RESULTS_MAX {
                results.pop_first();
            }
        }
        self.shared.processed.send_replace(index);
        Ok(())
    }
}

/// Snapshots of the broker state for raft-log's retention and lagging followers.
struct StateSnapshot {
    shared: Arc<Shared>,
}

impl SnapshotHook for StateSnapshot {
    fn build(&self, last_index: u64) -> BoxFuture<'static, std::io::Result<Bytes>> {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            // The state may be ahead of `last_index`; that is safe because applying is
            // idempotent by index. It must not be behind.
            let mut rx = shared.processed.subscribe();
            rx.wait_for(|p| *p >= last_index)
                .await
                .map_err(std::io::Error::other)?;
            let state = shared.state.read().unwrap_or_else(PoisonError::into_inner);
            Ok(Bytes::from(state.snapshot()))
        })
    }

    fn build_at_most(
        &self,
        upto: u64,
    ) -> BoxFuture<'static, std::io::Result<Option<(u64, Bytes)>>> {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let dir = shared.dir.clone();
            let kept = tokio::task::spawn_blocking(move || checkpoint::newest_at_most(&dir, upto))
                .await
                .map_err(std::io::Error::other)??;
            Ok(kept.map(|(index, data)| (index, Bytes::from(data))))
        })
    }

    fn install(&self, last_index: u64, data: Bytes) -> BoxFuture<'static, std::io::Result<()>> {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let mut state = shared.state.write().unwrap_or_else(PoisonError::into_inner);
            let holes = state.install(&data).map_err(std::io::Error::other)?;
            let index = state.last_index();
            drop(state);
            tracing::info!(
                last_index,
                state_index = index,
                holes,
                "installed broker state from a snapshot"
            );
            if holes > 0 {
                tracing::warn!(
                    holes,
                    "this node lacks the log entries of messages the snapshot counts; they read as missing here"
                );
            }
            shared.processed.send_replace(index);
            Ok(())
        })
    }
}
