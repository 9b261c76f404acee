//! Parsers for the `/proc` and `/sys` text `check-host` reads. Pure: each
//! takes the text of one file and returns numbers, or `None` if the text is
//! not in the expected form.

use std::time::Duration;

/// The numbers of a sysctl such as `net.ipv4.tcp_mem` ("287898\t383867\t575796").
pub fn numbers(text: &str) -> Option<Vec<u64>> {
    let v: Option<Vec<u64>> = text.split_whitespace().map(|w| w.parse().ok()).collect();
    v.filter(|v| !v.is_empty())
}

/// Exactly three numbers (`tcp_mem`, `tcp_rmem`, `tcp_wmem`).
pub fn triple(text: &str) -> Option<[u64; 3]> {
    numbers(text)?.try_into().ok()
}

/// A list such as `0-3,6` (CPUs, or `ip_local_reserved_ports`); empty text is
/// an empty list. Sorted, without duplicates.
pub fn list(text: &str) -> Option<Vec<usize>> {
    let mut out = Vec::new();
    for part in text
        .trim()
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                if b < a || b - a > 1 << 20 {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Some(out)
}

/// `0-3, 6`-style rendering of a sorted list (the inverse of [`list`]).
pub fn show(items: &[usize]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < items.len() {
        let mut j = i;
        while j + 1 < items.len() && items[j + 1] == items[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            items[i].to_string()
        } else {
            format!("{}-{}", items[i], items[j])
        });
        i = j + 1;
    }
    if out.is_empty() {
        "none".into()
    } else {
        out.join(",")
    }
}

/// What `check-host` needs of one `/proc/<pid>/task/<tid>/stat` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadStat {
    /// The thread id (the line's first field).
    pub tid: u32,
    /// The thread's name.
    pub comm: String,
    /// User plus system time so far, in clock ticks.
    pub ticks: u64,
    /// The CPU it last ran on.
    pub cpu: usize,
    /// A kernel thread (`PF_KTHREAD`): pinned by the kernel, not movable.
    pub kernel: bool,
}

/// `PF_KTHREAD` in the flags field.
const PF_KTHREAD: u64 = 0x0020_0000;

/// Parses a `stat` line: `tid (comm) state ppid ...`. The name may hold
/// spaces and parentheses, so the fields are counted from its last `)`.
pub fn thread_stat(text: &str) -> Option<ThreadStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let tid = text[..open].trim().parse().ok()?;
    let comm = text.get(open + 1..close)?.to_owned();
    // Fields after the name, numbered from 3 (state) as in proc(5).
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { rest.get(n - 3)?.parse().ok() };
    Some(ThreadStat {
        tid,
        comm,
        ticks: field(14)? + field(15)?,
        cpu: field(39)? as usize,
        kernel: field(9)? & PF_KTHREAD != 0,
    })
}

/// The share of one CPU used between two samples `elapsed` apart, with the
/// kernel's `hz` ticks per second (`sysconf(_SC_CLK_TCK)`, usually 100).
pub fn cpu_share(before: u64, after: u64, elapsed: Duration, hz: u64) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 || hz == 0 {
        return 0.0;
    }
    after.saturating_sub(before) as f64 / (secs * hz as f64)
}

/// One numbered line of `/proc/interrupts`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IrqLine {
    /// The IRQ number.
    pub irq: u32,
    /// Interrupts handled by each CPU (columns in the header's order).
    pub counts: Vec<u64>,
    /// The last word of the line: the device's name for it (`eth0-TxRx-0`,
    /// `virtio2-input.0`, `mlx5_comp3@pci:0000:3b:00.0`).
    pub name: String,
}

/// Parses `/proc/interrupts`; lines not for a numbered IRQ (NMI, LOC ...)
/// are left out. Counts are mapped to CPU numbers by the `CPUn` header.
pub fn interrupts(text: &str) -> (Vec<usize>, Vec<IrqLine>) {
    let mut lines = text.lines();
    let cpus: Vec<usize> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("CPU")?.parse().ok())
        .collect();
    let mut out = Vec::new();
    for line in lines {
        let Some((irq, rest)) = line.split_once(':') else {
            continue;
        };
        let Ok(irq) = irq.trim().parse() else {
            continue;
        };
        let words: Vec<&str> = rest.split_whitespace().collect();
        let counts: Vec<u64> = words
            .iter()
            .take(cpus.len())
            .map_while(|w| w.parse().ok())
            .collect();
        if counts.len() != cpus.len() || words.len() <= counts.len() {
            continue;
        }
        out.push(IrqLine {
            irq,
            counts,
            name: words[words.len() - 1].to_owned(),
        });
    }
    (cpus, out)
}

/// The `Cpus_allowed_list` of a `/proc/<pid>/task/<tid>/status` file.
pub fn allowed_cpus(status: &str) -> Option<Vec<usize>> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .and_then(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_values() {
        assert_eq!(numbers("4096\n"), Some(vec![4096]));
        assert_eq!(
            triple("287898\t383867\t575796\n"),
            Some([287898, 383867, 575796])
        );
        assert_eq!(triple("4096 131072"), None);
        assert_eq!(numbers(""), None);
        assert_eq!(numbers("12 x"), None);
    }

    #[test]
    fn lists() {
        assert_eq!(list("0-3,6\n"), Some(vec![0, 1, 2, 3, 6]));
        assert_eq!(list("3553, 3560-3561"), Some(vec![3553, 3560, 3561]));
        assert_eq!(list(""), Some(vec![]));
        assert_eq!(list("3-1"), None);
        assert_eq!(list("a"), None);
        assert_eq!(show(&[0, 1, 2, 3, 6]), "0-3,6");
        assert_eq!(show(&[]), "none");
    }

    // Fields: tid (comm) state ppid pgrp session tty tpgid flags minflt
    // cminflt majflt cmajflt utime=14 stime=15 ... processor=39.
    const STAT: &str = "22998 (my (odd) prog) R 22988 22988 20562 0 -1 4194304 102 0 0 0 \
        250 50 0 0 20 0 1 0 2275549 3133440 360 18446744073709551615 94009212137472 \
        94009212157353 140731939682656 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn thread_stats() {
        let s = thread_stat(STAT).unwrap();
        assert_eq!(s.tid, 22998);
        assert_eq!(s.comm, "my (odd) prog");
        assert_eq!(s.ticks, 300);
        assert_eq!(s.cpu, 1);
        assert!(!s.kernel);
        let k = "15 (ksoftirqd/1) S 2 0 0 0 -1 69238848 0 0 0 0 7 90 0 0 20 0 1 0 8 0 0 \
            18446744073709551615 0 0 0 0 0 0 0 2147483647 0 0 0 0 17 1 0 0 0 0 0";
        let k = thread_stat(k).unwrap();
        assert!(k.kernel);
        assert_eq!((k.ticks, k.cpu), (97, 1));
        assert_eq!(thread_stat("garbage"), None);
    }

    #[test]
    fn cpu_shares() {
        let share = cpu_share(100, 118, Duration::from_millis(200), 100);
        assert!((share - 0.9).abs() < 1e-9, "{share}");
        assert_eq!(cpu_share(5, 5, Duration::from_millis(200), 100), 0.0);
        assert_eq!(cpu_share(9, 5, Duration::ZERO, 100), 0.0);
    }

    const INTERRUPTS: &str = "           CPU0       CPU1       \n\
  24:          1          0  IO-APIC   5-edge      ACPI:Ged\n\
  38:          0      16277 PCI-MSIX-0000:00:03.0   1-edge      virtio2-input.0\n\
  39:      13606          0 PCI-MSIX-0000:00:03.0   2-edge      virtio2-output.0\n\
 NMI:          0          0   Non-maskable interrupts\n\
 LOC:    7769628    8020679   Local timer interrupts\n\
 ERR:          0\n";

    #[test]
    fn interrupt_lines() {
        let (cpus, irqs) = interrupts(INTERRUPTS);
        assert_eq!(cpus, [0, 1]);
        assert_eq!(irqs.len(), 3);
        assert_eq!(irqs[1].irq, 38);
        assert_eq!(irqs[1].counts, [0, 16277]);
        assert_eq!(irqs[1].name, "virtio2-input.0");
        assert_eq!(irqs[0].name, "ACPI:Ged");
    }

    #[test]
    fn allowed_cpu_lists() {
        let status = "Name:\tcargo\nCpus_allowed:\t3\nCpus_allowed_list:\t0-1\nMems_allowed:\t1\n";
        assert_eq!(allowed_cpus(status), Some(vec![0, 1]));
        assert_eq!(allowed_cpus("Name:\tx\n"), None);
    }
}
