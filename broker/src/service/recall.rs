//! Recalling a delay message before it is due (RocketMQ 5's RecallMessage). A delay message's
//! send result carries a recall handle naming where it is stored; a recall checks that the
//! message is still there and not yet due, and writes a Recall through the log, after which no
//! replica hands it out.

use super::BrokerService;
use super::clock::now_ms;
use super::error::{ServiceError, check_topic};
use super::query::split_commit_log_offset;
use crate::command::Recall;

/// The field a recall handle travels in, for errors.
const FIELD: &str = "recall_handle";

/// The recall handle of a message stored at `offset` of `queue`, its record at
/// `commit_log_offset` (see [`super::commit_log_offset`]).
pub fn recall_handle(queue: u32, offset: u64, commit_log_offset: u64) -> String {
    format!("r1.{queue}.{offset}.{commit_log_offset}")
}

/// Where a recall handle points: (queue, queue offset, log index, record position).
fn parse_recall_handle(handle: &str) -> Option<(u32, u64, u64, u32)> {
    let mut parts = handle.split('.');
    if parts.next()? != "r1" {
        return None;
    }
    let queue = parts.next()?.parse().ok()?;
    let offset = parts.next()?.parse().ok()?;
    let (index, pos) = split_commit_log_offset(parts.next()?.parse().ok()?);
    parts
        .next()
        .is_none()
        .then_some((queue, offset, index, pos))
}

impl BrokerService {
    /// Recalls the delay message `handle` names in `topic`; returns its message id. A message
    /// recalled before it is due is never delivered.
    ///
    /// # Errors
    /// A bad topic or handle; [`ServiceError::MessageNotFound`] when the queue no longer holds
    /// that message (retention, a deleted topic) or it was recalled already; refused when it is
    /// due already; a store failure.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn recall(&self, topic: &str, handle: &str) -> Result<String, ServiceError> {
        check_topic("topic", topic)?;
        let (queue, offset, index, pos) =
            parse_recall_handle(handle).ok_or_else(|| ServiceError::InvalidField {
                field: FIELD,
                why: format!("{handle:?} is not a recall handle"),
            })?;
        // Read what every acknowledged send wrote, whichever node this is.
        self.store.barrier().await?;
        let not_found = || ServiceError::MessageNotFound {
            what: format!("{FIELD} {handle:?} in topic {topic}"),
        };
        let unit = self
            .store
            .read_queue(topic, queue, offset, 1)?
            .and_then(|(_, units)| units.first().copied())
            .filter(|u| u.index == index && u.pos == pos && !u.is_recalled())
            .ok_or_else(not_found)?;
        let (message, _) = self.store.read_message(&unit).map_err(|_| not_found())?;
        let recall = Recall {
            now_ms: now_ms(),
            topic: topic.to_string(),
            queue,
            offset,
            index,
            pos,
            delivery_ms: unit.delivery_ms,
        };
        self.store.recall(recall).await??;
        Ok(message.message_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::commit_log_offset;

    #[test]
    fn a_recall_handle_reads_back_and_junk_does_not() {
        let at = commit_log_offset(1 << 30, 4096);
        let h = recall_handle(3, 77, at);
        assert_eq!(parse_recall_handle(&h), Some((3, 77, 1 << 30, 4096)));
        for bad in ["", "r1", "r1.3.77", "v1.3.77.5", "r1.x.77.5", "r1.3.77.5.6"] {
            assert_eq!(parse_recall_handle(bad), None, "{bad:?}");
        }
    }
}
