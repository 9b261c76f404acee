//! A fleet on real engines: gates and nodes on an etcd registry and a
//! Redis locator started by the test on loopback ports. Discovery follows
//! arrivals, drains and departures (also across an etcd restart); a login
//! on a second gate closes the first session exactly once with reason
//! `rebind`; a node reaches users by uid on whichever gate holds them.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::fleet::{ask, engines, node, wait_linked, Heard, ECHO, GET_ROOM, LOGIN, SET_ROOM};
use common::{wait_until, Client, PATIENCE};
use ringgate::config::Config;
use ringgate::node::{CloseReason, EventKind};
use ringgate::UserId;

#[test]
fn registry_discovery_follows_arrivals_drains_departures_and_an_etcd_restart() {
    let mut e = engines("disc");
    let (gate, cfg) = e.gate("g1");
    let n1 = node(&e, "n1", None);
    let shards = cfg.shards.cores.len() as u64;
    wait_until(PATIENCE, "n1 discovered and linked", || {
        gate.stats().links_up == shards
    });
    let mut c = Client::connect(gate.tcp_addr(), cfg.packet);
    assert_eq!(ask(&mut c, ECHO, ""), (0, "n1".into()));
    let n2 = node(&e, "n2", None);
    wait_until(PATIENCE, "n2 discovered", || {
        gate.stats().links_up == 2 * shards
    });
    wait_until(PATIENCE, "traffic reaches n2", || {
        ask(&mut c, ECHO, "").1 == "n2"
    });
    // A graceful stop: hang first (no new stateless traffic), then gone.
    let drained = std::thread::spawn(move || n2.drain(Duration::from_millis(500)));
    wait_until(PATIENCE, "n2 hangs: everything to n1", || {
        (0..4).all(|_| ask(&mut c, ECHO, "").1 == "n1")
    });
    drained.join().unwrap();
    wait_until(PATIENCE, "n2's link closed", || {
        gate.stats().links_up == shards
    });
    // etcd restarts; a node registered afterwards still reaches the gate.
    e.etcd.kill();
    e.etcd.restart();
    let n3 = node(&e, "n3", None);
    wait_until(
        Duration::from_secs(20),
        "n3 discovered after the restart",
        || gate.stats().links_up == 2 * shards,
    );
    wait_until(PATIENCE, "traffic reaches n3", || {
        ask(&mut c, ECHO, "").1 == "n3"
    });
    // A node that dies: its link drops at once, its traffic moves.
    drop(n3);
    wait_until(PATIENCE, "everything back on n1", || {
        (0..4).all(|_| ask(&mut c, ECHO, "") == (0, "n1".into()))
    });
    drop(n1);
}

#[test]
fn a_login_on_another_gate_closes_the_first_session_once_and_pushes_follow_the_user() {
    let e = engines("rebind");
    let (g1, cfg1) = e.gate("g1");
    let (g2, cfg2) = e.gate("g2");
    let heard: Heard = Arc::default();
    let n = node(&e, "n1", Some(heard.clone()));
    wait_linked(&[&g1, &g2], &cfg1, 1);
    let gates = n.gates();
    wait_until(PATIENCE, "the node knows both gates", || {
        gates.gate_ids().len() == 2
    });

    let mut a = Client::connect(g1.tcp_addr(), cfg1.packet);
    assert_eq!(ask(&mut a, LOGIN, "7").0, 0);
    // The node pushes by uid without naming a gate: it reaches g1.
    wait_until(PATIENCE, "user 7 located on g1", || {
        gates.push_uid(UserId(7), 9, 0, "hello-a").is_ok()
    });
    let p = a.recv_data().expect("push on g1");
    assert_eq!(&p.payload[..], b"hello-a");

    let mut b = Client::connect(g2.tcp_addr(), cfg2.packet);
    assert_eq!(ask(&mut b, LOGIN, "7").0, 0);
    assert!(
        a.closed_within(Duration::from_secs(2)),
        "the g1 session is closed"
    );
    wait_until(PATIENCE, "one rebind disconnect", || {
        heard
            .lock()
            .unwrap()
            .iter()
            .any(|h| h.0 == EventKind::Disconnect)
    });
    std::thread::sleep(Duration::from_millis(300));
    let h = heard.lock().unwrap().clone();
    let disconnects: Vec<_> = h.iter().filter(|x| x.0 == EventKind::Disconnect).collect();
    assert_eq!(disconnects.len(), 1, "{h:?}");
    assert_eq!(disconnects[0].3, Some(CloseReason::Rebind), "{h:?}");
    assert_eq!(
        h.iter().filter(|x| x.0 == EventKind::Bind).count(),
        2,
        "{h:?}"
    );
    assert_eq!(g1.stats().fleet_kicks, 1);
    // Pushes by uid now reach g2's session, and only it.
    gates
        .push_uid(UserId(7), 9, 0, "hello-b")
        .expect("located on g2");
    assert_eq!(&b.recv_data().expect("push on g2").payload[..], b"hello-b");
    assert!(gates.is_online(UserId(7)).unwrap());
    assert!(
        !gates.is_online(UserId(8)).unwrap(),
        "nobody: offline, not a timeout"
    );
    // Stat covers both gates.
    assert_eq!(gates.stat().unwrap().bound, 1);
}

#[test]
fn settings_survive_a_reconnect_on_another_gate_within_the_ttl_only() {
    let e = engines("store");
    let ttl = |c: &mut Config| c.cluster.locator.session_ttl = Duration::from_secs(1);
    let (g1, cfg1) = e.gate_with("g1", ttl);
    let (g2, cfg2) = e.gate_with("g2", ttl);
    let _n = node(&e, "n1", None);
    wait_linked(&[&g1, &g2], &cfg1, 1);
    let mut a = Client::connect(g1.tcp_addr(), cfg1.packet);
    ask(&mut a, LOGIN, "21");
    assert_eq!(ask(&mut a, SET_ROOM, "lobby").1, "lobby");
    // Stored asynchronously by g1's agent (a reconnect that beat it would
    // find nothing): wait for it, in the store's key shape.
    let mut raw = e.redis.raw();
    let key = format!("{}:locate:session:21", e.ns);
    wait_until(PATIENCE, "settings stored in Redis", || {
        let v: Option<String> = ::redis::cmd("HGET")
            .arg(&key)
            .arg("room")
            .query(&mut raw)
            .unwrap();
        v.as_deref() == Some("lobby")
    });
    drop(a);
    // Back at once, on the other gate: the settings come back.
    let mut b = Client::connect(g2.tcp_addr(), cfg2.packet);
    ask(&mut b, LOGIN, "21");
    wait_until(PATIENCE, "settings restored on g2", || {
        ask(&mut b, GET_ROOM, "").1 == "lobby"
    });
    drop(b);
    // Back after the TTL: gone.
    std::thread::sleep(Duration::from_millis(2500));
    let mut c = Client::connect(g1.tcp_addr(), cfg1.packet);
    ask(&mut c, LOGIN, "21");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(ask(&mut c, GET_ROOM, "").1, "", "expired with the TTL");
}

/// The ringgate binary, for a gate that can be killed with SIGKILL.
struct Killable(std::process::Child);

impl Drop for Killable {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_gate_killed_with_sigkill_releases_its_users_within_one_lease() {
    let e = engines("crash");
    let (g2, cfg2) = e.gate("survivor");
    let heard: Heard = Arc::default();
    let n = node(&e, "n1", Some(heard));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("ringgate-fleet-crash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let toml = dir.join("victim.toml");
    std::fs::write(
        &toml,
        format!(
            "[gate]\nid = \"victim\"\n[network.tcp]\naddr = \"127.0.0.1:{port}\"\n\
             [network.ws]\nenabled = false\n[admin]\nenabled = false\n[log]\nlevel = \"warn\"\n\
             [cluster.registry]\nbackend = \"etcd\"\nendpoints = [\"{}\"]\nnamespace = \"{}\"\nttl = \"2s\"\n\
             [cluster.locator]\nbackend = \"redis\"\nurl = \"{}\"\nprefix = \"{}:locate\"\n",
            e.etcd.endpoint(),
            e.ns,
            e.redis.url(),
            e.ns
        ),
    )
    .unwrap();
    let mut victim = Killable(
        std::process::Command::new(env!("CARGO_BIN_EXE_ringgate"))
            .arg("--config")
            .arg(&toml)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start the ringgate binary"),
    );
    let gates = n.gates();
    // Every shard of both gates linked (the victim is a binary: count
    // from the node's side).
    let links = 2 * cfg2.shards.cores.len();
    wait_until(
        PATIENCE,
        "the node has links to every shard of both gates",
        || gates.links() == links,
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut clients: Vec<Client> = (0..100)
        .map(|i| {
            let mut c = Client::connect(addr, cfg2.packet);
            assert_eq!(ask(&mut c, LOGIN, &(1000 + i).to_string()).0, 0);
            c
        })
        .collect();
    let key = |uid: i64| format!("{}:locate:user:{uid}:gate", e.ns);
    let mut raw = e.redis.raw();
    let located = |raw: &mut ::redis::Connection| {
        (1000..1100)
            .filter(|&u| {
                let v: Option<String> = ::redis::cmd("GET").arg(key(u)).query(raw).unwrap();
                v.is_some_and(|v| v.starts_with("victim|"))
            })
            .count()
    };
    let end = std::time::Instant::now() + PATIENCE;
    while located(&mut raw) < 100 {
        let missing: Vec<(i64, Option<String>)> = (1000..1100)
            .map(|u| (u, ::redis::cmd("GET").arg(key(u)).query(&mut raw).unwrap()))
            .filter(|(_, v): &(i64, Option<String>)| {
                !v.as_ref().is_some_and(|v| v.starts_with("victim|"))
            })
            .collect();
        assert!(
            std::time::Instant::now() < end,
            "not located on the victim: {missing:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(gates.is_online(UserId(1000)).unwrap());
    // SIGKILL: no goodbye, no unbinds; its lease lapses within the TTL.
    let killed = std::time::Instant::now();
    victim.0.kill().unwrap();
    let _ = victim.0.wait();
    wait_until(
        Duration::from_secs(10),
        "the victim's users released",
        || {
            (1000..1100).all(|u| {
                let v: Option<String> = ::redis::cmd("GET").arg(key(u)).query(&mut raw).unwrap();
                v.is_none()
            })
        },
    );
    let released = killed.elapsed();
    assert!(
        released < Duration::from_secs(6),
        "released after {released:?} (ttl 2 s)"
    );
    let asked = std::time::Instant::now();
    assert!(
        !gates.is_online(UserId(1000)).unwrap(),
        "offline, not a timeout"
    );
    assert!(matches!(
        gates.push_uid(UserId(1001), 9, 0, "x"),
        Err(ringgate::node::NodeError::NotFound)
    ));
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "answered, not timed out"
    );
    clients.clear();
    eprintln!("victim's users released {released:?} after SIGKILL");
    drop(g2);
}
