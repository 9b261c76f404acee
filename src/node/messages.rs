//! The messages a node sends to the gate, built from SDK types: `Push`,
//! `Pong`, `Call` and each `call::Op`; and the checks a target passes before
//! anything is sent about it.
//!
//! Pure functions: this module owns no state and must not send anything or
//! know about links; the gate client, the session context and the link
//! reader decide where a message goes.
//!
//! | `call::Op` | built by |
//! |---|---|
//! | `Push` | [`push_op`] |
//! | the MQTT `topic` of `Push`, `Multicast`, `Broadcast`, `Publish` | [`with_topic`] |
//! | `Multicast`, `Broadcast`, `Publish` | [`multicast_op`], [`broadcast_op`], [`publish_op`] |
//! | `Kick`, `Unbind`, `Settings` | [`kick_op`], [`unbind_op`], [`settings_op`] |
//! | `Bind` | [`bind_op`] |
//! | `Subscribe`, `Unsubscribe` | [`subscribe_op`], [`unsubscribe_op`] |
//! | `Snapshot` | [`snapshot_op`] |
//! | `GetIp`, `IsOnline`, `Stat` | inline in the gate client (one field each) |

use bytes::Bytes;

use super::error::NodeError;
use super::types::Target;
use crate::ids::{SessionId, UserId};
use crate::link::proto::{
    self, call, to_gate, Bind, Broadcast, Call, ChannelMembers, Kick, Multicast, Pong, Push,
    PushTo, ResultFormat, Settings, SnapshotRequest, ToGate,
};

/// A `ToGate::Push`: a packet for one session (a push, or with a non-zero
/// `request_id` the reply to that request).
pub(crate) fn push_msg(
    session_id: u64,
    route: i32,
    seq: i32,
    payload: Bytes,
    ext: u32,
    request_id: u64,
) -> ToGate {
    ToGate {
        msg: Some(to_gate::Msg::Push(Push {
            session_id,
            route,
            seq,
            payload,
            ext,
            request_id,
            ..Default::default()
        })),
    }
}

/// A `ToGate::Push` answering a request: `request_id` (0 once the request
/// was answered: then a plain push), how MQTT clients see the payload
/// (`format`) and, when not empty, the node's `error` for the request.
pub(crate) fn reply_msg(
    session_id: u64,
    route: i32,
    seq: i32,
    payload: Bytes,
    request_id: u64,
    format: ResultFormat,
    error: String,
) -> ToGate {
    ToGate {
        msg: Some(to_gate::Msg::Push(Push {
            session_id,
            route,
            seq,
            payload,
            request_id,
            error,
            format: format as i32,
            ..Default::default()
        })),
    }
}

/// A `ToGate::Push` to one session on MQTT topic `topic` (route 0, seq 0
/// for other clients).
pub(crate) fn topic_push_msg(session_id: u64, topic: &str, payload: Bytes) -> ToGate {
    ToGate {
        msg: Some(to_gate::Msg::Push(Push {
            session_id,
            payload,
            topic: topic.to_owned(),
            ..Default::default()
        })),
    }
}

/// A `ToGate::Pong` answering the gate's ping `nonce`.
pub(crate) fn pong_msg(nonce: u64) -> ToGate {
    ToGate {
        msg: Some(to_gate::Msg::Pong(Pong { nonce })),
    }
}

/// A `ToGate::Call`; call id 0 asks for no result.
pub(crate) fn call_msg(call_id: u64, op: call::Op) -> ToGate {
    ToGate {
        msg: Some(to_gate::Msg::Call(Call {
            call_id,
            op: Some(op),
        })),
    }
}

/// Refuses `UserId(0)` ("no user") before asking the gate.
pub(crate) fn valid(t: Target) -> Result<Target, NodeError> {
    match t {
        Target::User(UserId(0)) => Err(NodeError::Invalid(
            "uid 0 means \"no user\"; target a non-zero uid".into(),
        )),
        t => Ok(t),
    }
}

/// Checks the user of a bind before it is sent.
pub(crate) fn valid_bind(uid: UserId) -> Result<(), NodeError> {
    valid(Target::User(uid)).map(drop)
}

/// Converts and checks every target of a multi-target call.
pub(crate) fn targets(
    list: impl IntoIterator<Item = impl Into<Target>>,
) -> Result<Vec<Target>, NodeError> {
    list.into_iter().map(|t| valid(t.into())).collect()
}

fn protos(targets: &[Target]) -> Vec<proto::Target> {
    targets.iter().map(|t| t.to_proto()).collect()
}

/// `Push`: a packet to a session or to the session of a user.
pub(crate) fn push_op(to: Target, route: i32, seq: i32, payload: Bytes) -> call::Op {
    call::Op::Push(PushTo {
        target: Some(to.to_proto()),
        route,
        seq,
        payload,
        ext: 0,
        ..Default::default()
    })
}

/// `Multicast`: one packet to many targets.
pub(crate) fn multicast_op(to: &[Target], route: i32, seq: i32, payload: Bytes) -> call::Op {
    call::Op::Multicast(Multicast {
        targets: protos(to),
        route,
        seq,
        payload,
        ..Default::default()
    })
}

/// `Broadcast`: one packet to every (bound) session of the gate.
pub(crate) fn broadcast_op(route: i32, seq: i32, payload: Bytes, bound_only: bool) -> call::Op {
    call::Op::Broadcast(Broadcast {
        route,
        seq,
        payload,
        bound_only,
        ..Default::default()
    })
}

/// `Publish`: one packet to every member of a channel.
pub(crate) fn publish_op(channel: &str, route: i32, seq: i32, payload: Bytes) -> call::Op {
    call::Op::Publish(proto::Publish {
        channel: channel.to_owned(),
        route,
        seq,
        payload,
        ..Default::default()
    })
}

/// `op` (a `Push`, `Multicast`, `Broadcast` or `Publish`) with the MQTT
/// topic `topic`; other ops carry no topic and are returned as they are.
pub(crate) fn with_topic(mut op: call::Op, topic: &str) -> call::Op {
    let slot = match &mut op {
        call::Op::Push(p) => &mut p.topic,
        call::Op::Multicast(m) => &mut m.topic,
        call::Op::Broadcast(b) => &mut b.topic,
        call::Op::Publish(p) => &mut p.topic,
        _ => return op,
    };
    topic.clone_into(slot);
    op
}

/// `Kick`: close a session, after what is queued for it if `flush`.
pub(crate) fn kick_op(to: Target, flush: bool) -> call::Op {
    call::Op::Kick(Kick {
        target: Some(to.to_proto()),
        flush,
    })
}

/// `Bind`: bind user `uid` to `session`.
pub(crate) fn bind_op(session: SessionId, uid: UserId) -> call::Op {
    call::Op::Bind(Bind {
        session_id: session.0,
        uid: uid.0,
    })
}

/// `Unbind`: unbind the user of a session.
pub(crate) fn unbind_op(to: Target) -> call::Op {
    call::Op::Unbind(to.to_proto())
}

/// `Settings`: set and remove settings of a session.
pub(crate) fn settings_op(to: Target, set: &[(&str, &str)], remove: &[&str]) -> call::Op {
    call::Op::Settings(Settings {
        target: Some(to.to_proto()),
        set: set
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        remove: remove.iter().map(|k| (*k).to_owned()).collect(),
    })
}

/// `Subscribe`: add targets to a channel.
pub(crate) fn subscribe_op(channel: &str, targets: &[Target]) -> call::Op {
    call::Op::Subscribe(ChannelMembers {
        channel: channel.to_owned(),
        targets: protos(targets),
    })
}

/// `Unsubscribe`: remove targets from a channel.
pub(crate) fn unsubscribe_op(channel: &str, targets: &[Target]) -> call::Op {
    call::Op::Unsubscribe(ChannelMembers {
        channel: channel.to_owned(),
        targets: protos(targets),
    })
}

/// `Snapshot`: the live sessions of the shard of the link it goes on.
pub(crate) fn snapshot_op() -> call::Op {
    call::Op::Snapshot(SnapshotRequest {})
}
