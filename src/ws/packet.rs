//! due's convention over WebSocket: each binary message carries exactly one
//! client packet, size prefix included (as due's ws gate and clients do),
//! in both directions.
//!
//! ```text
//!  82 09                        server frame: FIN, binary, 9 bytes
//!  00 00 00 05 00 00 07 00 01   packet: size 5, header 0, route 7, seq 1
//! ```

use bytes::BytesMut;

use super::frame::encode_binary_header;
use super::WsError;
use crate::codec::{
    self, CodecError, Frame, PacketOptions, HEARTBEAT_SIZE, HEARTBEAT_TIME_SIZE, SIZE_BYTES,
};

/// The largest binary message a client may send: the largest packet under
/// `opts`, size prefix included. A longer message closes with 1009.
#[must_use]
pub fn max_message(opts: &PacketOptions) -> usize {
    SIZE_BYTES.saturating_add(codec::max_size(opts))
}

/// Decodes the one packet a binary message carries. A message holding an
/// incomplete packet, or bytes after it, is [`WsError::NotOnePacket`]
/// (close 1007); a bad packet is [`WsError::Packet`].
pub fn decode(msg: &mut BytesMut, opts: &PacketOptions) -> Result<Frame, WsError> {
    match codec::decode(msg, opts)? {
        None => Err(WsError::NotOnePacket("incomplete packet")),
        Some(_) if !msg.is_empty() => Err(WsError::NotOnePacket("bytes after the packet")),
        Some(frame) => Ok(frame),
    }
}

/// Appends a data packet as one binary message: the frame header, then the
/// packet encoded in place (no intermediate copy). On `Err` `dst` is
/// untouched, as with [`codec::encode_data`].
pub fn encode_data(
    ext: u8,
    route: i32,
    seq: i32,
    payload: &[u8],
    opts: &PacketOptions,
    dst: &mut BytesMut,
) -> Result<(), CodecError> {
    let len = SIZE_BYTES
        + 1
        + usize::from(opts.route_bytes)
        + usize::from(opts.seq_bytes)
        + payload.len();
    let start = dst.len();
    encode_binary_header(len, dst);
    let body = dst.len();
    codec::encode_data(ext, route, seq, payload, opts, dst).inspect_err(|_| dst.truncate(start))?;
    debug_assert_eq!(dst.len() - body, len, "frame length matches the packet");
    Ok(())
}

/// Appends a heartbeat as one binary message (5 bytes, 13 with `time`).
pub fn encode_heartbeat(time: Option<i64>, opts: &PacketOptions, dst: &mut BytesMut) {
    let size = if time.is_some() {
        HEARTBEAT_TIME_SIZE
    } else {
        HEARTBEAT_SIZE
    };
    encode_binary_header(SIZE_BYTES + size, dst);
    codec::encode_heartbeat(time, opts, dst);
}

/// Appends an already-encoded packet (a push or broadcast encoded once for
/// many connections) as one binary message.
pub fn encode_encoded(packet: &[u8], dst: &mut BytesMut) {
    super::frame::encode_binary(packet, dst);
}
