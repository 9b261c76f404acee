//! The WebSocket listener end to end (ws and wss): the third-party Python
//! `websockets` client (tests/clients/ws_check.py), a real headless Chromium
//! (tests/clients/browser_check.py), refused upgrades and slowloris clients
//! on raw sockets, and frame-level edge cases through a minimal WebSocket
//! client written here from RFC 6455 (masked frames; not ringgate's `ws`
//! module).

#[path = "../common/mod.rs"]
mod common;

#[allow(dead_code)]
#[path = "../../examples/chat_node.rs"]
mod chat_node;

#[allow(dead_code)]
#[path = "../../examples/echo_node.rs"]
mod echo_node;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::certs::*;
use common::*;
use ringgate::codec::{self, Frame, PacketOptions};
use ringgate::config::Config;
use ringgate::gate::Gate;
use ringgate::node::{Context, Node, NodeHandle};
use ringgate::session::CloseReason;

/// The echo route of the chat+echo node (the chat node owns routes 1-4).
const ECHO: i32 = 10;
/// The origin the refusal test allows.
const GAME_ORIGIN: &str = "https://game.example";
/// RFC 6455 §1.3's example key and its accept value: checks the gate's
/// `Sec-WebSocket-Accept` without computing SHA-1 here.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

// ---------------------------------------------------------------------------
// Set-up: certificates, nodes, gates, child processes
// ---------------------------------------------------------------------------

/// The chat example node plus an echo route ([`ECHO`]).
fn chat_echo_node() -> NodeHandle {
    chat_node::chat(Arc::new(chat_node::Chat::default()))
        .route(ECHO, |ctx: &mut Context| {
            let p = ctx.payload().clone();
            ctx.reply(p);
        })
        .listen("127.0.0.1:0".parse().unwrap())
        .workers(2)
        .bind()
        .expect("bind chat node")
        .spawn()
}

/// A gate (ws on 127.0.0.1:0, wss with `cert`) in front of the chat+echo node.
struct WsStack {
    gate: Gate,
    _node: NodeHandle,
}

impl WsStack {
    fn start(cert: Option<&TestCert>, tweak: impl FnOnce(&mut Config)) -> WsStack {
        init_logs();
        WsStack::start_with(chat_echo_node(), cert, tweak)
    }

    /// As [`WsStack::start`], in front of `node`.
    fn start_with(
        node: NodeHandle,
        cert: Option<&TestCert>,
        tweak: impl FnOnce(&mut Config),
    ) -> WsStack {
        init_logs();
        let mut cfg = test_config(&[node.local_addr()]);
        if let Some(c) = cert {
            cfg.network.ws.cert_file = c.cert_file.clone();
            cfg.network.ws.key_file = c.key_file.clone();
        }
        tweak(&mut cfg);
        cfg.validate().unwrap();
        let gate = Gate::start(&cfg).expect("gate starts");
        let shards = cfg.shards.cores.len() as u64;
        wait_until(PATIENCE, "every shard's link up", || {
            gate.stats().links_up == shards
        });
        WsStack { gate, _node: node }
    }

    fn ws_addr(&self) -> SocketAddr {
        self.gate.ws_addr().expect("ws listener enabled")
    }
}

/// Runs `python3 <script> <args>` with a hard deadline (see
/// [`common::run_with_deadline`]).
fn run_python(script: &str, args: &[String], deadline: Duration) -> (bool, String) {
    let path = format!("{}/tests/clients/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new("python3");
    cmd.arg(&path).args(args);
    common::run_with_deadline(cmd, deadline, "python3 (scripts/test.sh installs it)")
}

// ---------------------------------------------------------------------------
// A minimal WebSocket client (RFC 6455, client side), plain or over TLS
// ---------------------------------------------------------------------------

trait Io: Read + Write + Send {}
impl<T: Read + Write + Send> Io for T {}

const OP_CONT: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// A client frame: masked with `mask` (clients must mask), or not (to
/// provoke the gate).
fn client_frame(fin: bool, op: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut f = vec![(u8::from(fin) << 7) | op];
    let m = if mask.is_some() { 0x80 } else { 0 };
    let n = payload.len();
    if n < 126 {
        f.push(m | n as u8);
    } else if n <= 0xffff {
        f.push(m | 126);
        f.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        f.push(m | 127);
        f.extend_from_slice(&(n as u64).to_be_bytes());
    }
    match mask {
        Some(k) => {
            f.extend_from_slice(&k);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => f.extend_from_slice(payload),
    }
    f
}

fn upgrade_request(path: &str, origin: Option<&str>) -> String {
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\
         {origin}\r\n"
    )
}

struct WsClient {
    io: Box<dyn Io>,
    buf: Vec<u8>,
    opts: PacketOptions,
    seed: u32,
}

impl WsClient {
    fn tcp(addr: SocketAddr) -> TcpStream {
        let s = TcpStream::connect(addr).expect("connect to the ws port");
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        s
    }

    /// Opens ws://addr/ with `origin`, sending `early` (frames) in the same
    /// write as the upgrade request.
    fn open(addr: SocketAddr, origin: Option<&str>, early: &[u8]) -> WsClient {
        WsClient::handshake(Box::new(Self::tcp(addr)), origin, early)
    }

    /// Opens wss://addr/ trusting `tls`.
    fn open_tls(addr: SocketAddr, tls: Arc<rustls::ClientConfig>) -> WsClient {
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let conn = rustls::ClientConnection::new(tls, name).unwrap();
        let io = rustls::StreamOwned::new(conn, Self::tcp(addr));
        WsClient::handshake(Box::new(io), None, &[])
    }

    fn handshake(io: Box<dyn Io>, origin: Option<&str>, early: &[u8]) -> WsClient {
        WsClient::handshake_drip(io, origin, early, None)
    }

    /// As [`WsClient::handshake`]; with `drip`, every byte is written on
    /// its own, `drip` apart (TCP_NODELAY: one segment each).
    fn handshake_drip(
        mut io: Box<dyn Io>,
        origin: Option<&str>,
        early: &[u8],
        drip: Option<Duration>,
    ) -> WsClient {
        let mut req = upgrade_request("/", origin).into_bytes();
        req.extend_from_slice(early);
        match drip {
            None => io.write_all(&req).unwrap(),
            Some(gap) => {
                for b in &req {
                    io.write_all(std::slice::from_ref(b)).unwrap();
                    io.flush().unwrap();
                    std::thread::sleep(gap);
                }
            }
        }
        io.flush().unwrap();
        let mut buf = Vec::new();
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = io.read(&mut chunk).expect("upgrade response");
            assert!(n > 0, "gate closed during the upgrade: {buf:?}");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        assert!(
            head.starts_with("HTTP/1.1 101 "),
            "upgrade not accepted:\n{head}"
        );
        let lower = head.to_ascii_lowercase();
        assert!(lower.contains("\r\nupgrade: websocket\r\n"), "{head}");
        assert!(lower.contains("\r\nconnection: upgrade\r\n"), "{head}");
        assert!(
            head.contains(&format!("\r\nSec-WebSocket-Accept: {ACCEPT}\r\n")),
            "{head}"
        );
        buf.drain(..end);
        WsClient {
            io,
            buf,
            opts: PacketOptions::default(),
            seed: 0x9e37_79b9,
        }
    }

    fn mask(&mut self) -> [u8; 4] {
        // xorshift32: masks only need to vary, not to be secret here.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 17;
        self.seed ^= self.seed << 5;
        self.seed.to_be_bytes()
    }

    fn send_frame(&mut self, fin: bool, op: u8, payload: &[u8]) {
        let m = self.mask();
        let f = client_frame(fin, op, payload, Some(m));
        self.send_raw(&f);
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).unwrap();
        self.io.flush().unwrap();
    }

    fn packet(&self, route: i32, seq: i32, payload: &[u8]) -> Vec<u8> {
        let mut b = BytesMut::new();
        codec::encode_data(0, route, seq, payload, &self.opts, &mut b).unwrap();
        b.to_vec()
    }

    fn send_packet(&mut self, route: i32, seq: i32, payload: &[u8]) {
        let p = self.packet(route, seq, payload);
        self.send_frame(true, OP_BINARY, &p);
    }

    /// The next server frame `(fin, opcode, payload)`; `None` on EOF/reset.
    fn recv_frame(&mut self) -> Option<(bool, u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 2 {
                let (b0, b1) = (self.buf[0], self.buf[1]);
                assert_eq!(b1 & 0x80, 0, "server frames must not be masked");
                assert_eq!(b0 & 0x70, 0, "reserved bits set by the server");
                let (len, at) = match b1 & 0x7f {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => (
                        u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    126 | 127 => (usize::MAX, 0),
                    n => (n as usize, 2),
                };
                if len != usize::MAX && self.buf.len() >= at + len {
                    let payload = self.buf[at..at + len].to_vec();
                    self.buf.drain(..at + len);
                    return Some((b0 & 0x80 != 0, b0 & 0x0f, payload));
                }
            }
            let mut chunk = [0u8; 16384];
            match self.io.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!("no frame from the gate within the read timeout")
                }
                Err(_) => return None,
            }
        }
    }

    /// The next data packet (heartbeats skipped); panics on anything else.
    fn recv_packet(&mut self) -> codec::Packet {
        loop {
            let (fin, op, payload) = self.recv_frame().expect("gate closed the connection");
            match op {
                OP_BINARY => {
                    assert!(fin, "the gate sends each packet as one unfragmented frame");
                    let mut b = BytesMut::from(&payload[..]);
                    let f = codec::decode(&mut b, &self.opts)
                        .expect("valid packet")
                        .expect("a whole packet");
                    assert!(b.is_empty(), "one packet per message");
                    match f {
                        Frame::Data(p) => return p,
                        Frame::Heartbeat { .. } => continue,
                    }
                }
                OP_CLOSE => panic!("gate sent close {:?}", close_code(&payload)),
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    fn echo(&mut self, seq: i32, payload: &[u8]) {
        self.echo_on(1, seq, payload);
    }

    fn echo_on(&mut self, route: i32, seq: i32, payload: &[u8]) {
        self.send_packet(route, seq, payload);
        let p = self.recv_packet();
        assert_eq!((p.ext, p.route, p.seq), (0, route, seq));
        assert!(
            p.payload[..] == *payload,
            "echo of {} bytes differs",
            payload.len()
        );
    }

    /// Reads until the gate's close frame, checks its code, then EOF.
    fn expect_close(&mut self, code: u16) {
        loop {
            let Some((_, op, payload)) = self.recv_frame() else {
                panic!("connection ended without a close frame (expected {code})")
            };
            if op == OP_CLOSE {
                assert_eq!(close_code(&payload), Some(code), "close code");
                break;
            }
            assert_eq!(op, OP_BINARY, "only packets before the close frame");
        }
        assert!(
            self.recv_frame().is_none(),
            "TCP closed after the close frame"
        );
    }
}

/// A route-1 packet in the default format.
fn pkt(seq: i32, payload: &[u8]) -> Vec<u8> {
    pkt_on(1, seq, payload)
}

fn pkt_on(route: i32, seq: i32, payload: &[u8]) -> Vec<u8> {
    let mut b = BytesMut::new();
    codec::encode_data(0, route, seq, payload, &PacketOptions::default(), &mut b).unwrap();
    b.to_vec()
}

fn close_code(payload: &[u8]) -> Option<u16> {
    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]))
}

/// Sends `req` on a fresh connection to the ws port and reads the whole
/// response until the gate closes: `(status, response text)`.
fn http_exchange(addr: SocketAddr, req: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(req).unwrap();
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => panic!(
                "gate kept the connection open {PATIENCE:?} after answering:\n{}",
                String::from_utf8_lossy(&out)
            ),
            Err(e) if e.kind() == ErrorKind::ConnectionReset && !out.is_empty() => break,
            Err(e) => panic!("reading the refusal: {e}"),
        }
    }
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status line in {text:?}"));
    (status, text)
}

/// An established ws client echoing in a loop until stopped (the
/// "established clients are not disturbed" witness). Returns the number of
/// verified echoes.
struct Witness {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<u64>,
}

impl Witness {
    fn start(addr: SocketAddr, origin: Option<&'static str>) -> Witness {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let (s, d) = (stop.clone(), done.clone());
        let thread = std::thread::spawn(move || {
            let mut ws = WsClient::open(addr, origin, &[]);
            let mut n = 0u64;
            while !s.load(Ordering::Relaxed) {
                let seq = (n % 30_000) as i32 + 1;
                ws.echo(seq, format!("witness {n}").as_bytes());
                n += 1;
                d.store(n, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
            ws.send_frame(true, OP_CLOSE, &1000u16.to_be_bytes());
            ws.expect_close(1000);
            n
        });
        Witness { stop, done, thread }
    }

    /// Waits for `more` further echoes (proof the client is still served).
    fn advance(&self, more: u64, what: &str) {
        let from = self.done.load(Ordering::Relaxed);
        wait_until(PATIENCE, what, || {
            self.done.load(Ordering::Relaxed) >= from + more
        });
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .expect("witness client kept getting echoes")
    }
}

mod clients;
mod frames;
mod upgrades;
