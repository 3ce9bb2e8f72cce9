//! A small length-prefixed binary codec for commands in the log (little-endian).
//!
//! Hand-written because the hot path (sends) must not pay for a self-describing format, and
//! bodies must travel as bytes, not as JSON arrays.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Why a record could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The record ends inside a field.
    #[error("malformed log record: {what}: need {need} bytes, have {have}")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Bytes the field needs.
        need: usize,
        /// Bytes left.
        have: usize,
    },
    /// A string field is not UTF-8.
    #[error("malformed log record: string is not UTF-8")]
    NotUtf8,
    /// A list claims more strings than the record can hold.
    #[error("malformed log record: list of {count} strings is longer than the record")]
    ListTooLong {
        /// The claimed length.
        count: usize,
    },
    /// Bytes follow the last field.
    #[error("malformed log record: {count} trailing bytes")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// The record's format version is not this one.
    #[error("malformed log record: record version {version}")]
    Version {
        /// The version found.
        version: u8,
    },
    /// An unknown command kind.
    #[error("malformed log record: command kind {kind}")]
    CommandKind {
        /// The kind found.
        kind: u8,
    },
    /// An unknown message type.
    #[error("malformed log record: message type {code}")]
    MessageType {
        /// The code found.
        code: u8,
    },
    /// An unknown kind of a subscription group's retry policy.
    #[error("malformed log record: retry policy kind {kind}")]
    RetryPolicy {
        /// The kind found.
        kind: u8,
    },
}

pub(crate) struct Writer {
    buf: BytesMut,
}

impl Writer {
    pub(crate) fn with_capacity(n: usize) -> Writer {
        Writer {
            buf: BytesMut::with_capacity(n),
        }
    }
    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.put_u8(v);
        self
    }
    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.put_u32_le(v);
        self
    }
    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.put_u64_le(v);
        self
    }
    pub(crate) fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.buf.put_u32_le(
            u32::try_from(v.len()).expect("field under 4 GiB: checked by maxMessageSize"),
        );
        self.buf.put_slice(v);
        self
    }
    pub(crate) fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }
    pub(crate) fn opt_str(&mut self, v: Option<&str>) -> &mut Self {
        match v {
            Some(s) => self.u8(1).str(s),
            None => self.u8(0),
        }
    }
    /// The length of a list that follows.
    pub(crate) fn count(&mut self, n: usize) -> &mut Self {
        self.u32(u32::try_from(n).expect("list under 4 Gi items: bounded by the entry size"))
    }
    pub(crate) fn strs(&mut self, v: &[String]) -> &mut Self {
        self.count(v.len());
        for s in v {
            self.str(s);
        }
        self
    }
    pub(crate) fn u64s(&mut self, v: &[u64]) -> &mut Self {
        self.count(v.len());
        for n in v {
            self.u64(*n);
        }
        self
    }
    pub(crate) fn finish(self) -> Bytes {
        self.buf.freeze()
    }
}

pub(crate) struct Reader {
    buf: Bytes,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Reader {
        Reader { buf }
    }
    fn need(&self, n: usize, what: &'static str) -> Result<(), DecodeError> {
        if self.buf.remaining() < n {
            return Err(DecodeError::Truncated {
                what,
                need: n,
                have: self.buf.remaining(),
            });
        }
        Ok(())
    }
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        self.need(1, "u8")?;
        Ok(self.buf.get_u8())
    }
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        self.need(4, "u32")?;
        Ok(self.buf.get_u32_le())
    }
    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        self.need(8, "u64")?;
        Ok(self.buf.get_u64_le())
    }
    /// A length-prefixed field, shared with the log entry (no copy).
    pub(crate) fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        let n = self.u32()? as usize;
        self.need(n, "field")?;
        Ok(self.buf.split_to(n))
    }
    pub(crate) fn str(&mut self) -> Result<String, DecodeError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError::NotUtf8)
    }
    pub(crate) fn opt_str(&mut self) -> Result<Option<String>, DecodeError> {
        Ok(if self.u8()? == 1 {
            Some(self.str()?)
        } else {
            None
        })
    }
    pub(crate) fn strs(&mut self) -> Result<Vec<String>, DecodeError> {
        let n = self.u32()? as usize;
        // Each string takes at least its 4-byte length: bound the allocation by the input.
        if n > self.buf.remaining() / 4 {
            return Err(DecodeError::ListTooLong { count: n });
        }
        (0..n).map(|_| self.str()).collect()
    }
    pub(crate) fn u64s(&mut self) -> Result<Vec<u64>, DecodeError> {
        let n = self.u32()? as usize;
        if n > self.buf.remaining() / 8 {
            return Err(DecodeError::ListTooLong { count: n });
        }
        (0..n).map(|_| self.u64()).collect()
    }
    /// Bytes left.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.remaining()
    }
    pub(crate) fn done(&self) -> Result<(), DecodeError> {
        if self.buf.has_remaining() {
            return Err(DecodeError::TrailingBytes {
                count: self.buf.remaining(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_truncation_is_an_error() {
        let mut w = Writer::with_capacity(64);
        w.u8(7)
            .u32(9)
            .u64(1 << 40)
            .str("topic")
            .opt_str(None)
            .opt_str(Some("g"))
            .strs(&["a".into(), "b".into()]);
        let b = w.finish();
        let mut r = Reader::new(b.clone());
        assert_eq!(r.u8().unwrap(), 7);
        assert_eq!(r.u32().unwrap(), 9);
        assert_eq!(r.u64().unwrap(), 1 << 40);
        assert_eq!(r.str().unwrap(), "topic");
        assert_eq!(r.opt_str().unwrap(), None);
        assert_eq!(r.opt_str().unwrap().as_deref(), Some("g"));
        assert_eq!(r.strs().unwrap(), vec!["a".to_string(), "b".to_string()]);
        r.done().unwrap();
        let mut short = Reader::new(b.slice(..b.len() - 1));
        let _ = (
            short.u8(),
            short.u32(),
            short.u64(),
            short.str(),
            short.opt_str(),
            short.opt_str(),
        );
        assert!(short.strs().is_err());
    }
}
