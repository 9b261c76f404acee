//! How fast are client-packet decode and encode, per option set and payload size?
//! (Rows named `mqtt qos0` are MQTT PUBLISHes on a 16-byte topic, the
//! `codec::mqtt` path: `decode` of client packets, `encode_publish` of the
//! gate's.)
//!
//! ```text
//! cargo bench --bench codec               # ~6 s
//! cargo bench --bench codec -- --quick    # ~1 s (or RINGGATE_BENCH_QUICK=1)
//! cargo bench --bench codec -- --json     # one JSON object per row
//! ```
//!
//! Each row streams batches of `BATCH` packets through one buffer, the way a
//! shard does after a read or before a write: `encode` appends a batch to a
//! reused buffer, `decode` drains a reused buffer holding a batch (its fill
//! is not timed). `memcpy` copies the same wire bytes into a reused buffer: the
//! floor either codec path could reach. MB/s counts wire bytes, headers
//! included.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ringgate::codec::mqtt;
use ringgate::codec::{decode, encode_data, ByteOrder, Frame, PacketOptions};

/// Packets per buffer.
const BATCH: usize = 1024;
/// An mqant request topic: module, handler, message id.
const MQTT_TOPIC: &str = "Login/HD_Login/1";

struct Row {
    options: &'static str,
    payload: usize,
    op: &'static str,
    packets: u64,
    bytes: u64,
    elapsed: Duration,
}

impl Row {
    fn per_sec(&self, n: u64) -> f64 {
        n as f64 / self.elapsed.as_secs_f64()
    }
    fn ns_per_packet(&self) -> f64 {
        self.elapsed.as_nanos() as f64 / self.packets as f64
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick")
        || std::env::var_os("RINGGATE_BENCH_QUICK").is_some_and(|v| v != "0");
    let json = args.iter().any(|a| a == "--json");
    let budget = Duration::from_millis(if quick { 30 } else { 250 });

    let option_sets = [
        ("2/2 big (default)", PacketOptions::default()),
        ("1/0 little", options(ByteOrder::Little, 1, 0)),
        ("4/4 big", options(ByteOrder::Big, 4, 4)),
    ];
    let mut rows = Vec::new();
    for (name, opts) in &option_sets {
        for payload_len in [32, 1024] {
            let payload = vec![0x5a; payload_len];
            let wire = encode_batch(&payload, opts, &mut BytesMut::new()).to_vec();
            let row = |op, (packets, elapsed)| Row {
                options: name,
                payload: payload_len,
                op,
                packets,
                bytes: packets / BATCH as u64 * wire.len() as u64,
                elapsed,
            };
            rows.push(row("encode", bench_encode(&payload, opts, budget)));
            rows.push(row("decode", bench_decode(&wire, opts, budget)));
            rows.push(row("memcpy", bench_memcpy(&wire, budget)));
        }
    }
    for payload_len in [32, 1024] {
        let payload = vec![0x5a; payload_len];
        let wire = mqtt_batch(&payload, &mut BytesMut::new()).to_vec();
        let row = |op, (packets, elapsed)| Row {
            options: "mqtt qos0",
            payload: payload_len,
            op,
            packets,
            bytes: packets / BATCH as u64 * wire.len() as u64,
            elapsed,
        };
        let mut dst = BytesMut::new();
        rows.push(row(
            "encode",
            run(budget, || {
                black_box(mqtt_batch(&payload, &mut dst));
            }),
        ));
        rows.push(row("decode", bench_mqtt_decode(&wire, budget)));
        rows.push(row("memcpy", bench_memcpy(&wire, budget)));
    }

    if json {
        for r in &rows {
            println!(
                "{{\"options\":\"{}\",\"payload_bytes\":{},\"op\":\"{}\",\"packets_per_sec\":{:.0},\"mb_per_sec\":{:.1},\"ns_per_packet\":{:.2}}}",
                r.options, r.payload, r.op, r.per_sec(r.packets), r.per_sec(r.bytes) / 1e6, r.ns_per_packet()
            );
        }
        return;
    }
    println!(
        "{:<18} {:>8} {:<7} {:>14} {:>10} {:>10}",
        "options", "payload", "op", "packets/s", "MB/s", "ns/packet"
    );
    for r in &rows {
        println!(
            "{:<18} {:>8} {:<7} {:>14.0} {:>10.1} {:>10.2}",
            r.options,
            format!("{} B", r.payload),
            r.op,
            r.per_sec(r.packets),
            r.per_sec(r.bytes) / 1e6,
            r.ns_per_packet()
        );
    }
    println!("(batches of {BATCH} packets; route/seq width and byte order as named; budget {budget:?} per row)");
}

fn options(byte_order: ByteOrder, route_bytes: u8, seq_bytes: u8) -> PacketOptions {
    PacketOptions {
        byte_order,
        route_bytes,
        seq_bytes,
        ..PacketOptions::default()
    }
}

/// Clears `dst` and appends one batch of packets with varying route and seq.
fn encode_batch<'a>(payload: &[u8], opts: &PacketOptions, dst: &'a mut BytesMut) -> &'a BytesMut {
    dst.clear();
    for i in 0..BATCH as i32 {
        encode_data(0, i & 0x7f, i & 0x7f, black_box(payload), opts, dst).expect("fits");
    }
    dst
}

/// Runs `batch` until `budget` has passed; returns packets and time.
fn run(budget: Duration, mut batch: impl FnMut()) -> (u64, Duration) {
    batch(); // warm-up
    let start = Instant::now();
    let mut packets = 0;
    while start.elapsed() < budget {
        batch();
        packets += BATCH as u64;
    }
    (packets, start.elapsed())
}

fn bench_encode(payload: &[u8], opts: &PacketOptions, budget: Duration) -> (u64, Duration) {
    let mut dst = BytesMut::new();
    run(budget, || {
        black_box(encode_batch(payload, opts, &mut dst));
    })
}

fn bench_memcpy(wire: &[u8], budget: Duration) -> (u64, Duration) {
    let mut dst = BytesMut::with_capacity(wire.len());
    run(budget, || {
        dst.clear();
        dst.extend_from_slice(black_box(wire));
        black_box(&dst);
    })
}

/// Like a shard: "read" a batch into a reused buffer (untimed), then drain
/// it with `decode` (timed). Dropping the payloads lets the buffer reclaim
/// its allocation, so the refill does not allocate either.
fn bench_decode(wire: &[u8], opts: &PacketOptions, budget: Duration) -> (u64, Duration) {
    let mut buf = BytesMut::with_capacity(wire.len());
    let mut elapsed = Duration::ZERO;
    let mut packets = 0;
    let mut warm = false;
    while elapsed < budget {
        buf.extend_from_slice(wire);
        let start = Instant::now();
        let mut decoded = 0;
        while let Some(frame) = decode(&mut buf, opts).expect("valid") {
            debug_assert!(matches!(frame, Frame::Data(_)));
            black_box(frame);
            decoded += 1;
        }
        if warm {
            elapsed += start.elapsed();
            packets += decoded;
        }
        warm = true;
    }
    (packets, elapsed)
}

/// Clears `dst` and appends one batch of the gate's QoS 0 PUBLISHes.
fn mqtt_batch<'a>(payload: &[u8], dst: &'a mut BytesMut) -> &'a BytesMut {
    dst.clear();
    for _ in 0..BATCH {
        mqtt::encode_publish(black_box(MQTT_TOPIC), black_box(payload), dst).expect("fits");
    }
    dst
}

/// [`bench_decode`] for MQTT: the same PUBLISHes read as client packets.
fn bench_mqtt_decode(wire: &[u8], budget: Duration) -> (u64, Duration) {
    let mut buf = BytesMut::with_capacity(wire.len());
    let mut elapsed = Duration::ZERO;
    let mut packets = 0;
    let mut warm = false;
    while elapsed < budget {
        buf.extend_from_slice(wire);
        let start = Instant::now();
        let mut decoded = 0;
        while let Some(packet) = mqtt::decode(&mut buf, 65_535).expect("valid") {
            debug_assert!(matches!(packet, mqtt::Inbound::Publish(_)));
            black_box(packet);
            decoded += 1;
        }
        if warm {
            elapsed += start.elapsed();
            packets += decoded;
        }
        warm = true;
    }
    (packets, elapsed)
}
