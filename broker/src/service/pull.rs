//! Pull by queue offset (RocketMQ 4.x PULL_MESSAGE): the consumer names the queue and offset
//! and keeps its own progress, committing it with [`BrokerService::commit_offset`]. A pull
//! reads this node's queues and log and writes nothing; one at the end of its queue waits
//! (long polling) until a message arrives there or its time runs out.

use std::time::Duration;

use super::BrokerService;
use super::clock::now_ms;
use super::error::ServiceError;
use super::error::{check_group, check_topic};
use super::receive::Filter;
use super::receive::{DEADLINE_MARGIN_MS, LONG_POLL_MS_MAX, POLL_RECHECK, tags_of};
use crate::command::StoredMessage;
use crate::consume_queue::{Unit, name_hash};
use crate::state::{ApplyError, Bounds};

/// Messages one pull returns at most (RocketMQ's `maxMsgNums` ceiling).
pub const PULL_BATCH_MAX: u32 = 1024;
/// Body bytes one pull returns at most (beyond its first message), so that a response stays
/// well inside a remoting frame (16 MiB) whatever `maxMsgNums` asks.
pub const PULL_BYTES_MAX: usize = 4 << 20;
/// Queue units one pull examines at most while filtering by tag.
const PULL_SCAN_MAX: usize = 4096;
/// The longest a pull may be held (RocketMQ's `brokerSuspendMaxTimeMillis`, longer than any
/// client's suspend time).
pub const PULL_SUSPEND_MS_MAX: u64 = 30_000;

/// How long a 5.x pull may be held: what it asked (none: answer at once), at most
/// [`LONG_POLL_MS_MAX`], and within the client's deadline.
pub fn pull_suspend_ms(asked_ms: Option<u64>, deadline_ms: Option<u64>) -> u64 {
    let asked = asked_ms.unwrap_or(0).min(LONG_POLL_MS_MAX);
    deadline_ms.map_or(asked, |d| asked.min(d.saturating_sub(DEADLINE_MARGIN_MS)))
}

/// One pull as the protocol decoded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullRequest {
    /// Consumer group (checked, not otherwise used: pulls keep no broker state).
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Queue id.
    pub queue: u32,
    /// The first offset wanted.
    pub offset: u64,
    /// Messages wanted (clamped to 1..=[`PULL_BATCH_MAX`]).
    pub max_messages: u32,
    /// The subscription's filter; `None` = everything.
    pub filter: Option<Filter>,
    /// How long to hold the pull when nothing is there (0 = answer at once).
    pub suspend_ms: u64,
    /// The consumer's offset in the queue to commit (a 4.x pull's `commitOffset`), once the
    /// pull is admitted and without holding it for the write.
    pub commit_offset: Option<u64>,
}

/// How a pull ended (RocketMQ's `GetMessageStatus`, as the 4.x response codes need it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullStatus {
    /// Messages are returned.
    Found,
    /// Nothing at the offset yet (the offset is the queue's end or past this node's end, or
    /// the next message is not due yet).
    NoNewMessage,
    /// Messages were there but the filter took none: pull again at `next_offset`.
    NoMatch,
    /// The offset is below the queue's min offset (retention trimmed it): start again at
    /// `next_offset`.
    OffsetMoved,
}

/// A message a pull returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PulledMessage {
    /// Its queue offset.
    pub offset: u64,
    /// Where it is in the log (for the offset message id).
    pub unit: Unit,
    /// The message.
    pub message: StoredMessage,
    /// When the broker stored it (ms since the epoch).
    pub store_ms: u64,
}

/// What a pull found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pulled {
    /// How it ended.
    pub status: PullStatus,
    /// The messages, in queue order.
    pub messages: Vec<PulledMessage>,
    /// Where the consumer pulls next.
    pub next_offset: u64,
    /// The queue's bounds when the pull was answered.
    pub bounds: Bounds,
}

impl BrokerService {
    /// One pull, held up to its suspend time while the queue has nothing at the offset.
    ///
    /// # Errors
    /// A bad name or filter, an unknown topic or queue, a failed read; a group that has no
    /// record and is not auto-created, or may not consume (by broadcast).
    #[tracing::instrument(level = "debug", skip_all, fields(topic = %request.topic, queue = request.queue, offset = request.offset))]
    pub async fn pull(&self, request: PullRequest) -> Result<Pulled, ServiceError> {
        check_group("consumerGroup", &request.group)?;
        check_topic("topic", &request.topic)?;
        let group = self.consumable_group(&request.group).await?;
        self.check_broadcast(&group)?;
        if let Some(offset) = request.commit_offset {
            self.commit_in_background(&request, offset);
        }
        let tags: Vec<u64> = tags_of(request.filter.as_ref())?
            .iter()
            .map(|t| name_hash(t))
            .collect();
        let suspend = Duration::from_millis(request.suspend_ms.min(PULL_SUSPEND_MS_MAX));
        let until = tokio::time::Instant::now() + suspend;
        let mut applied = self.store.applied();
        let stopping = self.stopping();
        loop {
            let pulled = self.pull_now(&request, &tags)?;
            let now = tokio::time::Instant::now();
            if pulled.status != PullStatus::NoNewMessage || now >= until || *stopping.borrow() {
                let n = pulled.messages.len() as u64;
                let bytes = pulled
                    .messages
                    .iter()
                    .map(|m| m.message.body.len() as u64)
                    .sum();
                self.stats
                    .got(now_ms(), &request.topic, &request.group, n, bytes);
                return Ok(pulled);
            }
            let _ =
                tokio::time::timeout_at((now + POLL_RECHECK).min(until), applied.changed()).await;
        }
    }

    /// One look at the queue.
    fn pull_now(&self, r: &PullRequest, tags: &[u64]) -> Result<Pulled, ServiceError> {
        let max = r.max_messages.clamp(1, PULL_BATCH_MAX) as usize;
        let read = self
            .store
            .read_queue(&r.topic, r.queue, r.offset, PULL_SCAN_MAX)?;
        let Some((bounds, units)) = read else {
            return Err(self.missing_queue(&r.topic, r.queue));
        };
        let answer = |status, next_offset, messages| Pulled {
            status,
            messages,
            next_offset,
            bounds,
        };
        if r.offset < bounds.min {
            // Retention moved past it (the min offset only grows, and every replica trims
            // alike): the consumer skips ahead.
            return Ok(answer(PullStatus::OffsetMoved, bounds.min, Vec::new()));
        }
        if r.offset > bounds.next {
            // Past this node's end: the node may lag (a follower, a leader cut off by a
            // partition) behind offsets the group already consumed elsewhere. Never move a
            // consumer back: nothing here yet, ask again at the same offset (RocketMQ's
            // `offsetCheckInSlave=false`).
            return Ok(answer(PullStatus::NoNewMessage, r.offset, Vec::new()));
        }
        let now = now_ms();
        let mut messages = Vec::new();
        let mut bytes = 0usize;
        let mut next = r.offset;
        for unit in units {
            let skipped = unit.is_hole() || unit.is_recalled();
            if messages.len() >= max || (!skipped && unit.delivery_ms > now) {
                break; // a message not due yet holds back the rest of its queue
            }
            if !messages.is_empty() && bytes + unit.len as usize > PULL_BYTES_MAX {
                break;
            }
            let offset = next;
            next += 1;
            if skipped || !(tags.is_empty() || tags.contains(&unit.tag_hash)) {
                continue;
            }
            // A message the log no longer has (purged under the pull) is skipped.
            if let Ok((message, store_ms)) = self.store.read_message(&unit) {
                bytes += message.body.len();
                messages.push(PulledMessage {
                    offset,
                    unit,
                    message,
                    store_ms,
                });
            }
        }
        Ok(if !messages.is_empty() {
            answer(PullStatus::Found, next, messages)
        } else if next > r.offset {
            answer(PullStatus::NoMatch, next, messages)
        } else {
            answer(PullStatus::NoNewMessage, next, messages)
        })
    }

    /// Commits the offset a pull carries; a failure is only logged (the consumer commits
    /// again with its next pull).
    fn commit_in_background(&self, r: &PullRequest, offset: u64) {
        let (service, group, topic, queue) =
            (self.clone(), r.group.clone(), r.topic.clone(), r.queue);
        tokio::spawn(async move {
            if let Err(e) = service.commit_offset(&group, &topic, queue, offset).await {
                tracing::debug!(error = %e, %group, %topic, queue, "commit offset of a pull failed");
            }
        });
    }

    fn missing_queue(&self, topic: &str, queue: u32) -> ServiceError {
        match self.store.state().topics().get(topic) {
            Some(t) => ServiceError::Refused {
                source: ApplyError::QueueNotFound {
                    topic: topic.to_string(),
                    queue,
                    queues: t.queues,
                },
            },
            None => ServiceError::TopicNotFound {
                topic: topic.to_string(),
            },
        }
    }

    /// `group`'s committed offset in (topic, queue); `None` when it never committed one there.
    /// Linearizable: it includes every commit acknowledged before the call, on whichever node
    /// (a barrier through the log first), so a consumer that starts here never rewinds past
    /// what it committed elsewhere.
    ///
    /// # Errors
    /// A bad name; the barrier failed (no quorum reachable).
    pub async fn consumer_offset(
        &self,
        group: &str,
        topic: &str,
        queue: u32,
    ) -> Result<Option<u64>, ServiceError> {
        check_group("consumerGroup", group)?;
        check_topic("topic", topic)?;
        self.store.barrier().await?;
        Ok(self.store.consumer_offset(group, topic, queue))
    }

    /// Commits `group`'s offset in (topic, queue), unless it already is that.
    ///
    /// # Errors
    /// A bad name, an unknown topic or queue, a store failure.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn commit_offset(
        &self,
        group: &str,
        topic: &str,
        queue: u32,
        offset: u64,
    ) -> Result<(), ServiceError> {
        check_group("consumerGroup", group)?;
        check_topic("topic", topic)?;
        if self.store.consumer_offset(group, topic, queue) == Some(offset) {
            return Ok(());
        }
        self.store
            .commit_offset(group, topic, queue, offset)
            .await??;
        Ok(())
    }

    /// The bounds of (topic, queue): min offset and max (next) offset.
    ///
    /// # Errors
    /// An unknown topic or queue.
    pub fn queue_bounds_of(&self, topic: &str, queue: u32) -> Result<Bounds, ServiceError> {
        self.store
            .state()
            .queue_bounds(topic)
            .and_then(|b| b.get(queue as usize).copied())
            .ok_or_else(|| self.missing_queue(topic, queue))
    }

    /// The first offset of (topic, queue) stored at or after `ms`.
    ///
    /// # Errors
    /// An unknown topic or queue, a failed read.
    pub fn offset_at_time(&self, topic: &str, queue: u32, ms: u64) -> Result<u64, ServiceError> {
        self.store
            .offset_at_time(topic, queue, ms)?
            .ok_or_else(|| self.missing_queue(topic, queue))
    }
}
