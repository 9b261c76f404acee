//! The soak's report: the RSS and descriptor curve, what the clients and
//! the node counted, and the checks (see the module docs of `soak`).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;

use super::clients::Shared;
use super::counts::{ClientSnapshot, NodeSnapshot};
use super::node::SoakNode;
use super::probe::{median, Sample};
use super::SoakArgs;
use crate::report::show;

/// Close reasons the soak causes on purpose.
const EXPECTED_REASONS: [&str; 3] = ["client_closed", "kicked", "overflow"];

/// Rows of the curve printed in the table (the JSON has every sample).
const CURVE_ROWS: usize = 24;

/// One check's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// Its name.
    pub name: &'static str,
    /// Passed.
    pub pass: bool,
    /// The figures it was decided on.
    pub detail: String,
}

/// Everything the soak reports.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    /// Always `soak`.
    pub scenario: &'static str,
    /// Gate address.
    pub addr: String,
    /// `tcp`, `ws` or `wss`.
    pub transport: &'static str,
    /// The gate's pid.
    pub gate_pid: u32,
    /// Connections kept open.
    pub conns: usize,
    /// The run (after the ramp).
    pub duration: String,
    /// Its warm-up.
    pub warmup: String,
    /// The gate's RSS before any client connected, bytes.
    pub rss_start: u64,
    /// After the warm-up (median of three samples), bytes.
    pub rss_after_warmup: u64,
    /// At the end of the run (median of the last three samples), bytes.
    pub rss_end: u64,
    /// Largest sample after the warm-up, bytes.
    pub rss_max_after_warmup: u64,
    /// `rss_end` against `rss_after_warmup`, percent.
    pub rss_change_pct: f64,
    /// After every connection closed and the gate settled, bytes.
    pub rss_closed: u64,
    /// The gate's descriptors before any client connected.
    pub fds_start: u64,
    /// The most seen in a sample.
    pub fds_peak: u64,
    /// After every connection closed and the gate settled.
    pub fds_end: u64,
    /// Seconds from the last close until descriptors and events settled
    /// (`None`: not within `--settle`).
    pub settle_s: Option<f64>,
    /// The clients' counters.
    pub clients: ClientSnapshot,
    /// Documented error replies per extension code.
    pub error_codes: BTreeMap<u8, u64>,
    /// The node's counters.
    pub node: NodeSnapshot,
    /// `Disconnect` events per close reason.
    pub close_reasons: BTreeMap<String, u64>,
    /// Sessions connected that never got their `Disconnect`.
    pub sessions_without_disconnect: u64,
    /// Event numbering gaps seen by the node SDK.
    pub event_gaps: u64,
    /// Every sample: before the clients, after the ramp, then every
    /// `--sample`, and after the close.
    pub samples: Vec<Sample>,
    /// The checks.
    pub checks: Vec<Check>,
    /// Every check passed.
    pub pass: bool,
}

fn mib(b: u64) -> String {
    format!("{:.1}MiB", b as f64 / (1 << 20) as f64)
}

impl Verdict {
    /// Judges a finished run. `samples` start with the one before the
    /// clients and the one after the ramp; `last` is after the close.
    pub fn judge(
        args: &SoakArgs,
        conns: usize,
        samples: &[Sample],
        last: Sample,
        settled: Option<Duration>,
        shared: &Shared,
        node: &SoakNode,
    ) -> Verdict {
        let warm = args.warmup().as_secs_f64();
        let run: Vec<&Sample> = samples.iter().skip(2).collect();
        let after: Vec<u64> = run
            .iter()
            .filter(|s| s.t >= warm)
            .map(|s| s.rss)
            .take(3)
            .collect();
        let tail: Vec<u64> = run.iter().rev().take(3).map(|s| s.rss).collect();
        let rss_after_warmup = median(after).unwrap_or(0);
        let rss_end = median(tail).unwrap_or(0);
        let rss_change_pct = if rss_after_warmup > 0 {
            (rss_end as f64 - rss_after_warmup as f64) * 100.0 / rss_after_warmup as f64
        } else {
            f64::INFINITY
        };
        let mut all = samples.to_vec();
        all.push(last);
        let error_codes = shared
            .errors
            .iter()
            .enumerate()
            .map(|(code, n)| (code as u8, n.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect();
        let mut v = Verdict {
            scenario: "soak",
            addr: args.client.addr.to_string(),
            transport: args.client.transport.transport.as_str(),
            gate_pid: args.gate_pid,
            conns,
            duration: show(args.duration),
            warmup: show(args.warmup()),
            rss_start: samples.first().map_or(0, |s| s.rss),
            rss_after_warmup,
            rss_end,
            rss_max_after_warmup: run
                .iter()
                .filter(|s| s.t >= warm)
                .map(|s| s.rss)
                .max()
                .unwrap_or(0),
            rss_change_pct: (rss_change_pct * 100.0).round() / 100.0,
            rss_closed: last.rss,
            fds_start: samples.first().map_or(0, |s| s.fds),
            fds_peak: all.iter().map(|s| s.fds).max().unwrap_or(0),
            fds_end: last.fds,
            settle_s: settled.map(|d| (d.as_secs_f64() * 10.0).round() / 10.0),
            clients: shared.counts.snapshot(),
            error_codes,
            node: node.ledger.counts.snapshot(),
            close_reasons: node.ledger.reasons(),
            sessions_without_disconnect: node.ledger.open_sessions(),
            event_gaps: node.event_gaps(),
            samples: all,
            checks: Vec::new(),
            pass: false,
        };
        v.checks = v.decide(args.rss_tolerance);
        v.pass = v.checks.iter().all(|c| c.pass);
        v
    }

    /// The checks, from the figures.
    fn decide(&self, tolerance: f64) -> Vec<Check> {
        let (c, n) = (&self.clients, &self.node);
        let unexpected: u64 = (self.close_reasons.iter())
            .filter(|(r, _)| !EXPECTED_REASONS.contains(&r.as_str()))
            .map(|(_, n)| n)
            .sum();
        let reason = |r: &str| self.close_reasons.get(r).copied().unwrap_or(0);
        let explained = reason("kicked") + reason("overflow");
        vec![
            Check {
                name: "rss_flat",
                pass: self.rss_change_pct.abs() <= tolerance,
                detail: format!(
                    "after warm-up {}, end {} ({:+.2}%, tolerance ±{tolerance}%)",
                    mib(self.rss_after_warmup),
                    mib(self.rss_end),
                    self.rss_change_pct
                ),
            },
            Check {
                name: "no_lost_reply",
                pass: c.lost == 0 && c.mismatches == 0 && c.failed == 0,
                detail: format!(
                    "lost {}, mismatches {}, dropped on error {}; answered {}, error replies {}, \
                     abandoned {}, cut {}",
                    c.lost, c.mismatches, c.failed, c.answered, c.error_replies, c.abandoned, c.cut
                ),
            },
            Check {
                name: "one_disconnect_per_session",
                pass: self.sessions_without_disconnect == 0
                    && n.duplicate_connects == 0
                    && n.stray_disconnects == 0
                    && self.event_gaps == 0
                    && n.connects > 0,
                detail: format!(
                    "sessions {}, disconnects {}, missing {}, duplicate connects {}, stray \
                     disconnects {}, event gaps {}",
                    n.connects,
                    n.disconnects,
                    self.sessions_without_disconnect,
                    n.duplicate_connects,
                    n.stray_disconnects,
                    self.event_gaps
                ),
            },
            Check {
                name: "no_fd_leak",
                pass: self.settle_s.is_some() && self.fds_end == self.fds_start,
                detail: format!(
                    "start {}, peak {}, end {} ({})",
                    self.fds_start,
                    self.fds_peak,
                    self.fds_end,
                    self.settle_s
                        .map_or("did not settle".into(), |s| format!("settled in {s}s"))
                ),
            },
            Check {
                name: "closes_explained",
                pass: c.connect_failures == 0
                    && c.login_failures == 0
                    && unexpected == 0
                    && c.closed_by_gate <= explained,
                detail: format!(
                    "connect failures {}, log-in failures {}, unexpected close reasons {}, \
                     gate closes seen {} <= kicked + overflow {}",
                    c.connect_failures, c.login_failures, unexpected, c.closed_by_gate, explained
                ),
            },
        ]
    }

    /// The human report: the curve, the figures, the checks.
    pub fn table(&self) -> String {
        let mut out = format!(
            "soak {} ({}): {} connections for {} (warm-up {}), gate pid {}\n\n",
            self.addr, self.transport, self.conns, self.duration, self.warmup, self.gate_pid
        );
        out.push_str(&self.curve());
        let (c, n) = (&self.clients, &self.node);
        out.push_str(&format!(
            "\nrss: start {}, after warm-up {}, end {} ({:+.2}%), max after warm-up {}, closed {}\n",
            mib(self.rss_start),
            mib(self.rss_after_warmup),
            mib(self.rss_end),
            self.rss_change_pct,
            mib(self.rss_max_after_warmup),
            mib(self.rss_closed)
        ));
        out.push_str(&format!(
            "fds: start {}, peak {}, end {}\n",
            self.fds_start, self.fds_peak, self.fds_end
        ));
        out.push_str(&format!(
            "clients: connects {}, opened {}, logins {} (bound {}), requests {}, answered {}, \
             error replies {} {:?}, lost {}, abandoned {}, cut {}, pushes received {}, \
             heartbeats {}/{}\n",
            c.connects,
            c.opened,
            c.logins,
            c.bound,
            c.requests,
            c.answered,
            c.error_replies,
            self.error_codes,
            c.lost,
            c.abandoned,
            c.cut,
            c.pushes,
            c.heartbeats_received,
            c.heartbeats_sent
        ));
        out.push_str(&format!(
            "closes: fin {}, reset {}, by the gate {}, at the end {}; slow readers {} (flooded {})\n",
            c.closed_graceful,
            c.closed_abrupt,
            c.closed_by_gate,
            c.closed_at_end,
            c.slow_episodes,
            c.floods_requested
        ));
        out.push_str(&format!(
            "node: sessions {}, disconnects {} {:?}, binds {}, pushes {}, kicks {}, floods {} \
             (closed {}, {} pushes)\n\n",
            n.connects,
            n.disconnects,
            self.close_reasons,
            n.binds,
            n.pushes,
            n.kicks,
            n.floods,
            n.floods_closed,
            n.flood_pushes
        ));
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(5);
        for check in &self.checks {
            out.push_str(&format!(
                "{:<width$}  {}  {}\n",
                check.name,
                if check.pass { "PASS" } else { "FAIL" },
                check.detail
            ));
        }
        out
    }

    /// The RSS and descriptor curve, at most [`CURVE_ROWS`] rows (the
    /// first two and the last always).
    fn curve(&self) -> String {
        let n = self.samples.len();
        let step = n.div_ceil(CURVE_ROWS).max(1);
        let mut rows: Vec<usize> = (0..n).step_by(step).collect();
        for must in [1, n.saturating_sub(1)] {
            if must < n && !rows.contains(&must) {
                rows.push(must);
            }
        }
        rows.sort_unstable();
        let mut out = format!(
            "{:>8}  {:>10}  {:>6}  {:>6}  {:>10}\n",
            "t", "rss", "fds", "open", "answered"
        );
        for i in rows {
            let s = &self.samples[i];
            let label = match i {
                0 => "start".to_string(),
                1 => "ramped".to_string(),
                _ if i == n - 1 => "closed".to_string(),
                _ => format!("{:.0}s", s.t),
            };
            out.push_str(&format!(
                "{label:>8}  {:>10}  {:>6}  {:>6}  {:>10}\n",
                mib(s.rss),
                s.fds,
                s.open,
                s.answered
            ));
        }
        out
    }
}
