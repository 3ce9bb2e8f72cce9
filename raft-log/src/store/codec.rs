//! The on-disk framing of entries and index records. Little-endian throughout.
//!
//! Entry (48-byte header, then the body):
//!
//! | offset | field    | type | meaning                                              |
//! |-------:|----------|------|------------------------------------------------------|
//! | 0      | magic    | u32  | [`MAGIC_ENTRY`], or [`MAGIC_BLANK`] for end-of-segment padding |
//! | 4      | size     | u32  | header + body bytes (for a blank: bytes to the segment end) |
//! | 8      | index    | u64  | Raft log index                                       |
//! | 16     | term     | u64  | Raft term                                            |
//! | 24     | position | u64  | absolute byte position of this entry in the data log |
//! | 32     | kind     | u8   | [`EntryKind`]                                        |
//! | 33     | reserved | 3 B  | zero                                                 |
//! | 36     | body_len | u32  | body bytes                                           |
//! | 40     | reserved | u32  | zero                                                 |
//! | 44     | crc      | u32  | CRC32C of bytes 0..44 and of the body                |
//!
//! Index record (32 bytes, at byte `index * 32` of the index files):
//! position u64, index u64, term u64, size u32, kind u8, marker u8 ([`INDEX_MARKER`]), 2 zero bytes.

use crate::config::{ENTRY_HEADER_BYTES, ENTRY_HEADER_LEN, INDEX_RECORD_LEN};

/// Magic of an entry header ("RLE1").
pub(crate) const MAGIC_ENTRY: u32 = 0x3145_4C52;
/// Magic of the padding record that ends a segment early ("RLB1").
pub(crate) const MAGIC_BLANK: u32 = 0x3142_4C52;
/// Marks an index record as written (a zeroed record is absent).
pub(crate) const INDEX_MARKER: u8 = 0xA5;

const HEADER: usize = ENTRY_HEADER_LEN;
const HEADER_U32: u32 = 48;
const RECORD: usize = INDEX_RECORD_LEN;
const _: () = assert!(HEADER_U32 as u64 == ENTRY_HEADER_BYTES);

/// What an entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// Application bytes.
    Normal = 1,
    /// A leader's no-op entry.
    Blank = 2,
    /// A cluster membership (raft-log's own encoding).
    Membership = 3,
}

impl EntryKind {
    pub(crate) fn from_u8(v: u8) -> Option<EntryKind> {
        match v {
            1 => Some(EntryKind::Normal),
            2 => Some(EntryKind::Blank),
            3 => Some(EntryKind::Membership),
            _ => None,
        }
    }
}

/// A decoded, verified entry header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EntryHeader {
    pub(crate) size: u32,
    pub(crate) index: u64,
    pub(crate) term: u64,
    pub(crate) position: u64,
    pub(crate) kind: EntryKind,
    pub(crate) body_len: u32,
    pub(crate) crc: u32,
}

/// Encodes the header of an entry with `body` at `position`, computing the CRC.
pub(crate) fn encode_header(
    index: u64,
    term: u64,
    position: u64,
    kind: EntryKind,
    body: &[u8],
) -> [u8; HEADER] {
    let body_len =
        u32::try_from(body.len()).expect("body length checked against entry_body_bytes_max");
    let size = body_len
        .checked_add(HEADER_U32)
        .expect("body length checked against entry_body_bytes_max");
    let mut h = [0u8; HEADER];
    h[0..4].copy_from_slice(&MAGIC_ENTRY.to_le_bytes());
    h[4..8].copy_from_slice(&size.to_le_bytes());
    h[8..16].copy_from_slice(&index.to_le_bytes());
    h[16..24].copy_from_slice(&term.to_le_bytes());
    h[24..32].copy_from_slice(&position.to_le_bytes());
    h[32] = kind as u8;
    h[36..40].copy_from_slice(&body_len.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&h[..44]), body);
    h[44..48].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Encodes a blank record of `size` bytes (only its first 8 bytes are written).
pub(crate) fn encode_blank(size: u32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0..4].copy_from_slice(&MAGIC_BLANK.to_le_bytes());
    b[4..8].copy_from_slice(&size.to_le_bytes());
    b
}

/// What the first bytes at a position hold.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    Entry(EntryHeader),
    Blank { size: u32 },
    Invalid(String),
}

/// Decodes a header; checks magic, the reserved bytes, kind and the size fields (not the CRC,
/// which also covers the body: see [`verify_crc`]).
pub(crate) fn decode_header(h: &[u8]) -> Frame {
    assert!(h.len() >= 8, "decode_header needs at least 8 bytes");
    let u32_at = |o: usize| u32::from_le_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
    match u32_at(0) {
        MAGIC_BLANK => return Frame::Blank { size: u32_at(4) },
        MAGIC_ENTRY => {}
        0 => return Frame::Invalid("zero magic (unwritten)".into()),
        other => return Frame::Invalid(format!("bad magic {other:#010x}")),
    }
    if h.len() < HEADER {
        return Frame::Invalid("header cut by the segment end".into());
    }
    let u64_at = |o: usize| u64::from_le_bytes(h[o..o + 8].try_into().expect("8 bytes"));
    let size = u32_at(4);
    let body_len = u32_at(36);
    let Some(kind) = EntryKind::from_u8(h[32]) else {
        return Frame::Invalid(format!("bad kind {}", h[32]));
    };
    if h[33..36] != [0, 0, 0] || u32_at(40) != 0 {
        return Frame::Invalid("reserved bytes are not zero".into());
    }
    if u64::from(size) != u64::from(body_len) + ENTRY_HEADER_BYTES {
        return Frame::Invalid(format!("size {size} != header + body_len {body_len}"));
    }
    Frame::Entry(EntryHeader {
        size,
        index: u64_at(8),
        term: u64_at(16),
        position: u64_at(24),
        kind,
        body_len,
        crc: u32_at(44),
    })
}

/// Checks the CRC of a whole framed entry (header + body).
pub(crate) fn verify_crc(frame: &[u8], expected: u32) -> bool {
    frame.len() >= HEADER
        && crc32c::crc32c_append(crc32c::crc32c(&frame[..44]), &frame[HEADER..]) == expected
}

/// An index record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IndexRecord {
    pub(crate) position: u64,
    pub(crate) index: u64,
    pub(crate) term: u64,
    pub(crate) size: u32,
    pub(crate) kind: EntryKind,
}

pub(crate) fn encode_index(r: &IndexRecord) -> [u8; RECORD] {
    let mut b = [0u8; RECORD];
    b[0..8].copy_from_slice(&r.position.to_le_bytes());
    b[8..16].copy_from_slice(&r.index.to_le_bytes());
    b[16..24].copy_from_slice(&r.term.to_le_bytes());
    b[24..28].copy_from_slice(&r.size.to_le_bytes());
    b[28] = r.kind as u8;
    b[29] = INDEX_MARKER;
    b
}

/// Decodes an index record; `None` when the slot was never written.
pub(crate) fn decode_index(b: &[u8]) -> Option<IndexRecord> {
    assert_eq!(b.len(), RECORD, "index record length");
    if b[29] != INDEX_MARKER {
        return None;
    }
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
    Some(IndexRecord {
        position: u64_at(0),
        index: u64_at(8),
        term: u64_at(16),
        size: u32::from_le_bytes(b[24..28].try_into().expect("4 bytes")),
        kind: EntryKind::from_u8(b[28])?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_crc_covers_header_and_body() {
        let body = b"payload";
        let h = encode_header(7, 3, 4096, EntryKind::Normal, body);
        let Frame::Entry(d) = decode_header(&h) else {
            panic!("not an entry")
        };
        assert_eq!(
            (d.index, d.term, d.position, d.kind, d.body_len),
            (7, 3, 4096, EntryKind::Normal, 7)
        );
        let mut frame = h.to_vec();
        frame.extend_from_slice(body);
        assert!(verify_crc(&frame, d.crc));
        for i in 0..frame.len() {
            if (44..48).contains(&i) {
                continue;
            }
            let mut bad = frame.clone();
            bad[i] ^= 0x40;
            assert!(!verify_crc(&bad, d.crc), "flip at byte {i} not detected");
        }
    }

    #[test]
    fn zeroed_and_garbage_headers_are_invalid() {
        assert!(matches!(decode_header(&[0u8; 48]), Frame::Invalid(_)));
        assert!(matches!(decode_header(&[0xffu8; 48]), Frame::Invalid(_)));
        assert_eq!(
            decode_header(&encode_blank(100)),
            Frame::Blank { size: 100 }
        );
    }

    #[test]
    fn index_record_round_trips() {
        let r = IndexRecord {
            position: 1 << 40,
            index: 99,
            term: 5,
            size: 1024,
            kind: EntryKind::Membership,
        };
        assert_eq!(decode_index(&encode_index(&r)), Some(r));
        assert_eq!(decode_index(&[0u8; 32]), None);
    }
}
