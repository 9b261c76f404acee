//! Decoding: requests split anywhere, heartbeats, bad packets, and the
//! buffers an idle connection (does not) hold.

use super::*;

#[test]
fn requests_decode_the_same_split_at_every_byte_boundary() {
    for net in NETS {
        // A request, a heartbeat, a second request (fragmented under
        // WebSocket, where the upgrade request opens the stream).
        let second = packet(-2, 300, &[0xab; 40]);
        let mut whole = Vec::new();
        if net.is_websocket() {
            whole.extend_from_slice(upgrade_request("/").as_bytes());
        }
        whole.extend(framed(net, &REQUEST));
        whole.extend(framed(net, &HEARTBEAT));
        if net.is_websocket() {
            whole.extend(client_frame(BIN_MORE, &second[..10]));
            whole.extend(client_frame(CONT_FIN, &second[10..]));
        } else {
            whole.extend_from_slice(&second);
        }
        let want = [Ev::Opened, req(7, 1, b"hi"), req(-2, 300, &[0xab; 40])];
        let check = |h: &mut H, what: &str| {
            assert_eq!(h.events(), want, "{net:?} {what}");
            let out = h.transmit();
            let answer = if net.is_websocket() {
                after_http(&out)
            } else {
                &out
            };
            assert_eq!(answer, served(net, &HEARTBEAT), "{net:?} {what}");
            assert_eq!(h.conn.rbuf.capacity(), 0, "{net:?} {what}: leftover");
            assert_eq!(h.stats().packets_in, 2);
        };
        for cut in 0..=whole.len() {
            let mut h = H::accept(net, rules(), None);
            let (a, b) = whole.split_at(cut);
            [a, b]
                .iter()
                .filter(|p| !p.is_empty())
                .for_each(|p| h.recv(p));
            check(&mut h, &format!("cut at {cut}"));
        }
        let mut h = H::accept(net, rules(), None);
        whole.chunks(1).for_each(|b| h.recv(b));
        check(&mut h, "one byte per read");
    }
}

#[test]
fn client_heartbeat_is_answered_under_resp_and_not_under_tick() {
    use HeartbeatMechanism::{Resp, Tick};
    for net in NETS {
        for (mechanism, answered) in [(Resp, true), (Tick, false)] {
            let mut r = rules();
            r.session.mechanism = mechanism;
            let mut h = H::open(net, r);
            h.recv(&framed(net, &HEARTBEAT));
            let want = if answered {
                served(net, &HEARTBEAT)
            } else {
                vec![]
            };
            assert_eq!(h.transmit(), want, "{net:?} {mechanism:?}");
            assert_eq!(h.stats().heartbeats_in, 1);
            assert!(h.events().is_empty(), "a heartbeat is no request");
        }
    }
}

#[test]
fn heartbeat_with_time_sets_header_c0_and_carries_unix_nanos() {
    #[rustfmt::skip]
    const TIMED: [u8; 13] = [
        0, 0, 0, 9,  // size: 1 header + 8 time
        0xc0,        // header: heartbeat bit + time bit
        0x18, 0x16, 0x68, 0x7e, 0xc0, 0x57, 0x00, 0x00, // i64 unix ns: 2025-01-01T00:00:00Z
    ];
    for net in NETS {
        let mut r = rules();
        r.packet.heartbeat_time = true;
        let mut h = H::open(net, r);
        h.s.unix_nanos = 0x1816_687e_c057_0000;
        h.recv(&framed(net, &HEARTBEAT));
        assert_eq!(h.transmit(), served(net, &TIMED), "{net:?}: the answer");
        assert!(h.conn.send_heartbeat(&mut h.s.cx()));
        assert_eq!(h.transmit(), served(net, &TIMED), "{net:?}: its own");
    }
}

#[test]
fn bad_packet_on_raw_tcp_closes_at_once_with_protocol_error() {
    let cases: [(&str, &[u8]); 4] = [
        // size 5006: one over 1 header + 2 route + 2 seq + 5000 payload; no body needed
        ("oversized", &[0x00, 0x00, 0x13, 0x8e]),
        ("size 0", &[0, 0, 0, 0, 0x00]),
        // size 3: shorter than header, route and seq
        ("short data packet", &[0, 0, 0, 3, 0x00, 0, 7]),
        // size 2 with the heartbeat bit: neither 1 nor 9
        ("heartbeat of size 2", &[0, 0, 0, 2, 0x80, 0]),
    ];
    for (what, bad) in cases {
        let mut h = H::open(Network::Tcp, rules());
        h.recv(&[&REQUEST[..], bad].concat()); // a good request first, in the same read
        let want = [req(7, 1, b"hi"), Ev::Closed(ProtocolError, true)];
        assert_eq!(h.events(), want, "{what}");
        assert!(h.is_closed_for(ProtocolError), "{what}");
        assert_eq!(h.transmit(), b"", "{what}");
        h.recv(&REQUEST);
        assert!(h.events().is_empty(), "{what}: after close");
    }
}

/// Spare buffers in the pool (taken out and given back).
fn spare(pool: &mut BufPool) -> usize {
    let held: Vec<_> =
        std::iter::from_fn(|| Some(pool.take()).filter(|b| b.capacity() > 0)).collect();
    let n = held.len();
    held.into_iter().for_each(|b| pool.give(b));
    n
}

/// Once its sends completed, `h`'s connection holds no outbound byte and
/// no buffer: releasing it gives nothing back to the pool.
pub(super) fn assert_holds_no_buffer(h: H, what: &str) {
    assert_eq!(h.conn.outbound_bytes(), 0, "{what}");
    assert!(!h.conn.wants_flush(), "{what}");
    assert_eq!(h.conn.rbuf.capacity(), 0, "{what}: a read buffer");
    let H { conn, mut s } = h;
    let before = spare(&mut s.pool);
    assert!(before >= 1, "{what}: the sent buffer is back in the pool");
    conn.release(&mut s.pool);
    assert_eq!(spare(&mut s.pool), before, "{what}: held a buffer");
}

#[test]
fn an_idle_connection_holds_no_buffers_once_its_send_completes() {
    for net in NETS {
        let mut h = H::open(net, rules());
        let request = framed(net, &REQUEST);
        h.recv(&request[..3]);
        assert!(h.conn.rbuf.capacity() > 0, "{net:?}: partial kept");
        h.recv(&request[3..]);
        assert_eq!(h.events(), [req(7, 1, b"hi")]);
        assert!(h.send(7, b"reply"));
        assert_eq!(h.transmit(), served(net, &packet(7, 1, b"reply")));
        assert_holds_no_buffer(h, &format!("{net:?}"));
    }
}
