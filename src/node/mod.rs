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
//!         let p = ctx.payload().clone();
//!         ctx.reply(p);
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
//! # Events
//!
//! [`NodeBuilder::on_event`] subscribes to session events (connect, bind,
//! unbind, disconnect). The gate sends them on the link of the shard that
//! owns the session, and the SDK runs them exactly where that session's
//! requests run (inline, or worker `hash(session)`), so a handler sees a
//! session's requests and events in the order the gate sent them.
//!
//! # Calls to the gate
//!
//! [`GateClient`] (from [`Node::gates`], [`Context::gate`] or
//! [`EventContext::gate`]) has every operation of the protocol's `Call`:
//! push (to a session or a user), multicast, broadcast, kick, bind, unbind,
//! settings, get_ip, is_online, stat, subscribe, unsubscribe, publish. The
//! naming rule: **`op(..)` waits for the gate's result; `op_nowait(..)`
//! sends call id 0 and returns at once.** Only [`Context::reply`] and
//! [`Context::reply_with`] are neither: they answer the request and are
//! always batched. [`Context`] and [`EventContext`] also have shortcuts for
//! their own session (`bind`, `unbind`, `set_settings`, `kick`, `subscribe`,
//! `unsubscribe`, each with its `_nowait`).
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

mod builder;
mod calls;
mod context;
mod event;
mod gate;
mod inbox;
mod link;
mod ops;
mod types;
mod worker;
mod writer;

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use tracing::{debug, warn};

pub use builder::{
    NodeBuilder, DEFAULT_CALL_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_FRAME_BYTES,
    DEFAULT_MAX_WRITE_BACKLOG, DEFAULT_WORKER_QUEUE, HANDSHAKE_TIMEOUT,
};
pub use context::Context;
pub use event::EventContext;
pub use gate::GateClient;
pub use types::{CloseReason, EventKind, ShardStat, Stat, Target};

use crate::link::LinkError;
use builder::Settings;
use worker::Pool;

/// Errors of the node SDK.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// [`NodeBuilder::bind`] was called without [`NodeBuilder::listen`] or
    /// [`NodeBuilder::listener`].
    #[error("node has no listen address: call .listen(addr) or .listener(l)")]
    NoListenAddress,
    /// Two handlers were registered for the same route.
    #[error("route {0} registered twice")]
    DuplicateRoute(i32),
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
    /// No link is up to the gate (never connected, all its links closed,
    /// or the gate named in [`GateClient::gate`] is unknown), or the link a
    /// call went out on closed and no other link of its gate is left.
    #[error("no link to the gate (shard {shard})")]
    NotConnected {
        /// The shard the operation preferred (a session's own), else 0.
        shard: u16,
    },
    /// An operation through [`Node::gates`] while links from several gates
    /// are up: a session id or uid does not say which gate holds it. Use
    /// [`GateClient::gate`], or the handler's [`Context::gate`].
    #[error("{gates} gates connected: use gates().gate(gate_id) to name one")]
    AmbiguousGate {
        /// How many gates have links up.
        gates: usize,
    },
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
    /// No result within [`NodeBuilder::call_timeout`]. The call may still
    /// take effect on the gate.
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
    /// [`NodeBuilder::idle_timeout`].
    #[error("link idle for longer than {0:?}")]
    IdleTimeout(Duration),
    /// Any other socket or thread error.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Entry point of the SDK: see [`Node::builder`].
///
/// A bound, not yet running node. [`Node::run`] serves on the calling thread;
/// [`Node::spawn`] serves in the background and returns a [`NodeHandle`].
pub struct Node {
    shared: Arc<Shared>,
    listener: TcpListener,
    local_addr: SocketAddr,
}

/// State shared by the accept thread, link readers and workers.
pub(crate) struct Shared {
    pub(crate) settings: Settings,
    pub(crate) gates: GateClient,
    stop: AtomicBool,
    next_link: AtomicU64,
    live: Mutex<Live>,
    /// The worker pool's channels; taken (and so closed) by shutdown.
    pool: Mutex<Option<Arc<Pool>>>,
}

/// Threads and sockets of live links, so shutdown can close and join them.
#[derive(Default)]
struct Live {
    sockets: Vec<(u64, TcpStream)>,
    threads: Vec<JoinHandle<()>>,
}

impl Node {
    /// Starts configuring a node serving `service` (announced in `NodeHello`).
    pub fn builder(service: impl Into<String>) -> NodeBuilder {
        NodeBuilder::new(service.into())
    }

    /// The address actually bound (useful after listening on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A client for the gates' operations from outside handlers; works
    /// before and after [`Node::spawn`] / [`Node::run`].
    pub fn gates(&self) -> GateClient {
        self.shared.gates.clone()
    }

    /// Serves on the calling thread (plus link and worker threads) until the
    /// listener fails. Never returns `Ok` under normal operation.
    pub fn run(self) -> Result<(), NodeError> {
        let workers = worker::start(&self.shared)?;
        let r = accept_loop(&self.shared, &self.listener);
        self.shared.stop.store(true, Ordering::SeqCst);
        close_links(&self.shared);
        join_all(&self.shared, workers);
        r
    }

    /// Serves in background threads; the handle stops them.
    #[must_use = "dropping the NodeHandle shuts the node down"]
    pub fn spawn(self) -> NodeHandle {
        let Node {
            shared,
            listener,
            local_addr,
        } = self;
        let waker = listener.try_clone().ok();
        let workers = match worker::start(&shared) {
            Ok(w) => w,
            Err(e) => {
                warn!(error = %e, "node: cannot start worker threads");
                Vec::new()
            }
        };
        let sh = shared.clone();
        let accept = thread::Builder::new()
            .name("ringgate-node-accept".into())
            .spawn(move || {
                if let Err(e) = accept_loop(&sh, &listener) {
                    warn!(error = %e, "node: accept loop ended");
                }
            })
            .map_err(|e| warn!(error = %e, "node: cannot spawn the accept thread"))
            .ok();
        NodeHandle {
            shared,
            local_addr,
            waker,
            accept,
            workers,
        }
    }
}

/// A running node (see [`Node::spawn`]). Dropping it shuts the node down.
pub struct NodeHandle {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    waker: Option<TcpListener>,
    accept: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
}

impl NodeHandle {
    /// The address the node listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A client for the gates' operations, from any thread.
    pub fn gates(&self) -> GateClient {
        self.shared.gates.clone()
    }

    /// Stops accepting, closes every link, and joins all threads. Handlers
    /// already running finish first; queued requests are still handled, their
    /// replies dropped.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if self.shared.stop.swap(true, Ordering::SeqCst) {
            return;
        }
        // A blocked accept() returns EINVAL once the listening socket is shut
        // down (Linux); connecting to it is the fallback wake-up.
        if let Some(l) = self.waker.take() {
            if socket2::SockRef::from(&l).shutdown(Shutdown::Both).is_err() {
                let mut addr = self.local_addr;
                if addr.ip().is_unspecified() {
                    addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
            }
        }
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        close_links(&self.shared);
        join_all(&self.shared, std::mem::take(&mut self.workers));
    }
}

impl Drop for NodeHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Accepts gate links until `stop` is set or the listener fails for good.
fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener) -> Result<(), NodeError> {
    loop {
        let accepted = listener.accept();
        if shared.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => match e.kind() {
                io::ErrorKind::Interrupted
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::ConnectionReset => continue,
                _ if is_transient(&e) => {
                    // Out of descriptors or memory: back off, keep serving.
                    warn!(error = %e, "node: accept failed, retrying");
                    thread::sleep(Duration::from_millis(50));
                    continue;
                }
                _ => return Err(e.into()),
            },
        };
        spawn_link(shared, stream, peer);
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EAGAIN)
    )
}

/// Starts the reader thread of a freshly accepted link.
fn spawn_link(shared: &Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    let id = shared.next_link.fetch_add(1, Ordering::Relaxed);
    let closer = match stream.try_clone() {
        Ok(s) => s,
        Err(e) => {
            warn!(%peer, error = %e, "node: cannot clone link socket");
            return;
        }
    };
    let pool = shared.pool.lock().unwrap().clone();
    let sh = shared.clone();
    let mut live = shared.live.lock().unwrap();
    // Forget threads of links that already ended.
    live.threads.retain(|t| !t.is_finished());
    let spawned = thread::Builder::new()
        .name("ringgate-node-link".into())
        .spawn(move || {
            link::serve(&sh, stream, peer, id, pool);
            sh.live.lock().unwrap().sockets.retain(|(i, _)| *i != id);
        });
    match spawned {
        Ok(t) => {
            live.sockets.push((id, closer));
            live.threads.push(t);
        }
        Err(e) => warn!(%peer, error = %e, "node: cannot spawn link thread"),
    }
}

/// Shuts every live link's socket so its reader (and any blocked writer) wakes.
fn close_links(shared: &Shared) {
    let live = shared.live.lock().unwrap();
    for (_, s) in &live.sockets {
        let _ = s.shutdown(Shutdown::Both);
    }
}

/// Joins link readers, then closes the pool channels and joins the workers.
fn join_all(shared: &Shared, workers: Vec<JoinHandle<()>>) {
    let threads = std::mem::take(&mut shared.live.lock().unwrap().threads);
    for t in threads {
        let _ = t.join();
    }
    drop(shared.pool.lock().unwrap().take());
    for w in workers {
        let _ = w.join();
    }
    debug!("node: all threads joined");
}
