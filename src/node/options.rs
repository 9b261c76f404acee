//! The options of a node: their defaults (`DEFAULT_*`, each with its
//! reason) and [`Options`], the checked set the builder hands to the running
//! node: identity, route and event handlers, threads and link limits.
//!
//! Read-only once validated; this module must not start anything nor touch
//! sockets. Setting the options is the builder's job (`builder.rs`), using
//! them that of the reader, the workers and the server.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::context::Handler;
use super::error::NodeError;
use super::event::EventHandler;
use super::types::EventKind;
use crate::link::proto::{to_gate, NodeHello, ToGate};
use crate::link::PROTOCOL_VERSION;

/// Largest link frame accepted by default (`link.max_frame_bytes` of the
/// gate's config has the same default): 16 MiB.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 << 20;
/// A link silent this long is closed by default. The gate pings idle links
/// every `link.heartbeat_interval` (1 s by default), so 30 s only catches a
/// gate that vanished without closing its sockets.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes a link's writer may hold before producers wait: 32 MiB, two default
/// frames, enough to absorb bursts without letting a stuck gate eat memory.
pub const DEFAULT_MAX_WRITE_BACKLOG: usize = 32 << 20;
/// Requests queued per worker before the link reader waits (backpressure
/// towards the gate).
pub const DEFAULT_WORKER_QUEUE: usize = 4096;
/// Time a new link has to send its `GateHello`.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything the running node needs from the builder; read-only once
/// [`Options::validate`] has checked it.
pub(crate) struct Options {
    /// The service name announced in `NodeHello`.
    pub(crate) service: String,
    /// This node instance's id, announced in `NodeHello`.
    pub(crate) node_id: String,
    /// Route handlers, sorted by route, unique.
    pub(crate) routes: Vec<(i32, Handler)>,
    /// Event handlers, sorted by kind, unique.
    pub(crate) events: Vec<(EventKind, EventHandler)>,
    /// Worker threads; 0 runs handlers inline on the link readers.
    pub(crate) workers: usize,
    /// Jobs queued per worker before a link reader waits.
    pub(crate) worker_queue: usize,
    /// Largest frame accepted from a gate, and the split size of ours.
    pub(crate) max_frame_bytes: usize,
    /// A link silent (or unwritable) this long is closed; `None`: never.
    pub(crate) idle_timeout: Option<Duration>,
    /// Bytes a link's writer holds before producers wait.
    pub(crate) max_write_backlog: usize,
}

/// The node id used when [`NodeBuilder::node_id`](crate::node::NodeBuilder::node_id)
/// is not called: `"{service}-{pid}-{start time in hex}"`, unique per process
/// start without any configuration.
pub(crate) fn default_node_id(service: &str) -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!("{service}-{}-{t:x}", std::process::id())
}

impl Options {
    /// Sorts the routes and event kinds (lookups bisect them) and refuses a
    /// route or kind given twice.
    pub(crate) fn validate(&mut self) -> Result<(), NodeError> {
        self.routes.sort_by_key(|(r, _)| *r);
        if let Some(w) = self.routes.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(NodeError::DuplicateRoute(w[0].0));
        }
        self.events.sort_by_key(|(k, _)| *k);
        if let Some(w) = self.events.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(NodeError::DuplicateEvent(w[0].0));
        }
        Ok(())
    }

    /// The handler of `route`, if this node serves it.
    pub(crate) fn handler(&self, route: i32) -> Option<&Handler> {
        self.routes
            .binary_search_by_key(&route, |(r, _)| *r)
            .ok()
            .map(|i| &self.routes[i].1)
    }

    /// The handler of event `kind`, if this node subscribed to it.
    pub(crate) fn event_handler(&self, kind: EventKind) -> Option<&EventHandler> {
        self.events.iter().find(|(k, _)| *k == kind).map(|(_, h)| h)
    }

    /// The handshake's answer: who this node is, what it serves, which
    /// events it wants.
    pub(crate) fn node_hello(&self) -> ToGate {
        ToGate {
            msg: Some(to_gate::Msg::Hello(NodeHello {
                service: self.service.clone(),
                node_id: self.node_id.clone(),
                routes: self.routes.iter().map(|(r, _)| *r).collect(),
                version: PROTOCOL_VERSION,
                events: self.events.iter().map(|(k, _)| k.to_proto()).collect(),
                max_frame_bytes: u32::try_from(self.max_frame_bytes).unwrap_or(u32::MAX),
                reply_routes: Vec::new(),
                snapshot: false,
            })),
        }
    }
}
