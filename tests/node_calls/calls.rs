//! Calls: how each is encoded and on which link it goes, results, codes, timeouts.

use super::*;

/// Runs blocking `f` on a thread, expects its call on link `want` (or any
/// link when `None`), checks it with `check`, answers `answer`, returns
/// what `f` returned.
fn roundtrip<T: Send + 'static>(
    links: &mut [FakeGate],
    want: Option<usize>,
    f: impl FnOnce() -> T + Send + 'static,
    check: impl FnOnce(&call::Op),
    answer: CallResult,
) -> T {
    let t = spawn(f);
    let (i, c) = call_on_any(links);
    if let Some(w) = want {
        assert_eq!(i, w, "call {:?} went on the wrong link", c.op);
    }
    assert_ne!(c.call_id, 0, "a blocking call carries a call id");
    check(c.op.as_ref().expect("call has an op"));
    links[i].answer(c.call_id, answer);
    t.join().unwrap()
}

fn home(uid: i64) -> usize {
    UserId(uid).home_shard(SHARDS as u16).0 as usize
}

/// A uid whose home shard is `shard` (of 4).
fn uid_on(shard: usize) -> i64 {
    (1..).find(|u| home(*u) == shard).unwrap()
}

#[test]
fn every_call_encoded_on_the_expected_link() {
    let node = plain_node();
    let mut links = FakeGate::all(&node, "g1", SHARDS);
    let g = node.gates();
    let s2 = SessionId::new(ShardId(2), 5);
    let s3 = SessionId::new(ShardId(3), 6);
    // A uid whose home differs from the session's shard, to tell them apart.
    let u = uid_on(1);

    let c = g.clone();
    roundtrip(
        &mut links,
        Some(2),
        move || c.push(s2, 10, 11, "hi").unwrap(),
        |op| match op {
            call::Op::Push(p) => {
                assert_eq!(p.target, session_target(s2));
                assert_eq!(
                    (p.route, p.seq, &p.payload[..], p.ext),
                    (10, 11, &b"hi"[..], 0)
                );
            }
            op => panic!("{op:?}"),
        },
        CallResult::default(),
    );
    let c = g.clone();
    roundtrip(
        &mut links,
        Some(1),
        move || c.push_uid(UserId(u), 12, 13, "yo").unwrap(),
        |op| match op {
            call::Op::Push(p) => {
                assert_eq!(p.target, uid_target(u));
                assert_eq!((p.route, p.seq, &p.payload[..]), (12, 13, &b"yo"[..]));
            }
            op => panic!("{op:?}"),
        },
        CallResult::default(),
    );
    // bind(session on shard 3, user of home 1) goes to the user's home.
    let c = g.clone();
    roundtrip(
        &mut links,
        Some(1),
        move || c.bind(s3, UserId(u)).unwrap(),
        |op| {
            assert_eq!(
                op,
                &call::Op::Bind(proto::Bind {
                    session_id: s3.0,
                    uid: u
                })
            )
        },
        CallResult::default(),
    );
    let c = g.clone();
    roundtrip(
        &mut links,
        Some(3),
        move || c.kick(s3, true).unwrap(),
        |op| {
            assert_eq!(
                op,
                &call::Op::Kick(proto::Kick {
                    target: session_target(s3),
                    flush: true
                })
            )
        },
        CallResult::default(),
    );
    let c = g.clone();
    roundtrip(
        &mut links,
        Some(1),
        move || c.unbind(UserId(u)).unwrap(),
        |op| assert_eq!(op, &call::Op::Unbind(uid_target(u).unwrap())),
        CallResult::default(),
    );
    let c = g.clone();
    roundtrip(
        &mut links,
        Some(2),
        move || {
            c.set_settings(s2, &[("room", "lobby"), ("team", "red")], &["old"])
                .unwrap()
        },
        |op| match op {
            call::Op::Settings(s) => {
                assert_eq!(s.target, session_target(s2));
                let want: HashMap<String, String> = [("room", "lobby"), ("team", "red")]
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                assert_eq!(s.set, want);
                assert_eq!(s.remove, ["old"]);
            }
            op => panic!("{op:?}"),
        },
        CallResult::default(),
    );
    let c = g.clone();
    let addr = roundtrip(
        &mut links,
        Some(2),
        move || c.get_ip(s2).unwrap(),
        |op| assert_eq!(op, &call::Op::GetIp(session_target(s2).unwrap())),
        CallResult {
            ip: "2001:db8::1".into(),
            port: 4567,
            ..Default::default()
        },
    );
    assert_eq!(addr, ("2001:db8::1".parse::<IpAddr>().unwrap(), 4567));
    let c = g.clone();
    let online = roundtrip(
        &mut links,
        Some(1),
        move || c.is_online(UserId(u)).unwrap(),
        |op| assert_eq!(op, &call::Op::IsOnline(uid_target(u).unwrap())),
        CallResult {
            online: true,
            session_id: s2.0,
            ..Default::default()
        },
    );
    assert!(online);
    let c = g.clone();
    let stat = roundtrip(
        &mut links,
        None,
        move || c.stat().unwrap(),
        |op| assert_eq!(op, &call::Op::Stat(proto::StatRequest {})),
        CallResult {
            stat: Some(proto::Stat {
                connections: 5,
                bound: 2,
                shards: vec![proto::ShardStat {
                    shard: 3,
                    connections: 5,
                    bound: 2,
                }],
            }),
            ..Default::default()
        },
    );
    assert_eq!((stat.connections, stat.bound), (5, 2));
    assert_eq!(stat.shards[0].shard, ShardId(3));
    // One target: its link. Several: any.
    let c = g.clone();
    roundtrip(
        &mut links,
        Some(3),
        move || c.subscribe("room:a", [s3]).unwrap(),
        |op| {
            assert_eq!(
                op,
                &call::Op::Subscribe(proto::ChannelMembers {
                    channel: "room:a".into(),
                    targets: vec![session_target(s3).unwrap()],
                })
            )
        },
        CallResult::default(),
    );
    let c = g.clone();
    roundtrip(
        &mut links,
        None,
        move || {
            c.unsubscribe("room:a", [Target::from(s3), Target::from(UserId(u))])
                .unwrap()
        },
        |op| {
            assert_eq!(
                op,
                &call::Op::Unsubscribe(proto::ChannelMembers {
                    channel: "room:a".into(),
                    targets: vec![session_target(s3).unwrap(), uid_target(u).unwrap()],
                })
            )
        },
        CallResult::default(),
    );
    let c = g.clone();
    let n = roundtrip(
        &mut links,
        None,
        move || {
            c.multicast([Target::Session(s2), Target::User(UserId(u))], 7, 8, "m")
                .unwrap()
        },
        |op| match op {
            call::Op::Multicast(m) => {
                assert_eq!(
                    m.targets,
                    vec![session_target(s2).unwrap(), uid_target(u).unwrap()]
                );
                assert_eq!((m.route, m.seq, &m.payload[..]), (7, 8, &b"m"[..]));
            }
            op => panic!("{op:?}"),
        },
        CallResult {
            delivered: 2,
            ..Default::default()
        },
    );
    assert_eq!(n, 2);
    let c = g.clone();
    let n = roundtrip(
        &mut links,
        None,
        move || c.broadcast(20, 21, "all", true).unwrap(),
        |op| {
            assert_eq!(
                op,
                &call::Op::Broadcast(proto::Broadcast {
                    route: 20,
                    seq: 21,
                    payload: Bytes::from_static(b"all"),
                    bound_only: true,
                    ..Default::default()
                })
            )
        },
        CallResult {
            delivered: 9,
            ..Default::default()
        },
    );
    assert_eq!(n, 9);
    let c = g.clone();
    let n = roundtrip(
        &mut links,
        None,
        move || c.publish("room:a", 100, 0, "hey").unwrap(),
        |op| {
            assert_eq!(
                op,
                &call::Op::Publish(proto::Publish {
                    channel: "room:a".into(),
                    route: 100,
                    seq: 0,
                    payload: Bytes::from_static(b"hey"),
                    ..Default::default()
                })
            )
        },
        CallResult {
            delivered: 3,
            ..Default::default()
        },
    );
    assert_eq!(n, 3);
    for l in &mut links {
        l.quiet("after all calls");
    }
}

#[test]
fn any_link_calls_spread_and_fall_back() {
    let node = plain_node();
    let mut links = FakeGate::all(&node, "g1", SHARDS);
    let g = node.gates();
    let mut used = [0; SHARDS as usize];
    for _ in 0..8 {
        g.broadcast_nowait(1, 0, "x", false).unwrap();
        let (i, c) = call_on_any(&mut links);
        assert_eq!(c.call_id, 0);
        used[i] += 1;
    }
    assert!(
        used.iter().all(|n| *n == 2),
        "round robin over live links: {used:?}"
    );
    // Shard 2's link goes down: a call about its session falls back to
    // another live link, as a Call (the SDK sends plain Pushes only on the
    // session's own link).
    let dead = links.remove(2);
    drop(dead);
    wait_until("link 2 removed", || g.links() == 3);
    let s2 = SessionId::new(ShardId(2), 1);
    g.push_nowait(s2, 1, 0, "x").unwrap();
    let (_, c) = call_on_any(&mut links);
    assert_eq!(c.call_id, 0);
    assert!(matches!(c.op, Some(call::Op::Push(p)) if p.target == session_target(s2)));
    g.kick_nowait(s2, false).unwrap();
    let (_, c) = call_on_any(&mut links);
    assert!(matches!(c.op, Some(call::Op::Kick(_))));
}

#[test]
fn nowait_sends_call_id_zero() {
    let node = plain_node();
    let mut links = FakeGate::all(&node, "g1", SHARDS);
    let g = node.gates();
    let s1 = SessionId::new(ShardId(1), 3);
    let u = uid_on(3);
    // To a session with its link up: a plain Push on that link.
    g.push_nowait(s1, 4, 5, "p").unwrap();
    let p = links[1].next_push();
    assert_eq!(
        (p.session_id, p.route, p.seq, &p.payload[..]),
        (s1.0, 4, 5, &b"p"[..])
    );

    let expect = |links: &mut [FakeGate], want: Option<usize>| -> call::Op {
        let (i, c) = call_on_any(links);
        if let Some(w) = want {
            assert_eq!(i, w, "{:?}", c.op);
        }
        assert_eq!(c.call_id, 0, "{:?}", c.op);
        c.op.unwrap()
    };
    g.push_uid_nowait(UserId(u), 1, 2, "x").unwrap();
    assert!(matches!(expect(&mut links, Some(3)), call::Op::Push(p) if p.target == uid_target(u)));
    g.multicast_nowait([s1], 1, 2, "x").unwrap();
    assert!(matches!(
        expect(&mut links, Some(1)),
        call::Op::Multicast(_)
    ));
    g.broadcast_nowait(1, 2, "x", false).unwrap();
    assert!(matches!(expect(&mut links, None), call::Op::Broadcast(_)));
    g.kick_nowait(s1, true).unwrap();
    assert!(matches!(expect(&mut links, Some(1)), call::Op::Kick(k) if k.flush));
    g.bind_nowait(s1, UserId(u)).unwrap();
    assert!(matches!(expect(&mut links, Some(3)), call::Op::Bind(b) if b.uid == u));
    g.unbind_nowait(s1).unwrap();
    assert!(matches!(expect(&mut links, Some(1)), call::Op::Unbind(_)));
    g.set_settings_nowait(s1, &[("k", "v")], &[]).unwrap();
    assert!(matches!(expect(&mut links, Some(1)), call::Op::Settings(s) if s.set["k"] == "v"));
    g.subscribe_nowait("c", [UserId(u)]).unwrap();
    assert!(matches!(
        expect(&mut links, Some(3)),
        call::Op::Subscribe(_)
    ));
    g.unsubscribe_nowait("c", [s1]).unwrap();
    assert!(matches!(
        expect(&mut links, Some(1)),
        call::Op::Unsubscribe(_)
    ));
    g.publish_nowait("c", 1, 2, "x").unwrap();
    assert!(matches!(expect(&mut links, None), call::Op::Publish(p) if p.channel == "c"));
    // Nothing to do: nothing sent.
    g.multicast_nowait(Vec::<Target>::new(), 1, 2, "x").unwrap();
    g.subscribe_nowait("c", Vec::<SessionId>::new()).unwrap();
    for l in &mut links {
        l.quiet("after nowait calls");
    }
}

/// What a bind's result should look like.
type Expect = fn(&Result<(), NodeError>) -> bool;

#[test]
fn result_codes_map_to_errors() {
    let node = plain_node();
    let mut links = FakeGate::all(&node, "g1", 1);
    let g = node.gates();
    let s = SessionId::new(ShardId(0), 1);
    let cases: Vec<(CallResult, Expect)> = vec![
        (CallResult::default(), |r| r.is_ok()),
        (code(Code::NotFound, ""), |r| {
            matches!(r, Err(NodeError::NotFound))
        }),
        (code(Code::AlreadyBound, ""), |r| {
            matches!(r, Err(NodeError::AlreadyBound))
        }),
        (
            code(Code::Invalid, "uid 0"),
            |r| matches!(r, Err(NodeError::Invalid(m)) if m == "uid 0"),
        ),
        (code(Code::Busy, ""), |r| matches!(r, Err(NodeError::Busy))),
        (
            CallResult {
                code: 99,
                message: "new".into(),
                ..Default::default()
            },
            |r| matches!(r, Err(NodeError::Gate { code: 99, message }) if message == "new"),
        ),
    ];
    for (answer, expected) in cases {
        let c = g.clone();
        let r = roundtrip(
            &mut links,
            Some(0),
            move || c.bind(s, UserId(7)),
            |_| {},
            answer,
        );
        assert!(expected(&r), "{r:?}");
    }
    // is_online: NOT_FOUND is simply "no".
    let c = g.clone();
    let r = roundtrip(
        &mut links,
        Some(0),
        move || c.is_online(UserId(7)),
        |_| {},
        code(Code::NotFound, ""),
    );
    assert!(!r.unwrap());
    // A bad address from the gate is a protocol error, not a panic.
    let c = g.clone();
    let r = roundtrip(
        &mut links,
        Some(0),
        move || c.get_ip(s),
        |_| {},
        CallResult {
            ip: "nonsense".into(),
            ..Default::default()
        },
    );
    assert!(matches!(r, Err(NodeError::Link(_))), "{r:?}");
    // uid 0 is refused without asking the gate.
    assert!(matches!(g.bind(s, UserId(0)), Err(NodeError::Invalid(_))));
    assert!(matches!(
        g.push_uid(UserId(0), 1, 0, "x"),
        Err(NodeError::Invalid(_))
    ));
    links[0].quiet("uid 0 refused locally");
}

#[test]
fn unanswered_call_times_out_and_late_result_is_dropped() {
    let node = Node::builder("t")
        .listen("127.0.0.1:0".parse().unwrap())
        .call_timeout(Duration::from_millis(200))
        .route(1, |ctx: &mut Context| ctx.reply("pong"))
        .bind()
        .unwrap()
        .spawn();
    let mut gate = FakeGate::connect(node.local_addr(), "g1", 0, 1);
    wait_until("link", || node.gates().links() == 1);
    let g = node.gates();
    let t0 = Instant::now();
    let r = g.stat();
    let took = t0.elapsed();
    assert!(
        matches!(r, Err(NodeError::Timeout(d)) if d == Duration::from_millis(200)),
        "{r:?}"
    );
    // Not before the timeout; how long after depends on the load here.
    assert!(
        took >= Duration::from_millis(190) && took < WAIT,
        "{took:?}"
    );
    // A per-client timeout overrides the node's: the error names the 50 ms
    // it waited for (comparing the wait with the node's 200 ms instead would
    // flake on a loaded machine).
    let t0 = Instant::now();
    let r = g
        .with_timeout(Duration::from_millis(50))
        .is_online(SessionId(1));
    assert!(
        matches!(r, Err(NodeError::Timeout(d)) if d == Duration::from_millis(50)),
        "{r:?}"
    );
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(45) && took < WAIT, "{took:?}");
    // The results come late: dropped, the link keeps serving.
    let late = gate.next_call();
    gate.ok(late.call_id);
    let late = gate.next_call();
    gate.ok(late.call_id);
    gate.send(&[deliver(SessionId(2), 0, 1, 1, b"")]);
    assert_eq!(&gate.next_push().payload[..], b"pong");
}

#[test]
fn result_on_another_link_resolves() {
    let node = plain_node();
    let mut links = FakeGate::all(&node, "g1", 2);
    let g = node.gates();
    let s1 = SessionId::new(ShardId(1), 1);
    let c = g.clone();
    let t = spawn(move || c.kick(s1, false));
    let call = links[1].next_call();
    // The gate answers from shard 0.
    links[0].ok(call.call_id);
    t.join().unwrap().unwrap();
}

#[test]
fn last_link_down_fails_waiting_calls_at_once() {
    let node = plain_node();
    let mut links = FakeGate::all(&node, "g1", 2);
    let g = node.gates();
    let c = g.clone();
    let t0 = Instant::now();
    let t = spawn(move || c.stat());
    let (_, _call) = call_on_any(&mut links);
    drop(links);
    let r = t.join().unwrap();
    assert!(matches!(r, Err(NodeError::NotConnected { .. })), "{r:?}");
    // At once: NotConnected, not Timeout, and sooner than the default 3 s
    // call timeout it would otherwise have waited for.
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "did not wait for the timeout"
    );
    assert!(matches!(g.stat(), Err(NodeError::NotConnected { .. })));
}

#[test]
fn several_gates_need_a_named_gate() {
    let node = plain_node();
    let mut a = FakeGate::connect(node.local_addr(), "a", 0, 1);
    let mut b = FakeGate::connect(node.local_addr(), "b", 0, 1);
    wait_until("two gates", || node.gates().links() == 2);
    let g = node.gates();
    // A session id does not say which gate holds it; a user does only
    // through a locator (none here).
    assert!(matches!(
        g.kick(ringgate::SessionId(1), false),
        Err(NodeError::AmbiguousGate { gates: 2 })
    ));
    assert!(matches!(
        g.push_uid(ringgate::UserId(7), 1, 0, "x"),
        Err(NodeError::AmbiguousGate { gates: 2 })
    ));
    let gb = g.gate("b");
    assert_eq!(gb.gate_id(), Some("b"));
    let t = spawn(move || gb.broadcast(1, 0, "x", false));
    let c = b.next_call();
    b.answer(
        c.call_id,
        CallResult {
            delivered: 4,
            ..Default::default()
        },
    );
    assert_eq!(t.join().unwrap().unwrap(), 4);
    a.quiet("gate a not asked");
    assert!(matches!(
        g.gate("c").stat(),
        Err(NodeError::NotConnected { .. })
    ));
}
