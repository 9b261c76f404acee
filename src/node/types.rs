//! Plain SDK types over the protocol's: who a call targets ([`Target`]),
//! session events ([`EventKind`], [`CloseReason`]) and gate counts ([`Stat`]).
//!
//! The generated enums keep the proto's prefixes (`EventKind::EventConnect`);
//! these are the names node authors write, converted at the link. The
//! bottom of the SDK: plain values and their conversions only; this module
//! must not depend on any other part of it.

use std::fmt;

use crate::ids::{SessionId, ShardId, UserId};
use crate::link::proto;

/// Who a call applies to: one session, or the session a user is bound to.
///
/// `SessionId` and `UserId` convert into it, so calls take
/// `impl Into<Target>`: `gate.kick(session, true)`, `gate.push(UserId(42), ..)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// A session of the gate (its id encodes the owning shard).
    Session(SessionId),
    /// The session user `uid` is bound to on the gate (none: `NotFound`).
    User(UserId),
}

impl From<SessionId> for Target {
    fn from(s: SessionId) -> Self {
        Target::Session(s)
    }
}

impl From<UserId> for Target {
    fn from(u: UserId) -> Self {
        Target::User(u)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Session(s) => write!(f, "session {s}"),
            Target::User(u) => write!(f, "user {}", u.0),
        }
    }
}

impl Target {
    /// The shard a call about this target is best sent to: the session's
    /// own shard, or the user's home shard (its uid directory entry).
    pub fn preferred_shard(self, shards: u16) -> ShardId {
        match self {
            Target::Session(s) => s.shard(),
            Target::User(u) => u.home_shard(shards),
        }
    }

    /// The protocol's `Target`.
    pub(crate) fn to_proto(self) -> proto::Target {
        proto::Target {
            to: Some(match self {
                Target::Session(s) => proto::target::To::SessionId(s.0),
                Target::User(u) => proto::target::To::Uid(u.0),
            }),
        }
    }
}

/// A session event a node can subscribe to with
/// [`NodeBuilder::on_event`](super::NodeBuilder::on_event).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// A client connected (session created). Carries ip, port, network.
    Connect,
    /// A user was bound to the session. Carries the uid.
    Bind,
    /// The user was unbound; the session stays. Carries the old uid.
    Unbind,
    /// The session ended. Carries the uid (0 if none was bound) and the
    /// reason. Exactly one per session that produced `Connect`.
    Disconnect,
    /// The gate is draining: no new connections; the rest close at its
    /// `shutdown_max_wait`. Not about one session (session id 0).
    Drain,
}

impl EventKind {
    /// Every kind, in protocol order.
    pub const ALL: [EventKind; 5] = [
        EventKind::Connect,
        EventKind::Bind,
        EventKind::Unbind,
        EventKind::Disconnect,
        EventKind::Drain,
    ];

    /// The protocol's `EventKind` value.
    pub(crate) fn to_proto(self) -> i32 {
        (match self {
            EventKind::Connect => proto::EventKind::EventConnect,
            EventKind::Bind => proto::EventKind::EventBind,
            EventKind::Unbind => proto::EventKind::EventUnbind,
            EventKind::Disconnect => proto::EventKind::EventDisconnect,
            EventKind::Drain => proto::EventKind::EventDrain,
        }) as i32
    }

    /// The kind of a protocol `EventKind` value; `None` for unspecified or
    /// unknown (newer) kinds.
    pub(crate) fn from_proto(kind: i32) -> Option<Self> {
        match proto::EventKind::try_from(kind).ok()? {
            proto::EventKind::EventConnect => Some(EventKind::Connect),
            proto::EventKind::EventBind => Some(EventKind::Bind),
            proto::EventKind::EventUnbind => Some(EventKind::Unbind),
            proto::EventKind::EventDisconnect => Some(EventKind::Disconnect),
            proto::EventKind::EventDrain => Some(EventKind::Drain),
            proto::EventKind::EventUnspecified => None,
        }
    }

    /// Lower-case name, as logged: `connect`, `bind`, `unbind`, `disconnect`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Connect => "connect",
            EventKind::Bind => "bind",
            EventKind::Unbind => "unbind",
            EventKind::Disconnect => "disconnect",
            EventKind::Drain => "drain",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a session ended ([`EventKind::Disconnect`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// Not a disconnect, or a reason this SDK does not know yet.
    Unspecified,
    /// The client closed the connection.
    ClientClosed,
    /// The client stopped sending heartbeats.
    HeartbeatTimeout,
    /// No user was bound within the gate's authorize timeout.
    AuthorizeTimeout,
    /// A node kicked the session.
    Kicked,
    /// Its user was bound to another session (`session.rebind = "kick"`).
    Rebind,
    /// The client did not read and its outbound queue overflowed.
    Overflow,
    /// The gate is shutting down.
    Shutdown,
    /// The client broke the packet format.
    ProtocolError,
    /// The client sent over the gate's `[limits]` rates (`action = "close"`).
    RateLimited,
}

impl CloseReason {
    /// The reason of a protocol `CloseReason` value (unknown: `Unspecified`).
    pub(crate) fn from_proto(reason: i32) -> Self {
        use proto::CloseReason as P;
        match P::try_from(reason) {
            Ok(P::CloseClientClosed) => CloseReason::ClientClosed,
            Ok(P::CloseHeartbeatTimeout) => CloseReason::HeartbeatTimeout,
            Ok(P::CloseAuthorizeTimeout) => CloseReason::AuthorizeTimeout,
            Ok(P::CloseKicked) => CloseReason::Kicked,
            Ok(P::CloseRebind) => CloseReason::Rebind,
            Ok(P::CloseOverflow) => CloseReason::Overflow,
            Ok(P::CloseShutdown) => CloseReason::Shutdown,
            Ok(P::CloseProtocolError) => CloseReason::ProtocolError,
            Ok(P::CloseRateLimited) => CloseReason::RateLimited,
            Ok(P::CloseUnspecified) | Err(_) => CloseReason::Unspecified,
        }
    }

    /// Lower-case name, as logged (`client_closed`, `kicked`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Unspecified => "unspecified",
            CloseReason::ClientClosed => "client_closed",
            CloseReason::HeartbeatTimeout => "heartbeat_timeout",
            CloseReason::AuthorizeTimeout => "authorize_timeout",
            CloseReason::Kicked => "kicked",
            CloseReason::Rebind => "rebind",
            CloseReason::Overflow => "overflow",
            CloseReason::Shutdown => "shutdown",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::RateLimited => "rate_limited",
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Connection counts of a gate ([`GateClient::stat`](super::GateClient::stat)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    /// Client sessions open on the gate.
    pub connections: u64,
    /// Of those, sessions with a bound user.
    pub bound: u64,
    /// The same counts per shard.
    pub shards: Vec<ShardStat>,
}

impl Stat {
    /// Adds another gate's counts (its shards appended).
    pub fn add(&mut self, other: &Stat) {
        self.connections += other.connections;
        self.bound += other.bound;
        self.shards.extend(other.shards.iter().copied());
    }
}

/// One shard's counts in a [`Stat`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardStat {
    /// The shard.
    pub shard: ShardId,
    /// Client sessions open on it.
    pub connections: u64,
    /// Of those, sessions with a bound user.
    pub bound: u64,
}

impl From<proto::Stat> for Stat {
    fn from(s: proto::Stat) -> Self {
        Stat {
            connections: s.connections,
            bound: s.bound,
            shards: s
                .shards
                .into_iter()
                .map(|sh| ShardStat {
                    shard: ShardId(sh.shard as u16),
                    connections: sh.connections,
                    bound: sh.bound,
                })
                .collect(),
        }
    }
}
