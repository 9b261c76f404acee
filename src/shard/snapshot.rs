//! Snapshots: the live sessions of this shard, in pages, for a node that
//! (re)connects or saw a gap in the event sequence.
//!
//! A snapshot is taken in one go inside one loop turn, so it is exact at
//! that instant: every session whose connect event was raised and whose
//! disconnect was not. Its pages are written back to back on the link, and
//! whatever the shard raises afterwards follows them on the same link —
//! a node that applies the pages, then the events, has the shard's state.
//! The last page carries the event counters, so the node knows the next
//! `seq` of every kind.

use prost::Message;

use super::{Shard, ShardStats};
use crate::link::proto::{to_node, Code, SessionInfo, Snapshot, ToNode};

/// Bytes of sessions per page, at most (and at most half the link's frame
/// limit): a page is one message, and messages must fit a frame.
const PAGE_BYTES: usize = 32 * 1024;

impl Shard {
    /// Writes a snapshot of this shard's sessions on link `i`; `call_id`
    /// names the call that asked (0: the hello). Returns the sessions written.
    pub(super) fn write_snapshot(&mut self, i: usize, call_id: u64) -> u64 {
        let page_max = PAGE_BYTES.min(self.links[i].batch.frame_limit() / 2);
        let before = self.links[i].queued();
        let mut page = Snapshot {
            call_id,
            ..Default::default()
        };
        let (mut page_len, mut total) = (0, 0u64);
        for idx in self.clients.live() {
            let Some(c) = self.clients.get_mut(idx) else {
                continue;
            };
            if !c.conn.is_open() {
                continue;
            }
            let (s, peer) = (&c.conn.session, c.conn.peer());
            let info = SessionInfo {
                session_id: s.id.0,
                uid: s.uid.0,
                ip: peer.ip().to_string(),
                port: u32::from(peer.port()),
                network: c.conn.network().as_str().into(),
                settings: s.settings.to_map(),
            };
            let len = info.encoded_len() + 3;
            if page_len + len > page_max && !page.sessions.is_empty() {
                let full = std::mem::replace(
                    &mut page,
                    Snapshot {
                        call_id,
                        ..Default::default()
                    },
                );
                self.links[i].batch.push(&ToNode {
                    msg: Some(to_node::Msg::Snapshot(full)),
                });
                page_len = 0;
            }
            page_len += len;
            page.sessions.push(info);
            total += 1;
        }
        page.last = true;
        page.event_seqs = self.event_seqs.to_vec();
        let l = &mut self.links[i];
        l.batch.push(&ToNode {
            msg: Some(to_node::Msg::Snapshot(page)),
        });
        let bytes = l.queued() - before;
        l.allow_burst(bytes);
        tracing::info!(shard = self.p.id.0, node = %l.addr, sessions = total, bytes, "snapshot written");
        ShardStats::add(&self.stats().snapshots, 1);
        total
    }

    /// `Call.snapshot` from the node of link `i`: the pages on that link,
    /// then the result. Refused BUSY while the link's queue is over its
    /// limit, so asking again and again cannot grow the gate.
    pub(super) fn call_snapshot(&mut self, i: usize, call_id: u64) {
        let reply = (call_id != 0).then_some(super::mailbox::ReplyTo::Node {
            node: i as u16,
            call_id,
        });
        if self.links[i].queued() >= self.p.link.max_queued_bytes {
            return self.reply_code(reply, Code::Busy, "link queue full; ask again later");
        }
        let delivered = self.write_snapshot(i, call_id);
        self.reply(
            reply,
            crate::link::proto::CallResult {
                delivered,
                ..Default::default()
            },
        );
    }
}
