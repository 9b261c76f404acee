//! What crosses between a client and the nodes: its requests forwarded to
//! the node serving their route (or answered with an error code), pushes
//! from nodes delivered, and the connect and disconnect events nodes hear.

use std::sync::atomic::Ordering::Relaxed;

use super::node_calls::proto_reason;
use super::{Shard, ShardStats};
use crate::codec::{self, Packet};
use crate::ids::SessionId;
use crate::link::proto::{to_node, Deliver, Event, EventKind, ToNode};
use crate::session::CloseReason;

impl Shard {
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
                        request_id: 0,
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
