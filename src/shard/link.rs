//! The shard's links to backend nodes (gate side) and its route table.
//!
//! Each shard dials every configured node once. A link's life:
//!
//! ```text
//!  Down ──retry_at──▶ Connecting ──ok──▶ Handshake ──NodeHello──▶ Active
//!   ▲                     │ fail/timeout      │ timeout              │ EOF, error,
//!   └──── backoff ◀───────┴───────────────────┴──── Closing ◀────────┘ silence
//! ```
//! Messages for a node are appended to the link's [`BatchBuf`] during a loop
//! turn and written with one send at the end of it. Replies arrive as batches
//! and are queued on their connections.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::os::fd::RawFd;

use bytes::BytesMut;
use io_uring::{opcode, types};
use prost::Message;

use super::ops::{pack, Op};
use super::{Shard, ShardStats};
use crate::codec::ext;
use crate::ids::SessionId;
use crate::link::proto::{to_gate, to_node, GateHello, Ping, Pong, ToGate, ToGateBatch, ToNode};
use crate::link::{decode_frame, BatchBuf, PROTOCOL_VERSION};
use crate::session::Millis;

/// Bytes reserved for each link read.
const LINK_READ: usize = 64 * 1024;
/// A link silent for this many heartbeat intervals is closed.
const SILENT_INTERVALS: u64 = 3;

/// Where a link is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// No socket; the next connect attempt is due at `retry_at`.
    Down {
        /// When to try again.
        retry_at: Millis,
    },
    /// Connect in flight, abandoned at `deadline`.
    Connecting {
        /// Connect timeout.
        deadline: Millis,
    },
    /// Connected, our hello sent, waiting for the node's hello until `deadline`.
    Handshake {
        /// Handshake timeout.
        deadline: Millis,
    },
    /// Serving.
    Active,
    /// Shut down; waiting for in-flight operations before closing the socket.
    Closing,
}

/// One link from this shard to one node.
pub struct Link {
    /// The node's address.
    pub addr: SocketAddr,
    sockaddr: Box<socket2::SockAddr>,
    /// Current state.
    pub state: LinkState,
    fd: RawFd,
    rbuf: BytesMut,
    /// Messages waiting for the end of the loop turn.
    pub batch: BatchBuf,
    sending: BytesMut,
    sent: usize,
    connect_inflight: bool,
    recv_inflight: bool,
    send_inflight: bool,
    last_rx: Millis,
    last_ping: Millis,
    backoff: Millis,
    failures: u32,
    max_frame: usize,
    /// Service the node announced.
    pub service: String,
    /// Routes the node announced (kept while it is down, so requests get "node down").
    pub routes: Vec<i32>,
    /// Event kinds the node subscribed to, as bits `1 << EventKind`.
    pub events: u32,
}

impl Link {
    /// A link to `addr`, down and due for its first attempt.
    pub fn new(addr: SocketAddr, max_frame: usize) -> Self {
        Link {
            addr,
            sockaddr: Box::new(addr.into()),
            state: LinkState::Down { retry_at: 0 },
            fd: -1,
            rbuf: BytesMut::new(),
            batch: BatchBuf::new(max_frame),
            sending: BytesMut::new(),
            sent: 0,
            connect_inflight: false,
            recv_inflight: false,
            send_inflight: false,
            last_rx: 0,
            last_ping: 0,
            backoff: 0,
            failures: 0,
            max_frame,
            service: String::new(),
            routes: Vec::new(),
            events: 0,
        }
    }

    /// Serving requests.
    pub fn is_active(&self) -> bool {
        self.state == LinkState::Active
    }

    /// No socket and no operation in flight.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, LinkState::Down { .. })
    }

    fn ops_inflight(&self) -> bool {
        self.connect_inflight || self.recv_inflight || self.send_inflight
    }
}

/// A multiplicative hasher for small integer keys (routes): the default
/// SipHash costs more than the rest of a route lookup.
#[derive(Default)]
pub struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_i32(&mut self, n: i32) {
        self.0 = (n as u32 as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

struct RouteEntry {
    links: Vec<usize>,
    next: usize,
}

/// Route → the links whose nodes announced it.
#[derive(Default)]
pub struct RouteTable {
    map: HashMap<i32, RouteEntry, BuildHasherDefault<IntHasher>>,
}

impl RouteTable {
    /// Rebuilds the table from what every link's node announced.
    pub fn rebuild(&mut self, links: &[Link]) {
        self.map.clear();
        for (i, l) in links.iter().enumerate() {
            for r in &l.routes {
                self.map
                    .entry(*r)
                    .or_insert_with(|| RouteEntry {
                        links: Vec::new(),
                        next: 0,
                    })
                    .links
                    .push(i);
            }
        }
    }

    /// An active link serving `route` (round robin), or the error code for the client.
    pub fn pick(&mut self, route: i32, links: &[Link]) -> Result<usize, u8> {
        let e = self.map.get_mut(&route).ok_or(ext::NO_ROUTE)?;
        let n = e.links.len();
        for k in 0..n {
            let i = e.links[(e.next + k) % n];
            if links[i].is_active() {
                e.next = (e.next + k + 1) % n;
                return Ok(i);
            }
        }
        Err(ext::NODE_DOWN)
    }
}

impl Shard {
    /// Connect attempts, handshake and silence timeouts, pings. Runs every turn.
    pub(super) fn link_housekeeping(&mut self) {
        let now = self.now;
        let hb = self.p.link.heartbeat_interval.as_millis() as Millis;
        for i in 0..self.links.len() {
            match self.links[i].state {
                LinkState::Down { retry_at } if now >= retry_at && !self.stopping => {
                    self.start_connect(i)
                }
                LinkState::Connecting { deadline }
                    if now >= deadline && self.links[i].connect_inflight =>
                {
                    let e = opcode::AsyncCancel::new(pack(Op::LinkConnect, i as u32))
                        .build()
                        .user_data(pack(Op::Cancel, i as u32));
                    // SAFETY: a cancel references no memory of ours.
                    unsafe { self.push(&e) };
                    self.links[i].state = LinkState::Connecting {
                        deadline: Millis::MAX,
                    };
                }
                LinkState::Handshake { deadline } if now >= deadline => {
                    self.link_down(i, "node sent no hello in time")
                }
                LinkState::Active if hb > 0 => {
                    let l = &mut self.links[i];
                    if now.saturating_sub(l.last_rx) > SILENT_INTERVALS * hb {
                        self.link_down(i, "node silent for 3 heartbeat intervals");
                    } else if now.saturating_sub(l.last_ping) >= hb {
                        l.last_ping = now;
                        l.batch.push(&ToNode {
                            msg: Some(to_node::Msg::Ping(Ping { nonce: now })),
                        });
                    }
                }
                _ => {}
            }
        }
    }

    fn start_connect(&mut self, i: usize) {
        // SAFETY: plain socket(2) call; the result is checked.
        let fd = unsafe {
            libc::socket(
                if self.links[i].addr.is_ipv4() {
                    libc::AF_INET
                } else {
                    libc::AF_INET6
                },
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if fd < 0 {
            let err = std::io::Error::last_os_error();
            tracing::warn!(shard = self.p.id.0, node = %self.links[i].addr, %err, "cannot create a link socket");
            self.schedule_retry(i);
            return;
        }
        super::conn::set_nodelay(fd);
        let deadline = self.now + self.p.link.connect_timeout.as_millis() as Millis;
        let l = &mut self.links[i];
        l.fd = fd;
        l.state = LinkState::Connecting { deadline };
        l.connect_inflight = true;
        let e = opcode::Connect::new(types::Fd(fd), l.sockaddr.as_ptr().cast(), l.sockaddr.len())
            .build()
            .user_data(pack(Op::LinkConnect, i as u32));
        // SAFETY: the address lives in a Box owned by the link, which lives as
        // long as the shard; it is never modified.
        unsafe { self.push(&e) };
    }

    fn schedule_retry(&mut self, i: usize) {
        let (min, max) = (
            self.p.link.reconnect_min.as_millis() as Millis,
            self.p.link.reconnect_max.as_millis() as Millis,
        );
        let l = &mut self.links[i];
        l.backoff = if l.backoff == 0 {
            min
        } else {
            (l.backoff * 2).min(max)
        };
        l.state = LinkState::Down {
            retry_at: self.now + l.backoff,
        };
    }

    pub(super) fn on_link_connect(&mut self, i: usize, res: i32) {
        let l = &mut self.links[i];
        l.connect_inflight = false;
        if l.state == LinkState::Closing {
            self.finish_close(i);
            return;
        }
        if res < 0 {
            let err = std::io::Error::from_raw_os_error(-res);
            l.failures += 1;
            ShardStats::add(&self.shared.stats[self.p.id.0 as usize].link_failures, 1);
            if l.failures == 1 {
                tracing::warn!(shard = self.p.id.0, node = %l.addr, %err, "cannot reach node; retrying with backoff");
            } else {
                tracing::debug!(shard = self.p.id.0, node = %l.addr, %err, attempt = l.failures, "node still unreachable");
            }
            close_link_fd(l);
            self.schedule_retry(i);
            return;
        }
        let deadline = self.now + self.p.link.connect_timeout.as_millis() as Millis;
        l.state = LinkState::Handshake { deadline };
        l.last_rx = self.now;
        l.last_ping = self.now;
        let hello = GateHello {
            gate_id: self.p.gate_id.clone(),
            shard: u32::from(self.p.id.0),
            shards: u32::from(self.p.shards),
            version: PROTOCOL_VERSION,
            max_frame_bytes: u32::try_from(self.p.link.max_frame_bytes).unwrap_or(u32::MAX),
        };
        l.batch.push(&ToNode {
            msg: Some(to_node::Msg::Hello(hello)),
        });
        self.arm_link_recv(i);
    }

    fn arm_link_recv(&mut self, i: usize) {
        let l = &mut self.links[i];
        if l.recv_inflight || l.fd < 0 {
            return;
        }
        l.rbuf.reserve(LINK_READ);
        let spare = l.rbuf.spare_capacity_mut();
        let (ptr, len) = (spare.as_mut_ptr().cast::<u8>(), spare.len() as u32);
        l.recv_inflight = true;
        let e = opcode::Recv::new(types::Fd(l.fd), ptr, len)
            .build()
            .user_data(pack(Op::LinkRecv, i as u32));
        // SAFETY: the spare capacity of `rbuf` belongs to the link, which is
        // never freed; `rbuf` is not read, grown or moved while `recv_inflight`.
        unsafe { self.push(&e) };
    }

    pub(super) fn on_link_recv(&mut self, i: usize, res: i32) {
        let l = &mut self.links[i];
        l.recv_inflight = false;
        if l.state == LinkState::Closing {
            self.finish_close(i);
            return;
        }
        if res <= 0 {
            let why = if res == 0 {
                "node closed the link".to_string()
            } else {
                std::io::Error::from_raw_os_error(-res).to_string()
            };
            self.link_down_owned(i, why);
            return;
        }
        // SAFETY: the kernel wrote `res` bytes into the spare capacity we passed.
        unsafe { l.rbuf.set_len(l.rbuf.len() + res as usize) };
        l.last_rx = self.now;
        loop {
            let l = &mut self.links[i];
            match decode_frame(&mut l.rbuf, l.max_frame) {
                Ok(Some(frame)) => match ToGateBatch::decode(frame) {
                    Ok(batch) => {
                        ShardStats::add(&self.stats().from_node, batch.msgs.len() as u64);
                        for m in batch.msgs {
                            if let Err(why) = self.on_node_msg(i, m) {
                                self.link_down(i, why);
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        self.link_down_owned(i, format!("bad batch from node: {e}"));
                        return;
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    self.link_down_owned(i, e.to_string());
                    return;
                }
            }
        }
        self.arm_link_recv(i);
    }

    fn on_node_msg(&mut self, i: usize, m: ToGate) -> Result<(), &'static str> {
        match m.msg {
            Some(to_gate::Msg::Push(p)) => {
                let sid = SessionId(p.session_id);
                if sid.shard() != self.p.id {
                    ShardStats::add(&self.stats().push_misses, 1);
                    tracing::debug!(session = %sid, shard = self.p.id.0, "push for another shard's session on this link");
                    return Ok(());
                }
                self.deliver_push(sid, p.ext, p.route, p.seq, &p.payload);
            }
            Some(to_gate::Msg::Ping(p)) => {
                self.links[i].batch.push(&ToNode {
                    msg: Some(to_node::Msg::Pong(Pong { nonce: p.nonce })),
                });
            }
            Some(to_gate::Msg::Pong(_)) => {}
            Some(to_gate::Msg::Call(c)) => {
                if !self.links[i].is_active() {
                    return Err("call before hello");
                }
                self.on_call(i, c);
            }
            Some(to_gate::Msg::Hello(h)) => {
                let l = &mut self.links[i];
                if !matches!(l.state, LinkState::Handshake { .. }) {
                    return Err("node sent a second hello");
                }
                if h.version != PROTOCOL_VERSION {
                    tracing::error!(node = %l.addr, version = h.version, ours = PROTOCOL_VERSION, "node speaks another protocol version");
                    return Err("protocol version mismatch");
                }
                if h.max_frame_bytes > 0 {
                    // Batch below what the node accepts (and below our own limit).
                    l.batch
                        .set_frame_limit(l.max_frame.min(h.max_frame_bytes as usize));
                }
                l.state = LinkState::Active;
                l.backoff = 0;
                l.failures = 0;
                l.service = h.service;
                l.routes = h.routes;
                l.events = h
                    .events
                    .iter()
                    .filter(|k| (0..32).contains(*k))
                    .fold(0, |m, k| m | 1 << k);
                ShardStats::add(&self.shared.stats[self.p.id.0 as usize].links_up, 1);
                tracing::info!(shard = self.p.id.0, node = %l.addr, service = %l.service, node_id = %h.node_id, routes = ?l.routes, "node link up");
                self.routes.rebuild(&self.links);
            }
            None => return Err("empty message from node"),
        }
        Ok(())
    }

    fn link_down_owned(&mut self, i: usize, why: String) {
        self.link_down_inner(i, &why);
    }

    /// Takes a link down: shuts its socket so in-flight operations complete,
    /// then reconnects after a backoff.
    pub(super) fn link_down(&mut self, i: usize, why: &'static str) {
        self.link_down_inner(i, why);
    }

    fn link_down_inner(&mut self, i: usize, why: &str) {
        let l = &mut self.links[i];
        match l.state {
            LinkState::Down { .. } | LinkState::Closing => return,
            LinkState::Active => {
                let st = &self.shared.stats[self.p.id.0 as usize];
                st.links_up
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                ShardStats::add(&st.link_drops, 1);
                tracing::warn!(shard = self.p.id.0, node = %l.addr, service = %l.service, reason = why, "node link down");
            }
            _ => {
                tracing::debug!(shard = self.p.id.0, node = %l.addr, reason = why, "node link closed before it was up")
            }
        }
        l.state = LinkState::Closing;
        // Messages not yet written are lost with the link; their clients get
        // "node down" replies on their next requests.
        let _ = l.batch.take();
        // SAFETY: shutting down our own socket; it stays open until finish_close.
        unsafe { libc::shutdown(l.fd, libc::SHUT_RDWR) };
        if l.connect_inflight {
            let e = opcode::AsyncCancel::new(pack(Op::LinkConnect, i as u32))
                .build()
                .user_data(pack(Op::Cancel, i as u32));
            // SAFETY: a cancel references no memory of ours.
            unsafe { self.push(&e) };
        }
        self.finish_close(i);
    }

    fn finish_close(&mut self, i: usize) {
        let l = &mut self.links[i];
        if l.state != LinkState::Closing || l.ops_inflight() {
            return;
        }
        close_link_fd(l);
        l.rbuf = BytesMut::new();
        l.sending = BytesMut::new();
        l.sent = 0;
        self.schedule_retry(i);
    }

    pub(super) fn flush_link(&mut self, i: usize) {
        let l = &mut self.links[i];
        if l.send_inflight
            || l.batch.is_empty()
            || !matches!(l.state, LinkState::Active | LinkState::Handshake { .. })
        {
            return;
        }
        l.sending = l.batch.take();
        l.sent = 0;
        self.submit_link_send(i);
    }

    fn submit_link_send(&mut self, i: usize) {
        let l = &mut self.links[i];
        l.send_inflight = true;
        let buf = &l.sending[l.sent..];
        let e = opcode::Send::new(types::Fd(l.fd), buf.as_ptr(), buf.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(pack(Op::LinkSend, i as u32));
        // SAFETY: `sending` belongs to the link (never freed) and is not
        // touched until this send completes (new messages go to `batch`).
        unsafe { self.push(&e) };
    }

    pub(super) fn on_link_send(&mut self, i: usize, res: i32) {
        let l = &mut self.links[i];
        l.send_inflight = false;
        if l.state == LinkState::Closing {
            self.finish_close(i);
            return;
        }
        if res < 0 {
            self.link_down_owned(i, std::io::Error::from_raw_os_error(-res).to_string());
            return;
        }
        l.sent += res as usize;
        if l.sent < l.sending.len() {
            self.submit_link_send(i);
        } else {
            l.sending.clear();
            l.sent = 0;
        }
    }
}

fn close_link_fd(l: &mut Link) {
    if l.fd >= 0 {
        // SAFETY: our socket, with no operation in flight.
        unsafe { libc::close(l.fd) };
        l.fd = -1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(routes: &[i32], active: bool) -> Link {
        let mut l = Link::new("127.0.0.1:1".parse().unwrap(), 1 << 20);
        l.routes = routes.to_vec();
        if active {
            l.state = LinkState::Active;
        }
        l
    }

    #[test]
    fn pick_round_robins_active_links_and_reports_why_not() {
        let links = vec![link(&[1, 2], true), link(&[1], true), link(&[3], false)];
        let mut t = RouteTable::default();
        t.rebuild(&links);
        let picks: Vec<_> = (0..4).map(|_| t.pick(1, &links).unwrap()).collect();
        assert_eq!(picks, vec![0, 1, 0, 1]);
        assert_eq!(t.pick(2, &links), Ok(0));
        assert_eq!(t.pick(3, &links), Err(ext::NODE_DOWN));
        assert_eq!(t.pick(4, &links), Err(ext::NO_ROUTE));
    }
}
