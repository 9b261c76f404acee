//! The etcd registry against a real etcd on loopback (one per test, each
//! test in its own namespace): records, leases, state changes,
//! deregistration, crashes, an etcd restart, a compaction, and the watch
//! prefix. Checks read etcd through the test's own raw gateway calls or
//! through a watcher, never through `etcdctl`.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::etcd::{Etcd, Proxy};
use common::{wait_until, PATIENCE};
use ringgate::fleet::etcd::{EtcdOptions, EtcdRegistry};
use ringgate::fleet::registry::{Kind, Record, Registry, RouteRecord, State, WatchHandle};

/// A registry on `endpoint` in `namespace` with a 2 s TTL.
fn registry(endpoint: &str, namespace: &str) -> EtcdRegistry {
    common::init_logs();
    EtcdRegistry::new(EtcdOptions {
        endpoints: vec![endpoint.to_string()],
        namespace: namespace.to_string(),
        ttl: Duration::from_secs(2),
        dial_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(2),
        ..EtcdOptions::default()
    })
    .unwrap()
}

fn node(id: &str) -> Record {
    Record {
        id: id.into(),
        kind: Kind::Node,
        name: "game".into(),
        routes: vec![
            RouteRecord {
                id: 1,
                ..RouteRecord::default()
            },
            RouteRecord {
                id: 2,
                authorized: true,
                ..RouteRecord::default()
            },
            RouteRecord {
                id: 3,
                stateful: true,
                ..RouteRecord::default()
            },
            RouteRecord {
                id: 9,
                internal: true,
                ..RouteRecord::default()
            },
        ],
        names: BTreeMap::from([("chat".to_string(), 3)]),
        events: vec![1, 2],
        endpoint: format!("127.0.0.1:7{id}"),
        weight: 2,
        ..Record::default()
    }
}

fn gate(id: &str) -> Record {
    Record {
        id: id.into(),
        kind: Kind::Gate,
        name: "gate".into(),
        endpoint: "127.0.0.1:3553".into(),
        ..Record::default()
    }
}

/// Every list a watcher was given, in order.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Vec<Record>>>>);

impl Seen {
    fn watch(reg: &EtcdRegistry, kind: Kind) -> (WatchHandle, Seen) {
        let seen = Seen::default();
        let lists = seen.0.clone();
        let on_change = move |list: &[Record]| lists.lock().unwrap().push(list.to_vec());
        (reg.watch(kind, Box::new(on_change)).unwrap(), seen)
    }

    fn calls(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    fn last(&self) -> Vec<Record> {
        self.0
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("watch gives the first list at once")
    }

    fn ids(&self) -> Vec<String> {
        self.last().into_iter().map(|r| r.id).collect()
    }

    /// Waits until the latest list has exactly `ids`, then returns it.
    fn wait_ids(&self, ids: &[&str]) -> Vec<Record> {
        wait_until(PATIENCE, &format!("watcher to list {ids:?}"), || {
            self.ids() == ids
        });
        self.last()
    }

    fn find(&self, id: &str) -> Option<Record> {
        self.last().into_iter().find(|r| r.id == id)
    }
}

#[test]
fn registered_records_are_listed_with_their_routes_and_leases() {
    let etcd = Etcd::start();
    let reg = registry(&etcd.endpoint(), "t-records");
    let g1 = reg.register(gate("g1")).unwrap();
    let n1 = reg.register(node("n1")).unwrap();
    let n2 = reg
        .register(Record {
            state: State::Busy,
            ..node("n2")
        })
        .unwrap();
    // A short resync: re-listing an unchanged prefix must not call on_change.
    let resyncing = EtcdRegistry::new(EtcdOptions {
        resync: Duration::from_millis(200),
        ..reg.options().clone()
    })
    .unwrap();
    let (_nodes, nodes) = Seen::watch(&resyncing, Kind::Node);
    let (_gates, gates) = Seen::watch(&reg, Kind::Gate);

    assert_eq!(
        nodes.last(),
        [n1.record(), n2.record()],
        "full records, sorted by id"
    );
    assert_eq!(gates.last(), [g1.record()]);
    let listed = &nodes.last()[1];
    assert_eq!(
        (listed.state, listed.weight, listed.routes.len()),
        (State::Busy, 2, 4)
    );
    assert!(listed.routes[1].authorized && listed.routes[2].stateful && listed.routes[3].internal);
    assert_eq!(listed.names["chat"], 3);

    for key in [
        "/t-records/gate/g1",
        "/t-records/node/n1",
        "/t-records/node/n2",
    ] {
        let kv = etcd.get(key).unwrap_or_else(|| panic!("{key} exists"));
        assert!(
            kv.lease != 0 && etcd.lease_ttl(kv.lease) > 0,
            "{key} is under a live lease"
        );
        let json: serde_json::Value = serde_json::from_slice(&kv.value).unwrap();
        assert_eq!(json["name"], json["kind"], "{key} has due's name field");
    }

    std::thread::sleep(Duration::from_millis(700)); // three resyncs
    assert_eq!(nodes.calls(), 1, "unchanged re-lists are not reported");
    let t = Instant::now();
    drop(_nodes);
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "drop took {:?}",
        t.elapsed()
    );
}

#[test]
fn a_state_change_keeps_the_lease() {
    let etcd = Etcd::start();
    let reg = registry(&etcd.endpoint(), "t-state");
    let n1 = reg.register(node("n1")).unwrap();
    let (_h, seen) = Seen::watch(&reg, Kind::Node);
    let lease = etcd.get("/t-state/node/n1").unwrap().lease;

    n1.set_state(State::Hang).unwrap();
    wait_until(PATIENCE, "watcher to see hang", || {
        seen.find("n1").is_some_and(|r| r.state == State::Hang)
    });
    assert_eq!(
        etcd.get("/t-state/node/n1").unwrap().lease,
        lease,
        "same lease"
    );
    assert_eq!(n1.record().state, State::Hang);
}

#[test]
fn deregister_deletes_at_once_and_revokes_the_lease() {
    let etcd = Etcd::start();
    let reg = registry(&etcd.endpoint(), "t-dereg");
    let n1 = reg.register(node("n1")).unwrap();
    let _n2 = reg.register(node("n2")).unwrap();
    let (_h, seen) = Seen::watch(&reg, Kind::Node);
    let lease = etcd.get("/t-dereg/node/n1").unwrap().lease;

    n1.deregister().unwrap();
    assert!(
        etcd.get("/t-dereg/node/n1").is_none(),
        "key deleted before deregister returns"
    );
    assert_eq!(etcd.lease_ttl(lease), -1, "lease revoked");
    seen.wait_ids(&["n2"]);
}

#[test]
fn a_crashed_registration_lapses_within_the_ttl() {
    let etcd = Etcd::start();
    let reg = registry(&etcd.endpoint(), "t-crash");
    let n1 = reg.register(node("n1")).unwrap();
    let _n2 = reg.register(node("n2")).unwrap();
    let (_h, seen) = Seen::watch(&reg, Kind::Node);
    assert_eq!(seen.ids(), ["n1", "n2"]);

    let crash = Instant::now();
    drop(n1); // no deregister: the keep-alive stops, as in a crash
    wait_until(
        Duration::from_secs(3),
        "n1 to lapse within TTL + 1 s",
        || seen.ids() == ["n2"],
    );
    eprintln!("n1 lapsed {:?} after the crash (TTL 2 s)", crash.elapsed());
}

#[test]
fn a_lost_lease_is_regranted_with_the_current_state() {
    let etcd = Etcd::start();
    let reg = registry(&etcd.endpoint(), "t-regrant");
    let n1 = reg.register(node("n1")).unwrap();
    let (_h, seen) = Seen::watch(&reg, Kind::Node);
    let lease = etcd.get("/t-regrant/node/n1").unwrap().lease;

    etcd.revoke(lease); // behind the registration's back: the key goes too
    seen.wait_ids(&[]);
    assert!(
        n1.set_state(State::Busy).is_err(),
        "no put under a lease that is gone"
    );
    wait_until(PATIENCE, "n1 back, busy", || {
        seen.find("n1").is_some_and(|r| r.state == State::Busy)
    });
    let now = etcd.get("/t-regrant/node/n1").unwrap().lease;
    assert!(
        now != lease && etcd.lease_ttl(now) > 0,
        "re-put under a new live lease"
    );
}

#[test]
fn registrations_and_watchers_survive_an_etcd_restart() {
    let mut etcd = Etcd::start();
    let reg = registry(&etcd.endpoint(), "t-restart");
    let _g1 = reg.register(gate("g1")).unwrap();
    let n1 = reg.register(node("n1")).unwrap();
    let _n2 = reg.register(node("n2")).unwrap();
    let (_h, seen) = Seen::watch(&reg, Kind::Node);
    assert_eq!(seen.ids(), ["n1", "n2"]);

    etcd.kill();
    std::thread::sleep(Duration::from_secs(1)); // keep-alives and the watch fail meanwhile
    etcd.restart();

    let _n3 = reg.register(node("n3")).unwrap();
    seen.wait_ids(&["n1", "n2", "n3"]);
    n1.set_state(State::Busy).unwrap();
    wait_until(PATIENCE, "n1 busy", || {
        seen.find("n1").is_some_and(|r| r.state == State::Busy)
    });
    // The keep-alives work again: past one TTL, every record is still there.
    std::thread::sleep(Duration::from_millis(2500));
    for key in [
        "/t-restart/gate/g1",
        "/t-restart/node/n1",
        "/t-restart/node/n2",
    ] {
        let kv = etcd.get(key).unwrap_or_else(|| panic!("{key} is back"));
        assert!(etcd.lease_ttl(kv.lease) > 0, "{key} under a live lease");
    }
    assert_eq!(seen.ids(), ["n1", "n2", "n3"]);
}

#[test]
fn a_watch_from_a_compacted_revision_relists_and_keeps_following() {
    let etcd = Etcd::start();
    let direct = registry(&etcd.endpoint(), "t-compact");
    let proxy = Proxy::start(&etcd.endpoint());
    // Patient requests, so that the held watch request does not time out.
    let watching = EtcdRegistry::new(EtcdOptions {
        endpoints: vec![proxy.endpoint()],
        request_timeout: Duration::from_secs(10),
        ..direct.options().clone()
    })
    .unwrap();
    let n1 = direct.register(node("n1")).unwrap();
    let (_h, seen) = Seen::watch(&watching, Kind::Node);
    assert_eq!(seen.ids(), ["n1"]);
    n1.set_state(State::Busy).unwrap();
    wait_until(PATIENCE, "the watch to be live", || {
        seen.find("n1").unwrap().state == State::Busy
    });

    // Break the watch; the watcher re-lists, and its new watch request
    // (from the listed revision + 1) is held at the proxy.
    proxy.hold_watches(true);
    proxy.cut();
    wait_until(PATIENCE, "a held watch request", || proxy.held() >= 1);
    for i in 0..20 {
        n1.set_state(if i % 2 == 0 { State::Work } else { State::Busy })
            .unwrap();
    }
    let _n2 = direct.register(node("n2")).unwrap();
    n1.set_state(State::Hang).unwrap();
    let compacted = etcd.compact();
    proxy.hold_watches(false);

    wait_until(PATIENCE, "the re-listed n1 (hang) and n2", || {
        seen.ids() == ["n1", "n2"] && seen.find("n1").unwrap().state == State::Hang
    });
    let _n3 = direct.register(node("n3")).unwrap();
    seen.wait_ids(&["n1", "n2", "n3"]);
    eprintln!(
        "compacted at revision {compacted}; watch requests held: {}",
        proxy.held()
    );
}

#[test]
fn the_watch_prefix_ends_with_a_slash() {
    let etcd = Etcd::start();
    let reg = registry(&etcd.endpoint(), "t-prefix");
    let stranger = serde_json::to_vec(&node("x1")).unwrap();
    etcd.put("/t-prefix/nodeX/x1", &stranger);
    etcd.put("/t-prefix/node", &stranger);
    etcd.put("/t-prefix/node/bad", b"{not json"); // skipped with a warning
    let (_h, seen) = Seen::watch(&reg, Kind::Node);
    let _n1 = reg.register(node("n1")).unwrap();
    seen.wait_ids(&["n1"]);

    etcd.put("/t-prefix/nodeX/x2", &stranger); // while watching
    let _n2 = reg.register(node("n2")).unwrap();
    seen.wait_ids(&["n1", "n2"]);
    let lists = seen.0.lock().unwrap();
    assert!(
        lists.iter().flatten().all(|r| r.id.starts_with('n')),
        "{lists:?}"
    );
}
