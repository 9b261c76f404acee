//! Per source, on accept: connections per client address (IPv4, and IPv6
//! on `::1` where the host has it), accepts per second per shard during a
//! storm, handshakes in progress per shard.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ringgate::session::CloseReason;

use crate::common::{wait_until, Client, PATIENCE};
use crate::{echo, gate_for, opts, serial, served, served_from, Canary, ECHO};

/// A WebSocket upgrade request a gate accepts (any origin, path "/").
const UPGRADE: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

/// A WebSocket connection whose upgrade the gate answered 101; `None`
/// if the gate closed it instead.
pub fn ws_upgraded(addr: SocketAddr) -> Option<TcpStream> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(UPGRADE).ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    Some(s)
}

/// One masked binary frame (client to server) carrying `payload` (< 126 bytes).
pub fn ws_binary(payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut f = vec![0x82, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

#[test]
fn connections_per_address_are_capped_across_shards_and_freed_on_close() {
    let _turn = serial();
    const MAX: usize = 4;
    let node = echo();
    let g = gate_for(&node, false, |c| {
        c.limits.max_connections_per_ip = MAX;
    });
    let addr = g.tcp_addr();
    // Connections land on either shard; the count is the gate's.
    let mut mine: Vec<Client> = (0..MAX)
        .map(|_| served(addr).expect("within the limit"))
        .collect();
    assert!(served(addr).is_none(), "a fifth from 127.0.0.1");
    assert!(served(addr).is_none(), "a sixth from 127.0.0.1");
    // Another address has its own count.
    let theirs: Vec<Client> = (0..MAX)
        .map(|_| served_from(addr, Some("127.0.0.2")).expect("another address"))
        .collect();
    assert!(served_from(addr, Some("127.0.0.2")).is_none());
    let st = g.stats();
    assert_eq!(st.refused_per_ip, 3);
    assert_eq!(st.closed_for(CloseReason::Refused), 3);
    assert_eq!(st.connections, 2 * MAX as u64);
    // A closed connection gives its place back.
    drop(mine.pop());
    wait_until(PATIENCE, "a place freed by a close", || {
        served(addr).map(|c| mine.push(c)).is_some()
    });
    assert!(served(addr).is_none(), "and only one");
    drop((mine, theirs));
    g.stop();

    // IPv6: by /64, here the loopback ::1.
    if let Err(e) = std::net::TcpListener::bind("[::1]:0") {
        eprintln!("skipping the IPv6 part: this host has no IPv6 loopback ({e})");
        return;
    }
    let g6 = gate_for(&node, false, |c| {
        c.network.tcp.addr = "[::1]:0".parse().unwrap();
        c.limits.max_connections_per_ip = 2;
    });
    let six = g6.tcp_addr();
    assert!(six.is_ipv6());
    let kept: Vec<Client> = (0..2).map(|_| served(six).expect("::1, within")).collect();
    assert!(served(six).is_none(), "a third from ::1");
    assert_eq!(g6.stats().refused_per_ip, 1);
    drop(kept);
    g6.stop();
}

#[test]
fn a_connection_storm_over_accepts_per_sec_is_closed_on_accept_and_sessions_carry_on() {
    let _turn = serial();
    const RATE: u64 = 20;
    const STORM: u64 = 60;
    let node = echo();
    let g = gate_for(&node, true, |c| {
        c.limits.accepts_per_sec = RATE;
    });
    let addr = g.tcp_addr();
    let canary = Canary::start(addr, Duration::from_millis(20));
    std::thread::sleep(Duration::from_millis(100));
    let before = g.stats().accepted;
    let start = Instant::now();
    let storm: Vec<TcpStream> = (0..STORM)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    wait_until(PATIENCE, "every connection of the storm decided", || {
        let s = g.stats();
        s.accepted - before + s.refused_accept_rate == STORM
    });
    let elapsed = start.elapsed();
    let st = g.stats();
    let accepted = st.accepted - before;
    // A second's worth at once (less the canary's), plus the refill.
    let most = RATE + RATE * elapsed.as_millis() as u64 / 1000 + 1;
    assert!(
        (RATE - 1..=most).contains(&accepted),
        "{accepted} of {STORM} accepted in {elapsed:?}, the rate allows {} to {most}",
        RATE - 1
    );
    assert_eq!(st.closed_for(CloseReason::Refused), st.refused_accept_rate);
    // The refused ones were closed; the accepted ones are served.
    let mut served_n = 0;
    for s in storm {
        let mut c = Client::from_stream(s, opts());
        c.send(ECHO, 1, b"storm");
        if c.recv_data().is_some() {
            served_n += 1;
        }
    }
    assert_eq!(served_n, accepted);
    // Once the storm is over, new connections are accepted again.
    wait_until(PATIENCE, "accepting again", || served(addr).is_some());
    assert!(canary.finish() >= 5);
    g.stop();
}

#[test]
fn handshakes_over_max_handshakes_are_closed_on_accept() {
    let _turn = serial();
    const MAX: usize = 5;
    let node = echo();
    let g = gate_for(&node, true, |c| {
        c.limits.max_handshakes = MAX;
        c.network.ws.handshake_timeout = Duration::from_secs(60);
    });
    let ws = g.ws_addr().expect("ws listener");
    // WebSocket clients that never finish their upgrade hold every place.
    let mut stuck: Vec<Client> = (0..MAX)
        .map(|_| {
            let mut s = TcpStream::connect(ws).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
            Client::from_stream(s, opts())
        })
        .collect();
    wait_until(PATIENCE, "the stuck clients accepted", || {
        g.stats().accepted == MAX as u64
    });
    // Further ones are closed at once...
    for _ in 0..3 {
        let mut c = Client::connect(ws, opts());
        assert!(c.closed_within(PATIENCE), "closed on accept");
    }
    assert_eq!(g.stats().refused_handshakes, 3);
    // ...the stuck ones are still there, and a due client over TCP (no
    // handshake) is served.
    assert!(!stuck[0].closed_within(Duration::from_millis(50)));
    let tcp = served(g.tcp_addr()).expect("TCP has no handshake");
    wait_until(PATIENCE, "the gauge", || g.stats().handshakes == MAX as u64);
    // A stuck client that gives up makes room for one that upgrades, and
    // an upgraded client no longer counts.
    drop(stuck.pop());
    let mut up = None;
    wait_until(PATIENCE, "room for an upgrade", || {
        up = ws_upgraded(ws);
        up.is_some()
    });
    wait_until(PATIENCE, "the gauge", || {
        g.stats().handshakes == MAX as u64 - 1
    });
    let mut s = up.unwrap();
    let mut p = bytes::BytesMut::new();
    ringgate::codec::encode_data(0, ECHO, 1, b"hi", &opts(), &mut p).unwrap();
    s.write_all(&ws_binary(&p)).unwrap();
    let mut reply = [0u8; 2];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(reply[0], 0x82, "a binary message back");
    drop(tcp);
    g.stop();
}
