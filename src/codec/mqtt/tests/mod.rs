//! Byte-level tests: commented byte arrays for every packet type, valid and
//! each way it can be invalid, in both directions. Property tests are in
//! `proptests`.

use bytes::BytesMut;

use super::*;

mod client;
mod connect;
mod other;
mod publish;
mod server;

/// The limit the gate uses by default (`max_packet_bytes`).
const MAX: usize = 65_535;

/// Decodes exactly one client packet from `bytes`, checking that it uses
/// them all and that every strict prefix is `Ok(None)` consuming nothing.
fn decode_exact(bytes: &[u8]) -> Inbound {
    for cut in 0..bytes.len() {
        let mut buf = BytesMut::from(&bytes[..cut]);
        assert_eq!(decode(&mut buf, MAX), Ok(None), "prefix of {cut} bytes");
        assert_eq!(&buf[..], &bytes[..cut], "prefix of {cut} bytes consumed");
    }
    let mut buf = BytesMut::from(bytes);
    let packet = decode(&mut buf, MAX).expect("decodes").expect("complete");
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    packet
}

/// [`decode_exact`] for server packets.
fn decode_server_exact(bytes: &[u8]) -> Outbound {
    for cut in 0..bytes.len() {
        let mut buf = BytesMut::from(&bytes[..cut]);
        assert_eq!(decode_server(&mut buf, MAX), Ok(None), "prefix of {cut}");
        assert_eq!(&buf[..], &bytes[..cut], "prefix of {cut} bytes consumed");
    }
    let mut buf = BytesMut::from(bytes);
    let packet = decode_server(&mut buf, MAX)
        .expect("decodes")
        .expect("complete");
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    packet
}

/// Feeds `bytes` to `decode` one more byte at a time; returns the error and
/// how many bytes it took to see it. Panics if no prefix is an error.
fn first_error_with(
    bytes: &[u8],
    max: usize,
    decode: impl Fn(&mut BytesMut, usize) -> Result<bool, MqttError>,
) -> (usize, MqttError) {
    for cut in 0..=bytes.len() {
        let mut buf = BytesMut::from(&bytes[..cut]);
        match decode(&mut buf, max) {
            Err(e) => return (cut, e),
            Ok(complete) => assert!(!complete, "{bytes:02x?} decoded"),
        }
    }
    panic!("{bytes:02x?} decoded to nothing and no error");
}

/// The client-packet error `bytes` cause, and after how many bytes.
fn first_error(bytes: &[u8]) -> (usize, MqttError) {
    first_error_with(bytes, MAX, |b, m| decode(b, m).map(|p| p.is_some()))
}

/// The error `bytes` cause once complete (client packets).
fn decode_err(bytes: &[u8]) -> MqttError {
    first_error(bytes).1
}

/// The server-packet error `bytes` cause, and after how many bytes.
fn first_server_error(bytes: &[u8]) -> (usize, MqttError) {
    first_error_with(bytes, MAX, |b, m| decode_server(b, m).map(|p| p.is_some()))
}

/// Asserts `packet` encodes to exactly `bytes` and decodes back from them.
fn check_inbound(packet: Inbound, bytes: &[u8]) {
    let mut out = BytesMut::new();
    encode_inbound(&packet, &mut out).expect("encodes");
    assert_eq!(&out[..], bytes, "encoding {packet:?}");
    assert_eq!(decode_exact(bytes), packet);
}

/// Asserts `packet` encodes to exactly `bytes` and decodes back from them.
fn check_outbound(packet: Outbound, bytes: &[u8]) {
    let mut out = BytesMut::new();
    encode_outbound(&packet, &mut out).expect("encodes");
    assert_eq!(&out[..], bytes, "encoding {packet:?}");
    assert_eq!(decode_server_exact(bytes), packet);
}

/// Parses hex with spaces between fields: `"10 1b 0004"`.
fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

/// Concatenates byte slices, so that a commented array can hold string
/// fields as `b"..."`.
fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn reasons_are_distinct_labels() {
    let all = [
        MqttError::TooLarge {
            remaining: 1,
            max: 0,
        },
        MqttError::MalformedLength,
        MqttError::UnsupportedLevel(5),
        MqttError::BadProtocolName,
        MqttError::BadFlags("x"),
        MqttError::BadQos(3),
        MqttError::BadTopic("x"),
        MqttError::BadString("x"),
        MqttError::StringTooLong(65_536),
        MqttError::ZeroPacketId,
        MqttError::UnexpectedPacket(0),
        MqttError::Malformed("x"),
    ];
    let mut reasons: Vec<_> = all.iter().map(MqttError::reason).collect();
    assert!(reasons
        .iter()
        .all(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
    reasons.sort_unstable();
    reasons.dedup();
    assert_eq!(reasons.len(), all.len());
    // Same label whatever the detail.
    assert_eq!(
        MqttError::BadFlags("a").reason(),
        MqttError::BadFlags("b").reason()
    );
}
