//! WebSocket (RFC 6455) for clients that cannot open a raw TCP socket:
//! the HTTP/1.1 upgrade and the frame codec, as pure functions over
//! `BytesMut`. No I/O, no clock: the shard feeds bytes in, writes what comes
//! out, and owns the handshake timeout.
//!
//! * [`handshake`] — parse the upgrade request, check it against the
//!   `[network.ws]` policy (path, origins, proxy headers) and produce the
//!   `101` or the refusal to send.
//! * [`frame`] — client frames in (masked, unmasked in place, fragments
//!   joined by a [`frame::Reassembler`] up to the packet limit), server
//!   frames out (unmasked: a header written before the packet, no copy).
//! * [`packet`] — the due convention on top: each binary message carries
//!   exactly one client packet ([`crate::codec`]), size prefix included.
//!
//! A connection's bytes flow:
//!
//! ```text
//!  in:  recv ─▶ handshake::upgrade ──101──▶ Reassembler::decode ─▶ Message::Binary ─▶ packet::decode
//!                  (leftover bytes stay in the buffer for the first frame)  ├▶ Ping  ─▶ encode_pong
//!                                                                           └▶ Close ─▶ encode_close_reply, close
//!  out: packet::encode_data / encode_heartbeat (frame header + packet) ─▶ send
//! ```
//!
//! Errors are one enum, [`WsError`]: a refused upgrade carries one as its
//! reason (and [`WsError::http_status`] is what the client was told); an
//! error from a frame or message closes the connection with
//! [`WsError::close_code`].

use crate::codec::CodecError;

pub mod frame;
pub mod handshake;
pub mod packet;

#[cfg(test)]
mod handshake_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use frame::{
    apply_mask, decode_frame, encode_binary, encode_binary_header, encode_close,
    encode_close_reply, encode_ping, encode_pong, CloseFrame, Frame, FrameHeader, Message, OpCode,
    Reassembler,
};
pub use handshake::{upgrade, Accepted, HandshakePolicy, Origins, Rejected};
pub use packet::max_message;

/// Close status codes (RFC 6455 §7.4.1) the gate sends or accepts.
pub mod close {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The gate is shutting down (or the client navigated away).
    pub const GOING_AWAY: u16 = 1001;
    /// The peer broke the protocol.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A data type the endpoint does not accept (text, to this gate).
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// Received as "no code": a close frame with an empty payload. Never sent.
    pub const NO_STATUS: u16 = 1005;
    /// The message's content is inconsistent with its type (not one packet,
    /// a close reason that is not UTF-8).
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A policy reason (kicked, outbound queue overflow, authorize timeout).
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A message over the packet limit.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// The gate failed.
    pub const INTERNAL_ERROR: u16 = 1011;

    /// Whether a peer may send `code` in a close frame: the registered codes
    /// 1000–1003 and 1007–1014, and 3000–4999 (libraries, applications).
    #[must_use]
    pub fn is_valid(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

/// Everything that can go wrong on a WebSocket connection. None allocates.
///
/// The first group refuses an upgrade (see [`Rejected`]); the others close
/// an open connection with [`WsError::close_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    /// The request header did not end within `max` bytes (or has too many fields).
    #[error("upgrade request header over {max} bytes or too many fields")]
    HeaderTooLarge {
        /// The limit, [`handshake::MAX_REQUEST_BYTES`].
        max: usize,
    },
    /// Not a well-formed HTTP/1.1 upgrade request.
    #[error("bad upgrade request: {0}")]
    BadRequest(&'static str),
    /// A method other than GET.
    #[error("upgrade request method is not GET")]
    MethodNotAllowed,
    /// A plain HTTP request, without `Upgrade: websocket` / `Connection: upgrade`.
    #[error("not a WebSocket upgrade: {0}")]
    NotUpgrade(&'static str),
    /// `Sec-WebSocket-Version` missing or not 13.
    #[error("unsupported Sec-WebSocket-Version (the gate speaks 13)")]
    UnsupportedVersion,
    /// The request path is not `network.ws.path`.
    #[error("no WebSocket endpoint at the requested path")]
    NotFound,
    /// The `Origin` is not in `network.ws.origins`.
    #[error("origin not allowed by network.ws.origins")]
    OriginRejected,

    /// A client frame without a mask (clients must mask every frame).
    #[error("client frame not masked")]
    Unmasked,
    /// RSV1–3 set, with no extension negotiated.
    #[error("reserved bits set in a frame header")]
    ReservedBits,
    /// An opcode RFC 6455 does not define.
    #[error("unknown opcode {0:#x}")]
    BadOpcode(u8),
    /// A control frame fragmented or over 125 bytes.
    #[error("bad control frame: {0}")]
    BadControl(&'static str),
    /// A length not in its shortest encoding, or with the top bit set.
    #[error("bad frame length: {0}")]
    BadLength(&'static str),
    /// Fragments out of order.
    #[error("bad fragmentation: {0}")]
    BadContinuation(&'static str),
    /// A message (all its fragments so far plus the declared frame) over the limit.
    #[error("message of at least {len} bytes, over the limit of {max}")]
    TooLarge {
        /// Bytes the message would hold.
        len: u64,
        /// The limit, [`max_message`].
        max: usize,
    },
    /// A text message: the gate speaks binary packets only.
    #[error("text message (only binary messages carry packets)")]
    Text,
    /// A close frame with a 1-byte payload or a code a peer may not send.
    #[error("bad close frame: {0}")]
    BadClose(&'static str),
    /// A close frame whose reason is not UTF-8.
    #[error("close reason is not UTF-8")]
    BadCloseReason,

    /// The packet inside a binary message is bad.
    #[error("bad packet in a binary message: {0}")]
    Packet(#[from] CodecError),
    /// A binary message holding less or more than one packet.
    #[error("binary message is not exactly one packet: {0}")]
    NotOnePacket(&'static str),
}

impl WsError {
    /// The close code to send before closing on this error (RFC 6455
    /// §7.4.1): 1009 for size, 1003 for text, 1007 for content, else 1002.
    /// Upgrade refusals never reach a close frame; they map to 1002.
    #[must_use]
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::TooLarge { .. } | WsError::Packet(CodecError::TooLarge { .. }) => {
                close::MESSAGE_TOO_BIG
            }
            WsError::Text => close::UNSUPPORTED_DATA,
            WsError::BadCloseReason | WsError::Packet(_) | WsError::NotOnePacket(_) => {
                close::INVALID_PAYLOAD
            }
            _ => close::PROTOCOL_ERROR,
        }
    }

    /// The HTTP status an upgrade refused for this reason is answered with:
    /// 400, 403, 404, 405, 426 or 431. Frame errors map to 400.
    #[must_use]
    pub fn http_status(&self) -> u16 {
        match self {
            WsError::HeaderTooLarge { .. } => 431,
            WsError::MethodNotAllowed => 405,
            WsError::NotUpgrade(_) | WsError::UnsupportedVersion => 426,
            WsError::NotFound => 404,
            WsError::OriginRejected => 403,
            _ => 400,
        }
    }
}
