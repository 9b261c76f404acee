//! Connection tests on virtual time, quinn-proto style: a harness [`H`]
//! plays the shard (feeds reads, completes each send at once, fires each
//! timeout exactly at its deadline) and the tests play the client. No
//! sockets, no clock, no sleeps. Each rule is checked for raw packets and
//! WebSocket ([`NETS`]); TLS and wss in `tls`.

use std::io::Write as _;

use bytes::Bytes;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use super::*;
use crate::config::{HeartbeatMechanism, WsConfig};
use crate::ids::{ShardId, UserId};
use crate::stats::StatsSnapshot;
use CloseReason::*;

/// Both framings every rule is checked under.
const NETS: [Network; 2] = [Network::Tcp, Network::Ws];
/// The handshake bound connections are accepted with.
const HANDSHAKE_MS: Millis = 3000;

/// Default packet options, heartbeat and authorize off, a large outbound
/// bound, WebSocket upgrades on path `/` from any origin.
fn rules() -> ConnRules {
    ConnRules {
        packet: PacketOptions::default(),
        session: Rules {
            heartbeat_ms: 0,
            mechanism: HeartbeatMechanism::Resp,
            authorize_ms: 0,
        },
        max_outbound: 64 * 1024,
        ws: Some(Arc::new(HandshakePolicy::from_config(
            &WsConfig::default(),
            true,
        ))),
        mqtt: MqttRules {
            max_packet_bytes: 65535,
            max_inflight: 3,
        },
    }
}

fn heartbeat_rules(interval: Millis) -> ConnRules {
    let mut r = rules();
    r.session.heartbeat_ms = interval;
    r
}

/// A [`ConnEvent`] that can be compared.
#[derive(Debug, PartialEq)]
enum Ev {
    Opened,
    Request(Packet),
    /// An MQTT request (token, topic, payload).
    Mqtt(i32, String, Bytes),
    Closed(CloseReason, bool),
}

fn req(route: i32, seq: i32, payload: &[u8]) -> Ev {
    let payload = Bytes::copy_from_slice(payload);
    Ev::Request(Packet {
        ext: 0,
        route,
        seq,
        payload,
    })
}

/// The events of an open connection closing for `reason`.
fn closed(reason: CloseReason) -> Vec<Ev> {
    vec![Ev::Closed(reason, true)]
}

/// What the shard keeps beside its connections.
struct Shard {
    rules: ConnRules,
    stats: ShardStats,
    pool: BufPool,
    scratch: BytesMut,
    events: Vec<ConnEvent>,
    now: Millis,
    unix_nanos: i64,
}

impl Shard {
    fn cx(&mut self) -> Ctx<'_> {
        Ctx {
            now: self.now,
            unix_nanos: self.unix_nanos,
            rules: &self.rules,
            stats: &self.stats,
            pool: &mut self.pool,
            scratch: &mut self.scratch,
            events: &mut self.events,
        }
    }
}

/// One connection and its shard.
struct H {
    s: Shard,
    conn: Connection,
}

impl H {
    /// A connection accepted at time 0 (events not drained).
    fn accept(network: Network, rules: ConnRules, tls: Option<Box<TlsConn>>) -> H {
        let mut s = Shard {
            rules,
            stats: ShardStats::default(),
            pool: BufPool::default(),
            scratch: BytesMut::new(),
            events: Vec::new(),
            now: 0,
            unix_nanos: 0,
        };
        let (id, peer) = (
            SessionId::new(ShardId(0), 1),
            "192.0.2.1:40000".parse().unwrap(),
        );
        let conn = Connection::new(id, peer, network, tls, HANDSHAKE_MS, &mut s.cx());
        H { s, conn }
    }

    /// An open connection: WebSocket ones upgraded, the 101 sent, `Opened` drained.
    fn open(network: Network, rules: ConnRules) -> H {
        let mut h = H::accept(network, rules, None);
        if network.is_websocket() {
            h.recv(upgrade_request("/").as_bytes());
            assert!(h.transmit().starts_with(b"HTTP/1.1 101 "));
        }
        assert_eq!(h.events(), [Ev::Opened]);
        h
    }

    fn recv(&mut self, bytes: &[u8]) {
        self.conn.handle_recv(bytes, &mut self.s.cx());
    }

    fn close(&mut self, reason: CloseReason, how: Close) {
        self.conn.close(reason, how, &mut self.s.cx());
    }

    fn peer_gone(&mut self) {
        self.conn.handle_peer_gone(&mut self.s.cx());
    }

    fn timeout(&mut self) {
        self.conn.handle_timeout(&mut self.s.cx());
    }

    /// Queues packet (ext 0, `route`, seq 1, `payload`).
    fn send(&mut self, route: i32, payload: &[u8]) -> bool {
        self.conn
            .send_packet(0, route, 1, payload, &mut self.s.cx())
    }

    fn deadline(&self) -> Option<Millis> {
        self.conn.poll_timeout(&self.s.rules.session)
    }

    /// Moves the clock `ms` on, calling `handle_timeout` at every deadline
    /// `poll_timeout` names on the way, exactly at that time.
    fn advance(&mut self, ms: Millis) {
        let until = self.s.now + ms;
        while let Some(t) = self.deadline().filter(|&t| t <= until) {
            assert!(t >= self.s.now, "deadline {t} passed unfired");
            self.s.now = t;
            self.timeout();
            assert_ne!(self.deadline(), Some(t), "stuck at {t}");
        }
        self.s.now = until;
    }

    /// Starts one send and leaves it in flight.
    fn start_send(&mut self) -> Option<BytesMut> {
        self.conn.poll_transmit(&mut self.s.cx())
    }

    fn complete_send(&mut self, buf: BytesMut) {
        self.conn.handle_sent(buf, &mut self.s.cx());
    }

    /// Everything the connection sends now, each send completed at once.
    fn transmit(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(buf) = self.start_send() {
            out.extend_from_slice(&buf);
            self.complete_send(buf);
        }
        out
    }

    fn events(&mut self) -> Vec<Ev> {
        let ev = |e| match e {
            ConnEvent::Opened => Ev::Opened,
            ConnEvent::Request(p) => Ev::Request(p),
            ConnEvent::Mqtt(r) => Ev::Mqtt(r.token, r.topic.to_string(), r.payload),
            ConnEvent::Closed { reason, opened } => Ev::Closed(reason, opened),
        };
        self.s.events.drain(..).map(ev).collect()
    }

    fn stats(&self) -> StatsSnapshot {
        self.s.stats.snapshot()
    }

    /// Closes counted, whatever the reason.
    fn closes(&self) -> u64 {
        self.stats().closed.iter().sum()
    }

    fn is_closed_for(&self, reason: CloseReason) -> bool {
        self.conn.phase() == Phase::Closed { reason }
    }

    fn is_draining(&self) -> bool {
        matches!(self.conn.phase(), Phase::Draining { .. })
    }

    fn is_handshaking(&self) -> bool {
        matches!(self.conn.phase(), Phase::Handshake { .. })
    }
}

/// Route 7, seq 1, payload "hi" under the default options.
#[rustfmt::skip]
const REQUEST: [u8; 11] = [
    0, 0, 0, 7,  // size: 1 header + 2 route + 2 seq + 2 payload
    0x00,        // header: data, ext 0
    0, 7,        // route 7
    0, 1,        // seq 1
    b'h', b'i',  // payload
];

/// A heartbeat without time, from either side.
#[rustfmt::skip]
const HEARTBEAT: [u8; 5] = [
    0, 0, 0, 1,  // size: the header alone
    0x80,        // header: heartbeat bit
];

/// A data packet (ext 0) under the default options.
fn packet(route: i32, seq: i32, payload: &[u8]) -> Vec<u8> {
    let mut b = BytesMut::new();
    let opts = PacketOptions::default();
    crate::codec::encode_data(0, route, seq, payload, &opts, &mut b).unwrap();
    b.to_vec()
}

/// Masking key of every client frame.
const KEY: [u8; 4] = [0x11, 0x22, 0x33, 0x44];
/// First frame bytes: FIN + binary, binary without FIN, FIN + continuation,
/// FIN + text, FIN + close, FIN + ping.
const BIN: u8 = 0x82;
const BIN_MORE: u8 = 0x02;
const CONT_FIN: u8 = 0x80;
const TEXT: u8 = 0x81;
const CLOSE: u8 = 0x88;
const PING: u8 = 0x89;

/// A client frame: `b0` (FIN, opcode), the mask bit and a minimal length
/// (7 or 16 bits), `KEY`, the masked payload (as in `ws::tests`).
fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![b0];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    out.extend_from_slice(&KEY);
    let mut body = payload.to_vec();
    crate::ws::apply_mask(&mut body, KEY);
    out.extend(body);
    out
}

/// `packet` as a client sends it under `net`: raw, or one masked binary frame.
fn framed(net: Network, packet: &[u8]) -> Vec<u8> {
    match net.is_websocket() {
        true => client_frame(BIN, packet),
        false => packet.to_vec(),
    }
}

/// `packet` as the gate sends it under `net`: raw, or in one binary frame
/// (FIN + binary, unmasked 7-bit length).
fn served(net: Network, packet: &[u8]) -> Vec<u8> {
    if !net.is_websocket() {
        return packet.to_vec();
    }
    assert!(packet.len() <= 125);
    [&[BIN, packet.len() as u8], packet].concat()
}

/// A server close frame: FIN + close, unmasked 7-bit length, code, reason.
fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let head = [CLOSE, 2 + reason.len() as u8];
    [&head[..], &code.to_be_bytes(), reason.as_bytes()].concat()
}

/// The goodbye of a close without protocol error: a close frame on
/// WebSocket, nothing on raw packets.
fn goodbye(net: Network, code: u16, reason: &str) -> Vec<u8> {
    match net.is_websocket() {
        true => close_frame(code, reason),
        false => Vec::new(),
    }
}

/// A valid upgrade request for `target` (as in `ws::handshake_tests`).
fn upgrade_request(target: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\n\
         Host: gate.example:3554\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// What follows the HTTP response header in `bytes`.
fn after_http(bytes: &[u8]) -> &[u8] {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n");
    &bytes[end.expect("an HTTP header") + 4..]
}

mod closing;
mod decode;
mod mqtt;
mod timing;
mod tls;
mod websocket;
