//! openraft's `RaftLogStorage` over raft-log's mmap [`LogStore`].

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};

use bytes::Bytes;
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{EntryPayload, OptionalSend, RaftLogReader};

use super::types::{Entry, EntryData, LogId, Membership, TypeConfig, Vote, log_id};
use crate::store::{EntryKind, LogStore, NewEntry, StoredEntry, TermIndex, VoteRecord};

/// The store seen through openraft's traits. Clones share the store.
#[derive(Clone, Debug)]
pub(crate) struct RaftLogStore {
    pub(crate) store: LogStore,
}

pub(crate) fn to_term_index(id: &LogId) -> TermIndex {
    TermIndex {
        term: id.leader_id.term,
        index: id.index,
    }
}

pub(crate) fn from_term_index(t: TermIndex) -> LogId {
    log_id(t.term, t.index)
}

/// Decodes a stored entry into openraft's entry type.
pub(crate) fn to_entry(e: StoredEntry) -> Result<Entry, io::Error> {
    let payload = match e.kind {
        EntryKind::Normal => EntryPayload::Normal(EntryData(e.body)),
        EntryKind::Blank => EntryPayload::Blank,
        EntryKind::Membership => {
            let m: Membership = serde_json::from_slice(&e.body).map_err(|err| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("membership entry {}: {err}", e.index),
                )
            })?;
            EntryPayload::Membership(m)
        }
    };
    Ok(Entry {
        log_id: log_id(e.term, e.index),
        payload,
    })
}

fn body_of(entry: &Entry) -> Result<(EntryKind, Bytes), io::Error> {
    Ok(match &entry.payload {
        EntryPayload::Normal(d) => (EntryKind::Normal, d.0.clone()),
        EntryPayload::Blank => (EntryKind::Blank, Bytes::new()),
        EntryPayload::Membership(m) => (
            EntryKind::Membership,
            Bytes::from(serde_json::to_vec(m).map_err(io::Error::other)?),
        ),
    })
}

impl RaftLogReader<TypeConfig> for RaftLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let start = match range.start_bound() {
            Bound::Included(s) => *s,
            Bound::Excluded(s) => s + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(e) => e.saturating_add(1),
            Bound::Excluded(e) => *e,
            Bound::Unbounded => u64::MAX,
        };
        let stored = self.store.read_range(start, end, usize::MAX)?;
        stored.into_iter().map(to_entry).collect()
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.store.read_vote().map(|v| {
            let leader_id = openraft::impls::leader_id_std::LeaderId {
                term: v.term,
                voted_for: v.node_id,
            };
            openraft::impls::Vote {
                leader_id,
                committed: v.committed,
            }
        }))
    }
}

impl RaftLogStorage<TypeConfig> for RaftLogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let s = self.store.log_state();
        Ok(LogState {
            last_purged_log_id: s.purged.map(from_term_index),
            last_log_id: s.last().map(from_term_index),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(term = vote.leader_id.term, node = vote.leader_id.voted_for))]
    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let record = VoteRecord {
            term: vote.leader_id.term,
            node_id: vote.leader_id.voted_for,
            committed: vote.committed,
        };
        Ok(self.store.save_vote(record)?)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        self.store
            .save_committed(committed.as_ref().map(to_term_index));
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.store.read_committed().map(from_term_index))
    }

    #[tracing::instrument(level = "trace", skip_all)]
    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut bodies = Vec::new();
        let mut ids = Vec::new();
        for e in entries {
            let (kind, body) = body_of(&e)?;
            ids.push((e.log_id.index, e.log_id.leader_id.term, kind));
            bodies.push(body);
        }
        let new: Vec<NewEntry<'_>> = ids
            .iter()
            .zip(&bodies)
            .map(|(&(index, term, kind), body)| NewEntry {
                index,
                term,
                kind,
                body,
            })
            .collect();
        self.store
            .append(&new, Some(Box::new(move |r| callback.io_completed(r))))?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        Ok(self.store.truncate_after(last_log_id.map(|l| l.index))?)
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        Ok(self.store.purge(to_term_index(&log_id))?)
    }
}
