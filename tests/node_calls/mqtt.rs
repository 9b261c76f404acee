//! MQTT clients (mqant's gate): route names in the hello, handlers known
//! by name only, replies that tell the gate how to wrap them, pushes on a
//! topic, and the CONNECT fields of a `Connect` event.

use ringgate::link::proto::ResultFormat;
use ringgate::node::NAMED_ROUTE_BASE;

use super::*;

/// An MQTT request: `request_id` set, `topic` the PUBLISH topic.
fn request(s: SessionId, route: i32, request_id: u64, topic: &str, payload: &[u8]) -> ToNode {
    ToNode {
        msg: Some(to_node::Msg::Deliver(Deliver {
            session_id: s.0,
            route,
            seq: 5,
            payload: Bytes::copy_from_slice(payload),
            request_id,
            topic: topic.into(),
            ..Default::default()
        })),
    }
}

fn names(hello: &NodeHello) -> Vec<(String, i32)> {
    let mut n: Vec<_> = (hello.route_names.iter())
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    n.sort_by_key(|&(_, r)| r);
    n
}

#[test]
fn hello_announces_names_and_named_handlers_get_unused_routes() {
    let node = Node::builder("Echo")
        .listen("127.0.0.1:0".parse().unwrap())
        .notify(2, |_: &mut Context| {})
        .name(2, "HD_Note")
        // Takes the first number of the range: the handlers skip it.
        .route(NAMED_ROUTE_BASE, |ctx: &mut Context| ctx.reply("explicit"))
        .handler("HD_X", |ctx: &mut Context| {
            let text = format!("{} {}", ctx.route(), ctx.topic());
            ctx.reply_string(text);
        })
        .handler("HD_Y", |ctx: &mut Context| ctx.reply("y"))
        .bind()
        .unwrap()
        .spawn();
    let mut gate = FakeGate::connect(node.local_addr(), "g1", 0, 1);
    let (x, y) = (NAMED_ROUTE_BASE + 1, NAMED_ROUTE_BASE + 2);
    assert_eq!(
        names(&gate.hello),
        [
            ("HD_Note".into(), 2),
            ("HD_X".into(), x),
            ("HD_Y".into(), y)
        ]
    );
    assert_eq!(gate.hello.routes, [2], "a named notification stays one");
    let answered: Vec<i32> = gate.hello.reply_routes.iter().map(|r| r.route).collect();
    assert_eq!(answered, [NAMED_ROUTE_BASE, x, y]);

    let s = SessionId::new(ShardId(0), 1);
    gate.send(&[request(s, x, 7, "Echo/HD_X/1", b"")]);
    let p = gate.next_push();
    assert_eq!(p.request_id, 7);
    assert_eq!(p.payload, format!("{x} Echo/HD_X/1").as_bytes());
    // A due client's request has no topic.
    gate.send(&[request(s, x, 8, "", b"")]);
    assert_eq!(gate.next_push().payload, format!("{x} ").as_bytes());
}

#[test]
fn bad_names_fail_at_bind() {
    let base = || {
        Node::builder("Echo")
            .listen("127.0.0.1:0".parse().unwrap())
            .route(1, |_: &mut Context| {})
            .notify(2, |_: &mut Context| {})
    };
    let e = base().name(9, "HD_A").bind().err().expect("unknown route");
    assert!(matches!(e, NodeError::UnknownNamedRoute(9)), "{e}");
    let e = (base().name(1, "HD_A").name(2, "HD_A").bind().err()).expect("duplicate name");
    assert!(
        matches!(&e, NodeError::DuplicateName(n) if n == "HD_A"),
        "{e}"
    );
    let e = (base().name(1, "HD_A").handler("HD_A", |_: &mut Context| {}))
        .bind()
        .err()
        .expect("a handler's name taken");
    assert!(
        matches!(&e, NodeError::DuplicateName(n) if n == "HD_A"),
        "{e}"
    );
    let e = (base().name(1, "HD_A").name(1, "HD_B").bind().err()).expect("two names");
    assert!(matches!(e, NodeError::RouteNamedTwice(1)), "{e}");
    for bad in ["", "HD/A", "HD_+", "#"] {
        let e = base().name(1, bad).bind().err().expect("bad name");
        assert!(matches!(&e, NodeError::BadName(n) if n == bad), "{e}");
    }
    assert!(base().name(1, "HD_A").name(2, "HD_B").bind().is_ok());
}

#[test]
fn replies_tell_the_gate_how_to_wrap_them() {
    both_modes(|workers| {
        let node = Node::builder("Echo")
            .listen("127.0.0.1:0".parse().unwrap())
            .workers(workers)
            .route(1, |ctx: &mut Context| ctx.reply_json(r#"{"a":1}"#))
            .route(2, |ctx: &mut Context| ctx.reply_bytes(&b"\x00\x01"[..]))
            .route(3, |ctx: &mut Context| ctx.reply_raw("raw"))
            .route(4, |ctx: &mut Context| ctx.reply_string("text"))
            .route(5, |ctx: &mut Context| {
                ctx.reply_error("boom");
                // Only the first reply answers the request.
                ctx.reply_string("late");
            })
            .route(6, |ctx: &mut Context| ctx.reply("plain"))
            .bind()
            .unwrap()
            .spawn();
        let mut gate = FakeGate::connect(node.local_addr(), "g1", 0, 1);
        let s = SessionId::new(ShardId(0), 2);
        let want: [(i32, ResultFormat, &[u8]); 6] = [
            (1, ResultFormat::ResultJson, br#"{"a":1}"#),
            (2, ResultFormat::ResultBytes, b"\x00\x01"),
            (3, ResultFormat::ResultRaw, b"raw"),
            (4, ResultFormat::ResultString, b"text"),
            (5, ResultFormat::ResultAuto, b""),
            (6, ResultFormat::ResultAuto, b"plain"),
        ];
        for (route, format, payload) in want {
            let id = 100 + route as u64;
            gate.send(&[request(s, route, id, "Echo/HD/1", b"")]);
            let p = gate.next_push();
            assert_eq!(
                (p.route, p.seq, p.request_id, p.format(), &p.payload[..]),
                (route, 5, id, format, payload),
                "route {route}"
            );
            let error = if route == 5 { "boom" } else { "" };
            assert_eq!(p.error, error, "route {route}");
            if route == 5 {
                let late = gate.next_push();
                assert_eq!(
                    (late.request_id, late.error.as_str(), late.format()),
                    (0, "", ResultFormat::ResultString)
                );
                assert_eq!(late.payload, "late");
            }
        }
    });
}

#[test]
fn pushes_on_a_topic() {
    let node = Node::builder("Echo")
        .listen("127.0.0.1:0".parse().unwrap())
        .workers(2)
        .route(1, |ctx: &mut Context| {
            let p = ctx.take_payload();
            ctx.push_topic_nowait("Echo/OnPush", p);
            ctx.reply_string("pushed");
        })
        .route(2, |ctx: &mut Context| {
            let r = ctx.push_topic("Echo/Waited", "w");
            ctx.reply(format!("{r:?}"));
        })
        .bind()
        .unwrap()
        .spawn();
    let mut gate = FakeGate::connect(node.local_addr(), "g1", 0, 1);
    wait_until("link registered", || node.gates().links() == 1);
    let s = SessionId::new(ShardId(0), 3);

    gate.send(&[request(s, 1, 9, "Echo/HD_Push/1", b"hi")]);
    let p = gate.next_push();
    assert_eq!(
        (p.session_id, p.topic.as_str(), p.request_id, &p.payload[..]),
        (s.0, "Echo/OnPush", 0, &b"hi"[..])
    );
    let p = gate.next_push();
    assert_eq!((p.request_id, &p.payload[..]), (9, &b"pushed"[..]));
    assert!(p.topic.is_empty(), "a reply goes on the request's topic");

    gate.send(&[request(s, 2, 10, "Echo/HD_W/1", b"")]);
    let c = gate.next_call();
    match &c.op {
        Some(call::Op::Push(p)) => {
            assert_eq!(p.target, session_target(s));
            assert_eq!(
                (p.topic.as_str(), &p.payload[..]),
                ("Echo/Waited", &b"w"[..])
            );
        }
        op => panic!("{op:?}"),
    }
    gate.ok(c.call_id);
    assert_eq!(gate.next_push().payload, "Ok(())");

    // The gate client's topic variants.
    let gates = node.gates();
    gates.push_topic_nowait(s, "T/push", "a").unwrap();
    let p = gate.next_push();
    assert_eq!((p.session_id, p.topic.as_str()), (s.0, "T/push"));
    gates.push_topic_nowait(UserId(4), "T/uid", "a").unwrap();
    match gate.next_call().op {
        Some(call::Op::Push(p)) => {
            assert_eq!((p.target, p.topic.as_str()), (uid_target(4), "T/uid"))
        }
        op => panic!("{op:?}"),
    }
    gates.multicast_topic_nowait([s], "T/multi", "b").unwrap();
    match gate.next_call().op {
        Some(call::Op::Multicast(m)) => assert_eq!(m.topic, "T/multi"),
        op => panic!("{op:?}"),
    }
    gates.publish_topic_nowait("room", "T/pub", "c").unwrap();
    match gate.next_call().op {
        Some(call::Op::Publish(p)) => {
            assert_eq!((p.channel.as_str(), p.topic.as_str()), ("room", "T/pub"))
        }
        op => panic!("{op:?}"),
    }
    let g = gates.clone();
    let waiting = spawn(move || g.broadcast_topic("T/all", "d", true));
    let c = gate.next_call();
    match &c.op {
        Some(call::Op::Broadcast(b)) => {
            assert_eq!((b.topic.as_str(), b.bound_only), ("T/all", true))
        }
        op => panic!("{op:?}"),
    }
    gate.answer(
        c.call_id,
        CallResult {
            delivered: 3,
            ..Default::default()
        },
    );
    assert_eq!(waiting.join().unwrap().unwrap(), 3);
}

#[test]
fn connect_event_carries_the_mqtt_connect_fields() {
    let node = Node::builder("Echo")
        .listen("127.0.0.1:0".parse().unwrap())
        .on_event(&[EventKind::Connect], |ev: &mut EventContext| {
            let seen = format!(
                "{} {} {} {:?}",
                ev.network(),
                ev.client_id(),
                ev.username(),
                ev.password()
            );
            ev.reply_with(0, 0, seen);
        })
        .bind()
        .unwrap()
        .spawn();
    let mut gate = FakeGate::connect(node.local_addr(), "g1", 0, 1);
    let s = SessionId::new(ShardId(0), 4);
    gate.send(&[ev(Event {
        network: "mqtt".into(),
        client_id: "cid-1".into(),
        username: "ann".into(),
        password: Bytes::from_static(b"p\x00w"),
        ..event(proto::EventKind::EventConnect, s, 0)
    })]);
    let p = gate.next_push();
    assert_eq!(p.payload, "mqtt cid-1 ann [112, 0, 119]");
}

/// examples/echo_node.rs as mqant module `Echo`: each handler answers as
/// its docs say.
#[test]
fn the_echo_example_serves_module_echo() {
    let node = echo_node::mqtt_handlers(Node::builder("Echo"))
        .listen("127.0.0.1:0".parse().unwrap())
        .bind()
        .unwrap()
        .spawn();
    let mut gate = FakeGate::connect(node.local_addr(), "g1", 0, 1);
    let route = |gate: &FakeGate, name: &str| gate.hello.route_names[name];
    let s = SessionId::new(ShardId(0), 5);
    let mut ask = |name: &str, payload: &[u8]| {
        let r = route(&gate, name);
        gate.send(&[request(s, r, 1, &format!("Echo/{name}/1"), payload)]);
        gate.next_push()
    };
    let json = br#"{"hello":"world"}"#;
    let p = ask("HD_Echo", json);
    assert_eq!(
        (p.format(), &p.payload[..]),
        (ResultFormat::ResultJson, &json[..])
    );
    assert!(!ask("HD_Echo", b"[1]").error.is_empty(), "not an object");
    let p = ask("HD_Bytes", b"\x00b");
    assert_eq!(
        (p.format(), &p.payload[..]),
        (ResultFormat::ResultBytes, &b"\x00b"[..])
    );
    let p = ask("HD_Raw", b"raw");
    assert_eq!(
        (p.format(), &p.payload[..]),
        (ResultFormat::ResultRaw, &b"raw"[..])
    );
    let p = ask("HD_Err", b"");
    assert_eq!((p.request_id, p.error.as_str()), (1, "boom"));
    let p = ask("HD_Push", b"hi");
    assert_eq!(
        (p.topic.as_str(), p.request_id, &p.payload[..]),
        ("Echo/OnPush", 0, &b"hi"[..])
    );
    let p = gate.next_push();
    assert_eq!(
        (p.request_id, p.format(), &p.payload[..]),
        (1, ResultFormat::ResultString, &b"pushed"[..])
    );
    let slow = route(&gate, "HD_Slow");
    gate.send(&[request(s, slow, 2, "Echo/HD_Slow/2", b"")]);
    gate.quiet("HD_Slow never answers");
}

#[test]
fn push_only_routes_announce_their_mqtt_topic() {
    let node = Node::builder("Chat")
        .listen("127.0.0.1:0".parse().unwrap())
        .route(1, |_: &mut Context| {})
        .name(1, "HD_Login")
        .push_topic(100, "Chat/OnChat")
        .bind()
        .unwrap()
        .spawn();
    let gate = FakeGate::connect(node.local_addr(), "g1", 0, 1);
    assert_eq!(
        names(&gate.hello),
        [("HD_Login".into(), 1), ("Chat/OnChat".into(), 100)]
    );
    let base = || {
        Node::builder("Chat")
            .listen("127.0.0.1:0".parse().unwrap())
            .route(1, |_: &mut Context| {})
            .name(1, "HD_Login")
    };
    let e = base()
        .push_topic(100, "Chat/#")
        .bind()
        .err()
        .expect("wildcard");
    assert!(matches!(&e, NodeError::BadName(t) if t == "Chat/#"), "{e}");
    let e = base()
        .push_topic(1, "Chat/X")
        .bind()
        .err()
        .expect("named already");
    assert!(matches!(e, NodeError::RouteNamedTwice(1)), "{e}");
    let e = base()
        .push_topic(100, "HD_Login")
        .bind()
        .err()
        .expect("taken");
    assert!(
        matches!(&e, NodeError::DuplicateName(n) if n == "HD_Login"),
        "{e}"
    );
}
