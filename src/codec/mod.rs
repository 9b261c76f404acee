//! Client packet codec, due-compatible. Pure functions over `BytesMut`: no I/O,
//! no clock. (HELPER: implement; the public interface below is fixed.)
//!
//! ```text
//!  size   u32   bytes that follow (header+route+seq+payload), byte order configurable
//!  header u8    bit 7 = heartbeat; bits 6..0 = extension code (0 from due clients)
//!  route  i8|i16|i32   route_bytes = 1|2|4     — absent in heartbeats
//!  seq    -|i8|i16|i32 seq_bytes = 0|1|2|4     — absent in heartbeats
//!  payload      at most buffer_bytes
//!  heartbeat:   size=1, header=0x80; with heartbeat_time size=9 and an i64 unix-nanos
//! ```

use bytes::{Bytes, BytesMut};

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
    /// The route is known but every node serving it is down.
    pub const NODE_DOWN: u8 = 2;
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

/// Decodes one frame from the front of `src`, advancing past it.
/// `Ok(None)`: not enough bytes yet. The size prefix is checked against the
/// limit as soon as its 4 bytes are available, before the body arrives.
pub fn decode(src: &mut BytesMut, opts: &PacketOptions) -> Result<Option<Frame>, CodecError> {
    let _ = (src, opts);
    todo!("codec helper")
}

/// Appends a data packet to `dst`.
pub fn encode_data(
    ext: u8,
    route: i32,
    seq: i32,
    payload: &[u8],
    opts: &PacketOptions,
    dst: &mut BytesMut,
) -> Result<(), CodecError> {
    let _ = (ext, route, seq, payload, opts, dst);
    todo!("codec helper")
}

/// Appends a heartbeat to `dst`: 5 bytes, or 13 with `time` when `Some`.
pub fn encode_heartbeat(time: Option<i64>, opts: &PacketOptions, dst: &mut BytesMut) {
    let _ = (time, opts, dst);
    todo!("codec helper")
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
