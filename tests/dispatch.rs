//! Dispatch among several nodes through a real gate: due's strategies
//! (rr, wrr, uid-hash), node states (work, busy, hang), route flags
//! (authorized, internal, stateful) answered with their error codes, and
//! stateful routes following the user's bound node.

mod common;

use std::net::SocketAddr;

use common::{test_config, wait_until, Client, PATIENCE};
use ringgate::codec::ext;
use ringgate::config::{Config, Dispatch};
use ringgate::gate::Gate;
use ringgate::node::{Context, GateClient, Node, NodeHandle, NodeState};
use ringgate::UserId;

/// Routes of the test service "game".
const ECHO: i32 = 1;
const AUTHORIZED: i32 = 2;
const INTERNAL: i32 = 3;
const STATEFUL: i32 = 4;
const LOGIN: i32 = 5;
const BIND_HERE: i32 = 6;

/// A "game" node named `id`: every route answers with the node's id;
/// LOGIN binds the uid in the payload, BIND_HERE binds the user to this node.
fn game_node(id: &'static str, weight: u32) -> NodeHandle {
    let answer = move |ctx: &mut Context| ctx.reply(id.as_bytes().to_vec());
    Node::builder("game")
        .node_id(id)
        .weight(weight)
        .listen("127.0.0.1:0".parse().unwrap())
        .route(ECHO, answer)
        .route(AUTHORIZED, answer)
        .route(INTERNAL, answer)
        .route(STATEFUL, answer)
        .authorized(AUTHORIZED)
        .internal(INTERNAL)
        .stateful(STATEFUL)
        .route(LOGIN, move |ctx: &mut Context| {
            let uid: i64 = std::str::from_utf8(ctx.payload()).unwrap().parse().unwrap();
            ctx.bind(UserId(uid)).unwrap();
            ctx.reply(id.as_bytes().to_vec());
        })
        .route(BIND_HERE, move |ctx: &mut Context| {
            ctx.bind_node().unwrap();
            ctx.reply(id.as_bytes().to_vec());
        })
        .workers(2)
        .bind()
        .expect("bind game node")
        .spawn()
}

struct Fleet {
    gate: Gate,
    nodes: Vec<NodeHandle>,
    cfg: Config,
}

fn fleet(how: Dispatch, weights: &[(&'static str, u32)]) -> Fleet {
    common::init_logs();
    let nodes: Vec<NodeHandle> = weights.iter().map(|(id, w)| game_node(id, *w)).collect();
    let addrs: Vec<SocketAddr> = nodes.iter().map(NodeHandle::local_addr).collect();
    let mut cfg = test_config(&addrs);
    cfg.cluster.dispatch = how;
    let gate = Gate::start(&cfg).expect("gate starts");
    let want = (cfg.shards.cores.len() * nodes.len()) as u64;
    wait_until(PATIENCE, "every link up", || gate.stats().links_up == want);
    Fleet { gate, nodes, cfg }
}

impl Fleet {
    fn client(&self) -> Client {
        Client::connect(self.gate.tcp_addr(), self.cfg.packet)
    }
}

/// Sends one request and returns (ext, payload as text).
fn ask(c: &mut Client, route: i32, payload: &str) -> (u8, String) {
    c.send(route, 0, payload.as_bytes());
    let p = c.recv_data().expect("a reply");
    assert_eq!(p.route, route);
    (p.ext, String::from_utf8(p.payload.to_vec()).unwrap())
}

fn tally(c: &mut Client, route: i32, n: usize) -> Vec<String> {
    (0..n).map(|_| ask(c, route, "").1).collect()
}

#[test]
fn rr_alternates_between_nodes() {
    let f = fleet(Dispatch::RoundRobin, &[("n1", 1), ("n2", 1)]);
    let mut c = f.client();
    let got = tally(&mut c, ECHO, 40);
    // One connection lives on one shard, whose table alternates.
    for w in got.windows(2) {
        assert_ne!(w[0], w[1], "rr alternates: {got:?}");
    }
}

#[test]
fn wrr_splits_three_to_one_over_4000_requests() {
    let f = fleet(Dispatch::WeightedRoundRobin, &[("n1", 3), ("n2", 1)]);
    let mut clients: Vec<Client> = (0..4).map(|_| f.client()).collect();
    let mut n1 = 0;
    for i in 0..4000 {
        let c = &mut clients[i % 4];
        if ask(c, ECHO, "").1 == "n1" {
            n1 += 1;
        }
    }
    let share = f64::from(n1) / 4000.0;
    assert!((share - 0.75).abs() <= 0.75 * 0.05, "n1 got {n1} of 4000");
}

#[test]
fn uid_hash_keeps_each_user_on_one_node() {
    let f = fleet(Dispatch::UidHash, &[("n1", 1), ("n2", 1), ("n3", 1)]);
    let mut seen = std::collections::HashSet::new();
    for uid in 1..=12 {
        let mut c = f.client();
        ask(&mut c, LOGIN, &uid.to_string());
        let got = tally(&mut c, ECHO, 10);
        assert!(got.iter().all(|n| *n == got[0]), "user {uid}: {got:?}");
        // The same user on a new connection lands on the same node.
        let mut again = f.client();
        ask(&mut again, LOGIN, &uid.to_string());
        assert_eq!(ask(&mut again, ECHO, "").1, got[0], "user {uid}");
        seen.insert(got[0].clone());
    }
    assert!(seen.len() >= 2, "users spread over the nodes: {seen:?}");
}

#[test]
fn refused_routes_get_their_error_codes_and_are_counted() {
    let f = fleet(Dispatch::RoundRobin, &[("n1", 1), ("n2", 1)]);
    let mut c = f.client();
    assert_eq!(ask(&mut c, AUTHORIZED, "").0, ext::UNAUTHORIZED);
    assert_eq!(ask(&mut c, STATEFUL, "").0, ext::UNAUTHORIZED);
    assert_eq!(ask(&mut c, INTERNAL, "").0, ext::FORBIDDEN);
    assert_eq!(ask(&mut c, 99, "").0, ext::NO_ROUTE);
    ask(&mut c, LOGIN, "42");
    assert_eq!(ask(&mut c, AUTHORIZED, "").0, 0, "bound now");
    assert_eq!(
        ask(&mut c, INTERNAL, "").0,
        ext::FORBIDDEN,
        "never for clients"
    );
    assert_eq!(ask(&mut c, STATEFUL, "").0, ext::NOT_BOUND);
    let s = f.gate.stats();
    assert_eq!((s.unauthorized, s.forbidden, s.not_bound), (2, 2, 1));
}

#[test]
fn stateful_routes_follow_the_bound_node_whatever_its_state() {
    let f = fleet(Dispatch::RoundRobin, &[("n1", 1), ("n2", 1)]);
    let mut c = f.client();
    ask(&mut c, LOGIN, "7");
    // Bind to whichever node answers BIND_HERE.
    let (code, home) = ask(&mut c, BIND_HERE, "");
    assert_eq!(code, 0);
    let got = tally(&mut c, STATEFUL, 10);
    assert!(got.iter().all(|n| *n == home), "{got:?} not all {home}");
    // The bound node starts draining: stateless traffic leaves it, the
    // user's stateful requests still reach it.
    let i = if home == "n1" { 0 } else { 1 };
    let gates: GateClient = f.nodes[i].gates();
    assert!(gates.set_state(NodeState::Hang) > 0);
    let other = if home == "n1" { "n2" } else { "n1" };
    wait_until(
        PATIENCE,
        "stateless traffic leaves the hanging node",
        || ask(&mut c, ECHO, "").1 == other && ask(&mut c, ECHO, "").1 == other,
    );
    assert!(tally(&mut c, ECHO, 20).iter().all(|n| n == other));
    assert!(tally(&mut c, STATEFUL, 10).iter().all(|n| *n == home));
    // A new link of that node announces its state in the hello.
    assert_eq!(gates.state(), NodeState::Hang);
}

#[test]
fn busy_nodes_serve_only_when_no_node_works() {
    let f = fleet(Dispatch::RoundRobin, &[("n1", 1), ("n2", 1)]);
    let mut c = f.client();
    f.nodes[0].gates().set_state(NodeState::Busy);
    wait_until(PATIENCE, "n1 busy: n2 takes everything", || {
        tally(&mut c, ECHO, 4).iter().all(|n| n == "n2")
    });
    f.nodes[1].gates().set_state(NodeState::Hang);
    wait_until(PATIENCE, "n2 hangs: busy n1 serves", || {
        tally(&mut c, ECHO, 4).iter().all(|n| n == "n1")
    });
    f.nodes[0].gates().set_state(NodeState::Shut);
    wait_until(PATIENCE, "nobody works: NODE_DOWN, not silence", || {
        ask(&mut c, ECHO, "").0 == ext::NODE_DOWN
    });
    f.nodes[1].gates().set_state(NodeState::Work);
    wait_until(PATIENCE, "n2 works again", || {
        ask(&mut c, ECHO, "").1 == "n2"
    });
}
