//! `idle`: what an idle connection costs the server. Opens `conns`
//! connections, keeps them alive with heartbeats for `hold`, counts the
//! answers and the connections the server closes, and samples the server's
//! resident memory (`VmRSS` of `--pid`) before, once all are connected, and
//! at the end.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;

use crate::args::{parse_duration, ClientArgs};
use crate::client::{Mode, Plan};
use crate::report::{self, show, Table};
use crate::runner;

/// Flags of `idle`.
#[derive(Args, Clone, Debug)]
pub struct IdleArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Connections, all threads together.
    #[arg(long, default_value_t = 1000)]
    pub conns: usize,
    /// How long to keep them open once all are connected.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub hold: Duration,
    /// Heartbeat period per connection; `0s` sends none.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub heartbeat: Duration,
    /// Server process whose VmRSS is sampled (none: no memory figures).
    #[arg(long)]
    pub pid: Option<u32>,
    /// Pause before each of the first two memory samples.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub settle: Duration,
}

/// Results of `idle`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct IdleReport {
    /// Always `idle`.
    pub scenario: &'static str,
    /// Server address.
    pub addr: String,
    /// `tcp`, `ws` or `wss`.
    pub transport: &'static str,
    /// Client threads.
    pub threads: usize,
    /// Connections established.
    pub conns: usize,
    /// Connections that could not be established.
    pub connect_failures: usize,
    /// How long they were held.
    pub hold: String,
    /// Heartbeat period.
    pub heartbeat: String,
    /// Heartbeats sent.
    pub heartbeats_sent: u64,
    /// Heartbeats received.
    pub heartbeats_received: u64,
    /// Connections closed by the server while held.
    pub closed: u64,
    /// Connections dropped on an I/O or decode error.
    pub failed: u64,
    /// Server process sampled.
    pub pid: Option<u32>,
    /// Server VmRSS before connecting, bytes.
    pub rss_before: Option<u64>,
    /// Server VmRSS once all connections were open and settled, bytes.
    pub rss_connected: Option<u64>,
    /// Server VmRSS at the end of the hold, bytes.
    pub rss_end: Option<u64>,
    /// `rss_connected - rss_before`, bytes (may be negative).
    pub rss_delta: Option<i64>,
    /// `rss_delta / conns`.
    pub rss_per_conn: Option<i64>,
    /// `rss_end - rss_before` per connection (after heartbeats flowed).
    pub rss_per_conn_end: Option<i64>,
}

impl IdleReport {
    /// The human table.
    pub fn table(&self) -> String {
        let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
        let opt_i = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
        let mut t = Table::new();
        t.col("scenario", self.scenario.to_string());
        t.col("conns", self.conns.to_string());
        t.col("hold", self.hold.clone());
        t.col("heartbeat", self.heartbeat.clone());
        t.col("hb_sent", self.heartbeats_sent.to_string());
        t.col("hb_recv", self.heartbeats_received.to_string());
        t.col("closed", self.closed.to_string());
        t.col("rss_before", opt(self.rss_before));
        t.col("rss_connected", opt(self.rss_connected));
        t.col("rss_end", opt(self.rss_end));
        t.col("rss_delta", opt_i(self.rss_delta));
        t.col("bytes/conn", opt_i(self.rss_per_conn));
        t.col("bytes/conn_end", opt_i(self.rss_per_conn_end));
        let mut out = t.render();
        if self.connect_failures > 0 {
            out.push_str(&format!("connect failures: {}\n", self.connect_failures));
        }
        if self.failed > 0 {
            out.push_str(&format!("dropped on error: {}\n", self.failed));
        }
        out
    }

    /// Fills the derived memory figures from the samples.
    fn derive(&mut self) {
        let per_conn = |v: i64| (self.conns > 0).then(|| v / self.conns as i64);
        if let (Some(before), Some(connected)) = (self.rss_before, self.rss_connected) {
            let delta = connected as i64 - before as i64;
            self.rss_delta = Some(delta);
            self.rss_per_conn = per_conn(delta);
        }
        if let (Some(before), Some(end)) = (self.rss_before, self.rss_end) {
            self.rss_per_conn_end = per_conn(end as i64 - before as i64);
        }
    }
}

/// The `VmRSS` line of a `/proc/PID/status` text, in bytes.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    let scale = match words.next().unwrap_or("kB") {
        "kB" => 1024,
        "mB" | "MB" => 1024 * 1024,
        _ => 1,
    };
    Some(value * scale)
}

/// Reads the resident memory of `pid` in bytes.
fn sample(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_vm_rss(&status).with_context(|| format!("no VmRSS in {path}"))
}

/// Runs `idle` and prints its report.
pub fn run(args: IdleArgs) -> Result<()> {
    args.client.threads.validate()?;
    if args.conns == 0 {
        bail!("--conns must be at least 1");
    }
    let plan = Plan {
        addr: args.client.addr,
        dialer: args.client.dialer()?,
        opts: args.client.packet.options()?,
        mode: Mode::Idle,
        route: 0,
        payload: 0,
        conns: args.conns,
        threads: args.client.threads.threads.min(args.conns),
        warmup: Duration::ZERO,
        duration: args.hold,
        heartbeat: (!args.heartbeat.is_zero()).then_some(args.heartbeat),
        login: None,
        receive: None,
    };
    let mut r = IdleReport {
        scenario: "idle",
        addr: plan.addr.to_string(),
        transport: plan.dialer.transport.as_str(),
        threads: plan.threads,
        hold: show(args.hold),
        heartbeat: show(args.heartbeat),
        pid: args.pid,
        ..IdleReport::default()
    };
    if let Some(pid) = args.pid {
        std::thread::sleep(args.settle);
        r.rss_before = Some(sample(pid)?);
    }
    let (mut connected, mut end) = (None, None);
    let outcome = runner::run(
        plan,
        &args.client.threads.cores,
        || {
            if let Some(pid) = args.pid {
                std::thread::sleep(args.settle);
                connected = sample(pid).ok();
            }
        },
        || end = args.pid.and_then(|pid| sample(pid).ok()),
    )?;
    r.rss_connected = connected;
    r.rss_end = end;
    r.conns = outcome.conns;
    r.connect_failures = outcome.connect_failures;
    r.heartbeats_sent = outcome.counters.hb_sent;
    r.heartbeats_received = outcome.counters.hb_received;
    r.closed = outcome.counters.closed;
    r.failed = outcome.counters.failed;
    r.derive();
    report::print(args.client.json, &r, &r.table())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_bytes() {
        let status = "Name:\tringgate\nVmPeak:\t  9000 kB\nVmRSS:\t    2048 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(2048 * 1024));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
    }

    #[test]
    fn own_rss_is_readable() {
        assert!(sample(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn memory_per_connection() {
        let mut r = IdleReport {
            scenario: "idle",
            conns: 1000,
            rss_before: Some(10_000_000),
            rss_connected: Some(12_000_000),
            rss_end: Some(11_000_000),
            ..IdleReport::default()
        };
        r.derive();
        assert_eq!(r.rss_delta, Some(2_000_000));
        assert_eq!(r.rss_per_conn, Some(2000));
        assert_eq!(r.rss_per_conn_end, Some(1000));
        let table = r.table();
        assert!(table.lines().nth(1).unwrap().contains("2000"), "{table}");
    }
}
