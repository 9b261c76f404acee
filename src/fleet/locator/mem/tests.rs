//! MemLocator keeps the locator rules: previous owner on bind, CAS unbinds,
//! one event per change, Resync first, purge of a dead gate.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;

fn b(gate: &str, session: u64, epoch: u64) -> Binding {
    Binding {
        gate: gate.into(),
        session,
        epoch,
    }
}

/// Subscribes and returns what the callback has seen so far, shared.
fn watch(loc: &MemLocator) -> (Subscription, Arc<Mutex<Vec<Notice>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let sub = loc
        .subscribe(Box::new(move |n| sink.lock().unwrap().push(n)))
        .unwrap();
    (sub, seen)
}

/// Waits (up to 5 s) until `seen` holds `n` notices and returns them.
fn wait_for(seen: &Mutex<Vec<Notice>>, n: usize) -> Vec<Notice> {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let got = seen.lock().unwrap().clone();
        if got.len() >= n {
            return got;
        }
        assert!(Instant::now() < end, "only {} notices: {got:?}", got.len());
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn bind_returns_the_previous_owner_and_unbind_is_cas() {
    let loc = MemLocator::new();
    assert_eq!(loc.bind_gate(7, &b("g1", 1, 1)).unwrap(), None);
    assert_eq!(
        loc.bind_gate(7, &b("g1", 2, 2)).unwrap(),
        Some(b("g1", 1, 1))
    );
    assert_eq!(
        loc.bind_gate(7, &b("g2", 3, 1)).unwrap(),
        Some(b("g1", 2, 2))
    );
    assert!(!loc.unbind_gate(7, &b("g1", 2, 2)).unwrap(), "stale unbind");
    assert!(!loc.unbind_gate(7, &b("g2", 3, 0)).unwrap(), "wrong epoch");
    assert_eq!(loc.locate_gate(7).unwrap(), Some(b("g2", 3, 1)));
    assert!(loc.unbind_gate(7, &b("g2", 3, 1)).unwrap());
    assert_eq!(loc.locate_gate(7).unwrap(), None);
    assert!(!loc.unbind_gate(7, &b("g2", 3, 1)).unwrap(), "already gone");
}

#[test]
fn every_change_publishes_one_event_after_resync() {
    let loc = MemLocator::new();
    let (_sub, seen) = watch(&loc);
    wait_for(&seen, 1);
    loc.bind_gate(1, &b("g", 1, 1)).unwrap();
    loc.bind_gate(1, &b("g", 1, 1)).unwrap(); // no change: no event
    loc.unbind_gate(1, &b("g", 9, 9)).unwrap(); // stale: no event
    loc.bind_node(1, "game", "n1").unwrap();
    loc.bind_node(1, "game", "n1").unwrap(); // no change: no event
    loc.unbind_node(1, "game", "n2").unwrap(); // stale: no event
    loc.unbind_node(1, "game", "n1").unwrap();
    loc.unbind_gate(1, &b("g", 1, 1)).unwrap();
    let got = wait_for(&seen, 5);
    let ev = |e| Notice::Event(e);
    assert_eq!(
        got,
        vec![
            Notice::Resync,
            ev(LocateEvent::BindGate {
                uid: 1,
                binding: b("g", 1, 1)
            }),
            ev(LocateEvent::BindNode {
                uid: 1,
                service: "game".into(),
                node: "n1".into()
            }),
            ev(LocateEvent::UnbindNode {
                uid: 1,
                service: "game".into(),
                node: "n1".into()
            }),
            ev(LocateEvent::UnbindGate {
                uid: 1,
                binding: b("g", 1, 1)
            }),
        ]
    );
}

#[test]
fn node_unbind_keeps_other_services() {
    let loc = MemLocator::new();
    assert_eq!(loc.bind_node(5, "game", "n1").unwrap(), None);
    assert_eq!(loc.bind_node(5, "chat", "c1").unwrap(), None);
    assert_eq!(loc.bind_node(5, "game", "n2").unwrap(), Some("n1".into()));
    assert!(!loc.unbind_node(5, "game", "n1").unwrap());
    assert!(loc.unbind_node(5, "game", "n2").unwrap());
    assert_eq!(loc.locate_node(5, "game").unwrap(), None);
    assert_eq!(loc.locate_node(5, "chat").unwrap(), Some("c1".into()));
}

#[test]
fn purge_releases_only_users_still_on_the_dead_gate() {
    let loc = MemLocator::new();
    let (_sub, seen) = watch(&loc);
    loc.bind_gate(1, &b("dead", 1, 1)).unwrap();
    loc.bind_gate(2, &b("dead", 2, 1)).unwrap();
    loc.bind_gate(3, &b("dead", 3, 1)).unwrap();
    loc.bind_gate(3, &b("alive", 4, 1)).unwrap(); // moved away
    loc.bind_gate(4, &b("alive", 5, 1)).unwrap();
    wait_for(&seen, 6);
    assert_eq!(loc.purge_gate("dead").unwrap(), 2);
    assert_eq!(
        loc.locate_gates(&[1, 2, 3, 4, 99]).unwrap(),
        vec![
            None,
            None,
            Some(b("alive", 4, 1)),
            Some(b("alive", 5, 1)),
            None
        ]
    );
    let mut unbound: Vec<Uid> = wait_for(&seen, 8)[6..]
        .iter()
        .map(|n| match n {
            Notice::Event(LocateEvent::UnbindGate { uid, binding }) => {
                assert_eq!(binding.gate, "dead");
                *uid
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    unbound.sort();
    assert_eq!(unbound, vec![1, 2]);
    assert_eq!(loc.purge_gate("dead").unwrap(), 0, "the set is gone");
}

#[test]
fn sessions_store_touch_expire_delete() {
    let loc = MemLocator::new();
    let ttl = Duration::from_secs(1);
    let settings: BTreeMap<String, String> = [("room".to_owned(), "7".to_owned())].into();
    assert_eq!(loc.load_session(1).unwrap(), None);
    assert!(!loc.touch_session(1, ttl).unwrap());
    loc.store_session(1, &settings, ttl).unwrap();
    assert_eq!(loc.load_session(1).unwrap(), Some(settings.clone()));
    assert!(loc.touch_session(1, ttl).unwrap());
    assert!(loc.expire_session(1));
    assert!(!loc.touch_session(1, ttl).unwrap());
    loc.store_session(1, &settings, ttl).unwrap();
    loc.store_session(1, &BTreeMap::new(), ttl).unwrap();
    assert_eq!(loc.load_session(1).unwrap(), None, "empty means none");
    loc.store_session(1, &settings, ttl).unwrap();
    loc.delete_session(1).unwrap();
    assert_eq!(loc.load_session(1).unwrap(), None);
}

#[test]
fn dropping_the_subscription_stops_delivery() {
    let loc = MemLocator::new();
    let (sub, seen) = watch(&loc);
    wait_for(&seen, 1);
    drop(sub); // joins the thread
    loc.bind_gate(1, &b("g", 1, 1)).unwrap();
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert!(loc.lock().subscribers.is_empty(), "dead subscriber dropped");
}
