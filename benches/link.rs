//! How fast is the gate↔node batch encode/decode, per message, by batch size?
//!
//! ```text
//! cargo bench --bench link               # ~3 s
//! cargo bench --bench link -- --quick    # ~0.3 s (also what `cargo test --benches` runs)
//! cargo bench --bench link -- --json     # one JSON object per row
//! ```
//!
//! Each row handles batches of `batch` `Deliver` messages (32 B payload, a
//! session id, uid, route and seq: what the gate sends a node for each client
//! packet):
//!
//! * `encode` — push every message into a reused [`BatchBuf`] and `take()`
//!   the frame, as a shard does once per loop turn and link;
//! * `decode` — cut the frame with [`decode_frame`] and decode it with
//!   `ToNodeBatch::decode`, touching each payload, as a node does per read;
//! * `memcpy` — copy the same frame bytes into a reused buffer: the floor;
//! * `no-id` — `encode` of the same messages without a request id (the
//!   bytes a route nobody waits on costs, and protocol v1's `Deliver`);
//! * `track` — what the gate adds per request on a route a node answers:
//!   [`PendingRequests::start`] when it is forwarded and `finish` when its
//!   reply arrives, with `batch` requests in flight (in order).
//!
//! ns/msg is the time of a whole batch divided by its messages, so the fixed
//! cost of a frame (its length prefix, its `take`, its slice) is spread over
//! the batch: the gap between batch 1 and batch 256 is what batching buys.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use prost::Message;
use ringgate::ids::SessionId;
use ringgate::link::proto::{to_node, Deliver, ToNode, ToNodeBatch};
use ringgate::link::{decode_frame, BatchBuf};
use ringgate::shard::requests::PendingRequests;

/// Frame limit of the encoder and the decoder (`link.max_frame_bytes` default).
const MAX_FRAME: usize = 16 << 20;
/// Payload bytes per message.
const PAYLOAD: usize = 32;

struct Row {
    batch: usize,
    op: &'static str,
    msgs: u64,
    frame_bytes: usize,
    elapsed: Duration,
}

impl Row {
    fn msgs_per_sec(&self) -> f64 {
        self.msgs as f64 / self.elapsed.as_secs_f64()
    }
    fn ns_per_msg(&self) -> f64 {
        self.elapsed.as_nanos() as f64 / self.msgs as f64
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: be quick there.
    let quick = args.iter().any(|a| a == "--quick")
        || !args.iter().any(|a| a == "--bench")
        || std::env::var_os("RINGGATE_BENCH_QUICK").is_some_and(|v| v != "0");
    let json = args.iter().any(|a| a == "--json");
    let budget = Duration::from_millis(if quick { 25 } else { 300 });

    let mut rows = Vec::new();
    for batch in [1usize, 16, 256] {
        let msgs = messages(batch);
        let frame = encode_all(&msgs);
        check(&frame, &msgs);
        let row = |op, (n, elapsed)| Row {
            batch,
            op,
            msgs: n,
            frame_bytes: frame.len(),
            elapsed,
        };
        rows.push(row("encode", bench_encode(&msgs, budget)));
        rows.push(row("prost", bench_prost(&msgs, budget)));
        rows.push(row("decode", bench_decode(&frame, batch, budget)));
        rows.push(row("memcpy", bench_memcpy(&frame, batch, budget)));
        let no_id: Vec<ToNode> = msgs.iter().cloned().map(without_id).collect();
        rows.push(row("no-id", bench_encode(&no_id, budget)));
        rows.push(row("track", bench_track(batch, budget)));
    }

    if json {
        for r in &rows {
            println!(
                "{{\"bench\":\"link\",\"batch\":{},\"op\":\"{}\",\"frame_bytes\":{},\"msgs_per_sec\":{:.0},\"ns_per_msg\":{:.2}}}",
                r.batch, r.op, r.frame_bytes, r.msgs_per_sec(), r.ns_per_msg()
            );
        }
        return;
    }
    println!(
        "{:>6} {:<7} {:>12} {:>14} {:>9}",
        "batch", "op", "frame bytes", "msgs/s", "ns/msg"
    );
    for r in &rows {
        println!(
            "{:>6} {:<7} {:>12} {:>14.0} {:>9.1}",
            r.batch,
            r.op,
            r.frame_bytes,
            r.msgs_per_sec(),
            r.ns_per_msg()
        );
    }
    println!(
        "(Deliver with a {PAYLOAD} B payload, settings off; budget {budget:?} per row{})",
        if quick { ", quick" } else { "" }
    );
}

/// `n` Deliver messages as a shard builds them (payloads are `Bytes` slices).
fn messages(n: usize) -> Vec<ToNode> {
    let payload = Bytes::from(vec![0x5au8; PAYLOAD]);
    (0..n)
        .map(|i| ToNode {
            msg: Some(to_node::Msg::Deliver(Deliver {
                session_id: (1u64 << 48) | (1000 + i as u64),
                uid: 0,
                route: 1,
                seq: i as i32 & 0x7fff,
                payload: payload.clone(),
                settings: Default::default(),
                request_id: i as u64 + 1,
                ..Default::default()
            })),
        })
        .collect()
}

/// Every message in one frame, for the decode and memcpy rows.
fn encode_all(msgs: &[ToNode]) -> BytesMut {
    let mut buf = BatchBuf::new(MAX_FRAME);
    for m in msgs {
        buf.push(m);
    }
    buf.take()
}

/// The frame must decode back to the messages (and be a single frame).
fn check(frame: &BytesMut, msgs: &[ToNode]) {
    let mut src = frame.clone();
    let body = decode_frame(&mut src, MAX_FRAME)
        .expect("frame")
        .expect("whole");
    assert!(src.is_empty(), "one frame per batch");
    assert_eq!(ToNodeBatch::decode(body).expect("decodes").msgs, msgs);
}

/// Runs `batch` until `budget` has passed (after one untimed warm-up);
/// returns how many messages it handled and the time.
fn run(budget: Duration, per_batch: usize, mut batch: impl FnMut()) -> (u64, Duration) {
    batch();
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < budget {
        for _ in 0..64 {
            batch();
        }
        n += 64 * per_batch as u64;
    }
    (n, start.elapsed())
}

fn bench_encode(msgs: &[ToNode], budget: Duration) -> (u64, Duration) {
    let mut buf = BatchBuf::new(MAX_FRAME);
    run(budget, msgs.len(), || {
        for m in msgs {
            buf.push(black_box(m));
        }
        black_box(buf.take());
    })
}

/// Plain prost: `encode_length_delimited` of each message into a reused
/// buffer, no frame: what `BatchBuf` adds to prost is the gap to `encode`.
fn bench_prost(msgs: &[ToNode], budget: Duration) -> (u64, Duration) {
    let mut buf = BytesMut::new();
    run(budget, msgs.len(), || {
        buf.clear();
        for m in msgs {
            black_box(m)
                .encode_length_delimited(&mut buf)
                .expect("room");
        }
        black_box(&buf);
    })
}

/// Like a node after a read: the frame sits in a reused read buffer (the
/// refill is timed too: a copy of the frame, shown by the memcpy row).
fn bench_decode(frame: &[u8], per_batch: usize, budget: Duration) -> (u64, Duration) {
    let mut src = BytesMut::with_capacity(frame.len());
    run(budget, per_batch, || {
        src.extend_from_slice(black_box(frame));
        let body = decode_frame(&mut src, MAX_FRAME)
            .expect("valid")
            .expect("whole");
        let batch = ToNodeBatch::decode(body).expect("valid");
        for m in &batch.msgs {
            if let Some(to_node::Msg::Deliver(d)) = &m.msg {
                black_box(d.payload.len());
            }
        }
    })
}

fn without_id(mut m: ToNode) -> ToNode {
    if let Some(to_node::Msg::Deliver(d)) = &mut m.msg {
        d.request_id = 0;
    }
    m
}

fn bench_track(per_batch: usize, budget: Duration) -> (u64, Duration) {
    let mut pending = PendingRequests::new(1);
    let mut ids = Vec::with_capacity(per_batch);
    let mut now = 0;
    run(budget, per_batch, || {
        now += 1;
        for i in 0..per_batch {
            let sid = SessionId((1 << 48) | i as u64);
            ids.push(pending.start(0, sid, 1, i as i32, now, 5000));
        }
        for id in ids.drain(..) {
            black_box(pending.finish(black_box(id), 0));
        }
    })
}

fn bench_memcpy(frame: &[u8], per_batch: usize, budget: Duration) -> (u64, Duration) {
    let mut dst = BytesMut::with_capacity(frame.len());
    run(budget, per_batch, || {
        dst.clear();
        dst.extend_from_slice(black_box(frame));
        black_box(&dst);
    })
}
