//! `[limits]` changed by a reload of the running gate: rates for the open
//! connections' next requests, the per-address cap for new connections.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use ringgate::codec::ext;
use ringgate::config::Config;
use ringgate::gate::Gate;

use crate::common::{wait_until, Client, PATIENCE};
use crate::rates::{answers, count, requests};
use crate::{echo, opts, serial, served, shards};

/// A gate's file: loopback ports, `node`, then `limits` (TOML, may be empty).
fn file_text(node: SocketAddr, limits: &str) -> String {
    format!(
        "[network.tcp]\naddr = \"127.0.0.1:0\"\n[network.tcp.heartbeat]\ninterval = \"60s\"\n\
         [network.ws]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n\
         [shards]\nbuffer_count = 256\n[[nodes]]\naddr = \"{node}\"\n{limits}"
    )
}

#[test]
fn a_reload_applies_new_limits_to_open_connections_and_new_ones() {
    let _turn = serial();
    let node = echo();
    let dir = std::env::temp_dir().join(format!("ringgate-limits-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("gate.toml");
    std::fs::write(&file, file_text(node.local_addr(), "")).unwrap();
    let cfg = Config::load(&file).unwrap();
    let g = Gate::start_from_file(&cfg, Some(&file)).unwrap();
    wait_until(PATIENCE, "every link up", || g.stats().links_up == shards());
    let addr = g.tcp_addr();
    // Open before the limits: unlimited, and counted under no address.
    let mut early = Client::connect(addr, opts());
    early.s.write_all(&requests(100, b"free")).unwrap();
    assert_eq!(count(&answers(&mut early, 100), 0), 100);

    let limits =
        "[limits]\nrequests_per_sec = 10\nrequests_burst = 20\nmax_connections_per_ip = 2\n";
    std::fs::write(&file, file_text(node.local_addr(), limits)).unwrap();
    let report = g.reload().unwrap();
    let keys: Vec<&str> = report.applied.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "limits.max_connections_per_ip",
            "limits.requests_burst",
            "limits.requests_per_sec"
        ]
    );
    assert!(
        report.needs_restart.is_empty(),
        "{:?}",
        report.needs_restart
    );
    // The open connection's next requests meet the rate, from a full bucket.
    early.s.write_all(&requests(100, b"limited")).unwrap();
    let codes = answers(&mut early, 100);
    let passed = count(&codes, 0);
    assert!(
        (20..=30).contains(&passed),
        "{passed} passed after the reload: {codes:?}"
    );
    assert_eq!(count(&codes, ext::RATE_LIMITED), 100 - passed);
    // New connections count under their address (the early one does not).
    let two: Vec<Client> = (0..2).map(|_| served(addr).expect("within")).collect();
    assert!(served(addr).is_none(), "a third counted one from 127.0.0.1");

    // Back to the defaults: no rate, no address cap.
    std::fs::write(&file, file_text(node.local_addr(), "")).unwrap();
    assert_eq!(g.reload().unwrap().applied.len(), 3);
    assert!(served(addr).is_some(), "no address cap any more");
    std::thread::sleep(Duration::from_millis(10));
    early.s.write_all(&requests(100, b"free again")).unwrap();
    assert_eq!(count(&answers(&mut early, 100), 0), 100);
    drop(two);
    g.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
