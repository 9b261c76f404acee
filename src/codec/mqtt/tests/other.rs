//! The other client packets: SUBSCRIBE, UNSUBSCRIBE, the publish acks,
//! PINGREQ, DISCONNECT; types a client must not send; streams.

use super::*;

fn subscribe(packet_id: u16, filters: &[(&str, u8)]) -> Inbound {
    Inbound::Subscribe {
        packet_id,
        filters: filters.iter().map(|&(f, q)| (f.to_owned(), q)).collect(),
    }
}

#[test]
fn subscribe_one_filter() {
    #[rustfmt::skip]
    let bytes = cat(&[
        &[0x82, 0x09],                       // SUBSCRIBE, flags 0b0010; remaining length 9
        &[0x00, 0x01],                       // packet id 1
        &[0x00, 0x04], b"chat", &[0x02],     // filter "chat", qos 2
    ]);
    assert_eq!(bytes, hex("82 09 00 01 00 04 63 68 61 74 02"));
    check_inbound(subscribe(1, &[("chat", 2)]), &bytes);
}

#[test]
fn subscribe_wildcard_filters() {
    #[rustfmt::skip]
    let bytes = cat(&[
        &[0x82, 0x14],                       // SUBSCRIBE; remaining length 20
        &[0x12, 0x34],                       // packet id 0x1234
        &[0x00, 0x05], b"a/+/b", &[0x00],    // filter "a/+/b", qos 0
        &[0x00, 0x01], b"#", &[0x01],        // filter "#", qos 1
        &[0x00, 0x03], b"+/#", &[0x02],      // filter "+/#", qos 2
    ]);
    check_inbound(
        subscribe(0x1234, &[("a/+/b", 0), ("#", 1), ("+/#", 2)]),
        &bytes,
    );
}

#[test]
fn subscribe_errors() {
    #[rustfmt::skip]
    let no_filters = [
        0x82, 0x02,                          // SUBSCRIBE; remaining length 2
        0x00, 0x01,                          // packet id 1, then nothing
    ];
    assert_eq!(
        decode_err(&no_filters),
        MqttError::Malformed("subscribe without filters")
    );
    #[rustfmt::skip]
    let qos_3 = [
        0x82, 0x06,                          // SUBSCRIBE; remaining length 6
        0x00, 0x01,                          // packet id 1
        0x00, 0x01, b'a', 0x03,              // filter "a", qos 3
    ];
    assert_eq!(decode_err(&qos_3), MqttError::BadQos(3));
    #[rustfmt::skip]
    let reserved_qos_bits = [
        0x82, 0x06,                          // SUBSCRIBE; remaining length 6
        0x00, 0x01,                          // packet id 1
        0x00, 0x01, b'a', 0x81,              // filter "a", qos byte with reserved bits
    ];
    assert_eq!(decode_err(&reserved_qos_bits), MqttError::BadQos(0x81));
    #[rustfmt::skip]
    let id_zero = [
        0x82, 0x06,                          // SUBSCRIBE; remaining length 6
        0x00, 0x00,                          // packet id 0
        0x00, 0x01, b'a', 0x00,              // filter "a", qos 0
    ];
    assert_eq!(decode_err(&id_zero), MqttError::ZeroPacketId);
    #[rustfmt::skip]
    let no_qos = [
        0x82, 0x05,                          // SUBSCRIBE; remaining length 5
        0x00, 0x01,                          // packet id 1
        0x00, 0x01, b'a',                    // filter "a", then no qos byte
    ];
    assert_eq!(
        decode_err(&no_qos),
        MqttError::Malformed("truncated requested qos")
    );
    // 0x80: no flags; 0x8a: 3.1's dup bit on a resent SUBSCRIBE.
    for first in [0x80, 0x83, 0x8a] {
        assert_eq!(
            first_error(&[first, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00]),
            (
                1,
                MqttError::BadFlags("fixed-header flags wrong for the type")
            )
        );
    }
}

#[test]
fn bad_filters() {
    for (filter, reason) in [
        ("", "empty topic filter"),
        ("a/b#", "# not the whole last level"),
        ("#/a", "# not the whole last level"),
        ("a/#/", "# not the whole last level"),
        ("a+", "+ not a whole level"),
        ("a/+b/c", "+ not a whole level"),
    ] {
        let f = filter.as_bytes();
        #[rustfmt::skip]
        let bytes = cat(&[
            &[0x82, 5 + f.len() as u8],      // SUBSCRIBE
            &[0x00, 0x01],                   // packet id 1
            &[0x00, f.len() as u8], f, &[0], // the filter, qos 0
        ]);
        assert_eq!(
            decode_err(&bytes),
            MqttError::BadTopic(reason),
            "{filter:?}"
        );
        #[rustfmt::skip]
        let bytes = cat(&[
            &[0xa2, 4 + f.len() as u8],      // UNSUBSCRIBE
            &[0x00, 0x01],                   // packet id 1
            &[0x00, f.len() as u8], f,       // the filter
        ]);
        assert_eq!(
            decode_err(&bytes),
            MqttError::BadTopic(reason),
            "{filter:?}"
        );
    }
}

#[test]
fn unsubscribe() {
    #[rustfmt::skip]
    let bytes = cat(&[
        &[0xa2, 0x08],                       // UNSUBSCRIBE, flags 0b0010; remaining length 8
        &[0x00, 0x02],                       // packet id 2
        &[0x00, 0x04], b"chat",              // filter "chat"
    ]);
    assert_eq!(bytes, hex("A2 08 00 02 00 04 63 68 61 74"));
    let packet = Inbound::Unsubscribe {
        packet_id: 2,
        filters: vec!["chat".into()],
    };
    check_inbound(packet, &bytes);
}

#[test]
fn unsubscribe_errors() {
    #[rustfmt::skip]
    let no_filters = [
        0xa2, 0x02,                          // UNSUBSCRIBE; remaining length 2
        0x00, 0x02,                          // packet id 2, then nothing
    ];
    assert_eq!(
        decode_err(&no_filters),
        MqttError::Malformed("unsubscribe without filters")
    );
    #[rustfmt::skip]
    let id_zero = [
        0xa2, 0x05,                          // UNSUBSCRIBE; remaining length 5
        0x00, 0x00,                          // packet id 0
        0x00, 0x01, b'a',                    // filter "a"
    ];
    assert_eq!(decode_err(&id_zero), MqttError::ZeroPacketId);
    assert_eq!(
        first_error(&[0xa0, 0x05, 0x00, 0x02, 0x00, 0x01, b'a']),
        (
            1,
            MqttError::BadFlags("fixed-header flags wrong for the type")
        )
    );
}

#[test]
fn publish_acks() {
    #[rustfmt::skip]
    let cases = [
        (Inbound::PubAck(7), [0x40, 0x02, 0x00, 0x07]),      // PUBACK, id 7
        (Inbound::PubRec(0x1234), [0x50, 0x02, 0x12, 0x34]), // PUBREC, id 0x1234
        (Inbound::PubRel(1), [0x62, 0x02, 0x00, 0x01]),      // PUBREL (flags 0b0010), id 1
        (Inbound::PubComp(0xffff), [0x70, 0x02, 0xff, 0xff]),// PUBCOMP, id 65535
        (Inbound::PubAck(0), [0x40, 0x02, 0x00, 0x00]),      // id 0 is not refused in acks
    ];
    for (packet, bytes) in cases {
        check_inbound(packet, &bytes);
    }
}

#[test]
fn publish_ack_errors() {
    let bad_flags = MqttError::BadFlags("fixed-header flags wrong for the type");
    // PUBREL must carry 0b0010, the others 0.
    for first in [0x60, 0x6a, 0x41, 0x52, 0x72] {
        assert_eq!(
            first_error(&[first, 0x02, 0x00, 0x01]),
            (1, bad_flags),
            "{first:#x}"
        );
    }
    let wrong_length = MqttError::Malformed("wrong remaining length for a fixed-size packet");
    for first in [0x40, 0x50, 0x62, 0x70] {
        // Refused once the length is known, without waiting for the body.
        assert_eq!(
            first_error(&[first, 0x03, 0x00, 0x01, 0x00]),
            (2, wrong_length)
        );
        assert_eq!(first_error(&[first, 0x01, 0x00]), (2, wrong_length));
        assert_eq!(first_error(&[first, 0x00]), (2, wrong_length));
    }
}

#[test]
fn pingreq_and_disconnect() {
    check_inbound(Inbound::PingReq, &[0xc0, 0x00]); // PINGREQ, remaining length 0
    check_inbound(Inbound::Disconnect, &[0xe0, 0x00]); // DISCONNECT, remaining length 0
    let wrong_length = MqttError::Malformed("wrong remaining length for a fixed-size packet");
    assert_eq!(first_error(&[0xc0, 0x01, 0x00]), (2, wrong_length));
    assert_eq!(first_error(&[0xe0, 0x02, 0x00, 0x00]), (2, wrong_length));
    let bad_flags = MqttError::BadFlags("fixed-header flags wrong for the type");
    assert_eq!(first_error(&[0xc1, 0x00]), (1, bad_flags));
    assert_eq!(first_error(&[0xe2, 0x00]), (1, bad_flags));
}

#[test]
fn packets_a_client_must_not_send() {
    // Type 0, CONNACK, SUBACK, UNSUBACK, PINGRESP, type 15: refused on the
    // first byte, whatever follows.
    for t in [0u8, 2, 9, 11, 13, 15] {
        let first = t << 4;
        assert_eq!(
            first_error(&[first, 0x02, 0x00, 0x00]),
            (1, MqttError::UnexpectedPacket(t)),
            "type {t}"
        );
    }
}

#[test]
fn back_to_back_packets_decode_in_order() {
    #[rustfmt::skip]
    let bytes = [
        0xc0, 0x00,                          // PINGREQ
        0x32, 0x06, 0x00, 0x01, b't',        // PUBLISH qos 1, topic "t",
        0x00, 0x09, b'x',                    //   id 9, payload "x"
        0x40, 0x02, 0x00, 0x09,              // PUBACK 9
        0xe0, 0x00,                          // DISCONNECT
        0x30,                                // the first byte of the next packet
    ];
    let mut buf = BytesMut::from(&bytes[..]);
    let mut got = Vec::new();
    while let Some(p) = decode(&mut buf, MAX).unwrap() {
        got.push(p);
    }
    assert_eq!(got.len(), 4);
    assert_eq!(got[0], Inbound::PingReq);
    assert!(matches!(&got[1], Inbound::Publish(p) if p.packet_id == Some(9) && p.payload == "x"));
    assert_eq!(got[2], Inbound::PubAck(9));
    assert_eq!(got[3], Inbound::Disconnect);
    assert_eq!(&buf[..], &[0x30]);
}
