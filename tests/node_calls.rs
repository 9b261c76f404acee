//! The node SDK's session API against a fake gate: events, calls (how each
//! is encoded and on which link it goes), results and their codes, timeouts,
//! the reader-thread wait, and the chat example's logic.
//!
//! The gate side is a blocking `TcpStream` per link speaking the link framing
//! by hand, as in `node_sdk.rs`.

use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use prost::Message;
use ringgate::link::proto::{
    self, call, target, to_gate, to_node, Call, CallResult, Code, Deliver, Event, GateHello,
    NodeHello, Ping, Push, ToGate, ToGateBatch, ToNode,
};
use ringgate::link::{decode_frame, BatchBuf, PROTOCOL_VERSION};
use ringgate::node::{
    CloseReason, Context, EventContext, EventKind, GateClient, Node, NodeError, NodeHandle, Target,
};
use ringgate::{SessionId, ShardId, UserId};

#[path = "../examples/chat_node.rs"]
#[allow(dead_code)]
mod chat_node;

/// How long to wait for what normally takes milliseconds (an answer, a
/// link registered or closed). Generous: a loaded CI machine can stall the
/// node's threads for seconds (a panicking handler's backtrace alone, with
/// RUST_BACKTRACE set, takes a while to symbolize), and waiting longer
/// costs nothing when tests pass.
const WAIT: Duration = Duration::from_secs(20);
const SHARDS: u32 = 4;

/// The gate side of one link.
struct FakeGate {
    stream: TcpStream,
    buf: BytesMut,
    msgs: VecDeque<ToGate>,
    hello: NodeHello,
}

impl FakeGate {
    fn connect(addr: SocketAddr, gate_id: &str, shard: u32, shards: u32) -> FakeGate {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut gate = FakeGate {
            stream,
            buf: BytesMut::new(),
            msgs: VecDeque::new(),
            hello: NodeHello::default(),
        };
        gate.send(&[ToNode {
            msg: Some(to_node::Msg::Hello(GateHello {
                gate_id: gate_id.into(),
                shard,
                shards,
                version: PROTOCOL_VERSION,
                max_frame_bytes: 0,
            })),
        }]);
        match gate.next().msg {
            Some(to_gate::Msg::Hello(h)) => gate.hello = h,
            other => panic!("expected NodeHello, got {other:?}"),
        }
        gate
    }

    /// Connects all `shards` links of gate `gate_id`.
    fn all(node: &NodeHandle, gate_id: &str, shards: u32) -> Vec<FakeGate> {
        let links: Vec<FakeGate> = (0..shards)
            .map(|s| FakeGate::connect(node.local_addr(), gate_id, s, shards))
            .collect();
        wait_until("links registered", || {
            node.gates().links() >= shards as usize
        });
        links
    }

    /// Sends `msgs` as one frame.
    fn send(&mut self, msgs: &[ToNode]) {
        let mut b = BatchBuf::new(usize::MAX);
        for m in msgs {
            b.push(m);
        }
        self.stream.write_all(&b.take()).unwrap();
    }

    /// The next message, or `None` if nothing arrives within `timeout`.
    fn try_next(&mut self, timeout: Duration) -> Option<ToGate> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = self.msgs.pop_front() {
                return Some(m);
            }
            if let Some(f) = decode_frame(&mut self.buf, usize::MAX).unwrap() {
                self.msgs.extend(ToGateBatch::decode(f).unwrap().msgs);
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("node closed the link"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return None
                }
                Err(e) => panic!("link read failed: {e}"),
            }
        }
    }

    /// The next message (within [`WAIT`]).
    fn next(&mut self) -> ToGate {
        self.try_next(WAIT).expect("node sends in time")
    }

    fn next_call(&mut self) -> Call {
        match self.next().msg {
            Some(to_gate::Msg::Call(c)) => c,
            other => panic!("expected Call, got {other:?}"),
        }
    }

    fn next_push(&mut self) -> Push {
        match self.next().msg {
            Some(to_gate::Msg::Push(p)) => p,
            other => panic!("expected Push, got {other:?}"),
        }
    }

    /// Answers call `call_id` with `r`.
    fn answer(&mut self, call_id: u64, r: CallResult) {
        self.send(&[result(call_id, r)]);
    }

    fn ok(&mut self, call_id: u64) {
        self.answer(call_id, CallResult::default());
    }

    /// Asserts nothing arrives for a while.
    fn quiet(&mut self, what: &str) {
        if let Some(m) = self.try_next(Duration::from_millis(100)) {
            panic!("{what}: unexpected {m:?}");
        }
    }
}

fn result(call_id: u64, r: CallResult) -> ToNode {
    ToNode {
        msg: Some(to_node::Msg::Result(CallResult { call_id, ..r })),
    }
}

fn code(c: Code, message: &str) -> CallResult {
    CallResult {
        code: c as i32,
        message: message.into(),
        ..Default::default()
    }
}

/// The next message on any of `links`: (link index, message).
fn next_on_any(links: &mut [FakeGate]) -> (usize, ToGate) {
    let deadline = Instant::now() + WAIT;
    loop {
        for (i, l) in links.iter_mut().enumerate() {
            if let Some(m) = l.try_next(Duration::from_millis(5)) {
                return (i, m);
            }
        }
        assert!(Instant::now() < deadline, "no message on any link");
    }
}

fn call_on_any(links: &mut [FakeGate]) -> (usize, Call) {
    match next_on_any(links) {
        (
            i,
            ToGate {
                msg: Some(to_gate::Msg::Call(c)),
            },
        ) => (i, c),
        (_, other) => panic!("expected Call, got {other:?}"),
    }
}

fn deliver(session: SessionId, uid: i64, route: i32, seq: i32, payload: &[u8]) -> ToNode {
    ToNode {
        msg: Some(to_node::Msg::Deliver(Deliver {
            session_id: session.0,
            uid,
            route,
            seq,
            payload: Bytes::copy_from_slice(payload),
            settings: Default::default(),
        })),
    }
}

fn event(kind: proto::EventKind, session: SessionId, uid: i64) -> Event {
    Event {
        kind: kind as i32,
        session_id: session.0,
        uid,
        ..Default::default()
    }
}

fn ev(e: Event) -> ToNode {
    ToNode {
        msg: Some(to_node::Msg::Event(e)),
    }
}

fn session_target(s: SessionId) -> Option<proto::Target> {
    Some(proto::Target {
        to: Some(target::To::SessionId(s.0)),
    })
}

fn uid_target(u: i64) -> Option<proto::Target> {
    Some(proto::Target {
        to: Some(target::To::Uid(u)),
    })
}

fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(2));
    }
}

fn both_modes(test: impl Fn(usize)) {
    for workers in [0, 2] {
        test(workers);
    }
}

/// Runs `f` on its own thread (a blocking call the test answers meanwhile).
fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> thread::JoinHandle<T> {
    thread::spawn(f)
}

fn plain_node() -> NodeHandle {
    Node::builder("calls")
        .listen("127.0.0.1:0".parse().unwrap())
        .bind()
        .unwrap()
        .spawn()
}

// ---------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------

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
                        EventKind::Unbind => unreachable!("not subscribed"),
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
    let msgs: Vec<ToNode> = (0..=9)
        .map(|r| {
            ev(Event {
                reason: r,
                ..event(proto::EventKind::EventDisconnect, SessionId(1), 0)
            })
        })
        .collect();
    gate.send(&msgs);
    wait_until("all events", || seen.lock().unwrap().len() == 10);
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
            Unspecified
        ]
    );
}

// ---------------------------------------------------------------------------
// Calls: encoding and link choice
// ---------------------------------------------------------------------------

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
    // another live link, as a Call (a plain Push would miss).
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
    assert!(matches!(
        g.stat(),
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

// ---------------------------------------------------------------------------
// Handlers: shortcuts, settings, blocking on the reader thread
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// The chat example against a gate that answers its calls
// ---------------------------------------------------------------------------

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
    assert_eq!(gate.hello.service, "chat");
    assert_eq!(gate.hello.routes, [LOGIN, JOIN, SAY, WHISPER]);
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

    // login 42: a blocking bind.
    gate.send(&[deliver(s, 0, LOGIN, 3, b"42")]);
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
        (p.session_id, p.route, p.seq, text(&p)),
        (s.0, LOGIN, 3, "ok 42")
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
