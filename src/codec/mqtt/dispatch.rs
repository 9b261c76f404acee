//! One packet at a time: [`decode`] and [`decode_server`] read the fixed
//! header and hand the body to the packet's parser; [`encode_inbound`] and
//! [`encode_outbound`] pick the packet's encoder.

use bytes::BytesMut;

use super::connect::{decode_connack, decode_connect, encode_connack, encode_connect, protocol};
use super::fixed::*;
use super::packet_type::*;
use super::publish::{decode_publish, encode_client_publish};
use super::subscribe::*;
use super::wire::{self, from_client, from_server, skip, split_body, take_id, with_body};
use super::{Inbound, MqttError, Outbound};

/// Decodes one client → server packet from the front of `buf`, consuming
/// it, if it is complete. `Ok(None)`: not enough bytes yet; nothing was
/// consumed, and `buf` has room reserved for the rest of the packet once its
/// length is known.
///
/// `max_remaining` is the largest remaining length accepted (config
/// `max_packet_bytes`); it is checked as soon as the remaining-length varint
/// is complete, before waiting for the body. A CONNECT's protocol name and
/// level are checked as soon as they are buffered:
/// [`MqttError::UnsupportedLevel`] means "answer CONNACK 0x01, then close".
///
/// Call it in a loop after every read until it returns `Ok(None)`. After an
/// `Err`, `buf`'s contents are unspecified: close the connection.
pub fn decode(buf: &mut BytesMut, max_remaining: usize) -> Result<Option<Inbound>, MqttError> {
    let Some(h) = wire::header(buf, max_remaining, from_client)? else {
        return Ok(None);
    };
    if h.packet_type == CONNECT && buf.len() < h.total() {
        protocol(&buf[h.len..])?;
    }
    if wire::wait_for_body(buf, &h) {
        return Ok(None);
    }
    let packet = match h.packet_type {
        CONNECT => Inbound::Connect(decode_connect(split_body(buf, &h))?),
        PUBLISH => Inbound::Publish(decode_publish(buf, &h)?),
        PUBACK => Inbound::PubAck(take_id(buf, &h)?),
        PUBREC => Inbound::PubRec(take_id(buf, &h)?),
        PUBREL => Inbound::PubRel(take_id(buf, &h)?),
        PUBCOMP => Inbound::PubComp(take_id(buf, &h)?),
        SUBSCRIBE => with_body(buf, &h, decode_subscribe)?,
        UNSUBSCRIBE => with_body(buf, &h, decode_unsubscribe)?,
        PINGREQ => {
            skip(buf, &h);
            Inbound::PingReq
        }
        DISCONNECT => {
            skip(buf, &h);
            Inbound::Disconnect
        }
        // `header` let through only the types above.
        other => return Err(MqttError::UnexpectedPacket(other)),
    };
    Ok(Some(packet))
}

/// Decodes one server → client packet from the front of `buf`, consuming it,
/// if it is complete: the client side of [`decode`], for tests and the load
/// generator. Same contract: `Ok(None)` consumes nothing, `max_remaining` is
/// checked before the body is waited for, close after an `Err`.
pub fn decode_server(
    buf: &mut BytesMut,
    max_remaining: usize,
) -> Result<Option<Outbound>, MqttError> {
    let Some(h) = wire::header(buf, max_remaining, from_server)? else {
        return Ok(None);
    };
    if wire::wait_for_body(buf, &h) {
        return Ok(None);
    }
    let packet = match h.packet_type {
        CONNACK => with_body(buf, &h, decode_connack)?,
        PUBLISH => Outbound::Publish(decode_publish(buf, &h)?),
        PUBACK => Outbound::PubAck(take_id(buf, &h)?),
        PUBREC => Outbound::PubRec(take_id(buf, &h)?),
        PUBREL => Outbound::PubRel(take_id(buf, &h)?),
        PUBCOMP => Outbound::PubComp(take_id(buf, &h)?),
        SUBACK => with_body(buf, &h, decode_suback)?,
        UNSUBACK => Outbound::UnsubAck(take_id(buf, &h)?),
        PINGRESP => {
            skip(buf, &h);
            Outbound::PingResp
        }
        // `header` let through only the types above.
        other => return Err(MqttError::UnexpectedPacket(other)),
    };
    Ok(Some(packet))
}

/// Appends any client → server packet (client side: tests, load generator).
/// Errors, leaving `out` untouched, as the packet's encoder does.
pub fn encode_inbound(packet: &Inbound, out: &mut BytesMut) -> Result<(), MqttError> {
    match packet {
        Inbound::Connect(c) => encode_connect(c, out)?,
        Inbound::Publish(p) => encode_client_publish(p, out)?,
        Inbound::PubAck(id) => encode_puback(*id, out),
        Inbound::PubRec(id) => encode_pubrec(*id, out),
        Inbound::PubRel(id) => encode_pubrel(*id, out),
        Inbound::PubComp(id) => encode_pubcomp(*id, out),
        Inbound::Subscribe { packet_id, filters } => encode_subscribe(*packet_id, filters, out)?,
        Inbound::Unsubscribe { packet_id, filters } => {
            encode_unsubscribe(*packet_id, filters, out)?;
        }
        Inbound::PingReq => encode_pingreq(out),
        Inbound::Disconnect => encode_disconnect(out),
    }
    Ok(())
}

/// Appends any server → client packet. A PUBLISH keeps its flags (use
/// [`encode_publish`](super::encode_publish) for the gate's QoS 0 ones).
/// Errors, leaving `out` untouched, as the packet's encoder does.
///
/// # Panics
///
/// As [`encode_suback`], for a SUBACK with over 268,435,453 codes.
pub fn encode_outbound(packet: &Outbound, out: &mut BytesMut) -> Result<(), MqttError> {
    match packet {
        Outbound::ConnAck {
            session_present,
            return_code,
        } => encode_connack(*session_present, *return_code, out),
        Outbound::Publish(p) => encode_client_publish(p, out)?,
        Outbound::PubAck(id) => encode_puback(*id, out),
        Outbound::PubRec(id) => encode_pubrec(*id, out),
        Outbound::PubRel(id) => encode_pubrel(*id, out),
        Outbound::PubComp(id) => encode_pubcomp(*id, out),
        Outbound::SubAck { packet_id, granted } => encode_suback(*packet_id, granted, out),
        Outbound::UnsubAck(id) => encode_unsuback(*id, out),
        Outbound::PingResp => encode_pingresp(out),
    }
    Ok(())
}
