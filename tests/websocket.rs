//! The WebSocket listener end to end (ws and wss): the third-party Python
//! `websockets` client (tests/clients/ws_check.py), a real headless Chromium
//! (tests/clients/browser_check.py), refused upgrades and slowloris clients
//! on raw sockets, and frame-level edge cases through a minimal WebSocket
//! client written here from RFC 6455 (masked frames; not ringgate's `ws`
//! module).

mod common;

#[allow(dead_code)]
#[path = "../examples/chat_node.rs"]
mod chat_node;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::certs::*;
use common::*;
use ringgate::codec::{self, Frame, PacketOptions};
use ringgate::config::Config;
use ringgate::gate::Gate;
use ringgate::node::{Context, NodeHandle};
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
        let node = chat_echo_node();
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

/// Runs `python3 <script> <args>` with a hard deadline (SIGTERM, then
/// SIGKILL: the scripts clean up their own children on SIGTERM).
fn run_python(script: &str, args: &[String], deadline: Duration) -> (bool, String) {
    let path = format!("{}/tests/clients/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new("python3")
        .arg(&path)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/test.sh installs it)");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let end = Instant::now() + deadline;
    let mut timed_out = false;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() >= end {
            timed_out = true;
            // SAFETY: kill(2) on the pid of our own child, which has not been reaped.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let grace = Instant::now() + Duration::from_secs(5);
            while child.try_wait().unwrap().is_none() && Instant::now() < grace {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = format!(
        "{}{}{}",
        t_out.join().unwrap(),
        t_err.join().unwrap(),
        if timed_out {
            format!("\n(killed after {deadline:?})")
        } else {
            String::new()
        }
    );
    (status.success() && !timed_out, text)
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

// ---------------------------------------------------------------------------
// 1. The Python websockets client (an independent implementation)
// ---------------------------------------------------------------------------

const WS_SCENARIOS: [&str; 9] = [
    "heartbeat",
    "echo",
    "unknown-route",
    "fragmented",
    "ping",
    "text",
    "oversize",
    "close",
    "chat",
];

fn python_ws_check(st: &WsStack, url: String, cafile: Option<&Path>) {
    let mut args = vec![
        "--url".to_string(),
        url,
        "--scenario".into(),
        "all".into(),
        "--echo-route".into(),
        ECHO.to_string(),
        "--echo-conns".into(),
        "20".into(),
        "--echo-requests".into(),
        "100".into(),
    ];
    if let Some(ca) = cafile {
        args.push("--cafile".into());
        args.push(ca.display().to_string());
    }
    let before = st.gate.stats();
    let (ok, out) = run_python("ws_check.py", &args, Duration::from_secs(60));
    assert!(ok, "ws_check.py failed:\n{out}");
    for s in WS_SCENARIOS {
        assert!(
            out.contains(&format!("PASS {s} ")),
            "{s} missing from:\n{out}"
        );
    }
    eprintln!("{out}");
    // The gate's own account of what the client did.
    let s = st.gate.stats();
    // echo: 20 connections; heartbeat, unknown-route, fragmented, ping, text,
    // oversize, close: one each; chat: two.
    assert!(s.ws_upgrades - before.ws_upgrades >= 29, "{s:?}");
    assert_eq!(s.ws_rejected, before.ws_rejected, "no upgrade refused");
    assert_eq!(s.ws_text_rejected - before.ws_text_rejected, 1, "text");
    assert!(s.packets_in - before.packets_in >= 2000, "{s:?}");
    wait_until(PATIENCE, "every connection closed", || {
        st.gate.stats().connections == 0
    });
    let s = st.gate.stats();
    // text (1003) and oversize (1009) are the only protocol errors.
    assert_eq!(
        s.closed_for(CloseReason::ProtocolError) - before.closed_for(CloseReason::ProtocolError),
        2,
        "{s:?}"
    );
}

#[test]
fn python_websockets_client_over_ws() {
    let st = WsStack::start(None, |_| {});
    let url = format!("ws://{}/", st.ws_addr());
    python_ws_check(&st, url, None);
}

#[test]
fn python_websockets_client_over_wss() {
    let dir = TempDir::new("wss");
    let cert = write_cert(&dir.0, "ws");
    let st = WsStack::start(Some(&cert), |_| {});
    let url = format!("wss://{}/", st.ws_addr());
    python_ws_check(&st, url, Some(&cert.cert_file));
    // A plain ws client on the wss port is not a TLS client: refused, counted.
    let before = st.gate.stats().tls_failures;
    let mut s = TcpStream::connect(st.ws_addr()).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(upgrade_request("/", None).as_bytes()).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(
        !buf.starts_with(b"HTTP/"),
        "no HTTP answer in the clear on wss"
    );
    wait_until(PATIENCE, "tls failure counted", || {
        st.gate.stats().tls_failures > before
    });
}

// ---------------------------------------------------------------------------
// 2. A real browser: headless Chromium driven over the DevTools protocol
// ---------------------------------------------------------------------------

#[test]
fn headless_chromium_chats_over_ws_and_wss() {
    let chromium =
        std::env::var("RINGGATE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: scripts/test.sh installs Debian's chromium"
    );
    let dir = TempDir::new("browser");
    let cert = write_cert(&dir.0, "ws");
    let ws = WsStack::start(None, |_| {});
    let wss = WsStack::start(Some(&cert), |_| {});
    let args = vec![
        "--chromium".to_string(),
        chromium,
        "--gate".into(),
        format!("ws://{}/", ws.ws_addr()),
        "--gate".into(),
        format!("wss://{}/", wss.ws_addr()),
        "--timeout".into(),
        "45".into(),
    ];
    // browser_check.py stops itself after 45 s and then kills Chromium; this
    // is the backstop (SIGTERM, which it also cleans up after).
    let (ok, out) = run_python("browser_check.py", &args, Duration::from_secs(60));
    assert!(ok, "browser_check.py failed:\n{out}");
    eprintln!("{out}");
    for (st, scheme) in [(&ws, "ws"), (&wss, "wss")] {
        assert!(out.contains(&format!("PASS {scheme} ")), "{scheme}:\n{out}");
        let s = st.gate.stats();
        // The test page and the example page each opened one connection.
        assert!(s.ws_upgrades >= 2, "{scheme}: {s:?}");
        assert_eq!(s.ws_rejected, 0, "{scheme}: {s:?}");
    }
}

// ---------------------------------------------------------------------------
// 3. Refused upgrades and slowloris, with established clients undisturbed
// ---------------------------------------------------------------------------

#[test]
fn bad_upgrades_are_refused_and_counted_while_established_clients_keep_echoing() {
    let st = stack(|c| {
        c.network.ws.origins = vec![GAME_ORIGIN.into()];
        // 1 s: the witness's own upgrade must beat it on a loaded machine.
        c.network.ws.handshake_timeout = Duration::from_secs(1);
    });
    let ws = st.gate.ws_addr().unwrap();
    let witness = Witness::start(ws, Some(GAME_ORIGIN));
    let mut tcp = Client::connect(st.gate.tcp_addr(), PacketOptions::default());
    witness.advance(20, "witness echoes before the refusals");
    let before = st.gate.stats();

    let good = upgrade_request("/", Some(GAME_ORIGIN));
    let cases: Vec<(&str, String, u16)> = vec![
        (
            "wrong path",
            upgrade_request("/nope", Some(GAME_ORIGIN)),
            404,
        ),
        (
            "bad origin",
            upgrade_request("/", Some("https://evil.example")),
            403,
        ),
        (
            "no origin (not listed as \"\")",
            upgrade_request("/", None),
            403,
        ),
        (
            "missing Sec-WebSocket-Key",
            good.replace(&format!("Sec-WebSocket-Key: {KEY}\r\n"), ""),
            400,
        ),
        ("key not 16 bytes", good.replace(KEY, "c2hvcnQ="), 400),
        (
            "wrong version",
            good.replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
            426,
        ),
        (
            "plain GET without upgrade",
            format!("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: {GAME_ORIGIN}\r\n\r\n"),
            426,
        ),
        ("POST", good.replacen("GET", "POST", 1), 405),
        ("not HTTP", "\x16\x03\x01\x00\x05hello\r\n\r\n".into(), 400),
        // A header that never ends within 8 KiB.
        (
            "header over 8 KiB",
            {
                let head = "GET / HTTP/1.1\r\nX-Pad: ";
                format!("{head}{}", "a".repeat(8192 - head.len()))
            },
            431,
        ),
    ];
    for (what, req, want) in &cases {
        let (status, text) = http_exchange(ws, req.as_bytes());
        assert_eq!(status, *want, "{what}: got\n{text}");
        assert!(text.contains("\r\nConnection: close\r\n"), "{what}: {text}");
        if *want == 426 {
            assert!(
                text.contains("\r\nSec-WebSocket-Version: 13\r\n"),
                "{what}: {text}"
            );
        }
    }
    witness.advance(20, "witness echoes after the refusals");

    // Slowloris: half a request, then silence; a client that sends nothing;
    // and one that drips a byte every 40 ms (the deadline runs from accept;
    // dripping the whole request would take over 6 s).
    let t0 = Instant::now();
    let half = TcpStream::connect(ws).unwrap();
    (&half).write_all(&good.as_bytes()[..40]).unwrap();
    let silent = TcpStream::connect(ws).unwrap();
    let drip = std::thread::spawn(move || {
        let s = TcpStream::connect(ws).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(40))).unwrap();
        let t = Instant::now();
        for &b in good.as_bytes() {
            if (&s).write_all(&[b]).is_err() {
                return t.elapsed();
            }
            let mut x = [0u8; 64];
            match (&s).read(&mut x) {
                Ok(0) => return t.elapsed(),
                Ok(n) => panic!("drip got an answer: {:?}", &x[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return t.elapsed(),
            }
        }
        panic!("the whole request was dripped without the gate closing")
    });
    // Timed from before they connect (the drip from its own connect), so no
    // close can look earlier than the deadline; how soon after it comes
    // depends on the load here (exact: src/connection/tests/timing.rs,
    // handshake deadline).
    for (name, s) in [("half request", &half), ("silent", &silent)] {
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut x = [0u8; 64];
        let r = (&*s).read(&mut x);
        let dt = t0.elapsed();
        assert!(
            matches!(r, Ok(0))
                || r.is_err()
                    && !matches!(
                        r.as_ref().unwrap_err().kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut
                    ),
            "{name}: not closed within {PATIENCE:?} ({r:?})"
        );
        assert!(
            dt >= Duration::from_millis(950),
            "{name}: closed after {dt:?}, handshake_timeout is 1 s"
        );
    }
    let dt = drip.join().unwrap();
    assert!(
        dt >= Duration::from_millis(950),
        "drip: closed after {dt:?}, handshake_timeout is 1 s"
    );
    witness.advance(20, "witness echoes after the slowloris clients");
    tcp.send(1, 5, b"tcp too");
    assert_eq!(&tcp.recv_data().unwrap().payload[..], b"tcp too");

    let n = cases.len() as u64;
    wait_until(PATIENCE, "refusals and timeouts counted", || {
        let s = st.gate.stats();
        s.closed_for(CloseReason::UpgradeRejected) - before.closed_for(CloseReason::UpgradeRejected)
            == n
            && s.closed_for(CloseReason::HandshakeTimeout)
                - before.closed_for(CloseReason::HandshakeTimeout)
                == 3
    });
    let s = st.gate.stats();
    assert_eq!(s.ws_rejected - before.ws_rejected, n, "{s:?}");
    assert_eq!(s.ws_upgrades, before.ws_upgrades, "no new upgrade: {s:?}");
    let echoes = witness.finish();
    assert!(echoes >= 60, "{echoes}");
    // Refused and timed-out connections are never sessions: no disconnect
    // reached the node for them, and the gate holds only the TCP client now.
    wait_until(PATIENCE, "only the tcp client left", || {
        st.gate.stats().connections == 1
    });
}

#[test]
fn empty_origin_list_refuses_every_upgrade() {
    let st = stack(|c| c.network.ws.origins = vec![]);
    let ws = st.gate.ws_addr().unwrap();
    for origin in [None, Some(""), Some("https://game.example"), Some("null")] {
        let (status, text) = http_exchange(ws, upgrade_request("/", origin).as_bytes());
        assert_eq!(status, 403, "origin {origin:?}: {text}");
    }
    assert_eq!(st.gate.stats().ws_rejected, 4);
    assert_eq!(st.gate.stats().ws_upgrades, 0);
    // With "" listed, native clients (no Origin) get in and browsers from
    // other sites do not.
    let st = stack(|c| c.network.ws.origins = vec![GAME_ORIGIN.into(), String::new()]);
    let ws = st.gate.ws_addr().unwrap();
    WsClient::open(ws, None, &[]).echo(1, b"native");
    WsClient::open(ws, Some(GAME_ORIGIN), &[]).echo(1, b"game page");
    let (status, _) = http_exchange(
        ws,
        upgrade_request("/", Some("https://other.example")).as_bytes(),
    );
    assert_eq!(status, 403);
}

// ---------------------------------------------------------------------------
// Frame-level edge cases with the raw client
// ---------------------------------------------------------------------------

#[test]
fn frames_edge_cases() {
    let st = stack(|_| {});
    let ws = st.gate.ws_addr().unwrap();

    // Frames sent in the same write as the upgrade request are not lost.
    let mut early = client_frame(true, OP_BINARY, &pkt(1, b"early one"), Some([1, 2, 3, 4]));
    early.extend(client_frame(
        true,
        OP_BINARY,
        &pkt(2, b"early two"),
        Some([5, 6, 7, 8]),
    ));
    let mut c = WsClient::open(ws, None, &early);
    for (seq, want) in [(1, &b"early one"[..]), (2, b"early two")] {
        let p = c.recv_packet();
        assert_eq!((p.seq, &p.payload[..]), (seq, want));
    }

    // A ping between the fragments of a message is answered at once (pong
    // with the same payload), and the message is still reassembled.
    let data = pkt(3, &[7u8; 300]);
    c.send_frame(false, OP_BINARY, &data[..100]);
    c.send_frame(true, OP_PING, b"in between");
    let (fin, op, payload) = c.recv_frame().unwrap();
    assert_eq!((fin, op, &payload[..]), (true, OP_PONG, &b"in between"[..]));
    c.send_frame(false, OP_CONT, &data[100..200]);
    c.send_frame(true, OP_CONT, &data[200..]);
    let p = c.recv_packet();
    assert_eq!((p.seq, &p.payload[..]), (3, &[7u8; 300][..]));

    // Each of the following breaks the protocol and closes with its code.
    type Case = (&'static str, Box<dyn Fn(&mut WsClient)>, u16);
    let cases: Vec<Case> = vec![
        (
            "unmasked frame",
            Box::new(|c: &mut WsClient| {
                let f = client_frame(true, OP_BINARY, &pkt(4, b"x"), None);
                c.send_raw(&f)
            }),
            1002,
        ),
        (
            "text message",
            Box::new(|c: &mut WsClient| c.send_frame(true, OP_TEXT, b"hello")),
            1003,
        ),
        (
            "two packets in one message",
            Box::new(|c: &mut WsClient| {
                let mut two = pkt(5, b"a");
                two.extend(pkt(6, b"b"));
                c.send_frame(true, OP_BINARY, &two)
            }),
            1007,
        ),
        (
            "half a packet in a message",
            Box::new(|c: &mut WsClient| c.send_frame(true, OP_BINARY, &pkt(7, b"abc")[..6])),
            1007,
        ),
        (
            "continuation without a start",
            Box::new(|c: &mut WsClient| c.send_frame(true, OP_CONT, &pkt(8, b"x"))),
            1002,
        ),
        (
            "fragmented message over the limit",
            Box::new(|c: &mut WsClient| {
                c.send_frame(false, OP_BINARY, &[0u8; 4000]);
                c.send_frame(true, OP_CONT, &[0u8; 1010]);
            }),
            1009,
        ),
        (
            "control frame over 125 bytes",
            Box::new(|c: &mut WsClient| c.send_frame(true, OP_PING, &[0u8; 126])),
            1002,
        ),
        (
            "unknown opcode",
            Box::new(|c: &mut WsClient| c.send_frame(true, 0x3, b"?")),
            1002,
        ),
        (
            "reserved bit (no extension was negotiated)",
            Box::new(|c: &mut WsClient| {
                let mut f = client_frame(true, OP_BINARY, &pkt(9, b"x"), Some([1, 1, 1, 1]));
                f[0] |= 0x40;
                c.send_raw(&f)
            }),
            1002,
        ),
        (
            "length not in its shortest form",
            Box::new(|c: &mut WsClient| {
                let p = pkt(10, b"x");
                let mut f = vec![0x82, 0x80 | 126, 0, p.len() as u8, 0, 0, 0, 0];
                f.extend_from_slice(&p); // mask 0: payload as is
                c.send_raw(&f)
            }),
            1002,
        ),
        (
            "close with a code a peer may not send (1005)",
            Box::new(|c: &mut WsClient| c.send_frame(true, OP_CLOSE, &1005u16.to_be_bytes())),
            1002,
        ),
        (
            "close with a one-byte payload",
            Box::new(|c: &mut WsClient| c.send_frame(true, OP_CLOSE, &[3])),
            1002,
        ),
        (
            "close reason not UTF-8",
            Box::new(|c: &mut WsClient| c.send_frame(true, OP_CLOSE, &[0x03, 0xe8, 0xff, 0xfe])),
            1007,
        ),
    ];
    for (what, provoke, code) in &cases {
        let mut c = WsClient::open(ws, None, &[]);
        c.echo(1, what.as_bytes());
        provoke(&mut c);
        c.expect_close(*code);
        eprintln!("{what}: close {code}");
    }
    // An unsolicited pong is ignored; a close with an application code is
    // answered with the same code.
    let mut c = WsClient::open(ws, None, &[]);
    c.send_frame(true, OP_PONG, b"unasked");
    c.echo(1, b"after the pong");
    let mut close = 4001u16.to_be_bytes().to_vec();
    close.extend_from_slice("done, thanks".as_bytes());
    c.send_frame(true, OP_CLOSE, &close);
    c.expect_close(4001);
    // A close frame without a code is answered with an empty close.
    let mut c = WsClient::open(ws, None, &[]);
    c.echo(1, b"bye soon");
    c.send_frame(true, OP_CLOSE, &[]);
    let (_, op, payload) = c.recv_frame().unwrap();
    assert_eq!((op, payload.len()), (OP_CLOSE, 0));
    assert!(c.recv_frame().is_none());
}

#[test]
fn wss_with_a_rust_tls_client_and_handshake_timeout() {
    let dir = TempDir::new("wss-raw");
    let cert = write_cert(&dir.0, "ws");
    let st = WsStack::start(Some(&cert), |c| {
        // 1 s: the first client's TLS handshake and upgrade must beat it on
        // a loaded machine.
        c.network.ws.handshake_timeout = Duration::from_secs(1)
    });
    let addr = st.ws_addr();
    let tls = client_tls(&cert);
    let mut c = WsClient::open_tls(addr, tls.clone());
    for i in 1..=50 {
        let payload = vec![i as u8; i * 97];
        c.send_packet(ECHO, i as i32, &payload);
        let p = c.recv_packet();
        assert_eq!(
            (p.route, p.seq, &p.payload[..]),
            (ECHO, i as i32, &payload[..])
        );
    }
    // TLS done but no upgrade request within handshake_timeout: closed.
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut idle = rustls::StreamOwned::new(
        rustls::ClientConnection::new(tls, name).unwrap(),
        WsClient::tcp(addr),
    );
    idle.conn
        .complete_io(&mut idle.sock)
        .expect("TLS handshake");
    // Closed (within the socket's read timeout, PATIENCE), for the handshake
    // timeout; its exact timing: src/connection/tests/timing.rs, handshake
    // deadline.
    let mut x = [0u8; 16];
    let r = idle.read(&mut x);
    assert!(
        !matches!(&r, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "not closed: {r:?}"
    );
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    wait_until(PATIENCE, "handshake timeout counted", || {
        st.gate.stats().closed_for(CloseReason::HandshakeTimeout) == 1
    });
    // The established client did not notice.
    c.send_packet(ECHO, 99, b"still here");
    assert_eq!(&c.recv_packet().payload[..], b"still here");
}

#[test]
fn large_messages_and_byte_by_byte_delivery_over_ws_and_wss() {
    let dir = TempDir::new("ws-large");
    let cert = write_cert(&dir.0, "ws");
    let big = |c: &mut Config| {
        c.packet.buffer_bytes = 200_000;
        c.network.tcp.max_outbound_bytes = 1 << 20;
        c.link.max_frame_bytes = 1 << 20;
    };
    let ws = WsStack::start(None, big);
    let wss = WsStack::start(Some(&cert), big);
    let tls = client_tls(&cert);
    type Open<'a> = Box<dyn Fn() -> WsClient + 'a>;
    let clients: Vec<(&str, Open)> = vec![
        ("ws", Box::new(|| WsClient::open(ws.ws_addr(), None, &[]))),
        (
            "wss",
            Box::new(|| WsClient::open_tls(wss.ws_addr(), tls.clone())),
        ),
    ];
    for (scheme, open) in &clients {
        let mut c = open();
        c.opts.buffer_bytes = 200_000;
        // 64-bit frame lengths both ways (payloads over 65535 bytes), and
        // 16-bit ones around their edges.
        for (seq, n) in [
            (1, 65_526),
            (2, 65_527),
            (3, 70_000),
            (4, 200_000),
            (5, 117),
        ] {
            let payload: Vec<u8> = (0..n).map(|i| (i * 31 % 251) as u8).collect();
            c.echo_on(ECHO, seq, &payload);
        }
        // A big message in uneven fragments.
        let payload: Vec<u8> = (0..150_000).map(|i| (i % 253) as u8).collect();
        let data = c.packet(ECHO, 6, &payload);
        let cuts = [0, 1, 9, 65_536, 65_600, 140_000, data.len()];
        for (i, w) in cuts.windows(2).enumerate() {
            let op = if i == 0 { OP_BINARY } else { OP_CONT };
            c.send_frame(w[1] == data.len(), op, &data[w[0]..w[1]]);
        }
        let p = c.recv_packet();
        assert_eq!((p.route, p.seq), (ECHO, 6));
        assert!(p.payload[..] == payload[..], "{scheme}: fragmented echo");
        eprintln!("{scheme}: large messages echoed");
    }
    // Upgrade request and first frame one byte per TCP segment.
    let early = client_frame(
        true,
        OP_BINARY,
        &pkt_on(ECHO, 1, b"drip"),
        Some([9, 8, 7, 6]),
    );
    let io = Box::new(WsClient::tcp(ws.ws_addr()));
    let mut c = WsClient::handshake_drip(io, None, &early, Some(Duration::from_micros(300)));
    c.opts.buffer_bytes = 200_000;
    let p = c.recv_packet();
    assert_eq!(
        (p.ext, p.route, p.seq, &p.payload[..]),
        (0, ECHO, 1, &b"drip"[..])
    );
}

#[test]
fn server_heartbeats_are_binary_messages() {
    let st = stack(|c| {
        c.network.tcp.heartbeat.mechanism = ringgate::config::HeartbeatMechanism::Tick;
        c.network.tcp.heartbeat.interval = Duration::from_millis(400);
        c.packet.heartbeat_time = true;
    });
    let mut c = WsClient::open(st.gate.ws_addr().unwrap(), None, &[]);
    let now_ns = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64
    };
    for _ in 0..3 {
        let (fin, op, payload) = c.recv_frame().expect("a heartbeat");
        assert_eq!(
            (fin, op, payload.len()),
            (true, OP_BINARY, 13),
            "{payload:?}"
        );
        // Size 9; header 0xC0: heartbeat (bit 7), a time follows (bit 6).
        assert_eq!(&payload[..5], &[0, 0, 0, 9, 0xc0]);
        let t = i64::from_be_bytes(payload[5..].try_into().unwrap());
        assert!((now_ns() - t).abs() < 5_000_000_000, "heartbeat time {t}");
        // Answering keeps the connection alive past 2 x interval.
        c.send_frame(true, OP_BINARY, &[0, 0, 0, 1, 0x80]);
    }
    c.echo(1, b"alive");
}
