//! Frame-level edge cases, large messages, byte-by-byte delivery, heartbeats.

use super::*;

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

    // Each of these breaks the protocol and closes with its code.
    for (what, provoke, code) in &bad_frames() {
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
