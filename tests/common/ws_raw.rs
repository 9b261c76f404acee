//! A minimal WebSocket client (RFC 6455, client side), plain or over TLS,
//! written from the RFC (masked frames; not ringgate's `ws` module), and
//! the raw pieces it is made of, to send exactly the bytes a test wants:
//! frames masked or not, upgrade requests, whole HTTP exchanges. Used by
//! tests/websocket and tests/hostile.rs.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use ringgate::codec::{self, Frame, PacketOptions};

use super::PATIENCE;

/// RFC 6455 §1.3's example key and its accept value: checks the gate's
/// `Sec-WebSocket-Accept` without computing SHA-1 here.
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

pub trait Io: Read + Write + Send {}
impl<T: Read + Write + Send> Io for T {}

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// A client frame: masked with `mask` (clients must mask), or not (to
/// provoke the gate).
pub fn client_frame(fin: bool, op: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
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

pub fn upgrade_request(path: &str, origin: Option<&str>) -> String {
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\
         {origin}\r\n"
    )
}

/// A WebSocket client on a blocking socket (or a TLS stream over one).
pub struct WsClient {
    io: Box<dyn Io>,
    buf: Vec<u8>,
    /// The packet layout it encodes and decodes (a test may raise
    /// `buffer_bytes` to match its gate).
    pub opts: PacketOptions,
    seed: u32,
}

impl WsClient {
    pub fn tcp(addr: SocketAddr) -> TcpStream {
        let s = TcpStream::connect(addr).expect("connect to the ws port");
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        s
    }

    /// Opens ws://addr/ with `origin`, sending `early` (frames) in the same
    /// write as the upgrade request.
    pub fn open(addr: SocketAddr, origin: Option<&str>, early: &[u8]) -> WsClient {
        WsClient::handshake(Box::new(Self::tcp(addr)), origin, early)
    }

    /// Opens wss://addr/ trusting `tls`.
    pub fn open_tls(addr: SocketAddr, tls: Arc<rustls::ClientConfig>) -> WsClient {
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let conn = rustls::ClientConnection::new(tls, name).unwrap();
        let io = rustls::StreamOwned::new(conn, Self::tcp(addr));
        WsClient::handshake(Box::new(io), None, &[])
    }

    pub fn handshake(io: Box<dyn Io>, origin: Option<&str>, early: &[u8]) -> WsClient {
        WsClient::handshake_drip(io, origin, early, None)
    }

    /// As [`WsClient::handshake`]; with `drip`, every byte is written on
    /// its own, `drip` apart (TCP_NODELAY: one segment each).
    pub fn handshake_drip(
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

    pub fn mask(&mut self) -> [u8; 4] {
        // xorshift32: masks only need to vary, not to be secret here.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 17;
        self.seed ^= self.seed << 5;
        self.seed.to_be_bytes()
    }

    pub fn send_frame(&mut self, fin: bool, op: u8, payload: &[u8]) {
        let m = self.mask();
        let f = client_frame(fin, op, payload, Some(m));
        self.send_raw(&f);
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).unwrap();
        self.io.flush().unwrap();
    }

    pub fn packet(&self, route: i32, seq: i32, payload: &[u8]) -> Vec<u8> {
        let mut b = BytesMut::new();
        codec::encode_data(0, route, seq, payload, &self.opts, &mut b).unwrap();
        b.to_vec()
    }

    pub fn send_packet(&mut self, route: i32, seq: i32, payload: &[u8]) {
        let p = self.packet(route, seq, payload);
        self.send_frame(true, OP_BINARY, &p);
    }

    /// The next server frame `(fin, opcode, payload)`; `None` on EOF/reset.
    pub fn recv_frame(&mut self) -> Option<(bool, u8, Vec<u8>)> {
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
    pub fn recv_packet(&mut self) -> codec::Packet {
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

    pub fn echo(&mut self, seq: i32, payload: &[u8]) {
        self.echo_on(1, seq, payload);
    }

    pub fn echo_on(&mut self, route: i32, seq: i32, payload: &[u8]) {
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
    pub fn expect_close(&mut self, code: u16) {
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

/// Upgrade requests the gate refuses whatever its path and origins, each
/// made from the good request `good`, with the status it must answer.
pub fn bad_upgrades(good: &str) -> Vec<(&'static str, String, u16)> {
    vec![
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
    ]
}

/// A frame (or frames) that breaks RFC 6455 or the gate's rules after a
/// good upgrade, and the close code the gate must answer it with.
pub type BadFrame = (&'static str, Box<dyn Fn(&mut WsClient)>, u16);

/// Every malformed frame the tests send (tests/websocket, tests/hostile).
pub fn bad_frames() -> Vec<BadFrame> {
    vec![
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
        (
            "length 2^32 in a 64-bit length",
            Box::new(|c: &mut WsClient| {
                c.send_raw(&[0x82, 0xff, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4])
            }),
            1009,
        ),
        (
            "fragmented ping",
            Box::new(|c: &mut WsClient| c.send_frame(false, OP_PING, b"half a ping")),
            1002,
        ),
    ]
}

/// A route-1 packet in the default format.
pub fn pkt(seq: i32, payload: &[u8]) -> Vec<u8> {
    pkt_on(1, seq, payload)
}

pub fn pkt_on(route: i32, seq: i32, payload: &[u8]) -> Vec<u8> {
    let mut b = BytesMut::new();
    codec::encode_data(0, route, seq, payload, &PacketOptions::default(), &mut b).unwrap();
    b.to_vec()
}

pub fn close_code(payload: &[u8]) -> Option<u16> {
    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]))
}

/// Sends `req` on a fresh connection to the ws port and reads the whole
/// response until the gate closes: `(status, response text)`.
pub fn http_exchange(addr: SocketAddr, req: &[u8]) -> (u16, String) {
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
