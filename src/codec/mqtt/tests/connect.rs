//! CONNECT: what paho and mqant clients send, and every way it can be wrong.

use bytes::Bytes;

use super::*;

fn connect(level: u8, client_id: &str, keep_alive: u16) -> Connect {
    Connect {
        level,
        client_id: client_id.into(),
        clean_session: true,
        keep_alive,
        username: None,
        password: None,
        will: None,
    }
}

#[test]
fn paho_3_1_1() {
    #[rustfmt::skip]
    let bytes = cat(&[
        &[0x10, 0x1b],                      // CONNECT, remaining length 27
        &[0x00, 0x04], b"MQTT",             // protocol name
        &[0x04],                            // level 4: 3.1.1
        &[0x02],                            // flags: clean session
        &[0x00, 0x1e],                      // keep alive 30 s
        &[0x00, 0x0f], b"ringgate-test-1",  // client id
    ]);
    assert_eq!(
        bytes,
        hex("10 1B 00 04 4D 51 54 54 04 02 00 1E 00 0F 72 69 6E 67 67 61 74 65 2D 74 65 73 74 2D 31")
    );
    check_inbound(Inbound::Connect(connect(4, "ringgate-test-1", 30)), &bytes);
}

#[test]
fn mqantlib_3_1() {
    #[rustfmt::skip]
    let bytes = cat(&[
        &[0x10, 0x1d],                      // CONNECT, remaining length 29
        &[0x00, 0x06], b"MQIsdp",           // protocol name (3.1)
        &[0x03],                            // level 3
        &[0x02],                            // flags: clean session
        &[0x00, 0x3c],                      // keep alive 60 s
        &[0x00, 0x0f], b"mqttjs_1a2b3c4d",  // client id
    ]);
    check_inbound(Inbound::Connect(connect(3, "mqttjs_1a2b3c4d", 60)), &bytes);
}

#[test]
fn username_and_password() {
    #[rustfmt::skip]
    let bytes = cat(&[
        &[0x10, 0x26],                      // CONNECT, remaining length 38
        &[0x00, 0x04], b"MQTT", &[0x04],    // "MQTT" level 4
        &[0xc2],                            // flags: user name, password, clean session
        &[0x00, 0x3c],                      // keep alive 60 s
        &[0x00, 0x09], b"Client ID",        // client id
        &[0x00, 0x05], b"admin",            // user name
        &[0x00, 0x08], b"password",         // password
    ]);
    let c = Connect {
        username: Some("admin".into()),
        password: Some(Bytes::from_static(b"password")),
        ..connect(4, "Client ID", 60)
    };
    check_inbound(Inbound::Connect(c), &bytes);
}

#[test]
fn empty_client_id_is_accepted() {
    #[rustfmt::skip]
    let bytes = [
        0x10, 0x0c,                         // CONNECT, remaining length 12
        0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name
        0x04,                               // level 4
        0x00,                               // flags: none (not even clean session)
        0x00, 0x00,                         // keep alive 0: off
        0x00, 0x00,                         // client id "" (the caller assigns one)
    ];
    let c = Connect {
        clean_session: false,
        ..connect(4, "", 0)
    };
    check_inbound(Inbound::Connect(c), &bytes);
}

#[test]
fn will_with_qos_1_and_retain() {
    #[rustfmt::skip]
    let bytes = cat(&[
        &[0x10, 0x18],                      // CONNECT, remaining length 24
        &[0x00, 0x04], b"MQTT", &[0x04],    // "MQTT" level 4
        &[0x2e],                            // flags: will retain, will qos 1, will, clean
        &[0x00, 0x0a],                      // keep alive 10 s
        &[0x00, 0x01], b"c",                // client id
        &[0x00, 0x03], b"w/t",              // will topic
        &[0x00, 0x04], &[0x00, 0xff, b'b', b'y'], // will payload: binary
    ]);
    let c = Connect {
        will: Some(Will {
            topic: "w/t".into(),
            payload: Bytes::from_static(&[0x00, 0xff, b'b', b'y']),
            qos: 1,
            retain: true,
        }),
        ..connect(4, "c", 10)
    };
    check_inbound(Inbound::Connect(c), &bytes);
}

#[test]
fn password_without_user_name_is_3_1_only() {
    #[rustfmt::skip]
    let v3 = cat(&[
        &[0x10, 0x11],                      // CONNECT, remaining length 17
        &[0x00, 0x06], b"MQIsdp", &[0x03],  // "MQIsdp" level 3
        &[0x42],                            // flags: password, clean session
        &[0x00, 0x3c],                      // keep alive 60 s
        &[0x00, 0x00],                      // client id ""
        &[0x00, 0x01], b"p",                // password
    ]);
    let c = Connect {
        password: Some(Bytes::from_static(b"p")),
        ..connect(3, "", 60)
    };
    check_inbound(Inbound::Connect(c.clone()), &v3);

    #[rustfmt::skip]
    let v4 = cat(&[
        &[0x10, 0x0f],                      // CONNECT, remaining length 15
        &[0x00, 0x04], b"MQTT", &[0x04],    // "MQTT" level 4
        &[0x42],                            // flags: password without user name
        &[0x00, 0x3c],                      // keep alive 60 s
        &[0x00, 0x00],                      // client id ""
        &[0x00, 0x01], b"p",                // password
    ]);
    assert_eq!(
        decode_err(&v4),
        MqttError::BadFlags("password without user name")
    );
    let mut out = BytesMut::new();
    let c4 = Connect { level: 4, ..c };
    assert_eq!(
        encode_connect(&c4, &mut out),
        Err(MqttError::BadFlags("password without user name"))
    );
    assert!(out.is_empty());
}

/// An MQTT 5 CONNECT is refused as soon as its level arrives: the caller
/// answers CONNACK 0x01 without waiting for (or parsing) its properties.
#[test]
fn mqtt_5_is_refused_once_the_level_arrives() {
    #[rustfmt::skip]
    let bytes = cat(&[
        &[0x10, 0x10],                      // CONNECT, remaining length 16
        &[0x00, 0x04], b"MQTT",             // protocol name
        &[0x05],                            // level 5: MQTT 5
        &[0x02],                            // flags: clean start
        &[0x00, 0x3c],                      // keep alive 60 s
        &[0x00],                            // properties length 0 (5.0 only)
        &[0x00, 0x03], b"abc",              // client id
    ]);
    assert_eq!(first_error(&bytes), (9, MqttError::UnsupportedLevel(5)));
}

#[test]
fn name_and_level_must_match() {
    for (name, level) in [
        (&b"MQTT"[..], 3u8),
        (b"MQIsdp", 4),
        (b"MQTT", 0),
        (b"MQTT", 255),
    ] {
        #[rustfmt::skip]
        let bytes = cat(&[
            &[0x10, 0x7f],                         // CONNECT, remaining length 127 (not all here)
            &[0x00, name.len() as u8], name,       // protocol name
            &[level],                              // level
        ]);
        assert_eq!(
            first_error(&bytes),
            (bytes.len(), MqttError::UnsupportedLevel(level))
        );
    }
}

#[test]
fn bad_protocol_names() {
    #[rustfmt::skip]
    let wrong_length = [
        0x10, 0x7f,                         // CONNECT, remaining length 127
        0x00, 0x05,                         // a 5-byte name: neither 4 nor 6
    ];
    assert_eq!(first_error(&wrong_length), (4, MqttError::BadProtocolName));
    #[rustfmt::skip]
    let wrong_name = [
        0x10, 0x7f,                         // CONNECT, remaining length 127
        0x00, 0x04, b'M', b'Q', b'T', b'X', // "MQTX"
    ];
    assert_eq!(first_error(&wrong_name), (8, MqttError::BadProtocolName));
    #[rustfmt::skip]
    let lower_case = [
        0x10, 0x7f,                         // CONNECT, remaining length 127
        0x00, 0x04, b'm', b'q', b't', b't', // "mqtt"
    ];
    assert_eq!(first_error(&lower_case), (8, MqttError::BadProtocolName));
}

/// A valid 3.1.1 CONNECT with id "c" and these flags, the fields they call
/// for (will "w"/"m", user "u", password "p") appended.
fn with_flags(flags: u8) -> Vec<u8> {
    let mut body = cat(&[
        &[0x00, 0x04],
        b"MQTT",
        &[0x04, flags, 0x00, 0x3c, 0x00, 0x01, b'c'],
    ]);
    if flags & 0x04 != 0 {
        body.extend_from_slice(&[0x00, 0x01, b'w', 0x00, 0x01, b'm']);
    }
    if flags & 0x80 != 0 {
        body.extend_from_slice(&[0x00, 0x01, b'u']);
    }
    if flags & 0x40 != 0 {
        body.extend_from_slice(&[0x00, 0x01, b'p']);
    }
    cat(&[&[0x10, body.len() as u8], &body])
}

#[test]
fn connect_flag_rules() {
    // Every flags byte: valid unless a rule below says otherwise.
    for flags in 0..=255u8 {
        let will_qos = (flags >> 3) & 3;
        let expected = if flags & 0x01 != 0 {
            Err(MqttError::BadFlags("connect flags reserved bit set"))
        } else if flags & 0x04 == 0 && (will_qos != 0 || flags & 0x20 != 0) {
            Err(MqttError::BadFlags(
                "will qos or retain without the will flag",
            ))
        } else if flags & 0x04 != 0 && will_qos == 3 {
            Err(MqttError::BadQos(3))
        } else if flags & 0xc0 == 0x40 {
            Err(MqttError::BadFlags("password without user name"))
        } else {
            Ok(())
        };
        let mut buf = BytesMut::from(&with_flags(flags)[..]);
        let got = decode(&mut buf, MAX).map(|p| assert!(p.is_some()));
        assert_eq!(got, expected, "flags {flags:#04x}");
    }
}

#[test]
fn fixed_header_flags_must_be_zero() {
    let mut bytes = with_flags(0x02);
    bytes[0] = 0x12; // CONNECT with flags 0b0010
    assert_eq!(
        first_error(&bytes),
        (
            1,
            MqttError::BadFlags("fixed-header flags wrong for the type")
        )
    );
}

#[test]
fn strings_must_be_utf8_without_nul() {
    #[rustfmt::skip]
    let not_utf8 = cat(&[
        &[0x10, 0x0e],                      // CONNECT, remaining length 14
        &[0x00, 0x04], b"MQTT", &[0x04],    // "MQTT" level 4
        &[0x02, 0x00, 0x3c],                // flags: clean; keep alive 60 s
        &[0x00, 0x02, 0xc3, 0x28],          // client id: invalid UTF-8
    ]);
    assert_eq!(decode_err(&not_utf8), MqttError::BadString("not UTF-8"));
    #[rustfmt::skip]
    let nul = cat(&[
        &[0x10, 0x0e],                      // CONNECT, remaining length 14
        &[0x00, 0x04], b"MQTT", &[0x04],    // "MQTT" level 4
        &[0x02, 0x00, 0x3c],                // flags: clean; keep alive 60 s
        &[0x00, 0x02, b'a', 0x00],          // client id "a\0"
    ]);
    assert_eq!(decode_err(&nul), MqttError::BadString("contains U+0000"));
    #[rustfmt::skip]
    let wild_will = cat(&[
        &[0x10, 0x11],                      // CONNECT, remaining length 17
        &[0x00, 0x04], b"MQTT", &[0x04],    // "MQTT" level 4
        &[0x06, 0x00, 0x3c],                // flags: will, clean; keep alive 60 s
        &[0x00, 0x00],                      // client id ""
        &[0x00, 0x01], b"#",                // will topic "#": a wildcard
        &[0x00, 0x00],                      // will payload ""
    ]);
    assert_eq!(
        decode_err(&wild_will),
        MqttError::BadTopic("wildcard in a topic name")
    );
}

#[test]
fn body_shorter_or_longer_than_its_fields() {
    #[rustfmt::skip]
    let short_id = cat(&[
        &[0x10, 0x0e],                      // CONNECT, remaining length 14
        &[0x00, 0x04], b"MQTT", &[0x04],    // "MQTT" level 4
        &[0x02, 0x00, 0x3c],                // flags: clean; keep alive 60 s
        &[0x00, 0x05, b'a', b'b'],          // client id claims 5 bytes, 2 follow
    ]);
    assert_eq!(
        decode_err(&short_id),
        MqttError::Malformed("truncated client id")
    );
    #[rustfmt::skip]
    let no_keep_alive = cat(&[
        &[0x10, 0x08],                      // CONNECT, remaining length 8
        &[0x00, 0x04], b"MQTT", &[0x04],    // "MQTT" level 4
        &[0x02],                            // flags; then the body ends
    ]);
    assert_eq!(
        decode_err(&no_keep_alive),
        MqttError::Malformed("truncated keep alive")
    );
    #[rustfmt::skip]
    let name_only = [
        0x10, 0x04,                         // CONNECT, remaining length 4
        0x00, 0x04, b'M', b'Q',             // the name is cut by the body's end
    ];
    assert_eq!(
        decode_err(&name_only),
        MqttError::Malformed("truncated protocol name or level")
    );
    #[rustfmt::skip]
    let missing_user = cat(&[
        &[0x10, 0x0c],                      // CONNECT, remaining length 12
        &[0x00, 0x04], b"MQTT", &[0x04],    // "MQTT" level 4
        &[0x82, 0x00, 0x3c],                // flags: user name, clean; keep alive 60 s
        &[0x00, 0x00],                      // client id ""; no user name follows
    ]);
    assert_eq!(
        decode_err(&missing_user),
        MqttError::Malformed("truncated user name")
    );
    #[rustfmt::skip]
    let trailing = cat(&[
        &[0x10, 0x0d],                      // CONNECT, remaining length 13
        &[0x00, 0x04], b"MQTT", &[0x04],    // "MQTT" level 4
        &[0x02, 0x00, 0x3c],                // flags: clean; keep alive 60 s
        &[0x00, 0x00],                      // client id ""
        &[0xff],                            // a byte no flag accounts for
    ]);
    assert_eq!(
        decode_err(&trailing),
        MqttError::Malformed("bytes after the last field")
    );
}

#[test]
fn password_and_will_payload_are_slices_of_the_read_buffer() {
    let bytes = with_flags(0xc6);
    let mut buf = BytesMut::from(&bytes[..]);
    let range = buf.as_ptr_range();
    let Some(Inbound::Connect(c)) = decode(&mut buf, MAX).unwrap() else {
        panic!("not a CONNECT");
    };
    assert!(range.contains(&c.password.unwrap().as_ptr()));
    assert!(range.contains(&c.will.unwrap().payload.as_ptr()));
}
