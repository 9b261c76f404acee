//! What does counting for the admin port cost a shard per packet?
//!
//! ```text
//! cargo bench --bench metrics               # ~2 s
//! cargo bench --bench metrics -- --quick    # ~0.2 s (also what `cargo test --benches` runs)
//! cargo bench --bench metrics -- --json     # one JSON object per row
//! ```
//!
//! Everything runs on one thread against one shard's `ShardStats`, as the
//! shard does (relaxed atomics on its own cache lines, no contention):
//!
//! * `before: packet` — what a request cost in counters before the admin
//!   port: `packets_in` and `to_node` (one `fetch_add` each);
//! * `after: packet` — the same plus what this work added on the path of a
//!   request that arrives alone in its read and is answered: the
//!   transport's `bytes_in` for the read, its `bytes_out` for the reply's
//!   send (the totals are summed when read), and one round-trip histogram
//!   record (a binary search over 36 bounds, two `fetch_add`s). Real reads
//!   and sends carry several packets, so this is the worst case;
//! * `histogram record` — the histogram alone, over durations spread from
//!   20 µs to 20 s.
//!
//! Loop turns (3 `fetch_add`s per turn, not per packet) and the gauges
//! (published 4 times a second) are left out: they do not scale with
//! packets.

use std::hint::black_box;
use std::time::{Duration, Instant};

use ringgate::stats::ShardStats;

struct Row {
    op: &'static str,
    ops: u64,
    elapsed: Duration,
}

impl Row {
    fn ns_per_op(&self) -> f64 {
        self.elapsed.as_nanos() as f64 / self.ops as f64
    }
}

/// Durations to record, ns: a spread over the buckets (LCG, fixed seed).
fn durations() -> Vec<u64> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..4096)
        .map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            // 20 µs × 2^(0..20): log-uniform from 20 µs to ~20 s.
            20_000u64 << ((x >> 33) % 20)
        })
        .collect()
}

fn run(budget: Duration, mut f: impl FnMut(u64)) -> (u64, Duration) {
    let start = Instant::now();
    let mut ops = 0u64;
    while start.elapsed() < budget {
        for _ in 0..10_000 {
            f(ops);
            ops += 1;
        }
    }
    (ops, start.elapsed())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick") || !args.iter().any(|a| a == "--bench");
    let json = args.iter().any(|a| a == "--json");
    let budget = Duration::from_millis(if quick { 60 } else { 600 });
    let st = ShardStats::default();
    let ds = durations();
    let mask = ds.len() - 1;

    let before = run(budget, |_| {
        ShardStats::add(&st.packets_in, 1);
        ShardStats::add(&st.to_node, 1);
    });
    let after = run(budget, |i| {
        ShardStats::add(&st.packets_in, 1);
        ShardStats::add(&st.to_node, 1);
        ShardStats::add(&st.net[0].bytes_in, black_box(13));
        ShardStats::add(&st.net[0].bytes_out, black_box(13));
        st.latency.record(black_box(ds[i as usize & mask]));
    });
    let hist = run(budget, |i| {
        st.latency.record(black_box(ds[i as usize & mask]))
    });
    black_box(&st);
    let rows = [
        Row {
            op: "before: packet",
            ops: before.0,
            elapsed: before.1,
        },
        Row {
            op: "after: packet",
            ops: after.0,
            elapsed: after.1,
        },
        Row {
            op: "histogram record",
            ops: hist.0,
            elapsed: hist.1,
        },
    ];
    if json {
        for r in &rows {
            println!(
                "{{\"op\":\"{}\",\"ops\":{},\"ns_per_op\":{:.2}}}",
                r.op,
                r.ops,
                r.ns_per_op()
            );
        }
        return;
    }
    println!("{:<18} {:>14} {:>8}", "op", "ops", "ns/op");
    for r in &rows {
        println!("{:<18} {:>14} {:>8.2}", r.op, r.ops, r.ns_per_op());
    }
    let added = rows[1].ns_per_op() - rows[0].ns_per_op();
    println!("added per answered request (worst case, one packet per read): {added:.2} ns");
}
