//! openraft's state machine for raft-log: bookkeeping, not data.
//!
//! The log is the data (DLedger's design: no second copy in a state machine). Applying an entry
//! records the applied id and membership and publishes the applied index, which is what readers
//! of committed entries wait on. Snapshots carry the application's derived state from the
//! [`SnapshotHook`]; the latest one is kept in `snapshot/current` so it survives a restart.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use openraft::EntryPayload;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use tokio::sync::watch;

use super::{LogId, Snapshot, SnapshotData, SnapshotMeta, StoredMembership, TypeConfig};
use crate::snapshot::SnapshotHook;

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
}

impl StateMachine {
    /// Opens the state machine in `dir` (`<store>/snapshot`), loading the latest snapshot.
    pub(crate) fn open(
        dir: &Path,
        hook: Arc<dyn SnapshotHook>,
    ) -> io::Result<(StateMachine, AppliedWatch)> {
        fs::create_dir_all(dir)?;
        let current = load_snapshot(&dir.join("current"))?;
        let applied = current
            .as_ref()
            .map(|(m, _)| (m.last_log_id, m.last_membership.clone()))
            .unwrap_or_default();
        let (applied_tx, applied_rx) = watch::channel(applied.0.map(|l| l.index));
        let inner = Inner {
            dir: dir.to_path_buf(),
            hook,
            applied: Mutex::new(applied),
            applied_tx,
            current: Mutex::new(current),
        };
        Ok((
            StateMachine {
                inner: Arc::new(inner),
            },
            applied_rx,
        ))
    }

    fn applied(&self) -> std::sync::MutexGuard<'_, (Option<LogId>, StoredMembership)> {
        self.inner.applied.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Option<(SnapshotMeta, Bytes)>> {
        self.inner.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn save(&self, meta: &SnapshotMeta, data: &Bytes) -> io::Result<()> {
        save_snapshot(&self.inner.dir, meta, data)?;
        *self.current() = Some((meta.clone(), data.clone()));
        Ok(())
    }
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
        let (last_log_id, last_membership) = self.applied().clone();
        let data = match last_log_id {
            Some(id) => self.inner.hook.build(id.index).await?,
            None => Bytes::new(),
        };
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
        };
        self.save(&meta, &data)?;
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
                }
                applied.0 = Some(entry.log_id);
            }
            last = Some(entry.log_id.index);
            if let Some(r) = responder {
                r.send(());
            }
        }
        if let Some(index) = last {
            self.inner.applied_tx.send_replace(Some(index));
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
