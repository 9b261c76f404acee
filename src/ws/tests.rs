//! Frame codec and packet tests: byte arrays commented field by field, every
//! length encoding, masking, control frames between fragments, every split
//! point of a stream, and each error with its close code.

use bytes::{Bytes, BytesMut};

use super::frame::{header_len, parse_header};
use super::*;
use crate::codec::{self, PacketOptions};

const KEY: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

/// A client frame: `b0` (FIN, opcode) then a minimal length, `KEY`, and the masked payload.
pub(super) fn client_frame(b0: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut out = vec![b0];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    let mut body = payload.to_vec();
    apply_mask(&mut body, key);
    out.extend_from_slice(&body);
    out
}

/// Opcode bytes with and without FIN.
pub(super) const BIN: u8 = 0x82;
const BIN_MORE: u8 = 0x02;
const CONT: u8 = 0x00;
const CONT_FIN: u8 = 0x80;
const TEXT: u8 = 0x81;
const CLOSE: u8 = 0x88;
const PING: u8 = 0x89;
const PONG: u8 = 0x8A;

fn buf(bytes: &[u8]) -> BytesMut {
    BytesMut::from(bytes)
}

/// Every message in `bytes`, decoded in one go.
fn messages(bytes: &[u8], max: usize) -> Result<Vec<Message>, WsError> {
    let mut r = Reassembler::new(max);
    let mut src = buf(bytes);
    let mut out = Vec::new();
    while let Some(m) = r.decode(&mut src)? {
        out.push(m);
    }
    Ok(out)
}

fn binary(bytes: &[u8]) -> Message {
    Message::Binary(buf(bytes))
}

/// The error `bytes` gives, fed whole.
fn error(bytes: &[u8], max: usize) -> WsError {
    messages(bytes, max).expect_err("should be refused")
}

#[test]
fn mask_matches_the_bytewise_definition() {
    for len in 0..40 {
        for key in [[0, 0, 0, 0], KEY, [0xff, 0x00, 0xa5, 0x5a]] {
            let data: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(37)).collect();
            let mut fast = data.clone();
            apply_mask(&mut fast, key);
            let slow: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[i % 4])
                .collect();
            assert_eq!(fast, slow, "len {len} key {key:?}");
            apply_mask(&mut fast, key);
            assert_eq!(fast, data, "masking twice is the identity");
        }
    }
}

#[test]
fn rfc_masked_hello() {
    // RFC 6455 §5.7: a masked text "Hello" (decode_frame does not judge text).
    let mut src = buf(&[
        0x81, // FIN, text
        0x85, // MASK, len 5
        0x37, 0xfa, 0x21, 0x3d, // masking key
        0x7f, 0x9f, 0x4d, 0x51, 0x58, // "Hello" masked
    ]);
    let f = decode_frame(&mut src, 100).unwrap().unwrap();
    assert!(f.fin);
    assert_eq!(f.opcode, OpCode::Text);
    assert_eq!(&f.payload[..], b"Hello");
    assert!(src.is_empty());
}

#[test]
fn binary_frame_example_from_the_module_docs() {
    let bytes = [
        0x82, // FIN, binary
        0x85, // MASK, len 5
        0x11, 0x22, 0x33, 0x44, // key
        0x11, 0x22, 0x33, 0x45, 0x91, // 00 00 00 01 80 masked
    ];
    assert_eq!(client_frame(BIN, &[0, 0, 0, 1, 0x80], KEY), bytes);
    assert_eq!(
        messages(&bytes, 100).unwrap(),
        [binary(&[0, 0, 0, 1, 0x80])]
    );
}

#[test]
fn every_length_encoding_decodes() {
    // 7-bit (0, 1, 125), 16-bit (126, 65535), 64-bit (65536, 70000).
    for (len, header) in [
        (0, 6),
        (1, 6),
        (125, 6),
        (126, 8),
        (65535, 8),
        (65536, 14),
        (70000, 14),
    ] {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let bytes = client_frame(BIN, &payload, KEY);
        assert_eq!(bytes.len(), header + len, "len {len}");
        let h = parse_header(&bytes).unwrap().unwrap();
        assert_eq!(
            (h.len, h.header_len, h.mask),
            (len as u64, header, Some(KEY))
        );
        assert_eq!(
            messages(&bytes, 1 << 20).unwrap(),
            [binary(&payload)],
            "len {len}"
        );
    }
}

#[test]
fn server_headers_for_every_length_encoding() {
    let header = |len: usize| {
        let mut dst = BytesMut::new();
        encode_binary_header(len, &mut dst);
        assert_eq!(dst.len(), header_len(len));
        assert!(
            dst.capacity() >= dst.len() + len,
            "room reserved for the payload"
        );
        dst.to_vec()
    };
    assert_eq!(header(0), [0x82, 0x00]);
    assert_eq!(header(125), [0x82, 0x7d]);
    assert_eq!(header(126), [0x82, 0x7e, 0x00, 0x7e]);
    assert_eq!(header(65535), [0x82, 0x7e, 0xff, 0xff]);
    assert_eq!(header(65536), [0x82, 0x7f, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00]);
    // Server frames parse back: unmasked, the right length.
    for len in [0, 125, 126, 65535, 65536] {
        let mut dst = BytesMut::new();
        encode_binary(&vec![7; len], &mut dst);
        let h = parse_header(&dst).unwrap().unwrap();
        assert_eq!(
            (h.fin, h.opcode, h.mask, h.len),
            (true, OpCode::Binary, None, len as u64)
        );
        assert_eq!(dst.len(), h.header_len + len);
    }
}

#[test]
fn non_minimal_lengths_are_refused() {
    let bad = |b1: u8, ext: &[u8]| {
        let mut bytes = vec![BIN, 0x80 | b1];
        bytes.extend_from_slice(ext);
        bytes.extend_from_slice(&KEY);
        error(&bytes, usize::MAX)
    };
    assert!(matches!(bad(126, &[0, 125]), WsError::BadLength(_)));
    assert!(matches!(
        bad(127, &[0, 0, 0, 0, 0, 0, 0xff, 0xff]),
        WsError::BadLength(_)
    ));
    let e = bad(127, &[0x80, 0, 0, 0, 0, 1, 0, 0]);
    assert!(matches!(e, WsError::BadLength(_)));
    assert_eq!(e.close_code(), close::PROTOCOL_ERROR);
}

#[test]
fn oversize_is_refused_from_the_header_alone() {
    // A 64-bit length of 2^40 and not one byte of body: 1009 at once.
    let mut header = vec![BIN, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 40).to_be_bytes());
    header.extend_from_slice(&KEY);
    let e = error(&header, 5009);
    assert_eq!(
        e,
        WsError::TooLarge {
            len: 1 << 40,
            max: 5009
        }
    );
    assert_eq!(e.close_code(), close::MESSAGE_TOO_BIG);
    // decode_frame applies its limit the same way.
    assert!(matches!(
        decode_frame(&mut buf(&header), 100),
        Err(WsError::TooLarge { .. })
    ));
    // Exactly the limit is fine; one more is not.
    let max = 300;
    assert_eq!(
        messages(&client_frame(BIN, &[1; 300], KEY), max)
            .unwrap()
            .len(),
        1
    );
    let one_more = client_frame(BIN, &[1; 301], KEY);
    assert_eq!(
        error(&one_more[..8], max),
        WsError::TooLarge { len: 301, max }
    );
}

#[test]
fn fragments_over_the_limit_are_refused_at_the_fragment_header() {
    let mut bytes = client_frame(BIN_MORE, &[1; 200], KEY);
    bytes.extend(client_frame(CONT, &[2; 100], KEY));
    let third = client_frame(CONT_FIN, &[3; 1], KEY);
    bytes.extend_from_slice(&third[..6]); // the header of the fragment that tips it over
    assert_eq!(error(&bytes, 300), WsError::TooLarge { len: 301, max: 300 });
}

#[test]
fn text_is_refused_from_the_header_alone() {
    let bytes = client_frame(TEXT, b"hello", KEY);
    let e = error(&bytes[..6], 5009); // the header, not the body
    assert_eq!(e, WsError::Text);
    assert_eq!(e.close_code(), close::UNSUPPORTED_DATA);
    // Also in the middle of a binary message.
    let mut bytes = client_frame(BIN_MORE, b"ab", KEY);
    bytes.extend(client_frame(TEXT, b"cd", KEY));
    assert_eq!(error(&bytes, 5009), WsError::Text);
}

#[test]
fn unmasked_client_frames_are_refused() {
    let e = error(&[BIN, 0x02, 0xaa, 0xbb], 5009);
    assert_eq!(e, WsError::Unmasked);
    assert_eq!(e.close_code(), close::PROTOCOL_ERROR);
    assert_eq!(
        decode_frame(&mut buf(&[PING, 0x00]), 10),
        Err(WsError::Unmasked)
    );
}

#[test]
fn header_errors() {
    let mut rsv = client_frame(BIN, b"x", KEY);
    rsv[0] |= 0x40; // RSV1, as permessage-deflate would set
    assert_eq!(error(&rsv, 100), WsError::ReservedBits);
    assert_eq!(error(&[0x83, 0x80], 100), WsError::BadOpcode(3));
    assert_eq!(error(&[0x8b, 0x80], 100), WsError::BadOpcode(0xb));
    let long_ping = client_frame(PING, &[0; 126], KEY);
    assert_eq!(
        error(&long_ping, 1000),
        WsError::BadControl("payload over 125 bytes")
    );
    let fragmented_ping = client_frame(0x09, b"p", KEY);
    assert_eq!(
        error(&fragmented_ping, 100),
        WsError::BadControl("fragmented")
    );
    for e in [
        WsError::ReservedBits,
        WsError::BadOpcode(3),
        WsError::BadControl(""),
    ] {
        assert_eq!(e.close_code(), close::PROTOCOL_ERROR);
    }
}

#[test]
fn fragments_out_of_order_are_refused() {
    let lone = client_frame(CONT_FIN, b"x", KEY);
    assert!(matches!(error(&lone, 100), WsError::BadContinuation(_)));
    let mut interleaved = client_frame(BIN_MORE, b"ab", KEY);
    interleaved.extend(client_frame(BIN, b"cd", KEY));
    let e = error(&interleaved, 100);
    assert!(matches!(e, WsError::BadContinuation(_)));
    assert_eq!(e.close_code(), close::PROTOCOL_ERROR);
}

#[test]
fn control_frames_interleave_with_fragments() {
    let mut bytes = Vec::new();
    bytes.extend(client_frame(BIN_MORE, b"ab", KEY));
    bytes.extend(client_frame(PING, b"p1", KEY));
    bytes.extend(client_frame(CONT, b"", KEY)); // an empty fragment is legal
    bytes.extend(client_frame(CONT, b"cd", [9, 8, 7, 6]));
    bytes.extend(client_frame(PONG, b"", KEY));
    bytes.extend(client_frame(CONT_FIN, b"ef", KEY));
    bytes.extend(client_frame(BIN, b"gh", KEY));
    bytes.extend(client_frame(CLOSE, &[0x03, 0xe8, b'o', b'k'], KEY));
    let got = messages(&bytes, 100).unwrap();
    assert_eq!(
        got,
        [
            Message::Ping(Bytes::from_static(b"p1")),
            Message::Pong(Bytes::new()),
            binary(b"abcdef"),
            binary(b"gh"),
            Message::Close(Some(CloseFrame {
                code: 1000,
                reason: Bytes::from_static(b"ok"),
            })),
        ]
    );
}

/// A stream exercising every path: fragments with control frames between
/// them, lengths of each encoding, and the messages it must yield.
fn mixed_stream() -> (Vec<u8>, Vec<Message>) {
    let big: Vec<u8> = (0..300).map(|i| i as u8).collect();
    let mut bytes = Vec::new();
    bytes.extend(client_frame(BIN, &[0, 0, 0, 1, 0x80], KEY));
    bytes.extend(client_frame(BIN_MORE, &big[..130], [1, 2, 3, 4]));
    bytes.extend(client_frame(PING, b"are you there", KEY));
    bytes.extend(client_frame(CONT_FIN, &big[130..], [5, 6, 7, 8]));
    bytes.extend(client_frame(PONG, b"!", KEY));
    bytes.extend(client_frame(BIN, b"", KEY));
    bytes.extend(client_frame(CLOSE, &[], KEY));
    let expected = vec![
        binary(&[0, 0, 0, 1, 0x80]),
        Message::Ping(Bytes::from_static(b"are you there")),
        binary(&big),
        Message::Pong(Bytes::from_static(b"!")),
        binary(b""),
        Message::Close(None),
    ];
    (bytes, expected)
}

#[test]
fn split_at_every_byte() {
    let (bytes, expected) = mixed_stream();
    for at in 0..=bytes.len() {
        let mut r = Reassembler::new(1000);
        let mut src = BytesMut::new();
        let mut got = Vec::new();
        for piece in [&bytes[..at], &bytes[at..]] {
            src.extend_from_slice(piece);
            while let Some(m) = r.decode(&mut src).unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got, expected, "split at {at}");
        assert!(src.is_empty() && !r.in_message());
    }
}

#[test]
fn one_byte_at_a_time() {
    let (bytes, expected) = mixed_stream();
    let mut r = Reassembler::new(1000);
    let mut src = BytesMut::new();
    let mut got = Vec::new();
    for &b in &bytes {
        src.extend_from_slice(&[b]);
        while let Some(m) = r.decode(&mut src).unwrap() {
            got.push(m);
        }
    }
    assert_eq!(got, expected);
}

#[test]
fn single_frame_messages_are_not_copied() {
    let bytes = client_frame(BIN, &[5; 200], KEY);
    let mut src = buf(&bytes);
    let base = src.as_ptr() as usize;
    let Some(Message::Binary(msg)) = Reassembler::new(1000).decode(&mut src).unwrap() else {
        panic!("a binary message")
    };
    assert_eq!(
        msg.as_ptr() as usize,
        base + 8,
        "the payload is a view of the read buffer"
    );
}

#[test]
fn close_frames() {
    let parse = |payload: &[u8]| CloseFrame::parse(Bytes::copy_from_slice(payload));
    assert_eq!(parse(&[]), Ok(None));
    let c = parse(&[0x03, 0xe9, b'b', b'y', b'e']).unwrap().unwrap();
    assert_eq!((c.code, c.reason()), (1001, "bye"));
    let c = parse(&[&[0x03, 0xe8][..], "gg ✓".as_bytes()].concat())
        .unwrap()
        .unwrap();
    assert_eq!(c.reason(), "gg ✓");
    assert_eq!(parse(&[0x03]), Err(WsError::BadClose("1-byte payload")));
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 2999, 5000] {
        assert!(
            matches!(parse(&code.to_be_bytes()), Err(WsError::BadClose(_))),
            "{code}"
        );
    }
    for code in [1000u16, 1003, 1007, 1011, 1014, 3000, 4999] {
        assert!(parse(&code.to_be_bytes()).is_ok(), "{code}");
    }
    let e = parse(&[0x03, 0xe8, 0xff, 0xfe]).unwrap_err();
    assert_eq!(e, WsError::BadCloseReason);
    assert_eq!(e.close_code(), close::INVALID_PAYLOAD);
    // Through the reassembler.
    let bytes = client_frame(CLOSE, &[0x03, 0xe8, 0xc3], KEY);
    assert_eq!(error(&bytes, 100), WsError::BadCloseReason);
}

#[test]
fn server_control_frames() {
    let mut dst = BytesMut::new();
    encode_pong(b"p1", &mut dst);
    assert_eq!(&dst[..], [0x8a, 0x02, b'p', b'1']);
    dst.clear();
    encode_ping(&[0; 200], &mut dst);
    assert_eq!(&dst[..2], [0x89, 125], "cut to 125 bytes");
    dst.clear();
    encode_close(close::MESSAGE_TOO_BIG, "too big", &mut dst);
    assert_eq!(&dst[..], b"\x88\x09\x03\xf1too big");
    dst.clear();
    // A long reason is cut at a character boundary, within 123 bytes.
    encode_close(1000, &"é".repeat(100), &mut dst);
    let h = parse_header(&dst).unwrap().unwrap();
    assert_eq!(h.len, 2 + 122);
    assert!(std::str::from_utf8(&dst[4..]).is_ok());
    dst.clear();
    let received = CloseFrame {
        code: 4001,
        reason: Bytes::from_static(b"whatever"),
    };
    encode_close_reply(Some(&received), &mut dst);
    assert_eq!(
        &dst[..],
        [0x88, 0x02, 0x0f, 0xa1],
        "the code echoed, no reason"
    );
    dst.clear();
    encode_close_reply(None, &mut dst);
    assert_eq!(&dst[..], [0x88, 0x00]);
}

#[test]
fn the_message_limit_is_the_largest_packet() {
    let opts = PacketOptions::default();
    // size prefix 4 + header 1 + route 2 + seq 2 + 5000 payload.
    assert_eq!(max_message(&opts), 5009);
    let mut pkt = BytesMut::new();
    codec::encode_data(0, 7, 1, &[0; 5000], &opts, &mut pkt).unwrap();
    assert_eq!(pkt.len(), 5009);
    let ok = client_frame(BIN, &pkt, KEY);
    let mut got = messages(&ok, max_message(&opts)).unwrap();
    let Some(Message::Binary(mut msg)) = got.pop() else {
        panic!("a binary message")
    };
    assert!(got.is_empty());
    assert!(matches!(
        packet::decode(&mut msg, &opts),
        Ok(codec::Frame::Data(_))
    ));
    pkt.extend_from_slice(&[0]);
    let over = client_frame(BIN, &pkt, KEY);
    assert_eq!(
        error(&over[..8], max_message(&opts)).close_code(),
        close::MESSAGE_TOO_BIG
    );
}

#[test]
fn one_packet_per_message() {
    let opts = PacketOptions::default();
    let mut two = BytesMut::new();
    codec::encode_heartbeat(None, &opts, &mut two);
    let mut one = two.clone();
    assert_eq!(
        packet::decode(&mut one, &opts).unwrap(),
        codec::Frame::Heartbeat { time: None }
    );
    codec::encode_heartbeat(None, &opts, &mut two);
    let e = packet::decode(&mut two, &opts).unwrap_err();
    assert_eq!(e, WsError::NotOnePacket("bytes after the packet"));
    assert_eq!(e.close_code(), close::INVALID_PAYLOAD);
    let e = packet::decode(&mut buf(&[0, 0, 0, 5, 0]), &opts).unwrap_err();
    assert_eq!(e, WsError::NotOnePacket("incomplete packet"));
    let e = packet::decode(&mut buf(&[0, 0, 0x20, 0, 0]), &opts).unwrap_err();
    assert!(matches!(
        e,
        WsError::Packet(codec::CodecError::TooLarge { .. })
    ));
    assert_eq!(e.close_code(), close::MESSAGE_TOO_BIG);
}

#[test]
fn packets_out_are_one_frame_each() {
    let opts = PacketOptions::default();
    let mut dst = BytesMut::new();
    packet::encode_data(0, 7, 1, b"hi", &opts, &mut dst).unwrap();
    assert_eq!(
        &dst[..],
        [
            0x82, 0x0b, // FIN, binary, len 11
            0, 0, 0, 7, // size 7
            0, // header
            0, 7, // route 7
            0, 1, // seq 1
            b'h', b'i',
        ]
    );
    // An error leaves dst as it was, frame header included.
    let before = dst.clone();
    assert!(packet::encode_data(0, 1 << 20, 1, b"", &opts, &mut dst).is_err());
    assert!(packet::encode_data(0, 1, 1, &[0; 5001], &opts, &mut dst).is_err());
    assert_eq!(dst, before);
    dst.clear();
    packet::encode_heartbeat(Some(42), &opts, &mut dst);
    assert_eq!(&dst[..2], [0x82, 13]);
    assert_eq!(&dst[2..7], [0, 0, 0, 9, 0xc0]); // size 9; heartbeat, time follows
    assert_eq!(&dst[7..], 42i64.to_be_bytes());
    dst.clear();
    packet::encode_heartbeat(None, &opts, &mut dst);
    assert_eq!(&dst[..], [0x82, 5, 0, 0, 0, 1, 0x80]);
    dst.clear();
    packet::encode_encoded(&[0, 0, 0, 1, 0x80], &mut dst);
    assert_eq!(&dst[..], [0x82, 5, 0, 0, 0, 1, 0x80]);
    // A large payload takes the 16-bit length.
    dst.clear();
    packet::encode_data(0, 7, 1, &[1; 4000], &opts, &mut dst).unwrap();
    let h = parse_header(&dst).unwrap().unwrap();
    assert_eq!((h.header_len, h.len), (4, 4009));
    assert_eq!(dst.len(), 4 + 4009);
}

#[test]
fn error_statuses_and_codes() {
    assert_eq!(WsError::OriginRejected.http_status(), 403);
    assert_eq!(WsError::NotFound.http_status(), 404);
    assert_eq!(WsError::UnsupportedVersion.http_status(), 426);
    assert_eq!(WsError::HeaderTooLarge { max: 1 }.http_status(), 431);
    assert_eq!(WsError::BadRequest("x").http_status(), 400);
    assert_eq!(WsError::Text.close_code(), 1003);
    assert_eq!(WsError::TooLarge { len: 2, max: 1 }.close_code(), 1009);
    assert_eq!(WsError::Unmasked.close_code(), 1002);
}
