//! The independent Python due client (tests/clients, written from the wire
//! spec, not from this code) against a real gate and a real echo node.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

fn check(addr: std::net::SocketAddr, args: &[&str]) -> (bool, String) {
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/clients/check_gate.py"
        ))
        .arg("--addr")
        .arg(addr.to_string())
        .args(args)
        .output()
        .expect("python3 runs (scripts/test.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn python_client_passes_every_scenario_then_sees_node_down_and_recovery() {
    let mut st = stack(|c| c.network.tcp.heartbeat.interval = Duration::from_millis(500));
    let addr = st.gate.tcp_addr();
    let (ok, out) = check(addr, &["--scenario", "all", "--heartbeat-interval", "0.5"]);
    assert!(ok, "python scenarios failed:\n{out}");
    for s in ["heartbeat", "echo", "unknown-route", "oversize", "idle"] {
        assert!(
            out.contains(&format!("PASS {s}")),
            "{s} missing from:\n{out}"
        );
    }

    st.node.take().unwrap().shutdown();
    wait_until(Duration::from_secs(3), "links down", || {
        st.gate.stats().links_up == 0
    });
    let (ok, out) = check(addr, &["--scenario", "node-down"]);
    assert!(ok, "node-down scenario failed:\n{out}");

    let node = echo_node(st.node_addr);
    let shards = st.cfg.shards.cores.len() as u64;
    wait_until(Duration::from_secs(5), "links back up", || {
        st.gate.stats().links_up == shards
    });
    let (ok, out) = check(
        addr,
        &[
            "--scenario",
            "echo",
            "--echo-conns",
            "10",
            "--echo-requests",
            "50",
        ],
    );
    assert!(ok, "echo after node restart failed:\n{out}");
    node.shutdown();
}

/// Also with `heartbeat_time`: the client takes the time only from a
/// heartbeat whose header has the time bit (0xC0), as due's readers do.
#[test]
fn python_client_with_little_endian_one_byte_routes_no_seq_timed_heartbeats() {
    let st = stack(|c| {
        c.packet.byte_order = ringgate::codec::ByteOrder::Little;
        c.packet.route_bytes = 1;
        c.packet.seq_bytes = 0;
        c.packet.heartbeat_time = true;
    });
    let (ok, out) = check(
        st.gate.tcp_addr(),
        &[
            "--byte-order",
            "little",
            "--route-bytes",
            "1",
            "--seq-bytes",
            "0",
            "--heartbeat-time",
            "--scenario",
            "heartbeat",
            "--scenario",
            "echo",
            "--scenario",
            "unknown-route",
            "--scenario",
            "oversize",
            "--echo-conns",
            "10",
            "--echo-requests",
            "50",
        ],
    );
    assert!(ok, "python scenarios failed:\n{out}");
    assert!(
        out.contains("(header 0xC0)"),
        "no timed heartbeat in:\n{out}"
    );
}
