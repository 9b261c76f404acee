//! [`Node`] and [`NodeHandle`]: a bound node serving its listener, the
//! accept loop, one reader thread per link, and shutdown.
//!
//! This module owns the node's threads and the sockets of live links, so it
//! can close and join them. It must not handle link traffic itself: that is
//! the link reader's (`reader.rs`) and the workers' (`worker.rs`).

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use tracing::{debug, warn};

use super::error::NodeError;
use super::gate_client::GateClient;
use super::options::Options;
use super::reader::{self, ReaderEnv};
use super::registered::{register, registry_state, RegistrySetup};
use super::stream::LinkStream;
use super::worker::{self, Pool};
use crate::fleet::registry::Registration;
use crate::link::proto::NodeState;

/// Entry point of the SDK: see [`Node::builder`](Node::builder).
///
/// A bound, not yet running node. [`Node::run`] serves on the calling thread;
/// [`Node::spawn`] serves in the background and returns a [`NodeHandle`].
pub struct Node {
    shared: Arc<Shared>,
    listener: TcpListener,
    local_addr: SocketAddr,
    unix: Option<UnixSocket>,
    registry: Option<RegistrySetup>,
}

/// The node's Unix socket (`NodeBuilder::listen_unix`); its file is
/// removed when the node stops, unless another node has replaced it since.
pub(crate) struct UnixSocket {
    /// The bound listener.
    pub(crate) listener: UnixListener,
    /// Where its file is.
    pub(crate) path: PathBuf,
    /// The file's device and inode when bound.
    pub(crate) id: (u64, u64),
}

impl Drop for UnixSocket {
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt;
        // A node started on the same path while this one was stopping
        // (its listener already shut) found the file stale and bound its
        // own: that file is not ours to remove.
        let ours =
            std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.id);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// State shared by the accept thread, link readers and workers.
struct Shared {
    /// What the builder froze; workers hold it past shutdown's joins.
    options: Arc<Options>,
    /// The node's client, whose registry every link joins.
    gates: GateClient,
    /// Set once the node shuts down.
    stop: AtomicBool,
    /// Ids of accepted links (for logs and the live list).
    next_link: AtomicU64,
    /// Live links' sockets and reader threads.
    live: Mutex<Live>,
    /// The worker pool's channels; taken (and so closed) by shutdown.
    pool: Mutex<Option<Arc<Pool>>>,
}

/// Threads and sockets of live links, so shutdown can close and join them.
#[derive(Default)]
struct Live {
    sockets: Vec<(u64, LinkStream)>,
    threads: Vec<JoinHandle<()>>,
}

impl Node {
    /// A node serving `options` on `listener`, not running yet.
    pub(crate) fn new(
        options: Options,
        gates: GateClient,
        listener: TcpListener,
        unix: Option<UnixSocket>,
        registry: Option<RegistrySetup>,
    ) -> Result<Node, NodeError> {
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            options: Arc::new(options),
            gates,
            stop: AtomicBool::new(false),
            next_link: AtomicU64::new(1),
            live: Mutex::default(),
            pool: Mutex::new(None),
        });
        Ok(Node {
            shared,
            listener,
            local_addr,
            unix,
            registry,
        })
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
        let workers = start_workers(&self.shared)?;
        let sh = &self.shared;
        let _registration = (self.registry.as_ref())
            .and_then(|r| register(r, &sh.options, self.local_addr, sh.gates.state()));
        let unix = (self.unix.as_ref()).and_then(|u| spawn_unix_accept(&self.shared, u));
        let r = accept_loop(&self.shared, || accept_tcp(&self.listener));
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some((t, waker)) = unix {
            wake_unix(waker, self.unix.as_ref().map(|u| u.path.clone()));
            let _ = t.join();
        }
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
            unix,
            registry,
        } = self;
        let registration = (registry.as_ref())
            .and_then(|r| register(r, &shared.options, local_addr, shared.gates.state()));
        let waker = listener.try_clone().ok();
        let workers = match start_workers(&shared) {
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
                if let Err(e) = accept_loop(&sh, || accept_tcp(&listener)) {
                    warn!(error = %e, "node: accept loop ended");
                }
            })
            .map_err(|e| warn!(error = %e, "node: cannot spawn the accept thread"))
            .ok();
        let unix_accept = (unix.as_ref()).and_then(|u| spawn_unix_accept(&shared, u));
        NodeHandle {
            shared,
            local_addr,
            waker,
            accept,
            unix_accept,
            unix,
            workers,
            registration,
        }
    }
}

/// A running node (see [`Node::spawn`]). Dropping it shuts the node down.
pub struct NodeHandle {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    waker: Option<TcpListener>,
    accept: Option<JoinHandle<()>>,
    /// The Unix socket's accept thread and a handle to wake it.
    unix_accept: Option<(JoinHandle<()>, UnixListener)>,
    /// Kept so its file is removed when the handle goes.
    unix: Option<UnixSocket>,
    workers: Vec<JoinHandle<()>>,
    registration: Option<Registration>,
}

impl NodeHandle {
    /// Changes the node's state on every gate and in the registry (see
    /// [`GateClient::set_state`]).
    pub fn set_state(&self, state: NodeState) {
        self.shared.gates.set_state(state);
        if let Some(r) = &self.registration {
            if let Err(e) = r.set_state(registry_state(state)) {
                warn!(error = %e, ?state, "node: cannot publish its state to the registry");
            }
        }
    }

    /// Stops gracefully: state `hang` (gates send no new stateless
    /// requests; users bound here are still served), `grace` to finish
    /// what is in flight, then out of the registry (record deleted, lease
    /// revoked) and [`shutdown`](Self::shutdown).
    pub fn drain(mut self, grace: Duration) {
        self.set_state(NodeState::Hang);
        std::thread::sleep(grace);
        if let Some(r) = self.registration.take() {
            if let Err(e) = r.deregister() {
                warn!(error = %e, "node: cannot deregister; the record lapses with its lease");
            }
        }
        self.stop();
    }

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
        if let Some((t, waker)) = self.unix_accept.take() {
            wake_unix(waker, self.unix.as_ref().map(|u| u.path.clone()));
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

/// Starts the workers (if any) and keeps their pool for new links.
fn start_workers(shared: &Arc<Shared>) -> io::Result<Vec<JoinHandle<()>>> {
    let started = worker::start(&shared.options, &shared.gates)?;
    *shared.pool.lock().unwrap() = started.pool;
    Ok(started.threads)
}

fn accept_tcp(l: &TcpListener) -> io::Result<(LinkStream, String)> {
    let (s, peer) = l.accept()?;
    Ok((LinkStream::Tcp(s), peer.to_string()))
}

/// Starts the accept thread of the node's Unix socket; returns it with a
/// clone of the listener that [`wake_unix`] shuts down to stop it.
fn spawn_unix_accept(
    shared: &Arc<Shared>,
    unix: &UnixSocket,
) -> Option<(JoinHandle<()>, UnixListener)> {
    let (listener, waker) = match (unix.listener.try_clone(), unix.listener.try_clone()) {
        (Ok(l), Ok(w)) => (l, w),
        (Err(e), _) | (_, Err(e)) => {
            warn!(error = %e, "node: cannot serve the Unix socket");
            return None;
        }
    };
    let name = format!("unix:{}", unix.path.display());
    let sh = shared.clone();
    let t = thread::Builder::new()
        .name("ringgate-node-accept-unix".into())
        .spawn(move || {
            let accept = || {
                let (s, _) = listener.accept()?;
                Ok((LinkStream::Unix(s), name.clone()))
            };
            if let Err(e) = accept_loop(&sh, accept) {
                warn!(error = %e, "node: Unix socket accept loop ended");
            }
        })
        .map_err(|e| warn!(error = %e, "node: cannot spawn the Unix accept thread"))
        .ok()?;
    Some((t, waker))
}

/// Wakes a Unix accept thread blocked in `accept` (shut down, or, failing
/// that, connect to it) once `stop` is set.
fn wake_unix(waker: UnixListener, path: Option<PathBuf>) {
    if socket2::SockRef::from(&waker)
        .shutdown(Shutdown::Both)
        .is_err()
    {
        if let Some(p) = path {
            let _ = std::os::unix::net::UnixStream::connect(p);
        }
    }
}

/// Accepts gate links until `stop` is set or the listener fails for good.
fn accept_loop(
    shared: &Arc<Shared>,
    mut accept: impl FnMut() -> io::Result<(LinkStream, String)>,
) -> Result<(), NodeError> {
    loop {
        let accepted = accept();
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
fn spawn_link(shared: &Arc<Shared>, stream: LinkStream, peer: String) {
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
    let name = peer.clone();
    let mut live = shared.live.lock().unwrap();
    // Forget threads of links that already ended.
    live.threads.retain(|t| !t.is_finished());
    let spawned = thread::Builder::new()
        .name("ringgate-node-link".into())
        .spawn(move || {
            let env = ReaderEnv {
                options: &sh.options,
                gates: &sh.gates,
                pool,
                stop: &sh.stop,
            };
            reader::serve(env, stream, name, id);
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
