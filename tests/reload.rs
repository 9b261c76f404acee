//! Reloading the configuration of the `ringgate` binary as an operator
//! does: edit the file, send SIGHUP (or `ringgate admin reload`). The log
//! level, the WebSocket origins and the static nodes change live, open
//! connections keep working, a broken file changes nothing, and a changed
//! listen address is reported as needing a restart.
//!
//! Each gate reads a file in its own temporary directory, listens on free
//! 127.0.0.1 ports and logs to a file (its standard error), which the tests
//! read. Nodes are SDK nodes in this process whose replies say which node
//! answered.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{wait_until, Client, PATIENCE};
use ringgate::admin::cli::AdminClient;
use ringgate::codec::{ext, Packet, PacketOptions};
use ringgate::node::{Context, Node, NodeHandle};

const BIN: &str = env!("CARGO_BIN_EXE_ringgate");
/// What the gate logs when a reload is done, and when it is refused.
const RELOADED: &str = "configuration reloaded";
const REFUSED: &str = "reload refused";

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A `ringgate` process on a config file it may be told to reload; killed
/// (and reaped) when dropped.
struct Gate {
    child: Child,
    cfg: PathBuf,
    log: PathBuf,
    tcp: u16,
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gate {
    /// Writes `text` to a fresh `name/gate.toml` and runs the binary on it
    /// until it logs that it started. `text` must set the TCP port `tcp`.
    fn start(name: &str, tcp: u16, text: &str) -> Gate {
        let dir =
            std::env::temp_dir().join(format!("ringgate-reload-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (cfg, log) = (dir.join("gate.toml"), dir.join("stderr.log"));
        std::fs::write(&cfg, text).unwrap();
        let child = Command::new(BIN)
            .arg("--config")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let gate = Gate {
            child,
            cfg,
            log,
            tcp,
        };
        gate.wait_log("ringgate started", 1);
        gate
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.tcp))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log holds `what` at least `n` times.
    #[track_caller]
    fn wait_log(&self, what: &str, n: usize) {
        let end = Instant::now() + PATIENCE;
        while self.log().matches(what).count() < n {
            assert!(
                Instant::now() < end,
                "the gate never logged {what:?} {n} times; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Writes `text` as the config file, sends SIGHUP and waits until the
    /// gate logs that it reloaded (or refused to).
    fn reload_with(&self, text: &str) {
        std::fs::write(&self.cfg, text).unwrap();
        let log = self.log();
        let done = log.matches(RELOADED).count() + log.matches(REFUSED).count();
        // SAFETY: kill(2) reads no memory of ours; the pid is our unreaped child's.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGHUP) };
        let end = Instant::now() + PATIENCE;
        loop {
            let log = self.log();
            if log.matches(RELOADED).count() + log.matches(REFUSED).count() > done {
                return;
            }
            assert!(Instant::now() < end, "no reload after SIGHUP; log:\n{log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

/// `[network.ws]` of a gate without a WebSocket listener.
const NO_WS: &str = "enabled = false";

/// A config: `shards` shards, the TCP port, `ws` as the body of
/// `[network.ws]`, admin on `admin` (0: off), then `rest` (tables of the
/// test's own).
fn toml(shards: usize, tcp: u16, ws: &str, admin: u16, rest: &str) -> String {
    let admin = match admin {
        0 => "enabled = false".to_owned(),
        p => format!("addr = \"127.0.0.1:{p}\""),
    };
    format!(
        "[shards]\ncount = {shards}\n[network.tcp]\naddr = \"127.0.0.1:{tcp}\"\n\
         [network.tcp.heartbeat]\ninterval = \"60s\"\n[network.ws]\n{ws}\n[admin]\n{admin}\n\
         [link]\nreconnect_min = \"20ms\"\nreconnect_max = \"200ms\"\nrequest_timeout = \"30s\"\n{rest}"
    )
}

/// A `[[nodes]]` entry nobody serves (the gate runs without it).
fn nobody() -> String {
    nodes(&["127.0.0.1:9".parse().unwrap()])
}

fn nodes(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(|a| format!("[[nodes]]\naddr = \"{a}\"\n"))
        .collect()
}

/// A node whose route 1 answers its `name`; with `hold`, it also serves
/// route 2 and never answers it, telling `hold` each seq it got.
fn named_node(name: &'static str, hold: Option<mpsc::Sender<i32>>) -> NodeHandle {
    let mut b = Node::builder(name)
        .listen("127.0.0.1:0".parse().unwrap())
        .route(1, move |ctx: &mut Context| ctx.reply(name));
    if let Some(tx) = hold {
        let tx = Mutex::new(tx);
        b = b.route(2, move |ctx: &mut Context| {
            let _ = tx.lock().unwrap().send(ctx.seq());
        });
    }
    b.bind().expect("bind a test node").spawn()
}

/// A round trip on `c`: a heartbeat, answered by the gate itself.
fn heartbeat(c: &mut Client) {
    c.send_heartbeat();
    let f = c.recv().expect("the gate answers a heartbeat");
    assert!(
        matches!(f, ringgate::codec::Frame::Heartbeat { .. }),
        "{f:?}"
    );
}

/// Sends a request on `route` and returns the reply.
fn ask(c: &mut Client, route: i32, seq: i32) -> Packet {
    c.send(route, seq, b"?");
    c.recv_data().expect("a reply")
}

fn debug_connects(log: &str) -> usize {
    log.matches(": connected").count()
}

#[test]
fn log_level_follows_the_file_on_sighup() {
    let tcp = free_port();
    let text = |level: &str| {
        toml(
            1,
            tcp,
            NO_WS,
            0,
            &format!("[log]\nlevel = \"{level}\"\n{}", nobody()),
        )
    };
    let g = Gate::start("level", tcp, &text("info"));
    let opts = PacketOptions::default();

    let mut before = Client::connect(g.addr(), opts);
    heartbeat(&mut before);
    g.reload_with(&text("debug"));
    assert!(
        g.log()
            .contains("log.level changed: applied (info -> debug)"),
        "{}",
        g.log()
    );
    assert_eq!(
        debug_connects(&g.log()),
        0,
        "accepted at info: no debug line"
    );

    // The filter is swapped after the reload's last line; a reload that
    // changes nothing runs after it (reloads run one at a time), so its
    // line says the swap is done.
    g.reload_with(&text("debug"));
    let mut during = Client::connect(g.addr(), opts);
    heartbeat(&mut during);
    g.wait_log(": connected", 1);

    g.reload_with(&text("info"));
    g.reload_with(&text("info"));
    let mut after = Client::connect(g.addr(), opts);
    heartbeat(&mut after);
    // Again a reload that changes nothing: its line comes after whatever
    // the accept above logged.
    g.reload_with(&text("info"));
    assert_eq!(
        debug_connects(&g.log()),
        1,
        "debug lines stopped at info again:\n{}",
        g.log()
    );
}

/// A minimal WebSocket client (RFC 6455): the upgrade, masked binary
/// frames out, unmasked frames in.
struct Ws(TcpStream);

impl Ws {
    /// Sends the upgrade with `origin`; the HTTP status and, on 101, the client.
    fn open(port: u16, origin: &str) -> (u16, Ws) {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        let req = format!(
            "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Origin: {origin}\r\n\r\n"
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(s.read(&mut b).unwrap(), 1, "the gate closed mid-response");
            head.push(b[0]);
        }
        let head = String::from_utf8_lossy(&head);
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
        (status, Ws(s))
    }

    /// Sends due packet `route`/`seq`/`payload` in a binary message and
    /// returns the payload of the binary message that answers it.
    fn ask(&mut self, route: i32, seq: i32, payload: &[u8]) -> Vec<u8> {
        let mut pkt = bytes::BytesMut::new();
        let opts = PacketOptions::default();
        ringgate::codec::encode_data(0, route, seq, payload, &opts, &mut pkt).unwrap();
        assert!(pkt.len() < 126);
        let mask = [7u8, 1, 9, 3];
        let mut frame = vec![0x82, 0x80 | pkt.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(pkt.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.0.write_all(&frame).unwrap();
        let mut h = [0u8; 2];
        self.0.read_exact(&mut h).unwrap();
        assert_eq!(h[0], 0x82, "a final binary message");
        let mut body = vec![0u8; usize::from(h[1] & 0x7f)];
        self.0.read_exact(&mut body).unwrap();
        let mut got = bytes::BytesMut::from(&body[..]);
        let p = ringgate::codec::decode(&mut got, &opts).unwrap().unwrap();
        match p {
            ringgate::codec::Frame::Data(p) => p.payload.to_vec(),
            other => panic!("expected a reply, got {other:?}"),
        }
    }
}

#[test]
fn origins_change_for_new_upgrades_and_open_websockets_keep_working() {
    let node = named_node("echo", None);
    let (tcp, ws) = (free_port(), free_port());
    let text = |origins: &str| {
        let ws = format!("addr = \"127.0.0.1:{ws}\"\norigins = {origins}");
        toml(1, tcp, &ws, 0, &nodes(&[node.local_addr()]))
    };
    let g = Gate::start("origins", tcp, &text(r#"["*"]"#));
    wait_until(PATIENCE, "the gate's link to the node", || {
        node.gates().links() == 1
    });

    let (status, mut open) = Ws::open(ws, "https://other.example");
    assert_eq!(status, 101, "every origin is allowed at first");
    assert_eq!(open.ask(1, 1, b"hi"), b"echo");

    g.reload_with(&text(r#"["https://game.example"]"#));
    assert!(
        g.log().contains("network.ws.origins changed: applied"),
        "{}",
        g.log()
    );
    let (status, _) = Ws::open(ws, "https://other.example");
    assert_eq!(status, 403, "an origin no longer listed is refused");
    let (status, mut game) = Ws::open(ws, "https://game.example");
    assert_eq!(status, 101);
    assert_eq!(game.ask(1, 2, b"hi"), b"echo");
    assert_eq!(
        open.ask(1, 3, b"still"),
        b"echo",
        "the connection upgraded before the reload keeps working"
    );
}

#[test]
fn nodes_added_get_requests_and_nodes_removed_are_closed_without_dropping_clients() {
    let (held_tx, held) = mpsc::channel();
    let (a, b) = (named_node("A", None), named_node("B", Some(held_tx)));
    let tcp = free_port();
    let text = |list: &[SocketAddr]| toml(2, tcp, NO_WS, 0, &nodes(list));
    let g = Gate::start("nodes", tcp, &text(&[a.local_addr()]));
    wait_until(PATIENCE, "both shards linked to A", || {
        a.gates().links() == 2
    });
    let opts = PacketOptions::default();
    let mut c = Client::connect(g.addr(), opts);
    let mut idle = Client::connect(g.addr(), opts);
    assert_eq!(&ask(&mut c, 1, 1).payload[..], b"A");
    assert_eq!(b.gates().links(), 0, "B is not in the file yet");

    g.reload_with(&text(&[a.local_addr(), b.local_addr()]));
    assert!(g.log().contains("nodes changed: applied"), "{}", g.log());
    wait_until(PATIENCE, "both shards linked to B", || {
        b.gates().links() == 2
    });
    let answers: Vec<_> = (10..30).map(|seq| ask(&mut c, 1, seq).payload).collect();
    assert!(
        answers.iter().any(|p| &p[..] == b"B") && answers.iter().any(|p| &p[..] == b"A"),
        "round robin over A and B: {answers:?}"
    );
    // A request B holds (route 2 is B's alone) while B is removed.
    c.send(2, 77, b"wait");
    assert_eq!(held.recv_timeout(PATIENCE).unwrap(), 77);

    g.reload_with(&text(&[a.local_addr()]));
    let p = c.recv_data().expect("the held request is answered");
    assert_eq!(
        (p.ext, p.seq),
        (ext::NODE_DOWN, 77),
        "as when a node leaves"
    );
    wait_until(PATIENCE, "B's links closed", || b.gates().links() == 0);
    for seq in 100..110 {
        assert_eq!(
            &ask(&mut c, 1, seq).payload[..],
            b"A",
            "B is no longer used"
        );
    }
    assert_eq!(
        ask(&mut c, 2, 111).ext,
        ext::NO_ROUTE,
        "B's routes are forgotten"
    );
    heartbeat(&mut idle);
    assert_eq!(
        &ask(&mut idle, 1, 1).payload[..],
        b"A",
        "other clients stay"
    );
    assert_eq!(a.gates().links(), 2, "A was never touched");
}

#[test]
fn a_broken_file_changes_nothing_and_names_file_and_key() {
    let tcp = free_port();
    let admin = free_port();
    let good = toml(1, tcp, NO_WS, admin, &nobody());
    let mut g = Gate::start("broken", tcp, &good);
    let bad = format!("{good}[log]\nlevel = \"debug\"\n[packet]\nroute_bytes = 3\n");
    g.reload_with(&bad);
    let log = g.log();
    let file = g.cfg.display().to_string();
    let line = log
        .lines()
        .find(|l| l.contains(REFUSED))
        .expect("the refusal is logged");
    assert!(
        line.contains(&file) && line.contains("packet.route_bytes"),
        "{line}"
    );
    assert!(!log.contains("changed: applied"), "nothing applied:\n{log}");
    assert!(g.running(), "the gate keeps running");
    let mut c = Client::connect(g.addr(), PacketOptions::default());
    heartbeat(&mut c);

    // The admin verb answers the same refusal, and the level in force is
    // still the old one.
    let api = AdminClient::new(([127, 0, 0, 1], admin).into(), None);
    let (status, v) = api.call("POST", "/api/reload", None).unwrap();
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["key"], "packet.route_bytes");
    assert!(v["error"].as_str().unwrap().contains(&file), "{v}");
    let (_, cfg) = api.call("GET", "/api/config", None).unwrap();
    assert_eq!(cfg["log"]["level"], "info");
    assert_eq!(cfg["packet"]["route_bytes"], 2);
}

#[test]
fn a_new_listen_address_needs_a_restart_and_the_admin_verb_says_so() {
    let (tcp, other, admin) = (free_port(), free_port(), free_port());
    let g = Gate::start("restart", tcp, &toml(1, tcp, NO_WS, admin, &nobody()));
    let text = toml(
        1,
        other,
        NO_WS,
        admin,
        &format!("{}[log]\nlevel = \"warn\"\n", nobody()),
    );
    std::fs::write(&g.cfg, &text).unwrap();

    let out = Command::new(BIN)
        .args(["admin", "reload", "--config"])
        .arg(&g.cfg)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains(&format!("reloaded {}", g.cfg.display())),
        "{said}"
    );
    assert!(
        said.contains("applied        log.level: info -> warn"),
        "{said}"
    );
    assert!(
        said.contains(&format!(
            "needs restart  network.tcp.addr: kept 127.0.0.1:{tcp} (file: 127.0.0.1:{other}"
        )),
        "{said}"
    );
    let warning = format!("network.tcp.addr changed: needs a restart; kept 127.0.0.1:{tcp}");
    g.wait_log(&warning, 1);
    assert!(
        TcpStream::connect(("127.0.0.1", tcp)).is_ok(),
        "still on the old port"
    );

    // As JSON: the lists as the API gives them; the key is reported again.
    let out = Command::new(BIN)
        .args(["admin", "reload", "--json", "--config"])
        .arg(&g.cfg)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["applied"],
        serde_json::json!([]),
        "warn is in force already"
    );
    assert_eq!(v["needs_restart"][0]["key"], "network.tcp.addr");
    assert_eq!(v["needs_restart"][0]["old"], format!("127.0.0.1:{tcp}"));
    assert_eq!(v["needs_restart"][0]["new"], format!("127.0.0.1:{other}"));
    assert_eq!(v["needs_restart"].as_array().unwrap().len(), 1, "{v}");
    g.wait_log(&warning, 2);
}

#[test]
fn a_gate_started_without_a_file_has_nothing_to_reload() {
    let node = named_node("echo", None);
    let cfg = common::test_config(&[node.local_addr()]);
    let gate = ringgate::gate::Gate::start(&cfg).unwrap();
    let report = gate.reload().unwrap();
    assert!(report.file.is_none());
    assert!(report.applied.is_empty() && report.needs_restart.is_empty());
    gate.stop();
}

/// In a process that installed no reloadable log filter (this test's), a
/// new level cannot be applied: it is reported with the reason, and the
/// rest of the file still is applied.
#[test]
fn an_embedded_gate_reports_a_level_it_cannot_apply() {
    let dir = std::env::temp_dir().join(format!("ringgate-reload-{}-embedded", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("gate.toml");
    let node = named_node("echo", None);
    let text = |level: &str, list: &[SocketAddr]| {
        let rest = format!("[log]\nlevel = \"{level}\"\n{}", nodes(list));
        toml(1, 0, NO_WS, 0, &rest)
    };
    std::fs::write(&file, text("info", &[node.local_addr()])).unwrap();
    let cfg = ringgate::config::Config::load(&file).unwrap();
    let gate = ringgate::gate::Gate::start_from_file(&cfg, Some(&file)).unwrap();
    let other: SocketAddr = "127.0.0.1:9".parse().unwrap();
    std::fs::write(&file, text("debug", &[node.local_addr(), other])).unwrap();
    let report = gate.reload().unwrap();
    let keys = |v: &[ringgate::reload::Change]| v.iter().map(|c| c.key.clone()).collect::<Vec<_>>();
    assert_eq!(keys(&report.applied), ["nodes"]);
    assert_eq!(keys(&report.needs_restart), ["log.level"]);
    let note = report.needs_restart[0].note.as_deref().unwrap();
    assert!(note.contains("reloadable log filter"), "{note}");
    // Asked again, the level is still reported: it is not in force.
    let again = gate.reload().unwrap();
    assert!(again.applied.is_empty());
    assert_eq!(keys(&again.needs_restart), ["log.level"]);
    gate.stop();
}
