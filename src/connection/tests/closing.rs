//! The one close path: flush, goodbye, exactly one Closed event, overflow.

use super::*;

#[test]
fn kick_with_flush_sends_queued_packets_then_the_goodbye_then_closes() {
    for (net, busy) in NETS.into_iter().flat_map(|n| [(n, false), (n, true)]) {
        // busy: the first packet's send is in flight when the kick comes.
        let mut h = H::open(net, rules());
        assert!(h.send(1, b"one"));
        let in_flight = busy.then(|| h.start_send().expect("a send"));
        assert!(h.send(2, b"two"));
        h.close(Kicked, Close::AfterFlush);
        assert_eq!(h.events(), closed(Kicked), "{net:?}");
        assert!(h.is_draining(), "{net:?}");
        assert_eq!(h.conn.wants_flush(), !busy, "one send at a time");
        let mut want = served(net, &packet(1, 1, b"one"));
        if let Some(buf) = in_flight {
            assert!(h.start_send().is_none(), "one send at a time");
            h.complete_send(buf);
            want.clear();
        }
        want.extend(served(net, &packet(2, 1, b"two")));
        want.extend(goodbye(net, 1008, "kicked"));
        assert_eq!(h.transmit(), want, "{net:?}: the packets, then the goodbye");
        assert!(h.is_closed_for(Kicked), "{net:?}");
    }
}

#[test]
fn graceful_close_is_immediate_on_raw_packets_and_sends_a_close_code_on_websocket() {
    for (reason, code, text) in [
        (Shutdown, 1001, "shutdown"),
        (HeartbeatTimeout, 1008, "heartbeat_timeout"),
        (Kicked, 1008, "kicked"),
        (Rebind, 1008, "rebind"),
    ] {
        for net in NETS {
            let mut h = H::open(net, rules());
            assert!(h.send(1, b"queued"));
            h.close(reason, Close::Graceful);
            assert_eq!(h.events(), closed(reason));
            assert_eq!(h.is_draining(), net.is_websocket(), "{net:?} {reason:?}");
            let want = match net {
                Network::Ws => [
                    served(net, &packet(1, 1, b"queued")),
                    close_frame(code, text),
                ],
                _ => Default::default(), // closed at once, the packet dropped
            };
            assert_eq!(h.transmit(), want.concat(), "{net:?} {reason:?}");
            assert!(h.is_closed_for(reason));
        }
    }
}

#[test]
fn nothing_is_queued_after_close() {
    for net in NETS {
        for how in [Close::Now, Close::Graceful, Close::AfterFlush] {
            let mut h = H::open(net, rules());
            h.close(Rebind, how);
            assert!(!h.send(1, b"late"), "{net:?} {how:?}");
            assert!(!h.conn.send_encoded(&REQUEST, &mut h.s.cx()));
            assert!(!h.conn.send_heartbeat(&mut h.s.cx()));
            let said = match how {
                Close::Now => vec![],
                _ => goodbye(net, 1008, "rebind"),
            };
            assert_eq!(h.transmit(), said, "{net:?} {how:?}");
            assert_eq!(h.stats().packets_out, 0);
        }
    }
}

/// Something done to a connection.
type Step = fn(&mut H);

/// A first close, then every other way to close, in order or reversed:
/// one Closed event, the first reason, one count.
fn close_then_everything(net: Network, first: (CloseReason, Step), reverse: bool) {
    let mut then: [Step; 7] = [
        |h| h.close(Shutdown, Close::Graceful),
        |h| h.close(Kicked, Close::AfterFlush),
        |h| h.peer_gone(),
        |h| h.advance(3 * LINGER_MS),
        |h| h.timeout(),
        |h| drop(h.transmit()),
        |h| h.close(Rebind, Close::Now),
    ];
    if reverse {
        then.reverse();
    }
    let mut h = H::open(net, heartbeat_rules(1000));
    assert!(h.send(1, b"queued"));
    let (reason, close) = first;
    close(&mut h);
    for f in then {
        f(&mut h);
        assert_eq!(h.conn.close_reason(), Some(reason), "{net:?}: first wins");
    }
    let what = format!("{net:?} {reason:?} reverse={reverse}");
    assert_eq!(h.events(), closed(reason), "{what}");
    assert!(h.is_closed_for(reason), "{what}");
    assert_eq!((h.closes(), h.stats().closed_for(reason)), (1, 1), "{what}");
}

#[test]
fn exactly_one_closed_event_whatever_follows_and_the_first_reason_wins() {
    let firsts: [(CloseReason, Step); 5] = [
        (Kicked, |h| h.close(Kicked, Close::AfterFlush)),
        (Rebind, |h| h.close(Rebind, Close::Graceful)),
        (ClientClosed, |h| h.peer_gone()),
        (HeartbeatTimeout, |h| h.advance(2000)),
        (Overflow, |h| h.close(Overflow, Close::Now)),
    ];
    for net in NETS {
        for first in firsts {
            close_then_everything(net, first, false);
            close_then_everything(net, first, true);
        }
    }
}

/// A client message for the random sequences (any framing may get any).
fn client_bytes(net: Network, k: u8) -> Vec<u8> {
    match k % 8 {
        0 => framed(net, &REQUEST),
        1 => framed(net, &HEARTBEAT),
        2 => framed(net, &REQUEST)[..3].to_vec(),
        3 => upgrade_request("/").into_bytes(),
        4 => client_frame(PING, b"p"),
        5 => client_frame(CLOSE, &[0x03, 0xe8]), // code 1000
        6 => vec![0, 0, 0, 0],                   // size 0, or a bad frame
        _ => upgrade_request("/nope").into_bytes(),
    }
}

/// One random input from the client, the nodes, the clock or the socket.
fn random_step(h: &mut H, held: &mut Option<BytesMut>, op: u8, arg: u8) {
    let how = [Close::Now, Close::Graceful, Close::AfterFlush][usize::from(arg / 16) % 3];
    match op % 9 {
        0 | 1 => h.recv(&client_bytes(h.conn.network(), arg)),
        2 => drop(h.send(1, &vec![0; usize::from(arg)])),
        3 => h.close(
            CloseReason::ALL[usize::from(arg) % CloseReason::ALL.len()],
            how,
        ),
        4 => h.peer_gone(),
        5 => h.advance(Millis::from(arg) * 20),
        6 if held.is_none() => *held = h.start_send(),
        7 => held.take().into_iter().for_each(|b| h.complete_send(b)),
        _ => drop(h.transmit()),
    }
}

proptest::proptest! {
    /// Whatever happens: Opened at most once and first, one Closed and one
    /// count, no event after it, the first reason kept, the bound held
    /// while open, and Closed for good (no send, no timer) once reached.
    #[test]
    fn any_sequence_closes_once_and_stays_closed(
        ws: bool,
        ops in proptest::collection::vec((0u8..9, 0u8..=255), 0..40),
    ) {
        let net = if ws { Network::Ws } else { Network::Tcp };
        let mut r = heartbeat_rules(1000);
        (r.session.authorize_ms, r.max_outbound) = (1500, 600);
        let mut h = H::accept(net, r, None);
        let (mut held, mut opens, mut reason) = (None, 0, None);
        for (op, arg) in ops.into_iter().chain([(5, 255), (5, 255)]) {
            random_step(&mut h, &mut held, op, arg);
            for e in h.events() {
                proptest::prop_assert!(reason.is_none(), "{:?} after Closed", e);
                match e {
                    Ev::Opened => opens += 1,
                    Ev::Request(_) | Ev::Mqtt(..) => proptest::prop_assert_eq!(opens, 1),
                    Ev::Closed(r, opened) => {
                        proptest::prop_assert_eq!(opened, opens == 1);
                        reason = Some(r);
                    }
                }
            }
            proptest::prop_assert!(opens <= 1);
            proptest::prop_assert_eq!(h.conn.close_reason(), reason);
            proptest::prop_assert_eq!(h.closes(), u64::from(reason.is_some()));
            if h.conn.is_open() {
                proptest::prop_assert!(h.conn.outbound_bytes() <= 600);
            }
            if h.conn.is_closed() {
                proptest::prop_assert!(h.deadline().is_none() && h.start_send().is_none());
            }
        }
        // 10 s later every connection has timed out, drained or lingered.
        proptest::prop_assert!(h.conn.is_closed() && reason.is_some());
    }
}

#[test]
fn overflow_closes_at_once_counting_bytes_in_flight() {
    for net in NETS {
        let one = served(net, &packet(1, 1, &[7; 100])).len();
        let mut r = rules();
        r.max_outbound = 2 * one; // over the 101 response, which is sent first
        let mut h = H::open(net, r.clone());
        assert!(h.send(1, &[7; 100]));
        let in_flight = h.start_send().expect("a send");
        assert!(h.send(1, &[7; 100]), "{net:?}: just the bound");
        assert!(!h.send(1, &[7; 100]), "{net:?}: over the bound");
        assert_eq!(h.events(), closed(Overflow));
        assert!(h.is_closed_for(Overflow), "{net:?}: at once");
        h.complete_send(in_flight);
        assert!(h.start_send().is_none(), "{net:?}: nothing more is sent");
        assert_eq!(h.stats().closed_for(Overflow), 1);

        // A completed send no longer counts.
        let mut h = H::open(net, r);
        for _ in 0..5 {
            assert!(h.send(1, &[7; 100]) && h.send(1, &[7; 100]));
            assert_eq!(h.transmit().len(), 2 * one);
        }
        assert!(h.conn.is_open());
    }
}
