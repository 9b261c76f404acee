//! Shared helpers for integration tests: a real gate on 127.0.0.1:0, real
//! nodes built with the SDK, and a small blocking due-format client.
#![allow(dead_code)]

pub mod admin;
pub mod certs;
pub mod etcd;
pub mod fleet;
pub mod mqtt_raw;
pub mod redis;
pub mod scripted;
pub mod ws_raw;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ringgate::codec::{self, Frame, PacketOptions};
use ringgate::config::Config;
use ringgate::gate::Gate;
use ringgate::node::{Context, Node, NodeHandle};

/// A config for tests: loopback port 0, both cores, the given nodes.
/// The independent Python client's scenarios that need no special gate
/// settings, as its command-line arguments.
#[allow(dead_code)] // not every test crate runs the Python client
pub const BASIC_SCENARIOS: [&str; 8] = [
    "--scenario",
    "heartbeat",
    "--scenario",
    "echo",
    "--scenario",
    "unknown-route",
    "--scenario",
    "oversize",
];

pub fn test_config(nodes: &[SocketAddr]) -> Config {
    let mut cfg = Config::default();
    cfg.network.tcp.addr = "127.0.0.1:0".parse().unwrap();
    cfg.network.ws.addr = "127.0.0.1:0".parse().unwrap();
    // Many gates run at once: each its own admin port.
    cfg.admin.addr = "127.0.0.1:0".parse().unwrap();
    cfg.nodes = nodes
        .iter()
        .map(|a| ringgate::config::NodeConfig {
            addr: *a,
            unix: None,
        })
        .collect();
    cfg.link.reconnect_min = Duration::from_millis(20);
    cfg.link.reconnect_max = Duration::from_millis(200);
    cfg.shards.buffer_count = 256;
    // Clients that sit idle while a test sets up others (hundreds of logins,
    // a slow client being pushed to, a Python client opening its
    // connections) must not be closed for idleness when a loaded machine
    // makes set-up slow: 60 s instead of the default 10 s (idle close at
    // 2 x interval). Tests about heartbeats and idleness set their own.
    cfg.network.tcp.heartbeat.interval = Duration::from_secs(60);
    cfg.validate().expect("test config is valid");
    cfg
}

/// Starts an echo node (route 1) on `addr` (use port 0 for any).
pub fn echo_node(addr: SocketAddr) -> NodeHandle {
    Node::builder("echo")
        .listen(addr)
        .route(1, |ctx: &mut Context| {
            let p = ctx.payload().clone();
            ctx.reply(p);
        })
        .bind()
        .expect("bind echo node")
        .spawn()
}

/// A generous deadline for what normally takes milliseconds (a reply, a
/// close the gate decided on, a counter catching up). A loaded 2-core CI
/// machine can stall any thread for a while, so end-to-end tests wait up to
/// this long for an outcome instead of asserting how fast it came; the exact
/// timing rules (idle close at 2 × heartbeat interval, authorize timeout,
/// handshake deadline, linger) are tested on virtual time in
/// src/connection/tests/timing.rs. Waiting longer costs nothing when tests
/// pass.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The resident memory of this process (an in-process gate and its test),
/// bytes, from `/proc/self/status`.
pub fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

/// Pushes `chunk` on `route` to user `uid`, checking every `check` pushes
/// whether the gate still has the user, until it does not (a client that
/// never reads is closed for overflow) or `max` pushes; returns the pushes
/// sent (`max`: the user never went offline).
pub fn flood_until_offline(
    gates: &ringgate::node::GateClient,
    uid: ringgate::UserId,
    route: i32,
    chunk: &[u8],
    (check, max): (u64, u64),
) -> u64 {
    let chunk = bytes::Bytes::copy_from_slice(chunk);
    let mut sent = 0u64;
    while sent < max {
        if gates.push_uid_nowait(uid, route, 0, chunk.clone()).is_err() {
            break;
        }
        sent += 1;
        if sent % check == 0 && !gates.is_online(uid).unwrap() {
            break;
        }
    }
    sent
}

/// Waits until `f` holds or panics after `within`.
pub fn wait_until(within: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A gate and an echo node behind it, links up.
pub struct Stack {
    pub gate: Gate,
    pub node: Option<NodeHandle>,
    pub node_addr: SocketAddr,
    pub cfg: Config,
}

/// Logs to stderr when `RINGGATE_TEST_LOG` is set (e.g. `=debug`).
pub fn init_logs() {
    if let Ok(level) = std::env::var("RINGGATE_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(level)
            .with_test_writer()
            .try_init();
    }
}

pub fn stack(tweak: impl FnOnce(&mut Config)) -> Stack {
    init_logs();
    let node = echo_node("127.0.0.1:0".parse().unwrap());
    let node_addr = node.local_addr();
    let mut cfg = test_config(&[node_addr]);
    tweak(&mut cfg);
    cfg.validate().unwrap();
    let gate = Gate::start(&cfg).expect("gate starts");
    let shards = cfg.shards.cores.len() as u64;
    wait_until(Duration::from_secs(5), "every shard's link up", || {
        gate.stats().links_up == shards
    });
    Stack {
        gate,
        node: Some(node),
        node_addr,
        cfg,
    }
}

/// A blocking due-format client.
pub struct Client {
    pub s: TcpStream,
    buf: BytesMut,
    pub opts: PacketOptions,
}

impl Client {
    pub fn connect(addr: SocketAddr, opts: PacketOptions) -> Client {
        Client::from_stream(TcpStream::connect(addr).expect("connect to gate"), opts)
    }

    /// A client over a stream already connected to the gate.
    pub fn from_stream(s: TcpStream, opts: PacketOptions) -> Client {
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        Client {
            s,
            buf: BytesMut::new(),
            opts,
        }
    }

    pub fn send(&mut self, route: i32, seq: i32, payload: &[u8]) {
        let mut b = BytesMut::new();
        codec::encode_data(0, route, seq, payload, &self.opts, &mut b).unwrap();
        self.s.write_all(&b).unwrap();
    }

    pub fn send_heartbeat(&mut self) {
        let mut b = BytesMut::new();
        codec::encode_heartbeat(None, &self.opts, &mut b);
        self.s.write_all(&b).unwrap();
    }

    /// Next frame; `None` on EOF/reset; panics on timeout.
    pub fn recv(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) =
                codec::decode(&mut self.buf, &self.opts).expect("gate sends valid packets")
            {
                return Some(f);
            }
            let mut chunk = [0u8; 65536];
            match self.s.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    panic!("no reply from gate within the read timeout")
                }
                Err(_) => return None,
            }
        }
    }

    /// The next data packet if one arrives within `within`; `None` on
    /// timeout, EOF or reset.
    pub fn recv_data_within(&mut self, within: Duration) -> Option<codec::Packet> {
        let end = Instant::now() + within;
        let got = loop {
            match codec::decode(&mut self.buf, &self.opts).expect("gate sends valid packets") {
                Some(Frame::Data(p)) => break Some(p),
                Some(Frame::Heartbeat { .. }) => continue,
                None => {}
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break None;
            }
            self.s.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 65536];
            match self.s.read(&mut chunk) {
                Ok(n) if n > 0 => self.buf.extend_from_slice(&chunk[..n]),
                _ => break None,
            }
        };
        self.s.set_read_timeout(Some(PATIENCE)).unwrap();
        got
    }

    /// Next data packet, skipping heartbeats.
    pub fn recv_data(&mut self) -> Option<codec::Packet> {
        loop {
            match self.recv()? {
                Frame::Data(p) => return Some(p),
                Frame::Heartbeat { .. } => continue,
            }
        }
    }

    /// Every data packet already received (no waiting).
    pub fn ready_data(&mut self) -> Vec<codec::Packet> {
        self.s.set_nonblocking(true).unwrap();
        let got = self.read_all_data();
        self.s.set_nonblocking(false).unwrap();
        got
    }

    /// Every data packet that arrives until the connection is quiet for
    /// `quiet` (or closes).
    pub fn drain_data(&mut self, quiet: Duration) -> Vec<codec::Packet> {
        self.s.set_read_timeout(Some(quiet)).unwrap();
        let got = self.read_all_data();
        self.s.set_read_timeout(Some(PATIENCE)).unwrap();
        got
    }

    fn read_all_data(&mut self) -> Vec<codec::Packet> {
        let mut got = Vec::new();
        loop {
            while let Some(f) =
                codec::decode(&mut self.buf, &self.opts).expect("gate sends valid packets")
            {
                if let Frame::Data(p) = f {
                    got.push(p);
                }
            }
            let mut chunk = [0u8; 65536];
            match self.s.read(&mut chunk) {
                Ok(n) if n > 0 => self.buf.extend_from_slice(&chunk[..n]),
                _ => break,
            }
        }
        got
    }

    /// True if the gate closes the connection within `within`.
    pub fn closed_within(&mut self, within: Duration) -> bool {
        self.s.set_read_timeout(Some(within)).unwrap();
        let end = Instant::now() + within;
        let mut chunk = [0u8; 4096];
        loop {
            match self.s.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return false
                }
                Err(e) => {
                    eprintln!("closed_within: read error {e:?}");
                    return true;
                }
            }
            if Instant::now() >= end {
                return false;
            }
        }
    }
}

/// Runs `cmd` with a hard deadline: SIGTERM at the deadline (the client
/// scripts clean up their own children on it), SIGKILL 5 s later. Returns
/// (success, stdout + stderr); `install` says how to get a missing program.
pub fn run_with_deadline(
    mut cmd: std::process::Command,
    deadline: Duration,
    install: &str,
) -> (bool, String) {
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {:?} ({e}): {install}", cmd.get_program()));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let end = Instant::now() + deadline;
    let mut timed_out = false;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() >= end {
            timed_out = true;
            // SAFETY: kill(2) on the pid of our own child, which has not been reaped.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let grace = Instant::now() + Duration::from_secs(5);
            while child.try_wait().unwrap().is_none() && Instant::now() < grace {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = format!(
        "{}{}{}",
        t_out.join().unwrap(),
        t_err.join().unwrap(),
        if timed_out {
            format!("\n(killed after {deadline:?})")
        } else {
            String::new()
        }
    );
    (status.success() && !timed_out, text)
}
