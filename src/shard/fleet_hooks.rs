//! Where the shards meet the gate's fleet agent (a control thread that
//! talks to the registry and the locator; see `crate::cluster`): shards
//! note user binds and unbinds to it, and it asks them to close a session
//! whose user logged in on another gate.
//!
//! Both directions are bounded channels. A shard never blocks on them: a
//! note that does not fit is dropped and counted (`fleet_notes_dropped`);
//! the agent may wait a little to hand a shard a command, and wakes it.

use std::sync::OnceLock;

use crossbeam_channel::{Receiver, Sender};

use super::{Shard, ShardStats};
use crate::connection::Close;
use crate::ids::{SessionId, UserId};
use crate::session::CloseReason;

/// Commands queued per shard before the agent waits.
pub const CONTROL_CAPACITY: usize = 4096;
/// Commands a shard runs per loop turn.
const CONTROL_PER_TURN: usize = 256;

/// What a shard tells the fleet agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FleetNote {
    /// `uid` was bound to session `sid`.
    Bound {
        /// The user.
        uid: UserId,
        /// Its session.
        sid: SessionId,
    },
    /// `uid` left session `sid` (unbound, rebound, or the session closed).
    Unbound {
        /// The user.
        uid: UserId,
        /// The session it left.
        sid: SessionId,
    },
}

/// What the fleet agent asks of a shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Close session `sid` if `uid` is still bound to it, after flushing.
    Kick {
        /// The user.
        uid: UserId,
        /// The session.
        sid: SessionId,
        /// Reported to nodes.
        reason: CloseReason,
    },
}

/// The channels between the shards and the agent.
#[derive(Debug)]
pub struct FleetPipes {
    /// Set once an agent runs; until then shards note nothing.
    pub notes: OnceLock<Sender<FleetNote>>,
    /// Per shard: the agent's commands.
    pub controls: Vec<(Sender<Control>, Receiver<Control>)>,
}

impl FleetPipes {
    /// Pipes for `shards` shards.
    pub fn new(shards: usize) -> FleetPipes {
        FleetPipes {
            notes: OnceLock::new(),
            controls: (0..shards)
                .map(|_| crossbeam_channel::bounded(CONTROL_CAPACITY))
                .collect(),
        }
    }
}

impl Shard {
    /// Tells the fleet agent, if one runs, without ever blocking.
    pub(super) fn note_fleet(&self, note: FleetNote) {
        if let Some(tx) = self.shared.fleet.notes.get() {
            if tx.try_send(note).is_err() {
                ShardStats::add(&self.stats().fleet_notes_dropped, 1);
                tracing::warn!(?note, "fleet agent's queue is full; the locator misses this change");
            }
        }
    }

    /// Runs the agent's commands for this shard.
    pub(super) fn run_controls(&mut self) {
        for _ in 0..CONTROL_PER_TURN {
            let Ok(c) = self.shared.fleet.controls[self.me()].1.try_recv() else {
                return;
            };
            match c {
                Control::Kick { uid, sid, reason } => {
                    let Some((idx, c)) = self.clients.by_session(sid) else {
                        continue;
                    };
                    if c.conn.session.uid != uid {
                        continue;
                    }
                    ShardStats::add(&self.stats().fleet_kicks, 1);
                    tracing::debug!(session = %sid, uid = uid.0, ?reason, "closing: the user is bound on another gate");
                    self.with_conn(idx, |c, cx| c.close(reason, Close::AfterFlush, cx));
                }
            }
        }
    }
}
