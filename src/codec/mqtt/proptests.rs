//! Property tests: round trips for arbitrary packets in both directions,
//! streams split at every byte and in random chunks, the limit, and
//! arbitrary or mutated bytes.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;

use super::*;

/// An MQTT string: any chars but U+0000, possibly empty.
fn arb_string() -> impl Strategy<Value = String> {
    "[^\u{0}]{0,8}"
}

/// A valid topic name, often with levels.
fn arb_topic() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z/]{1,12}", "[^\u{0}+#]{1,8}"]
}

/// A valid topic filter: levels that are words or `+`, maybe ending in `#`.
fn arb_filter() -> impl Strategy<Value = String> {
    let level = prop_oneof![Just("+".to_owned()), "[a-z]{0,3}", "[^\u{0}+#/]{1,3}"];
    (vec(level, 1..4), any::<bool>()).prop_map(|(levels, hash)| {
        let filter = levels.join("/");
        match (hash, filter.is_empty()) {
            (true, _) => format!("{filter}/#"),
            (false, true) => "#".to_owned(),
            (false, false) => filter,
        }
    })
}

fn arb_bytes() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..40).prop_map(Bytes::from)
}

fn arb_id() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

fn arb_publish() -> impl Strategy<Value = Publish> {
    let qos_and_id = prop_oneof![Just((0u8, None)), (1u8..=2, arb_id().prop_map(Some))];
    (
        any::<bool>(),
        qos_and_id,
        any::<bool>(),
        arb_topic(),
        arb_bytes(),
    )
        .prop_map(|(dup, (qos, packet_id), retain, topic, payload)| Publish {
            dup,
            qos,
            retain,
            topic: topic.into(),
            packet_id,
            payload,
        })
}

fn arb_will() -> impl Strategy<Value = Will> {
    (arb_topic(), arb_bytes(), 0u8..=2, any::<bool>()).prop_map(|(topic, payload, qos, retain)| {
        Will {
            topic,
            payload,
            qos,
            retain,
        }
    })
}

fn arb_connect() -> impl Strategy<Value = Connect> {
    (
        prop_oneof![Just(3u8), Just(4)],
        arb_string(),
        any::<bool>(),
        any::<u16>(),
        proptest::option::of(arb_string()),
        proptest::option::of(arb_bytes()),
        proptest::option::of(arb_will()),
    )
        .prop_map(
            |(level, client_id, clean_session, keep_alive, username, password, will)| Connect {
                level,
                client_id,
                clean_session,
                keep_alive,
                // 3.1.1 allows a password only with a user name.
                password: password.filter(|_| level == 3 || username.is_some()),
                username,
                will,
            },
        )
}

fn arb_inbound() -> impl Strategy<Value = Inbound> {
    prop_oneof![
        1 => arb_connect().prop_map(Inbound::Connect),
        4 => arb_publish().prop_map(Inbound::Publish),
        1 => any::<u16>().prop_map(Inbound::PubAck),
        1 => any::<u16>().prop_map(Inbound::PubRec),
        1 => any::<u16>().prop_map(Inbound::PubRel),
        1 => any::<u16>().prop_map(Inbound::PubComp),
        1 => (arb_id(), vec((arb_filter(), 0u8..=2), 1..4))
            .prop_map(|(packet_id, filters)| Inbound::Subscribe { packet_id, filters }),
        1 => (arb_id(), vec(arb_filter(), 1..4))
            .prop_map(|(packet_id, filters)| Inbound::Unsubscribe { packet_id, filters }),
        1 => Just(Inbound::PingReq),
        1 => Just(Inbound::Disconnect),
    ]
}

fn arb_outbound() -> impl Strategy<Value = Outbound> {
    let code = prop_oneof![0u8..=2, Just(SUBACK_FAILURE)];
    prop_oneof![
        1 => (any::<bool>(), any::<u8>()).prop_map(|(session_present, return_code)| {
            Outbound::ConnAck {
                session_present,
                return_code,
            }
        }),
        4 => arb_publish().prop_map(Outbound::Publish),
        1 => any::<u16>().prop_map(Outbound::PubAck),
        1 => any::<u16>().prop_map(Outbound::PubRec),
        1 => any::<u16>().prop_map(Outbound::PubRel),
        1 => any::<u16>().prop_map(Outbound::PubComp),
        1 => (any::<u16>(), vec(code, 1..5))
            .prop_map(|(packet_id, granted)| Outbound::SubAck { packet_id, granted }),
        1 => any::<u16>().prop_map(Outbound::UnsubAck),
        1 => Just(Outbound::PingResp),
    ]
}

/// A few client packets encoded back to back.
fn arb_inbound_stream() -> impl Strategy<Value = (Vec<Inbound>, Vec<u8>)> {
    vec(arb_inbound(), 1..6).prop_map(|packets| {
        let mut wire = BytesMut::new();
        for p in &packets {
            encode_inbound(p, &mut wire).expect("valid packet");
        }
        (packets, wire.to_vec())
    })
}

/// A few server packets encoded back to back.
fn arb_outbound_stream() -> impl Strategy<Value = (Vec<Outbound>, Vec<u8>)> {
    vec(arb_outbound(), 1..6).prop_map(|packets| {
        let mut wire = BytesMut::new();
        for p in &packets {
            encode_outbound(p, &mut wire).expect("valid packet");
        }
        (packets, wire.to_vec())
    })
}

/// Decodes every complete packet in `buf` with `decode`; panics on an error
/// or on an `Ok(None)` that consumed bytes.
fn drain<T>(
    buf: &mut BytesMut,
    decode: fn(&mut BytesMut, usize) -> Result<Option<T>, MqttError>,
    out: &mut Vec<T>,
) {
    loop {
        let before = buf.to_vec();
        match decode(buf, MAX_REMAINING).expect("valid stream") {
            Some(p) => out.push(p),
            None => {
                assert_eq!(&buf[..], &before[..], "Ok(None) consumed bytes");
                return;
            }
        }
    }
}

/// Feeds `bytes` to `decode` until it stops; checks `Ok(Some)` consumes and
/// `Ok(None)` does not. Panics are the failure this looks for.
fn never_panics<T>(
    bytes: &[u8],
    max: usize,
    decode: fn(&mut BytesMut, usize) -> Result<Option<T>, MqttError>,
) -> Result<(), TestCaseError> {
    let mut buf = BytesMut::from(bytes);
    loop {
        let before = buf.len();
        match decode(&mut buf, max) {
            Ok(Some(_)) => prop_assert!(buf.len() < before),
            Ok(None) => {
                prop_assert_eq!(buf.len(), before);
                return Ok(());
            }
            Err(e) => {
                prop_assert!(!e.reason().is_empty());
                return Ok(());
            }
        }
    }
}

proptest! {
    #[test]
    fn inbound_round_trip(packet in arb_inbound()) {
        let mut wire = BytesMut::new();
        encode_inbound(&packet, &mut wire).unwrap();
        prop_assert_eq!(decode(&mut wire, MAX_REMAINING), Ok(Some(packet)));
        prop_assert!(wire.is_empty());
    }

    #[test]
    fn outbound_round_trip(packet in arb_outbound()) {
        let mut wire = BytesMut::new();
        encode_outbound(&packet, &mut wire).unwrap();
        prop_assert_eq!(decode_server(&mut wire, MAX_REMAINING), Ok(Some(packet)));
        prop_assert!(wire.is_empty());
    }

    /// The gate's PUBLISH: QoS 0, no dup, no retain, `publish_len` bytes.
    #[test]
    fn server_publish_round_trip(topic in arb_topic(), payload in arb_bytes()) {
        let mut wire = BytesMut::new();
        encode_publish(&topic, &payload, &mut wire).unwrap();
        prop_assert_eq!(wire.len(), publish_len(topic.len(), payload.len()));
        let expected = Publish {
            dup: false,
            qos: 0,
            retain: false,
            topic: topic.into(),
            packet_id: None,
            payload,
        };
        prop_assert_eq!(
            decode_server(&mut wire, MAX_REMAINING),
            Ok(Some(Outbound::Publish(expected)))
        );
    }

    /// A packet is accepted with a limit equal to its remaining length and
    /// refused, before its body, with one less.
    #[test]
    fn limit_is_exact(packet in arb_inbound()) {
        let mut wire = BytesMut::new();
        encode_inbound(&packet, &mut wire).unwrap();
        let header_len = 1 + wire[1..].iter().take_while(|&&b| b & 0x80 != 0).count() + 1;
        let remaining = wire.len() - header_len;
        prop_assert!(decode(&mut wire.clone(), remaining).unwrap().is_some());
        if remaining > 0 {
            let mut head = BytesMut::from(&wire[..header_len]);
            prop_assert_eq!(
                decode(&mut head, remaining - 1),
                Err(MqttError::TooLarge { remaining, max: remaining - 1 })
            );
        }
    }

    #[test]
    fn inbound_stream_split_at_every_byte((packets, wire) in arb_inbound_stream()) {
        for cut in 0..=wire.len() {
            let mut buf = BytesMut::from(&wire[..cut]);
            let mut out = Vec::new();
            drain(&mut buf, decode, &mut out);
            buf.extend_from_slice(&wire[cut..]);
            drain(&mut buf, decode, &mut out);
            prop_assert_eq!(&out, &packets, "split at {}", cut);
            prop_assert!(buf.is_empty());
        }
    }

    #[test]
    fn outbound_stream_split_at_every_byte((packets, wire) in arb_outbound_stream()) {
        for cut in 0..=wire.len() {
            let mut buf = BytesMut::from(&wire[..cut]);
            let mut out = Vec::new();
            drain(&mut buf, decode_server, &mut out);
            buf.extend_from_slice(&wire[cut..]);
            drain(&mut buf, decode_server, &mut out);
            prop_assert_eq!(&out, &packets, "split at {}", cut);
            prop_assert!(buf.is_empty());
        }
    }

    #[test]
    fn inbound_stream_in_random_chunks(
        (packets, wire) in arb_inbound_stream(),
        chunks in vec(1usize..40, 1..32),
    ) {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut rest = &wire[..];
        for &n in chunks.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, tail) = rest.split_at(n.min(rest.len()));
            buf.extend_from_slice(chunk);
            rest = tail;
            drain(&mut buf, decode, &mut out);
        }
        prop_assert_eq!(out, packets);
        prop_assert!(buf.is_empty());
    }

    /// Arbitrary bytes never panic either decoder, `Ok(Some)` consumes and
    /// `Ok(None)` does not.
    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in vec(any::<u8>(), 0..200),
        max in prop_oneof![0usize..300, Just(65_535), Just(MAX_REMAINING)],
    ) {
        never_panics(&bytes, max, decode)?;
        never_panics(&bytes, max, decode_server)?;
    }

    /// Valid streams with a few bytes overwritten reach deeper than random
    /// bytes do: same checks.
    #[test]
    fn mutated_streams_never_panic(
        (_, inbound) in arb_inbound_stream(),
        (_, outbound) in arb_outbound_stream(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        for mut wire in [inbound, outbound] {
            for (at, byte) in &edits {
                let i = at.index(wire.len());
                wire[i] = *byte;
            }
            never_panics(&wire, MAX_REMAINING, decode)?;
            never_panics(&wire, MAX_REMAINING, decode_server)?;
        }
    }
}
