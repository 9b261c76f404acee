//! What crosses between a client and the nodes: its requests forwarded to
//! the node serving their route (or answered with an error code), pushes
//! from nodes delivered (from any link, to the shard that owns the
//! session), the connect and disconnect events nodes hear, and the error
//! replies of requests whose node never answered (see `requests`).

use std::sync::atomic::Ordering::Relaxed;

use prost::Message;

use super::fleet_hooks::FleetNote;
use super::mailbox::ToShard;
use super::mqtt::Answer;
use super::node_calls::proto_reason;
use super::requests::Waiting;
use super::routes::Asker;
use super::{Shard, ShardStats};
use crate::codec::{self, Packet};
use crate::config::LINK_ENVELOPE_BYTES;
use crate::ids::SessionId;
use crate::link::proto::{to_node, Deliver, Event, EventKind, Push, ResultFormat, ToNode};
use crate::session::CloseReason;

impl Shard {
    /// The transport handshake is done: nodes hear of the session.
    pub(super) fn on_opened(&mut self, idx: u32) {
        let Some(c) = self.clients.get_mut(idx) else {
            return;
        };
        let peer = c.conn.peer();
        let mut ev = Event {
            kind: EventKind::EventConnect as i32,
            session_id: c.conn.id().0,
            ip: peer.ip().to_string(),
            port: u32::from(peer.port()),
            network: c.conn.network().as_str().into(),
            ..Default::default()
        };
        let mqtt = c.conn.mqtt().map(|m| {
            ev.client_id = m.client_id.clone();
            ev.username = m.username.clone();
            ev.password = m.password.clone();
        });
        if mqtt.is_some() {
            self.route_client_id(idx, true);
        }
        self.emit(ev);
    }

    /// Session bookkeeping when a connection closes: one disconnect event
    /// (if nodes heard of the session), its user out of the directory, its
    /// channels left.
    pub(super) fn on_session_closed(&mut self, idx: u32, reason: CloseReason, opened: bool) {
        let Some(c) = self.clients.get_mut(idx) else {
            return;
        };
        let (sid, uid) = (c.conn.id(), c.conn.session.uid);
        if opened && c.conn.mqtt().is_some() {
            self.route_client_id(idx, false);
        }
        let Some(c) = self.clients.get_mut(idx) else {
            return;
        };
        for r in c.rooms.take().into_iter().flat_map(|v| *v) {
            self.rooms.leave(&r, idx);
        }
        if uid.0 != 0 {
            self.stats().bound.fetch_sub(1, Relaxed);
            self.dir_unbind(uid, sid);
            self.note_fleet(FleetNote::Unbound { uid, sid });
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

    /// Routes one client request to a node, or answers it with an error.
    pub(super) fn dispatch(&mut self, idx: u32, p: Packet) {
        if self.over_rate(idx, p.payload.len()) {
            self.refuse(idx, &p, codec::ext::RATE_LIMITED);
            return self.after_rate_limit(idx);
        }
        let Some(c) = self.clients.get_mut(idx) else {
            return;
        };
        let s = &c.conn.session;
        let who = Asker {
            uid: s.uid.0,
            session: s.id.0,
            nodes: &s.nodes,
        };
        let pick = match (self.routes).pick(p.route, &self.links, who, self.p.dispatch) {
            Ok(pick) => pick,
            Err(code) => return self.refuse(idx, &p, code),
        };
        let link = pick.link;
        if pick.reply_within.is_some() && self.inflight_full(idx) {
            return self.refuse(idx, &p, codec::ext::INFLIGHT_FULL);
        }
        if self.links[link].queued() >= self.p.link.max_queued_bytes {
            return self.refuse(idx, &p, codec::ext::BUSY);
        }
        let deliver_settings = self.p.session.deliver_settings;
        let Some(c) = self.clients.get_mut(idx) else {
            return;
        };
        let s = &c.conn.session;
        let mut deliver = Deliver {
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
            request_id: 0,
            ..Default::default()
        };
        let limit = self.links[link].batch.frame_limit();
        if deliver.payload.len() + LINK_ENVELOPE_BYTES > limit && deliver.encoded_len() + 16 > limit
        {
            let p = Packet {
                payload: deliver.payload,
                ..p
            };
            return self.refuse(idx, &p, codec::ext::TOO_LARGE);
        }
        if let Some(timeout) = pick.reply_within {
            if let Some(c) = self.clients.get_mut(idx) {
                c.inflight = c.inflight.saturating_add(1);
            }
            let sid = SessionId(deliver.session_id);
            deliver.request_id =
                self.pending
                    .start_at(link, sid, p.route, p.seq, self.now, timeout, self.now_ns);
            if self.pending.on_link(link) == 1 {
                self.links[link].busy_since = self.now;
            }
        }
        self.links[link].batch.push(&ToNode {
            msg: Some(to_node::Msg::Deliver(deliver)),
        });
        ShardStats::add(&self.stats().to_node, 1);
    }

    /// Answers a request the gate will not forward with error `code`.
    fn refuse(&mut self, idx: u32, p: &Packet, code: u8) {
        self.count_refusal(code);
        tracing::debug!(idx, route = p.route, code, "request not forwarded");
        self.with_conn(idx, |c, cx| c.send_packet(code, p.route, p.seq, &[], cx));
    }

    /// Counts a request the gate answered itself with error `code`.
    pub(super) fn count_refusal(&self, code: u8) {
        let st = self.stats();
        ShardStats::add(
            match code {
                codec::ext::NO_ROUTE => &st.no_route,
                codec::ext::BUSY => &st.link_busy,
                codec::ext::TOO_LARGE => &st.too_large,
                codec::ext::UNAUTHORIZED => &st.unauthorized,
                codec::ext::FORBIDDEN => &st.forbidden,
                codec::ext::NOT_BOUND => &st.not_bound,
                codec::ext::RATE_LIMITED => &st.rate_limited,
                codec::ext::INFLIGHT_FULL => &st.inflight_full,
                _ => &st.node_down,
            },
            1,
        );
    }

    /// A node's packet for a client, from any link: delivered here if this
    /// shard owns the session, else handed to the shard that does.
    pub(super) fn on_node_push(&mut self, link: usize, p: Push) {
        let sid = SessionId(p.session_id);
        let dest = usize::from(sid.shard().0);
        if dest == self.me() {
            self.deliver_node_push(link, p);
        } else if dest < usize::from(self.p.shards) {
            let link = link as u16;
            self.send_to(dest, ToShard::NodePush { push: p, link });
        } else {
            ShardStats::add(&self.stats().push_misses, 1);
            tracing::debug!(session = %sid, "push for a session id of no shard of this gate");
        }
    }

    /// A node's packet for a session of this shard; if it answers a request
    /// the gate waits for, that request ends here (a late answer is dropped).
    /// `link`: the index of the link it came on (the same on every shard),
    /// whose node's route names give MQTT clients their topic.
    pub(super) fn deliver_node_push(&mut self, link: usize, p: Push) {
        let sid = SessionId(p.session_id);
        if p.request_id == 0 {
            return self.deliver_push(link, sid, &p);
        }
        let Some(w) = self.pending.finish(p.request_id, link) else {
            ShardStats::add(&self.stats().late_replies, 1);
            tracing::debug!(session = %sid, request_id = p.request_id, "reply to a request that already ended (timed out or answered) or went to another node; dropped");
            return;
        };
        (self.stats().latency).record(self.now_ns.saturating_sub(w.started_ns));
        self.answer_request(
            w.sid,
            Answer {
                ext: (p.ext & 0x7f) as u8,
                route: p.route,
                seq: p.seq,
                token: w.seq,
                payload: &p.payload,
                error: &p.error,
                format: p.format(),
            },
        );
    }

    /// Requests whose reply is overdue get TIMEOUT.
    pub(super) fn expire_requests(&mut self) {
        let mut out = std::mem::take(&mut self.ended);
        self.pending.expired(self.now, &mut out);
        if !out.is_empty() {
            ShardStats::add(&self.stats().request_timeouts, out.len() as u64);
            tracing::debug!(n = out.len(), "requests timed out waiting for their node");
        }
        self.answer_ended(&mut out, codec::ext::TIMEOUT);
        self.ended = out;
    }

    /// Requests waiting on link `i` (which is going down) get NODE_DOWN.
    pub(super) fn fail_waiting(&mut self, i: usize) {
        let mut out = std::mem::take(&mut self.ended);
        self.pending.drain_link(i, &mut out);
        if !out.is_empty() {
            ShardStats::add(&self.stats().requests_orphaned, out.len() as u64);
            tracing::info!(node = %self.links[i].addr, n = out.len(), "requests lost with their node link answered NODE_DOWN");
        }
        self.answer_ended(&mut out, codec::ext::NODE_DOWN);
        self.ended = out;
    }

    fn answer_ended(&mut self, ended: &mut Vec<Waiting>, code: u8) {
        for w in ended.drain(..) {
            let a = Answer {
                ext: code,
                route: w.route,
                seq: w.seq,
                token: w.seq,
                payload: &[],
                error: "",
                format: ResultFormat::ResultRaw,
            };
            self.answer_request(w.sid, a);
        }
    }

    /// Delivers a node's push (not a reply) to a session of this shard:
    /// a due packet, or a PUBLISH on its topic (see `topic_for`).
    fn deliver_push(&mut self, link: usize, sid: SessionId, p: &Push) {
        let Some((idx, c)) = self.clients.by_session(sid) else {
            ShardStats::add(&self.stats().push_misses, 1);
            tracing::debug!(session = %sid, "push for a session that is gone");
            return;
        };
        if c.conn.mqtt().is_some() {
            // Resolved here, for MQTT sessions only: due pushes allocate nothing.
            let topic = self.topic_for(link, &p.topic, p.route).into_owned();
            self.with_conn(idx, |c, cx| c.send_publish(&topic, &p.payload, cx));
            return;
        }
        let ext = (p.ext & 0x7f) as u8;
        self.with_conn(idx, |c, cx| {
            c.send_packet(ext, p.route, p.seq, &p.payload, cx)
        });
    }
}
