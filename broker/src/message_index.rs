//! The message index: lookups by message key and by unique key (the client's message id),
//! RocketMQ's IndexFile role, on every replica.
//!
//! While applying a Send the state adds one [`Record`] per key and one for the unique key: the
//! key's hash and where the message is (log index, record position and length, queue and queue
//! offset). Records collect in memory and go to disk as sorted runs of [`RUN_RECORDS`]:
//! `<dir>/<first log index>-<last log index>` (20 digits each), a magic, the count, the records
//! sorted by (hash, index, position), and a CRC32C. A lookup binary-searches each run with `pread`
//! and scans what is still in memory; the caller compares the actual keys (hashes collide).
//!
//! Memory: at most one run's records (about 2.3 MiB, plus one entry's). A run is only cut between
//! entries ([`MessageIndex::end_entry`]), so every entry's records are all in one run or all in
//! memory. The records not yet in a run are lost in a crash; at start-up
//! [`MessageIndex::indexed_upto`] says from where the store adds them again from the log. Runs
//! are deleted when retention trims the log past them.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Records per run file.
pub const RUN_RECORDS: usize = 65_536;

const MAGIC: &[u8; 8] = b"RMQIDX1\0";
const HEADER: usize = 16;

/// Where an indexed message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Record {
    /// [`key_hash`] of the key.
    pub hash: u64,
    /// Log index of the Send entry.
    pub index: u64,
    /// Position of the message's record in the entry.
    pub pos: u32,
    /// Length of the record.
    pub len: u32,
    /// Queue.
    pub queue: u32,
    /// Offset in the queue.
    pub offset: u64,
}

impl Record {
    /// Bytes per record on disk.
    pub const SIZE: usize = 36;

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.hash.to_le_bytes());
        out.extend_from_slice(&self.index.to_le_bytes());
        out.extend_from_slice(&self.pos.to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
        out.extend_from_slice(&self.queue.to_le_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
    }

    fn decode(b: &[u8]) -> Record {
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap_or([0; 4]));
        Record {
            hash: u64_at(0),
            index: u64_at(8),
            pos: u32_at(16),
            len: u32_at(20),
            queue: u32_at(24),
            offset: u64_at(28),
        }
    }
}

/// Which key a record indexes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// A message key (`keys`, RocketMQ's `KEYS`).
    Key,
    /// The unique key: the client's message id (RocketMQ's `UNIQ_KEY`).
    UniqueKey,
}

/// The hash a key is indexed under: FNV-1a 64 of kind, topic and key (stable on disk).
pub fn key_hash(kind: KeyKind, topic: &str, key: &str) -> u64 {
    let tag: &[u8] = match kind {
        KeyKind::Key => b"k\0",
        KeyKind::UniqueKey => b"u\0",
    };
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in tag
        .iter()
        .chain(topic.as_bytes())
        .chain(b"\0")
        .chain(key.as_bytes())
    {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Why an index file operation failed.
#[derive(Debug, thiserror::Error)]
#[error("message index {path}: {op}: {source}")]
pub struct IndexError {
    /// What was being done.
    pub op: &'static str,
    /// The file or directory.
    pub path: PathBuf,
    /// The I/O error.
    #[source]
    pub source: io::Error,
}

fn index_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> IndexError + 'a {
    move |source| IndexError {
        op,
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug)]
struct Run {
    last: u64,
    count: u64,
    path: PathBuf,
    file: Arc<File>,
}

/// One replica's message index: in files, or in memory (tests).
#[derive(Debug, Default)]
pub struct MessageIndex {
    dir: Option<PathBuf>,
    runs: Vec<Run>,
    pending: Vec<Record>,
}

impl MessageIndex {
    /// An index kept in memory only.
    pub fn in_memory() -> MessageIndex {
        MessageIndex::default()
    }

    /// The index in `dir`: intact runs are kept; a damaged run and every later one are deleted
    /// (their entries are indexed again from the log, see [`MessageIndex::indexed_upto`]).
    ///
    /// # Errors
    /// When the directory cannot be listed or a file cannot be read or deleted.
    pub fn open(dir: &Path) -> Result<MessageIndex, IndexError> {
        fs::create_dir_all(dir).map_err(index_err("create", dir))?;
        let mut names = Vec::new();
        for e in fs::read_dir(dir).map_err(index_err("list", dir))? {
            let e = e.map_err(index_err("list", dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            match parse_name(&name) {
                Some((first, last)) => names.push((first, last, e.path())),
                None => {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        names.sort();
        let mut runs = Vec::new();
        let mut damaged = false;
        for (_, last, path) in names {
            if !damaged {
                match open_run(last, &path)? {
                    Some(run) => {
                        runs.push(run);
                        continue;
                    }
                    None => {
                        tracing::warn!(file = %path.display(), "deleting a damaged index run; it is rebuilt from the log");
                        damaged = true;
                    }
                }
            }
            fs::remove_file(&path).map_err(index_err("remove", &path))?;
        }
        Ok(MessageIndex {
            dir: Some(dir.to_path_buf()),
            runs,
            pending: Vec::new(),
        })
    }

    /// The last log index whose records are all in run files: after a restart, entries after
    /// it are indexed again.
    pub fn indexed_upto(&self) -> u64 {
        self.runs.last().map_or(0, |r| r.last)
    }

    /// Adds a record (in memory until [`MessageIndex::end_entry`] writes a run).
    pub fn add(&mut self, record: Record) {
        self.pending.push(record);
    }

    /// Marks the end of one entry's records: writes a run when enough have collected. Runs
    /// never split an entry, so [`MessageIndex::indexed_upto`] covers whole entries.
    ///
    /// # Errors
    /// A run file that cannot be written (the records stay in memory).
    pub fn end_entry(&mut self) -> Result<(), IndexError> {
        if self.pending.len() >= RUN_RECORDS && self.dir.is_some() {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes what is in memory as a run.
    ///
    /// # Errors
    /// A run file that cannot be written.
    pub fn flush(&mut self) -> Result<(), IndexError> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        if self.pending.is_empty() {
            return Ok(());
        }
        self.pending.sort_unstable();
        let first = self.pending.iter().map(|r| r.index).min().unwrap_or(0);
        let last = self.pending.iter().map(|r| r.index).max().unwrap_or(0);
        let mut buf = Vec::with_capacity(HEADER + self.pending.len() * Record::SIZE + 4);
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&(self.pending.len() as u64).to_le_bytes());
        for r in &self.pending {
            r.encode(&mut buf);
        }
        let crc = crc32c::crc32c(&buf);
        buf.extend_from_slice(&crc.to_le_bytes());
        let path = dir.join(format!("{first:020}-{last:020}"));
        let tmp = dir.join("run.tmp");
        let mut f = File::create(&tmp).map_err(index_err("create", &tmp))?;
        f.write_all(&buf).map_err(index_err("write", &tmp))?;
        fs::rename(&tmp, &path).map_err(index_err("rename", &path))?;
        let file = File::open(&path).map_err(index_err("open", &path))?;
        self.runs.push(Run {
            last,
            count: self.pending.len() as u64,
            path,
            file: Arc::new(file),
        });
        self.pending.clear();
        Ok(())
    }

    /// Records under `hash`, newest first, at most `max`, without duplicates.
    ///
    /// # Errors
    /// A run that cannot be read.
    pub fn lookup(&self, hash: u64, max: usize) -> Result<Vec<Record>, IndexError> {
        let mut out: Vec<Record> = self
            .pending
            .iter()
            .filter(|r| r.hash == hash)
            .copied()
            .collect();
        for run in self.runs.iter().rev() {
            out.extend(run_lookup(run, hash)?);
        }
        out.sort_unstable_by_key(|r| std::cmp::Reverse((r.index, r.pos)));
        out.dedup_by_key(|r| (r.index, r.pos));
        out.truncate(max);
        Ok(out)
    }

    /// Deletes the runs whose entries all lie at or below `upto` (retention purged them).
    ///
    /// # Errors
    /// A run that cannot be deleted.
    pub fn trim(&mut self, upto: u64) -> Result<(), IndexError> {
        self.pending.retain(|r| r.index > upto);
        let (gone, kept): (Vec<Run>, Vec<Run>) = std::mem::take(&mut self.runs)
            .into_iter()
            .partition(|r| r.last <= upto);
        self.runs = kept;
        for run in gone {
            fs::remove_file(&run.path).map_err(index_err("remove", &run.path))?;
        }
        Ok(())
    }

    /// Runs on disk and records in memory (for status and tests).
    pub fn sizes(&self) -> (usize, usize) {
        (self.runs.len(), self.pending.len())
    }
}

fn parse_name(name: &str) -> Option<(u64, u64)> {
    let (a, b) = name.split_once('-')?;
    (a.len() == 20 && b.len() == 20).then_some(())?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// A run file, if it is intact.
fn open_run(last: u64, path: &Path) -> Result<Option<Run>, IndexError> {
    let b = fs::read(path).map_err(index_err("read", path))?;
    let Some((body, crc)) = b.split_last_chunk::<4>() else {
        return Ok(None);
    };
    if crc32c::crc32c(body) != u32::from_le_bytes(*crc) || !body.starts_with(MAGIC) {
        return Ok(None);
    }
    let count = u64::from_le_bytes(body[8..16].try_into().unwrap_or([0; 8]));
    if body.len() != HEADER + usize::try_from(count).unwrap_or(usize::MAX) * Record::SIZE {
        return Ok(None);
    }
    let file = File::open(path).map_err(index_err("open", path))?;
    Ok(Some(Run {
        last,
        count,
        path: path.to_path_buf(),
        file: Arc::new(file),
    }))
}

fn read_record(run: &Run, i: u64) -> Result<Record, IndexError> {
    let mut b = [0u8; Record::SIZE];
    run.file
        .read_exact_at(&mut b, HEADER as u64 + i * Record::SIZE as u64)
        .map_err(index_err("read", &run.path))?;
    Ok(Record::decode(&b))
}

/// The records of `run` under `hash`: a binary search for the first, then a scan.
fn run_lookup(run: &Run, hash: u64) -> Result<Vec<Record>, IndexError> {
    let (mut lo, mut hi) = (0, run.count);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if read_record(run, mid)?.hash < hash {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    let mut out = Vec::new();
    while lo < run.count {
        let r = read_record(run, lo)?;
        if r.hash != hash {
            break;
        }
        out.push(r);
        lo += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(hash: u64, index: u64) -> Record {
        Record {
            hash,
            index,
            pos: 14,
            len: 100,
            queue: 1,
            offset: index * 2,
        }
    }

    #[test]
    fn lookups_find_records_in_runs_and_in_memory_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = MessageIndex::open(dir.path()).unwrap();
        for i in 1..=(RUN_RECORDS as u64 + 10) {
            ix.add(rec(i % 1000, i));
            ix.end_entry().unwrap();
        }
        assert_eq!(ix.sizes(), (1, 10));
        assert_eq!(ix.indexed_upto(), RUN_RECORDS as u64);
        let found = ix.lookup(7, 1000).unwrap();
        assert_eq!(found.len(), 66);
        assert!(found.windows(2).all(|w| w[0].index > w[1].index));
        assert!(found.iter().all(|r| r.hash == 7 && r.index % 1000 == 7));
        assert_eq!(ix.lookup(7, 3).unwrap().len(), 3);
        assert!(ix.lookup(5000, 10).unwrap().is_empty());
        // A restart keeps the run; what was in memory is gone (the log adds it again).
        let again = MessageIndex::open(dir.path()).unwrap();
        assert_eq!(again.sizes(), (1, 0));
        assert_eq!(again.lookup(7, 1000).unwrap().len(), 66);
        assert!(
            again
                .lookup(537, 1000)
                .unwrap()
                .iter()
                .all(|r| r.index <= RUN_RECORDS as u64)
        );
    }

    #[test]
    fn a_damaged_run_and_later_ones_are_dropped_and_trim_deletes_old_runs() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = MessageIndex::open(dir.path()).unwrap();
        for i in 1..=(3 * RUN_RECORDS as u64) {
            ix.add(rec(i % 10, i));
            ix.end_entry().unwrap();
        }
        assert_eq!(ix.sizes(), (3, 0));
        let second = ix.runs[1].path.clone();
        let mut b = fs::read(&second).unwrap();
        b[100] ^= 1;
        fs::write(&second, b).unwrap();
        let mut ix = MessageIndex::open(dir.path()).unwrap();
        assert_eq!(ix.sizes(), (1, 0));
        assert_eq!(ix.indexed_upto(), RUN_RECORDS as u64);
        ix.trim(RUN_RECORDS as u64).unwrap();
        assert_eq!(ix.sizes(), (0, 0));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_run_never_splits_an_entry() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = MessageIndex::open(dir.path()).unwrap();
        // Entry 1 fills a run but for two records; entry 2 brings four more.
        for i in 0..(RUN_RECORDS as u64 - 2) {
            ix.add(rec(i, 1));
        }
        ix.end_entry().unwrap();
        for i in 0..4 {
            ix.add(rec(i, 2));
        }
        ix.end_entry().unwrap();
        assert_eq!(ix.sizes(), (1, 0), "entry 2 went into the run whole");
        assert_eq!(ix.indexed_upto(), 2);
        // A restart keeps both entries' records: none of entry 2 was left in memory.
        let again = MessageIndex::open(dir.path()).unwrap();
        assert_eq!(
            again.lookup(3, 10).unwrap().len(),
            2,
            "key 3 in entries 1 and 2"
        );
    }

    #[test]
    fn key_hashes_separate_kinds_and_topics() {
        let a = key_hash(KeyKind::Key, "t", "k");
        assert_ne!(a, key_hash(KeyKind::UniqueKey, "t", "k"));
        assert_ne!(a, key_hash(KeyKind::Key, "t2", "k"));
        assert_ne!(
            key_hash(KeyKind::Key, "ab", "c"),
            key_hash(KeyKind::Key, "a", "bc")
        );
    }
}
