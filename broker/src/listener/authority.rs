//! Repairs an HTTP/2 `:authority` that lists several addresses, before h2 sees it.
//!
//! An SDK given a group's addresses (`a:p;b:p;c:p`) dials them as one gRPC channel, and the
//! channel's default authority is the whole list: grpc-core (Python, and the C++, PHP and Ruby
//! SDKs built on it) sends `:authority: 127.0.0.1:30911,127.0.0.1:30921,127.0.0.1:30931`. That
//! is not an RFC 3986 authority, so the h2 server treats every request as malformed and resets
//! the stream with PROTOCOL_ERROR. The Java proxy (Netty) accepts it, and so must we; h2 has no
//! switch for it.
//!
//! [`Rewriter`] sits on the inbound byte stream of one connection. It passes the client preface
//! and every frame through untouched until the connection's first header block. If that block's
//! `:authority` parses (or is absent), the rest of the connection passes through untouched and
//! costs nothing more. If it does not, the connection is *transcoded* from then on: every header
//! block is HPACK-decoded with the client's dynamic table, the authority replaced by the first
//! address of the list, and the block re-encoded with an encoder whose table mirrors the one h2
//! decodes with. Transcoding has to last for the whole connection because the client's table and
//! h2's table differ once one block was rewritten.
//!
//! One gRPC channel sends one authority on every stream, so deciding on the first block is enough.
//! A later stream with a different, broken authority on a pass-through connection is reset by h2
//! as before.

use std::borrow::Cow;

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};

/// What a client sends first on an HTTP/2 connection with prior knowledge (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;
/// h2's default SETTINGS_MAX_FRAME_SIZE; tonic does not change it, so no valid client frame is
/// larger. A larger one is passed through for h2 to refuse.
const MAX_FRAME_LEN: usize = 16_384;
/// h2's default SETTINGS_HEADER_TABLE_SIZE (its decoder's table), which tonic does not change.
/// The client encodes for a table of at most this size, and so does our re-encoder.
const HEADER_TABLE_SIZE: usize = 4_096;
/// A header block (HEADERS plus CONTINUATION frames) larger than this ends transcoding: h2's own
/// header list limit refuses far smaller lists.
const HEADER_BLOCK_LEN_MAX: usize = 1 << 20;

const TYPE_HEADERS: u8 = 0x1;
const TYPE_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
const PRIORITY_LEN: usize = 5;

/// A decoded header block: (name, value) pairs in the order they came.
type HeaderList = Vec<(Vec<u8>, Vec<u8>)>;

/// Why a transcoded connection cannot go on; the connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    /// The client's header block does not decode (h2 would answer COMPRESSION_ERROR).
    #[error("HTTP/2 header block of stream {stream_id} does not decode: {reason}")]
    Hpack {
        /// The stream the block belongs to.
        stream_id: u32,
        /// The HPACK decoder's complaint.
        reason: String,
    },
    /// A frame the transcoder cannot forward faithfully.
    #[error("HTTP/2 frame on stream {stream_id} is malformed: {reason}")]
    Frame {
        /// The stream the frame belongs to.
        stream_id: u32,
        /// What is wrong with it.
        reason: &'static str,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Waiting for the 24-byte client preface.
    Preface,
    /// Frames pass through; the first header block decides what comes next.
    Inspect,
    /// Every header block is decoded, repaired and re-encoded.
    Transcode,
    /// Everything passes through untouched.
    Passthrough,
}

/// A header block being collected from a HEADERS frame and its CONTINUATION frames.
#[derive(Debug)]
struct Block {
    stream_id: u32,
    end_stream: bool,
    priority: Option<[u8; PRIORITY_LEN]>,
    fragment: BytesMut,
    /// The frames as received, to pass through unchanged when nothing needs repair.
    raw: BytesMut,
}

/// The inbound half of one HTTP/2 connection, repaired frame by frame. See the module docs.
pub struct Rewriter {
    mode: Mode,
    pending: BytesMut,
    block: Option<Block>,
    decoder: loona_hpack::Decoder<'static>,
    encoder: loona_hpack::Encoder<'static>,
    repaired_blocks: u64,
}

impl std::fmt::Debug for Rewriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rewriter")
            .field("mode", &self.mode)
            .field("pending", &self.pending.len())
            .field("repaired_blocks", &self.repaired_blocks)
            .finish_non_exhaustive()
    }
}

impl Default for Rewriter {
    fn default() -> Self {
        Self::new()
    }
}

impl Rewriter {
    /// A rewriter for a new connection, before its preface.
    pub fn new() -> Self {
        let mut decoder = loona_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(HEADER_TABLE_SIZE);
        let mut encoder = loona_hpack::Encoder::new();
        encoder.set_max_table_size(HEADER_TABLE_SIZE);
        Rewriter {
            mode: Mode::Preface,
            pending: BytesMut::new(),
            block: None,
            decoder,
            encoder,
            repaired_blocks: 0,
        }
    }

    /// True once the connection was found healthy: from now on bytes need not go through
    /// [`Rewriter::feed`] at all.
    pub fn is_passthrough(&self) -> bool {
        self.mode == Mode::Passthrough && self.pending.is_empty() && self.block.is_none()
    }

    /// Header blocks whose authority was replaced so far.
    pub fn repaired_blocks(&self) -> u64 {
        self.repaired_blocks
    }

    /// Takes the next bytes the client sent and appends what h2 should read to `out`. Bytes of
    /// an incomplete frame are kept for the next call.
    pub fn feed(&mut self, input: &[u8], out: &mut BytesMut) -> Result<(), RewriteError> {
        if self.mode == Mode::Passthrough {
            out.extend_from_slice(&self.pending.split());
            out.extend_from_slice(input);
            return Ok(());
        }
        self.pending.extend_from_slice(input);
        loop {
            let progressed = match self.mode {
                Mode::Preface => self.preface(out),
                Mode::Inspect | Mode::Transcode => self.frame(out)?,
                Mode::Passthrough => {
                    out.extend_from_slice(&self.pending.split());
                    false
                }
            };
            if !progressed {
                return Ok(());
            }
        }
    }

    fn preface(&mut self, out: &mut BytesMut) -> bool {
        let have = self.pending.len().min(PREFACE.len());
        if self.pending[..have] != PREFACE[..have] {
            // Not HTTP/2 with prior knowledge: none of our business.
            self.mode = Mode::Passthrough;
            return true;
        }
        if have < PREFACE.len() {
            return false;
        }
        out.extend_from_slice(&self.pending.split_to(PREFACE.len()));
        self.mode = Mode::Inspect;
        true
    }

    /// Handles one complete frame from `pending`; false when the next frame is not complete.
    fn frame(&mut self, out: &mut BytesMut) -> Result<bool, RewriteError> {
        if self.pending.len() < FRAME_HEADER_LEN {
            return Ok(false);
        }
        let header = &self.pending[..FRAME_HEADER_LEN];
        let len =
            usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
        let kind = header[3];
        if len > MAX_FRAME_LEN {
            // h2 refuses it with FRAME_SIZE_ERROR and closes the connection.
            self.mode = Mode::Passthrough;
            return Ok(true);
        }
        if self.pending.len() < FRAME_HEADER_LEN + len {
            return Ok(false);
        }
        let frame = self.pending.split_to(FRAME_HEADER_LEN + len).freeze();
        let in_block = self.block.is_some();
        match kind {
            TYPE_HEADERS if !in_block => self.headers(frame, out),
            TYPE_CONTINUATION if in_block => self.continuation(frame, out),
            _ if in_block => Err(RewriteError::Frame {
                stream_id: stream_id(&frame),
                reason: "a header block was interrupted by another frame",
            }),
            _ => {
                out.extend_from_slice(&frame);
                Ok(true)
            }
        }
    }

    fn headers(&mut self, frame: Bytes, out: &mut BytesMut) -> Result<bool, RewriteError> {
        let flags = frame[4];
        let id = stream_id(&frame);
        let malformed = |reason| RewriteError::Frame {
            stream_id: id,
            reason,
        };
        let mut payload = frame.slice(FRAME_HEADER_LEN..);
        if flags & FLAG_PADDED != 0 {
            let pad = usize::from(*payload.first().ok_or(malformed("padding length missing"))?);
            if pad + 1 > payload.len() {
                return Err(malformed("padding longer than the frame"));
            }
            payload = payload.slice(1..payload.len() - pad);
        }
        let priority = if flags & FLAG_PRIORITY != 0 {
            if payload.len() < PRIORITY_LEN {
                return Err(malformed("priority fields missing"));
            }
            let mut p = [0u8; PRIORITY_LEN];
            p.copy_from_slice(&payload[..PRIORITY_LEN]);
            payload.advance(PRIORITY_LEN);
            Some(p)
        } else {
            None
        };
        self.block = Some(Block {
            stream_id: id,
            end_stream: flags & FLAG_END_STREAM != 0,
            priority,
            fragment: BytesMut::from(&payload[..]),
            raw: BytesMut::from(&frame[..]),
        });
        self.end_of_fragment(flags, out)
    }

    fn continuation(&mut self, frame: Bytes, out: &mut BytesMut) -> Result<bool, RewriteError> {
        let flags = frame[4];
        let id = stream_id(&frame);
        let Some(block) = self.block.as_mut() else {
            return Err(RewriteError::Frame {
                stream_id: id,
                reason: "CONTINUATION without a header block",
            });
        };
        if block.stream_id != id {
            return Err(RewriteError::Frame {
                stream_id: id,
                reason: "CONTINUATION of another stream's header block",
            });
        }
        block.fragment.extend_from_slice(&frame[FRAME_HEADER_LEN..]);
        block.raw.extend_from_slice(&frame);
        if block.fragment.len() > HEADER_BLOCK_LEN_MAX {
            return Err(RewriteError::Frame {
                stream_id: id,
                reason: "header block too large",
            });
        }
        self.end_of_fragment(flags, out)
    }

    fn end_of_fragment(&mut self, flags: u8, out: &mut BytesMut) -> Result<bool, RewriteError> {
        if flags & FLAG_END_HEADERS == 0 {
            return Ok(true);
        }
        let Some(block) = self.block.take() else {
            return Ok(true);
        };
        let mut headers = self.decode(&block)?;
        let repaired = repair_authority(&mut headers);
        if self.mode == Mode::Inspect && !repaired {
            // Healthy connection: the client's table and h2's stay the same; stop looking.
            out.extend_from_slice(&block.raw);
            self.mode = Mode::Passthrough;
            return Ok(true);
        }
        if repaired {
            self.repaired_blocks += 1;
            if self.mode == Mode::Inspect {
                tracing::debug!(
                    stream_id = block.stream_id,
                    "HTTP/2 :authority lists several addresses; repairing this connection"
                );
            }
        }
        self.mode = Mode::Transcode;
        self.encode(&block, &headers, out);
        Ok(true)
    }

    fn decode(&mut self, block: &Block) -> Result<HeaderList, RewriteError> {
        let mut headers = Vec::new();
        self.decoder
            .decode_with_cb(
                &block.fragment,
                |name: Cow<'_, [u8]>, value: Cow<'_, [u8]>| {
                    headers.push((name.into_owned(), value.into_owned()));
                },
            )
            .map_err(|e| RewriteError::Hpack {
                stream_id: block.stream_id,
                reason: format!("{e:?}"),
            })?;
        Ok(headers)
    }

    /// Writes the block as one HEADERS frame and as many CONTINUATION frames as it needs.
    fn encode(&mut self, block: &Block, headers: &HeaderList, out: &mut BytesMut) {
        let mut encoded = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = self.encoder.encode_into(
            headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())),
            &mut encoded,
        );
        let prefix = block.priority.map_or(0, |_| PRIORITY_LEN);
        let first = encoded.len().min(MAX_FRAME_LEN - prefix);
        let (head, mut rest) = encoded.split_at(first);
        let mut flags = if rest.is_empty() { FLAG_END_HEADERS } else { 0 };
        if block.end_stream {
            flags |= FLAG_END_STREAM;
        }
        if block.priority.is_some() {
            flags |= FLAG_PRIORITY;
        }
        put_frame_header(
            out,
            prefix + head.len(),
            TYPE_HEADERS,
            flags,
            block.stream_id,
        );
        if let Some(p) = block.priority {
            out.extend_from_slice(&p);
        }
        out.extend_from_slice(head);
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(rest.len().min(MAX_FRAME_LEN));
            let flags = if tail.is_empty() { FLAG_END_HEADERS } else { 0 };
            put_frame_header(out, chunk.len(), TYPE_CONTINUATION, flags, block.stream_id);
            out.extend_from_slice(chunk);
            rest = tail;
        }
    }
}

fn stream_id(frame: &[u8]) -> u32 {
    u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff
}

fn put_frame_header(out: &mut BytesMut, len: usize, kind: u8, flags: u8, stream_id: u32) {
    debug_assert!(len <= MAX_FRAME_LEN);
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    out.put_slice(&len.to_be_bytes()[1..]);
    out.put_u8(kind);
    out.put_u8(flags);
    out.put_u32(stream_id & 0x7fff_ffff);
}

/// Replaces an `:authority` that is not a valid authority with the first address of its list,
/// or drops it when no address in it is valid. True when it changed anything.
fn repair_authority(headers: &mut HeaderList) -> bool {
    let Some(at) = headers.iter().position(|(n, _)| n == b":authority") else {
        return false;
    };
    let value = &headers[at].1;
    if is_authority(value) {
        return false;
    }
    let first = value
        .split(|b| *b == b',' || *b == b';')
        .map(<[u8]>::trim_ascii)
        .find(|a| is_authority(a))
        .map(<[u8]>::to_vec);
    match first {
        Some(address) => headers[at].1 = address,
        None => {
            headers.remove(at);
        }
    }
    true
}

fn is_authority(value: &[u8]) -> bool {
    !value.is_empty() && http::uri::Authority::try_from(value).is_ok()
}

#[cfg(test)]
mod tests;
