//! The shard's links to backend nodes (gate side): connect, hello, ping,
//! reconnect with backoff, and the frames they carry.
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
//!
//! **Bounded.** What waits to be written to a link (the batch and the rest of
//! the send in flight) is [`Link::queued`]. Over `link.max_queued_bytes`,
//! requests get BUSY and events are dropped (counted; their seq shows the
//! gap); a node that lets more than twice that pile up (results of its own
//! calls, a snapshot aside) is not reading, and its link is closed.
//!
//! **Hung nodes.** While requests wait on a link, silence is suspicious: a
//! ping goes out after a quarter of `link.hang_timeout` without a byte from
//! the node, and after the whole of it the link is closed as hung, which
//! answers its waiting requests NODE_DOWN. An idle link only needs the
//! heartbeat rule (3 silent intervals).

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use bytes::BytesMut;
use prost::Message;

use super::ring::Owner;
use super::routes::{mix, RouteRules};
use super::{Shard, ShardStats};
use crate::link::proto::{
    to_gate, to_node, GateHello, NodeState, Ping, Pong, ToGate, ToGateBatch, ToNode,
};
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
    /// Current state.
    pub state: LinkState,
    /// The socket, while there is one.
    fd: Option<OwnedFd>,
    /// Bytes of an incomplete frame (lent to the ring while a read is in flight).
    rbuf: BytesMut,
    /// Messages waiting for the end of the loop turn.
    pub batch: BatchBuf,
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
    /// Routes the node answers, with their timeout in ms (0: the default).
    pub reply_routes: Vec<(i32, u32)>,
    /// Event kinds the node subscribed to, as bits `1 << EventKind`.
    pub events: u32,
    /// Names the node gave its routes (for MQTT topics), sorted by route.
    pub names: Vec<(i32, String)>,
    /// The id the node announced.
    pub node_id: String,
    /// Hash of the node's identity (its id, else its address), for `uid-hash`.
    pub id_hash: u64,
    /// Its share under `wrr` (at least 1).
    pub weight: u32,
    /// The node's state (due's work / busy / hang / shut).
    pub node_state: NodeState,
    /// Access rules of its routes, sorted by route.
    pub rules: Vec<(i32, RouteRules)>,
    /// Bytes of the send in flight not yet written.
    inflight_bytes: usize,
    /// Bytes of snapshots queued, allowed on top of the overflow limit
    /// until the queue is empty again.
    grace_bytes: usize,
    /// Since when the link has had requests waiting (valid while it has).
    pub(super) busy_since: Millis,
    /// A hang probe was sent after the node's last sign of life.
    probed: bool,
    /// The node table wants this link (false: the node left the registry,
    /// or a reload removed it from `[[nodes]]`; the link is closed and not
    /// redialed).
    pub wanted: bool,
}

impl Link {
    /// A link to `addr`, down and due for its first attempt.
    pub fn new(addr: SocketAddr, max_frame: usize) -> Self {
        Link {
            addr,
            state: LinkState::Down { retry_at: 0 },
            fd: None,
            rbuf: BytesMut::new(),
            batch: BatchBuf::new(max_frame),
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
            reply_routes: Vec::new(),
            events: 0,
            names: Vec::new(),
            node_id: String::new(),
            id_hash: 0,
            weight: 1,
            node_state: NodeState::Work,
            rules: Vec::new(),
            inflight_bytes: 0,
            grace_bytes: 0,
            busy_since: 0,
            probed: false,
            wanted: true,
        }
    }

    /// Bytes waiting to be written: the batch and the rest of the send in flight.
    pub fn queued(&self) -> usize {
        self.batch.len() + self.inflight_bytes
    }

    /// The name the node gave `route`, if any.
    pub fn name_of(&self, route: i32) -> Option<&str> {
        let i = self.names.binary_search_by_key(&route, |(r, _)| *r).ok()?;
        Some(&self.names[i].1)
    }

    /// Allows `bytes` of snapshot beyond the overflow limit until the queue drains.
    pub(super) fn allow_burst(&mut self, bytes: usize) {
        self.grace_bytes += bytes;
    }

    /// The access rules the node gave `route`.
    pub fn rules_of(&self, route: i32) -> RouteRules {
        match self.rules.binary_search_by_key(&route, |(r, _)| *r) {
            Ok(i) => self.rules[i].1,
            Err(_) => RouteRules::default(),
        }
    }

    /// The node's state tier for stateless requests: 0 `work`, 1 `busy`,
    /// 2 `hang` or `shut` (none).
    pub fn tier(&self) -> u8 {
        match self.node_state {
            NodeState::Work => 0,
            NodeState::Busy => 1,
            NodeState::Hang | NodeState::Shut => 2,
        }
    }

    /// Nothing waits to be written (or the link is not up to write it).
    pub fn is_written(&self) -> bool {
        !self.is_active() || (self.queued() == 0 && !self.send_inflight)
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

    fn raw_fd(&self) -> i32 {
        self.fd.as_ref().map_or(-1, AsRawFd::as_raw_fd)
    }
}

impl Shard {
    /// Connect attempts, handshake and silence timeouts, pings. Runs every turn.
    pub(super) fn link_housekeeping(&mut self) {
        let now = self.now;
        let hb = self.p.link.heartbeat_interval.as_millis() as Millis;
        let hang = self.p.link.hang_timeout.as_millis() as Millis;
        for i in 0..self.links.len() {
            if hang > 0 && self.links[i].is_active() && self.pending.on_link(i) > 0 {
                let l = &mut self.links[i];
                let silent_for = now.saturating_sub(l.last_rx.max(l.busy_since));
                if silent_for >= hang {
                    ShardStats::add(&self.stats().links_hung, 1);
                    self.link_down_owned(
                        i,
                        format!(
                            "node hung: silent for {silent_for} ms with {} requests waiting",
                            self.pending.on_link(i)
                        ),
                    );
                    continue;
                }
                if silent_for >= (hang / 4).max(1) && !l.probed {
                    l.probed = true;
                    l.last_ping = now;
                    l.batch.push(&ToNode {
                        msg: Some(to_node::Msg::Ping(Ping { nonce: now })),
                    });
                }
            }
            match self.links[i].state {
                LinkState::Down { retry_at }
                    if now >= retry_at && !self.stopping && self.links[i].wanted =>
                {
                    self.start_connect(i)
                }
                LinkState::Connecting { deadline }
                    if now >= deadline && self.links[i].connect_inflight =>
                {
                    self.ring.cancel_fd(self.links[i].raw_fd());
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
        let addr = self.links[i].addr;
        // A node on this host may be reached over its Unix socket instead.
        let (sock, to) = match self.shared.nodes.unix_path(addr) {
            Some(path) => (
                socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM.cloexec(), None),
                socket2::SockAddr::unix(&*path),
            ),
            None => (super::listener::tcp_socket(addr), Ok(addr.into())),
        };
        let (sock, to) = match sock.and_then(|s| Ok((s, to?))) {
            Ok(s) => s,
            Err(err) => {
                tracing::warn!(shard = self.p.id.0, node = %addr, %err, "cannot create a link socket");
                self.schedule_retry(i);
                return;
            }
        };
        if to.is_ipv4() || to.is_ipv6() {
            let _ = sock.set_tcp_nodelay(true);
        }
        let deadline = self.now + self.p.link.connect_timeout.as_millis() as Millis;
        let l = &mut self.links[i];
        l.state = LinkState::Connecting { deadline };
        l.connect_inflight = true;
        let fd = OwnedFd::from(sock);
        self.ring.connect(fd.as_raw_fd(), to, i);
        l.fd = Some(fd);
    }

    /// Follows the shared node table: links to new nodes, closes those
    /// whose node left the registry or `[[nodes]]` (answering their waiting
    /// requests NODE_DOWN and forgetting their routes), redials those that
    /// came back. Cheap when nothing changed (one atomic load).
    pub(super) fn apply_node_table(&mut self) {
        let version = self.shared.nodes.version();
        if version == self.nodes_version {
            return;
        }
        self.nodes_version = version;
        let slots = self.shared.nodes.slots();
        let mut changed = false;
        for (i, s) in slots.iter().enumerate() {
            if i == self.links.len() {
                self.links
                    .push(Link::new(s.addr, self.p.link.max_frame_bytes));
                tracing::debug!(shard = self.p.id.0, node = %s.addr, link = i, "new node link");
            }
            let l = &mut self.links[i];
            if l.wanted == s.wanted {
                continue;
            }
            l.wanted = s.wanted;
            if s.wanted {
                l.backoff = 0;
                if let LinkState::Down { .. } = l.state {
                    l.state = LinkState::Down { retry_at: self.now };
                }
                continue;
            }
            tracing::info!(shard = self.p.id.0, node = %l.addr, service = %l.service, "node withdrawn (left the registry or [[nodes]]); closing its link");
            l.routes.clear();
            l.reply_routes.clear();
            l.names.clear();
            l.rules.clear();
            changed = true;
            self.link_down(i, "node withdrawn");
        }
        if changed {
            self.rebuild_routes();
        }
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
            l.fd = None;
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
            epoch_ms: self.shared.epoch_ms,
            request_timeout_ms: u32::try_from(self.p.link.request_timeout.as_millis())
                .unwrap_or(u32::MAX),
        };
        l.batch.push(&ToNode {
            msg: Some(to_node::Msg::Hello(hello)),
        });
        self.arm_link_recv(i);
    }

    fn arm_link_recv(&mut self, i: usize) {
        let l = &mut self.links[i];
        if l.recv_inflight || l.fd.is_none() {
            return;
        }
        let mut buf = std::mem::take(&mut l.rbuf);
        buf.reserve(LINK_READ);
        l.recv_inflight = true;
        self.ring.recv(l.raw_fd(), buf, i);
    }

    pub(super) fn on_link_recv(&mut self, i: usize, res: i32, buf: BytesMut) {
        let l = &mut self.links[i];
        l.recv_inflight = false;
        l.rbuf = buf;
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
        l.last_rx = self.now;
        l.probed = false;
        if self.decode_link_frames(i) {
            self.arm_link_recv(i);
        }
    }

    /// Handles every complete frame in the link's buffer; false if the link went down.
    fn decode_link_frames(&mut self, i: usize) -> bool {
        loop {
            let l = &mut self.links[i];
            match decode_frame(&mut l.rbuf, l.max_frame) {
                Ok(Some(frame)) => match ToGateBatch::decode(frame) {
                    Ok(batch) => {
                        ShardStats::add(&self.stats().from_node, batch.msgs.len() as u64);
                        for m in batch.msgs {
                            if let Err(why) = self.on_node_msg(i, m) {
                                self.link_down(i, why);
                                return false;
                            }
                        }
                    }
                    Err(e) => {
                        self.link_down_owned(i, format!("bad batch from node: {e}"));
                        return false;
                    }
                },
                Ok(None) => return true,
                Err(e) => {
                    self.link_down_owned(i, e.to_string());
                    return false;
                }
            }
        }
    }

    fn on_node_msg(&mut self, i: usize, m: ToGate) -> Result<(), &'static str> {
        match m.msg {
            Some(to_gate::Msg::Push(p)) => {
                if !self.links[i].is_active() {
                    return Err("push before hello");
                }
                self.on_node_push(i, p);
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
            Some(to_gate::Msg::State(st)) => {
                let l = &mut self.links[i];
                if !l.is_active() {
                    return Err("state before hello");
                }
                let state = st.state();
                if l.node_state != state {
                    tracing::info!(shard = self.p.id.0, node = %l.addr, node_id = %l.node_id, from = ?l.node_state, to = ?state, "node changed state");
                    l.node_state = state;
                }
            }
            Some(to_gate::Msg::Hello(h)) => {
                let l = &self.links[i];
                if !matches!(l.state, LinkState::Handshake { .. }) {
                    return Err("node sent a second hello");
                }
                if h.version != PROTOCOL_VERSION {
                    tracing::error!(node = %l.addr, version = h.version, ours = PROTOCOL_VERSION, "node speaks another protocol version");
                    return Err("protocol version mismatch");
                }
                if let Some(other) = self.links.iter().find(|o| {
                    !h.node_id.is_empty()
                        && o.is_active()
                        && o.addr != l.addr
                        && o.node_id == h.node_id
                }) {
                    tracing::error!(node = %l.addr, node_id = %h.node_id, other = %other.addr, "two nodes announce the same node_id; refusing the second");
                    return Err("node_id already used by a node at another address");
                }
                let l = &mut self.links[i];
                if h.max_frame_bytes > 0 {
                    // Batch below what the node accepts (and below our own limit).
                    l.batch
                        .set_frame_limit(l.max_frame.min(h.max_frame_bytes as usize));
                }
                l.state = LinkState::Active;
                l.backoff = 0;
                l.failures = 0;
                l.node_state = h.state();
                l.service = h.service;
                l.node_id = h.node_id;
                l.id_hash = id_hash(&l.node_id, l.addr);
                l.weight = h.weight.max(1);
                l.rules = (h.route_flags.iter())
                    .map(|f| {
                        let r = RouteRules {
                            authorized: f.authorized,
                            internal: f.internal,
                            stateful: f.stateful,
                        };
                        (f.route, r)
                    })
                    .collect();
                l.rules.sort_unstable_by_key(|(r, _)| *r);
                l.routes = h.routes;
                l.reply_routes = h
                    .reply_routes
                    .iter()
                    .map(|r| (r.route, r.timeout_ms))
                    .collect();
                l.names = h.route_names.into_iter().map(|(n, r)| (r, n)).collect();
                l.names.sort_unstable();
                l.events = h
                    .events
                    .iter()
                    .filter(|k| (0..32).contains(*k))
                    .fold(0, |m, k| m | 1 << k);
                ShardStats::add(&self.shared.stats[self.p.id.0 as usize].links_up, 1);
                tracing::info!(shard = self.p.id.0, node = %l.addr, service = %l.service, node_id = %l.node_id, routes = ?l.routes, reply_routes = ?l.reply_routes, "node link up");
                self.rebuild_routes();
                if h.snapshot {
                    self.write_snapshot(i, 0);
                }
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
        // Messages not yet written are lost with the link. Requests waiting
        // for this node's reply are answered NODE_DOWN now; the next ones
        // go to another node of the route, or get NODE_DOWN too.
        let _ = l.batch.take();
        l.grace_bytes = 0;
        self.fail_waiting(i);
        let l = &mut self.links[i];
        if let Some(fd) = &l.fd {
            let _ = socket2::SockRef::from(fd).shutdown(std::net::Shutdown::Both);
            if l.connect_inflight {
                self.ring.cancel_fd(fd.as_raw_fd());
            }
        }
        self.finish_close(i);
    }

    fn finish_close(&mut self, i: usize) {
        let l = &mut self.links[i];
        if l.state != LinkState::Closing || l.ops_inflight() {
            return;
        }
        l.inflight_bytes = 0;
        l.fd = None; // closes the socket: no operation on it is in flight
        l.rbuf = BytesMut::new();
        self.schedule_retry(i);
    }

    pub(super) fn flush_link(&mut self, i: usize) {
        let l = &mut self.links[i];
        let hard = 2 * self.p.link.max_queued_bytes + l.grace_bytes;
        if l.is_active() && l.queued() > hard {
            let queued = l.queued();
            self.link_down_owned(
                i,
                format!("node is not reading: {queued} bytes queued, limit {hard}"),
            );
            return;
        }
        if l.send_inflight
            || l.batch.is_empty()
            || !matches!(l.state, LinkState::Active | LinkState::Handshake { .. })
        {
            return;
        }
        l.send_inflight = true;
        let buf = l.batch.take();
        l.inflight_bytes = buf.len();
        self.ring.send(l.raw_fd(), buf, 0, Owner::Link(i));
    }

    pub(super) fn on_link_send(&mut self, i: usize, res: i32, buf: BytesMut, off: usize) {
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
        let off = off + res as usize;
        l.inflight_bytes = buf.len() - off;
        if off < buf.len() {
            l.send_inflight = true;
            self.ring.send(l.raw_fd(), buf, off, Owner::Link(i));
        } else if l.batch.is_empty() {
            l.grace_bytes = 0;
        }
    }
}

/// A stable hash of a node's identity: its id, or its address if it gave
/// none (FNV-1a, then mixed), the same in every shard and every gate.
fn id_hash(node_id: &str, addr: SocketAddr) -> u64 {
    let fnv = |bytes: &[u8]| {
        (bytes.iter()).fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
        })
    };
    if node_id.is_empty() {
        mix(fnv(addr.to_string().as_bytes()))
    } else {
        mix(fnv(node_id.as_bytes()))
    }
}
