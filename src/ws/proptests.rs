//! Property tests: any sequence of messages, fragmented anyhow with control
//! frames between fragments and masked with any keys, decodes to the same
//! messages whatever the read sizes; arbitrary bytes never panic.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;

use super::tests::client_frame;
use super::*;

/// One message to send: a binary message cut into fragments (with a ping
/// after some of them), or a lone ping.
#[derive(Clone, Debug)]
enum Send {
    Binary {
        data: Vec<u8>,
        cuts: Vec<usize>,
        pings_after: Vec<bool>,
    },
    Ping(Vec<u8>),
}

fn arb_send() -> impl Strategy<Value = Send> {
    let binary = (
        vec(any::<u8>(), 0..600),
        vec(0usize..600, 0..4),
        vec(any::<bool>(), 4),
    )
        .prop_map(|(data, mut cuts, pings_after)| {
            cuts.iter_mut().for_each(|c| *c %= data.len() + 1);
            cuts.sort_unstable();
            Send::Binary {
                data,
                cuts,
                pings_after,
            }
        });
    let ping = vec(any::<u8>(), 0..=125).prop_map(Send::Ping);
    prop_oneof![4 => binary, 1 => ping]
}

/// The wire bytes and the messages they must decode to.
fn encode(sends: &[Send], keys: &[[u8; 4]]) -> (Vec<u8>, Vec<Message>) {
    let mut keys = keys.iter().cycle();
    let mut bytes = Vec::new();
    let mut expected = Vec::new();
    for s in sends {
        match s {
            Send::Ping(p) => {
                bytes.extend(client_frame(0x89, p, *keys.next().unwrap()));
                expected.push(Message::Ping(Bytes::copy_from_slice(p)));
            }
            Send::Binary {
                data,
                cuts,
                pings_after,
            } => {
                let mut bounds = vec![0];
                bounds.extend(cuts);
                bounds.push(data.len());
                let n = bounds.len() - 1;
                for i in 0..n {
                    let opcode = if i == 0 { 0x02 } else { 0x00 };
                    let fin = if i == n - 1 { 0x80 } else { 0 };
                    let piece = &data[bounds[i]..bounds[i + 1]];
                    bytes.extend(client_frame(opcode | fin, piece, *keys.next().unwrap()));
                    if i < n - 1 && pings_after[i % pings_after.len()] {
                        bytes.extend(client_frame(0x89, &[i as u8], *keys.next().unwrap()));
                        expected.push(Message::Ping(Bytes::copy_from_slice(&[i as u8])));
                    }
                }
                expected.push(Message::Binary(BytesMut::from(&data[..])));
            }
        }
    }
    (bytes, expected)
}

/// Decodes `bytes` arriving in reads of the given sizes (cycled): the
/// messages and the count of bytes left undecoded.
fn decode_in_reads(bytes: &[u8], reads: &[usize]) -> Result<(Vec<Message>, usize), WsError> {
    let mut r = Reassembler::new(1000);
    let mut src = BytesMut::new();
    let mut got = Vec::new();
    let mut at = 0;
    let mut sizes = reads.iter().cycle();
    while at < bytes.len() {
        let n = (*sizes.next().unwrap()).min(bytes.len() - at);
        src.extend_from_slice(&bytes[at..at + n]);
        at += n;
        while let Some(m) = r.decode(&mut src)? {
            got.push(m);
        }
    }
    Ok((got, src.len()))
}

proptest! {
    #[test]
    fn any_reads_give_the_same_messages(
        sends in vec(arb_send(), 1..6),
        keys in vec(any::<[u8; 4]>(), 1..5),
        reads in vec(1usize..200, 1..8),
    ) {
        let (bytes, expected) = encode(&sends, &keys);
        prop_assert_eq!(decode_in_reads(&bytes, &[bytes.len().max(1)]).unwrap(), (expected.clone(), 0));
        prop_assert_eq!(decode_in_reads(&bytes, &reads).unwrap(), (expected, 0));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..300), read in 1usize..50) {
        let _ = decode_in_reads(&bytes, &[read]);
    }

    #[test]
    fn arbitrary_requests_never_panic(bytes in vec(any::<u8>(), 0..600)) {
        let policy = HandshakePolicy {
            path: "/".into(),
            origins: Origins::Any,
            trust_proxy: true,
            mqtt_path: None,
        };
        let _ = upgrade(&mut BytesMut::from(&bytes[..]), &policy);
    }

    #[test]
    fn server_frames_round_trip(len in 0usize..70_000, key in any::<[u8; 4]>()) {
        // A server frame, masked as a client would, decodes to its payload.
        let payload: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        let mut dst = BytesMut::new();
        encode_binary(&payload, &mut dst);
        let h = frame::parse_header(&dst).unwrap().unwrap();
        prop_assert_eq!(h.len as usize, len);
        let client = client_frame(0x82, &dst[h.header_len..], key);
        let got = decode_in_reads(&client, &[4096]).map_err(|e| TestCaseError::fail(e.to_string()));
        if len <= 1000 {
            prop_assert_eq!(got?, (vec![Message::Binary(BytesMut::from(&payload[..]))], 0));
        } else {
            prop_assert!(got.is_err(), "over the reassembler's 1000-byte limit");
        }
    }
}
