//! Gauges the admin port reads (`/metrics`, the dashboard): what a shard
//! holds right now rather than what it counted. They are published from
//! the loop's housekeeping every [`GAUGE_EVERY_MS`], never per packet, so
//! reading them costs the hot path nothing; a scrape sees values at most
//! that old.

use std::sync::atomic::Ordering::Relaxed;

use super::Shard;
use crate::connection::Network;
use crate::stats::{MAX_LINK_GAUGES, NETWORKS};

/// How often a shard publishes its gauges (a scrape or a dashboard frame
/// every second sees fresh enough values; a walk over every connection a
/// few times a second costs nothing measurable).
pub const GAUGE_EVERY_MS: u64 = 250;

// `ShardStats::net` has one entry per transport.
const _: () = assert!(Network::MqttWss as usize + 1 == NETWORKS);

impl Shard {
    /// Publishes the gauges if they are due.
    pub(super) fn refresh_gauges(&mut self) {
        if self.now < self.next_gauges {
            return;
        }
        self.next_gauges = self.now + GAUGE_EVERY_MS;
        let outbound: usize = self.clients.iter().map(|c| c.conn.outbound_bytes()).sum();
        let st = &self.shared.stats[self.p.id.0 as usize];
        st.outbound_bytes.store(outbound as u64, Relaxed);
        st.inbox_depth
            .store(self.mailbox.inbox_len() as u64, Relaxed);
        st.cross_shard_backlog
            .store(self.mailbox.backlog_len() as u64, Relaxed);
        let mut queued = 0;
        for (i, l) in self.links.iter().enumerate() {
            let q = l.queued() as u64;
            queued += q;
            if let Some(g) = st.links.get(i) {
                g.up.store(u64::from(l.is_active()), Relaxed);
                g.queued_bytes.store(q, Relaxed);
                g.waiting.store(u64::from(self.pending.on_link(i)), Relaxed);
            }
        }
        for g in st.links.iter().skip(self.links.len().min(MAX_LINK_GAUGES)) {
            g.up.store(0, Relaxed);
            g.queued_bytes.store(0, Relaxed);
            g.waiting.store(0, Relaxed);
        }
        st.link_queued_bytes.store(queued, Relaxed);
        st.requests_waiting
            .store(self.pending.len() as u64, Relaxed);
        st.handshakes.store(self.lim.handshakes() as u64, Relaxed);
    }
}
