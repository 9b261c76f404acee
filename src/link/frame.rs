//! Link framing: length-prefixed batches of prost messages.
//!
//! ```text
//!  len    u32 big-endian   bytes of the batch that follow
//!  batch  protobuf         field 1 repeated: one record per message
//!         +------+-----+---------+------+-----+---------+
//!         | 0x0a | len | message | 0x0a | len | message | ...
//!         +------+-----+---------+------+-----+---------+
//! ```
//! Because a batch is just repeated field 1, [`BatchBuf`] appends messages one
//! at a time into a growing frame and patches `len` when the frame is taken:
//! no `Vec` of messages is ever built on the write side.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;

/// Bytes of the length prefix.
pub const FRAME_HEADER: usize = 4;

/// Errors of the link layer.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// A frame declared more bytes than the configured maximum.
    #[error("link frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// Declared length.
        len: usize,
        /// Configured maximum (`link.max_frame_bytes`).
        max: usize,
    },
    /// A frame's body is not a valid protobuf batch.
    #[error("link frame does not decode: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The peer broke the handshake rules.
    #[error("link protocol violation: {0}")]
    Protocol(&'static str),
}

/// A write buffer that accumulates messages into frames.
///
/// Push any number of messages during a loop turn, then [`BatchBuf::take`]
/// the bytes to write. A frame is closed and a new one opened when it grows
/// past `frame_limit`, so a reader's `max_frame_bytes` is never exceeded by
/// one batch (a single message larger than the limit still makes its own
/// frame, which the reader will reject).
#[derive(Debug)]
pub struct BatchBuf {
    buf: BytesMut,
    /// Offset of the open frame's length prefix, if a frame is open.
    open: Option<usize>,
    frame_limit: usize,
    msgs: usize,
}

impl BatchBuf {
    /// A buffer whose frames stay below `frame_limit` bytes where possible.
    pub fn new(frame_limit: usize) -> Self {
        BatchBuf {
            buf: BytesMut::new(),
            open: None,
            frame_limit,
            msgs: 0,
        }
    }

    /// Appends one message to the open frame (opening one if needed).
    pub fn push<M: Message>(&mut self, msg: &M) {
        let need = msg.encoded_len() + 1 + prost::length_delimiter_len(msg.encoded_len());
        if let Some(start) = self.open {
            if self.buf.len() - start - FRAME_HEADER + need > self.frame_limit {
                self.close();
            }
        }
        if self.open.is_none() {
            self.open = Some(self.buf.len());
            self.buf.put_u32(0);
        }
        self.buf.reserve(need);
        prost::encoding::message::encode(1, msg, &mut self.buf);
        self.msgs += 1;
    }

    /// Lowers (or raises) the size at which frames are closed, for frames
    /// opened from now on: the peer announced the largest frame it accepts.
    pub fn set_frame_limit(&mut self, frame_limit: usize) {
        self.frame_limit = frame_limit;
    }

    /// Messages pushed since the last [`BatchBuf::take`].
    pub fn pending(&self) -> usize {
        self.msgs
    }

    /// True when nothing waits to be written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Bytes waiting to be written, frame headers included.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// The size at which frames are closed.
    pub fn frame_limit(&self) -> usize {
        self.frame_limit
    }

    fn close(&mut self) {
        if let Some(start) = self.open.take() {
            let len = (self.buf.len() - start - FRAME_HEADER) as u32;
            self.buf[start..start + FRAME_HEADER].copy_from_slice(&len.to_be_bytes());
        }
    }

    /// Closes the open frame and returns every byte to write.
    pub fn take(&mut self) -> BytesMut {
        self.close();
        self.msgs = 0;
        self.buf.split()
    }
}

/// Takes one complete frame's batch bytes off the front of `src`.
///
/// Returns `Ok(None)` when more bytes are needed. The length prefix is
/// checked against `max` before the body is awaited.
pub fn decode_frame(src: &mut BytesMut, max: usize) -> Result<Option<Bytes>, LinkError> {
    if src.len() < FRAME_HEADER {
        return Ok(None);
    }
    let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
    if len > max {
        return Err(LinkError::FrameTooLarge { len, max });
    }
    if src.len() < FRAME_HEADER + len {
        src.reserve(FRAME_HEADER + len - src.len());
        return Ok(None);
    }
    src.advance(FRAME_HEADER);
    Ok(Some(src.split_to(len).freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::proto::{to_gate, Push, ToGate, ToGateBatch};

    fn push(sid: u64, payload: &'static [u8]) -> ToGate {
        ToGate {
            msg: Some(to_gate::Msg::Push(Push {
                session_id: sid,
                route: 1,
                seq: 2,
                payload: Bytes::from_static(payload),
                ext: 0,
                request_id: 0,
            })),
        }
    }

    #[test]
    fn batch_round_trip_and_split_points() {
        let mut b = BatchBuf::new(1 << 20);
        let msgs: Vec<ToGate> = (0..5).map(|i| push(i, b"hello")).collect();
        for m in &msgs {
            b.push(m);
        }
        assert_eq!(b.pending(), 5);
        let wire = b.take().freeze();
        assert!(b.is_empty());
        // Feed the stream split at every point: always exactly one frame.
        for split in 0..=wire.len() {
            let mut src = BytesMut::new();
            src.extend_from_slice(&wire[..split]);
            let first = decode_frame(&mut src, 1 << 20).unwrap();
            src.extend_from_slice(&wire[split..]);
            let frame = match first {
                Some(f) => f,
                None => decode_frame(&mut src, 1 << 20).unwrap().unwrap(),
            };
            let batch = ToGateBatch::decode(frame).unwrap();
            assert_eq!(batch.msgs, msgs);
            assert!(src.is_empty());
        }
    }

    #[test]
    fn frames_close_at_limit() {
        let mut b = BatchBuf::new(64);
        for i in 0..10 {
            b.push(&push(i, b"0123456789"));
        }
        let mut wire = b.take();
        let mut seen = 0;
        let mut frames = 0;
        while let Some(f) = decode_frame(&mut wire, 64).unwrap() {
            seen += ToGateBatch::decode(f).unwrap().msgs.len();
            frames += 1;
        }
        assert_eq!(seen, 10);
        assert!(frames > 1, "a 64-byte limit must split ten messages");
    }

    #[test]
    fn oversized_frame_rejected_before_body() {
        // Declares 1000 bytes; only the prefix has arrived.
        let mut src = BytesMut::from(&[0u8, 0, 0x03, 0xe8][..]);
        match decode_frame(&mut src, 999) {
            Err(LinkError::FrameTooLarge {
                len: 1000,
                max: 999,
            }) => {}
            other => panic!("expected FrameTooLarge, got {other:?}"),
        }
    }
}
