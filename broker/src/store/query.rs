//! Lookups for operators: messages by key, by unique key, by log position (RocketMQ's offset
//! message id) and by queue offset; the queue offset of a store time; resetting a group's
//! offsets. Reads answer from this replica's files and log.

use super::MessageStore;
use super::error::StoreError;
use crate::command::{Command, StoredMessage};
use crate::consume_queue::Unit;
use crate::message_index::{KeyKind, key_hash};
use crate::state::{ApplyError, ApplyResult, Bounds, StateError};

/// A message found by a lookup, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundMessage {
    /// The message.
    pub message: StoredMessage,
    /// When the broker stored it (ms since the epoch).
    pub store_ms: u64,
    /// Log index of its Send entry.
    pub index: u64,
    /// Position of its record in the entry.
    pub pos: u32,
    /// Queue and queue offset, when the lookup knows them.
    pub queue_offset: Option<(u32, u64)>,
}

fn state_err(e: impl Into<StateError>) -> StoreError {
    StoreError::State(e.into())
}

impl MessageStore {
    /// Messages of `topic` whose key (or unique key) is `key`, newest first, at most `max`.
    ///
    /// # Errors
    /// An index or queue file that cannot be read.
    pub fn find_by_key(
        &self,
        kind: KeyKind,
        topic: &str,
        key: &str,
        max: usize,
    ) -> Result<Vec<FoundMessage>, StoreError> {
        let hash = key_hash(kind, topic, key);
        // Hashes collide: ask for more and keep the exact matches.
        let records = self
            .state()
            .index()
            .lookup(hash, max.saturating_mul(2).max(16))
            .map_err(state_err)?;
        let mut out = Vec::new();
        for r in records {
            let Ok(stored) = self.node().read(r.index) else {
                continue;
            };
            let Some(stored) = stored else { continue };
            let Ok((message, store_ms)) = StoredMessage::decode_at(&stored.body, r.pos, r.len)
            else {
                continue;
            };
            let matches = message.topic == topic
                && match kind {
                    KeyKind::Key => message.keys.iter().any(|k| k == key),
                    KeyKind::UniqueKey => message.message_id == key,
                };
            if matches {
                out.push(FoundMessage {
                    message,
                    store_ms,
                    index: r.index,
                    pos: r.pos,
                    queue_offset: Some((r.queue, r.offset)),
                });
            }
            if out.len() >= max {
                break;
            }
        }
        Ok(out)
    }

    /// The message whose record starts at `pos` in the entry at `index` (an offset message
    /// id); its queue and offset from the index when the unique key finds it.
    ///
    /// # Errors
    /// [`StoreError::MessageMissing`] when nothing decodes there.
    pub fn find_at(&self, index: u64, pos: u32) -> Result<FoundMessage, StoreError> {
        let missing = || StoreError::MessageMissing { index, pos };
        let stored = self.node().read(index)?.ok_or_else(missing)?;
        let (message, store_ms) =
            StoredMessage::decode_starting_at(&stored.body, pos).map_err(|_| missing())?;
        let queue_offset = self
            .find_by_key(KeyKind::UniqueKey, &message.topic, &message.message_id, 16)?
            .into_iter()
            .find(|f| f.index == index && f.pos == pos)
            .and_then(|f| f.queue_offset);
        Ok(FoundMessage {
            message,
            store_ms,
            index,
            pos,
            queue_offset,
        })
    }

    /// The message at `offset` of (topic, queue), if the queue holds it.
    ///
    /// # Errors
    /// A queue file that cannot be read, or a message the log no longer has.
    pub fn find_at_offset(
        &self,
        topic: &str,
        queue: u32,
        offset: u64,
    ) -> Result<Option<FoundMessage>, StoreError> {
        let unit = {
            let state = self.state();
            let Some(b) = state
                .queue_bounds(topic)
                .and_then(|b| b.get(queue as usize).copied())
            else {
                return Ok(None);
            };
            if offset < b.min || offset >= b.next {
                return Ok(None);
            }
            state
                .consume_queues()
                .get(topic, queue, offset)
                .map_err(state_err)?
        };
        let Some(unit) = unit else { return Ok(None) };
        let (message, store_ms) = self.read_message(&unit)?;
        Ok(Some(FoundMessage {
            message,
            store_ms,
            index: unit.index,
            pos: unit.pos,
            queue_offset: Some((queue, offset)),
        }))
    }

    /// Up to `max` units of (topic, queue) from `from`, with the queue's bounds; `None` for an
    /// unknown topic or queue. The units are read under the state's lock, so they are what the
    /// bounds count.
    ///
    /// # Errors
    /// A queue file that cannot be read.
    pub fn read_queue(
        &self,
        topic: &str,
        queue: u32,
        from: u64,
        max: usize,
    ) -> Result<Option<(Bounds, Vec<Unit>)>, StoreError> {
        let state = self.state();
        let Some(b) = state
            .queue_bounds(topic)
            .and_then(|b| b.get(queue as usize).copied())
        else {
            return Ok(None);
        };
        let want = usize::try_from(b.next.saturating_sub(from))
            .unwrap_or(usize::MAX)
            .min(max);
        if from < b.min || want == 0 {
            return Ok(Some((b, Vec::new())));
        }
        let units = state
            .consume_queues()
            .read(topic, queue, from, want)
            .map_err(state_err)?;
        Ok(Some((b, units)))
    }

    /// `group`'s committed offset in (topic, queue): `None` when it has none there.
    pub fn consumer_offset(&self, group: &str, topic: &str, queue: u32) -> Option<u64> {
        let progress = self.state().group_progress(group, topic)?;
        progress.get(queue as usize).map(|p| p.0)
    }

    /// The first offset of (topic, queue) stored at or after `ms` (the next offset when none
    /// is), by binary search over the queue with store times read from the log. `None` for an
    /// unknown queue.
    ///
    /// # Errors
    /// A queue file that cannot be read.
    pub fn offset_at_time(
        &self,
        topic: &str,
        queue: u32,
        ms: u64,
    ) -> Result<Option<u64>, StoreError> {
        let Some(b) = self
            .state()
            .queue_bounds(topic)
            .and_then(|b| b.get(queue as usize).copied())
        else {
            return Ok(None);
        };
        let (mut lo, mut hi) = (b.min, b.next);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let unit = self
                .state()
                .consume_queues()
                .get(topic, queue, mid)
                .map_err(state_err)?;
            // A message that cannot be read counts as earlier (it is about to be trimmed).
            let earlier = unit
                .and_then(|u| self.read_message(&u).ok())
                .is_none_or(|(_, stored)| stored < ms);
            if earlier {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(Some(lo))
    }

    /// Moves `group`'s offset in each queue of `topic` to the first message stored at or after
    /// `ms` (RocketMQ's `resetOffsetByTime`). Returns per queue (offset before, offset after).
    ///
    /// # Errors
    /// The outer error: the write failed; the inner one: the topic does not exist.
    pub async fn reset_offset_by_time(
        &self,
        group: &str,
        topic: &str,
        ms: u64,
    ) -> Result<Result<Vec<(u64, u64)>, ApplyError>, StoreError> {
        let queues = self
            .state()
            .queue_bounds(topic)
            .map(<[_]>::len)
            .unwrap_or(0);
        if queues == 0 {
            return Ok(Err(ApplyError::TopicNotFound {
                topic: topic.to_string(),
            }));
        }
        let mut offsets = Vec::with_capacity(queues);
        for q in 0..queues {
            let q = u32::try_from(q).unwrap_or(u32::MAX);
            offsets.push(self.offset_at_time(topic, q, ms)?.unwrap_or(0));
        }
        let command = Command::ResetOffset {
            group: group.to_string(),
            topic: topic.to_string(),
            offsets,
        };
        self.execute_as(&command, |r| match r {
            ApplyResult::Reset(r) => Ok(r),
            other => Err(other),
        })
        .await
    }
}
