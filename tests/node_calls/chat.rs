//! The chat example against a gate that answers its calls.

use super::*;

fn text(p: &Push) -> &str {
    std::str::from_utf8(&p.payload).unwrap()
}

#[test]
fn chat_login_join_say_whisper() {
    use chat_node::{JOIN, LOGIN, ROOM_MESSAGE, SAY, WHISPER, WHISPER_MESSAGE};
    let state = Arc::new(chat_node::Chat::default());
    let node = chat_node::chat(state.clone())
        .listen("127.0.0.1:0".parse().unwrap())
        .workers(2)
        .node_id("chat-test")
        .bind()
        .unwrap()
        .spawn();
    let mut gate = FakeGate::connect(node.local_addr(), "g1", 0, 1);
    assert_eq!(gate.hello.service, "Chat");
    // MQTT clients reach the routes by name: Chat/HD_Login/<msgid>, ...
    let mut names: Vec<(&str, i32)> = (gate.hello.route_names.iter())
        .map(|(n, r)| (n.as_str(), *r))
        .collect();
    names.sort_by_key(|&(_, r)| r);
    assert_eq!(
        names,
        [
            ("HD_Login", LOGIN),
            ("HD_Join", JOIN),
            ("HD_Say", SAY),
            ("HD_Whisper", WHISPER),
            // ... and get the room's and whispers' pushes on these topics.
            ("Chat/OnChat", ROOM_MESSAGE),
            ("Chat/OnWhisper", WHISPER_MESSAGE),
        ]
    );
    // Every chat route replies: all answered, none a notification.
    let answered: Vec<i32> = gate.hello.reply_routes.iter().map(|r| r.route).collect();
    assert_eq!(answered, [LOGIN, JOIN, SAY, WHISPER]);
    assert!(gate.hello.routes.is_empty());
    let s = SessionId::new(ShardId(0), 3);
    let before = chat_node::DISCONNECTS.load(Ordering::Relaxed);

    gate.send(&[ev(Event {
        ip: "127.0.0.1".into(),
        port: 40000,
        network: "tcp".into(),
        ..event(proto::EventKind::EventConnect, s, 0)
    })]);

    // Not logged in yet.
    gate.send(&[deliver(s, 0, JOIN, 1, b"lobby")]);
    let p = gate.next_push();
    assert_eq!((p.route, p.seq, text(&p)), (JOIN, 1, "error not logged in"));
    gate.send(&[deliver(s, 0, LOGIN, 2, b"abc")]);
    assert!(text(&gate.next_push()).starts_with("error "));

    // login 42: a blocking bind, then the reply, which answers the request
    // the gate tracks.
    let mut login = deliver(s, 0, LOGIN, 3, b"42");
    if let Some(to_node::Msg::Deliver(d)) = &mut login.msg {
        d.request_id = 303;
    }
    gate.send(&[login]);
    let c = gate.next_call();
    assert_eq!(
        c.op,
        Some(call::Op::Bind(proto::Bind {
            session_id: s.0,
            uid: 42
        }))
    );
    gate.ok(c.call_id);
    let p = gate.next_push();
    assert_eq!(
        (p.session_id, p.route, p.seq, text(&p), p.request_id),
        (s.0, LOGIN, 3, "ok 42", 303)
    );
    gate.send(&[ev(event(proto::EventKind::EventBind, s, 42))]);

    // A refused bind.
    let s9 = SessionId::new(ShardId(0), 9);
    gate.send(&[deliver(s9, 0, LOGIN, 1, b"42")]);
    let c = gate.next_call();
    gate.answer(c.call_id, code(Code::AlreadyBound, ""));
    assert_eq!(
        text(&gate.next_push()),
        "error the user is already bound to another session"
    );

    // join lobby: subscribe to "room:lobby".
    gate.send(&[deliver(s, 42, JOIN, 4, b"lobby")]);
    let c = gate.next_call();
    assert_eq!(
        c.op,
        Some(call::Op::Subscribe(proto::ChannelMembers {
            channel: "room:lobby".into(),
            targets: vec![session_target(s).unwrap()],
        }))
    );
    gate.ok(c.call_id);
    let p = gate.next_push();
    assert_eq!((p.route, p.seq, text(&p)), (JOIN, 4, "joined lobby"));
    assert_eq!(state.rooms_of(s), ["lobby"]);

    // say: publish to the room, then "sent".
    gate.send(&[deliver(s, 42, SAY, 5, b"hello all")]);
    let c = gate.next_call();
    assert_eq!(
        c.op,
        Some(call::Op::Publish(proto::Publish {
            channel: "room:lobby".into(),
            route: ROOM_MESSAGE,
            seq: 0,
            payload: Bytes::from_static(b"42@lobby: hello all"),
            ..Default::default()
        }))
    );
    gate.answer(
        c.call_id,
        CallResult {
            delivered: 1,
            ..Default::default()
        },
    );
    let p = gate.next_push();
    assert_eq!((p.route, p.seq, text(&p)), (SAY, 5, "sent"));

    // whisper to an offline user, then to an online one.
    gate.send(&[deliver(s, 42, WHISPER, 6, b"7 psst")]);
    let c = gate.next_call();
    match &c.op {
        Some(call::Op::Push(p)) => {
            assert_eq!(p.target, uid_target(7));
            assert_eq!(
                (p.route, p.seq, &p.payload[..]),
                (WHISPER_MESSAGE, 0, &b"42: psst"[..])
            );
        }
        op => panic!("{op:?}"),
    }
    gate.answer(c.call_id, code(Code::NotFound, ""));
    let p = gate.next_push();
    assert_eq!((p.route, p.seq, text(&p)), (WHISPER, 6, "error offline"));
    gate.send(&[deliver(s, 42, WHISPER, 7, b"8 hi there")]);
    let c = gate.next_call();
    gate.ok(c.call_id);
    assert_eq!(text(&gate.next_push()), "delivered");

    // Disconnect: the node forgets the session's rooms.
    gate.send(&[ev(Event {
        reason: proto::CloseReason::CloseClientClosed as i32,
        ..event(proto::EventKind::EventDisconnect, s, 42)
    })]);
    wait_until("rooms cleaned", || state.sessions() == 0);
    assert!(chat_node::DISCONNECTS.load(Ordering::Relaxed) > before);
    gate.quiet("nothing else");
}
