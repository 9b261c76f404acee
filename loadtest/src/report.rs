//! Results: latency histograms, their summary, the per-second progress line
//! and the final table or JSON. Shared by every scenario; no I/O except the
//! two `print` helpers.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::args::format_duration;

/// Largest latency recorded exactly (60 s, in µs); longer ones saturate.
const MAX_LATENCY_US: u64 = 60_000_000;

/// An empty latency histogram: µs, 3 significant figures, up to 60 s.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("static histogram bounds")
}

/// Records one latency, in whole µs (saturating at the histogram's bound).
pub fn record(hist: &mut Histogram<u64>, latency: Duration) {
    let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    hist.saturating_record(us);
}

/// Latency percentiles in µs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Samples recorded.
    pub count: u64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest sample.
    pub max: u64,
}

impl Latency {
    /// Summarizes `hist` (all zero when it is empty).
    pub fn of(hist: &Histogram<u64>) -> Self {
        if hist.is_empty() {
            return Latency::default();
        }
        Latency {
            count: hist.len(),
            mean: (hist.mean() * 10.0).round() / 10.0,
            p50: hist.value_at_quantile(0.50),
            p90: hist.value_at_quantile(0.90),
            p99: hist.value_at_quantile(0.99),
            p999: hist.value_at_quantile(0.999),
            max: hist.max(),
        }
    }
}

/// Results of a request scenario (`echo`, `rate`).
#[derive(Clone, Debug, Serialize)]
pub struct LoadReport {
    /// `echo` or `rate`.
    pub scenario: &'static str,
    /// Server address.
    pub addr: String,
    /// `tcp`, `ws` or `wss`.
    pub transport: &'static str,
    /// Client event-loop threads.
    pub threads: usize,
    /// Connections established.
    pub conns: usize,
    /// Connections that could not be established.
    pub connect_failures: usize,
    /// Requests kept in flight per connection (`echo`).
    pub depth: Option<usize>,
    /// Target requests per second over all connections (`rate`).
    pub target_rps: Option<u64>,
    /// Payload bytes per request.
    pub payload: usize,
    /// Warm-up, not recorded.
    pub warmup: String,
    /// Measured window.
    pub duration: String,
    /// Correct responses received within the window.
    pub requests: u64,
    /// `requests` per second of the window.
    pub rps: f64,
    /// Error replies (header extension code not 0).
    pub errors: u64,
    /// Responses with a wrong route, payload or an unknown seq.
    pub mismatches: u64,
    /// Connections closed by the server (EOF or reset).
    pub closed: u64,
    /// Connections dropped for an I/O or decode error.
    pub failed: u64,
    /// Requests still unanswered when the run ended.
    pub outstanding: u64,
    /// Open-loop requests skipped because their seq was still in flight.
    pub unsent: u64,
    /// Heartbeats sent / answered (keep-alive during the run).
    pub heartbeats_sent: u64,
    /// Heartbeats received.
    pub heartbeats_received: u64,
    /// Latency of correct responses in the window, µs.
    pub latency_us: Latency,
    /// CPU time of the processes named by `--cpu-pid` in the window.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cpu: Vec<crate::cpu::CpuUse>,
}

impl LoadReport {
    /// The human table: one header row, one value row, then the error
    /// counters when any is not zero.
    pub fn table(&self) -> String {
        let mut t = Table::new();
        t.col("scenario", self.scenario.to_string());
        if self.transport != "tcp" {
            t.col("transport", self.transport.to_string());
        }
        t.col("conns", self.conns.to_string());
        if let Some(depth) = self.depth {
            t.col("depth", depth.to_string());
        }
        if let Some(rate) = self.target_rps {
            t.col("target/s", rate.to_string());
        }
        t.col("payload", self.payload.to_string());
        t.col("duration", self.duration.clone());
        t.col("requests", self.requests.to_string());
        t.col("rps", format!("{:.0}", self.rps));
        t.col("errors", self.errors.to_string());
        t.col("mismatch", self.mismatches.to_string());
        push_latency(&mut t, &self.latency_us);
        let mut out = t.render();
        // In a closed loop every connection ends with `depth` requests in
        // flight: only worth a line in the open loop, where it is a backlog.
        let backlog = if self.target_rps.is_some() {
            self.outstanding
        } else {
            0
        };
        let problems = [
            ("connect failures", self.connect_failures as u64),
            ("closed by server", self.closed),
            ("dropped on error", self.failed),
            ("in flight at the end", backlog),
            ("not sent (seq space exhausted)", self.unsent),
        ];
        for (what, n) in problems {
            if n > 0 {
                out.push_str(&format!("{what}: {n}\n"));
            }
        }
        out
    }
}

/// Appends the latency columns (µs) to `t`.
pub fn push_latency(t: &mut Table, l: &Latency) {
    t.col("p50us", l.p50.to_string());
    t.col("p90us", l.p90.to_string());
    t.col("p99us", l.p99.to_string());
    t.col("p99.9us", l.p999.to_string());
    t.col("maxus", l.max.to_string());
}

/// A one-row table: named columns, right-aligned under their headers.
#[derive(Debug, Default)]
pub struct Table {
    cols: Vec<(&'static str, String)>,
}

impl Table {
    /// An empty table.
    pub fn new() -> Self {
        Table::default()
    }

    /// Adds a column.
    pub fn col(&mut self, name: &'static str, value: String) {
        self.cols.push((name, value));
    }

    /// Header line and value line, each ending in a newline; the first
    /// column is left-aligned, the rest right-aligned, two spaces apart.
    pub fn render(&self) -> String {
        let (mut head, mut row) = (String::new(), String::new());
        for (i, (name, value)) in self.cols.iter().enumerate() {
            let width = name.chars().count().max(value.chars().count());
            if i == 0 {
                head.push_str(&format!("{name:<width$}"));
                row.push_str(&format!("{value:<width$}"));
            } else {
                head.push_str(&format!("  {name:>width$}"));
                row.push_str(&format!("  {value:>width$}"));
            }
        }
        format!("{}\n{}\n", head.trim_end(), row.trim_end())
    }
}

/// One progress sample: what happened during one second of the run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Progress {
    /// Seconds since the start (end of the sampled second).
    pub t: u64,
    /// Whether the second was part of the warm-up.
    pub warmup: bool,
    /// Events per second (responses, or heartbeat answers for `idle`).
    pub rate: u64,
    /// Name of `rate` on the line (`rps`, `hb/s`).
    pub rate_name: &'static str,
    /// p99 latency of the second in µs, when the scenario measures latency.
    pub p99_us: Option<u64>,
    /// Connections open at the end of the second.
    pub conns: u64,
    /// Errors so far (error replies, mismatches, closed and failed connections).
    pub errors: u64,
}

impl Progress {
    /// `t=3s rps=123456 p99=812us conns=1000 errors=0`
    pub fn line(&self) -> String {
        let mut line = format!("t={}s {}={}", self.t, self.rate_name, self.rate);
        if let Some(p99) = self.p99_us {
            line.push_str(&format!(" p99={p99}us"));
        }
        line.push_str(&format!(" conns={} errors={}", self.conns, self.errors));
        if self.warmup {
            line.push_str(" (warmup)");
        }
        line
    }
}

/// Prints `value` as one JSON line, or `table` as is, to stdout.
pub fn print<T: Serialize>(json: bool, value: &T, table: &str) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(value)?);
    } else {
        print!("{table}");
    }
    Ok(())
}

/// `duration` as reported (`10s`).
pub fn show(d: Duration) -> String {
    format_duration(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_report() -> LoadReport {
        let mut hist = histogram();
        for us in 1..=1000 {
            record(&mut hist, Duration::from_micros(us));
        }
        LoadReport {
            scenario: "echo",
            addr: "127.0.0.1:3553".into(),
            transport: "tcp",
            threads: 1,
            conns: 100,
            connect_failures: 0,
            depth: Some(1),
            target_rps: None,
            payload: 64,
            warmup: "2s".into(),
            duration: "10s".into(),
            requests: 1000,
            rps: 100.0,
            errors: 0,
            mismatches: 0,
            closed: 0,
            failed: 0,
            outstanding: 3,
            unsent: 0,
            heartbeats_sent: 0,
            heartbeats_received: 0,
            latency_us: Latency::of(&hist),
            cpu: Vec::new(),
        }
    }

    #[test]
    fn percentiles_of_a_uniform_ramp() {
        let l = sample_report().latency_us;
        assert_eq!(l.count, 1000);
        assert_eq!(l.p50, 500);
        assert_eq!(l.p90, 900);
        assert_eq!(l.p99, 990);
        assert_eq!(l.p999, 999);
        assert_eq!(l.max, 1000);
        assert!((l.mean - 500.5).abs() < 0.2, "{}", l.mean);
    }

    #[test]
    fn empty_histogram_is_all_zero() {
        assert_eq!(Latency::of(&histogram()), Latency::default());
    }

    #[test]
    fn huge_latencies_saturate() {
        let mut h = histogram();
        record(&mut h, Duration::from_secs(3600));
        assert_eq!(h.len(), 1);
        assert!(h.max() >= MAX_LATENCY_US);
    }

    #[test]
    fn table_aligns_values_under_headers() {
        let out = sample_report().table();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "scenario  conns  depth  payload  duration  requests  rps  errors  mismatch  p50us  p90us  p99us  p99.9us  maxus"
        );
        assert_eq!(
            lines[1],
            "echo        100      1       64       10s      1000  100       0         0    500    900    990      999   1000"
        );
        assert_eq!(lines.len(), 2, "closed loop: in-flight count not shown");
        let open_loop = LoadReport {
            depth: None,
            target_rps: Some(100),
            closed: 2,
            ..sample_report()
        };
        let out = open_loop.table();
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].contains("target/s") && !lines[0].contains("depth"));
        assert_eq!(
            lines[2..],
            ["closed by server: 2", "in flight at the end: 3"]
        );
    }

    #[test]
    fn json_has_every_field() {
        let v: serde_json::Value = serde_json::to_value(sample_report()).unwrap();
        assert_eq!(v["scenario"], "echo");
        assert_eq!(v["errors"], 0);
        assert_eq!(v["latency_us"]["p99"], 990);
        assert_eq!(v["target_rps"], serde_json::Value::Null);
    }

    #[test]
    fn progress_line_format() {
        let p = Progress {
            t: 3,
            warmup: false,
            rate: 123456,
            rate_name: "rps",
            p99_us: Some(812),
            conns: 1000,
            errors: 0,
        };
        assert_eq!(p.line(), "t=3s rps=123456 p99=812us conns=1000 errors=0");
        let idle = Progress {
            p99_us: None,
            rate_name: "hb/s",
            warmup: true,
            ..p
        };
        assert_eq!(idle.line(), "t=3s hb/s=123456 conns=1000 errors=0 (warmup)");
    }
}
