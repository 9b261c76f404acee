//! Users across gates, at scale, on real etcd and Redis: pushes by uid to
//! 1,000 users spread over two gates (each exactly once, on its own
//! gate), kicks by uid, multicasts to users half of whom are offline,
//! stateful bindings that follow a user to another gate, and rebinds while
//! the locator's subscriber connections are being killed.

mod common;

use std::time::{Duration, Instant};

use common::fleet::{ask, engines, node, wait_linked, BIND_HERE, LOGIN, STATEFUL};
use common::{wait_until, Client, PATIENCE};
use ringgate::node::NodeError;
use ringgate::UserId;

/// The payloads that arrive until `quiet` passes without one.
fn drain(c: &mut Client, quiet: Duration) -> Vec<Vec<u8>> {
    let got = c.drain_data(quiet);
    got.into_iter().map(|p| p.payload.to_vec()).collect()
}

/// The payloads already received.
fn ready(c: &mut Client) -> Vec<Vec<u8>> {
    let got = c.ready_data();
    got.into_iter().map(|p| p.payload.to_vec()).collect()
}

#[test]
fn pushes_kicks_and_multicasts_by_uid_reach_each_user_once_on_its_gate() {
    let e = engines("users");
    let (g1, cfg) = e.gate("g1");
    let (g2, _) = e.gate("g2");
    let n = node(&e, "n1", None);
    let gates = n.gates();
    wait_linked(&[&g1, &g2], &cfg, 1);
    // 1,000 users, even uids on g1 and odd ones on g2.
    let mut clients: Vec<Client> = (0..1000)
        .map(|i| {
            let g = if i % 2 == 0 { &g1 } else { &g2 };
            let mut c = Client::connect(g.tcp_addr(), cfg.packet);
            assert_eq!(ask(&mut c, LOGIN, &(10_000 + i).to_string()).0, 0);
            c
        })
        .collect();
    wait_until(PATIENCE, "every user located", || {
        gates.stat().is_ok_and(|s| s.bound == 1000)
    });
    let start = Instant::now();
    for i in 0..1000 {
        let uid = UserId(10_000 + i);
        gates
            .push_uid(uid, 9, 0, uid.0.to_string())
            .expect("located and pushed");
    }
    let took = start.elapsed();
    // Each push was queued by its gate before push_uid returned; after a
    // moment of quiet every client holds exactly its own.
    std::thread::sleep(Duration::from_millis(200));
    for (i, c) in clients.iter_mut().enumerate() {
        let got = ready(c);
        assert_eq!(got, vec![(10_000 + i).to_string().into_bytes()], "user {i}");
    }
    eprintln!("1000 cross-gate pushes (blocking, one at a time) took {took:?}");
    // A multicast to 1,000 uids of which 500 are offline: the online ones
    // get it once; grouped by gate.
    let targets: Vec<UserId> = (0..1000).map(|i| UserId(10_000 + 2 * i)).collect();
    for round in 0..20 {
        let delivered = gates.multicast(targets.clone(), 9, round, "m").unwrap();
        assert_eq!(delivered, 500, "round {round}");
    }
    std::thread::sleep(Duration::from_millis(200));
    for (i, c) in clients.iter_mut().enumerate() {
        let got = ready(c);
        let want = if i % 2 == 0 { 20 } else { 0 };
        assert_eq!(got.len(), want, "user {i}");
    }
    // Kicks by uid, without naming a gate.
    gates.kick(UserId(10_001), false).unwrap();
    gates.kick(UserId(10_002), false).unwrap();
    assert!(clients[1].closed_within(PATIENCE) && clients[2].closed_within(PATIENCE));
    wait_until(PATIENCE, "kicked users released", || {
        !gates.is_online(UserId(10_001)).unwrap() && !gates.is_online(UserId(10_002)).unwrap()
    });
    assert!(matches!(
        gates.push_uid(UserId(10_001), 9, 0, "x"),
        Err(NodeError::NotFound)
    ));
    assert!(gates.is_online(UserId(10_003)).unwrap());
}

#[test]
fn a_stateful_binding_follows_the_user_to_another_gate() {
    let e = engines("sticky");
    let (g1, cfg) = e.gate("g1");
    let (g2, _) = e.gate("g2");
    let _n1 = node(&e, "n1", None);
    let _n2 = node(&e, "n2", None);
    wait_linked(&[&g1, &g2], &cfg, 2);
    let mut a = Client::connect(g1.tcp_addr(), cfg.packet);
    ask(&mut a, LOGIN, "77");
    assert_eq!(ask(&mut a, STATEFUL, "").0, ringgate::codec::ext::NOT_BOUND);
    let home = ask(&mut a, BIND_HERE, "").1;
    for _ in 0..6 {
        assert_eq!(ask(&mut a, STATEFUL, "").1, home);
    }
    // The gate records the binding in Redis asynchronously (its agent's
    // next note); a reconnect that beat it would find none.
    let mut raw = e.redis.raw();
    let key = format!("{}:locate:user:77:node", e.ns);
    wait_until(
        PATIENCE,
        "the binding recorded in Redis (due's key shape)",
        || {
            let v: Option<String> = redis::cmd("HGET")
                .arg(&key)
                .arg("game")
                .query(&mut raw)
                .unwrap();
            v.as_deref() == Some(home.as_str())
        },
    );
    drop(a);
    // The user comes back on the other gate: no new bind needed.
    let mut b = Client::connect(g2.tcp_addr(), cfg.packet);
    ask(&mut b, LOGIN, "77");
    wait_until(PATIENCE, "binding restored on g2", || {
        ask(&mut b, STATEFUL, "").0 == 0
    });
    for _ in 0..6 {
        assert_eq!(ask(&mut b, STATEFUL, "").1, home);
    }
}

#[test]
fn rebinds_while_subscribers_are_killed_leave_no_stale_session() {
    let e = engines("pubsub");
    let (g1, cfg) = e.gate("g1");
    let (g2, _) = e.gate("g2");
    let n = node(&e, "n1", None);
    let gates = n.gates();
    wait_linked(&[&g1, &g2], &cfg, 1);
    let mut old: Vec<Client> = (0..40)
        .map(|i| {
            let mut c = Client::connect(g1.tcp_addr(), cfg.packet);
            ask(&mut c, LOGIN, &(500 + i).to_string());
            c
        })
        .collect();
    // Every user logs in again on g2 while the gates' subscriptions are
    // being killed: some BindGate notifications are lost.
    let mut raw = e.redis.raw();
    let mut new = Vec::new();
    for i in 0..40 {
        if i % 8 == 0 {
            let _: redis::Value = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("TYPE")
                .arg("pubsub")
                .query(&mut raw)
                .unwrap();
        }
        let mut c = Client::connect(g2.tcp_addr(), cfg.packet);
        ask(&mut c, LOGIN, &(500 + i).to_string());
        new.push(c);
    }
    // After the resubscribes' checks no user is left open on g1, and a
    // push goes to the new session only.
    for (i, c) in old.iter_mut().enumerate() {
        assert!(
            c.closed_within(PATIENCE),
            "stale session of user {} still open",
            500 + i
        );
    }
    for i in 0..40 {
        gates.push_uid(UserId(500 + i), 9, 0, "p").unwrap();
    }
    for c in &mut new {
        assert_eq!(drain(c, Duration::from_millis(20)), vec![b"p".to_vec()]);
    }
    wait_until(PATIENCE, "g1 holds nobody", || g1.stats().bound == 0);
    assert_eq!(g2.stats().bound, 40);
}
