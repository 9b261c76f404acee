//! The `Echo` service played on the raw link protocol (the scripted node
//! of `tests/common/scripted.rs`; no node SDK): it listens, the gate dials
//! it once per shard, and one thread answers every link.
//!
//! | name | route | what the node does |
//! |---|---|---|
//! | `HD_Echo` | 1 | request: JSON `{"topic","body"}`; notification: a push on `Echo/OnNotify` with the payload; due client (no topic): the payload back |
//! | `HD_Bytes` | 2 | bytes `00 01 ff "bin"`, format BYTES |
//! | `HD_Raw` | 3 | `"raw:" + payload`, format RAW |
//! | `HD_Push` | 4 | a push on `Echo/OnPush` (`push-body`), then `"pushed"`, format STRING |
//! | `HD_Slow` | 5 | nothing, ever |
//! | `HD_Err` | 6 | error `boom` |
//! | `HD_Broadcast` | 7 | a Broadcast call: the payload on `Echo/OnBroadcast` to every session |
//! | `HD_Log` | 8 | nothing (only recorded) |

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use ringgate::link::proto::{call, to_gate, to_node, Broadcast, Call, Deliver, Push, ResultFormat};

use crate::common::scripted::{Announce, NodeLink, ScriptedNode};

pub const SERVICE: &str = "Echo";
pub const NAMES: [(&str, i32); 8] = [
    ("HD_Echo", 1),
    ("HD_Bytes", 2),
    ("HD_Raw", 3),
    ("HD_Push", 4),
    ("HD_Slow", 5),
    ("HD_Err", 6),
    ("HD_Broadcast", 7),
    ("HD_Log", 8),
];
pub const BYTES_REPLY: &[u8] = b"\x00\x01\xffbin";

/// A Deliver as the node saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub topic: String,
    pub payload: Bytes,
    pub request_id: u64,
}

pub struct EchoNode {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    listener: Option<ScriptedNode>,
}

impl EchoNode {
    pub fn bind() -> EchoNode {
        let listener = ScriptedNode::bind();
        EchoNode {
            addr: listener.addr,
            seen: Arc::default(),
            stop: Arc::default(),
            thread: None,
            listener: Some(listener),
        }
    }

    /// Accepts `links` links (one per shard) in a thread, then serves them.
    pub fn serve(&mut self, links: usize) {
        let listener = self.listener.take().unwrap();
        let (seen, stop) = (self.seen.clone(), self.stop.clone());
        self.thread = Some(std::thread::spawn(move || {
            let announce = Announce {
                service: SERVICE.into(),
                node_id: "echo-1".into(),
                routes: NAMES.iter().map(|&(_, r)| r).collect(),
                route_names: NAMES.iter().map(|&(n, r)| (n.into(), r)).collect(),
                ..Default::default()
            };
            let mut ls: Vec<NodeLink> = (0..links).map(|_| listener.accept(&announce)).collect();
            while !stop.load(Ordering::Relaxed) {
                for l in &mut ls {
                    while let Some(m) = l.next(Duration::from_millis(2)) {
                        if let to_node::Msg::Deliver(d) = m {
                            let out = answer(&d);
                            seen.lock().unwrap().push(Seen {
                                topic: d.topic.clone(),
                                payload: d.payload.clone(),
                                request_id: d.request_id,
                            });
                            if !out.is_empty() {
                                l.send(&out);
                            }
                        }
                    }
                }
            }
        }));
    }

    /// The Delivers seen so far for `topic`.
    pub fn seen_on(&self, topic: &str) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap();
        seen.iter().filter(|s| s.topic == topic).cloned().collect()
    }
}

impl Drop for EchoNode {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn push(d: &Deliver, payload: &[u8]) -> Push {
    Push {
        session_id: d.session_id,
        route: d.route,
        seq: d.seq,
        payload: Bytes::copy_from_slice(payload),
        request_id: d.request_id,
        ..Default::default()
    }
}

fn reply(d: &Deliver, payload: &[u8], format: ResultFormat) -> to_gate::Msg {
    to_gate::Msg::Push(Push {
        format: format as i32,
        ..push(d, payload)
    })
}

fn answer(d: &Deliver) -> Vec<to_gate::Msg> {
    let body = String::from_utf8_lossy(&d.payload).into_owned();
    match d.route {
        1 if d.topic.is_empty() => vec![to_gate::Msg::Push(push(d, &d.payload))],
        1 if d.request_id == 0 => vec![to_gate::Msg::Push(Push {
            topic: "Echo/OnNotify".into(),
            request_id: 0,
            ..push(d, &d.payload)
        })],
        1 => {
            let j = serde_json::json!({ "topic": d.topic, "body": body });
            vec![reply(d, j.to_string().as_bytes(), ResultFormat::ResultJson)]
        }
        2 => vec![reply(d, BYTES_REPLY, ResultFormat::ResultBytes)],
        3 => {
            let mut p = b"raw:".to_vec();
            p.extend_from_slice(&d.payload);
            vec![reply(d, &p, ResultFormat::ResultRaw)]
        }
        4 => vec![
            to_gate::Msg::Push(Push {
                topic: "Echo/OnPush".into(),
                request_id: 0,
                ..push(d, b"push-body")
            }),
            reply(d, b"pushed", ResultFormat::ResultString),
        ],
        6 => vec![to_gate::Msg::Push(Push {
            error: "boom".into(),
            ..push(d, b"")
        })],
        7 => vec![to_gate::Msg::Call(Call {
            call_id: 1,
            op: Some(call::Op::Broadcast(Broadcast {
                route: 7,
                payload: d.payload.clone(),
                topic: "Echo/OnBroadcast".into(),
                ..Default::default()
            })),
        })],
        _ => vec![],
    }
}
