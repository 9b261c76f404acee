//! A node played by the test, message by message, on the raw protocol: it
//! listens, the gate dials it, and the test decides what it answers (or
//! that it answers nothing, reads nothing, or hangs up).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use prost::Message;
use ringgate::link::proto::{
    to_gate, to_node, EventKind, GateHello, NodeHello, Push, RouteSpec, ToGate, ToNode, ToNodeBatch,
};
use ringgate::link::{decode_frame, BatchBuf, PROTOCOL_VERSION};

/// What the scripted node announces.
#[derive(Clone, Default)]
pub struct Announce {
    /// The service name; empty: "scripted".
    pub service: String,
    /// MQTT names of routes.
    pub route_names: Vec<(String, i32)>,
    pub node_id: String,
    pub routes: Vec<i32>,
    pub reply_routes: Vec<(i32, u32)>,
    pub events: Vec<EventKind>,
    pub snapshot: bool,
    pub max_frame_bytes: u32,
    pub version: Option<u32>,
}

pub struct ScriptedNode {
    pub listener: TcpListener,
    pub addr: SocketAddr,
}

impl ScriptedNode {
    pub fn bind() -> ScriptedNode {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        ScriptedNode { listener, addr }
    }

    /// Accepts the next link and answers its hello.
    pub fn accept(&self, a: &Announce) -> NodeLink {
        let (s, _) = self.listener.accept().unwrap();
        s.set_nodelay(true).unwrap();
        let mut link = NodeLink {
            s,
            buf: BytesMut::new(),
            hello: GateHello::default(),
            queue: Default::default(),
            pongs: 0,
        };
        match link.next(Duration::from_secs(10)) {
            Some(to_node::Msg::Hello(h)) => link.hello = h,
            other => panic!("expected GateHello first, got {other:?}"),
        }
        link.send(&[to_gate::Msg::Hello(NodeHello {
            service: if a.service.is_empty() {
                "scripted".into()
            } else {
                a.service.clone()
            },
            node_id: a.node_id.clone(),
            routes: a.routes.clone(),
            version: a.version.unwrap_or(PROTOCOL_VERSION),
            events: a.events.iter().map(|k| *k as i32).collect(),
            max_frame_bytes: a.max_frame_bytes,
            reply_routes: (a.reply_routes.iter())
                .map(|&(route, timeout_ms)| RouteSpec { route, timeout_ms })
                .collect(),
            snapshot: a.snapshot,
            route_names: a.route_names.iter().cloned().collect(),
            ..Default::default()
        })]);
        link
    }

    /// Accepts one link per shard, returned in shard order.
    pub fn accept_shards(&self, a: &Announce, shards: usize) -> Vec<NodeLink> {
        let mut links: Vec<NodeLink> = (0..shards).map(|_| self.accept(a)).collect();
        links.sort_by_key(|l| l.hello.shard);
        links
    }
}

pub struct NodeLink {
    pub s: TcpStream,
    buf: BytesMut,
    pub hello: GateHello,
    queue: std::collections::VecDeque<to_node::Msg>,
    /// Pings answered so far.
    pub pongs: usize,
}

impl NodeLink {
    pub fn send(&mut self, msgs: &[to_gate::Msg]) {
        let mut b = BatchBuf::new(1 << 20);
        for m in msgs {
            b.push(&ToGate {
                msg: Some(m.clone()),
            });
        }
        self.s.write_all(&b.take()).unwrap();
    }

    /// Next message within `within`, answering pings; `None` on timeout or EOF.
    pub fn next(&mut self, within: Duration) -> Option<to_node::Msg> {
        let end = Instant::now() + within;
        loop {
            while let Some(m) = self.queue.pop_front() {
                if let to_node::Msg::Ping(p) = m {
                    self.send(&[to_gate::Msg::Pong(ringgate::link::proto::Pong {
                        nonce: p.nonce,
                    })]);
                    self.pongs += 1;
                    continue;
                }
                return Some(m);
            }
            if let Some(frame) = decode_frame(&mut self.buf, 64 << 20).unwrap() {
                let batch = ToNodeBatch::decode(frame).unwrap();
                self.queue
                    .extend(batch.msgs.into_iter().filter_map(|m: ToNode| m.msg));
                continue;
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.s.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 65536];
            match self.s.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return None
                }
                Err(_) => return None,
            }
        }
    }

    /// The next message that `pick` accepts, skipping others.
    pub fn next_where<T>(
        &mut self,
        within: Duration,
        mut pick: impl FnMut(to_node::Msg) -> Option<T>,
    ) -> Option<T> {
        let end = Instant::now() + within;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if let Some(t) = pick(self.next(left)?) {
                return Some(t);
            }
        }
    }

    /// True if the gate closes this link within `within`.
    pub fn closed_within(&mut self, within: Duration) -> bool {
        let end = Instant::now() + within;
        while Instant::now() < end {
            let mut chunk = [0u8; 65536];
            self.s
                .set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            match self.s.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return true,
            }
        }
        false
    }
}

/// A reply to `d` carrying its request id.
pub fn reply_to(d: &ringgate::link::proto::Deliver, payload: &[u8]) -> to_gate::Msg {
    to_gate::Msg::Push(Push {
        session_id: d.session_id,
        route: d.route,
        seq: d.seq,
        payload: bytes::Bytes::copy_from_slice(payload),
        ext: 0,
        request_id: d.request_id,
        ..Default::default()
    })
}
