//! `soak`: holds a gate near its file limit for a long time with churn,
//! then checks it leaked nothing.
//!
//! The soak targets a running gate (`--addr`, and `--gate-pid` to read its
//! `/proc`) and runs a node of its own that the gate dials
//! (`--node-listen`, listed under the gate's `[[nodes]]`). It opens
//! `--conns` connections (default: what fits under both processes'
//! open-file limits, less [`probe::FD_HEADROOM`]), then for `--duration`:
//!
//! ```text
//!  clients ── connect / close (FIN, reset) ─────────────────▶ gate ◀── pushes, kicks, floods ── node
//!          ── log-ins (bind), requests, heartbeats ─────────▶      ── binds, replies, events ──▶
//!          ◀─ replies, pushes, heartbeats; slow readers stop reading; the gate closes (overflow)
//!  main: every --sample, the gate's VmRSS and open descriptors
//! ```
//!
//! Then the clients stop asking, wait up to `--drain` for the last answers,
//! and close everything; the gate gets `--settle` to get back to its
//! descriptor count and the node to see every session's disconnect.
//!
//! The checks, each PASS or FAIL (the exit status is 1 if one fails):
//!
//! * **rss_flat** — the gate's RSS at the end of the run is within
//!   `--rss-tolerance` (5 %) of its RSS after the warm-up (`--warmup`,
//!   default the first fifth of the run). Each of the two is the median of
//!   three samples, so one transient (a slow reader's full queue) does not
//!   decide it.
//! * **no_lost_reply** — a *lost reply* is a question (a request or a
//!   log-in) on a connection that stayed open which never got an answer:
//!   none `--lost-after` (20 s) after it was sent, or none by the end of the
//!   drain. An answer is the request's own payload back, or an error reply
//!   with a documented extension code (1-11, `ringgate::codec::ext`: a node
//!   timeout, busy link...), counted apart. Questions on a connection the
//!   client closed (churn) are *abandoned*, on one the gate closed (kick,
//!   overflow) *cut*: neither is lost. A reply that answers nothing
//!   (mismatch) or a connection dropped on a bad packet fails this too.
//! * **one_disconnect_per_session** — every session the node saw connect
//!   got exactly one disconnect event, none came for an unknown session,
//!   and the SDK saw no gap in the event numbers.
//! * **no_fd_leak** — the gate's open descriptors are back to their count
//!   before the first connection, within `--settle` after the last close.
//! * **closes_explained** — every connect and log-in succeeded, the node
//!   saw no close reason other than `client_closed`, `kicked` and
//!   `overflow`, and the clients saw no more gate-side closes than the
//!   node's kicks and overflows.

mod clients;
mod conn;
mod counts;
mod node;
mod pace;
mod probe;
mod verdict;

use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use clap::Args;

use crate::args::{parse_duration, ClientArgs, OwnNodeArgs};
use clients::{ClientPlan, ClientThread, Shared};
use node::SoakNode;
use probe::Sample;
use verdict::Verdict;

/// Flags of `soak`.
#[derive(Args, Clone, Debug)]
pub struct SoakArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The gate's process id: its VmRSS and open descriptors are sampled.
    #[arg(long)]
    pub gate_pid: u32,
    /// How long the churn runs, once the connections are open.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub duration: Duration,
    /// The start of the run not judged for RSS (default: a fifth of --duration).
    #[arg(long, value_parser = parse_duration)]
    pub warmup: Option<Duration>,
    /// Connections kept open (default: both processes' open-file limits, less 1000).
    #[arg(long)]
    pub conns: Option<usize>,
    /// New connections per second at most (the ramp, and replacements).
    #[arg(long, default_value_t = 2000)]
    pub connect_rate: u64,
    /// Churn: connections per second the clients close with a FIN and replace.
    #[arg(long, default_value_t = 50)]
    pub connects: u64,
    /// Connections per second the clients close with a reset (SO_LINGER 0) and replace.
    #[arg(long, default_value_t = 5)]
    pub abrupt: u64,
    /// Fraction of new connections that log in (a fresh uid, bound by the node).
    #[arg(long, default_value_t = 0.8)]
    pub bind_fraction: f64,
    /// Requests per second, all connections together (open loop).
    #[arg(long, default_value_t = 2000)]
    pub rate: u64,
    /// Payload bytes per request.
    #[arg(long, default_value_t = 32)]
    pub payload: usize,
    /// Pushes per second from the node, to random bound users.
    #[arg(long, default_value_t = 500)]
    pub pushes: u64,
    /// Kicks per second from the node, of random bound users.
    #[arg(long, default_value_t = 5)]
    pub kicks: u64,
    /// Fraction of the connections that are slow readers (not reading) at any time.
    #[arg(long, default_value_t = 0.0005)]
    pub slow_fraction: f64,
    /// How long a slow reader stops reading.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub slow_pause: Duration,
    /// Fraction of the slow readers the node floods until the gate closes them (overflow).
    #[arg(long, default_value_t = 0.5)]
    pub overflow_fraction: f64,
    /// Payload bytes of each flood push.
    #[arg(long, default_value_t = 4000)]
    pub flood_payload: usize,
    /// Bytes one flood sends at most.
    #[arg(long, default_value_t = 32 << 20)]
    pub flood_bytes: u64,
    /// A connection that sent nothing this long sends a heartbeat.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub heartbeat: Duration,
    #[command(flatten)]
    pub own: OwnNodeArgs,
    /// Route of the requests (the node echoes them).
    #[arg(long, default_value_t = 2)]
    pub route: i32,
    /// Route of the node's pushes.
    #[arg(long, default_value_t = 100)]
    pub push_route: i32,
    /// Time between two samples of the gate's RSS and descriptors.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub sample: Duration,
    /// A question unanswered this long on an open connection is lost.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub lost_after: Duration,
    /// After the run: how long to wait for the last answers.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub drain: Duration,
    /// After the last close: how long the gate and the node may take to settle.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub settle: Duration,
    /// rss_flat's tolerance, percent.
    #[arg(long, default_value_t = 5.0)]
    pub rss_tolerance: f64,
}

impl SoakArgs {
    /// The warm-up: the flag, or a fifth of the run.
    pub fn warmup(&self) -> Duration {
        self.warmup.unwrap_or(self.duration / 5)
    }

    fn validate(&self) -> Result<()> {
        self.client.threads.validate()?;
        if self.client.transport.transport.is_mqtt() {
            bail!(
                "soak speaks due packets (tcp, ws, wss), not MQTT: log-ins and pushes need routes"
            );
        }
        if self.duration.is_zero() || self.sample.is_zero() {
            bail!("--duration and --sample must be more than 0s");
        }
        if self.warmup() >= self.duration {
            bail!("--warmup must be shorter than --duration");
        }
        for (name, f) in [
            ("--bind-fraction", self.bind_fraction),
            ("--slow-fraction", self.slow_fraction),
            ("--overflow-fraction", self.overflow_fraction),
        ] {
            if !(0.0..=1.0).contains(&f) {
                bail!("{name} must be from 0 to 1");
            }
        }
        if self.flood_payload == 0 || self.flood_payload > self.client.packet.buffer_bytes {
            bail!("--flood-payload must be from 1 to --buffer-bytes");
        }
        if self.payload > self.client.packet.buffer_bytes || self.connect_rate == 0 {
            bail!("--payload must fit --buffer-bytes, and --connect-rate be at least 1");
        }
        Ok(())
    }
}

/// Runs the soak, prints its report; an error if a check failed.
pub fn run(args: SoakArgs) -> Result<()> {
    args.validate()?;
    let pid = args.gate_pid;
    let conns = match args.conns {
        Some(n) if n > 0 => n,
        Some(_) => bail!("--conns must be at least 1"),
        None => probe::default_conns(probe::own_nofile(), probe::nofile(pid)?)?,
    };
    let mut node = SoakNode::start(&args)?;
    // Before any client: what the gate holds with only its node links.
    let before = Sample {
        t: 0.0,
        rss: probe::rss(pid)?,
        fds: probe::fds(pid)?,
        open: 0,
        answered: 0,
    };
    let plan = Arc::new(client_plan(&args, conns)?);
    let shared = Arc::new(Shared::default());
    let (flood_tx, flood_rx) = mpsc::channel();
    let threads = (0..plan.threads)
        .map(|i| {
            let t = ClientThread::new(plan.clone(), shared.clone(), flood_tx.clone(), i)?;
            Ok(std::thread::Builder::new()
                .name(format!("soak-client-{i}"))
                .spawn(move || t.run())?)
        })
        .collect::<Result<Vec<_>>>()?;
    drop(flood_tx);
    let (ramped, took) = ramp(&args, &shared, conns, pid);
    let before = Sample {
        t: -took.as_secs_f64(),
        ..before
    };
    node.act(&args, flood_rx)?;
    let t0 = Instant::now();
    shared.t0.set(t0).map_err(|_| anyhow!("t0 set twice"))?;
    let mut samples = vec![before, ramped];
    sample_until(&args, &shared, t0, &mut samples)?;
    node.stop_acting();
    shared.stop.store(true, Ordering::Release);
    for t in threads {
        t.join()
            .map_err(|_| anyhow!("a client thread panicked"))??;
    }
    let closed_at = Instant::now();
    let settled = settle(&args, &node, before.fds, closed_at);
    let last = Sample {
        t: t0.elapsed().as_secs_f64(),
        rss: probe::rss(pid)?,
        fds: probe::fds(pid)?,
        open: shared.open.load(Ordering::Relaxed),
        answered: shared.counts.answered.load(Ordering::Relaxed),
    };
    let v = Verdict::judge(&args, conns, &samples, last, settled, &shared, &node);
    node.handle.shutdown();
    crate::report::print(args.client.json, &v, &v.table())?;
    let failed = v.checks.iter().filter(|c| !c.pass).count();
    if failed > 0 {
        bail!("{failed} of {} soak checks failed", v.checks.len());
    }
    Ok(())
}

/// The clients' plan from the flags.
fn client_plan(args: &SoakArgs, conns: usize) -> Result<ClientPlan> {
    let slow_rate = conns as f64 * args.slow_fraction / args.slow_pause.as_secs_f64().max(0.001);
    Ok(ClientPlan {
        dialer: args.client.dialer()?,
        opts: args.client.packet.options()?,
        conns,
        threads: args.client.threads.threads.min(conns),
        connect_rate: args.connect_rate as f64,
        churn: args.connects as f64,
        abrupt: args.abrupt as f64,
        rate: args.rate as f64,
        slow_rate,
        bind_fraction: args.bind_fraction,
        overflow_fraction: args.overflow_fraction,
        slow_pause: args.slow_pause,
        heartbeat: args.heartbeat,
        lost_after: args.lost_after,
        drain: args.drain,
        login_route: args.own.login_route,
        route: args.route,
        push_route: args.push_route,
        payload: args.payload,
    })
}

/// Waits until the connections are open (or the ramp's time is up);
/// returns the gate's sample then and how long it took.
fn ramp(args: &SoakArgs, shared: &Shared, conns: usize, pid: u32) -> (Sample, Duration) {
    let start = Instant::now();
    let budget = Duration::from_secs_f64(2.0 * conns as f64 / args.connect_rate as f64)
        + Duration::from_secs(30);
    while (shared.open.load(Ordering::Relaxed) as usize) < conns && start.elapsed() < budget {
        std::thread::sleep(Duration::from_millis(20));
    }
    let open = shared.open.load(Ordering::Relaxed);
    eprintln!(
        "connected {open}/{conns} to {} in {:.1}s",
        args.client.addr,
        start.elapsed().as_secs_f64()
    );
    let sample = Sample {
        t: 0.0,
        rss: probe::rss(pid).unwrap_or(0),
        fds: probe::fds(pid).unwrap_or(0),
        open,
        answered: 0,
    };
    (sample, start.elapsed())
}

/// Samples every `--sample` until the run's end (and once at the end),
/// printing a progress line each time.
fn sample_until(
    args: &SoakArgs,
    shared: &Shared,
    t0: Instant,
    samples: &mut Vec<Sample>,
) -> Result<()> {
    let end = t0 + args.duration;
    let mut k = 1u32;
    loop {
        let due = (t0 + args.sample * k).min(end);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let c = shared.counts.snapshot();
        let s = Sample {
            t: due.duration_since(t0).as_secs_f64(),
            rss: probe::rss(args.gate_pid)?,
            fds: probe::fds(args.gate_pid)?,
            open: shared.open.load(Ordering::Relaxed),
            answered: c.answered,
        };
        eprintln!(
            "t={:.0}s rss={:.1}MiB fds={} open={} answered={} lost={} by_gate={} slow={}{}",
            s.t,
            s.rss as f64 / (1 << 20) as f64,
            s.fds,
            s.open,
            c.answered,
            c.lost,
            c.closed_by_gate,
            c.slow_episodes,
            if s.t <= args.warmup().as_secs_f64() {
                " (warmup)"
            } else {
                ""
            }
        );
        samples.push(s);
        if due >= end {
            return Ok(());
        }
        k += 1;
    }
}

/// After the last close: waits up to `--settle` for the gate's descriptors
/// to be back at `fds0` and the node to have every disconnect. Returns how
/// long that took, `None` if it never happened.
fn settle(args: &SoakArgs, node: &SoakNode, fds0: u64, from: Instant) -> Option<Duration> {
    loop {
        let fds = probe::fds(args.gate_pid).unwrap_or(u64::MAX);
        if fds <= fds0 && node.ledger.open_sessions() == 0 {
            return Some(from.elapsed());
        }
        if from.elapsed() >= args.settle {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
