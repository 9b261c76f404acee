//! The rules of `check-host` on sample values.

use super::checks::*;
use super::{inspect, BusyProcess, Check, Config, NicIrq, Status};

const PAGE: u64 = 4096;

#[track_caller]
fn says(c: &Check, status: Status, parts: &[&str]) {
    let line = c.to_string();
    assert_eq!(c.status, status, "{line}");
    assert!(!line.contains('\n'), "one line: {line}");
    for p in parts {
        assert!(line.contains(p), "{line:?} lacks {p:?}");
    }
}

#[test]
fn kernel_features() {
    says(
        &kernel("6.18.0", Ok(()), Some(0)),
        Status::Ok,
        &["OK ", "kernel", "6.18.0", "DEFER_TASKRUN"],
    );
    says(&kernel("6.1.0", Ok(()), None), Status::Ok, &["6.1.0"]);
    says(
        &kernel(
            "5.15.0",
            Err("io_uring: multishot recv ... (Linux >= 6.1)".into()),
            None,
        ),
        Status::Change,
        &["CHANGE ", "5.15.0", "multishot", "=> fix: ", "6.1 or newer"],
    );
    says(
        &kernel("6.8.0", Ok(()), Some(2)),
        Status::Change,
        &[
            "io_uring_disabled = 2",
            "sysctl -w kernel.io_uring_disabled=0",
        ],
    );
    says(
        &kernel("6.8.0", Ok(()), Some(1)),
        Status::Change,
        &["io_uring_group"],
    );
}

#[test]
fn open_file_limits() {
    says(
        &open_files(5000, 72, 1024, 20000),
        Status::Ok,
        &["5072 descriptors", "hard limit is 20000", "LimitNOFILE"],
    );
    says(
        &open_files(100_000, 72, 1024, 20000),
        Status::Change,
        &[
            "100072 descriptors",
            "hard limit of this shell is 20000",
            "LimitNOFILE=131072",
            "max_connections to 19928",
        ],
    );
}

#[test]
fn listen_backlog() {
    says(
        &somaxconn(4096, Some(4096)),
        Status::Ok,
        &["somaxconn = 4096 >= network.tcp.backlog = 4096"],
    );
    says(
        &somaxconn(4096, Some(128)),
        Status::Change,
        &[
            "caps network.tcp.backlog = 4096",
            "sysctl -w net.core.somaxconn=4096",
        ],
    );
    says(&somaxconn(4096, None), Status::Skip, &["SKIP "]);
}

#[test]
fn ephemeral_ports() {
    let listen = [("network.tcp.addr", 3553), ("network.ws.addr", 3554)];
    says(
        &local_ports(Some((32768, 60999)), &[], &listen, 2, 5000),
        Status::Ok,
        &["32768-60999 (28232 ports)", "2 node links"],
    );
    says(
        &local_ports(Some((32768, 60999)), &[], &listen, 2, 100_000),
        Status::Ok,
        &["only 28232 of the 100000 planned connections"],
    );
    let inside = [("network.tcp.addr", 40000), ("network.ws.addr", 3554)];
    says(
        &local_ports(Some((32768, 60999)), &[], &inside, 2, 5000),
        Status::Change,
        &[
            "network.tcp.addr port 40000 inside",
            "ip_local_reserved_ports=40000,3554",
        ],
    );
    says(
        &local_ports(Some((32768, 60999)), &[40000], &inside, 2, 5000),
        Status::Ok,
        &[],
    );
    says(
        &local_ports(Some((60000, 60100)), &[], &listen, 2, 5000),
        Status::Change,
        &["holds 101 ports"],
    );
    says(&local_ports(None, &[], &listen, 2, 5000), Status::Skip, &[]);
}

#[test]
fn tcp_memory_arithmetic() {
    // This VM's values: pressure 383867 pages = 1.5 GiB.
    let mem = Some([287898, 383867, 575796]);
    says(
        &tcp_memory(5000, mem, PAGE),
        Status::Ok,
        &[
            "5000 connections x 2 pages",
            "= 10000 pages (39.1 MiB)",
            "383867 pages (1.5 GiB)",
        ],
    );
    says(
        &tcp_memory(1_000_000, mem, PAGE),
        Status::Change,
        &[
            "2000000 pages (7.6 GiB)",
            "above net.ipv4.tcp_mem's pressure",
            "sysctl -w net.ipv4.tcp_mem=\"2000000 4000000 6000000\"",
        ],
    );
    says(&tcp_memory(5000, None, PAGE), Status::Skip, &[]);
}

#[test]
fn socket_buffer_arithmetic() {
    let mem = Some([287898, 383867, 575796]); // max 2.2 GiB
    let r = Some([4096, 131072, 33554432]);
    let w = Some([4096, 16384, 4194304]);
    says(
        &socket_buffers(5000, r, w, mem, PAGE),
        Status::Ok,
        &[
            "(128.0 KiB rmem + 16.0 KiB wmem defaults) = 703.1 MiB",
            "maximum 2.2 GiB",
        ],
    );
    says(
        &socket_buffers(1_000_000, r, w, mem, PAGE),
        Status::Change,
        &[
            "137.3 GiB",
            "tcp_rmem=\"4096 4096 33554432\"",
            "tcp_wmem=\"4096 4096 4194304\"",
        ],
    );
    says(&socket_buffers(5000, None, w, mem, PAGE), Status::Skip, &[]);
}

fn cargo(cores: Vec<usize>) -> BusyProcess {
    BusyProcess {
        pid: 77,
        comm: "cargo".into(),
        share: 0.85,
        cores,
    }
}

#[test]
fn busy_neighbours() {
    says(
        &busy_cores(&[2, 3], &[0, 1], &[]),
        Status::Ok,
        &["cores 2-3 (other cores: 0-1)"],
    );
    says(
        &busy_cores(&[2, 3], &[0, 1], &[cargo(vec![0, 1])]),
        Status::Ok,
        &[],
    );
    says(
        &busy_cores(&[2, 3], &[0, 1], &[cargo(vec![0, 1, 2, 3])]),
        Status::Change,
        &[
            "cargo (pid 77) 85% of a CPU, may run on 0-3",
            "taskset -apc 0-1 $p",
            "CPUAffinity=0-1",
        ],
    );
    says(
        &busy_cores(&[0, 1], &[], &[cargo(vec![0, 1])]),
        Status::Change,
        &["every core runs a shard"],
    );
}

fn irq(n: u32, cores: Vec<usize>) -> NicIrq {
    NicIrq {
        irq: n,
        name: format!("eth0-TxRx-{n}"),
        cores,
    }
}

#[test]
fn nic_interrupts() {
    says(
        &nic_irqs(&[1, 2, 3], &[0], &[irq(40, vec![0])]),
        Status::Ok,
        &["none on the shard cores 1-3"],
    );
    says(
        &nic_irqs(&[1, 2, 3], &[0], &[irq(40, vec![0]), irq(41, vec![2])]),
        Status::Change,
        &[
            "41 eth0-TxRx-41 -> cores 2",
            "echo 0 > /proc/irq/41/smp_affinity_list",
            "IRQBALANCE_BANNED_CPULIST=1-3",
        ],
    );
    says(
        &nic_irqs(&[0, 1], &[], &[irq(40, vec![0, 1])]),
        Status::Ok,
        &["every core runs a shard"],
    );
    says(&nic_irqs(&[0, 1], &[], &[]), Status::Skip, &[]);
}

#[test]
fn byte_sizes() {
    assert_eq!(bytes(512), "512 B");
    assert_eq!(bytes(40_960_000), "39.1 MiB");
}

#[test]
fn this_machine_gets_one_line_per_check() {
    let mut cfg = Config::default();
    cfg.validate().unwrap();
    let report = inspect(&cfg);
    let names: Vec<&str> = report.iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            "kernel",
            "open files",
            "somaxconn",
            "local ports",
            "tcp memory",
            "socket buffers",
            "shard cores",
            "nic irqs"
        ]
    );
    assert_eq!(report[0].status, Status::Ok, "{}", report[0]);
}
