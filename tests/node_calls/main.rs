//! The node SDK's session API against a fake gate: events, snapshots, calls
//! (how each is encoded and on which link it goes), results and their
//! codes, timeouts, the reader-thread wait, and the chat example's logic.
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
    CloseReason, Context, EventContext, EventKind, GateClient, Node, NodeError, NodeHandle,
    SessionInfo, SnapshotPage, Target,
};
use ringgate::{SessionId, ShardId, UserId};

#[path = "../../examples/chat_node.rs"]
#[allow(dead_code)]
mod chat_node;

#[path = "../../examples/echo_node.rs"]
#[allow(dead_code)]
mod echo_node;

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
        FakeGate::connect_with(
            addr,
            GateHello {
                gate_id: gate_id.into(),
                shard,
                shards,
                version: PROTOCOL_VERSION,
                max_frame_bytes: 0,
                ..Default::default()
            },
        )
    }

    /// Opens a link whose gate says `hello`.
    fn connect_with(addr: SocketAddr, hello: GateHello) -> FakeGate {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut gate = FakeGate {
            stream,
            buf: BytesMut::new(),
            msgs: VecDeque::new(),
            hello: NodeHello::default(),
        };
        gate.send(&[ToNode {
            msg: Some(to_node::Msg::Hello(hello)),
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
            request_id: 0,
            ..Default::default()
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

mod calls;
mod chat;
mod events;
mod handlers;
mod mqtt;
mod snapshots;
