//! What the gate sends: the server encoders' exact bytes, and
//! `decode_server` reading them back (and refusing what a server must not
//! send).

use bytes::Bytes;

use super::*;

fn encoded(f: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
    let mut out = BytesMut::new();
    f(&mut out);
    out.to_vec()
}

#[test]
fn connack() {
    #[rustfmt::skip]
    let accepted = [
        0x20, 0x02, // CONNACK, remaining length 2
        0x00,       // no session present
        0x00,       // accepted
    ];
    assert_eq!(
        encoded(|o| encode_connack(false, connack::ACCEPTED, o)),
        accepted
    );
    #[rustfmt::skip]
    check_outbound(
        Outbound::ConnAck { session_present: true, return_code: 1 },
        &[
            0x20, 0x02, // CONNACK, remaining length 2
            0x01,       // session present
            0x01,       // unacceptable protocol version
        ],
    );
}

#[test]
fn qos_0_publish() {
    let bytes = encoded(|o| encode_publish("Chat/OnChat", b"{\"msg\":\"hi\"}", o).unwrap());
    #[rustfmt::skip]
    let expected = cat(&[
        &[0x30, 0x19],                   // PUBLISH, qos 0, no dup, no retain; remaining 25
        &[0x00, 0x0b], b"Chat/OnChat",   // topic
        b"{\"msg\":\"hi\"}",             // payload
    ]);
    assert_eq!(bytes, expected);
    assert_eq!(bytes.len(), publish_len(11, 12));
    let p = Publish {
        dup: false,
        qos: 0,
        retain: false,
        topic: "Chat/OnChat".into(),
        packet_id: None,
        payload: Bytes::from_static(b"{\"msg\":\"hi\"}"),
    };
    check_outbound(Outbound::Publish(p), &bytes);
}

#[test]
fn encode_publish_refuses_what_no_client_could_read() {
    let mut out = BytesMut::from(&b"kept"[..]);
    let long = "t".repeat(MAX_STRING + 1);
    assert_eq!(
        encode_publish(&long, b"", &mut out),
        Err(MqttError::StringTooLong(MAX_STRING + 1))
    );
    assert_eq!(
        encode_publish("", b"x", &mut out),
        Err(MqttError::BadTopic("empty topic name"))
    );
    assert_eq!(
        encode_publish("a/#", b"x", &mut out),
        Err(MqttError::BadTopic("wildcard in a topic name"))
    );
    assert_eq!(
        encode_publish("a\0", b"x", &mut out),
        Err(MqttError::BadString("contains U+0000"))
    );
    // One byte over the MQTT maximum. The zeroed buffer is never touched,
    // so it costs address space, not memory.
    let payload = vec![0u8; MAX_REMAINING - 4];
    assert_eq!(
        encode_publish("a/b", &payload, &mut out),
        Err(MqttError::TooLarge {
            remaining: MAX_REMAINING + 1,
            max: MAX_REMAINING
        })
    );
    assert_eq!(&out[..], b"kept");
    // A topic of exactly 65535 bytes is fine.
    let longest = "t".repeat(MAX_STRING);
    encode_publish(&longest, b"", &mut out).unwrap();
    assert_eq!(out.len(), 4 + publish_len(MAX_STRING, 0));
}

#[test]
fn acks_and_pingresp() {
    #[rustfmt::skip]
    let cases = [
        (encoded(|o| encode_puback(7, o)), [0x40, 0x02, 0x00, 0x07], Outbound::PubAck(7)),
        (encoded(|o| encode_pubrec(7, o)), [0x50, 0x02, 0x00, 0x07], Outbound::PubRec(7)),
        (encoded(|o| encode_pubrel(7, o)), [0x62, 0x02, 0x00, 0x07], Outbound::PubRel(7)),
        (encoded(|o| encode_pubcomp(7, o)), [0x70, 0x02, 0x00, 0x07], Outbound::PubComp(7)),
        (encoded(|o| encode_unsuback(2, o)), [0xb0, 0x02, 0x00, 0x02], Outbound::UnsubAck(2)),
    ];
    for (got, bytes, packet) in cases {
        assert_eq!(got, bytes);
        check_outbound(packet, &bytes);
    }
    assert_eq!(encoded(encode_pingresp), [0xd0, 0x00]); // PINGRESP
    check_outbound(Outbound::PingResp, &[0xd0, 0x00]);
}

#[test]
fn suback() {
    #[rustfmt::skip]
    let one = [
        0x90, 0x03, // SUBACK, remaining length 3
        0x00, 0x01, // packet id 1
        0x00,       // granted qos 0
    ];
    assert_eq!(encoded(|o| encode_suback(1, &[0x00], o)), one);
    #[rustfmt::skip]
    check_outbound(
        Outbound::SubAck { packet_id: 0x0102, granted: vec![0, 1, 2, SUBACK_FAILURE] },
        &[
            0x90, 0x06,             // SUBACK, remaining length 6
            0x01, 0x02,             // packet id 0x0102
            0x00, 0x01, 0x02, 0x80, // granted 0, 1, 2, failure
        ],
    );
}

#[test]
fn decode_server_errors() {
    #[rustfmt::skip]
    let connack_reserved = [
        0x20, 0x02,                 // CONNACK
        0x02,                       // acknowledge flags: a reserved bit
        0x00,                       // accepted
    ];
    assert_eq!(
        first_server_error(&connack_reserved),
        (4, MqttError::BadFlags("connack reserved bits set"))
    );
    assert_eq!(
        first_server_error(&[0x21, 0x02, 0x00, 0x00]),
        (
            1,
            MqttError::BadFlags("fixed-header flags wrong for the type")
        )
    );
    assert_eq!(
        first_server_error(&[0x20, 0x03, 0x00, 0x00, 0x00]),
        (
            2,
            MqttError::Malformed("wrong remaining length for a fixed-size packet")
        )
    );
    #[rustfmt::skip]
    let suback_code_3 = [
        0x90, 0x03,                 // SUBACK
        0x00, 0x01,                 // packet id 1
        0x03,                       // granted qos 3
    ];
    assert_eq!(
        first_server_error(&suback_code_3),
        (5, MqttError::BadQos(3))
    );
    assert_eq!(
        first_server_error(&[0x90, 0x02, 0x00, 0x01]),
        (4, MqttError::Malformed("suback without return codes"))
    );
    assert_eq!(
        first_server_error(&[0x36, 0x03, 0x00, 0x01, b't']),
        (1, MqttError::BadQos(3))
    );
    // CONNECT, SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT, types 0 and 15.
    for t in [1u8, 8, 10, 12, 14, 0, 15] {
        assert_eq!(
            first_server_error(&[t << 4, 0x00]),
            (1, MqttError::UnexpectedPacket(t)),
            "type {t}"
        );
    }
    assert_eq!(
        first_server_error(&[0xd0, 0xff, 0xff, 0xff, 0xff]),
        (5, MqttError::MalformedLength)
    );
}
