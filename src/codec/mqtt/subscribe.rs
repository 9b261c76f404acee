//! SUBSCRIBE and UNSUBSCRIBE (client → server), SUBACK and UNSUBACK
//! (server → client; UNSUBACK, fixed-size, is in `fixed`).
//!
//! ```text
//!  82 <len>                 SUBSCRIBE, flags 0b0010
//!  00 01                    packet id, non-zero
//!  00 04 63 68 61 74 02     filter "chat", requested qos 2 — one or more
//!
//!  a2 <len>                 UNSUBSCRIBE, flags 0b0010
//!  00 02                    packet id, non-zero
//!  00 04 63 68 61 74        filter "chat" — one or more
//!
//!  90 <len>                 SUBACK
//!  00 01                    packet id
//!  00                       one code per filter: granted qos 0..=2 or 0x80
//! ```

use bytes::{BufMut, BytesMut};

use super::topic::check_topic_filter;
use super::wire::{check_remaining, nonzero_id, put_field, put_header, string_len, Reader};
use super::{Inbound, MqttError, Outbound, MAX_REMAINING, SUBACK_FAILURE};

/// Parses a complete SUBSCRIBE body.
pub(super) fn decode_subscribe(body: &[u8]) -> Result<Inbound, MqttError> {
    let mut r = Reader::new(body);
    let packet_id = nonzero_id(r.u16("truncated packet id")?)?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.string("truncated topic filter")?;
        check_topic_filter(filter)?;
        let qos = r.byte("truncated requested qos")?;
        if qos > 2 {
            return Err(MqttError::BadQos(qos));
        }
        filters.push((filter.to_owned(), qos));
    }
    if filters.is_empty() {
        return Err(MqttError::Malformed("subscribe without filters"));
    }
    Ok(Inbound::Subscribe { packet_id, filters })
}

/// Parses a complete UNSUBSCRIBE body.
pub(super) fn decode_unsubscribe(body: &[u8]) -> Result<Inbound, MqttError> {
    let mut r = Reader::new(body);
    let packet_id = nonzero_id(r.u16("truncated packet id")?)?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.string("truncated topic filter")?;
        check_topic_filter(filter)?;
        filters.push(filter.to_owned());
    }
    if filters.is_empty() {
        return Err(MqttError::Malformed("unsubscribe without filters"));
    }
    Ok(Inbound::Unsubscribe { packet_id, filters })
}

/// Parses a complete SUBACK body.
pub(super) fn decode_suback(body: &[u8]) -> Result<Outbound, MqttError> {
    let mut r = Reader::new(body);
    let packet_id = r.u16("truncated packet id")?;
    let granted = r.rest();
    if granted.is_empty() {
        return Err(MqttError::Malformed("suback without return codes"));
    }
    if let Some(&bad) = granted.iter().find(|&&c| c > 2 && c != SUBACK_FAILURE) {
        return Err(MqttError::BadQos(bad));
    }
    Ok(Outbound::SubAck {
        packet_id,
        granted: granted.to_vec(),
    })
}

/// Appends a SUBSCRIBE (client side). Errors, leaving `out` untouched, for
/// packet id 0, no filters, a filter that is not a valid topic filter or is
/// over 65535 bytes, a requested QoS over 2, or a packet over
/// [`MAX_REMAINING`].
pub fn encode_subscribe<S: AsRef<str>>(
    packet_id: u16,
    filters: &[(S, u8)],
    out: &mut BytesMut,
) -> Result<(), MqttError> {
    nonzero_id(packet_id)?;
    if filters.is_empty() {
        return Err(MqttError::Malformed("subscribe without filters"));
    }
    let mut remaining = 2;
    for (filter, qos) in filters {
        remaining += filter_len(filter.as_ref())? + 1;
        if *qos > 2 {
            return Err(MqttError::BadQos(*qos));
        }
    }
    put_header(out, 0x82, check_remaining(remaining)?);
    out.put_u16(packet_id);
    for (filter, qos) in filters {
        put_field(out, filter.as_ref().as_bytes());
        out.put_u8(*qos);
    }
    Ok(())
}

/// Appends an UNSUBSCRIBE (client side). Errors, leaving `out` untouched,
/// for packet id 0, no filters, a filter that is not a valid topic filter or
/// is over 65535 bytes, or a packet over [`MAX_REMAINING`].
pub fn encode_unsubscribe<S: AsRef<str>>(
    packet_id: u16,
    filters: &[S],
    out: &mut BytesMut,
) -> Result<(), MqttError> {
    nonzero_id(packet_id)?;
    if filters.is_empty() {
        return Err(MqttError::Malformed("unsubscribe without filters"));
    }
    let mut remaining = 2;
    for filter in filters {
        remaining += filter_len(filter.as_ref())?;
    }
    put_header(out, 0xa2, check_remaining(remaining)?);
    out.put_u16(packet_id);
    for filter in filters {
        put_field(out, filter.as_ref().as_bytes());
    }
    Ok(())
}

/// Checks a filter for an encoder; returns its bytes on the wire.
fn filter_len(filter: &str) -> Result<usize, MqttError> {
    let n = string_len(filter)?;
    check_topic_filter(filter)?;
    Ok(n)
}

/// Appends a SUBACK: the SUBSCRIBE's packet id and one code per filter in
/// its order, each a granted QoS (0..=2) or [`SUBACK_FAILURE`] (not checked).
///
/// # Panics
///
/// If `granted` has more than [`MAX_REMAINING`] − 2 codes, which the
/// SUBACK of a decoded SUBSCRIBE (3 bytes or more per filter) cannot.
pub fn encode_suback(packet_id: u16, granted: &[u8], out: &mut BytesMut) {
    assert!(
        granted.len() <= MAX_REMAINING - 2,
        "SUBACK with {} return codes",
        granted.len()
    );
    put_header(out, 0x90, 2 + granted.len());
    out.put_u16(packet_id);
    out.extend_from_slice(granted);
}
