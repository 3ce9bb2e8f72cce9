//! The broker's checkpoint, and recovery at start-up without replaying the log.
//!
//! Every [`INTERVAL`] a task writes `<broker dir>/checkpoint`: the state's snapshot bytes (as
//! [`BrokerState::snapshot`] makes them) behind a magic and a CRC32C. Before that it fsyncs the
//! consume-queue files written since the last checkpoint, so every unit the checkpoint counts
//! is on disk. The file is replaced atomically (write a temporary, fsync, rename, fsync the
//! directory).
//!
//! Every [`HISTORY_EVERY`]th checkpoint is also kept in `<broker dir>/checkpoints/<index>`:
//! retention snapshots at the newest of those at or below its purge point and purges only up to
//! it ([`newest_at_most`]), so a follower that installs the snapshot finds every later entry in
//! the leader's log. Older ones are deleted then, and thinned out when more than
//! [`HISTORY_MAX`] pile up.
//!
//! At start-up [`recover`] takes the newer of the checkpoint and raft-log's saved snapshot,
//! restores it over the consume-queue files (cutting what lies beyond the checkpoint: a torn
//! tail, or units of entries it does not count), and the dispatcher goes on from the entry
//! after it. Without either, the queue files are wiped and rebuilt from the log.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use crate::consume_queue::ConsumeQueues;
use crate::message_index::MessageIndex;
use crate::state::{BrokerState, StateConfig, StateError};

/// How often the checkpoint is written (when something was applied since).
pub(crate) const INTERVAL: Duration = Duration::from_secs(1);

const MAGIC: &[u8; 4] = b"RMQC";
const FILE: &str = "checkpoint";
/// Where kept checkpoints go under the broker directory.
const HISTORY: &str = "checkpoints";
/// Every this many checkpoints one is kept (about every 30 s under load).
pub(crate) const HISTORY_EVERY: u32 = 30;
/// Kept checkpoints at most; beyond, every other one of the older half is deleted.
const HISTORY_MAX: usize = 64;
/// Where the consume queues live under the broker directory (RocketMQ's name).
const QUEUES: &str = "consumequeue";
/// Where the message index lives under the broker directory (RocketMQ's name).
const INDEX: &str = "index";

/// Why recovery failed.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The checkpoint or snapshot does not restore.
    #[error(transparent)]
    State(#[from] StateError),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RecoveryError + '_ {
    move |source| RecoveryError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The state this node starts from: the newer of its checkpoint (in `dir`) and raft-log's
/// saved snapshot (in `log_dir`), or an empty state whose queues the log rebuilds. The
/// settings are broker.conf's (`config`) either way.
///
/// # Errors
/// A checkpoint or snapshot that cannot be read or restored. A damaged checkpoint is not
/// skipped silently: the operator deletes it to rebuild from the log.
pub(crate) fn recover(
    dir: &Path,
    log_dir: &Path,
    config: StateConfig,
) -> Result<BrokerState, RecoveryError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let queues = dir.join(QUEUES);
    let mut cq = ConsumeQueues::open(&queues).map_err(StateError::from)?;
    let checkpoint = read(dir)?;
    let saved = raft_log::RaftLogNode::read_saved_snapshot(log_dir).map_err(io_err(log_dir))?;
    let chosen = match (checkpoint, saved) {
        (Some(c), Some((index, s))) => {
            if BrokerState::snapshot_index(&c)? < index {
                tracing::info!(
                    index,
                    "starting from raft-log's snapshot (newer than the checkpoint)"
                );
                Some(s.to_vec())
            } else {
                Some(c)
            }
        }
        (Some(c), None) => Some(c),
        (None, Some((index, s))) => {
            tracing::info!(index, "starting from raft-log's snapshot (no checkpoint)");
            Some(s.to_vec())
        }
        (None, None) => None,
    };
    let index_dir = dir.join(INDEX);
    let Some(data) = chosen else {
        cq.wipe().map_err(StateError::from)?;
        if index_dir.exists() {
            fs::remove_dir_all(&index_dir).map_err(io_err(&index_dir))?;
        }
        let mut state = BrokerState::new(config, cq);
        state.set_index(MessageIndex::open(&index_dir).map_err(StateError::from)?);
        return Ok(state);
    };
    let (mut state, holes) = BrokerState::restore(&data, cq)?;
    if holes > 0 {
        tracing::warn!(
            holes,
            "the consume queues had fewer units than the checkpoint counts; those messages read as missing"
        );
    }
    state.set_config(config);
    state.set_index(MessageIndex::open(&index_dir).map_err(StateError::from)?);
    tracing::info!(
        index = state.last_index(),
        "broker state recovered; applying the log from the next entry"
    );
    Ok(state)
}

/// The checkpoint's state bytes, if there is a checkpoint.
fn read(dir: &Path) -> Result<Option<Vec<u8>>, RecoveryError> {
    read_file(&dir.join(FILE))
}

/// A checkpoint file's state bytes, if the file exists.
fn read_file(path: &Path) -> Result<Option<Vec<u8>>, RecoveryError> {
    let path = path.to_path_buf();
    let b = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path)(e)),
    };
    let bad = |why: &str| RecoveryError::Io {
        path: path.clone(),
        source: io::Error::new(io::ErrorKind::InvalidData, why.to_string()),
    };
    let rest = b
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("not a RaftMQ checkpoint (magic)"))?;
    if rest.len() < 4 {
        return Err(bad("cut short"));
    }
    let (crc, data) = rest.split_at(4);
    let crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32c::crc32c(data) != crc {
        return Err(bad(
            "checksum mismatch; delete the file to rebuild the queues from the log",
        ));
    }
    Ok(Some(data.to_vec()))
}

/// Writes a checkpoint of `data` after fsyncing `dirty` queue files.
pub(crate) fn write(dir: &Path, data: &[u8], dirty: &[Arc<File>]) -> io::Result<()> {
    for f in dirty {
        f.sync_data()?;
    }
    write_atomically(dir, FILE, data)
}

fn write_atomically(dir: &Path, name: &str, data: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(MAGIC)?;
    f.write_all(&crc32c::crc32c(data).to_le_bytes())?;
    f.write_all(data)?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join(name))?;
    File::open(dir)?.sync_all()
}

/// Keeps `data`, the state at `index`, in the history (after [`write`] made it durable).
fn keep(dir: &Path, index: u64, data: &[u8]) -> io::Result<()> {
    let history = dir.join(HISTORY);
    fs::create_dir_all(&history)?;
    write_atomically(&history, &format!("{index:020}"), data)?;
    let kept = list_history(&history)?;
    if kept.len() > HISTORY_MAX {
        // Thin the older half: retention needs one at or below its point, not every one.
        for (i, (_, path)) in kept[..kept.len() / 2].iter().enumerate() {
            if i % 2 == 1 {
                fs::remove_file(path)?;
            }
        }
    }
    Ok(())
}

fn list_history(history: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let entries = match fs::read_dir(history) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let (20, Ok(index)) = (name.len(), name.parse::<u64>()) {
            out.push((index, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// The newest kept checkpoint at or below `upto`, as (index, state bytes); deletes the kept
/// ones older than it (a purge up to it makes them useless).
///
/// # Errors
/// A history file that cannot be listed, read or deleted, or a damaged one.
pub(crate) fn newest_at_most(dir: &Path, upto: u64) -> io::Result<Option<(u64, Vec<u8>)>> {
    let history = dir.join(HISTORY);
    let kept = list_history(&history)?;
    let Some(pos) = kept.iter().rposition(|(index, _)| *index <= upto) else {
        return Ok(None);
    };
    let (index, path) = &kept[pos];
    let data = read_file(path)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?
        .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
    for (_, older) in &kept[..pos] {
        fs::remove_file(older)?;
    }
    Ok(Some((*index, data)))
}

/// Takes what a checkpoint needs from the state (briefly, under its lock) and writes it off
/// the runtime's threads, also into the history when `history`. Returns the index it covers.
pub(crate) async fn take(
    dir: &Path,
    state: &std::sync::RwLock<BrokerState>,
    history: bool,
) -> io::Result<u64> {
    let (index, data, dirty) = {
        let mut s = state.write().unwrap_or_else(PoisonError::into_inner);
        let dirty = s.consume_queues_mut().dirty_files();
        (s.last_index(), s.snapshot(), dirty)
    };
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        write(&dir, &data, &dirty)?;
        if history {
            keep(&dir, index, &data)?;
        }
        Ok::<_, io::Error>(())
    })
    .await
    .map_err(io::Error::other)??;
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;

    fn config() -> StateConfig {
        StateConfig {
            auto_create_topic_enable: true,
            default_topic_queue_nums: 2,
        }
    }

    fn send(state: &mut BrokerState, index: u64, n: usize) {
        let messages = (0..n)
            .map(|i| crate::command::StoredMessage::sample("t", &format!("m{index}-{i}")))
            .collect();
        state
            .apply(
                index,
                &Command::Send {
                    now_ms: 1,
                    messages,
                },
            )
            .unwrap();
    }

    #[test]
    fn recovery_keeps_what_the_checkpoint_counts_and_cuts_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let log_dir = tempfile::tempdir().unwrap();
        let mut state = recover(dir.path(), log_dir.path(), config()).unwrap();
        send(&mut state, 1, 10);
        let dirty = state.consume_queues_mut().dirty_files();
        write(dir.path(), &state.snapshot(), &dirty).unwrap();
        // Applied after the checkpoint: the log brings these back, so recovery cuts them.
        send(&mut state, 2, 6);
        drop(state);
        let state = recover(dir.path(), log_dir.path(), config()).unwrap();
        assert_eq!(state.last_index(), 1);
        assert_eq!(state.queue_depths("t"), Some(vec![5, 5]));
        let on_disk = fs::metadata(dir.path().join("consumequeue/t/0/00000000000000000000"))
            .unwrap()
            .len();
        assert_eq!(on_disk, 5 * crate::consume_queue::Unit::SIZE as u64);
    }

    /// A crash after the checkpoint, with the last queue file torn mid-unit: recovery goes on
    /// from the checkpoint, and applying the entries after it again (the dispatcher reads them
    /// from the log) rebuilds exactly the units that were there.
    #[test]
    fn a_torn_queue_tail_is_rebuilt_by_applying_the_log_after_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let log_dir = tempfile::tempdir().unwrap();
        let mut state = recover(dir.path(), log_dir.path(), config()).unwrap();
        send(&mut state, 1, 10);
        let dirty = state.consume_queues_mut().dirty_files();
        write(dir.path(), &state.snapshot(), &dirty).unwrap();
        send(&mut state, 2, 6);
        let before = state.consume_queues().read("t", 0, 0, 100).unwrap();
        assert_eq!(before.len(), 8);
        drop(state);
        let file = dir.path().join("consumequeue/t/0/00000000000000000000");
        let torn = 7 * crate::consume_queue::Unit::SIZE as u64 + 17;
        fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .unwrap()
            .set_len(torn)
            .unwrap();
        let mut state = recover(dir.path(), log_dir.path(), config()).unwrap();
        assert_eq!(state.last_index(), 1, "the checkpoint, not the torn files");
        send(&mut state, 2, 6);
        assert_eq!(state.consume_queues().read("t", 0, 0, 100).unwrap(), before);
    }

    #[test]
    fn the_newest_kept_checkpoint_at_or_below_a_point_is_chosen_and_older_ones_go() {
        let dir = tempfile::tempdir().unwrap();
        for index in [10, 20, 30] {
            keep(dir.path(), index, format!("state-{index}").as_bytes()).unwrap();
        }
        assert_eq!(newest_at_most(dir.path(), 5).unwrap(), None);
        let (index, data) = newest_at_most(dir.path(), 25).unwrap().unwrap();
        assert_eq!((index, data), (20, b"state-20".to_vec()));
        let left: Vec<u64> = list_history(&dir.path().join(HISTORY))
            .unwrap()
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        assert_eq!(left, vec![20, 30]);
        for index in 100..(100 + HISTORY_MAX as u64 + 1) {
            keep(dir.path(), index, b"s").unwrap();
        }
        let kept = list_history(&dir.path().join(HISTORY)).unwrap();
        assert!(kept.len() <= HISTORY_MAX, "{}", kept.len());
        assert_eq!(
            kept.last().unwrap().0,
            100 + HISTORY_MAX as u64,
            "the newest stays"
        );
    }

    #[test]
    fn a_damaged_checkpoint_is_an_error_that_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let log_dir = tempfile::tempdir().unwrap();
        let state = recover(dir.path(), log_dir.path(), config()).unwrap();
        write(dir.path(), &state.snapshot(), &[]).unwrap();
        let path = dir.path().join(FILE);
        let mut b = fs::read(&path).unwrap();
        let last = b.len() - 1;
        b[last] ^= 1;
        fs::write(&path, b).unwrap();
        let e = recover(dir.path(), log_dir.path(), config()).unwrap_err();
        assert!(e.to_string().contains("checkpoint"), "{e}");
        assert!(e.to_string().contains("checksum"), "{e}");
    }

    #[test]
    fn without_a_checkpoint_the_queues_are_wiped_for_a_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        let log_dir = tempfile::tempdir().unwrap();
        let mut state = recover(dir.path(), log_dir.path(), config()).unwrap();
        send(&mut state, 1, 4);
        drop(state);
        let state = recover(dir.path(), log_dir.path(), config()).unwrap();
        assert_eq!(state.last_index(), 0);
        assert!(!dir.path().join("consumequeue/t").exists());
    }
}
