//! The route table's picks: rules, tiers, every dispatch strategy.

use super::super::nodes::LinkState;
use super::*;
use crate::link::proto::NodeState;

fn link(routes: &[i32], active: bool) -> Link {
    let mut l = Link::new("127.0.0.1:1".parse().unwrap(), 1 << 20);
    l.routes = routes.to_vec();
    if active {
        l.state = LinkState::Active;
    }
    l
}

fn node(id: &str, routes: &[i32], weight: u32) -> Link {
    let mut l = link(routes, true);
    l.service = "game".into();
    l.node_id = id.into();
    l.id_hash = mix(id.len() as u64 * 7919 + u64::from(id.as_bytes()[id.len() - 1]));
    l.weight = weight;
    l
}

const NOBODY: NodeBindings = NodeBindings::EMPTY;

fn anon(session: u64) -> Asker<'static> {
    Asker {
        uid: 0,
        session,
        nodes: &NOBODY,
    }
}

fn user(uid: i64, nodes: &NodeBindings) -> Asker<'_> {
    Asker {
        uid,
        session: 1,
        nodes,
    }
}

fn picks(t: &mut RouteTable, links: &[Link], how: Dispatch, n: usize) -> Vec<usize> {
    (0..n)
        .map(|_| t.pick(1, links, anon(1), how).unwrap().link)
        .collect()
}

#[test]
fn round_robin_alternates_active_links_and_reports_why_not() {
    let links = vec![link(&[1, 2], true), link(&[1], true), link(&[3], false)];
    let mut t = RouteTable::default();
    t.rebuild(&links, 5000);
    assert_eq!(picks(&mut t, &links, Dispatch::RoundRobin, 4), [0, 1, 0, 1]);
    let pick = |t: &mut RouteTable, r| t.pick(r, &links, anon(1), Dispatch::RoundRobin);
    assert_eq!(pick(&mut t, 2).map(|p| p.link), Ok(0));
    assert_eq!(pick(&mut t, 3), Err(ext::NODE_DOWN));
    assert_eq!(pick(&mut t, 4), Err(ext::NO_ROUTE));
}

#[test]
fn work_nodes_first_then_busy_never_hang_or_shut() {
    let mut links = vec![node("a", &[1], 1), node("b", &[1], 1), node("c", &[1], 1)];
    links[0].node_state = NodeState::Busy;
    links[2].node_state = NodeState::Hang;
    let mut t = RouteTable::default();
    t.rebuild(&links, 5000);
    for how in [
        Dispatch::RoundRobin,
        Dispatch::Random,
        Dispatch::WeightedRoundRobin,
        Dispatch::UidHash,
    ] {
        assert!(
            picks(&mut t, &links, how, 20).iter().all(|&l| l == 1),
            "{how:?}"
        );
    }
    links[1].node_state = NodeState::Shut;
    assert!(picks(&mut t, &links, Dispatch::RoundRobin, 5)
        .iter()
        .all(|&l| l == 0));
    links[0].node_state = NodeState::Hang;
    let r = t.pick(1, &links, anon(1), Dispatch::RoundRobin);
    assert_eq!(
        r,
        Err(ext::NODE_DOWN),
        "only hang/shut nodes: no stateless pick"
    );
}

#[test]
fn weighted_round_robin_gives_exact_shares_smoothly() {
    let links = vec![node("a", &[1], 3), node("b", &[1], 1)];
    let mut t = RouteTable::default();
    t.rebuild(&links, 5000);
    let p = picks(&mut t, &links, Dispatch::WeightedRoundRobin, 4000);
    assert_eq!(p.iter().filter(|&&l| l == 0).count(), 3000);
    // Smooth: never more than 3 in a row for the heavy node, b once per 4.
    for w in p.chunks(4) {
        assert_eq!(w.iter().filter(|&&l| l == 1).count(), 1, "{w:?}");
    }
}

#[test]
fn random_spreads_over_every_live_node() {
    let links = vec![node("a", &[1], 1), node("b", &[1], 1), node("c", &[1], 1)];
    let mut t = RouteTable::default();
    t.rebuild(&links, 5000);
    let p = picks(&mut t, &links, Dispatch::Random, 3000);
    for k in 0..3 {
        let n = p.iter().filter(|&&l| l == k).count();
        assert!((800..1200).contains(&n), "node {k} got {n} of 3000");
    }
}

#[test]
fn uid_hash_is_stable_and_moves_only_the_users_of_a_node_that_leaves() {
    let mut links = vec![node("a", &[1], 1), node("b", &[1], 1), node("c", &[1], 1)];
    let mut t = RouteTable::default();
    t.rebuild(&links, 5000);
    let none = NodeBindings::default();
    let place = |t: &mut RouteTable, links: &[Link], uid| {
        let who = user(uid, &none);
        t.pick(1, links, who, Dispatch::UidHash).unwrap().link
    };
    let before: Vec<usize> = (1..=300).map(|u| place(&mut t, &links, u)).collect();
    let again: Vec<usize> = (1..=300).map(|u| place(&mut t, &links, u)).collect();
    assert_eq!(before, again, "the same user always lands on the same node");
    for k in 0..3 {
        assert!(before.iter().filter(|&&l| l == k).count() > 50, "spread");
    }
    links[2].state = LinkState::Closing;
    for (u, &was) in (1..=300).zip(&before) {
        let now = place(&mut t, &links, u);
        if was != 2 {
            assert_eq!(now, was, "user {u} of a node that stayed did not move");
        } else {
            assert_ne!(now, 2);
        }
    }
}

#[test]
fn route_rules_refuse_with_their_codes() {
    let mut a = node("a", &[1, 2, 3, 4], 1);
    let rules = |authorized, internal, stateful| RouteRules {
        authorized,
        internal,
        stateful,
    };
    a.rules = vec![
        (2, rules(true, false, false)),
        (3, rules(false, true, false)),
        (4, rules(false, false, true)),
    ];
    let b = node("b", &[4], 1);
    let links = vec![a, b];
    let mut t = RouteTable::default();
    t.rebuild(&links, 5000);
    let rr = Dispatch::RoundRobin;
    let none = NodeBindings::default();
    let pick = |t: &mut RouteTable, r, who| t.pick(r, &links, who, rr);
    assert!(pick(&mut t, 1, anon(1)).is_ok(), "no rules");
    assert_eq!(pick(&mut t, 2, anon(1)), Err(ext::UNAUTHORIZED));
    assert!(pick(&mut t, 2, user(7, &none)).is_ok());
    assert_eq!(pick(&mut t, 3, user(7, &none)), Err(ext::FORBIDDEN));
    assert_eq!(pick(&mut t, 4, anon(1)), Err(ext::UNAUTHORIZED));
    assert_eq!(pick(&mut t, 4, user(7, &none)), Err(ext::NOT_BOUND));
    let mut bound = NodeBindings::default();
    bound.set("game", "b");
    for _ in 0..3 {
        assert_eq!(pick(&mut t, 4, user(7, &bound)).map(|p| p.link), Ok(1));
    }
    let mut gone = NodeBindings::default();
    gone.set("game", "gone");
    assert_eq!(pick(&mut t, 4, user(7, &gone)), Err(ext::NODE_DOWN));
}

#[test]
fn stateful_routes_reach_a_hanging_bound_node() {
    let mut a = node("a", &[4], 1);
    a.rules = vec![(
        4,
        RouteRules {
            stateful: true,
            ..Default::default()
        },
    )];
    a.node_state = NodeState::Hang;
    let links = vec![a, node("b", &[4], 1)];
    let mut t = RouteTable::default();
    t.rebuild(&links, 5000);
    let mut bound = NodeBindings::default();
    bound.set("game", "a");
    let p = t.pick(4, &links, user(7, &bound), Dispatch::RoundRobin);
    assert_eq!(p.map(|p| p.link), Ok(0));
}

#[test]
fn named_handlers_pick_by_service_name_and_instance() {
    let mut a = node("n1", &[1], 1);
    a.service = "Echo".into();
    a.names = vec![(1, "HD_Echo".into())];
    let mut b = node("n2", &[1], 1);
    b.service = "Echo".into();
    b.names = a.names.clone();
    let links = vec![a, b];
    let mut t = RouteTable::default();
    t.rebuild(&links, 5000);
    let rr = Dispatch::RoundRobin;
    let mut named = |svc, name, inst| t.pick_named(svc, name, inst, &links, anon(1), rr);
    assert_eq!(named("Echo", "HD_Echo", None), Ok((0, 1)));
    assert_eq!(named("Echo", "HD_Echo", None), Ok((1, 1)));
    assert_eq!(named("Echo", "HD_Echo", Some("n2")), Ok((1, 1)));
    assert_eq!(
        named("Echo", "HD_Echo", Some("n9")),
        Err(NamedMiss::NoService)
    );
    assert_eq!(named("Echo", "HD_Nope", None), Err(NamedMiss::NoFunction));
    assert_eq!(named("Chat", "HD_Echo", None), Err(NamedMiss::NoService));
}

#[test]
fn answered_routes_carry_their_timeout_or_the_default() {
    let mut a = link(&[1, 2], true);
    a.reply_routes = vec![(2, 0), (3, 250)];
    let links = vec![a];
    let mut t = RouteTable::default();
    t.rebuild(&links, 5000);
    let mut within = |r| {
        let p = t.pick(r, &links, anon(1), Dispatch::RoundRobin);
        p.unwrap().reply_within
    };
    assert_eq!(within(1), None, "a notification route");
    assert_eq!(within(2), Some(5000), "in both lists: answered");
    assert_eq!(within(3), Some(250));
}
