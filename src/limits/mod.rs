//! What one connection, one client address and one storm of connections
//! may cost the gate (`[limits]`, `docs/limits.md`): the pieces the shard
//! applies, each testable without a socket or a clock.
//!
//! ```text
//!  accept ─▶ accepts_per_sec (per shard) ─▶ max_handshakes (per shard, TLS/WS/MQTT only)
//!         ─▶ max_connections_per_ip (gate-wide, IPv6 by /64) ─▶ max_connections ─▶ served
//!           (each refusal: the socket closed at once, counted, reason `refused`,
//!            logged at most once a second per shard and kind)
//!  request ─▶ requests_per_sec / bytes_per_sec (per connection)
//!             over: RATE_LIMITED reply (MQTT "rate limited"), action "close" then closes
//!          ─▶ max_inflight (per connection, requests waiting for a node's reply)
//!             over: INFLIGHT_FULL reply (MQTT "the work queue is full!")
//! ```
//!
//! * [`TokenBucket`] and [`Rate`]: a bucket on virtual time (ms since the
//!   shard started), in thousandths of a token so refills are exact.
//! * [`IpKey`] and [`PerIpTable`]: the key a client address counts under,
//!   and the gate-wide count per key (striped locks, touched on accept and
//!   close only, never per packet).
//! * [`LogEvery`]: at most one log line a second, with the number it held back.
//!
//! Nothing here is per idle connection unless a per-connection limit is on:
//! the shard keeps a [`ConnLimits`] per slot only then.

mod per_ip;

pub use per_ip::{IpKey, PerIpTable};

use crate::config::{LimitAction, LimitsConfig};
use crate::session::Millis;

/// Thousandths of a token: a bucket refilled at `per_sec` tokens a second
/// gains exactly `per_sec` of them per millisecond.
const MILLI: i64 = 1000;

/// A token bucket's refill rate and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Tokens added per second.
    pub per_sec: u64,
    /// Tokens the bucket holds at most.
    pub burst: u64,
}

impl Rate {
    /// `per_sec` a second, `burst` at most (0: twice the rate); `None` when
    /// `per_sec` is 0 (the limit is off).
    pub fn new(per_sec: u64, burst: u64) -> Option<Rate> {
        (per_sec > 0).then(|| Rate {
            per_sec,
            burst: if burst == 0 { 2 * per_sec } else { burst },
        })
    }

    fn cap(&self) -> i64 {
        i64::try_from(self.burst).map_or(i64::MAX, |b| b.saturating_mul(MILLI))
    }
}

/// A token bucket on the caller's clock. The rate is passed in (it is the
/// same for every bucket of a shard), so a bucket is 16 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenBucket {
    /// Thousandths of a token; negative after a take larger than the burst.
    milli: i64,
    /// When it was last refilled.
    at: Millis,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn full(rate: &Rate, now: Millis) -> TokenBucket {
        TokenBucket {
            milli: rate.cap(),
            at: now,
        }
    }

    /// Tokens in the bucket (whole ones; negative in debt).
    pub fn tokens(&self) -> i64 {
        self.milli.div_euclid(MILLI)
    }

    /// Adds what `rate` gave since the last refill (nothing for the same
    /// instant or a clock that went back), up to the burst, which also caps
    /// a bucket whose burst was lowered (a reload).
    fn refill(&mut self, rate: &Rate, now: Millis) {
        if now > self.at {
            let gained = (now - self.at).saturating_mul(rate.per_sec);
            self.milli = (self.milli).saturating_add(i64::try_from(gained).unwrap_or(i64::MAX));
            self.at = now;
        }
        self.milli = self.milli.min(rate.cap());
    }

    /// Whether `n` tokens may be taken at `now` (after refilling): they are
    /// in the bucket, or, for `n` above the burst, the bucket is full (such
    /// a take leaves it in debt, which the refill pays back first).
    pub fn allows(&mut self, rate: &Rate, now: Millis, n: u64) -> bool {
        self.refill(rate, now);
        let need = i64::try_from(n.min(rate.burst)).map_or(i64::MAX, |n| n.saturating_mul(MILLI));
        self.milli >= need
    }

    /// Takes `n` tokens; call after [`TokenBucket::allows`] said yes.
    pub fn take(&mut self, n: u64) {
        let n = i64::try_from(n).map_or(i64::MAX, |n| n.saturating_mul(MILLI));
        self.milli = self.milli.saturating_sub(n);
    }

    /// [`TokenBucket::allows`], then [`TokenBucket::take`] if it did.
    pub fn try_take(&mut self, rate: &Rate, now: Millis, n: u64) -> bool {
        let ok = self.allows(rate, now, n);
        if ok {
            self.take(n);
        }
        ok
    }
}

/// `[limits]` as a shard applies it (validated config, bursts resolved).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitRules {
    /// Requests per connection, if limited.
    pub requests: Option<Rate>,
    /// Request payload bytes per connection, if limited.
    pub bytes: Option<Rate>,
    /// What a request over a rate gets.
    pub action: LimitAction,
    /// Requests of a connection waiting for replies at most; 0 = off.
    pub max_inflight: u16,
    /// Connections per client address across the gate; 0 = off.
    pub max_per_ip: u32,
    /// Accepts per shard, if limited (burst: one second's worth).
    pub accepts: Option<Rate>,
    /// Connections in their handshake per shard; 0 = off.
    pub max_handshakes: usize,
}

impl LimitRules {
    /// The rules of a validated `[limits]`.
    pub fn from_config(l: &LimitsConfig) -> LimitRules {
        LimitRules {
            requests: Rate::new(l.requests_per_sec, l.requests_burst),
            bytes: Rate::new(l.bytes_per_sec, l.bytes_burst),
            action: l.action,
            max_inflight: u16::try_from(l.max_inflight).unwrap_or(u16::MAX),
            max_per_ip: u32::try_from(l.max_connections_per_ip).unwrap_or(u32::MAX),
            accepts: Rate::new(l.accepts_per_sec, l.accepts_per_sec),
            max_handshakes: l.max_handshakes,
        }
    }

    /// Some limit needs state per connection (a [`ConnLimits`] per slot).
    pub fn per_connection(&self) -> bool {
        self.requests.is_some() || self.bytes.is_some() || self.max_per_ip > 0
    }

    /// An MQTT connection's cap on requests waiting for replies: its own
    /// `network.mqtt.max_inflight`, or `max_inflight` where that is smaller.
    pub fn mqtt_inflight(&self, mqtt_max_inflight: usize) -> usize {
        match self.max_inflight {
            0 => mqtt_max_inflight,
            n => usize::from(n).min(mqtt_max_inflight),
        }
    }
}

/// One connection's limit state, kept by the shard per slot only while a
/// per-connection limit is on ([`LimitRules::per_connection`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnLimits {
    /// Requests.
    pub requests: TokenBucket,
    /// Request payload bytes.
    pub bytes: TokenBucket,
    /// The key the connection counts under in the [`PerIpTable`], until released.
    pub ip: Option<IpKey>,
}

impl ConnLimits {
    /// The state of a connection accepted at `now` (full buckets).
    pub fn new(rules: &LimitRules, now: Millis, ip: Option<IpKey>) -> ConnLimits {
        let full =
            |r: &Option<Rate>| r.map_or_else(TokenBucket::default, |r| TokenBucket::full(&r, now));
        ConnLimits {
            requests: full(&rules.requests),
            bytes: full(&rules.bytes),
            ip,
        }
    }

    /// Whether a request of `bytes` payload bytes is within both rates at
    /// `now`; if so its tokens are taken, else nothing is (a refused
    /// request costs the client no tokens).
    pub fn admit(&mut self, rules: &LimitRules, now: Millis, bytes: usize) -> bool {
        let bytes = bytes as u64;
        let req_ok = rules
            .requests
            .is_none_or(|r| self.requests.allows(&r, now, 1));
        let bytes_ok = rules
            .bytes
            .is_none_or(|r| self.bytes.allows(&r, now, bytes));
        if !(req_ok && bytes_ok) {
            return false;
        }
        if rules.requests.is_some() {
            self.requests.take(1);
        }
        if rules.bytes.is_some() {
            self.bytes.take(bytes);
        }
        true
    }
}

/// Lets one log line through per [`LogEvery::PERIOD_MS`] and counts the
/// ones it held back, so a flood of refusals does not flood the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogEvery {
    next: Millis,
    held: u64,
}

impl LogEvery {
    /// At most one line this often.
    pub const PERIOD_MS: Millis = 1000;

    /// Whether to log at `now`; `Some(n)` with the lines held back since
    /// the last one that went through.
    pub fn allow(&mut self, now: Millis) -> Option<u64> {
        if now >= self.next {
            self.next = now + Self::PERIOD_MS;
            Some(std::mem::take(&mut self.held))
        } else {
            self.held += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests;
