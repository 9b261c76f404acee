//! TLS and wss: a rustls client in memory against the connection's TlsConn.

use super::decode::assert_holds_no_buffer;
use super::*;

// TLS and wss: a rustls client in memory against the connection's TlsConn.

/// A server TLS state for a fresh self-signed `localhost` certificate, and
/// a client that trusts it.
pub(super) fn tls_pair() -> (Box<TlsConn>, ClientConnection) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = ck.cert.der().clone();
    let key = PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], PrivateKeyDer::Pkcs8(key))
        .unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let client = ClientConnection::new(Arc::new(client), name).unwrap();
    (Box::new(TlsConn::new(Arc::new(server)).unwrap()), client)
}

impl H {
    /// Client → gate: everything the client has to send, in `piece`-byte reads.
    pub(super) fn feed_from(&mut self, client: &mut ClientConnection, piece: usize) {
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
        wire.chunks(piece).for_each(|c| self.recv(c));
    }

    /// Gate → client: every send, completed at once; the plaintext the client read.
    fn deliver_to(&mut self, client: &mut ClientConnection) -> Vec<u8> {
        let (wire, mut plain) = (self.transmit(), Vec::new());
        let mut rd = &wire[..];
        while !rd.is_empty() {
            client.read_tls(&mut rd).unwrap();
            let state = client.process_new_packets().unwrap();
            let mut got = vec![0; state.plaintext_bytes_to_read()];
            std::io::Read::read_exact(&mut client.reader(), &mut got).unwrap();
            plain.extend(got);
        }
        plain
    }

    /// Three round trips: the handshake and whatever was written before it.
    pub(super) fn tls_round_trips(
        &mut self,
        client: &mut ClientConnection,
        piece: usize,
    ) -> Vec<u8> {
        let mut plain = Vec::new();
        for _ in 0..3 {
            self.feed_from(client, piece);
            plain.extend(self.deliver_to(client));
        }
        plain
    }
}

#[test]
fn tls_opens_when_its_handshake_completes_and_carries_packets() {
    for piece in [1, 7, 4096] {
        let (tls, mut client) = tls_pair();
        let mut h = H::accept(Network::Tls, rules(), Some(tls));
        // Written before the handshake: rustls sends it with its Finished.
        client.writer().write_all(&REQUEST).unwrap();
        h.feed_from(&mut client, piece);
        assert!(h.is_handshaking() && h.events().is_empty());
        assert_eq!(h.tls_round_trips(&mut client, piece), b"");
        let want = [Ev::Opened, req(7, 1, b"hi")];
        assert_eq!(h.events(), want, "piece {piece}");
        assert_eq!(h.stats().tls_handshakes, 1);
        client.writer().write_all(&HEARTBEAT).unwrap();
        h.feed_from(&mut client, piece);
        assert_eq!(h.deliver_to(&mut client), HEARTBEAT, "answered");
        assert!(h.send(9, b"push"));
        assert_eq!(h.deliver_to(&mut client), packet(9, 1, b"push"));
        assert_holds_no_buffer(h, &format!("tls piece {piece}"));
    }
}

#[test]
fn wss_upgrades_after_tls_and_rebind_sends_1008_rebind() {
    let (tls, mut client) = tls_pair();
    let mut h = H::accept(Network::Wss, rules(), Some(tls));
    let mut w = client.writer();
    w.write_all(upgrade_request("/").as_bytes()).unwrap();
    w.write_all(&client_frame(BIN, &REQUEST)).unwrap();
    let plain = h.tls_round_trips(&mut client, 5);
    assert!(plain.starts_with(b"HTTP/1.1 101 "));
    assert_eq!(h.events(), [Ev::Opened, req(7, 1, b"hi")]);
    assert_eq!(h.stats().ws_upgrades, 1);
    h.close(Rebind, Close::Graceful);
    assert_eq!(h.deliver_to(&mut client), close_frame(1008, "rebind"));
    assert!(h.is_closed_for(Rebind));
}

#[test]
fn tls_garbage_closes_with_protocol_error_after_the_alert() {
    let (tls, _) = tls_pair();
    let mut h = H::accept(Network::Tls, rules(), Some(tls));
    h.recv(upgrade_request("/").as_bytes()); // plain HTTP on a TLS port
    assert_eq!(h.events(), [Ev::Closed(ProtocolError, false)]);
    assert_eq!(h.stats().tls_failures, 1);
    assert!(h.is_draining());
    assert_eq!(h.transmit().first(), Some(&0x15), "a TLS alert record");
    assert!(h.is_closed_for(ProtocolError));
}

#[test]
fn tls_kick_with_flush_delivers_queued_packets_then_closes() {
    for net in [Network::Tls, Network::Wss] {
        let (tls, mut client) = tls_pair();
        let mut h = H::accept(net, rules(), Some(tls));
        if net.is_websocket() {
            client
                .writer()
                .write_all(upgrade_request("/").as_bytes())
                .unwrap();
        }
        h.tls_round_trips(&mut client, 4096);
        assert_eq!(h.events(), [Ev::Opened], "{net:?}");
        assert!(h.send(1, b"one") && h.send(2, b"two"));
        h.close(Kicked, Close::AfterFlush);
        let mut want = served(net, &packet(1, 1, b"one"));
        want.extend(served(net, &packet(2, 1, b"two")));
        want.extend(goodbye(net, 1008, "kicked"));
        assert_eq!(h.deliver_to(&mut client), want, "{net:?}");
        assert!(h.is_closed_for(Kicked));
        assert_eq!(h.events(), closed(Kicked));
    }
}

#[test]
fn tls_closes_end_with_close_notify_after_everything_else() {
    for (net, how) in [
        (Network::Tls, Close::Graceful),
        (Network::Tls, Close::AfterFlush),
        (Network::Wss, Close::Graceful),
    ] {
        let (tls, mut client) = tls_pair();
        let mut h = H::accept(net, rules(), Some(tls));
        if net.is_websocket() {
            client
                .writer()
                .write_all(upgrade_request("/").as_bytes())
                .unwrap();
        }
        h.tls_round_trips(&mut client, 4096);
        assert!(h.send(1, b"last"));
        h.close(Shutdown, how);
        let mut want = served(net, &packet(1, 1, b"last"));
        want.extend(goodbye(net, 1001, "shutdown"));
        assert_eq!(h.deliver_to(&mut client), want, "{net:?} {how:?}");
        let state = client.process_new_packets().unwrap();
        assert!(
            state.peer_has_closed(),
            "close_notify received: {net:?} {how:?}"
        );
        assert!(h.is_closed_for(Shutdown));
    }
    // A client that is gone gets nothing, not even the alert.
    let (tls, mut client) = tls_pair();
    let mut h = H::accept(Network::Tls, rules(), Some(tls));
    h.tls_round_trips(&mut client, 4096);
    h.peer_gone();
    assert!(h.transmit().is_empty());
}
