//! What the admin port asks of a shard (`crate::admin`): pages of its
//! sessions, one session, the directory entry of a user, a kick, a
//! broadcast. The questions arrive as [`Control::Admin`] on the same bounded
//! per-shard channel the fleet agent uses, with a wake-up; the shard answers
//! in its loop turn on the reply channel the question carries.
//!
//! A shard never waits on a reply channel: each question brings a fresh
//! one with room for its answer, and if the asker gave up (timed out) the
//! answer is dropped.
//!
//! [`Control::Admin`]: super::fleet_hooks::Control::Admin

use std::collections::BTreeMap;

use crossbeam_channel::Sender;
use serde::Serialize;

use super::Shard;
use crate::connection::{Close, Outgoing, Phase};
use crate::ids::{SessionId, UserId};
use crate::session::CloseReason;

/// A question from the admin port to one shard.
#[derive(Debug)]
pub enum AdminOp {
    /// Up to `limit` of this shard's sessions after skipping `offset`, in
    /// slot order, and how many it has.
    Sessions {
        /// Sessions of this shard to skip.
        offset: usize,
        /// Sessions to return at most.
        limit: usize,
        /// Where the page goes.
        reply: Sender<SessionPage>,
    },
    /// Session `sid` (of this shard), if it is open.
    Session {
        /// The session.
        sid: SessionId,
        /// Where its description goes.
        reply: Sender<Option<SessionInfo>>,
    },
    /// The session `uid` is bound to, from this shard's directory
    /// partition (ask `uid`'s home shard).
    LookupUid {
        /// The user.
        uid: UserId,
        /// Where the session id goes.
        reply: Sender<Option<SessionId>>,
    },
    /// Close session `sid` (reason `kicked`) after flushing what is queued
    /// for it; answers whether it was open here.
    Kick {
        /// The session.
        sid: SessionId,
        /// Where the outcome goes.
        reply: Sender<bool>,
    },
    /// Write an encoded packet to every (bound) session of this shard;
    /// answers how many got it.
    Broadcast {
        /// The packet, encoded once for every shard.
        packet: Outgoing,
        /// Only sessions with a bound user.
        bound_only: bool,
        /// Where the count goes.
        reply: Sender<u64>,
    },
}

/// One session as the admin API shows it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct SessionInfo {
    /// Session id (encodes the shard).
    pub id: u64,
    /// The shard that owns it.
    pub shard: u16,
    /// Bound user, 0 while unbound.
    pub uid: i64,
    /// Client address.
    pub ip: String,
    /// Client port.
    pub port: u16,
    /// Transport (`tcp`, `ws`, `mqtt`...).
    pub network: &'static str,
    /// Phase (`handshake`, `open`, `draining`, `closed`).
    pub phase: &'static str,
    /// Settings nodes set on it.
    pub settings: BTreeMap<String, String>,
    /// Bytes queued towards the client.
    pub outbound_bytes: usize,
}

/// A page of one shard's sessions.
#[derive(Debug, Default)]
pub struct SessionPage {
    /// Sessions the shard has in all.
    pub total: usize,
    /// The page.
    pub sessions: Vec<SessionInfo>,
}

impl Shard {
    /// Answers one admin question (a loop turn's control step).
    pub(super) fn on_admin(&mut self, op: AdminOp) {
        match op {
            AdminOp::Sessions {
                offset,
                limit,
                reply,
            } => {
                let me = self.p.id.0;
                let sessions = (self.clients.iter())
                    .skip(offset)
                    .take(limit)
                    .map(|c| describe(me, &c.conn))
                    .collect();
                let total = self.clients.len();
                let _ = reply.try_send(SessionPage { total, sessions });
            }
            AdminOp::Session { sid, reply } => {
                let me = self.p.id.0;
                let info = self
                    .clients
                    .by_session(sid)
                    .map(|(_, c)| describe(me, &c.conn));
                let _ = reply.try_send(info);
            }
            AdminOp::LookupUid { uid, reply } => {
                let _ = reply.try_send(self.dir.lookup(&uid.0));
            }
            AdminOp::Kick { sid, reply } => {
                let found = match self.clients.by_session(sid) {
                    Some((idx, _)) => {
                        tracing::info!(session = %sid, "closing: kicked from the admin port");
                        let reason = CloseReason::Kicked;
                        self.with_conn(idx, |c, cx| c.close(reason, Close::AfterFlush, cx));
                        true
                    }
                    None => false,
                };
                let _ = reply.try_send(found);
            }
            AdminOp::Broadcast {
                packet,
                bound_only,
                reply,
            } => {
                let n = self.broadcast_local(&packet, bound_only);
                let _ = reply.try_send(n);
            }
        }
    }
}

fn describe(shard: u16, c: &crate::connection::Connection) -> SessionInfo {
    let s = &c.session;
    let peer = c.peer();
    SessionInfo {
        id: s.id.0,
        shard,
        uid: s.uid.0,
        ip: peer.ip().to_string(),
        port: peer.port(),
        network: c.network().as_str(),
        phase: match c.phase() {
            Phase::Handshake { .. } => "handshake",
            Phase::Open => "open",
            Phase::Draining { .. } => "draining",
            Phase::Closed { .. } => "closed",
        },
        settings: s.settings.to_map().into_iter().collect(),
        outbound_bytes: c.outbound_bytes(),
    }
}
