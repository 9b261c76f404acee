//! The WebSocket close handshake, pings, bad messages, refused upgrades.

use super::*;

#[test]
fn websocket_client_close_is_echoed_and_drains_with_client_closed() {
    let mut h = H::open(Network::Ws, rules());
    assert!(h.send(1, b"queued"));
    // Code 1000 and a reason; a request pipelined after it is not read.
    let mut bytes = client_frame(CLOSE, &[0x03, 0xe8, b'b', b'y', b'e']);
    bytes.extend(client_frame(BIN, &REQUEST));
    h.recv(&bytes);
    assert_eq!(h.events(), closed(ClientClosed));
    assert!(h.is_draining());
    let mut want = served(Network::Ws, &packet(1, 1, b"queued"));
    want.extend([0x88, 2, 0x03, 0xe8]); // FIN + close, length 2, code 1000 echoed
    assert_eq!(h.transmit(), want);
    assert!(h.is_closed_for(ClientClosed));
    h.recv(&client_frame(BIN, &REQUEST)); // input after close is ignored
    assert!(h.events().is_empty());
    assert_eq!(h.transmit(), b"");
}

#[test]
fn websocket_ping_gets_a_pong() {
    let mut h = H::open(Network::Ws, rules());
    h.recv(&client_frame(PING, b"hi"));
    assert_eq!(h.transmit(), [0x8a, 2, b'h', b'i']); // FIN + pong, length 2, the ping's payload
    assert!(h.conn.is_open() && h.events().is_empty());
}

#[test]
fn websocket_bad_messages_close_with_their_codes() {
    let two = [REQUEST, REQUEST].concat();
    let size_0 = [0, 0, 0, 0, 0];
    let cases = [
        ("text", client_frame(TEXT, b"hello"), 1003),
        ("malformed packet", client_frame(BIN, &size_0), 1007),
        ("two packets in a message", client_frame(BIN, &two), 1007),
        (
            "over the largest packet",
            client_frame(BIN, &[0; 4 + 5005 + 1]),
            1009,
        ),
    ];
    for (what, bytes, code) in cases {
        let mut h = H::open(Network::Ws, rules());
        h.recv(&bytes);
        assert_eq!(h.events(), closed(ProtocolError), "{what}");
        assert_eq!(
            h.transmit(),
            close_frame(code, ""),
            "{what}: one close frame"
        );
        assert!(h.is_closed_for(ProtocolError), "{what}");
        let texts = h.stats().ws_text_rejected;
        assert_eq!(texts, u64::from(code == 1003), "{what}: ws_text_rejected");
    }
}

#[test]
fn refused_upgrade_sends_the_http_refusal_and_closes() {
    let mut h = H::accept(Network::Ws, rules(), None);
    h.recv(upgrade_request("/nope").as_bytes());
    assert_eq!(h.events(), [Ev::Closed(UpgradeRejected, false)]); // never opened
    assert!(h.is_draining());
    assert!(h.transmit().starts_with(b"HTTP/1.1 404 "));
    assert!(h.is_closed_for(UpgradeRejected));
    let s = h.stats();
    assert_eq!((s.ws_rejected, s.ws_upgrades, h.closes()), (1, 0, 1));
    h.recv(upgrade_request("/").as_bytes()); // input after close is ignored
    assert!(h.events().is_empty());
    assert_eq!(h.transmit(), b"");
}
