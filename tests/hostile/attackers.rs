//! The attackers: each opens connections of its own, sends one kind of bad
//! input (or none at all, or never reads), checks the gate closes it as it
//! should, and returns what the gate's close counters must show for it.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::BytesMut;
use ringgate::codec::{self, Frame, PacketOptions};
use ringgate::node::GateClient;
use ringgate::UserId;

use crate::common::mqtt_raw::{self as mqtt, Mqtt};
use crate::common::ws_raw::*;
use crate::common::{flood_until_offline, Client, PATIENCE};
use crate::node::{ECHO, FLOOD, LOGIN};

/// What the gate must count for an attacker's connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expect {
    /// Closes for `protocol_error`.
    pub protocol_error: u64,
    /// Closes for `upgrade_rejected` (also `ws_rejected`).
    pub upgrade_rejected: u64,
    /// Closes for `overflow`.
    pub overflow: u64,
    /// `mqtt_errors`.
    pub mqtt_errors: u64,
    /// WebSocket upgrades accepted.
    pub ws_upgrades: u64,
}

impl std::ops::Add for Expect {
    type Output = Expect;
    fn add(self, o: Expect) -> Expect {
        Expect {
            protocol_error: self.protocol_error + o.protocol_error,
            upgrade_rejected: self.upgrade_rejected + o.upgrade_rejected,
            overflow: self.overflow + o.overflow,
            mqtt_errors: self.mqtt_errors + o.mqtt_errors,
            ws_upgrades: self.ws_upgrades + o.ws_upgrades,
        }
    }
}

/// Sends `bytes` and expects the gate to close the connection without a word.
fn closed_without_answer(addr: SocketAddr, what: &str, bytes: &[u8]) {
    let mut c = Client::connect(addr, PacketOptions::default());
    // A write may fail once the gate has closed: the close is what counts.
    let _ = c.s.write_all(bytes);
    assert!(c.closed_within(PATIENCE), "{what}: not closed");
}

/// Garbage and bad size fields on the due port: each closes its connection.
pub fn garbage(addr: SocketAddr) -> Expect {
    // xorshift: reproducible noise; a first byte over 0 makes a size over
    // 16 MiB, far past buffer_bytes, so it cannot wait for a body.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    noise[0] |= 1;
    let cases: [(&str, Vec<u8>); 8] = [
        ("random bytes", noise),
        (
            "size 0xffffffff, -1 as i32",
            vec![0xff, 0xff, 0xff, 0xff, 0, 0, 1, 0, 1, b'x'],
        ),
        (
            "size 0x80000000, i32::MIN",
            vec![0x80, 0, 0, 0, 0, 0, 1, 0, 1, b'x'],
        ),
        // 1 + route 2 + seq 2 + 5000 bytes is the largest; one more.
        (
            "size one over the limit",
            vec![0, 0, 0x13, 0x8e, 0, 0, 1, 0, 1],
        ),
        ("size 0", vec![0, 0, 0, 0, 0, 0, 1, 0, 1]),
        ("size under header, route and seq", vec![0, 0, 0, 2, 0, 0]),
        ("heartbeat of size 3", vec![0, 0, 0, 3, 0x80, 0, 0]),
        (
            "HTTP on the due port",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
    ];
    for (what, bytes) in &cases {
        closed_without_answer(addr, what, bytes);
    }
    Expect {
        protocol_error: cases.len() as u64,
        ..Expect::default()
    }
}

/// Writes `bytes` one per write, 1 ms apart (TCP_NODELAY: a segment each).
fn drip(s: &TcpStream, bytes: &[u8]) {
    for b in bytes {
        if (&*s).write_all(std::slice::from_ref(b)).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A request and a heartbeat split byte by byte are answered; a bad size
/// split byte by byte closes the connection.
pub fn split(addr: SocketAddr) -> Expect {
    let opts = PacketOptions::default();
    let mut c = Client::connect(addr, opts);
    let mut b = BytesMut::new();
    codec::encode_data(0, ECHO, 7, b"split byte by byte", &opts, &mut b).unwrap();
    codec::encode_heartbeat(None, &opts, &mut b);
    drip(&c.s, &b);
    let (mut echoed, mut beat) = (false, false);
    while !(echoed && beat) {
        match c.recv().expect("split: closed while well-formed") {
            Frame::Data(p) => {
                assert_eq!(
                    (p.ext, p.seq, &p.payload[..]),
                    (0, 7, &b"split byte by byte"[..])
                );
                echoed = true;
            }
            Frame::Heartbeat { .. } => beat = true,
        }
    }
    drip(&c.s, &[0, 0x10, 0, 0, 0, 0, 1, 0, 1]);
    assert!(c.closed_within(PATIENCE), "split: a 1 MiB size not refused");
    Expect {
        protocol_error: 1,
        ..Expect::default()
    }
}

/// Malformed frames after a good upgrade: each closes with its code.
pub fn ws_frames(ws: SocketAddr) -> Expect {
    let cases = bad_frames();
    for (what, provoke, code) in &cases {
        let mut c = WsClient::open(ws, None, &[]);
        c.echo(1, what.as_bytes());
        provoke(&mut c);
        c.expect_close(*code);
    }
    let n = cases.len() as u64;
    Expect {
        protocol_error: n,
        ws_upgrades: n,
        ..Expect::default()
    }
}

/// Malformed upgrade requests: each refused with its status.
pub fn ws_upgrades(ws: SocketAddr) -> Expect {
    let mut cases = bad_upgrades(&upgrade_request("/", None));
    cases.push(("wrong path", upgrade_request("/nope", None), 404));
    for (what, req, status) in &cases {
        let (got, text) = http_exchange(ws, req.as_bytes());
        assert_eq!(got, *status, "{what}: {text}");
    }
    Expect {
        upgrade_rejected: cases.len() as u64,
        ..Expect::default()
    }
}

/// MQTT malformations: each closes its connection (a bad level after a
/// CONNACK 0x01, the rest without a word).
pub fn mqtt(addr: SocketAddr) -> Expect {
    let connect = mqtt::connect("m", 60);
    let mut bad_name = connect.clone();
    bad_name[4..8].copy_from_slice(b"MQTX");
    let mut bad_level = connect.clone();
    bad_level[8] = 5;
    let mut qos3 = mqtt::publish("Echo/HD_Echo/1", b"{}", 1, 9);
    qos3[0] = 0x36;
    let long_topic = mqtt::publish(&"t".repeat(5000), b"{}", 0, 0);
    // Topic length 0xffff in a 6-byte body.
    let short_topic = vec![0x30, 0x06, 0xff, 0xff, b'a', b'b', b'c', b'd'];
    let cases: Vec<(&str, bool, Vec<u8>, &[u8])> = vec![
        (
            "5-byte remaining length",
            true,
            vec![0x30, 0xff, 0xff, 0xff, 0xff, 0x01],
            b"",
        ),
        (
            "5-byte remaining length before CONNECT",
            false,
            vec![0x10, 0x80, 0x80, 0x80, 0x80, 0x01],
            b"",
        ),
        (
            "PUBLISH before CONNECT",
            false,
            mqtt::publish("Echo/HD_Echo/1", b"{}", 0, 0),
            b"",
        ),
        ("PINGREQ before CONNECT", false, vec![0xc0, 0x00], b""),
        ("protocol name MQTX", false, bad_name, b""),
        (
            "protocol level 5",
            false,
            bad_level,
            &[0x20, 0x02, 0x00, 0x01],
        ),
        ("topic over max_packet_bytes", true, long_topic, b""),
        ("topic length past the packet", true, short_topic, b""),
        ("QoS 3", true, qos3, b""),
    ];
    for (what, connect_first, bytes, answer) in &cases {
        let mut c = if *connect_first {
            Mqtt::connect(addr, what, 60)
        } else {
            Mqtt::open(addr)
        };
        c.send(bytes);
        let got = c
            .until_closed(PATIENCE)
            .unwrap_or_else(|got| panic!("{what}: not closed, got {got:02x?}"));
        assert_eq!(got, *answer, "{what}: the gate answered");
    }
    let n = cases.len() as u64;
    Expect {
        protocol_error: n,
        mqtt_errors: n,
        ..Expect::default()
    }
}

/// Clients that log in and never read, flooded by the node until the gate
/// closes them (`overflow`); broadcasts reach them too meanwhile.
pub fn never_readers(addr: SocketAddr, gates: &GateClient, uids: std::ops::Range<i64>) -> Expect {
    let n = uids.end - uids.start;
    std::thread::scope(|s| {
        for uid in uids {
            s.spawn(move || {
                let mut c = Client::connect(addr, PacketOptions::default());
                c.send(LOGIN, 1, uid.to_string().as_bytes());
                // Bound before the answer is sent: a broadcast may come first.
                let p = std::iter::from_fn(|| c.recv_data())
                    .find(|p| p.route == LOGIN)
                    .expect("never-reader: log-in answered");
                assert_eq!(&p.payload[..], b"ok", "never-reader {uid}: log-in");
                // From here on it reads nothing.
                // Checked every 16 pushes (64 KB): little is pushed in vain.
                let sent =
                    flood_until_offline(gates, UserId(uid), FLOOD, &[0x5a; 4000], (16, 20_000));
                assert!(sent < 20_000, "never-reader {uid} was never closed");
                drop(c);
            });
        }
    });
    Expect {
        overflow: n as u64,
        ..Expect::default()
    }
}

/// `n` connections that connect and then do nothing at all.
pub fn horde(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| TcpStream::connect(addr).unwrap_or_else(|e| panic!("horde {i}: {e}")))
        .collect()
}
