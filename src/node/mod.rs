//! The node SDK: what a backend author links to serve client routes behind a
//! ringgate gate, to push packets back to clients and to call the gate
//! (bind users, kick, settings, channels, ...).
//!
//! ```no_run
//! use ringgate::node::{Context, Node};
//!
//! let node = Node::builder("echo")
//!     .listen("127.0.0.1:3600".parse()?)
//!     .route(1, |ctx: &mut Context| {
//!         // An answered route: the gate waits for this reply.
//!         let p = ctx.payload().clone();
//!         ctx.reply(p);
//!     })
//!     .notify(2, |ctx: &mut Context| {
//!         // A notification: the gate waits for nothing.
//!         tracing::debug!(session = %ctx.session(), "client says it is still here");
//!     })
//!     .bind()?;
//! println!("listening on {}", node.local_addr());
//! node.run()?; // or `let handle = node.spawn();` and later `handle.shutdown()`
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What it owns
//!
//! The node's listening socket, one TCP connection ("link") per gate shard
//! that dialed it, and the threads below. It speaks the gate↔node protocol of
//! [`crate::link`] (`proto/ringgate.proto`) and uses its framing
//! ([`BatchBuf`](crate::link::BatchBuf), [`decode_frame`](crate::link::decode_frame));
//! it never touches io_uring and imposes no async runtime: plain std threads
//! and blocking sockets.
//!
//! # Threads
//!
//! ```text
//!  accept thread ──accept──▶ one reader thread per link ("ringgate-node-link")
//!                              │ recv 64 KiB chunks, decode every frame
//!                              │ answer Ping with Pong, resolve CallResults
//!                              ├─ workers(0): run the handler right here, replies
//!                              │   go into one BatchBuf, one write per chunk
//!                              └─ workers(n): send each Deliver / Event to worker
//!                                  hash(session) % n over a bounded channel
//!                                        ▼
//!                              worker threads ("ringgate-node-worker-i")
//!                                block for one job, drain up to 256 more, one
//!                                write per link per drain
//! ```
//!
//! Every link has a writer shared by all threads (its reader, workers,
//! [`GateClient`] users). A thread that finds the writer idle writes itself;
//! one that finds a write in flight appends to the pending batch and returns,
//! and the writing thread sends everything that piled up with one `writev`.
//! So under load there is one write syscall per batch, never one per message,
//! and without load there is no hand-off to another thread. A writer holding
//! more than [`NodeBuilder::max_write_backlog`] bytes makes producers wait
//! (backpressure, never unbounded memory).
//!
//! # `workers(0)` or `workers(n)`?
//!
//! * `workers(0)` (the default) runs handlers inline on the link's reader
//!   thread: no channel hop, the lowest latency and the best throughput for
//!   handlers that only compute (echo, routing, in-memory state) and use the
//!   `_nowait` operations. A slow or blocking handler stalls every session on
//!   that link (one gate shard). Requests of one link run in arrival order.
//! * `workers(n)` hands requests to a pool of `n` threads. Use it when
//!   handlers block (database, disk, another service, **blocking gate calls**
//!   such as `bind`) or are CPU-heavy and the node has more cores than the
//!   gate has shards. Requests of one session always go to the same worker,
//!   so they still run in order; those of different sessions run in parallel.
//!
//! # Routes: answered or notifications
//!
//! [`NodeBuilder::route`] serves a route the node **answers**: announced in
//! `NodeHello.reply_routes`, so the gate gives each request an id, waits for
//! one reply carrying it, and answers the client itself with the `TIMEOUT`
//! extension code when none comes within the route's timeout
//! ([`NodeBuilder::reply_timeout`], else the gate's default). The first
//! [`Context::reply`] / [`SessionContext::reply_with`] of a request is that
//! reply; later ones are plain pushes, as is everything sent another way. A
//! handler of an answered route must therefore reply (the SDK logs at debug
//! level when one returns without replying). [`NodeBuilder::notify`] serves
//! a route whose requests get no reply (`NodeHello.routes`): the gate waits
//! for nothing.
//!
//! # MQTT clients (mqant's gate)
//!
//! The gate also serves MQTT clients the way mqant's gate does: a PUBLISH
//! to `<service>[@<node_id>]/<name>[/<msgid>]` is a request (with a msgid)
//! or a notification (without) for the route this node named `<name>`
//! ([`NodeBuilder::name`], or [`NodeBuilder::handler`] for a handler known
//! by name only, whose route the SDK picks from [`NAMED_ROUTE_BASE`]). The
//! service name is the module name and is case-sensitive (`"Echo"`). The
//! handler sees the topic ([`Context::topic`]); its first reply is wrapped
//! by the gate as `{"Trace":..,"Error":..,"Result":..}` and published on
//! that topic: [`Context::reply_json`], [`reply_bytes`](Context::reply_bytes)
//! (base64), [`reply_string`](Context::reply_string) say what `Result` is,
//! [`reply_raw`](Context::reply_raw) skips the wrapper,
//! [`reply_error`](Context::reply_error) fills `Error`, and plain
//! [`Context::reply`] lets the gate guess (JSON if it parses, else base64).
//! Pushes reach MQTT sessions as PUBLISH on a topic: the one given to
//! [`SessionContext::push_topic`] or a `GateClient::*_topic` call, else
//! the name of the packet's route, else the route number in decimal. An
//! MQTT client's `Connect` event has its CONNECT's
//! [`client_id`](EventContext::client_id),
//! [`username`](EventContext::username) and
//! [`password`](EventContext::password).
//!
//! # Events
//!
//! [`NodeBuilder::on_event`] subscribes to session events (connect, bind,
//! unbind, disconnect). The gate sends them on the link of the shard that
//! owns the session, and the SDK runs them exactly where that session's
//! requests run (inline, or worker `hash(session)`), so a handler sees a
//! session's requests and events in the order the gate sent them.
//!
//! The gate numbers each shard's events per kind ([`EventContext::seq`]).
//! Each link reader checks the numbers in link order, per (gate, shard,
//! kind) and across that shard's successive links: a gap (events dropped
//! by a full link queue, or lost while a link was down) or a gate that
//! restarted is logged as a warning and counted ([`GateClient::event_gaps`]),
//! and a node with a snapshot handler asks that link for a snapshot.
//!
//! # Snapshots
//!
//! [`NodeBuilder::on_snapshot`] handles [`SnapshotPage`]s: the live sessions
//! of a gate shard ([`SessionInfo`]), taken at one instant. With a handler,
//! every link asks for one in its hello, before any event; the node asks
//! again after a gap in the event numbers; [`GateClient::snapshot`] asks for
//! one of a given shard. Pages run on the link's reader thread even with
//! `workers(n)`, because a page must be handled before the events that
//! follow it on the link (they happened after it was taken); a snapshot
//! resets the event numbers the node expects.
//!
//! # Calls to the gate
//!
//! [`GateClient`] (from [`Node::gates`], or [`SessionContext::gate`] in a
//! handler) has every operation of the protocol's `Call`: push (to a
//! session or a user), multicast, broadcast, kick, bind, unbind, settings,
//! get_ip, is_online, stat, subscribe, unsubscribe, publish, snapshot (and
//! `*_topic` twins of the packet-carrying ones for MQTT sessions). The naming
//! rule: **`op(..)` waits for the gate's result; `op_nowait(..)` sends call
//! id 0 and returns at once.** Only [`Context::reply`] and
//! [`SessionContext::reply_with`] (and the other `reply_*`) are neither:
//! they answer the request and are always batched. [`Context`] and [`EventContext`] are both a
//! [`SessionContext`] (working on a request or an event), which has
//! shortcuts for that session (`push_topic`, `bind`, `unbind`,
//! `set_settings`, `kick`, `subscribe`, `unsubscribe`, each with its
//! `_nowait`), written once.
//!
//! A blocking call registers a call id (process-wide counter) in a pending
//! table and waits at most [`NodeBuilder::call_timeout`] (default 3 s) for the
//! `CallResult`, which any link of that gate may carry: every link reader
//! resolves results as soon as it decodes them. When a gate's last link goes
//! down, calls waiting on it fail at once with [`NodeError::NotConnected`].
//!
//! **Blocking on a link reader thread.** A handler running inline
//! (`workers(0)`) that makes a blocking call would wait for a result that its
//! own thread must read. The SDK does not deadlock there: while the call
//! waits, the reader keeps reading its link — results are resolved, pings
//! answered, and requests and events are queued and run, in order, after
//! the handler returns (and another reader's resolving the result wakes it
//! through an eventfd). It still stalls every other session of that link for
//! the call's round trip, which is why handlers that make blocking calls
//! belong on `workers(n)`. The same reading continues while a reader waits
//! for room in a full worker queue (up to 4096 queued messages), so workers
//! blocked on calls still get their results.
//!
//! # Several gates
//!
//! Links are keyed by (gate id, shard). A handler's replies, pushes and calls
//! always go to the gate the request came from. [`Node::gates`] from outside
//! a handler knows only session ids and uids: with one gate connected it uses
//! that gate; with several it fails with [`NodeError::AmbiguousGate`] and
//! [`GateClient::gate`] must name the gate.
//!
//! # Layers
//!
//! Each file uses only files on rows below its own; files sharing a row do
//! not use each other. This file only declares the modules and re-exports
//! the public items; the files below import from the defining file, never
//! through these re-exports.
//!
//! ```text
//!  builder ........................ NodeBuilder, Node::builder
//!  server ......................... Node, NodeHandle: accept loop, link threads, shutdown
//!  reader ......................... a link's thread: handshake, read loop, run or dispatch
//!  worker ......................... the handler pool of workers(n)
//!  options ........................ DEFAULT_*, Options: identity, handlers, limits
//!  context │ event │ snapshot ..... Context │ EventContext │ SnapshotPage: what handlers see
//!  session_context │ gate_ops ..... SessionContext: the session's calls │ GateClient's ops
//!  gate_client │ inbox ............ GateClient: live links, link choice │ a link's read side
//!  link_handle │ pending │ sequences  Link and its writer │ calls awaiting their result │ event numbers
//!  messages ....................... the ToGate messages, built from SDK types
//!  error .......................... NodeError
//!  types .......................... Target, EventKind, CloseReason, Stat
//! ```
//!
//! The SDK's one thread-local lives in `pending.rs` and is private to it: a
//! link reader registers there how to keep reading its link, so that a
//! blocking call made on that thread, through any [`GateClient`], reads
//! instead of blocking (see "Blocking on a link reader thread").

mod builder;
mod context;
mod error;
mod event;
mod gate_client;
mod gate_ops;
mod inbox;
mod link_handle;
mod located;
mod messages;
mod node_binding;
mod options;
mod pending;
mod reader;
mod registered;
mod sequences;
mod server;
mod session_context;
mod snapshot;
mod stream;
mod types;
mod worker;

pub use crate::link::proto::NodeState;
pub use builder::NodeBuilder;
pub use context::{Context, Request};
pub use error::NodeError;
pub use event::{EventContext, SessionEvent};
pub use gate_client::{GateClient, DEFAULT_CALL_TIMEOUT};
pub use options::{
    DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_FRAME_BYTES, DEFAULT_MAX_WRITE_BACKLOG, DEFAULT_WORKER_QUEUE,
    HANDSHAKE_TIMEOUT, NAMED_ROUTE_BASE,
};
pub use registered::DEFAULT_DRAIN_GRACE;
pub use server::{Node, NodeHandle};
pub use session_context::SessionContext;
pub use snapshot::{SessionInfo, SnapshotPage};
pub use types::{CloseReason, EventKind, ShardStat, Stat, Target};
