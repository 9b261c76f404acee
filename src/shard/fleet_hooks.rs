//! Where the shards meet the gate's fleet agent (a control thread that
//! talks to the registry and the locator; see `crate::cluster`): shards
//! note user binds and unbinds to it, and it asks them to close a session
//! whose user logged in on another gate.
//!
//! Both directions are bounded channels. A shard never blocks on them: a
//! note that does not fit is dropped and counted (`fleet_notes_dropped`);
//! the agent may wait a little to hand a shard a command, and wakes it.
//!
//! The admin port (`crate::admin`) hands shards its questions on the same
//! command channels ([`Control::Admin`], answered in `admin_ops`), and a
//! configuration reload (`crate::reload`) its new live settings
//! ([`Control::Live`], applied in `live`).

use std::collections::HashMap;
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
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// A node bound (or compare-and-unbound) `uid` to `node` of `service`.
    NodeBinding {
        /// The user.
        uid: UserId,
        /// The service.
        service: Box<str>,
        /// The node instance.
        node: Box<str>,
        /// Bound (true) or unbound (false).
        bind: bool,
    },
    /// The settings of `uid`'s session changed (for the session store).
    Settings {
        /// The user.
        uid: UserId,
        /// All its settings now.
        settings: HashMap<String, String>,
    },
}

/// What the fleet agent (or the admin port) asks of a shard.
#[derive(Debug)]
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
    /// Give session `sid` of `uid` what its user left behind on another
    /// connection: its settings (the session store; only if the session
    /// has none yet) and its node bindings (those it has not set itself).
    Restore {
        /// The user.
        uid: UserId,
        /// The session.
        sid: SessionId,
        /// The stored settings.
        settings: HashMap<String, String>,
        /// Service → node bindings.
        nodes: Vec<(String, String)>,
    },
    /// A question from the admin port, answered on the channel it carries.
    Admin(super::admin_ops::AdminOp),
    /// A configuration reload: take these settings for new connections,
    /// then answer on `done`.
    Live {
        /// The settings in force from now on.
        settings: std::sync::Arc<super::live::LiveSettings>,
        /// Told once they are in place (a capacity-1 channel; never waited on).
        done: Sender<()>,
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
    /// Whether a fleet agent listens (notes cost nothing otherwise).
    pub(super) fn fleet_listens(&self) -> bool {
        self.shared.fleet.notes.get().is_some()
    }

    /// Tells the fleet agent, if one runs, without ever blocking.
    pub(super) fn note_fleet(&self, note: FleetNote) {
        if let Some(tx) = self.shared.fleet.notes.get() {
            if let Err(e) = tx.try_send(note) {
                ShardStats::add(&self.stats().fleet_notes_dropped, 1);
                let note = e.into_inner();
                tracing::warn!(
                    ?note,
                    "fleet agent's queue is full; the locator misses this change"
                );
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
                Control::Admin(op) => self.on_admin(op),
                Control::Live { settings, done } => {
                    self.apply_live(&settings);
                    let _ = done.try_send(());
                }
                Control::Restore {
                    uid,
                    sid,
                    settings,
                    nodes,
                } => {
                    let (max_keys, max_bytes) = (
                        self.p.session.max_settings,
                        self.p.session.max_setting_bytes,
                    );
                    let Some((_, c)) = self.clients.by_session(sid) else {
                        continue;
                    };
                    let s = &mut c.conn.session;
                    if s.uid != uid {
                        continue;
                    }
                    for (service, node) in nodes {
                        if s.nodes.get(&service).is_none() {
                            s.nodes.set(&service, &node);
                        }
                    }
                    if settings.is_empty() || !s.settings.is_empty() {
                        continue;
                    }
                    if let Err(e) = s.settings.apply(settings, &[], max_keys, max_bytes) {
                        tracing::warn!(session = %sid, uid = uid.0, error = %e, "stored settings do not fit this gate's limits; not restored");
                    }
                }
            }
        }
    }
}
