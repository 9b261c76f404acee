//! The gate's side of the node protocol (v2), against a node scripted
//! message by message: replies on any link, every request answered exactly
//! once (reply, TIMEOUT, NODE_DOWN, BUSY, TOO_LARGE), hung and dead nodes,
//! numbered events, snapshots, node_id rules.

#[path = "../common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::scripted::{reply_to, Announce, NodeLink, ScriptedNode};
use common::{test_config, wait_until, Client, PATIENCE};
use ringgate::codec::ext;
use ringgate::config::Config;
use ringgate::gate::Gate;
use ringgate::link::proto::{to_gate, to_node, Deliver, EventKind, Push};

const SHARDS: usize = 2;
const ROUTE: i32 = 1;
const SHORT: Duration = Duration::from_millis(300);

fn gate(node: &ScriptedNode, tweak: impl FnOnce(&mut Config)) -> Gate {
    common::init_logs();
    let mut cfg = test_config(&[node.addr]);
    cfg.shards.count = SHARDS;
    cfg.shards.cores.clear();
    tweak(&mut cfg);
    cfg.validate().expect("valid test config");
    Gate::start(&cfg).expect("gate starts")
}

fn opts() -> ringgate::codec::PacketOptions {
    Config::default().packet
}

fn answered(route: i32) -> Announce {
    Announce {
        reply_routes: vec![(route, 0)],
        ..Default::default()
    }
}

/// The next Deliver on any of `links`: its link index and the message.
fn next_deliver(links: &mut [NodeLink]) -> (usize, Deliver) {
    let end = Instant::now() + PATIENCE;
    while Instant::now() < end {
        for (i, l) in links.iter_mut().enumerate() {
            if let Some(to_node::Msg::Deliver(d)) = l.next(Duration::from_millis(10)) {
                return (i, d);
            }
        }
    }
    panic!("no Deliver reached the node");
}

#[test]
fn a_reply_on_another_shards_link_reaches_its_client() {
    let node = ScriptedNode::bind();
    let g = gate(&node, |_| {});
    let mut links = node.accept_shards(&answered(ROUTE), SHARDS);
    let mut c = Client::connect(g.tcp_addr(), opts());
    for seq in 1..=4 {
        c.send(ROUTE, seq, b"ping");
        let (i, d) = next_deliver(&mut links);
        assert_ne!(d.request_id, 0, "a reply route's request carries an id");
        assert_eq!(d.session_id >> 48, u64::from(links[i].hello.shard));
        // Reply on the other shard's link, plus a plain push there too.
        let other = &mut links[1 - i];
        other.send(&[
            reply_to(&d, b"pong"),
            to_gate::Msg::Push(Push {
                session_id: d.session_id,
                route: 9,
                payload: b"extra".to_vec().into(),
                ..Default::default()
            }),
        ]);
        let r = c.recv_data().unwrap();
        assert_eq!(
            (r.ext, r.route, r.seq, &r.payload[..]),
            (0, ROUTE, seq, &b"pong"[..])
        );
        let p = c.recv_data().unwrap();
        assert_eq!((p.route, &p.payload[..]), (9, &b"extra"[..]));
    }
    assert_eq!(g.stats().push_misses, 0);
    g.stop();
}

#[test]
fn an_unanswered_request_gets_timeout_once_and_its_late_reply_is_dropped() {
    let node = ScriptedNode::bind();
    let g = gate(&node, |c| c.link.hang_timeout = Duration::ZERO);
    let a = Announce {
        reply_routes: vec![(ROUTE, 200)],
        routes: vec![2],
        ..Default::default()
    };
    let mut links = node.accept_shards(&a, SHARDS);
    assert_eq!(
        links[0].hello.request_timeout_ms, 5000,
        "the default is announced"
    );
    let mut c = Client::connect(g.tcp_addr(), opts());
    let sent = Instant::now();
    c.send(ROUTE, 7, b"slow");
    let (i, d) = next_deliver(&mut links);
    let r = c.recv_data().unwrap();
    let waited = sent.elapsed();
    assert_eq!((r.ext, r.route, r.seq), (ext::TIMEOUT, ROUTE, 7));
    assert!(r.payload.is_empty());
    assert!(waited >= Duration::from_millis(200), "{waited:?}");
    // The real reply comes too late: dropped, never shown after the error.
    links[i].send(&[reply_to(&d, b"too late")]);
    wait_until(PATIENCE, "late reply counted", || {
        g.stats().late_replies == 1
    });
    // A notification route waits for nothing: no TIMEOUT follows it.
    c.send(2, 8, b"notify");
    let (_, n) = next_deliver(&mut links);
    assert_eq!(n.request_id, 0);
    c.send(ROUTE, 9, b"again");
    let (i, d) = next_deliver(&mut links);
    links[i].send(&[reply_to(&d, b"in time")]);
    let r = c.recv_data().unwrap();
    assert_eq!((r.ext, r.seq, &r.payload[..]), (0, 9, &b"in time"[..]));
    let st = g.stats();
    assert_eq!((st.request_timeouts, st.late_replies), (1, 1));
    g.stop();
}

#[test]
fn requests_waiting_on_a_link_that_drops_get_node_down_at_once() {
    let node = ScriptedNode::bind();
    let g = gate(&node, |_| {});
    let mut links = node.accept_shards(&answered(ROUTE), SHARDS);
    let mut c = Client::connect(g.tcp_addr(), opts());
    for seq in 1..=3 {
        c.send(ROUTE, seq, b"x");
    }
    let (i, _) = next_deliver(&mut links);
    for _ in 0..2 {
        links[i].next_where(PATIENCE, |m| {
            matches!(m, to_node::Msg::Deliver(_)).then_some(())
        });
    }
    let dropped = Instant::now();
    let _ = links[i].s.shutdown(std::net::Shutdown::Both);
    let mut seqs = Vec::new();
    for _ in 0..3 {
        let r = c.recv_data().unwrap();
        assert_eq!(r.ext, ext::NODE_DOWN);
        seqs.push(r.seq);
    }
    assert_eq!(seqs, vec![1, 2, 3], "answered in the order asked");
    assert!(
        dropped.elapsed() < Duration::from_secs(2),
        "{:?}",
        dropped.elapsed()
    );
    assert_eq!(g.stats().requests_orphaned, 3);
    g.stop();
}

#[test]
fn a_node_that_hangs_is_cut_off_within_the_hang_timeout() {
    let node = ScriptedNode::bind();
    let g = gate(&node, |c| c.link.hang_timeout = SHORT);
    let mut links = node.accept_shards(&answered(ROUTE), SHARDS);
    let mut c = Client::connect(g.tcp_addr(), opts());
    c.send(ROUTE, 1, b"x");
    let (i, _) = next_deliver(&mut links);
    // The node now reads nothing and answers nothing (as if SIGSTOPped).
    let stopped = Instant::now();
    let r = c.recv_data().unwrap();
    let took = stopped.elapsed();
    assert_eq!((r.ext, r.seq), (ext::NODE_DOWN, 1));
    assert!(took >= SHORT - Duration::from_millis(20), "{took:?}");
    assert!(took < SHORT * 4, "heartbeats would take 3 s: {took:?}");
    assert!(links[i].closed_within(PATIENCE));
    assert_eq!(g.stats().links_hung, 1);
    // An idle link with nothing waiting is not suspected.
    let other = 1 - i;
    assert!(!links[other].closed_within(SHORT * 2));
    g.stop();
}

#[test]
fn a_live_node_that_answers_pings_is_not_taken_for_hung() {
    let node = ScriptedNode::bind();
    // A second of hang timeout: a loaded machine may stall this test's
    // thread for a while, and that must not read as a hung node.
    let hang = Duration::from_secs(1);
    let g = gate(&node, |c| {
        c.link.hang_timeout = hang;
        c.link.request_timeout = hang * 10;
        // Only the hang probes ping: the heartbeat would answer for them.
        c.link.heartbeat_interval = hang * 10;
    });
    let mut links = node.accept_shards(&answered(ROUTE), SHARDS);
    let mut c = Client::connect(g.tcp_addr(), opts());
    c.send(ROUTE, 1, b"x");
    let (i, d) = next_deliver(&mut links);
    // Slow work: the node holds the reply for 2.5 hang timeouts but answers
    // the gate's probes.
    let end = Instant::now() + hang * 5 / 2;
    while Instant::now() < end {
        // `next` answers pings; anything else here is unexpected.
        if let Some(m) = links[i].next(Duration::from_millis(20)) {
            panic!("unexpected {m:?}");
        }
    }
    links[i].send(&[reply_to(&d, b"done")]);
    let r = c.recv_data().unwrap();
    assert_eq!((r.ext, &r.payload[..]), (0, &b"done"[..]));
    assert!(
        links[i].pongs >= 2,
        "the gate probed the silent node: {}",
        links[i].pongs
    );
    assert_eq!(g.stats().links_hung, 0);
    g.stop();
}

#[test]
fn a_node_that_stops_reading_gets_busy_replies_not_a_growing_gate() {
    let node = ScriptedNode::bind();
    let g = gate(&node, |c| {
        c.link.max_queued_bytes = 256 << 10;
        c.link.hang_timeout = Duration::ZERO;
        c.link.request_timeout = Duration::from_secs(60);
        // The link's bound is tested: the client's own cap on requests
        // waiting for replies (INFLIGHT_FULL) would answer most first.
        c.limits.max_inflight = 0;
    });
    let _links = node.accept_shards(&answered(ROUTE), SHARDS);
    // The node reads nothing from here on; the kernel buffers fill first.
    let mut c = Client::connect(g.tcp_addr(), opts());
    let payload = vec![7u8; 4000];
    let n = 5000; // 20 MB offered
    let writer = {
        let mut s = c.s.try_clone().unwrap();
        let opts = c.opts;
        std::thread::spawn(move || {
            use std::io::Write;
            for seq in 1..=n {
                let mut b = bytes::BytesMut::new();
                ringgate::codec::encode_data(0, ROUTE, seq, &payload, &opts, &mut b).unwrap();
                s.write_all(&b).unwrap();
            }
        })
    };
    writer.join().unwrap();
    // Every request was either queued for the node or refused BUSY.
    wait_until(PATIENCE, "every request accounted for", || {
        let st = g.stats();
        st.to_node + st.link_busy == n as u64
    });
    let st = g.stats();
    for _ in 0..st.link_busy {
        let r = c.recv_data().unwrap();
        assert_eq!(r.ext, ext::BUSY, "only BUSY can come back: {r:?}");
    }
    assert!(
        st.link_busy > n as u64 / 4,
        "most of {} MB must be refused, {} of {n} were",
        n * 4 / 1000,
        st.link_busy
    );
    assert_eq!(st.links_up, SHARDS as u64, "a slow node keeps its link");
    g.stop();
}

#[test]
fn a_request_too_large_for_the_node_is_refused_and_the_link_stays() {
    let node = ScriptedNode::bind();
    let g = gate(&node, |_| {});
    let a = Announce {
        max_frame_bytes: 2048,
        ..answered(ROUTE)
    };
    let mut links = node.accept_shards(&a, SHARDS);
    let mut c = Client::connect(g.tcp_addr(), opts());
    c.send(ROUTE, 1, &[1u8; 3000]);
    let r = c.recv_data().unwrap();
    assert_eq!((r.ext, r.seq), (ext::TOO_LARGE, 1));
    c.send(ROUTE, 2, b"small");
    let (i, d) = next_deliver(&mut links);
    links[i].send(&[reply_to(&d, b"ok")]);
    assert_eq!(c.recv_data().unwrap().seq, 2);
    assert_eq!(g.stats().too_large, 1);
    g.stop();
}

#[test]
fn a_node_that_asks_gets_a_snapshot_first_then_numbered_events() {
    let node = ScriptedNode::bind();
    let g = gate(&node, |_| {});
    // Sessions exist before the node connects.
    let first = node.accept_shards(&Announce::default(), SHARDS);
    let clients: Vec<Client> = (0..40)
        .map(|_| Client::connect(g.tcp_addr(), opts()))
        .collect();
    wait_until(PATIENCE, "40 connections", || g.stats().connections == 40);
    // The node restarts, asking for a snapshot and events, with small frames.
    drop(first);
    let a = Announce {
        events: vec![EventKind::EventConnect, EventKind::EventDisconnect],
        snapshot: true,
        max_frame_bytes: 1024,
        ..answered(ROUTE)
    };
    let mut links = node.accept_shards(&a, SHARDS);
    let mut seen = std::collections::BTreeSet::new();
    let mut next_connect = Vec::new();
    for l in &mut links {
        let (mut pages, before) = (0, seen.len());
        loop {
            match l.next(PATIENCE) {
                Some(to_node::Msg::Snapshot(s)) => {
                    pages += 1;
                    for info in &s.sessions {
                        assert_eq!(info.session_id >> 48, u64::from(l.hello.shard));
                        assert_eq!(info.ip, "127.0.0.1");
                        assert_eq!(info.network, "tcp");
                        assert!(seen.insert(info.session_id), "listed twice");
                    }
                    if s.last {
                        next_connect.push(s.event_seqs[EventKind::EventConnect as usize] + 1);
                        break;
                    }
                }
                other => panic!("the snapshot comes before anything else, got {other:?}"),
            }
        }
        // ~35 B per session, pages of at most 512 B (half the node's frame).
        let here = seen.len() - before;
        assert!(
            pages >= here.div_ceil(16),
            "{here} sessions in {pages} pages"
        );
    }
    assert_eq!(seen.len(), 40);
    // Events after it continue the counters the snapshot gave.
    let _late = Client::connect(g.tcp_addr(), opts());
    let end = Instant::now() + PATIENCE;
    let ev = 'found: loop {
        assert!(Instant::now() < end, "no connect event");
        for (i, l) in links.iter_mut().enumerate() {
            if let Some(to_node::Msg::Event(e)) = l.next(Duration::from_millis(10)) {
                break 'found (i, e);
            }
        }
    };
    let (i, e) = ev;
    assert_eq!(e.kind, EventKind::EventConnect as i32);
    assert_eq!(
        e.seq, next_connect[i],
        "seq continues the snapshot's counter"
    );
    drop(clients);
    g.stop();
}

#[test]
fn a_snapshot_call_is_answered_after_its_pages_and_a_gap_is_visible() {
    let node = ScriptedNode::bind();
    let g = gate(&node, |c| c.shards.count = 1);
    let a = Announce {
        events: vec![EventKind::EventConnect],
        ..answered(ROUTE)
    };
    let mut l = node.accept(&a);
    let _c1 = Client::connect(g.tcp_addr(), opts());
    let e1 = l
        .next_where(PATIENCE, |m| match m {
            to_node::Msg::Event(e) => Some(e),
            _ => None,
        })
        .unwrap();
    assert_eq!(e1.seq, 1);
    l.send(&[to_gate::Msg::Call(ringgate::link::proto::Call {
        call_id: 77,
        op: Some(ringgate::link::proto::call::Op::Snapshot(Default::default())),
    })]);
    let page = l
        .next_where(PATIENCE, |m| match m {
            to_node::Msg::Snapshot(s) => Some(s),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        (page.call_id, page.last, page.sessions.len()),
        (77, true, 1)
    );
    match l.next(PATIENCE) {
        Some(to_node::Msg::Result(r)) => assert_eq!((r.call_id, r.delivered), (77, 1)),
        other => panic!("expected the call's result after the pages, got {other:?}"),
    }
    g.stop();
}

#[test]
fn a_second_node_with_the_same_node_id_is_refused() {
    let a_node = ScriptedNode::bind();
    let b_node = ScriptedNode::bind();
    common::init_logs();
    let mut cfg = test_config(&[a_node.addr, b_node.addr]);
    cfg.shards.count = 1;
    cfg.shards.cores.clear();
    cfg.validate().unwrap();
    let g = Gate::start(&cfg).unwrap();
    let same = Announce {
        node_id: "twin".into(),
        ..answered(ROUTE)
    };
    let _a = a_node.accept(&same);
    wait_until(PATIENCE, "first link up", || g.stats().links_up == 1);
    let mut b = b_node.accept(&same);
    assert!(b.closed_within(PATIENCE), "the twin is refused");
    assert_eq!(g.stats().links_up, 1);
    g.stop();
}

#[test]
fn a_node_speaking_another_version_is_refused() {
    let node = ScriptedNode::bind();
    let g = gate(&node, |c| c.shards.count = 1);
    let mut l = node.accept(&Announce {
        version: Some(1),
        ..answered(ROUTE)
    });
    assert_eq!(l.hello.version, 2);
    assert!(l.closed_within(PATIENCE));
    assert_eq!(g.stats().links_up, 0);
    g.stop();
}

#[test]
fn a_subscribe_of_several_targets_is_answered_once_with_how_many_were_found() {
    use ringgate::link::proto::{call, target, Call, ChannelMembers, Target};
    let node = ScriptedNode::bind();
    let g = gate(&node, |_| {});
    let mut links = node.accept_shards(&answered(ROUTE), SHARDS);
    let mut sessions = Vec::new();
    let mut clients = Vec::new();
    for seq in 0..2 {
        let mut c = Client::connect(g.tcp_addr(), opts());
        c.send(ROUTE, seq, b"who am i");
        let (i, d) = next_deliver(&mut links);
        links[i].send(&[reply_to(&d, b"")]);
        c.recv_data().unwrap();
        sessions.push(d.session_id);
        clients.push(c);
    }
    let gone = sessions[0] + (1 << 20); // its slot, a later generation: nobody
    let targets = [sessions[0], sessions[1], gone]
        .iter()
        .map(|s| Target {
            to: Some(target::To::SessionId(*s)),
        })
        .collect();
    links[0].send(&[to_gate::Msg::Call(Call {
        call_id: 5,
        op: Some(call::Op::Subscribe(ChannelMembers {
            channel: "room".into(),
            targets,
        })),
    })]);
    let results: Vec<_> = (0..2)
        .filter_map(|i| {
            links[i].next_where(Duration::from_millis(500), |m| match m {
                to_node::Msg::Result(r) => Some(r),
                _ => None,
            })
        })
        .collect();
    assert_eq!(results.len(), 1, "answered once: {results:?}");
    assert_eq!(
        (results[0].call_id, results[0].code, results[0].delivered),
        (5, 0, 2)
    );
    g.stop();
}
