//! End to end against a real gate started in this process
//! (`ringgate::gate::Gate`, both shards): `echo` over ws and wss, a `connect`
//! storm over ws, and `push` / `broadcast` from the load generator's own node,
//! all through the real binary and its JSON report.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use ringgate::node::{Context, Node, NodeHandle};

mod common;
use common::{assert_clean, client, gate_config, start_gate, BIN};

/// An echo node on route 1.
fn echo_node() -> NodeHandle {
    Node::builder("echo")
        .listen("127.0.0.1:0".parse().unwrap())
        .route(1, |ctx: &mut Context| {
            let p = ctx.payload().clone();
            ctx.reply(p);
        })
        .bind()
        .expect("bind echo node")
        .spawn()
}

/// A free loopback port (for the load generator's node, which the gate
/// must know before it starts).
fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "ringgate-loadtest-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A self-signed (not CA) certificate for `localhost` and 127.0.0.1, as
/// PEM files: (cert, key).
fn write_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("rcgen generates a certificate");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    (cert, key)
}

#[test]
fn echo_over_websocket() {
    let node = echo_node();
    let gate = start_gate(gate_config(&[node.local_addr()]), 2);
    let ws = gate.ws_addr().unwrap().to_string();
    let r = client(&[
        "echo",
        "--transport",
        "ws",
        "--addr",
        &ws,
        "--conns",
        "20",
        "--depth",
        "2",
        "--duration",
        "1s",
        "--warmup",
        "0s",
        "--threads",
        "2",
        "--payload",
        "300",
    ]);
    assert_eq!(r["transport"], "ws", "{r}");
    assert_eq!(r["conns"], 20, "{r}");
    assert!(r["requests"].as_u64().unwrap() > 100, "{r}");
    assert_clean(
        &r,
        &[
            "errors",
            "mismatches",
            "closed",
            "failed",
            "connect_failures",
        ],
    );

    // A wrong path is refused at the upgrade (404), per connection.
    let out = Command::new(BIN)
        .args([
            "echo",
            "--transport",
            "ws",
            "--ws-path",
            "/nope",
            "--addr",
            &ws,
        ])
        .args(["--conns", "2", "--duration", "1s"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("404"), "{err}");

    // Heartbeats over ws are answered, and the idle scenario works too.
    let r = client(&[
        "idle",
        "--transport",
        "ws",
        "--addr",
        &ws,
        "--conns",
        "10",
        "--hold",
        "1s",
        "--heartbeat",
        "300ms",
    ]);
    assert!(r["heartbeats_received"].as_u64().unwrap() >= 10, "{r}");
    assert_eq!(r["heartbeats_received"], r["heartbeats_sent"], "{r}");
    assert_eq!(r["closed"], 0, "{r}");
    drop(gate);
}

#[test]
fn echo_and_storm_over_tls_websocket() {
    let dir = TempDir::new();
    let (cert, key) = write_cert(&dir.0);
    let node = echo_node();
    let mut cfg = gate_config(&[node.local_addr()]);
    cfg.network.ws.cert_file = cert.clone();
    cfg.network.ws.key_file = key;
    let gate = start_gate(cfg, 2);
    let wss = gate.ws_addr().unwrap().to_string();
    let cafile = cert.to_str().unwrap();
    let r = client(&[
        "echo",
        "--transport",
        "wss",
        "--cafile",
        cafile,
        "--addr",
        &wss,
        "--conns",
        "10",
        "--duration",
        "1s",
        "--warmup",
        "0s",
        "--payload",
        "2000",
    ]);
    assert_eq!(r["transport"], "wss", "{r}");
    assert!(r["requests"].as_u64().unwrap() > 50, "{r}");
    assert_clean(
        &r,
        &[
            "errors",
            "mismatches",
            "closed",
            "failed",
            "connect_failures",
        ],
    );

    let r = client(&[
        "connect",
        "--transport",
        "wss",
        "--insecure",
        "--addr",
        &wss,
        "--conns",
        "100",
        "--threads",
        "2",
        "--reset",
    ]);
    assert_eq!(r["replied"], 100, "{r}");
    assert_eq!(r["handshakes"], 100, "{r}");
    assert_eq!(r["failures"], 0, "{r}");
    assert!(r["handshakes_per_s"].as_f64().unwrap() > 0.0, "{r}");
    let (hs, reply) = (&r["handshake_us"]["p50"], &r["first_reply_us"]["p50"]);
    assert!(hs.as_u64() <= reply.as_u64(), "{r}");

    // Plain ws to a TLS port: the upgrade never completes.
    let out = Command::new(BIN)
        .args([
            "connect",
            "--transport",
            "ws",
            "--addr",
            &wss,
            "--conns",
            "2",
        ])
        .args(["--timeout", "1s", "--json"])
        .output()
        .unwrap();
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["replied"], 0, "{r}");
    drop(gate);
}

#[test]
fn connect_storm_over_websocket() {
    let node = echo_node();
    let gate = start_gate(gate_config(&[node.local_addr()]), 2);
    let ws = gate.ws_addr().unwrap().to_string();
    let r = client(&[
        "connect",
        "--transport",
        "ws",
        "--addr",
        &ws,
        "--conns",
        "300",
        "--threads",
        "2",
        "--reset",
    ]);
    assert_eq!(r["transport"], "ws", "{r}");
    assert_eq!(r["replied"], 300, "{r}");
    assert_eq!(r["handshakes"], 300, "{r}");
    assert_eq!(r["failures"], 0, "{r}");
    assert_eq!(r["handshake_us"]["count"], 300, "{r}");
    drop(gate);
}

#[test]
fn push_by_uid_delivers_everything_once() {
    let node_addr = free_addr();
    let gate = start_gate(gate_config(&[node_addr]), 0);
    let node = node_addr.to_string();
    let tcp = gate.tcp_addr().to_string();
    // Open loop over tcp.
    let r = client(&[
        "push",
        "--addr",
        &tcp,
        "--node-listen",
        &node,
        "--conns",
        "50",
        "--rate",
        "5000",
        "--duration",
        "1s",
        "--warmup",
        "200ms",
        "--threads",
        "2",
        "--payload",
        "40",
    ]);
    assert_eq!(r["conns"], 50, "{r}");
    let sent = r["sent_total"].as_u64().unwrap();
    assert!((5000..=6500).contains(&sent), "{r}");
    assert_eq!(r["delivered_total"], sent, "{r}");
    assert_clean(
        &r,
        &[
            "lost",
            "duplicates",
            "reordered",
            "push_errors",
            "mismatches",
            "closed",
            "failed",
            "connect_failures",
        ],
    );
    assert!(r["latency_us"]["count"].as_u64().unwrap() > 4000, "{r}");

    // As fast as possible over ws, bounded in flight.
    let ws = gate.ws_addr().unwrap().to_string();
    let r = client(&[
        "push",
        "--transport",
        "ws",
        "--addr",
        &ws,
        "--node-listen",
        &node,
        "--conns",
        "50",
        "--rate",
        "0",
        "--max-inflight",
        "500",
        "--duration",
        "1s",
        "--warmup",
        "0s",
    ]);
    assert!(r["sent_total"].as_u64().unwrap() > 1000, "{r}");
    assert_eq!(r["delivered_total"], r["sent_total"], "{r}");
    assert_clean(
        &r,
        &[
            "lost",
            "duplicates",
            "reordered",
            "push_errors",
            "mismatches",
            "closed",
            "failed",
            "connect_failures",
        ],
    );
    drop(gate);
}

#[test]
fn broadcast_reaches_every_connection() {
    let node_addr = free_addr();
    let gate = start_gate(gate_config(&[node_addr]), 0);
    let tcp = gate.tcp_addr().to_string();
    let r = client(&[
        "broadcast",
        "--addr",
        &tcp,
        "--node-listen",
        &node_addr.to_string(),
        "--conns",
        "100",
        "--interval",
        "50ms",
        "--duration",
        "1s",
        "--warmup",
        "0s",
        "--threads",
        "2",
    ]);
    assert_eq!(r["conns"], 100, "{r}");
    let b = r["broadcasts"].as_u64().unwrap();
    assert!((18..=21).contains(&b), "{r}");
    assert_eq!(r["expected_total"], b * 100, "{r}");
    assert_eq!(r["delivered_total"], b * 100, "{r}");
    assert_clean(
        &r,
        &[
            "missing",
            "duplicates",
            "reordered",
            "broadcast_errors",
            "mismatches",
            "closed",
            "failed",
            "connect_failures",
        ],
    );
    drop(gate);
}

#[test]
fn push_without_the_gate_says_what_to_configure() {
    // No gate dials this node: a clear error after --link-wait.
    let node = free_addr().to_string();
    let out = Command::new(BIN)
        .args(["push", "--addr", "127.0.0.1:1", "--node-listen", &node])
        .args(["--link-wait", "300ms", "--duration", "1s"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("[[nodes]]") && err.contains(&node), "{err}");
}
