//! The client-side encoders refuse, leaving the buffer untouched, whatever
//! the gate's decoder would refuse.

use bytes::Bytes;

use super::*;

/// Runs `encode` on a buffer holding "kept"; returns its error after
/// checking the buffer still holds just "kept".
fn refused(encode: impl FnOnce(&mut BytesMut) -> Result<(), MqttError>) -> MqttError {
    let mut out = BytesMut::from(&b"kept"[..]);
    let e = encode(&mut out).expect_err("refused");
    assert_eq!(&out[..], b"kept");
    e
}

fn connect() -> Connect {
    Connect {
        level: 4,
        client_id: "c".into(),
        clean_session: true,
        keep_alive: 30,
        username: None,
        password: None,
        will: None,
    }
}

fn will(topic: &str, qos: u8) -> Option<Will> {
    Some(Will {
        topic: topic.into(),
        payload: Bytes::new(),
        qos,
        retain: false,
    })
}

#[test]
fn connect_refusals() {
    let long = "x".repeat(MAX_STRING + 1);
    #[rustfmt::skip]
    let cases = [
        (Connect { level: 5, ..connect() }, MqttError::UnsupportedLevel(5)),
        (Connect { client_id: long.clone(), ..connect() }, MqttError::StringTooLong(MAX_STRING + 1)),
        (Connect { client_id: "a\0".into(), ..connect() }, MqttError::BadString("contains U+0000")),
        (Connect { username: Some(long.clone()), ..connect() }, MqttError::StringTooLong(MAX_STRING + 1)),
        (
            Connect { username: Some("u".into()), password: Some(Bytes::from(long.clone())), ..connect() },
            MqttError::StringTooLong(MAX_STRING + 1),
        ),
        (Connect { will: will("a/+", 0), ..connect() }, MqttError::BadTopic("wildcard in a topic name")),
        (Connect { will: will("", 0), ..connect() }, MqttError::BadTopic("empty topic name")),
        (Connect { will: will("w", 3), ..connect() }, MqttError::BadQos(3)),
        (
            Connect { password: Some(Bytes::from_static(b"p")), ..connect() },
            MqttError::BadFlags("password without user name"),
        ),
    ];
    for (c, e) in cases {
        assert_eq!(refused(|o| encode_connect(&c, o)), e, "{c:?}");
    }
}

#[test]
fn publish_refusals() {
    let p = Publish {
        dup: false,
        qos: 1,
        retain: false,
        topic: Topic::from_static("t"),
        packet_id: Some(1),
        payload: Bytes::new(),
    };
    #[rustfmt::skip]
    let cases = [
        (Publish { qos: 3, ..p.clone() }, MqttError::BadQos(3)),
        (Publish { qos: 0, ..p.clone() }, MqttError::Malformed("packet id with qos 0")),
        (Publish { packet_id: None, ..p.clone() }, MqttError::Malformed("qos > 0 without a packet id")),
        (Publish { packet_id: Some(0), ..p.clone() }, MqttError::ZeroPacketId),
        (Publish { topic: "a/#".into(), ..p.clone() }, MqttError::BadTopic("wildcard in a topic name")),
        (Publish { topic: "".into(), ..p.clone() }, MqttError::BadTopic("empty topic name")),
    ];
    for (p, e) in cases {
        assert_eq!(refused(|o| encode_client_publish(&p, o)), e, "{p:?}");
    }
}

#[test]
fn subscribe_and_unsubscribe_refusals() {
    let none: [(&str, u8); 0] = [];
    assert_eq!(
        refused(|o| encode_subscribe(0, &[("a", 0)], o)),
        MqttError::ZeroPacketId
    );
    assert_eq!(
        refused(|o| encode_subscribe(1, &none, o)),
        MqttError::Malformed("subscribe without filters")
    );
    assert_eq!(
        refused(|o| encode_subscribe(1, &[("a", 3)], o)),
        MqttError::BadQos(3)
    );
    assert_eq!(
        refused(|o| encode_subscribe(1, &[("a", 0), ("a#", 0)], o)),
        MqttError::BadTopic("# not the whole last level")
    );
    assert_eq!(
        refused(|o| encode_unsubscribe(0, &["a"], o)),
        MqttError::ZeroPacketId
    );
    assert_eq!(
        refused(|o| encode_unsubscribe::<&str>(1, &[], o)),
        MqttError::Malformed("unsubscribe without filters")
    );
    assert_eq!(
        refused(|o| encode_unsubscribe(1, &["a+"], o)),
        MqttError::BadTopic("+ not a whole level")
    );
}

#[test]
fn pingreq_and_disconnect_bytes() {
    let mut out = BytesMut::new();
    encode_pingreq(&mut out);
    encode_disconnect(&mut out);
    #[rustfmt::skip]
    assert_eq!(&out[..], &[
        0xc0, 0x00, // PINGREQ
        0xe0, 0x00, // DISCONNECT
    ]);
}

#[test]
fn topic_reads_as_a_str() {
    let t = Topic::from(String::from("a/b"));
    assert_eq!(&*t, "a/b");
    assert_eq!(t.len(), 3); // through Deref<Target = str>
    assert_eq!(format!("{t} {t:?}"), "a/b \"a/b\"");
    assert_eq!(Topic::from_utf8(Bytes::from_static(b"a/b")).unwrap(), t);
    assert!(Topic::from_utf8(Bytes::from_static(&[0xff])).is_err());
    assert_eq!(t.clone().into_bytes(), "a/b");
}
