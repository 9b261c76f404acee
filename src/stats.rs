//! Counters every shard keeps, readable from any thread.
//!
//! Each shard writes only its own [`ShardStats`] (relaxed atomics on its own
//! cache lines), so counting never contends; readers sum a snapshot.

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
            $($(#[doc = $doc])* pub $name: AtomicU64,)*
        }

        /// A copy of counters (one shard's, or the sum over shards).
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        pub struct StatsSnapshot {
            /// Connections closed, per [`CloseReason`].
            pub closed: [u64; CloseReason::ALL.len()],
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        impl ShardStats {
            /// A plain copy of every counter.
            pub fn snapshot(&self) -> StatsSnapshot {
                let mut closed = [0; CloseReason::ALL.len()];
                for (o, c) in closed.iter_mut().zip(&self.closed) {
                    *o = c.load(Relaxed);
                }
                StatsSnapshot {
                    closed,
                    $($name: self.$name.load(Relaxed),)*
                }
            }
        }

        impl StatsSnapshot {
            /// Adds another snapshot into this one.
            pub fn merge(&mut self, o: &StatsSnapshot) {
                for (a, b) in self.closed.iter_mut().zip(&o.closed) {
                    *a += b;
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
    /// accept(2) failures (e.g. EMFILE).
    accept_errors,
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
