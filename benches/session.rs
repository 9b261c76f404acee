//! What does the session state machine cost per packet, and the shard's
//! timer wheel per connection?
//!
//! ```text
//! cargo bench --bench session               # ~3 s
//! cargo bench --bench session -- --quick    # ~0.3 s (also what `cargo test --benches` runs)
//! cargo bench --bench session -- --json     # one JSON object per row
//! ```
//!
//! `CONNS` sessions live in a `Vec`, visited in a scattered order (a stride
//! that is prime to `CONNS`), the way packets from many clients arrive:
//!
//! * `inbound` — `Session::handle_inbound(now)`: what every read costs;
//! * `inbound+deadline` — that plus `poll_expired` and `next_deadline`, as if
//!   the deadline were recomputed on every packet (the shard does it only when
//!   a timer fires, see `timer cycle`);
//! * `store (floor)` — one `u64` store per packet into a `Vec<u64>`: the
//!   floor `inbound` is measured against;
//! * `wheel insert` — `TimerWheel::insert` of one entry per connection at its
//!   idle deadline (10 ms ticks, 4096 slots, as the shard);
//! * `timer cycle` — per connection whose entry fires: `advance` hands it out,
//!   `poll_expired` says "not yet" (it had traffic), `next_deadline` and
//!   `insert` re-arm it. This is the shard's per-connection timer cost, paid
//!   once per idle interval, not per packet.

use std::hint::black_box;
use std::time::{Duration, Instant};

use ringgate::config::HeartbeatMechanism;
use ringgate::session::{Millis, Rules, Session};
use ringgate::shard::TimerWheel;
use ringgate::{SessionId, ShardId};

/// Sessions per shard in the bench.
const CONNS: usize = 10_000;
/// Visit order stride (prime, so every session is visited once per lap).
const STRIDE: usize = 7919;
/// Shard timer tick, ms (as `shard::TICK_MS`).
const TICK_MS: u64 = 10;
/// Wheel slots (as the shard).
const SLOTS: usize = 4096;

struct Row {
    op: &'static str,
    ops: u64,
    elapsed: Duration,
}

impl Row {
    fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
    fn ns_per_op(&self) -> f64 {
        self.elapsed.as_nanos() as f64 / self.ops as f64
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: be quick there.
    let quick = args.iter().any(|a| a == "--quick")
        || !args.iter().any(|a| a == "--bench")
        || std::env::var_os("RINGGATE_BENCH_QUICK").is_some_and(|v| v != "0");
    let json = args.iter().any(|a| a == "--json");
    let budget = Duration::from_millis(if quick { 25 } else { 400 });
    let rules = Rules {
        heartbeat_ms: 10_000,
        mechanism: HeartbeatMechanism::Resp,
        authorize_ms: 0,
    };

    let rows = [
        Row::of("inbound", bench_inbound(budget, &rules, false)),
        Row::of("inbound+deadline", bench_inbound(budget, &rules, true)),
        Row::of("store (floor)", bench_store(budget)),
        Row::of("wheel insert", bench_insert(budget)),
        Row::of("timer cycle", bench_cycle(budget, &rules)),
    ];

    if json {
        for r in &rows {
            println!(
                "{{\"bench\":\"session\",\"op\":\"{}\",\"conns\":{CONNS},\"ops_per_sec\":{:.0},\"ns_per_op\":{:.2}}}",
                r.op,
                r.ops_per_sec(),
                r.ns_per_op()
            );
        }
        return;
    }
    println!("{:<18} {:>14} {:>8}", "op", "ops/s", "ns/op");
    for r in &rows {
        println!(
            "{:<18} {:>14.0} {:>8.2}",
            r.op,
            r.ops_per_sec(),
            r.ns_per_op()
        );
    }
    println!(
        "({CONNS} sessions, heartbeat 10 s, {TICK_MS} ms ticks, {SLOTS} slots; budget {budget:?} per row{})",
        if quick { ", quick" } else { "" }
    );
}

impl Row {
    fn of(op: &'static str, (ops, elapsed): (u64, Duration)) -> Row {
        Row { op, ops, elapsed }
    }
}

fn sessions() -> Vec<Session> {
    (0..CONNS)
        .map(|i| Session::new(SessionId::new(ShardId(0), i as u64 + 1), 0))
        .collect()
}

/// Runs `lap` (which handles `per_lap` operations) until `budget` has
/// passed, after one untimed warm-up lap.
fn run(budget: Duration, per_lap: u64, mut lap: impl FnMut(u64)) -> (u64, Duration) {
    lap(0);
    let start = Instant::now();
    let (mut ops, mut i) = (0, 1);
    while start.elapsed() < budget {
        lap(i);
        ops += per_lap;
        i += 1;
    }
    (ops, start.elapsed())
}

fn bench_inbound(budget: Duration, rules: &Rules, deadline: bool) -> (u64, Duration) {
    let mut all = sessions();
    run(budget, CONNS as u64, |lap| {
        let mut j = 0;
        for k in 0..CONNS as u64 {
            let now: Millis = lap * 1000 + k / 64;
            let s = &mut all[j];
            s.handle_inbound(black_box(now));
            if deadline {
                black_box(s.poll_expired(now, rules));
                black_box(s.next_deadline(rules));
            }
            j = (j + STRIDE) % CONNS;
        }
    })
}

fn bench_store(budget: Duration) -> (u64, Duration) {
    let mut last_rx = vec![0u64; CONNS];
    run(budget, CONNS as u64, |lap| {
        let mut j = 0;
        for k in 0..CONNS as u64 {
            last_rx[j] = black_box(lap * 1000 + k / 64);
            j = (j + STRIDE) % CONNS;
        }
        black_box(&last_rx);
    })
}

fn bench_insert(budget: Duration) -> (u64, Duration) {
    let mut wheel = TimerWheel::new(SLOTS, 0);
    let mut out = Vec::with_capacity(CONNS);
    let (mut base, mut ops, mut elapsed) = (0u64, 0u64, Duration::ZERO);
    let mut warm = false;
    while elapsed < budget {
        // One entry per connection, deadlines spread over 20 s (2 × heartbeat).
        let start = Instant::now();
        for k in 0..CONNS as u64 {
            wheel.insert(black_box(base + 1 + (k * 2000) / CONNS as u64), k as u32);
        }
        if warm {
            elapsed += start.elapsed();
            ops += CONNS as u64;
        }
        warm = true;
        // Empty the wheel for the next lap (not timed).
        base += 2001;
        wheel.advance(base, &mut out);
        out.clear();
    }
    (ops, elapsed)
}

/// One idle interval of a shard with `CONNS` busy connections: every
/// connection's entry fires once, finds traffic since, and is re-armed.
fn bench_cycle(budget: Duration, rules: &Rules) -> (u64, Duration) {
    let mut all = sessions();
    let mut wheel = TimerWheel::new(SLOTS, 0);
    let idle_ticks = rules.idle_ms().expect("heartbeat on") / TICK_MS;
    // Stagger the connections over one idle interval, as accepts would.
    for (i, s) in all.iter_mut().enumerate() {
        let accepted = (i as u64 * idle_ticks / CONNS as u64) * TICK_MS;
        s.handle_inbound(accepted);
        let at = s.next_deadline(rules).expect("deadline");
        wheel.insert(at.div_ceil(TICK_MS), i as u32);
    }
    let mut fired = Vec::with_capacity(CONNS);
    let mut tick = 0u64;
    run(budget, CONNS as u64, |_| {
        // One idle interval, tick by tick, as `run_timers` does.
        for _ in 0..idle_ticks {
            tick += 1;
            let now = tick * TICK_MS;
            wheel.advance(tick, &mut fired);
            for idx in fired.drain(..) {
                let s = &mut all[idx as usize];
                // The client sent something a moment ago: not expired.
                s.handle_inbound(now - 1);
                if s.poll_expired(now, rules).is_none() {
                    let at = s.next_deadline(rules).expect("deadline");
                    wheel.insert(at.div_ceil(TICK_MS), idx);
                }
            }
        }
        assert_eq!(wheel.len(), CONNS);
    })
}
