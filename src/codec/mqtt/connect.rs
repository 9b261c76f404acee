//! CONNECT (client → server) and CONNACK (server → client).
//!
//! ```text
//!  10 <len>            CONNECT, flags 0
//!  00 04 4d 51 54 54   protocol name "MQTT" (3.1.1)   | 00 06 "MQIsdp" (3.1)
//!  04                  protocol level 4 (3.1.1)        | 3 (3.1)
//!  c2                  connect flags: 7 user name, 6 password, 5 will retain,
//!                      4..3 will qos, 2 will, 1 clean session, 0 reserved (0)
//!  00 3c               keep alive, seconds
//!  then, each u16-length-prefixed: client id; will topic and will payload
//!  (if will); user name (if flagged); password (if flagged)
//!
//!  20 02 00 00         CONNACK: acknowledge flags (bit 0 session present),
//!                      return code
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use super::topic::check_topic_name;
use super::wire::{field_len, put_field, put_header, string_len, Reader};
use super::{Connect, MqttError, Outbound, Will};

const USERNAME: u8 = 0x80;
const PASSWORD: u8 = 0x40;
const WILL_RETAIN: u8 = 0x20;
const WILL_QOS_SHIFT: u8 = 3;
const WILL_QOS: u8 = 0b11 << WILL_QOS_SHIFT;
const WILL: u8 = 0x04;
const CLEAN_SESSION: u8 = 0x02;
const RESERVED: u8 = 0x01;

/// Protocol name and the level that goes with it.
const PROTOCOLS: [(&[u8], u8); 2] = [(b"MQTT", 4), (b"MQIsdp", 3)];

/// Checks the protocol name and level at the front of a CONNECT body as soon
/// as they are buffered (the body may be partial). `Ok(Some((level, len)))`
/// once they are, `len` being their bytes; `Ok(None)` until then.
pub(super) fn protocol(body: &[u8]) -> Result<Option<(u8, usize)>, MqttError> {
    let Some(&[hi, lo]) = body.first_chunk::<2>() else {
        return Ok(None);
    };
    let name_len = usize::from(u16::from_be_bytes([hi, lo]));
    if !PROTOCOLS.iter().any(|(name, _)| name.len() == name_len) {
        return Err(MqttError::BadProtocolName);
    }
    let Some(name) = body.get(2..2 + name_len) else {
        return Ok(None);
    };
    let Some(&(_, expected)) = PROTOCOLS.iter().find(|(n, _)| *n == name) else {
        return Err(MqttError::BadProtocolName);
    };
    let Some(&level) = body.get(2 + name_len) else {
        return Ok(None);
    };
    if level != expected {
        return Err(MqttError::UnsupportedLevel(level));
    }
    Ok(Some((level, 3 + name_len)))
}

/// Checks the connect flags byte.
fn check_flags(flags: u8, level: u8) -> Result<(), MqttError> {
    if flags & RESERVED != 0 {
        return Err(MqttError::BadFlags("connect flags reserved bit set"));
    }
    let will_qos = (flags & WILL_QOS) >> WILL_QOS_SHIFT;
    if flags & WILL == 0 {
        if will_qos != 0 || flags & WILL_RETAIN != 0 {
            return Err(MqttError::BadFlags(
                "will qos or retain without the will flag",
            ));
        }
    } else if will_qos == 3 {
        return Err(MqttError::BadQos(will_qos));
    }
    if level == 4 && flags & PASSWORD != 0 && flags & USERNAME == 0 {
        return Err(MqttError::BadFlags("password without user name"));
    }
    Ok(())
}

/// Parses a complete CONNECT body.
pub(super) fn decode_connect(body: Bytes) -> Result<Connect, MqttError> {
    let (level, head) =
        protocol(&body)?.ok_or(MqttError::Malformed("truncated protocol name or level"))?;
    let mut r = Reader::new(&body[head..]);
    let flags = r.byte("truncated connect flags")?;
    check_flags(flags, level)?;
    let keep_alive = r.u16("truncated keep alive")?;
    let client_id = r.string("truncated client id")?.to_owned();
    let will = if flags & WILL != 0 {
        let topic = check_topic_name(r.binary("truncated will topic")?)?.to_owned();
        let payload = body.slice_ref(r.binary("truncated will payload")?);
        Some(Will {
            topic,
            payload,
            qos: (flags & WILL_QOS) >> WILL_QOS_SHIFT,
            retain: flags & WILL_RETAIN != 0,
        })
    } else {
        None
    };
    let username = match flags & USERNAME {
        0 => None,
        _ => Some(r.string("truncated user name")?.to_owned()),
    };
    let password = match flags & PASSWORD {
        0 => None,
        _ => Some(body.slice_ref(r.binary("truncated password")?)),
    };
    r.finish()?;
    Ok(Connect {
        level,
        client_id,
        clean_session: flags & CLEAN_SESSION != 0,
        keep_alive,
        username,
        password,
        will,
    })
}

/// Appends a CONNECT (client side). Errors, leaving `out` untouched, for a
/// level other than 3 or 4, a field over 65535 bytes, a string that is not
/// an MQTT string, a bad will topic or will QoS, or (level 4) a password
/// without a user name.
pub fn encode_connect(c: &Connect, out: &mut BytesMut) -> Result<(), MqttError> {
    let &(name, _) = PROTOCOLS
        .iter()
        .find(|(_, level)| *level == c.level)
        .ok_or(MqttError::UnsupportedLevel(c.level))?;
    let mut flags = 0;
    let mut remaining = 2 + name.len() + 1 + 1 + 2 + string_len(&c.client_id)?;
    if let Some(w) = &c.will {
        remaining += string_len(&w.topic)? + field_len(&w.payload)?;
        check_topic_name(w.topic.as_bytes())?;
        if w.qos > 2 {
            return Err(MqttError::BadQos(w.qos));
        }
        flags |= WILL | (w.qos << WILL_QOS_SHIFT) | if w.retain { WILL_RETAIN } else { 0 };
    }
    if let Some(u) = &c.username {
        remaining += string_len(u)?;
        flags |= USERNAME;
    }
    if let Some(p) = &c.password {
        remaining += field_len(p)?;
        flags |= PASSWORD;
    }
    if c.clean_session {
        flags |= CLEAN_SESSION;
    }
    check_flags(flags, c.level)?;
    // Five fields of at most 65537 bytes each: far below MAX_REMAINING.
    put_header(out, 0x10, remaining);
    put_field(out, name);
    out.put_u8(c.level);
    out.put_u8(flags);
    out.put_u16(c.keep_alive);
    put_field(out, c.client_id.as_bytes());
    if let Some(w) = &c.will {
        put_field(out, w.topic.as_bytes());
        put_field(out, &w.payload);
    }
    if let Some(u) = &c.username {
        put_field(out, u.as_bytes());
    }
    if let Some(p) = &c.password {
        put_field(out, p);
    }
    Ok(())
}

/// Appends a CONNACK: `20 02`, the session-present flag, `return_code`
/// (one of [`connack`](super::connack)).
pub fn encode_connack(session_present: bool, return_code: u8, out: &mut BytesMut) {
    out.extend_from_slice(&[0x20, 0x02, u8::from(session_present), return_code]);
}

/// Parses a CONNACK body (2 bytes, checked by the header).
pub(super) fn decode_connack(body: &[u8]) -> Result<Outbound, MqttError> {
    let mut r = Reader::new(body);
    let ack_flags = r.byte("truncated acknowledge flags")?;
    let return_code = r.byte("truncated return code")?;
    r.finish()?;
    if ack_flags & !1 != 0 {
        return Err(MqttError::BadFlags("connack reserved bits set"));
    }
    Ok(Outbound::ConnAck {
        session_present: ack_flags & 1 != 0,
        return_code,
    })
}
