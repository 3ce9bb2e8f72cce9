//! RocketMQ's message trace records (`org.apache.rocketmq.client.trace.TraceDataEncoder`): the
//! body of a message in the trace topic, as 4.x clients with `enableMsgTrace` write it, the
//! broker writes it with `brokerTraceEnable`, and `mqadmin queryMsgTraceById` reads it.
//!
//! A body is records back to back, each ended by [`FIELD_SPLITOR`] (`\u{2}`); a record's fields
//! are joined by [`CONTENT_SPLITOR`] (`\u{1}`), the first one naming its [`TraceType`]. The
//! trace message's keys are the traced messages' ids and keys ([`trace_keys`]), so a key lookup
//! in the trace topic finds every record of a message.
//!
//! [`TraceRecord::encode_into`] writes what RocketMQ 5.3's encoder writes, field for field,
//! except that a Pub with a client host gets it as a 15th field (the 4.x layout RocketMQ's
//! decoder still reads) and that a `\u{1}` or `\u{2}` inside a value becomes a space (RocketMQ
//! would write a broken record). [`decode`] accepts every layout RocketMQ's decoder accepts —
//! Pub of 12 to 15 fields, SubBefore of 8 (9 with the client host of 4.8), SubAfter of 6, 7 or
//! 9, EndTransaction of 13, Recall of 7 — and also the records RocketMQ's decoder cannot read
//! because Java's `split` dropped their empty last fields (a SubBefore without keys). A record
//! it cannot read is an error of that record only; the others still decode.

use std::fmt::Write as _;
use std::str::FromStr;

/// Joins the fields of a record (`TraceConstants.CONTENT_SPLITOR`).
pub const CONTENT_SPLITOR: char = '\u{1}';
/// Ends a record (`TraceConstants.FIELD_SPLITOR`).
pub const FIELD_SPLITOR: char = '\u{2}';
/// The default trace topic (`TopicValidator.RMQ_SYS_TRACE_TOPIC`).
pub const RMQ_SYS_TRACE_TOPIC: &str = "RMQ_SYS_TRACE_TOPIC";
/// The region a broker reports (`MixAll.DEFAULT_TRACE_REGION_ID`).
pub const DEFAULT_TRACE_REGION_ID: &str = "DefaultRegion";
/// Separates a message's keys in one string (`MessageConst.KEY_SEPARATOR`).
pub const KEY_SEPARATOR: char = ' ';

/// The kind of a record (`TraceType`), named as RocketMQ names it in the first field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TraceType {
    /// A send.
    Pub,
    /// A delay message recalled.
    Recall,
    /// A message handed to a consumer.
    SubBefore,
    /// A consumer done with a message.
    SubAfter,
    /// A transaction committed or rolled back.
    EndTransaction,
}

impl TraceType {
    /// RocketMQ's name, the record's first field.
    pub fn name(self) -> &'static str {
        match self {
            TraceType::Pub => "Pub",
            TraceType::Recall => "Recall",
            TraceType::SubBefore => "SubBefore",
            TraceType::SubAfter => "SubAfter",
            TraceType::EndTransaction => "EndTransaction",
        }
    }
}

/// RocketMQ's `MessageType`, written as its ordinal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageType {
    /// `Normal_Msg` (0).
    NormalMsg,
    /// `Trans_Msg_Half` (1): a transactional half message.
    TransMsgHalf,
    /// `Trans_msg_Commit` (2).
    TransMsgCommit,
    /// `Delay_Msg` (3).
    DelayMsg,
    /// `Order_Msg` (4).
    OrderMsg,
}

impl MessageType {
    const ALL: [MessageType; 5] = [
        MessageType::NormalMsg,
        MessageType::TransMsgHalf,
        MessageType::TransMsgCommit,
        MessageType::DelayMsg,
        MessageType::OrderMsg,
    ];

    /// The Java ordinal.
    pub fn ordinal(self) -> usize {
        match self {
            MessageType::NormalMsg => 0,
            MessageType::TransMsgHalf => 1,
            MessageType::TransMsgCommit => 2,
            MessageType::DelayMsg => 3,
            MessageType::OrderMsg => 4,
        }
    }

    /// The type of an ordinal; `None` past the last one.
    pub fn from_ordinal(ordinal: usize) -> Option<MessageType> {
        Self::ALL.get(ordinal).copied()
    }
}

/// RocketMQ's `LocalTransactionState`, written by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransactionState {
    /// `COMMIT_MESSAGE`.
    CommitMessage,
    /// `ROLLBACK_MESSAGE`.
    RollbackMessage,
    /// `UNKNOW` (sic).
    Unknow,
}

impl TransactionState {
    /// RocketMQ's name.
    pub fn name(self) -> &'static str {
        match self {
            TransactionState::CommitMessage => "COMMIT_MESSAGE",
            TransactionState::RollbackMessage => "ROLLBACK_MESSAGE",
            TransactionState::Unknow => "UNKNOW",
        }
    }

    fn from_name(name: &str) -> Option<TransactionState> {
        [
            TransactionState::CommitMessage,
            TransactionState::RollbackMessage,
            TransactionState::Unknow,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }
}

/// A send (`Pub`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PubRecord {
    /// When the send began (ms since the epoch).
    pub timestamp_ms: i64,
    /// The broker's region.
    pub region_id: String,
    /// The producer group.
    pub group: String,
    /// The message's topic.
    pub topic: String,
    /// The message id (the client's, `UNIQ_KEY`).
    pub msg_id: String,
    /// Its tags.
    pub tags: String,
    /// Its keys, space-separated.
    pub keys: String,
    /// The broker that stored it.
    pub store_host: String,
    /// Its body's length.
    pub body_length: i32,
    /// How long the send took (ms).
    pub cost_time_ms: i32,
    /// Its type.
    pub msg_type: MessageType,
    /// Its offset message id; `None` in the 13-field layout.
    pub offset_msg_id: Option<String>,
    /// Whether it was stored.
    pub success: bool,
    /// The producer's host; only in the 15-field layout.
    pub client_host: Option<String>,
}

/// A message handed to a consumer group (`SubBefore`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubBeforeRecord {
    /// When (ms since the epoch).
    pub timestamp_ms: i64,
    /// The region.
    pub region_id: String,
    /// The consumer group.
    pub group: String,
    /// Names the delivery; its SubAfter carries it too.
    pub request_id: String,
    /// The message id.
    pub msg_id: String,
    /// Deliveries before this one.
    pub retry_times: i32,
    /// The message's keys.
    pub keys: String,
    /// The consumer's host; only in 4.8's 9-field layout.
    pub client_host: Option<String>,
}

/// A consumer done with a message (`SubAfter`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubAfterRecord {
    /// The request id of its SubBefore.
    pub request_id: String,
    /// The message id.
    pub msg_id: String,
    /// Time from delivery to the end of consumption (ms).
    pub cost_time_ms: i32,
    /// Whether it was consumed.
    pub success: bool,
    /// The message's keys.
    pub keys: String,
    /// The ordinal of RocketMQ's `ConsumeReturnType` (0 `SUCCESS`; 0 when absent).
    pub context_code: i32,
    /// When (ms since the epoch); `None` in the 6- and 7-field layouts (and the cloud one).
    pub timestamp_ms: Option<i64>,
    /// The consumer group; empty in the 6- and 7-field layouts.
    pub group: String,
}

/// A transaction's end (`EndTransaction`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndTransactionRecord {
    /// When (ms since the epoch).
    pub timestamp_ms: i64,
    /// The region.
    pub region_id: String,
    /// The producer group.
    pub group: String,
    /// The half message's topic.
    pub topic: String,
    /// Its message id.
    pub msg_id: String,
    /// Its tags.
    pub tags: String,
    /// Its keys.
    pub keys: String,
    /// The broker.
    pub store_host: String,
    /// Its type (RocketMQ writes `Trans_msg_Commit` whatever the state).
    pub msg_type: MessageType,
    /// The transaction id.
    pub transaction_id: String,
    /// Committed, rolled back or unknown.
    pub transaction_state: TransactionState,
    /// Whether the producer answered a check.
    pub from_transaction_check: bool,
}

/// A delay message recalled (`Recall`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecallRecord {
    /// When (ms since the epoch).
    pub timestamp_ms: i64,
    /// The region.
    pub region_id: String,
    /// The producer group.
    pub group: String,
    /// The topic.
    pub topic: String,
    /// The message id.
    pub msg_id: String,
    /// Whether it was recalled.
    pub success: bool,
}

/// One trace record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceRecord {
    /// A send.
    Pub(PubRecord),
    /// A delivery.
    SubBefore(SubBeforeRecord),
    /// A consumption's end.
    SubAfter(SubAfterRecord),
    /// A transaction's end.
    EndTransaction(EndTransactionRecord),
    /// A recall.
    Recall(RecallRecord),
}

/// A record that cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("trace record {index} ({kind:?}): {why}")]
pub struct TraceDecodeError {
    /// Its 0-based place in the body.
    pub index: usize,
    /// Its first field (the type's name as written).
    pub kind: String,
    /// What is wrong.
    pub why: String,
}

impl TraceRecord {
    /// Its type.
    pub fn trace_type(&self) -> TraceType {
        match self {
            TraceRecord::Pub(_) => TraceType::Pub,
            TraceRecord::SubBefore(_) => TraceType::SubBefore,
            TraceRecord::SubAfter(_) => TraceType::SubAfter,
            TraceRecord::EndTransaction(_) => TraceType::EndTransaction,
            TraceRecord::Recall(_) => TraceType::Recall,
        }
    }

    /// The traced message's id.
    pub fn msg_id(&self) -> &str {
        match self {
            TraceRecord::Pub(r) => &r.msg_id,
            TraceRecord::SubBefore(r) => &r.msg_id,
            TraceRecord::SubAfter(r) => &r.msg_id,
            TraceRecord::EndTransaction(r) => &r.msg_id,
            TraceRecord::Recall(r) => &r.msg_id,
        }
    }

    /// The traced message's keys, space-separated (a Recall has none).
    pub fn keys(&self) -> &str {
        match self {
            TraceRecord::Pub(r) => &r.keys,
            TraceRecord::SubBefore(r) => &r.keys,
            TraceRecord::SubAfter(r) => &r.keys,
            TraceRecord::EndTransaction(r) => &r.keys,
            TraceRecord::Recall(_) => "",
        }
    }

    /// Appends the record, ended by [`FIELD_SPLITOR`], as RocketMQ's encoder writes it.
    pub fn encode_into(&self, out: &mut String) {
        let mut w = Writer { out, first: true };
        w.field(self.trace_type().name());
        match self {
            TraceRecord::Pub(r) => encode_pub(&mut w, r),
            TraceRecord::SubBefore(r) => encode_sub_before(&mut w, r),
            TraceRecord::SubAfter(r) => encode_sub_after(&mut w, r),
            TraceRecord::EndTransaction(r) => encode_end_transaction(&mut w, r),
            TraceRecord::Recall(r) => encode_recall(&mut w, r),
        }
        w.out.push(FIELD_SPLITOR);
    }
}

/// The body of a trace message holding `records`.
pub fn encode(records: &[TraceRecord]) -> String {
    let mut out = String::with_capacity(records.len() * 160);
    for r in records {
        r.encode_into(&mut out);
    }
    out
}

/// The keys of a trace message holding `records` (`TraceTransferBean.transKey`): each traced
/// message's id and keys, each once, in order of appearance.
pub fn trace_keys<'a>(records: impl IntoIterator<Item = &'a TraceRecord>) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for r in records {
        let own = std::iter::once(r.msg_id()).chain(r.keys().split(KEY_SEPARATOR));
        for k in own.filter(|k| !k.is_empty()) {
            if !keys.iter().any(|x| x == k) {
                keys.push(k.to_string());
            }
        }
    }
    keys
}

/// The records of a trace message body, in order; an unreadable one is an `Err` in its
/// place. Empty records (a body ending in two splitters) are skipped, as RocketMQ skips them.
pub fn decode(body: &str) -> impl Iterator<Item = Result<TraceRecord, TraceDecodeError>> + '_ {
    body.split(FIELD_SPLITOR)
        .enumerate()
        .filter(|(_, record)| !record.is_empty())
        .map(|(index, record)| decode_record(index, record))
}

/// Writes the fields of one record, each but the first preceded by [`CONTENT_SPLITOR`].
struct Writer<'a> {
    out: &'a mut String,
    first: bool,
}

impl Writer<'_> {
    fn field(&mut self, value: &str) {
        if !std::mem::take(&mut self.first) {
            self.out.push(CONTENT_SPLITOR);
        }
        self.out.extend(value.chars().map(|c| match c {
            CONTENT_SPLITOR | FIELD_SPLITOR => ' ',
            c => c,
        }));
    }

    fn num(&mut self, value: impl std::fmt::Display) {
        self.field("");
        let _ = write!(self.out, "{value}");
    }
}

fn encode_pub(w: &mut Writer<'_>, r: &PubRecord) {
    w.num(r.timestamp_ms);
    for v in [
        &r.region_id,
        &r.group,
        &r.topic,
        &r.msg_id,
        &r.tags,
        &r.keys,
        &r.store_host,
    ] {
        w.field(v);
    }
    w.num(r.body_length);
    w.num(r.cost_time_ms);
    w.num(r.msg_type.ordinal());
    if r.offset_msg_id.is_some() || r.client_host.is_some() {
        w.field(r.offset_msg_id.as_deref().unwrap_or_default());
    }
    w.num(r.success);
    if let Some(host) = &r.client_host {
        w.field(host);
    }
}

fn encode_sub_before(w: &mut Writer<'_>, r: &SubBeforeRecord) {
    w.num(r.timestamp_ms);
    for v in [&r.region_id, &r.group, &r.request_id, &r.msg_id] {
        w.field(v);
    }
    w.num(r.retry_times);
    w.field(&r.keys);
    if let Some(host) = &r.client_host {
        w.field(host);
    }
}

/// RocketMQ ends the context code with a splitter, then writes time and group unless the
/// client runs in the cloud channel: `…code\u{1}` or `…code\u{1}time\u{1}group`.
fn encode_sub_after(w: &mut Writer<'_>, r: &SubAfterRecord) {
    w.field(&r.request_id);
    w.field(&r.msg_id);
    w.num(r.cost_time_ms);
    w.num(r.success);
    w.field(&r.keys);
    w.num(r.context_code);
    match r.timestamp_ms {
        Some(ms) => {
            w.num(ms);
            w.field(&r.group);
        }
        None => w.field(""),
    }
}

fn encode_end_transaction(w: &mut Writer<'_>, r: &EndTransactionRecord) {
    w.num(r.timestamp_ms);
    for v in [
        &r.region_id,
        &r.group,
        &r.topic,
        &r.msg_id,
        &r.tags,
        &r.keys,
        &r.store_host,
    ] {
        w.field(v);
    }
    w.num(r.msg_type.ordinal());
    w.field(&r.transaction_id);
    w.field(r.transaction_state.name());
    w.num(r.from_transaction_check);
}

fn encode_recall(w: &mut Writer<'_>, r: &RecallRecord) {
    w.num(r.timestamp_ms);
    for v in [&r.region_id, &r.group, &r.topic, &r.msg_id] {
        w.field(v);
    }
    w.num(r.success);
}

/// The fields of one record being read.
struct Fields<'a> {
    index: usize,
    parts: Vec<&'a str>,
}

impl Fields<'_> {
    fn error(&self, why: impl Into<String>) -> TraceDecodeError {
        TraceDecodeError {
            index: self.index,
            kind: self.parts.first().copied().unwrap_or_default().to_string(),
            why: why.into(),
        }
    }

    fn len(&self) -> usize {
        self.parts.len()
    }

    fn raw(&self, i: usize) -> Result<&str, TraceDecodeError> {
        self.parts
            .get(i)
            .copied()
            .ok_or_else(|| self.error(format!("{} fields, field {i} missing", self.len())))
    }

    fn text(&self, i: usize) -> Result<String, TraceDecodeError> {
        self.raw(i).map(String::from)
    }

    /// Field `i`, empty when the record ends before it (Java dropped it as an empty last
    /// field).
    fn text_or_empty(&self, i: usize) -> String {
        self.parts.get(i).copied().unwrap_or_default().to_string()
    }

    /// Field `i` when present and not empty.
    fn present(&self, i: usize) -> Option<&str> {
        self.parts.get(i).copied().filter(|v| !v.is_empty())
    }

    fn num<T: FromStr>(&self, i: usize, what: &str) -> Result<T, TraceDecodeError> {
        let v = self.raw(i)?;
        v.parse()
            .map_err(|_| self.error(format!("field {i} ({what}) {v:?} is not a number")))
    }

    /// Java's `Boolean.parseBoolean`: `true` in any letter case, anything else false.
    fn boolean(&self, i: usize) -> Result<bool, TraceDecodeError> {
        Ok(self.raw(i)?.eq_ignore_ascii_case("true"))
    }

    fn msg_type(&self, i: usize) -> Result<MessageType, TraceDecodeError> {
        let ordinal: usize = self.num(i, "message type")?;
        MessageType::from_ordinal(ordinal)
            .ok_or_else(|| self.error(format!("field {i}: no message type {ordinal}")))
    }
}

fn decode_record(index: usize, record: &str) -> Result<TraceRecord, TraceDecodeError> {
    let f = Fields {
        index,
        parts: record.split(CONTENT_SPLITOR).collect(),
    };
    match f.parts[0] {
        "Pub" => decode_pub(&f).map(TraceRecord::Pub),
        "SubBefore" => decode_sub_before(&f).map(TraceRecord::SubBefore),
        "SubAfter" => decode_sub_after(&f).map(TraceRecord::SubAfter),
        "EndTransaction" => decode_end_transaction(&f).map(TraceRecord::EndTransaction),
        "Recall" => decode_recall(&f).map(TraceRecord::Recall),
        _ => Err(f.error("unknown trace type")),
    }
}

/// 13 fields end in success; 14 in offset message id and success; 15 add the client host.
/// RocketMQ also reads 12 (success then stays true).
fn decode_pub(f: &Fields<'_>) -> Result<PubRecord, TraceDecodeError> {
    let (offset_msg_id, success) = match f.len() {
        12 => (None, true),
        13 => (None, f.boolean(12)?),
        _ => (Some(f.text(12)?), f.boolean(13)?),
    };
    Ok(PubRecord {
        timestamp_ms: f.num(1, "timestamp")?,
        region_id: f.text(2)?,
        group: f.text(3)?,
        topic: f.text(4)?,
        msg_id: f.text(5)?,
        tags: f.text(6)?,
        keys: f.text(7)?,
        store_host: f.text(8)?,
        body_length: f.num(9, "body length")?,
        cost_time_ms: f.num(10, "cost time")?,
        msg_type: f.msg_type(11)?,
        offset_msg_id,
        success,
        client_host: f.present(14).map(String::from),
    })
}

fn decode_sub_before(f: &Fields<'_>) -> Result<SubBeforeRecord, TraceDecodeError> {
    Ok(SubBeforeRecord {
        timestamp_ms: f.num(1, "timestamp")?,
        region_id: f.text(2)?,
        group: f.text(3)?,
        request_id: f.text(4)?,
        msg_id: f.text(5)?,
        retry_times: f.num(6, "retry times")?,
        keys: f.text_or_empty(7),
        client_host: f.present(8).map(String::from),
    })
}

fn decode_sub_after(f: &Fields<'_>) -> Result<SubAfterRecord, TraceDecodeError> {
    let context_code = match f.present(6) {
        Some(_) => f.num(6, "context code")?,
        None => 0,
    };
    let timestamp_ms = match f.present(7) {
        Some(_) => Some(f.num(7, "timestamp")?),
        None => None,
    };
    Ok(SubAfterRecord {
        request_id: f.text(1)?,
        msg_id: f.text(2)?,
        cost_time_ms: f.num(3, "cost time")?,
        success: f.boolean(4)?,
        keys: f.text_or_empty(5),
        context_code,
        timestamp_ms,
        group: f.text_or_empty(8),
    })
}

fn decode_end_transaction(f: &Fields<'_>) -> Result<EndTransactionRecord, TraceDecodeError> {
    let state = f.raw(11)?;
    let transaction_state = TransactionState::from_name(state)
        .ok_or_else(|| f.error(format!("field 11: no transaction state {state:?}")))?;
    Ok(EndTransactionRecord {
        timestamp_ms: f.num(1, "timestamp")?,
        region_id: f.text(2)?,
        group: f.text(3)?,
        topic: f.text(4)?,
        msg_id: f.text(5)?,
        tags: f.text(6)?,
        keys: f.text(7)?,
        store_host: f.text(8)?,
        msg_type: f.msg_type(9)?,
        transaction_id: f.text(10)?,
        transaction_state,
        from_transaction_check: f.boolean(12)?,
    })
}

fn decode_recall(f: &Fields<'_>) -> Result<RecallRecord, TraceDecodeError> {
    Ok(RecallRecord {
        timestamp_ms: f.num(1, "timestamp")?,
        region_id: f.text(2)?,
        group: f.text(3)?,
        topic: f.text(4)?,
        msg_id: f.text(5)?,
        success: f.boolean(6)?,
    })
}

#[cfg(test)]
mod tests;
