//! Events: which kinds a node announces, their order with requests, close reasons.

use super::*;

#[test]
fn hello_announces_event_kinds() {
    let node = Node::builder("ev")
        .listen("127.0.0.1:0".parse().unwrap())
        .on_event(
            &[EventKind::Disconnect, EventKind::Connect],
            |_: &mut EventContext| {},
        )
        .on_event(&[EventKind::Bind], |_: &mut EventContext| {})
        .bind()
        .unwrap()
        .spawn();
    let gate = FakeGate::connect(node.local_addr(), "g1", 0, 1);
    let want: Vec<i32> = [
        proto::EventKind::EventConnect,
        proto::EventKind::EventBind,
        proto::EventKind::EventDisconnect,
    ]
    .iter()
    .map(|k| *k as i32)
    .collect();
    assert_eq!(gate.hello.events, want);

    let dup = Node::builder("ev")
        .listen("127.0.0.1:0".parse().unwrap())
        .on_event(&[EventKind::Bind], |_: &mut EventContext| {})
        .on_event(&[EventKind::Bind], |_: &mut EventContext| {})
        .bind();
    assert!(matches!(
        dup,
        Err(NodeError::DuplicateEvent(EventKind::Bind))
    ));
}

#[test]
fn events_run_in_order_with_the_sessions_requests() {
    both_modes(|workers| {
        let log: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
        let (l1, l2) = (log.clone(), log.clone());
        let node = Node::builder("ev")
            .listen("127.0.0.1:0".parse().unwrap())
            .workers(workers)
            .route(1, move |ctx: &mut Context| {
                let p = String::from_utf8_lossy(ctx.payload()).to_string();
                l1.lock()
                    .unwrap()
                    .push((ctx.session().0, format!("req {p}")));
            })
            .on_event(
                &[EventKind::Connect, EventKind::Bind, EventKind::Disconnect],
                move |ev: &mut EventContext| {
                    let what = match ev.kind() {
                        EventKind::Connect => {
                            format!("connect {:?} {}", ev.peer_addr(), ev.network())
                        }
                        EventKind::Bind => format!("bind {}", ev.uid().0),
                        EventKind::Disconnect => {
                            format!("disconnect {} {}", ev.uid().0, ev.reason())
                        }
                        EventKind::Unbind | EventKind::Drain => unreachable!("not subscribed"),
                    };
                    if ev.kind() == EventKind::Connect {
                        ev.reply_with(9, 0, "welcome");
                    }
                    l2.lock().unwrap().push((ev.session().0, what));
                },
            )
            .bind()
            .unwrap()
            .spawn();
        let mut gate = FakeGate::connect(node.local_addr(), "g1", 0, 1);
        let mut msgs = Vec::new();
        for i in 0..20u64 {
            let s = SessionId::new(ShardId(0), i);
            msgs.push(ev(Event {
                ip: "10.0.0.7".into(),
                port: 5000 + i as u32,
                network: "tcp".into(),
                ..event(proto::EventKind::EventConnect, s, 0)
            }));
            msgs.push(deliver(s, 0, 1, 1, b"a"));
            msgs.push(ev(event(proto::EventKind::EventBind, s, 100 + i as i64)));
            // Not subscribed: ignored.
            msgs.push(ev(event(proto::EventKind::EventUnbind, s, 100 + i as i64)));
            msgs.push(deliver(s, 100 + i as i64, 1, 2, b"b"));
            msgs.push(ev(Event {
                reason: proto::CloseReason::CloseKicked as i32,
                ..event(proto::EventKind::EventDisconnect, s, 100 + i as i64)
            }));
        }
        gate.send(&msgs);
        wait_until("all handled", || log.lock().unwrap().len() == 20 * 5);
        let log = log.lock().unwrap();
        for i in 0..20u64 {
            let s = SessionId::new(ShardId(0), i).0;
            let seen: Vec<&str> = log
                .iter()
                .filter(|(id, _)| *id == s)
                .map(|(_, w)| w.as_str())
                .collect();
            let connect = format!("connect Some(10.0.0.7:{}) tcp", 5000 + i);
            let bind = format!("bind {}", 100 + i);
            let disconnect = format!("disconnect {} kicked", 100 + i);
            assert_eq!(
                seen,
                [
                    connect.as_str(),
                    "req a",
                    bind.as_str(),
                    "req b",
                    disconnect.as_str()
                ],
                "workers({workers}) session {i}"
            );
        }
        // The connect handler's packets went to each session.
        let mut welcomed = Vec::new();
        for _ in 0..20 {
            let p = gate.next_push();
            assert_eq!((p.route, &p.payload[..]), (9, &b"welcome"[..]));
            assert_eq!(p.request_id, 0, "an event has no request to answer");
            welcomed.push(p.session_id);
        }
        welcomed.sort_unstable();
        let want: Vec<u64> = (0..20).map(|i| SessionId::new(ShardId(0), i).0).collect();
        assert_eq!(welcomed, want);
    });
}

#[test]
fn close_reasons_map() {
    let seen: Arc<Mutex<Vec<CloseReason>>> = Arc::default();
    let s2 = seen.clone();
    let node = Node::builder("ev")
        .listen("127.0.0.1:0".parse().unwrap())
        .on_event(&[EventKind::Disconnect], move |ev: &mut EventContext| {
            s2.lock().unwrap().push(ev.reason());
        })
        .bind()
        .unwrap()
        .spawn();
    let mut gate = FakeGate::connect(node.local_addr(), "g1", 0, 1);
    let msgs: Vec<ToNode> = (0..=10)
        .map(|r| {
            ev(Event {
                reason: r,
                ..event(proto::EventKind::EventDisconnect, SessionId(1), 0)
            })
        })
        .collect();
    gate.send(&msgs);
    wait_until("all events", || seen.lock().unwrap().len() == 11);
    use CloseReason::*;
    assert_eq!(
        *seen.lock().unwrap(),
        [
            Unspecified,
            ClientClosed,
            HeartbeatTimeout,
            AuthorizeTimeout,
            Kicked,
            Rebind,
            Overflow,
            Shutdown,
            ProtocolError,
            RateLimited,
            Unspecified
        ]
    );
}
