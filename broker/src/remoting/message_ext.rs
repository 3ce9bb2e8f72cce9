//! RocketMQ's binary message encodings: the MessageExt record a 4.x consumer decodes from a
//! pull (RocketMQ's `MessageDecoder`), the batch body a 4.x producer sends, and the
//! properties string (`key \x01 value \x02 …`).

use std::net::{Ipv4Addr, SocketAddr};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::command::StoredMessage;
use crate::service::{RECONSUME_TIME, commit_log_offset};

/// RocketMQ's `MESSAGE_MAGIC_CODE` (v1 record, IPv4 hosts).
const MAGIC_CODE: i32 = 0xDAA3_20A7_u32 as i32;
/// Separates a property's key from its value.
const NAME_VALUE_SEPARATOR: char = '\u{1}';
/// Separates properties.
const PROPERTY_SEPARATOR: char = '\u{2}';

/// Property names RocketMQ keeps in a message's properties that RaftMQ keeps as fields.
pub const PROPERTY_TAGS: &str = "TAGS";
/// Keys, separated by spaces.
pub const PROPERTY_KEYS: &str = "KEYS";
/// The producer's message id.
pub const PROPERTY_UNIQ_KEY: &str = "UNIQ_KEY";
/// A 4.x delay level.
pub const PROPERTY_DELAY: &str = "DELAY";
/// A transactional half message.
pub const PROPERTY_TRANSACTION_PREPARED: &str = "TRAN_MSG";
/// RocketMQ 5's exact delivery time (ms since the epoch).
pub const PROPERTY_TIMER_DELIVER_MS: &str = "TIMER_DELIVER_MS";
/// Aliyun ONS's exact delivery time (ms since the epoch), as `ali-ons` sets it.
pub const PROPERTY_START_DELIVER_TIME: &str = "__STARTDELIVERTIME";

/// Parses a properties string into `(key, value)` pairs; a pair without a separator is
/// skipped, as RocketMQ's `string2messageProperties` does.
pub fn parse_properties(s: &str) -> Vec<(String, String)> {
    s.split(PROPERTY_SEPARATOR)
        .filter_map(|kv| kv.split_once(NAME_VALUE_SEPARATOR))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The properties string a 4.x consumer sees for `m`: its tag, keys and unique key as
/// RocketMQ's properties, then the stored ones (the reconsume count is a record field).
pub fn properties_string(m: &StoredMessage) -> String {
    let mut out = String::new();
    let mut put = |k: &str, v: &str| {
        out.push_str(k);
        out.push(NAME_VALUE_SEPARATOR);
        out.push_str(v);
        out.push(PROPERTY_SEPARATOR);
    };
    if let Some(tag) = &m.tag {
        put(PROPERTY_TAGS, tag);
    }
    if !m.keys.is_empty() {
        put(PROPERTY_KEYS, &m.keys.join(" "));
    }
    if !m.message_id.is_empty() {
        put(PROPERTY_UNIQ_KEY, &m.message_id);
    }
    for (k, v) in m.property_pairs() {
        if k != RECONSUME_TIME {
            put(k, v);
        }
    }
    out
}

/// Where a pulled message was and how often it was consumed again: what the record needs
/// besides the message.
#[derive(Clone, Copy, Debug)]
pub struct RecordPlace {
    /// Queue id.
    pub queue: u32,
    /// Queue offset.
    pub queue_offset: u64,
    /// Log index of its Send entry.
    pub index: u64,
    /// Its record's position in the entry.
    pub pos: u32,
    /// When it was stored (ms since the epoch).
    pub store_ms: u64,
    /// Times consumed again.
    pub reconsume_times: u32,
}

fn host_parts(host: &str) -> (Ipv4Addr, u32) {
    match host.parse::<SocketAddr>() {
        Ok(SocketAddr::V4(a)) => (*a.ip(), u32::from(a.port())),
        _ => host
            .parse::<Ipv4Addr>()
            .map_or((Ipv4Addr::LOCALHOST, 0), |ip| (ip, 0)),
    }
}

/// RocketMQ's body CRC (`UtilAll.crc32`: CRC-32 with the sign bit cleared).
fn body_crc(body: &[u8]) -> i32 {
    i32::try_from(crc32fast::hash(body) & 0x7FFF_FFFF).unwrap_or(0)
}

/// Appends `m` as one MessageExt record (RocketMQ's v1 layout with IPv4 hosts).
pub fn put_message_ext(out: &mut BytesMut, m: &StoredMessage, at: RecordPlace, store_host: &str) {
    let props = properties_string(m);
    let topic = m.topic.as_bytes();
    let props_len = props.len().min(i16::MAX as usize);
    let topic_len = topic.len().min(u8::MAX as usize);
    let total = 4
        + 4
        + 4
        + 4
        + 4
        + 8
        + 8
        + 4
        + 8
        + 8
        + 8
        + 8
        + 4
        + 8
        + 4
        + m.body.len()
        + 1
        + topic_len
        + 2
        + props_len;
    let (born_ip, born_port) = host_parts(&m.born_host);
    let (store_ip, store_port) = host_parts(store_host);
    out.reserve(total);
    out.put_i32(i32::try_from(total).unwrap_or(i32::MAX));
    out.put_i32(MAGIC_CODE);
    out.put_i32(body_crc(&m.body));
    out.put_i32(i32::try_from(at.queue).unwrap_or(0));
    out.put_i32(0); // flag
    out.put_i64(i64::try_from(at.queue_offset).unwrap_or(i64::MAX));
    out.put_i64(i64::try_from(commit_log_offset(at.index, at.pos)).unwrap_or(i64::MAX));
    out.put_i32(0); // sys flag: not compressed, IPv4 hosts
    out.put_i64(i64::try_from(m.born_ms).unwrap_or(0));
    out.put_slice(&born_ip.octets());
    out.put_u32(born_port);
    out.put_i64(i64::try_from(at.store_ms).unwrap_or(0));
    out.put_slice(&store_ip.octets());
    out.put_u32(store_port);
    out.put_i32(i32::try_from(at.reconsume_times).unwrap_or(i32::MAX));
    out.put_i64(0); // prepared transaction offset
    out.put_i32(i32::try_from(m.body.len()).unwrap_or(i32::MAX));
    out.put_slice(&m.body);
    out.put_u8(u8::try_from(topic_len).unwrap_or(u8::MAX));
    out.put_slice(&topic[..topic_len]);
    out.put_i16(i16::try_from(props_len).unwrap_or(i16::MAX));
    out.put_slice(&props.as_bytes()[..props_len]);
}

/// One message of a 4.x batch body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchItem {
    /// The message's flag.
    pub flag: i32,
    /// Its body.
    pub body: Bytes,
    /// Its properties string.
    pub properties: String,
}

/// Why a batch body does not decode.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("batch body: message {item} is truncated or malformed")]
pub struct BatchError {
    /// Which message (from 0).
    pub item: usize,
}

/// Splits a SEND_BATCH_MESSAGE body (RocketMQ's `MessageDecoder.encodeMessages`: per message
/// total size, magic, body CRC, flag, body, properties).
///
/// # Errors
/// A message whose lengths run past the body.
pub fn decode_batch(mut body: Bytes) -> Result<Vec<BatchItem>, BatchError> {
    let mut items = Vec::new();
    while body.has_remaining() {
        let item = items.len();
        let bad = BatchError { item };
        if body.remaining() < 20 {
            return Err(bad);
        }
        let total = usize::try_from(body.get_i32()).map_err(|_| bad.clone())?;
        if total < 4 || total - 4 > body.remaining() {
            return Err(bad);
        }
        let mut m = body.split_to(total - 4);
        if m.remaining() < 16 {
            return Err(bad);
        }
        let _magic = m.get_i32();
        let _crc = m.get_i32();
        let flag = m.get_i32();
        let body_len = usize::try_from(m.get_i32()).map_err(|_| bad.clone())?;
        if body_len > m.remaining() {
            return Err(bad);
        }
        let msg_body = m.split_to(body_len);
        if m.remaining() < 2 {
            return Err(bad);
        }
        let props_len = usize::try_from(m.get_i16()).map_err(|_| bad.clone())?;
        if props_len > m.remaining() {
            return Err(bad);
        }
        let properties = String::from_utf8_lossy(&m.split_to(props_len)).into_owned();
        items.push(BatchItem {
            flag,
            body: msg_body,
            properties,
        });
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_round_trip_with_fields_first() {
        let mut m = StoredMessage::sample("T", "UNIQ1");
        m.tag = Some("TagA".into());
        m.keys = vec!["k1".into(), "k2".into()];
        m.properties = vec!["a".into(), "1".into(), RECONSUME_TIME.into(), "2".into()];
        let s = properties_string(&m);
        assert_eq!(
            parse_properties(&s),
            vec![
                ("TAGS".into(), "TagA".into()),
                ("KEYS".into(), "k1 k2".into()),
                (PROPERTY_UNIQ_KEY.into(), "UNIQ1".into()),
                ("a".into(), "1".into()),
            ]
        );
    }

    /// Decodes a record as RocketMQ's `MessageDecoder.decode` reads it.
    #[test]
    fn a_record_has_rocketmqs_layout() {
        let mut m = StoredMessage::sample("TopicTest", "U");
        m.body = Bytes::from_static(b"hello");
        m.born_ms = 1_700_000_000_123;
        m.born_host = "10.1.2.3:4567".into();
        let at = RecordPlace {
            queue: 3,
            queue_offset: 42,
            index: 7,
            pos: 14,
            store_ms: 1_700_000_000_456,
            reconsume_times: 2,
        };
        let mut out = BytesMut::new();
        put_message_ext(&mut out, &m, at, "127.0.0.1:30911");
        let mut r = out.freeze();
        let total = r.len();
        assert_eq!(usize::try_from(r.get_i32()).expect("positive"), total);
        assert_eq!(r.get_i32(), MAGIC_CODE);
        assert_eq!(r.get_i32(), body_crc(b"hello"));
        assert_eq!(r.get_i32(), 3);
        assert_eq!(r.get_i32(), 0);
        assert_eq!(r.get_i64(), 42);
        assert_eq!(r.get_i64(), (7 << 24) | 14);
        assert_eq!(r.get_i32(), 0);
        assert_eq!(r.get_i64(), 1_700_000_000_123);
        assert_eq!(r.copy_to_bytes(4).as_ref(), &[10, 1, 2, 3]);
        assert_eq!(r.get_i32(), 4567);
        assert_eq!(r.get_i64(), 1_700_000_000_456);
        assert_eq!(r.copy_to_bytes(4).as_ref(), &[127, 0, 0, 1]);
        assert_eq!(r.get_i32(), 30911);
        assert_eq!(r.get_i32(), 2);
        assert_eq!(r.get_i64(), 0);
        assert_eq!(r.get_i32(), 5);
        assert_eq!(r.copy_to_bytes(5).as_ref(), b"hello");
        assert_eq!(r.get_u8(), 9);
        assert_eq!(r.copy_to_bytes(9).as_ref(), b"TopicTest");
        let props_len = usize::try_from(r.get_i16()).expect("positive");
        assert_eq!(r.remaining(), props_len);
        // java.util.zip.CRC32("hello") = 0x3610A686.
        assert_eq!(body_crc(b"hello"), 0x3610_A686);
    }

    #[test]
    fn records_decode_with_the_clients_decoder() {
        let mut m = StoredMessage::sample("TopicTest", "U1");
        m.tag = Some("TagA".into());
        m.body = Bytes::from_static(b"hello");
        let mut out = BytesMut::new();
        for (i, offset) in [(0u32, 5u64), (1, 6)] {
            let at = RecordPlace {
                queue: 2,
                queue_offset: offset,
                index: 9,
                pos: 14 + i,
                store_ms: 77,
                reconsume_times: i,
            };
            put_message_ext(&mut out, &m, at, "127.0.0.1:30911");
        }
        let records = raftmq_remoting::message::decode_records(out.freeze()).expect("decodes");
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].queue_offset, 6);
        assert_eq!(records[1].commit_log_offset, (9 << 24) | 15);
        assert_eq!((records[1].store_ms, records[1].reconsume_times), (77, 1));
        assert_eq!(records[0].body.as_ref(), b"hello");
        assert_eq!(records[0].properties, properties_string(&m));
    }

    fn batch_item(out: &mut BytesMut, body: &[u8], props: &str) {
        let total = 4 + 4 + 4 + 4 + 4 + body.len() + 2 + props.len();
        out.put_i32(i32::try_from(total).expect("small"));
        out.put_i32(0);
        out.put_i32(body_crc(body));
        out.put_i32(0);
        out.put_i32(i32::try_from(body.len()).expect("small"));
        out.put_slice(body);
        out.put_i16(i16::try_from(props.len()).expect("small"));
        out.put_slice(props.as_bytes());
    }

    #[test]
    fn a_batch_body_splits_into_its_messages_and_truncation_is_refused() {
        let mut out = BytesMut::new();
        batch_item(&mut out, b"one", "KEYS\u{1}a\u{2}");
        batch_item(&mut out, b"two!", "");
        let body = out.freeze();
        let items = decode_batch(body.clone()).expect("decodes");
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].body.as_ref(), b"one");
        assert_eq!(items[0].properties, "KEYS\u{1}a\u{2}");
        assert_eq!(items[1].body.as_ref(), b"two!");
        let first_len = 4 + 4 + 4 + 4 + 4 + 3 + 2 + "KEYS\u{1}a\u{2}".len();
        for cut in 1..body.len() {
            if cut == first_len {
                continue; // the first message alone is a valid batch
            }
            assert!(decode_batch(body.slice(..cut)).is_err(), "cut at {cut}");
        }
    }
}
