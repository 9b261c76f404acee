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
use super::snapshot::SnapshotHandler;
use super::types::EventKind;
use crate::link::proto::{to_gate, NodeHello, NodeState, RouteFlags, RouteSpec, ToGate};
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
/// First route number given to a handler registered by name only
/// ([`NodeBuilder::handler`](crate::node::NodeBuilder::handler)): such
/// handlers get the lowest unused routes from `2^30` up, in registration
/// order. The range is far from hand-picked routes and does not fit a due
/// packet's default 1- or 2-byte route field, so in practice only MQTT
/// clients (by name) reach these handlers.
pub const NAMED_ROUTE_BASE: i32 = 1 << 30;

/// Everything the running node needs from the builder; read-only once
/// [`Options::validate`] has checked it.
pub(crate) struct Options {
    /// The service name announced in `NodeHello`.
    pub(crate) service: String,
    /// This node instance's id, announced in `NodeHello`.
    pub(crate) node_id: String,
    /// Route handlers, sorted by route, unique.
    pub(crate) routes: Vec<Route>,
    /// Event handlers, sorted by kind, unique.
    pub(crate) events: Vec<(EventKind, EventHandler)>,
    /// The snapshot handler; set: the hello asks for a snapshot.
    pub(crate) snapshot: Option<SnapshotHandler>,
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
    /// MQTT topics of routes this node only pushes on.
    pub(crate) push_topics: Vec<(i32, String)>,
    /// Share of stateless traffic under the gate's `wrr` dispatch.
    pub(crate) weight: u32,
    /// Access rules of routes, one entry per flagged route, sorted.
    pub(crate) flags: Vec<RouteFlags>,
}

/// A client route this node serves.
pub(crate) struct Route {
    pub(crate) route: i32,
    pub(crate) handler: Handler,
    /// `Some(timeout)`: answered (announced in `NodeHello.reply_routes`,
    /// `Duration::ZERO` leaving the timeout to the gate); `None`: a
    /// notification (announced in `NodeHello.routes`).
    pub(crate) reply: Option<Duration>,
    /// The route's name for MQTT topics (`NodeHello.route_names`).
    pub(crate) name: Option<String>,
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
    /// Sorts the routes and event kinds (lookups bisect them), refuses a
    /// route or kind given twice, applies `reply_timeouts` (route,
    /// timeout; the last one of a route wins) to the answered routes, gives
    /// each of `named` (answered handlers known by name only) the lowest
    /// unused route from [`NAMED_ROUTE_BASE`], and applies `names` (route,
    /// name): a known route, at most one name per route, names unique.
    pub(crate) fn validate(
        &mut self,
        reply_timeouts: &[(i32, Duration)],
        names: Vec<(i32, String)>,
        named: Vec<(String, Handler)>,
    ) -> Result<(), NodeError> {
        self.routes.sort_by_key(|r| r.route);
        if let Some(w) = self.routes.windows(2).find(|w| w[0].route == w[1].route) {
            return Err(NodeError::DuplicateRoute(w[0].route));
        }
        for (route, name) in names {
            let i = self
                .route(route)
                .ok_or(NodeError::UnknownNamedRoute(route))?;
            if self.routes[i].name.replace(name).is_some() {
                return Err(NodeError::RouteNamedTwice(route));
            }
        }
        let mut next = NAMED_ROUTE_BASE;
        for (name, handler) in named {
            while self.route(next).is_some() {
                next += 1;
            }
            let at = self.routes.partition_point(|r| r.route < next);
            self.routes.insert(
                at,
                Route {
                    route: next,
                    handler,
                    reply: Some(Duration::ZERO),
                    name: Some(name),
                },
            );
        }
        let mut seen = std::collections::HashSet::new();
        for name in self.routes.iter().filter_map(|r| r.name.as_deref()) {
            if name.is_empty() || name.contains(['/', '+', '#', '\0']) {
                return Err(NodeError::BadName(name.to_owned()));
            }
            if !seen.insert(name) {
                return Err(NodeError::DuplicateName(name.to_owned()));
            }
        }
        for &(route, timeout) in reply_timeouts {
            match self.route(route).map(|i| &mut self.routes[i].reply) {
                Some(Some(t)) => *t = timeout,
                Some(None) | None => return Err(NodeError::UnknownReplyRoute(route)),
            }
        }
        self.events.sort_by_key(|(k, _)| *k);
        if let Some(w) = self.events.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(NodeError::DuplicateEvent(w[0].0));
        }
        Ok(())
    }

    /// Merges the access rules given per route (after `validate`): each
    /// must name a route this node serves.
    pub(crate) fn set_flags(&mut self, given: Vec<RouteFlags>) -> Result<(), NodeError> {
        let mut flags: Vec<RouteFlags> = Vec::new();
        for f in given {
            if self.route(f.route).is_none() {
                return Err(NodeError::UnknownFlaggedRoute(f.route));
            }
            match flags.iter_mut().find(|g| g.route == f.route) {
                Some(g) => {
                    g.authorized |= f.authorized;
                    g.internal |= f.internal;
                    g.stateful |= f.stateful;
                }
                None => flags.push(f),
            }
        }
        flags.sort_by_key(|f| f.route);
        self.flags = flags;
        Ok(())
    }

    /// Checks and keeps the topics of push-only routes (after `validate`).
    pub(crate) fn set_push_topics(&mut self, topics: Vec<(i32, String)>) -> Result<(), NodeError> {
        let mut seen: std::collections::HashSet<&str> = self
            .routes
            .iter()
            .filter_map(|r| r.name.as_deref())
            .collect();
        for (route, topic) in &topics {
            if topic.is_empty() || topic.contains(['+', '#', '\0']) {
                return Err(NodeError::BadName(topic.clone()));
            }
            let named = self
                .route(*route)
                .is_some_and(|i| self.routes[i].name.is_some());
            if named || topics.iter().filter(|(r, _)| r == route).count() > 1 {
                return Err(NodeError::RouteNamedTwice(*route));
            }
            if !seen.insert(topic) {
                return Err(NodeError::DuplicateName(topic.clone()));
            }
        }
        self.push_topics = topics;
        Ok(())
    }

    /// Index of `route` in the sorted routes.
    fn route(&self, route: i32) -> Option<usize> {
        self.routes.binary_search_by_key(&route, |r| r.route).ok()
    }

    /// The handler of `route`, if this node serves it.
    pub(crate) fn handler(&self, route: i32) -> Option<&Handler> {
        self.route(route).map(|i| &self.routes[i].handler)
    }

    /// The handler of event `kind`, if this node subscribed to it.
    pub(crate) fn event_handler(&self, kind: EventKind) -> Option<&EventHandler> {
        self.events.iter().find(|(k, _)| *k == kind).map(|(_, h)| h)
    }

    /// The handshake's answer: who this node is, which routes it serves
    /// (answered ones in `reply_routes`, notifications in `routes`), which
    /// events it wants, and whether it wants a snapshot first.
    pub(crate) fn node_hello(&self, state: NodeState) -> ToGate {
        let notify = self.routes.iter().filter(|r| r.reply.is_none());
        let answered = self.routes.iter().filter_map(|r| Some((r.route, r.reply?)));
        ToGate {
            msg: Some(to_gate::Msg::Hello(NodeHello {
                service: self.service.clone(),
                node_id: self.node_id.clone(),
                routes: notify.map(|r| r.route).collect(),
                version: PROTOCOL_VERSION,
                events: self.events.iter().map(|(k, _)| k.to_proto()).collect(),
                max_frame_bytes: u32::try_from(self.max_frame_bytes).unwrap_or(u32::MAX),
                reply_routes: answered
                    .map(|(route, timeout)| RouteSpec {
                        route,
                        timeout_ms: timeout_ms(timeout),
                    })
                    .collect(),
                snapshot: self.snapshot.is_some(),
                route_names: (self.routes.iter())
                    .filter_map(|r| Some((r.name.clone()?, r.route)))
                    .chain(self.push_topics.iter().map(|(r, t)| (t.clone(), *r)))
                    .collect(),
                weight: self.weight,
                state: state as i32,
                route_flags: self.flags.clone(),
            })),
        }
    }
}

/// A reply timeout as `RouteSpec.timeout_ms`: zero stays 0 (the gate's
/// default), anything else is rounded up to whole milliseconds (so a short
/// timeout never becomes "the default"), at most `u32::MAX`.
fn timeout_ms(timeout: Duration) -> u32 {
    u32::try_from(timeout.as_nanos().div_ceil(1_000_000)).unwrap_or(u32::MAX)
}
