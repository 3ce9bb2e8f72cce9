//! [`Engine`]: the openraft instance of a node and the background tasks around it.
//!
//! The public [`crate::RaftLogNode`] calls these methods and never sees an openraft type.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::errors::ClientWriteError;
use openraft::raft::ClientWriteResult;
use openraft::{BasicNode, ServerState, SnapshotPolicy};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::contact::LeaderContact;
use super::log_store::RaftLogStore;
use super::network::NetworkFactory;
use super::partition::Blocked;
use super::server;
use super::state_machine::{AppliedWatch, PurgeRequest, Raft, StateMachine};
use super::types::{CommitResponder, EntryData, TypeConfig};
use crate::config::Config;
use crate::error::{Error, Result, StoreError};
use crate::metrics::LogMetrics;
use crate::net::PeerChannels;
use crate::snapshot::SnapshotHook;
use crate::store::LogStore;
use crate::types::{Metrics, PeerProgress, Role, RoleState};

/// Beyond two election timeouts, how long a leadership transfer may take before it is reported
/// as not done.
const TRANSFER_SLACK_MS: u64 = 4000;

#[derive(Clone)]
pub(crate) struct Engine {
    raft: Raft,
    config: Arc<Config>,
    applied: AppliedWatch,
    blocked: Blocked,
    /// When a leader's append last arrived (a follower's readiness).
    contact: LeaderContact,
    /// Entries the state machine applied since start (see `StateMachine::applied_counter`).
    applied_count: Arc<std::sync::atomic::AtomicU64>,
    /// What the next snapshot is for (see `StateMachine::purge_request`).
    purge_request: PurgeRequest,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("id", &self.config.self_id)
            .finish()
    }
}

fn raft_error(e: impl std::fmt::Display) -> Error {
    Error::Raft {
        message: e.to_string(),
    }
}

impl Engine {
    pub(crate) async fn start(
        config: Arc<Config>,
        store: LogStore,
        hook: Arc<dyn SnapshotHook>,
        channels: PeerChannels,
    ) -> Result<Engine> {
        let sm_dir = config.store.dir.join("snapshot");
        let (sm, applied) = StateMachine::open(&sm_dir, hook, store.clone())
            .map_err(|e| Error::Store(StoreError::io("open snapshot", &sm_dir, e)))?;
        let applied_count = sm.applied_counter();
        let purge_request = sm.purge_request();
        let raft_config = openraft::Config {
            cluster_name: config.group.clone(),
            heartbeat_interval: config.heartbeat_interval_ms,
            election_timeout_min: config.election_timeout_min_ms,
            election_timeout_max: config.election_timeout_max_ms,
            max_payload_entries: config.max_batch_entries,
            enable_pre_vote: Some(config.enable_pre_vote),
            // Retention decides when to snapshot and what to purge (segment boundaries).
            snapshot_policy: SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: u64::MAX,
            install_snapshot_timeout: 30_000,
            // A restarted leader must win a new election. openraft's default lets it resume in
            // its old term, but a power cut may have taken entries it had sent to followers
            // before its own fsync; resuming would write different entries under the same
            // (term, index) and the logs would diverge (found by the chaos harness:
            // acknowledged acks lost across all-node power cuts).
            enable_leader_restore: Some(false),
            ..Default::default()
        }
        .validate()
        .map_err(raft_error)?;
        let blocked = Blocked::default();
        let network = NetworkFactory::new(&config, blocked.clone(), channels);
        let raft = Raft::new(
            config.node_id(),
            Arc::new(raft_config),
            network,
            RaftLogStore { store },
            sm,
        )
        .await
        .map_err(raft_error)?;
        Ok(Engine {
            raft,
            config,
            applied,
            blocked,
            contact: LeaderContact::default(),
            applied_count,
            purge_request,
        })
    }

    pub(crate) fn serve(
        &self,
        listener: tokio::net::TcpListener,
        beside: tonic::service::Routes,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> JoinHandle<()> {
        let svc = server::grpc_service(
            self.raft.clone(),
            self.config.group.clone(),
            self.blocked.clone(),
            self.contact.clone(),
        );
        let routes = beside.add_service(svc);
        tokio::spawn(async move {
            if let Err(e) = server::serve(listener, routes, shutdown).await {
                tracing::error!(error = %e, "replication server stopped");
            }
        })
    }

    /// A pristine node joins with the static membership of `dLegerPeers`. Every node does the
    /// same with the same members, which writes the same first entry everywhere.
    pub(crate) async fn initialize_if_pristine(&self) -> Result<()> {
        if self.raft.is_initialized().await.map_err(raft_error)? {
            return Ok(());
        }
        let members: BTreeMap<u64, BasicNode> = self
            .config
            .peers
            .iter()
            .map(|p| (p.node_id, BasicNode::new(&p.addr)))
            .collect();
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            // Another node's membership arrived first: the group is initialized.
            Err(e) if e.to_string().contains("not allowed") => Ok(()),
            Err(e) => Err(raft_error(e)),
        }
    }

    /// Entries openraft applied since this process started the node.
    pub(crate) fn entries_applied(&self) -> u64 {
        self.applied_count
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn applied(&self) -> AppliedWatch {
        self.applied.clone()
    }

    pub(crate) fn role_state(&self) -> RoleState {
        let m = self.raft.metrics().borrow_watched().clone();
        RoleState {
            role: role_of(m.state),
            term: m.current_term,
            leader: m.current_leader.map(|l| self.config.peer_label(l)),
        }
    }

    /// Publishes role changes on `tx`, counting leader changes in `metrics`.
    pub(crate) fn spawn_role_watch(
        &self,
        tx: watch::Sender<RoleState>,
        metrics: Arc<LogMetrics>,
    ) -> JoinHandle<()> {
        let engine = self.clone();
        tokio::spawn(async move {
            let mut rx = engine.raft.metrics();
            loop {
                let state = engine.role_state();
                tx.send_if_modified(|cur| {
                    if cur.leader != state.leader {
                        metrics.leader_changes.inc();
                    }
                    let changed = *cur != state;
                    *cur = state;
                    changed
                });
                if rx.changed().await.is_err() {
                    tx.send_modify(|s| s.role = Role::Shutdown);
                    return;
                }
            }
        })
    }

    /// Writes every body and waits until each is committed (not applied: the ack is the
    /// majority's, and readers see the entry once applied).
    pub(crate) async fn write_all(&self, bodies: Vec<Bytes>, wait: Duration) -> Result<Vec<u64>> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut pending = Vec::with_capacity(bodies.len());
        for body in bodies {
            let (responder, rx) = CommitResponder::new();
            self.raft
                .write(EntryData(body))
                .responder(responder)
                .await
                .map_err(|_| Error::Shutdown)?;
            pending.push(rx);
        }
        let mut indexes = Vec::with_capacity(pending.len());
        for rx in pending {
            match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(Ok(log_id))) => indexes.push(log_id.index),
                Ok(Ok(Err(outcome))) => return Err(self.write_error(outcome)),
                Ok(Err(_)) => return Err(Error::Shutdown),
                Err(_) => {
                    return Err(Error::Timeout {
                        waited_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    });
                }
            }
        }
        Ok(indexes)
    }

    fn write_error(&self, outcome: ClientWriteResult<TypeConfig>) -> Error {
        match outcome {
            Err(ClientWriteError::ForwardToLeader(f)) => Error::NotLeader {
                group: self.config.group.clone(),
                leader_id: f.leader_id,
                leader_addr: f.leader_node.map(|n| n.addr),
            },
            Err(ClientWriteError::LogEntryDiscarded(f)) => Error::OutcomeUnknown {
                reason: format!(
                    "entry discarded on leader change (leader now {:?})",
                    f.leader_id
                ),
            },
            Err(e) => raft_error(e),
            Ok(_) => raft_error("entry completed without a commit notification"),
        }
    }

    pub(crate) fn metrics(&self) -> Metrics {
        let m = self.raft.metrics().borrow_watched().clone();
        let last = m.last_log_index.unwrap_or(0);
        let peers = m
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .filter(|(id, _)| **id != self.config.node_id())
                    .map(|(id, matched)| {
                        let match_index = matched.as_ref().map(|l| l.index);
                        let contact = m
                            .heartbeat
                            .as_ref()
                            .and_then(|h| h.get(id).cloned().flatten())
                            .map(|t| openraft::Instant::elapsed(&*t).as_millis());
                        PeerProgress {
                            id: self.config.peer_label(*id),
                            match_index,
                            lag: last.saturating_sub(match_index.unwrap_or(0)),
                            contact_ms: contact.map(|ms| u64::try_from(ms).unwrap_or(u64::MAX)),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        Metrics {
            id: self.config.self_id.clone(),
            role: role_of(m.state),
            term: m.current_term,
            leader: m.current_leader.map(|l| self.config.peer_label(l)),
            last_index: m.last_log_index,
            commit_index: m.local_committed.map(|l| l.index),
            applied_index: m.last_applied.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            peers,
            leader_contact_ms: self.leader_contact(&m),
        }
    }

    /// How long ago this node last heard from a leader: for the leader itself, since a quorum
    /// last acknowledged it; for a follower, since the last append it accepted.
    fn leader_contact(&self, m: &openraft::RaftMetrics<TypeConfig>) -> Option<u64> {
        let since = if m.state == ServerState::Leader {
            m.last_quorum_acked
                .as_ref()
                .map(|t| openraft::Instant::elapsed(&**t))
        } else {
            self.contact.elapsed()
        };
        since.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(crate) async fn transfer_leader(&self, to: u64) -> Result<()> {
        let me = self.config.node_id();
        let m = self.raft.metrics().borrow_watched().clone();
        if m.state != ServerState::Leader {
            return Err(Error::NotLeader {
                group: self.config.group.clone(),
                leader_id: m.current_leader,
                leader_addr: m
                    .current_leader
                    .and_then(|l| self.config.peer_by_node_id(l))
                    .map(|p| p.addr.clone()),
            });
        }
        if to == me {
            return Ok(());
        }
        self.raft
            .trigger()
            .transfer_leader(to)
            .await
            .map_err(|_| Error::Shutdown)?;
        // The target campaigns at once; the slack is for a loaded host (an election is a
        // round trip of vote requests and the new leader's first append).
        let wait =
            Duration::from_millis(2 * self.config.election_timeout_max_ms + TRANSFER_SLACK_MS);
        let done = self
            .raft
            .wait(Some(wait))
            .current_leader(to, "leadership transfer")
            .await;
        done.map(|_| ()).map_err(|_| Error::TransferTimeout {
            to: self.config.peer_label(to),
            waited_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        })
    }

    /// Snapshots for a purge up to `upto` (at the newest state the application kept at or
    /// below it, see [`crate::snapshot`]), then purges up to that snapshot. Returns the purge
    /// point.
    pub(crate) async fn snapshot_and_purge(&self, upto: u64) -> Result<Option<u64>> {
        let m = self.raft.metrics().borrow_watched().clone();
        let target = match m.last_applied {
            Some(a) => upto.min(a.index),
            None => return Ok(m.purged.map(|p| p.index)),
        };
        let wait = Some(Duration::from_secs(30));
        let before = m.snapshot;
        if before.is_some_and(|s| s.index >= target) {
            return self.purge(target, wait).await;
        }
        self.purge_request.set(target);
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|_| Error::Shutdown)?;
        let m = self
            .raft
            .wait(wait)
            .metrics(|m| m.snapshot != before, "snapshot")
            .await
            .map_err(raft_error)?;
        let Some(snapshot) = m.snapshot else {
            return Ok(m.purged.map(|p| p.index));
        };
        self.purge(target.min(snapshot.index), wait).await
    }

    /// Purges the log up to `target` (covered by a snapshot) and waits for it.
    async fn purge(&self, target: u64, wait: Option<Duration>) -> Result<Option<u64>> {
        let m = self.raft.metrics().borrow_watched().clone();
        if m.purged.is_some_and(|p| p.index >= target) {
            return Ok(m.purged.map(|p| p.index));
        }
        self.raft
            .trigger()
            .purge_log(target)
            .await
            .map_err(|_| Error::Shutdown)?;
        let m = self
            .raft
            .wait(wait)
            .metrics(|m| m.purged.is_some_and(|p| p.index >= target), "purge")
            .await
            .unwrap_or_else(|_| self.raft.metrics().borrow_watched().clone());
        Ok(m.purged.map(|p| p.index))
    }

    /// The leader this node knows, by numeric id.
    pub(crate) fn current_leader(&self) -> Option<u64> {
        self.raft.metrics().borrow_watched().current_leader
    }

    pub(crate) fn is_blocked(&self, id: u64) -> bool {
        self.blocked.contains(id)
    }

    pub(crate) fn set_blocked(&self, ids: BTreeSet<u64>) {
        self.blocked.set(ids);
    }

    pub(crate) async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}

fn role_of(state: ServerState) -> Role {
    match state {
        ServerState::Leader => Role::Leader,
        ServerState::Follower => Role::Follower,
        ServerState::Candidate => Role::Candidate,
        ServerState::Learner => Role::Learner,
        ServerState::Shutdown => Role::Shutdown,
    }
}
