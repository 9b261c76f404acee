//! The 60-second soak (issue 14, item 5), through the real binaries: the
//! `ringgate` gate as a process of its own, started on `loadtest/soak.toml`
//! (its ports and `max_connections` replaced), and `ringgate-loadtest soak`
//! against it with 4,000 connections. The soak's own checks (RSS flat, no
//! lost reply, one disconnect per session, no descriptor leak, closes
//! explained) must all pass, and the churn must really have happened.
//! First, a few seconds against a gate that closes idle clients after 2 s,
//! which the soak must report as a FAIL with exit status 1.
//!
//! The gate binary is `target/<profile>/ringgate`, next to the load
//! generator; `cargo test --workspace` (scripts/test.sh) builds it, a run of
//! this crate alone needs `cargo build --release --bins` first.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

mod common;
use common::BIN;

/// Stops the gate even when an assertion fails.
struct Gate {
    child: Child,
    log: PathBuf,
}

impl Drop for Gate {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid, not reaped yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
        let _ = std::fs::remove_file(self.log.with_extension("toml"));
    }
}

impl Gate {
    /// The gate's log so far (for a failure message).
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The two tests run one after the other: each soak wants the machine.
static SERIAL: Mutex<()> = Mutex::new(());

/// Two distinct free loopback addresses: the gate's and its node's.
fn free_addrs() -> (SocketAddr, SocketAddr) {
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let b = TcpListener::bind("127.0.0.1:0").unwrap();
    (a.local_addr().unwrap(), b.local_addr().unwrap())
}

/// `loadtest/soak.toml` with the gate on `addr`, its node on `node`, and
/// `max_connections`; plus `extra` TOML appended.
fn config(addr: SocketAddr, node: SocketAddr, max: usize, extra: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/soak.toml");
    let text = std::fs::read_to_string(path).expect("loadtest/soak.toml");
    for key in [
        "127.0.0.1:3553",
        "127.0.0.1:4601",
        "max_connections = 19500",
    ] {
        assert!(text.contains(key), "soak.toml no longer has {key}");
    }
    let text = text
        .replace("127.0.0.1:3553", &addr.to_string())
        .replace("127.0.0.1:4601", &node.to_string())
        .replace(
            "max_connections = 19500",
            &format!("max_connections = {max}"),
        );
    format!("{text}\n{extra}\n")
}

/// Starts the `ringgate` binary on `toml`; returns once it accepts on `addr`.
fn start_gate(toml: &str, addr: SocketAddr) -> Gate {
    let bin = PathBuf::from(BIN).with_file_name("ringgate");
    assert!(
        bin.exists(),
        "the gate binary is missing: build it first (scripts/test.sh does: cargo build --release \
         --bins): {bin:?}"
    );
    let base = std::env::temp_dir().join(format!(
        "ringgate-soak-{}-{}",
        std::process::id(),
        addr.port()
    ));
    let (cfg, log) = (base.with_extension("toml"), base.with_extension("log"));
    std::fs::write(&cfg, toml).unwrap();
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(&bin)
        .arg("--config")
        .arg(&cfg)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .stdin(Stdio::null())
        .spawn()
        .expect("start the gate");
    let mut gate = Gate { child, log };
    let end = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        assert!(
            matches!(gate.child.try_wait(), Ok(None)),
            "the gate exited:\n{}",
            gate.log()
        );
        assert!(
            Instant::now() < end,
            "the gate is not listening:\n{}",
            gate.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    gate
}

/// Runs `soak` against `gate` with `args`: (success, JSON report, stderr).
fn soak(
    gate: &Gate,
    addr: SocketAddr,
    node: SocketAddr,
    args: &[&str],
) -> (bool, serde_json::Value, String) {
    let out = Command::new(BIN)
        .arg("soak")
        .args([
            "--addr",
            &addr.to_string(),
            "--node-listen",
            &node.to_string(),
        ])
        .args(["--gate-pid", &gate.child.id().to_string(), "--json"])
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {err}\ngate log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            gate.log()
        )
    });
    (out.status.success(), report, err)
}

/// The check `name` of report `r` passed.
fn passed(r: &serde_json::Value, name: &str) -> bool {
    let checks = r["checks"].as_array().expect("checks");
    let c = checks
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {r}"));
    c["pass"] == true
}

fn n(r: &serde_json::Value, path: &[&str]) -> u64 {
    let mut v = r;
    for p in path {
        v = &v[*p];
    }
    v.as_u64()
        .unwrap_or_else(|| panic!("{path:?} not a count in {r}"))
}

#[test]
fn a_soak_fails_when_the_gate_closes_sessions_it_should_not() {
    // Idle clients closed after 2 × 1 s, while the soak heartbeats every
    // 5 s and asks 10 questions a second of 300 connections.
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (addr, node) = free_addrs();
    let gate = start_gate(
        &config(
            addr,
            node,
            1000,
            "[network.tcp.heartbeat]\n    interval = \"1s\"\n",
        ),
        addr,
    );
    let (ok, r, err) = soak(
        &gate,
        addr,
        node,
        &[
            "--conns",
            "300",
            "--duration",
            "5s",
            "--rate",
            "10",
            "--sample",
            "1s",
        ],
    );
    assert!(
        !ok,
        "the soak passed a gate closing idle clients:\n{r}\n{err}"
    );
    assert!(err.contains("soak checks failed"), "{err}");
    assert!(!passed(&r, "closes_explained"), "{r}");
    assert!(
        n(&r, &["close_reasons", "heartbeat_timeout"]) > 0,
        "{}",
        r["close_reasons"]
    );
    // Its bookkeeping still holds: every session got its one disconnect.
    assert!(passed(&r, "one_disconnect_per_session"), "{r}");
}

#[test]
fn sixty_seconds_of_churn_at_4000_connections_pass_every_check() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (addr, node) = free_addrs();
    let gate = start_gate(&config(addr, node, 4500, ""), addr);
    let t = Instant::now();
    let (ok, r, err) = soak(
        &gate,
        addr,
        node,
        &["--conns", "4000", "--duration", "60s", "--sample", "2s"],
    );
    let took = t.elapsed();
    let failed: Vec<_> = (r["checks"].as_array().into_iter().flatten())
        .filter(|c| c["pass"] != true)
        .collect();
    assert!(
        ok && failed.is_empty(),
        "failed checks {failed:?}\nreport {r}\nstderr:\n{err}\ngate log:\n{}",
        gate.log()
    );
    eprintln!(
        "soak took {took:?}: rss start {} after warm-up {} end {}, fds {} -> {} -> {}, lost {}",
        r["rss_start"],
        r["rss_after_warmup"],
        r["rss_end"],
        r["fds_start"],
        r["fds_peak"],
        r["fds_end"],
        r["clients"]["lost"]
    );
    // The churn happened: requests answered, sessions replaced, kicks,
    // resets, slow readers flooded until the gate closed them.
    assert!(n(&r, &["clients", "answered"]) > 60_000, "{r}");
    assert!(n(&r, &["node", "connects"]) > 6_000, "{r}");
    assert!(n(&r, &["clients", "closed_abrupt"]) > 100, "{r}");
    assert!(n(&r, &["clients", "pushes"]) > 10_000, "{r}");
    assert!(n(&r, &["close_reasons", "kicked"]) > 100, "{r}");
    assert!(n(&r, &["close_reasons", "overflow"]) > 0, "{r}");
    assert!(n(&r, &["clients", "slow_episodes"]) > 5, "{r}");
    assert_eq!(n(&r, &["fds_start"]), n(&r, &["fds_end"]), "{r}");
    assert!(n(&r, &["fds_peak"]) >= 4000 + n(&r, &["fds_start"]), "{r}");
    assert_eq!(n(&r, &["clients", "lost"]), 0, "{r}");
}
