//! The byte-level example of `docs/node-protocol.md` §12, checked: if the
//! encoding (or the proto) changes, the document must change with it.

use bytes::Bytes;

use super::proto::{
    to_gate, to_node, Deliver, GateHello, NodeHello, Push, RouteSpec, ToGate, ToNode,
};
use super::BatchBuf;

const SESSION: u64 = 0x0001_0000_0300_0005;
const REQUEST: u64 = 0x0001_0000_0000_002a;

fn frame(m: &impl prost::Message) -> Vec<u8> {
    let mut b = BatchBuf::new(1 << 20);
    b.push(m);
    b.take().to_vec()
}

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

#[test]
fn the_documented_hello_deliver_and_reply_bytes_are_what_we_send() {
    let gate_hello = ToNode {
        msg: Some(to_node::Msg::Hello(GateHello {
            gate_id: "g1".into(),
            shard: 1,
            shards: 2,
            version: 2,
            max_frame_bytes: 65536,
            epoch_ms: 1_700_000_000_000,
            request_timeout_ms: 5000,
        })),
    };
    assert_eq!(
        frame(&gate_hello),
        hex(
            "00 00 00 1c 0a 1a 0a 18 0a 02 67 31 10 01 18 02 20 02 28 80 80 04
             30 80 d0 95 ff bc 31 38 88 27"
        )
    );
    let node_hello = ToGate {
        msg: Some(to_gate::Msg::Hello(NodeHello {
            service: "echo".into(),
            node_id: "echo-1".into(),
            version: 2,
            reply_routes: vec![RouteSpec {
                route: 1,
                timeout_ms: 0,
            }],
            ..Default::default()
        })),
    };
    assert_eq!(
        frame(&node_hello),
        hex(
            "00 00 00 18 0a 16 0a 14 0a 04 65 63 68 6f 12 06 65 63 68 6f 2d 31 20 02
             3a 02 08 01"
        )
    );
    let deliver = ToNode {
        msg: Some(to_node::Msg::Deliver(Deliver {
            session_id: SESSION,
            route: 1,
            seq: 7,
            payload: Bytes::from_static(b"hi"),
            request_id: REQUEST,
            ..Default::default()
        })),
    };
    assert_eq!(
        frame(&deliver),
        hex(
            "00 00 00 1d 0a 1b 22 19 09 05 00 00 03 00 00 01 00 18 01 20 07 2a 02 68 69
             38 aa 80 80 80 80 80 40"
        )
    );
    let reply = ToGate {
        msg: Some(to_gate::Msg::Push(Push {
            session_id: SESSION,
            route: 1,
            seq: 7,
            payload: Bytes::from_static(b"hi"),
            ext: 0,
            request_id: REQUEST,
        })),
    };
    assert_eq!(
        frame(&reply),
        hex(
            "00 00 00 1d 0a 1b 22 19 09 05 00 00 03 00 00 01 00 10 01 18 07 22 02 68 69
             30 aa 80 80 80 80 80 40"
        )
    );
    assert_eq!(SESSION >> 48, 1, "the example session lives on shard 1");
}

#[test]
fn the_documented_home_shards_hold() {
    use crate::ids::{ShardId, UserId};
    assert_eq!(UserId(42).home_shard(2), ShardId(0));
    assert_eq!(UserId(1000).home_shard(2), ShardId(1));
}
