//! PUBLISH, in both directions: the only packet that carries application
//! data.
//!
//! ```text
//!  3x <len>       PUBLISH; flags x: bit 3 dup, 2..1 qos (0..=2), 0 retain
//!  00 03 61 2f 62 topic name "a/b": non-empty, no + or #, no U+0000
//!  00 07          packet id, only when qos > 0, non-zero
//!  ...            payload: the rest of the body, may be empty
//! ```
//!
//! The gate sends QoS 0 only ([`encode_publish`]); clients send any QoS
//! ([`encode_client_publish`]).

use bytes::{Buf, BufMut, BytesMut};

use super::topic::{check_topic_name, Topic};
use super::wire::{
    check_remaining, field_len, nonzero_id, publish_qos, put_field, put_header, varint_len, Header,
    Reader,
};
use super::{MqttError, Publish};

const DUP: u8 = 0b1000;
const RETAIN: u8 = 0b0001;

/// Takes the complete PUBLISH `h` heads off `buf`; `h.flags` passed the
/// header's checks. The fields are checked in place first, then the topic
/// and payload are split off `buf`: two reference counts, no copy.
pub(super) fn decode_publish(buf: &mut BytesMut, h: &Header) -> Result<Publish, MqttError> {
    let qos = publish_qos(h.flags);
    let mut r = Reader::new(&buf[h.len..h.total()]);
    let topic_len = check_topic_name(r.binary("truncated topic name")?)?.len();
    let packet_id = match qos {
        0 => None,
        _ => Some(nonzero_id(r.u16("truncated packet id")?)?),
    };
    let payload_len = r.rest().len();
    buf.advance(h.len + 2);
    let topic = Topic::from_checked(buf.split_to(topic_len).freeze());
    if packet_id.is_some() {
        buf.advance(2);
    }
    let payload = buf.split_to(payload_len).freeze();
    Ok(Publish {
        dup: h.flags & DUP != 0,
        qos,
        retain: h.flags & RETAIN != 0,
        topic,
        packet_id,
        payload,
    })
}

/// Bytes on the wire of a QoS 0 PUBLISH with a topic of `topic_len` bytes
/// and `payload_len` bytes of payload, for callers that size buffers ahead.
/// Exact whenever [`encode_publish`] would accept the packet; saturates
/// rather than overflows otherwise.
#[must_use]
pub fn publish_len(topic_len: usize, payload_len: usize) -> usize {
    let remaining = topic_len.saturating_add(2).saturating_add(payload_len);
    remaining.saturating_add(1 + varint_len(remaining))
}

/// Appends a QoS 0 PUBLISH (dup 0, retain 0): what the gate sends for
/// replies and pushes. Errors, leaving `out` untouched, if `topic` is over
/// 65535 bytes ([`MqttError::StringTooLong`]) or not a valid topic name, or
/// the packet would be over [`MAX_REMAINING`](super::MAX_REMAINING)
/// ([`MqttError::TooLarge`]).
pub fn encode_publish(topic: &str, payload: &[u8], out: &mut BytesMut) -> Result<(), MqttError> {
    put_publish(0x30, topic, None, payload, out)
}

/// Appends a PUBLISH with any flags (client side, or a test server). Errors,
/// leaving `out` untouched, for what [`encode_publish`] refuses, a QoS over
/// 2, or a packet id that is not `Some` non-zero exactly when `qos > 0`.
pub fn encode_client_publish(p: &Publish, out: &mut BytesMut) -> Result<(), MqttError> {
    if p.qos > 2 {
        return Err(MqttError::BadQos(p.qos));
    }
    match (p.qos, p.packet_id) {
        (0, Some(_)) => return Err(MqttError::Malformed("packet id with qos 0")),
        (1 | 2, None) => return Err(MqttError::Malformed("qos > 0 without a packet id")),
        (_, Some(0)) => return Err(MqttError::ZeroPacketId),
        _ => {}
    }
    let first =
        0x30 | if p.dup { DUP } else { 0 } | (p.qos << 1) | if p.retain { RETAIN } else { 0 };
    put_publish(first, &p.topic, p.packet_id, &p.payload, out)
}

fn put_publish(
    first: u8,
    topic: &str,
    packet_id: Option<u16>,
    payload: &[u8],
    out: &mut BytesMut,
) -> Result<(), MqttError> {
    let topic_field = field_len(topic.as_bytes())?;
    check_topic_name(topic.as_bytes())?;
    let id_len = if packet_id.is_some() { 2 } else { 0 };
    let remaining = check_remaining(topic_field + id_len + payload.len())?;
    put_header(out, first, remaining);
    put_field(out, topic.as_bytes());
    if let Some(id) = packet_id {
        out.put_u16(id);
    }
    out.extend_from_slice(payload);
    Ok(())
}
