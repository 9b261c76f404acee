//! The WebSocket frame codec (RFC 6455 §5): client frames in, server
//! frames out. Pure functions over `BytesMut`, like the packet codec:
//! "not enough bytes yet" is `Ok(None)`, a declared length is checked
//! against the limit before the body arrives, and a payload is split off
//! the read buffer and unmasked in place, without a copy.
//!
//! ```text
//!  byte 0   FIN(1) RSV1-3(3) opcode(4)     0x0 cont, 0x1 text, 0x2 binary,
//!                                          0x8 close, 0x9 ping, 0xA pong
//!  byte 1   MASK(1) len(7)                 len 0..=125: the payload length
//!                                          126: a u16 follows; 127: a u64
//!  [2|8]    extended length, big-endian    shortest form only, top bit clear
//!  [4]      masking key                    client → server always, never back
//!  payload  len bytes, byte i XOR key[i % 4]
//! ```
//!
//! For example a client's binary frame carrying the heartbeat packet
//! `00 00 00 01 80` with key `11 22 33 44`:
//!
//! ```text
//!  82            FIN, binary
//!  85            MASK, len 5
//!  11 22 33 44   masking key
//!  11 22 33 45 91   00 00 00 01 80 masked
//! ```
//!
//! Control frames (close, ping, pong) carry at most 125 bytes, are never
//! fragmented, and may arrive between the fragments of a message.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{close, WsError};

/// Largest control frame payload.
pub const MAX_CONTROL_PAYLOAD: usize = 125;
/// Longest frame header: 2 bytes, a 64-bit length and a masking key.
pub const MAX_HEADER_BYTES: usize = 14;
/// Longest close reason that fits a control frame beside its code.
pub const MAX_CLOSE_REASON: usize = MAX_CONTROL_PAYLOAD - 2;

const FIN: u8 = 0x80;
const RSV: u8 = 0x70;
const MASK_BIT: u8 = 0x80;

/// A frame's opcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpCode {
    /// The next fragment of the message in progress.
    Continuation = 0x0,
    /// A text message (refused by the gate).
    Text = 0x1,
    /// A binary message: one client packet.
    Binary = 0x2,
    /// The close handshake.
    Close = 0x8,
    /// A ping, answered with a pong carrying the same payload.
    Ping = 0x9,
    /// A pong (unsolicited or an answer): ignored.
    Pong = 0xA,
}

impl OpCode {
    fn from_bits(bits: u8) -> Result<Self, WsError> {
        Ok(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            other => return Err(WsError::BadOpcode(other)),
        })
    }

    /// Close, ping and pong.
    #[must_use]
    pub fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// A parsed frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Last frame of its message.
    pub fin: bool,
    /// What the frame carries.
    pub opcode: OpCode,
    /// Masking key (present on every client frame).
    pub mask: Option<[u8; 4]>,
    /// Payload length.
    pub len: u64,
    /// Bytes of the header itself (2 to 14).
    pub header_len: usize,
}

/// Parses the header at the front of `src` without consuming anything.
/// `Ok(None)`: the header is not complete yet.
///
/// Checks what the header alone can tell, whichever side sent it: RSV bits,
/// the opcode, control frames (FIN set, at most 125 bytes), and the length
/// encoding (shortest form, top bit clear). It does not check the mask or
/// a limit: [`decode_frame`] and [`Reassembler`] do.
pub fn parse_header(src: &[u8]) -> Result<Option<FrameHeader>, WsError> {
    let Some(&[b0, b1]) = src.first_chunk::<2>() else {
        return Ok(None);
    };
    if b0 & RSV != 0 {
        return Err(WsError::ReservedBits);
    }
    let fin = b0 & FIN != 0;
    let opcode = OpCode::from_bits(b0 & 0x0f)?;
    let masked = b1 & MASK_BIT != 0;
    let (len, mut at) = match b1 & 0x7f {
        126 => {
            let Some(&ext) = src.get(2..).and_then(|s| s.first_chunk::<2>()) else {
                return Ok(None);
            };
            let len = u16::from_be_bytes(ext);
            if len < 126 {
                return Err(WsError::BadLength("16-bit length under 126"));
            }
            (u64::from(len), 4)
        }
        127 => {
            let Some(&ext) = src.get(2..).and_then(|s| s.first_chunk::<8>()) else {
                return Ok(None);
            };
            let len = u64::from_be_bytes(ext);
            if len >> 63 != 0 {
                return Err(WsError::BadLength("64-bit length with the top bit set"));
            }
            if len <= u64::from(u16::MAX) {
                return Err(WsError::BadLength("64-bit length under 65536"));
            }
            (len, 10)
        }
        short => (u64::from(short), 2),
    };
    if opcode.is_control() {
        if !fin {
            return Err(WsError::BadControl("fragmented"));
        }
        if len > MAX_CONTROL_PAYLOAD as u64 {
            return Err(WsError::BadControl("payload over 125 bytes"));
        }
    }
    let mask = if masked {
        let Some(&key) = src.get(at..).and_then(|s| s.first_chunk::<4>()) else {
            return Ok(None);
        };
        at += 4;
        Some(key)
    } else {
        None
    };
    Ok(Some(FrameHeader {
        fin,
        opcode,
        mask,
        len,
        header_len: at,
    }))
}

/// One decoded frame, its payload unmasked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Last frame of its message.
    pub fin: bool,
    /// What the frame carries.
    pub opcode: OpCode,
    /// The payload, split off the read buffer and unmasked in place.
    pub payload: BytesMut,
}

/// Decodes one client frame from the front of `src`, advancing past it.
/// `Ok(None)`: not enough bytes yet (and `src` has been reserved for the
/// rest of the frame). A data frame declaring more than `max_payload` bytes
/// is refused as soon as its length is readable ([`WsError::TooLarge`],
/// close 1009); an unmasked frame is [`WsError::Unmasked`] (1002).
///
/// Fragment order and text are a message-level matter: see [`Reassembler`],
/// which is what a connection uses.
pub fn decode_frame(src: &mut BytesMut, max_payload: usize) -> Result<Option<Frame>, WsError> {
    let Some(h) = parse_header(src)? else {
        return Ok(None);
    };
    if h.mask.is_none() {
        return Err(WsError::Unmasked);
    }
    if !h.opcode.is_control() && h.len > max_payload as u64 {
        return Err(WsError::TooLarge {
            len: h.len,
            max: max_payload,
        });
    }
    Ok(take(src, &h))
}

/// Splits the frame `h` (already checked, length within a `usize` limit)
/// off `src` and unmasks it, or reserves room for it.
fn take(src: &mut BytesMut, h: &FrameHeader) -> Option<Frame> {
    let len = h.len as usize;
    let total = h.header_len + len;
    if src.len() < total {
        src.reserve(total - src.len());
        return None;
    }
    src.advance(h.header_len);
    let mut payload = src.split_to(len);
    if let Some(key) = h.mask {
        apply_mask(&mut payload, key);
    }
    Some(Frame {
        fin: h.fin,
        opcode: h.opcode,
        payload,
    })
}

/// XORs `buf` with the masking `key` (byte `i` with `key[i % 4]`): masks and
/// unmasks alike. Eight bytes at a time, then the tail.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let word: &mut [u8; 8] = chunk.try_into().expect("chunks of 8");
        *word = (u64::from_ne_bytes(*word) ^ wide).to_ne_bytes();
    }
    // The tail starts at a multiple of 8, so its phase is 0.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

/// A close frame's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code (see [`close`]).
    pub code: u16,
    /// The reason, checked to be UTF-8 (usually empty).
    pub reason: Bytes,
}

impl CloseFrame {
    /// The reason as text.
    #[must_use]
    pub fn reason(&self) -> &str {
        std::str::from_utf8(&self.reason).unwrap_or_default()
    }

    /// Parses a close payload: empty (no code), or a valid code and a UTF-8 reason.
    pub fn parse(payload: Bytes) -> Result<Option<CloseFrame>, WsError> {
        match payload.len() {
            0 => Ok(None),
            1 => Err(WsError::BadClose("1-byte payload")),
            _ => {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                if !close::is_valid(code) {
                    return Err(WsError::BadClose("status code a peer may not send"));
                }
                let reason = payload.slice(2..);
                if std::str::from_utf8(&reason).is_err() {
                    return Err(WsError::BadCloseReason);
                }
                Ok(Some(CloseFrame { code, reason }))
            }
        }
    }
}

/// A complete message from the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A binary message, fragments joined: one client packet. A
    /// `BytesMut` so that [`crate::codec::decode`] runs on it directly.
    Binary(BytesMut),
    /// A ping: answer with [`encode_pong`] and the same payload.
    Ping(Bytes),
    /// A pong: nothing to do (any inbound byte already counts as life).
    Pong(Bytes),
    /// The client starts the close handshake (`None`: no status code).
    /// Answer with [`encode_close_reply`], then close; decode no further.
    Close(Option<CloseFrame>),
}

/// Joins a connection's frames into messages. One per WebSocket connection;
/// idle it holds no buffer.
///
/// A single-frame binary message is handed out without a copy; fragments are
/// copied into one buffer as they arrive, up to the limit. Control frames
/// between fragments come out at once.
#[derive(Debug)]
pub struct Reassembler {
    max: usize,
    /// The fragments so far of a binary message in progress.
    partial: Option<BytesMut>,
}

impl Reassembler {
    /// A reassembler for messages of at most `max_message` bytes (use
    /// [`super::max_message`] for the largest packet).
    #[must_use]
    pub fn new(max_message: usize) -> Self {
        Reassembler {
            max: max_message,
            partial: None,
        }
    }

    /// The message limit.
    #[must_use]
    pub fn max_message(&self) -> usize {
        self.max
    }

    /// Whether a fragmented message is in progress.
    #[must_use]
    pub fn in_message(&self) -> bool {
        self.partial.is_some()
    }

    /// Decodes the next message from the front of `src`, consuming the
    /// frames it is made of. `Ok(None)`: not enough bytes yet (fragments
    /// already read are kept here, the rest stays in `src`).
    ///
    /// Call it in a loop after every read until `Ok(None)`. Refused as soon
    /// as the header shows it (before the body): an unmasked frame (1002), a
    /// text message (1003), a message growing over the limit (1009),
    /// fragments out of order (1002). After an `Err` or a `Close`, send the
    /// close frame and stop decoding.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, WsError> {
        loop {
            let Some(h) = parse_header(src)? else {
                return Ok(None);
            };
            if h.mask.is_none() {
                return Err(WsError::Unmasked);
            }
            match h.opcode {
                OpCode::Text => return Err(WsError::Text),
                OpCode::Binary if self.partial.is_some() => {
                    return Err(WsError::BadContinuation(
                        "a new message before the last one ended",
                    ))
                }
                OpCode::Binary => self.check_len(0, h.len)?,
                OpCode::Continuation => match &self.partial {
                    None => {
                        return Err(WsError::BadContinuation(
                            "a continuation with no message in progress",
                        ))
                    }
                    Some(p) => self.check_len(p.len(), h.len)?,
                },
                OpCode::Close | OpCode::Ping | OpCode::Pong => {}
            }
            let Some(frame) = take(src, &h) else {
                return Ok(None);
            };
            match frame.opcode {
                OpCode::Binary if frame.fin => return Ok(Some(Message::Binary(frame.payload))),
                OpCode::Binary => {
                    // Copied, so that the message does not pin the read buffer.
                    self.partial = Some(BytesMut::from(&frame.payload[..]));
                }
                OpCode::Continuation => {
                    let p = self.partial.as_mut().expect("checked above");
                    p.extend_from_slice(&frame.payload);
                    if frame.fin {
                        let whole = self.partial.take().expect("checked above");
                        return Ok(Some(Message::Binary(whole)));
                    }
                }
                OpCode::Ping => return Ok(Some(Message::Ping(frame.payload.freeze()))),
                OpCode::Pong => return Ok(Some(Message::Pong(frame.payload.freeze()))),
                OpCode::Close => {
                    return CloseFrame::parse(frame.payload.freeze())
                        .map(|c| Some(Message::Close(c)))
                }
                OpCode::Text => unreachable!("refused above"),
            }
        }
    }

    fn check_len(&self, have: usize, more: u64) -> Result<(), WsError> {
        let len = (have as u64).saturating_add(more);
        if len > self.max as u64 {
            return Err(WsError::TooLarge { len, max: self.max });
        }
        Ok(())
    }
}

/// Bytes of a server (unmasked) frame header for a payload of `len`: 2, 4 or 10.
#[must_use]
pub fn header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=0xffff => 4,
        _ => 10,
    }
}

/// Appends an unmasked, final frame header.
fn put_header(opcode: OpCode, len: usize, dst: &mut BytesMut) {
    let b0 = FIN | opcode as u8;
    dst.reserve(header_len(len) + len);
    match len {
        0..=125 => dst.put_slice(&[b0, len as u8]),
        126..=0xffff => {
            dst.put_slice(&[b0, 126]);
            dst.put_u16(len as u16);
        }
        _ => {
            dst.put_slice(&[b0, 127]);
            dst.put_u64(len as u64);
        }
    }
}

/// Appends the header of a final binary frame whose `len` payload bytes the
/// caller appends next (a packet encoded straight into `dst`, no copy).
/// Reserves room for both.
pub fn encode_binary_header(len: usize, dst: &mut BytesMut) {
    put_header(OpCode::Binary, len, dst);
}

/// Appends a binary message in one frame (header and a copy of `payload`).
pub fn encode_binary(payload: &[u8], dst: &mut BytesMut) {
    encode_binary_header(payload.len(), dst);
    dst.put_slice(payload);
}

/// Appends a control frame, its payload cut to 125 bytes.
fn put_control(opcode: OpCode, payload: &[u8], dst: &mut BytesMut) {
    let payload = &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)];
    put_header(opcode, payload.len(), dst);
    dst.put_slice(payload);
}

/// Appends a ping (payload cut to 125 bytes).
pub fn encode_ping(payload: &[u8], dst: &mut BytesMut) {
    put_control(OpCode::Ping, payload, dst);
}

/// Appends a pong answering a ping with `payload`.
pub fn encode_pong(payload: &[u8], dst: &mut BytesMut) {
    put_control(OpCode::Pong, payload, dst);
}

/// Appends a close frame with `code` and `reason`, the reason cut to 123
/// bytes at a character boundary.
pub fn encode_close(code: u16, reason: &str, dst: &mut BytesMut) {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
    put_control(OpCode::Close, &payload[..2 + end], dst);
}

/// Appends the answer to a client's close: its code echoed (RFC 6455
/// §5.5.1), or an empty close frame if it sent none.
pub fn encode_close_reply(received: Option<&CloseFrame>, dst: &mut BytesMut) {
    match received {
        Some(c) => encode_close(c.code, "", dst),
        None => put_control(OpCode::Close, &[], dst),
    }
}
