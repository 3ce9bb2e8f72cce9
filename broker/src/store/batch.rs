//! Group commit of consumer commands: receives, acks, invisibility changes and dead-letter
//! moves of concurrent requests share one log entry ([`Command::Batch`]), as sends do.
//!
//! A request waits in a queue; a committer takes whatever has queued up (up to
//! [`OPS_BATCH_MAX`]) whenever one of [`OPS_IN_FLIGHT_MAX`] entry slots is free, so batches
//! grow with load and a lone request goes out at once. Each request is answered with its own
//! command's result once the entry is applied on this node — an acknowledged ack is
//! committed.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::MessageStore;
use super::error::StoreError;
use crate::command::Command;
use crate::state::ApplyResult;

/// Commands in one entry at most.
const OPS_BATCH_MAX: usize = 1024;
/// Consumer-command entries in flight at once.
const OPS_IN_FLIGHT_MAX: usize = 8;
/// Requests waiting for an entry.
pub(super) const OPS_QUEUE_MAX: usize = 16 * 1024;

/// One consumer request waiting for group commit.
pub(super) struct OpRequest {
    command: Command,
    /// The entry's index and this command's result.
    reply: oneshot::Sender<Result<(u64, ApplyResult), StoreError>>,
}

impl MessageStore {
    /// Executes `command` in a shared entry and takes its result with `take` (see
    /// [`MessageStore::execute_as`]).
    pub(super) async fn execute_batched_as<T>(
        &self,
        command: Command,
        take: impl FnOnce(ApplyResult) -> Result<T, ApplyResult>,
    ) -> Result<T, StoreError> {
        let proposed = command.kind();
        let (reply, rx) = oneshot::channel();
        self.ops
            .send(OpRequest { command, reply })
            .await
            .map_err(|_| StoreError::Shutdown)?;
        let (index, result) = rx.await.map_err(|_| StoreError::Shutdown)??;
        take(result).map_err(|other| StoreError::ResultMismatch {
            index,
            proposed,
            applied: other.kind(),
        })
    }

    /// Drains the queue into entries until every sender is gone.
    pub(super) async fn commit_ops(self, mut queue: mpsc::Receiver<OpRequest>) {
        let in_flight = Arc::new(tokio::sync::Semaphore::new(OPS_IN_FLIGHT_MAX));
        while let Some(first) = queue.recv().await {
            let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < OPS_BATCH_MAX {
                match queue.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            let store = self.clone();
            tokio::spawn(async move {
                store.commit_op_batch(batch).await;
                drop(permit);
            });
        }
    }

    async fn commit_op_batch(&self, mut batch: Vec<OpRequest>) {
        if batch.len() == 1 {
            let r = batch.remove(0);
            let _ = r.reply.send(self.execute(&r.command).await);
            return;
        }
        let (commands, replies): (Vec<Command>, Vec<_>) =
            batch.into_iter().map(|r| (r.command, r.reply)).unzip();
        let n = commands.len();
        let outcome = match self.execute(&Command::Batch(commands)).await {
            Ok((index, ApplyResult::Batch(results))) if results.len() == n => Ok((index, results)),
            Ok((index, other)) => Err(StoreError::ResultMismatch {
                index,
                proposed: "Batch",
                applied: other.kind(),
            }),
            Err(e) => Err(e),
        };
        match outcome {
            Ok((index, results)) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(Ok((index, result)));
                }
            }
            Err(e) => {
                let source = Arc::new(e);
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Shared {
                        source: Arc::clone(&source),
                    }));
                }
            }
        }
    }
}
