//! Property tests: round trips for arbitrary options and frames, a stream
//! split at every byte, random read sizes, and arbitrary bytes.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;

use super::*;

fn arb_options() -> impl Strategy<Value = PacketOptions> {
    (
        prop_oneof![Just(ByteOrder::Big), Just(ByteOrder::Little)],
        prop_oneof![Just(1u8), Just(2), Just(4)],
        prop_oneof![Just(0u8), Just(1), Just(2), Just(4)],
        0usize..300,
        any::<bool>(),
    )
        .prop_map(
            |(byte_order, route_bytes, seq_bytes, buffer_bytes, heartbeat_time)| PacketOptions {
                byte_order,
                route_bytes,
                seq_bytes,
                buffer_bytes,
                heartbeat_time,
            },
        )
}

/// Any value in the signed range of `width` bytes (0 for width 0).
fn arb_int(width: u8) -> BoxedStrategy<i32> {
    match width {
        0 => Just(0).boxed(),
        1 => any::<i8>().prop_map(i32::from).boxed(),
        2 => any::<i16>().prop_map(i32::from).boxed(),
        _ => any::<i32>().boxed(),
    }
}

/// A frame `o` can carry.
fn arb_frame(o: PacketOptions) -> impl Strategy<Value = Frame> {
    let data = (
        0u8..=EXT_MASK,
        arb_int(o.route_bytes),
        arb_int(o.seq_bytes),
        vec(any::<u8>(), 0..=o.buffer_bytes),
    )
        .prop_map(|(ext, route, seq, payload)| {
            Frame::Data(Packet {
                ext,
                route,
                seq,
                payload: Bytes::from(payload),
            })
        });
    let heartbeat = any::<Option<i64>>().prop_map(|time| Frame::Heartbeat { time });
    prop_oneof![4 => data, 1 => heartbeat]
}

/// Options and a few frames they can carry, encoded back to back.
fn arb_stream() -> impl Strategy<Value = (PacketOptions, Vec<Frame>, Vec<u8>)> {
    arb_options()
        .prop_flat_map(|o| (Just(o), vec(arb_frame(o), 1..6)))
        .prop_map(|(o, frames)| {
            let mut wire = BytesMut::new();
            for f in &frames {
                encode(f, &o, &mut wire).expect("frame fits its options");
            }
            (o, frames, wire.to_vec())
        })
}

/// Decodes every complete frame in `src`; panics on a decode error.
fn drain(src: &mut BytesMut, o: &PacketOptions, out: &mut Vec<Frame>) {
    while let Some(frame) = decode(src, o).expect("valid stream") {
        out.push(frame);
    }
}

proptest! {
    #[test]
    fn round_trip((o, frame) in arb_options().prop_flat_map(|o| (Just(o), arb_frame(o)))) {
        let mut wire = BytesMut::new();
        encode(&frame, &o, &mut wire).unwrap();
        let expected_len = match &frame {
            Frame::Heartbeat { time: None } => 5,
            Frame::Heartbeat { time: Some(_) } => 13,
            Frame::Data(p) => {
                4 + 1 + usize::from(o.route_bytes) + usize::from(o.seq_bytes) + p.payload.len()
            }
        };
        prop_assert_eq!(wire.len(), expected_len);
        let expected_header = match &frame {
            Frame::Heartbeat { time: None } => 0x80,
            Frame::Heartbeat { time: Some(_) } => 0xc0,
            Frame::Data(p) => p.ext,
        };
        prop_assert_eq!(wire[SIZE_BYTES], expected_header);
        prop_assert_eq!(decode(&mut wire, &o), Ok(Some(frame)));
        prop_assert!(wire.is_empty());
    }

    /// A timed heartbeat decodes to the same time whatever the sender put in
    /// bits 6..0 of its header: due's 0xC0 form and the size-only 0x80 form.
    #[test]
    fn timed_heartbeat_decodes_with_any_low_header_bits(
        o in arb_options(),
        time in any::<i64>(),
        low in 0u8..=EXT_MASK,
    ) {
        let mut wire = BytesMut::new();
        encode_heartbeat(Some(time), &o, &mut wire);
        wire[SIZE_BYTES] = HEARTBEAT_BIT | low;
        prop_assert_eq!(decode(&mut wire, &o), Ok(Some(Frame::Heartbeat { time: Some(time) })));
        prop_assert!(wire.is_empty());
    }

    #[test]
    fn stream_split_at_every_byte((o, frames, wire) in arb_stream()) {
        for cut in 0..=wire.len() {
            let mut src = BytesMut::from(&wire[..cut]);
            let mut out = Vec::new();
            drain(&mut src, &o, &mut out);
            src.extend_from_slice(&wire[cut..]);
            drain(&mut src, &o, &mut out);
            prop_assert_eq!(&out, &frames, "split at {}", cut);
            prop_assert!(src.is_empty());
        }
    }

    #[test]
    fn stream_in_random_chunks(
        (o, frames, wire) in arb_stream(),
        chunks in vec(1usize..40, 1..64),
    ) {
        let mut src = BytesMut::new();
        let mut out = Vec::new();
        let mut rest = &wire[..];
        for &n in chunks.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, tail) = rest.split_at(n.min(rest.len()));
            src.extend_from_slice(chunk);
            rest = tail;
            drain(&mut src, &o, &mut out);
        }
        prop_assert_eq!(out, frames);
        prop_assert!(src.is_empty());
    }

    /// Arbitrary bytes never panic, even under unvalidated options, and
    /// every `Ok(Some)` consumes input.
    #[test]
    fn arbitrary_bytes_never_panic(
        o in arb_options(),
        widths in proptest::option::of((0u8..8, 0u8..8)),
        bytes in vec(any::<u8>(), 0..200),
    ) {
        let o = match widths {
            Some((route_bytes, seq_bytes)) => PacketOptions { route_bytes, seq_bytes, ..o },
            None => o,
        };
        let mut src = BytesMut::from(&bytes[..]);
        loop {
            let before = src.len();
            match decode(&mut src, &o) {
                Ok(Some(_)) => prop_assert!(src.len() < before),
                Ok(None) => {
                    prop_assert_eq!(src.len(), before);
                    break;
                }
                Err(_) => break,
            }
        }
    }
}
