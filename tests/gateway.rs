//! End to end: real clients → a real gate (io_uring shards) → a real echo node → back.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ringgate::codec::{ext, Frame, PacketOptions};
use ringgate::config::HeartbeatMechanism;
use ringgate::session::CloseReason;

#[test]
fn fifty_connections_two_hundred_requests_each_come_back_exactly() {
    let st = stack(|_| {});
    let addr = st.gate.tcp_addr();
    let threads: Vec<_> = (0..50)
        .map(|c| {
            std::thread::spawn(move || {
                let mut cl = Client::connect(addr, PacketOptions::default());
                // Pipeline in windows of 20 to exercise batching on every hop.
                for window in 0..10 {
                    for k in 0..20 {
                        let seq = window * 20 + k + 1;
                        let payload =
                            format!("conn {c} seq {seq} {}", "x".repeat((seq % 37) as usize));
                        cl.send(1, seq, payload.as_bytes());
                    }
                    for k in 0..20 {
                        let seq = window * 20 + k + 1;
                        let p = cl.recv_data().expect("reply");
                        let want =
                            format!("conn {c} seq {seq} {}", "x".repeat((seq % 37) as usize));
                        assert_eq!((p.ext, p.route, p.seq), (0, 1, seq));
                        assert_eq!(&p.payload[..], want.as_bytes());
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    let s = st.gate.stats();
    assert_eq!(s.packets_in, 10_000);
    assert_eq!(s.packets_out, 10_000);
    assert_eq!(s.accepted, 50);
}

#[test]
fn heartbeats_are_answered() {
    let st = stack(|_| {});
    let mut cl = Client::connect(st.gate.tcp_addr(), PacketOptions::default());
    for _ in 0..3 {
        cl.send_heartbeat();
        assert_eq!(cl.recv(), Some(Frame::Heartbeat { time: None }));
    }
}

#[test]
fn heartbeat_time_is_carried_when_configured() {
    let st = stack(|c| c.packet.heartbeat_time = true);
    let opts = st.cfg.packet;
    let mut cl = Client::connect(st.gate.tcp_addr(), opts);
    cl.send_heartbeat();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    match cl.recv() {
        Some(Frame::Heartbeat { time: Some(t) }) => {
            assert!((t - now).abs() < 5_000_000_000, "server time {t} vs {now}")
        }
        other => panic!("expected a timed heartbeat, got {other:?}"),
    }
}

#[test]
fn unknown_route_gets_an_error_reply() {
    let st = stack(|_| {});
    let mut cl = Client::connect(st.gate.tcp_addr(), PacketOptions::default());
    cl.send(999, 7, b"anyone?");
    let p = cl.recv_data().unwrap();
    assert_eq!(
        (p.ext, p.route, p.seq, p.payload.len()),
        (ext::NO_ROUTE, 999, 7, 0)
    );
    // The connection still works.
    cl.send(1, 8, b"still here");
    let p = cl.recv_data().unwrap();
    assert_eq!((p.ext, p.seq, &p.payload[..]), (0, 8, &b"still here"[..]));
    assert_eq!(st.gate.stats().no_route, 1);
}

#[test]
fn oversized_packet_closes_only_that_connection() {
    let st = stack(|_| {});
    let addr = st.gate.tcp_addr();
    let mut good: Vec<_> = (0..5)
        .map(|_| Client::connect(addr, PacketOptions::default()))
        .collect();
    let mut bad = Client::connect(addr, PacketOptions::default());
    // Declares 5000 + 100 bytes of payload: over buffer_bytes, rejected from the prefix alone.
    use std::io::Write;
    bad.s
        .write_all(&(1u32 + 2 + 2 + 5100).to_be_bytes())
        .unwrap();
    bad.s.write_all(&[0, 0, 1, 0, 1]).unwrap();
    assert!(bad.closed_within(PATIENCE), "bad connection closed");
    for (i, g) in good.iter_mut().enumerate() {
        g.send(1, i as i32, b"ok");
        assert_eq!(&g.recv_data().unwrap().payload[..], b"ok");
    }
    wait_until(PATIENCE, "protocol error counted", || {
        st.gate.stats().closed_for(CloseReason::ProtocolError) == 1
    });
}

#[test]
fn exactly_at_the_limit_is_accepted() {
    let st = stack(|_| {});
    let mut cl = Client::connect(st.gate.tcp_addr(), PacketOptions::default());
    let payload = vec![0xab; 5000];
    cl.send(1, 1, &payload);
    assert_eq!(cl.recv_data().unwrap().payload.len(), 5000);
}

#[test]
fn silent_client_is_closed_after_two_intervals() {
    let st = stack(|c| c.network.tcp.heartbeat.interval = Duration::from_millis(300));
    let mut cl = Client::connect(st.gate.tcp_addr(), PacketOptions::default());
    // Timed from before the client's last packet: the gate cannot have seen
    // it earlier, so a slow reply cannot make the close look early.
    let t0 = Instant::now();
    cl.send(1, 1, b"hi");
    assert!(cl.recv_data().is_some());
    assert!(cl.closed_within(PATIENCE), "silent client closed");
    let took = t0.elapsed();
    // Not before 1.5 intervals; how soon after 2 intervals depends on the
    // machine's load here (exact: src/connection/tests/timing.rs, idle
    // timeout at 2 x heartbeat interval).
    assert!(took >= Duration::from_millis(450), "closed after {took:?}");
    wait_until(PATIENCE, "heartbeat timeout counted", || {
        st.gate.stats().closed_for(CloseReason::HeartbeatTimeout) == 1
    });
}

#[test]
fn a_client_that_heartbeats_stays_connected() {
    // Heartbeats every 150 ms (pacing, part of the test) against an idle close
    // at 2 x 500 ms: a client thread stalled by a loaded machine still has
    // 850 ms to spare, and the whole exchange outlives the idle timeout.
    let interval = Duration::from_millis(500);
    let st = stack(|c| c.network.tcp.heartbeat.interval = interval);
    let t0 = Instant::now();
    let mut cl = Client::connect(st.gate.tcp_addr(), PacketOptions::default());
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(150));
        cl.send_heartbeat();
        assert_eq!(cl.recv(), Some(Frame::Heartbeat { time: None }));
    }
    assert!(t0.elapsed() > 2 * interval, "outlived the idle timeout");
    assert_eq!(st.gate.stats().closed_for(CloseReason::HeartbeatTimeout), 0);
}

#[test]
fn tick_mechanism_sends_heartbeats_unasked() {
    let st = stack(|c| {
        c.network.tcp.heartbeat.interval = Duration::from_millis(200);
        c.network.tcp.heartbeat.mechanism = HeartbeatMechanism::Tick;
    });
    // Timed from before the connection exists: no server heartbeat for it
    // can have been sent earlier.
    let t0 = Instant::now();
    let mut cl = Client::connect(st.gate.tcp_addr(), PacketOptions::default());
    // The client heartbeats every 50 ms (staying alive) until told to stop,
    // at least 20 times; in tick mode the gate does not answer those but
    // sends its own every 200 ms.
    let mut w = cl.s.try_clone().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_writer = stop.clone();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let mut sent = 0;
        while sent < 20 || !stop_writer.load(std::sync::atomic::Ordering::Relaxed) {
            if w.write_all(&[0, 0, 0, 1, 0x80]).is_err() {
                break;
            }
            sent += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        sent
    });
    // Five server heartbeats and nothing else. The tick spaces them at least
    // 200 ms apart on the gate's clock, so the fifth cannot come before 4
    // ticks (800 ms); were the client's heartbeats answered (20 a second),
    // five would come within ~250 ms. No upper bound: a loaded machine may
    // tick late (that Tick does not answer a client's heartbeat is also
    // tested on virtual time in src/connection/tests/decode.rs).
    for _ in 0..5 {
        assert_eq!(cl.recv(), Some(Frame::Heartbeat { time: None }));
    }
    let took = t0.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = writer.join().unwrap();
    assert!(
        took >= Duration::from_millis(750),
        "5 server heartbeats in {took:?} at a 200 ms tick"
    );
    assert!(sent >= 20, "the client heartbeated {sent} times");
    wait_until(PATIENCE, "client heartbeats counted", || {
        st.gate.stats().heartbeats_in >= 15
    });
    assert_eq!(st.gate.stats().closed_for(CloseReason::HeartbeatTimeout), 0);
}

#[test]
fn authorize_timeout_closes_unbound_connections() {
    let st = stack(|c| c.network.tcp.authorize_timeout = Duration::from_millis(200));
    let mut cl = Client::connect(st.gate.tcp_addr(), PacketOptions::default());
    cl.send(1, 1, b"not logged in");
    assert!(cl.recv_data().is_some());
    // Closed, for the authorize timeout (its exact timing:
    // src/connection/tests/timing.rs).
    assert!(cl.closed_within(PATIENCE));
    wait_until(PATIENCE, "authorize timeout counted", || {
        st.gate.stats().closed_for(CloseReason::AuthorizeTimeout) == 1
    });
}

#[test]
fn connections_beyond_max_are_refused_and_others_keep_working() {
    let st = stack(|c| c.network.tcp.max_connections = 3);
    let addr = st.gate.tcp_addr();
    let mut ok: Vec<_> = (0..3)
        .map(|_| Client::connect(addr, PacketOptions::default()))
        .collect();
    for c in ok.iter_mut() {
        c.send(1, 1, b"x");
        assert!(c.recv_data().is_some());
    }
    let mut extra = Client::connect(addr, PacketOptions::default());
    assert!(extra.closed_within(PATIENCE), "fourth connection refused");
    wait_until(PATIENCE, "refusal counted", || st.gate.stats().refused == 1);
    ok[0].send(1, 2, b"y");
    assert!(ok[0].recv_data().is_some());
    // Closing one frees a place.
    drop(ok.pop());
    wait_until(PATIENCE, "slot freed", || st.gate.stats().connections == 2);
    let mut again = Client::connect(addr, PacketOptions::default());
    again.send(1, 3, b"z");
    assert!(again.recv_data().is_some());
}

#[test]
fn dead_node_fails_fast_and_service_returns_when_it_restarts() {
    let mut st = stack(|_| {});
    let addr = st.gate.tcp_addr();
    let mut cl = Client::connect(addr, PacketOptions::default());
    cl.send(1, 1, b"before");
    assert_eq!(&cl.recv_data().unwrap().payload[..], b"before");

    st.node.take().unwrap().shutdown();
    wait_until(PATIENCE, "links down", || st.gate.stats().links_up == 0);
    let t0 = Instant::now();
    cl.send(1, 2, b"during");
    let p = cl.recv_data().unwrap();
    assert_eq!((p.ext, p.seq), (ext::NODE_DOWN, 2));
    // Fails fast: the gate answers at once while the node is still down (it
    // has no request timeout to wait for, and the node only returns after
    // this reply). The bound is generous for a loaded machine.
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "error reply took {:?}",
        t0.elapsed()
    );

    let node = echo_node(st.node_addr);
    let shards = st.cfg.shards.cores.len() as u64;
    wait_until(PATIENCE, "links back up", || {
        st.gate.stats().links_up == shards
    });
    cl.send(1, 3, b"after");
    let p = cl.recv_data().unwrap();
    assert_eq!((p.ext, p.seq, &p.payload[..]), (0, 3, &b"after"[..]));
    assert!(st.gate.stats().node_down >= 1);
    node.shutdown();
}

#[test]
fn every_packet_option_combination_works_end_to_end() {
    use ringgate::codec::ByteOrder;
    for (bo, rb, sb) in [
        (ByteOrder::Little, 1, 0),
        (ByteOrder::Big, 4, 4),
        (ByteOrder::Little, 2, 1),
    ] {
        let st = stack(|c| {
            c.packet.byte_order = bo;
            c.packet.route_bytes = rb;
            c.packet.seq_bytes = sb;
        });
        let mut cl = Client::connect(st.gate.tcp_addr(), st.cfg.packet);
        cl.send(1, if sb == 0 { 0 } else { 5 }, b"opts");
        let p = cl.recv_data().unwrap();
        assert_eq!(
            (p.route, &p.payload[..]),
            (1, &b"opts"[..]),
            "{bo:?}/{rb}/{sb}"
        );
    }
}

#[test]
fn stopping_the_gate_closes_every_connection() {
    let st = stack(|_| {});
    let mut cl = Client::connect(st.gate.tcp_addr(), PacketOptions::default());
    cl.send(1, 1, b"x");
    assert!(cl.recv_data().is_some());
    let stats = st.gate.stopper();
    let Stack { gate, node, .. } = st;
    stats.stop();
    gate.wait().unwrap();
    assert!(cl.closed_within(PATIENCE));
    drop(node);
}

#[test]
fn tick_heartbeats_and_broadcasts_wait_for_the_websocket_upgrade() {
    use std::io::{Read, Write};
    // Silent for 600 ms before the upgrade: more than one 500 ms tick, and
    // 400 ms short of the idle close at 2 x 500 ms (which also runs during
    // the upgrade), so a late upgrade on a loaded machine still gets in.
    let st = stack(|c| {
        c.network.tcp.heartbeat.interval = Duration::from_millis(500);
        c.network.tcp.heartbeat.mechanism = HeartbeatMechanism::Tick;
    });
    let ws = st.gate.ws_addr().expect("ws enabled in the default config");
    let mut s = std::net::TcpStream::connect(ws).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(600)))
        .unwrap();
    let mut buf = [0u8; 256];
    match s.read(&mut buf) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) => {}
        other => panic!("nothing may be sent before the upgrade, got {other:?}"),
    }
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let n = s.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "RFC 6455 accept key: {head}"
    );
}

/// Upgrades a raw TCP connection to WebSocket and returns it.
fn ws_connect(addr: std::net::SocketAddr) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    s
}

/// Reads server frames until a close frame; returns its status code.
fn ws_close_code(s: &mut std::net::TcpStream) -> u16 {
    use std::io::Read;
    loop {
        let mut h = [0u8; 2];
        s.read_exact(&mut h)
            .expect("a close frame before the connection ends");
        let len = (h[1] & 0x7f) as usize;
        assert!(len < 126, "small server frames only here");
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).unwrap();
        if h[0] == 0x88 {
            return u16::from_be_bytes([body[0], body[1]]);
        }
    }
}

#[test]
fn websocket_clients_get_a_close_frame_when_the_gate_closes_them() {
    // Idle close at 2 x 500 ms: long enough that the second client, also
    // silent, is still open when the gate stops even on a loaded machine.
    let st = stack(|c| c.network.tcp.heartbeat.interval = Duration::from_millis(500));
    let ws = st.gate.ws_addr().unwrap();
    let mut idle = ws_connect(ws);
    assert_eq!(
        ws_close_code(&mut idle),
        1008,
        "policy violation on heartbeat timeout"
    );
    let mut buf = [0u8; 1];
    assert_eq!(
        std::io::Read::read(&mut idle, &mut buf).unwrap_or(0),
        0,
        "then the TCP close"
    );
    wait_until(PATIENCE, "heartbeat timeout counted", || {
        st.gate.stats().closed_for(CloseReason::HeartbeatTimeout) == 1
    });

    let mut live = ws_connect(ws);
    let stopper = st.gate.stopper();
    stopper.stop();
    assert_eq!(ws_close_code(&mut live), 1001, "going away on shutdown");
    drop(st);
}

#[test]
fn a_small_link_frame_limit_is_respected_by_the_node() {
    // The gate accepts frames of at most 6 KiB; the node learns it from the
    // handshake and batches its replies below it, so the link stays up.
    let st = stack(|c| c.link.max_frame_bytes = 6 * 1024);
    let addr = st.gate.tcp_addr();
    let threads: Vec<_> = (0..20)
        .map(|c| {
            std::thread::spawn(move || {
                let mut cl = Client::connect(addr, PacketOptions::default());
                let payload = vec![c as u8; 900];
                for seq in 0..100 {
                    cl.send(1, seq, &payload);
                }
                for seq in 0..100 {
                    let p = cl.recv_data().expect("reply");
                    assert_eq!((p.ext, p.seq, p.payload.len()), (0, seq, 900));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = st.gate.stats();
    assert_eq!((s.link_drops, s.node_down, s.packets_out), (0, 0, 2000));
}
