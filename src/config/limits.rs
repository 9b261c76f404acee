//! `[limits]`: what one connection, one client address and one storm of
//! connections may cost the gate, with the defaults and rules.
//!
//! Everything is off by default except `max_inflight`, because the right
//! values depend on the game: `docs/limits.md` and the comments of
//! `etc/ringgate.toml` suggest values for a typical one. What the gate does
//! with them is [`crate::limits`] (pure) and `shard::limits` (on accept and
//! per request).

use serde::{Deserialize, Deserializer};

use super::{units, Config, ConfigError};

/// `[limits] requests_per_sec`: off. A typical game's client sends a few
/// requests a second; see docs/limits.md for suggested values.
pub const DEFAULT_REQUESTS_PER_SEC: u64 = 0;
/// `[limits] requests_burst`: 0, i.e. twice the rate once a rate is set.
pub const DEFAULT_REQUESTS_BURST: u64 = 0;
/// `[limits] bytes_per_sec`: off.
pub const DEFAULT_BYTES_PER_SEC: u64 = 0;
/// `[limits] bytes_burst`: 0, i.e. twice the rate once a rate is set.
pub const DEFAULT_BYTES_BURST: u64 = 0;
/// `[limits] action`: answer the request with an error and keep the
/// connection, so a client that bursts by mistake recovers by itself.
pub const DEFAULT_LIMIT_ACTION: LimitAction = LimitAction::Reply;
/// `[limits] max_inflight`: on. Far above what a game client waits for at
/// once (mqant caps MQTT at 20), low enough that one connection cannot park
/// an unbounded number of requests in the gate's tables.
pub const DEFAULT_LIMITS_MAX_INFLIGHT: usize = 256;
/// `[limits] max_connections_per_ip`: off (NAT puts many players behind one
/// address, and the test suites open thousands of connections from one).
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 0;
/// `[limits] accepts_per_sec`: off.
pub const DEFAULT_ACCEPTS_PER_SEC: u64 = 0;
/// `[limits] max_handshakes`: off.
pub const DEFAULT_MAX_HANDSHAKES: usize = 0;

/// Largest `requests_per_sec` and `accepts_per_sec`.
pub const MAX_EVENT_RATE: u64 = 1_000_000;
/// Largest `bytes_per_sec` and burst: 1 TiB (keeps the buckets' integer
/// arithmetic far from overflow).
pub const MAX_BYTE_RATE: u64 = 1 << 40;
/// Largest `max_inflight`: the per-connection counter is 16 bits.
pub const MAX_LIMIT_INFLIGHT: usize = 65535;

/// `[limits]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Requests (data packets, MQTT PUBLISHes) per second one connection may
    /// send, as a token bucket's refill; 0 = off.
    pub requests_per_sec: u64,
    /// The request bucket's size; 0 with a rate set = 2 × the rate
    /// (`validate` writes the derived value).
    pub requests_burst: u64,
    /// Payload bytes per second one connection may send in requests; 0 = off.
    #[serde(deserialize_with = "units::size")]
    pub bytes_per_sec: u64,
    /// The byte bucket's size; 0 with a rate set = 2 × the rate.
    #[serde(deserialize_with = "units::size")]
    pub bytes_burst: u64,
    /// What a request over a rate gets.
    pub action: LimitAction,
    /// Requests of one connection waiting for a node's reply, at most (every
    /// protocol; MQTT also keeps `network.mqtt.max_inflight`); 0 = off.
    pub max_inflight: usize,
    /// Connections from one client address across the gate (IPv6 grouped by
    /// /64); 0 = off.
    pub max_connections_per_ip: usize,
    /// Connections each shard accepts per second (and at once after a
    /// quiet second); the excess is closed on accept. 0 = off.
    pub accepts_per_sec: u64,
    /// Connections in their handshake (TLS, WebSocket upgrade, MQTT
    /// CONNECT) per shard; further ones are closed on accept. 0 = off.
    pub max_handshakes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            requests_per_sec: DEFAULT_REQUESTS_PER_SEC,
            requests_burst: DEFAULT_REQUESTS_BURST,
            bytes_per_sec: DEFAULT_BYTES_PER_SEC,
            bytes_burst: DEFAULT_BYTES_BURST,
            action: DEFAULT_LIMIT_ACTION,
            max_inflight: DEFAULT_LIMITS_MAX_INFLIGHT,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            accepts_per_sec: DEFAULT_ACCEPTS_PER_SEC,
            max_handshakes: DEFAULT_MAX_HANDSHAKES,
        }
    }
}

/// `limits.action`: what a request over `requests_per_sec` or
/// `bytes_per_sec` gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LimitAction {
    /// An error reply (ext `RATE_LIMITED`; MQTT: `"rate limited"`); the
    /// request is not sent to a node and the connection stays.
    #[default]
    Reply,
    /// The same error reply, then the connection closes (reason
    /// `rate_limited`) once it is flushed.
    Close,
}

impl LimitAction {
    /// Names as written in the file.
    pub const CHOICES: &'static [(&'static str, LimitAction)] =
        &[("reply", LimitAction::Reply), ("close", LimitAction::Close)];
}

impl<'de> Deserialize<'de> for LimitAction {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        units::choice(de, Self::CHOICES)
    }
}

impl Config {
    /// The `[limits]` rules: each value in range, a burst only with its
    /// rate; derives a burst left at 0 (twice the rate).
    pub(super) fn validate_limits(&mut self) -> Result<(), ConfigError> {
        let l = &mut self.limits;
        l.requests_burst = bucket(
            (
                "limits.requests_per_sec",
                l.requests_per_sec,
                MAX_EVENT_RATE,
            ),
            ("limits.requests_burst", l.requests_burst),
        )?;
        l.bytes_burst = bucket(
            ("limits.bytes_per_sec", l.bytes_per_sec, MAX_BYTE_RATE),
            ("limits.bytes_burst", l.bytes_burst),
        )?;
        at_most("limits.accepts_per_sec", l.accepts_per_sec, MAX_EVENT_RATE)?;
        at_most(
            "limits.max_inflight",
            l.max_inflight as u64,
            MAX_LIMIT_INFLIGHT as u64,
        )?;
        at_most(
            "limits.max_connections_per_ip",
            l.max_connections_per_ip as u64,
            u64::from(u32::MAX),
        )?;
        Ok(())
    }
}

/// `value` is at most `max` (0 means off).
fn at_most(key: &str, value: u64, max: u64) -> Result<(), ConfigError> {
    if value > max {
        return Err(ConfigError::rule(
            key,
            format!("must be from 0 (off) to {max}, got {value}"),
        ));
    }
    Ok(())
}

/// Checks a rate and its burst; returns the burst to use (2 × rate for 0).
fn bucket(
    (rate_key, rate, max): (&str, u64, u64),
    (burst_key, burst): (&str, u64),
) -> Result<u64, ConfigError> {
    at_most(rate_key, rate, max)?;
    if rate == 0 {
        if burst != 0 {
            return Err(ConfigError::rule(
                burst_key,
                format!("is {burst} but {rate_key} is 0 (off): set the rate, or remove the burst"),
            ));
        }
        return Ok(0);
    }
    let cap = 2 * max;
    if burst > cap {
        return Err(ConfigError::rule(
            burst_key,
            format!("must be at most {cap}, got {burst}"),
        ));
    }
    Ok(if burst == 0 { 2 * rate } else { burst })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{error, parse};
    use super::*;

    #[test]
    fn defaults_limit_only_requests_in_flight() {
        let l = parse("").unwrap().limits;
        assert_eq!((l.requests_per_sec, l.requests_burst), (0, 0));
        assert_eq!((l.bytes_per_sec, l.bytes_burst), (0, 0));
        assert_eq!(l.action, LimitAction::Reply);
        assert_eq!(l.max_inflight, 256);
        assert_eq!(l.max_connections_per_ip, 0);
        assert_eq!((l.accepts_per_sec, l.max_handshakes), (0, 0));
    }

    #[test]
    fn values_are_read_and_bursts_derived() {
        let l = parse(
            "[limits]\nrequests_per_sec = 20\nbytes_per_sec = \"16KiB\"\nbytes_burst = \"64KiB\"\n\
             action = \"close\"\nmax_inflight = 0\nmax_connections_per_ip = 50\n\
             accepts_per_sec = 2000\nmax_handshakes = 1000\n",
        )
        .unwrap()
        .limits;
        assert_eq!((l.requests_per_sec, l.requests_burst), (20, 40));
        assert_eq!((l.bytes_per_sec, l.bytes_burst), (16384, 65536));
        assert_eq!(l.action, LimitAction::Close);
        assert_eq!(l.max_inflight, 0);
        assert_eq!(l.max_connections_per_ip, 50);
        assert_eq!((l.accepts_per_sec, l.max_handshakes), (2000, 1000));
        // Derived once: validating again changes nothing.
        let mut c = parse("[limits]\nrequests_per_sec = 5\n").unwrap();
        c.validate().unwrap();
        assert_eq!(c.limits.requests_burst, 10);
    }

    #[test]
    fn bad_values_name_file_line_and_key() {
        let cases: &[(&str, &[&str])] = &[
            (
                "[limits]\nrequests_burst = 10\n",
                &[
                    "etc/ringgate.toml:2: limits.requests_burst: ",
                    "limits.requests_per_sec is 0",
                ],
            ),
            (
                "[limits]\n\nbytes_burst = \"1MiB\"\n",
                &["etc/ringgate.toml:3: limits.bytes_burst: "],
            ),
            (
                "[limits]\nrequests_per_sec = 2000000\n",
                &["etc/ringgate.toml:2: limits.requests_per_sec: ", "1000000"],
            ),
            (
                "[limits]\nbytes_per_sec = \"2TiB\"\n",
                &["limits.bytes_per_sec: must be from 0 (off)"],
            ),
            (
                "[limits]\nrequests_per_sec = 10\nrequests_burst = 3000000\n",
                &["etc/ringgate.toml:3: limits.requests_burst: must be at most"],
            ),
            (
                "[limits]\nmax_inflight = 70000\n",
                &["etc/ringgate.toml:2: limits.max_inflight: ", "65535"],
            ),
            (
                "[limits]\naccepts_per_sec = 5000000\n",
                &["etc/ringgate.toml:2: limits.accepts_per_sec: "],
            ),
            (
                "[limits]\nmax_connections_per_ip = 5000000000\n",
                &["etc/ringgate.toml:2: limits.max_connections_per_ip: "],
            ),
            (
                "[limits]\naction = \"drop\"\n",
                &[
                    "etc/ringgate.toml:2: limits.action: ",
                    "unknown variant \"drop\", expected \"reply\" or \"close\"",
                ],
            ),
            (
                "[limits]\nmax_handshakes = -1\n",
                &["etc/ringgate.toml:2: limits.max_handshakes: "],
            ),
            (
                "[limits]\nrequests_per_second = 10\n",
                &["etc/ringgate.toml:2: limits.requests_per_second: unknown key"],
            ),
        ];
        for (text, parts) in cases {
            let e = error(text);
            for part in *parts {
                assert!(
                    e.contains(part),
                    "{text:?}: {e:?} does not mention {part:?}"
                );
            }
        }
    }
}
