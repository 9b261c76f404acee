//! `connect`: a connection storm. How fast does the server take new
//! connections, and how long until a new client gets its first reply?
//!
//! Opens `--conns` connections at `--rate` per second (0: as fast as the
//! client can), each sending one request as soon as its handshake completes
//! and closing once the reply is in (or, with `--hold`, keeping it until
//! every attempt is over, so the server ends up holding them all). The
//! per-thread loop is in [`crate::storm`].

use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use clap::Args;
use serde::Serialize;

use crate::args::{parse_duration, ClientArgs};
use crate::report::{self, histogram, push_latency, Latency, Table};
use crate::storm::{self, Live, StormCounts, StormPlan};

/// Pause between the threads' start and the first attempt.
const LEAD: Duration = Duration::from_millis(20);

/// Flags of `connect`.
#[derive(Args, Clone, Debug)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Connection attempts, all threads together.
    #[arg(long, default_value_t = 1000)]
    pub conns: usize,
    /// Attempts per second, all threads together; 0: as fast as possible.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Payload bytes of each connection's request.
    #[arg(long, default_value_t = 32)]
    pub payload: usize,
    /// Route of each connection's request.
    #[arg(long, default_value_t = 1)]
    pub route: i32,
    /// Keep every connection open after its reply until all attempts are over.
    #[arg(long)]
    pub hold: bool,
    /// Close with a reset (`SO_LINGER` 0): no TIME_WAIT left on the client.
    #[arg(long)]
    pub reset: bool,
    /// An attempt without its reply after this long counts as a timeout.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Results of `connect`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ConnectReport {
    /// Always `connect`.
    pub scenario: &'static str,
    /// Server address.
    pub addr: String,
    /// `tcp`, `ws` or `wss`.
    pub transport: &'static str,
    /// Client threads.
    pub threads: usize,
    /// Attempts.
    pub conns: usize,
    /// Attempts per second asked for (`None`: as fast as possible).
    pub target_rate: Option<u64>,
    /// Connections held open until the end.
    pub hold: bool,
    /// First scheduled attempt → last attempt over, seconds.
    pub elapsed_s: f64,
    /// Attempts answered with the right reply.
    pub replied: u64,
    /// `replied / elapsed_s`.
    pub connects_per_s: f64,
    /// TLS + WebSocket upgrades completed (ws, wss; 0 for tcp).
    pub handshakes: u64,
    /// `handshakes / elapsed_s`.
    pub handshakes_per_s: f64,
    /// Attempts that did not get their reply (sum of the next six).
    pub failures: u64,
    /// Connections refused, reset or otherwise not established.
    pub connect_errors: u64,
    /// TLS handshakes or upgrades that failed (ws, wss).
    pub handshake_errors: u64,
    /// No reply within `--timeout`.
    pub timeouts: u64,
    /// Closed by the server before the reply.
    pub closed: u64,
    /// Error replies (header ext ≠ 0).
    pub errors: u64,
    /// Replies with a wrong route, seq or payload.
    pub mismatches: u64,
    /// Connections still open at the end (`--hold`).
    pub held: u64,
    /// Scheduled start → TCP handshake complete, µs.
    pub connect_us: Latency,
    /// Scheduled start → TLS and WebSocket upgrade done (`101` checked), µs
    /// (ws, wss).
    pub handshake_us: Latency,
    /// Scheduled start → first reply, µs.
    pub first_reply_us: Latency,
}

impl ConnectReport {
    /// The human table: first-reply latency columns; connect p50/p99 too.
    pub fn table(&self) -> String {
        let mut t = Table::new();
        t.col("scenario", self.scenario.to_string());
        let upgrade = self.transport != "tcp";
        if upgrade {
            t.col("transport", self.transport.to_string());
        }
        t.col("conns", self.conns.to_string());
        let rate = self
            .target_rate
            .map_or("max".to_string(), |r| r.to_string());
        t.col("rate", rate);
        t.col("elapsed", format!("{:.2}s", self.elapsed_s));
        t.col("replied", self.replied.to_string());
        t.col("conn/s", format!("{:.0}", self.connects_per_s));
        if upgrade {
            t.col("handshakes/s", format!("{:.0}", self.handshakes_per_s));
        }
        t.col("failures", self.failures.to_string());
        t.col("connect_p50us", self.connect_us.p50.to_string());
        t.col("connect_p99us", self.connect_us.p99.to_string());
        if upgrade {
            t.col("hs_p50us", self.handshake_us.p50.to_string());
            t.col("hs_p99us", self.handshake_us.p99.to_string());
        }
        push_latency(&mut t, &self.first_reply_us);
        let mut out = t.render();
        let problems = [
            ("connect errors", self.connect_errors),
            ("handshake errors", self.handshake_errors),
            ("timeouts", self.timeouts),
            ("closed by server", self.closed),
            ("error replies", self.errors),
            ("mismatches", self.mismatches),
        ];
        for (what, n) in problems {
            if n > 0 {
                out.push_str(&format!("{what}: {n}\n"));
            }
        }
        if self.hold {
            out.push_str(&format!("held open at the end: {}\n", self.held));
        }
        out
    }

    /// Fills the counts and the derived rate.
    fn count(&mut self, c: &StormCounts, elapsed: Duration) {
        self.replied = c.replied;
        self.connect_errors = c.connect_errors;
        self.timeouts = c.timeouts;
        self.closed = c.closed;
        self.errors = c.errors;
        self.mismatches = c.mismatches;
        self.handshakes = c.handshakes;
        self.handshake_errors = c.handshake_errors;
        self.failures = c.failures();
        self.elapsed_s = (elapsed.as_secs_f64() * 1000.0).round() / 1000.0;
        let per_s = |n: u64| {
            if elapsed.is_zero() {
                0.0
            } else {
                (n as f64 / elapsed.as_secs_f64()).round()
            }
        };
        self.connects_per_s = per_s(c.replied);
        self.handshakes_per_s = per_s(c.handshakes);
    }
}

/// Runs `connect` and prints its report.
pub fn run(args: ConnectArgs) -> Result<()> {
    args.client.threads.validate()?;
    if args.conns == 0 {
        bail!("--conns must be at least 1");
    }
    let opts = args.client.packet.options()?;
    if args.payload > opts.buffer_bytes {
        bail!(
            "--payload {} is over --buffer-bytes {}",
            args.payload,
            opts.buffer_bytes
        );
    }
    let threads = args.client.threads.threads.min(args.conns);
    let plan = Arc::new(StormPlan {
        addr: args.client.addr,
        dialer: args.client.dialer()?,
        opts,
        conns: args.conns,
        threads,
        rate: args.rate,
        route: args.route,
        payload: args.payload,
        hold: args.hold,
        reset: args.reset,
        timeout: args.timeout,
    });
    let live = Arc::new(Live::default());
    let release = Arc::new(Barrier::new(threads));
    let t0 = Instant::now() + LEAD;
    let mut handles = Vec::with_capacity(threads);
    for i in 0..threads {
        let cores = &args.client.threads.cores;
        let core = (!cores.is_empty()).then(|| cores[i % cores.len()]);
        let (plan, live, release) = (plan.clone(), live.clone(), release.clone());
        handles.push(
            std::thread::Builder::new()
                .name(format!("storm-{i}"))
                .spawn(move || {
                    if let Some(id) = core {
                        if !core_affinity::set_for_current(core_affinity::CoreId { id }) {
                            eprintln!("storm-{i}: could not pin to core {id}");
                        }
                    }
                    storm::run(&plan, i, t0, &live, || {
                        release.wait();
                    })
                })?,
        );
    }

    let mut t = 0u64;
    let mut last = 0u64;
    while !handles.iter().all(|h| h.is_finished()) {
        std::thread::sleep(Duration::from_millis(50));
        if t0.elapsed() >= Duration::from_secs(t + 1) {
            t += 1;
            let replied = live.replied.load(Ordering::Relaxed);
            eprintln!(
                "t={t}s conn/s={} started={} replied={replied} failed={}",
                replied - last,
                live.started.load(Ordering::Relaxed),
                live.failed.load(Ordering::Relaxed),
            );
            last = replied;
        }
    }

    let mut counts = StormCounts::default();
    let (mut connect, mut handshake, mut first_reply) = (histogram(), histogram(), histogram());
    let (mut last_end, mut held) = (None, 0);
    for h in handles {
        let r = h.join().map_err(|_| anyhow!("a storm thread panicked"))??;
        counts.add(&r.counts);
        connect.add(&r.connect)?;
        handshake.add(&r.handshake)?;
        first_reply.add(&r.first_reply)?;
        last_end = last_end.max(r.last_end);
        held += r.held;
    }
    let mut r = ConnectReport {
        scenario: "connect",
        addr: plan.addr.to_string(),
        transport: plan.dialer.transport.as_str(),
        threads,
        conns: plan.conns,
        target_rate: (plan.rate > 0).then_some(plan.rate),
        hold: plan.hold,
        held,
        connect_us: Latency::of(&connect),
        handshake_us: Latency::of(&handshake),
        first_reply_us: Latency::of(&first_reply),
        ..ConnectReport::default()
    };
    r.count(
        &counts,
        last_end.map_or(Duration::ZERO, |e| e.duration_since(t0)),
    );
    report::print(args.client.json, &r, &r.table())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_and_failures_are_derived() {
        let mut r = ConnectReport {
            scenario: "connect",
            transport: "tcp",
            conns: 1000,
            ..ConnectReport::default()
        };
        let c = StormCounts {
            replied: 990,
            connect_errors: 4,
            timeouts: 3,
            closed: 2,
            errors: 1,
            mismatches: 0,
            handshakes: 0,
            handshake_errors: 0,
        };
        r.count(&c, Duration::from_millis(500));
        assert_eq!(r.failures, 10);
        assert_eq!(r.connects_per_s, 1980.0);
        assert_eq!(r.elapsed_s, 0.5);
        let table = r.table();
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].starts_with("scenario  conns  rate  elapsed"),
            "{table}"
        );
        assert!(lines[1].contains("max"), "{table}");
        assert!(lines.contains(&"timeouts: 3"), "{table}");
    }

    #[test]
    fn schedule_spreads_attempts_over_the_rate() {
        let addr = "127.0.0.1:9".parse().unwrap();
        let plan = StormPlan {
            addr,
            dialer: crate::transport::Dialer::tcp(addr),
            opts: ringgate::codec::PacketOptions::default(),
            conns: 10,
            threads: 2,
            rate: 4,
            route: 1,
            payload: 8,
            hold: false,
            reset: false,
            timeout: Duration::from_secs(1),
        };
        assert_eq!(plan.due(0), Duration::ZERO);
        assert_eq!(plan.due(1), Duration::from_millis(250));
        assert_eq!(plan.due(8), Duration::from_secs(2));
        let burst = StormPlan { rate: 0, ..plan };
        assert_eq!(burst.due(9), Duration::ZERO);
    }
}
