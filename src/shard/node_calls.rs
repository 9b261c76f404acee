//! What nodes ask of the gate (calls), what the gate tells nodes (events),
//! and how both cross shards.
//!
//! A call arrives on any link of a shard. It is routed to where the work is:
//!
//! ```text
//!  by session S    ──▶ shard(S)                         (S encodes its shard)
//!  by user U       ──▶ home(U) ─directory─▶ shard(S)    (home = hash(U) % shards)
//!  bind(S, U)      ──▶ home(U): directory decides ─▶ shard(S): Attach (and kick the old session)
//!  broadcast, publish ──▶ encoded once, then every shard writes to its own sessions
//! ```
//! The shard that finishes the work answers the call on its own link to the
//! same node (links are indexed by `[[nodes]]` order on every shard), so a
//! result never travels back through the shard that received the call.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::codec::Packet;
use crate::connection::Close;

use super::directory::BindOutcome;
use super::mailbox::{ReplyTo, Sent, SessionOp, ToShard};
use super::{Shard, ShardStats};
use crate::codec;
use crate::ids::{SessionId, UserId};
use crate::link::proto::{
    self, call, target, to_node, CallResult, Code, Deliver, Event, EventKind, ToNode,
};
use crate::session::CloseReason;

/// The proto's reason for a close.
pub fn proto_reason(r: CloseReason) -> proto::CloseReason {
    use proto::CloseReason as P;
    match r {
        CloseReason::ClientClosed => P::CloseClientClosed,
        CloseReason::HeartbeatTimeout => P::CloseHeartbeatTimeout,
        CloseReason::AuthorizeTimeout => P::CloseAuthorizeTimeout,
        CloseReason::Kicked => P::CloseKicked,
        CloseReason::Rebind => P::CloseRebind,
        CloseReason::Overflow => P::CloseOverflow,
        CloseReason::Shutdown => P::CloseShutdown,
        CloseReason::ProtocolError => P::CloseProtocolError,
        CloseReason::Refused | CloseReason::HandshakeTimeout | CloseReason::UpgradeRejected => {
            P::CloseUnspecified
        }
    }
}

impl Shard {
    /// Encodes a packet once, to be shared by every session it goes to.
    fn encode_packet(
        &self,
        ext: u32,
        route: i32,
        seq: i32,
        payload: &[u8],
    ) -> Result<Bytes, codec::CodecError> {
        let mut b = BytesMut::with_capacity(payload.len() + 16);
        codec::encode_data(
            (ext & 0x7f) as u8,
            route,
            seq,
            payload,
            self.p.packet(),
            &mut b,
        )?;
        Ok(b.freeze())
    }

    /// Answers a call on this shard's link to the node that made it.
    pub(super) fn reply(&mut self, to: Option<ReplyTo>, r: CallResult) {
        let (node, call_id) = match to {
            None => return,
            Some(ReplyTo::Node { node, call_id }) => (node, call_id),
            Some(ReplyTo::Gather { shard, id }) => {
                let found = r.code == Code::Ok as i32;
                if usize::from(shard) == self.me() {
                    return self.on_gathered(id, found);
                }
                return self.send_to(usize::from(shard), ToShard::Gathered { id, found });
            }
        };
        let r = CallResult { call_id, ..r };
        match self.links.get_mut(node as usize) {
            Some(l) if l.is_active() => l.batch.push(&ToNode {
                msg: Some(to_node::Msg::Result(r)),
            }),
            _ => {
                ShardStats::add(&self.stats().results_dropped, 1);
                tracing::debug!(node, call_id, "call result dropped: link not up");
            }
        }
    }

    /// One multicast target reported; the last one answers the node.
    fn on_gathered(&mut self, id: u32, found: bool) {
        if let Some((to, delivered)) = self.gathers.report(id, found) {
            self.reply(
                Some(to),
                CallResult {
                    delivered,
                    ..Default::default()
                },
            );
        }
    }

    fn reply_code(&mut self, to: Option<ReplyTo>, code: Code, message: &str) {
        if to.is_some() {
            self.reply(
                to,
                CallResult {
                    code: code as i32,
                    message: message.to_string(),
                    ..Default::default()
                },
            );
        }
    }

    /// Sends an event to every node that subscribed to its kind.
    pub(super) fn emit(&mut self, ev: Event) {
        let bit = 1u32 << (ev.kind as u32);
        let mut sent = 0;
        for l in self
            .links
            .iter_mut()
            .filter(|l| l.is_active() && l.events & bit != 0)
        {
            l.batch.push(&ToNode {
                msg: Some(to_node::Msg::Event(ev.clone())),
            });
            sent += 1;
        }
        if sent > 0 {
            ShardStats::add(&self.stats().events_sent, sent);
        }
    }

    /// Sends to another shard, answering BUSY if it had to be dropped.
    fn send_to(&mut self, dest: usize, msg: ToShard) {
        if let Sent::Dropped(m) = self.mailbox.send(dest, msg) {
            ShardStats::add(&self.stats().cross_shard_dropped, 1);
            let to = m.reply();
            self.reply_code(to, Code::Busy, "cross-shard queue full");
        } else {
            ShardStats::add(&self.stats().cross_shard_sent, 1);
        }
    }

    /// Runs `op` on session `sid`, here or on its shard.
    pub(super) fn route_session(&mut self, sid: SessionId, op: SessionOp, reply: Option<ReplyTo>) {
        let dest = sid.shard().0 as usize;
        if dest == self.me() {
            self.exec_session(sid, op, reply);
        } else if dest < self.p.shards as usize {
            self.send_to(dest, ToShard::Session { sid, op, reply });
        } else {
            self.not_found(op, reply);
        }
    }

    /// Runs `op` on the session `uid` is bound to, via its directory shard.
    pub(super) fn route_uid(&mut self, uid: UserId, op: SessionOp, reply: Option<ReplyTo>) {
        let home = uid.home_shard(self.p.shards).0 as usize;
        if home != self.me() {
            self.send_to(home, ToShard::Uid { uid, op, reply });
            return;
        }
        match self.dir.lookup(uid) {
            Some(sid) => self.route_session(sid, op, reply),
            None => self.not_found(op, reply),
        }
    }

    fn not_found(&mut self, op: SessionOp, reply: Option<ReplyTo>) {
        match op {
            SessionOp::IsOnline => self.reply(
                reply,
                CallResult {
                    online: false,
                    ..Default::default()
                },
            ),
            SessionOp::Push(_) => {
                ShardStats::add(&self.stats().push_misses, 1);
                self.reply_code(
                    reply,
                    Code::NotFound,
                    "no such session or user on this gate",
                );
            }
            _ => self.reply_code(
                reply,
                Code::NotFound,
                "no such session or user on this gate",
            ),
        }
    }

    fn route_target(&mut self, t: Option<proto::Target>, op: SessionOp, reply: Option<ReplyTo>) {
        match t.and_then(|t| t.to) {
            Some(target::To::SessionId(s)) => self.route_session(SessionId(s), op, reply),
            Some(target::To::Uid(u)) if u != 0 => self.route_uid(UserId(u), op, reply),
            _ => self.reply_code(
                reply,
                Code::Invalid,
                "call needs a target session or a non-zero uid",
            ),
        }
    }

    /// A call from node `node` (its link index).
    pub(super) fn on_call(&mut self, node: usize, c: proto::Call) {
        ShardStats::add(&self.stats().calls, 1);
        let reply = (c.call_id != 0).then_some(ReplyTo::Node {
            node: node as u16,
            call_id: c.call_id,
        });
        let Some(op) = c.op else {
            return self.reply_code(reply, Code::Invalid, "call without an operation");
        };
        match op {
            call::Op::Push(p) => match self.encode_packet(p.ext, p.route, p.seq, &p.payload) {
                Ok(pkt) => self.route_target(p.target, SessionOp::Push(pkt), reply),
                Err(e) => self.reply_code(reply, Code::Invalid, &e.to_string()),
            },
            call::Op::Multicast(m) => {
                let pkt = match self.encode_packet(0, m.route, m.seq, &m.payload) {
                    Ok(p) => p,
                    Err(e) => return self.reply_code(reply, Code::Invalid, &e.to_string()),
                };
                // Answered with the number of targets found, once all reported.
                let each = match reply {
                    Some(to) if !m.targets.is_empty() => Some(ReplyTo::Gather {
                        shard: self.p.id.0,
                        id: self.gathers.start(m.targets.len(), to),
                    }),
                    Some(_) => return self.reply(reply, CallResult::default()),
                    None => None,
                };
                for t in m.targets {
                    self.route_target(Some(t), SessionOp::Push(pkt.clone()), each);
                }
            }
            call::Op::Broadcast(b) => {
                let pkt = match self.encode_packet(0, b.route, b.seq, &b.payload) {
                    Ok(p) => p,
                    Err(e) => return self.reply_code(reply, Code::Invalid, &e.to_string()),
                };
                let me = self.me();
                for dest in (0..self.p.shards as usize).filter(|d| *d != me) {
                    self.send_to(
                        dest,
                        ToShard::Broadcast {
                            packet: pkt.clone(),
                            bound_only: b.bound_only,
                        },
                    );
                }
                let n = self.broadcast_local(&pkt, b.bound_only);
                self.reply(
                    reply,
                    CallResult {
                        delivered: n,
                        ..Default::default()
                    },
                );
            }
            call::Op::Publish(p) => {
                let pkt = match self.encode_packet(0, p.route, p.seq, &p.payload) {
                    Ok(pk) => pk,
                    Err(e) => return self.reply_code(reply, Code::Invalid, &e.to_string()),
                };
                let channel: Arc<str> = Arc::from(p.channel.as_str());
                let me = self.me();
                for dest in (0..self.p.shards as usize).filter(|d| *d != me) {
                    self.send_to(
                        dest,
                        ToShard::Publish {
                            channel: channel.clone(),
                            packet: pkt.clone(),
                        },
                    );
                }
                let n = self.publish_local(&channel, &pkt);
                self.reply(
                    reply,
                    CallResult {
                        delivered: n,
                        ..Default::default()
                    },
                );
            }
            call::Op::Kick(k) => self.route_target(
                k.target,
                SessionOp::Kick {
                    flush: k.flush,
                    reason: CloseReason::Kicked,
                },
                reply,
            ),
            call::Op::Bind(b) => {
                if b.uid == 0 {
                    return self.reply_code(
                        reply,
                        Code::Invalid,
                        "uid 0 means unbound; bind a non-zero uid",
                    );
                }
                let (uid, sid) = (UserId(b.uid), SessionId(b.session_id));
                let home = uid.home_shard(self.p.shards).0 as usize;
                if home == self.me() {
                    self.dir_bind(uid, sid, reply);
                } else {
                    self.send_to(home, ToShard::DirBind { uid, sid, reply });
                }
            }
            call::Op::Unbind(t) => self.route_target(Some(t), SessionOp::Unbind, reply),
            call::Op::Settings(s) => self.route_target(
                s.target,
                SessionOp::Settings {
                    set: s.set,
                    remove: s.remove,
                },
                reply,
            ),
            call::Op::GetIp(t) => self.route_target(Some(t), SessionOp::GetIp, reply),
            call::Op::IsOnline(t) => self.route_target(Some(t), SessionOp::IsOnline, reply),
            call::Op::Stat(_) => {
                let shards: Vec<proto::ShardStat> = self
                    .shared
                    .stats
                    .iter()
                    .enumerate()
                    .map(|(i, s)| proto::ShardStat {
                        shard: i as u32,
                        connections: s.connections.load(Relaxed),
                        bound: s.bound.load(Relaxed),
                    })
                    .collect();
                let stat = proto::Stat {
                    connections: shards.iter().map(|s| s.connections).sum(),
                    bound: shards.iter().map(|s| s.bound).sum(),
                    shards,
                };
                self.reply(
                    reply,
                    CallResult {
                        stat: Some(stat),
                        ..Default::default()
                    },
                );
            }
            call::Op::Subscribe(m) => self.route_members(m, SessionOp::Subscribe, reply),
            call::Op::Unsubscribe(m) => self.route_members(m, SessionOp::Unsubscribe, reply),
        }
    }

    /// Subscribe / unsubscribe each target of `m`; the call is answered once,
    /// for the last target (single-target calls are the common case).
    fn route_members(
        &mut self,
        m: proto::ChannelMembers,
        op: fn(Arc<str>) -> SessionOp,
        reply: Option<ReplyTo>,
    ) {
        if m.targets.is_empty() {
            return self.reply_code(reply, Code::Invalid, "channel membership needs targets");
        }
        let ch: Arc<str> = Arc::from(m.channel.as_str());
        let n = m.targets.len();
        for (i, t) in m.targets.into_iter().enumerate() {
            let r = if i + 1 == n { reply } else { None };
            self.route_target(Some(t), op(ch.clone()), r);
        }
    }

    /// A message from another shard.
    pub(super) fn on_mail(&mut self, m: ToShard) {
        match m {
            ToShard::Session { sid, op, reply } => self.exec_session(sid, op, reply),
            ToShard::Uid { uid, op, reply } => match self.dir.lookup(uid) {
                Some(sid) => self.route_session(sid, op, reply),
                None => self.not_found(op, reply),
            },
            ToShard::DirBind { uid, sid, reply } => self.dir_bind(uid, sid, reply),
            ToShard::DirUnbind { uid, sid } => {
                self.dir.unbind_if(uid, sid);
            }
            ToShard::Gathered { id, found } => self.on_gathered(id, found),
            ToShard::Broadcast { packet, bound_only } => {
                self.broadcast_local(&packet, bound_only);
            }
            ToShard::Publish { channel, packet } => {
                self.publish_local(&channel, &packet);
            }
        }
    }

    /// The directory side of a bind, on the uid's home shard.
    fn dir_bind(&mut self, uid: UserId, sid: SessionId, reply: Option<ReplyTo>) {
        match self.dir.bind(uid, sid, self.p.session.rebind) {
            BindOutcome::Bound | BindOutcome::Unchanged => {
                self.route_session(sid, SessionOp::Attach(uid), reply)
            }
            BindOutcome::Replaced { old } => {
                tracing::debug!(uid = uid.0, old = %old, new = %sid, "rebind: closing the old session");
                self.route_session(
                    old,
                    SessionOp::Kick {
                        flush: false,
                        reason: CloseReason::Rebind,
                    },
                    None,
                );
                self.route_session(sid, SessionOp::Attach(uid), reply);
            }
            BindOutcome::Rejected { other } => self.reply(
                reply,
                CallResult {
                    code: Code::AlreadyBound as i32,
                    session_id: other.0,
                    message: "user is bound to another session (session.rebind = \"reject\")"
                        .into(),
                    ..Default::default()
                },
            ),
        }
    }

    /// Tells the uid's home shard that `sid` no longer holds it.
    fn dir_unbind(&mut self, uid: UserId, sid: SessionId) {
        let home = uid.home_shard(self.p.shards).0 as usize;
        if home == self.me() {
            self.dir.unbind_if(uid, sid);
        } else {
            self.send_to(home, ToShard::DirUnbind { uid, sid });
        }
    }

    /// Executes an operation on a session of this shard.
    fn exec_session(&mut self, sid: SessionId, op: SessionOp, reply: Option<ReplyTo>) {
        let Some((idx, c)) = self.clients.by_session(sid) else {
            if let SessionOp::Attach(uid) = op {
                // The session ended before the bind reached it: undo the directory entry.
                self.dir_unbind(uid, sid);
            }
            return self.not_found(op, reply);
        };
        let ok = CallResult {
            session_id: sid.0,
            ..Default::default()
        };
        match op {
            SessionOp::Push(pkt) => {
                if self.send_encoded(idx, &pkt) {
                    self.reply(reply, ok);
                } else {
                    self.reply_code(reply, Code::NotFound, "session closed while pushing");
                }
            }
            SessionOp::Kick { flush, reason } => {
                let how = if flush {
                    Close::AfterFlush
                } else {
                    Close::Graceful
                };
                self.with_conn(idx, |c, cx| c.close(reason, how, cx));
                self.reply(reply, ok);
            }
            SessionOp::Attach(uid) => {
                let old = c.conn.session.uid;
                c.conn.session.handle_bind(uid);
                if old.0 == 0 {
                    ShardStats::add(&self.stats().bound, 1);
                } else if old != uid {
                    self.dir_unbind(old, sid);
                }
                if old != uid {
                    self.emit(Event {
                        kind: EventKind::EventBind as i32,
                        session_id: sid.0,
                        uid: uid.0,
                        ..Default::default()
                    });
                }
                self.reply(reply, ok);
            }
            SessionOp::Unbind => {
                let old = c.conn.session.uid;
                if old.0 != 0 {
                    c.conn.session.handle_unbind(self.now);
                    self.stats().bound.fetch_sub(1, Relaxed);
                    self.dir_unbind(old, sid);
                    self.with_conn(idx, |_, _| ()); // re-arms its authorize timer
                    self.emit(Event {
                        kind: EventKind::EventUnbind as i32,
                        session_id: sid.0,
                        uid: old.0,
                        ..Default::default()
                    });
                }
                self.reply(reply, ok);
            }
            SessionOp::Settings { set, remove } => {
                let (max_keys, max_bytes) = (
                    self.p.session.max_settings,
                    self.p.session.max_setting_bytes,
                );
                match c
                    .conn
                    .session
                    .settings
                    .apply(set, &remove, max_keys, max_bytes)
                {
                    Ok(()) => self.reply(reply, ok),
                    Err(e) => self.reply_code(reply, Code::Invalid, &e.to_string()),
                }
            }
            SessionOp::GetIp => {
                let peer = c.conn.peer();
                let (ip, port) = (peer.ip().to_string(), u32::from(peer.port()));
                self.reply(reply, CallResult { ip, port, ..ok });
            }
            SessionOp::IsOnline => self.reply(reply, CallResult { online: true, ..ok }),
            SessionOp::Subscribe(ch) => {
                if let Some(name) = self.rooms.join(&ch, idx) {
                    c.rooms.push(name);
                }
                self.reply(reply, ok);
            }
            SessionOp::Unsubscribe(ch) => {
                if self.rooms.leave(&ch, idx) {
                    c.rooms.retain(|r| **r != *ch);
                }
                self.reply(reply, ok);
            }
        }
    }

    /// Writes an encoded packet to every (bound) session of this shard.
    fn broadcast_local(&mut self, pkt: &Bytes, bound_only: bool) -> u64 {
        let mut n = 0;
        for idx in self.clients.live() {
            let bound = self
                .clients
                .get_mut(idx)
                .is_some_and(|c| c.conn.session.is_bound());
            if (!bound_only || bound) && self.send_encoded(idx, pkt) {
                n += 1;
            }
        }
        n
    }

    /// Writes an encoded packet to this shard's members of `channel`.
    fn publish_local(&mut self, channel: &str, pkt: &Bytes) -> u64 {
        let members: Vec<u32> = self.rooms.members(channel).collect();
        let mut n = 0;
        for idx in members {
            if self.send_encoded(idx, pkt) {
                n += 1;
            }
        }
        n
    }

    /// Session bookkeeping when a connection closes: one disconnect event
    /// (if nodes heard of the session), its user out of the directory, its
    /// channels left.
    pub(super) fn on_session_closed(&mut self, idx: u32, reason: CloseReason, opened: bool) {
        let Some(c) = self.clients.get_mut(idx) else {
            return;
        };
        let (sid, uid) = (c.conn.id(), c.conn.session.uid);
        for r in std::mem::take(&mut c.rooms) {
            self.rooms.leave(&r, idx);
        }
        if uid.0 != 0 {
            self.stats().bound.fetch_sub(1, Relaxed);
            self.dir_unbind(uid, sid);
        }
        if opened {
            self.emit(Event {
                kind: EventKind::EventDisconnect as i32,
                session_id: sid.0,
                uid: uid.0,
                reason: proto_reason(reason) as i32,
                ..Default::default()
            });
        }
    }

    /// The transport handshake is done: nodes hear of the session.
    pub(super) fn on_opened(&mut self, idx: u32) {
        let Some(c) = self.clients.get_mut(idx) else {
            return;
        };
        let peer = c.conn.peer();
        let ev = Event {
            kind: EventKind::EventConnect as i32,
            session_id: c.conn.id().0,
            ip: peer.ip().to_string(),
            port: u32::from(peer.port()),
            network: c.conn.network().as_str().into(),
            ..Default::default()
        };
        self.emit(ev);
    }

    /// Routes one client request to a node, or answers it with an error.
    pub(super) fn dispatch(&mut self, idx: u32, p: Packet) {
        match self.routes.pick(p.route, &self.links) {
            Ok(link) => {
                let deliver_settings = self.p.session.deliver_settings;
                let Some(c) = self.clients.get_mut(idx) else {
                    return;
                };
                let s = &c.conn.session;
                let msg = ToNode {
                    msg: Some(to_node::Msg::Deliver(Deliver {
                        session_id: s.id.0,
                        uid: s.uid.0,
                        route: p.route,
                        seq: p.seq,
                        payload: p.payload,
                        settings: if deliver_settings {
                            s.settings.to_map()
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
                    if code == codec::ext::NO_ROUTE {
                        &st.no_route
                    } else {
                        &st.node_down
                    },
                    1,
                );
                tracing::debug!(idx, route = p.route, code, "request not routable");
                self.with_conn(idx, |c, cx| c.send_packet(code, p.route, p.seq, &[], cx));
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
        match self.clients.by_session(sid) {
            Some((idx, _)) => {
                let ext = (ext & 0x7f) as u8;
                self.with_conn(idx, |c, cx| c.send_packet(ext, route, seq, payload, cx));
            }
            None => {
                ShardStats::add(&self.stats().push_misses, 1);
                tracing::debug!(session = %sid, "push for a session that is gone");
            }
        }
    }
}
