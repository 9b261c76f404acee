//! What does a push cost when the node must find the user's gate, and how
//! fast does a fleet route around a node killed with SIGKILL?
//!
//! ```text
//! cargo bench --bench fleet             # ~30 s: real etcd and Redis on loopback
//! cargo bench --bench fleet -- --quick  # ~5 s (also what `cargo test --benches` runs)
//! ```
//!
//! Two gates on one etcd registry and one Redis locator, one node linked to
//! both, users bound half on each gate. Four measurements:
//!
//! * `same-gate push` — the node's client pinned to the user's gate
//!   (`gates().gate(id).push_uid`): a blocking call, answered once the gate
//!   has queued the packet; no Redis.
//! * `cross-gate push` — the unpinned client (`gates().push_uid`): one Redis
//!   `GET` to locate the gate, then the same call there.
//!
//!   The two alternate in rounds (medians of the rounds' rates; p50/p99
//!   over all calls), and the Redis commands per push are read from `INFO
//!   commandstats`.
//! * `multicast` — to 1,000 uids of which 500 are online (due's #64), many
//!   times; the process's RSS is printed along the way.
//! * `node SIGKILL` — a second node runs in a child process (this binary
//!   again); a client keeps asking the gate; the child is killed with
//!   SIGKILL; printed: how long after the kill a reply still came from it,
//!   and how many requests were answered with an error instead.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::fleet::{ask, engines, node, wait_linked, Engines, ECHO, LOGIN};
use common::{wait_until, Client, PATIENCE};
use hdrhistogram::Histogram;
use ringgate::node::{Context, Node};
use ringgate::UserId;

/// Set in the child process: the etcd endpoint, Redis URL and namespace.
const CHILD_ENV: &str = "RINGGATE_FLEET_BENCH_CHILD";

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        return child_node(&spec);
    }
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick")
        || !args.iter().any(|a| a == "--bench")
        || std::env::var_os("RINGGATE_BENCH_QUICK").is_some_and(|v| v != "0");
    let (rounds, per_round, multicasts) = if quick {
        (2, 300, 200)
    } else {
        (5, 4000, 10_000)
    };

    let e = engines("bench");
    let (g1, cfg) = e.gate("g1");
    let (g2, _) = e.gate("g2");
    let n = node(&e, "n1", None);
    wait_linked(&[&g1, &g2], &cfg, 1);
    // 1,000 users, uids 1000..2000: even on g1, odd on g2.
    let mut clients: Vec<Client> = (0..1000)
        .map(|i| {
            let g = if i % 2 == 0 { &g1 } else { &g2 };
            let mut c = Client::connect(g.tcp_addr(), cfg.packet);
            ask(&mut c, LOGIN, &(1000 + i).to_string());
            c
        })
        .collect();
    let gates = n.gates();
    wait_until(PATIENCE, "every user located", || {
        gates.stat().is_ok_and(|s| s.bound == 1000)
    });

    let pinned = gates.gate("g2");
    let mut same = Histogram::<u64>::new(3).unwrap();
    let mut cross = Histogram::<u64>::new(3).unwrap();
    let (mut same_rates, mut cross_rates) = (Vec::new(), Vec::new());
    let gets_before = redis_calls(&e, "get");
    let mut cross_pushes = 0u64;
    for round in 0..rounds {
        for located in [false, true] {
            let start = Instant::now();
            for k in 0..per_round {
                let uid = UserId(1000 + ((k * 2 + 1) % 1000) as i64); // users on g2
                let t = Instant::now();
                if located {
                    gates.push_uid(uid, 9, round, "p").unwrap();
                } else {
                    pinned.push_uid(uid, 9, round, "p").unwrap();
                }
                let h = if located { &mut cross } else { &mut same };
                h.record(t.elapsed().as_micros() as u64).unwrap();
            }
            let rate = per_round as f64 / start.elapsed().as_secs_f64();
            if located {
                cross_rates.push(rate);
                cross_pushes += per_round as u64;
            } else {
                same_rates.push(rate);
            }
        }
        for c in &mut clients {
            c.ready_data();
        }
    }
    let gets = redis_calls(&e, "get") - gets_before;
    println!(
        "fleet bench ({}; 2 gates, 1 node, 1,000 users; one thread, blocking calls)",
        if quick { "quick" } else { "full" }
    );
    println!("| push | pushes/s (median of {rounds}) | p50 µs | p99 µs | Redis GETs per push |");
    println!("|---|---|---|---|---|");
    row("same-gate (pinned)", &mut same_rates, &same, 0.0);
    row(
        "cross-gate (located)",
        &mut cross_rates,
        &cross,
        gets as f64 / cross_pushes as f64,
    );

    // Even uids 1000..2998: the 500 below 2000 are online (on g1).
    let targets: Vec<UserId> = (0..1000).map(|i| UserId(1000 + 2 * i)).collect();
    let rss0 = rss_kib();
    let start = Instant::now();
    for k in 0..multicasts {
        let delivered = gates.multicast(targets.clone(), 9, 0, "m").unwrap();
        assert_eq!(delivered, 500);
        if k % 100 == 99 {
            for c in &mut clients {
                c.ready_data();
            }
        }
        if (k + 1) % (multicasts / 4).max(1) == 0 {
            println!(
                "multicast {:>6}: RSS {} KiB (start {rss0} KiB)",
                k + 1,
                rss_kib()
            );
        }
    }
    println!(
        "multicast to 1,000 uids (500 online): {:.0}/s over {multicasts}",
        multicasts as f64 / start.elapsed().as_secs_f64()
    );

    sigkill(&e, &g1, &cfg);
}

fn row(name: &str, rates: &mut [f64], h: &Histogram<u64>, gets: f64) {
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    println!(
        "| {name} | {median:.0} | {} | {} | {gets:.2} |",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99)
    );
}

/// Calls of one Redis command so far (`INFO commandstats`).
fn redis_calls(e: &Engines, cmd: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut e.redis.raw())
        .unwrap();
    let key = format!("cmdstat_{cmd}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Kills a node process under load and reports how traffic moved.
fn sigkill(e: &Engines, g1: &ringgate::gate::Gate, cfg: &ringgate::config::Config) {
    let spec = format!("{}|{}|{}", e.etcd.endpoint(), e.redis.url(), e.ns);
    let mut child: Child = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, spec)
        .spawn()
        .expect("spawn the child node");
    let shards = cfg.shards.cores.len() as u64;
    wait_until(PATIENCE, "the child node linked", || {
        g1.stats().links_up == 2 * shards
    });
    let mut c = Client::connect(g1.tcp_addr(), cfg.packet);
    wait_until(PATIENCE, "the child node answers", || {
        ask(&mut c, ECHO, "").1 == "n9"
    });
    let mut killed_at = None;
    let mut last_child_reply = None;
    let mut last_error = None;
    let mut errors = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1500) {
        if killed_at.is_none() && start.elapsed() > Duration::from_millis(500) {
            child.kill().unwrap();
            killed_at = Some(Instant::now());
        }
        let (ext, who) = ask(&mut c, ECHO, "");
        if ext != 0 {
            errors += 1;
            last_error = Some(Instant::now());
        } else if who == "n9" {
            last_child_reply = Some(Instant::now());
        }
    }
    let _ = child.wait();
    let killed_at = killed_at.unwrap();
    let since = |t: Option<Instant>| match t {
        Some(t) if t >= killed_at => format!("{:?} after the kill", t - killed_at),
        _ => "none after the kill".to_string(),
    };
    println!(
        "node SIGKILL under a request loop: last reply from it: {}; {errors} request(s) routed to it answered NODE_DOWN, the last {}",
        since(last_child_reply),
        since(last_error)
    );
}

/// The child: a registered node "n9" answering ECHO with its id.
fn child_node(spec: &str) {
    let mut parts = spec.split('|');
    let (etcd, redis_url, ns) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let registry = std::sync::Arc::new(
        ringgate::fleet::etcd::EtcdRegistry::new(ringgate::fleet::etcd::EtcdOptions {
            endpoints: vec![etcd.into()],
            namespace: ns.into(),
            ttl: Duration::from_secs(2),
            ..Default::default()
        })
        .unwrap(),
    );
    let _ = redis_url;
    let node = Node::builder("game")
        .node_id("n9")
        .listen("127.0.0.1:0".parse().unwrap())
        .registry(registry, None)
        .route(ECHO, |ctx: &mut Context| ctx.reply(&b"n9"[..]))
        .bind()
        .unwrap();
    node.run().unwrap();
}
