//! [`Appender`]: the one append path of a node, for local appends and followers' proposals.
//!
//! It admits an append (entry size, `maxPendingRequestsNum`), writes it through the engine and
//! waits for its quorum. The node builds it right after the engine and hands it to the
//! forwarding service ([`crate::forward`]) before the replication port serves, so a proposal
//! forwarded by a follower takes the same path as a local append from the first RPC on.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::engine::driver::Engine;
use crate::error::{Error, Result};
use crate::store::LogStore;
use crate::types::Appended;

/// Admits appends and waits for their quorum.
#[derive(Debug)]
pub(crate) struct Appender {
    config: Arc<Config>,
    engine: Engine,
    store: LogStore,
    /// One permit per append waiting for its quorum (`maxPendingRequestsNum`).
    pending: Semaphore,
}

impl Appender {
    pub(crate) fn new(config: Arc<Config>, engine: Engine, store: LogStore) -> Appender {
        let pending = Semaphore::new(config.max_pending_requests);
        Appender {
            config,
            engine,
            store,
            pending,
        }
    }

    /// Appends entries in order; returns once a majority has all of them.
    ///
    /// # Errors
    /// See [`crate::RaftLogNode::append`]. On an error some entries may have committed.
    pub(crate) async fn append_batch(&self, bodies: Vec<Bytes>) -> Result<Vec<Appended>> {
        self.check_sizes(&bodies)?;
        let n = u32::try_from(bodies.len()).map_err(|_| Error::Busy {
            pending: bodies.len(),
        })?;
        let _permit = self.pending.try_acquire_many(n).map_err(|_| Error::Busy {
            pending: self.config.max_pending_requests - self.pending.available_permits(),
        })?;
        let wait = Duration::from_millis(self.config.max_wait_ack_ms);
        let indexes = self.engine.write_all(bodies, wait).await?;
        indexes.into_iter().map(|i| self.appended(i)).collect()
    }

    fn check_sizes(&self, bodies: &[Bytes]) -> Result<()> {
        let max = self.config.store.entry_body_bytes_max;
        match bodies.iter().find(|b| b.len() as u64 > max) {
            Some(b) => Err(Error::EntryTooLarge {
                size_bytes: b.len(),
                size_bytes_max: usize::try_from(max).unwrap_or(usize::MAX),
            }),
            None => Ok(()),
        }
    }

    fn appended(&self, index: u64) -> Result<Appended> {
        let position = self.store.position_of(index).ok_or_else(|| Error::Raft {
            message: format!("committed entry {index} is not in the local log"),
        })?;
        Ok(Appended { index, position })
    }
}
