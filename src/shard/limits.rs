//! `[limits]` as a shard applies them (the rules are pure:
//! [`crate::limits`]):
//!
//! * on accept, before a connection costs anything: the shard's accept
//!   rate, its handshakes in progress, the client address's connections
//!   across the gate, then `max_connections`. A refused socket is closed
//!   at once, counted (its own counter, and reason `refused`) and logged at
//!   most once a second per kind, with the number of lines held back;
//! * per request: the connection's rates (RATE_LIMITED, and with
//!   `action = "close"` a close with reason `rate_limited`) and its
//!   requests waiting for replies (INFLIGHT_FULL);
//! * accept(2) failures (EMFILE, ENFILE...): accepting pauses
//!   [`ACCEPT_PAUSE_MS`] and resumes by itself, without spinning.
//!
//! Per-connection state ([`ConnLimits`]: two buckets and the address key)
//! lives in a table beside the client slots, and only while a
//! per-connection limit is on: with `[limits]` at its defaults an idle
//! connection costs nothing more.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use super::{Shard, ShardStats};
use crate::config::LimitAction;
use crate::connection::Close;
use crate::limits::{ConnLimits, IpKey, LimitRules, LogEvery, Rate, TokenBucket};
use crate::session::{CloseReason, Millis};

/// How long accepting pauses after accept(2) failed (EMFILE and the like):
/// long enough not to spin on a full descriptor table, short enough that
/// clients in the backlog are taken soon after descriptors free up.
pub const ACCEPT_PAUSE_MS: Millis = 100;

/// What a shard refused, for its counters and its log limiter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// `network.tcp.max_connections`.
    MaxConnections = 0,
    /// `limits.max_connections_per_ip`.
    PerIp,
    /// `limits.accepts_per_sec`.
    AcceptRate,
    /// `limits.max_handshakes`.
    Handshakes,
    /// accept(2) failed.
    AcceptError,
    /// A request over a rate.
    RateLimited,
}

/// Kinds of [`Refusal`].
const REFUSALS: usize = 6;

/// A shard's limit state.
pub(super) struct ShardLimits {
    /// Per client slot, while a per-connection limit is on; else empty.
    conns: Vec<ConnLimits>,
    /// The shard's accepts (`limits.accepts_per_sec`).
    accepts: TokenBucket,
    /// Connections in their handshake now.
    handshakes: usize,
    /// One log limiter per kind of refusal.
    logs: [LogEvery; REFUSALS],
}

impl ShardLimits {
    /// The state of a shard starting at time 0.
    pub(super) fn new(rules: &LimitRules) -> ShardLimits {
        ShardLimits {
            conns: Vec::new(),
            accepts: rules
                .accepts
                .map_or_else(TokenBucket::default, |r| TokenBucket::full(&r, 0)),
            handshakes: 0,
            logs: [LogEvery::default(); REFUSALS],
        }
    }

    /// Connections in their handshake now.
    pub(super) fn handshakes(&self) -> usize {
        self.handshakes
    }
}

/// A connection the limits let in: the key it counts under per address.
pub(super) struct Admitted {
    /// Its key in the gate's per-address table, when that limit is on.
    pub ip: Option<IpKey>,
}

impl Shard {
    /// The per-source limits for a socket just accepted from `peer`
    /// (`handshake`: it starts with a TLS, WebSocket or MQTT handshake).
    /// `None`: refused and counted; the caller drops (closes) the socket.
    pub(super) fn admit_source(&mut self, peer: SocketAddr, handshake: bool) -> Option<Admitted> {
        let rules = self.p.limits;
        if let Some(rate) = rules.accepts {
            if !self.lim.accepts.try_take(&rate, self.now, 1) {
                self.refuse_connection(Refusal::AcceptRate, peer);
                return None;
            }
        }
        if handshake && rules.max_handshakes > 0 && self.lim.handshakes >= rules.max_handshakes {
            self.refuse_connection(Refusal::Handshakes, peer);
            return None;
        }
        if !self.shared.per_ip.is_on() {
            return Some(Admitted { ip: None });
        }
        let key = IpKey::of(peer.ip());
        if !self.shared.per_ip.acquire(key) {
            self.refuse_connection(Refusal::PerIp, peer);
            return None;
        }
        Some(Admitted { ip: Some(key) })
    }

    /// Gives back what [`Shard::admit_source`] counted, for a connection
    /// that was not set up after all.
    pub(super) fn unadmit_source(&mut self, a: Admitted) {
        if let Some(key) = a.ip {
            self.shared.per_ip.release(key);
        }
    }

    /// Counts (its own counter and a `refused` close) and logs a connection
    /// refused on accept.
    pub(super) fn refuse_connection(&mut self, why: Refusal, peer: SocketAddr) {
        let st = self.stats();
        let counter = match why {
            Refusal::PerIp => &st.refused_per_ip,
            Refusal::AcceptRate => &st.refused_accept_rate,
            Refusal::Handshakes => &st.refused_handshakes,
            _ => &st.refused,
        };
        ShardStats::add(counter, 1);
        st.closed(CloseReason::Refused);
        let Some(held) = self.lim.logs[why as usize].allow(self.now) else {
            return;
        };
        let (shard, l) = (self.p.id.0, self.p.limits);
        match why {
            Refusal::PerIp => tracing::warn!(
                shard, %peer, held, max = self.shared.per_ip.max(), key = %IpKey::of(peer.ip()),
                "connection refused: limits.max_connections_per_ip reached for its address"
            ),
            Refusal::AcceptRate => tracing::warn!(
                shard, %peer, held, rate = l.accepts.map_or(0, |r| r.per_sec),
                "connection closed on accept: over limits.accepts_per_sec"
            ),
            Refusal::Handshakes => tracing::warn!(
                shard, %peer, held, max = l.max_handshakes,
                "connection closed on accept: limits.max_handshakes handshakes in progress"
            ),
            _ => tracing::warn!(
                shard, %peer, held, max = self.p.max_connections,
                "connection refused: network.tcp.max_connections reached"
            ),
        }
    }

    /// Sets up the limit state of the connection just placed in slot
    /// `idx` (`handshake`: it starts with one).
    pub(super) fn limits_on_accept(&mut self, idx: u32, a: Admitted, handshake: bool) {
        let i = idx as usize;
        // Also while the limits are off, if the table has the slot from
        // when they were on (a reload): its state is this connection's. And
        // always for a counted address (a reload may set the gate-wide cap
        // just before this shard takes the new rules), so it is released.
        if self.p.limits.per_connection() || a.ip.is_some() || i < self.lim.conns.len() {
            if self.lim.conns.len() <= i {
                self.lim.conns.resize(i + 1, ConnLimits::default());
            }
            self.lim.conns[i] = ConnLimits::new(&self.p.limits, self.now, a.ip);
        }
        if handshake {
            self.lim.handshakes += 1;
        }
    }

    /// New `[limits]` are in force (a reload), replacing `before`. A rate
    /// that was off starts with a full bucket for every open connection
    /// (and for the shard's accepts); a rate that stays on keeps each
    /// bucket's tokens, refilled at the new rate and capped at the new
    /// burst. Open connections accepted while the address cap was off
    /// count under no address.
    pub(super) fn limits_swapped(&mut self, before: &LimitRules) {
        let (rules, now) = (self.p.limits, self.now);
        if let (None, Some(r)) = (before.accepts, rules.accepts) {
            self.lim.accepts = TokenBucket::full(&r, now);
        }
        if !rules.per_connection() {
            return;
        }
        let slots = self.clients.slot_count();
        if self.lim.conns.len() < slots {
            self.lim.conns.resize(slots, ConnLimits::default());
        }
        let fresh = |was: Option<Rate>, is: Option<Rate>| match (was, is) {
            (None, Some(r)) => Some(TokenBucket::full(&r, now)),
            _ => None,
        };
        let (requests, bytes) = (
            fresh(before.requests, rules.requests),
            fresh(before.bytes, rules.bytes),
        );
        for idx in self.clients.live() {
            let l = &mut self.lim.conns[idx as usize];
            if let Some(b) = requests {
                l.requests = b;
            }
            if let Some(b) = bytes {
                l.bytes = b;
            }
        }
    }

    /// Client `idx` opened or closed: if it was counted in its handshake,
    /// it is not any more.
    pub(super) fn handshake_over(&mut self, idx: u32) {
        if let Some(c) = self.clients.get_mut(idx) {
            if std::mem::take(&mut c.in_handshake) {
                self.lim.handshakes = self.lim.handshakes.saturating_sub(1);
            }
        }
    }

    /// The connection in slot `idx` is freed: its address counts one less.
    pub(super) fn limits_on_free(&mut self, idx: u32) {
        if let Some(key) = self
            .lim
            .conns
            .get_mut(idx as usize)
            .and_then(|l| l.ip.take())
        {
            self.shared.per_ip.release(key);
        }
    }

    /// Whether a request of `bytes` payload bytes from client `idx` is over
    /// its rates (then it took no tokens); false while no rate is set.
    pub(super) fn over_rate(&mut self, idx: u32, bytes: usize) -> bool {
        let Some(l) = self.lim.conns.get_mut(idx as usize) else {
            return false;
        };
        !l.admit(&self.p.limits, self.now, bytes)
    }

    /// After client `idx`'s request was answered RATE_LIMITED: the log line
    /// (at most one a second per shard) and, with `action = "close"`, the
    /// close (reason `rate_limited`) once that answer has been sent.
    pub(super) fn after_rate_limit(&mut self, idx: u32) {
        let close = self.p.limits.action == LimitAction::Close;
        if let Some(held) = self.lim.logs[Refusal::RateLimited as usize].allow(self.now) {
            if let Some(c) = self.clients.get_mut(idx) {
                let (session, peer) = (c.conn.id(), c.conn.peer());
                tracing::info!(shard = self.p.id.0, %session, %peer, held, close,
                    "request over limits.requests_per_sec / bytes_per_sec refused");
            }
        }
        if close {
            self.with_conn(idx, |c, cx| {
                c.close(CloseReason::RateLimited, Close::AfterFlush, cx)
            });
        }
    }

    /// Whether client `idx` has `limits.max_inflight` requests waiting for
    /// their replies already.
    pub(super) fn inflight_full(&mut self, idx: u32) -> bool {
        let max = self.p.limits.max_inflight;
        max > 0 && self.clients.get_mut(idx).is_some_and(|c| c.inflight >= max)
    }

    /// accept(2) on listener `li` failed: counted, logged (at most once a
    /// second) and accepting paused for [`ACCEPT_PAUSE_MS`]; a multishot
    /// accept the kernel kept going is cancelled so the pause holds. The
    /// clients waiting meanwhile stay in the kernel's backlog.
    pub(super) fn accept_failed(&mut self, li: usize, err: std::io::Error, more: bool) {
        ShardStats::add(&self.stats().accept_errors, 1);
        self.accept_paused_until = self.now + ACCEPT_PAUSE_MS;
        if more {
            self.ring.cancel_fd(self.listeners[li].sock.as_raw_fd());
        }
        if let Some(held) = self.lim.logs[Refusal::AcceptError as usize].allow(self.now) {
            tracing::warn!(shard = self.p.id.0, %err, held,
                "accept failed; pausing accepts for {ACCEPT_PAUSE_MS} ms");
        }
    }
}
