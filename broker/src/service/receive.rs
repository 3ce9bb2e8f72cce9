//! Receive with long polling: check the request, then wait until the group has something
//! deliverable, and only then propose a Receive, so an empty poll writes nothing to the log.

use std::time::Duration;

use super::BrokerService;
use super::clock::now_ms;
use super::error::{ServiceError, check_group, check_topic};
use super::message::ReceivedMessage;
use crate::command::Receive;
use crate::state::Delivery;

/// The shortest invisible time a receive may ask for (RocketMQ's `minInvisibleTimeMillsForRecv`).
pub const INVISIBLE_MS_MIN: u64 = 10_000;
/// The longest invisible time (RocketMQ's `maxInvisibleTimeMills`: 12 h).
pub const INVISIBLE_MS_MAX: u64 = 12 * 3600 * 1000;
/// The invisible time of a receive that names none.
const INVISIBLE_MS_DEFAULT: u64 = 30_000;
/// Long polls are clamped to this range (as the Java proxy does).
pub const LONG_POLL_MS_MIN: u64 = 5_000;
/// The longest long poll, also what the server suggests to clients.
pub const LONG_POLL_MS_MAX: u64 = 20_000;
/// Answer this long before the client's deadline.
pub(crate) const DEADLINE_MARGIN_MS: u64 = 500;
/// Messages one receive returns at most.
const RECEIVE_BATCH_MAX: u32 = 1024;
/// How often a waiting poll looks again while nothing is applied (invisible and delay times
/// pass without a log entry).
pub(crate) const POLL_RECHECK: Duration = Duration::from_millis(100);

/// How a consumer filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterKind {
    /// Tags: `a || b`, `*` or empty for all.
    Tag,
    /// SQL92 (not supported yet).
    Sql,
}

/// A consumer's filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    /// Its language.
    pub kind: FilterKind,
    /// The expression.
    pub expression: String,
}

/// One receive as the protocol decoded it, not yet checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiveRequest {
    /// Consumer group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// The filter; `None` = everything.
    pub filter: Option<Filter>,
    /// Messages wanted (clamped to 1..=1024).
    pub batch_size: i32,
    /// Invisible time; `None` = 30 s.
    pub invisible_ms: Option<u64>,
    /// Long-poll time; `None` = the longest, clamped to 5..=20 s.
    pub long_poll_ms: Option<u64>,
    /// The client's own deadline (ms from now), if it sent one.
    pub deadline_ms: Option<u64>,
    /// The consumer's address, for the trace (`brokerTraceEnable`), when known.
    pub client_addr: Option<std::net::SocketAddr>,
}

/// What a long poll found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Polled {
    /// Messages were handed out (a failed read skips a message, which is redelivered later,
    /// so this may be empty).
    Messages(Vec<ReceivedMessage>),
    /// Nothing became deliverable before the poll ran out.
    Nothing,
}

/// The tags a filter accepts; empty = all.
pub(crate) fn tags_of(filter: Option<&Filter>) -> Result<Vec<String>, ServiceError> {
    let Some(f) = filter else {
        return Ok(Vec::new());
    };
    if f.kind == FilterKind::Sql {
        return Err(ServiceError::Unsupported {
            feature: "SQL92 filters",
        });
    }
    let expr = f.expression.trim();
    if expr.is_empty() || expr == "*" {
        return Ok(Vec::new());
    }
    Ok(expr
        .split("||")
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect())
}

/// How long a poll may wait: the asked time clamped, within the client's deadline.
fn poll_budget_ms(long_poll_ms: Option<u64>, deadline_ms: Option<u64>) -> u64 {
    let poll_ms = long_poll_ms
        .unwrap_or(LONG_POLL_MS_MAX)
        .clamp(LONG_POLL_MS_MIN, LONG_POLL_MS_MAX);
    deadline_ms.map_or(poll_ms, |d| {
        poll_ms.min(d.saturating_sub(DEADLINE_MARGIN_MS))
    })
}

impl BrokerService {
    /// One long poll: messages, or [`Polled::Nothing`] before the client's deadline. A message
    /// moves to the dead-letter queue after its group's `retryMaxTimes` + 1 deliveries.
    ///
    /// # Errors
    /// A bad name, invisible time or filter; an unknown topic; a group that has no record and
    /// is not auto-created, or may not consume; a store failure.
    #[tracing::instrument(level = "debug", skip_all, fields(group = %request.group, topic = %request.topic))]
    pub async fn receive(&self, request: ReceiveRequest) -> Result<Polled, ServiceError> {
        let client_addr = request.client_addr;
        let (template, budget_ms) = self.check_receive(request)?;
        let group = self.consumable_group(&template.group).await?;
        let ask = Receive {
            max_attempts: group.max_delivery_attempts(),
            ..template
        };
        let until = tokio::time::Instant::now() + Duration::from_millis(budget_ms);
        let mut applied = self.store.applied();
        let stopping = self.stopping();
        loop {
            if let Some(messages) = self.receive_now(&ask).await? {
                let n = messages.len() as u64;
                let bytes = messages.iter().map(|m| m.message.body.len() as u64).sum();
                self.stats.got(now_ms(), &ask.topic, &ask.group, n, bytes);
                self.trace_delivered(&ask.group, client_addr, &messages);
                return Ok(Polled::Messages(messages));
            }
            // Wait for the state to change (a send, an ack) or for invisible/delay times to pass.
            let now = tokio::time::Instant::now();
            if now >= until || *stopping.borrow() {
                return Ok(Polled::Nothing);
            }
            let _ =
                tokio::time::timeout_at((now + POLL_RECHECK).min(until), applied.changed()).await;
        }
    }

    /// Validates a receive in the order the clients see the errors; returns the command
    /// template (its `now_ms` is set when proposed, its `max_attempts` from the group) and
    /// the poll budget.
    fn check_receive(&self, r: ReceiveRequest) -> Result<(Receive, u64), ServiceError> {
        check_group("group", &r.group)?;
        check_topic("message_queue.topic", &r.topic)?;
        let invisible_ms = r.invisible_ms.unwrap_or(INVISIBLE_MS_DEFAULT);
        if !(INVISIBLE_MS_MIN..=INVISIBLE_MS_MAX).contains(&invisible_ms) {
            return Err(ServiceError::InvisibleTimeOutOfRange {
                invisible_ms,
                invisible_ms_min: INVISIBLE_MS_MIN,
                invisible_ms_max: INVISIBLE_MS_MAX,
            });
        }
        let tags = tags_of(r.filter.as_ref())?;
        if !self.store.state().topics().contains_key(&r.topic) {
            return Err(ServiceError::TopicNotFound { topic: r.topic });
        }
        let batch = u32::try_from(r.batch_size.max(1))
            .unwrap_or(1)
            .min(RECEIVE_BATCH_MAX);
        let ask = Receive {
            now_ms: 0,
            group: r.group,
            topic: r.topic,
            tags,
            batch,
            invisible_ms,
            max_attempts: 0,
        };
        Ok((ask, poll_budget_ms(r.long_poll_ms, r.deadline_ms)))
    }

    /// Proposes a Receive if the state has something deliverable now (a read-only check).
    /// `None`: nothing was deliverable or handed out.
    async fn receive_now(
        &self,
        ask: &Receive,
    ) -> Result<Option<Vec<ReceivedMessage>>, ServiceError> {
        let ready = self
            .store
            .state()
            .has_deliverable(&ask.group, &ask.topic, &ask.tags, now_ms());
        if !ready {
            return Ok(None);
        }
        let ask = Receive {
            now_ms: now_ms(),
            ..ask.clone()
        };
        let deliveries = self.store.receive(ask).await??;
        if deliveries.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            deliveries
                .into_iter()
                .filter_map(|d| self.read(d))
                .collect(),
        ))
    }

    /// The message a delivery points at; `None` (logged) when it cannot be read.
    fn read(&self, delivery: Delivery) -> Option<ReceivedMessage> {
        match self.store.read_message(&delivery.unit) {
            Ok((message, store_ms)) => Some(ReceivedMessage {
                invisible_ms_left: delivery.visible_at_ms.saturating_sub(now_ms()),
                delivery,
                message,
                store_ms,
            }),
            Err(e) => {
                tracing::error!(error = %e, "delivered message could not be read; it will be redelivered");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_filters_split_on_double_bars() {
        let tag = |e: &str| Filter {
            kind: FilterKind::Tag,
            expression: e.into(),
        };
        assert_eq!(tags_of(None).unwrap(), Vec::<String>::new());
        assert!(tags_of(Some(&tag(" * "))).unwrap().is_empty());
        assert_eq!(tags_of(Some(&tag("a || b||"))).unwrap(), ["a", "b"]);
        let sql = Filter {
            kind: FilterKind::Sql,
            expression: "a > 1".into(),
        };
        assert!(matches!(
            tags_of(Some(&sql)),
            Err(ServiceError::Unsupported { .. })
        ));
    }

    #[test]
    fn polls_are_clamped_and_end_before_the_deadline() {
        assert_eq!(poll_budget_ms(None, None), LONG_POLL_MS_MAX);
        assert_eq!(poll_budget_ms(Some(1), None), LONG_POLL_MS_MIN);
        assert_eq!(poll_budget_ms(Some(60_000), Some(3_000)), 2_500);
    }
}
