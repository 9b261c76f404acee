//! [`NodeBuilder`]: what a node serves and how, with every default stated,
//! and [`Node::builder`], the SDK's entry point.
//!
//! The builder is the top of the SDK: it checks what it was given, freezes
//! it into `Options` and hands them to `Node::new` with a bound
//! listener. It must not start threads or read links; that is the server's
//! job once the node runs. `Node::builder` is defined here, not beside
//! `Node`, so that the server never has to import the builder.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::context::{Context, Handler};
use super::error::NodeError;
use super::event::{EventContext, EventHandler};
use super::gate_client::{GateClient, DEFAULT_CALL_TIMEOUT};
use super::options::{
    default_node_id, Options, Route, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_FRAME_BYTES,
    DEFAULT_MAX_WRITE_BACKLOG, DEFAULT_WORKER_QUEUE,
};
use super::registered::RegistrySetup;
use super::server::{Node, UnixSocket};
use super::snapshot::{SnapshotHandler, SnapshotPage};
use super::types::EventKind;
use crate::fleet::locator::Locator;
use crate::fleet::registry::Registry;
use crate::link::proto::RouteFlags;

/// Configures and binds a [`Node`]; made by [`Node::builder`].
pub struct NodeBuilder {
    service: String,
    node_id: Option<String>,
    listen: Option<Listen>,
    unix: Option<PathBuf>,
    routes: Vec<Route>,
    /// `reply_timeout` calls, applied to the answered routes at `bind`.
    reply_timeouts: Vec<(i32, Duration)>,
    /// `name` calls (route, name), applied at `bind`.
    names: Vec<(i32, String)>,
    push_topics: Vec<(i32, String)>,
    /// `handler` calls: answered handlers known by name only, given a
    /// route at `bind`.
    named: Vec<(String, Handler)>,
    events: Vec<(EventKind, EventHandler)>,
    snapshot: Option<SnapshotHandler>,
    workers: usize,
    worker_queue: usize,
    max_frame_bytes: usize,
    idle_timeout: Option<Duration>,
    max_write_backlog: usize,
    call_timeout: Duration,
    weight: u32,
    flags: Vec<RouteFlags>,
    registry: Option<RegistrySetup>,
    locator: Option<Arc<dyn Locator>>,
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
            unix: None,
            routes: Vec::new(),
            reply_timeouts: Vec::new(),
            names: Vec::new(),
            push_topics: Vec::new(),
            named: Vec::new(),
            events: Vec::new(),
            snapshot: None,
            workers: 0,
            worker_queue: DEFAULT_WORKER_QUEUE,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            max_write_backlog: DEFAULT_MAX_WRITE_BACKLOG,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            weight: 1,
            flags: Vec::new(),
            registry: None,
            locator: None,
        }
    }

    /// Address to listen on; port 0 picks a free port (see
    /// [`Node::local_addr`]). Required unless [`NodeBuilder::listener`] is used.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(Listen::Addr(addr));
        self
    }

    /// Also serves on a Unix socket at `path`, for a gate on the same host
    /// (its `[[nodes]] unix = "…"`): the link skips the TCP stack, which
    /// costs both sides less CPU per message. A stale socket file left at
    /// `path` by an earlier run (its connect refused) is replaced; a socket
    /// something listens on, one the node may not probe, or any other file
    /// fails [`NodeBuilder::build`]. The file is removed when the node stops,
    /// unless a newer node has bound the path since. The TCP address stays
    /// the node's name and its way in for other hosts and the registry.
    pub fn listen_unix(mut self, path: impl Into<PathBuf>) -> Self {
        self.unix = Some(path.into());
        self
    }

    /// Serves on an already bound listener instead of [`NodeBuilder::listen`].
    pub fn listener(mut self, listener: TcpListener) -> Self {
        self.listen = Some(Listen::Listener(listener));
        self
    }

    /// Serves client `route` with `handler` and answers it: the route is
    /// announced in `NodeHello.reply_routes`, so the gate gives each
    /// request an id and waits for one reply carrying it. The first
    /// [`Context::reply`] (or [`reply_with`](super::SessionContext::reply_with))
    /// of the request is that reply; later ones are plain pushes.
    ///
    /// **A handler must reply.** If it returns without replying, the SDK
    /// only logs it at debug level (a panic is logged as an error); the gate
    /// answers the client with the `TIMEOUT` extension code once the route's
    /// timeout
    /// ([`NodeBuilder::reply_timeout`], by default the gate's
    /// `link.request_timeout`) has passed, and drops a reply that comes
    /// later. For a route whose requests get no reply, use
    /// [`NodeBuilder::notify`].
    ///
    /// Registering a route twice (with `route` or `notify`) makes
    /// [`NodeBuilder::bind`] fail with [`NodeError::DuplicateRoute`].
    pub fn route<F>(self, route: i32, handler: F) -> Self
    where
        F: Fn(&mut Context<'_>) + Send + Sync + 'static,
    {
        self.serve(route, handler, Some(Duration::ZERO))
    }

    /// Serves client `route` with `handler` without answering it (a
    /// notification): the route is announced in `NodeHello.routes`, the gate
    /// waits for nothing and sends no error when no reply comes. The handler
    /// may still send packets to the session ([`Context::reply`] is then a
    /// plain push). Duplicates: as [`NodeBuilder::route`].
    pub fn notify<F>(self, route: i32, handler: F) -> Self
    where
        F: Fn(&mut Context<'_>) + Send + Sync + 'static,
    {
        self.serve(route, handler, None)
    }

    fn serve<F>(mut self, route: i32, handler: F, reply: Option<Duration>) -> Self
    where
        F: Fn(&mut Context<'_>) + Send + Sync + 'static,
    {
        self.routes.push(Route {
            route,
            handler: Box::new(handler),
            reply,
            name: None,
        });
        self
    }

    /// Names `route` (registered with [`NodeBuilder::route`] or
    /// [`NodeBuilder::notify`], before or after this call) for MQTT
    /// clients: the name is announced in `NodeHello.route_names`, and a
    /// client's PUBLISH to `<service>[@<node_id>]/<name>[/<msgid>]` is a
    /// request for that route ([`Context::topic`] is that topic). The name
    /// is also the topic on which MQTT sessions get pushes that give only
    /// this route (no topic of their own). mqant's convention is an `HD_`
    /// prefix (`HD_Login`); names are case-sensitive.
    ///
    /// [`NodeBuilder::bind`] fails with [`NodeError::UnknownNamedRoute`]
    /// for a route not registered, [`NodeError::RouteNamedTwice`] when a
    /// route is named twice (a route has at most one name),
    /// [`NodeError::DuplicateName`] when two routes get one name, and
    /// [`NodeError::BadName`] for a name that cannot be a topic level.
    pub fn name(mut self, route: i32, name: impl Into<String>) -> Self {
        self.names.push((route, name.into()));
        self
    }

    /// The MQTT topic of pushes on `route`, a route this node pushes on but
    /// does not serve (`Chat/OnChat` for the chat room's messages): due
    /// clients get the packet on `route`, MQTT clients a PUBLISH on `topic`
    /// (announced in `NodeHello.route_names`). [`NodeBuilder::bind`] fails
    /// with [`NodeError::BadName`] for a topic with a wildcard, with
    /// [`NodeError::RouteNamedTwice`] for a route that has a name already.
    pub fn push_topic(mut self, route: i32, topic: impl Into<String>) -> Self {
        self.push_topics.push((route, topic.into()));
        self
    }

    /// Serves the answered handler `name` for MQTT clients, without
    /// choosing a route number: at [`NodeBuilder::bind`] it gets the lowest
    /// route from [`NAMED_ROUTE_BASE`](crate::node::NAMED_ROUTE_BASE) (`2^30`) up
    /// that no other handler uses, in registration order, and is announced
    /// like [`NodeBuilder::route`] named with [`NodeBuilder::name`]
    /// ([`Context::route`] tells the number). The gate's default reply
    /// timeout applies. Name errors: as [`NodeBuilder::name`].
    ///
    /// ```no_run
    /// use ringgate::node::{Context, Node};
    /// let builder = Node::builder("Echo").handler("HD_Echo", |ctx: &mut Context| {
    ///     let p = ctx.take_payload();
    ///     ctx.reply_json(p); // Result: the JSON the client sent
    /// });
    /// ```
    pub fn handler<F>(mut self, name: impl Into<String>, handler: F) -> Self
    where
        F: Fn(&mut Context<'_>) + Send + Sync + 'static,
    {
        self.named.push((name.into(), Box::new(handler)));
        self
    }

    /// How long the gate waits for the reply of answered `route` before it
    /// answers the client with the `TIMEOUT` extension code (sent as
    /// `RouteSpec.timeout_ms`, rounded up to whole milliseconds).
    /// `Duration::ZERO`, like not calling this, leaves it to the gate's
    /// `link.request_timeout` (`GateHello.request_timeout_ms`). The last
    /// call for a route wins. [`NodeBuilder::bind`] fails with
    /// [`NodeError::UnknownReplyRoute`] if `route` was not registered with
    /// [`NodeBuilder::route`] (before or after this call).
    pub fn reply_timeout(mut self, route: i32, timeout: Duration) -> Self {
        self.reply_timeouts.push((route, timeout));
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

    /// Handles snapshots of gate shards' live sessions, page by page, and
    /// asks every gate link for one right after the handshake
    /// (`NodeHello.snapshot`), before any event on it: a node that starts,
    /// or whose link comes back, learns who is connected. The node also
    /// asks a link for one when it sees that events were lost there (a gap
    /// in [`EventContext::seq`](super::EventContext::seq), counted by
    /// [`GateClient::event_gaps`]), and [`GateClient::snapshot`] asks for
    /// one explicitly. A snapshot resets the event numbers the node expects
    /// to those it carries. Calling this again replaces the handler.
    ///
    /// Pages run on the link's reader thread, in link order, also with
    /// `workers(n)`: a page must be handled before the events that follow
    /// it on the link (they happened after the snapshot was taken), and the
    /// reader hands those events on only after the page handler returns.
    /// With `workers(n)`, events that came *before* the snapshot may still
    /// be running on the workers while a page is handled. A slow page
    /// handler stalls its link like an inline request handler does.
    ///
    /// ```no_run
    /// use ringgate::node::{Node, SnapshotPage};
    /// let builder = Node::builder("presence").on_snapshot(|page: &mut SnapshotPage| {
    ///     for s in page.sessions() {
    ///         tracing::info!(gate = page.gate_id(), session = %s.session, uid = s.uid.0, "online");
    ///     }
    /// });
    /// ```
    pub fn on_snapshot<F>(mut self, handler: F) -> Self
    where
        F: Fn(&mut SnapshotPage) + Send + Sync + 'static,
    {
        self.snapshot = Some(Box::new(handler));
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
    /// long; `None` never closes a silent link. Must exceed the gate's
    /// `link.heartbeat_interval`. Default [`DEFAULT_IDLE_TIMEOUT`]. A write
    /// the gate does not take for [`DEFAULT_IDLE_TIMEOUT`] closes the link
    /// even with `None`: a thread writing to a gate that stopped reading is
    /// never held for good.
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

    /// This node's share of stateless requests when the gate dispatches by
    /// weight (`cluster.dispatch = "wrr"`), relative to the other nodes
    /// serving the same route: a node of weight 3 gets three requests for
    /// each one of a node of weight 1. Default 1 (0 counts as 1).
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Registers the node in `registry` when it starts serving (kind
    /// `node`, its service, routes with their flags, names, events, weight
    /// and `advertise` — the address gates dial; `None`: the listener's),
    /// keeps the record alive, publishes state changes
    /// ([`NodeHandle::set_state`]) and leaves on [`NodeHandle::drain`].
    /// Gates that watch the registry dial it and drop it when it leaves.
    pub fn registry(mut self, registry: Arc<dyn Registry>, advertise: Option<SocketAddr>) -> Self {
        self.registry = Some(RegistrySetup {
            registry,
            advertise,
        });
        self
    }

    /// Finds users' gates with `locator`, so that calls about a user
    /// reach the gate that holds it when several gates are connected
    /// (see [`GateClient`]'s fleet notes).
    pub fn locator(mut self, locator: Arc<dyn Locator>) -> Self {
        self.locator = Some(locator);
        self
    }

    /// Marks `route` as needing a bound user: the gate answers a session
    /// without one `UNAUTHORIZED` (ext 7) and does not forward it.
    pub fn authorized(mut self, route: i32) -> Self {
        self.flags.push(RouteFlags {
            route,
            authorized: true,
            ..Default::default()
        });
        self
    }

    /// Marks `route` as internal: clients calling it get `FORBIDDEN`
    /// (ext 8); it is for other nodes.
    pub fn internal(mut self, route: i32) -> Self {
        self.flags.push(RouteFlags {
            route,
            internal: true,
            ..Default::default()
        });
        self
    }

    /// Marks `route` as stateful: the gate sends it to the node instance of
    /// this service the user is bound to
    /// ([`SessionContext::bind_node`](super::SessionContext::bind_node)),
    /// whatever that node's state; before a binding the client gets
    /// `NOT_BOUND` (ext 9), without a user `UNAUTHORIZED` (ext 7).
    pub fn stateful(mut self, route: i32) -> Self {
        self.flags.push(RouteFlags {
            route,
            stateful: true,
            ..Default::default()
        });
        self
    }

    /// Checks the routes, reply timeouts, names and event kinds, gives the
    /// handlers registered by name their routes, and binds the listener.
    pub fn bind(self) -> Result<Node, NodeError> {
        let service = self.service;
        let node_id = self.node_id.unwrap_or_else(|| default_node_id(&service));
        let mut options = Options {
            service,
            node_id,
            routes: self.routes,
            events: self.events,
            snapshot: self.snapshot,
            workers: self.workers,
            worker_queue: self.worker_queue,
            max_frame_bytes: self.max_frame_bytes,
            idle_timeout: self.idle_timeout,
            max_write_backlog: self.max_write_backlog,
            push_topics: Vec::new(),
            weight: self.weight.max(1),
            flags: Vec::new(),
        };
        options.validate(&self.reply_timeouts, self.names, self.named)?;
        options.set_flags(self.flags)?;
        options.set_push_topics(self.push_topics)?;
        let listener = match self.listen {
            None => return Err(NodeError::NoListenAddress),
            Some(Listen::Listener(l)) => l,
            Some(Listen::Addr(addr)) => {
                TcpListener::bind(addr).map_err(|source| NodeError::Bind { addr, source })?
            }
        };
        let unix = self.unix.map(bind_unix).transpose()?;
        let gates = GateClient::new(self.call_timeout);
        if let Some(l) = self.locator {
            gates.set_locator(l);
        }
        Node::new(options, gates, listener, unix, self.registry)
    }
}

/// Binds the node's Unix socket, replacing a stale socket file (one whose
/// connect is refused: nobody listens) but never any other kind of file,
/// nor a socket that answers or that cannot be probed (no permission).
fn bind_unix(path: PathBuf) -> Result<UnixSocket, NodeError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let err = |source| NodeError::BindUnix {
        path: path.clone(),
        source,
    };
    if let Ok(meta) = std::fs::symlink_metadata(&path) {
        if !meta.file_type().is_socket() {
            return Err(err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a file that is not a socket is there",
            )));
        }
        match probe_unix(&path) {
            Ok(()) => {
                return Err(err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another process listens there",
                )))
            }
            Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {}
            Err(e) => {
                let why = format!("cannot tell whether another process listens there: {e}");
                return Err(err(io::Error::new(e.kind(), why)));
            }
        }
        std::fs::remove_file(&path).map_err(err)?;
    }
    let listener = std::os::unix::net::UnixListener::bind(&path).map_err(err)?;
    let meta = std::fs::symlink_metadata(&path).map_err(err)?;
    Ok(UnixSocket {
        listener,
        path,
        id: (meta.dev(), meta.ino()),
    })
}

/// Connects to `path` without blocking: `Ok` if something listens (or its
/// backlog is full: EAGAIN), `ECONNREFUSED` if the socket is stale.
fn probe_unix(path: &std::path::Path) -> io::Result<()> {
    let s = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM.cloexec(), None)?;
    s.set_nonblocking(true)?;
    match s.connect(&socket2::SockAddr::unix(path)?) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Ok(()),
        Err(e) => Err(e),
    }
}
