//! Graceful drain of the `ringgate` binary, as an operator does it: SIGTERM
//! under load with a slow node. Every request sent before the signal gets
//! its reply, nobody sees a reset, new connections are refused, nodes hear
//! the drain and every disconnect (reason `shutdown` for those the gate
//! closes at `shutdown_max_wait`), and the process exits 0 in time. A second
//! signal stops at once.

mod common;

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{wait_until, Client, PATIENCE};
use ringgate::codec::PacketOptions;
use ringgate::node::{CloseReason, Context, EventContext, EventKind, Node, NodeHandle};

struct Killable(Child);

impl Drop for Killable {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

type Heard = Arc<Mutex<Vec<(EventKind, Option<CloseReason>)>>>;

/// A node whose route 1 echoes after 300 ms, recording events.
fn slow_node(heard: Heard) -> NodeHandle {
    Node::builder("slow")
        .listen("127.0.0.1:0".parse().unwrap())
        .route(1, |ctx: &mut Context| {
            std::thread::sleep(Duration::from_millis(300));
            let p = ctx.take_payload();
            ctx.reply(p);
        })
        .workers(32)
        .on_event(
            &[EventKind::Disconnect, EventKind::Drain],
            move |ev: &mut EventContext| {
                let reason = (ev.kind() == EventKind::Disconnect).then(|| ev.reason());
                heard.lock().unwrap().push((ev.kind(), reason));
            },
        )
        .bind()
        .unwrap()
        .spawn()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the binary on a free port with `node` and `max_wait`.
fn gate(node: SocketAddr, max_wait: &str) -> (Killable, SocketAddr) {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("ringgate-drain-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let toml = dir.join("gate.toml");
    std::fs::write(
        &toml,
        format!(
            "[gate]\nshutdown_max_wait = \"{max_wait}\"\n[network.tcp]\naddr = \"127.0.0.1:{port}\"\n\
             [network.ws]\nenabled = false\n[admin]\nenabled = false\n[log]\nlevel = \"warn\"\n[[nodes]]\naddr = \"{node}\"\n"
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_ringgate"))
        .arg("--config")
        .arg(&toml)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    (Killable(child), addr)
}

fn sigterm(c: &Child) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
}

#[test]
fn sigterm_drains_every_reply_then_closes_the_rest_and_exits_zero() {
    let heard: Heard = Arc::default();
    let node = slow_node(heard.clone());
    let (mut g, addr) = gate(node.local_addr(), "2s");
    let opts = PacketOptions::default();
    wait_until(PATIENCE, "gate serving through the node", || {
        TcpStream::connect(addr).is_ok() && node.gates().links() > 0
    });
    std::thread::sleep(Duration::from_millis(300)); // every shard's link up
    let mut clients: Vec<Client> = (0..20).map(|_| Client::connect(addr, opts)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(1, i as i32, format!("r{i}").as_bytes());
    }
    let signalled = Instant::now();
    sigterm(&g.0);
    // Every request sent before the signal gets its reply.
    for (i, c) in clients.iter_mut().enumerate() {
        let p = c.recv_data().expect("a reply, not a reset");
        assert_eq!((p.ext, &p.payload[..]), (0, format!("r{i}").as_bytes()));
    }
    // New connections are refused while it drains.
    wait_until(
        PATIENCE,
        "new connections refused",
        || matches!(TcpStream::connect(addr), Err(e) if e.kind() == ErrorKind::ConnectionRefused),
    );
    // Half the clients leave by themselves; the gate closes the others at
    // shutdown_max_wait, cleanly (EOF, not a reset).
    clients.truncate(10);
    for c in &mut clients {
        assert!(
            c.closed_within(Duration::from_secs(5)),
            "closed by the gate"
        );
    }
    let status = g.0.wait().unwrap();
    let took = signalled.elapsed();
    assert!(status.success(), "exit code {status:?}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(5),
        "{took:?}"
    );
    let end = Instant::now() + PATIENCE;
    let disconnects = |h: &Heard| {
        h.lock()
            .unwrap()
            .iter()
            .filter(|x| x.0 == EventKind::Disconnect)
            .count()
    };
    // 20 clients, plus the probe connections made while waiting for the gate.
    while disconnects(&heard) < 20 {
        assert!(
            Instant::now() < end,
            "nodes did not hear every disconnect: {:?}",
            heard.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let h = heard.lock().unwrap().clone();
    assert!(h.iter().any(|x| x.0 == EventKind::Drain), "{h:?}");
    let shutdown = h
        .iter()
        .filter(|x| x.1 == Some(CloseReason::Shutdown))
        .count();
    let closed = h
        .iter()
        .filter(|x| x.1 == Some(CloseReason::ClientClosed))
        .count();
    assert_eq!(
        shutdown, 10,
        "the clients still open at shutdown_max_wait: {h:?}"
    );
    assert!(closed >= 10, "the clients that left by themselves: {h:?}");
}

#[test]
fn a_drain_with_nobody_left_exits_at_once_and_a_second_signal_stops() {
    let node = slow_node(Heard::default());
    let (mut g, addr) = gate(node.local_addr(), "30s");
    wait_until(PATIENCE, "gate up", || TcpStream::connect(addr).is_ok());
    // Nobody connected: the drain ends immediately.
    let t = Instant::now();
    sigterm(&g.0);
    assert!(g.0.wait().unwrap().success());
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());

    // A client that stays: the second signal does not wait the 30 s.
    let (mut g, addr) = gate(node.local_addr(), "30s");
    wait_until(PATIENCE, "gate up", || TcpStream::connect(addr).is_ok());
    let mut c = Client::connect(addr, PacketOptions::default());
    wait_until(PATIENCE, "session open", || {
        c.send_heartbeat();
        c.recv().is_some()
    });
    let t = Instant::now();
    sigterm(&g.0);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        g.0.try_wait().unwrap().is_none(),
        "still draining for the client"
    );
    sigterm(&g.0);
    assert!(g.0.wait().unwrap().success());
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(c.closed_within(PATIENCE));
}
