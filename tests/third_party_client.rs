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
    // Every scenario but idle on a gate with the tests' long heartbeat
    // interval (test_config): the echo scenario opens its 50 connections
    // before any sends, which a loaded machine can make slow enough for a
    // short idle timeout to close the first ones.
    let mut st = stack(|_| {});
    let addr = st.gate.tcp_addr();
    let (ok, out) = check(addr, &BASIC_SCENARIOS);
    assert!(ok, "python scenarios failed:\n{out}");
    for s in ["heartbeat", "echo", "unknown-route", "oversize"] {
        assert!(
            out.contains(&format!("PASS {s}")),
            "{s} missing from:\n{out}"
        );
    }
    // idle, on its own gate with a 1 s interval (idle close at 2 s): the
    // client's one connection and request easily beat it; check_gate.py
    // accepts a close between 1.5 and 3 intervals + 1 s after the last
    // request (exact: src/connection/tests/timing.rs, idle timeout).
    let idle = stack(|c| c.network.tcp.heartbeat.interval = Duration::from_secs(1));
    let (ok, out) = check(
        idle.gate.tcp_addr(),
        &["--scenario", "idle", "--heartbeat-interval", "1"],
    );
    assert!(
        ok && out.contains("PASS idle"),
        "idle scenario failed:\n{out}"
    );
    drop(idle);

    st.node.take().unwrap().shutdown();
    wait_until(PATIENCE, "links down", || st.gate.stats().links_up == 0);
    let (ok, out) = check(addr, &["--scenario", "node-down"]);
    assert!(ok, "node-down scenario failed:\n{out}");

    let node = echo_node(st.node_addr);
    let shards = st.cfg.shards.cores.len() as u64;
    wait_until(PATIENCE, "links back up", || {
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
            &[
                "--byte-order",
                "little",
                "--route-bytes",
                "1",
                "--seq-bytes",
                "0",
                "--heartbeat-time",
            ][..],
            &BASIC_SCENARIOS[..],
            &["--echo-conns", "10", "--echo-requests", "50"][..],
        ]
        .concat(),
    );
    assert!(ok, "python scenarios failed:\n{out}");
    assert!(
        out.contains("(header 0xC0)"),
        "no timed heartbeat in:\n{out}"
    );
}
