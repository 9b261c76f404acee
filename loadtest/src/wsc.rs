//! The client side of WebSocket (RFC 6455) as the gate speaks it: the
//! HTTP/1.1 upgrade (request, `101` check, `Sec-WebSocket-Accept`), masked
//! client frames carrying one due packet each, and an incremental decoder of
//! the server's frames. Pure functions over byte buffers; no I/O.
//!
//! ```text
//!  out: header (FIN|binary, MASK|len, [ext len], key) + packet encoded in place, then masked in place
//!  in:  parse_header ─ binary, FIN ─▶ size prefix == frame length? ─▶ codec::decode (split off rbuf, no copy)
//!                    ├ binary/continuation fragments ─▶ joined in a Vec (rare: the gate sends one frame per message)
//!                    ├ ping ─▶ masked pong into the outbox      ├ pong ─▶ ignored
//!                    └ close ─▶ the connection counts as closed └ text, masked server frame ─▶ error
//! ```
//!
//! The packet inside a binary message is decoded with `ringgate::codec`
//! straight from the read buffer, as in TCP mode: no per-packet allocation.

use base64::Engine;
use bytes::{Buf, BufMut, BytesMut};
use ringgate::codec::{self, ByteOrder, CodecError, Frame, PacketOptions, SIZE_BYTES};
use ringgate::ws::frame::{apply_mask, parse_header};
use ringgate::ws::OpCode;
use sha1::{Digest, Sha1};

/// RFC 6455 §1.3: appended to the key before hashing.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Largest `101` response header accepted.
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024;

const FIN: u8 = 0x80;
const MASK_BIT: u8 = 0x80;

/// The `Sec-WebSocket-Accept` a server must answer `key` with.
pub fn accept_for(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64.
pub fn new_key() -> String {
    let mut raw = [0u8; 16];
    fill_random(&mut raw);
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// Fills `buf` from the kernel's random source (a time-seeded xorshift if
/// that fails: a key only needs to differ between connections).
fn fill_random(buf: &mut [u8]) {
    // SAFETY: getrandom writes at most `buf.len()` bytes into `buf`.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n != buf.len() as isize {
        let mut rng = MaskRng::new();
        for chunk in buf.chunks_mut(4) {
            let k = rng.next_key();
            chunk.copy_from_slice(&k[..chunk.len()]);
        }
    }
}

/// The upgrade request for `path` on `host`, offering `protocol` (the
/// `Sec-WebSocket-Protocol` header, e.g. `mqtt`) when given.
pub fn upgrade_request(path: &str, host: &str, key: &str, protocol: Option<&str>) -> Vec<u8> {
    let offer = protocol
        .map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n"))
        .unwrap_or_default();
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
    )
    .into_bytes()
}

/// Checks the server's answer to the upgrade. `Ok(None)`: the header is not
/// complete yet; `Ok(Some(n))`: a valid `101` whose header is the first `n`
/// bytes (what follows is the first frames). With `protocol`, the `101`
/// must select that subprotocol (`Sec-WebSocket-Protocol`).
pub fn parse_response(
    buf: &[u8],
    accept: &str,
    protocol: Option<&str>,
) -> Result<Option<usize>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_RESPONSE_BYTES {
            return Err(format!(
                "upgrade response header over {MAX_RESPONSE_BYTES} bytes"
            ));
        }
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let mut words = status.split_whitespace();
    let (version, code) = (words.next(), words.next());
    if !version.is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(format!("not an HTTP response: {status:?}"));
    }
    if code != Some("101") {
        return Err(format!("upgrade refused: {status:?}"));
    }
    let (mut upgrade, mut connection, mut got_accept) = (false, false, None);
    let mut got_protocol = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("bad header line {line:?}"));
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "upgrade" => upgrade = value.eq_ignore_ascii_case("websocket"),
            "connection" => {
                connection = value
                    .split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            }
            "sec-websocket-accept" => got_accept = Some(value.to_string()),
            "sec-websocket-protocol" => got_protocol = Some(value.to_string()),
            _ => {}
        }
    }
    if !upgrade || !connection {
        return Err("101 without Upgrade: websocket / Connection: upgrade".into());
    }
    if let Some(want) = protocol {
        if got_protocol.as_deref() != Some(want) {
            return Err(format!(
                "101 selected subprotocol {got_protocol:?}, not {want:?} (is [network.mqtt] enabled?)"
            ));
        }
    }
    match got_accept {
        Some(a) if a == accept => Ok(Some(end + 4)),
        Some(a) => Err(format!(
            "wrong Sec-WebSocket-Accept {a:?}, expected {accept:?}"
        )),
        None => Err("101 without Sec-WebSocket-Accept".into()),
    }
}

/// Masking keys: xorshift64*, one generator per connection (RFC 6455 wants
/// unpredictable keys against proxy cache poisoning; a load generator only
/// needs them to vary).
#[derive(Clone, Copy, Debug)]
pub struct MaskRng(u64);

impl MaskRng {
    /// A generator seeded from the clock and a process-wide counter.
    pub fn new() -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let seed = t ^ N.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        MaskRng(seed | 1)
    }

    /// The next masking key.
    pub fn next_key(&mut self) -> [u8; 4] {
        ((self.next_u64() >> 32) as u32).to_ne_bytes()
    }

    /// The next 64 random bits (also what `soak` picks connections with).
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

impl Default for MaskRng {
    fn default() -> Self {
        MaskRng::new()
    }
}

/// Appends a final, masked client frame header for `len` payload bytes.
fn put_header(opcode: OpCode, len: usize, key: [u8; 4], dst: &mut BytesMut) {
    dst.reserve(14 + len);
    let b0 = FIN | opcode as u8;
    match len {
        0..=125 => dst.put_slice(&[b0, MASK_BIT | len as u8]),
        126..=0xffff => {
            dst.put_slice(&[b0, MASK_BIT | 126]);
            dst.put_u16(len as u16);
        }
        _ => {
            dst.put_slice(&[b0, MASK_BIT | 127]);
            dst.put_u64(len as u64);
        }
    }
    dst.put_slice(&key);
}

/// Appends a data packet as one masked binary frame: the header, then the
/// packet encoded in place and masked in place (no intermediate buffer). On
/// `Err` `dst` is untouched.
pub fn encode_data(
    route: i32,
    seq: i32,
    payload: &[u8],
    opts: &PacketOptions,
    key: [u8; 4],
    dst: &mut BytesMut,
) -> Result<(), CodecError> {
    let len = SIZE_BYTES
        + 1
        + usize::from(opts.route_bytes)
        + usize::from(opts.seq_bytes)
        + payload.len();
    let start = dst.len();
    put_header(OpCode::Binary, len, key, dst);
    let body = dst.len();
    codec::encode_data(0, route, seq, payload, opts, dst).inspect_err(|_| dst.truncate(start))?;
    debug_assert_eq!(dst.len() - body, len);
    apply_mask(&mut dst[body..], key);
    Ok(())
}

/// Appends one masked binary frame of exactly `len` bytes that `fill`
/// appends to `dst` (encoded in place, then masked in place). If `fill`
/// fails, `dst` is left as it was.
pub fn encode_binary_with<E>(
    len: usize,
    key: [u8; 4],
    dst: &mut BytesMut,
    fill: impl FnOnce(&mut BytesMut) -> Result<(), E>,
) -> Result<(), E> {
    let start = dst.len();
    put_header(OpCode::Binary, len, key, dst);
    let body = dst.len();
    fill(dst).inspect_err(|_| dst.truncate(start))?;
    debug_assert_eq!(dst.len() - body, len);
    apply_mask(&mut dst[body..], key);
    Ok(())
}

/// Appends a heartbeat packet as one masked binary frame.
pub fn encode_heartbeat(opts: &PacketOptions, key: [u8; 4], dst: &mut BytesMut) {
    put_header(OpCode::Binary, SIZE_BYTES + codec::HEARTBEAT_SIZE, key, dst);
    let body = dst.len();
    codec::encode_heartbeat(None, opts, dst);
    apply_mask(&mut dst[body..], key);
}

/// Appends a masked control frame (pong, close); `payload` ≤ 125 bytes.
pub fn encode_control(opcode: OpCode, payload: &[u8], key: [u8; 4], dst: &mut BytesMut) {
    let payload = &payload[..payload.len().min(125)];
    put_header(opcode, payload.len(), key, dst);
    let body = dst.len();
    dst.put_slice(payload);
    apply_mask(&mut dst[body..], key);
}

/// Read-side state of one WebSocket connection.
#[derive(Debug, Default)]
pub struct WsIn {
    /// A fragmented binary message being joined.
    frag: Option<Vec<u8>>,
    /// Masking keys of this connection's frames (pongs included).
    pub rng: MaskRng,
}

/// How a decoding pass ended without an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Every complete frame was handled; a partial one may remain.
    More,
    /// The server sent a close frame.
    Closed,
}

/// The size prefix of the packet at the front of `src`.
fn size_prefix(src: &[u8], order: ByteOrder) -> Option<usize> {
    let p = *src.first_chunk::<4>()?;
    Some(match order {
        ByteOrder::Big => u32::from_be_bytes(p),
        ByteOrder::Little => u32::from_le_bytes(p),
    } as usize)
}

/// Decodes every complete server frame at the front of `src`, calling
/// `on_frame` for the packet of each binary message and appending a pong
/// to `out` for each ping. A partial frame stays in `src` (reserved for).
pub fn decode(
    src: &mut BytesMut,
    opts: &PacketOptions,
    ws: &mut WsIn,
    out: &mut BytesMut,
    on_frame: &mut impl FnMut(Frame),
) -> Result<Flow, String> {
    let limit = SIZE_BYTES + codec::max_size(opts);
    loop {
        let h = match parse_header(src) {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(Flow::More),
            Err(e) => return Err(format!("bad frame from server: {e}")),
        };
        if h.mask.is_some() {
            return Err("masked frame from server".into());
        }
        if h.len > limit as u64 {
            return Err(format!(
                "server frame of {} bytes, over the largest packet ({limit})",
                h.len
            ));
        }
        let len = h.len as usize;
        let total = h.header_len + len;
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(Flow::More);
        }
        match h.opcode {
            OpCode::Binary if h.fin && ws.frag.is_none() => {
                // The message must be exactly one packet: check its size
                // prefix before decoding, so a short or long packet cannot
                // eat into the next frame.
                let body = &src[h.header_len..total];
                if size_prefix(body, opts.byte_order).map(|s| s + SIZE_BYTES) != Some(len) {
                    return Err("binary message is not exactly one packet".into());
                }
                src.advance(h.header_len);
                match codec::decode(src, opts) {
                    Ok(Some(frame)) => on_frame(frame),
                    Ok(None) => return Err("incomplete packet in a binary message".into()),
                    Err(e) => return Err(format!("bad packet from server: {e}")),
                }
            }
            OpCode::Binary | OpCode::Continuation => {
                let fresh = h.opcode == OpCode::Binary;
                if fresh == ws.frag.is_some() {
                    return Err("fragments out of order".into());
                }
                let frag = ws.frag.get_or_insert_with(Vec::new);
                frag.extend_from_slice(&src[h.header_len..total]);
                if frag.len() > limit {
                    return Err("fragmented message over the largest packet".into());
                }
                src.advance(total);
                if h.fin {
                    let mut msg = BytesMut::from(&ws.frag.take().unwrap_or_default()[..]);
                    match ringgate::ws::packet::decode(&mut msg, opts) {
                        Ok(frame) => on_frame(frame),
                        Err(e) => return Err(format!("bad message from server: {e}")),
                    }
                }
            }
            OpCode::Text => return Err("text message from server".into()),
            OpCode::Ping => {
                let key = ws.rng.next_key();
                encode_control(OpCode::Pong, &src[h.header_len..total], key, out);
                src.advance(total);
            }
            OpCode::Pong => src.advance(total),
            OpCode::Close => {
                src.advance(total);
                return Ok(Flow::Closed);
            }
        }
    }
}

/// Largest server frame accepted in stream mode (`mqtt-ws`).
const STREAM_FRAME_LIMIT: u64 = 16 << 20;

/// [`decode`] for a byte stream carried in binary messages (MQTT over
/// WebSocket: a packet may span messages, a message may hold several):
/// the payload of every binary or continuation frame goes to `sink` in
/// order; pings get a pong in `out`, a close ends the stream.
pub fn decode_stream(
    src: &mut BytesMut,
    ws: &mut WsIn,
    out: &mut BytesMut,
    sink: &mut impl FnMut(&[u8]),
) -> Result<Flow, String> {
    loop {
        let h = match parse_header(src) {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(Flow::More),
            Err(e) => return Err(format!("bad frame from server: {e}")),
        };
        if h.mask.is_some() {
            return Err("masked frame from server".into());
        }
        if h.len > STREAM_FRAME_LIMIT {
            return Err(format!("server frame of {} bytes", h.len));
        }
        let total = h.header_len + h.len as usize;
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(Flow::More);
        }
        match h.opcode {
            OpCode::Binary | OpCode::Continuation => sink(&src[h.header_len..total]),
            OpCode::Text => return Err("text message from server".into()),
            OpCode::Ping => {
                let key = ws.rng.next_key();
                encode_control(OpCode::Pong, &src[h.header_len..total], key, out);
            }
            OpCode::Pong => {}
            OpCode::Close => {
                src.advance(total);
                return Ok(Flow::Closed);
            }
        }
        src.advance(total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use ringgate::codec::Packet;

    fn opts() -> PacketOptions {
        PacketOptions::default()
    }

    #[test]
    fn accept_matches_rfc_6455_example() {
        assert_eq!(
            accept_for("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        let (a, b) = (new_key(), new_key());
        assert_eq!(a.len(), 24);
        assert_ne!(a, b);
    }

    #[test]
    fn response_is_checked() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let accept = accept_for(key);
        let ok = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        let n = ok.len();
        let mut with_frame = ok.clone().into_bytes();
        with_frame.extend_from_slice(&[0x82, 0x00]);
        assert_eq!(parse_response(&with_frame, &accept, None), Ok(Some(n)));
        assert_eq!(
            parse_response(&ok.as_bytes()[..20], &accept, None),
            Ok(None)
        );
        let wrong = ok.replace(&accept, "AAAA");
        assert!(parse_response(wrong.as_bytes(), &accept, None)
            .unwrap_err()
            .contains("wrong Sec-WebSocket-Accept"));
        let refused = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        assert!(parse_response(refused, &accept, None)
            .unwrap_err()
            .contains("404"));
    }

    /// Unmasks a client frame with the gate's own decoder.
    fn gate_reads(wire: &mut BytesMut) -> ringgate::ws::Frame {
        ringgate::ws::decode_frame(wire, 1 << 20).unwrap().unwrap()
    }

    #[test]
    fn client_frames_are_masked_packets() {
        let mut wire = BytesMut::new();
        let mut rng = MaskRng::new();
        encode_data(7, 1, b"hello", &opts(), rng.next_key(), &mut wire).unwrap();
        encode_heartbeat(&opts(), rng.next_key(), &mut wire);
        let big = vec![9u8; 300];
        encode_data(7, 2, &big, &opts(), rng.next_key(), &mut wire).unwrap();
        let mut f = gate_reads(&mut wire);
        assert_eq!(f.opcode, OpCode::Binary);
        let p = ringgate::ws::packet::decode(&mut f.payload, &opts()).unwrap();
        assert_eq!(
            p,
            Frame::Data(Packet {
                ext: 0,
                route: 7,
                seq: 1,
                payload: Bytes::from_static(b"hello")
            })
        );
        let mut f = gate_reads(&mut wire);
        let p = ringgate::ws::packet::decode(&mut f.payload, &opts()).unwrap();
        assert_eq!(p, Frame::Heartbeat { time: None });
        let mut f = gate_reads(&mut wire);
        let Frame::Data(p) = ringgate::ws::packet::decode(&mut f.payload, &opts()).unwrap() else {
            panic!("not data")
        };
        assert_eq!(p.payload[..], big[..]);
        assert!(wire.is_empty());
        // Too large for the options: nothing written.
        let huge = vec![0u8; 6000];
        assert!(encode_data(7, 3, &huge, &opts(), [1, 2, 3, 4], &mut wire).is_err());
        assert!(wire.is_empty());
    }

    #[test]
    fn server_frames_decode_incrementally() {
        let o = opts();
        let mut wire = BytesMut::new();
        ringgate::ws::packet::encode_data(0, 100, 0, b"abcdefgh", &o, &mut wire).unwrap();
        ringgate::ws::encode_ping(b"pp", &mut wire);
        ringgate::ws::packet::encode_heartbeat(None, &o, &mut wire);
        ringgate::ws::encode_close(1000, "bye", &mut wire);
        let mut ws = WsIn::default();
        let (mut out, mut got) = (BytesMut::new(), Vec::new());
        let mut src = BytesMut::new();
        // One byte at a time: every prefix is "more", nothing is lost.
        let mut flow = Flow::More;
        for b in wire.iter() {
            src.put_u8(*b);
            flow = decode(&mut src, &o, &mut ws, &mut out, &mut |f| got.push(f)).unwrap();
        }
        assert_eq!(flow, Flow::Closed);
        assert_eq!(got.len(), 2);
        assert!(
            matches!(&got[0], Frame::Data(p) if p.route == 100 && &p.payload[..] == b"abcdefgh")
        );
        assert_eq!(got[1], Frame::Heartbeat { time: None });
        // The pong is a masked frame with the ping's payload.
        let pong = gate_reads(&mut out);
        assert_eq!((pong.opcode, &pong.payload[..]), (OpCode::Pong, &b"pp"[..]));
    }

    #[test]
    fn fragments_are_joined_and_bad_frames_refused() {
        let o = opts();
        let mut packet = BytesMut::new();
        codec::encode_data(0, 5, 1, b"xyz", &o, &mut packet).unwrap();
        let mut src = BytesMut::new();
        src.put_slice(&[0x02, 4]);
        src.put_slice(&packet[..4]);
        src.put_slice(&[0x80, (packet.len() - 4) as u8]);
        src.put_slice(&packet[4..]);
        let (mut ws, mut out, mut got) = (WsIn::default(), BytesMut::new(), Vec::new());
        decode(&mut src, &o, &mut ws, &mut out, &mut |f| got.push(f)).unwrap();
        assert!(matches!(&got[..], [Frame::Data(p)] if p.route == 5));

        let bad = |bytes: &[u8]| {
            let mut src = BytesMut::from(bytes);
            decode(
                &mut src,
                &o,
                &mut WsIn::default(),
                &mut BytesMut::new(),
                &mut |_| {},
            )
            .unwrap_err()
        };
        assert!(bad(&[0x81, 1, b'x']).contains("text"));
        assert!(bad(&[0x82, 0x81, 0, 0, 0, 0, 0]).contains("masked"));
        // A binary message holding a packet plus one stray byte.
        let mut two = vec![0x82, (packet.len() + 1) as u8];
        two.extend_from_slice(&packet);
        two.push(0);
        assert!(bad(&two).contains("not exactly one packet"));
    }
}
