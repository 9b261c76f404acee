//! The operations of [`GateClient`]: one method per `Call` of the protocol,
//! blocking, plus a `_nowait` twin for those that change something.
//!
//! | operation | goes on the link of | blocking result |
//! |---|---|---|
//! | `push`, `push_uid`, `push_topic` | the target's shard | `()`; `NotFound` if gone |
//! | `multicast`, `multicast_topic` | any (one target: its shard) | packets queued |
//! | `broadcast`, `broadcast_topic` | any | packets queued (when known) |
//! | `kick`, `unbind`, `set_settings` | the target's shard | `()` |
//! | `bind(session, uid)` | the user's home shard | `()`; `AlreadyBound` |
//! | `get_ip`, `is_online` | the target's shard | address / bool |
//! | `stat` | any | [`Stat`] |
//! | `subscribe`, `unsubscribe` | any (one target: its shard) | `()` |
//! | `publish`, `publish_topic` | any | packets queued (when known) |
//! | `snapshot(shard)` | that shard (no other) | sessions in the snapshot |
//!
//! Each method checks its targets, builds its `call::Op` (`messages.rs`) and
//! hands it to the client's `call` (blocking) or `cast` (`_nowait`); which
//! link it goes on is the client's choice, not this module's.
//!
//! The `*_topic` twins send the same packet to MQTT sessions as a PUBLISH
//! on the given topic (mqant's `Send`, `SendBatch`, `BroadCast`); other
//! clients get it on route 0, seq 0. Without a topic, MQTT sessions get a
//! packet on the name this node gave its route (else the route number).

use std::net::IpAddr;

use bytes::Bytes;

use super::error::NodeError;
use super::gate_client::{GateClient, Via};
use super::messages::{
    bind_op, broadcast_op, call_msg, kick_op, multicast_op, publish_op, push_op, settings_op,
    snapshot_op, subscribe_op, targets, topic_push_msg, unbind_op, unsubscribe_op, valid,
    valid_bind, with_topic,
};
use super::types::{Stat, Target};
use crate::ids::{SessionId, ShardId, UserId};
use crate::link::proto::{call, StatRequest};
use crate::link::LinkError;

/// Where a call about `targets` goes: one target's shard, else any link.
fn via_targets(targets: &[Target]) -> Via {
    match targets {
        [one] => Via::To(*one),
        _ => Via::Any,
    }
}

impl GateClient {
    /// Sends a packet to a session, or to the session a user is bound to,
    /// and waits until the gate has queued it. [`NodeError::NotFound`]: no
    /// such session, or the user is not bound on this gate.
    pub fn push(
        &self,
        to: impl Into<Target>,
        route: i32,
        seq: i32,
        payload: impl Into<Bytes>,
    ) -> Result<(), NodeError> {
        let to = valid(to.into())?;
        self.call(Via::To(to), push_op(to, route, seq, payload.into()))
            .map(drop)
    }

    /// [`GateClient::push`] without waiting. To a session whose shard's link
    /// is up this is a plain `Push` message (what a reply is); otherwise a
    /// `Call` with call id 0.
    pub fn push_nowait(
        &self,
        to: impl Into<Target>,
        route: i32,
        seq: i32,
        payload: impl Into<Bytes>,
    ) -> Result<(), NodeError> {
        let to = valid(to.into())?;
        let payload = payload.into();
        if let Target::Session(s) = to {
            if let Some(link) = self.session_link(s)? {
                return link.push(s, route, seq, payload, 0);
            }
        }
        self.cast(Via::To(to), push_op(to, route, seq, payload))
    }

    /// [`GateClient::push`] to the session user `uid` is bound to.
    pub fn push_uid(
        &self,
        uid: UserId,
        route: i32,
        seq: i32,
        payload: impl Into<Bytes>,
    ) -> Result<(), NodeError> {
        self.push(uid, route, seq, payload)
    }

    /// [`GateClient::push_nowait`] to the session user `uid` is bound to.
    pub fn push_uid_nowait(
        &self,
        uid: UserId,
        route: i32,
        seq: i32,
        payload: impl Into<Bytes>,
    ) -> Result<(), NodeError> {
        self.push_nowait(uid, route, seq, payload)
    }

    /// Sends one packet to many sessions and users (encoded once by the
    /// gate). Returns how many the gate queued it for. Unknown targets are
    /// skipped, not errors. No targets: `Ok(0)`, nothing sent.
    pub fn multicast(
        &self,
        to: impl IntoIterator<Item = impl Into<Target>>,
        route: i32,
        seq: i32,
        payload: impl Into<Bytes>,
    ) -> Result<u64, NodeError> {
        let to = targets(to)?;
        if to.is_empty() {
            return Ok(0);
        }
        let payload = payload.into();
        if let Some(groups) = self.group_by_gate(&to)? {
            let mut delivered = 0;
            for (gate, to) in groups {
                let op = multicast_op(&to, route, seq, payload.clone());
                delivered += gate.call(via_targets(&to), op)?.delivered;
            }
            return Ok(delivered);
        }
        let op = multicast_op(&to, route, seq, payload);
        Ok(self.call(via_targets(&to), op)?.delivered)
    }

    /// [`GateClient::multicast`] without waiting.
    pub fn multicast_nowait(
        &self,
        to: impl IntoIterator<Item = impl Into<Target>>,
        route: i32,
        seq: i32,
        payload: impl Into<Bytes>,
    ) -> Result<(), NodeError> {
        let to = targets(to)?;
        if to.is_empty() {
            return Ok(());
        }
        self.cast(
            via_targets(&to),
            multicast_op(&to, route, seq, payload.into()),
        )
    }

    /// Sends one packet to every session of the gate, or every session with
    /// a bound user. Returns how many sessions the gate reported queuing it
    /// for (at least those of the shard that answered).
    pub fn broadcast(
        &self,
        route: i32,
        seq: i32,
        payload: impl Into<Bytes>,
        bound_only: bool,
    ) -> Result<u64, NodeError> {
        let payload = payload.into();
        if let Some(gates) = self.each_gate() {
            let mut delivered = 0;
            for g in gates {
                delivered += g.broadcast(route, seq, payload.clone(), bound_only)?;
            }
            return Ok(delivered);
        }
        let op = broadcast_op(route, seq, payload, bound_only);
        Ok(self.call(Via::Any, op)?.delivered)
    }

    /// [`GateClient::broadcast`] without waiting.
    pub fn broadcast_nowait(
        &self,
        route: i32,
        seq: i32,
        payload: impl Into<Bytes>,
        bound_only: bool,
    ) -> Result<(), NodeError> {
        self.cast(
            Via::Any,
            broadcast_op(route, seq, payload.into(), bound_only),
        )
    }

    /// [`GateClient::push`] on MQTT topic `topic`: an MQTT session gets a
    /// PUBLISH on it (mqant's `session.Send`), other clients a packet on
    /// route 0, seq 0.
    pub fn push_topic(
        &self,
        to: impl Into<Target>,
        topic: &str,
        payload: impl Into<Bytes>,
    ) -> Result<(), NodeError> {
        let to = valid(to.into())?;
        let op = with_topic(push_op(to, 0, 0, payload.into()), topic);
        self.call(Via::To(to), op).map(drop)
    }

    /// [`GateClient::push_topic`] without waiting (as
    /// [`GateClient::push_nowait`]).
    pub fn push_topic_nowait(
        &self,
        to: impl Into<Target>,
        topic: &str,
        payload: impl Into<Bytes>,
    ) -> Result<(), NodeError> {
        let to = valid(to.into())?;
        let payload = payload.into();
        if let Target::Session(s) = to {
            if let Some(link) = self.session_link(s)? {
                return link.send(&topic_push_msg(s.0, topic, payload));
            }
        }
        self.cast(Via::To(to), with_topic(push_op(to, 0, 0, payload), topic))
    }

    /// [`GateClient::multicast`] on MQTT topic `topic` (mqant's
    /// `SendBatch`); returns how many sessions the gate queued it for.
    pub fn multicast_topic(
        &self,
        to: impl IntoIterator<Item = impl Into<Target>>,
        topic: &str,
        payload: impl Into<Bytes>,
    ) -> Result<u64, NodeError> {
        let to = targets(to)?;
        if to.is_empty() {
            return Ok(0);
        }
        let op = with_topic(multicast_op(&to, 0, 0, payload.into()), topic);
        Ok(self.call(via_targets(&to), op)?.delivered)
    }

    /// [`GateClient::multicast_topic`] without waiting.
    pub fn multicast_topic_nowait(
        &self,
        to: impl IntoIterator<Item = impl Into<Target>>,
        topic: &str,
        payload: impl Into<Bytes>,
    ) -> Result<(), NodeError> {
        let to = targets(to)?;
        if to.is_empty() {
            return Ok(());
        }
        let op = with_topic(multicast_op(&to, 0, 0, payload.into()), topic);
        self.cast(via_targets(&to), op)
    }

    /// [`GateClient::broadcast`] on MQTT topic `topic` (mqant's
    /// `BroadCast`).
    pub fn broadcast_topic(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        bound_only: bool,
    ) -> Result<u64, NodeError> {
        let op = with_topic(broadcast_op(0, 0, payload.into(), bound_only), topic);
        Ok(self.call(Via::Any, op)?.delivered)
    }

    /// [`GateClient::broadcast_topic`] without waiting.
    pub fn broadcast_topic_nowait(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        bound_only: bool,
    ) -> Result<(), NodeError> {
        let op = with_topic(broadcast_op(0, 0, payload.into(), bound_only), topic);
        self.cast(Via::Any, op)
    }

    /// Closes a session (reason `kicked`); with `flush`, what is already
    /// queued for the client is sent first.
    pub fn kick(&self, to: impl Into<Target>, flush: bool) -> Result<(), NodeError> {
        let to = valid(to.into())?;
        self.call(Via::To(to), kick_op(to, flush)).map(drop)
    }

    /// [`GateClient::kick`] without waiting.
    pub fn kick_nowait(&self, to: impl Into<Target>, flush: bool) -> Result<(), NodeError> {
        let to = valid(to.into())?;
        self.cast(Via::To(to), kick_op(to, flush))
    }

    /// Binds user `uid` to `session` (mqant's `Bind`). If the user is bound
    /// to another session, the gate's `session.rebind` decides: `kick` (the
    /// default) closes the old session with reason `rebind`; `reject`
    /// answers [`NodeError::AlreadyBound`]. `UserId(0)`:
    /// [`NodeError::Invalid`] without asking.
    pub fn bind(&self, session: SessionId, uid: UserId) -> Result<(), NodeError> {
        valid_bind(uid)?;
        self.call(Via::Home(uid), bind_op(session, uid)).map(drop)
    }

    /// [`GateClient::bind`] without waiting.
    pub fn bind_nowait(&self, session: SessionId, uid: UserId) -> Result<(), NodeError> {
        valid_bind(uid)?;
        self.cast(Via::Home(uid), bind_op(session, uid))
    }

    /// Unbinds the user of a session (mqant's `UnBind`); the session stays
    /// and the gate's authorize timeout starts again.
    pub fn unbind(&self, to: impl Into<Target>) -> Result<(), NodeError> {
        let to = valid(to.into())?;
        self.call(Via::To(to), unbind_op(to)).map(drop)
    }

    /// [`GateClient::unbind`] without waiting.
    pub fn unbind_nowait(&self, to: impl Into<Target>) -> Result<(), NodeError> {
        let to = valid(to.into())?;
        self.cast(Via::To(to), unbind_op(to))
    }

    /// Sets (`set`) and removes (`remove`) settings of a session (mqant's
    /// `Set` + `Push`). Nodes see them in [`Context::settings`](super::Context::settings)
    /// when the gate's `session.deliver_settings` is on. Over the gate's
    /// limits: [`NodeError::Invalid`].
    ///
    /// ```no_run
    /// # fn f(gate: &ringgate::node::GateClient, s: ringgate::SessionId) -> Result<(), ringgate::node::NodeError> {
    /// gate.set_settings(s, &[("room", "lobby"), ("team", "red")], &["spectator"])?;
    /// # Ok(()) }
    /// ```
    pub fn set_settings(
        &self,
        to: impl Into<Target>,
        set: &[(&str, &str)],
        remove: &[&str],
    ) -> Result<(), NodeError> {
        let to = valid(to.into())?;
        self.call(Via::To(to), settings_op(to, set, remove))
            .map(drop)
    }

    /// [`GateClient::set_settings`] without waiting.
    pub fn set_settings_nowait(
        &self,
        to: impl Into<Target>,
        set: &[(&str, &str)],
        remove: &[&str],
    ) -> Result<(), NodeError> {
        let to = valid(to.into())?;
        self.cast(Via::To(to), settings_op(to, set, remove))
    }

    /// The client's address as the gate sees it.
    pub fn get_ip(&self, to: impl Into<Target>) -> Result<(IpAddr, u16), NodeError> {
        let to = valid(to.into())?;
        let r = self.call(Via::To(to), call::Op::GetIp(to.to_proto()))?;
        let ip =
            r.ip.parse()
                .map_err(|_| LinkError::Protocol("CallResult.ip is not an IP address"))?;
        let port = u16::try_from(r.port)
            .map_err(|_| LinkError::Protocol("CallResult.port does not fit 16 bits"))?;
        Ok((ip, port))
    }

    /// Whether the session exists, or the user is bound, on this gate.
    pub fn is_online(&self, to: impl Into<Target>) -> Result<bool, NodeError> {
        let to = valid(to.into())?;
        match self.call(Via::To(to), call::Op::IsOnline(to.to_proto())) {
            Ok(r) => Ok(r.online),
            Err(NodeError::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The gate's connection counts, in total and per shard.
    pub fn stat(&self) -> Result<Stat, NodeError> {
        if let Some(gates) = self.each_gate() {
            let mut sum = Stat::default();
            for g in gates {
                sum.add(&g.stat()?);
            }
            return Ok(sum);
        }
        let r = self.call(Via::Any, call::Op::Stat(StatRequest {}))?;
        Ok(r.stat.map(Stat::from).unwrap_or_default())
    }

    /// Adds sessions and users to channel `channel` (a room) for
    /// [`GateClient::publish`]. Members leave when their session ends.
    /// [`NodeError::NotFound`] (for one target): no such session or user.
    /// No targets: `Ok(())`, nothing sent.
    pub fn subscribe(
        &self,
        channel: &str,
        to: impl IntoIterator<Item = impl Into<Target>>,
    ) -> Result<(), NodeError> {
        self.members(channel, to, subscribe_op, true)
    }

    /// [`GateClient::subscribe`] without waiting.
    pub fn subscribe_nowait(
        &self,
        channel: &str,
        to: impl IntoIterator<Item = impl Into<Target>>,
    ) -> Result<(), NodeError> {
        self.members(channel, to, subscribe_op, false)
    }

    /// Removes sessions and users from channel `channel`.
    pub fn unsubscribe(
        &self,
        channel: &str,
        to: impl IntoIterator<Item = impl Into<Target>>,
    ) -> Result<(), NodeError> {
        self.members(channel, to, unsubscribe_op, true)
    }

    /// [`GateClient::unsubscribe`] without waiting.
    pub fn unsubscribe_nowait(
        &self,
        channel: &str,
        to: impl IntoIterator<Item = impl Into<Target>>,
    ) -> Result<(), NodeError> {
        self.members(channel, to, unsubscribe_op, false)
    }

    /// Subscribe / unsubscribe `to` to `channel`, waiting for the answer or
    /// not. No targets: `Ok(())`, nothing sent.
    fn members(
        &self,
        channel: &str,
        to: impl IntoIterator<Item = impl Into<Target>>,
        build: fn(&str, &[Target]) -> call::Op,
        wait: bool,
    ) -> Result<(), NodeError> {
        let to = targets(to)?;
        if to.is_empty() {
            return Ok(());
        }
        let (via, op) = (via_targets(&to), build(channel, &to));
        if wait {
            self.call(via, op).map(drop)
        } else {
            self.cast(via, op)
        }
    }

    /// Sends one packet to every member of channel `channel`. Returns how
    /// many sessions the gate reported queuing it for (at least those of the
    /// shard that answered); an empty or unknown channel is `Ok(0)`.
    pub fn publish(
        &self,
        channel: &str,
        route: i32,
        seq: i32,
        payload: impl Into<Bytes>,
    ) -> Result<u64, NodeError> {
        let op = publish_op(channel, route, seq, payload.into());
        Ok(self.call(Via::Any, op)?.delivered)
    }

    /// [`GateClient::publish`] without waiting.
    pub fn publish_nowait(
        &self,
        channel: &str,
        route: i32,
        seq: i32,
        payload: impl Into<Bytes>,
    ) -> Result<(), NodeError> {
        self.cast(Via::Any, publish_op(channel, route, seq, payload.into()))
    }

    /// [`GateClient::publish`] on MQTT topic `topic`.
    pub fn publish_topic(
        &self,
        channel: &str,
        topic: &str,
        payload: impl Into<Bytes>,
    ) -> Result<u64, NodeError> {
        let op = with_topic(publish_op(channel, 0, 0, payload.into()), topic);
        Ok(self.call(Via::Any, op)?.delivered)
    }

    /// [`GateClient::publish_topic`] without waiting.
    pub fn publish_topic_nowait(
        &self,
        channel: &str,
        topic: &str,
        payload: impl Into<Bytes>,
    ) -> Result<(), NodeError> {
        let op = with_topic(publish_op(channel, 0, 0, payload.into()), topic);
        self.cast(Via::Any, op)
    }

    /// Asks the gate for a snapshot of the live sessions of `shard` and
    /// waits until the gate has written it: returns how many sessions it
    /// holds. The pages come on that shard's link and go to the
    /// [`NodeBuilder::on_snapshot`](super::NodeBuilder::on_snapshot)
    /// handler on its reader thread, in order with the link's events
    /// (without a handler they are ignored). The gate's result follows the
    /// last page, but results are handed over as soon as they are read, so
    /// the last pages may still be running when this returns.
    /// [`NodeError::NotConnected`] if that shard's link is down: the call
    /// cannot go on another.
    pub fn snapshot(&self, shard: ShardId) -> Result<u64, NodeError> {
        let link = self.shard_link(shard)?;
        Ok(self.call_on(&link, snapshot_op())?.delivered)
    }

    /// [`GateClient::snapshot`] without waiting: the pages still come (with
    /// call id 0, like the hello's), the gate's count does not.
    pub fn snapshot_nowait(&self, shard: ShardId) -> Result<(), NodeError> {
        self.shard_link(shard)?.send(&call_msg(0, snapshot_op()))
    }
}
