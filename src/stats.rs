//! Counters every shard keeps, readable from any thread.
//!
//! Each shard writes only its own [`ShardStats`] (relaxed atomics on its own
//! cache lines), so counting never contends; readers sum a snapshot. Besides
//! the plain counters declared once by [`counters!`], a shard keeps
//! per-transport counters ([`NetStats`], indexed by `Network as usize`), the
//! request round-trip [`Histogram`] and per-node-link gauges ([`LinkGauge`]);
//! all are fixed-size arrays of atomics, so recording never locks or
//! allocates. The gauges (`outbound_bytes`, `inbox_depth`, link queues) are
//! refreshed by the shard's housekeeping a few times a second, not per packet.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::session::CloseReason;

/// Declares [`ShardStats`] (atomics), [`StatsSnapshot`] (plain copies) and
/// the code between them from one list of counters.
macro_rules! counters {
    ($($(#[doc = $doc:expr])* $name:ident,)*) => {
        /// One shard's counters. Aligned so two shards never share a cache line.
        #[derive(Debug, Default)]
        #[repr(align(128))]
        pub struct ShardStats {
            /// Connections closed, per [`CloseReason`].
            pub closed: [AtomicU64; CloseReason::ALL.len()],
            /// Per transport (`Network as usize`).
            pub net: [NetStats; NETWORKS],
            /// Round trips of requests answered by their node.
            pub latency: Histogram,
            /// Per node link (link index), the first [`MAX_LINK_GAUGES`].
            pub links: [LinkGauge; MAX_LINK_GAUGES],
            $($(#[doc = $doc])* pub $name: AtomicU64,)*
        }

        /// A copy of counters (one shard's, or the sum over shards).
        #[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
        pub struct StatsSnapshot {
            /// Connections closed, per [`CloseReason`].
            pub closed: [u64; CloseReason::ALL.len()],
            /// Per transport (`Network as usize`).
            pub net: [NetSnapshot; NETWORKS],
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        impl ShardStats {
            /// A plain copy of every counter.
            pub fn snapshot(&self) -> StatsSnapshot {
                let mut closed = [0; CloseReason::ALL.len()];
                for (o, c) in closed.iter_mut().zip(&self.closed) {
                    *o = c.load(Relaxed);
                }
                let mut s = StatsSnapshot {
                    closed,
                    net: std::array::from_fn(|i| self.net[i].snapshot()),
                    $($name: self.$name.load(Relaxed),)*
                };
                // Counted once, per transport; the totals are their sums.
                s.bytes_in = s.net.iter().map(|n| n.bytes_in).sum();
                s.bytes_out = s.net.iter().map(|n| n.bytes_out).sum();
                s
            }
        }

        impl StatsSnapshot {
            /// Adds another snapshot into this one.
            pub fn merge(&mut self, o: &StatsSnapshot) {
                for (a, b) in self.closed.iter_mut().zip(&o.closed) {
                    *a += b;
                }
                for (a, b) in self.net.iter_mut().zip(&o.net) {
                    a.merge(b);
                }
                $(self.$name += o.$name;)*
            }
        }
    };
}

counters! {
    /// Connections open now.
    connections,
    /// Connections accepted since start.
    accepted,
    /// Connections refused at `max_connections`.
    refused,
    /// accept(2) failures (e.g. EMFILE); accepting pauses 100 ms after each.
    accept_errors,
    /// Connections refused at `limits.max_connections_per_ip` (gate-wide,
    /// IPv6 by /64).
    refused_per_ip,
    /// Connections closed on accept over `limits.accepts_per_sec`.
    refused_accept_rate,
    /// Connections closed on accept over `limits.max_handshakes`.
    refused_handshakes,
    /// Data packets received from clients.
    packets_in,
    /// Data packets queued to clients (replies, pushes, error replies).
    packets_out,
    /// Heartbeats received from clients.
    heartbeats_in,
    /// Requests answered with "no node serves this route".
    no_route,
    /// Requests answered with "every node of this route is down".
    node_down,
    /// Requests refused UNAUTHORIZED: an authorized or stateful route without a bound user.
    unauthorized,
    /// Requests refused FORBIDDEN: a client called an internal route.
    forbidden,
    /// Requests refused NOT_BOUND: a stateful route before the user was bound to a node.
    not_bound,
    /// Requests refused RATE_LIMITED (MQTT: "rate limited"): over
    /// `limits.requests_per_sec` or `limits.bytes_per_sec`.
    rate_limited,
    /// Requests refused because too many of their connection's requests
    /// waited for replies: INFLIGHT_FULL over `limits.max_inflight`, MQTT's
    /// "the work queue is full!" over its `max_inflight`.
    inflight_full,
    /// Bind/unbind notes the fleet agent's full queue could not take.
    fleet_notes_dropped,
    /// Sessions closed because their user was bound on another gate.
    fleet_kicks,
    /// Pushes from nodes for sessions that no longer exist here.
    push_misses,
    /// Multishot receives that ran out of provided buffers (re-armed).
    recv_no_buffers,
    /// Node links up now.
    links_up,
    /// Node link connect attempts that failed.
    link_failures,
    /// Node links that went down after being up.
    link_drops,
    /// Messages sent to nodes.
    to_node,
    /// Messages received from nodes.
    from_node,
    /// Sessions with a bound user now.
    bound,
    /// Calls received from nodes.
    calls,
    /// Call results that could not be sent (the node's link was down).
    results_dropped,
    /// Events sent to nodes.
    events_sent,
    /// Messages sent to other shards.
    cross_shard_sent,
    /// Messages to other shards dropped because inbox and backlog were full.
    cross_shard_dropped,
    /// WebSocket upgrades accepted.
    ws_upgrades,
    /// WebSocket upgrades refused (bad path, origin, version, key...).
    ws_rejected,
    /// WebSocket text messages refused (close 1003).
    ws_text_rejected,
    /// TLS handshakes completed (TCP over TLS; wss counts as ws_upgrades).
    tls_handshakes,
    /// TLS errors (bad handshake or record).
    tls_failures,
    /// Replies to requests the node had already answered or the gate had
    /// timed out (dropped: a client never gets a reply after its error).
    late_replies,
    /// Requests answered TIMEOUT: the node did not reply in time.
    request_timeouts,
    /// Requests answered NODE_DOWN because their link dropped before the reply.
    requests_orphaned,
    /// Requests answered BUSY: the node's link queue was over link.max_queued_bytes.
    link_busy,
    /// Requests answered TOO_LARGE: over the node's frame limit.
    too_large,
    /// Events not sent because the node's link queue was full (seq shows the gap).
    events_dropped,
    /// Links closed because their node stopped answering while requests waited.
    links_hung,
    /// Snapshots of live sessions written to nodes.
    snapshots,
    /// MQTT packets refused or answered with an error (bad packet, bad
    /// topic, bad JSON, too many requests in flight).
    mqtt_errors,
    /// Bytes received from clients (as read from the socket: TLS and
    /// WebSocket framing included). In snapshots only: the sum of
    /// `net[..].bytes_in`, which is what the shard counts.
    bytes_in,
    /// Bytes written to client sockets. In snapshots only, as `bytes_in`.
    bytes_out,
    /// Gauge: bytes queued or in flight towards this shard's clients.
    outbound_bytes,
    /// Gauge: messages waiting in this shard's inbox from other shards.
    inbox_depth,
    /// Gauge: messages this shard holds back for full inboxes of other shards.
    cross_shard_backlog,
    /// Gauge: bytes waiting to be written to node links, all links.
    link_queued_bytes,
    /// Gauge: requests waiting for a node's reply.
    requests_waiting,
    /// Gauge: connections in their handshake (TLS, WebSocket upgrade, MQTT
    /// CONNECT), against `limits.max_handshakes`.
    handshakes,
    /// Event-loop turns (one wait in the ring each).
    loop_turns,
    /// Operations submitted to the ring.
    ring_submissions,
    /// Completions reaped from the ring.
    ring_completions,
}

/// Transports a shard counts apart: `crate::connection::Network`'s variants
/// (the shard checks the two agree at compile time).
pub const NETWORKS: usize = 8;

/// Node links whose gauges a shard publishes one by one (links beyond this
/// still count in the totals).
pub const MAX_LINK_GAUGES: usize = 32;

/// One transport's counters on one shard.
#[derive(Debug, Default)]
pub struct NetStats {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
    /// Bytes received.
    pub bytes_in: AtomicU64,
    /// Bytes sent.
    pub bytes_out: AtomicU64,
}

/// A copy of [`NetStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct NetSnapshot {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections open now.
    pub open: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
}

impl NetStats {
    /// A plain copy.
    pub fn snapshot(&self) -> NetSnapshot {
        NetSnapshot {
            accepted: self.accepted.load(Relaxed),
            open: self.open.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
        }
    }
}

impl NetSnapshot {
    fn merge(&mut self, o: &NetSnapshot) {
        self.accepted += o.accepted;
        self.open += o.open;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
    }
}

/// One node link's state on one shard, refreshed by housekeeping.
#[derive(Debug, Default)]
pub struct LinkGauge {
    /// 1 while the link is up (hello done), else 0.
    pub up: AtomicU64,
    /// Bytes waiting to be written to it.
    pub queued_bytes: AtomicU64,
    /// Requests on it waiting for their reply.
    pub waiting: AtomicU64,
}

/// Upper bounds of the round-trip buckets in nanoseconds: 50 µs × √2^i for
/// i = 0..36, i.e. 50 µs … 9.3 s, two buckets per doubling (a quantile read
/// from them is within ±20 %). Longer round trips land in the last, `+Inf`
/// bucket.
pub const LATENCY_BOUNDS_NS: [u64; LATENCY_BUCKETS - 1] = latency_bounds();

/// Buckets of [`Histogram`], the `+Inf` one included.
pub const LATENCY_BUCKETS: usize = 37;

const fn latency_bounds() -> [u64; LATENCY_BUCKETS - 1] {
    let mut b = [0; LATENCY_BUCKETS - 1];
    let mut i = 0;
    while i < b.len() {
        let base = 50_000u64 << (i / 2);
        // √2 ≈ 1.41421356
        b[i] = if i % 2 == 0 {
            base
        } else {
            base * 141_421_356 / 100_000_000
        };
        i += 1;
    }
    b
}

/// A fixed-bucket histogram of durations, written by one shard with relaxed
/// atomics (no lock, no allocation) and merged by readers.
#[derive(Debug)]
#[repr(align(128))]
pub struct Histogram {
    counts: [AtomicU64; LATENCY_BUCKETS],
    sum_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ns: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// Counts one duration of `ns` nanoseconds.
    #[inline]
    pub fn record(&self, ns: u64) {
        let i = LATENCY_BOUNDS_NS.partition_point(|&b| b < ns);
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    /// Adds this histogram's counts into `into`.
    pub fn merge_into(&self, into: &mut HistogramSnapshot) {
        for (o, c) in into.counts.iter_mut().zip(&self.counts) {
            *o += c.load(Relaxed);
        }
        into.sum_ns += self.sum_ns.load(Relaxed);
    }

    /// A plain copy.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut h = HistogramSnapshot::default();
        self.merge_into(&mut h);
        h
    }
}

/// A copy of a [`Histogram`] (one shard's, or the sum over shards).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Per bucket (not cumulative); the last is `+Inf`.
    pub counts: [u64; LATENCY_BUCKETS],
    /// Sum of every recorded duration.
    pub sum_ns: u64,
}

impl Default for HistogramSnapshot {
    fn default() -> Self {
        HistogramSnapshot {
            counts: [0; LATENCY_BUCKETS],
            sum_ns: 0,
        }
    }
}

impl HistogramSnapshot {
    /// Durations recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Adds another snapshot into this one.
    pub fn merge(&mut self, o: &HistogramSnapshot) {
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        self.sum_ns += o.sum_ns;
    }

    /// The `q` quantile (0..=1) in nanoseconds, interpolated linearly inside
    /// its bucket; `None` when empty. One in the `+Inf` bucket reads as the
    /// largest finite bound.
    pub fn quantile_ns(&self, q: f64) -> Option<u64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            if c == 0 || seen + c < rank {
                seen += c;
                continue;
            }
            let Some(&hi) = LATENCY_BOUNDS_NS.get(i) else {
                return LATENCY_BOUNDS_NS.last().copied();
            };
            let lo = if i == 0 { 0 } else { LATENCY_BOUNDS_NS[i - 1] };
            let within = (rank - seen) as f64 / c as f64;
            return Some(lo + ((hi - lo) as f64 * within) as u64);
        }
        LATENCY_BOUNDS_NS.last().copied()
    }
}

impl ShardStats {
    /// Adds `n` to a counter (relaxed).
    #[inline]
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    /// Counts a close for `reason`.
    #[inline]
    pub fn closed(&self, reason: CloseReason) {
        self.closed[reason as usize].fetch_add(1, Relaxed);
    }
}

impl StatsSnapshot {
    /// Connections closed for `reason`.
    pub fn closed_for(&self, reason: CloseReason) -> u64 {
        self.closed[reason as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_bounds_double_every_two_buckets() {
        assert_eq!(LATENCY_BOUNDS_NS[0], 50_000);
        assert_eq!(LATENCY_BOUNDS_NS[1], 70_710);
        assert_eq!(LATENCY_BOUNDS_NS[2], 100_000);
        assert_eq!(LATENCY_BOUNDS_NS[35], 9_268_189_986);
        assert!(LATENCY_BOUNDS_NS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn histogram_buckets_are_upper_inclusive_and_quantiles_interpolate() {
        let h = Histogram::default();
        h.record(50_000); // le 50 µs
        h.record(50_001); // le 70.7 µs
        h.record(20_000_000_000); // +Inf
        let s = h.snapshot();
        assert_eq!((s.counts[0], s.counts[1], s.counts[36]), (1, 1, 1));
        assert_eq!(s.count(), 3);
        assert_eq!(s.sum_ns, 20_000_100_001);
        assert_eq!(s.quantile_ns(0.0), Some(50_000));
        assert_eq!(s.quantile_ns(0.5), Some(70_710));
        assert_eq!(s.quantile_ns(1.0), Some(9_268_189_986));
        assert_eq!(HistogramSnapshot::default().quantile_ns(0.5), None);

        let h = Histogram::default();
        for _ in 0..100 {
            h.record(1_000_000); // 1 ms: bucket (800 µs, 1.13 ms]
        }
        let p = h.snapshot().quantile_ns(0.99).unwrap();
        assert!((800_000..=1_131_370).contains(&p), "{p}");
    }
}
