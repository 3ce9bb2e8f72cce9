//! [`FrameCodec`]: RocketMQ's length-prefixed frames for `tokio_util::codec::Framed`.

use bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::command::RemotingCommand;
use crate::error::RemotingError;

/// The largest frame accepted (RocketMQ's `com.rocketmq.remoting.frameMaxLength`, 16 MiB).
pub const FRAME_LEN_MAX: usize = 16 << 20;

/// Encodes and decodes whole frames: a big-endian u32 length, then header-length mark,
/// header and body.
#[derive(Clone, Copy, Debug)]
pub struct FrameCodec {
    len_max: usize,
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec {
            len_max: FRAME_LEN_MAX,
        }
    }
}

impl FrameCodec {
    /// A codec refusing frames above `len_max` bytes.
    pub fn with_len_max(len_max: usize) -> FrameCodec {
        FrameCodec { len_max }
    }
}

impl Decoder for FrameCodec {
    type Item = RemotingCommand;
    type Error = RemotingError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<RemotingCommand>, RemotingError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if len > self.len_max {
            return Err(RemotingError::FrameTooLarge {
                len,
                len_max: self.len_max,
            });
        }
        if src.len() < 4 + len {
            src.reserve(4 + len - src.len());
            return Ok(None);
        }
        src.advance(4);
        let frame = src.split_to(len).freeze();
        RemotingCommand::decode_frame(frame).map(Some)
    }
}

impl Encoder<RemotingCommand> for FrameCodec {
    type Error = RemotingError;

    fn encode(&mut self, cmd: RemotingCommand, dst: &mut BytesMut) -> Result<(), RemotingError> {
        cmd.encode_frame(dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{ExtFields, SerializeType};

    #[test]
    fn frames_split_anywhere_decode_once_whole() {
        let mut cmd = RemotingCommand::request(310, ExtFields::from([("b".into(), "T".into())]))
            .with_body(&b"hello"[..]);
        cmd.serialize_type = SerializeType::RocketMq;
        let mut wire = BytesMut::new();
        FrameCodec::default()
            .encode(cmd.clone(), &mut wire)
            .expect("encodes");
        FrameCodec::default()
            .encode(cmd.clone(), &mut wire)
            .expect("encodes");
        let wire = wire.freeze();
        for cut in 0..wire.len() {
            let mut codec = FrameCodec::default();
            let mut buf = BytesMut::from(&wire[..cut]);
            let mut got = Vec::new();
            while let Some(c) = codec.decode(&mut buf).expect("decodes") {
                got.push(c);
            }
            buf.extend_from_slice(&wire[cut..]);
            while let Some(c) = codec.decode(&mut buf).expect("decodes") {
                got.push(c);
            }
            assert_eq!(got, vec![cmd.clone(), cmd.clone()], "cut at {cut}");
        }
    }

    #[test]
    fn an_oversized_frame_is_refused_before_it_is_buffered() {
        let mut buf = BytesMut::from(&[0x7f, 0, 0, 0, 1, 2][..]);
        let err = FrameCodec::with_len_max(1024)
            .decode(&mut buf)
            .expect_err("too large");
        assert!(matches!(err, RemotingError::FrameTooLarge { .. }), "{err}");
    }
}
