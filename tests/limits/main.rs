//! `[limits]` against a real gate on 127.0.0.1 (docs/limits.md): floods
//! above the rates with a canary client that must lose nothing, requests
//! in flight, connections per address, accept storms, handshakes that never
//! finish, MQTT's flavour of each (`rates.rs`, `sources.rs`); and resource
//! exhaustion: EMFILE on the real binary under a lowered `RLIMIT_NOFILE`,
//! a node that stops reading, a full cross-shard inbox (`exhaustion.rs`).
//!
//! The tests take turns (`serial`): some measure the process (its memory,
//! the gate binary's CPU time) and the rate bounds are fairer on a 2-core
//! machine without the other tests' gates competing.

#[path = "../common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "../mqtt/node.rs"]
mod mqtt_node;

mod exhaustion;
mod rates;
mod reload;
mod sources;

use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use common::mqtt_raw;
use common::{test_config, wait_until, Client, PATIENCE};
use ringgate::codec::PacketOptions;
use ringgate::config::Config;
use ringgate::gate::Gate;

/// The due echo route of `common::echo_node` (answered: a reply route).
const ECHO: i32 = 1;

/// One test at a time (see the module docs).
fn serial() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn opts() -> PacketOptions {
    Config::default().packet
}

/// A gate in front of `nodes`, one shard when `one_shard` (else every
/// core); its links are not waited for (a scripted node accepts them after).
fn gate(nodes: &[SocketAddr], one_shard: bool, tweak: impl FnOnce(&mut Config)) -> Gate {
    common::init_logs();
    let mut cfg = test_config(nodes);
    if one_shard {
        cfg.shards.count = 1;
        cfg.shards.cores.clear();
    }
    tweak(&mut cfg);
    cfg.validate().expect("valid test config");
    Gate::start(&cfg).expect("gate starts")
}

/// [`gate`], then waits until `links` node links are up.
fn gate_up(
    nodes: &[SocketAddr],
    one_shard: bool,
    links: u64,
    tweak: impl FnOnce(&mut Config),
) -> Gate {
    let g = gate(nodes, one_shard, tweak);
    wait_until(PATIENCE, "every link up", || g.stats().links_up == links);
    g
}

/// `common::echo_node` on a free port.
fn echo() -> ringgate::node::NodeHandle {
    common::echo_node("127.0.0.1:0".parse().unwrap())
}

/// A gate in front of `node` (one shard when `one_shard`), links up.
fn gate_for(
    node: &ringgate::node::NodeHandle,
    one_shard: bool,
    tweak: impl FnOnce(&mut Config),
) -> Gate {
    let links = if one_shard { 1 } else { shards() };
    gate_up(&[node.local_addr()], one_shard, links, tweak)
}

/// Shards of a gate that is not `one_shard`: one per core.
fn shards() -> u64 {
    Config::default().shards.cores.len() as u64
}

/// Connects to `addr` (from `from`, if given) and asks the echo route
/// once: the client if the gate serves it, `None` if the gate closed it.
fn served_from(addr: SocketAddr, from: Option<&str>) -> Option<Client> {
    let s = match from {
        None => std::net::TcpStream::connect(addr).expect("connect"),
        Some(ip) => {
            use socket2::{Domain, Socket, Type};
            let s = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
            let local: SocketAddr = format!("{ip}:0").parse().unwrap();
            s.bind(&local.into()).unwrap();
            s.connect(&addr.into()).expect("connect");
            s.into()
        }
    };
    let mut c = Client::from_stream(s, opts());
    c.send(ECHO, 1, b"served?");
    let p = c.recv_data()?;
    assert_eq!((p.ext, &p.payload[..]), (0, &b"served?"[..]), "an echo");
    Some(c)
}

/// [`served_from`] the default source address.
fn served(addr: SocketAddr) -> Option<Client> {
    served_from(addr, None)
}

/// A client that sends a request every `every` until told to stop, and
/// checks each reply: the gate's other clients must lose nothing.
struct Canary {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<u32>,
}

impl Canary {
    fn start(addr: SocketAddr, every: Duration) -> Canary {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let mut c = Client::connect(addr, opts());
        let thread = std::thread::spawn(move || {
            let mut seq = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                seq += 1;
                let body = format!("canary {seq}");
                c.send(ECHO, seq, body.as_bytes());
                let p = c.recv_data().expect("the canary's reply");
                assert_eq!(
                    (p.ext, p.seq, &p.payload[..]),
                    (0, seq, body.as_bytes()),
                    "the canary's request {seq} answered as asked"
                );
                std::thread::sleep(every);
            }
            seq as u32
        });
        Canary { stop, thread }
    }

    /// Stops it; the requests it sent, every one answered.
    fn finish(self) -> u32 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().expect("the canary lost nothing")
    }
}

/// Waits a little for the gate to settle a refusal it decided.
const SHORT: Duration = Duration::from_millis(300);
