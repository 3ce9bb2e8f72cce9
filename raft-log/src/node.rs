//! [`RaftLogNode`]: one member of a raft-log group, with DLedger's API.
//!
//! A node owns the store, the Raft engine and the replication server on its `dLegerPeers`
//! address. Appends are acknowledged once a majority has the entry (fsynced there under
//! SYNC_FLUSH); readers tail committed entries with [`RaftLogNode::committed_entries`].

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::append::Appender;
use crate::config::Config;
use crate::engine::driver::Engine;
use crate::error::{Error, Result};
use crate::forward::{ForwardService, Forwarder};
use crate::net::PeerChannels;
use crate::snapshot::{EmptySnapshot, SnapshotHook};
use crate::store::{EntryKind, LogStore, StoredEntry};
use crate::types::{Appended, Metrics, RoleState};
use crate::{preferred_leader, retention};

/// One member of a raft-log group.
#[derive(Clone, Debug)]
pub struct RaftLogNode {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Arc<Config>,
    engine: Engine,
    store: LogStore,
    appender: Arc<Appender>,
    role_rx: watch::Receiver<RoleState>,
    server_stop: Mutex<Option<oneshot::Sender<()>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    local_addr: SocketAddr,
    forwarder: Forwarder,
}

impl RaftLogNode {
    /// Starts a node for an application without derived state (empty snapshots).
    ///
    /// # Errors
    /// See [`RaftLogNode::start_with_hook`].
    pub async fn start(config: Config) -> Result<RaftLogNode> {
        Self::start_with_hook(config, Arc::new(EmptySnapshot)).await
    }

    /// Opens the store, binds the replication address, starts Raft and joins the group (the
    /// first start of a pristine group initializes it with the members of `dLegerPeers`).
    ///
    /// # Errors
    /// An invalid config, a store that cannot be opened or recovered, or an address in use.
    #[tracing::instrument(level = "info", skip_all, fields(group = %config.group, id = %config.self_id))]
    pub async fn start_with_hook(
        config: Config,
        hook: Arc<dyn SnapshotHook>,
    ) -> Result<RaftLogNode> {
        config.validate()?;
        if config.store.unsafe_skip_fsync {
            tracing::warn!(
                "unsafeSkipFsync=true: data is never fsynced; acknowledged entries are lost on \
                 power loss (a negative control for fault-injection tests only)"
            );
        }
        let config = Arc::new(config);
        let (listener, local_addr) = bind(&config).await?;
        let store = open_store(&config).await?;
        // One channel per peer, for replication and forwarded proposals alike.
        let channels = PeerChannels::new(config.heartbeat_interval_ms);
        let engine =
            Engine::start(Arc::clone(&config), store.clone(), hook, channels.clone()).await?;
        // The append path exists before the server, so a follower's first proposal finds it.
        let appender = Arc::new(Appender::new(
            Arc::clone(&config),
            engine.clone(),
            store.clone(),
        ));
        let (stop_tx, stop_rx) = oneshot::channel();
        let forward = ForwardService::server(&config.group, Arc::downgrade(&appender));
        let beside = tonic::service::Routes::new(forward);
        let server = engine.serve(listener, beside, async move {
            let _ = stop_rx.await;
        });
        engine.initialize_if_pristine().await?;
        let (role_tx, role_rx) = watch::channel(engine.role_state());
        let mut tasks = vec![server, engine.spawn_role_watch(role_tx, store.metrics())];
        tasks.extend(spawn_policies(&config, &engine, &store));
        let forwarder = Forwarder::new(Arc::clone(&config), channels);
        let inner = Inner {
            forwarder,
            config,
            engine,
            store,
            appender,
            role_rx,
            server_stop: Mutex::new(Some(stop_tx)),
            tasks: Mutex::new(tasks),
            local_addr,
        };
        Ok(RaftLogNode {
            inner: Arc::new(inner),
        })
    }

    /// The snapshot a node saved last in `store_dir` (raft-log's `store.dir`), as
    /// `(last index, application data)`, without starting the node.
    ///
    /// An application that keeps its own checkpoint reads this at start-up when its checkpoint
    /// is missing or older: after retention purged the log, the saved snapshot is the only way
    /// back to the state before the log's first entry.
    ///
    /// # Errors
    /// A snapshot file that cannot be read or fails its checksum.
    pub fn read_saved_snapshot(store_dir: &Path) -> io::Result<Option<(u64, Bytes)>> {
        let path = store_dir.join("snapshot").join("current");
        let saved = crate::engine::state_machine::load_snapshot(&path)?;
        Ok(saved.and_then(|(meta, data)| meta.last_log_id.map(|id| (id.index, data))))
    }

    /// The node's configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The address the replication server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Appends one entry; returns once a majority has it.
    ///
    /// # Errors
    /// [`Error::NotLeader`] on a follower (or a leader that lost its quorum), [`Error::Busy`]
    /// when `maxPendingRequestsNum` appends already wait, [`Error::Timeout`] (outcome unknown)
    /// after `maxWaitAckTimeMs`, [`Error::EntryTooLarge`].
    pub async fn append(&self, body: Bytes) -> Result<Appended> {
        let mut v = self.append_batch(vec![body]).await?;
        v.pop().ok_or_else(|| Error::Raft {
            message: "append returned no result".into(),
        })
    }

    /// Appends entries in order; returns once a majority has all of them.
    ///
    /// # Errors
    /// As [`RaftLogNode::append`]. On an error some entries may have committed.
    pub async fn append_batch(&self, bodies: Vec<Bytes>) -> Result<Vec<Appended>> {
        self.inner.appender.append_batch(bodies).await
    }

    /// Appends entries through whichever node leads: locally on the leader, forwarded over the
    /// replication port from a follower. Returns each entry's index once a majority has it.
    /// Call [`RaftLogNode::wait_applied`] before reading what the entries did on this node.
    ///
    /// # Errors
    /// As [`RaftLogNode::append`]; [`Error::NotLeader`] with no leader while none is known.
    pub async fn propose(&self, bodies: Vec<Bytes>) -> Result<Vec<u64>> {
        let me = self.inner.config.node_id();
        let mut leader = self.inner.engine.current_leader();
        // One retry covers a stale view of the leader on either side.
        for _ in 0..2 {
            let result = match leader {
                Some(l) if l != me => {
                    if self.inner.engine.is_blocked(l) {
                        Err(Error::NotLeader {
                            group: self.inner.config.group.clone(),
                            leader_id: None,
                            leader_addr: None,
                        })
                    } else {
                        self.forward(l, bodies.clone()).await
                    }
                }
                _ => self
                    .append_batch(bodies.clone())
                    .await
                    .map(|v| v.into_iter().map(|a| a.index).collect()),
            };
            match result {
                Err(Error::NotLeader {
                    leader_id: Some(l), ..
                }) if Some(l) != leader => leader = Some(l),
                other => return other,
            }
        }
        Err(Error::NotLeader {
            group: self.inner.config.group.clone(),
            leader_id: leader,
            leader_addr: None,
        })
    }

    /// Waits until this node has applied `index` (readers can see it), or `timeout` passes.
    ///
    /// # Errors
    /// [`Error::Timeout`] or [`Error::Shutdown`].
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> Result<()> {
        let mut applied = self.inner.engine.applied();
        let waited_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let reached = applied.wait_for(|a| a.is_some_and(|a| a >= index));
        match tokio::time::timeout(timeout, reached).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(Error::Shutdown),
            Err(_) => Err(Error::Timeout { waited_ms }),
        }
    }

    /// Reads a committed entry by index (`None` if it is not committed yet or not present).
    ///
    /// # Errors
    /// [`Error::Purged`] for an index retention deleted; a store error if the entry does not
    /// verify.
    pub fn read(&self, index: u64) -> Result<Option<StoredEntry>> {
        let applied = *self.inner.engine.applied().borrow();
        if applied.is_none_or(|a| index > a) {
            return Ok(None);
        }
        self.check_purged(index)?;
        Ok(self.inner.store.read(index)?)
    }

    fn check_purged(&self, index: u64) -> Result<()> {
        let state = self.inner.store.log_state();
        if let Some(p) = state.purged
            && index <= p.index
        {
            return Err(Error::Purged {
                requested: index,
                first_index: p.index + 1,
            });
        }
        Ok(())
    }

    /// Tails committed application entries from index `from` on (blank and membership entries
    /// are skipped). Reads share the mapped segment files without a copy.
    pub fn committed_entries(&self, from: u64) -> CommittedEntries {
        CommittedEntries {
            include_internal: false,
            node: self.clone(),
            applied: self.inner.engine.applied(),
            next: from,
            buffer: Vec::new().into_iter(),
        }
    }

    /// Watches this node's role, term and leader.
    pub fn role(&self) -> watch::Receiver<RoleState> {
        self.inner.role_rx.clone()
    }

    /// Entries openraft applied since this process started the node (tests: a restart applies
    /// only what lies after the applied marker).
    #[doc(hidden)]
    pub fn entries_applied_since_start(&self) -> u64 {
        self.inner.engine.entries_applied()
    }

    /// Term, role, commit and applied index, and per-peer progress.
    pub fn metrics(&self) -> Metrics {
        self.inner.engine.metrics()
    }

    /// Bytes of the data segment files on disk (preallocated, so whole segments).
    pub fn data_bytes(&self) -> u64 {
        self.inner
            .store
            .segments()
            .iter()
            .map(|s| s.size_bytes)
            .sum()
    }

    /// This node's Prometheus metrics (`raft_log_*`) as one collector for the application's
    /// registry: append and fsync latency, snapshots, purges and leader changes as counted,
    /// term, role, indexes and per-peer progress as [`RaftLogNode::metrics`] reads them at
    /// each scrape.
    pub fn prometheus_collector(&self) -> crate::metrics::RaftCollector {
        let node = self.clone();
        crate::metrics::RaftCollector::new(
            self.inner.store.metrics(),
            Box::new(move || node.metrics()),
        )
    }

    /// Forwards a proposal to `leader`. Should this node learn of another leader while the
    /// forward is in flight, it stops waiting at once: the old leader is unreachable or paused
    /// (else it would not have been replaced) and its answer could take the whole forward
    /// timeout. The outcome is then unknown — the old leader may have appended the entries,
    /// and the new one may still commit them.
    async fn forward(&self, leader: u64, bodies: Vec<Bytes>) -> Result<Vec<u64>> {
        let target = self
            .inner
            .config
            .peer_by_node_id(leader)
            .map(|p| p.id.clone());
        let mut role = self.inner.role_rx.clone();
        // Only a change seen after the forward started counts (the role watch may lag the
        // engine's view the target was taken from).
        let initial = role.borrow_and_update().leader.clone();
        let replaced =
            role.wait_for(|r| r.leader.is_some() && r.leader != target && r.leader != initial);
        tokio::select! {
            result = self.inner.forwarder.propose(leader, bodies) => result,
            changed = replaced => match changed {
                Ok(r) => Err(Error::OutcomeUnknown {
                    reason: format!(
                        "the leader changed from {} to {} while the proposal was forwarded",
                        target.as_deref().unwrap_or("?"),
                        r.leader.as_deref().unwrap_or("?")
                    ),
                }),
                Err(_) => Err(Error::Shutdown),
            },
        }
    }

    /// Hands leadership to the peer with DLedger id `to`, and waits (up to two election
    /// timeouts and 4 s) until it leads.
    ///
    /// # Errors
    /// [`Error::UnknownNode`], [`Error::NotLeader`] when this node does not lead, or
    /// [`Error::TransferTimeout`] when `to` did not take over in time.
    pub async fn transfer_leadership(&self, to: &str) -> Result<()> {
        let peer = self
            .inner
            .config
            .peer(to)
            .ok_or_else(|| Error::UnknownNode {
                node: to.to_string(),
            })?;
        self.inner.engine.transfer_leader(peer.node_id).await
    }

    /// Takes a snapshot and deletes the log up to `upto` (bounded by the snapshot). Returns the
    /// new purge point. Retention calls this on its own; tests and operators may too.
    ///
    /// # Errors
    /// When the snapshot or purge fails.
    pub async fn purge_upto(&self, upto: u64) -> Result<Option<u64>> {
        self.inner.engine.snapshot_and_purge(upto).await
    }

    /// Stops the server and the engine, and flushes the store.
    ///
    /// # Errors
    /// When the final sync fails.
    pub async fn shutdown(&self) -> Result<()> {
        if let Some(stop) = self
            .inner
            .server_stop
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = stop.send(());
        }
        self.inner.engine.shutdown().await;
        let tasks: Vec<_> =
            std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for t in tasks {
            t.abort();
        }
        self.inner.store.sync()?;
        Ok(())
    }

    /// Cuts (or restores) this node's links to `peers` in both directions, as a network
    /// partition would. For tests.
    #[doc(hidden)]
    pub fn set_partitioned_from(&self, peers: &[&str]) {
        let ids = peers
            .iter()
            .filter_map(|p| self.inner.config.peer(p))
            .map(|p| p.node_id)
            .collect();
        self.inner.engine.set_blocked(ids);
    }
}

/// Binds this node's replication address (see [`BIND_PATIENCE`]).
async fn bind(config: &Config) -> Result<(tokio::net::TcpListener, SocketAddr)> {
    let listener = crate::net::bind_retrying(config.self_addr(), BIND_PATIENCE)
        .await
        .map_err(|e| Error::Network {
            message: format!(
                "bind {} (dLegerPeers entry of {}): {e}",
                config.self_addr(),
                config.self_id
            ),
        })?;
    let local_addr = listener.local_addr().map_err(|e| Error::Network {
        message: e.to_string(),
    })?;
    Ok((listener, local_addr))
}

/// The policy tasks around the engine: retention always, preferred leader when configured.
fn spawn_policies(config: &Arc<Config>, engine: &Engine, store: &LogStore) -> Vec<JoinHandle<()>> {
    let mut tasks = vec![retention::spawn(
        Arc::clone(config),
        engine.clone(),
        store.clone(),
    )];
    if !config.preferred_leader_ids.is_empty() {
        tasks.push(preferred_leader::spawn(Arc::clone(config), engine.clone()));
    }
    tasks
}

/// Committed application entries in index order; see [`RaftLogNode::committed_entries`].
#[derive(Debug)]
pub struct CommittedEntries {
    include_internal: bool,
    node: RaftLogNode,
    applied: watch::Receiver<Option<u64>>,
    next: u64,
    buffer: std::vec::IntoIter<StoredEntry>,
}

/// Bytes of entries fetched per read of the committed tail.
const TAIL_READ_BYTES_MAX: usize = 4 << 20;

/// How long a start waits for its replication port while something else holds it (see
/// [`crate::net`]: a peer's self-connection, or the sockets of the process it replaces).
const BIND_PATIENCE: Duration = Duration::from_secs(5);
/// How long a start waits for the store's lock while something else holds it: a node restarted
/// in the same process right after `shutdown` finds its previous instance's last tasks letting
/// go within milliseconds, and a second process holding the store is refused after this.
const LOCK_PATIENCE: Duration = Duration::from_secs(5);

/// Opens the store, waiting up to [`LOCK_PATIENCE`] for a lock held by someone else.
async fn open_store(config: &Config) -> Result<LogStore> {
    let deadline = tokio::time::Instant::now() + LOCK_PATIENCE;
    loop {
        match LogStore::open(config.store.clone()) {
            Err(crate::error::StoreError::Locked { .. })
                if tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            opened => return Ok(opened?),
        }
    }
}

impl CommittedEntries {
    /// The next committed application entry; waits for one.
    ///
    /// # Errors
    /// [`Error::Purged`] when the next index was deleted by retention (restore from a snapshot
    /// and resume after it), [`Error::Shutdown`], or a store error.
    pub async fn next(&mut self) -> Result<StoredEntry> {
        loop {
            if let Some(e) = self.buffer.next() {
                return Ok(e);
            }
            let applied = *self.applied.borrow_and_update();
            match applied {
                Some(a) if self.next <= a => {
                    self.node.check_purged(self.next)?;
                    let batch =
                        self.node
                            .inner
                            .store
                            .read_range(self.next, a + 1, TAIL_READ_BYTES_MAX)?;
                    let Some(last) = batch.last() else {
                        return Err(Error::Purged {
                            requested: self.next,
                            first_index: self.next + 1,
                        });
                    };
                    self.next = last.index + 1;
                    let internal = self.include_internal;
                    let entries: Vec<_> = batch
                        .into_iter()
                        .filter(|e| internal || e.kind == EntryKind::Normal)
                        .collect();
                    self.buffer = entries.into_iter();
                }
                _ => self.applied.changed().await.map_err(|_| Error::Shutdown)?,
            }
        }
    }

    /// Also yields blank and membership entries (kind in [`StoredEntry::kind`]), for readers
    /// that track every applied index, such as a state machine's snapshot point.
    pub fn include_internal(mut self) -> Self {
        self.include_internal = true;
        self
    }

    /// The index this reader will return next (or skip, if it is not an application entry).
    pub fn next_index(&self) -> u64 {
        self.next
    }
}
