//! Fuzz target bodies: one `pub fn <target>(data: &[u8])` per decoder a
//! stranger's bytes can reach. The cargo-fuzz crate in `fuzz/` calls them
//! from its `fuzz_targets/<target>.rs`, and `tests/fuzz_regressions.rs`
//! replays every committed corpus and regression input through them on
//! stable, so a fuzzer and `cargo test` run the same code.
//!
//! Each target panics only when an invariant breaks, never for bad input:
//! decoders must answer garbage with `Err`. The first bytes of an input
//! choose the options (limits, packet layout, policy) and how the stream is
//! split into reads; the rest is what the peer sent:
//!
//! ```text
//!  due_packet    [options] [split] stream        decode; re-encode; ws::packet
//!  ws_frame      [limit]   [split] stream        Reassembler, decode_frame, encoders
//!  ws_upgrade    [policy]  [split] request       handshake::upgrade
//!  mqtt_packet   [limit]   [split] stream        decode and decode_server; re-encode
//!  link_batch    [limits]  [split] stream        decode_frame, both batches; BatchBuf
//!  config_toml   text                            Config::from_toml, units::parse_*
//!  connection    [net] [rules] [rules] [split] script   Connection on a fake clock
//! ```
//!
//! The invariant every stream target shares: decoding the bytes in one read
//! gives the same items, error and leftover as decoding them split into
//! reads of any sizes (`split` picks them). Where an encoder exists, what
//! was decoded encodes back to the bytes it came from, or at least decodes
//! to itself again.
//!
//! Not part of the API: `#[doc(hidden)]`, for the fuzzers and their replay
//! test only.

use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use prost::Message as _;

use crate::codec::mqtt::{self, MqttError, MAX_REMAINING};
use crate::codec::{self, ByteOrder, CodecError, Frame, PacketOptions};
use crate::config::{units, Config, HeartbeatMechanism};
use crate::connection::{
    BufPool, Close, ConnEvent, ConnRules, Connection, Ctx, MqttRules, Network, Outgoing, Phase,
};
use crate::ids::{SessionId, ShardId, UserId};
use crate::link::proto::{ResultFormat, ToGateBatch, ToNodeBatch};
use crate::link::{self, BatchBuf};
use crate::session::{CloseReason, Millis, Rules};
use crate::stats::ShardStats;
use crate::ws::{self, close, frame, handshake, HandshakePolicy, Message, Origins, Reassembler};

mod connection;

pub use connection::connection;

/// A fuzz target's body: any bytes in, a panic only for a broken invariant.
pub type Target = fn(&[u8]);

/// Every target by name, as `fuzz/fuzz_targets/<name>.rs` and
/// `fuzz/corpus/<name>/` are named.
pub const TARGETS: [(&str, Target); 7] = [
    ("due_packet", due_packet),
    ("ws_frame", ws_frame),
    ("ws_upgrade", ws_upgrade),
    ("mqtt_packet", mqtt_packet),
    ("link_batch", link_batch),
    ("config_toml", config_toml),
    ("connection", connection),
];

// ---------------------------------------------------------------- streams

/// The largest read of each split pattern (the `split` byte picks one):
/// byte by byte, tiny, small and packet-sized reads.
const READS: [usize; 4] = [1, 3, 16, 200];
/// Reads of an HTTP request, which is re-parsed from the start on every read.
const HTTP_READS: [usize; 4] = [7, 61, 300, 1500];

/// `data` cut into reads of 1..=`max` bytes, `max` and the sizes chosen by
/// `split` (a xorshift sequence, so every split byte is its own pattern).
fn reads<'a>(data: &'a [u8], split: u8, maxes: &[usize; 4]) -> Vec<&'a [u8]> {
    let max = maxes[usize::from(split & 3)];
    let mut state = u32::from(split).wrapping_mul(0x9e37_79b9) | 1;
    let mut rest = data;
    let mut out = Vec::new();
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (1 + state as usize % max).min(rest.len());
        let (read, tail) = rest.split_at(n);
        out.push(read);
        rest = tail;
    }
    out
}

/// What a stream decoder made of a byte stream: its items in order, the
/// error that stopped it, and (when it stopped for want of bytes) the
/// bytes it left.
#[derive(Debug, PartialEq)]
struct Replay<T, E> {
    items: Vec<T>,
    error: Option<E>,
    rest: Vec<u8>,
}

impl<T, E> Replay<T, E> {
    /// Decoding stopped at a last item or an error.
    fn ended(mut items: Vec<T>, last: impl Into<Option<T>>, error: Option<E>) -> Self {
        items.extend(last.into());
        let rest = Vec::new();
        Replay { items, error, rest }
    }
}

/// Appends each read to one buffer and decodes until `Ok(None)` after each,
/// as a connection does; stops at the first error, or after an item for
/// which `last` is true (a close: "decode no further").
fn replay<'a, T, E>(
    reads: impl IntoIterator<Item = &'a [u8]>,
    mut decode: impl FnMut(&mut BytesMut) -> Result<Option<T>, E>,
    last: impl Fn(&T) -> bool,
) -> Replay<T, E> {
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    for read in reads {
        buf.extend_from_slice(read);
        loop {
            match decode(&mut buf) {
                Ok(Some(item)) if last(&item) => return Replay::ended(items, item, None),
                Ok(Some(item)) => items.push(item),
                Ok(None) => break,
                Err(e) => return Replay::ended(items, None, Some(e)),
            }
        }
    }
    let rest = buf.to_vec();
    let error = None;
    Replay { items, error, rest }
}

/// Decodes `data` in one read and in the reads `split` picks, asserts both
/// give the same, and returns the one-read result.
fn same_split_or_not<T: PartialEq + Debug, E: PartialEq + Debug>(
    data: &[u8],
    split: u8,
    mut decode: impl FnMut(&mut BytesMut) -> Result<Option<T>, E>,
    mut decode_again: impl FnMut(&mut BytesMut) -> Result<Option<T>, E>,
    last: impl Fn(&T) -> bool,
) -> Replay<T, E> {
    let whole = replay([data], &mut decode, &last);
    let split = replay(reads(data, split, &READS), &mut decode_again, &last);
    assert_eq!(whole, split, "one read or split reads differ");
    whole
}

// ------------------------------------------------------------ due packets

/// Packet options from one byte: byte order, route and seq widths (the
/// ones config allows), payload limit (1 byte to the 16 MiB maximum) and
/// heartbeat time. Byte 0 is the default layout.
fn packet_options(b: u8) -> PacketOptions {
    PacketOptions {
        byte_order: [ByteOrder::Big, ByteOrder::Little][usize::from(b & 1)],
        route_bytes: [2, 1, 4, 2][usize::from((b >> 1) & 3)],
        seq_bytes: [2, 0, 1, 4][usize::from((b >> 3) & 3)],
        buffer_bytes: [5000, 1, 64, 16 << 20][usize::from((b >> 5) & 3)],
        heartbeat_time: b & 0x80 != 0,
    }
}

fn u32_in(b: &[u8], order: ByteOrder) -> usize {
    let b = [b[0], b[1], b[2], b[3]];
    (match order {
        ByteOrder::Big => u32::from_be_bytes(b),
        ByteOrder::Little => u32::from_le_bytes(b),
    }) as usize
}

/// `v` cut to `width` bytes and sign-extended back: a value that fits.
fn fit(v: i32, width: u8) -> i32 {
    match width {
        0 => 0,
        1..=3 => (v << (32 - 8 * u32::from(width))) >> (32 - 8 * u32::from(width)),
        _ => v,
    }
}

/// The client packet codec (`codec::decode`) on a byte stream: split reads
/// change nothing, errors carry the right limit, every data packet
/// re-encodes to the very bytes it came from and every heartbeat to one
/// that decodes the same, and `ws::packet::decode` agrees on one message.
/// Then `encode_data` (raw and in a WebSocket message) on values taken from
/// the input: what it accepts decodes back, what it refuses leaves the
/// buffer untouched.
pub fn due_packet(data: &[u8]) {
    let Some((&[o, split], input)) = data.split_first_chunk::<2>() else {
        return;
    };
    let opts = packet_options(o);
    let decode = |b: &mut BytesMut| {
        let got = codec::decode(b, &opts);
        if let (Ok(None), Some(&size)) = (&got, b.first_chunk::<4>()) {
            let total = codec::SIZE_BYTES + u32_in(&size, opts.byte_order);
            assert!(b.capacity() >= total, "no room reserved for the frame");
        }
        got
    };
    let whole = same_split_or_not(input, split, decode, decode, |_| false);
    if let Some(CodecError::TooLarge { size, max }) = whole.error {
        assert!(max == codec::max_size(&opts) && size > max, "{size} {max}");
    }
    let mut at = 0;
    for frame in &whole.items {
        let wire = &input[at..at + codec::SIZE_BYTES + u32_in(&input[at..], opts.byte_order)];
        at += wire.len();
        let mut again = BytesMut::new();
        codec::encode(frame, &opts, &mut again).expect("a decoded frame encodes");
        match frame {
            Frame::Data(_) => assert_eq!(&again[..], wire, "a data packet re-encodes as it was"),
            Frame::Heartbeat { time } => {
                assert_eq!(time.is_some(), wire.len() == 4 + codec::HEARTBEAT_TIME_SIZE);
                assert_eq!(codec::decode(&mut again, &opts), Ok(Some(frame.clone())));
            }
        }
    }
    if whole.error.is_none() {
        assert_eq!(at + whole.rest.len(), input.len(), "bytes lost");
    }
    let one_packet = whole.items.len() == 1 && whole.error.is_none() && whole.rest.is_empty();
    match ws::packet::decode(&mut BytesMut::from(input), &opts) {
        Ok(f) => assert!(one_packet && whole.items[0] == f),
        Err(ws::WsError::Packet(e)) => assert_eq!((whole.items.len(), whole.error), (0, Some(e))),
        Err(ws::WsError::NotOnePacket(_)) => assert!(!one_packet),
        Err(e) => panic!("ws::packet::decode: {e:?}"),
    }
    encode_due(input, &opts);
}

/// `encode_data` on an ext, route, seq and payload from `input`; with the
/// ext's top bit set, route and seq are cut to fit their widths first.
fn encode_due(input: &[u8], opts: &PacketOptions) {
    let Some((head, payload)) = input.split_first_chunk::<9>() else {
        return;
    };
    let mut route = i32::from_le_bytes([head[1], head[2], head[3], head[4]]);
    let mut seq = i32::from_le_bytes([head[5], head[6], head[7], head[8]]);
    let mut ext = head[0];
    if ext & 0x80 != 0 {
        ext &= 0x7f;
        (route, seq) = (fit(route, opts.route_bytes), fit(seq, opts.seq_bytes));
    }
    let mut dst = BytesMut::from(&b"x"[..]);
    match codec::encode_data(ext, route, seq, payload, opts, &mut dst) {
        Ok(()) => {
            dst.advance(1);
            let seq = if opts.seq_bytes == 0 { 0 } else { seq };
            let Ok(Some(Frame::Data(p))) = codec::decode(&mut dst, opts) else {
                panic!("an encoded packet does not decode");
            };
            assert_eq!(
                (p.ext, p.route, p.seq, &p.payload[..]),
                (ext, route, seq, payload)
            );
            assert!(dst.is_empty());
        }
        Err(_) => assert_eq!(&dst[..], b"x", "refused, yet written"),
    }
    let mut msg = BytesMut::from(&b"x"[..]);
    match ws::packet::encode_data(ext, route, seq, payload, opts, &mut msg) {
        Ok(()) => {
            let h = frame::parse_header(&msg[1..]).unwrap().unwrap();
            assert_eq!(h.len as usize, msg.len() - 1 - h.header_len);
            assert!(h.fin && h.opcode == frame::OpCode::Binary && h.mask.is_none());
        }
        Err(_) => assert_eq!(&msg[..], b"x", "refused, yet written"),
    }
}

// -------------------------------------------------------------- WebSocket

/// Message limits: none, a heartbeat, control-sized, the 16-bit length
/// boundaries, the default packet, the largest packet config allows.
const WS_LIMITS: [usize; 8] = [0, 5, 125, 126, 65_535, 65_536, 5_009, (16 << 20) + 13];

/// The WebSocket frame codec on a client's byte stream: `Reassembler` gives
/// the same messages for any split, each within its limits; `decode_frame`
/// frames rebuild byte for byte (shortest lengths, mask re-applied); the
/// server encoders' frames parse back; masking is its own inverse.
pub fn ws_frame(data: &[u8]) {
    let Some((&[limit, split], input)) = data.split_first_chunk::<2>() else {
        return;
    };
    let max = WS_LIMITS[usize::from(limit) % WS_LIMITS.len()];
    let (mut r1, mut r2) = (Reassembler::new(max), Reassembler::new(max));
    let whole = same_split_or_not(
        input,
        split,
        |b| r1.decode(b),
        |b| r2.decode(b),
        |m| matches!(m, Message::Close(_)),
    );
    for m in &whole.items {
        match m {
            Message::Binary(b) => assert!(b.len() <= max),
            Message::Ping(p) | Message::Pong(p) => assert!(p.len() <= frame::MAX_CONTROL_PAYLOAD),
            Message::Close(None) => {}
            Message::Close(Some(c)) => {
                assert!(close::is_valid(c.code) && c.reason.len() <= frame::MAX_CLOSE_REASON);
                assert_eq!(c.reason(), std::str::from_utf8(&c.reason).unwrap());
            }
        }
    }
    if let Some(ws::WsError::TooLarge { len, max: m }) = whole.error {
        assert!(m == max && len > max as u64);
    }
    frames_rebuild(input, max);
    server_frames(input, max);
}

/// Each frame `decode_frame` takes rebuilds as the bytes it came from.
fn frames_rebuild(input: &[u8], max: usize) {
    let mut buf = BytesMut::from(input);
    let mut at = 0;
    loop {
        let header = frame::parse_header(&buf);
        let Ok(Some(f)) = frame::decode_frame(&mut buf, max) else {
            return;
        };
        let h = header.unwrap().unwrap();
        let wire = client_frame(h.fin, h.opcode as u8, &f.payload, h.mask.unwrap());
        assert_eq!(wire, input[at..at + wire.len()], "frame does not rebuild");
        at += wire.len();
        if !h.opcode.is_control() {
            assert!(f.payload.len() <= max);
        }
    }
}

/// A masked client frame with the shortest length encoding.
fn client_frame(fin: bool, opcode: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    let start = out.len();
    out.extend_from_slice(payload);
    ws::apply_mask(&mut out[start..], key);
    out
}

/// The server side's encoders on `input` as a payload, close code and
/// reason: each frame parses back; a binary frame, masked as a client
/// would, reassembles to the payload; masking matches the plain formula.
fn server_frames(input: &[u8], max: usize) {
    let parse = |b: &BytesMut| {
        let h = frame::parse_header(b).unwrap().unwrap();
        assert!(h.fin && h.mask.is_none() && h.header_len + h.len as usize == b.len());
        (h.opcode, Bytes::copy_from_slice(&b[h.header_len..]))
    };
    let mut out = BytesMut::new();
    ws::encode_binary(input, &mut out);
    assert_eq!(
        parse(&out),
        (frame::OpCode::Binary, Bytes::copy_from_slice(input))
    );
    let key = [0x11, 0x22, 0x33, 0x44];
    let mut masked = BytesMut::from(&client_frame(true, 2, input, key)[..]);
    let got = Reassembler::new(max).decode(&mut masked);
    match got {
        Ok(Some(Message::Binary(b))) => assert_eq!(&b[..], input),
        Err(ws::WsError::TooLarge { .. }) => assert!(input.len() > max),
        other => panic!("a masked binary frame gave {other:?}"),
    }
    let cut = &input[..input.len().min(frame::MAX_CONTROL_PAYLOAD)];
    out.clear();
    ws::encode_pong(input, &mut out);
    assert_eq!(
        parse(&out),
        (frame::OpCode::Pong, Bytes::copy_from_slice(cut))
    );
    let Some((&[hi, lo], text)) = input.split_first_chunk::<2>() else {
        return;
    };
    let (code, reason) = (u16::from_be_bytes([hi, lo]), String::from_utf8_lossy(text));
    out.clear();
    ws::encode_close(code, &reason, &mut out);
    let (op, payload) = parse(&out);
    assert_eq!(op, frame::OpCode::Close);
    match frame::CloseFrame::parse(payload) {
        Ok(Some(c)) => assert!(c.code == code && reason.starts_with(c.reason())),
        Ok(None) => panic!("a close frame with a code parsed as none"),
        Err(_) => assert!(!close::is_valid(code)),
    }
    let (mut fast, key) = (input.to_vec(), [hi, lo, 0x5a, 0xa5]);
    ws::apply_mask(&mut fast, key);
    let slow = input.iter().enumerate().map(|(i, b)| b ^ key[i % 4]);
    assert!(fast.into_iter().eq(slow), "apply_mask");
}

// ------------------------------------------------------------- WS upgrade

/// An upgrade policy from one byte: path, origins (any, a list with native
/// clients, none), trust_proxy, MQTT over WebSocket.
fn upgrade_policy(b: u8) -> HandshakePolicy {
    let list = |o: &[&str]| Origins::List(o.iter().map(|s| (*s).to_owned()).collect());
    HandshakePolicy {
        path: ["/", "/ws"][usize::from(b & 1)].to_owned(),
        origins: match (b >> 1) & 3 {
            0 | 3 => Origins::Any,
            1 => list(&["https://game.example", ""]),
            _ => list(&[]),
        },
        trust_proxy: b & 8 != 0,
        mqtt_path: (b & 16 != 0).then(|| "/mqtt".to_owned()),
    }
}

type Decided = Option<Result<handshake::Accepted, handshake::Rejected>>;

/// Feeds `reads` to `upgrade` until it decides; then what is left in the
/// buffer with every later read appended (nothing after a refusal).
fn upgrade_replay<'a>(
    reads: impl IntoIterator<Item = &'a [u8]>,
    policy: &HandshakePolicy,
) -> (Decided, Vec<u8>) {
    let mut buf = BytesMut::new();
    let mut reads = reads.into_iter();
    let mut decided = None;
    for read in reads.by_ref() {
        buf.extend_from_slice(read);
        match ws::upgrade(&mut buf, policy) {
            Ok(None) => {}
            Ok(Some(a)) => {
                decided = Some(Ok(a));
                break;
            }
            Err(r) => return (Some(Err(r)), Vec::new()),
        }
    }
    reads.for_each(|r| buf.extend_from_slice(r));
    (decided, buf.to_vec())
}

/// The HTTP upgrade: the same answer for any split of the request; a 101
/// names the accept key and leaves what followed the request; a refusal's
/// status is its reason's, with a body as long as its Content-Length.
pub fn ws_upgrade(data: &[u8]) {
    let Some((&[p, split], input)) = data.split_first_chunk::<2>() else {
        return;
    };
    let policy = upgrade_policy(p);
    let whole = upgrade_replay([input], &policy);
    let split = upgrade_replay(reads(input, split, &HTTP_READS), &policy);
    assert_eq!(whole, split, "one read or split reads differ");
    let text = |b: &Bytes| String::from_utf8(b.to_vec()).expect("responses are text");
    match whole {
        (None, rest) => assert!(rest == input && input.len() < handshake::MAX_REQUEST_BYTES),
        (Some(Ok(a)), rest) => {
            let used = input.len() - rest.len();
            assert!(used <= handshake::MAX_REQUEST_BYTES && input.ends_with(&rest));
            let r = text(&a.response);
            assert!(r.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
            assert!(r.ends_with("\r\n\r\n") && r.contains("\r\nSec-WebSocket-Accept: "));
            assert!(!a.mqtt || policy.mqtt_path.is_some());
            assert!(a.forwarded_ip.is_none() || policy.trust_proxy);
        }
        (Some(Err(rej)), _) => {
            assert_eq!(rej.status, rej.reason.http_status());
            let r = text(&rej.response);
            assert!(r.starts_with(&format!("HTTP/1.1 {} ", rej.status)));
            let (head, body) = r.split_once("\r\n\r\n").expect("a header and a body");
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "));
            assert_eq!(length, Some(body.len().to_string().as_str()));
        }
    }
}

// ------------------------------------------------------------------- MQTT

/// Remaining-length limits: none, fixed-size packets, the varint's 1-, 2-
/// and 3-byte boundaries, the default, MQTT's own maximum.
const MQTT_LIMITS: [usize; 7] = [0, 2, 127, 128, 16_384, 65_535, MAX_REMAINING];

/// MQTT on a byte stream, both directions: the gate's `decode` and the
/// client's `decode_server` give the same packets for any split, keep to
/// the limit, and every packet re-encodes to its first byte and body (the
/// length varint may have been sent longer than needed) and decodes again.
/// Then `encode_publish` and `encode_subscribe` on a topic from the input.
pub fn mqtt_packet(data: &[u8]) {
    let Some((&[limit, split], input)) = data.split_first_chunk::<2>() else {
        return;
    };
    let max = MQTT_LIMITS[usize::from(limit) % MQTT_LIMITS.len()];
    mqtt_side(input, split, max, mqtt::decode, mqtt::encode_inbound);
    let client = (mqtt::decode_server, mqtt::encode_outbound);
    mqtt_side(input, split, max, client.0, client.1);
    mqtt_encoders(input);
}

type Decode<T> = fn(&mut BytesMut, usize) -> Result<Option<T>, MqttError>;
type Encode<T> = fn(&T, &mut BytesMut) -> Result<(), MqttError>;

fn mqtt_side<T: PartialEq + Debug>(
    input: &[u8],
    split: u8,
    max: usize,
    decode: Decode<T>,
    encode: Encode<T>,
) {
    let dec = |b: &mut BytesMut| decode(b, max);
    let whole = same_split_or_not(input, split, dec, dec, |_| false);
    if let Some(MqttError::TooLarge { remaining, max: m }) = whole.error {
        assert!(m == max && remaining > max);
    }
    let mut at = 0;
    for p in &whole.items {
        let (head, body) = mqtt_fixed_header(&input[at..]);
        assert!(body <= max);
        let mut out = BytesMut::new();
        encode(p, &mut out).expect("a decoded packet encodes");
        let (out_head, out_body) = mqtt_fixed_header(&out);
        assert_eq!(out[0], input[at], "first byte");
        assert_eq!(out[out_head..], input[at + head..at + head + body], "body");
        assert_eq!(out.len(), out_head + out_body);
        let again = decode(&mut out, MAX_REMAINING).expect("re-encoded packet decodes");
        assert_eq!(again.as_ref(), Some(p));
        at += head + body;
    }
}

/// Bytes of a complete fixed header and the remaining length it declares.
fn mqtt_fixed_header(b: &[u8]) -> (usize, usize) {
    let mut remaining = 0;
    for i in 0..4 {
        remaining |= usize::from(b[1 + i] & 0x7f) << (7 * i);
        if b[1 + i] & 0x80 == 0 {
            return (2 + i, remaining);
        }
    }
    panic!("a decoded packet has a varint over 4 bytes");
}

/// The input (after a QoS byte) as a topic and payload: a PUBLISH the
/// encoder accepts is the PUBLISH the client decodes; a SUBSCRIBE likewise.
fn mqtt_encoders(input: &[u8]) {
    let Some((&qos, rest)) = input.split_first() else {
        return;
    };
    let cut = rest.iter().position(|&b| b == 0xff).unwrap_or(rest.len());
    let (topic, payload) = (String::from_utf8_lossy(&rest[..cut]), &rest[cut..]);
    let mut out = BytesMut::from(&b"x"[..]);
    match mqtt::encode_publish(&topic, payload, &mut out) {
        Ok(()) => {
            out.advance(1);
            let Ok(Some(mqtt::Outbound::Publish(p))) = mqtt::decode_server(&mut out, MAX_REMAINING)
            else {
                panic!("an encoded PUBLISH does not decode");
            };
            assert!(p.topic == *topic && p.payload == payload && p.qos == 0 && out.is_empty());
        }
        Err(_) => assert_eq!(&out[..], b"x", "a refused PUBLISH left bytes behind"),
    }
    out.clear();
    let filters = [(topic.as_ref(), qos)];
    match mqtt::encode_subscribe(1, &filters, &mut out) {
        Ok(()) => {
            let filters = vec![(topic.to_string(), qos)];
            let want = mqtt::Inbound::Subscribe {
                packet_id: 1,
                filters,
            };
            assert_eq!(mqtt::decode(&mut out, MAX_REMAINING), Ok(Some(want)));
        }
        Err(_) => assert!(out.is_empty(), "a refused SUBSCRIBE left bytes behind"),
    }
}

// ------------------------------------------------------------- node link

/// Frame limits of the reader and of a `BatchBuf` writing the batches back.
const LINK_LIMITS: [usize; 4] = [0, 64, 65_536, 16 << 20];

/// The node link's framing and batches: `decode_frame` gives the same frames
/// for any split and none over the limit; every frame that is a `ToGateBatch`
/// or a `ToNodeBatch` goes back through `BatchBuf` (at another frame limit)
/// and decodes to the same messages, in frames within that limit unless
/// they hold one message.
pub fn link_batch(data: &[u8]) {
    let Some((&[limits, split], input)) = data.split_first_chunk::<2>() else {
        return;
    };
    let max = LINK_LIMITS[usize::from(limits & 3)];
    let write_limit = LINK_LIMITS[usize::from((limits >> 2) & 3)];
    let decode = |b: &mut BytesMut| {
        let got = link::decode_frame(b, max).map_err(|e| e.to_string());
        if let (Ok(None), Some(&len)) = (&got, b.first_chunk::<4>()) {
            let total = link::FRAME_HEADER + u32::from_be_bytes(len) as usize;
            assert!(b.capacity() >= total, "no room reserved for the frame");
        }
        got
    };
    let whole = same_split_or_not(input, split, decode, decode, |_| false);
    for f in &whole.items {
        assert!(f.len() <= max);
        if let Ok(b) = ToGateBatch::decode(f.clone()) {
            rebatch(&b.msgs, write_limit, |f| Ok(ToGateBatch::decode(f)?.msgs));
        }
        if let Ok(b) = ToNodeBatch::decode(f.clone()) {
            rebatch(&b.msgs, write_limit, |f| Ok(ToNodeBatch::decode(f)?.msgs));
        }
    }
}

fn rebatch<M: prost::Message + PartialEq>(
    msgs: &[M],
    limit: usize,
    decode: impl Fn(Bytes) -> Result<Vec<M>, prost::DecodeError>,
) {
    let mut buf = BatchBuf::new(limit);
    msgs.iter().for_each(|m| buf.push(m));
    assert_eq!(buf.pending(), msgs.len());
    let mut wire = buf.take();
    let mut back = Vec::new();
    while let Some(f) = link::decode_frame(&mut wire, u32::MAX as usize).unwrap() {
        let len = f.len();
        let batch = decode(f).expect("a written batch decodes");
        assert!(len <= limit || batch.len() == 1, "frame of {len} > {limit}");
        back.extend(batch);
    }
    assert!(
        wire.is_empty() && back == msgs,
        "not the same messages back"
    );
}

// ----------------------------------------------------------------- config

/// The config loader on any text: `Ok` or an `Err` whose message starts
/// with the origin, never a panic; what loads validates again (validation
/// is idempotent). The value parsers on every line, likewise.
pub fn config_toml(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match Config::from_toml(&text, "fuzz.toml") {
        Ok(mut c) => c.validate().expect("a loaded config validates again"),
        Err(e) => {
            let message = e.to_string();
            assert!(message.starts_with("fuzz.toml"), "{message}");
            let _ = e.key();
        }
    }
    for line in text.lines().take(16) {
        let _ = units::parse_duration(line);
        let _ = units::parse_size(line);
        let _ = units::parse_addr(line);
    }
}
