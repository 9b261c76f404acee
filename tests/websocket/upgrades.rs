//! Refused upgrades and slowloris, with established clients undisturbed.

use super::*;

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
    let mut cases: Vec<(&str, String, u16)> = vec![
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
            "plain GET without upgrade",
            format!("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: {GAME_ORIGIN}\r\n\r\n"),
            426,
        ),
    ];
    cases.extend(bad_upgrades(&good));
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
