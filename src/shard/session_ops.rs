//! Operations on sessions, wherever they live: where a push, kick or bind
//! crosses shards.
//!
//! ```text
//!  by session S    ──▶ shard(S)                         (S encodes its shard)
//!  by user U       ──▶ home(U) ─directory─▶ shard(S)    (home = hash(U) % shards)
//!  bind(S, U)      ──▶ home(U): directory decides ─▶ shard(S): Attach (and kick the old session)
//!  broadcast, publish ──▶ encoded once, then every shard writes to its own sessions
//! ```
//! Every operation that names a reply gets one: done, not found, or BUSY
//! when a cross-shard inbox and its backlog were full (see `mailbox`).

use std::sync::atomic::Ordering::Relaxed;

use super::directory::BindOutcome;
use super::fleet_hooks::FleetNote;
use super::mailbox::{ReplyTo, Sent, SessionOp, ToShard};
use super::{Shard, ShardStats};
use crate::connection::{Close, Outgoing};
use crate::ids::{SessionId, UserId};
use crate::link::proto::{self, target, CallResult, Code, Event, EventKind};
use crate::session::CloseReason;

impl Shard {
    /// Sends to another shard, answering BUSY if it had to be dropped.
    pub(super) fn send_to(&mut self, dest: usize, msg: ToShard) {
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
        match self.dir.lookup(&uid.0) {
            Some(sid) => self.route_session(sid, op, reply),
            None => self.not_found(op, reply),
        }
    }

    pub(super) fn not_found(&mut self, op: SessionOp, reply: Option<ReplyTo>) {
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

    pub(super) fn route_target(
        &mut self,
        t: Option<proto::Target>,
        op: SessionOp,
        reply: Option<ReplyTo>,
    ) {
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

    /// A message from another shard (or, for a fan-out, from this one).
    pub(super) fn on_mail(&mut self, m: ToShard) {
        match m {
            ToShard::Session { sid, op, reply } => self.exec_session(sid, op, reply),
            ToShard::Uid { uid, op, reply } => match self.dir.lookup(&uid.0) {
                Some(sid) => self.route_session(sid, op, reply),
                None => self.not_found(op, reply),
            },
            ToShard::DirBind { uid, sid, reply } => self.dir_bind(uid, sid, reply),
            ToShard::DirUnbind { uid, sid } => {
                self.dir.unbind_if(&uid.0, sid);
            }
            ToShard::Gathered { id, delivered } => self.on_gathered(id, delivered),
            ToShard::NodePush { push, link } => self.deliver_node_push(usize::from(link), push),
            ToShard::ClientIdClaim { client_id, sid } => self.claim_client_id(client_id, sid),
            ToShard::ClientIdRelease { client_id, sid } => {
                self.client_ids.unbind_if(&client_id, sid);
            }
            ToShard::Broadcast {
                packet,
                bound_only,
                reply,
            } => {
                let delivered = self.broadcast_local(&packet, bound_only);
                self.reply_delivered(reply, delivered);
            }
            ToShard::Publish {
                channel,
                packet,
                reply,
            } => {
                let delivered = self.publish_local(&channel, &packet);
                self.reply_delivered(reply, delivered);
            }
        }
    }

    pub(super) fn reply_delivered(&mut self, reply: Option<ReplyTo>, delivered: u64) {
        let r = CallResult {
            delivered,
            ..Default::default()
        };
        self.reply(reply, r);
    }

    /// The directory side of a bind, on the uid's home shard.
    pub(super) fn dir_bind(&mut self, uid: UserId, sid: SessionId, reply: Option<ReplyTo>) {
        match self.dir.bind(uid.0, sid, self.p.session.rebind) {
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
    pub(super) fn dir_unbind(&mut self, uid: UserId, sid: SessionId) {
        let home = uid.home_shard(self.p.shards).0 as usize;
        if home == self.me() {
            self.dir.unbind_if(&uid.0, sid);
        } else {
            self.send_to(home, ToShard::DirUnbind { uid, sid });
        }
    }

    /// Executes an operation on a session of this shard.
    pub(super) fn exec_session(&mut self, sid: SessionId, op: SessionOp, reply: Option<ReplyTo>) {
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
                    self.reply(reply, CallResult { delivered: 1, ..ok });
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
                if old != uid {
                    // Node bindings belong to the user, not the connection.
                    c.conn.session.nodes = Default::default();
                }
                c.conn.session.handle_bind(uid);
                self.attached(sid, old, uid);
                self.reply(reply, ok);
            }
            SessionOp::Unbind => {
                let old = c.conn.session.uid;
                if old.0 != 0 {
                    c.conn.session.nodes = Default::default();
                    c.conn.session.handle_unbind(self.now);
                    self.unbound(idx, sid, old);
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
                    Ok(()) => {
                        let s = &c.conn.session;
                        let uid = s.uid;
                        let stored = (uid.0 != 0).then(|| s.settings.to_map());
                        if let Some(settings) = stored.filter(|_| self.fleet_listens()) {
                            self.note_fleet(FleetNote::Settings { uid, settings });
                        }
                        self.reply(reply, ok)
                    }
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
                    c.rooms.get_or_insert_with(Default::default).push(name);
                }
                self.reply(reply, CallResult { delivered: 1, ..ok });
            }
            SessionOp::Unsubscribe(ch) => {
                if self.rooms.leave(&ch, idx) {
                    if let Some(rooms) = c.rooms.as_deref_mut() {
                        rooms.retain(|r| **r != *ch);
                    }
                }
                self.reply(reply, CallResult { delivered: 1, ..ok });
            }
            SessionOp::NodeBinding {
                service,
                node,
                bind,
            } => {
                let s = &mut c.conn.session;
                if s.uid.0 == 0 {
                    return self.reply_code(
                        reply,
                        Code::Invalid,
                        "the session has no user to bind",
                    );
                }
                let delivered = if bind {
                    s.nodes.set(&service, &node);
                    1
                } else {
                    u64::from(s.nodes.remove_if(&service, &node))
                };
                let uid = s.uid;
                tracing::debug!(session = %sid, uid = uid.0, %service, %node, bind, "node binding");
                if self.fleet_listens() {
                    let note = FleetNote::NodeBinding {
                        uid,
                        service,
                        node,
                        bind,
                    };
                    self.note_fleet(note);
                }
                self.reply(reply, CallResult { delivered, ..ok });
            }
        }
    }

    /// Session `sid` was bound to `uid` (before: `old`): count, fix the
    /// directory, tell nodes.
    fn attached(&mut self, sid: SessionId, old: UserId, uid: UserId) {
        if old.0 == 0 {
            ShardStats::add(&self.stats().bound, 1);
        } else if old != uid {
            self.dir_unbind(old, sid);
            self.note_fleet(FleetNote::Unbound { uid: old, sid });
        }
        if old != uid {
            self.note_fleet(FleetNote::Bound { uid, sid });
            self.emit(Event {
                kind: EventKind::EventBind as i32,
                session_id: sid.0,
                uid: uid.0,
                ..Default::default()
            });
        }
    }

    /// Session `sid` (in slot `idx`) lost its user `old`: count, fix the
    /// directory, re-arm its authorize timer, tell nodes.
    fn unbound(&mut self, idx: u32, sid: SessionId, old: UserId) {
        self.stats().bound.fetch_sub(1, Relaxed);
        self.dir_unbind(old, sid);
        self.note_fleet(FleetNote::Unbound { uid: old, sid });
        self.with_conn(idx, |_, _| ()); // settles: re-arms its authorize timer
        self.emit(Event {
            kind: EventKind::EventUnbind as i32,
            session_id: sid.0,
            uid: old.0,
            ..Default::default()
        });
    }

    /// Writes an encoded packet to every (bound) session of this shard.
    pub(super) fn broadcast_local(&mut self, pkt: &Outgoing, bound_only: bool) -> u64 {
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
    pub(super) fn publish_local(&mut self, channel: &str, pkt: &Outgoing) -> u64 {
        let members: Vec<u32> = self.rooms.members(channel).collect();
        let mut n = 0;
        for idx in members {
            if self.send_encoded(idx, pkt) {
                n += 1;
            }
        }
        n
    }
}
