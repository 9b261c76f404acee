//! CPU accounting of the processes under test: how much CPU time the
//! gate, its node or a reference server spent per message in the measured
//! window (`--cpu-pid NAME=PID`, repeatable; several pids under one name are
//! summed, e.g. nginx's workers).
//!
//! The time is read from `/proc/<pid>/task/*/schedstat` (nanoseconds on a
//! CPU, every thread), falling back to `utime + stime` of `/proc/<pid>/stat`
//! (clock ticks) where schedstat is missing. Throughput on a shared 2-core
//! box is noisy; CPU time per message is much less so.

use std::collections::BTreeMap;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde::Serialize;

/// One `--cpu-pid NAME=PID` flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuPid {
    /// Label in the report (`gate`, `node`, `nginx`...).
    pub name: String,
    /// Process to account.
    pub pid: u32,
}

/// Parses `NAME=PID` (or a bare `PID`, named after it).
pub fn parse_cpu_pid(s: &str) -> Result<CpuPid, String> {
    let (name, pid) = match s.split_once('=') {
        Some((n, p)) => (n.trim().to_owned(), p.trim()),
        None => (s.trim().to_owned(), s.trim()),
    };
    let pid: u32 = pid
        .parse()
        .map_err(|_| format!("{s:?}: expected NAME=PID, e.g. gate=1234"))?;
    if name.is_empty() {
        return Err(format!("{s:?}: the name before '=' is empty"));
    }
    Ok(CpuPid { name, pid })
}

/// CPU nanoseconds `pid` has used so far, every thread together.
pub fn cpu_ns(pid: u32) -> Result<u64> {
    let tasks = format!("/proc/{pid}/task");
    if let Ok(dir) = std::fs::read_dir(&tasks) {
        let mut total = 0u64;
        let mut any = false;
        for t in dir.flatten() {
            let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) else {
                continue;
            };
            if let Some(ns) = s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
            {
                total += ns;
                any = true;
            }
        }
        // Threads that ended are in the process's own schedstat? No: only
        // the live ones are. The window is short and the processes under
        // test keep their threads, so the live sum is the figure.
        if any {
            return Ok(total);
        }
    }
    stat_ns(pid)
}

/// `utime + stime` of `/proc/<pid>/stat`, in ns (tick resolution).
fn stat_ns(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let s = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("{path}: {e} (is process {pid} running?)"))?;
    // The command name may hold spaces and parentheses: fields count from
    // the last ')'.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3 of stat(5), utime 14, stime 15.
    let (Some(u), Some(st)) = (f.get(11), f.get(12)) else {
        bail!("{path}: unexpected format");
    };
    let ticks = u.parse::<u64>()? + st.parse::<u64>()?;
    // SAFETY: sysconf has no preconditions; it only reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(ticks * 1_000_000_000 / hz)
}

/// One name's CPU use over the window.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CpuUse {
    /// The `--cpu-pid` name (`self` is the load generator).
    pub name: String,
    /// Its pids.
    pub pids: Vec<u32>,
    /// CPU time in the window, ms.
    pub cpu_ms: f64,
    /// Cores kept busy on average (cpu time / wall time).
    pub cores: f64,
    /// CPU µs per correct response in the window.
    pub us_per_msg: f64,
}

/// CPU ns per pid over the window, and the window's wall time.
type Deltas = (Vec<u64>, Duration);

/// Samples the CPU time of the processes at the window's start and end.
pub struct CpuWindow {
    pids: Vec<CpuPid>,
    handle: Option<JoinHandle<Result<Deltas>>>,
}

impl CpuWindow {
    /// Nothing to account (no `--cpu-pid`): the load generator itself is
    /// accounted whenever any pid is.
    pub fn new(pids: &[CpuPid]) -> CpuWindow {
        let mut pids = pids.to_vec();
        if !pids.is_empty() {
            pids.push(CpuPid {
                name: "self".into(),
                pid: std::process::id(),
            });
        }
        CpuWindow { pids, handle: None }
    }

    /// Starts the sampler: first sample at `start`, second at `start + len`.
    pub fn start(&mut self, start: Instant, len: Duration) {
        if self.pids.is_empty() {
            return;
        }
        let pids: Vec<u32> = self.pids.iter().map(|p| p.pid).collect();
        self.handle = Some(std::thread::spawn(move || {
            let sample = |pids: &[u32]| pids.iter().map(|&p| cpu_ns(p)).collect::<Result<Vec<_>>>();
            sleep_until(start);
            let t0 = Instant::now();
            let a = sample(&pids)?;
            sleep_until(start + len);
            let b = sample(&pids)?;
            let wall = t0.elapsed();
            Ok((
                a.iter()
                    .zip(&b)
                    .map(|(a, b)| b.saturating_sub(*a))
                    .collect(),
                wall,
            ))
        }));
    }

    /// The per-name figures, given the correct responses of the window.
    pub fn finish(self, responses: u64) -> Result<Vec<CpuUse>> {
        let Some(h) = self.handle else {
            return Ok(Vec::new());
        };
        let (deltas, wall) = h
            .join()
            .map_err(|_| anyhow::anyhow!("the CPU sampler panicked"))??;
        Ok(summarize(&self.pids, &deltas, wall, responses))
    }
}

/// Sums the per-pid deltas by name, in first-seen order.
fn summarize(pids: &[CpuPid], deltas: &[u64], wall: Duration, responses: u64) -> Vec<CpuUse> {
    let mut order: Vec<String> = Vec::new();
    let mut by: BTreeMap<String, (Vec<u32>, u64)> = BTreeMap::new();
    for (p, d) in pids.iter().zip(deltas) {
        if !by.contains_key(&p.name) {
            order.push(p.name.clone());
        }
        let e = by.entry(p.name.clone()).or_default();
        e.0.push(p.pid);
        e.1 += d;
    }
    order
        .into_iter()
        .map(|name| {
            let (pids, ns) = by.remove(&name).unwrap_or_default();
            CpuUse {
                name,
                pids,
                cpu_ms: ns as f64 / 1e6,
                cores: ns as f64 / wall.as_nanos().max(1) as f64,
                us_per_msg: if responses > 0 {
                    ns as f64 / 1e3 / responses as f64
                } else {
                    0.0
                },
            }
        })
        .collect()
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

/// One line per name: `cpu gate: 412.3 ms, 0.69 cores, 20.6 us/msg`.
pub fn lines(uses: &[CpuUse]) -> String {
    uses.iter()
        .map(|u| {
            format!(
                "cpu {}: {:.1} ms, {:.2} cores, {:.2} us/msg\n",
                u.name, u.cpu_ms, u.cores, u.us_per_msg
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_name_and_pid() {
        assert_eq!(
            parse_cpu_pid("gate=12").unwrap(),
            CpuPid {
                name: "gate".into(),
                pid: 12
            }
        );
        assert_eq!(parse_cpu_pid("34").unwrap().name, "34");
        assert!(parse_cpu_pid("gate=x").is_err());
        assert!(parse_cpu_pid("=5").is_err());
    }

    #[test]
    fn sums_pids_of_one_name_and_divides_by_responses() {
        let pids = [
            parse_cpu_pid("nginx=1").unwrap(),
            parse_cpu_pid("echo=2").unwrap(),
            parse_cpu_pid("nginx=3").unwrap(),
        ];
        let u = summarize(
            &pids,
            &[3_000_000, 1_000_000, 1_000_000],
            Duration::from_secs(2),
            1000,
        );
        assert_eq!(u.len(), 2);
        assert_eq!(u[0].name, "nginx");
        assert_eq!(u[0].pids, [1, 3]);
        assert_eq!(u[0].cpu_ms, 4.0);
        assert_eq!(u[0].us_per_msg, 4.0);
        assert_eq!(u[0].cores, 0.002);
        assert_eq!(u[1].us_per_msg, 1.0);
    }

    #[test]
    fn own_cpu_time_grows_while_spinning() {
        let me = std::process::id();
        let a = cpu_ns(me).unwrap();
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(30) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        std::hint::black_box(x);
        let b = cpu_ns(me).unwrap();
        assert!(b - a >= 20_000_000, "{a} -> {b}");
        assert!(stat_ns(me).unwrap() > 0);
    }
}
