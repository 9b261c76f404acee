//! MQTT on a connection, on virtual time: CONNECT first and in time, the
//! acks of each QoS, requests answered exactly once, mqant's errors,
//! keep-alive.

use bytes::BytesMut;

use super::*;
use crate::codec::mqtt::{self as wire, Outbound};
use crate::link::proto::ResultFormat;

fn connect_packet(client_id: &str, keep_alive: u16, level: u8) -> Vec<u8> {
    let c = wire::Connect {
        level,
        client_id: client_id.into(),
        clean_session: true,
        keep_alive,
        username: Some("alice".into()),
        password: Some(Bytes::from_static(b"secret")),
        will: None,
    };
    let mut b = BytesMut::new();
    wire::encode_connect(&c, &mut b).unwrap();
    b.to_vec()
}

fn publish(topic: &str, qos: u8, id: u16, payload: &[u8]) -> Vec<u8> {
    let p = wire::Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.into(),
        packet_id: (qos > 0).then_some(id),
        payload: Bytes::copy_from_slice(payload),
    };
    let mut b = BytesMut::new();
    wire::encode_client_publish(&p, &mut b).unwrap();
    b.to_vec()
}

/// Everything the connection sent, decoded.
fn sent(h: &mut H) -> Vec<Outbound> {
    let mut buf = BytesMut::from(&h.transmit()[..]);
    let mut out = Vec::new();
    while let Some(p) = wire::decode_server(&mut buf, 1 << 20).unwrap() {
        out.push(p);
    }
    assert!(buf.is_empty());
    out
}

/// The (topic, JSON) of a PUBLISH.
fn published(p: &Outbound) -> (String, serde_json::Value) {
    match p {
        Outbound::Publish(p) => (
            p.topic.to_string(),
            serde_json::from_slice(&p.payload).unwrap(),
        ),
        other => panic!("expected a PUBLISH, got {other:?}"),
    }
}

/// A connected MQTT client (CONNACK read, Opened drained).
fn connected() -> H {
    let mut h = H::accept(Network::Mqtt, rules(), None);
    assert!(h.is_handshaking());
    h.recv(&connect_packet("c1", 0, 4));
    assert_eq!(
        sent(&mut h),
        [Outbound::ConnAck {
            session_present: false,
            return_code: 0
        }]
    );
    assert_eq!(h.events(), [Ev::Opened]);
    h
}

#[test]
fn connect_opens_with_connack_and_keeps_who_the_client_is() {
    let mut h = H::accept(Network::Mqtt, rules(), None);
    // CONNACK 20 02 00 00 exactly.
    h.recv(&connect_packet("", 0, 3));
    assert_eq!(h.transmit(), [0x20, 0x02, 0x00, 0x00]);
    assert_eq!(h.events(), [Ev::Opened]);
    let m = h.conn.mqtt().unwrap();
    assert!(
        m.client_id.starts_with("ringgate-"),
        "assigned: {}",
        m.client_id
    );
    assert_eq!(
        (m.username.as_str(), &m.password[..]),
        ("alice", &b"secret"[..])
    );
    assert_eq!(m.trace().len(), 16);
}

#[test]
fn anything_before_connect_or_no_connect_in_time_closes() {
    let mut h = H::accept(Network::Mqtt, rules(), None);
    h.recv(&publish("Echo/HD_Echo/1", 0, 0, b"x"));
    assert_eq!(h.events(), [Ev::Closed(ProtocolError, false)]);
    assert!(h.transmit().is_empty(), "nothing is answered");

    let mut h = H::accept(Network::Mqtt, rules(), None);
    h.advance(HANDSHAKE_MS - 1);
    assert!(h.is_handshaking());
    h.advance(1);
    assert_eq!(h.events(), [Ev::Closed(HandshakeTimeout, false)]);

    let mut h = connected();
    h.recv(&connect_packet("c1", 0, 4));
    assert_eq!(h.events(), closed(ProtocolError), "a second CONNECT");
}

#[test]
fn mqtt_5_is_told_unacceptable_protocol_version() {
    let mut h = H::accept(Network::Mqtt, rules(), None);
    // CONNECT, "MQTT", level 5 (the rest is not looked at).
    h.recv(&[
        0x10, 0x0a, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60, 0, 0,
    ]);
    assert_eq!(h.transmit(), [0x20, 0x02, 0x00, 0x01]);
    assert_eq!(h.events(), [Ev::Closed(ProtocolError, false)]);
}

#[test]
fn a_request_is_answered_once_on_its_topic_in_mqants_wrapper() {
    let mut h = connected();
    h.recv(&publish("Echo/HD_Echo/7", 0, 0, br#"{"a":1}"#));
    let ev = h.events();
    let [Ev::Mqtt(token, topic, payload)] = &ev[..] else {
        panic!("{ev:?}")
    };
    assert_eq!(
        (topic.as_str(), &payload[..]),
        ("Echo/HD_Echo/7", &br#"{"a":1}"#[..])
    );
    assert_ne!(*token, 0, "a request has a token");
    let token = *token;
    let mut cx = h.s.cx();
    assert!(h
        .conn
        .mqtt_reply(token, "", br#"{"a":1}"#, ResultFormat::ResultAuto, &mut cx));
    assert!(
        !h.conn.mqtt_reply(
            token,
            "deadline exceeded",
            b"",
            ResultFormat::ResultRaw,
            &mut cx
        ),
        "answered once"
    );
    let out = sent(&mut h);
    assert_eq!(out.len(), 1);
    let (topic, v) = published(&out[0]);
    assert_eq!(topic, "Echo/HD_Echo/7");
    assert_eq!(
        (v["Error"].as_str(), &v["Result"]),
        (Some(""), &serde_json::json!({"a": 1}))
    );
    assert_eq!(v["Trace"].as_str().unwrap(), h.conn.mqtt().unwrap().trace());
    // A notification has token 0 and gets nothing back.
    h.recv(&publish("Echo/HD_Log", 0, 0, b"x"));
    assert_eq!(
        h.events(),
        [Ev::Mqtt(0, "Echo/HD_Log".into(), Bytes::from_static(b"x"))]
    );
    assert!(sent(&mut h).is_empty());
}

#[test]
fn qos_1_is_acked_and_qos_2_is_delivered_once_until_released() {
    let mut h = connected();
    h.recv(&publish("Echo/HD_Log", 1, 5, b"one"));
    assert_eq!(sent(&mut h), [Outbound::PubAck(5)]);
    assert_eq!(h.events().len(), 1);
    h.recv(&publish("Echo/HD_Log", 2, 9, b"two"));
    h.recv(&publish("Echo/HD_Log", 2, 9, b"two")); // resent before PUBREL
    assert_eq!(sent(&mut h), [Outbound::PubRec(9), Outbound::PubRec(9)]);
    assert_eq!(h.events().len(), 1, "delivered once");
    h.recv(&[0x62, 0x02, 0x00, 0x09]); // PUBREL 9
    assert_eq!(sent(&mut h), [Outbound::PubComp(9)]);
    h.recv(&publish("Echo/HD_Log", 2, 9, b"three")); // the id is free again
    assert_eq!(h.events().len(), 1);
}

#[test]
fn mqants_errors_come_back_on_the_request_topic() {
    let mut h = connected(); // max_inflight 3 in these rules
    for i in 1..=3 {
        h.recv(&publish(&format!("Echo/HD_Echo/{i}"), 0, 0, b"x"));
    }
    assert_eq!(h.events().len(), 3);
    h.recv(&publish("Echo/HD_Echo/4", 0, 0, b"x"));
    h.recv(&publish("Echo/HD_Echo/5", 0, 0, b"{not json}"));
    h.recv(&publish("Echo", 0, 0, b"x"));
    h.recv(&publish("Echo/HD_Log", 0, 0, b"{not json}")); // a notification: dropped
    assert!(h.events().is_empty());
    let got: Vec<_> = sent(&mut h).iter().map(published).collect();
    let errors: Vec<_> = got
        .iter()
        .map(|(t, v)| (t.as_str(), v["Error"].as_str().unwrap()))
        .collect();
    assert_eq!(
        errors,
        [
            ("Echo/HD_Echo/4", "the work queue is full!"),
            ("Echo/HD_Echo/5", "The JSON format is incorrect"),
            ("Echo", crate::mqtt::errors::BAD_TOPIC),
        ]
    );
    assert!(got.iter().all(|(_, v)| v["Result"].is_null()));
    assert_eq!(h.stats().mqtt_errors, 3);
}

#[test]
fn subscribe_unsubscribe_ping_and_disconnect() {
    let mut h = connected();
    let mut b = BytesMut::new();
    wire::encode_subscribe(3, &[("a/#", 1), ("b", 2)], &mut b).unwrap();
    wire::encode_unsubscribe(4, &["a/#"], &mut b).unwrap();
    wire::encode_pingreq(&mut b);
    h.recv(&b);
    assert_eq!(
        sent(&mut h),
        [
            Outbound::SubAck {
                packet_id: 3,
                granted: vec![0, 0]
            },
            Outbound::UnsubAck(4),
            Outbound::PingResp
        ]
    );
    h.recv(&[0xe0, 0x00]); // DISCONNECT
    assert_eq!(h.events(), closed(ClientClosed));
}

#[test]
fn keep_alive_closes_after_one_and_a_half_times_it() {
    let mut h = H::accept(Network::Mqtt, rules(), None);
    h.recv(&connect_packet("c1", 10, 4));
    h.events();
    h.advance(14_999);
    assert!(h.conn.is_open());
    h.recv(&[0xc0, 0x00]); // PINGREQ at 14.999 s: alive again
    h.advance(14_999);
    assert!(h.conn.is_open());
    h.advance(1);
    assert_eq!(h.events(), closed(HeartbeatTimeout));
}

#[test]
fn broken_packets_close_only_with_a_counted_reason() {
    for bad in [
        &[0x30, 0xff, 0xff, 0xff, 0xff, 0x01][..], // 5-byte remaining length
        &[0x36, 0x03, 0x00, 0x01, b'a'][..],       // QoS 3
        &[0x30, 0x05, 0x00, 0x03, b'a', b'/', b'#'][..], // wildcard in a PUBLISH topic
        &[0x30, 0xff, 0xff, 0x07][..],             // over max_packet_bytes
    ] {
        let mut h = connected();
        h.recv(bad);
        assert_eq!(h.events(), closed(ProtocolError), "{bad:02x?}");
        assert_eq!(h.stats().mqtt_errors, 1);
    }
}

/// An MQTT client upgraded on `/mqtt` (101 read, nothing else).
fn over_websocket() -> H {
    let mut h = H::accept(Network::Ws, rules(), None);
    h.recv(upgrade_request("/mqtt").as_bytes());
    assert!(h.transmit().starts_with(b"HTTP/1.1 101 "));
    assert!(
        h.events().is_empty(),
        "it opens on CONNECT, not on the upgrade"
    );
    assert!(h.is_handshaking());
    h
}

/// Unwraps the gate's binary frames (unmasked, 7-bit lengths).
fn unframe(mut bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        assert_eq!(bytes[0], BIN, "{bytes:02x?}");
        let n = usize::from(bytes[1]);
        out.extend_from_slice(&bytes[2..2 + n]);
        bytes = &bytes[2 + n..];
    }
    out
}

#[test]
fn mqtt_over_websocket_is_a_byte_stream_in_binary_messages() {
    let mut h = over_websocket();
    // CONNECT and a request in ONE message, the request's tail in the next.
    let connect = connect_packet("ws1", 0, 4);
    let req = publish("Echo/HD_Echo/1", 0, 0, b"hello");
    let first = [&connect[..], &req[..5]].concat();
    h.recv(&client_frame(BIN, &first));
    assert_eq!(h.events(), [Ev::Opened]);
    assert_eq!(h.conn.network(), Network::MqttWs);
    assert_eq!(unframe(&h.transmit()), [0x20, 0x02, 0x00, 0x00]);
    h.recv(&client_frame(BIN, &req[5..]));
    let ev = h.events();
    let [Ev::Mqtt(token, topic, _)] = &ev[..] else {
        panic!("{ev:?}")
    };
    assert_eq!(topic, "Echo/HD_Echo/1");
    let mut cx = h.s.cx();
    assert!(h
        .conn
        .mqtt_reply(*token, "", b"\"ok\"", ResultFormat::ResultJson, &mut cx));
    let mut out = BytesMut::from(&unframe(&h.transmit())[..]);
    let reply = wire::decode_server(&mut out, 1 << 20).unwrap().unwrap();
    assert_eq!(published(&reply).1["Result"], "ok");
    // A ping frame is answered with a pong; a close frame is echoed.
    h.recv(&client_frame(PING, b"p"));
    assert_eq!(h.transmit(), [0x8a, 0x01, b'p']);
    h.recv(&close_frame_masked(1000));
    assert_eq!(h.events(), closed(ClientClosed));
}

fn close_frame_masked(code: u16) -> Vec<u8> {
    client_frame(0x88, &code.to_be_bytes())
}

#[test]
fn a_kicked_mqtt_over_websocket_client_gets_a_close_frame() {
    let mut h = over_websocket();
    h.recv(&client_frame(BIN, &connect_packet("ws2", 0, 4)));
    h.events();
    h.transmit();
    h.close(Shutdown, Close::Graceful);
    assert_eq!(h.transmit(), close_frame(1001, "shutdown"));
}

#[test]
fn the_gate_never_sends_mqtt_clients_due_heartbeats() {
    let mut h = connected();
    assert!(!h.conn.send_heartbeat(&mut h.s.cx()));
    assert!(h.transmit().is_empty());
}

#[test]
fn disconnect_over_websocket_is_answered_with_a_normal_close_frame() {
    let mut h = over_websocket();
    h.recv(&client_frame(BIN, &connect_packet("ws3", 0, 4)));
    h.events();
    h.transmit();
    h.recv(&client_frame(BIN, &[0xe0, 0x00])); // DISCONNECT
    assert_eq!(h.events(), closed(ClientClosed));
    assert_eq!(h.transmit(), [0x88, 0x02, 0x03, 0xe8], "close 1000");
}
