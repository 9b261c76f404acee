//! PUBLISH from clients: every QoS, the limits, and every way it can be wrong.

use bytes::Bytes;

use super::*;

fn publish(
    qos: u8,
    topic: &'static str,
    packet_id: Option<u16>,
    payload: &'static [u8],
) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: Topic::from_static(topic),
        packet_id,
        payload: Bytes::from_static(payload),
    }
}

#[test]
fn qos_0_request() {
    #[rustfmt::skip]
    let bytes = cat(&[
        &[0x30, 0x14],                       // PUBLISH, qos 0; remaining length 20
        &[0x00, 0x10], b"Login/HD_Login/1",  // topic
                                             // no packet id at qos 0
        b"{}",                               // payload
    ]);
    check_inbound(
        Inbound::Publish(publish(0, "Login/HD_Login/1", None, b"{}")),
        &bytes,
    );
}

#[test]
fn qos_1_request() {
    #[rustfmt::skip]
    let bytes = cat(&[
        &[0x32, 0x16],                       // PUBLISH, qos 1; remaining length 22
        &[0x00, 0x10], b"Login/HD_Login/2",  // topic
        &[0x00, 0x07],                       // packet id 7
        b"{}",                               // payload
    ]);
    check_inbound(
        Inbound::Publish(publish(1, "Login/HD_Login/2", Some(7), b"{}")),
        &bytes,
    );
}

#[test]
fn qos_2_dup_retain_empty_payload() {
    #[rustfmt::skip]
    let bytes = [
        0x3d,                                // PUBLISH: dup, qos 2, retain
        0x05,                                // remaining length 5
        0x00, 0x01, b't',                    // topic "t"
        0xff, 0xff,                          // packet id 65535
                                             // empty payload
    ];
    let p = Publish {
        dup: true,
        retain: true,
        ..publish(2, "t", Some(0xffff), b"")
    };
    check_inbound(Inbound::Publish(p), &bytes);
}

#[test]
fn topic_and_payload_are_slices_of_the_read_buffer() {
    let bytes = cat(&[&[0x30, 0x08, 0x00, 0x03], b"a/b", b"xyz"]);
    let mut buf = BytesMut::from(&bytes[..]);
    let range = buf.as_ptr_range();
    let Some(Inbound::Publish(p)) = decode(&mut buf, MAX).unwrap() else {
        panic!("not a PUBLISH");
    };
    assert_eq!(p.topic, "a/b");
    assert_eq!(p.topic.as_str(), "a/b");
    assert!(range.contains(&p.topic.as_bytes().as_ptr()));
    assert!(range.contains(&p.payload.as_ptr()));
}

#[test]
fn qos_3_is_refused_on_the_first_byte() {
    #[rustfmt::skip]
    let bytes = [
        0x36,                                // PUBLISH, qos 3
        0x05, 0x00, 0x01, b't', 0x00, 0x01,  // (never read)
    ];
    assert_eq!(first_error(&bytes), (1, MqttError::BadQos(3)));
}

#[test]
fn five_byte_remaining_length() {
    #[rustfmt::skip]
    let bytes = [
        0x30,                                // PUBLISH, qos 0
        0xff, 0xff, 0xff, 0xff, 0x01,        // varint: a 5th byte
    ];
    assert_eq!(first_error(&bytes), (5, MqttError::MalformedLength));
}

#[test]
fn remaining_length_over_the_limit_is_refused_before_the_body() {
    #[rustfmt::skip]
    let bytes = [
        0x30,                                // PUBLISH, qos 0
        0x80, 0x80, 0x04,                    // remaining length 65536
    ];
    assert_eq!(
        first_error(&bytes),
        (
            4,
            MqttError::TooLarge {
                remaining: 65_536,
                max: MAX
            }
        )
    );
    // A small limit refuses a small packet.
    let small = [0x30, 0x06, 0x00, 0x01, b't', b'a', b'b', b'c'];
    let (at, e) = first_error_with(&small, 5, |b, m| decode(b, m).map(|p| p.is_some()));
    assert_eq!(
        (at, e),
        (
            2,
            MqttError::TooLarge {
                remaining: 6,
                max: 5
            }
        )
    );
}

#[test]
fn remaining_length_at_the_limit_is_accepted() {
    let payload = vec![0x5a; MAX - 5];
    let mut out = BytesMut::new();
    encode_publish("a/b", &payload, &mut out).unwrap();
    #[rustfmt::skip]
    assert_eq!(&out[..6], &[
        0x30,                                // PUBLISH, qos 0
        0xff, 0xff, 0x03,                    // remaining length 65535
        0x00, 0x03,                          // topic length 3
    ]);
    let p = decode_exact(&out);
    assert_eq!(
        p,
        Inbound::Publish(Publish {
            payload: Bytes::from(payload),
            ..publish(0, "a/b", None, b"")
        })
    );
}

/// Varint widths at their edges: 1 to 4 bytes, low 7 bits first.
#[test]
fn remaining_length_varint_edges() {
    #[rustfmt::skip]
    let cases: [(usize, &[u8]); 6] = [
        (127, &[0x7f]),
        (128, &[0x80, 0x01]),
        (16_383, &[0xff, 0x7f]),
        (16_384, &[0x80, 0x80, 0x01]),
        (2_097_151, &[0xff, 0xff, 0x7f]),
        (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
    ];
    for (remaining, varint) in cases {
        let payload = vec![0; remaining - 3];
        let mut out = BytesMut::new();
        encode_publish("t", &payload, &mut out).unwrap();
        assert_eq!(&out[1..1 + varint.len()], varint, "remaining {remaining}");
        assert_eq!(out.len(), publish_len(1, payload.len()));
        let mut buf = out.clone();
        let p = decode(&mut buf, MAX_REMAINING).unwrap().unwrap();
        assert!(matches!(p, Inbound::Publish(p) if p.payload.len() == remaining - 3));
        assert!(buf.is_empty());
    }
}

#[test]
fn bad_topics() {
    #[rustfmt::skip]
    let empty = [
        0x30, 0x04,                          // PUBLISH, qos 0; remaining length 4
        0x00, 0x00,                          // topic ""
        b'h', b'i',                          // payload
    ];
    assert_eq!(decode_err(&empty), MqttError::BadTopic("empty topic name"));
    for wildcard in [&b"+"[..], b"#", b"a/+/b", b"a/#"] {
        let bytes = cat(&[
            &[0x30, 2 + wildcard.len() as u8, 0x00, wildcard.len() as u8],
            wildcard,
        ]);
        assert_eq!(
            decode_err(&bytes),
            MqttError::BadTopic("wildcard in a topic name")
        );
    }
    #[rustfmt::skip]
    let not_utf8 = [
        0x30, 0x04,                          // PUBLISH, qos 0; remaining length 4
        0x00, 0x02, 0xe2, 0x82,              // topic: a cut 3-byte sequence
    ];
    assert_eq!(decode_err(&not_utf8), MqttError::BadString("not UTF-8"));
    #[rustfmt::skip]
    let nul = [
        0x30, 0x04,                          // PUBLISH, qos 0; remaining length 4
        0x00, 0x02, b'a', 0x00,              // topic "a\0"
    ];
    assert_eq!(decode_err(&nul), MqttError::BadString("contains U+0000"));
}

#[test]
fn packet_id_zero_at_qos_1_and_2() {
    for first in [0x32, 0x34] {
        #[rustfmt::skip]
        let bytes = [
            first, 0x05,                     // PUBLISH qos 1 or 2; remaining length 5
            0x00, 0x01, b't',                // topic "t"
            0x00, 0x00,                      // packet id 0
        ];
        assert_eq!(decode_err(&bytes), MqttError::ZeroPacketId);
    }
}

#[test]
fn body_shorter_than_its_fields() {
    #[rustfmt::skip]
    let topic_past_the_end = [
        0x30, 0x03,                          // PUBLISH, qos 0; remaining length 3
        0x00, 0x05, b'a',                    // topic claims 5 bytes, 1 is left
    ];
    assert_eq!(
        decode_err(&topic_past_the_end),
        MqttError::Malformed("truncated topic name")
    );
    #[rustfmt::skip]
    let no_packet_id = [
        0x32, 0x04,                          // PUBLISH, qos 1; remaining length 4
        0x00, 0x01, b't',                    // topic "t"
        0x00,                                // half a packet id
    ];
    assert_eq!(
        decode_err(&no_packet_id),
        MqttError::Malformed("truncated packet id")
    );
    #[rustfmt::skip]
    let empty_body = [0x30, 0x00]; // PUBLISH, remaining length 0
    assert_eq!(
        decode_err(&empty_body),
        MqttError::Malformed("truncated topic name")
    );
}

#[test]
fn partial_input_reserves_the_rest_of_the_packet() {
    let mut buf = BytesMut::from(&[0x30, 0x80, 0x02][..]); // remaining length 256
    assert_eq!(decode(&mut buf, MAX), Ok(None));
    assert_eq!(buf.len(), 3);
    assert!(buf.capacity() >= 3 + 256);
}
