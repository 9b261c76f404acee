//! `push` and `broadcast`: packets the *node* starts, measured from the
//! node's call to each client's receipt.
//!
//! The load generator runs a node of its own (`ringgate::node`), which the
//! gate dials like any other (`--node-listen`, listed under the gate's
//! `[[nodes]]`). Clients connect to the gate over any transport and log in
//! on `--login-route` with their uid (connection `g` is uid `g + 1`); the
//! node binds each (`ctx.bind`, on worker threads since it blocks) and
//! answers `ok`. Then:
//!
//! * `push`: `--push-threads` node threads push by uid
//!   (`push_uid_nowait`, `--push-route`) to their users round robin, so
//!   users homed on every shard get them and most pushes cross shards at
//!   least once. `--rate R` pushes per second in all, open loop (latency from
//!   each push's *intended* time); `--rate 0` as fast as possible with at
//!   most `--max-inflight` pushes sent and not yet delivered.
//! * `broadcast`: one node thread calls `broadcast_nowait` every
//!   `--interval`; each broadcast reaches every logged-in connection.
//!
//! Every pushed payload starts with the send time (u64 ns since a monotonic
//! epoch shared in-process) and a seq (u64, per user for `push`, per
//! broadcast for `broadcast`), both big-endian. Clients record the latency
//! and count deliveries, duplicates and reordered packets per connection.
//! After the window the node stops and the clients wait up to `--drain` for
//! the rest; `lost` / `missing` is what never arrived.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use clap::Args;
use ringgate::node::{Context, GateClient, Node, NodeBuilder, NodeHandle};
use ringgate::UserId;
use serde::Serialize;

use crate::args::{parse_duration, ClientArgs, OwnNodeArgs, TimingArgs};
use crate::client::{Login, Mode, Plan, Receive};
use crate::report::{self, push_latency, show, Latency, Table};
use crate::runner::{self, Hooks, Outcome};
use crate::tally::Feed;

mod node;
mod senders;

use node::*;
pub(crate) use node::{log_in, start_own};
use senders::*;

/// Bytes of the stamp every pushed payload starts with: send time and seq.
pub const STAMP_BYTES: usize = 16;

/// Flags of the in-process node and the clients' log-in, shared by `push`
/// and `broadcast`.
#[derive(Args, Clone, Debug)]
pub struct NodeArgs {
    #[command(flatten)]
    pub own: OwnNodeArgs,
    /// How long the logins may take.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub login_timeout: Duration,
    /// Route of the pushed packets.
    #[arg(long, default_value_t = 100)]
    pub push_route: i32,
    /// Payload bytes of each pushed packet, at least 16 (time and seq).
    #[arg(long, default_value_t = 16)]
    pub payload: usize,
    /// Connections, all threads together (uids 1..=conns).
    #[arg(long, default_value_t = 1000)]
    pub conns: usize,
    /// Heartbeat period per connection; `0s` sends none.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub heartbeat: Duration,
    /// After the window, wait at most this long for the last deliveries.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub drain: Duration,
}

/// Flags of `push`.
#[derive(Args, Clone, Debug)]
pub struct PushArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub timing: TimingArgs,
    #[command(flatten)]
    pub node: NodeArgs,
    /// Pushes per second, all node threads together (open loop); 0: as fast
    /// as possible with at most `--max-inflight` undelivered.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Node threads pushing (each owns every `n`-th user).
    #[arg(long, default_value_t = 2)]
    pub push_threads: usize,
    /// `--rate 0`: pushes sent and not yet delivered, at most (keeps a
    /// client that falls behind from being closed for overflow).
    #[arg(long, default_value_t = 65536)]
    pub max_inflight: u64,
}

/// Flags of `broadcast`.
#[derive(Args, Clone, Debug)]
pub struct BroadcastArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub timing: TimingArgs,
    #[command(flatten)]
    pub node: NodeArgs,
    /// Time between two broadcasts.
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    pub interval: Duration,
}

/// Results of `push`.
#[derive(Clone, Debug, Serialize)]
pub struct PushReport {
    /// Always `push`.
    pub scenario: &'static str,
    /// Gate address.
    pub addr: String,
    /// `tcp`, `ws` or `wss`.
    pub transport: &'static str,
    /// Client threads.
    pub threads: usize,
    /// Connections logged in.
    pub conns: usize,
    /// Connections that failed to open or to log in.
    pub connect_failures: usize,
    /// Pushes per second asked for (`None`: as fast as possible).
    pub target_rate: Option<u64>,
    /// Node threads pushing.
    pub push_threads: usize,
    /// `--rate 0`: the in-flight bound.
    pub max_inflight: Option<u64>,
    /// Payload bytes per push.
    pub payload: usize,
    /// Warm-up, not recorded.
    pub warmup: String,
    /// Measured window.
    pub duration: String,
    /// Pushes sent in the window.
    pub pushes: u64,
    /// `pushes` per second.
    pub pushes_per_s: f64,
    /// Pushes received in the window.
    pub deliveries: u64,
    /// `deliveries` per second.
    pub deliveries_per_s: f64,
    /// Pushes sent, whole run.
    pub sent_total: u64,
    /// Distinct pushes received, whole run (after the drain).
    pub delivered_total: u64,
    /// `sent_total - delivered_total`.
    pub lost: u64,
    /// Pushes received twice.
    pub duplicates: u64,
    /// Pushes received after a later one to the same user.
    pub reordered: u64,
    /// Pushes the node SDK refused (no link).
    pub push_errors: u64,
    /// Packets that were not pushes (wrong route, error reply, no stamp).
    pub mismatches: u64,
    /// Connections closed by the gate.
    pub closed: u64,
    /// Connections dropped on an I/O or protocol error.
    pub failed: u64,
    /// Send time (intended, with `--rate`) → receipt, µs, in the window.
    pub latency_us: Latency,
}

/// Results of `broadcast`.
#[derive(Clone, Debug, Serialize)]
pub struct BroadcastReport {
    /// Always `broadcast`.
    pub scenario: &'static str,
    /// Gate address.
    pub addr: String,
    /// `tcp`, `ws` or `wss`.
    pub transport: &'static str,
    /// Client threads.
    pub threads: usize,
    /// Connections logged in (each broadcast's fan-out).
    pub conns: usize,
    /// Connections that failed to open or to log in.
    pub connect_failures: usize,
    /// Time between broadcasts.
    pub interval: String,
    /// Payload bytes per broadcast.
    pub payload: usize,
    /// Warm-up, not recorded.
    pub warmup: String,
    /// Measured window.
    pub duration: String,
    /// Broadcasts made, whole run.
    pub broadcasts: u64,
    /// Broadcasts the node SDK refused (no link).
    pub broadcast_errors: u64,
    /// Broadcast packets received in the window.
    pub deliveries: u64,
    /// `deliveries` per second.
    pub deliveries_per_s: f64,
    /// `broadcasts × conns`.
    pub expected_total: u64,
    /// Distinct broadcast packets received, whole run (after the drain).
    pub delivered_total: u64,
    /// `expected_total - delivered_total`.
    pub missing: u64,
    /// Packets received twice.
    pub duplicates: u64,
    /// Packets received after a later broadcast.
    pub reordered: u64,
    /// Packets that were not broadcasts.
    pub mismatches: u64,
    /// Connections closed by the gate.
    pub closed: u64,
    /// Connections dropped on an I/O or protocol error.
    pub failed: u64,
    /// The node's call → each client's receipt, µs, in the window.
    pub latency_us: Latency,
}

impl PushReport {
    /// The human table.
    pub fn table(&self) -> String {
        let mut t = Table::new();
        t.col("scenario", self.scenario.to_string());
        t.col("transport", self.transport.to_string());
        t.col("conns", self.conns.to_string());
        t.col(
            "target/s",
            self.target_rate.map_or("max".into(), |r| r.to_string()),
        );
        t.col("duration", self.duration.clone());
        t.col("pushes/s", format!("{:.0}", self.pushes_per_s));
        t.col("deliveries/s", format!("{:.0}", self.deliveries_per_s));
        t.col("lost", self.lost.to_string());
        t.col("dups", self.duplicates.to_string());
        push_latency(&mut t, &self.latency_us);
        let mut out = t.render();
        problems(
            &mut out,
            &[
                ("connect or login failures", self.connect_failures as u64),
                ("reordered", self.reordered),
                ("push errors", self.push_errors),
                ("not pushes", self.mismatches),
                ("closed by gate", self.closed),
                ("dropped on error", self.failed),
            ],
        );
        out
    }
}

impl BroadcastReport {
    /// The human table.
    pub fn table(&self) -> String {
        let mut t = Table::new();
        t.col("scenario", self.scenario.to_string());
        t.col("transport", self.transport.to_string());
        t.col("conns", self.conns.to_string());
        t.col("interval", self.interval.clone());
        t.col("duration", self.duration.clone());
        t.col("broadcasts", self.broadcasts.to_string());
        t.col("deliveries/s", format!("{:.0}", self.deliveries_per_s));
        t.col("missing", self.missing.to_string());
        t.col("dups", self.duplicates.to_string());
        push_latency(&mut t, &self.latency_us);
        let mut out = t.render();
        problems(
            &mut out,
            &[
                ("connect or login failures", self.connect_failures as u64),
                ("reordered", self.reordered),
                ("broadcast errors", self.broadcast_errors),
                ("not broadcasts", self.mismatches),
                ("closed by gate", self.closed),
                ("dropped on error", self.failed),
            ],
        );
        out
    }
}

/// Appends a line per non-zero problem counter.
fn problems(out: &mut String, list: &[(&str, u64)]) {
    for (what, n) in list {
        if *n > 0 {
            out.push_str(&format!("{what}: {n}\n"));
        }
    }
}

/// Checks the shared flags and builds the receiving clients' plan.
fn plan(
    client: &ClientArgs,
    timing: &TimingArgs,
    node: &NodeArgs,
    feed: Arc<Feed>,
    epoch: Instant,
) -> Result<Plan> {
    client.threads.validate()?;
    let opts = client.packet.options()?;
    if node.conns == 0 {
        bail!("--conns must be at least 1");
    }
    if timing.duration.is_zero() {
        bail!("--duration must be more than 0s");
    }
    if client.transport.transport.is_mqtt() {
        // Pushes reach MQTT clients on topics named by route, not by seq,
        // and logging in would need a login handler named for MQTT.
        bail!("push and broadcast speak due packets only (tcp, ws, wss), not MQTT");
    }
    if node.payload < STAMP_BYTES || node.payload > opts.buffer_bytes {
        bail!(
            "--payload must be from {STAMP_BYTES} (time and seq) to --buffer-bytes {}",
            opts.buffer_bytes
        );
    }
    Ok(Plan {
        addr: client.addr,
        dialer: client.dialer()?,
        opts,
        mode: Mode::Listen,
        route: node.push_route,
        payload: 0,
        conns: node.conns,
        threads: client.threads.threads.min(node.conns),
        warmup: timing.warmup,
        duration: timing.duration,
        heartbeat: (!node.heartbeat.is_zero()).then_some(node.heartbeat),
        login: Some(Login {
            route: node.own.login_route,
            timeout: node.login_timeout,
        }),
        receive: Some(Receive {
            route: node.push_route,
            epoch,
            feed,
            drain: node.drain,
        }),
    })
}

fn per_s(n: u64, d: Duration) -> f64 {
    if d.is_zero() {
        0.0
    } else {
        (n as f64 / d.as_secs_f64()).round()
    }
}

/// Runs `push` and prints its report.
pub fn run_push(args: PushArgs) -> Result<()> {
    if args.push_threads == 0 {
        bail!("--push-threads must be at least 1");
    }
    if args.rate == 0 && args.max_inflight == 0 {
        bail!("--max-inflight must be at least 1");
    }
    let (feed, epoch) = (Arc::new(Feed::default()), Instant::now());
    let plan = plan(&args.client, &args.timing, &args.node, feed.clone(), epoch)?;
    let node = start_node(&args.node)?;
    let sent = Arc::new(Sent::default());
    let mut senders = Vec::new();
    let pusher = Pusher {
        gates: node.handle.gates(),
        k: 0,
        threads: args.push_threads,
        users: plan.conns,
        rate: args.rate,
        max_inflight: args.max_inflight,
        route: args.node.push_route,
        payload: args.node.payload,
        epoch,
    };
    let timing = args.timing.clone();
    let outcome = runner::run_with(
        plan.clone(),
        &args.client.threads.cores,
        Hooks {
            on_start: Box::new(|t0, _conns| {
                let (feed2, sent2) = (feed.clone(), sent.clone());
                let w = Window::new(t0, &timing);
                // After the logins: the gate they came through is known.
                let gates = node.gates();
                senders = spawn_senders(args.push_threads, &feed, move |k| {
                    Pusher {
                        k,
                        gates: gates.clone(),
                        ..pusher.clone()
                    }
                    .run(w, &feed2, &sent2)
                });
            }),
            progress: Box::new(progress("pushes/s", sent.clone())),
            ..Hooks::default()
        },
    );
    feed.done.store(true, std::sync::atomic::Ordering::Release);
    for s in senders {
        let _ = s.join();
    }
    node.handle.shutdown();
    let o = outcome?;
    if let Some(e) = sent.first_error.lock().unwrap().as_ref() {
        eprintln!("first push error: {e}");
    }
    let r = push_report(&args, &plan, &o, &sent);
    report::print(args.client.json, &r, &r.table())
}

fn push_report(args: &PushArgs, plan: &Plan, o: &Outcome, sent: &Sent) -> PushReport {
    let c = &o.counters;
    let sent_total = sent.total.load(Ordering::Relaxed);
    let pushes = sent.in_window.load(Ordering::Relaxed);
    PushReport {
        scenario: "push",
        addr: plan.addr.to_string(),
        transport: plan.dialer.transport.as_str(),
        threads: plan.threads,
        conns: o.conns,
        connect_failures: o.connect_failures,
        target_rate: (args.rate > 0).then_some(args.rate),
        push_threads: args.push_threads,
        max_inflight: (args.rate == 0).then_some(args.max_inflight),
        payload: args.node.payload,
        warmup: show(plan.warmup),
        duration: show(plan.duration),
        pushes,
        pushes_per_s: per_s(pushes, plan.duration),
        deliveries: c.requests,
        deliveries_per_s: per_s(c.requests, plan.duration),
        sent_total,
        delivered_total: c.delivered,
        lost: sent_total.saturating_sub(c.delivered),
        duplicates: c.duplicates,
        reordered: c.reordered,
        push_errors: sent.errors.load(Ordering::Relaxed),
        mismatches: c.mismatches,
        closed: c.closed,
        failed: c.failed,
        latency_us: Latency::of(&o.hist),
    }
}

/// Runs `broadcast` and prints its report.
pub fn run_broadcast(args: BroadcastArgs) -> Result<()> {
    if args.interval.is_zero() {
        bail!("--interval must be more than 0s");
    }
    let (feed, epoch) = (Arc::new(Feed::default()), Instant::now());
    let plan = plan(&args.client, &args.timing, &args.node, feed.clone(), epoch)?;
    let node = start_node(&args.node)?;
    let sent = Arc::new(Sent::default());
    let mut senders = Vec::new();
    let (interval, route, len) = (args.interval, args.node.push_route, args.node.payload);
    let timing = args.timing.clone();
    let outcome = runner::run_with(
        plan.clone(),
        &args.client.threads.cores,
        Hooks {
            on_start: Box::new(|t0, conns| {
                let (feed2, sent2) = (feed.clone(), sent.clone());
                // After the logins: the gate they came through is known.
                let gates = node.gates();
                let w = Window::new(t0, &timing);
                senders = spawn_senders(1, &feed, move |_| {
                    let mut buf = vec![0u8; len];
                    let mut b = 0u64;
                    loop {
                        let due = w.t0 + interval * u32::try_from(b).unwrap_or(u32::MAX);
                        if due >= w.end {
                            return;
                        }
                        let now = Instant::now();
                        if due > now {
                            std::thread::sleep(due - now);
                        }
                        let at = Instant::now();
                        let payload = stamp(&mut buf, nanos_since(epoch, at), b);
                        match gates.broadcast_nowait(route, 0, payload, true) {
                            Ok(()) => {
                                b += 1;
                                feed2.sent.fetch_add(conns as u64, Ordering::Relaxed);
                                sent2.total.fetch_add(1, Ordering::Relaxed);
                                if w.contains(at) {
                                    sent2.in_window.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            Err(e) => {
                                sent2.error(e);
                                // Keep the schedule: the next one is due one interval later.
                                b += 1;
                            }
                        }
                    }
                });
            }),
            progress: Box::new(progress("broadcasts", sent.clone())),
            ..Hooks::default()
        },
    );
    feed.done.store(true, Ordering::Release);
    for s in senders {
        let _ = s.join();
    }
    node.handle.shutdown();
    let o = outcome?;
    if let Some(e) = sent.first_error.lock().unwrap().as_ref() {
        eprintln!("first broadcast error: {e}");
    }
    let c = &o.counters;
    let broadcasts = sent.total.load(Ordering::Relaxed);
    let expected_total = broadcasts * o.conns as u64;
    let r = BroadcastReport {
        scenario: "broadcast",
        addr: plan.addr.to_string(),
        transport: plan.dialer.transport.as_str(),
        threads: plan.threads,
        conns: o.conns,
        connect_failures: o.connect_failures,
        interval: show(args.interval),
        payload: args.node.payload,
        warmup: show(plan.warmup),
        duration: show(plan.duration),
        broadcasts,
        broadcast_errors: sent.errors.load(Ordering::Relaxed),
        deliveries: c.requests,
        deliveries_per_s: per_s(c.requests, plan.duration),
        expected_total,
        delivered_total: c.delivered,
        missing: expected_total.saturating_sub(c.delivered),
        duplicates: c.duplicates,
        reordered: c.reordered,
        mismatches: c.mismatches,
        closed: c.closed,
        failed: c.failed,
        latency_us: Latency::of(&o.hist),
    };
    report::print(args.client.json, &r, &r.table())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tally::push_stamp;

    #[test]
    fn stamps_round_trip() {
        let mut buf = vec![0u8; 20];
        let p = stamp(&mut buf, 123_456_789, 42);
        assert_eq!(p.len(), 20);
        assert_eq!(push_stamp(&p), Some((123_456_789, 42)));
        assert_eq!(push_stamp(&p[..15]), None);
    }

    #[test]
    fn push_table_names_problems() {
        let r = PushReport {
            scenario: "push",
            addr: "127.0.0.1:4553".into(),
            transport: "tcp",
            threads: 1,
            conns: 1000,
            connect_failures: 0,
            target_rate: None,
            push_threads: 2,
            max_inflight: Some(65536),
            payload: 16,
            warmup: "2s".into(),
            duration: "10s".into(),
            pushes: 1_000_000,
            pushes_per_s: 100_000.0,
            deliveries: 999_990,
            deliveries_per_s: 99_999.0,
            sent_total: 1_200_000,
            delivered_total: 1_199_990,
            lost: 10,
            duplicates: 0,
            reordered: 0,
            push_errors: 0,
            mismatches: 0,
            closed: 1,
            failed: 0,
            latency_us: Latency::default(),
        };
        let t = r.table();
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[0].starts_with("scenario  transport  conns  target/s"),
            "{t}"
        );
        assert!(
            lines[1].contains("max") && lines[1].contains("100000"),
            "{t}"
        );
        assert_eq!(lines[2..], ["closed by gate: 1"]);
    }
}
