//! Wire primitives every packet shares: the fixed header and the rules read
//! from it, a cursor over a packet body, MQTT strings, and their writers.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::packet_type::*;
use super::{MqttError, MAX_REMAINING, MAX_STRING};

/// Longest remaining-length varint.
const MAX_VARINT: usize = 4;

/// A complete fixed header that passed the checks of [`header`].
#[derive(Clone, Copy, Debug)]
pub(super) struct Header {
    /// High nibble of byte 0.
    pub packet_type: u8,
    /// Low nibble of byte 0.
    pub flags: u8,
    /// Bytes of the fixed header: 1 + the varint's.
    pub len: usize,
    /// The remaining length: bytes of the body.
    pub remaining: usize,
}

impl Header {
    /// Bytes of the whole packet.
    pub fn total(&self) -> usize {
        self.len + self.remaining
    }
}

/// Whether a side may receive a packet type.
pub(super) type MayReceive = fn(u8) -> bool;

/// The server's view: what clients may send.
pub(super) fn from_client(t: u8) -> bool {
    matches!(
        t,
        CONNECT
            | PUBLISH
            | PUBACK
            | PUBREC
            | PUBREL
            | PUBCOMP
            | SUBSCRIBE
            | UNSUBSCRIBE
            | PINGREQ
            | DISCONNECT
    )
}

/// The client's view: what servers may send.
pub(super) fn from_server(t: u8) -> bool {
    matches!(
        t,
        CONNACK | PUBLISH | PUBACK | PUBREC | PUBREL | PUBCOMP | SUBACK | UNSUBACK | PINGRESP
    )
}

/// The flags every type but PUBLISH must carry.
fn required_flags(t: u8) -> u8 {
    match t {
        PUBREL | SUBSCRIBE | UNSUBSCRIBE => 0b0010,
        _ => 0,
    }
}

/// The remaining length of the fixed-size types.
fn fixed_remaining(t: u8) -> Option<usize> {
    match t {
        CONNACK | PUBACK | PUBREC | PUBREL | PUBCOMP | UNSUBACK => Some(2),
        PINGREQ | PINGRESP | DISCONNECT => Some(0),
        _ => None,
    }
}

/// QoS bits of a PUBLISH's flags.
pub(super) fn publish_qos(flags: u8) -> u8 {
    (flags >> 1) & 0b11
}

/// Checks the fixed header at the front of `buf` as far as it is buffered:
/// type and flags from byte 0, then (once the varint is complete) the limit
/// and a fixed-size type's length. `Ok(None)`: the varint is not complete.
pub(super) fn header(
    buf: &[u8],
    max_remaining: usize,
    may_receive: MayReceive,
) -> Result<Option<Header>, MqttError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let (packet_type, flags) = (first >> 4, first & 0x0f);
    if !may_receive(packet_type) {
        return Err(MqttError::UnexpectedPacket(packet_type));
    }
    if packet_type == PUBLISH {
        if publish_qos(flags) == 3 {
            return Err(MqttError::BadQos(3));
        }
    } else if flags != required_flags(packet_type) {
        return Err(MqttError::BadFlags("fixed-header flags wrong for the type"));
    }
    let mut remaining = 0;
    for i in 0..MAX_VARINT {
        let Some(&b) = buf.get(1 + i) else {
            return Ok(None);
        };
        remaining |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if remaining > max_remaining {
                return Err(MqttError::TooLarge {
                    remaining,
                    max: max_remaining,
                });
            }
            if fixed_remaining(packet_type).is_some_and(|n| n != remaining) {
                return Err(MqttError::Malformed(
                    "wrong remaining length for a fixed-size packet",
                ));
            }
            return Ok(Some(Header {
                packet_type,
                flags,
                len: 2 + i,
                remaining,
            }));
        }
    }
    Err(MqttError::MalformedLength)
}

/// If the packet `h` heads is not all buffered, reserves room for the rest
/// and returns `true` ("wait").
pub(super) fn wait_for_body(buf: &mut BytesMut, h: &Header) -> bool {
    let missing = h.total().saturating_sub(buf.len());
    if missing > 0 {
        buf.reserve(missing);
    }
    missing > 0
}

/// Takes the whole packet off `buf` and returns its body, without copying.
pub(super) fn split_body(buf: &mut BytesMut, h: &Header) -> Bytes {
    buf.advance(h.len);
    buf.split_to(h.remaining).freeze()
}

/// Parses the body in place with `parse`, then takes the packet off `buf`.
pub(super) fn with_body<T>(
    buf: &mut BytesMut,
    h: &Header,
    parse: impl FnOnce(&[u8]) -> Result<T, MqttError>,
) -> Result<T, MqttError> {
    let parsed = parse(&buf[h.len..h.total()]);
    buf.advance(h.total());
    parsed
}

/// Takes a packet whose body is just a packet id off `buf`.
pub(super) fn take_id(buf: &mut BytesMut, h: &Header) -> Result<u16, MqttError> {
    with_body(buf, h, |b| {
        let mut r = Reader::new(b);
        let id = r.u16("truncated packet id")?;
        r.finish()?;
        Ok(id)
    })
}

/// Takes a packet with an empty body off `buf`.
pub(super) fn skip(buf: &mut BytesMut, h: &Header) {
    buf.advance(h.total());
}

/// Checks a packet id that must not be 0.
pub(super) fn nonzero_id(id: u16) -> Result<u16, MqttError> {
    if id == 0 {
        Err(MqttError::ZeroPacketId)
    } else {
        Ok(id)
    }
}

/// Checks an MQTT string: UTF-8 without U+0000.
pub(super) fn check_string(b: &[u8]) -> Result<&str, MqttError> {
    if b.contains(&0) {
        return Err(MqttError::BadString("contains U+0000"));
    }
    std::str::from_utf8(b).map_err(|_| MqttError::BadString("not UTF-8"))
}

/// A cursor over a packet body. Reading past the end is
/// [`MqttError::Malformed`] with the reader's `what`.
pub(super) struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    pub fn new(body: &'a [u8]) -> Self {
        Reader(body)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], MqttError> {
        let (field, rest) = self
            .0
            .split_at_checked(n)
            .ok_or(MqttError::Malformed(what))?;
        self.0 = rest;
        Ok(field)
    }

    pub fn byte(&mut self, what: &'static str) -> Result<u8, MqttError> {
        Ok(self.take(1, what)?[0])
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16, MqttError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A length-prefixed binary field.
    pub fn binary(&mut self, what: &'static str) -> Result<&'a [u8], MqttError> {
        let n = self.u16(what)?;
        self.take(usize::from(n), what)
    }

    /// A length-prefixed MQTT string.
    pub fn string(&mut self, what: &'static str) -> Result<&'a str, MqttError> {
        check_string(self.binary(what)?)
    }

    /// Everything not yet read.
    pub fn rest(self) -> &'a [u8] {
        self.0
    }

    /// Checks nothing is left after the last field.
    pub fn finish(self) -> Result<(), MqttError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(MqttError::Malformed("bytes after the last field"))
        }
    }
}

/// Bytes of the varint for `remaining` (4 for anything over 2,097,151).
pub(super) fn varint_len(remaining: usize) -> usize {
    match remaining {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Checks that a packet with this remaining length can be encoded.
pub(super) fn check_remaining(remaining: usize) -> Result<usize, MqttError> {
    if remaining > MAX_REMAINING {
        Err(MqttError::TooLarge {
            remaining,
            max: MAX_REMAINING,
        })
    } else {
        Ok(remaining)
    }
}

/// The length prefix of a string or binary field, if it fits one.
pub(super) fn field_len(b: &[u8]) -> Result<usize, MqttError> {
    if b.len() > MAX_STRING {
        Err(MqttError::StringTooLong(b.len()))
    } else {
        Ok(2 + b.len())
    }
}

/// Checks a string for an encoder; returns its bytes on the wire.
pub(super) fn string_len(s: &str) -> Result<usize, MqttError> {
    let n = field_len(s.as_bytes())?;
    check_string(s.as_bytes())?;
    Ok(n)
}

/// Appends a fixed header; reserves room for the whole packet first.
/// `remaining` must be at most [`MAX_REMAINING`].
pub(super) fn put_header(out: &mut BytesMut, first: u8, remaining: usize) {
    debug_assert!(remaining <= MAX_REMAINING);
    let mut head = [0u8; 1 + MAX_VARINT];
    head[0] = first;
    let mut n = 1;
    let mut rest = remaining;
    loop {
        let low = (rest & 0x7f) as u8;
        rest >>= 7;
        head[n] = if rest > 0 { low | 0x80 } else { low };
        n += 1;
        if rest == 0 || n == head.len() {
            break;
        }
    }
    out.reserve(n + remaining);
    out.extend_from_slice(&head[..n]);
}

/// Appends a length-prefixed field checked by [`field_len`].
pub(super) fn put_field(out: &mut BytesMut, b: &[u8]) {
    out.put_u16(b.len() as u16);
    out.extend_from_slice(b);
}
