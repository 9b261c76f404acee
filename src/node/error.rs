//! [`NodeError`]: every way an operation of the node SDK can fail, from
//! building a node to a call the gate refused.
//!
//! One enum for the whole SDK, converting from the link layer's
//! [`LinkError`] and from I/O errors. This module only defines errors; it
//! must not depend on any other part of the SDK but its plain types.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use super::types::EventKind;
use crate::link::LinkError;

/// Errors of the node SDK.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// [`NodeBuilder::bind`](crate::node::NodeBuilder::bind) was called
    /// without [`NodeBuilder::listen`](crate::node::NodeBuilder::listen) or
    /// [`NodeBuilder::listener`](crate::node::NodeBuilder::listener).
    #[error("node has no listen address: call .listen(addr) or .listener(l)")]
    NoListenAddress,
    /// Two handlers were registered for the same route.
    #[error("route {0} registered twice")]
    DuplicateRoute(i32),
    /// [`NodeBuilder::reply_timeout`](crate::node::NodeBuilder::reply_timeout)
    /// named a route not registered with
    /// [`NodeBuilder::route`](crate::node::NodeBuilder::route) (unknown, or a
    /// [`notify`](crate::node::NodeBuilder::notify) route, which has no reply).
    #[error("reply_timeout for route {0}, which is not an answered route (NodeBuilder::route)")]
    UnknownReplyRoute(i32),
    /// [`NodeBuilder::authorized`](crate::node::NodeBuilder::authorized),
    /// `internal` or `stateful` named a route this node does not serve.
    #[error("access rule for route {0}, which is not registered (NodeBuilder::route or ::notify)")]
    UnknownFlaggedRoute(i32),
    /// [`NodeBuilder::name`](crate::node::NodeBuilder::name) named a route
    /// not registered with `route` or `notify`.
    #[error("name for route {0}, which is not registered (NodeBuilder::route or ::notify)")]
    UnknownNamedRoute(i32),
    /// Two routes were given the same name (with
    /// [`NodeBuilder::name`](crate::node::NodeBuilder::name) or
    /// [`NodeBuilder::handler`](crate::node::NodeBuilder::handler)).
    #[error("route name {0:?} given twice")]
    DuplicateName(String),
    /// [`NodeBuilder::name`](crate::node::NodeBuilder::name) was called
    /// twice for one route: a route has at most one name.
    #[error("route {0} named twice (a route has at most one name)")]
    RouteNamedTwice(i32),
    /// A route name that cannot be an MQTT topic level: empty, or holding
    /// `/`, `+`, `#` or NUL.
    #[error("route name {0:?} is not a topic level (empty, or has '/', '+', '#' or NUL)")]
    BadName(String),
    /// Two event handlers were registered for the same event kind.
    #[error("event {0} registered twice")]
    DuplicateEvent(EventKind),
    /// Binding the listen address failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why the OS refused.
        source: io::Error,
    },
    /// Binding the Unix socket failed.
    #[error("cannot listen on unix:{}: {source}", path.display())]
    BindUnix {
        /// The path asked for.
        path: std::path::PathBuf,
        /// Why the OS refused.
        source: io::Error,
    },
    /// No link is up to the gate (never connected, all its links closed,
    /// or the gate named in [`GateClient::gate`](crate::node::GateClient::gate)
    /// is unknown), or the link a call went out on closed and no other link
    /// of its gate is left.
    #[error("no link to the gate (shard {shard})")]
    NotConnected {
        /// The shard the operation preferred (a session's own), else 0.
        shard: u16,
    },
    /// An operation through [`Node::gates`](crate::node::Node::gates) while
    /// links from several gates are up: a session id or uid does not say
    /// which gate holds it. Use
    /// [`GateClient::gate`](crate::node::GateClient::gate), or the handler's
    /// [`SessionContext::gate`](crate::node::SessionContext::gate).
    #[error("{gates} gates connected: use gates().gate(gate_id) to name one")]
    AmbiguousGate {
        /// How many gates have links up.
        gates: usize,
    },
    /// The user locator (Redis) could not be asked where a user is.
    #[error("user locator: {0}")]
    Locator(String),
    /// The gate answered `NOT_FOUND`: no such session, or the user is not
    /// bound on this gate.
    #[error("no such session or user on the gate")]
    NotFound,
    /// The gate answered `ALREADY_BOUND`: the user is bound to another
    /// session and the gate's `session.rebind` is `"reject"`.
    #[error("the user is already bound to another session")]
    AlreadyBound,
    /// The gate answered `INVALID` (or the SDK refused before asking, e.g.
    /// `UserId(0)`); the text says why.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The gate answered `BUSY`: it could not take the call now (a
    /// cross-shard queue was full). Retrying later may work.
    #[error("the gate is busy; retry later")]
    Busy,
    /// A result code this SDK does not know (a newer gate).
    #[error("gate answered code {code}: {message}")]
    Gate {
        /// `CallResult.code`.
        code: i32,
        /// `CallResult.message`.
        message: String,
    },
    /// No result within
    /// [`NodeBuilder::call_timeout`](crate::node::NodeBuilder::call_timeout).
    /// The call may still take effect on the gate.
    #[error("no result from the gate within {0:?}")]
    Timeout(Duration),
    /// A link broke the protocol (oversized frame, bad batch, bad handshake);
    /// the link was closed.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// The gate's hello announced a protocol version this build does not speak.
    #[error("gate speaks link protocol version {0}, this node speaks {v}", v = crate::link::PROTOCOL_VERSION)]
    Version(u32),
    /// A link was silent (or could not be written) for longer than
    /// [`NodeBuilder::idle_timeout`](crate::node::NodeBuilder::idle_timeout).
    #[error("link idle for longer than {0:?}")]
    IdleTimeout(Duration),
    /// Any other socket or thread error.
    #[error(transparent)]
    Io(#[from] io::Error),
}
