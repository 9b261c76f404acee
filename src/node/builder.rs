//! [`NodeBuilder`]: what a node serves and how, with every default stated,
//! and [`Node::builder`], the SDK's entry point.
//!
//! The builder is the top of the SDK: it checks what it was given, freezes
//! it into `Options` and hands them to `Node::new` with a bound
//! listener. It must not start threads or read links; that is the server's
//! job once the node runs. `Node::builder` is defined here, not beside
//! `Node`, so that the server never has to import the builder.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use super::context::{Context, Handler};
use super::error::NodeError;
use super::event::{EventContext, EventHandler};
use super::gate_client::{GateClient, DEFAULT_CALL_TIMEOUT};
use super::options::{
    default_node_id, Options, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_FRAME_BYTES,
    DEFAULT_MAX_WRITE_BACKLOG, DEFAULT_WORKER_QUEUE,
};
use super::server::Node;
use super::types::EventKind;

/// Configures and binds a [`Node`]; made by [`Node::builder`].
pub struct NodeBuilder {
    service: String,
    node_id: Option<String>,
    listen: Option<Listen>,
    routes: Vec<(i32, Handler)>,
    events: Vec<(EventKind, EventHandler)>,
    workers: usize,
    worker_queue: usize,
    max_frame_bytes: usize,
    idle_timeout: Option<Duration>,
    max_write_backlog: usize,
    call_timeout: Duration,
}

enum Listen {
    Addr(SocketAddr),
    Listener(TcpListener),
}

impl Node {
    /// Starts configuring a node serving `service` (announced in `NodeHello`).
    pub fn builder(service: impl Into<String>) -> NodeBuilder {
        NodeBuilder::new(service.into())
    }
}

impl NodeBuilder {
    fn new(service: String) -> Self {
        NodeBuilder {
            service,
            node_id: None,
            listen: None,
            routes: Vec::new(),
            events: Vec::new(),
            workers: 0,
            worker_queue: DEFAULT_WORKER_QUEUE,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            max_write_backlog: DEFAULT_MAX_WRITE_BACKLOG,
            call_timeout: DEFAULT_CALL_TIMEOUT,
        }
    }

    /// Address to listen on; port 0 picks a free port (see
    /// [`Node::local_addr`]). Required unless [`NodeBuilder::listener`] is used.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(Listen::Addr(addr));
        self
    }

    /// Serves on an already bound listener instead of [`NodeBuilder::listen`].
    pub fn listener(mut self, listener: TcpListener) -> Self {
        self.listen = Some(Listen::Listener(listener));
        self
    }

    /// Serves client `route` with `handler`; the route is announced to gates
    /// in `NodeHello`. Registering a route twice makes [`NodeBuilder::bind`]
    /// fail with [`NodeError::DuplicateRoute`].
    pub fn route<F>(mut self, route: i32, handler: F) -> Self
    where
        F: Fn(&mut Context<'_>) + Send + Sync + 'static,
    {
        self.routes.push((route, Box::new(handler)));
        self
    }

    /// Subscribes to session events of `kinds` (sent in `NodeHello.events`)
    /// and handles them with `handler`. Call it once per handler; a kind
    /// given twice makes [`NodeBuilder::bind`] fail with
    /// [`NodeError::DuplicateEvent`].
    ///
    /// Events of a session run on the thread that runs its requests (the
    /// link reader with `workers(0)`, worker `hash(session)` otherwise), in
    /// the order the gate sent them relative to its requests.
    ///
    /// ```no_run
    /// use ringgate::node::{EventContext, EventKind, Node};
    /// let builder = Node::builder("chat").on_event(
    ///     &[EventKind::Connect, EventKind::Disconnect],
    ///     |ev: &mut EventContext| tracing::info!(kind = %ev.kind(), session = %ev.session(), "event"),
    /// );
    /// ```
    pub fn on_event<F>(mut self, kinds: &[EventKind], handler: F) -> Self
    where
        F: Fn(&mut EventContext<'_>) + Send + Sync + 'static,
    {
        let handler: EventHandler = Arc::new(handler);
        for kind in kinds {
            self.events.push((*kind, handler.clone()));
        }
        self
    }

    /// How long a blocking call ([`GateClient::bind`],
    /// [`SessionContext::bind`](super::SessionContext::bind), ...)
    /// waits for the gate's result before failing with
    /// [`NodeError::Timeout`]. Default [`DEFAULT_CALL_TIMEOUT`].
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Handler threads. 0 (the default) runs handlers inline on each link's
    /// reader thread; `n > 0` runs them on a pool of `n` threads (see the
    /// module docs for when to choose which).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Requests queued per worker before a link reader waits for room.
    /// Default [`DEFAULT_WORKER_QUEUE`]; only used with `workers(n > 0)`.
    pub fn worker_queue(mut self, capacity: usize) -> Self {
        self.worker_queue = capacity.max(1);
        self
    }

    /// The node instance id sent in `NodeHello`. Default:
    /// `"{service}-{pid}-{start time in hex}"`.
    pub fn node_id(mut self, id: impl Into<String>) -> Self {
        self.node_id = Some(id.into());
        self
    }

    /// Largest frame accepted from a gate; a larger one closes that link
    /// with a logged warning. Also the size at which outgoing batches are
    /// split into several frames. Default [`DEFAULT_MAX_FRAME_BYTES`].
    pub fn max_frame_bytes(mut self, bytes: usize) -> Self {
        self.max_frame_bytes = bytes;
        self
    }

    /// Closes a link that received nothing, or could not write, for this
    /// long; `None` never closes. Must exceed the gate's
    /// `link.heartbeat_interval`. Default [`DEFAULT_IDLE_TIMEOUT`].
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout.filter(|t| !t.is_zero());
        self
    }

    /// Bytes a link may have waiting to be written before replies and pushes
    /// to it wait for the socket. Default [`DEFAULT_MAX_WRITE_BACKLOG`].
    pub fn max_write_backlog(mut self, bytes: usize) -> Self {
        self.max_write_backlog = bytes.max(1);
        self
    }

    /// Checks the routes and event kinds, and binds the listener.
    pub fn bind(self) -> Result<Node, NodeError> {
        let service = self.service;
        let node_id = self.node_id.unwrap_or_else(|| default_node_id(&service));
        let mut options = Options {
            service,
            node_id,
            routes: self.routes,
            events: self.events,
            workers: self.workers,
            worker_queue: self.worker_queue,
            max_frame_bytes: self.max_frame_bytes,
            idle_timeout: self.idle_timeout,
            max_write_backlog: self.max_write_backlog,
        };
        options.validate()?;
        let listener = match self.listen {
            None => return Err(NodeError::NoListenAddress),
            Some(Listen::Listener(l)) => l,
            Some(Listen::Addr(addr)) => {
                TcpListener::bind(addr).map_err(|source| NodeError::Bind { addr, source })?
            }
        };
        Node::new(options, GateClient::new(self.call_timeout), listener)
    }
}
