//! Per-connection session state: who the client is and when it must be
//! closed for silence (heartbeat) or for not logging in (authorize). Pure:
//! no sockets, no clock (`now` is passed in as [`Millis`] since the shard
//! started), no channels. Each connection (`connection::Connection`) owns one
//! [`Session`] and asks it, when its timer fires, whether it has expired and
//! when to look again.

mod node_bindings;
mod settings;

pub use node_bindings::NodeBindings;
pub use settings::{Settings, SettingsError};

use crate::config::{HeartbeatMechanism, TcpConfig};
use crate::ids::{SessionId, UserId};

/// Milliseconds since the owning shard started (its monotonic clock).
pub type Millis = u64;

/// Rules shared by every session of a shard (kept once per shard, not per session).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rules {
    /// Heartbeat interval in ms; 0 disables heartbeats and the idle check.
    pub heartbeat_ms: Millis,
    /// Who sends heartbeats.
    pub mechanism: HeartbeatMechanism,
    /// Close a connection with no bound user after this many ms; 0 = off.
    pub authorize_ms: Millis,
}

impl Rules {
    /// Rules from the `[network.tcp]` section.
    pub fn from_tcp(tcp: &TcpConfig) -> Self {
        Rules {
            heartbeat_ms: tcp.heartbeat.interval.as_millis() as Millis,
            mechanism: tcp.heartbeat.mechanism,
            authorize_ms: tcp.authorize_timeout.as_millis() as Millis,
        }
    }

    /// A connection with no inbound packet for this long is closed (2 × interval).
    pub fn idle_ms(&self) -> Option<Millis> {
        (self.heartbeat_ms > 0).then_some(self.heartbeat_ms * 2)
    }
}

/// Why a connection ended. Every session ends with exactly one reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum CloseReason {
    /// The client closed the connection or it was reset.
    ClientClosed = 0,
    /// No inbound packet for 2 × heartbeat interval.
    HeartbeatTimeout = 1,
    /// No user bound within `authorize_timeout`.
    AuthorizeTimeout = 2,
    /// A node kicked the session.
    Kicked = 3,
    /// The user was bound to another session (rebind = "kick").
    Rebind = 4,
    /// The client did not read and its outbound queue overflowed.
    Overflow = 5,
    /// The gate is shutting down.
    Shutdown = 6,
    /// The client broke the packet format (oversized or malformed packet).
    ProtocolError = 7,
    /// A limit refused it when it was accepted: `max_connections`, or
    /// `[limits]`' `max_connections_per_ip`, `accepts_per_sec`, `max_handshakes`.
    Refused = 8,
    /// The TLS or WebSocket handshake did not finish in time.
    HandshakeTimeout = 9,
    /// The client asked for a WebSocket upgrade the gate refused (path, origin, version...).
    UpgradeRejected = 10,
    /// The client sent over `limits.requests_per_sec` or `bytes_per_sec`
    /// and `limits.action` is `"close"`.
    RateLimited = 11,
}

impl CloseReason {
    /// Every reason, in discriminant order (for per-reason counters).
    pub const ALL: [CloseReason; 12] = [
        CloseReason::ClientClosed,
        CloseReason::HeartbeatTimeout,
        CloseReason::AuthorizeTimeout,
        CloseReason::Kicked,
        CloseReason::Rebind,
        CloseReason::Overflow,
        CloseReason::Shutdown,
        CloseReason::ProtocolError,
        CloseReason::Refused,
        CloseReason::HandshakeTimeout,
        CloseReason::UpgradeRejected,
        CloseReason::RateLimited,
    ];

    /// Stable snake_case name, as logged and counted.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ClientClosed => "client_closed",
            CloseReason::HeartbeatTimeout => "heartbeat_timeout",
            CloseReason::AuthorizeTimeout => "authorize_timeout",
            CloseReason::Kicked => "kicked",
            CloseReason::Rebind => "rebind",
            CloseReason::Overflow => "overflow",
            CloseReason::Shutdown => "shutdown",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::Refused => "refused",
            CloseReason::HandshakeTimeout => "handshake_timeout",
            CloseReason::UpgradeRejected => "upgrade_rejected",
            CloseReason::RateLimited => "rate_limited",
        }
    }
}

/// What the shard should do with an inbound client heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeartbeatAction {
    /// Answer it with a server heartbeat (`mechanism = "resp"`).
    Answer,
    /// Nothing to send (`mechanism = "tick"`: the server sends on its own schedule).
    Ignore,
}

/// One client connection's session.
#[derive(Clone, Debug)]
pub struct Session {
    /// The session's id (encodes its shard).
    pub id: SessionId,
    /// Bound user, `UserId(0)` while unbound.
    pub uid: UserId,
    /// Key → value settings set by nodes.
    pub settings: Settings,
    /// The node instance the user is bound to per service (stateful routes).
    pub nodes: NodeBindings,
    /// When the last inbound bytes arrived.
    last_rx: Millis,
    /// When the authorize window (re)started.
    auth_from: Millis,
    /// The client's own idle limit (MQTT: 1.5 × its keep-alive), replacing
    /// the gate's heartbeat rule; `None`: the gate's rule. 32 bits (an MQTT
    /// keep-alive is at most 65,535 s, so 98,302,500 ms) keep the session
    /// 8 bytes smaller than a `Millis` would.
    pub keep_alive_ms: Option<u32>,
}

impl Session {
    /// A new, unbound session accepted at `now`.
    pub fn new(id: SessionId, now: Millis) -> Self {
        Session {
            id,
            uid: UserId(0),
            settings: Settings::default(),
            nodes: NodeBindings::default(),
            last_rx: now,
            auth_from: now,
            keep_alive_ms: None,
        }
    }

    /// Call for every read that delivered bytes: the client is alive.
    pub fn handle_inbound(&mut self, now: Millis) {
        self.last_rx = now;
    }

    /// Call for each client heartbeat packet; says whether to answer it.
    pub fn handle_heartbeat(&self, rules: &Rules) -> HeartbeatAction {
        match rules.mechanism {
            HeartbeatMechanism::Resp => HeartbeatAction::Answer,
            HeartbeatMechanism::Tick => HeartbeatAction::Ignore,
        }
    }

    /// Call when a node binds a user: stops the authorize timeout.
    pub fn handle_bind(&mut self, uid: UserId) {
        self.uid = uid;
    }

    /// Call when a node unbinds the user: restarts the authorize timeout at `now`.
    pub fn handle_unbind(&mut self, now: Millis) {
        self.uid = UserId(0);
        self.auth_from = now;
    }

    /// True once a user is bound.
    pub fn is_bound(&self) -> bool {
        self.uid.0 != 0
    }

    /// Whether the session has expired at `now`, and why. Call when a timer fires.
    pub fn poll_expired(&self, now: Millis, rules: &Rules) -> Option<CloseReason> {
        if let Some(idle) = self
            .keep_alive_ms
            .map(Millis::from)
            .or_else(|| rules.idle_ms())
        {
            if now >= self.last_rx + idle {
                return Some(CloseReason::HeartbeatTimeout);
            }
        }
        if rules.authorize_ms > 0 && !self.is_bound() && now >= self.auth_from + rules.authorize_ms
        {
            return Some(CloseReason::AuthorizeTimeout);
        }
        None
    }

    /// The earliest time [`Session::poll_expired`] could say yes; `None` when
    /// nothing can expire. Call after a timer fired without expiry, to re-arm it.
    pub fn next_deadline(&self, rules: &Rules) -> Option<Millis> {
        let idle = (self
            .keep_alive_ms
            .map(Millis::from)
            .or_else(|| rules.idle_ms()))
        .map(|i| self.last_rx + i);
        let auth = (rules.authorize_ms > 0 && !self.is_bound())
            .then(|| self.auth_from + rules.authorize_ms);
        [idle, auth].into_iter().flatten().min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ShardId;

    fn rules(hb: Millis, auth: Millis) -> Rules {
        Rules {
            heartbeat_ms: hb,
            mechanism: HeartbeatMechanism::Resp,
            authorize_ms: auth,
        }
    }

    fn sid() -> SessionId {
        SessionId::new(ShardId(0), 1)
    }

    #[test]
    fn idle_closes_after_twice_the_interval() {
        let r = rules(1000, 0);
        let mut s = Session::new(sid(), 0);
        assert_eq!(s.next_deadline(&r), Some(2000));
        assert_eq!(s.poll_expired(1999, &r), None);
        s.handle_inbound(1500);
        assert_eq!(
            s.poll_expired(2000, &r),
            None,
            "traffic pushes the deadline"
        );
        assert_eq!(s.next_deadline(&r), Some(3500));
        assert_eq!(
            s.poll_expired(3500, &r),
            Some(CloseReason::HeartbeatTimeout)
        );
    }

    #[test]
    fn heartbeat_off_never_expires() {
        let r = rules(0, 0);
        let s = Session::new(sid(), 0);
        assert_eq!(s.next_deadline(&r), None);
        assert_eq!(s.poll_expired(u64::MAX / 2, &r), None);
    }

    #[test]
    fn authorize_timeout_stops_on_bind_and_restarts_on_unbind() {
        let r = rules(0, 500);
        let mut s = Session::new(sid(), 100);
        assert_eq!(s.next_deadline(&r), Some(600));
        assert_eq!(s.poll_expired(600, &r), Some(CloseReason::AuthorizeTimeout));
        s.handle_bind(UserId(7));
        assert!(s.is_bound());
        assert_eq!(s.next_deadline(&r), None);
        assert_eq!(s.poll_expired(10_000, &r), None);
        s.handle_unbind(10_000);
        assert_eq!(s.next_deadline(&r), Some(10_500));
        assert_eq!(s.poll_expired(10_499, &r), None);
        assert_eq!(
            s.poll_expired(10_500, &r),
            Some(CloseReason::AuthorizeTimeout)
        );
    }

    #[test]
    fn earliest_deadline_wins_and_idle_is_reported_first() {
        let r = rules(1000, 500);
        let s = Session::new(sid(), 0);
        assert_eq!(s.next_deadline(&r), Some(500));
        assert_eq!(s.poll_expired(500, &r), Some(CloseReason::AuthorizeTimeout));
        assert_eq!(
            s.poll_expired(2000, &r),
            Some(CloseReason::HeartbeatTimeout)
        );
    }

    #[test]
    fn heartbeat_mechanism() {
        let s = Session::new(sid(), 0);
        assert_eq!(s.handle_heartbeat(&rules(1000, 0)), HeartbeatAction::Answer);
        let tick = Rules {
            mechanism: HeartbeatMechanism::Tick,
            ..rules(1000, 0)
        };
        assert_eq!(s.handle_heartbeat(&tick), HeartbeatAction::Ignore);
    }

    #[test]
    fn reasons_are_indexed_in_order() {
        for (i, r) in CloseReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }
}
