//! Deadlines on virtual time: idle (heartbeat), authorize, handshake, linger.

use super::tls::tls_pair;
use super::*;

#[test]
fn idle_timeout_fires_at_twice_the_heartbeat_interval_after_the_last_inbound_bytes() {
    for (net, traffic) in NETS.into_iter().flat_map(|n| [(n, false), (n, true)]) {
        let mut h = H::open(net, heartbeat_rules(1000));
        assert_eq!(h.deadline(), Some(2000));
        let mut at = 2000;
        if traffic {
            h.advance(1500);
            h.recv(&framed(net, &HEARTBEAT)[..2]); // any bytes count, even half a packet
            at = 3500;
            assert_eq!(h.deadline(), Some(at), "{net:?}");
        }
        h.advance(at - 1 - h.s.now);
        h.timeout(); // an early call is harmless
        assert!(
            h.conn.is_open() && h.events().is_empty(),
            "{net:?} at {at} - 1"
        );
        h.advance(1);
        assert_eq!(h.events(), closed(HeartbeatTimeout), "{net:?} at {at}");
        assert_eq!(h.transmit(), goodbye(net, 1008, "heartbeat_timeout"));
        assert!(h.is_closed_for(HeartbeatTimeout));
        assert_eq!(h.stats().closed_for(HeartbeatTimeout), 1);
    }
}

fn authorize_rules(ms: Millis) -> ConnRules {
    let mut r = rules();
    r.session.authorize_ms = ms;
    r
}

#[test]
fn authorize_timeout_closes_an_unbound_session_stops_on_bind_restarts_on_unbind() {
    for (net, bind) in NETS.into_iter().flat_map(|n| [(n, false), (n, true)]) {
        let mut h = H::open(net, authorize_rules(500));
        let mut at = 500;
        if bind {
            h.advance(100);
            h.conn.session.handle_bind(UserId(7));
            assert_eq!(h.deadline(), None, "{net:?}: nothing can expire");
            h.advance(10_000);
            h.conn.session.handle_unbind(h.s.now);
            at = 10_600;
            assert_eq!(h.deadline(), Some(at), "{net:?}");
        }
        h.advance(at - 1 - h.s.now);
        assert!(h.conn.is_open(), "{net:?} at {at} - 1");
        h.advance(1);
        assert_eq!(h.events(), closed(AuthorizeTimeout), "{net:?} at {at}");
        assert_eq!(h.transmit(), goodbye(net, 1008, "authorize_timeout"));
        assert!(h.is_closed_for(AuthorizeTimeout));
    }
}

#[test]
fn handshake_deadline_closes_without_opened() {
    for net in [Network::Ws, Network::Tls, Network::Wss] {
        let (tls, mut client) = tls_pair();
        let tls = (net != Network::Ws).then_some(tls);
        let mut h = H::accept(net, rules(), tls);
        assert_eq!(h.deadline(), Some(HANDSHAKE_MS));
        h.advance(1000);
        // Part of the handshake (traffic does not extend it): wss gets
        // through TLS but sends no upgrade request.
        match net {
            Network::Ws => h.recv(&upgrade_request("/").as_bytes()[..40]),
            Network::Tls => h.feed_from(&mut client, 4096), // the ClientHello
            _ => assert_eq!(h.tls_round_trips(&mut client, 4096), b""),
        }
        h.advance(HANDSHAKE_MS - 1000 - 1);
        assert!(h.is_handshaking() && h.events().is_empty(), "{net:?}");
        h.advance(1);
        assert_eq!(h.events(), [Ev::Closed(HandshakeTimeout, false)], "{net:?}");
        assert!(h.is_closed_for(HandshakeTimeout));
        assert_eq!(h.transmit(), b"", "{net:?}: nothing more is sent");
        h.recv(upgrade_request("/").as_bytes()); // too late: ignored
        assert!(h.events().is_empty());
        assert_eq!(h.transmit(), b"");
        assert_eq!((h.closes(), h.stats().ws_upgrades), (1, 0));
    }
}

#[test]
fn linger_closes_a_stuck_drain_at_linger_ms_not_before() {
    for net in NETS {
        let mut h = H::open(net, heartbeat_rules(1000));
        h.advance(100);
        assert!(h.send(1, b"one"));
        h.close(Kicked, Close::AfterFlush);
        let stuck = h.start_send().expect("a send that never completes");
        assert_eq!(h.deadline(), Some(100 + LINGER_MS));
        h.advance(LINGER_MS - 1);
        assert!(h.is_draining(), "{net:?}: no idle timeout while draining");
        h.advance(1);
        assert!(h.is_closed_for(Kicked), "{net:?} at {}", h.s.now);
        assert_eq!(h.events(), closed(Kicked), "one Closed event");
        h.complete_send(stuck); // completes late: harmless
        assert!(h.start_send().is_none());
    }
}
