//! What nodes ask of the gate (calls) and what the gate answers and tells
//! them (results, events). A call arrives on any link of any shard; the
//! work it names is routed to where it lives (`session_ops`), and the shard
//! that finishes it answers on its own link to the same node (links are
//! indexed by `[[nodes]]` order on every shard). Calls that fan out —
//! multicast, broadcast, publish — are answered once, with the total
//! delivered, by a gather on the shard that took the call (`gather`).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::mailbox::{ReplyTo, SessionOp, ToShard};
use super::{Shard, ShardStats};
use crate::codec;
use crate::connection::Outgoing;
use crate::ids::{SessionId, UserId};
use crate::link::proto::{self, call, to_node, CallResult, Code, Event, ToNode};
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
        CloseReason::RateLimited => P::CloseRateLimited,
        // Never opened: nodes heard of none of these sessions.
        CloseReason::Refused | CloseReason::HandshakeTimeout | CloseReason::UpgradeRejected => {
            P::CloseUnspecified
        }
    }
}

/// The packet fields of a call (push, multicast, broadcast, publish).
pub(super) struct PacketMsg<'a> {
    ext: u32,
    route: i32,
    seq: i32,
    payload: &'a Bytes,
    topic: &'a str,
}

impl<'a> PacketMsg<'a> {
    fn of(topic: &'a str, route: i32, seq: i32, payload: &'a Bytes) -> Self {
        PacketMsg {
            ext: 0,
            route,
            seq,
            payload,
            topic,
        }
    }

    fn of_push(p: &'a proto::PushTo) -> Self {
        PacketMsg {
            ext: p.ext,
            ..Self::of(&p.topic, p.route, p.seq, &p.payload)
        }
    }
}

impl Shard {
    /// The MQTT topic of a packet from node `node`: `topic` if given, else
    /// the name the node announced for `route`, else the route in decimal.
    pub(super) fn topic_for<'a>(
        &'a self,
        node: usize,
        topic: &'a str,
        route: i32,
    ) -> std::borrow::Cow<'a, str> {
        if !topic.is_empty() {
            return topic.into();
        }
        match self.links.get(node).and_then(|l| l.name_of(route)) {
            Some(name) => name.into(),
            None => route.to_string().into(),
        }
    }

    /// Encodes a packet once, to be shared by every session it goes to:
    /// for due clients, and the topic for MQTT clients (`topic`, else the
    /// name node `node` gave `route`, else the route in decimal).
    pub(super) fn encode_packet(
        &self,
        node: usize,
        m: PacketMsg<'_>,
    ) -> Result<Outgoing, codec::CodecError> {
        let mut b = BytesMut::with_capacity(m.payload.len() + 16);
        codec::encode_data(
            (m.ext & 0x7f) as u8,
            m.route,
            m.seq,
            m.payload,
            self.p.packet(),
            &mut b,
        )?;
        Ok(Outgoing {
            packet: b.freeze(),
            topic: Arc::from(self.topic_for(node, m.topic, m.route).as_ref()),
            payload: m.payload.clone(),
        })
    }

    /// Answers a call on this shard's link to the node that made it.
    pub(super) fn reply(&mut self, to: Option<ReplyTo>, r: CallResult) {
        let (node, call_id) = match to {
            None => return,
            Some(ReplyTo::Node { node, call_id }) => (node, call_id),
            Some(ReplyTo::Gather { shard, id }) => {
                let delivered = if r.code == Code::Ok as i32 {
                    r.delivered
                } else {
                    0
                };
                if usize::from(shard) == self.me() {
                    return self.on_gathered(id, delivered);
                }
                return self.send_to(usize::from(shard), ToShard::Gathered { id, delivered });
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

    /// One part of a fanned-out call reported; the last one answers the node.
    pub(super) fn on_gathered(&mut self, id: u32, delivered: u64) {
        if let Some((to, delivered)) = self.gathers.report(id, delivered) {
            self.reply(
                Some(to),
                CallResult {
                    delivered,
                    ..Default::default()
                },
            );
        }
    }

    pub(super) fn reply_code(&mut self, to: Option<ReplyTo>, code: Code, message: &str) {
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

    /// Numbers an event (per kind, on this shard) and sends it to every node
    /// that subscribed to its kind. A link whose queue is over its limit
    /// misses it (counted); the node sees the gap in `seq`.
    pub(super) fn emit(&mut self, mut ev: Event) {
        let kind = ev.kind as usize;
        let Some(seq) = self.event_seqs.get_mut(kind) else {
            return;
        };
        *seq += 1;
        ev.seq = *seq;
        let bit = 1u32 << kind;
        let max = self.p.link.max_queued_bytes;
        let (mut sent, mut dropped) = (0, 0);
        for l in self
            .links
            .iter_mut()
            .filter(|l| l.is_active() && l.events & bit != 0)
        {
            if l.queued() >= max {
                dropped += 1;
                continue;
            }
            l.batch.push(&ToNode {
                msg: Some(to_node::Msg::Event(ev.clone())),
            });
            sent += 1;
        }
        if sent > 0 {
            ShardStats::add(&self.stats().events_sent, sent);
        }
        if dropped > 0 {
            ShardStats::add(&self.stats().events_dropped, dropped);
            tracing::debug!(
                kind,
                seq = ev.seq,
                links = dropped,
                "event dropped: node link queue full"
            );
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
            call::Op::Push(p) => match self.encode_packet(node, PacketMsg::of_push(&p)) {
                Ok(pkt) => self.route_target(p.target, SessionOp::Push(pkt), reply),
                Err(e) => self.reply_code(reply, Code::Invalid, &e.to_string()),
            },
            call::Op::Multicast(m) => self.call_multicast(node, m, reply),
            call::Op::Broadcast(b) => match self
                .encode_packet(node, PacketMsg::of(&b.topic, b.route, b.seq, &b.payload))
            {
                Ok(packet) => self.fan_out(reply, |reply| ToShard::Broadcast {
                    packet: packet.clone(),
                    bound_only: b.bound_only,
                    reply,
                }),
                Err(e) => self.reply_code(reply, Code::Invalid, &e.to_string()),
            },
            call::Op::Publish(p) => match self
                .encode_packet(node, PacketMsg::of(&p.topic, p.route, p.seq, &p.payload))
            {
                Ok(packet) => {
                    let channel: Arc<str> = Arc::from(p.channel.as_str());
                    self.fan_out(reply, |reply| ToShard::Publish {
                        channel: channel.clone(),
                        packet: packet.clone(),
                        reply,
                    })
                }
                Err(e) => self.reply_code(reply, Code::Invalid, &e.to_string()),
            },
            call::Op::Kick(k) => {
                let (flush, reason) = (k.flush, CloseReason::Kicked);
                self.route_target(k.target, SessionOp::Kick { flush, reason }, reply)
            }
            call::Op::Bind(b) => self.call_bind(UserId(b.uid), SessionId(b.session_id), reply),
            call::Op::Unbind(t) => self.route_target(Some(t), SessionOp::Unbind, reply),
            call::Op::Settings(s) => {
                let (set, remove) = (s.set, s.remove);
                self.route_target(s.target, SessionOp::Settings { set, remove }, reply)
            }
            call::Op::GetIp(t) => self.route_target(Some(t), SessionOp::GetIp, reply),
            call::Op::IsOnline(t) => self.route_target(Some(t), SessionOp::IsOnline, reply),
            call::Op::Stat(_) => self.call_stat(reply),
            call::Op::Subscribe(m) => self.route_members(m, SessionOp::Subscribe, reply),
            call::Op::Unsubscribe(m) => self.route_members(m, SessionOp::Unsubscribe, reply),
            call::Op::Snapshot(_) => self.call_snapshot(node, c.call_id),
            call::Op::BindNode(b) => self.call_node_binding(node, b, true, reply),
            call::Op::UnbindNode(b) => self.call_node_binding(node, b, false, reply),
        }
    }

    /// Binds (or compare-and-unbinds) a user's node for a service; empty
    /// fields name the calling node and its service.
    fn call_node_binding(
        &mut self,
        node: usize,
        b: proto::NodeBinding,
        bind: bool,
        reply: Option<ReplyTo>,
    ) {
        let l = &self.links[node];
        let service = if b.service.is_empty() {
            l.service.as_str()
        } else {
            b.service.as_str()
        };
        let id = if b.node_id.is_empty() {
            l.node_id.as_str()
        } else {
            b.node_id.as_str()
        };
        if service.is_empty() || id.is_empty() {
            let why = "bind_node needs a service and a node id (the calling node announced none)";
            return self.reply_code(reply, Code::Invalid, why);
        }
        let op = SessionOp::NodeBinding {
            service: service.into(),
            node: id.into(),
            bind,
        };
        self.route_target(b.target, op, reply);
    }

    /// Pushes to each target; answered with the number of sessions found,
    /// once every target has reported (see `gather`).
    pub(super) fn call_multicast(
        &mut self,
        node: usize,
        m: proto::Multicast,
        reply: Option<ReplyTo>,
    ) {
        let pkt =
            match self.encode_packet(node, PacketMsg::of(&m.topic, m.route, m.seq, &m.payload)) {
                Ok(p) => p,
                Err(e) => return self.reply_code(reply, Code::Invalid, &e.to_string()),
            };
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

    /// Runs `msg` on every shard (this one directly); answered with the sum
    /// of what each shard delivered, once all have reported.
    pub(super) fn fan_out(
        &mut self,
        reply: Option<ReplyTo>,
        msg: impl Fn(Option<ReplyTo>) -> ToShard,
    ) {
        let each = reply.map(|to| ReplyTo::Gather {
            shard: self.p.id.0,
            id: self.gathers.start(usize::from(self.p.shards), to),
        });
        let me = self.me();
        for dest in (0..usize::from(self.p.shards)).filter(|d| *d != me) {
            self.send_to(dest, msg(each));
        }
        self.on_mail(msg(each));
    }

    /// Binds a user: the directory on the uid's home shard decides.
    pub(super) fn call_bind(&mut self, uid: UserId, sid: SessionId, reply: Option<ReplyTo>) {
        if uid.0 == 0 {
            return self.reply_code(
                reply,
                Code::Invalid,
                "uid 0 means unbound; bind a non-zero uid",
            );
        }
        let home = uid.home_shard(self.p.shards).0 as usize;
        if home == self.me() {
            self.dir_bind(uid, sid, reply);
        } else {
            self.send_to(home, ToShard::DirBind { uid, sid, reply });
        }
    }

    /// Connections and bound users, per shard and in total.
    pub(super) fn call_stat(&mut self, reply: Option<ReplyTo>) {
        let shards: Vec<proto::ShardStat> = (self.shared.stats.iter().enumerate())
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
        let r = CallResult {
            stat: Some(stat),
            ..Default::default()
        };
        self.reply(reply, r);
    }

    /// Subscribe / unsubscribe each target of `m`. One target is answered
    /// as any session operation (NOT_FOUND if it is gone); several are
    /// answered once, with the number found, when all have reported.
    pub(super) fn route_members(
        &mut self,
        m: proto::ChannelMembers,
        op: fn(Arc<str>) -> SessionOp,
        reply: Option<ReplyTo>,
    ) {
        if m.targets.is_empty() {
            return self.reply_code(reply, Code::Invalid, "channel membership needs targets");
        }
        let ch: Arc<str> = Arc::from(m.channel.as_str());
        let each = match reply {
            Some(to) if m.targets.len() > 1 => Some(ReplyTo::Gather {
                shard: self.p.id.0,
                id: self.gathers.start(m.targets.len(), to),
            }),
            r => r,
        };
        for t in m.targets {
            self.route_target(Some(t), op(ch.clone()), each);
        }
    }
}
