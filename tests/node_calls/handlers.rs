//! Handlers: shortcuts, settings, blocking calls on the reader thread.

use super::*;

#[test]
fn context_settings_and_session_shortcuts() {
    both_modes(|workers| {
        let node = Node::builder("ctx")
            .listen("127.0.0.1:0".parse().unwrap())
            .workers(workers)
            .route(1, |ctx: &mut Context| {
                let room = ctx.settings().get("room").cloned().unwrap_or_default();
                ctx.reply(format!("room={room}"));
                // Batched after the reply, on the same link.
                ctx.kick_nowait(true).unwrap();
            })
            .route(2, |ctx: &mut Context| {
                ctx.reply("first");
                // Blocking: the reply above is written before the call.
                let r = ctx.set_settings(&[("room", "b")], &["x"]);
                ctx.reply(format!("{r:?}"));
            })
            .route(3, |ctx: &mut Context| {
                let r = ctx.bind(UserId(55));
                let uid = ctx.uid().0;
                ctx.reply(format!("{r:?} {uid}"));
            })
            .bind()
            .unwrap()
            .spawn();
        let mut gate = FakeGate::connect(node.local_addr(), "g1", 0, 1);
        let s = SessionId::new(ShardId(0), 8);
        let mut d = deliver(s, 0, 1, 1, b"");
        if let Some(to_node::Msg::Deliver(d)) = &mut d.msg {
            d.settings.insert("room".into(), "a".into());
        }
        gate.send(&[d]);
        let p = gate.next_push();
        assert_eq!((p.session_id, &p.payload[..]), (s.0, &b"room=a"[..]));
        let c = gate.next_call();
        assert_eq!(c.call_id, 0);
        assert_eq!(
            c.op,
            Some(call::Op::Kick(proto::Kick {
                target: session_target(s),
                flush: true
            }))
        );

        gate.send(&[deliver(s, 0, 2, 2, b"")]);
        assert_eq!(&gate.next_push().payload[..], b"first");
        let c = gate.next_call();
        match c.op {
            Some(call::Op::Settings(st)) => {
                assert_eq!(st.target, session_target(s));
                assert_eq!(st.set["room"], "b");
                assert_eq!(st.remove, ["x"]);
            }
            op => panic!("{op:?}"),
        }
        gate.ok(c.call_id);
        assert_eq!(&gate.next_push().payload[..], b"Ok(())");

        gate.send(&[deliver(s, 0, 3, 3, b"")]);
        let c = gate.next_call();
        assert_eq!(
            c.op,
            Some(call::Op::Bind(proto::Bind {
                session_id: s.0,
                uid: 55
            }))
        );
        gate.ok(c.call_id);
        assert_eq!(&gate.next_push().payload[..], b"Ok(()) 55");
    });
}

/// A handler inline on the reader thread makes a blocking call: the reader
/// keeps answering pings and queues requests meanwhile; the result may come
/// on the same link or another one.
#[test]
fn blocking_call_from_an_inline_handler_does_not_deadlock() {
    let node = Node::builder("inline")
        .listen("127.0.0.1:0".parse().unwrap())
        .workers(0)
        .route(1, |ctx: &mut Context| {
            let r = ctx.bind(UserId(ctx.seq() as i64));
            ctx.reply(format!("bind {r:?}"));
        })
        .route(2, |ctx: &mut Context| {
            let p = ctx.payload().clone();
            ctx.reply(p);
        })
        .bind()
        .unwrap()
        .spawn();
    let mut links = FakeGate::all(&node, "g1", 2);
    let s = SessionId::new(ShardId(0), 1);
    // uid = seq; pick one whose home is shard 0, so the call is on link 0.
    let uid = (1..)
        .find(|u| UserId(*u).home_shard(2) == ShardId(0))
        .unwrap();

    links[0].send(&[deliver(s, 0, 1, uid as i32, b"")]);
    let c = links[0].next_call();
    assert_ne!(c.call_id, 0);
    // While the handler waits: a request (queued) and a ping (answered now).
    links[0].send(&[
        deliver(s, 0, 2, 9, b"after"),
        ToNode {
            msg: Some(to_node::Msg::Ping(Ping { nonce: 77 })),
        },
    ]);
    match links[0].next().msg {
        Some(to_gate::Msg::Pong(p)) => assert_eq!(p.nonce, 77),
        other => panic!("expected Pong while the handler waits, got {other:?}"),
    }
    links[0].quiet("the queued request waits for the handler");
    links[0].ok(c.call_id);
    assert_eq!(&links[0].next_push().payload[..], b"bind Ok(())");
    assert_eq!(&links[0].next_push().payload[..], b"after");

    // The result arrives on the other link: the waiting reader is woken.
    links[0].send(&[deliver(s, 0, 1, uid as i32, b"")]);
    let c = links[0].next_call();
    let t0 = Instant::now();
    links[1].answer(c.call_id, code(Code::AlreadyBound, ""));
    assert_eq!(&links[0].next_push().payload[..], b"bind Err(AlreadyBound)");
    // The handler got the gate's answer (AlreadyBound), not a timeout, and
    // sooner than the default 3 s call timeout.
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "woken, not timed out"
    );
}

/// Workers blocked on calls while the reader waits for room in their queue:
/// the reader keeps reading, so the results still reach them.
#[test]
fn workers_blocked_on_calls_with_full_queues_get_their_results() {
    let node = Node::builder("pool")
        .listen("127.0.0.1:0".parse().unwrap())
        .workers(1)
        .worker_queue(1)
        .route(1, |ctx: &mut Context| {
            let r = ctx.gate().stat().map(|s| s.connections);
            ctx.reply(format!("{r:?}"));
        })
        .bind()
        .unwrap()
        .spawn();
    let mut gate = FakeGate::connect(node.local_addr(), "g1", 0, 1);
    const N: usize = 20;
    let s = SessionId::new(ShardId(0), 1);
    let msgs: Vec<ToNode> = (0..N).map(|i| deliver(s, 0, 1, i as i32, b"")).collect();
    gate.send(&msgs);
    for i in 0..N {
        let c = match gate.next().msg {
            Some(to_gate::Msg::Call(c)) => c,
            other => panic!("expected the call before any reply, got {other:?}"),
        };
        gate.answer(
            c.call_id,
            CallResult {
                stat: Some(proto::Stat {
                    connections: i as u64,
                    ..Default::default()
                }),
                ..Default::default()
            },
        );
        let p = gate.next_push();
        assert_eq!(
            (p.seq, p.payload),
            (i as i32, Bytes::from(format!("Ok({i})")))
        );
    }
}

#[test]
fn handler_client_keeps_any_link_calls_on_the_request_link() {
    let node = Node::builder("home")
        .listen("127.0.0.1:0".parse().unwrap())
        .workers(2)
        .route(1, |ctx: &mut Context| {
            ctx.reply("before");
            let g: GateClient = ctx.gate();
            g.publish_nowait("c", 100, 0, "p").unwrap();
            ctx.reply("after");
        })
        .bind()
        .unwrap()
        .spawn();
    let mut links = FakeGate::all(&node, "g1", SHARDS);
    for (shard, link) in links.iter_mut().enumerate() {
        let s = SessionId::new(ShardId(shard as u16), 1);
        for _ in 0..3 {
            link.send(&[deliver(s, 0, 1, 1, b"")]);
            assert_eq!(&link.next_push().payload[..], b"before");
            assert!(matches!(link.next_call().op, Some(call::Op::Publish(_))));
            assert_eq!(&link.next_push().payload[..], b"after");
        }
    }
}
