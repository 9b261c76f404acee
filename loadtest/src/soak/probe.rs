//! What the soak reads of the gate's process from `/proc`: its resident
//! memory, its open descriptors and its open-files limit; and the default
//! connection count those limits allow.

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::idle::parse_vm_rss;

/// Descriptors left unused under the smaller of the two processes'
/// open-file limits by the default `--conns`: the gate's listeners, rings
/// and node links, the load generator's node, and the connections that
/// overlap while churn replaces them.
pub const FD_HEADROOM: u64 = 1000;

/// One reading of the gate, with what the clients had done by then.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds since the run started (negative: before, during the ramp).
    pub t: f64,
    /// The gate's `VmRSS`, bytes.
    pub rss: u64,
    /// The gate's open descriptors.
    pub fds: u64,
    /// Client connections open.
    pub open: u64,
    /// Requests answered so far.
    pub answered: u64,
}

/// The resident memory of `pid`, bytes.
pub fn rss(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {path} (is --gate-pid the gate?)"))?;
    parse_vm_rss(&status).with_context(|| format!("no VmRSS in {path}"))
}

/// How many descriptors `pid` has open.
pub fn fds(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/fd");
    let dir = std::fs::read_dir(&path).with_context(|| format!("listing {path}"))?;
    Ok(dir.count() as u64)
}

/// The soft "Max open files" of a `/proc/PID/limits` text.
pub fn parse_nofile(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    match soft {
        "unlimited" => Some(u64::MAX),
        n => n.parse().ok(),
    }
}

/// The soft open-files limit of `pid`.
pub fn nofile(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/limits");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_nofile(&text).with_context(|| format!("no \"Max open files\" in {path}"))
}

/// This process's soft open-files limit (`main` raised it to the hard one).
pub fn own_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    lim.rlim_cur
}

/// The default `--conns`: what fits under both processes' open-file limits
/// with [`FD_HEADROOM`] to spare.
pub fn default_conns(own: u64, gate: u64) -> Result<usize> {
    let limit = own.min(gate);
    let n = limit.saturating_sub(FD_HEADROOM);
    if n < 100 {
        bail!(
            "the open-file limits (this process {own}, the gate {gate}) leave room for {n} \
             connections: raise them (ulimit -n) or give --conns"
        );
    }
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// The median of three or fewer values (their mean for two).
pub fn median(mut v: Vec<u64>) -> Option<u64> {
    v.sort_unstable();
    match v.len() {
        0 => None,
        2 => Some((v[0] + v[1]) / 2),
        n => Some(v[n / 2]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nofile_is_read_from_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max cpu time              unlimited            unlimited            seconds   \n\
                    Max open files            20000                20000                files     \n";
        assert_eq!(parse_nofile(text), Some(20000));
        assert_eq!(
            parse_nofile("Max open files  unlimited unlimited files"),
            Some(u64::MAX)
        );
        assert_eq!(parse_nofile("nothing"), None);
    }

    #[test]
    fn own_process_is_readable() {
        let me = std::process::id();
        assert!(rss(me).unwrap() > 0);
        assert!(fds(me).unwrap() >= 3);
        assert_eq!(nofile(me).unwrap(), own_nofile());
    }

    #[test]
    fn default_conns_leave_headroom_under_the_smaller_limit() {
        assert_eq!(default_conns(20_000, 20_000).unwrap(), 19_000);
        assert_eq!(default_conns(65_536, 20_000).unwrap(), 19_000);
        assert!(default_conns(1024, 1_000_000).is_err());
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![5]), Some(5));
        assert_eq!(median(vec![4, 6]), Some(5));
        assert_eq!(median(vec![9, 1, 5]), Some(5));
    }
}
