//! The operations of [`GateClient`]: one method per `Call` of the protocol,
//! blocking, plus a `_nowait` twin for those that change something.
//!
//! | operation | goes on the link of | blocking result |
//! |---|---|---|
//! | `push`, `push_uid` | the target's shard | `()`; `NotFound` if gone |
//! | `multicast` | any (one target: its shard) | packets queued |
//! | `broadcast` | any | packets queued (when known) |
//! | `kick`, `unbind`, `set_settings` | the target's shard | `()` |
//! | `bind(session, uid)` | the user's home shard | `()`; `AlreadyBound` |
//! | `get_ip`, `is_online` | the target's shard | address / bool |
//! | `stat` | any | [`Stat`] |
//! | `subscribe`, `unsubscribe` | any (one target: its shard) | `()` |
//! | `publish` | any | packets queued (when known) |

use std::net::IpAddr;

use bytes::Bytes;

use super::gate::Via;
use super::{GateClient, NodeError, Stat, Target};
use crate::ids::{SessionId, UserId};
use crate::link::proto::{
    self, call, Bind, Broadcast, ChannelMembers, Kick, Multicast, PushTo, Settings, StatRequest,
};
use crate::link::LinkError;

/// Refuses `UserId(0)` ("no user") before asking the gate.
pub(crate) fn valid(t: Target) -> Result<Target, NodeError> {
    match t {
        Target::User(UserId(0)) => Err(NodeError::Invalid(
            "uid 0 means \"no user\"; target a non-zero uid".into(),
        )),
        t => Ok(t),
    }
}

/// Where a call about `targets` goes: one target's shard, else any link.
fn via_targets(targets: &[Target]) -> Via {
    match targets {
        [one] => Via::To(*one),
        _ => Via::Any,
    }
}

fn targets(list: impl IntoIterator<Item = impl Into<Target>>) -> Result<Vec<Target>, NodeError> {
    list.into_iter().map(|t| valid(t.into())).collect()
}

fn protos(targets: &[Target]) -> Vec<proto::Target> {
    targets.iter().map(|t| t.to_proto()).collect()
}

/// Builders of each `call::Op`, shared with the contexts' shortcuts.
pub(crate) mod op {
    use super::*;

    pub(crate) fn push(to: Target, route: i32, seq: i32, payload: Bytes) -> call::Op {
        call::Op::Push(PushTo {
            target: Some(to.to_proto()),
            route,
            seq,
            payload,
            ext: 0,
        })
    }

    pub(crate) fn kick(to: Target, flush: bool) -> call::Op {
        call::Op::Kick(Kick {
            target: Some(to.to_proto()),
            flush,
        })
    }

    pub(crate) fn bind(session: SessionId, uid: UserId) -> call::Op {
        call::Op::Bind(Bind {
            session_id: session.0,
            uid: uid.0,
        })
    }

    pub(crate) fn unbind(to: Target) -> call::Op {
        call::Op::Unbind(to.to_proto())
    }

    pub(crate) fn settings(to: Target, set: &[(&str, &str)], remove: &[&str]) -> call::Op {
        call::Op::Settings(Settings {
            target: Some(to.to_proto()),
            set: set
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            remove: remove.iter().map(|k| (*k).to_owned()).collect(),
        })
    }

    pub(crate) fn subscribe(channel: &str, targets: &[Target]) -> call::Op {
        call::Op::Subscribe(ChannelMembers {
            channel: channel.to_owned(),
            targets: protos(targets),
        })
    }

    pub(crate) fn unsubscribe(channel: &str, targets: &[Target]) -> call::Op {
        call::Op::Unsubscribe(ChannelMembers {
            channel: channel.to_owned(),
            targets: protos(targets),
        })
    }
}

/// Checks a bind before it is sent.
pub(crate) fn valid_bind(uid: UserId) -> Result<(), NodeError> {
    valid(Target::User(uid)).map(drop)
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
        self.call(Via::To(to), op::push(to, route, seq, payload.into()))
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
        self.cast(Via::To(to), op::push(to, route, seq, payload))
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
        let op = multicast(&to, route, seq, payload.into());
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
        self.cast(via_targets(&to), multicast(&to, route, seq, payload.into()))
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
        let op = broadcast(route, seq, payload.into(), bound_only);
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
        self.cast(Via::Any, broadcast(route, seq, payload.into(), bound_only))
    }

    /// Closes a session (reason `kicked`); with `flush`, what is already
    /// queued for the client is sent first.
    pub fn kick(&self, to: impl Into<Target>, flush: bool) -> Result<(), NodeError> {
        let to = valid(to.into())?;
        self.call(Via::To(to), op::kick(to, flush)).map(drop)
    }

    /// [`GateClient::kick`] without waiting.
    pub fn kick_nowait(&self, to: impl Into<Target>, flush: bool) -> Result<(), NodeError> {
        let to = valid(to.into())?;
        self.cast(Via::To(to), op::kick(to, flush))
    }

    /// Binds user `uid` to `session` (mqant's `Bind`). If the user is bound
    /// to another session, the gate's `session.rebind` decides: `kick` (the
    /// default) closes the old session with reason `rebind`; `reject`
    /// answers [`NodeError::AlreadyBound`]. `UserId(0)`:
    /// [`NodeError::Invalid`] without asking.
    pub fn bind(&self, session: SessionId, uid: UserId) -> Result<(), NodeError> {
        valid_bind(uid)?;
        self.call(Via::To(Target::User(uid)), op::bind(session, uid))
            .map(drop)
    }

    /// [`GateClient::bind`] without waiting.
    pub fn bind_nowait(&self, session: SessionId, uid: UserId) -> Result<(), NodeError> {
        valid_bind(uid)?;
        self.cast(Via::To(Target::User(uid)), op::bind(session, uid))
    }

    /// Unbinds the user of a session (mqant's `UnBind`); the session stays
    /// and the gate's authorize timeout starts again.
    pub fn unbind(&self, to: impl Into<Target>) -> Result<(), NodeError> {
        let to = valid(to.into())?;
        self.call(Via::To(to), op::unbind(to)).map(drop)
    }

    /// [`GateClient::unbind`] without waiting.
    pub fn unbind_nowait(&self, to: impl Into<Target>) -> Result<(), NodeError> {
        let to = valid(to.into())?;
        self.cast(Via::To(to), op::unbind(to))
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
        self.call(Via::To(to), op::settings(to, set, remove))
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
        self.cast(Via::To(to), op::settings(to, set, remove))
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
        self.members(channel, to, op::subscribe, true)
    }

    /// [`GateClient::subscribe`] without waiting.
    pub fn subscribe_nowait(
        &self,
        channel: &str,
        to: impl IntoIterator<Item = impl Into<Target>>,
    ) -> Result<(), NodeError> {
        self.members(channel, to, op::subscribe, false)
    }

    /// Removes sessions and users from channel `channel`.
    pub fn unsubscribe(
        &self,
        channel: &str,
        to: impl IntoIterator<Item = impl Into<Target>>,
    ) -> Result<(), NodeError> {
        self.members(channel, to, op::unsubscribe, true)
    }

    /// [`GateClient::unsubscribe`] without waiting.
    pub fn unsubscribe_nowait(
        &self,
        channel: &str,
        to: impl IntoIterator<Item = impl Into<Target>>,
    ) -> Result<(), NodeError> {
        self.members(channel, to, op::unsubscribe, false)
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
        let op = publish(channel, route, seq, payload.into());
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
        self.cast(Via::Any, publish(channel, route, seq, payload.into()))
    }
}

fn multicast(to: &[Target], route: i32, seq: i32, payload: Bytes) -> call::Op {
    call::Op::Multicast(Multicast {
        targets: protos(to),
        route,
        seq,
        payload,
    })
}

fn broadcast(route: i32, seq: i32, payload: Bytes, bound_only: bool) -> call::Op {
    call::Op::Broadcast(Broadcast {
        route,
        seq,
        payload,
        bound_only,
    })
}

fn publish(channel: &str, route: i32, seq: i32, payload: Bytes) -> call::Op {
    call::Op::Publish(proto::Publish {
        channel: channel.to_owned(),
        route,
        seq,
        payload,
    })
}
