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
