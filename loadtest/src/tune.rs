//! `tune`: finds the shard settings that serve a given load at the least
//! CPU (open loop, `--rate`) or the most throughput (closed loop, no
//! `--rate`), by trying a small grid against the real gate binary on this
//! machine.
//!
//! For each candidate it writes the gate config (`--config`) with the
//! candidate's `[shards]` keys set, starts `ringgate -c` on it, waits until
//! a request goes through the gate to its node, runs the load with CPU
//! accounting of the gate (and the node: `--node-pid`), and stops the gate.
//! Rounds interleave the candidates (A B C … A B C …) so they share the
//! machine's background; each figure is the median over the rounds.
//!
//! The grid (documented in `docs/tuning.md`): `count` ∈ {1, every core}
//! (just one when the machine has a single core) × `batch_wait` ∈ {0, 50 µs,
//! 100 µs}. Under a rate, the best candidate is the one with the least CPU
//! per message (gate + node) among those that kept up with the offered load
//! and stayed within `--max-p99-increase` of the first candidate's p99 (the
//! config as given); in a closed loop it is the one with the most rps.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use serde::Serialize;

use crate::args::{parse_duration, ClientArgs, TimingArgs};
use crate::client::Mode;
use crate::cpu::CpuPid;
use crate::echo::{plan, LoadArgs};
use crate::runner::{self, Hooks};

/// Flags of `tune`.
#[derive(Args, Clone, Debug)]
pub struct TuneArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub timing: TimingArgs,
    #[command(flatten)]
    pub load: LoadArgs,
    /// The gate's config file; its `[[nodes]]` (or registry) must reach a
    /// running node. Its client address is the one loaded (`--addr` is
    /// ignored).
    #[arg(long)]
    pub config: PathBuf,
    /// The gate binary (default: `ringgate` beside this binary).
    #[arg(long)]
    pub gate_bin: Option<PathBuf>,
    /// Also account the node's CPU (the candidates change its cost too).
    #[arg(long)]
    pub node_pid: Option<u32>,
    /// Offered requests per second (open loop); without it, a closed loop
    /// of one request in flight per connection.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Interleaved rounds over the grid.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Under a rate: a candidate whose median p99 is more than this above
    /// the first candidate's (the config as given) is not chosen.
    #[arg(long, default_value = "100us", value_parser = parse_duration)]
    pub max_p99_increase: Duration,
}

/// One point of the grid: the `[shards]` keys it sets.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Candidate {
    /// `shards.count` (0: as the config says).
    pub count: usize,
    /// `shards.batch_wait`, µs.
    pub batch_wait_us: u64,
}

impl Candidate {
    fn label(&self) -> String {
        let count = if self.count == 0 {
            "as given".to_string()
        } else {
            self.count.to_string()
        };
        format!("count={count} batch_wait={}us", self.batch_wait_us)
    }
}

/// The grid for a machine of `cores` cores and a config that runs `given`
/// shards; the first point is the config as given (its shards, no batch
/// wait). A count equal to `given` is not tried twice.
pub fn grid(cores: usize, given: usize) -> Vec<Candidate> {
    let mut counts = vec![0];
    for c in [1, cores] {
        if !counts.contains(&c) && c >= 1 && c != given {
            counts.push(c);
        }
    }
    let mut g = Vec::new();
    for &count in &counts {
        for batch_wait_us in [0, 50, 100] {
            g.push(Candidate {
                count,
                batch_wait_us,
            });
        }
    }
    g
}

/// One candidate's medians.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// The candidate.
    pub candidate: Candidate,
    /// Rounds that produced a figure.
    pub runs: usize,
    /// Median rps.
    pub rps: f64,
    /// Median p50, µs.
    pub p50_us: u64,
    /// Median p99, µs.
    pub p99_us: u64,
    /// Median gate CPU per reply, µs.
    pub gate_us: f64,
    /// Median node CPU per reply, µs (0 without `--node-pid`).
    pub node_us: f64,
    /// Median gate + node CPU per reply, µs.
    pub total_us: f64,
    /// Errors, closes and failures over the rounds.
    pub troubles: u64,
}

/// One run's figures.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    rps: f64,
    p50: u64,
    p99: u64,
    gate: f64,
    node: f64,
    troubles: u64,
}

/// Writes `base` with the candidate's keys into `path`.
fn write_config(base: &toml::Table, c: &Candidate, path: &Path) -> Result<()> {
    let mut t = base.clone();
    let shards = t
        .entry("shards")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .ok_or_else(|| anyhow!("[shards] in the config is not a table"))?;
    if c.count != 0 {
        shards.remove("cores");
        shards.insert("count".into(), toml::Value::Integer(c.count as i64));
    }
    shards.insert(
        "batch_wait".into(),
        toml::Value::String(format!("{}us", c.batch_wait_us)),
    );
    let mut f = std::fs::File::create(path).with_context(|| format!("{}", path.display()))?;
    f.write_all(toml::to_string(&t)?.as_bytes())?;
    Ok(())
}

/// A started gate, stopped (SIGTERM, then SIGKILL after 5 s) when dropped.
struct Gate(Child);

impl Drop for Gate {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_gate(bin: &Path, config: &Path, log: &Path) -> Result<Gate> {
    let log = std::fs::File::create(log)?;
    let child = Command::new(bin)
        .arg("-c")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    Ok(Gate(child))
}

/// Waits until one request through the gate gets its reply (the gate is
/// up and linked to its node), up to 10 s.
fn wait_answering(args: &TuneArgs, addr: SocketAddr, gate: &mut Gate) -> Result<()> {
    let mut probe = plan(
        &args.client,
        &TimingArgs {
            warmup: Duration::ZERO,
            duration: Duration::from_millis(200),
        },
        &LoadArgs {
            conns: 1,
            cpu_pids: Vec::new(),
            ..args.load.clone()
        },
        Mode::Echo { depth: 1 },
    )?;
    probe.addr = addr;
    probe.dialer = crate::transport::Dialer::new(addr, &args.client.transport)?;
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(st)) = gate.0.try_wait() {
            bail!("the gate exited at start ({st}); see its log");
        }
        let quiet = runner::run_with(probe.clone(), &[], Hooks::quiet());
        if let Ok(o) = quiet {
            if o.counters.requests > 0 && o.counters.errors == 0 {
                return Ok(());
            }
        }
        if Instant::now() >= until {
            bail!("the gate at {addr} did not answer within 10 s; see its log");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs one candidate once.
fn run_one(
    args: &TuneArgs,
    base: &toml::Table,
    c: &Candidate,
    dir: &Path,
    bin: &Path,
) -> Result<Sample> {
    let path = dir.join("tune-gate.toml");
    write_config(base, c, &path)?;
    let text = std::fs::read_to_string(&path)?;
    let cfg = ringgate::config::Config::from_toml(&text, &path.display().to_string())
        .map_err(|e| anyhow!("{}: {e}", c.label()))?;
    let addr = match cfg.network.tcp.addr {
        a if a.ip().is_unspecified() => SocketAddr::new([127, 0, 0, 1].into(), a.port()),
        a => a,
    };
    let mut gate = start_gate(bin, &path, &dir.join("tune-gate.log"))?;
    wait_answering(args, addr, &mut gate)?;
    let mode = match args.rate {
        Some(rps) => Mode::Rate { rps },
        None => Mode::Echo { depth: 1 },
    };
    let mut p = plan(&args.client, &args.timing, &args.load, mode)?;
    p.addr = addr;
    p.dialer = crate::transport::Dialer::new(addr, &args.client.transport)?;
    let mut pids = vec![CpuPid {
        name: "gate".into(),
        pid: gate.0.id(),
    }];
    if let Some(pid) = args.node_pid {
        pids.push(CpuPid {
            name: "node".into(),
            pid,
        });
    }
    let report = runner::run_accounted("tune", &p, &args.client.threads.cores, &pids, true)?;
    let us = |name: &str| {
        report
            .cpu
            .iter()
            .find(|u| u.name == name)
            .map_or(0.0, |u| u.us_per_msg)
    };
    drop(gate);
    Ok(Sample {
        rps: report.rps,
        p50: report.latency_us.p50,
        p99: report.latency_us.p99,
        gate: us("gate"),
        node: us("node"),
        troubles: report.errors
            + report.mismatches
            + report.closed
            + report.failed
            + report.connect_failures as u64,
    })
}

fn median_f(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        0.0
    } else {
        v[v.len() / 2]
    }
}

fn median_u(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// Medians of one candidate's samples.
fn outcome(c: &Candidate, s: &[Sample]) -> Outcome {
    let gate = median_f(s.iter().map(|x| x.gate).collect());
    let node = median_f(s.iter().map(|x| x.node).collect());
    Outcome {
        candidate: c.clone(),
        runs: s.len(),
        rps: median_f(s.iter().map(|x| x.rps).collect()),
        p50_us: median_u(s.iter().map(|x| x.p50).collect()),
        p99_us: median_u(s.iter().map(|x| x.p99).collect()),
        gate_us: gate,
        node_us: node,
        total_us: median_f(s.iter().map(|x| x.gate + x.node).collect()),
        troubles: s.iter().map(|x| x.troubles).sum(),
    }
}

/// The index of the best outcome (see the module doc), if any qualifies.
pub fn best(outcomes: &[Outcome], rate: Option<u64>, max_p99_increase: Duration) -> Option<usize> {
    let ok = |o: &Outcome| o.runs > 0 && o.troubles == 0;
    match rate {
        Some(rps) => {
            let limit = outcomes.first()?.p99_us + max_p99_increase.as_micros() as u64;
            outcomes
                .iter()
                .enumerate()
                .filter(|(_, o)| ok(o) && o.rps >= rps as f64 * 0.99 && o.p99_us <= limit)
                .min_by(|a, b| a.1.total_us.total_cmp(&b.1.total_us))
                .map(|(i, _)| i)
        }
        None => outcomes
            .iter()
            .enumerate()
            .filter(|(_, o)| ok(o))
            .max_by(|a, b| a.1.rps.total_cmp(&b.1.rps))
            .map(|(i, _)| i),
    }
}

/// The `[shards]` TOML of a candidate.
pub fn toml_of(c: &Candidate) -> String {
    let mut s = String::from("[shards]\n");
    if c.count != 0 {
        s.push_str(&format!("count = {}\n", c.count));
    }
    s.push_str(&format!("batch_wait = \"{}us\"\n", c.batch_wait_us));
    s
}

/// Runs `tune` and prints the table and the best config.
pub fn run(args: TuneArgs) -> Result<()> {
    if args.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("{}", args.config.display()))?;
    let given = ringgate::config::Config::from_toml(&text, &args.config.display().to_string())?
        .shards
        .cores
        .len();
    let base: toml::Table = toml::from_str(&text)?;
    let bin = match &args.gate_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?
            .parent()
            .ok_or_else(|| anyhow!("no directory for the gate binary"))?
            .join("ringgate"),
    };
    if !bin.exists() {
        bail!("gate binary {} not found (--gate-bin)", bin.display());
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let grid = grid(cores, given);
    let dir = std::env::temp_dir().join(format!("ringgate-tune-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); grid.len()];
    for round in 1..=args.rounds {
        for (i, c) in grid.iter().enumerate() {
            eprintln!("tune: round {round}/{}: {}", args.rounds, c.label());
            match run_one(&args, &base, c, &dir, &bin) {
                Ok(s) => samples[i].push(s),
                Err(e) => eprintln!("tune: {}: {e:#}", c.label()),
            }
        }
    }
    let outcomes: Vec<Outcome> = grid
        .iter()
        .zip(&samples)
        .map(|(c, s)| outcome(c, s))
        .collect();
    let best = best(&outcomes, args.rate, args.max_p99_increase);
    if args.client.json {
        let v = serde_json::json!({
            "rate": args.rate, "conns": args.load.conns, "rounds": args.rounds,
            "outcomes": outcomes, "best": best.map(|i| toml_of(&outcomes[i].candidate)),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", table(&args, &outcomes, best));
    }
    let _ = std::fs::remove_dir_all(&dir);
    if best.is_none() {
        bail!("no candidate qualified (see the table)");
    }
    Ok(())
}

fn table(args: &TuneArgs, outcomes: &[Outcome], best: Option<usize>) -> String {
    let load = match args.rate {
        Some(r) => format!("rate {r}/s"),
        None => "closed loop, depth 1".into(),
    };
    let mut s = format!(
        "tune: {load} over {} conns, {} B payload, median of {} interleaved rounds\n",
        args.load.conns, args.load.payload, args.rounds
    );
    s.push_str(&format!(
        "{:<30} {:>8} {:>7} {:>7} {:>8} {:>8} {:>8} {:>5}\n",
        "candidate", "rps", "p50 us", "p99 us", "gate us", "node us", "total", "bad"
    ));
    for (i, o) in outcomes.iter().enumerate() {
        s.push_str(&format!(
            "{:<30} {:>8.0} {:>7} {:>7} {:>8.2} {:>8.2} {:>8.2} {:>5}{}\n",
            o.candidate.label(),
            o.rps,
            o.p50_us,
            o.p99_us,
            o.gate_us,
            o.node_us,
            o.total_us,
            o.troubles,
            if Some(i) == best { "  <- best" } else { "" }
        ));
    }
    s.push_str("(us = CPU µs per reply; bad = errors, closes and failures)\n");
    if let Some(i) = best {
        s.push_str("\nbest config (merge into the gate's config):\n");
        s.push_str(&toml_of(&outcomes[i].candidate));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(count: usize, bw: u64, rps: f64, p99: u64, total: f64) -> Outcome {
        Outcome {
            candidate: Candidate {
                count,
                batch_wait_us: bw,
            },
            runs: 3,
            rps,
            p50_us: 0,
            p99_us: p99,
            gate_us: total,
            node_us: 0.0,
            total_us: total,
            troubles: 0,
        }
    }

    #[test]
    fn grid_starts_with_the_config_as_given() {
        let g = grid(4, 4);
        assert_eq!(g.len(), 6, "as given (4 shards), then 1 shard");
        assert_eq!(
            g[0],
            Candidate {
                count: 0,
                batch_wait_us: 0
            }
        );
        assert_eq!(grid(4, 2).len(), 9, "as given, 1 and 4 shards");
        assert_eq!(grid(1, 1).len(), 3, "one core: only the batch waits");
    }

    #[test]
    fn under_a_rate_the_cheapest_within_the_p99_budget_wins() {
        let outs = [
            o(0, 0, 20_000.0, 1000, 30.0),
            o(1, 0, 20_000.0, 1050, 17.0),
            o(1, 100, 20_000.0, 1200, 12.0), // p99 beyond the budget
            o(1, 50, 19_000.0, 900, 10.0),   // did not keep up
        ];
        assert_eq!(
            best(&outs, Some(20_000), Duration::from_micros(100)),
            Some(1)
        );
        assert_eq!(
            best(&outs, Some(20_000), Duration::from_micros(300)),
            Some(2)
        );
        // Closed loop: the most rps, whatever the CPU.
        let closed = [o(0, 0, 90_000.0, 0, 20.0), o(1, 50, 120_000.0, 0, 25.0)];
        assert_eq!(best(&closed, None, Duration::ZERO), Some(1));
    }

    #[test]
    fn config_gets_the_candidates_keys() {
        let base: toml::Table =
            toml::from_str("[shards]\ncores = [0]\n[log]\nlevel = \"warn\"\n").unwrap();
        let dir = std::env::temp_dir().join(format!("tune-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("g.toml");
        write_config(
            &base,
            &Candidate {
                count: 1,
                batch_wait_us: 50,
            },
            &p,
        )
        .unwrap();
        let t: toml::Table = toml::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(t["shards"]["count"].as_integer(), Some(1));
        assert!(t["shards"].get("cores").is_none(), "count replaces cores");
        assert_eq!(t["shards"]["batch_wait"].as_str(), Some("50us"));
        assert_eq!(t["log"]["level"].as_str(), Some("warn"));
        assert_eq!(
            toml_of(&Candidate {
                count: 1,
                batch_wait_us: 50
            }),
            "[shards]\ncount = 1\nbatch_wait = \"50us\"\n"
        );
    }
}
