//! Byte-level tests: exact bytes for every option combination, sign
//! extension, limits and malformed input. Property tests are in `proptests`.

use bytes::{Bytes, BytesMut};

use super::ByteOrder::{Big, Little};
use super::*;

fn opts(byte_order: ByteOrder, route_bytes: u8, seq_bytes: u8) -> PacketOptions {
    PacketOptions {
        byte_order,
        route_bytes,
        seq_bytes,
        ..PacketOptions::default()
    }
}

fn data(ext: u8, route: i32, seq: i32, payload: &'static [u8]) -> Frame {
    Frame::Data(Packet {
        ext,
        route,
        seq,
        payload: Bytes::from_static(payload),
    })
}

fn encoded(frame: &Frame, o: &PacketOptions) -> Vec<u8> {
    let mut dst = BytesMut::new();
    encode(frame, o, &mut dst).expect("encodes");
    dst.to_vec()
}

/// Decodes exactly one frame from `bytes`, checking that it uses them all
/// and that every strict prefix is "not enough bytes yet".
fn decode_exact(bytes: &[u8], o: &PacketOptions) -> Frame {
    for cut in 0..bytes.len() {
        let mut src = BytesMut::from(&bytes[..cut]);
        assert_eq!(decode(&mut src, o), Ok(None), "prefix of {cut} bytes");
    }
    let mut src = BytesMut::from(bytes);
    let frame = decode(&mut src, o).expect("decodes").expect("complete");
    assert!(src.is_empty(), "{} bytes left over", src.len());
    frame
}

/// Asserts `frame` encodes to exactly `bytes` and decodes back from them.
fn check(frame: Frame, o: &PacketOptions, bytes: &[u8]) {
    assert_eq!(encoded(&frame, o), bytes, "encoding {frame:?} with {o:?}");
    assert_eq!(decode_exact(bytes, o), frame, "decoding with {o:?}");
}

/// Parses hex with spaces between fields: `"00000007 00 0007"`.
fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

#[test]
fn default_options_big_2_2() {
    #[rustfmt::skip]
    let bytes = [
        0x00, 0x00, 0x00, 0x07, // size = 7: header + route + seq + payload
        0x00,                   // header: data, ext 0
        0x00, 0x07,             // route = 7 (i16 BE)
        0x00, 0x01,             // seq = 1 (i16 BE)
        b'h', b'i',             // payload
    ];
    check(data(0, 7, 1, b"hi"), &PacketOptions::default(), &bytes);
}

#[test]
fn little_1_0() {
    #[rustfmt::skip]
    let bytes = [
        0x05, 0x00, 0x00, 0x00, // size = 5 (u32 LE)
        0x02,                   // header: data, ext 2 (NODE_DOWN)
        0x2a,                   // route = 42 (i8)
                                // no seq: seq_bytes = 0
        0x01, 0x02, 0x03,       // payload
    ];
    check(
        data(ext::NODE_DOWN, 42, 0, &[1, 2, 3]),
        &opts(Little, 1, 0),
        &bytes,
    );
}

#[test]
fn big_4_4_negative() {
    #[rustfmt::skip]
    let bytes = [
        0x00, 0x00, 0x00, 0x0a, // size = 10
        0x01,                   // header: data, ext 1 (NO_ROUTE)
        0xff, 0xff, 0xff, 0xfe, // route = -2 (i32 BE)
        0x80, 0x00, 0x00, 0x00, // seq = i32::MIN (i32 BE)
        0xee,                   // payload
    ];
    check(
        data(ext::NO_ROUTE, -2, i32::MIN, &[0xee]),
        &opts(Big, 4, 4),
        &bytes,
    );
}

#[test]
fn little_2_1_negative_empty_payload() {
    #[rustfmt::skip]
    let bytes = [
        0x04, 0x00, 0x00, 0x00, // size = 4
        0x00,                   // header: data, ext 0
        0x00, 0x80,             // route = -32768 (i16 LE)
        0xff,                   // seq = -1 (i8)
                                // empty payload
    ];
    check(data(0, -32768, -1, b""), &opts(Little, 2, 1), &bytes);
}

#[test]
fn heartbeats() {
    let t = 0x0102_0304_0506_0708;
    let (big, little) = (opts(Big, 2, 2), opts(Little, 2, 2));
    #[rustfmt::skip]
    check(Frame::Heartbeat { time: None }, &big, &[
        0x00, 0x00, 0x00, 0x01, // size = 1 (BE)
        0x80,                   // header: heartbeat
    ]);
    #[rustfmt::skip]
    check(Frame::Heartbeat { time: None }, &little, &[
        0x01, 0x00, 0x00, 0x00, // size = 1 (LE)
        0x80,                   // header: heartbeat
    ]);
    #[rustfmt::skip]
    check(Frame::Heartbeat { time: Some(t) }, &big, &[
        0x00, 0x00, 0x00, 0x09,                         // size = 9 (BE)
        0xc0,                                           // header: heartbeat, time follows
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // time (i64 BE)
    ]);
    #[rustfmt::skip]
    check(Frame::Heartbeat { time: Some(t) }, &little, &[
        0x09, 0x00, 0x00, 0x00,                         // size = 9 (LE)
        0xc0,                                           // header: heartbeat, time follows
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, // time (i64 LE)
    ]);
    #[rustfmt::skip]
    check(Frame::Heartbeat { time: Some(-1) }, &little, &[
        0x09, 0x00, 0x00, 0x00,                         // size = 9 (LE)
        0xc0,                                           // header: heartbeat, time follows
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // time = -1
    ]);
}

/// Senders that mark the time by size alone (as ringgate did before it set
/// the time bit) still decode; the encoder never writes this form.
#[test]
fn timed_heartbeat_without_the_time_bit_decodes_by_size() {
    #[rustfmt::skip]
    let big = [
        0x00, 0x00, 0x00, 0x09,                         // size = 9 (BE)
        0x80,                                           // header: heartbeat, no time bit
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // time (i64 BE)
    ];
    let frame = decode_exact(&big, &opts(Big, 2, 2));
    assert_eq!(
        frame,
        Frame::Heartbeat {
            time: Some(0x0102_0304_0506_0708)
        }
    );
    #[rustfmt::skip]
    let little = [
        0x09, 0x00, 0x00, 0x00,                         // size = 9 (LE)
        0x80,                                           // header: heartbeat, no time bit
        0x64, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // time = 100 (i64 LE)
    ];
    let frame = decode_exact(&little, &opts(Little, 1, 0));
    assert_eq!(frame, Frame::Heartbeat { time: Some(100) });
    // Re-encoding writes the due form: same bytes but the header is 0xC0.
    let mut again = encoded(&frame, &opts(Little, 1, 0));
    assert_eq!(again[4], 0xc0);
    again[4] = 0x80;
    assert_eq!(again, little);
}

#[test]
fn heartbeat_layout_ignores_route_seq_and_heartbeat_time() {
    for (order, size_be) in [(Big, true), (Little, false)] {
        for rb in [1, 2, 4] {
            for sb in [0, 1, 2, 4] {
                for heartbeat_time in [false, true] {
                    let o = PacketOptions {
                        heartbeat_time,
                        ..opts(order, rb, sb)
                    };
                    let (plain, timed) = if size_be {
                        ("00000001 80", "00000009 c0 0000000000000064")
                    } else {
                        ("01000000 80", "09000000 c0 6400000000000000")
                    };
                    check(Frame::Heartbeat { time: None }, &o, &hex(plain));
                    check(Frame::Heartbeat { time: Some(100) }, &o, &hex(timed));
                }
            }
        }
    }
}

#[test]
fn heartbeat_ignores_extension_bits() {
    let o = PacketOptions::default();
    // Bits 5..0 are ignored, with or without the time bit.
    assert_eq!(
        decode_exact(&hex("00000001 85"), &o),
        Frame::Heartbeat { time: None }
    );
    assert_eq!(
        decode_exact(&hex("00000009 ff 0000000000000007"), &o),
        Frame::Heartbeat { time: Some(7) }
    );
    assert_eq!(
        decode_exact(&hex("00000009 bf 0000000000000007"), &o),
        Frame::Heartbeat { time: Some(7) }
    );
}

/// Every byte order × route width × seq width, as fields separated by spaces:
/// size, header, route, seq, payload.
#[test]
fn every_option_combination() {
    // ext 3, route 0x12/0x1234/0x12345678, seq 0x56/0x5678/0x56789abc, payload aa bb.
    let positive = [
        (Big, 1, 0, "00000004 03 12 aabb"),
        (Big, 1, 1, "00000005 03 12 56 aabb"),
        (Big, 1, 2, "00000006 03 12 5678 aabb"),
        (Big, 1, 4, "00000008 03 12 56789abc aabb"),
        (Big, 2, 0, "00000005 03 1234 aabb"),
        (Big, 2, 1, "00000006 03 1234 56 aabb"),
        (Big, 2, 2, "00000007 03 1234 5678 aabb"),
        (Big, 2, 4, "00000009 03 1234 56789abc aabb"),
        (Big, 4, 0, "00000007 03 12345678 aabb"),
        (Big, 4, 1, "00000008 03 12345678 56 aabb"),
        (Big, 4, 2, "00000009 03 12345678 5678 aabb"),
        (Big, 4, 4, "0000000b 03 12345678 56789abc aabb"),
        (Little, 1, 0, "04000000 03 12 aabb"),
        (Little, 1, 1, "05000000 03 12 56 aabb"),
        (Little, 1, 2, "06000000 03 12 7856 aabb"),
        (Little, 1, 4, "08000000 03 12 bc9a7856 aabb"),
        (Little, 2, 0, "05000000 03 3412 aabb"),
        (Little, 2, 1, "06000000 03 3412 56 aabb"),
        (Little, 2, 2, "07000000 03 3412 7856 aabb"),
        (Little, 2, 4, "09000000 03 3412 bc9a7856 aabb"),
        (Little, 4, 0, "07000000 03 78563412 aabb"),
        (Little, 4, 1, "08000000 03 78563412 56 aabb"),
        (Little, 4, 2, "09000000 03 78563412 7856 aabb"),
        (Little, 4, 4, "0b000000 03 78563412 bc9a7856 aabb"),
    ];
    for (order, rb, sb, bytes) in positive {
        let route = [0, 0x12, 0x1234, 0, 0x1234_5678][usize::from(rb)];
        let seq = [0, 0x56, 0x5678, 0, 0x5678_9abc][usize::from(sb)];
        check(
            data(3, route, seq, &[0xaa, 0xbb]),
            &opts(order, rb, sb),
            &hex(bytes),
        );
    }

    // ext 0, route -2, seq -3 (sign-extended to each width), empty payload.
    let negative = [
        (Big, 1, 0, "00000002 00 fe"),
        (Big, 1, 1, "00000003 00 fe fd"),
        (Big, 1, 2, "00000004 00 fe fffd"),
        (Big, 1, 4, "00000006 00 fe fffffffd"),
        (Big, 2, 0, "00000003 00 fffe"),
        (Big, 2, 1, "00000004 00 fffe fd"),
        (Big, 2, 2, "00000005 00 fffe fffd"),
        (Big, 2, 4, "00000007 00 fffe fffffffd"),
        (Big, 4, 0, "00000005 00 fffffffe"),
        (Big, 4, 1, "00000006 00 fffffffe fd"),
        (Big, 4, 2, "00000007 00 fffffffe fffd"),
        (Big, 4, 4, "00000009 00 fffffffe fffffffd"),
        (Little, 1, 0, "02000000 00 fe"),
        (Little, 1, 1, "03000000 00 fe fd"),
        (Little, 1, 2, "04000000 00 fe fdff"),
        (Little, 1, 4, "06000000 00 fe fdffffff"),
        (Little, 2, 0, "03000000 00 feff"),
        (Little, 2, 1, "04000000 00 feff fd"),
        (Little, 2, 2, "05000000 00 feff fdff"),
        (Little, 2, 4, "07000000 00 feff fdffffff"),
        (Little, 4, 0, "05000000 00 feffffff"),
        (Little, 4, 1, "06000000 00 feffffff fd"),
        (Little, 4, 2, "07000000 00 feffffff fdff"),
        (Little, 4, 4, "09000000 00 feffffff fdffffff"),
    ];
    for (order, rb, sb, bytes) in negative {
        let seq = if sb == 0 { 0 } else { -3 };
        check(data(0, -2, seq, b""), &opts(order, rb, sb), &hex(bytes));
    }
}

#[test]
fn signed_extremes_round_trip_for_every_width() {
    let range = |w: u8| match w {
        1 => (i32::from(i8::MIN), i32::from(i8::MAX)),
        2 => (i32::from(i16::MIN), i32::from(i16::MAX)),
        _ => (i32::MIN, i32::MAX),
    };
    for order in [Big, Little] {
        for rb in [1, 2, 4] {
            for sb in [0, 1, 2, 4] {
                let o = opts(order, rb, sb);
                let (rmin, rmax) = range(rb);
                let (smin, smax) = if sb == 0 { (0, 0) } else { range(sb) };
                for (route, seq) in [(rmin, smin), (rmax, smax), (-1, smin.min(-1)), (0, 0)] {
                    let seq = if sb == 0 { 0 } else { seq };
                    let frame = data(0x7f, route, seq, b"x");
                    assert_eq!(decode_exact(&encoded(&frame, &o), &o), frame);
                }
            }
        }
    }
}

#[test]
fn encode_rejects_out_of_range_and_leaves_dst_untouched() {
    let cases = [
        (opts(Big, 1, 1), 0x80, 0, 0, CodecError::OutOfRange("ext")),
        (opts(Big, 1, 1), 0, 128, 0, CodecError::OutOfRange("route")),
        (opts(Big, 1, 1), 0, -129, 0, CodecError::OutOfRange("route")),
        (opts(Big, 2, 1), 0, 0, 128, CodecError::OutOfRange("seq")),
        (
            opts(Big, 2, 2),
            0,
            32768,
            0,
            CodecError::OutOfRange("route"),
        ),
        (
            opts(Little, 4, 2),
            0,
            0,
            -32769,
            CodecError::OutOfRange("seq"),
        ),
    ];
    for (o, ext, route, seq, err) in cases {
        let mut dst = BytesMut::from(&b"kept"[..]);
        assert_eq!(encode_data(ext, route, seq, b"", &o, &mut dst), Err(err));
        assert_eq!(&dst[..], b"kept");
    }
}

#[test]
fn seq_is_ignored_without_seq_field() {
    let o = opts(Big, 2, 0);
    let mut dst = BytesMut::new();
    encode_data(0, 1, 123_456_789, b"", &o, &mut dst).unwrap();
    assert_eq!(&dst[..], hex("00000003 00 0001"));
    assert_eq!(decode_exact(&dst, &o), data(0, 1, 0, b""));
}

#[test]
fn oversize_prefix_is_rejected_from_four_bytes() {
    // Limit with defaults: 1 + 2 + 2 + 5000 = 5005.
    let o = PacketOptions::default();
    let tl = CodecError::TooLarge {
        size: 5006,
        max: 5005,
    };
    assert_eq!(
        decode(&mut BytesMut::from(&hex("0000138e")[..]), &o),
        Err(tl)
    );
    let lo = opts(Little, 2, 2);
    assert_eq!(
        decode(&mut BytesMut::from(&hex("8e130000")[..]), &lo),
        Err(tl)
    );
    let huge = decode(&mut BytesMut::from(&hex("ffffffff")[..]), &o);
    assert!(matches!(huge, Err(CodecError::TooLarge { .. })));
}

#[test]
fn payload_at_the_limit_is_accepted_and_one_over_is_not() {
    for order in [Big, Little] {
        let o = PacketOptions {
            buffer_bytes: 100,
            ..opts(order, 1, 2)
        };
        let at_limit = Frame::Data(Packet {
            ext: 0,
            route: 9,
            seq: 9,
            payload: Bytes::from(vec![7u8; 100]),
        });
        let bytes = encoded(&at_limit, &o);
        assert_eq!(bytes.len(), 4 + 104);
        assert_eq!(decode_exact(&bytes, &o), at_limit);

        let over = CodecError::TooLarge {
            size: 105,
            max: 104,
        };
        let mut dst = BytesMut::new();
        assert_eq!(encode_data(0, 9, 9, &[7; 101], &o, &mut dst), Err(over));
        assert!(dst.is_empty());
        // The same packet forged on the wire: one more payload byte.
        let mut forged = bytes.clone();
        forged.push(7);
        forged[..4].copy_from_slice(&match order {
            Big => 105u32.to_be_bytes(),
            Little => 105u32.to_le_bytes(),
        });
        assert_eq!(decode(&mut BytesMut::from(&forged[..4]), &o), Err(over));
    }
}

#[test]
fn small_limits_reject_data_once_the_header_shows_it() {
    // Limit 1 + 1 + 0 + 2 = 4, but a prefix of up to 9 could be a heartbeat.
    let o = PacketOptions {
        buffer_bytes: 2,
        ..opts(Big, 1, 0)
    };
    assert_eq!(
        decode(&mut BytesMut::from(&hex("00000009")[..]), &o),
        Ok(None)
    );
    let tl = CodecError::TooLarge { size: 9, max: 4 };
    assert_eq!(
        decode(&mut BytesMut::from(&hex("00000009 00")[..]), &o),
        Err(tl)
    );
    let hb = decode_exact(&hex("00000009 c0 0000000000000001"), &o);
    assert_eq!(hb, Frame::Heartbeat { time: Some(1) });
    let hb = decode_exact(&hex("00000009 80 0000000000000001"), &o);
    assert_eq!(hb, Frame::Heartbeat { time: Some(1) });
}

#[test]
fn malformed_input() {
    let o = PacketOptions::default();
    let malformed = |bytes: &str| {
        let result = decode(&mut BytesMut::from(&hex(bytes)[..]), &o);
        assert!(
            matches!(result, Err(CodecError::Malformed(_))),
            "{bytes}: {result:?}"
        );
    };
    malformed("00000000"); // size 0
    malformed("00000000 80"); // size 0, even for a heartbeat header
    malformed("00000004 00 0001 00"); // data: size 4 < 1 + 2 + 2
    malformed("00000001 00"); // data: header only
    malformed("00000005 80"); // heartbeat of size 5, detected from the header
    malformed("00000005 80 00000000"); // heartbeat of size 5, complete
    malformed("00000002 80 00"); // heartbeat of size 2
    malformed("00000001 c0"); // time bit without a time: size 1
    malformed("00000002 c0 00"); // time bit, size 2
    malformed("0000000a c0 0000000000000000 00"); // time bit, size 10
}

#[test]
fn partial_input_reserves_the_rest_of_the_frame() {
    let o = PacketOptions::default();
    let mut src = BytesMut::from(&hex("000003e8 00 0001")[..]); // size 1000
    assert_eq!(decode(&mut src, &o), Ok(None));
    assert!(src.capacity() >= 4 + 1000, "capacity {}", src.capacity());
    assert_eq!(src.len(), 7, "nothing consumed");
}

#[test]
fn back_to_back_frames_decode_in_order() {
    let o = opts(Little, 2, 1);
    let frames = [
        data(0, 1, 1, b"one"),
        Frame::Heartbeat { time: None },
        data(1, -1, -1, b""),
        Frame::Heartbeat { time: Some(5) },
    ];
    let mut src = BytesMut::new();
    for f in &frames {
        encode(f, &o, &mut src).unwrap();
    }
    src.extend_from_slice(&hex("0a00")); // the start of a fifth frame
    for f in &frames {
        assert_eq!(decode(&mut src, &o).unwrap().as_ref(), Some(f));
    }
    assert_eq!(decode(&mut src, &o), Ok(None));
    assert_eq!(&src[..], hex("0a00"));
}

#[test]
fn payload_is_a_slice_of_the_read_buffer() {
    let o = PacketOptions::default();
    let mut src = BytesMut::with_capacity(64);
    encode(&data(0, 1, 2, b"zero-copy"), &o, &mut src).unwrap();
    let start = src.as_ptr() as usize;
    let Some(Frame::Data(p)) = decode(&mut src, &o).unwrap() else {
        panic!("expected data");
    };
    assert_eq!(p.payload.as_ptr() as usize, start + 4 + 5);
}

#[test]
fn unvalidated_widths_are_errors_not_panics() {
    // Config validation allows only 1/2/4 and 0/1/2/4; the codec carries any
    // width up to 4 bytes and refuses wider ones.
    for order in [Big, Little] {
        for (rb, sb) in [(3, 3), (0, 0)] {
            let o = opts(order, rb, sb);
            let route = if rb == 0 { 0 } else { -70_000 };
            let seq = if sb == 0 { 0 } else { 8_000_000 };
            let frames = [data(1, route, seq, b"abc"), data(2, 0, 0, b"")];
            let mut src = BytesMut::new();
            for f in &frames {
                encode(f, &o, &mut src).unwrap();
            }
            for f in &frames {
                assert_eq!(decode(&mut src, &o).unwrap().as_ref(), Some(f));
            }
            assert!(src.is_empty());
        }
        let mut dst = BytesMut::new();
        let err = encode_data(0, 1 << 23, 0, b"", &opts(order, 3, 0), &mut dst);
        assert_eq!(err, Err(CodecError::OutOfRange("route")));
        let err = encode_data(0, 0, 0, b"", &opts(order, 8, 0), &mut dst);
        assert_eq!(err, Err(CodecError::OutOfRange("route")));
        let err = encode_data(0, 0, 0, b"", &opts(order, 2, 5), &mut dst);
        assert_eq!(err, Err(CodecError::OutOfRange("seq")));
        assert!(dst.is_empty());

        let wide = opts(order, 8, 8);
        let mut src = BytesMut::new();
        encode_heartbeat(Some(1), &wide, &mut src);
        assert_eq!(
            decode(&mut src, &wide),
            Ok(Some(Frame::Heartbeat { time: Some(1) }))
        );
        let size = if order == Big { "00000011" } else { "11000000" };
        let mut src = BytesMut::from(&hex(&format!("{size} 00 {}", "00".repeat(16)))[..]);
        assert!(matches!(
            decode(&mut src, &wide),
            Err(CodecError::Malformed(_))
        ));
    }
}
