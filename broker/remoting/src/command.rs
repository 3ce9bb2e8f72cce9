//! [`RemotingCommand`] and its two header encodings.
//!
//! A frame's header is JSON (`serialize_type` 0) or RocketMQ's binary layout (1):
//! code i16, language u8, version i16, opaque i32, flag i32, then remark and the ext fields
//! as length-prefixed strings (i32 for the remark and the whole map, i16 for a key, i32 for a
//! value). A response is written in the header type of its request.

use std::collections::HashMap;
use std::str::FromStr;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::error::{FieldError, RemotingError};

/// Flag bit 0: this command is a response.
const FLAG_RESPONSE: i32 = 1;
/// Flag bit 1: no response is expected.
const FLAG_ONEWAY: i32 = 1 << 1;
/// The version RaftMQ writes in its own requests (RocketMQ 4.9.x's `V4_9_4`).
const OUR_VERSION: i32 = 435;

/// The ext fields of a command: RocketMQ's custom header, as strings.
pub type ExtFields = HashMap<String, String>;

/// Ext fields from `(key, value)` pairs.
pub fn ext_fields(pairs: &[(&str, &str)]) -> ExtFields {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

/// How a command's header is encoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SerializeType {
    /// JSON (`RemotingSerializable`), what most clients send.
    #[default]
    Json,
    /// RocketMQ's binary layout (`RocketMQSerializable`).
    RocketMq,
}

/// The client language a command says it comes from (RocketMQ's `LanguageCode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LanguageCode {
    /// Java.
    Java,
    /// C++ (also the Python 4.x client over it).
    Cpp,
    /// .NET.
    Dotnet,
    /// Python.
    Python,
    /// Go.
    Go,
    /// Rust (RaftMQ and rocketmq-rust).
    #[default]
    Rust,
    /// Node.js.
    NodeJs,
    /// Anything else.
    Other,
}

const LANGUAGES: [(LanguageCode, &str, u8); 8] = [
    (LanguageCode::Java, "JAVA", 0),
    (LanguageCode::Cpp, "CPP", 1),
    (LanguageCode::Dotnet, "DOTNET", 2),
    (LanguageCode::Python, "PYTHON", 3),
    (LanguageCode::Other, "OTHER", 7),
    (LanguageCode::Go, "GO", 9),
    (LanguageCode::Rust, "RUST", 12),
    (LanguageCode::NodeJs, "NODE_JS", 13),
];

impl LanguageCode {
    /// RocketMQ's name (`JAVA`, `CPP`, …).
    pub fn name(self) -> &'static str {
        LANGUAGES
            .iter()
            .find(|l| l.0 == self)
            .map_or("OTHER", |l| l.1)
    }

    fn code(self) -> u8 {
        LANGUAGES.iter().find(|l| l.0 == self).map_or(7, |l| l.2)
    }

    fn from_name(name: &str) -> LanguageCode {
        LANGUAGES
            .iter()
            .find(|l| l.1 == name)
            .map_or(LanguageCode::Other, |l| l.0)
    }

    fn from_code(code: u8) -> LanguageCode {
        LANGUAGES
            .iter()
            .find(|l| l.2 == code)
            .map_or(LanguageCode::Other, |l| l.0)
    }
}

/// One request or response.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemotingCommand {
    /// Request code, or response code in a response.
    pub code: i32,
    /// The sender's language.
    pub language: LanguageCode,
    /// The sender's protocol version.
    pub version: i32,
    /// Matches a response to its request.
    pub opaque: i32,
    /// Bit 0 response, bit 1 oneway.
    pub flag: i32,
    /// Free text (a response's error message).
    pub remark: String,
    /// The custom header's fields.
    pub ext_fields: ExtFields,
    /// The body.
    pub body: Bytes,
    /// The header encoding (a response copies its request's).
    pub serialize_type: SerializeType,
}

/// The JSON header as RocketMQ writes it.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonHeader {
    code: i32,
    #[serde(default)]
    language: String,
    #[serde(default)]
    version: i32,
    #[serde(default)]
    opaque: i32,
    #[serde(default)]
    flag: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    remark: Option<String>,
    #[serde(
        default,
        deserialize_with = "ext_fields_lenient",
        skip_serializing_if = "HashMap::is_empty"
    )]
    ext_fields: ExtFields,
}

/// Ext fields whose values are strings; a client that writes a number or a boolean gets it
/// as its JSON text, `null` as absent.
fn ext_fields_lenient<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ExtFields, D::Error> {
    let raw: Option<HashMap<String, serde_json::Value>> = Option::deserialize(d)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some((k, s)),
            other => Some((k, other.to_string())),
        })
        .collect())
}

impl RemotingCommand {
    /// A request with `code` and `fields`.
    pub fn request(code: i32, fields: ExtFields) -> RemotingCommand {
        RemotingCommand {
            code,
            version: OUR_VERSION,
            ext_fields: fields,
            ..RemotingCommand::default()
        }
    }

    /// The response to `request` with `code`: same opaque and header type.
    pub fn response_to(request: &RemotingCommand, code: i32) -> RemotingCommand {
        RemotingCommand {
            code,
            version: OUR_VERSION,
            opaque: request.opaque,
            flag: FLAG_RESPONSE,
            serialize_type: request.serialize_type,
            ..RemotingCommand::default()
        }
    }

    /// Sets the remark.
    #[must_use]
    pub fn with_remark(mut self, remark: impl Into<String>) -> Self {
        self.remark = remark.into();
        self
    }

    /// Sets the body.
    #[must_use]
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Adds an ext field.
    #[must_use]
    pub fn with_field(mut self, key: &str, value: impl ToString) -> Self {
        self.ext_fields.insert(key.to_string(), value.to_string());
        self
    }

    /// Whether this is a response.
    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    /// Whether the sender expects no response.
    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    /// Marks the command oneway.
    pub fn mark_oneway(&mut self) {
        self.flag |= FLAG_ONEWAY;
    }

    /// An ext field, absent or not.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.ext_fields.get(name).map(String::as_str)
    }

    /// A required ext field.
    ///
    /// # Errors
    /// [`FieldError::Missing`] names it.
    pub fn required(&self, name: &str) -> Result<&str, FieldError> {
        self.field(name).ok_or_else(|| FieldError::Missing {
            field: name.to_string(),
        })
    }

    /// A required ext field parsed as `T`.
    ///
    /// # Errors
    /// Missing, or not a `T` (the error names the field and value).
    pub fn parsed<T: FromStr>(&self, name: &str, expected: &'static str) -> Result<T, FieldError> {
        let value = self.required(name)?;
        parse_field(name, value, expected)
    }

    /// An optional ext field parsed as `T` (absent or empty = `None`).
    ///
    /// # Errors
    /// Present but not a `T`.
    pub fn parsed_opt<T: FromStr>(
        &self,
        name: &str,
        expected: &'static str,
    ) -> Result<Option<T>, FieldError> {
        match self.field(name) {
            None | Some("") => Ok(None),
            Some(value) => parse_field(name, value, expected).map(Some),
        }
    }

    /// The header bytes in this command's serialize type.
    fn encode_header(&self) -> Vec<u8> {
        match self.serialize_type {
            SerializeType::Json => self.encode_json_header(),
            SerializeType::RocketMq => self.encode_binary_header(),
        }
    }

    fn encode_json_header(&self) -> Vec<u8> {
        let header = JsonHeader {
            code: self.code,
            language: self.language.name().to_string(),
            version: self.version,
            opaque: self.opaque,
            flag: self.flag,
            remark: (!self.remark.is_empty()).then(|| self.remark.clone()),
            ext_fields: self.ext_fields.clone(),
        };
        // A struct of strings and integers always serializes.
        serde_json::to_vec(&header).unwrap_or_default()
    }

    fn encode_binary_header(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.put_i16(i16::try_from(self.code).unwrap_or(i16::MAX));
        out.put_u8(self.language.code());
        out.put_i16(i16::try_from(self.version).unwrap_or(i16::MAX));
        out.put_i32(self.opaque);
        out.put_i32(self.flag);
        put_long_str(&mut out, self.remark.as_bytes());
        let mut map = Vec::new();
        for (k, v) in &self.ext_fields {
            map.put_i16(i16::try_from(k.len()).unwrap_or(i16::MAX));
            map.put_slice(k.as_bytes());
            put_long_str(&mut map, v.as_bytes());
        }
        put_long_str(&mut out, &map);
        out
    }

    /// Writes the whole frame (length prefix included) to `dst`.
    pub fn encode_frame(&self, dst: &mut BytesMut) {
        let header = self.encode_header();
        let header_len = u32::try_from(header.len()).unwrap_or(u32::MAX) & 0x00FF_FFFF;
        let total = 4 + header.len() + self.body.len();
        dst.reserve(4 + total);
        dst.put_u32(u32::try_from(total).unwrap_or(u32::MAX));
        let kind: u32 = match self.serialize_type {
            SerializeType::Json => 0,
            SerializeType::RocketMq => 1,
        };
        dst.put_u32((kind << 24) | header_len);
        dst.put_slice(&header);
        dst.put_slice(&self.body);
    }

    /// Decodes a frame's content: everything after the length prefix.
    ///
    /// # Errors
    /// Lengths that do not fit, a header that does not parse.
    pub fn decode_frame(mut frame: Bytes) -> Result<RemotingCommand, RemotingError> {
        if frame.len() < 4 {
            return Err(RemotingError::Malformed {
                reason: "frame shorter than its header length",
            });
        }
        let mark = frame.get_u32();
        let header_len = (mark & 0x00FF_FFFF) as usize;
        if header_len > frame.len() {
            return Err(RemotingError::Malformed {
                reason: "header length exceeds the frame",
            });
        }
        let header = frame.split_to(header_len);
        let mut cmd = match mark >> 24 {
            0 => decode_json_header(&header)?,
            1 => decode_binary_header(header)?,
            other => {
                return Err(RemotingError::SerializeType {
                    value: u8::try_from(other).unwrap_or(u8::MAX),
                });
            }
        };
        cmd.body = frame;
        Ok(cmd)
    }
}

fn parse_field<T: FromStr>(
    name: &str,
    value: &str,
    expected: &'static str,
) -> Result<T, FieldError> {
    value.trim().parse().map_err(|_| FieldError::Invalid {
        field: name.to_string(),
        value: value.to_string(),
        expected,
    })
}

fn put_long_str(out: &mut Vec<u8>, s: &[u8]) {
    out.put_i32(i32::try_from(s.len()).unwrap_or(i32::MAX));
    out.put_slice(s);
}

fn decode_json_header(header: &[u8]) -> Result<RemotingCommand, RemotingError> {
    let h: JsonHeader =
        serde_json::from_slice(header).map_err(|source| RemotingError::Json { source })?;
    Ok(RemotingCommand {
        code: h.code,
        language: LanguageCode::from_name(&h.language),
        version: h.version,
        opaque: h.opaque,
        flag: h.flag,
        remark: h.remark.unwrap_or_default(),
        ext_fields: h.ext_fields,
        body: Bytes::new(),
        serialize_type: SerializeType::Json,
    })
}

fn decode_binary_header(mut h: Bytes) -> Result<RemotingCommand, RemotingError> {
    const FIXED: usize = 2 + 1 + 2 + 4 + 4;
    if h.len() < FIXED {
        return Err(RemotingError::Malformed {
            reason: "binary header shorter than its fixed part",
        });
    }
    let code = i32::from(h.get_i16());
    let language = LanguageCode::from_code(h.get_u8());
    let version = i32::from(h.get_i16());
    let opaque = h.get_i32();
    let flag = h.get_i32();
    let remark = take_str(&mut h, LenWidth::I32)?;
    let mut map = take_bytes(&mut h, LenWidth::I32)?;
    let mut ext_fields = ExtFields::new();
    while map.has_remaining() {
        let k = take_str(&mut map, LenWidth::I16)?;
        let v = take_str(&mut map, LenWidth::I32)?;
        ext_fields.insert(k, v);
    }
    Ok(RemotingCommand {
        code,
        language,
        version,
        opaque,
        flag,
        remark,
        ext_fields,
        body: Bytes::new(),
        serialize_type: SerializeType::RocketMq,
    })
}

#[derive(Clone, Copy)]
enum LenWidth {
    I16,
    I32,
}

fn take_bytes(b: &mut Bytes, width: LenWidth) -> Result<Bytes, RemotingError> {
    let short = RemotingError::Malformed {
        reason: "binary header field runs past its end",
    };
    let len = match width {
        LenWidth::I16 if b.remaining() >= 2 => i64::from(b.get_i16()),
        LenWidth::I32 if b.remaining() >= 4 => i64::from(b.get_i32()),
        _ => return Err(short),
    };
    let len = usize::try_from(len.max(0)).unwrap_or(usize::MAX);
    if len > b.remaining() {
        return Err(short);
    }
    Ok(b.split_to(len))
}

fn take_str(b: &mut Bytes, width: LenWidth) -> Result<String, RemotingError> {
    let raw = take_bytes(b, width)?;
    String::from_utf8(raw.to_vec()).map_err(|_| RemotingError::Malformed {
        reason: "binary header string is not UTF-8",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(cmd: &RemotingCommand) -> RemotingCommand {
        let mut buf = BytesMut::new();
        cmd.encode_frame(&mut buf);
        let mut frame = buf.freeze();
        let total = frame.get_u32() as usize;
        assert_eq!(total, frame.len());
        RemotingCommand::decode_frame(frame).expect("decodes")
    }

    #[test]
    fn a_python_4x_route_request_decodes() {
        let header = br#"{"code":105,"extFields":{"AccessKey":"","OnsChannel":"ALIYUN","topic":"TopicTest"},"flag":0,"language":"CPP","opaque":0,"remark":"","version":63}"#;
        let mut frame = BytesMut::new();
        frame.put_u32(u32::try_from(header.len()).expect("short"));
        frame.put_slice(header);
        let cmd = RemotingCommand::decode_frame(frame.freeze()).expect("decodes");
        assert_eq!(cmd.code, 105);
        assert_eq!(cmd.language, LanguageCode::Cpp);
        assert_eq!(cmd.version, 63);
        assert_eq!(cmd.field("topic"), Some("TopicTest"));
        assert!(!cmd.is_response());
    }

    #[test]
    fn non_string_ext_values_become_their_text() {
        let header = br#"{"code":34,"extFields":{"n":5,"b":true,"z":null}}"#;
        let mut frame = BytesMut::new();
        frame.put_u32(u32::try_from(header.len()).expect("short"));
        frame.put_slice(header);
        let cmd = RemotingCommand::decode_frame(frame.freeze()).expect("decodes");
        assert_eq!(cmd.field("n"), Some("5"));
        assert_eq!(cmd.field("b"), Some("true"));
        assert_eq!(cmd.field("z"), None);
    }

    #[test]
    fn a_response_copies_opaque_and_header_type() {
        let mut req = RemotingCommand::request(10, ExtFields::new());
        req.opaque = 77;
        req.serialize_type = SerializeType::RocketMq;
        let resp = RemotingCommand::response_to(&req, 0);
        assert!(resp.is_response());
        assert_eq!(
            (resp.opaque, resp.serialize_type),
            (77, SerializeType::RocketMq)
        );
    }

    #[test]
    fn a_field_error_names_the_field() {
        let req = RemotingCommand::request(11, ExtFields::new()).with_field("queueId", "x");
        let err = req.parsed::<u32>("queueId", "a queue id").expect_err("bad");
        assert!(err.to_string().contains("queueId"), "{err}");
        let err = req.parsed::<u32>("topic", "a topic").expect_err("missing");
        assert_eq!(
            err,
            FieldError::Missing {
                field: "topic".into()
            }
        );
    }

    #[test]
    fn truncated_binary_headers_are_refused() {
        let cmd = RemotingCommand {
            serialize_type: SerializeType::RocketMq,
            remark: "hello".into(),
            ..RemotingCommand::request(10, ExtFields::from([("a".into(), "b".into())]))
        };
        let mut buf = BytesMut::new();
        cmd.encode_frame(&mut buf);
        let full = buf.freeze().slice(4..);
        let header_len =
            (u32::from_be_bytes([full[0], full[1], full[2], full[3]]) & 0xFF_FFFF) as usize;
        for cut in 4..4 + header_len {
            let mut short = BytesMut::from(&full[..cut]);
            // Keep the header length honest to the bytes present.
            let len = u32::try_from(cut - 4).expect("short") | (1 << 24);
            short[..4].copy_from_slice(&len.to_be_bytes());
            assert!(
                RemotingCommand::decode_frame(short.freeze()).is_err(),
                "cut at {cut}"
            );
        }
    }

    fn arb_command() -> impl Strategy<Value = RemotingCommand> {
        (
            any::<i16>(),
            any::<i16>(),
            any::<i32>(),
            0..4i32,
            ".{0,12}",
            proptest::collection::hash_map("[a-zA-Z]{1,8}", ".{0,16}", 0..6),
            proptest::collection::vec(any::<u8>(), 0..64),
            any::<bool>(),
        )
            .prop_map(
                |(code, version, opaque, flag, remark, fields, body, binary)| RemotingCommand {
                    code: i32::from(code),
                    language: LanguageCode::Cpp,
                    version: i32::from(version),
                    opaque,
                    flag,
                    remark,
                    ext_fields: fields,
                    body: Bytes::from(body),
                    serialize_type: if binary {
                        SerializeType::RocketMq
                    } else {
                        SerializeType::Json
                    },
                },
            )
    }

    proptest! {
        #[test]
        fn both_header_types_round_trip(cmd in arb_command()) {
            prop_assert_eq!(round_trip(&cmd), cmd);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = RemotingCommand::decode_frame(Bytes::from(bytes));
        }
    }
}
