//! Sends (10, 310, 320) and a consumer's send-back (36).

use bytes::Bytes;
use raftmq_remoting::RemotingCommand;
use raftmq_remoting::code::{request as rq, response as rs};

use super::message_ext::{
    BatchItem, PROPERTY_DELAY, PROPERTY_KEYS, PROPERTY_START_DELIVER_TIME, PROPERTY_TAGS,
    PROPERTY_TIMER_DELIVER_MS, PROPERTY_TRANSACTION_PREPARED, PROPERTY_UNIQ_KEY, decode_batch,
    parse_properties,
};
use super::request::{Answer, Connection, RequestError};
use crate::command::MessageType;
use crate::service::{
    BrokerService, NewMessage, RECONSUME_TIME, SendBack, SendReceipt, ServiceError, delay_of_level,
    now_ms, offset_msg_id,
};

/// The v1 name of each send header field and its one-letter v2 name
/// (`SendMessageRequestHeaderV2`).
const V2_NAMES: [(&str, &str); 14] = [
    ("producerGroup", "a"),
    ("topic", "b"),
    ("defaultTopic", "c"),
    ("defaultTopicQueueNums", "d"),
    ("queueId", "e"),
    ("sysFlag", "f"),
    ("bornTimestamp", "g"),
    ("flag", "h"),
    ("properties", "i"),
    ("reconsumeTimes", "j"),
    ("unitMode", "k"),
    ("maxReconsumeTimes", "l"),
    ("batch", "m"),
    ("brokerName", "n"),
];

/// A send request's header by v1 field names, whichever version it came in.
struct SendHeader<'a> {
    request: &'a RemotingCommand,
    v2: bool,
}

impl SendHeader<'_> {
    fn name(&self, v1: &'static str) -> &'static str {
        if !self.v2 {
            return v1;
        }
        V2_NAMES
            .iter()
            .find(|(long, _)| *long == v1)
            .map_or(v1, |(_, short)| short)
    }

    fn field(&self, v1: &'static str) -> Option<&str> {
        self.request.field(self.name(v1))
    }

    fn required(&self, v1: &'static str) -> Result<&str, RequestError> {
        Ok(self.request.required(self.name(v1))?)
    }

    fn parsed_opt<T: std::str::FromStr>(
        &self,
        v1: &'static str,
        expected: &'static str,
    ) -> Result<Option<T>, RequestError> {
        Ok(self.request.parsed_opt(self.name(v1), expected)?)
    }
}

/// SEND_MESSAGE, SEND_MESSAGE_V2 and SEND_BATCH_MESSAGE.
pub(super) async fn send(
    service: &BrokerService,
    r: &RemotingCommand,
    conn: &Connection,
) -> Answer {
    let h = SendHeader {
        request: r,
        v2: r.code != rq::SEND_MESSAGE,
    };
    let topic = h.required("topic")?.to_string();
    let queue = h
        .parsed_opt::<i64>("queueId", "a queue id")?
        .and_then(|q| u32::try_from(q).ok());
    let born_ms = h
        .parsed_opt::<i64>("bornTimestamp", "ms since the epoch")?
        .and_then(|b| u64::try_from(b).ok());
    let reconsume_times = h.parsed_opt::<u32>("reconsumeTimes", "a count")?;
    let sys_flag = h.parsed_opt::<i32>("sysFlag", "a flag set")?.unwrap_or(0);
    let batch = r.code == rq::SEND_BATCH_MESSAGE
        || h.field("batch")
            .is_some_and(|b| b.eq_ignore_ascii_case("true"));
    let items = if batch {
        decode_batch(r.body.clone()).map_err(|e| RequestError::Body {
            what: e.to_string(),
        })?
    } else {
        let body = if sys_flag & SYS_FLAG_COMPRESSED != 0 {
            inflate(&r.body, service.config().max_message_size)?
        } else {
            r.body.clone()
        };
        vec![BatchItem {
            flag: 0,
            body,
            properties: h.field("properties").unwrap_or_default().to_string(),
        }]
    };
    let now = now_ms();
    let messages = items
        .into_iter()
        .map(|item| new_message(&topic, queue, born_ms, reconsume_times, item, conn, now))
        .collect::<Result<Vec<_>, _>>()?;
    let results = service.send(messages).await?;
    send_response(service, r, results)
}

/// Send sys flag: the body is zlib-compressed (4.x producers compress bodies over 4 KiB).
const SYS_FLAG_COMPRESSED: i32 = 1;

/// A compressed body, inflated: RaftMQ stores bodies as sent by the application, so both
/// protocols deliver them as they were sent. At most `size_max` bytes (a larger one is refused
/// before it is all inflated).
fn inflate(body: &[u8], size_max: usize) -> Result<Bytes, RequestError> {
    use std::io::Read as _;
    let mut out = Vec::with_capacity(body.len() * 4);
    let limit = u64::try_from(size_max)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    flate2::read::ZlibDecoder::new(body)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| RequestError::Body {
            what: format!("the body is flagged compressed (sysFlag bit 0) but is not zlib: {e}"),
        })?;
    if out.len() > size_max {
        return Err(ServiceError::BodyTooLarge {
            size: out.len(),
            size_max,
        }
        .into());
    }
    Ok(Bytes::from(out))
}

/// One message of a send as the service takes it: RocketMQ's properties that RaftMQ keeps as
/// fields (tag, keys, unique key, delay) are taken out; the rest are kept as they came.
fn new_message(
    topic: &str,
    queue: Option<u32>,
    born_ms: Option<u64>,
    reconsume_times: Option<u32>,
    item: BatchItem,
    conn: &Connection,
    now: u64,
) -> Result<NewMessage, RequestError> {
    let mut m = NewMessage {
        topic: topic.to_string(),
        message_id: String::new(),
        message_type: MessageType::Normal,
        tag: None,
        keys: Vec::new(),
        message_group: None,
        delivery_ms: 0,
        born_ms,
        born_host: conn.peer.to_string(),
        properties: Vec::new(),
        body: item.body,
        queue,
    };
    for (k, v) in parse_properties(&item.properties) {
        match k.as_str() {
            PROPERTY_TAGS => m.tag = Some(v),
            PROPERTY_KEYS => {
                m.keys = v
                    .split(' ')
                    .filter(|k| !k.is_empty())
                    .map(String::from)
                    .collect()
            }
            PROPERTY_UNIQ_KEY => m.message_id = v,
            PROPERTY_DELAY => {
                let level: u32 = v.trim().parse().map_err(|_| RequestError::Body {
                    what: format!("property DELAY = {v:?} is not a delay level"),
                })?;
                m.delivery_ms = if level == 0 {
                    0
                } else {
                    now + delay_of_level(level)
                };
            }
            PROPERTY_TIMER_DELIVER_MS | PROPERTY_START_DELIVER_TIME => {
                m.delivery_ms = v.trim().parse().map_err(|_| RequestError::Body {
                    what: format!("property {k} = {v:?} is not ms since the epoch"),
                })?;
            }
            PROPERTY_TRANSACTION_PREPARED if v == "true" => {
                m.message_type = MessageType::Transaction;
            }
            "WAIT" | RECONSUME_TIME => {}
            _ => {
                m.properties.push(k);
                m.properties.push(v);
            }
        }
    }
    if m.message_type == MessageType::Normal && m.delivery_ms > now {
        m.message_type = MessageType::Delay;
    }
    if let Some(times) = reconsume_times.filter(|&t| t > 0) {
        m.properties.push(RECONSUME_TIME.to_string());
        m.properties.push(times.to_string());
    }
    if m.message_id.is_empty() {
        m.message_id = generated_id(conn, now);
    }
    Ok(m)
}

/// A message id for a message sent without one (RocketMQ's clients always set UNIQ_KEY).
fn generated_id(conn: &Connection, now: u64) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("{:016X}{:016X}{seq:08X}", conn.id, now)
}

/// The send response: RocketMQ's offset message ids (comma-joined for a batch), and the first
/// message's queue and offset. A message refused alone fails the request with its reason.
fn send_response(
    service: &BrokerService,
    r: &RemotingCommand,
    results: Vec<Result<SendReceipt, ServiceError>>,
) -> Answer {
    let receipts = results.into_iter().collect::<Result<Vec<_>, _>>()?;
    let Some(first) = receipts.first().copied() else {
        return Err(ServiceError::ResultMissing.into());
    };
    let host = &service.config().broker_addr;
    let ids: Vec<String> = receipts
        .iter()
        .map(|rc| offset_msg_id(host, rc.commit_log_offset))
        .collect();
    Ok(RemotingCommand::response_to(r, rs::SUCCESS)
        .with_field("msgId", ids.join(","))
        .with_field("queueId", first.queue)
        .with_field("queueOffset", first.offset)
        .with_field("MSG_REGION", "DefaultRegion")
        .with_field("TRACE_ON", "true"))
}

/// CONSUMER_SEND_MSG_BACK: the message goes to the group's retry (or dead-letter) topic.
pub(super) async fn send_back(service: &BrokerService, r: &RemotingCommand) -> Answer {
    let back = SendBack {
        group: r.required("group")?.to_string(),
        commit_log_offset: r.parsed("offset", "a commit-log offset")?,
        delay_level: r.parsed_opt("delayLevel", "a delay level")?.unwrap_or(0),
        max_reconsume_times: r.parsed_opt("maxReconsumeTimes", "a count")?,
        origin_msg_id: r.field("originMsgId").map(String::from),
    };
    service.send_back(back).await?;
    Ok(RemotingCommand::response_to(r, rs::SUCCESS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    fn body(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn conn() -> Connection {
        let (outbox, _) = mpsc::channel(1);
        Connection {
            id: 1,
            peer: "10.0.0.9:5555".parse().expect("addr"),
            outbox,
        }
    }

    #[test]
    fn rocketmq_properties_become_fields_and_the_rest_stay() {
        let item = BatchItem {
            flag: 0,
            body: body("b"),
            properties: "TAGS\u{1}TagA\u{2}KEYS\u{1}k1 k2\u{2}UNIQ_KEY\u{1}U1\u{2}WAIT\u{1}true\u{2}DELAY\u{1}2\u{2}color\u{1}red\u{2}".into(),
        };
        let m = new_message("T", Some(3), Some(5), Some(2), item, &conn(), 1_000).expect("ok");
        assert_eq!(m.tag.as_deref(), Some("TagA"));
        assert_eq!(m.keys, vec!["k1", "k2"]);
        assert_eq!(m.message_id, "U1");
        assert_eq!(m.delivery_ms, 1_000 + 5_000);
        assert_eq!(m.message_type, MessageType::Delay);
        assert_eq!(m.queue, Some(3));
        assert_eq!(m.born_host, "10.0.0.9:5555");
        assert_eq!(m.properties, vec!["color", "red", RECONSUME_TIME, "2"]);
    }

    #[test]
    fn compressed_bodies_are_inflated_within_the_size_limit() {
        use std::io::Write as _;
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&[b'x'; 5000]).expect("compresses");
        let packed = z.finish().expect("compresses");
        assert_eq!(inflate(&packed, 5000).expect("inflates").len(), 5000);
        assert!(
            inflate(&packed, 4999).is_err(),
            "a body over maxMessageSize is refused"
        );
        assert!(inflate(b"not zlib", 5000).is_err());
    }

    #[test]
    fn a_bad_delay_level_names_the_property() {
        let item = BatchItem {
            flag: 0,
            body: body("b"),
            properties: "DELAY\u{1}soon\u{2}".into(),
        };
        let err = new_message("T", None, None, None, item, &conn(), 0).expect_err("bad");
        assert!(err.to_string().contains("DELAY"), "{err}");
    }

    #[test]
    fn v2_headers_read_by_their_letters() {
        let r = RemotingCommand::request(rq::SEND_MESSAGE_V2, Default::default())
            .with_field("b", "TopicTest")
            .with_field("e", "2");
        let h = SendHeader {
            request: &r,
            v2: true,
        };
        assert_eq!(h.field("topic"), Some("TopicTest"));
        assert_eq!(h.parsed_opt::<i64>("queueId", "q").expect("ok"), Some(2));
    }
}
