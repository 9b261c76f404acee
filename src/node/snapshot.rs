//! [`SnapshotPage`]: what a snapshot handler sees of one page of a gate
//! shard's live sessions ([`SessionInfo`]), the snapshot handler type and
//! the one place it is run ([`run_snapshot_handler`]).
//!
//! Plain values converted from the protocol's `Snapshot`; this module must
//! not send anything nor track event sequence numbers (the link reader
//! does both when a page arrives).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use tracing::error;

use super::types::EventKind;
use crate::ids::{SessionId, ShardId, UserId};
use crate::link::proto::{self, Snapshot};

/// A snapshot handler.
pub(crate) type SnapshotHandler = Box<dyn Fn(&mut SnapshotPage) + Send + Sync + 'static>;

/// One page of a snapshot of a gate shard's live sessions (see
/// [`NodeBuilder::on_snapshot`](crate::node::NodeBuilder::on_snapshot)):
/// every session whose `Connect` event the shard raised and whose
/// `Disconnect` it has not. All pages of one snapshot were taken at one
/// instant; the last one has [`is_last`](Self::is_last) set, and events
/// that follow it on the link happened after that instant.
#[derive(Debug)]
pub struct SnapshotPage {
    gate_id: Arc<str>,
    shard: ShardId,
    sessions: Vec<SessionInfo>,
    last: bool,
    event_seqs: Vec<u64>,
}

/// One live session of a [`SnapshotPage`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// The session.
    pub session: SessionId,
    /// Its bound user, `UserId(0)` if none.
    pub uid: UserId,
    /// The client's IP address as text.
    pub ip: String,
    /// The client's port.
    pub port: u16,
    /// The transport, e.g. `"tcp"` or `"ws"`.
    pub network: String,
    /// The session's settings.
    pub settings: HashMap<String, String>,
}

impl SessionInfo {
    /// The client's address, if the gate sent a valid one.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        let ip: IpAddr = self.ip.parse().ok()?;
        Some(SocketAddr::new(ip, self.port))
    }

    fn from_proto(s: proto::SessionInfo) -> Self {
        SessionInfo {
            session: SessionId(s.session_id),
            uid: UserId(s.uid),
            ip: s.ip,
            port: s.port as u16,
            network: s.network,
            settings: s.settings,
        }
    }
}

impl SnapshotPage {
    /// The page `s`, read on the link to `shard` of gate `gate_id`.
    pub(crate) fn new(gate_id: Arc<str>, shard: ShardId, s: Snapshot) -> Self {
        SnapshotPage {
            gate_id,
            shard,
            sessions: s
                .sessions
                .into_iter()
                .map(SessionInfo::from_proto)
                .collect(),
            last: s.last,
            event_seqs: s.event_seqs,
        }
    }

    /// Id of the gate the snapshot comes from.
    pub fn gate_id(&self) -> &str {
        &self.gate_id
    }

    /// The gate shard whose sessions these are (the link's shard).
    pub fn shard(&self) -> ShardId {
        self.shard
    }

    /// The sessions of this page.
    pub fn sessions(&self) -> &[SessionInfo] {
        &self.sessions
    }

    /// Takes the sessions out of the page, leaving it empty.
    pub fn take_sessions(&mut self) -> Vec<SessionInfo> {
        std::mem::take(&mut self.sessions)
    }

    /// Whether this is the snapshot's last page.
    pub fn is_last(&self) -> bool {
        self.last
    }

    /// The sequence number of the shard's last event of `kind` when the
    /// snapshot was taken (0: none yet); the next one has this + 1
    /// ([`EventContext::seq`](crate::node::EventContext::seq)).
    pub fn event_seq(&self, kind: EventKind) -> u64 {
        let i = kind.to_proto() as usize;
        self.event_seqs.get(i).copied().unwrap_or(0)
    }
}

/// Runs `handler`; a panic is logged and the link keeps serving.
pub(crate) fn run_snapshot_handler(handler: &SnapshotHandler, page: &mut SnapshotPage) {
    if panic::catch_unwind(AssertUnwindSafe(|| handler(page))).is_err() {
        error!(
            gate = %page.gate_id,
            shard = page.shard.0,
            "node: snapshot handler panicked; page dropped"
        );
    }
}
