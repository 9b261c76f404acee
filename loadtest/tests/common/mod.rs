//! What the load generator's end-to-end tests share: a gate config on
//! loopback, starting a gate and waiting for its node links, and running
//! the real binary for its JSON report.
#![allow(dead_code)] // not every test binary uses every helper

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use ringgate::config::{Config, NodeConfig};
use ringgate::gate::Gate;

/// The load generator under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_ringgate-loadtest");

/// A gate config for tests: loopback port 0 for tcp and ws, both cores,
/// fast redials, the given nodes.
pub fn gate_config(nodes: &[SocketAddr]) -> Config {
    let mut cfg = Config::default();
    cfg.network.tcp.addr = "127.0.0.1:0".parse().unwrap();
    cfg.network.ws.addr = "127.0.0.1:0".parse().unwrap();
    cfg.nodes = nodes
        .iter()
        .map(|a| NodeConfig {
            addr: *a,
            unix: None,
        })
        .collect();
    cfg.link.reconnect_min = Duration::from_millis(20);
    cfg.link.reconnect_max = Duration::from_millis(200);
    cfg.shards.buffer_count = 256;
    cfg
}

/// Starts a gate on `cfg` and waits until `links` node links are up.
pub fn start_gate(mut cfg: Config, links: u64) -> Gate {
    cfg.validate().expect("test config is valid");
    let gate = Gate::start(&cfg).expect("gate starts");
    let end = Instant::now() + Duration::from_secs(5);
    while gate.stats().links_up < links {
        assert!(Instant::now() < end, "node links not up");
        std::thread::sleep(Duration::from_millis(5));
    }
    gate
}

/// Runs the binary with `args` and parses its JSON report.
pub fn client(args: &[&str]) -> serde_json::Value {
    let out = Command::new(BIN).args(args).arg("--json").output().unwrap();
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Each of `fields` is 0 in report `r`.
pub fn assert_clean(r: &serde_json::Value, fields: &[&str]) {
    for f in fields {
        assert_eq!(r[*f], 0, "{f} in {r}");
    }
}
