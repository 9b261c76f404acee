//! The judgements of `check-host`: numbers read from the machine and the
//! config in, one [`Check`] out. Pure (no file is read here), so each rule
//! is tested on sample values.

use super::proc::show;
use super::{BusyProcess, Check, NicIrq};

/// Bytes of socket memory the kernel charges a connection that has a small
/// message queued each way: memory is accounted per socket in whole pages
/// (`SK_MEM_QUANTUM`), one for receive and one for send.
pub const PAGES_PER_ACTIVE_CONN: u64 = 2;

/// `io_uring` state: the release, the probe's result and `kernel.io_uring_disabled`.
pub fn kernel(release: &str, probe: Result<(), String>, disabled: Option<u64>) -> Check {
    const USES: &str = "SINGLE_ISSUER + DEFER_TASKRUN rings, provided-buffer rings, EXT_ARG, \
        NODROP; multishot accept and recv, send, connect, read, async cancel";
    let name = "kernel";
    if let Err(why) = probe {
        return Check::change(
            name,
            format!("Linux {release}: {why}"),
            "run the gate on Linux 6.1 or newer with io_uring enabled \
             (sysctl -w kernel.io_uring_disabled=0)",
        );
    }
    match disabled {
        Some(2) => Check::change(
            name,
            format!("Linux {release}: kernel.io_uring_disabled = 2 turns io_uring off"),
            "sysctl -w kernel.io_uring_disabled=0",
        ),
        Some(1) => Check::change(
            name,
            format!(
                "Linux {release}: kernel.io_uring_disabled = 1 allows io_uring only to root and \
                 to the group kernel.io_uring_group"
            ),
            "sysctl -w kernel.io_uring_disabled=0, or put the gate's user in the group named by \
             kernel.io_uring_group",
        ),
        _ => Check::ok(
            name,
            format!("Linux {release}: io_uring has all the shards use ({USES})"),
        ),
    }
}

/// `RLIMIT_NOFILE` against `max_connections` plus the gate's other descriptors.
pub fn open_files(max: usize, overhead: u64, soft: u64, hard: u64) -> Check {
    let name = "open files";
    let need = max as u64 + overhead;
    let parts = format!(
        "{need} descriptors needed ({max} for network.tcp.max_connections + {overhead} for \
         listeners, rings, eventfds and node links)"
    );
    if hard < need {
        let unit = need.next_power_of_two().max(65_536);
        return Check::change(
            name,
            format!("{parts}, but the hard limit of this shell is {hard}"),
            format!(
                "LimitNOFILE={unit} in the systemd unit (etc/ringgate.service), or `ulimit -Hn \
                 {unit}` before starting it; or lower network.tcp.max_connections to {}",
                hard.saturating_sub(overhead)
            ),
        );
    }
    Check::ok(
        name,
        format!(
            "{parts}; this shell's hard limit is {hard} (soft {soft}; the gate raises its soft \
             limit itself). Under systemd the unit's LimitNOFILE= applies instead"
        ),
    )
}

/// `net.core.somaxconn` against `network.tcp.backlog`.
pub fn somaxconn(backlog: u32, somaxconn: Option<u64>) -> Check {
    let name = "somaxconn";
    let Some(max) = somaxconn else {
        return Check::skip(name, "cannot read /proc/sys/net/core/somaxconn");
    };
    if max < u64::from(backlog) {
        return Check::change(
            name,
            format!(
                "net.core.somaxconn = {max} silently caps network.tcp.backlog = {backlog} on every \
                 shard's listener: after a restart, a reconnect storm overflows the accept queues \
                 and clients wait 1 s, 3 s, 7 s to retry"
            ),
            format!(
                "sysctl -w net.core.somaxconn={backlog} (keep it: echo 'net.core.somaxconn = \
                 {backlog}' >> /etc/sysctl.d/90-ringgate.conf)"
            ),
        );
    }
    Check::ok(
        name,
        format!("net.core.somaxconn = {max} >= network.tcp.backlog = {backlog}"),
    )
}

/// The ephemeral port range: the gate's listen ports must lie outside it
/// (or be reserved), and it must hold the gate's outbound links.
pub fn local_ports(
    range: Option<(u64, u64)>,
    reserved: &[usize],
    listen: &[(&str, u16)],
    links: u64,
    max_connections: usize,
) -> Check {
    let name = "local ports";
    let Some((lo, hi)) = range.filter(|(lo, hi)| lo <= hi) else {
        return Check::skip(name, "cannot read net.ipv4.ip_local_port_range");
    };
    let size = hi - lo + 1;
    let inside: Vec<String> = listen
        .iter()
        .filter(|(_, p)| (lo..=hi).contains(&u64::from(*p)) && !reserved.contains(&(*p as usize)))
        .map(|(key, p)| format!("{key} port {p}"))
        .collect();
    if !inside.is_empty() {
        let ports: Vec<String> = listen.iter().map(|(_, p)| p.to_string()).collect();
        return Check::change(
            name,
            format!(
                "{} inside net.ipv4.ip_local_port_range {lo}-{hi}: an outgoing connection may take \
                 it as its source port while the gate restarts, and the gate then cannot listen",
                inside.join(", ")
            ),
            format!(
                "sysctl -w net.ipv4.ip_local_reserved_ports={}",
                ports.join(",")
            ),
        );
    }
    if size < links + 1024 {
        return Check::change(
            name,
            format!(
                "net.ipv4.ip_local_port_range {lo}-{hi} holds {size} ports; the gate alone dials \
                 {links} node links (shards x nodes) and others need some too"
            ),
            "sysctl -w net.ipv4.ip_local_port_range=\"10240 65535\"",
        );
    }
    let mut detail = format!(
        "{lo}-{hi} ({size} ports): the gate dials {links} node links (shards x nodes) from it; \
         clients connect in and use none; the listen ports lie outside it"
    );
    if max_connections as u64 > size {
        detail.push_str(&format!(
            ". A proxy in front dialing from one address could carry only {size} of the \
             {max_connections} planned connections to one gate port"
        ));
    }
    Check::ok(name, detail)
}

/// `net.ipv4.tcp_mem` (pages) against the memory the planned connections
/// take when each has a small message queued each way.
pub fn tcp_memory(conns: usize, tcp_mem: Option<[u64; 3]>, page: u64) -> Check {
    let name = "tcp memory";
    let Some([min, pressure, max]) = tcp_mem else {
        return Check::skip(name, "cannot read net.ipv4.tcp_mem");
    };
    let need = conns as u64 * PAGES_PER_ACTIVE_CONN;
    let arithmetic = format!(
        "{conns} connections x {PAGES_PER_ACTIVE_CONN} pages (one {page}-byte page each way, the \
         kernel's unit of socket memory) = {need} pages ({})",
        bytes(need * page)
    );
    if need > pressure {
        let (p, m) = (pressure.max(need * 2), max.max(need * 3));
        return Check::change(
            name,
            format!(
                "{arithmetic} is above net.ipv4.tcp_mem's pressure threshold {pressure} pages \
                 ({}): under pressure the kernel shrinks every socket's buffers, above {max} \
                 pages it drops packets",
                bytes(pressure * page)
            ),
            format!("sysctl -w net.ipv4.tcp_mem=\"{} {p} {m}\"", min.max(need)),
        );
    }
    Check::ok(
        name,
        format!(
            "{arithmetic}, under the pressure threshold {pressure} pages ({})",
            bytes(pressure * page)
        ),
    )
}

/// Default socket buffers (`tcp_rmem[1]`, `tcp_wmem[1]`) filled on every
/// planned connection at once (a burst to slow clients) against `tcp_mem[2]`.
pub fn socket_buffers(
    conns: usize,
    rmem: Option<[u64; 3]>,
    wmem: Option<[u64; 3]>,
    tcp_mem: Option<[u64; 3]>,
    page: u64,
) -> Check {
    let name = "socket buffers";
    let (Some(r), Some(w), Some(m)) = (rmem, wmem, tcp_mem) else {
        return Check::skip(name, "cannot read net.ipv4.tcp_rmem, tcp_wmem or tcp_mem");
    };
    let per = r[1] + w[1];
    let burst = conns as u64 * per;
    let limit = m[2] * page;
    let arithmetic = format!(
        "{conns} connections x ({} rmem + {} wmem defaults) = {} if every buffer filled at once",
        bytes(r[1]),
        bytes(w[1]),
        bytes(burst)
    );
    if burst > limit {
        // What fits per connection and direction, in whole pages, at least one.
        let each = (limit / conns.max(1) as u64 / 2 / page).max(1) * page;
        return Check::change(
            name,
            format!(
                "{arithmetic}, above net.ipv4.tcp_mem's maximum {} ({} pages): the kernel would \
                 drop packets long before; game messages are small, and autotuning still grows \
                 a busy socket's buffers up to the third value",
                bytes(limit),
                m[2]
            ),
            format!(
                "sysctl -w net.ipv4.tcp_rmem=\"{} {} {}\" net.ipv4.tcp_wmem=\"{} {} {}\" (or raise \
                 net.ipv4.tcp_mem)",
                r[0].min(each),
                r[1].min(each),
                r[2],
                w[0].min(each),
                w[1].min(each),
                w[2]
            ),
        );
    }
    Check::ok(
        name,
        format!(
            "{arithmetic}, within net.ipv4.tcp_mem's maximum {}",
            bytes(limit)
        ),
    )
}

/// Other busy processes that may run on the shards' cores.
pub fn busy_cores(shards: &[usize], spare: &[usize], busy: &[BusyProcess]) -> Check {
    let name = "shard cores";
    let on_shards: Vec<&BusyProcess> = busy
        .iter()
        .filter(|b| b.cores.iter().any(|c| shards.contains(c)))
        .collect();
    if on_shards.is_empty() {
        return Check::ok(
            name,
            format!(
                "shards pin to cores {} (other cores: {}); no other process used 10% of a CPU \
                 there over the sample",
                show(shards),
                show(spare)
            ),
        );
    }
    let who: Vec<String> = on_shards
        .iter()
        .map(|b| {
            format!(
                "{} (pid {}) {:.0}% of a CPU, may run on {}",
                b.comm,
                b.pid,
                b.share * 100.0,
                show(&b.cores)
            )
        })
        .collect();
    let pids: Vec<String> = on_shards.iter().map(|b| b.pid.to_string()).collect();
    let fix = if spare.is_empty() {
        format!(
            "every core runs a shard: give these processes cores of their own with fewer \
             shards (shards.cores), or move them to another machine (pids {})",
            pids.join(" ")
        )
    } else {
        format!(
            "for p in {}; do taskset -apc {} $p; done (for services: CPUAffinity={} in their \
             units)",
            pids.join(" "),
            show(spare),
            show(spare).replace(',', " ")
        )
    };
    Check::change(
        name,
        format!(
            "shards pin to cores {}, shared with: {}",
            show(shards),
            who.join("; ")
        ),
        fix,
    )
}

/// NIC interrupts whose affinity includes a shard's core.
pub fn nic_irqs(shards: &[usize], spare: &[usize], irqs: &[NicIrq]) -> Check {
    let name = "nic irqs";
    if irqs.is_empty() {
        return Check::skip(
            name,
            "no interrupt of a network device found in /proc/interrupts",
        );
    }
    let on_shards: Vec<&NicIrq> = irqs
        .iter()
        .filter(|i| i.cores.iter().any(|c| shards.contains(c)))
        .collect();
    let listing = |list: &[&NicIrq]| -> String {
        let v: Vec<String> = list
            .iter()
            .map(|i| format!("{} {} -> cores {}", i.irq, i.name, show(&i.cores)))
            .collect();
        v.join(", ")
    };
    if on_shards.is_empty() {
        return Check::ok(
            name,
            format!(
                "{} NIC interrupts, none on the shard cores {}",
                irqs.len(),
                show(shards)
            ),
        );
    }
    if spare.is_empty() {
        return Check::ok(
            name,
            format!(
                "every core runs a shard, so NIC interrupts share them ({}); with more cores, \
                 leave one for the OS and interrupts (docs/deploy.md)",
                listing(&on_shards)
            ),
        );
    }
    let cmds: Vec<String> = on_shards
        .iter()
        .map(|i| {
            format!(
                "echo {} > /proc/irq/{}/smp_affinity_list",
                show(spare),
                i.irq
            )
        })
        .collect();
    Check::change(
        name,
        format!(
            "NIC interrupts run on shard cores ({}): their softirq work stalls that shard's loop",
            listing(&on_shards)
        ),
        format!(
            "{}; and keep irqbalance off the shard cores (IRQBALANCE_BANNED_CPULIST={})",
            cmds.join("; "),
            show(shards)
        ),
    )
}

/// `1.5 GiB`-style rendering.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
