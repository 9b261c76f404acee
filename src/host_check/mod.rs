//! `ringgate check-host`: inspects this machine against a configuration and
//! says, one line per check, whether it is fit to run that gate or what to
//! change, why, and the command that changes it.
//!
//! This module owns the reading of `/proc` and `/sys` and the report; it
//! changes nothing on the machine. The parsing ([`proc`]) and the rules
//! ([`checks`]) are pure and tested on sample text; [`run`] is the thin
//! shell that reads the real files.
//!
//! | check | compares |
//! |---|---|
//! | `kernel` | the io_uring features the shards use ([`crate::gate::probe_kernel`]) and `kernel.io_uring_disabled` |
//! | `open files` | `RLIMIT_NOFILE` with `network.tcp.max_connections` + [`crate::gate::fd_overhead`] |
//! | `somaxconn` | `net.core.somaxconn` with `network.tcp.backlog` |
//! | `local ports` | `net.ipv4.ip_local_port_range` with the listen ports and node links |
//! | `tcp memory` | `net.ipv4.tcp_mem` with 2 pages per planned connection |
//! | `socket buffers` | `tcp_rmem`/`tcp_wmem` defaults x connections with `tcp_mem`'s maximum |
//! | `shard cores` | other threads' CPU use over ~200 ms on `shards.cores` |
//! | `nic irqs` | the NICs' interrupt affinity with `shards.cores` |

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::config::Config;

pub mod checks;
pub mod proc;
#[cfg(test)]
mod tests;

/// How long other processes' CPU use is sampled.
pub const SAMPLE: Duration = Duration::from_millis(200);
/// A thread using this share of one CPU over the sample counts as busy.
pub const BUSY_SHARE: f64 = 0.10;

/// The verdict of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Fit for the configuration.
    Ok,
    /// Something should change (the exit code becomes 1).
    Change,
    /// Could not be checked here (a file could not be read); not a failure.
    Skip,
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    /// Short name, the line's second column.
    pub name: &'static str,
    /// The verdict.
    pub status: Status,
    /// What was found, with the arithmetic.
    pub detail: String,
    /// The command (or setting) that fixes a [`Status::Change`].
    pub fix: Option<String>,
}

impl Check {
    pub(crate) fn ok(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    pub(crate) fn change(
        name: &'static str,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            name,
            status: Status::Change,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    pub(crate) fn skip(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Skip,
            detail: detail.into(),
            fix: None,
        }
    }
}

impl fmt::Display for Check {
    /// `CHANGE  somaxconn       <what and why> => fix: <command>`, one line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match self.status {
            Status::Ok => "OK",
            Status::Change => "CHANGE",
            Status::Skip => "SKIP",
        };
        write!(f, "{status:<7} {:<15} {}", self.name, self.detail)?;
        if let Some(fix) = &self.fix {
            write!(f, " => fix: {fix}")?;
        }
        Ok(())
    }
}

/// A process other than a gate whose threads were busy during the sample.
#[derive(Clone, Debug, PartialEq)]
pub struct BusyProcess {
    /// Its pid.
    pub pid: u32,
    /// Its name.
    pub comm: String,
    /// CPU used by its busy threads, in CPUs (1.0 = one core all the time).
    pub share: f64,
    /// The cores those threads may run on.
    pub cores: Vec<usize>,
}

/// One interrupt line of a network device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NicIrq {
    /// The IRQ number.
    pub irq: u32,
    /// Its name in `/proc/interrupts`.
    pub name: String,
    /// The cores it is delivered to (`effective_affinity_list`, else `smp_affinity_list`).
    pub cores: Vec<usize>,
}

/// Runs every check for `cfg` (validated), in report order.
pub fn inspect(cfg: &Config) -> Vec<Check> {
    let shards = &cfg.shards.cores;
    let online = read("/sys/devices/system/cpu/online")
        .and_then(|t| proc::list(&t))
        .unwrap_or_else(|| shards.clone());
    let spare: Vec<usize> = online.into_iter().filter(|c| !shards.contains(c)).collect();
    let tcp_mem = read("/proc/sys/net/ipv4/tcp_mem").and_then(|t| proc::triple(&t));
    let rmem = read("/proc/sys/net/ipv4/tcp_rmem").and_then(|t| proc::triple(&t));
    let wmem = read("/proc/sys/net/ipv4/tcp_wmem").and_then(|t| proc::triple(&t));
    let conns = cfg.network.tcp.max_connections;
    let page = page_size();
    let busy = busy_processes();
    vec![
        kernel(),
        open_files(cfg),
        checks::somaxconn(
            cfg.network.tcp.backlog,
            read("/proc/sys/net/core/somaxconn")
                .and_then(|t| proc::numbers(&t))
                .map(|v| v[0]),
        ),
        local_ports(cfg),
        checks::tcp_memory(conns, tcp_mem, page),
        checks::socket_buffers(conns, rmem, wmem, tcp_mem, page),
        checks::busy_cores(shards, &spare, &busy),
        checks::nic_irqs(shards, &spare, &nic_irqs()),
    ]
}

/// `ringgate check-host`: prints the report; returns whether every check passed.
pub fn run(cfg: &Config, origin: &str) -> bool {
    println!(
        "ringgate check-host: {origin}: {} shards on cores {}, network.tcp.max_connections {}",
        cfg.shards.cores.len(),
        proc::show(&cfg.shards.cores),
        cfg.network.tcp.max_connections
    );
    let report = inspect(cfg);
    for check in &report {
        println!("{check}");
    }
    let to_change = report.iter().filter(|c| c.status == Status::Change).count();
    if to_change == 0 {
        println!("fit for this configuration (see docs/deploy.md)");
    } else {
        println!("{to_change} to change (see docs/deploy.md)");
    }
    to_change == 0
}

fn read(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn kernel() -> Check {
    let release = read("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into());
    let probe = crate::gate::probe_kernel().map_err(|e| e.to_string());
    let disabled = read("/proc/sys/kernel/io_uring_disabled")
        .and_then(|t| proc::numbers(&t))
        .map(|v| v[0]);
    checks::kernel(release.trim(), probe, disabled)
}

fn open_files(cfg: &Config) -> Check {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    checks::open_files(
        cfg.network.tcp.max_connections,
        crate::gate::fd_overhead(cfg),
        lim.rlim_cur,
        lim.rlim_max,
    )
}

fn local_ports(cfg: &Config) -> Check {
    let range = read("/proc/sys/net/ipv4/ip_local_port_range")
        .and_then(|t| proc::numbers(&t))
        .and_then(|v| Some((*v.first()?, *v.get(1)?)));
    let reserved = read("/proc/sys/net/ipv4/ip_local_reserved_ports")
        .and_then(|t| proc::list(&t))
        .unwrap_or_default();
    let net = &cfg.network;
    let mut listen = vec![("network.tcp.addr", net.tcp.addr.port())];
    if net.ws.enabled {
        listen.push(("network.ws.addr", net.ws.addr.port()));
    }
    if net.mqtt.enabled {
        listen.push(("network.mqtt.addr", net.mqtt.addr.port()));
    }
    listen.retain(|(_, p)| *p != 0);
    let links = (cfg.shards.cores.len() * cfg.nodes.len()) as u64;
    checks::local_ports(range, &reserved, &listen, links, net.tcp.max_connections)
}

fn page_size() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

/// Every thread on the machine: tid -> (pid, its stat).
fn threads() -> HashMap<u32, (u32, proc::ThreadStat)> {
    let mut out = HashMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(tasks) = std::fs::read_dir(p.path().join("task")) else {
            continue;
        };
        for t in tasks.flatten() {
            if let Some(stat) = read(t.path().join("stat")).and_then(|s| proc::thread_stat(&s)) {
                out.insert(stat.tid, (pid, stat));
            }
        }
    }
    out
}

/// Processes (not gates, not kernel threads, not this one) with threads
/// busy over [`SAMPLE`], and where those threads may run.
fn busy_processes() -> Vec<BusyProcess> {
    // SAFETY: sysconf only reads a system constant.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100);
    let before = threads();
    let start = Instant::now();
    std::thread::sleep(SAMPLE);
    let after = threads();
    let elapsed = start.elapsed();
    let me = std::process::id();
    let mut by_pid: HashMap<u32, BusyProcess> = HashMap::new();
    for (tid, (pid, now)) in &after {
        let Some((_, then)) = before.get(tid) else {
            continue;
        };
        let share = proc::cpu_share(then.ticks, now.ticks, elapsed, hz);
        if share < BUSY_SHARE || now.kernel || *pid == me {
            continue;
        }
        let comm = read(format!("/proc/{pid}/comm")).unwrap_or_default();
        let comm = comm.trim();
        if comm == "ringgate" {
            continue; // a gate's own shards are meant to be there
        }
        let cores = read(format!("/proc/{pid}/task/{tid}/status"))
            .and_then(|s| proc::allowed_cpus(&s))
            .unwrap_or_else(|| vec![now.cpu]);
        let entry = by_pid.entry(*pid).or_insert_with(|| BusyProcess {
            pid: *pid,
            comm: comm.to_owned(),
            share: 0.0,
            cores: Vec::new(),
        });
        entry.share += share;
        entry.cores.extend(cores);
        entry.cores.sort_unstable();
        entry.cores.dedup();
    }
    let mut busy: Vec<BusyProcess> = by_pid.into_values().collect();
    busy.sort_by(|a, b| b.share.total_cmp(&a.share));
    busy
}

/// The IRQs of every network device with a `device` in sysfs: those its
/// PCI function lists under `msi_irqs` (or its legacy `irq`), else those
/// whose name holds the interface's name. IRQs never raised are left out.
fn nic_irqs() -> Vec<NicIrq> {
    let Some((_, lines)) = read("/proc/interrupts").map(|t| proc::interrupts(&t)) else {
        return Vec::new();
    };
    let mut numbers: Vec<u32> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for iface in std::fs::read_dir("/sys/class/net")
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(dev) = std::fs::canonicalize(iface.path().join("device")) else {
            continue; // lo, bridges, tunnels: no device, no interrupts
        };
        names.push(iface.file_name().to_string_lossy().into_owned());
        // A virtio NIC's interrupts belong to its parent PCI function.
        for dir in [Some(dev.as_path()), dev.parent()].into_iter().flatten() {
            if let Ok(msi) = std::fs::read_dir(dir.join("msi_irqs")) {
                let msi = msi.flatten();
                numbers.extend(msi.filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok()));
            } else if let Some(irq) =
                read(dir.join("irq")).and_then(|t| t.trim().parse::<u32>().ok())
            {
                numbers.extend(Some(irq).filter(|&n| n > 0));
            }
        }
    }
    lines
        .into_iter()
        .filter(|l| l.counts.iter().any(|&c| c > 0))
        .filter(|l| numbers.contains(&l.irq) || names.iter().any(|n| l.name.contains(n.as_str())))
        .map(|l| {
            let irq = l.irq;
            let cores = ["effective_affinity_list", "smp_affinity_list"]
                .iter()
                .find_map(|f| read(format!("/proc/irq/{irq}/{f}")).and_then(|t| proc::list(&t)))
                .unwrap_or_default();
            NicIrq {
                irq,
                name: l.name,
                cores,
            }
        })
        .collect()
}
