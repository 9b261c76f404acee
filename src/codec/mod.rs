//! Client packet codec, due-compatible: the bytes a client and the gate
//! exchange over TCP or WebSocket binary messages.
//!
//! Owns the framing only. Pure functions over `BytesMut`: no I/O, no clock, no
//! allocation per packet beyond growing the caller's buffer; what a route or
//! an extension code means is the session's and shard's business.
//!
//! ```text
//!  size   u32   bytes that follow (header+route+seq+payload), byte order configurable
//!  header u8    bit 7 = heartbeat; bits 6..0 = extension code (0 from due clients);
//!               in a heartbeat, bit 6 = a time follows
//!  route  i8|i16|i32   route_bytes = 1|2|4     — absent in heartbeats
//!  seq    -|i8|i16|i32 seq_bytes = 0|1|2|4     — absent in heartbeats
//!  payload      at most buffer_bytes
//!  heartbeat:   size=1, header=0x80
//!  timed heartbeat (heartbeat_time): size=9, header=0xC0 (bit 6 = time follows),
//!               then an i64 unix-nanos
//! ```
//!
//! For example, with the defaults (big-endian, route 2, seq 2) route 7, seq 1
//! and payload `"hi"` is 11 bytes:
//!
//! ```text
//!  00 00 00 07   size = 7 (1 header + 2 route + 2 seq + 2 payload)
//!  00            header: data, ext 0
//!  00 07         route = 7
//!  00 01         seq = 1
//!  68 69         payload "hi"
//! ```
//!
//! A heartbeat with the time, due-style, is 13 bytes:
//!
//! ```text
//!  00 00 00 09               size = 9 (1 header + 8 time)
//!  c0                        header: heartbeat (bit 7), time follows (bit 6)
//!  18 16 68 7e c0 57 00 00   time: i64 unix nanos (2025-01-01T00:00:00Z)
//! ```
//!
//! due's readers (Go `packet.ReadBuffer`) read the 8 time bytes only when
//! bit 6 is set, so [`encode_heartbeat`] always sets it with a time. Readers
//! that decide by the size field (due's TypeScript client, older due) see
//! the same 13 bytes. [`decode`] accepts what either kind of sender writes:
//! a header with bit 7 set is a heartbeat; bit 6 set means size 9 with a
//! time; bit 6 clear means size 1, or size 9 with a time (senders that mark
//! the time by size only). Bits 5..0 of a heartbeat header are ignored.
//! Sizes in [`CodecError::TooLarge`] are values of the size field, and its
//! `max` is [`max_size`].

use bytes::{Buf, Bytes, BytesMut};

mod int;
pub mod mqtt;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use int::{fits, get_int, i64_bytes, i64_from, put_int, u32_bytes, u32_from, MAX_INT_BYTES};

/// Byte order of every multi-byte field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ByteOrder {
    /// Network order, due's default.
    #[default]
    Big,
    /// Little-endian.
    Little,
}

/// Packet layout and limits, due's `[packet]` section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketOptions {
    /// Byte order of size, route, seq and heartbeat time.
    pub byte_order: ByteOrder,
    /// Width of the route field: 1, 2 or 4.
    pub route_bytes: u8,
    /// Width of the seq field: 0, 1, 2 or 4.
    pub seq_bytes: u8,
    /// Largest payload accepted or produced (due's `bufferBytes`).
    pub buffer_bytes: usize,
    /// Server heartbeats carry the server's unix time in nanoseconds.
    pub heartbeat_time: bool,
}

impl Default for PacketOptions {
    fn default() -> Self {
        PacketOptions {
            byte_order: ByteOrder::Big,
            route_bytes: 2,
            seq_bytes: 2,
            buffer_bytes: 5000,
            heartbeat_time: false,
        }
    }
}

/// A data packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Extension code, header bits 6..0 (0 for ordinary packets).
    pub ext: u8,
    /// Route, sign-extended from `route_bytes`.
    pub route: i32,
    /// Sequence number, sign-extended from `seq_bytes` (0 when `seq_bytes` = 0).
    pub seq: i32,
    /// Opaque payload (a slice of the read buffer: no copy).
    pub payload: Bytes,
}

/// One decoded unit of the client stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A heartbeat; `time` is the unix-nanos field when present.
    Heartbeat {
        /// Sender's unix time in nanoseconds, if the heartbeat carried it.
        time: Option<i64>,
    },
    /// A data packet.
    Data(Packet),
}

/// Extension codes ringgate puts in server→client headers (due clients ignore them).
pub mod ext {
    /// No node serves the route.
    pub const NO_ROUTE: u8 = 1;
    /// The route is known but every node serving it is down, or the node
    /// the request went to dropped its link before replying.
    pub const NODE_DOWN: u8 = 2;
    /// The node did not reply within the route's request timeout.
    pub const TIMEOUT: u8 = 3;
    /// The node's link is over its queue limit (`link.max_queued_bytes`):
    /// the request was not sent. Retry later.
    pub const BUSY: u8 = 4;
    /// The request does not fit the node's frame limit.
    pub const TOO_LARGE: u8 = 5;
    /// The node answered with an error; the payload is its text.
    pub const NODE_ERROR: u8 = 6;
    /// The route needs a bound user (an `authorized` or `stateful` route)
    /// and the session has none.
    pub const UNAUTHORIZED: u8 = 7;
    /// The route is `internal`: nodes may call it, clients may not.
    pub const FORBIDDEN: u8 = 8;
    /// The route is `stateful` and the user is bound to no node of its
    /// service yet (a node binds it with `bind_node`).
    pub const NOT_BOUND: u8 = 9;
    /// The connection sent more than `[limits]` allows
    /// (`requests_per_sec`, `bytes_per_sec`): the request was not sent.
    /// Slow down; with `limits.action = "close"` the connection closes next.
    pub const RATE_LIMITED: u8 = 10;
    /// Too many of this connection's requests wait for their replies
    /// (`limits.max_inflight`): the request was not sent. Retry once one
    /// is answered.
    pub const INFLIGHT_FULL: u8 = 11;
}

/// Codec errors. None allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The declared size would carry a payload over `buffer_bytes`.
    #[error("packet declares {size} bytes, over the limit of {max}")]
    TooLarge { size: usize, max: usize },
    /// The declared size is too small for the header/route/seq, or a heartbeat has a bad size.
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// A route or seq does not fit its configured width (encode side).
    #[error("{0} out of range for its configured width")]
    OutOfRange(&'static str),
}

/// Width of the size prefix.
pub const SIZE_BYTES: usize = 4;
/// Header bit marking a heartbeat.
pub const HEARTBEAT_BIT: u8 = 0x80;
/// Header bit marking a heartbeat that carries the sender's time (due's
/// `heartbeatTimeBit`); only meaningful together with [`HEARTBEAT_BIT`].
pub const HEARTBEAT_TIME_BIT: u8 = 0x40;
/// Header bits carrying the extension code.
pub const EXT_MASK: u8 = 0x7f;
/// Size field of a heartbeat without time (the header alone).
pub const HEARTBEAT_SIZE: usize = 1;
/// Size field of a heartbeat with time (header and an i64).
pub const HEARTBEAT_TIME_SIZE: usize = 9;
/// Longest data-packet prefix: size, header, and route and seq of 4 bytes.
const MAX_HEAD: usize = SIZE_BYTES + 1 + 2 * MAX_INT_BYTES;

/// The largest size field a data packet may declare under `opts`:
/// header, route, seq and `buffer_bytes` of payload. The `max` of
/// [`CodecError::TooLarge`]; a read buffer of `SIZE_BYTES + max_size` holds
/// any frame.
#[must_use]
pub fn max_size(opts: &PacketOptions) -> usize {
    (1 + usize::from(opts.route_bytes) + usize::from(opts.seq_bytes))
        .saturating_add(opts.buffer_bytes)
}

/// Decodes one frame from the front of `src`, advancing past it.
/// `Ok(None)`: not enough bytes yet. The size prefix is checked against the
/// limit as soon as its 4 bytes are available, before the body arrives.
///
/// Call it in a loop after every read until it returns `Ok(None)`; when it
/// does, `src` has been reserved for the rest of the pending frame so the
/// next read can complete it. A data packet's payload is split off `src`
/// without copying. After an `Err` the contents of `src` are unspecified:
/// close the connection. Options with a route or seq wider than 4 bytes
/// (which config validation rejects) make every data packet `Malformed`.
pub fn decode(src: &mut BytesMut, opts: &PacketOptions) -> Result<Option<Frame>, CodecError> {
    let order = opts.byte_order;
    let Some(&prefix) = src.first_chunk::<SIZE_BYTES>() else {
        return Ok(None);
    };
    let size = u32_from(prefix, order) as usize;
    if size == 0 {
        return Err(CodecError::Malformed("size 0"));
    }
    let max = max_size(opts);
    // Without the header we cannot tell a heartbeat from a data packet, but
    // no heartbeat is longer than `HEARTBEAT_TIME_SIZE`.
    if size > max && size > HEARTBEAT_TIME_SIZE {
        return Err(CodecError::TooLarge { size, max });
    }
    let total = SIZE_BYTES + size;
    let Some(&header) = src.get(SIZE_BYTES) else {
        src.reserve(total - src.len());
        return Ok(None);
    };

    if header & HEARTBEAT_BIT != 0 {
        if header & HEARTBEAT_TIME_BIT != 0 && size != HEARTBEAT_TIME_SIZE {
            return Err(CodecError::Malformed("heartbeat time bit without size 9"));
        }
        if size != HEARTBEAT_SIZE && size != HEARTBEAT_TIME_SIZE {
            return Err(CodecError::Malformed("heartbeat size is neither 1 nor 9"));
        }
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        // The bytes after the header: none for size 1, the time for size 9
        // (whether or not the sender set the time bit).
        let time = src[SIZE_BYTES + 1..total]
            .first_chunk::<8>()
            .map(|&t| i64_from(t, order));
        src.advance(total);
        return Ok(Some(Frame::Heartbeat { time }));
    }

    let (route_bytes, seq_bytes) = (usize::from(opts.route_bytes), usize::from(opts.seq_bytes));
    if route_bytes > MAX_INT_BYTES || seq_bytes > MAX_INT_BYTES {
        return Err(CodecError::Malformed(
            "route_bytes or seq_bytes over 4 in options",
        ));
    }
    let head = 1 + route_bytes + seq_bytes;
    if size < head {
        return Err(CodecError::Malformed(
            "data packet shorter than header, route and seq",
        ));
    }
    if size > max {
        return Err(CodecError::TooLarge { size, max });
    }
    if src.len() < total {
        src.reserve(total - src.len());
        return Ok(None);
    }
    let route_at = SIZE_BYTES + 1;
    let seq_at = route_at + route_bytes;
    let route = get_int(&src[route_at..seq_at], order);
    let seq = get_int(&src[seq_at..seq_at + seq_bytes], order);
    src.advance(SIZE_BYTES + head);
    let payload = src.split_to(size - head).freeze();
    Ok(Some(Frame::Data(Packet {
        ext: header & EXT_MASK,
        route,
        seq,
        payload,
    })))
}

/// Appends a data packet to `dst`.
///
/// Checks everything before writing, so on `Err` `dst` is untouched: `ext`
/// must fit in 7 bits, `route` and `seq` in the signed range of their widths
/// (`seq` is ignored when `seq_bytes` = 0; a width over 4 bytes fits
/// nothing), and `payload` in `buffer_bytes`. `TooLarge` reports the size
/// field the packet would have carried.
pub fn encode_data(
    ext: u8,
    route: i32,
    seq: i32,
    payload: &[u8],
    opts: &PacketOptions,
    dst: &mut BytesMut,
) -> Result<(), CodecError> {
    let (route_bytes, seq_bytes) = (usize::from(opts.route_bytes), usize::from(opts.seq_bytes));
    if ext > EXT_MASK {
        return Err(CodecError::OutOfRange("ext"));
    }
    if route_bytes > MAX_INT_BYTES || !fits(route, route_bytes) {
        return Err(CodecError::OutOfRange("route"));
    }
    if seq_bytes > MAX_INT_BYTES || (seq_bytes != 0 && !fits(seq, seq_bytes)) {
        return Err(CodecError::OutOfRange("seq"));
    }
    let size = (1 + route_bytes + seq_bytes).saturating_add(payload.len());
    if payload.len() > opts.buffer_bytes {
        return Err(CodecError::TooLarge {
            size,
            max: max_size(opts),
        });
    }
    let Ok(size32) = u32::try_from(size) else {
        return Err(CodecError::TooLarge {
            size,
            max: u32::MAX as usize,
        });
    };

    // Assemble size, header, route and seq on the stack: one copy, not four.
    let order = opts.byte_order;
    let seq_at = SIZE_BYTES + 1 + route_bytes;
    let head_len = seq_at + seq_bytes;
    let mut head = [0u8; MAX_HEAD];
    head[..SIZE_BYTES].copy_from_slice(&u32_bytes(size32, order));
    head[SIZE_BYTES] = ext;
    put_int(&mut head[SIZE_BYTES + 1..seq_at], route, order);
    put_int(&mut head[seq_at..head_len], seq, order);

    dst.reserve(SIZE_BYTES + size);
    dst.extend_from_slice(&head[..head_len]);
    dst.extend_from_slice(payload);
    Ok(())
}

/// Appends a heartbeat to `dst`: 5 bytes with header 0x80, or with `time`
/// 13 bytes with header 0xC0 (the time bit set, as due's readers need).
///
/// `opts.heartbeat_time` is not consulted: the caller decides whether to
/// send the time. Only `byte_order` applies.
pub fn encode_heartbeat(time: Option<i64>, opts: &PacketOptions, dst: &mut BytesMut) {
    let order = opts.byte_order;
    let mut frame = [0u8; SIZE_BYTES + HEARTBEAT_TIME_SIZE];
    let (size, header) = match time {
        None => (HEARTBEAT_SIZE, HEARTBEAT_BIT),
        Some(t) => {
            frame[SIZE_BYTES + 1..].copy_from_slice(&i64_bytes(t, order));
            (HEARTBEAT_TIME_SIZE, HEARTBEAT_BIT | HEARTBEAT_TIME_BIT)
        }
    };
    frame[..SIZE_BYTES].copy_from_slice(&u32_bytes(size as u32, order));
    frame[SIZE_BYTES] = header;
    dst.extend_from_slice(&frame[..SIZE_BYTES + size]);
}

/// Appends any frame (convenience over the two functions above).
pub fn encode(frame: &Frame, opts: &PacketOptions, dst: &mut BytesMut) -> Result<(), CodecError> {
    match frame {
        Frame::Heartbeat { time } => {
            encode_heartbeat(*time, opts, dst);
            Ok(())
        }
        Frame::Data(p) => encode_data(p.ext, p.route, p.seq, &p.payload, opts, dst),
    }
}
