//! openraft's state machine for raft-log: bookkeeping, not data.
//!
//! The log is the data (DLedger's design: no second copy in a state machine). Applying an entry
//! records the applied id and membership and publishes the applied index, which is what readers
//! of committed entries wait on. Snapshots carry the application's derived state from the
//! [`SnapshotHook`]; the latest one is kept in `snapshot/current` so it survives a restart.
//!
//! About once a [`MARKER_INTERVAL`] the applied id is also written to `snapshot/applied`, capped
//! at the log's durable checkpoint (so it never names an entry a power cut can take). On restart
//! openraft then re-applies only the entries after it instead of every entry since the last
//! snapshot: without it, a start-up read the whole log (about 1.2 s for 2 GiB).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use openraft::EntryPayload;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use tokio::sync::watch;

use super::log_store::from_term_index;
use super::types::{LogId, Snapshot, SnapshotData, SnapshotMeta, StoredMembership, TypeConfig};
use crate::snapshot::SnapshotHook;
use crate::store::LogStore;

/// The purge point the next snapshot is for, set by retention before it triggers one.
#[derive(Clone, Debug, Default)]
pub(crate) struct PurgeRequest(Arc<Mutex<Option<u64>>>);

impl PurgeRequest {
    /// The next snapshot is for a purge up to `upto`.
    pub(crate) fn set(&self, upto: u64) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(upto);
    }

    fn take(&self) -> Option<u64> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// How often the applied marker is written while entries are applied.
const MARKER_INTERVAL: Duration = Duration::from_secs(1);

/// An openraft instance over raft-log's state machine.
pub(crate) type Raft = openraft::Raft<TypeConfig, StateMachine>;

/// What a reader of the state machine sees: the last applied index (0 before any).
pub(crate) type AppliedWatch = watch::Receiver<Option<u64>>;

#[derive(Clone)]
pub(crate) struct StateMachine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine")
            .field("dir", &self.inner.dir)
            .finish()
    }
}

struct Inner {
    dir: PathBuf,
    hook: Arc<dyn SnapshotHook>,
    applied: Mutex<(Option<LogId>, StoredMembership)>,
    applied_tx: watch::Sender<Option<u64>>,
    current: Mutex<Option<(SnapshotMeta, Bytes)>>,
    /// The log, for the durable point the applied marker may not pass.
    store: LogStore,
    marker: Mutex<Marker>,
    /// Entries applied since this process opened the state machine (tests).
    applied_count: Arc<std::sync::atomic::AtomicU64>,
    /// The purge point the next snapshot is for (see [`StateMachine::purge_request`]).
    snapshot_upto: PurgeRequest,
}

/// What the applied marker needs between writes.
struct Marker {
    written: Instant,
    /// Every membership applied since start, oldest first (membership changes are rare).
    memberships: Vec<StoredMembership>,
}

impl StateMachine {
    /// Opens the state machine in `dir` (`<store>/snapshot`), loading the latest snapshot.
    pub(crate) fn open(
        dir: &Path,
        hook: Arc<dyn SnapshotHook>,
        store: LogStore,
    ) -> io::Result<(StateMachine, AppliedWatch)> {
        fs::create_dir_all(dir)?;
        let current = load_snapshot(&dir.join("current"))?;
        let mut applied: (Option<LogId>, StoredMembership) = current
            .as_ref()
            .map(|(m, _)| (m.last_log_id, m.last_membership.clone()))
            .unwrap_or_default();
        if let Some(marker) = load_marker(&dir.join("applied"), &store)?
            && marker.0.map(|l| l.index) > applied.0.map(|l| l.index)
        {
            applied = marker;
        }
        let (applied_tx, applied_rx) = watch::channel(applied.0.map(|l| l.index));
        let marker = Marker {
            written: Instant::now(),
            memberships: vec![applied.1.clone()],
        };
        let inner = Inner {
            dir: dir.to_path_buf(),
            hook,
            applied: Mutex::new(applied),
            applied_tx,
            current: Mutex::new(current),
            store,
            marker: Mutex::new(marker),
            applied_count: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            snapshot_upto: PurgeRequest::default(),
        };
        Ok((
            StateMachine {
                inner: Arc::new(inner),
            },
            applied_rx,
        ))
    }

    /// Where to say that the next snapshot is one for purging up to an index: it is then taken
    /// at the newest index at or below it that the application kept a state for. A handle, not
    /// the machine (see [`StateMachine::applied_counter`]).
    pub(crate) fn purge_request(&self) -> PurgeRequest {
        self.inner.snapshot_upto.clone()
    }

    /// The snapshot for a purge up to `upto`, if the application kept a state at or below it
    /// and this node knows the log id and membership there.
    async fn snapshot_at_most(&self, upto: u64) -> io::Result<Option<(SnapshotMeta, Bytes)>> {
        let Some((index, data)) = self.inner.hook.build_at_most(upto).await? else {
            return Ok(None);
        };
        let applied = self.applied().0.map_or(0, |l| l.index);
        let Ok(Some(entry)) = self.inner.store.read(index) else {
            return Ok(None);
        };
        if index > applied.min(upto) {
            return Ok(None);
        }
        let id = from_term_index(crate::store::TermIndex {
            term: entry.term,
            index,
        });
        let marker = self.inner.marker.lock().unwrap_or_else(|e| e.into_inner());
        let membership = marker
            .memberships
            .iter()
            .rev()
            .find(|m| m.log_id().is_none_or(|l| l.index <= index))
            .cloned();
        drop(marker);
        Ok(membership.map(|last_membership| {
            (
                SnapshotMeta {
                    last_log_id: Some(id),
                    last_membership,
                },
                data,
            )
        }))
    }

    /// A counter of the entries applied since this process opened the state machine. A
    /// counter, not the machine: a holder of the machine would keep its applied watch open,
    /// and readers of committed entries would never see the shutdown.
    pub(crate) fn applied_counter(&self) -> Arc<std::sync::atomic::AtomicU64> {
        Arc::clone(&self.inner.applied_count)
    }

    fn applied(&self) -> std::sync::MutexGuard<'_, (Option<LogId>, StoredMembership)> {
        self.inner.applied.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Option<(SnapshotMeta, Bytes)>> {
        self.inner.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the applied marker if [`MARKER_INTERVAL`] has passed: the applied id, or the
    /// durable point when that is older, with the membership in force there.
    fn maybe_write_marker(&self) -> io::Result<()> {
        let mut marker = self.inner.marker.lock().unwrap_or_else(|e| e.into_inner());
        if marker.written.elapsed() < MARKER_INTERVAL {
            return Ok(());
        }
        marker.written = Instant::now();
        let Some(applied) = self.applied().0 else {
            return Ok(());
        };
        let Some(durable) = self.inner.store.durable_point() else {
            return Ok(());
        };
        let id = if durable.index < applied.index {
            from_term_index(durable)
        } else {
            applied
        };
        let Some(membership) = marker
            .memberships
            .iter()
            .rev()
            .find(|m| m.log_id().is_none_or(|l| l.index <= id.index))
            .cloned()
        else {
            return Ok(());
        };
        let keep = marker.memberships.len().saturating_sub(4);
        marker.memberships.drain(..keep);
        save_marker(&self.inner.dir, &id, &membership)
    }

    fn save(&self, meta: &SnapshotMeta, data: &Bytes) -> io::Result<()> {
        save_snapshot(&self.inner.dir, meta, data)?;
        *self.current() = Some((meta.clone(), data.clone()));
        Ok(())
    }
}

/// The applied marker: JSON of (log id, membership) and its CRC32C; replaced atomically.
fn save_marker(dir: &Path, id: &LogId, membership: &StoredMembership) -> io::Result<()> {
    let json = serde_json::to_vec(&(id, membership)).map_err(io::Error::other)?;
    let tmp = dir.join("applied.tmp");
    let mut f = fs::File::create(&tmp)?;
    f.write_all(&json)?;
    f.write_all(&crc32c::crc32c(&json).to_le_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join("applied"))?;
    fs::File::open(dir)?.sync_all()
}

/// The applied marker, if it is intact and names an entry the log still has as committed and
/// durable; otherwise `None` (openraft then re-applies from the snapshot, which is only slower).
fn load_marker(
    path: &Path,
    store: &LogStore,
) -> io::Result<Option<(Option<LogId>, StoredMembership)>> {
    let b = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some((json, crc)) = b.split_last_chunk::<4>() else {
        return Ok(None);
    };
    if crc32c::crc32c(json) != u32::from_le_bytes(*crc) {
        tracing::warn!(file = %path.display(), "ignoring an applied marker with a bad checksum");
        return Ok(None);
    }
    let Ok((id, membership)) = serde_json::from_slice::<(LogId, StoredMembership)>(json) else {
        return Ok(None);
    };
    let committed = store.read_committed().map(|c| c.index);
    let durable = store.durable_point().map(|d| d.index);
    let last = store.log_state().last().map(|l| l.index);
    let ok = [committed, durable, last]
        .iter()
        .all(|bound| bound.is_some_and(|b| id.index <= b));
    if !ok {
        tracing::warn!(file = %path.display(), index = id.index, "ignoring an applied marker past the log");
        return Ok(None);
    }
    Ok(Some((Some(id), membership)))
}

/// File format: u32 length of the JSON metadata, the metadata, the data, CRC32C of all before.
fn save_snapshot(dir: &Path, meta: &SnapshotMeta, data: &Bytes) -> io::Result<()> {
    let meta_json = serde_json::to_vec(meta).map_err(io::Error::other)?;
    let meta_len = u32::try_from(meta_json.len()).map_err(io::Error::other)?;
    let tmp = dir.join("current.tmp");
    let mut f = fs::File::create(&tmp)?;
    let mut crc = crc32c::crc32c(&meta_len.to_le_bytes());
    crc = crc32c::crc32c_append(crc, &meta_json);
    crc = crc32c::crc32c_append(crc, data);
    f.write_all(&meta_len.to_le_bytes())?;
    f.write_all(&meta_json)?;
    f.write_all(data)?;
    f.write_all(&crc.to_le_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join("current"))?;
    fs::File::open(dir)?.sync_all()
}

pub(crate) fn load_snapshot(path: &Path) -> io::Result<Option<(SnapshotMeta, Bytes)>> {
    let b = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let bad = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("snapshot {}: {why}", path.display()),
        )
    };
    if b.len() < 8 {
        return Err(bad("too short"));
    }
    let (body, crc) = b.split_at(b.len() - 4);
    if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().map_err(|_| bad("crc"))?) {
        return Err(bad("crc mismatch"));
    }
    let meta_len = u32::from_le_bytes(body[..4].try_into().map_err(|_| bad("length"))?) as usize;
    let meta_json = body
        .get(4..4 + meta_len)
        .ok_or_else(|| bad("metadata cut short"))?;
    let meta: SnapshotMeta = serde_json::from_slice(meta_json).map_err(|e| bad(&e.to_string()))?;
    Ok(Some((meta, Bytes::copy_from_slice(&body[4 + meta_len..]))))
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;

    #[tracing::instrument(level = "info", skip_all)]
    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let upto = self.inner.snapshot_upto.take();
        let at_most = match upto {
            Some(upto) => self.snapshot_at_most(upto).await?,
            None => None,
        };
        let (meta, data) = match at_most {
            Some(built) => built,
            None => {
                let (last_log_id, last_membership) = self.applied().clone();
                let data = match last_log_id {
                    Some(id) => self.inner.hook.build(id.index).await?,
                    None => Bytes::new(),
                };
                let meta = SnapshotMeta {
                    last_log_id,
                    last_membership,
                };
                (meta, data)
            }
        };
        self.save(&meta, &data)?;
        self.inner.store.metrics().snapshots_built.inc();
        tracing::info!(last = ?meta.last_log_id, bytes = data.len(), "built snapshot");
        Ok(Snapshot {
            meta,
            snapshot: data,
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok(self.applied().clone())
    }

    async fn apply<S>(&mut self, mut entries: S) -> Result<(), io::Error>
    where
        S: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + Send,
    {
        let mut last = None;
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            {
                let mut applied = self.applied();
                if let EntryPayload::Membership(m) = &entry.payload {
                    applied.1 = StoredMembership::new(Some(entry.log_id), m.clone());
                    self.inner
                        .marker
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .memberships
                        .push(applied.1.clone());
                }
                applied.0 = Some(entry.log_id);
            }
            last = Some(entry.log_id.index);
            self.inner
                .applied_count
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let Some(r) = responder {
                r.send(());
            }
        }
        if let Some(index) = last {
            self.inner.applied_tx.send_replace(Some(index));
            self.maybe_write_marker()?;
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    #[tracing::instrument(level = "info", skip_all, fields(last = ?meta.last_log_id))]
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        if let Some(id) = meta.last_log_id {
            self.inner.hook.install(id.index, snapshot.clone()).await?;
        }
        self.save(meta, &snapshot)?;
        self.inner.store.metrics().snapshots_installed.inc();
        *self.applied() = (meta.last_log_id, meta.last_membership.clone());
        self.inner
            .applied_tx
            .send_replace(meta.last_log_id.map(|l| l.index));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        Ok(self
            .current()
            .clone()
            .map(|(meta, snapshot)| Snapshot { meta, snapshot }))
    }
}
