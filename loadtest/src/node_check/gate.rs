//! The checker's gate: links to the node under test, and the little a gate
//! must remember to speak the protocol faithfully (sessions, event counters,
//! snapshots, request ids).
//!
//! Each link has a reader thread that only cuts frames and decodes batches
//! ([`In`] events on one channel for all links); everything else — writing,
//! answering the node's pings and calls, judging — happens on the caller's
//! thread, so the checks read like a script. The node is judged only by
//! what crosses the wire: this module uses the generated protocol types and
//! the framing helpers, never the node SDK.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use prost::Message;
use ringgate::config::DEFAULT_MAX_FRAME_BYTES;
use ringgate::link::proto::{
    call, to_gate, to_node, Call, CallResult, CloseReason, Code, Deliver, Event, EventKind,
    GateHello, NodeHello, Ping, Pong, SessionInfo, Snapshot, ToGateBatch, ToNode,
};
use ringgate::link::{decode_frame, BatchBuf, PROTOCOL_VERSION};

/// The largest frame the reader threads take in at all: a node announcing
/// more is broken, and the checker must not allocate whatever it claims.
/// Frames between the announced limit and this are read and reported.
const HARD_FRAME_CAP: usize = 64 << 20;

/// Sessions per page of the snapshots the checker writes: small, so that
/// a node with a few live sessions sees several pages.
pub(super) const SNAPSHOT_PAGE: usize = 2;

/// What a link's reader thread reports, in wire order.
#[derive(Debug)]
pub(super) enum In {
    /// One message of a batch.
    Msg(to_gate::Msg),
    /// A frame longer than the `max_frame_bytes` this link's GateHello
    /// announced (the frame was still decoded).
    OverLimit { len: usize, limit: usize },
    /// The node closed the link (EOF, or a reset).
    Eof(&'static str),
    /// The link is unusable: a frame that does not decode, an absurd
    /// length, an I/O error. The reader stops.
    Broken(String),
}

/// Frame counters of one link, kept by its reader thread.
#[derive(Debug, Default)]
pub(super) struct FrameStats {
    pub(super) frames: AtomicUsize,
    pub(super) largest: AtomicUsize,
}

/// One link to the node.
struct Link {
    stream: TcpStream,
    shard: u32,
    /// The node's hello, once received: the link is up.
    hello: Option<NodeHello>,
    /// EOF or a broken stream seen, or closed by the checker.
    down: bool,
    /// Closed by the checker: its later events are dropped.
    closed: bool,
    reader: Option<JoinHandle<()>>,
    stats: Arc<FrameStats>,
}

/// One live session of the checker's gate.
#[derive(Clone, Debug)]
struct Session {
    uid: i64,
    port: u32,
    /// Seq of the last Deliver sent for it.
    seq: i32,
}

/// A shard of the checker's gate: its event counters and live sessions.
#[derive(Debug, Default)]
struct Shard {
    /// Indexed by `EventKind`; index 0 unused.
    seqs: [u64; 5],
    live: BTreeMap<u64, Session>,
}

/// A Deliver the checker sent and what it expects back.
#[derive(Clone, Debug)]
pub(super) struct Expect {
    /// Link it was sent on.
    pub(super) link: usize,
    pub(super) session_id: u64,
    pub(super) route: i32,
    pub(super) seq: i32,
    /// Non-zero: a reply route's request, answered by exactly one Push
    /// carrying this id. Zero: a notification, answered by no Push with an id.
    pub(super) request_id: u64,
}

/// The checker's gate process: one `gate_id` and epoch for the whole run,
/// links opened and closed by the checks.
pub(super) struct Gate {
    addr: SocketAddr,
    pub(super) timeout: Duration,
    gate_id: String,
    epoch_ms: u64,
    shards: Vec<Shard>,
    /// Indexed by link id; ids are never reused within a run.
    links: Vec<Link>,
    tx: Sender<(usize, In)>,
    rx: Receiver<(usize, In)>,
    /// Events taken off the channel while waiting for another link's.
    stash: VecDeque<(usize, In)>,
    next_request: u64,
    next_session: u64,
    next_nonce: u64,
    /// Calls the node made (all answered when they asked for a result).
    pub(super) calls: usize,
    /// Pings the node sent after its hello (all answered).
    pub(super) node_pings: usize,
}

impl Gate {
    /// A gate of `shards` shards that dials `addr`; nothing is connected yet.
    pub(super) fn new(addr: SocketAddr, shards: u32, timeout: Duration) -> Gate {
        let (tx, rx) = channel();
        let epoch_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_millis() as u64);
        Gate {
            addr,
            timeout,
            gate_id: format!("node-check-{}", std::process::id()),
            epoch_ms,
            shards: (0..shards.max(1)).map(|_| Shard::default()).collect(),
            links: Vec::new(),
            tx,
            rx,
            stash: VecDeque::new(),
            next_request: 1,
            next_session: 1,
            // Above 2^53: a node that keeps nonces in a double echoes another number.
            next_nonce: 0xfedc_ba98_7654_3210,
            calls: 0,
            node_pings: 0,
        }
    }

    /// Shards of this gate (GateHello.shards).
    pub(super) fn shard_count(&self) -> u32 {
        self.shards.len() as u32
    }

    /// A deadline `timeout` from now.
    pub(super) fn deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }

    /// Dials the node for `shard` and starts the link's reader, which judges
    /// frames against `max_frame_bytes` (what this link's GateHello will
    /// announce). Sends nothing.
    pub(super) fn connect(&mut self, shard: u32, max_frame_bytes: u32) -> Result<usize, String> {
        let stream = TcpStream::connect_timeout(&self.addr, self.timeout)
            .map_err(|e| format!("cannot connect to {}: {e}", self.addr))?;
        let _ = stream.set_nodelay(true);
        stream
            .set_write_timeout(Some(self.timeout))
            .map_err(|e| e.to_string())?;
        let read_half = stream.try_clone().map_err(|e| e.to_string())?;
        let id = self.links.len();
        let stats = Arc::new(FrameStats::default());
        let (tx, limit, st) = (self.tx.clone(), max_frame_bytes as usize, stats.clone());
        let reader = std::thread::Builder::new()
            .name(format!("node-check-link{id}"))
            .spawn(move || read_loop(id, read_half, limit, &tx, &st))
            .map_err(|e| e.to_string())?;
        self.links.push(Link {
            stream,
            shard,
            hello: None,
            down: false,
            closed: false,
            reader: Some(reader),
            stats,
        });
        Ok(id)
    }

    /// The GateHello this gate sends on a link of `shard`.
    pub(super) fn gate_hello(&self, shard: u32, version: u32, max_frame_bytes: u32) -> ToNode {
        ToNode {
            msg: Some(to_node::Msg::Hello(GateHello {
                gate_id: self.gate_id.clone(),
                shard,
                shards: self.shard_count(),
                version,
                max_frame_bytes,
                epoch_ms: self.epoch_ms,
                request_timeout_ms: u32::try_from(self.timeout.as_millis()).unwrap_or(u32::MAX),
            })),
        }
    }

    /// Sends GateHello (protocol version 2) and waits for the node's first
    /// message, which must be its hello. When the hello asks for a snapshot,
    /// the shard's snapshot is written right after it, before anything else.
    pub(super) fn handshake(
        &mut self,
        link: usize,
        max_frame_bytes: u32,
    ) -> Result<NodeHello, String> {
        let shard = self.links[link].shard;
        let hello = self.gate_hello(shard, PROTOCOL_VERSION, max_frame_bytes);
        self.send(link, &[hello])?;
        let deadline = self.deadline();
        let hello = match self.recv_on(link, deadline) {
            None => return Err(format!("no NodeHello within {}", show(self.timeout))),
            Some(In::Msg(to_gate::Msg::Hello(h))) => h,
            Some(In::Msg(other)) => {
                return Err(format!(
                    "first message is {}, not NodeHello",
                    msg_name(&other)
                ))
            }
            Some(other) => return Err(format!("before NodeHello: {}", describe(&other))),
        };
        let wants_snapshot = hello.snapshot;
        self.links[link].hello = Some(hello.clone());
        if wants_snapshot {
            let pages = self.snapshot_pages(shard, 0);
            self.send(link, &pages)?;
        }
        Ok(hello)
    }

    /// Connects and completes the handshake on a link of `shard`, announcing
    /// `max_frame_bytes`.
    pub(super) fn open(
        &mut self,
        shard: u32,
        max_frame_bytes: u32,
    ) -> Result<(usize, NodeHello), String> {
        let link = self.connect(shard, max_frame_bytes)?;
        match self.handshake(link, max_frame_bytes) {
            Ok(h) => Ok((link, h)),
            Err(e) => {
                self.close(link);
                Err(e)
            }
        }
    }

    /// Shard of `link`.
    pub(super) fn shard_of(&self, link: usize) -> u32 {
        self.links[link].shard
    }

    /// False once the node closed the link, it broke, or the checker closed it.
    pub(super) fn is_up(&self, link: usize) -> bool {
        !self.links[link].down
    }

    /// Frames read on `link` and the largest of them.
    pub(super) fn frame_stats(&self, link: usize) -> (usize, usize) {
        let s = &self.links[link].stats;
        (
            s.frames.load(Ordering::Relaxed),
            s.largest.load(Ordering::Relaxed),
        )
    }

    /// Writes `msgs` on `link` in as few frames as the node's announced
    /// `max_frame_bytes` allows (16 MiB when it announced none); returns the
    /// number of frames and bytes written.
    pub(super) fn send(&mut self, link: usize, msgs: &[ToNode]) -> Result<(usize, usize), String> {
        // A node that announced no limit accepts 16 MiB (the contract's
        // reading of 0); before its hello nothing big is written.
        let limit = match self.links[link].hello.as_ref().map(|h| h.max_frame_bytes) {
            Some(n) if n > 0 => n as usize,
            _ => DEFAULT_MAX_FRAME_BYTES,
        };
        let mut buf = BatchBuf::new(limit);
        for m in msgs {
            buf.push(m);
        }
        let wire = buf.take();
        let frames = count_frames(&wire);
        self.send_raw(link, &wire)?;
        Ok((frames, wire.len()))
    }

    /// Writes raw bytes on `link`.
    pub(super) fn send_raw(&mut self, link: usize, bytes: &[u8]) -> Result<(), String> {
        let l = &mut self.links[link];
        if l.closed {
            return Err("link closed by the checker".into());
        }
        l.stream.write_all(bytes).map_err(|e| {
            l.down = true;
            format!("write failed: {e}")
        })
    }

    /// Sends a Ping on `link` and returns its nonce.
    pub(super) fn ping(&mut self, link: usize) -> Result<u64, String> {
        let nonce = self.next_nonce;
        self.next_nonce = self.next_nonce.wrapping_add(0x1_0000_0001);
        self.send(link, &[ping_msg(nonce)])?;
        Ok(nonce)
    }

    /// Closes `link` (both directions); its later events are dropped.
    pub(super) fn close(&mut self, link: usize) {
        let l = &mut self.links[link];
        if !l.closed {
            l.closed = true;
            l.down = true;
            let _ = l.stream.shutdown(Shutdown::Both);
            if let Some(r) = l.reader.take() {
                let _ = r.join();
            }
        }
    }

    /// Closes every link.
    pub(super) fn close_all(&mut self) {
        for i in 0..self.links.len() {
            self.close(i);
        }
        self.stash.clear();
    }

    /// The next event of any link, answering the node's pings and calls on
    /// the way; `None` at the deadline.
    pub(super) fn recv(&mut self, deadline: Instant) -> Option<(usize, In)> {
        if let Some(ev) = self.stash.pop_front() {
            return Some(ev);
        }
        self.pull(deadline)
    }

    /// The next event of `link`; other links' events are kept for [`Gate::recv`].
    pub(super) fn recv_on(&mut self, link: usize, deadline: Instant) -> Option<In> {
        if let Some(i) = self.stash.iter().position(|(l, _)| *l == link) {
            return self.stash.remove(i).map(|(_, ev)| ev);
        }
        loop {
            let (l, ev) = self.pull(deadline)?;
            if l == link {
                return Some(ev);
            }
            self.stash.push_back((l, ev));
        }
    }

    /// Takes events off the channel: drops those of links the checker
    /// closed, answers pings and calls of links that are up, marks links down.
    fn pull(&mut self, deadline: Instant) -> Option<(usize, In)> {
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            let (link, ev) = match self.rx.recv_timeout(wait) {
                Ok(ev) => ev,
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            };
            let l = &mut self.links[link];
            if l.closed {
                continue;
            }
            let up = l.hello.is_some();
            match ev {
                In::Msg(to_gate::Msg::Ping(p)) if up => {
                    self.node_pings += 1;
                    let pong = ToNode {
                        msg: Some(to_node::Msg::Pong(Pong { nonce: p.nonce })),
                    };
                    let _ = self.send(link, &[pong]);
                }
                In::Msg(to_gate::Msg::Call(c)) if up => self.answer_call(link, c),
                In::Eof(_) | In::Broken(_) => {
                    l.down = true;
                    return Some((link, ev));
                }
                ev => return Some((link, ev)),
            }
        }
    }

    /// The checker is not a gate: it answers every call that asks for a
    /// result with CODE_OK and does nothing else, so that handlers which
    /// call the gate do not hang. `Call.snapshot` gets the shard's snapshot
    /// on the same link first, as the contract says.
    fn answer_call(&mut self, link: usize, c: Call) {
        self.calls += 1;
        if c.call_id == 0 {
            return;
        }
        let mut out = Vec::new();
        let mut result = CallResult {
            call_id: c.call_id,
            code: Code::Ok as i32,
            ..Default::default()
        };
        match c.op {
            Some(call::Op::Snapshot(_)) => {
                let shard = self.links[link].shard;
                result.delivered = self.shards[shard as usize].live.len() as u64;
                out = self.snapshot_pages(shard, c.call_id);
            }
            None => {
                result.code = Code::Invalid as i32;
                result.message = "call without an operation".into();
            }
            Some(_) => {}
        }
        out.push(ToNode {
            msg: Some(to_node::Msg::Result(result)),
        });
        let _ = self.send(link, &out);
    }

    /// The pages of a snapshot of `shard`'s live sessions (at least one,
    /// the last marked).
    pub(super) fn snapshot_pages(&self, shard: u32, call_id: u64) -> Vec<ToNode> {
        let s = &self.shards[shard as usize];
        let infos: Vec<SessionInfo> = s
            .live
            .iter()
            .map(|(&sid, sess)| SessionInfo {
                session_id: sid,
                uid: sess.uid,
                ip: "127.0.0.1".into(),
                port: sess.port,
                network: "tcp".into(),
                settings: HashMap::new(),
            })
            .collect();
        let mut chunks: Vec<Vec<SessionInfo>> =
            infos.chunks(SNAPSHOT_PAGE).map(<[_]>::to_vec).collect();
        if chunks.is_empty() {
            chunks.push(Vec::new());
        }
        let n = chunks.len();
        chunks
            .into_iter()
            .enumerate()
            .map(|(i, sessions)| ToNode {
                msg: Some(to_node::Msg::Snapshot(Snapshot {
                    sessions,
                    last: i + 1 == n,
                    event_seqs: s.seqs.to_vec(),
                    call_id,
                })),
            })
            .collect()
    }

    /// Raises an event on `shard`: numbers it, and queues it in `out` when
    /// `link` is given and its node subscribed to the kind.
    fn raise(&mut self, link: Option<usize>, shard: u32, mut ev: Event, out: &mut Vec<ToNode>) {
        let counters = &mut self.shards[shard as usize].seqs;
        counters[ev.kind as usize] += 1;
        ev.seq = counters[ev.kind as usize];
        let wanted = link
            .and_then(|l| self.links[l].hello.as_ref())
            .is_some_and(|h| h.events.contains(&ev.kind));
        if wanted {
            out.push(ToNode {
                msg: Some(to_node::Msg::Event(ev)),
            });
        }
    }

    /// A new session on `shard` (EVENT_CONNECT queued in `out` for `link`'s
    /// node if it subscribed).
    pub(super) fn connect_session(
        &mut self,
        link: Option<usize>,
        shard: u32,
        out: &mut Vec<ToNode>,
    ) -> u64 {
        let n = self.next_session;
        self.next_session += 1;
        let sid = (u64::from(shard) << 48) | n;
        let port = 40_000 + (n % 20_000) as u32;
        self.shards[shard as usize].live.insert(
            sid,
            Session {
                uid: 0,
                port,
                seq: 0,
            },
        );
        let ev = Event {
            kind: EventKind::EventConnect as i32,
            session_id: sid,
            ip: "127.0.0.1".into(),
            port,
            network: "tcp".into(),
            ..Default::default()
        };
        self.raise(link, shard, ev, out);
        sid
    }

    /// Binds `uid` to a live session (EVENT_BIND).
    pub(super) fn bind(&mut self, link: Option<usize>, sid: u64, uid: i64, out: &mut Vec<ToNode>) {
        let shard = (sid >> 48) as u32;
        if let Some(s) = self.shards[shard as usize].live.get_mut(&sid) {
            s.uid = uid;
        }
        let ev = Event {
            kind: EventKind::EventBind as i32,
            session_id: sid,
            uid,
            ..Default::default()
        };
        self.raise(link, shard, ev, out);
    }

    /// Unbinds a session's user (EVENT_UNBIND with the old uid).
    pub(super) fn unbind(&mut self, link: Option<usize>, sid: u64, out: &mut Vec<ToNode>) {
        let shard = (sid >> 48) as u32;
        let uid = match self.shards[shard as usize].live.get_mut(&sid) {
            Some(s) => std::mem::take(&mut s.uid),
            None => 0,
        };
        let ev = Event {
            kind: EventKind::EventUnbind as i32,
            session_id: sid,
            uid,
            ..Default::default()
        };
        self.raise(link, shard, ev, out);
    }

    /// Ends a session (EVENT_DISCONNECT with its uid and `reason`).
    pub(super) fn disconnect(
        &mut self,
        link: Option<usize>,
        sid: u64,
        reason: CloseReason,
        out: &mut Vec<ToNode>,
    ) {
        let shard = (sid >> 48) as u32;
        let Some(s) = self.shards[shard as usize].live.remove(&sid) else {
            return;
        };
        let ev = Event {
            kind: EventKind::EventDisconnect as i32,
            session_id: sid,
            uid: s.uid,
            reason: reason as i32,
            ..Default::default()
        };
        self.raise(link, shard, ev, out);
    }

    /// Ends every session in `sids` and writes the disconnects on `link`
    /// (if it is up); for the end of a check.
    pub(super) fn end_sessions(&mut self, link: usize, sids: &[u64]) {
        let mut out = Vec::new();
        for &sid in sids {
            self.disconnect(Some(link), sid, CloseReason::CloseClientClosed, &mut out);
        }
        if self.is_up(link) && !out.is_empty() {
            let _ = self.send(link, &out);
        }
    }

    /// Queues a Deliver from live session `sid` on `route` in `out`, with a
    /// fresh request id when `reply` is set; returns what to expect.
    pub(super) fn deliver(
        &mut self,
        link: usize,
        sid: u64,
        route: i32,
        reply: bool,
        payload: &Bytes,
        out: &mut Vec<ToNode>,
    ) -> Expect {
        let shard = (sid >> 48) as usize;
        let (uid, seq) = match self.shards[shard].live.get_mut(&sid) {
            Some(s) => {
                s.seq = s.seq.wrapping_add(1);
                (s.uid, s.seq)
            }
            None => (0, 1),
        };
        let request_id = if reply {
            self.next_request += 1;
            self.next_request - 1
        } else {
            0
        };
        out.push(ToNode {
            msg: Some(to_node::Msg::Deliver(Deliver {
                session_id: sid,
                uid,
                route,
                seq,
                payload: payload.clone(),
                settings: HashMap::new(),
                request_id,
                ..Default::default()
            })),
        });
        Expect {
            link,
            session_id: sid,
            route,
            seq,
            request_id,
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.close_all();
    }
}

/// A Ping with `nonce`.
pub(super) fn ping_msg(nonce: u64) -> ToNode {
    ToNode {
        msg: Some(to_node::Msg::Ping(Ping { nonce })),
    }
}

/// Frames in a buffer of whole frames.
fn count_frames(wire: &BytesMut) -> usize {
    let mut rest = &wire[..];
    let mut n = 0;
    while rest.len() >= 4 {
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        rest = &rest[(4 + len).min(rest.len())..];
        n += 1;
    }
    n
}

/// Body of a link's reader thread: cuts frames, decodes batches, reports
/// each message, frames over `limit`, and the end of the stream.
fn read_loop(
    id: usize,
    mut stream: TcpStream,
    limit: usize,
    tx: &Sender<(usize, In)>,
    stats: &FrameStats,
) {
    let mut buf = BytesMut::with_capacity(64 << 10);
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        loop {
            match decode_frame(&mut buf, HARD_FRAME_CAP) {
                Ok(Some(frame)) => {
                    let len = frame.len();
                    stats.frames.fetch_add(1, Ordering::Relaxed);
                    stats.largest.fetch_max(len, Ordering::Relaxed);
                    if limit > 0 && len > limit {
                        let _ = tx.send((id, In::OverLimit { len, limit }));
                    }
                    match ToGateBatch::decode(frame) {
                        Ok(batch) => {
                            for m in batch.msgs {
                                let Some(m) = m.msg else {
                                    // The contract: a protocol error, the
                                    // gate closes the link.
                                    let _ = tx.send((
                                        id,
                                        In::Broken("a ToGate with no field set".into()),
                                    ));
                                    return;
                                };
                                let _ = tx.send((id, In::Msg(m)));
                            }
                        }
                        Err(e) => {
                            let _ = tx.send((
                                id,
                                In::Broken(format!("a {len}-byte frame does not decode: {e}")),
                            ));
                            return;
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send((id, In::Broken(e.to_string())));
                    return;
                }
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                let why = if buf.is_empty() {
                    "EOF"
                } else {
                    "EOF inside a frame"
                };
                let _ = tx.send((id, In::Eof(why)));
                return;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                ) =>
            {
                let _ = tx.send((id, In::Eof("reset")));
                return;
            }
            Err(e) => {
                let _ = tx.send((id, In::Broken(format!("read failed: {e}"))));
                return;
            }
        }
    }
}

/// A message's name for the table.
pub(super) fn msg_name(m: &to_gate::Msg) -> &'static str {
    match m {
        to_gate::Msg::Hello(_) => "NodeHello",
        to_gate::Msg::Ping(_) => "Ping",
        to_gate::Msg::Pong(_) => "Pong",
        to_gate::Msg::Push(_) => "Push",
        to_gate::Msg::Call(_) => "Call",
        to_gate::Msg::State(_) => "SetState",
    }
}

/// An event, briefly.
pub(super) fn describe(ev: &In) -> String {
    match ev {
        In::Msg(m) => msg_name(m).to_string(),
        In::OverLimit { len, limit } => format!("a {len}-byte frame over the announced {limit}"),
        In::Eof(why) => format!("link closed ({why})"),
        In::Broken(why) => why.clone(),
    }
}

/// A duration for the table (`3s`, `250ms`).
pub(super) fn show(d: Duration) -> String {
    crate::args::format_duration(d)
}
