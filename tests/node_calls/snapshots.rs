//! Snapshots: asked for in the hello, pages handled in link order before
//! the events that follow them, explicit snapshots of one shard.

use super::*;

/// What the handlers of [`snapshot_node`] saw, in the order they ran.
type Log = Arc<Mutex<Vec<String>>>;

/// A node logging snapshot pages ("page <gate> <shard> <sessions> <last>
/// <connect seq>") and connect events ("connect <session>"). The first
/// page of a snapshot takes a while, so an event run beside it (rather than
/// after it) would be logged first.
fn snapshot_node(workers: usize, log: &Log) -> NodeHandle {
    let (pages, events) = (log.clone(), log.clone());
    Node::builder("snap")
        .listen("127.0.0.1:0".parse().unwrap())
        .workers(workers)
        .on_snapshot(move |page: &mut SnapshotPage| {
            if !page.is_last() {
                thread::sleep(Duration::from_millis(50));
            }
            let sessions: Vec<String> = page
                .sessions()
                .iter()
                .map(|s| format!("{}/{}", s.session.0, s.uid.0))
                .collect();
            pages.lock().unwrap().push(format!(
                "page {} {} [{}] {} {}",
                page.gate_id(),
                page.shard().0,
                sessions.join(","),
                page.is_last(),
                page.event_seq(EventKind::Connect)
            ));
        })
        .on_event(&[EventKind::Connect], move |ev: &mut EventContext| {
            events
                .lock()
                .unwrap()
                .push(format!("connect {}", ev.session().0));
        })
        .bind()
        .unwrap()
        .spawn()
}

fn info(session: u64, uid: i64) -> proto::SessionInfo {
    proto::SessionInfo {
        session_id: session,
        uid,
        ip: "10.1.2.3".into(),
        port: 4000 + session as u32,
        network: "ws".into(),
        settings: [("room".to_string(), format!("r{session}"))].into(),
    }
}

/// A snapshot page; `seqs` indexed by EventKind (index 0 unused).
fn page(sessions: Vec<proto::SessionInfo>, last: bool, seqs: &[u64], call_id: u64) -> ToNode {
    ToNode {
        msg: Some(to_node::Msg::Snapshot(proto::Snapshot {
            sessions,
            last,
            event_seqs: seqs.to_vec(),
            call_id,
        })),
    }
}

#[test]
fn hello_asks_for_a_snapshot_only_with_a_handler() {
    let log = Log::default();
    let node = snapshot_node(0, &log);
    let gate = FakeGate::connect(node.local_addr(), "g1", 0, 1);
    assert!(gate.hello.snapshot);
    let node = plain_node();
    let gate = FakeGate::connect(node.local_addr(), "g1", 0, 1);
    assert!(!gate.hello.snapshot);
}

#[test]
fn snapshot_pages_run_in_order_before_the_events_after_them() {
    both_modes(|workers| {
        let log = Log::default();
        let node = snapshot_node(workers, &log);
        let mut gate = FakeGate::connect(node.local_addr(), "g1", 2, SHARDS);
        let seqs = [0, 7, 3, 1, 4];
        let s = |n| SessionId::new(ShardId(2), n).0;
        let mut connect = event(proto::EventKind::EventConnect, SessionId(s(9)), 0);
        connect.seq = 8;
        // What a gate sends after the hello: the pages, then events.
        gate.send(&[
            page(vec![info(s(1), 0), info(s(2), 42)], false, &seqs, 0),
            page(vec![info(s(3), 0)], true, &seqs, 0),
            ev(connect),
        ]);
        wait_until("pages and event handled", || log.lock().unwrap().len() == 3);
        let want = [
            format!("page g1 2 [{}/0,{}/42] false 7", s(1), s(2)),
            format!("page g1 2 [{}/0] true 7", s(3)),
            format!("connect {}", s(9)),
        ];
        assert_eq!(*log.lock().unwrap(), want, "workers({workers})");
    });
}

#[test]
fn snapshot_page_fields() {
    let got: Arc<Mutex<Vec<SessionInfo>>> = Arc::default();
    let g2 = got.clone();
    let node = Node::builder("snap")
        .listen("127.0.0.1:0".parse().unwrap())
        .on_snapshot(move |page: &mut SnapshotPage| {
            assert_eq!(page.event_seq(EventKind::Disconnect), 4);
            assert_eq!(page.event_seq(EventKind::Unbind), 1);
            g2.lock().unwrap().extend(page.take_sessions());
            assert!(page.sessions().is_empty());
        })
        .bind()
        .unwrap()
        .spawn();
    let mut gate = FakeGate::connect(node.local_addr(), "g1", 0, 1);
    gate.send(&[page(vec![info(5, 77)], true, &[0, 7, 3, 1, 4], 0)]);
    wait_until("page handled", || got.lock().unwrap().len() == 1);
    let s = got.lock().unwrap()[0].clone();
    assert_eq!(
        s,
        SessionInfo {
            session: SessionId(5),
            uid: UserId(77),
            ip: "10.1.2.3".into(),
            port: 4005,
            network: "ws".into(),
            settings: [("room".to_string(), "r5".to_string())].into(),
        }
    );
    assert_eq!(s.peer_addr(), Some("10.1.2.3:4005".parse().unwrap()));
}

#[test]
fn explicit_snapshot_goes_on_the_shards_link() {
    let log = Log::default();
    let node = snapshot_node(0, &log);
    let mut links = FakeGate::all(&node, "g1", 2);
    let g = node.gates();
    // Blocking: a call with an id on shard 1's link; the pages, then the
    // result with the session count.
    let c = g.clone();
    let t = spawn(move || c.snapshot(ShardId(1)));
    let call = links[1].next_call();
    assert_ne!(call.call_id, 0);
    assert_eq!(call.op, Some(call::Op::Snapshot(proto::SnapshotRequest {})));
    let s = SessionId::new(ShardId(1), 6).0;
    links[1].send(&[
        page(vec![info(s, 0)], true, &[0, 1, 0, 0, 0], call.call_id),
        result(
            call.call_id,
            CallResult {
                delivered: 1,
                ..Default::default()
            },
        ),
    ]);
    assert_eq!(t.join().unwrap().unwrap(), 1);
    wait_until("page handled", || log.lock().unwrap().len() == 1);
    assert_eq!(log.lock().unwrap()[0], format!("page g1 1 [{s}/0] true 1"));
    // Without waiting: call id 0, on that shard's link too.
    g.snapshot_nowait(ShardId(0)).unwrap();
    let call = links[0].next_call();
    assert_eq!(call.call_id, 0);
    assert!(matches!(call.op, Some(call::Op::Snapshot(_))));
    // Only that shard's link can take it.
    drop(links.remove(1));
    wait_until("link 1 removed", || g.links() == 1);
    assert!(matches!(
        g.snapshot(ShardId(1)),
        Err(NodeError::NotConnected { shard: 1 })
    ));
    links[0].quiet("no fallback to another link");
}

/// A numbered connect event.
fn connect(session: u64, seq: u64) -> ToNode {
    let mut e = event(proto::EventKind::EventConnect, SessionId(session), 0);
    e.seq = seq;
    ev(e)
}

fn disconnect(session: u64, seq: u64) -> ToNode {
    let mut e = event(proto::EventKind::EventDisconnect, SessionId(session), 0);
    e.seq = seq;
    ev(e)
}

/// A node counting its events and, with `snapshots`, handling snapshots.
fn counting_node(workers: usize, snapshots: bool, seen: &Log) -> NodeHandle {
    let seen = seen.clone();
    let b = Node::builder("seq")
        .listen("127.0.0.1:0".parse().unwrap())
        .workers(workers)
        .on_event(
            &[EventKind::Connect, EventKind::Disconnect],
            move |ev: &mut EventContext| {
                seen.lock()
                    .unwrap()
                    .push(format!("{} {}", ev.kind(), ev.seq()));
            },
        );
    let b = if snapshots {
        b.on_snapshot(|_: &mut SnapshotPage| {})
    } else {
        b
    };
    b.bind().unwrap().spawn()
}

fn expect_snapshot_request(gate: &mut FakeGate) {
    let c = gate.next_call();
    assert_eq!(c.call_id, 0, "asked without waiting for a result");
    assert_eq!(c.op, Some(call::Op::Snapshot(proto::SnapshotRequest {})));
}

#[test]
fn event_gap_counted_and_snapshot_asked_for() {
    both_modes(|workers| {
        let seen = Log::default();
        let node = counting_node(workers, true, &seen);
        let g = node.gates();
        let mut gate = FakeGate::connect(node.local_addr(), "g1", 0, 1);
        // Every event is about session 1, so that with workers they run in
        // order on one worker (the numbers are checked before, on the reader).
        let conn = |seq| connect(1, seq);
        let disc = |seq| disconnect(1, seq);
        // Consecutive numbers, per kind: no gap.
        gate.send(&[conn(1), conn(2), disc(1)]);
        wait_until("3 events", || seen.lock().unwrap().len() == 3);
        gate.quiet("no gap, no snapshot asked");
        assert_eq!(g.event_gaps(), 0);
        // Connects 3 and 4 lost: counted, a snapshot asked for on this link,
        // and the event still handled.
        gate.send(&[conn(5)]);
        expect_snapshot_request(&mut gate);
        assert_eq!(g.event_gaps(), 1);
        // Another gap before the snapshot came: counted, not asked again.
        gate.send(&[disc(3)]);
        wait_until("5 events", || seen.lock().unwrap().len() == 5);
        assert_eq!(g.event_gaps(), 2);
        gate.quiet("one snapshot asked at a time");
        // The snapshot resets the numbers: the next connect is 21.
        gate.send(&[
            page(Vec::new(), true, &[0, 20, 0, 0, 30], 0),
            conn(21),
            disc(31),
        ]);
        wait_until("7 events", || seen.lock().unwrap().len() == 7);
        gate.quiet("no gap after the snapshot");
        assert_eq!(g.event_gaps(), 2);
        // A gap after it: asked for again.
        gate.send(&[conn(23)]);
        expect_snapshot_request(&mut gate);
        assert_eq!(g.event_gaps(), 3);
        // The reader asks before the handler runs (on a worker, maybe later).
        wait_until("8 events", || seen.lock().unwrap().len() == 8);
        let seqs: Vec<String> = seen.lock().unwrap().clone();
        assert_eq!(
            seqs,
            [
                "connect 1",
                "connect 2",
                "disconnect 1",
                "connect 5",
                "disconnect 3",
                "connect 21",
                "disconnect 31",
                "connect 23"
            ],
            "handlers see every event and its number"
        );
    });
}

#[test]
fn event_gap_without_snapshot_handler_is_only_counted() {
    let seen = Log::default();
    let node = counting_node(0, false, &seen);
    let mut gate = FakeGate::connect(node.local_addr(), "g1", 0, 1);
    gate.send(&[connect(1, 1), connect(3, 3)]);
    wait_until("2 events", || seen.lock().unwrap().len() == 2);
    assert_eq!(node.gates().event_gaps(), 1);
    gate.quiet("no snapshot handler: nothing asked");
    // A gate that does not number its events (seq 0): nothing checked.
    gate.send(&[connect(4, 0), connect(5, 0)]);
    wait_until("4 events", || seen.lock().unwrap().len() == 4);
    assert_eq!(node.gates().event_gaps(), 1);
}

#[test]
fn events_lost_while_the_link_was_down_or_by_a_gate_restart_are_gaps() {
    let seen = Log::default();
    let node = counting_node(0, false, &seen);
    let hello = |epoch_ms| GateHello {
        gate_id: "g1".into(),
        shard: 0,
        shards: 1,
        version: PROTOCOL_VERSION,
        epoch_ms,
        ..Default::default()
    };
    let g = node.gates();
    // The node meets the gate after its start: the first number is not a gap.
    let mut gate = FakeGate::connect_with(node.local_addr(), hello(100));
    gate.send(&[connect(1, 10), connect(2, 11)]);
    wait_until("2 events", || seen.lock().unwrap().len() == 2);
    drop(gate);
    wait_until("link down", || g.links() == 0);
    // The same gate run (same epoch) comes back: not a gap by itself...
    let mut gate = FakeGate::connect_with(node.local_addr(), hello(100));
    wait_until("link up", || g.links() == 1);
    assert_eq!(g.event_gaps(), 0);
    // ...but the numbers go on from the last link's: 12 and 13 were lost.
    gate.send(&[connect(3, 14)]);
    wait_until("3 events", || seen.lock().unwrap().len() == 3);
    assert_eq!(g.event_gaps(), 1);
    drop(gate);
    wait_until("link down", || g.links() == 0);
    // The gate restarted (another epoch): a gap, and numbering starts again.
    let mut gate = FakeGate::connect_with(node.local_addr(), hello(200));
    wait_until("restart counted", || g.event_gaps() == 2);
    gate.send(&[connect(4, 1), connect(5, 2)]);
    wait_until("5 events", || seen.lock().unwrap().len() == 5);
    assert_eq!(g.event_gaps(), 2);
}
