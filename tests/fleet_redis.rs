//! RedisLocator against a real redis-server (one per test, own prefix):
//! due's key shapes checked with raw commands, CAS unbinds, one event per
//! change, resync after a killed subscription or a restarted server, crash
//! purge, and the session store's TTLs.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::redis::Connection;
use common::redis::RedisServer;
use common::wait_until;
use ringgate::fleet::locator::{Binding, LocateEvent, Locator, LocatorError, Notice, Subscription};
use ringgate::fleet::redis_locator::{RedisLocator, RedisOptions};

/// Within this, anything a test waits for has happened.
const WITHIN: Duration = Duration::from_secs(5);

fn b(gate: &str, session: u64, epoch: u64) -> Binding {
    Binding {
        gate: gate.into(),
        session,
        epoch,
    }
}

fn locator(server: &RedisServer, prefix: &str) -> RedisLocator {
    common::init_logs();
    RedisLocator::new(RedisOptions {
        url: server.url(),
        prefix: prefix.into(),
        connect_timeout: Duration::from_secs(1),
        io_timeout: Duration::from_secs(2),
    })
    .unwrap()
}

fn raw<T: ::redis::FromRedisValue>(con: &mut Connection, args: &[&str]) -> T {
    let mut c = ::redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query(con).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// A subscription and what its callback has seen so far.
struct Watch {
    _sub: Subscription,
    seen: Arc<Mutex<Vec<Notice>>>,
}

impl Watch {
    fn new(loc: &dyn Locator) -> Watch {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let sub = loc
            .subscribe(Box::new(move |n| sink.lock().unwrap().push(n)))
            .unwrap();
        let w = Watch { _sub: sub, seen };
        w.wait_resyncs(1);
        w
    }

    fn notices(&self) -> Vec<Notice> {
        self.seen.lock().unwrap().clone()
    }

    fn resyncs(&self) -> usize {
        self.notices()
            .iter()
            .filter(|n| **n == Notice::Resync)
            .count()
    }

    fn wait_resyncs(&self, n: usize) {
        wait_until(WITHIN, &format!("{n} Resync notices"), || {
            self.resyncs() >= n
        });
    }

    /// Waits until an event satisfies `f`; returns every notice so far.
    fn wait_event(&self, what: &str, f: impl Fn(&LocateEvent) -> bool) -> Vec<Notice> {
        wait_until(WITHIN, what, || {
            self.notices()
                .iter()
                .any(|n| matches!(n, Notice::Event(e) if f(e)))
        });
        self.notices()
    }
}

fn is_bind_of(uid: i64) -> impl Fn(&LocateEvent) -> bool {
    move |e| matches!(e, LocateEvent::BindGate { uid: u, .. } if *u == uid)
}

#[test]
fn bind_and_locate_use_dues_key_shapes() {
    let server = RedisServer::start();
    let loc = locator(&server, "t:shapes");
    let mut con = server.raw();
    assert_eq!(loc.bind_gate(10001, &b("g1", 42, 7)).unwrap(), None);
    assert_eq!(loc.bind_node(10001, "game", "n1").unwrap(), None);
    assert_eq!(loc.bind_node(10001, "chat", "c1").unwrap(), None);

    assert_eq!(loc.locate_gate(10001).unwrap(), Some(b("g1", 42, 7)));
    assert_eq!(
        loc.locate_node(10001, "game").unwrap().as_deref(),
        Some("n1")
    );
    assert_eq!(loc.locate_gate(10002).unwrap(), None);
    assert_eq!(loc.locate_node(10001, "mail").unwrap(), None);

    let gate: String = raw(&mut con, &["GET", "t:shapes:user:10001:gate"]);
    assert_eq!(gate, "g1|42|7");
    let nodes: BTreeMap<String, String> = raw(&mut con, &["HGETALL", "t:shapes:user:10001:node"]);
    assert_eq!(
        nodes,
        [("chat".into(), "c1".into()), ("game".into(), "n1".into())].into()
    );
    let users: Vec<String> = raw(&mut con, &["SMEMBERS", "t:shapes:gate:g1:users"]);
    assert_eq!(users, ["10001"]);

    // Moving to another gate moves the uid between the gates' sets.
    loc.bind_gate(10001, &b("g2", 1, 1)).unwrap();
    let g1: Vec<String> = raw(&mut con, &["SMEMBERS", "t:shapes:gate:g1:users"]);
    let g2: Vec<String> = raw(&mut con, &["SMEMBERS", "t:shapes:gate:g2:users"]);
    assert_eq!((g1.len(), g2), (0, vec!["10001".to_owned()]));
    let ttl: i64 = raw(&mut con, &["TTL", "t:shapes:user:10001:gate"]);
    assert_eq!(ttl, -1, "locator keys have no TTL");
}

#[test]
fn bind_returns_the_previous_owner() {
    let server = RedisServer::start();
    let loc = locator(&server, "t:prev");
    assert_eq!(loc.bind_gate(1, &b("g1", 1, 1)).unwrap(), None);
    // Same gate, new session: the old session is returned (to be kicked).
    assert_eq!(
        loc.bind_gate(1, &b("g1", 2, 2)).unwrap(),
        Some(b("g1", 1, 1))
    );
    // Another gate.
    assert_eq!(
        loc.bind_gate(1, &b("g|2", 5, 3)).unwrap(),
        Some(b("g1", 2, 2))
    );
    // The same binding again: itself, and nothing changes.
    assert_eq!(
        loc.bind_gate(1, &b("g|2", 5, 3)).unwrap(),
        Some(b("g|2", 5, 3))
    );
    assert_eq!(loc.bind_node(1, "game", "n1").unwrap(), None);
    assert_eq!(
        loc.bind_node(1, "game", "n2").unwrap().as_deref(),
        Some("n1")
    );
}

#[test]
fn stale_unbind_leaves_the_key_and_publishes_nothing() {
    let server = RedisServer::start();
    let loc = locator(&server, "t:stale");
    let w = Watch::new(&loc);
    loc.bind_gate(1, &b("g1", 1, 1)).unwrap();
    loc.bind_gate(1, &b("g1", 2, 2)).unwrap();
    assert!(!loc.unbind_gate(1, &b("g1", 1, 1)).unwrap(), "old session");
    assert!(!loc.unbind_gate(1, &b("g1", 2, 1)).unwrap(), "old epoch");
    assert!(!loc.unbind_gate(1, &b("g2", 2, 2)).unwrap(), "other gate");
    assert_eq!(loc.locate_gate(1).unwrap(), Some(b("g1", 2, 2)));
    loc.bind_gate(2, &b("g1", 3, 1)).unwrap(); // a marker after the unbinds
    let got = w.wait_event("the marker", is_bind_of(2));
    let events: Vec<_> = got.into_iter().filter(|n| *n != Notice::Resync).collect();
    assert_eq!(events.len(), 3, "two binds and the marker only: {events:?}");

    assert!(loc.unbind_gate(1, &b("g1", 2, 2)).unwrap());
    assert_eq!(loc.locate_gate(1).unwrap(), None);
    let users: Vec<String> = raw(&mut server.raw(), &["SMEMBERS", "t:stale:gate:g1:users"]);
    assert_eq!(users, ["2"], "unbind removed uid 1 from the gate's set");
    w.wait_event("the unbind", |e| {
        matches!(e, LocateEvent::UnbindGate { uid: 1, .. })
    });
}

#[test]
fn node_unbind_is_cas_on_its_own_field() {
    let server = RedisServer::start();
    let loc = locator(&server, "t:node");
    loc.bind_node(7, "game", "n1").unwrap();
    loc.bind_node(7, "chat", "c1").unwrap();
    assert!(!loc.unbind_node(7, "game", "n2").unwrap(), "another node");
    assert!(
        !loc.unbind_node(7, "mail", "n1").unwrap(),
        "another service"
    );
    assert!(loc.unbind_node(7, "game", "n1").unwrap());
    assert!(!loc.unbind_node(7, "game", "n1").unwrap(), "already gone");
    let left: BTreeMap<String, String> = raw(&mut server.raw(), &["HGETALL", "t:node:user:7:node"]);
    assert_eq!(
        left,
        [("chat".into(), "c1".into())].into(),
        "due once deleted it all"
    );
}

#[test]
fn one_bind_is_one_event_in_dues_json() {
    let server = RedisServer::start();
    let loc = locator(&server, "t:json");
    let w = Watch::new(&loc);
    let mut rawsub = server.raw();
    let mut ps = rawsub.as_pubsub();
    ps.subscribe(&["t:json:cluster:gate:event", "t:json:cluster:node:event"])
        .unwrap();
    ps.set_read_timeout(Some(WITHIN)).unwrap();

    loc.bind_gate(10001, &b("g1", 42, 7)).unwrap();
    loc.bind_node(10001, "game", "n1").unwrap();
    let gate_json: String = ps.get_message().unwrap().get_payload().unwrap();
    assert_eq!(
        gate_json,
        r#"{"uid":10001,"type":1,"insID":"g1","insKind":"gate","insName":"","sid":42,"epoch":7}"#
    );
    let node_msg = ps.get_message().unwrap();
    assert_eq!(node_msg.get_channel_name(), "t:json:cluster:node:event");
    let node_json: String = node_msg.get_payload().unwrap();
    assert_eq!(
        node_json,
        r#"{"uid":10001,"type":2,"insID":"n1","insKind":"node","insName":"game"}"#
    );

    let got = w.wait_event("the node bind", |e| {
        matches!(e, LocateEvent::BindNode { .. })
    });
    let bind = LocateEvent::BindGate {
        uid: 10001,
        binding: b("g1", 42, 7),
    };
    assert_eq!(got[..2], [Notice::Resync, Notice::Event(bind)]);
    assert_eq!(got.len(), 3, "exactly one event per bind: {got:?}");
}

#[test]
fn killed_subscription_resyncs_and_delivers_nothing_twice() {
    let server = RedisServer::start();
    let loc = Arc::new(locator(&server, "t:kill"));
    let w = Watch::new(&*loc);
    let stop = Arc::new(AtomicBool::new(false));
    let binder = {
        let (loc, stop) = (loc.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut uid = 0;
            while !stop.load(Ordering::Relaxed) {
                uid += 1;
                loc.bind_gate(uid, &b("g1", uid as u64, 1)).unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
            uid
        })
    };
    w.wait_event("some binds", is_bind_of(5));
    let killed: i64 = raw(&mut server.raw(), &["CLIENT", "KILL", "TYPE", "pubsub"]);
    assert_eq!(killed, 1);
    w.wait_resyncs(2);
    let at_resync = w.notices().len();
    wait_until(WITHIN, "events after the resync", || {
        w.notices().len() > at_resync + 5
    });
    stop.store(true, Ordering::Relaxed);
    let last = binder.join().unwrap();
    let got = w.wait_event("the last bind", is_bind_of(last));

    let uids: Vec<i64> = got
        .iter()
        .filter_map(|n| match n {
            Notice::Event(LocateEvent::BindGate { uid, .. }) => Some(*uid),
            _ => None,
        })
        .collect();
    let unique: BTreeSet<i64> = uids.iter().copied().collect();
    assert_eq!(unique.len(), uids.len(), "an event came twice: {uids:?}");
    assert!(
        uids.windows(2).all(|p| p[0] < p[1]),
        "out of order: {uids:?}"
    );
    assert_eq!(w.resyncs(), 2);
    assert!(got[at_resync..].iter().all(|n| *n != Notice::Resync));
}

#[test]
fn killed_command_connection_is_replaced_within_the_call() {
    let server = RedisServer::start();
    let loc = locator(&server, "t:cmdkill");
    loc.bind_gate(1, &b("g1", 1, 1)).unwrap();
    let killed: i64 = raw(&mut server.raw(), &["CLIENT", "KILL", "TYPE", "normal"]);
    assert!(killed >= 1);
    assert_eq!(loc.locate_gate(1).unwrap(), Some(b("g1", 1, 1)));
}

#[test]
fn purge_releases_only_users_still_on_the_dead_gate() {
    let server = RedisServer::start();
    let loc = locator(&server, "t:purge");
    let w = Watch::new(&loc);
    loc.bind_gate(1, &b("dead", 11, 1)).unwrap();
    loc.bind_gate(2, &b("dead", 12, 2)).unwrap();
    loc.bind_gate(3, &b("dead", 13, 1)).unwrap();
    loc.bind_gate(3, &b("alive", 14, 1)).unwrap(); // re-bound elsewhere
    loc.bind_gate(4, &b("alive", 15, 1)).unwrap();
    assert_eq!(loc.purge_gate("dead").unwrap(), 2);
    assert_eq!(
        loc.locate_gates(&[1, 2, 3, 4]).unwrap(),
        vec![None, None, Some(b("alive", 14, 1)), Some(b("alive", 15, 1))]
    );
    let mut con = server.raw();
    let exists: i64 = raw(&mut con, &["EXISTS", "t:purge:gate:dead:users"]);
    assert_eq!(exists, 0, "the dead gate's set is gone");

    // The events come from the purge script's hand-written JSON.
    let got = w.wait_event("uid 2's unbind", |e| {
        matches!(e, LocateEvent::UnbindGate { uid: 2, .. })
    });
    let mut unbinds: Vec<(i64, Binding)> = got
        .into_iter()
        .filter_map(|n| match n {
            Notice::Event(LocateEvent::UnbindGate { uid, binding }) => Some((uid, binding)),
            _ => None,
        })
        .collect();
    unbinds.sort_by_key(|(uid, _)| *uid);
    assert_eq!(unbinds, [(1, b("dead", 11, 1)), (2, b("dead", 12, 2))]);
}

#[test]
fn purge_of_a_big_gate_runs_in_batches() {
    let server = RedisServer::start();
    let loc = locator(&server, "t:bigpurge");
    for uid in 0..600 {
        loc.bind_gate(uid, &b("big", uid as u64, 1)).unwrap();
    }
    loc.bind_gate(599, &b("other", 1, 1)).unwrap();
    assert_eq!(loc.purge_gate("big").unwrap(), 599);
    assert_eq!(loc.purge_gate("big").unwrap(), 0);
    assert_eq!(loc.locate_gate(599).unwrap(), Some(b("other", 1, 1)));
}

#[test]
fn locate_gates_is_one_mget_with_missing_users_as_none() {
    let server = RedisServer::start();
    let loc = locator(&server, "t:mget");
    loc.bind_gate(1, &b("g1", 1, 1)).unwrap();
    loc.bind_gate(3, &b("g2", 3, 1)).unwrap();
    assert_eq!(loc.locate_gates(&[]).unwrap(), vec![]);
    let mut con = server.raw();
    let _: () = raw(&mut con, &["CONFIG", "RESETSTAT"]);
    let got = loc.locate_gates(&[1, 2, 3, 1]).unwrap();
    assert_eq!(
        got,
        vec![
            Some(b("g1", 1, 1)),
            None,
            Some(b("g2", 3, 1)),
            Some(b("g1", 1, 1))
        ]
    );
    let stats: String = raw(&mut con, &["INFO", "commandstats"]);
    assert!(stats.contains("cmdstat_mget:calls=1,"), "{stats}");
    assert!(!stats.contains("cmdstat_get:"), "{stats}");
}

#[test]
fn bind_is_one_script_call() {
    let server = RedisServer::start();
    let loc = locator(&server, "t:rtt");
    loc.bind_gate(1, &b("g1", 1, 1)).unwrap(); // connects and loads the script
    let mut con = server.raw();
    let _: () = raw(&mut con, &["CONFIG", "RESETSTAT"]);
    loc.bind_gate(1, &b("g2", 2, 1)).unwrap();
    let stats: String = raw(&mut con, &["INFO", "commandstats"]);
    let calls = |cmd: &str| stats.contains(&format!("cmdstat_{cmd}:calls=1,"));
    assert!(
        calls("evalsha") && calls("set") && calls("publish"),
        "{stats}"
    );
}

#[test]
fn sessions_keep_settings_until_their_ttl() {
    let server = RedisServer::start();
    let loc = locator(&server, "t:sess");
    let mut con = server.raw();
    let one_s = Duration::from_secs(1);
    let settings: BTreeMap<String, String> = [
        ("room".to_owned(), "7".to_owned()),
        ("lang".to_owned(), "fr".to_owned()),
    ]
    .into();
    assert_eq!(loc.load_session(9).unwrap(), None);
    assert!(!loc.touch_session(9, one_s).unwrap());
    loc.store_session(9, &settings, one_s).unwrap();
    assert_eq!(loc.load_session(9).unwrap(), Some(settings.clone()));
    let stored: BTreeMap<String, String> = raw(&mut con, &["HGETALL", "t:sess:session:9"]);
    assert_eq!(stored, settings);

    // Storing replaces, touching extends.
    let room: BTreeMap<String, String> = [("room".to_owned(), "8".to_owned())].into();
    loc.store_session(9, &room, one_s).unwrap();
    assert!(loc.touch_session(9, Duration::from_secs(60)).unwrap());
    let pttl: i64 = raw(&mut con, &["PTTL", "t:sess:session:9"]);
    assert!(pttl > 30_000, "touch extended the TTL: {pttl} ms");
    assert_eq!(loc.load_session(9).unwrap(), Some(room.clone()));

    // Back to 1 s: gone within the deadline, and touch says so.
    assert!(loc.touch_session(9, one_s).unwrap());
    let start = Instant::now();
    wait_until(WITHIN, "the session to expire", || {
        loc.load_session(9).unwrap().is_none()
    });
    assert!(
        start.elapsed() >= Duration::from_millis(500),
        "expired too early"
    );
    assert!(!loc.touch_session(9, one_s).unwrap());

    loc.store_session(9, &room, one_s).unwrap();
    loc.delete_session(9).unwrap();
    assert_eq!(loc.load_session(9).unwrap(), None);
}

#[test]
fn restarted_redis_fails_clearly_then_recovers() {
    let mut server = RedisServer::start();
    let loc = locator(&server, "t:restart");
    let w = Watch::new(&loc);
    loc.bind_gate(1, &b("g1", 1, 1)).unwrap();
    w.wait_event("the first bind", is_bind_of(1));

    server.kill();
    let err = loc.bind_gate(2, &b("g1", 2, 1)).unwrap_err();
    let msg = err.to_string();
    let addr = format!("127.0.0.1:{}/0", server.port());
    assert!(msg.contains(&addr) && msg.contains("bind_gate"), "{msg}");
    assert!(matches!(err, LocatorError::Connect { .. }), "{err:?}");
    eprintln!("while down: {msg}");
    let err = loc.locate_gate(1).unwrap_err().to_string();
    assert!(err.contains(&addr) && err.contains("locate_gate"), "{err}");

    server.restart();
    // Nothing was saved: the first bind is gone, and binding works again.
    assert_eq!(loc.locate_gate(1).unwrap(), None);
    w.wait_resyncs(2);
    loc.bind_gate(3, &b("g1", 3, 1)).unwrap();
    w.wait_event("a bind after the restart", is_bind_of(3));
}

#[test]
fn a_bad_url_is_refused_up_front() {
    let err = RedisLocator::new(RedisOptions {
        url: "http://127.0.0.1:6379".into(),
        ..RedisOptions::default()
    })
    .unwrap_err();
    assert!(matches!(err, LocatorError::BadUrl { .. }), "{err:?}");
}
