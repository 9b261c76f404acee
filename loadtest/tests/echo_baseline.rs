//! End to end: `serve-echo` on a free port, then `echo` against it through
//! the real binary, checking the JSON report.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_ringgate-loadtest");

/// Kills the server even when an assertion fails.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `serve-echo` on 127.0.0.1:0 and returns it with its address.
fn serve(extra: &[&str]) -> (Server, String) {
    let mut child = Command::new(BIN)
        .args(["serve-echo", "--listen", "127.0.0.1:0", "--for", "60s"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start serve-echo");
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (server, addr)
}

/// Runs the client with `args` and parses its JSON report.
fn client(args: &[&str]) -> serde_json::Value {
    let out = Command::new(BIN).args(args).arg("--json").output().unwrap();
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn echo_against_the_baseline_server() {
    let (_server, addr) = serve(&["--threads", "2"]);
    let r = client(&[
        "echo",
        "--addr",
        &addr,
        "--conns",
        "20",
        "--depth",
        "2",
        "--duration",
        "1s",
        "--warmup",
        "0s",
    ]);
    assert_eq!(r["conns"], 20, "{r}");
    assert!(r["rps"].as_f64().unwrap() > 0.0, "{r}");
    for field in [
        "errors",
        "mismatches",
        "closed",
        "failed",
        "connect_failures",
    ] {
        assert_eq!(r[field], 0, "{field} in {r}");
    }
    assert!(r["latency_us"]["count"].as_u64().unwrap() > 0, "{r}");
}

#[test]
fn echo_without_seq_and_little_endian() {
    let opts = [
        "--seq-bytes",
        "0",
        "--byte-order",
        "little",
        "--route-bytes",
        "4",
    ];
    let (_server, addr) = serve(&opts);
    let mut args = vec![
        "echo",
        "--addr",
        &addr,
        "--conns",
        "4",
        "--depth",
        "8",
        "--duration",
        "500ms",
        "--warmup",
        "0s",
        "--threads",
        "2",
        "--payload",
        "1000",
    ];
    args.extend(opts);
    let r = client(&args);
    assert!(r["requests"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["mismatches"], 0, "{r}");
}

#[test]
fn rate_and_idle_against_the_baseline_server() {
    let (server, addr) = serve(&[]);
    let r = client(&[
        "rate",
        "--addr",
        &addr,
        "--conns",
        "10",
        "--rate",
        "2000",
        "--duration",
        "1s",
        "--warmup",
        "0s",
    ]);
    let requests = r["requests"].as_u64().unwrap();
    assert!((1800..=2200).contains(&requests), "{r}");
    assert_eq!(r["errors"], 0, "{r}");

    let pid = server.0.id().to_string();
    let r = client(&[
        "idle",
        "--addr",
        &addr,
        "--conns",
        "50",
        "--hold",
        "1s",
        "--heartbeat",
        "500ms",
        "--settle",
        "100ms",
        "--pid",
        &pid,
    ]);
    assert_eq!(r["conns"], 50, "{r}");
    assert_eq!(r["closed"], 0, "{r}");
    assert!(r["heartbeats_received"].as_u64().unwrap() >= 50, "{r}");
    assert_eq!(r["heartbeats_received"], r["heartbeats_sent"], "{r}");
    assert!(r["rss_before"].as_u64().unwrap() > 0, "{r}");
}

#[test]
fn refuses_a_closed_port() {
    let out = Command::new(BIN)
        .args([
            "echo",
            "--addr",
            "127.0.0.1:1",
            "--conns",
            "2",
            "--duration",
            "1s",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no connection"));
}
