//! End to end: the `connect` storm against `serve-echo` on a free port,
//! through the real binary, checking the JSON report.

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

/// Starts `serve-echo --threads 2` on 127.0.0.1:0; returns it and its address.
fn serve() -> (Server, String) {
    let mut child = Command::new(BIN)
        .args(["serve-echo", "--listen", "127.0.0.1:0", "--threads", "2"])
        .args(["--for", "60s"])
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

/// Runs `connect` with `args` and parses its JSON report.
fn storm(args: &[&str]) -> serde_json::Value {
    let out = Command::new(BIN)
        .arg("connect")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "connect failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn every_connection_gets_its_reply() {
    let (_server, addr) = serve();
    let r = storm(&["--addr", &addr, "--conns", "300", "--threads", "2"]);
    assert_eq!(r["conns"], 300, "{r}");
    assert_eq!(r["replied"], 300, "{r}");
    assert_eq!(r["failures"], 0, "{r}");
    assert_eq!(r["held"], 0, "{r}");
    assert_eq!(r["target_rate"], serde_json::Value::Null, "{r}");
    assert!(r["connects_per_s"].as_f64().unwrap() > 0.0, "{r}");
    assert_eq!(r["first_reply_us"]["count"], 300, "{r}");
    assert_eq!(r["connect_us"]["count"], 300, "{r}");
    let (connect, reply) = (&r["connect_us"]["p50"], &r["first_reply_us"]["p50"]);
    assert!(connect.as_u64() <= reply.as_u64(), "{r}");
}

#[test]
fn paced_and_held() {
    let (_server, addr) = serve();
    let r = storm(&[
        "--addr", &addr, "--conns", "200", "--rate", "1000", "--hold", "--reset",
    ]);
    assert_eq!(r["replied"], 200, "{r}");
    assert_eq!(r["held"], 200, "{r}");
    assert_eq!(r["target_rate"], 1000, "{r}");
    // 200 attempts at 1000/s are spread over about 0.2 s.
    let elapsed = r["elapsed_s"].as_f64().unwrap();
    assert!((0.15..2.0).contains(&elapsed), "{r}");
}

#[test]
fn a_closed_port_is_a_connect_error_per_attempt() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let r = storm(&["--addr", &addr, "--conns", "20", "--timeout", "2s"]);
    assert_eq!(r["replied"], 0, "{r}");
    assert_eq!(r["connect_errors"], 20, "{r}");
    assert_eq!(r["failures"], 20, "{r}");
}
