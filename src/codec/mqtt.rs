//! MQTT 3.1 / 3.1.1 codec: the packets an mqant-style client and the gate
//! exchange over TCP or WebSocket binary messages.
//!
//! Owns the framing and the well-formedness rules of the protocol: which
//! packet types each side may send, their fixed-header flags, field
//! lengths, UTF-8 strings, topic names and filters. It does not own what
//! happens next: that CONNECT comes first, keepalive, which acks to send,
//! what a topic routes to — those are the connection's. Pure functions over
//! `BytesMut`, with no I/O, no clock and no state between calls, so an idle
//! connection costs nothing here.
//!
//! ```text
//!  byte 0    packet type (bits 7..4) | flags (bits 3..0)
//!  1..=4     remaining length: base-128 varint, low 7 bits first, bit 7 = more
//!  ...       variable header and payload, `remaining length` bytes
//!  strings   u16 big-endian length, then that many bytes (UTF-8, no U+0000)
//! ```
//!
//! For example, a QoS 1 PUBLISH of `"hi"` to `a/b` with packet id 7:
//!
//! ```text
//!  32               PUBLISH (3); flags 0b0010: dup 0, qos 1, retain 0
//!  09               remaining length = 9
//!  00 03 61 2f 62   topic "a/b"
//!  00 07            packet id = 7
//!  68 69            payload "hi"
//! ```
//!
//! [`decode`] (client → server, the gate's side) and [`decode_server`]
//! (server → client, for tests and the load generator) return `Ok(None)`
//! until a whole packet is buffered, and check what they can as early as
//! they can: the packet type and flags on the first byte; the remaining
//! length against the caller's limit as soon as its varint is complete,
//! before the body is waited for; a fixed-size packet's length at once; a
//! CONNECT's protocol name and level as soon as they arrive, so that an
//! MQTT 5 client is told [`MqttError::UnsupportedLevel`] (answer CONNACK
//! 0x01) without its properties being parsed. Errors never allocate. After an
//! `Err` the buffer's contents are unspecified: close the connection.
//!
//! Payloads, will payloads, passwords and PUBLISH topics ([`Topic`]) are
//! slices of the read buffer, not copies. Encoders append to a `BytesMut` and
//! check everything before writing, so on `Err` the buffer is untouched;
//! what an encoder accepts, the matching decoder accepts (except SUBACK
//! codes, which [`encode_suback`] writes as given).
//!
//! Strict where the two versions differ: fixed-header flags are 3.1.1's, so
//! a 3.1 client resending SUBSCRIBE, UNSUBSCRIBE or PUBREL with the DUP bit
//! (3.1 allowed it) is refused with [`MqttError::BadFlags`]; the reserved
//! CONNECT flag must be 0 at both levels. A password without a user name is
//! accepted at level 3 only.
//!
//! Files: `wire` (fixed header, body cursor, strings), `topic` ([`Topic`],
//! name and filter rules), `connect`, `publish`, `subscribe` (one packet
//! family each, decoder beside encoder), `fixed` (acks, pings, DISCONNECT),
//! `dispatch` ([`decode`], [`decode_server`] and the two `encode_*bound`).

use bytes::Bytes;

mod connect;
mod dispatch;
mod fixed;
mod publish;
mod subscribe;
mod topic;
mod wire;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use connect::{encode_connack, encode_connect};
pub use dispatch::{decode, decode_server, encode_inbound, encode_outbound};
pub use fixed::{
    encode_disconnect, encode_pingreq, encode_pingresp, encode_puback, encode_pubcomp,
    encode_pubrec, encode_pubrel, encode_unsuback,
};
pub use publish::{encode_client_publish, encode_publish, publish_len};
pub use subscribe::{encode_suback, encode_subscribe, encode_unsubscribe};
pub use topic::Topic;

/// Largest remaining length MQTT can express (four varint bytes).
pub const MAX_REMAINING: usize = 268_435_455;
/// Longest string or binary field: its length prefix is a u16.
pub const MAX_STRING: usize = 65_535;

/// Packet types, the high nibble of a packet's first byte.
pub mod packet_type {
    /// Client asks to connect.
    pub const CONNECT: u8 = 1;
    /// Server answers CONNECT.
    pub const CONNACK: u8 = 2;
    /// Application message, either direction.
    pub const PUBLISH: u8 = 3;
    /// QoS 1 acknowledgement.
    pub const PUBACK: u8 = 4;
    /// QoS 2, first acknowledgement.
    pub const PUBREC: u8 = 5;
    /// QoS 2, release.
    pub const PUBREL: u8 = 6;
    /// QoS 2, complete.
    pub const PUBCOMP: u8 = 7;
    /// Client subscribes.
    pub const SUBSCRIBE: u8 = 8;
    /// Server answers SUBSCRIBE.
    pub const SUBACK: u8 = 9;
    /// Client unsubscribes.
    pub const UNSUBSCRIBE: u8 = 10;
    /// Server answers UNSUBSCRIBE.
    pub const UNSUBACK: u8 = 11;
    /// Client keepalive probe.
    pub const PINGREQ: u8 = 12;
    /// Server answers PINGREQ.
    pub const PINGRESP: u8 = 13;
    /// Client is leaving cleanly.
    pub const DISCONNECT: u8 = 14;
}

/// CONNACK return codes (3.1 and 3.1.1 share them).
pub mod connack {
    /// Connection accepted.
    pub const ACCEPTED: u8 = 0;
    /// The protocol level is not supported: the answer to
    /// [`MqttError::UnsupportedLevel`](super::MqttError::UnsupportedLevel).
    pub const UNACCEPTABLE_PROTOCOL_VERSION: u8 = 1;
    /// The client id is not allowed.
    pub const IDENTIFIER_REJECTED: u8 = 2;
    /// The service is unavailable.
    pub const SERVER_UNAVAILABLE: u8 = 3;
    /// Malformed user name or password.
    pub const BAD_USERNAME_OR_PASSWORD: u8 = 4;
    /// Not authorized.
    pub const NOT_AUTHORIZED: u8 = 5;
}

/// SUBACK return code for a refused subscription (3.1.1).
pub const SUBACK_FAILURE: u8 = 0x80;

/// One client → server packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inbound {
    /// CONNECT.
    Connect(Connect),
    /// PUBLISH.
    Publish(Publish),
    /// PUBACK for this packet id.
    PubAck(u16),
    /// PUBREC for this packet id.
    PubRec(u16),
    /// PUBREL for this packet id.
    PubRel(u16),
    /// PUBCOMP for this packet id.
    PubComp(u16),
    /// SUBSCRIBE.
    Subscribe {
        /// Non-zero.
        packet_id: u16,
        /// At least one topic filter, each with its requested QoS (0..=2).
        filters: Vec<(String, u8)>,
    },
    /// UNSUBSCRIBE.
    Unsubscribe {
        /// Non-zero.
        packet_id: u16,
        /// At least one topic filter.
        filters: Vec<String>,
    },
    /// PINGREQ.
    PingReq,
    /// DISCONNECT.
    Disconnect,
}

/// One server → client packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outbound {
    /// CONNACK.
    ConnAck {
        /// Acknowledge flags bit 0 (3.1.1; always 0 from a 3.1 server).
        session_present: bool,
        /// One of [`connack`], or another value a server chose.
        return_code: u8,
    },
    /// PUBLISH.
    Publish(Publish),
    /// PUBACK for this packet id.
    PubAck(u16),
    /// PUBREC for this packet id.
    PubRec(u16),
    /// PUBREL for this packet id.
    PubRel(u16),
    /// PUBCOMP for this packet id.
    PubComp(u16),
    /// SUBACK.
    SubAck {
        /// The SUBSCRIBE's packet id.
        packet_id: u16,
        /// One code per requested filter: a granted QoS (0..=2) or
        /// [`SUBACK_FAILURE`]. At least one.
        granted: Vec<u8>,
    },
    /// UNSUBACK for this packet id.
    UnsubAck(u16),
    /// PINGRESP.
    PingResp,
}

/// A CONNECT packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connect {
    /// 4 for 3.1.1 (protocol name "MQTT"), 3 for 3.1 ("MQIsdp").
    pub level: u8,
    /// May be empty: the caller assigns one (3.1.1 allows it only with
    /// `clean_session`; the codec leaves that decision to the caller).
    pub client_id: String,
    /// Connect flags bit 1.
    pub clean_session: bool,
    /// Seconds; 0 disables keepalive.
    pub keep_alive: u16,
    /// User name, if the user name flag is set.
    pub username: Option<String>,
    /// Password (binary), if the password flag is set. At level 4 only
    /// together with a user name; at level 3 also alone.
    pub password: Option<Bytes>,
    /// Last will, if the will flag is set.
    pub will: Option<Will>,
}

/// A CONNECT's last will.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Will {
    /// A valid topic name (non-empty, no wildcards).
    pub topic: String,
    /// Binary message.
    pub payload: Bytes,
    /// 0..=2.
    pub qos: u8,
    /// Will retain flag.
    pub retain: bool,
}

/// A PUBLISH packet, in either direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    /// Re-delivery flag, as sent (not checked against `qos`).
    pub dup: bool,
    /// 0..=2.
    pub qos: u8,
    /// Retain flag, as sent.
    pub retain: bool,
    /// A valid topic name: non-empty, no `+` or `#`, no U+0000. Decoded as a
    /// slice of the read buffer.
    pub topic: Topic,
    /// `Some` (non-zero) iff `qos > 0`.
    pub packet_id: Option<u16>,
    /// Application message: a slice of the read buffer, no copy.
    pub payload: Bytes,
}

/// Codec errors. None allocates; [`MqttError::reason`] gives a static label
/// per variant for logs and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MqttError {
    /// Decode: the remaining length is over the caller's limit. Encode: the
    /// packet would be over [`MAX_REMAINING`].
    #[error("remaining length {remaining} is over the limit of {max}")]
    TooLarge {
        /// Remaining length declared (decode) or needed (encode).
        remaining: usize,
        /// The limit it broke.
        max: usize,
    },
    /// The remaining-length varint runs past 4 bytes.
    #[error("remaining length runs past 4 bytes")]
    MalformedLength,
    /// A CONNECT names "MQTT" or "MQIsdp" with a level other than 4 or 3
    /// respectively (an MQTT 5 client sends "MQTT" and 5). Answer CONNACK
    /// [`connack::UNACCEPTABLE_PROTOCOL_VERSION`], then close.
    #[error("unsupported protocol level {0}")]
    UnsupportedLevel(u8),
    /// A CONNECT's protocol name is neither "MQTT" nor "MQIsdp": close
    /// without CONNACK.
    #[error("protocol name is neither MQTT nor MQIsdp")]
    BadProtocolName,
    /// Fixed-header flags wrong for the packet type, or CONNECT / CONNACK
    /// flags breaking their rules (the `&str` says which).
    #[error("bad flags: {0}")]
    BadFlags(&'static str),
    /// A QoS of 3 (PUBLISH, will), a requested QoS over 2 (SUBSCRIBE), or a
    /// SUBACK code that is neither 0..=2 nor 0x80. Carries the value.
    #[error("bad qos {0}")]
    BadQos(u8),
    /// An empty topic name or filter, a wildcard in a topic name, or a
    /// wildcard that is not a whole level (or `#` not last) in a filter.
    #[error("bad topic: {0}")]
    BadTopic(&'static str),
    /// A string that is not UTF-8 or contains U+0000.
    #[error("bad string: {0}")]
    BadString(&'static str),
    /// Encode: a string or binary field over [`MAX_STRING`] bytes.
    #[error("field of {0} bytes is over the limit of 65535")]
    StringTooLong(usize),
    /// A PUBLISH with QoS > 0, a SUBSCRIBE or an UNSUBSCRIBE with packet id 0.
    #[error("packet id 0")]
    ZeroPacketId,
    /// A packet type this side must not receive (carries the type, 0..=15).
    #[error("unexpected packet type {0}")]
    UnexpectedPacket(u8),
    /// A wrong length for a fixed-size packet, a body that ends inside a
    /// field or runs past the last one, a SUBSCRIBE without filters, an
    /// inconsistent packet id on encode… (the `&str` says which).
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
}

impl MqttError {
    /// A short label for this variant, the same for every value of it:
    /// fit for a log field or a counter's label.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            MqttError::TooLarge { .. } => "too_large",
            MqttError::MalformedLength => "malformed_length",
            MqttError::UnsupportedLevel(_) => "unsupported_level",
            MqttError::BadProtocolName => "bad_protocol_name",
            MqttError::BadFlags(_) => "bad_flags",
            MqttError::BadQos(_) => "bad_qos",
            MqttError::BadTopic(_) => "bad_topic",
            MqttError::BadString(_) => "bad_string",
            MqttError::StringTooLong(_) => "string_too_long",
            MqttError::ZeroPacketId => "zero_packet_id",
            MqttError::UnexpectedPacket(_) => "unexpected_packet",
            MqttError::Malformed(_) => "malformed",
        }
    }
}
