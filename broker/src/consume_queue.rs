//! Consume-queue files: one fixed-width unit per message, per (topic, queue), on every replica.
//!
//! RocketMQ's ConsumeQueue, adapted to a Raft log: a unit says where a message is in the log
//! (entry index, byte position and length of its record inside the entry) and what delivery
//! decisions need without reading it (tag hash, message-group hash, delivery time). The
//! dispatcher writes units while it applies committed Send commands, so queue offsets (the
//! unit's position in its queue) are the same on every replica.
//!
//! On disk: `<dir>/<topic>/<queue>/<first offset, 20 digits>`, [`UNITS_PER_FILE`] units of
//! [`Unit::SIZE`] bytes per file, written with positioned writes (a retried write lands on the
//! same bytes). Nothing here is fsynced per write: the files are derived data. The broker's
//! checkpoint records how many units each queue has; recovery cuts what lies beyond (a torn
//! tail, or units of entries the checkpoint does not cover) and the dispatcher writes them
//! again from the log. An all-zero unit is a hole: a message this replica never had (see
//! [`Unit::is_hole`]).
//!
//! Memory: open file handles only. Units are read back with `pread` through the page cache.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

/// Units per file: RocketMQ's 300,000 (12 MB files at 40 bytes a unit).
pub const UNITS_PER_FILE: u64 = 300_000;

/// One message in a consume queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unit {
    /// Log index of the Send entry (0: a hole).
    pub index: u64,
    /// Byte position of the message's record inside the entry.
    pub pos: u32,
    /// Length of the record.
    pub len: u32,
    /// [`name_hash`] of the tag; 0 without a tag.
    pub tag_hash: u64,
    /// [`name_hash`] of the FIFO message group; 0 without a group.
    pub group_hash: u64,
    /// Not deliverable before (ms since the epoch; 0 = at once).
    pub delivery_ms: u64,
}

impl Unit {
    /// Bytes per unit on disk.
    pub const SIZE: usize = 40;

    /// A unit for a message this replica does not have (all zero on disk).
    pub fn is_hole(&self) -> bool {
        self.index == 0
    }

    /// The delivery time of a recalled delay message: never. It still points at its record
    /// (so lookups by offset, time and retention read it as before), but no receive or pull
    /// hands it out.
    pub const RECALLED: u64 = u64::MAX;

    /// A recalled delay message.
    pub fn is_recalled(&self) -> bool {
        self.delivery_ms == Unit::RECALLED
    }

    /// This unit, recalled.
    pub fn recalled(self) -> Unit {
        Unit {
            delivery_ms: Unit::RECALLED,
            ..self
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.index.to_le_bytes());
        out.extend_from_slice(&self.pos.to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
        out.extend_from_slice(&self.tag_hash.to_le_bytes());
        out.extend_from_slice(&self.group_hash.to_le_bytes());
        out.extend_from_slice(&self.delivery_ms.to_le_bytes());
    }

    fn decode(b: &[u8; Unit::SIZE]) -> Unit {
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        let u32_at = |i: usize| {
            let mut a = [0u8; 4];
            a.copy_from_slice(&b[i..i + 4]);
            u32::from_le_bytes(a)
        };
        Unit {
            index: u64_at(0),
            pos: u32_at(8),
            len: u32_at(12),
            tag_hash: u64_at(16),
            group_hash: u64_at(24),
            delivery_ms: u64_at(32),
        }
    }
}

/// FNV-1a (64 bit) of a tag or message group, never 0 (0 means "none").
///
/// A fixed, specified hash: the values live in files and must agree across replicas and
/// versions. A collision only costs precision: a FIFO group waits for another one, or a tag
/// filter lets a message of the colliding tag through.
pub fn name_hash(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h.max(1)
}

/// Why a consume-queue file operation failed.
#[derive(Debug, thiserror::Error)]
#[error("consume queue {path}: {op}: {source}")]
pub struct CqError {
    /// What was being done.
    pub op: &'static str,
    /// The file or directory.
    pub path: PathBuf,
    /// The I/O error.
    #[source]
    pub source: io::Error,
}

fn cq_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CqError + 'a {
    move |source| CqError {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The consume queues of one replica: in files, or in memory (tests and tools).
#[derive(Debug)]
pub struct ConsumeQueues {
    root: Option<PathBuf>,
    queues: HashMap<(String, u32), Queue>,
}

#[derive(Debug, Default)]
struct Queue {
    /// Files by first offset (disk), opened lazily.
    files: Mutex<BTreeMap<u64, Arc<File>>>,
    /// Files written since the last [`ConsumeQueues::dirty_files`].
    dirty: Vec<u64>,
    /// The units (memory).
    memory: Vec<Unit>,
}

impl ConsumeQueues {
    /// Queues kept in memory only.
    pub fn in_memory() -> ConsumeQueues {
        ConsumeQueues {
            root: None,
            queues: HashMap::new(),
        }
    }

    /// Queues in files under `root` (created if missing).
    ///
    /// # Errors
    /// When `root` cannot be created.
    pub fn open(root: &Path) -> Result<ConsumeQueues, CqError> {
        fs::create_dir_all(root).map_err(cq_err("create", root))?;
        Ok(ConsumeQueues {
            root: Some(root.to_path_buf()),
            queues: HashMap::new(),
        })
    }

    /// Deletes every queue (a rebuild from the log follows).
    ///
    /// # Errors
    /// When the directory cannot be emptied.
    pub fn wipe(&mut self) -> Result<(), CqError> {
        self.queues.clear();
        if let Some(root) = &self.root {
            if root.exists() {
                fs::remove_dir_all(root).map_err(cq_err("wipe", root))?;
            }
            fs::create_dir_all(root).map_err(cq_err("create", root))?;
        }
        Ok(())
    }

    fn queue_dir(&self, topic: &str, queue: u32) -> Option<PathBuf> {
        Some(self.root.as_ref()?.join(topic).join(queue.to_string()))
    }

    fn queue(&mut self, topic: &str, queue: u32) -> &mut Queue {
        self.queues.entry((topic.to_string(), queue)).or_default()
    }

    /// Writes `units` at offsets `from..` of (topic, queue).
    ///
    /// # Errors
    /// A failed write; writing the same units again is safe.
    pub fn write(
        &mut self,
        topic: &str,
        queue: u32,
        from: u64,
        units: &[Unit],
    ) -> Result<(), CqError> {
        let Some(dir) = self.queue_dir(topic, queue) else {
            let q = &mut self.queue(topic, queue).memory;
            let at = usize::try_from(from).unwrap_or(usize::MAX);
            if q.len() < at + units.len() {
                q.resize(at + units.len(), Unit::default());
            }
            q[at..at + units.len()].copy_from_slice(units);
            return Ok(());
        };
        let q = self.queue(topic, queue);
        let mut offset = from;
        let mut rest = units;
        while !rest.is_empty() {
            let start = offset - offset % UNITS_PER_FILE;
            let room = usize::try_from(start + UNITS_PER_FILE - offset).unwrap_or(usize::MAX);
            let (now, later) = rest.split_at(room.min(rest.len()));
            let mut buf = Vec::with_capacity(now.len() * Unit::SIZE);
            for u in now {
                u.encode(&mut buf);
            }
            let file = q.file(&dir, start, true)?.ok_or_else(|| CqError {
                op: "open",
                path: file_path(&dir, start),
                source: io::ErrorKind::NotFound.into(),
            })?;
            let at = (offset - start) * Unit::SIZE as u64;
            file.write_all_at(&buf, at)
                .map_err(cq_err("write", &file_path(&dir, start)))?;
            if !q.dirty.contains(&start) {
                q.dirty.push(start);
            }
            offset += now.len() as u64;
            rest = later;
        }
        Ok(())
    }

    /// Reads up to `max` units of (topic, queue) from `from`, stopping at the end of what was
    /// written. Units never written read as holes.
    ///
    /// # Errors
    /// A failed read.
    pub fn read(
        &self,
        topic: &str,
        queue: u32,
        from: u64,
        max: usize,
    ) -> Result<Vec<Unit>, CqError> {
        let q = self.queues.get(&(topic.to_string(), queue));
        let Some(dir) = self.queue_dir(topic, queue) else {
            let Some(q) = q else { return Ok(Vec::new()) };
            let at = usize::try_from(from)
                .unwrap_or(usize::MAX)
                .min(q.memory.len());
            let end = at.saturating_add(max).min(q.memory.len());
            return Ok(q.memory[at..end].to_vec());
        };
        let fallback = Queue::default();
        let q = q.unwrap_or(&fallback);
        let mut out = Vec::with_capacity(max.min(4096));
        let mut offset = from;
        while out.len() < max {
            let start = offset - offset % UNITS_PER_FILE;
            let Some(file) = q.file(&dir, start, false)? else {
                break;
            };
            let want = usize::try_from(start + UNITS_PER_FILE - offset)
                .unwrap_or(usize::MAX)
                .min(max - out.len());
            let mut buf = vec![0u8; want * Unit::SIZE];
            let got = read_full_at(&file, &mut buf, (offset - start) * Unit::SIZE as u64)
                .map_err(cq_err("read", &file_path(&dir, start)))?;
            let units = got / Unit::SIZE;
            for chunk in buf[..units * Unit::SIZE].chunks_exact(Unit::SIZE) {
                let mut a = [0u8; Unit::SIZE];
                a.copy_from_slice(chunk);
                out.push(Unit::decode(&a));
            }
            offset += units as u64;
            if units < want {
                break;
            }
        }
        Ok(out)
    }

    /// One unit, if written.
    ///
    /// # Errors
    /// A failed read.
    pub fn get(&self, topic: &str, queue: u32, offset: u64) -> Result<Option<Unit>, CqError> {
        Ok(self.read(topic, queue, offset, 1)?.pop())
    }

    /// Files written since the last call, to be fsynced before a checkpoint that counts them.
    pub fn dirty_files(&mut self) -> Vec<Arc<File>> {
        let mut out = Vec::new();
        for q in self.queues.values_mut() {
            let files = q.files.lock().unwrap_or_else(PoisonError::into_inner);
            out.extend(q.dirty.drain(..).filter_map(|s| files.get(&s).cloned()));
        }
        out
    }

    /// Makes (topic, queue) hold exactly offsets `min..next`: cuts what lies beyond and fills
    /// a shortfall with holes (sparse). Returns how many units were missing (0 when the files
    /// covered `next`).
    ///
    /// # Errors
    /// A failed truncate or extend.
    pub fn set_len(
        &mut self,
        topic: &str,
        queue: u32,
        min: u64,
        next: u64,
    ) -> Result<u64, CqError> {
        let Some(dir) = self.queue_dir(topic, queue) else {
            let q = &mut self.queue(topic, queue).memory;
            let n = usize::try_from(next).unwrap_or(usize::MAX);
            let missing = n.saturating_sub(q.len()) as u64;
            q.resize(n, Unit::default());
            return Ok(missing);
        };
        let had = self.written(topic, queue)?;
        let q = self.queue(topic, queue);
        for (start, path) in list_files(&dir)? {
            if start >= next {
                q.forget(start);
                fs::remove_file(&path).map_err(cq_err("remove", &path))?;
            }
        }
        if next == 0 {
            return Ok(0);
        }
        let file_of = |offset: u64| offset - offset % UNITS_PER_FILE;
        let last = file_of(next - 1);
        let first = file_of(had.saturating_sub(1).min(next - 1)).max(file_of(min));
        let mut start = first;
        while start <= last {
            let units = next.min(start + UNITS_PER_FILE) - start;
            if let Some(file) = q.file(&dir, start, true)? {
                file.set_len(units * Unit::SIZE as u64)
                    .map_err(cq_err("resize", &file_path(&dir, start)))?;
            }
            start += UNITS_PER_FILE;
        }
        Ok(next.saturating_sub(had))
    }

    /// How many units (topic, queue) holds on disk: the end of its last file.
    fn written(&self, topic: &str, queue: u32) -> Result<u64, CqError> {
        let Some(dir) = self.queue_dir(topic, queue) else {
            return Ok(self
                .queues
                .get(&(topic.to_string(), queue))
                .map_or(0, |q| q.memory.len() as u64));
        };
        let Some((start, path)) = list_files(&dir)?.pop() else {
            return Ok(0);
        };
        let len = fs::metadata(&path).map_err(cq_err("stat", &path))?.len();
        Ok(start + len / Unit::SIZE as u64)
    }

    /// Deletes the files of (topic, queue) that hold only offsets below `min`.
    ///
    /// # Errors
    /// A failed delete.
    pub fn trim(&mut self, topic: &str, queue: u32, min: u64) -> Result<(), CqError> {
        let Some(dir) = self.queue_dir(topic, queue) else {
            return Ok(());
        };
        let q = self.queue(topic, queue);
        for (start, path) in list_files(&dir)? {
            if start + UNITS_PER_FILE <= min {
                q.forget(start);
                fs::remove_file(&path).map_err(cq_err("remove", &path))?;
            }
        }
        Ok(())
    }

    /// Deletes every queue of `topic`.
    ///
    /// # Errors
    /// A failed delete.
    pub fn remove_topic(&mut self, topic: &str) -> Result<(), CqError> {
        self.queues.retain(|(t, _), _| t != topic);
        if let Some(root) = &self.root {
            let dir = root.join(topic);
            if dir.exists() {
                fs::remove_dir_all(&dir).map_err(cq_err("remove", &dir))?;
            }
        }
        Ok(())
    }

    /// Topics that have a directory on disk (recovery compares them with the state's).
    ///
    /// # Errors
    /// A failed directory listing.
    pub fn topics_on_disk(&self) -> Result<Vec<String>, CqError> {
        let Some(root) = &self.root else {
            let mut t: Vec<String> = self.queues.keys().map(|(t, _)| t.clone()).collect();
            t.sort();
            t.dedup();
            return Ok(t);
        };
        let mut out = Vec::new();
        for e in fs::read_dir(root).map_err(cq_err("list", root))? {
            let e = e.map_err(cq_err("list", root))?;
            out.push(e.file_name().to_string_lossy().into_owned());
        }
        Ok(out)
    }
}

impl Queue {
    /// The file starting at `start`, opened (and created when `create`) on first use.
    fn file(&self, dir: &Path, start: u64, create: bool) -> Result<Option<Arc<File>>, CqError> {
        let mut files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(f) = files.get(&start) {
            return Ok(Some(Arc::clone(f)));
        }
        let path = file_path(dir, start);
        if create {
            fs::create_dir_all(dir).map_err(cq_err("create", dir))?;
        }
        let opened = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(&path);
        let file = match opened {
            Ok(f) => Arc::new(f),
            Err(e) if !create && e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(cq_err("open", &path)(e)),
        };
        files.insert(start, Arc::clone(&file));
        Ok(Some(file))
    }

    fn forget(&mut self, start: u64) {
        self.files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&start);
        self.dirty.retain(|s| *s != start);
    }
}

fn file_path(dir: &Path, start: u64) -> PathBuf {
    dir.join(format!("{start:020}"))
}

/// The unit files of a queue directory, by first offset (other names are ignored).
fn list_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>, CqError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(cq_err("list", dir)(e)),
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(cq_err("list", dir))?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        if let (20, Ok(start)) = (name.len(), name.parse::<u64>()) {
            out.push((start, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_full_at(file: &File, buf: &mut [u8], mut at: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], at) {
            Ok(0) => break,
            Ok(n) => {
                done += n;
                at += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(i: u64) -> Unit {
        Unit {
            index: i + 1,
            pos: u32::try_from(i).unwrap(),
            len: 7,
            tag_hash: name_hash("t"),
            group_hash: 0,
            delivery_ms: i * 3,
        }
    }

    #[test]
    fn units_round_trip_through_files_across_a_file_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let mut cq = ConsumeQueues::open(dir.path()).unwrap();
        let from = UNITS_PER_FILE - 2;
        let units: Vec<Unit> = (from..from + 5).map(unit).collect();
        cq.write("t", 3, from, &units).unwrap();
        assert_eq!(cq.read("t", 3, from, 100).unwrap(), units);
        assert_eq!(cq.get("t", 3, from + 4).unwrap(), Some(units[4]));
        assert_eq!(cq.get("t", 3, from + 5).unwrap(), None, "past the end");
        assert!(
            cq.get("t", 3, 0).unwrap().unwrap().is_hole(),
            "never written"
        );
        // A fresh handle (a restart) reads the same.
        let again = ConsumeQueues::open(dir.path()).unwrap();
        assert_eq!(again.read("t", 3, from, 100).unwrap(), units);
        assert_eq!(cq.dirty_files().len(), 2);
        assert!(cq.dirty_files().is_empty());
    }

    #[test]
    fn set_len_cuts_a_torn_tail_and_fills_a_shortfall_with_holes() {
        let dir = tempfile::tempdir().unwrap();
        let mut cq = ConsumeQueues::open(dir.path()).unwrap();
        let units: Vec<Unit> = (0..10).map(unit).collect();
        cq.write("t", 0, 0, &units).unwrap();
        // A torn write: half a unit after the tenth.
        let path = dir.path().join("t/0").join(format!("{:020}", 0));
        let f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all_at(&[9; 17], 400).unwrap();
        let mut cq = ConsumeQueues::open(dir.path()).unwrap();
        assert_eq!(cq.set_len("t", 0, 0, 6).unwrap(), 0);
        assert_eq!(cq.read("t", 0, 0, 100).unwrap(), units[..6].to_vec());
        assert_eq!(fs::metadata(&path).unwrap().len(), 6 * Unit::SIZE as u64);
        let missing = cq.set_len("t", 0, 0, UNITS_PER_FILE + 4).unwrap();
        assert_eq!(missing, UNITS_PER_FILE + 4 - 6);
        let tail = cq.read("t", 0, 4, 5).unwrap();
        assert_eq!(&tail[..2], &units[4..6]);
        assert!(tail[2..].iter().all(Unit::is_hole));
        assert_eq!(cq.read("t", 0, UNITS_PER_FILE, 100).unwrap().len(), 4);
    }

    #[test]
    fn trim_deletes_whole_files_below_the_min_offset_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut cq = ConsumeQueues::open(dir.path()).unwrap();
        let n = UNITS_PER_FILE * 2 + 3;
        cq.set_len("t", 1, 0, n).unwrap();
        cq.write("t", 1, n - 3, &[unit(1), unit(2), unit(3)])
            .unwrap();
        cq.trim("t", 1, UNITS_PER_FILE + 5).unwrap();
        let left: Vec<u64> = list_files(&dir.path().join("t/1"))
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(left, vec![UNITS_PER_FILE, UNITS_PER_FILE * 2]);
        assert_eq!(cq.get("t", 1, n - 1).unwrap(), Some(unit(3)));
        cq.remove_topic("t").unwrap();
        assert!(cq.topics_on_disk().unwrap().is_empty());
    }

    #[test]
    fn memory_queues_behave_like_files() {
        let mut cq = ConsumeQueues::in_memory();
        let units: Vec<Unit> = (0..5).map(unit).collect();
        cq.write("t", 0, 0, &units).unwrap();
        assert_eq!(cq.read("t", 0, 2, 10).unwrap(), units[2..].to_vec());
        assert_eq!(cq.set_len("t", 0, 0, 3).unwrap(), 0);
        assert_eq!(cq.read("t", 0, 0, 10).unwrap().len(), 3);
        assert_eq!(cq.set_len("t", 0, 0, 4).unwrap(), 1);
    }

    #[test]
    fn name_hash_is_fnv1a_and_never_zero() {
        // FNV-1a 64 test vectors: the values are on disk, so the function must not drift.
        assert_eq!(name_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(name_hash("a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(name_hash("TagA"), name_hash("TagB"));
    }
}
