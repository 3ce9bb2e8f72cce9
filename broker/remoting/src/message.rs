//! RocketMQ's MessageExt record (`MessageDecoder`), as a PULL_MESSAGE, QUERY_MESSAGE or
//! VIEW_MESSAGE_BY_ID answer's body holds them back to back: a decoder for the clients in this
//! repository (the broker writes the records).

use bytes::{Buf, Bytes};

use crate::error::RemotingError;

/// sysFlag bit: the body is zlib-compressed.
pub const SYS_FLAG_COMPRESSED: i32 = 1;
/// sysFlag bit: the born host is IPv6 (16 bytes).
pub const SYS_FLAG_BORN_HOST_V6: i32 = 1 << 4;
/// sysFlag bit: the store host is IPv6 (16 bytes).
pub const SYS_FLAG_STORE_HOST_V6: i32 = 1 << 5;

/// One decoded record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageRecord {
    /// Queue id.
    pub queue_id: i32,
    /// Queue offset.
    pub queue_offset: i64,
    /// Commit-log offset (what an offset message id names).
    pub commit_log_offset: i64,
    /// sysFlag.
    pub sys_flag: i32,
    /// Born time (ms since the epoch).
    pub born_ms: i64,
    /// Store time (ms since the epoch).
    pub store_ms: i64,
    /// Times consumed again.
    pub reconsume_times: i32,
    /// The body, as stored (still compressed when sysFlag says so).
    pub body: Bytes,
    /// Topic.
    pub topic: String,
    /// The properties string (`key \x01 value \x02 …`).
    pub properties: String,
}

fn malformed(reason: &'static str) -> RemotingError {
    RemotingError::Malformed { reason }
}

fn need(r: &Bytes, n: usize) -> Result<(), RemotingError> {
    if r.remaining() < n {
        return Err(malformed("MessageExt record cut short"));
    }
    Ok(())
}

/// The records of `body`, in order.
///
/// # Errors
/// [`RemotingError::Malformed`] when a record's sizes run past its end.
pub fn decode_records(mut body: Bytes) -> Result<Vec<MessageRecord>, RemotingError> {
    let mut out = Vec::new();
    while body.has_remaining() {
        need(&body, 4)?;
        let total =
            usize::try_from(body.get_i32()).map_err(|_| malformed("negative record size"))?;
        if total < 4 || total - 4 > body.remaining() {
            return Err(malformed("MessageExt record size beyond the body"));
        }
        out.push(decode_record(body.split_to(total - 4))?);
    }
    Ok(out)
}

/// One record after its size field.
fn decode_record(mut r: Bytes) -> Result<MessageRecord, RemotingError> {
    need(&r, 4 + 4 + 4 + 4 + 8 + 8 + 4 + 8)?;
    let _magic = r.get_i32();
    let _body_crc = r.get_i32();
    let queue_id = r.get_i32();
    let _flag = r.get_i32();
    let queue_offset = r.get_i64();
    let commit_log_offset = r.get_i64();
    let sys_flag = r.get_i32();
    let born_ms = r.get_i64();
    let host = |v6: bool| if v6 { 16 + 4 } else { 4 + 4 };
    need(&r, host(sys_flag & SYS_FLAG_BORN_HOST_V6 != 0) + 8)?;
    r.advance(host(sys_flag & SYS_FLAG_BORN_HOST_V6 != 0));
    let store_ms = r.get_i64();
    need(&r, host(sys_flag & SYS_FLAG_STORE_HOST_V6 != 0) + 4 + 8 + 4)?;
    r.advance(host(sys_flag & SYS_FLAG_STORE_HOST_V6 != 0));
    let reconsume_times = r.get_i32();
    let _prepared_transaction_offset = r.get_i64();
    let body_len = usize::try_from(r.get_i32()).map_err(|_| malformed("negative body length"))?;
    need(&r, body_len + 1)?;
    let body = r.split_to(body_len);
    let topic_len = usize::from(r.get_u8());
    need(&r, topic_len + 2)?;
    let topic = String::from_utf8_lossy(&r.split_to(topic_len)).into_owned();
    let props_len =
        usize::try_from(r.get_i16()).map_err(|_| malformed("negative properties length"))?;
    need(&r, props_len)?;
    let properties = String::from_utf8_lossy(&r.split_to(props_len)).into_owned();
    Ok(MessageRecord {
        queue_id,
        queue_offset,
        commit_log_offset,
        sys_flag,
        born_ms,
        store_ms,
        reconsume_times,
        body,
        topic,
        properties,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};

    fn record(out: &mut BytesMut, queue_offset: i64, body: &[u8]) {
        let topic = b"TopicTest";
        let props = b"KEYS\x01k\x02";
        let total = 4 * 5
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
            + body.len()
            + 1
            + topic.len()
            + 2
            + props.len();
        out.put_i32(i32::try_from(total).expect("small"));
        out.put_i32(0xDAA3_20A7_u32 as i32);
        out.put_i32(0);
        out.put_i32(3);
        out.put_i32(0);
        out.put_i64(queue_offset);
        out.put_i64(7 << 24);
        out.put_i32(0);
        out.put_i64(1_000);
        out.put_slice(&[127, 0, 0, 1, 0, 0, 0, 1]);
        out.put_i64(2_000);
        out.put_slice(&[127, 0, 0, 1, 0, 0, 0, 2]);
        out.put_i32(1);
        out.put_i64(0);
        out.put_i32(i32::try_from(body.len()).expect("small"));
        out.put_slice(body);
        out.put_u8(u8::try_from(topic.len()).expect("small"));
        out.put_slice(topic);
        out.put_i16(i16::try_from(props.len()).expect("small"));
        out.put_slice(props);
    }

    #[test]
    fn records_back_to_back_decode_and_every_cut_is_refused() {
        let mut out = BytesMut::new();
        record(&mut out, 41, b"one");
        record(&mut out, 42, b"two!");
        let body = out.freeze();
        let records = decode_records(body.clone()).expect("decodes");
        assert_eq!(records.len(), 2);
        assert_eq!(
            (
                records[0].queue_offset,
                records[0].body.as_ref(),
                records[0].topic.as_str()
            ),
            (41, &b"one"[..], "TopicTest")
        );
        assert_eq!((records[1].born_ms, records[1].store_ms), (1_000, 2_000));
        assert_eq!((records[1].queue_id, records[1].reconsume_times), (3, 1));
        assert_eq!(records[1].properties, "KEYS\u{1}k\u{2}");
        let first_len = usize::try_from(u32::from_be_bytes([body[0], body[1], body[2], body[3]]))
            .expect("small");
        for cut in 1..body.len() {
            let decoded = decode_records(body.slice(..cut));
            if cut == first_len {
                assert_eq!(decoded.expect("the first record alone").len(), 1);
            } else {
                assert!(decoded.is_err(), "cut at {cut}");
            }
        }
    }
}
