//! The WebSocket listener end to end (ws and wss): the third-party Python
//! `websockets` client (tests/clients/ws_check.py), a real headless Chromium
//! (tests/clients/browser_check.py), refused upgrades and slowloris clients
//! on raw sockets, and frame-level edge cases through a minimal WebSocket
//! client written here from RFC 6455 (masked frames; not ringgate's `ws`
//! module).

#[path = "../common/mod.rs"]
mod common;

#[allow(dead_code)]
#[path = "../../examples/chat_node.rs"]
mod chat_node;

#[allow(dead_code)]
#[path = "../../examples/echo_node.rs"]
mod echo_node;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::certs::*;
use common::ws_raw::*;
use common::*;
use ringgate::codec::PacketOptions;
use ringgate::config::Config;
use ringgate::gate::Gate;
use ringgate::node::{Context, Node, NodeHandle};
use ringgate::session::CloseReason;

/// The echo route of the chat+echo node (the chat node owns routes 1-4).
const ECHO: i32 = 10;
/// The origin the refusal test allows.
const GAME_ORIGIN: &str = "https://game.example";

// ---------------------------------------------------------------------------
// Set-up: certificates, nodes, gates, child processes
// ---------------------------------------------------------------------------

/// The chat example node plus an echo route ([`ECHO`]).
fn chat_echo_node() -> NodeHandle {
    chat_node::chat(Arc::new(chat_node::Chat::default()))
        .route(ECHO, |ctx: &mut Context| {
            let p = ctx.payload().clone();
            ctx.reply(p);
        })
        .listen("127.0.0.1:0".parse().unwrap())
        .workers(2)
        .bind()
        .expect("bind chat node")
        .spawn()
}

/// A gate (ws on 127.0.0.1:0, wss with `cert`) in front of the chat+echo node.
struct WsStack {
    gate: Gate,
    _node: NodeHandle,
}

impl WsStack {
    fn start(cert: Option<&TestCert>, tweak: impl FnOnce(&mut Config)) -> WsStack {
        init_logs();
        WsStack::start_with(chat_echo_node(), cert, tweak)
    }

    /// As [`WsStack::start`], in front of `node`.
    fn start_with(
        node: NodeHandle,
        cert: Option<&TestCert>,
        tweak: impl FnOnce(&mut Config),
    ) -> WsStack {
        init_logs();
        let mut cfg = test_config(&[node.local_addr()]);
        if let Some(c) = cert {
            cfg.network.ws.cert_file = c.cert_file.clone();
            cfg.network.ws.key_file = c.key_file.clone();
        }
        tweak(&mut cfg);
        cfg.validate().unwrap();
        let gate = Gate::start(&cfg).expect("gate starts");
        let shards = cfg.shards.cores.len() as u64;
        wait_until(PATIENCE, "every shard's link up", || {
            gate.stats().links_up == shards
        });
        WsStack { gate, _node: node }
    }

    fn ws_addr(&self) -> SocketAddr {
        self.gate.ws_addr().expect("ws listener enabled")
    }
}

/// Runs `python3 <script> <args>` with a hard deadline (see
/// [`common::run_with_deadline`]).
fn run_python(script: &str, args: &[String], deadline: Duration) -> (bool, String) {
    let path = format!("{}/tests/clients/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new("python3");
    cmd.arg(&path).args(args);
    common::run_with_deadline(cmd, deadline, "python3 (scripts/test.sh installs it)")
}

/// An established ws client echoing in a loop until stopped (the
/// "established clients are not disturbed" witness). Returns the number of
/// verified echoes.
struct Witness {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<u64>,
}

impl Witness {
    fn start(addr: SocketAddr, origin: Option<&'static str>) -> Witness {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let (s, d) = (stop.clone(), done.clone());
        let thread = std::thread::spawn(move || {
            let mut ws = WsClient::open(addr, origin, &[]);
            let mut n = 0u64;
            while !s.load(Ordering::Relaxed) {
                let seq = (n % 30_000) as i32 + 1;
                ws.echo(seq, format!("witness {n}").as_bytes());
                n += 1;
                d.store(n, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
            ws.send_frame(true, OP_CLOSE, &1000u16.to_be_bytes());
            ws.expect_close(1000);
            n
        });
        Witness { stop, done, thread }
    }

    /// Waits for `more` further echoes (proof the client is still served).
    fn advance(&self, more: u64, what: &str) {
        let from = self.done.load(Ordering::Relaxed);
        wait_until(PATIENCE, what, || {
            self.done.load(Ordering::Relaxed) >= from + more
        });
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .expect("witness client kept getting echoes")
    }
}

mod clients;
mod frames;
mod upgrades;
