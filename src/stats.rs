//! Counters every shard keeps, readable from any thread.
//!
//! Each shard writes only its own [`ShardStats`] (relaxed atomics on its own
//! cache lines), so counting never contends; readers sum a snapshot.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::session::CloseReason;

/// One shard's counters. Aligned so two shards never share a cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct ShardStats {
    /// Connections open now.
    pub connections: AtomicU64,
    /// Connections accepted since start.
    pub accepted: AtomicU64,
    /// Connections refused at `max_connections`.
    pub refused: AtomicU64,
    /// accept(2) failures (e.g. EMFILE).
    pub accept_errors: AtomicU64,
    /// Connections closed, by [`CloseReason`] discriminant.
    pub closed: [AtomicU64; CloseReason::ALL.len()],
    /// Data packets received from clients.
    pub packets_in: AtomicU64,
    /// Data packets queued to clients (replies, pushes, error replies).
    pub packets_out: AtomicU64,
    /// Heartbeats received from clients.
    pub heartbeats_in: AtomicU64,
    /// Requests answered with "no node serves this route".
    pub no_route: AtomicU64,
    /// Requests answered with "every node of this route is down".
    pub node_down: AtomicU64,
    /// Pushes from nodes for sessions that no longer exist here.
    pub push_misses: AtomicU64,
    /// Multishot receives that ran out of provided buffers (re-armed).
    pub recv_no_buffers: AtomicU64,
    /// Node links up now.
    pub links_up: AtomicU64,
    /// Node link connect attempts that failed.
    pub link_failures: AtomicU64,
    /// Node links that went down after being up.
    pub link_drops: AtomicU64,
    /// Messages sent to nodes.
    pub to_node: AtomicU64,
    /// Messages received from nodes.
    pub from_node: AtomicU64,
    /// Sessions with a bound user now.
    pub bound: AtomicU64,
    /// Calls received from nodes.
    pub calls: AtomicU64,
    /// Call results that could not be sent (the node's link was down).
    pub results_dropped: AtomicU64,
    /// Events sent to nodes.
    pub events_sent: AtomicU64,
    /// Messages sent to other shards.
    pub cross_shard_sent: AtomicU64,
    /// Messages to other shards dropped because inbox and backlog were full.
    pub cross_shard_dropped: AtomicU64,
    /// WebSocket upgrades accepted.
    pub ws_upgrades: AtomicU64,
    /// WebSocket upgrades refused (bad path, origin, version, key...).
    pub ws_rejected: AtomicU64,
    /// WebSocket text messages refused (close 1003).
    pub ws_text_rejected: AtomicU64,
    /// TLS handshakes completed (TCP over TLS; wss counts as ws_upgrades).
    pub tls_handshakes: AtomicU64,
    /// TLS errors (bad handshake or record).
    pub tls_failures: AtomicU64,
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

    /// A plain copy of every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let mut closed = [0; CloseReason::ALL.len()];
        for (o, c) in closed.iter_mut().zip(&self.closed) {
            *o = c.load(Relaxed);
        }
        StatsSnapshot {
            connections: self.connections.load(Relaxed),
            accepted: self.accepted.load(Relaxed),
            refused: self.refused.load(Relaxed),
            accept_errors: self.accept_errors.load(Relaxed),
            closed,
            packets_in: self.packets_in.load(Relaxed),
            packets_out: self.packets_out.load(Relaxed),
            heartbeats_in: self.heartbeats_in.load(Relaxed),
            no_route: self.no_route.load(Relaxed),
            node_down: self.node_down.load(Relaxed),
            push_misses: self.push_misses.load(Relaxed),
            recv_no_buffers: self.recv_no_buffers.load(Relaxed),
            links_up: self.links_up.load(Relaxed),
            link_failures: self.link_failures.load(Relaxed),
            link_drops: self.link_drops.load(Relaxed),
            to_node: self.to_node.load(Relaxed),
            from_node: self.from_node.load(Relaxed),
            bound: self.bound.load(Relaxed),
            calls: self.calls.load(Relaxed),
            results_dropped: self.results_dropped.load(Relaxed),
            events_sent: self.events_sent.load(Relaxed),
            cross_shard_sent: self.cross_shard_sent.load(Relaxed),
            cross_shard_dropped: self.cross_shard_dropped.load(Relaxed),
            ws_upgrades: self.ws_upgrades.load(Relaxed),
            ws_rejected: self.ws_rejected.load(Relaxed),
            ws_text_rejected: self.ws_text_rejected.load(Relaxed),
            tls_handshakes: self.tls_handshakes.load(Relaxed),
            tls_failures: self.tls_failures.load(Relaxed),
        }
    }
}

/// A copy of counters (one shard's, or the sum over shards).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct StatsSnapshot {
    pub connections: u64,
    pub accepted: u64,
    pub refused: u64,
    pub accept_errors: u64,
    pub closed: [u64; CloseReason::ALL.len()],
    pub packets_in: u64,
    pub packets_out: u64,
    pub heartbeats_in: u64,
    pub no_route: u64,
    pub node_down: u64,
    pub push_misses: u64,
    pub recv_no_buffers: u64,
    pub links_up: u64,
    pub link_failures: u64,
    pub link_drops: u64,
    pub to_node: u64,
    pub from_node: u64,
    pub bound: u64,
    pub calls: u64,
    pub results_dropped: u64,
    pub events_sent: u64,
    pub cross_shard_sent: u64,
    pub cross_shard_dropped: u64,
    pub ws_upgrades: u64,
    pub ws_rejected: u64,
    pub ws_text_rejected: u64,
    pub tls_handshakes: u64,
    pub tls_failures: u64,
}

impl StatsSnapshot {
    /// Connections closed for `reason`.
    pub fn closed_for(&self, reason: CloseReason) -> u64 {
        self.closed[reason as usize]
    }

    /// Adds another snapshot into this one.
    pub fn merge(&mut self, o: &StatsSnapshot) {
        self.connections += o.connections;
        self.accepted += o.accepted;
        self.refused += o.refused;
        self.accept_errors += o.accept_errors;
        for (a, b) in self.closed.iter_mut().zip(&o.closed) {
            *a += b;
        }
        self.packets_in += o.packets_in;
        self.packets_out += o.packets_out;
        self.heartbeats_in += o.heartbeats_in;
        self.no_route += o.no_route;
        self.node_down += o.node_down;
        self.push_misses += o.push_misses;
        self.recv_no_buffers += o.recv_no_buffers;
        self.links_up += o.links_up;
        self.link_failures += o.link_failures;
        self.link_drops += o.link_drops;
        self.to_node += o.to_node;
        self.from_node += o.from_node;
        self.bound += o.bound;
        self.calls += o.calls;
        self.results_dropped += o.results_dropped;
        self.events_sent += o.events_sent;
        self.cross_shard_sent += o.cross_shard_sent;
        self.cross_shard_dropped += o.cross_shard_dropped;
        self.ws_upgrades += o.ws_upgrades;
        self.ws_rejected += o.ws_rejected;
        self.ws_text_rejected += o.ws_text_rejected;
        self.tls_handshakes += o.tls_handshakes;
        self.tls_failures += o.tls_failures;
    }
}
