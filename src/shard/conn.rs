//! Client connections of a shard: the slab that holds them and the loop's
//! handlers for their completions (accept, recv, send, timers, close).
//!
//! A connection's memory while idle is its [`Conn`] (no read or write buffer:
//! reads land in the shard's provided-buffer ring, writes borrow from the
//! shard's pool and give the buffer back once sent).

use std::net::SocketAddr;
use std::os::fd::RawFd;

use bytes::BytesMut;
use io_uring::{cqueue, opcode, types};

use super::ops::{pack, Op};
use super::xport::Xport;
use super::{Shard, ShardStats};
use crate::codec::{self, ext, Packet};
use crate::ids::SessionId;
use crate::link::proto::{to_node, Deliver, ToNode};
use crate::session::{CloseReason, HeartbeatAction, Session};

/// One client connection.
pub struct Conn {
    /// The socket.
    pub fd: RawFd,
    /// The session (ids, user, deadlines).
    pub session: Session,
    /// The client's address.
    pub peer: SocketAddr,
    /// Bytes of an incomplete packet left from earlier reads (usually empty, unallocated).
    pub rbuf: BytesMut,
    /// Bytes queued for the client since the last send was submitted.
    pub wbuf: BytesMut,
    /// Bytes of the send in flight; `sent` of them are already written.
    pub sending: BytesMut,
    /// Progress of the send in flight.
    pub sent: usize,
    /// The multishot receive is armed.
    pub recv_armed: bool,
    /// A send is in flight.
    pub send_inflight: bool,
    /// Already queued on the shard's dirty list.
    pub dirty: bool,
    /// Closing, and why: no new operations; freed when the last one completes.
    pub closing: Option<CloseReason>,
    /// Close with this reason once everything queued has been sent (kick with flush).
    pub kick: Option<CloseReason>,
    /// Timer-wheel tick of this connection's pending entry (0: none).
    pub timer_at: u64,
    /// Channels this connection is subscribed to.
    pub rooms: Vec<std::sync::Arc<str>>,
    /// TLS / WebSocket layers; `None` for plain TCP.
    pub xport: Option<Box<Xport>>,
    /// Nodes were told of this session (connect event sent); a disconnect event follows.
    pub announced: bool,
    /// A connection closing after a flush is closed anyway at this time (0: not lingering).
    pub linger_until: u64,
}

struct Slot {
    gen: u32,
    conn: Option<Conn>,
}

/// Connections indexed by slot, reusing freed slots (with a new generation).
#[derive(Default)]
pub struct Slab {
    slots: Vec<Slot>,
    free: Vec<u32>,
    len: usize,
}

impl Slab {
    /// No live connections.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reserves a slot; returns its index and generation.
    pub fn vacant(&mut self) -> Option<(u32, u32)> {
        if let Some(i) = self.free.pop() {
            return Some((i, self.slots[i as usize].gen));
        }
        if self.slots.len() as u32 >= SessionId::MAX_SLOTS {
            return None;
        }
        self.slots.push(Slot { gen: 0, conn: None });
        Some((self.slots.len() as u32 - 1, 0))
    }

    /// Puts a connection into a slot obtained from [`Slab::vacant`].
    pub fn fill(&mut self, idx: u32, conn: Conn) {
        self.slots[idx as usize].conn = Some(conn);
        self.len += 1;
    }

    /// Returns a slot obtained from [`Slab::vacant`] but never filled.
    pub fn unreserve(&mut self, idx: u32) {
        self.free.push(idx);
    }

    /// The connection in `idx`, if any.
    pub fn get_mut(&mut self, idx: u32) -> Option<&mut Conn> {
        self.slots
            .get_mut(idx as usize)
            .and_then(|s| s.conn.as_mut())
    }

    /// The connection for a session id, if it is still the same session.
    pub fn by_session(&mut self, sid: SessionId) -> Option<(u32, &mut Conn)> {
        let idx = sid.slot();
        let s = self.slots.get_mut(idx as usize)?;
        if s.gen != sid.generation() {
            return None;
        }
        s.conn
            .as_mut()
            .filter(|c| c.closing.is_none() && c.kick.is_none() && c.announced)
            .map(|c| (idx, c))
    }

    /// The generation of slot `idx`.
    pub fn gen(&self, idx: u32) -> u32 {
        self.slots[idx as usize].gen
    }

    /// Removes the connection in `idx` and retires the slot's generation.
    pub fn remove(&mut self, idx: u32) -> Option<Conn> {
        let s = &mut self.slots[idx as usize];
        let c = s.conn.take()?;
        s.gen = (s.gen + 1) & SessionId::GEN_MASK;
        self.free.push(idx);
        self.len -= 1;
        Some(c)
    }

    /// Indices of every live connection.
    pub fn live(&self) -> Vec<u32> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.conn.is_some())
            .map(|(i, _)| i as u32)
            .collect()
    }
}

fn peer_of(fd: RawFd) -> Option<SocketAddr> {
    // SAFETY: getpeername fills the storage and length socket2 hands us, for
    // a socket fd we own.
    let (_, sa) = unsafe {
        socket2::SockAddr::try_init(|storage, len| {
            if libc::getpeername(fd, storage.cast(), len) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        })
    }
    .ok()?;
    sa.as_socket()
}

pub(super) fn set_nodelay(fd: RawFd) {
    let one: libc::c_int = 1;
    // SAFETY: fd is a TCP socket we own; the option value is a live c_int.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

fn close_fd(fd: RawFd) {
    // SAFETY: the fd is ours and no operation on it is in flight any more.
    unsafe { libc::close(fd) };
}

impl Shard {
    pub(super) fn on_accept(&mut self, li: usize, res: i32, flags: u32) {
        if !cqueue::more(flags) {
            self.listeners[li].armed = false;
        }
        if res < 0 {
            let err = std::io::Error::from_raw_os_error(-res);
            if res == -libc::ECANCELED {
                return;
            }
            ShardStats::add(&self.stats().accept_errors, 1);
            tracing::warn!(shard = self.p.id.0, %err, "accept failed; pausing accepts for 100ms");
            self.accept_paused_until = self.now + 100;
            let _ = li;
            return;
        }
        let fd = res;
        if self.stopping {
            close_fd(fd);
            return;
        }
        let prev = self
            .shared
            .connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let slot = if prev >= self.p.max_connections {
            None
        } else {
            self.conns.vacant()
        };
        let Some((idx, gen)) = slot else {
            self.shared
                .connections
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            let st = self.stats();
            ShardStats::add(&st.refused, 1);
            st.closed(CloseReason::Refused);
            close_fd(fd);
            tracing::warn!(
                shard = self.p.id.0,
                max = self.p.max_connections,
                "connection refused: max_connections reached"
            );
            return;
        };
        set_nodelay(fd);
        let peer = peer_of(fd).unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let sid = SessionId::from_slot(self.p.id, gen, idx);
        let mut session = Session::new(sid, self.now);
        let xport = match self.new_xport(li) {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(shard = self.p.id.0, err = %e, "cannot start TLS for a new connection");
                self.conns.unreserve(idx);
                self.shared
                    .connections
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                close_fd(fd);
                return;
            }
        };
        let handshake_ms = self.listeners[li].xport.handshake_ms;
        if xport.is_some() && handshake_ms > 0 {
            session.handle_handshake_started(self.now + handshake_ms);
        }
        let plain = xport.is_none();
        self.conns.fill(
            idx,
            Conn {
                fd,
                session,
                peer,
                rbuf: BytesMut::new(),
                wbuf: BytesMut::new(),
                sending: BytesMut::new(),
                sent: 0,
                recv_armed: false,
                send_inflight: false,
                dirty: false,
                closing: None,
                kick: None,
                timer_at: 0,
                rooms: Vec::new(),
                xport,
                announced: false,
                linger_until: 0,
            },
        );
        self.rearm_timer(idx);
        let st = self.stats();
        ShardStats::add(&st.accepted, 1);
        ShardStats::add(&st.connections, 1);
        tracing::debug!(shard = self.p.id.0, session = %sid, %peer, "connected");
        self.arm_recv(idx);
        if plain {
            self.announce(idx);
        }
    }

    pub(super) fn arm_recv(&mut self, idx: u32) {
        let Some(c) = self.conns.get_mut(idx) else {
            return;
        };
        if c.recv_armed || c.closing.is_some() {
            return;
        }
        c.recv_armed = true;
        let e = opcode::RecvMulti::new(types::Fd(c.fd), super::bufring::CLIENT_BGID)
            .build()
            .user_data(pack(Op::Recv, idx));
        // SAFETY: the receive writes only into buffers of the registered
        // buffer ring, which outlives every operation (see `Shard` field order).
        unsafe { self.push(&e) };
    }

    pub(super) fn rearm_receives(&mut self) {
        let mut v = std::mem::take(&mut self.rearm);
        for idx in v.drain(..) {
            self.arm_recv(idx);
        }
        self.rearm = v;
    }

    pub(super) fn on_recv(&mut self, idx: u32, res: i32, flags: u32) {
        let more = cqueue::more(flags);
        let Some(c) = self.conns.get_mut(idx) else {
            tracing::error!(idx, "recv completion for an empty slot");
            return;
        };
        if !more {
            c.recv_armed = false;
        }
        if res > 0 {
            let bid = cqueue::buffer_select(flags).expect("multishot recv completes with a buffer");
            if c.closing.is_none() {
                self.on_data(idx, bid, res as usize);
            }
            self.bufs.push(bid);
            if !more {
                self.rearm.push(idx);
            }
        } else if res == -libc::ENOBUFS {
            ShardStats::add(&self.stats().recv_no_buffers, 1);
            self.rearm.push(idx);
        } else if res == 0 || c.closing.is_none() {
            // End of stream, reset, or another error: the client is gone.
            if res < 0 && res != -libc::ECONNRESET {
                tracing::debug!(session = %c.session.id, err = %std::io::Error::from_raw_os_error(-res), "recv failed");
            }
            self.close_now(idx, CloseReason::ClientClosed);
        }
        self.try_free(idx);
    }

    /// Decodes everything a read delivered and acts on each frame.
    fn on_data(&mut self, idx: u32, bid: u16, len: usize) {
        let now = self.now;
        let c = self.conns.get_mut(idx).expect("caller checked");
        c.session.handle_inbound(now);
        if c.xport.is_some() {
            let mut raw = std::mem::take(&mut self.scratch);
            raw.extend_from_slice(self.bufs.slice(bid, len));
            self.on_xport_data(idx, &raw);
            raw.clear();
            self.scratch = raw;
            return;
        }
        // Decode from the connection's leftover if it has one, else from the
        // shared scratch buffer (so an idle connection holds no read buffer).
        let from_scratch = c.rbuf.is_empty();
        let mut src = if from_scratch {
            std::mem::take(&mut self.scratch)
        } else {
            std::mem::take(&mut c.rbuf)
        };
        src.extend_from_slice(self.bufs.slice(bid, len));
        self.decode_packets(idx, &mut src);
        let c = self.conns.get_mut(idx).expect("live");
        if from_scratch {
            if !src.is_empty() {
                c.rbuf.extend_from_slice(&src);
            }
            src.clear();
            self.scratch = src;
        } else if !src.is_empty() {
            c.rbuf = src;
        }
        // else: the leftover buffer is dropped, the connection holds none again.
    }

    /// Decodes and handles every complete packet in `src`. On a bad packet
    /// the connection is closed, `src` cleared, and false returned.
    pub(super) fn decode_packets(&mut self, idx: u32, src: &mut BytesMut) -> bool {
        let opts = self.p.packet;
        loop {
            match codec::decode(src, &opts) {
                Ok(Some(f)) => self.on_frame(idx, f),
                Ok(None) => return true,
                Err(err) => {
                    src.clear();
                    self.protocol_error(idx, &err);
                    return false;
                }
            }
        }
    }

    pub(super) fn on_client_heartbeat(&mut self, idx: u32) {
        let rules = self.p.rules;
        let c = self.conns.get_mut(idx).expect("live");
        if c.session.handle_heartbeat(&rules) == HeartbeatAction::Answer {
            self.queue_heartbeat(idx);
        }
    }

    /// True once the session may receive packets: its transport handshake
    /// (TLS, WebSocket upgrade) is done. Before that only raw handshake bytes go out.
    fn ready(&mut self, idx: u32) -> bool {
        self.conns
            .get_mut(idx)
            .is_some_and(|c| c.announced && c.kick.is_none())
    }

    fn queue_heartbeat(&mut self, idx: u32) {
        if !self.ready(idx) {
            return;
        }
        let time = self.p.packet.heartbeat_time.then(unix_nanos);
        let opts = self.p.packet;
        self.queue_with(idx, |buf, ws| {
            if ws {
                crate::ws::packet::encode_heartbeat(time, &opts, buf);
            } else {
                codec::encode_heartbeat(time, &opts, buf);
            }
            Ok(())
        });
    }

    /// Routes one client packet to a node, or answers it with an error.
    pub(super) fn dispatch(&mut self, idx: u32, p: Packet) {
        match self.routes.pick(p.route, &self.links) {
            Ok(link) => {
                let deliver_settings = self.p.session.deliver_settings;
                let c = self.conns.get_mut(idx).expect("live");
                let msg = ToNode {
                    msg: Some(to_node::Msg::Deliver(Deliver {
                        session_id: c.session.id.0,
                        uid: c.session.uid.0,
                        route: p.route,
                        seq: p.seq,
                        payload: p.payload,
                        settings: if deliver_settings {
                            c.session.settings.to_map()
                        } else {
                            Default::default()
                        },
                    })),
                };
                self.links[link].batch.push(&msg);
                ShardStats::add(&self.stats().to_node, 1);
            }
            Err(code) => {
                let st = self.stats();
                ShardStats::add(
                    if code == ext::NO_ROUTE {
                        &st.no_route
                    } else {
                        &st.node_down
                    },
                    1,
                );
                let c = self.conns.get_mut(idx).expect("live");
                tracing::debug!(session = %c.session.id, route = p.route, code, "request not routable");
                self.queue_packet(idx, code, p.route, p.seq, &[]);
            }
        }
    }

    /// Queues a data packet for connection `idx` (closing it on overflow).
    /// Queues an already-encoded packet (a push, broadcast or publish) for
    /// connection `idx`. Returns false if it was not queued.
    pub(super) fn queue_encoded(&mut self, idx: u32, pkt: &[u8]) -> bool {
        if !self.ready(idx) {
            return false;
        }
        let queued = self.queue_with(idx, |buf, ws| {
            if ws {
                crate::ws::packet::encode_encoded(pkt, buf);
            } else {
                buf.extend_from_slice(pkt);
            }
            Ok(())
        });
        if queued {
            ShardStats::add(&self.stats().packets_out, 1);
        }
        queued
    }

    pub(super) fn queue_packet(&mut self, idx: u32, ext: u8, route: i32, seq: i32, payload: &[u8]) {
        if !self.ready(idx) {
            return;
        }
        let opts = self.p.packet;
        let queued = self.queue_with(idx, |buf, ws| {
            if ws {
                crate::ws::packet::encode_data(ext, route, seq, payload, &opts, buf)
            } else {
                codec::encode_data(ext, route, seq, payload, &opts, buf)
            }
        });
        if queued {
            ShardStats::add(&self.stats().packets_out, 1);
        }
    }

    /// Appends bytes to a connection's outbound queue via `encode`, which is
    /// told whether the connection frames packets as WebSocket messages.
    /// Returns false if nothing was queued (closing, encode error, overflow).
    pub(super) fn queue_with(
        &mut self,
        idx: u32,
        encode: impl FnOnce(&mut BytesMut, bool) -> Result<(), codec::CodecError>,
    ) -> bool {
        let max = self.p.max_outbound;
        let spare = self
            .conns
            .get_mut(idx)
            .is_some_and(|c| c.wbuf.capacity() == 0)
            .then(|| self.take_buf());
        let Some(c) = self.conns.get_mut(idx) else {
            return false;
        };
        if c.closing.is_some() {
            if let Some(b) = spare {
                self.give_buf(b);
            }
            return false;
        }
        if let Some(b) = spare {
            c.wbuf = b;
        }
        // TLS connections queue plaintext, encrypted once per flush.
        let (buf, ws) = match c.xport.as_mut() {
            Some(x) if x.tls.is_some() => {
                let ws = x.is_ws();
                (&mut x.plain_out, ws)
            }
            Some(x) => {
                let ws = x.is_ws();
                (&mut c.wbuf, ws)
            }
            None => (&mut c.wbuf, false),
        };
        if let Err(err) = encode(buf, ws) {
            tracing::warn!(session = %c.session.id, %err, "dropping a packet that cannot be encoded");
            return false;
        }
        let queued =
            c.wbuf.len() + c.sending.len() - c.sent + c.xport.as_ref().map_or(0, |x| x.pending());
        if queued > max {
            tracing::info!(session = %c.session.id, peer = %c.peer, queued, max, "closing connection: outbound queue overflow");
            self.close_now(idx, CloseReason::Overflow);
            return false;
        }
        self.mark_dirty(idx);
        true
    }

    /// Puts a connection on the list flushed at the end of the loop turn.
    pub(super) fn mark_dirty(&mut self, idx: u32) {
        if let Some(c) = self.conns.get_mut(idx) {
            if !c.dirty {
                c.dirty = true;
                self.dirty.push(idx);
            }
        }
    }

    /// Delivers a node's packet to a session of this shard.
    pub(super) fn deliver_push(
        &mut self,
        sid: SessionId,
        ext: u32,
        route: i32,
        seq: i32,
        payload: &[u8],
    ) {
        match self.conns.by_session(sid) {
            Some((idx, _)) => self.queue_packet(idx, (ext & 0x7f) as u8, route, seq, payload),
            None => {
                ShardStats::add(&self.stats().push_misses, 1);
                tracing::debug!(session = %sid, "push for a session that is gone");
            }
        }
    }

    pub(super) fn flush_conn(&mut self, idx: u32) {
        let Some(c) = self.conns.get_mut(idx) else {
            return;
        };
        c.dirty = false;
        if c.closing.is_some() || c.send_inflight {
            return;
        }
        self.encrypt_pending(idx);
        let c = self.conns.get_mut(idx).expect("live");
        if c.wbuf.is_empty() {
            if let Some(reason) = c.kick {
                // Everything queued before a kick with flush has been sent.
                self.close_now(idx, reason);
                self.try_free(idx);
            }
            return;
        }
        std::mem::swap(&mut c.wbuf, &mut c.sending);
        c.sent = 0;
        self.submit_send(idx);
    }

    fn submit_send(&mut self, idx: u32) {
        let c = self.conns.get_mut(idx).expect("live");
        c.send_inflight = true;
        let buf = &c.sending[c.sent..];
        let e = opcode::Send::new(types::Fd(c.fd), buf.as_ptr(), buf.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(pack(Op::Send, idx));
        // SAFETY: `sending` belongs to the connection, which is not freed while
        // `send_inflight` is set, and is neither written nor reallocated until
        // this send completes (new bytes go to `wbuf`).
        unsafe { self.push(&e) };
    }

    pub(super) fn on_send(&mut self, idx: u32, res: i32) {
        let Some(c) = self.conns.get_mut(idx) else {
            tracing::error!(idx, "send completion for an empty slot");
            return;
        };
        c.send_inflight = false;
        if c.closing.is_some() {
            self.try_free(idx);
            return;
        }
        if res < 0 {
            tracing::debug!(session = %c.session.id, err = %std::io::Error::from_raw_os_error(-res), "send failed");
            self.close_now(idx, CloseReason::ClientClosed);
            self.try_free(idx);
            return;
        }
        c.sent += res as usize;
        if c.sent < c.sending.len() {
            self.submit_send(idx);
            return;
        }
        c.sending.clear();
        c.sent = 0;
        let more = !c.wbuf.is_empty()
            || c.xport.as_ref().is_some_and(|x| {
                x.pending() > 0 || x.tls.as_ref().is_some_and(|t| t.wants_write())
            });
        if more || c.kick.is_some() {
            // Flushed at the end of this turn (and a kick with flush closes then).
            self.mark_dirty(idx);
        } else {
            // Nothing queued: hand both buffers back so the idle connection holds none.
            let a = std::mem::take(&mut c.sending);
            let b = std::mem::take(&mut c.wbuf);
            self.give_buf(a);
            self.give_buf(b);
        }
    }

    pub(super) fn on_conn_timer(&mut self, idx: u32, gen: u32) {
        if self.conns.gen(idx) != gen {
            return;
        }
        let now = self.now;
        let rules = self.p.rules;
        let Some(c) = self.conns.get_mut(idx) else {
            return;
        };
        if c.closing.is_some() {
            return;
        }
        c.timer_at = 0;
        if let Some(reason) = c.kick {
            // Closing after a flush: the peer gets until `linger_until` to take it.
            if c.linger_until != 0 && now >= c.linger_until {
                self.close_now(idx, reason);
                self.try_free(idx);
            } else {
                self.rearm_timer(idx);
            }
            return;
        }
        if let Some(reason) = c.session.poll_expired(now, &rules) {
            tracing::debug!(session = %c.session.id, reason = reason.as_str(), "session expired");
            self.close_conn(idx, reason);
            self.try_free(idx);
        } else {
            self.rearm_timer(idx);
        }
    }

    /// `mechanism = "tick"`: one server heartbeat to every connection.
    pub(super) fn tick_heartbeats(&mut self) {
        for idx in self.conns.live() {
            self.queue_heartbeat(idx);
        }
    }

    /// Closes a connection for `reason`, gracefully where the transport has a
    /// goodbye: an open WebSocket gets a close frame (1001 on shutdown, 1008
    /// otherwise) and is closed once it is flushed, or after a short linger.
    pub(super) fn close_conn(&mut self, idx: u32, reason: CloseReason) {
        let Some(c) = self.conns.get_mut(idx) else {
            return;
        };
        let ws_open = c
            .xport
            .as_ref()
            .is_some_and(|x| matches!(x.ws, super::xport::WsPhase::Open(_)));
        let graceful = matches!(
            reason,
            CloseReason::HeartbeatTimeout
                | CloseReason::AuthorizeTimeout
                | CloseReason::Kicked
                | CloseReason::Rebind
                | CloseReason::Shutdown
        );
        if !(ws_open && graceful) || c.closing.is_some() || c.kick.is_some() {
            return self.close_now(idx, reason);
        }
        let code = if reason == CloseReason::Shutdown {
            crate::ws::close::GOING_AWAY
        } else {
            crate::ws::close::POLICY_VIOLATION
        };
        let mut b = BytesMut::new();
        crate::ws::frame::encode_close(code, reason.as_str(), &mut b);
        self.queue_raw(idx, &b);
        if let Some(x) = self.conns.get_mut(idx).and_then(|c| c.xport.as_mut()) {
            x.ws = super::xport::WsPhase::Closed;
        }
        self.close_after_flush(idx, reason);
    }

    /// Starts closing a connection: counts the reason once and shuts the
    /// socket down so its in-flight operations complete; the slot is freed by
    /// [`Shard::try_free`] when the last one has.
    pub(super) fn close_now(&mut self, idx: u32, reason: CloseReason) {
        let Some(c) = self.conns.get_mut(idx) else {
            return;
        };
        if c.closing.is_some() {
            return;
        }
        self.on_session_closed(idx, reason);
        let c = self.conns.get_mut(idx).expect("live");
        c.closing = Some(reason);
        let (fd, armed) = (c.fd, c.recv_armed);
        // SAFETY: shutting down a socket we own; it stays open until try_free.
        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        if armed {
            let e = opcode::AsyncCancel::new(pack(Op::Recv, idx))
                .build()
                .user_data(pack(Op::Cancel, idx));
            // SAFETY: a cancel references no memory of ours.
            unsafe { self.push(&e) };
        }
        self.stats().closed(reason);
    }

    /// Frees a closing connection once no operation on it is in flight.
    pub(super) fn try_free(&mut self, idx: u32) {
        let Some(c) = self.conns.get_mut(idx) else {
            return;
        };
        if c.closing.is_none() || c.recv_armed || c.send_inflight {
            return;
        }
        let c = self.conns.remove(idx).expect("live");
        close_fd(c.fd);
        self.shared
            .connections
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        self.stats()
            .connections
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(session = %c.session.id, reason = c.closing.map(CloseReason::as_str), "disconnected");
        self.give_buf(c.wbuf);
        self.give_buf(c.sending);
    }
}

fn unix_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
