//! The `meta` file: vote, committed id, purged id and the durable checkpoint.
//!
//! Written whole and atomically: write `meta.tmp`, fsync it, rename it over `meta`, fsync the
//! directory. A reader therefore sees either the old or the new file, never a mix; a CRC32C at
//! the end catches a file damaged by other means.
//!
//! The durable checkpoint records an entry that was fsynced together with everything before it
//! (data and index files). Recovery trusts the log up to it and scans only what follows, so a
//! bad entry before the checkpoint is corruption (an error), one after it a torn tail.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::StoreError;

const MAGIC: u32 = 0x314D_4C52; // "RLM1"
const VERSION: u32 = 1;

/// A Raft vote as the store keeps it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VoteRecord {
    /// The term.
    pub term: u64,
    /// The node voted for.
    pub node_id: u64,
    /// Whether a quorum granted it (the node is leader of `term`).
    pub committed: bool,
}

/// A (term, index) pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TermIndex {
    /// The term.
    pub term: u64,
    /// The index.
    pub index: u64,
}

/// An entry known to be on disk with everything before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Durable {
    pub(crate) index: u64,
    pub(crate) term: u64,
    pub(crate) position: u64,
    pub(crate) size: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Meta {
    pub(crate) vote: Option<VoteRecord>,
    pub(crate) committed: Option<TermIndex>,
    pub(crate) purged: Option<TermIndex>,
    pub(crate) durable: Option<Durable>,
}

impl Meta {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(128);
        b.extend_from_slice(&MAGIC.to_le_bytes());
        b.extend_from_slice(&VERSION.to_le_bytes());
        match self.vote {
            Some(v) => {
                b.push(1);
                b.extend_from_slice(&v.term.to_le_bytes());
                b.extend_from_slice(&v.node_id.to_le_bytes());
                b.push(u8::from(v.committed));
            }
            None => b.push(0),
        }
        for ti in [self.committed, self.purged] {
            match ti {
                Some(t) => {
                    b.push(1);
                    b.extend_from_slice(&t.term.to_le_bytes());
                    b.extend_from_slice(&t.index.to_le_bytes());
                }
                None => b.push(0),
            }
        }
        match self.durable {
            Some(d) => {
                b.push(1);
                b.extend_from_slice(&d.index.to_le_bytes());
                b.extend_from_slice(&d.term.to_le_bytes());
                b.extend_from_slice(&d.position.to_le_bytes());
                b.extend_from_slice(&d.size.to_le_bytes());
            }
            None => b.push(0),
        }
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Result<Meta, String> {
        if b.len() < 12 {
            return Err(format!("{} bytes is too short", b.len()));
        }
        let (body, crc) = b.split_at(b.len() - 4);
        if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().map_err(|_| "crc")?) {
            return Err("crc mismatch".into());
        }
        let mut r = Reader { b: body, at: 0 };
        if r.u32()? != MAGIC {
            return Err("bad magic".into());
        }
        let version = r.u32()?;
        if version != VERSION {
            return Err(format!("unsupported version {version}"));
        }
        let vote = if r.u8()? == 1 {
            Some(VoteRecord {
                term: r.u64()?,
                node_id: r.u64()?,
                committed: r.u8()? == 1,
            })
        } else {
            None
        };
        let mut ti = || -> Result<Option<TermIndex>, String> {
            Ok(if r.u8()? == 1 {
                Some(TermIndex {
                    term: r.u64()?,
                    index: r.u64()?,
                })
            } else {
                None
            })
        };
        let committed = ti()?;
        let purged = ti()?;
        let durable = if r.u8()? == 1 {
            Some(Durable {
                index: r.u64()?,
                term: r.u64()?,
                position: r.u64()?,
                size: r.u32()?,
            })
        } else {
            None
        };
        Ok(Meta {
            vote,
            committed,
            purged,
            durable,
        })
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let s = self.b.get(self.at..self.at + n).ok_or("truncated")?;
        self.at += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().map_err(|_| "u32")?,
        ))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().map_err(|_| "u64")?,
        ))
    }
}

/// The meta file of one store directory.
#[derive(Debug)]
pub(crate) struct MetaFile {
    dir: PathBuf,
    path: PathBuf,
    tmp: PathBuf,
    current: Meta,
}

impl MetaFile {
    /// Loads `dir/meta`, or starts empty when there is none.
    pub(crate) fn load(dir: &Path) -> Result<MetaFile, StoreError> {
        let path = dir.join("meta");
        let tmp = dir.join("meta.tmp");
        let current = match fs::read(&path) {
            Ok(b) => Meta::decode(&b).map_err(|reason| StoreError::Corrupt {
                path: path.clone(),
                offset: 0,
                reason,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Meta::default(),
            Err(e) => return Err(StoreError::io("read", &path, e)),
        };
        Ok(MetaFile {
            dir: dir.to_path_buf(),
            path,
            tmp,
            current,
        })
    }

    pub(crate) fn get(&self) -> Meta {
        self.current
    }

    /// Applies `f` and writes the result durably before returning. A failed write leaves the
    /// in-memory value unchanged.
    #[tracing::instrument(level = "debug", skip_all, fields(path = %self.path.display()))]
    pub(crate) fn update(&mut self, f: impl FnOnce(&mut Meta)) -> Result<(), StoreError> {
        let mut next = self.current;
        f(&mut next);
        if next == self.current {
            return Ok(());
        }
        let bytes = next.encode();
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.tmp)
            .map_err(|e| StoreError::io("create", &self.tmp, e))?;
        file.write_all(&bytes)
            .map_err(|e| StoreError::io("write", &self.tmp, e))?;
        file.sync_all()
            .map_err(|e| StoreError::io("fsync", &self.tmp, e))?;
        fs::rename(&self.tmp, &self.path).map_err(|e| StoreError::io("rename", &self.path, e))?;
        sync_dir(&self.dir)?;
        self.current = next;
        Ok(())
    }
}

/// fsyncs a directory so a create, rename or unlink in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("fsync directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips_and_survives_reload() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = MetaFile::load(dir.path()).unwrap();
        assert_eq!(m.get(), Meta::default());
        m.update(|m| {
            m.vote = Some(VoteRecord {
                term: 3,
                node_id: 2,
                committed: true,
            });
            m.purged = Some(TermIndex { term: 1, index: 10 });
            m.durable = Some(Durable {
                index: 12,
                term: 2,
                position: 4096,
                size: 60,
            });
        })
        .unwrap();
        let again = MetaFile::load(dir.path()).unwrap();
        assert_eq!(again.get(), m.get());
        assert!(!dir.path().join("meta.tmp").exists());
    }

    #[test]
    fn damaged_meta_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = MetaFile::load(dir.path()).unwrap();
        m.update(|m| m.committed = Some(TermIndex { term: 1, index: 1 }))
            .unwrap();
        let p = dir.path().join("meta");
        let mut b = fs::read(&p).unwrap();
        b[9] ^= 1;
        fs::write(&p, b).unwrap();
        let e = MetaFile::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("meta") && e.contains("crc"), "{e}");
    }
}
