//! The node SDK against a fake gate: real sockets on 127.0.0.1, the gate side
//! played by a blocking `TcpStream` speaking the link framing by hand.
//!
//! Every test runs twice: handlers inline (`workers(0)`) and on a pool
//! (`workers(2)`).

use std::collections::HashSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use prost::Message;
use ringgate::link::proto::{
    call, target, to_gate, to_node, Deliver, GateHello, NodeHello, Ping, Push, RouteSpec, ToGate,
    ToGateBatch, ToNode,
};
use ringgate::link::{decode_frame, BatchBuf, PROTOCOL_VERSION};
use ringgate::node::{Context, Node, NodeError, NodeHandle};
use ringgate::{SessionId, ShardId};

const ECHO: i32 = 1;
/// Pushes its payload (8 bytes: a session id, big-endian) to that session.
const FORWARD: i32 = 2;
const PANIC: i32 = 3;
/// Replies twice: "first", then "second".
const TWICE: i32 = 4;
/// A notification: no reply expected; pushes "noted" anyway.
const NOTE: i32 = 5;
/// The reply timeout announced for ECHO: 2.5 ms, rounded up to 3 in the hello.
const ECHO_TIMEOUT: Duration = Duration::from_micros(2500);
const MAX_FRAME: usize = 64 * 1024;
/// How long to wait for what normally takes milliseconds (an answer, a
/// link registered or closed). Generous: a loaded CI machine can stall the
/// node's threads for seconds (a panicking handler's backtrace alone, with
/// RUST_BACKTRACE set, takes a while to symbolize), and waiting longer
/// costs nothing when tests pass.
const WAIT: Duration = Duration::from_secs(20);

fn start(workers: usize) -> NodeHandle {
    Node::builder("echo")
        .listen("127.0.0.1:0".parse().unwrap())
        .workers(workers)
        .max_frame_bytes(MAX_FRAME)
        .node_id("echo-test")
        .route(ECHO, echo)
        .route(FORWARD, |ctx: &mut Context| {
            let to = SessionId(u64::from_be_bytes(ctx.payload()[..8].try_into().unwrap()));
            let seq = ctx.seq();
            ctx.push_nowait(to, FORWARD, seq, Bytes::from_static(b"forwarded"))
                .unwrap();
            ctx.reply(Bytes::from_static(b"sent"));
        })
        .route(PANIC, |_ctx: &mut Context| panic!("handler bug"))
        .route(TWICE, |ctx: &mut Context| {
            ctx.reply("first");
            let (route, seq) = (ctx.route(), ctx.seq());
            ctx.reply_with(route, seq, "second");
        })
        .notify(NOTE, |ctx: &mut Context| ctx.reply("noted"))
        .reply_timeout(ECHO, ECHO_TIMEOUT)
        .bind()
        .unwrap()
        .spawn()
}

/// The ECHO handler: the payload back.
fn echo(ctx: &mut Context) {
    let p = ctx.payload().clone();
    ctx.reply(p);
}

/// Runs `test` once per handler mode.
fn both_modes(test: impl Fn(usize)) {
    for workers in [0, 2] {
        test(workers);
    }
}

/// The gate side of one link.
struct FakeGate {
    stream: TcpStream,
    buf: BytesMut,
    hello: NodeHello,
}

impl FakeGate {
    fn connect(addr: SocketAddr, gate_id: &str, shard: u32) -> FakeGate {
        Self::connect_limited(addr, gate_id, shard, 0)
    }

    /// [`FakeGate::connect`] announcing frames of at most `max_frame_bytes`
    /// (0: no limit).
    fn connect_limited(
        addr: SocketAddr,
        gate_id: &str,
        shard: u32,
        max_frame_bytes: u32,
    ) -> FakeGate {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut gate = FakeGate {
            stream,
            buf: BytesMut::new(),
            hello: NodeHello::default(),
        };
        gate.send(&[ToNode {
            msg: Some(to_node::Msg::Hello(GateHello {
                gate_id: gate_id.into(),
                shard,
                shards: 4,
                version: PROTOCOL_VERSION,
                max_frame_bytes,
                ..Default::default()
            })),
        }]);
        match gate.recv().pop().and_then(|m| m.msg) {
            Some(to_gate::Msg::Hello(h)) => gate.hello = h,
            other => panic!("expected NodeHello, got {other:?}"),
        }
        gate
    }

    /// Sends `msgs` as one frame.
    fn send(&mut self, msgs: &[ToNode]) {
        let mut b = BatchBuf::new(usize::MAX);
        for m in msgs {
            b.push(m);
        }
        self.stream.write_all(&b.take()).unwrap();
    }

    /// The messages of the next frame.
    fn recv(&mut self) -> Vec<ToGate> {
        loop {
            if let Some(f) = decode_frame(&mut self.buf, usize::MAX).unwrap() {
                return ToGateBatch::decode(f).unwrap().msgs;
            }
            let mut chunk = [0u8; 65536];
            let n = self.stream.read(&mut chunk).expect("node answers in time");
            assert!(n > 0, "node closed the link");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next `n` pushes, over as many frames as it takes.
    fn pushes(&mut self, n: usize) -> Vec<Push> {
        let mut out = Vec::new();
        while out.len() < n {
            for m in self.recv() {
                match m.msg {
                    Some(to_gate::Msg::Push(p)) => out.push(p),
                    other => panic!("expected Push, got {other:?}"),
                }
            }
        }
        assert_eq!(out.len(), n, "more pushes than expected");
        out
    }

    /// True once the node has closed the link (EOF or reset).
    fn closed_by_node(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
                Err(e) => panic!("link still open: {e}"),
            }
        }
    }
}

fn deliver(session: SessionId, route: i32, seq: i32, payload: &[u8]) -> ToNode {
    ToNode {
        msg: Some(to_node::Msg::Deliver(Deliver {
            session_id: session.0,
            uid: 7,
            route,
            seq,
            payload: Bytes::copy_from_slice(payload),
            settings: Default::default(),
            request_id: 0,
            ..Default::default()
        })),
    }
}

/// A Deliver the gate tracks: it waits for the reply carrying `request_id`.
fn request(session: SessionId, route: i32, seq: i32, payload: &[u8], request_id: u64) -> ToNode {
    let mut m = deliver(session, route, seq, payload);
    if let Some(to_node::Msg::Deliver(d)) = &mut m.msg {
        d.request_id = request_id;
    }
    m
}

fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Asserts one echo round trip on `gate` for a session of `shard`.
fn echo_once(gate: &mut FakeGate, shard: u16, seq: i32) {
    let s = SessionId::new(ShardId(shard), 1);
    gate.send(&[deliver(s, ECHO, seq, b"ping")]);
    let p = gate.pushes(1).remove(0);
    assert_eq!((p.session_id, p.route, p.seq), (s.0, ECHO, seq));
    assert_eq!(&p.payload[..], b"ping");
}

#[test]
fn handshake_announces_service_and_routes() {
    both_modes(|workers| {
        let node = start(workers);
        let gate = FakeGate::connect(node.local_addr(), "g1", 0);
        assert_eq!(gate.hello.service, "echo");
        assert_eq!(gate.hello.node_id, "echo-test");
        // Only the notification in `routes`; every answered route in
        // `reply_routes`, with its timeout (0: the gate's default).
        assert_eq!(gate.hello.routes, vec![NOTE]);
        let spec = |route, timeout_ms| RouteSpec { route, timeout_ms };
        assert_eq!(
            gate.hello.reply_routes,
            vec![
                spec(ECHO, 3),
                spec(FORWARD, 0),
                spec(PANIC, 0),
                spec(TWICE, 0)
            ]
        );
        assert!(!gate.hello.snapshot, "no snapshot handler, no snapshot");
        assert_eq!(gate.hello.version, PROTOCOL_VERSION);
        wait_until("link registered", || node.gates().links() == 1);
        assert_eq!(node.gates().gate_ids(), vec!["g1".to_string()]);
    });
}

#[test]
fn hundred_delivers_in_one_frame_all_answered() {
    both_modes(|workers| {
        let node = start(workers);
        let mut gate = FakeGate::connect(node.local_addr(), "g1", 0);
        let msgs: Vec<ToNode> = (0..100)
            .map(|i| {
                let s = SessionId::new(ShardId(0), i % 10);
                deliver(s, ECHO, i as i32, format!("payload {i}").as_bytes())
            })
            .collect();
        gate.send(&msgs);
        let mut seen = HashSet::new();
        for p in gate.pushes(100) {
            let i = p.seq as u64;
            assert_eq!(p.session_id, SessionId::new(ShardId(0), i % 10).0);
            assert_eq!(p.route, ECHO);
            assert_eq!(p.ext, 0);
            assert_eq!(p.payload, format!("payload {i}").as_bytes());
            assert!(seen.insert(i), "seq {i} answered twice");
        }
        assert_eq!(seen.len(), 100);
    });
}

#[test]
fn one_sessions_requests_answered_in_order() {
    both_modes(|workers| {
        let node = start(workers);
        let mut gate = FakeGate::connect(node.local_addr(), "g1", 0);
        let s = SessionId::new(ShardId(0), 42);
        let msgs: Vec<ToNode> = (0..200).map(|i| deliver(s, ECHO, i, b"x")).collect();
        gate.send(&msgs);
        let seqs: Vec<i32> = gate.pushes(200).iter().map(|p| p.seq).collect();
        assert_eq!(seqs, (0..200).collect::<Vec<_>>());
    });
}

#[test]
fn frame_split_across_writes() {
    both_modes(|workers| {
        let node = start(workers);
        let mut gate = FakeGate::connect(node.local_addr(), "g1", 0);
        let mut b = BatchBuf::new(usize::MAX);
        b.push(&deliver(SessionId::new(ShardId(0), 1), ECHO, 5, b"split"));
        let wire = b.take();
        for byte in wire.iter() {
            gate.stream.write_all(&[*byte]).unwrap();
            std::thread::sleep(Duration::from_micros(200));
        }
        let p = gate.pushes(1).remove(0);
        assert_eq!((p.seq, &p.payload[..]), (5, &b"split"[..]));
    });
}

#[test]
fn ping_answered_with_pong() {
    both_modes(|workers| {
        let node = start(workers);
        let mut gate = FakeGate::connect(node.local_addr(), "g1", 0);
        gate.send(&[ToNode {
            msg: Some(to_node::Msg::Ping(Ping { nonce: 0xfeed })),
        }]);
        match gate.recv().pop().and_then(|m| m.msg) {
            Some(to_gate::Msg::Pong(p)) => assert_eq!(p.nonce, 0xfeed),
            other => panic!("expected Pong, got {other:?}"),
        }
    });
}

#[test]
fn unknown_route_answered_with_ext_no_route() {
    both_modes(|workers| {
        let node = start(workers);
        let mut gate = FakeGate::connect(node.local_addr(), "g1", 0);
        let s = SessionId::new(ShardId(0), 3);
        gate.send(&[request(s, 99, 8, b"who serves this?", 0xabc)]);
        let p = gate.pushes(1).remove(0);
        assert_eq!((p.session_id, p.route, p.seq, p.ext), (s.0, 99, 8, 1));
        assert!(p.payload.is_empty());
        // The NO_ROUTE push is the request's answer: the gate stops waiting.
        assert_eq!(p.request_id, 0xabc);
    });
}

#[test]
fn replies_carry_the_request_id_first_only() {
    both_modes(|workers| {
        let node = start(workers);
        let mut gate = FakeGate::connect(node.local_addr(), "g1", 0);
        let s = SessionId::new(ShardId(0), 4);
        gate.send(&[
            request(s, ECHO, 1, b"e", 101),
            // Two replies: only the first answers the request.
            request(s, TWICE, 2, b"", 102),
            // A push to the requester's own session, batched before the
            // reply, is not the reply: it does not take the id.
            request(s, FORWARD, 3, &s.0.to_be_bytes(), 103),
            // An untracked request (a notification, or a gate that does
            // not track replies): every packet carries 0.
            request(s, NOTE, 4, b"", 0),
            request(s, TWICE, 5, b"", 0),
        ]);
        let got: Vec<(i32, String, u64)> = gate
            .pushes(8)
            .into_iter()
            .map(|p| {
                let text = String::from_utf8(p.payload.to_vec()).unwrap();
                (p.seq, text, p.request_id)
            })
            .collect();
        let want: Vec<(i32, String, u64)> = [
            (1, "e", 101),
            (2, "first", 102),
            (2, "second", 0),
            (3, "forwarded", 0),
            (3, "sent", 103),
            (4, "noted", 0),
            (5, "first", 0),
            (5, "second", 0),
        ]
        .iter()
        .map(|(seq, t, id)| (*seq, t.to_string(), *id))
        .collect();
        assert_eq!(got, want, "workers({workers})");
    });
}

#[test]
fn panicking_handler_keeps_link_up() {
    both_modes(|workers| {
        let node = start(workers);
        let mut gate = FakeGate::connect(node.local_addr(), "g1", 0);
        gate.send(&[deliver(SessionId::new(ShardId(0), 1), PANIC, 1, b"")]);
        echo_once(&mut gate, 0, 2);
        // A request the gate tracks is answered with an error at once,
        // not left to the gate's timeout.
        gate.send(&[request(SessionId::new(ShardId(0), 1), PANIC, 3, b"", 77)]);
        let p = gate.pushes(1).remove(0);
        assert_eq!((p.request_id, p.seq), (77, 3));
        assert!(p.payload.is_empty() && !p.error.is_empty(), "{p:?}");
        echo_once(&mut gate, 0, 4);
    });
}

/// A reply larger than the gate's frames would make the gate close the
/// link (failing every request on it): it is answered with an error
/// instead, and the link keeps serving.
#[test]
fn a_reply_too_large_for_the_gates_frames_becomes_an_error_reply() {
    both_modes(|workers| {
        let node = start(workers);
        let mut gate = FakeGate::connect_limited(node.local_addr(), "g1", 0, 4096);
        let s = SessionId::new(ShardId(0), 1);
        gate.send(&[request(s, ECHO, 1, &[7u8; 8192], 42)]);
        let p = gate.pushes(1).remove(0);
        assert_eq!((p.request_id, p.seq), (42, 1));
        assert!(p.payload.is_empty(), "{} bytes sent", p.payload.len());
        assert!(p.error.contains("too large"), "{:?}", p.error);
        echo_once(&mut gate, 0, 2);
        // A push the handler cannot fit is refused to the handler.
        let err = node
            .gates()
            .push(s, ECHO, 3, Bytes::from(vec![0u8; 8192]))
            .expect_err("an oversized push is refused");
        assert!(
            matches!(err, NodeError::Invalid(ref m) if m.contains("does not fit")),
            "{err}"
        );
        echo_once(&mut gate, 0, 4);
    });
}

#[test]
fn gate_client_push_arrives() {
    both_modes(|workers| {
        let node = start(workers);
        let client = node.gates();
        let s = SessionId::new(ShardId(1), 9);
        assert!(matches!(
            client.push_nowait(s, 5, 0, &b"early"[..]),
            Err(NodeError::NotConnected { shard: 1 })
        ));
        let mut gate = FakeGate::connect(node.local_addr(), "g1", 1);
        wait_until("link registered", || client.links() == 1);
        // From another thread, many pushes: all arrive, in order.
        let c = client.clone();
        std::thread::spawn(move || {
            for i in 0..50 {
                c.push_nowait(s, 5, i, Bytes::from(format!("push {i}")))
                    .unwrap();
            }
        })
        .join()
        .unwrap();
        for (i, p) in gate.pushes(50).into_iter().enumerate() {
            assert_eq!((p.session_id, p.route, p.seq), (s.0, 5, i as i32));
            assert_eq!(p.payload, format!("push {i}").as_bytes());
        }
        // Shard 0 has no link: the push goes as a call (id 0) on shard 1's
        // link, and the gate routes it.
        let other = SessionId::new(ShardId(0), 9);
        client.push_nowait(other, 5, 0, &b"x"[..]).unwrap();
        match gate.recv().pop().and_then(|m| m.msg) {
            Some(to_gate::Msg::Call(c)) => {
                assert_eq!(c.call_id, 0);
                match c.op {
                    Some(call::Op::Push(p)) => {
                        assert_eq!(p.target.unwrap().to, Some(target::To::SessionId(other.0)));
                        assert_eq!((p.route, &p.payload[..]), (5, &b"x"[..]));
                    }
                    op => panic!("expected PushTo, got {op:?}"),
                }
            }
            other => panic!("expected Call, got {other:?}"),
        }
        // A second gate makes a push by session alone ambiguous.
        let mut gate2 = FakeGate::connect(node.local_addr(), "g2", 1);
        wait_until("second gate registered", || client.links() == 2);
        assert!(matches!(
            client.push_nowait(s, 5, 0, &b"x"[..]),
            Err(NodeError::AmbiguousGate { gates: 2 })
        ));
        client
            .gate("g2")
            .push_nowait(s, 6, 1, &b"to g2"[..])
            .unwrap();
        let p = gate2.pushes(1).remove(0);
        assert_eq!((p.route, &p.payload[..]), (6, &b"to g2"[..]));
        assert!(matches!(
            client.gate("nope").push_nowait(s, 6, 1, &b"x"[..]),
            Err(NodeError::NotConnected { .. })
        ));
        echo_once(&mut gate, 1, 1);
    });
}

#[test]
fn two_shards_work_independently_and_push_across() {
    both_modes(|workers| {
        let node = start(workers);
        let mut g0 = FakeGate::connect(node.local_addr(), "g1", 0);
        let mut g1 = FakeGate::connect(node.local_addr(), "g1", 1);
        wait_until("both links", || node.gates().links() == 2);
        echo_once(&mut g0, 0, 1);
        echo_once(&mut g1, 1, 2);
        // A handler on shard 0 pushes to a session of shard 1: it goes on g1.
        let from = SessionId::new(ShardId(0), 1);
        let to = SessionId::new(ShardId(1), 77);
        g0.send(&[deliver(from, FORWARD, 3, &to.0.to_be_bytes())]);
        let reply = g0.pushes(1).remove(0);
        assert_eq!(
            (reply.session_id, &reply.payload[..]),
            (from.0, &b"sent"[..])
        );
        let pushed = g1.pushes(1).remove(0);
        assert_eq!(
            (
                pushed.session_id,
                pushed.route,
                pushed.seq,
                &pushed.payload[..]
            ),
            (to.0, FORWARD, 3, &b"forwarded"[..])
        );
        // Closing shard 0's link leaves shard 1's serving.
        drop(g0);
        wait_until("shard 0 link removed", || node.gates().links() == 1);
        echo_once(&mut g1, 1, 4);
    });
}

#[test]
fn gate_reconnects_after_closing_the_link() {
    both_modes(|workers| {
        let node = start(workers);
        let mut gate = FakeGate::connect(node.local_addr(), "g1", 0);
        echo_once(&mut gate, 0, 1);
        gate.stream.shutdown(std::net::Shutdown::Both).unwrap();
        drop(gate);
        wait_until("link removed", || node.gates().links() == 0);
        assert!(node.gates().gate_ids().is_empty());
        let mut gate = FakeGate::connect(node.local_addr(), "g1", 0);
        wait_until("link back", || node.gates().links() == 1);
        echo_once(&mut gate, 0, 2);
        node.gates()
            .push_nowait(SessionId::new(ShardId(0), 1), 1, 0, &b"after"[..])
            .unwrap();
        assert_eq!(&gate.pushes(1)[0].payload[..], b"after");
    });
}

#[test]
fn reopened_link_replaces_the_old_one() {
    both_modes(|workers| {
        let node = start(workers);
        let mut old = FakeGate::connect(node.local_addr(), "g1", 0);
        let mut new = FakeGate::connect(node.local_addr(), "g1", 0);
        assert!(old.closed_by_node(), "the replaced link is closed");
        assert_eq!(node.gates().links(), 1);
        echo_once(&mut new, 0, 1);
    });
}

#[test]
fn oversized_frame_closes_only_that_link() {
    both_modes(|workers| {
        let node = start(workers);
        let mut bad = FakeGate::connect(node.local_addr(), "g1", 0);
        let mut good = FakeGate::connect(node.local_addr(), "g1", 1);
        // Only the length prefix: the node must refuse before the body.
        bad.stream
            .write_all(&(MAX_FRAME as u32 + 1).to_be_bytes())
            .unwrap();
        assert!(bad.closed_by_node());
        wait_until("bad link removed", || node.gates().links() == 1);
        echo_once(&mut good, 1, 1);
    });
}

#[test]
fn garbage_before_hello_is_refused() {
    both_modes(|workers| {
        let node = start(workers);
        let mut s = TcpStream::connect(node.local_addr()).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        // A well-formed frame whose first message is a Ping, not a hello.
        let mut b = BatchBuf::new(usize::MAX);
        b.push(&ToNode {
            msg: Some(to_node::Msg::Ping(Ping { nonce: 1 })),
        });
        s.write_all(&b.take()).unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert!(rest.is_empty(), "no hello for a bad handshake");
        // The node still serves others.
        let mut gate = FakeGate::connect(node.local_addr(), "g1", 0);
        echo_once(&mut gate, 0, 1);
    });
}

#[test]
fn shutdown_closes_links_and_joins() {
    both_modes(|workers| {
        let node = start(workers);
        let addr = node.local_addr();
        let mut gate = FakeGate::connect(addr, "g1", 0);
        echo_once(&mut gate, 0, 1);
        let t = Instant::now();
        node.shutdown();
        assert!(t.elapsed() < WAIT);
        assert!(gate.closed_by_node());
        assert!(TcpStream::connect(addr).is_err(), "listener closed");
    });
}

#[test]
fn bind_errors() {
    let no_addr = Node::builder("x").bind();
    assert!(matches!(no_addr, Err(NodeError::NoListenAddress)));
    let dup = Node::builder("x")
        .listen("127.0.0.1:0".parse().unwrap())
        .route(1, |_: &mut Context| {})
        .route(1, |_: &mut Context| {})
        .bind();
    assert!(matches!(dup, Err(NodeError::DuplicateRoute(1))));
    // One route cannot be both answered and a notification.
    let dup = Node::builder("x")
        .listen("127.0.0.1:0".parse().unwrap())
        .notify(2, |_: &mut Context| {})
        .route(2, |_: &mut Context| {})
        .bind();
    assert!(matches!(dup, Err(NodeError::DuplicateRoute(2))));
    // A reply timeout needs an answered route: not an unknown one, not a
    // notification; the route may be registered after the timeout.
    let unknown = Node::builder("x")
        .listen("127.0.0.1:0".parse().unwrap())
        .route(1, |_: &mut Context| {})
        .reply_timeout(3, Duration::from_secs(1))
        .bind();
    assert!(matches!(unknown, Err(NodeError::UnknownReplyRoute(3))));
    let notification = Node::builder("x")
        .listen("127.0.0.1:0".parse().unwrap())
        .notify(4, |_: &mut Context| {})
        .reply_timeout(4, Duration::from_secs(1))
        .bind();
    assert!(matches!(notification, Err(NodeError::UnknownReplyRoute(4))));
    let later = Node::builder("x")
        .listen("127.0.0.1:0".parse().unwrap())
        .reply_timeout(5, Duration::from_secs(1))
        .route(5, |_: &mut Context| {})
        .bind();
    assert!(later.is_ok());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = Node::builder("x")
        .listen(taken.local_addr().unwrap())
        .bind();
    assert!(matches!(busy, Err(NodeError::Bind { .. })));
}

#[test]
fn silent_link_closed_after_idle_timeout() {
    let node = Node::builder("echo")
        .listen("127.0.0.1:0".parse().unwrap())
        .idle_timeout(Some(Duration::from_millis(200)))
        .bind()
        .unwrap()
        .spawn();
    // Timed from before the link opens, so a slow handshake on a loaded
    // machine cannot make the close look early.
    let t = Instant::now();
    let mut gate = FakeGate::connect(node.local_addr(), "g1", 0);
    assert!(gate.closed_by_node());
    assert!(
        t.elapsed() >= Duration::from_millis(150),
        "{:?}",
        t.elapsed()
    );
    wait_until("link removed", || node.gates().links() == 0);
}

#[test]
fn other_protocol_version_refused() {
    let node = start(0);
    let mut s = TcpStream::connect(node.local_addr()).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut b = BatchBuf::new(usize::MAX);
    b.push(&ToNode {
        msg: Some(to_node::Msg::Hello(GateHello {
            gate_id: "g1".into(),
            shard: 0,
            shards: 1,
            version: PROTOCOL_VERSION + 1,
            max_frame_bytes: 0,
            ..Default::default()
        })),
    });
    s.write_all(&b.take()).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty(), "no NodeHello for another version");
    assert_eq!(node.gates().links(), 0);
}

/// An inline handler waiting for a call the gate never answers: the link
/// keeps being read (for the answer) but only up to a bounded queue, after
/// which the gate's writes meet back pressure instead of the node's memory
/// growing with everything the gate sends.
#[test]
fn a_handler_waiting_on_the_gate_holds_back_the_link_not_the_memory() {
    const WAITS: i32 = 9;
    let node = Node::builder("waiter")
        .listen("127.0.0.1:0".parse().unwrap())
        .workers(0)
        .max_frame_bytes(MAX_FRAME)
        .call_timeout(Duration::from_secs(4))
        .route(WAITS, |ctx: &mut Context| {
            let r = ctx.kick(false);
            ctx.reply(format!("{r:?}"));
        })
        .route(ECHO, echo)
        .bind()
        .unwrap()
        .spawn();
    let mut gate = FakeGate::connect(node.local_addr(), "g1", 0);
    let s = SessionId::new(ShardId(0), 1);
    gate.send(&[request(s, WAITS, 1, b"", 1)]);
    // 8 KiB requests as fast as the node takes them, for 2.5 s (the call
    // waits 4 s): 4096 queued (32 MiB) plus the sockets' buffers, then no
    // more. Without the bound the node read hundreds of MiB here.
    let mut frame = BatchBuf::new(usize::MAX);
    frame.push(&request(s, ECHO, 2, &[1u8; 8192], 2));
    let frame = frame.take();
    gate.stream.set_nonblocking(true).unwrap();
    let (mut sent, mut off) = (0usize, 0usize);
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(2500) {
        match gate.stream.write(&frame[off..]) {
            Ok(n) => {
                sent += n;
                off = (off + n) % frame.len();
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("link broke: {e}"),
        }
    }
    assert!(
        sent < 80 << 20,
        "the node took {} MiB while its handler waited",
        sent >> 20
    );
    assert!(
        sent > 8 << 20,
        "only {} KiB sent: the link did not keep being read",
        sent >> 10
    );
    drop(gate);
    drop(node);
}

/// Requests queued for a worker when their link closes are not run: the
/// gate has already answered their clients NODE_DOWN.
#[test]
fn queued_requests_of_a_closed_link_are_not_run() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    const SLOW: i32 = 8;
    let ran = Arc::new(AtomicUsize::new(0));
    let counted = ran.clone();
    let node = Node::builder("slow")
        .listen("127.0.0.1:0".parse().unwrap())
        .workers(1)
        .route(SLOW, |ctx: &mut Context| {
            std::thread::sleep(Duration::from_millis(400));
            ctx.reply("slow");
        })
        .route(ECHO, move |ctx: &mut Context| {
            counted.fetch_add(1, Ordering::SeqCst);
            echo(ctx);
        })
        .bind()
        .unwrap()
        .spawn();
    let mut gate = FakeGate::connect(node.local_addr(), "g1", 0);
    let s = SessionId::new(ShardId(0), 1);
    let mut msgs = vec![request(s, SLOW, 1, b"", 1)];
    msgs.extend((2..12).map(|i| request(s, ECHO, i, b"x", i as u64)));
    // One notification (no request id): it still runs.
    msgs.push(deliver(s, ECHO, 12, b"n"));
    gate.send(&msgs);
    std::thread::sleep(Duration::from_millis(100));
    drop(gate);
    wait_until("link removed", || node.gates().links() == 0);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(ran.load(Ordering::SeqCst), 1, "only the notification ran");
    drop(node);
}
