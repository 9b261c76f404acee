//! The shard: one io_uring event loop per pinned core. It owns its listener,
//! its client connections, its links to every node and its timers; nothing
//! here is shared with another shard except atomic counters and the global
//! connection count.
//!
//! One loop turn:
//!
//! ```text
//!  submit_and_wait(1, timeout = next timer tick)
//!    └─ drain every completion:
//!         accept  → new connection, multishot recv armed into the buffer ring
//!         recv    → decode packets → deliveries batched per node link,
//!                   heartbeat/error replies queued on the connection
//!         link rx → node frames → replies queued on their connections
//!         send    → advance / finish the connection's or link's write
//!  publish returned read buffers (one store), re-arm exhausted receives
//!  run due timers (idle / authorize deadlines, link pings and reconnects)
//!  flush: one send per dirty connection, one batch send per node link
//! ```
//!
//! Everything the loop calls to understand bytes (codec, session, link
//! framing) is pure and tested without a ring.

mod bufring;
mod calls;
mod conn;
mod directory;
mod link;
pub mod mailbox;
mod ops;
mod rooms;
pub mod stats;
mod timer;
pub mod wake;
pub mod xport;

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use io_uring::{opcode, squeue, types, IoUring};

use crate::codec::PacketOptions;
use crate::config::{Config, HeartbeatMechanism, LinkConfig, SessionConfig};
use crate::ids::ShardId;
use crate::session::{CloseReason, Millis, Rules};

pub use bufring::BufRing;
pub use stats::{ShardStats, StatsSnapshot};
pub use timer::TimerWheel;
pub use wake::Wakers;

use conn::Slab;
use directory::Directory;
use link::{Link, RouteTable};
use mailbox::Mailbox;
use ops::{pack, unpack, Op};
use rooms::Rooms;
use xport::ListenerXport;

/// Milliseconds per timer-wheel tick.
const TICK_MS: u64 = 10;
/// Longest the loop sleeps without a completion, so timers run on time.
const MAX_WAIT: Duration = Duration::from_millis(20);
/// Spare buffers kept per shard for connection writes (so idle connections hold none).
const POOL_MAX: usize = 256;
/// Buffers larger than this are not pooled (a burst should not pin memory).
const POOL_BUF_MAX: usize = 64 * 1024;
/// How long a stopping shard waits for its operations to complete.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// State shared by every shard of one gate.
#[derive(Debug)]
pub struct Shared {
    /// Connections open across all shards (admission against `max_connections`).
    pub connections: AtomicUsize,
    /// Set to stop every shard.
    pub stop: AtomicBool,
    /// Per-shard counters, indexed by shard.
    pub stats: Vec<ShardStats>,
    /// Per shard: the parked flag and the eventfd that wakes it.
    pub wakers: Wakers,
}

impl Shared {
    /// State for `shards` shards; fails if an eventfd cannot be created.
    pub fn new(shards: usize) -> io::Result<Shared> {
        Ok(Shared {
            connections: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            stats: (0..shards).map(|_| ShardStats::default()).collect(),
            wakers: Wakers::new(shards)?,
        })
    }

    /// Asks every shard to stop and wakes them all. Harmless after they stopped.
    pub fn stop_all(&self) {
        self.stop.store(true, Ordering::SeqCst);
        for s in 0..self.wakers.len() {
            self.wakers.notify(s);
        }
    }
}

/// Everything one shard needs to run, derived from the [`Config`].
#[derive(Debug)]
pub struct ShardParams {
    /// This shard.
    pub id: ShardId,
    /// Number of shards in the gate.
    pub shards: u16,
    /// Core to pin to.
    pub core: usize,
    /// The gate's instance id (sent to nodes).
    pub gate_id: String,
    /// Client packet format.
    pub packet: PacketOptions,
    /// Session rules.
    pub rules: Rules,
    /// Connections allowed across shards.
    pub max_connections: usize,
    /// Outbound bytes queued per client before `overflow`.
    pub max_outbound: usize,
    /// io_uring submission queue entries.
    pub ring_entries: u32,
    /// Provided read buffers.
    pub buffer_count: u16,
    /// Bytes per provided read buffer.
    pub buffer_size: u32,
    /// Node link settings.
    pub link: LinkConfig,
    /// Node addresses to dial.
    pub nodes: Vec<std::net::SocketAddr>,
    /// Binding and settings rules.
    pub session: SessionConfig,
    /// Poll this long before sleeping (zero: never spin).
    pub busy_poll: Duration,
    /// WebSocket upgrade rules, when a WebSocket listener is served.
    pub ws_policy: Option<Arc<crate::ws::HandshakePolicy>>,
}

impl ShardParams {
    /// Parameters of shard `id` (pinned to `core`) from a validated config.
    pub fn from_config(cfg: &Config, id: u16, core: usize) -> Self {
        ShardParams {
            id: ShardId(id),
            shards: cfg.shards.cores.len() as u16,
            core,
            gate_id: cfg.gate.id.clone(),
            packet: cfg.packet,
            rules: Rules::from_tcp(&cfg.network.tcp),
            max_connections: cfg.network.tcp.max_connections,
            max_outbound: cfg.network.tcp.max_outbound_bytes,
            ring_entries: cfg.shards.ring_entries,
            buffer_count: cfg.shards.buffer_count,
            buffer_size: cfg.shards.buffer_size,
            link: cfg.link.clone(),
            nodes: cfg.nodes.iter().map(|n| n.addr).collect(),
            session: cfg.session.clone(),
            busy_poll: cfg.shards.busy_poll,
            ws_policy: cfg
                .network
                .ws
                .enabled
                .then(|| Arc::new(crate::ws::HandshakePolicy::from_config(&cfg.network.ws))),
        }
    }
}

/// Builds a shard ring with the setup flags ringgate relies on.
pub fn build_ring(entries: u32) -> io::Result<IoUring> {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(entries * 4)
        .build(entries)
}

/// One listening socket of a shard and what it serves.
struct Listener {
    sock: TcpListener,
    xport: ListenerXport,
    armed: bool,
}

/// A shard's event loop and everything it owns.
///
/// Field order matters: `ring` is dropped before `bufs`, `conns` and `links`,
/// so the kernel has let go of their memory before it is freed.
pub struct Shard {
    ring: IoUring,
    bufs: BufRing,
    p: ShardParams,
    shared: Arc<Shared>,
    listeners: Vec<Listener>,
    ws_policy: Option<Arc<crate::ws::HandshakePolicy>>,
    /// Accepting paused until this time (after EMFILE and the like).
    accept_paused_until: Millis,
    conns: Slab,
    links: Vec<Link>,
    routes: RouteTable,
    mailbox: Mailbox,
    dir: Directory,
    rooms: Rooms,
    wheel: TimerWheel<(u32, u32)>,
    /// Connections with bytes queued since the last flush.
    dirty: Vec<u32>,
    /// Connections whose multishot receive must be re-armed after buffers return.
    rearm: Vec<u32>,
    /// Decode buffer for reads of connections that hold no partial packet.
    scratch: BytesMut,
    /// Spare write buffers.
    pool: Vec<BytesMut>,
    epoch: Instant,
    now: Millis,
    next_tick_heartbeat: Millis,
    eventfd: RawFd,
    wake_buf: Box<u64>,
    wake_armed: bool,
    stopping: bool,
    fired: Vec<(u32, u32)>,
    cqes: Vec<(u64, i32, u32)>,
}

impl Shard {
    /// Builds a shard around an already-listening socket. Call on the shard's
    /// own thread: the ring is single-issuer.
    pub fn new(
        p: ShardParams,
        listeners: Vec<(TcpListener, ListenerXport)>,
        shared: Arc<Shared>,
        mailbox: Mailbox,
    ) -> io::Result<Shard> {
        let eventfd = shared.wakers.fd(p.id.0 as usize).as_raw_fd();
        let ring = build_ring(p.ring_entries)?;
        let bufs = BufRing::register(&ring, p.buffer_count, p.buffer_size)?;
        let links = p
            .nodes
            .iter()
            .map(|a| Link::new(*a, p.link.max_frame_bytes))
            .collect();
        Ok(Shard {
            ring,
            bufs,
            shared,
            listeners: listeners
                .into_iter()
                .map(|(sock, xport)| Listener {
                    sock,
                    xport,
                    armed: false,
                })
                .collect(),
            ws_policy: p.ws_policy.clone(),
            accept_paused_until: 0,
            conns: Slab::default(),
            links,
            routes: RouteTable::default(),
            mailbox,
            dir: Directory::default(),
            rooms: Rooms::default(),
            wheel: TimerWheel::new(4096, 0),
            dirty: Vec::new(),
            rearm: Vec::new(),
            scratch: BytesMut::with_capacity(64 * 1024),
            pool: Vec::new(),
            epoch: Instant::now(),
            now: 0,
            next_tick_heartbeat: p.rules.heartbeat_ms,
            eventfd,
            wake_buf: Box::new(0),
            wake_armed: false,
            stopping: false,
            fired: Vec::new(),
            cqes: Vec::with_capacity(1024),
            p,
        })
    }

    fn stats(&self) -> &ShardStats {
        &self.shared.stats[self.p.id.0 as usize]
    }

    /// Queues a submission, flushing the queue to the kernel if it is full.
    ///
    /// # Safety
    /// Every buffer or address `e` points at must stay valid and untouched
    /// until the operation's completion has been reaped.
    unsafe fn push(&mut self, e: &squeue::Entry) {
        loop {
            // SAFETY: forwarded to the caller's contract.
            if unsafe { self.ring.submission().push(e) }.is_ok() {
                return;
            }
            if let Err(err) = self.ring.submit() {
                if err.raw_os_error() != Some(libc::EBUSY) {
                    tracing::error!(shard = self.p.id.0, %err, "io_uring submit failed");
                }
            }
        }
    }

    fn arm_accept(&mut self) {
        if self.stopping || self.now < self.accept_paused_until {
            return;
        }
        for li in 0..self.listeners.len() {
            if self.listeners[li].armed {
                continue;
            }
            let e = opcode::AcceptMulti::new(types::Fd(self.listeners[li].sock.as_raw_fd()))
                .flags(libc::SOCK_CLOEXEC)
                .build()
                .user_data(pack(Op::Accept, li as u32));
            // SAFETY: multishot accept references no memory of ours.
            unsafe { self.push(&e) };
            self.listeners[li].armed = true;
        }
    }

    fn arm_wake(&mut self) {
        if self.wake_armed {
            return;
        }
        let e = opcode::Read::new(
            types::Fd(self.eventfd),
            (&mut *self.wake_buf as *mut u64).cast(),
            8,
        )
        .build()
        .user_data(pack(Op::Wake, 0));
        // SAFETY: `wake_buf` is a Box owned by the shard, never moved or read
        // while the read is armed, and freed only after the ring is dropped.
        unsafe { self.push(&e) };
        self.wake_armed = true;
    }

    fn update_now(&mut self) {
        self.now = self.epoch.elapsed().as_millis() as Millis;
    }

    /// Runs the loop until the gate stops. Returns when every operation has
    /// completed (or the stop grace period ran out).
    pub fn run(mut self) -> io::Result<()> {
        self.arm_accept();
        self.arm_wake();
        self.link_housekeeping();
        let mut stop_deadline = None;
        let me = self.p.id.0 as usize;
        loop {
            // Park: announce it, then look at the inbox once more, so a sender
            // either sees `parked` and writes our eventfd or its message is seen here.
            if !self.p.busy_poll.is_zero() {
                self.busy_poll();
            }
            self.shared.wakers.park(me);
            let wait = if self.mailbox.has_mail() {
                Duration::ZERO
            } else {
                MAX_WAIT
            };
            let ts = types::Timespec::from(wait);
            let args = types::SubmitArgs::new().timespec(&ts);
            let waited = self.ring.submitter().submit_with_args(1, &args);
            self.shared.wakers.unpark(me);
            match waited {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                    ) => {}
                Err(e) => return Err(e),
            }
            self.update_now();
            self.drain_completions();
            self.drain_mail();
            self.bufs.publish();
            self.rearm_receives();
            self.run_timers();
            self.mailbox.retry_backlog();
            self.flush();
            let shared = &self.shared;
            self.mailbox.take_touched(|s| shared.wakers.wake(s));

            if self.shared.stop.load(Ordering::Relaxed) && !self.stopping {
                self.begin_stop();
                stop_deadline = Some(Instant::now() + STOP_GRACE);
                self.flush();
            }
            if let Some(deadline) = stop_deadline {
                if self.is_drained() {
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    tracing::warn!(
                        shard = self.p.id.0,
                        "stop grace period ran out with operations in flight"
                    );
                    // The kernel may still own buffers: leak them rather than free memory it could write.
                    std::mem::forget(self);
                    return Ok(());
                }
            }
        }
    }

    /// Spins for up to `busy_poll`, reaping completions without sleeping,
    /// until one arrives or mail does. Each round is a non-blocking
    /// `io_uring_enter(GETEVENTS)`, which also runs the ring's deferred task work.
    fn busy_poll(&mut self) {
        let until = Instant::now() + self.p.busy_poll;
        let zero = types::Timespec::new();
        loop {
            let args = types::SubmitArgs::new().timespec(&zero);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            if !self.ring.completion().is_empty()
                || self.mailbox.has_mail()
                || Instant::now() >= until
            {
                return;
            }
            std::hint::spin_loop();
        }
    }

    fn drain_completions(&mut self) {
        self.cqes.clear();
        self.cqes.extend(
            self.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        for i in 0..self.cqes.len() {
            let (ud, res, flags) = self.cqes[i];
            let Some((op, idx)) = unpack(ud) else {
                tracing::error!(ud, "completion with unknown user_data");
                continue;
            };
            match op {
                Op::Accept => self.on_accept(idx as usize, res, flags),
                Op::Recv => self.on_recv(idx, res, flags),
                Op::Send => self.on_send(idx, res),
                Op::LinkConnect => self.on_link_connect(idx as usize, res),
                Op::LinkRecv => self.on_link_recv(idx as usize, res),
                Op::LinkSend => self.on_link_send(idx as usize, res),
                Op::Wake => {
                    self.wake_armed = false;
                    if !self.stopping {
                        self.arm_wake();
                    }
                }
                Op::Cancel => {}
            }
        }
    }

    fn run_timers(&mut self) {
        let tick = self.now / TICK_MS;
        let mut fired = std::mem::take(&mut self.fired);
        self.wheel.advance(tick, &mut fired);
        for (slot, gen) in fired.drain(..) {
            self.on_conn_timer(slot, gen);
        }
        self.fired = fired;
        if self.p.rules.mechanism == HeartbeatMechanism::Tick
            && self.p.rules.heartbeat_ms > 0
            && self.now >= self.next_tick_heartbeat
        {
            self.next_tick_heartbeat = self.now + self.p.rules.heartbeat_ms;
            self.tick_heartbeats();
        }
        self.link_housekeeping();
        self.arm_accept();
    }

    fn flush(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for idx in dirty.drain(..) {
            self.flush_conn(idx);
        }
        self.dirty = dirty;
        for i in 0..self.links.len() {
            self.flush_link(i);
        }
    }

    fn begin_stop(&mut self) {
        self.stopping = true;
        for li in 0..self.listeners.len() {
            if self.listeners[li].armed {
                let e = opcode::AsyncCancel::new(pack(Op::Accept, li as u32))
                    .build()
                    .user_data(pack(Op::Cancel, 0));
                // SAFETY: a cancel references no memory of ours.
                unsafe { self.push(&e) };
            }
        }
        if self.wake_armed {
            // Complete our own armed read so nothing of ours stays in flight.
            self.shared.wakers.notify(self.p.id.0 as usize);
        }
        for idx in self.conns.live() {
            self.close_conn(idx, CloseReason::Shutdown);
        }
        for i in 0..self.links.len() {
            self.link_down(i, "gate stopping");
        }
    }

    fn is_drained(&self) -> bool {
        self.listeners.iter().all(|l| !l.armed)
            && !self.wake_armed
            && self.conns.is_empty()
            && self.links.iter().all(Link::is_idle)
    }

    fn take_buf(&mut self) -> BytesMut {
        self.pool.pop().unwrap_or_default()
    }

    fn give_buf(&mut self, mut b: BytesMut) {
        if b.capacity() > 0 && b.capacity() <= POOL_BUF_MAX && self.pool.len() < POOL_MAX {
            b.clear();
            self.pool.push(b);
        }
    }
}

/// A close-on-exec TCP socket for `addr`'s family with `SO_REUSEADDR`.
fn tcp_socket(addr: std::net::SocketAddr) -> io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.cloexec(),
        Some(Protocol::TCP),
    )?;
    s.set_reuse_address(true)?;
    Ok(s)
}

/// Creates the listening socket of one shard: `SO_REUSEPORT`, so every shard
/// binds its own listener on the same port and the kernel spreads connections.
pub fn listen(addr: std::net::SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let s = tcp_socket(addr)?;
    s.set_reuse_port(true)?;
    s.bind(&addr.into())?;
    s.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(s.into())
}

/// Fails with `AddrInUse` if any socket already listens on `addr`, including
/// another process's `SO_REUSEPORT` listeners, which would otherwise silently
/// share the port (and its clients) with this gate.
pub fn ensure_port_free(addr: std::net::SocketAddr) -> io::Result<()> {
    let s = tcp_socket(addr)?;
    s.bind(&addr.into()).map_err(|e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            io::Error::new(
                io::ErrorKind::AddrInUse,
                "address already in use (is another gate running?)",
            )
        } else {
            e
        }
    })
}
