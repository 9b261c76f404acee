//! The shard: one io_uring event loop per pinned core. It owns its
//! listeners, its client sockets, its links to every node and its timers;
//! nothing here is shared with another shard except atomic counters, the
//! global connection count and the mailboxes.
//!
//! The shard keeps descriptors and in-flight operations only. What a
//! connection *means* — framing, phases, deadlines, outbound accounting, the
//! one close path — lives in [`crate::connection`], and every buffer the
//! kernel may touch lives in the [`ring::Ring`]'s in-flight table.
//!
//! One loop turn:
//!
//! ```text
//!  ring.wait(1, timeout)          (after announcing "parked", see wake.rs)
//!    └─ drain every completion:
//!         accept  → Connection::new, multishot recv armed into the buffer ring
//!         recv    → Connection::handle_recv → events: requests batched per node link
//!         link rx → node frames → calls and pushes queued on their connections
//!         send    → finish a partial write, or Connection::handle_sent
//!  drain the inbox (bounded), publish returned read buffers, re-arm receives
//!  run due timers (Connection::handle_timeout, link pings and reconnects)
//!  flush: Connection::poll_transmit → one send per connection, one batch per link
//! ```
//!
//! | file          | what it owns                                                  |
//! |---------------|---------------------------------------------------------------|
//! | `ring`        | io_uring, the in-flight table, the shutdown that waits        |
//! | `bufring`     | the provided read buffers (unsafe internals of `ring`)        |
//! | `clients`     | client sockets: accept, recv, send, timers, close bookkeeping |
//! | `limits`      | `[limits]` on accept and per request; EMFILE pauses           |
//! | `nodes`       | links to nodes: connect, hello, ping, reconnect with backoff  |
//! | `routes`      | route → node links, round robin, reply timeouts               |
//! | `requests`    | requests waiting for a node's reply, their timeouts           |
//! | `forward`     | requests to nodes, pushes to clients, connect/disconnect events |
//! | `snapshot`    | pages of live sessions for a node that (re)connects           |
//! | `mqtt`        | MQTT clients' requests by topic, their replies and errors     |
//! | `node_calls`  | what nodes ask (calls) and how they are answered              |
//! | `session_ops` | operations on sessions, routed to the shard that owns them    |
//! | `mailbox`     | cross-shard messages and bounded inboxes                      |
//! | `wake`        | waking a parked shard                                         |
//! | `gauges`      | gauges for the admin port, published by housekeeping          |
//! | `admin_ops`   | the admin port's questions (sessions, kick, broadcast)        |
//! | `directory`   | this shard's partition of uid → session                       |
//! | `gather`      | multicast results counted across shards                       |
//! | `rooms`       | channel membership of this shard's sessions                   |
//! | `timer`       | the hashed timer wheel                                        |
//! | `listener`    | listening sockets and what each serves                        |
//! | `live`        | the settings a configuration reload swaps (WebSocket origins) |

pub mod admin_ops;
mod bufring;
mod clients;
mod directory;
pub mod fleet_hooks;
mod forward;
mod gather;
mod gauges;
mod limits;
mod listener;
pub mod live;
pub mod mailbox;
mod mqtt;
mod node_calls;
mod node_table;
mod nodes;
pub mod requests;
pub mod ring;
mod rooms;
mod routes;
mod session_ops;
mod snapshot;
mod timer;
pub mod wake;

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::codec::PacketOptions;
use crate::config::{Config, HeartbeatMechanism, LinkConfig, SessionConfig};
use crate::connection::{BufPool, ConnEvent, ConnRules};
use crate::ids::ShardId;
use crate::session::{Millis, Rules};
pub use crate::stats::{ShardStats, StatsSnapshot};

pub use listener::{ensure_port_free, listen, ListenerSpec};
pub use ring::Ring;
pub use timer::TimerWheel;
pub use wake::Wakers;

use clients::Clients;
use directory::Directory;
use gather::Gathers;
use listener::Listener;
use mailbox::Mailbox;
pub use node_table::{NodeSlot, NodeTable};
use nodes::Link;
use requests::PendingRequests;
use ring::Completion;
use rooms::Rooms;
use routes::RouteTable;

/// Milliseconds per timer-wheel tick.
const TICK_MS: u64 = 10;
/// Longest the loop sleeps without a completion, so timers run on time.
const MAX_WAIT: Duration = Duration::from_millis(20);
/// How long a stopping shard waits for its connections and links to close.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// Event kinds, `EVENT_UNSPECIFIED` included (index = `EventKind as usize`).
const EVENT_KINDS: usize = 6;
/// Most cross-shard messages handled per loop turn (the rest wait a turn,
/// so a flood from other shards cannot starve this shard's own sockets).
const MAIL_PER_TURN: usize = 4096;

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
    /// When the gate started (unix ms), told to nodes as `GateHello.epoch_ms`.
    pub epoch_ms: u64,
    /// The nodes to keep links to (static and discovered).
    pub nodes: NodeTable,
    /// Channels to and from the fleet agent (and the admin port's questions).
    pub fleet: fleet_hooks::FleetPipes,
    /// Set to drain every shard: stop accepting, keep serving.
    pub draining: AtomicBool,
    /// Set by anyone who wants the gate drained (the admin API); whoever
    /// runs the gate (main) watches it and drains.
    pub drain_requested: AtomicBool,
    /// Connections per client address across the shards
    /// (`limits.max_connections_per_ip`; counts nothing when off).
    pub per_ip: crate::limits::PerIpTable,
}

impl Shared {
    /// State for `shards` shards allowing `max_per_ip` connections per
    /// client address (0: no limit); fails if an eventfd cannot be created.
    pub fn new(
        shards: usize,
        nodes: &[std::net::SocketAddr],
        max_per_ip: u32,
    ) -> io::Result<Shared> {
        Ok(Shared {
            connections: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            stats: (0..shards).map(|_| ShardStats::default()).collect(),
            wakers: Wakers::new(shards)?,
            epoch_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            nodes: NodeTable::new(nodes),
            fleet: fleet_hooks::FleetPipes::new(shards),
            draining: AtomicBool::new(false),
            drain_requested: AtomicBool::new(false),
            per_ip: crate::limits::PerIpTable::new(max_per_ip),
        })
    }

    /// Asks whoever runs the gate to drain it (the admin port's `POST
    /// /api/drain`); the `ringgate` binary's main thread watches the flag
    /// and drains as on SIGTERM.
    pub fn request_drain(&self) {
        if !self.drain_requested.swap(true, Ordering::SeqCst) {
            tracing::info!("drain requested");
        }
    }

    /// Drains every shard (stop accepting, tell nodes) and wakes them.
    pub fn drain_all(&self) {
        if !self.draining.swap(true, Ordering::SeqCst) {
            for s in 0..self.wakers.len() {
                self.wakers.notify(s);
            }
        }
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
    /// The gate's instance id (sent to nodes).
    pub gate_id: String,
    /// Rules every connection follows.
    pub conn: ConnRules,
    /// Connections allowed across shards.
    pub max_connections: usize,
    /// io_uring submission queue entries.
    pub ring_entries: u32,
    /// Provided read buffers.
    pub buffer_count: u16,
    /// Bytes per provided read buffer.
    pub buffer_size: u32,
    /// Node link settings.
    pub link: LinkConfig,
    /// Binding and settings rules.
    pub session: SessionConfig,
    /// Poll this long before sleeping (zero: never spin).
    pub busy_poll: Duration,
    /// Let completions gather this long once one has arrived (zero: off).
    pub batch_wait: Duration,
    /// How long an MQTT request waits for its node's reply.
    pub mqtt_request_timeout: Millis,
    /// The pick among the nodes serving a route.
    pub dispatch: crate::config::Dispatch,
    /// `[limits]`.
    pub limits: crate::limits::LimitRules,
}

impl ShardParams {
    /// Parameters of shard `id` from a validated config.
    pub fn from_config(cfg: &Config, id: u16) -> Self {
        let knobs = cfg.shards.knobs(id as usize);
        let live = live::LiveSettings::from_config(cfg);
        ShardParams {
            id: ShardId(id),
            shards: cfg.shards.cores.len() as u16,
            gate_id: cfg.gate.id.clone(),
            conn: ConnRules {
                packet: cfg.packet,
                session: Rules::from_tcp(&cfg.network.tcp),
                max_outbound: cfg.network.tcp.max_outbound_bytes,
                ws: live.ws,
                mqtt: crate::connection::MqttRules {
                    max_packet_bytes: cfg.network.mqtt.max_packet_bytes,
                    max_inflight: live.mqtt_inflight,
                },
            },
            mqtt_request_timeout: cfg.network.mqtt.request_timeout.as_millis() as Millis,
            max_connections: cfg.network.tcp.max_connections,
            ring_entries: knobs.ring_entries,
            buffer_count: knobs.buffer_count,
            buffer_size: knobs.buffer_size,
            link: cfg.link.clone(),
            session: cfg.session.clone(),
            busy_poll: knobs.busy_poll,
            batch_wait: knobs.batch_wait,
            dispatch: cfg.cluster.dispatch,
            limits: live.limits,
        }
    }

    fn packet(&self) -> &PacketOptions {
        &self.conn.packet
    }
}

/// A shard's event loop and everything it owns.
///
/// `ring` is declared first: dropping the shard (clean stop, error, panic)
/// cancels and waits for every operation before the sockets close.
pub struct Shard {
    ring: Ring,
    p: ShardParams,
    shared: Arc<Shared>,
    listeners: Vec<Listener>,
    /// Accepting paused until this time (after EMFILE and the like).
    accept_paused_until: Millis,
    clients: Clients,
    /// `[limits]` state: accept rate, handshakes, per-connection buckets.
    lim: limits::ShardLimits,
    links: Vec<Link>,
    /// The version of the shared node table the links follow.
    nodes_version: u64,
    routes: RouteTable,
    /// Requests forwarded to nodes that wait for a reply.
    pending: PendingRequests,
    /// Requests that ended without a reply this turn (reused).
    ended: Vec<requests::Waiting>,
    /// Events raised per kind (`EventKind` as index): the last `Event.seq`.
    event_seqs: [u64; EVENT_KINDS],
    mailbox: Mailbox,
    dir: Directory,
    /// This shard's partition of the MQTT client ids of live sessions.
    client_ids: Directory<Arc<str>>,
    /// Multicasts waiting for their targets' reports.
    gathers: Gathers,
    rooms: Rooms,
    wheel: TimerWheel<(u32, u32)>,
    /// Decode buffer for reads of connections that hold no partial packet.
    scratch: BytesMut,
    /// Spare write buffers.
    pool: BufPool,
    /// Events of the connection being handled (reused).
    events: Vec<ConnEvent>,
    /// Completions of this turn (reused).
    done: Vec<Completion>,
    epoch: Instant,
    now: Millis,
    /// `now` in ns (same clock), for round-trip times.
    now_ns: u64,
    /// When the gauges in the stats were last refreshed.
    next_gauges: Millis,
    unix_nanos: i64,
    next_tick_heartbeat: Millis,
    wake_armed: bool,
    stopping: bool,
    /// Draining: accepting nothing more.
    drained: bool,
    /// Stopping, and the links are being closed.
    links_closing: bool,
}

impl Shard {
    /// Builds a shard around already-listening sockets. Call on the shard's
    /// own thread: the ring is single-issuer.
    pub fn new(
        p: ShardParams,
        listeners: Vec<(std::net::TcpListener, ListenerSpec)>,
        shared: Arc<Shared>,
        mailbox: Mailbox,
    ) -> io::Result<Shard> {
        let ring = Ring::new(p.ring_entries, p.buffer_count, p.buffer_size)?;
        let links = Vec::new();
        Ok(Shard {
            ring,
            shared,
            listeners: listeners.into_iter().map(Listener::new).collect(),
            accept_paused_until: 0,
            clients: Clients::default(),
            lim: limits::ShardLimits::new(&p.limits),
            links,
            nodes_version: u64::MAX,
            routes: RouteTable::default(),
            pending: PendingRequests::new(p.id.0),
            ended: Vec::new(),
            event_seqs: [0; EVENT_KINDS],
            mailbox,
            dir: Directory::default(),
            client_ids: Directory::default(),
            gathers: Gathers::default(),
            rooms: Rooms::default(),
            wheel: TimerWheel::new(4096, 0),
            scratch: BytesMut::with_capacity(64 * 1024),
            pool: BufPool::default(),
            events: Vec::new(),
            done: Vec::with_capacity(1024),
            epoch: Instant::now(),
            now: 0,
            now_ns: 0,
            next_gauges: 0,
            unix_nanos: 0,
            next_tick_heartbeat: p.conn.session.heartbeat_ms,
            wake_armed: false,
            stopping: false,
            drained: false,
            links_closing: false,
            p,
        })
    }

    fn me(&self) -> usize {
        self.p.id.0 as usize
    }

    fn stats(&self) -> &ShardStats {
        &self.shared.stats[self.p.id.0 as usize]
    }

    fn arm_accept(&mut self) {
        if self.stopping || self.drained || self.now < self.accept_paused_until {
            return;
        }
        for (li, l) in self.listeners.iter_mut().enumerate() {
            if !l.armed {
                l.armed = true;
                self.ring.accept_multi(l.sock.as_raw_fd(), li);
            }
        }
    }

    fn arm_wake(&mut self) {
        if !self.wake_armed && !self.stopping {
            self.wake_armed = true;
            let fd = self.shared.wakers.fd(self.me()).as_raw_fd();
            self.ring.read_eventfd(fd);
        }
    }

    fn update_now(&mut self) {
        self.now_ns = self.epoch.elapsed().as_nanos() as u64;
        self.now = (self.now_ns / 1_000_000) as Millis;
        if self.p.packet().heartbeat_time {
            self.unix_nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as i64)
                .unwrap_or(0);
        }
    }

    /// Runs the loop until the gate stops and every connection and link has
    /// closed (or the stop grace period ran out). Whatever way this returns
    /// or unwinds, dropping the shard's [`Ring`] waits for the kernel to let
    /// go of every buffer first.
    pub fn run(mut self) -> io::Result<()> {
        self.arm_accept();
        self.arm_wake();
        self.link_housekeeping();
        let mut stop_deadline = None;
        loop {
            self.park_and_wait()?;
            self.turn();
            if self.shared.stop.load(Ordering::Relaxed) && !self.stopping {
                self.begin_stop();
                stop_deadline = Some(Instant::now() + STOP_GRACE);
                self.flush();
            }
            if let Some(deadline) = stop_deadline {
                if self.clients.is_empty() && !self.links_closing {
                    // Every session's disconnect event is queued on the
                    // links by now: close them once it is written.
                    self.flush();
                    if self.links.iter().all(Link::is_written) {
                        self.links_closing = true;
                        for i in 0..self.links.len() {
                            self.link_down(i, "gate stopping");
                        }
                    }
                }
                if self.is_drained() {
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    tracing::warn!(
                        shard = self.p.id.0,
                        in_flight = self.ring.in_flight(),
                        "stop grace period ran out; cancelling what is left"
                    );
                    return Ok(());
                }
            }
        }
    }

    /// Announces "parked", waits in the ring (not at all if mail is there),
    /// then un-parks: see [`wake`] for why senders never miss us.
    fn park_and_wait(&mut self) -> io::Result<()> {
        if !self.p.busy_poll.is_zero() {
            self.busy_poll();
        }
        let me = self.me();
        self.shared.wakers.park(me);
        let wait = if self.mailbox.has_mail() {
            Duration::ZERO
        } else {
            MAX_WAIT
        };
        let waited = self.ring.wait(wait, self.p.batch_wait);
        self.shared.wakers.unpark(me);
        waited
    }

    /// One loop turn after the wait.
    fn turn(&mut self) {
        self.update_now();
        self.drain_completions();
        self.drain_mail();
        self.ring.publish();
        self.rearm_receives();
        self.run_timers();
        self.reap_closed();
        self.mailbox.retry_backlog();
        self.flush();
        let shared = &self.shared;
        self.mailbox.take_touched(|s| shared.wakers.wake(s));
    }

    /// Spins for up to `busy_poll`, reaping completions without sleeping,
    /// until one arrives or mail does.
    fn busy_poll(&mut self) {
        let until = Instant::now() + self.p.busy_poll;
        loop {
            let _ = self.ring.wait(Duration::ZERO, Duration::ZERO);
            if self.ring.has_completions() || self.mailbox.has_mail() || Instant::now() >= until {
                return;
            }
            std::hint::spin_loop();
        }
    }

    fn drain_completions(&mut self) {
        let mut done = std::mem::take(&mut self.done);
        self.ring.completions(&mut done);
        let submitted = self.ring.take_submitted();
        let st = self.stats();
        ShardStats::add(&st.loop_turns, 1);
        ShardStats::add(&st.ring_completions, done.len() as u64);
        ShardStats::add(&st.ring_submissions, submitted);
        for c in done.drain(..) {
            match c {
                Completion::Accept {
                    listener,
                    res,
                    more,
                } => self.on_accept(listener, res, more),
                Completion::Recv {
                    client,
                    res,
                    more,
                    buf,
                } => self.on_recv(client, res, more, buf),
                Completion::Send {
                    owner,
                    res,
                    buf,
                    off,
                } => match owner {
                    ring::Owner::Client(idx) => self.on_client_send(idx, res, buf, off),
                    ring::Owner::Link(i) => self.on_link_send(i, res, buf, off),
                },
                Completion::Connect { link, res } => self.on_link_connect(link, res),
                Completion::LinkRecv { link, res, buf } => self.on_link_recv(link, res, buf),
                Completion::Wake { .. } => {
                    self.wake_armed = false;
                    self.arm_wake();
                }
            }
        }
        self.done = done;
    }

    /// Handles what other shards sent, at most [`MAIL_PER_TURN`] messages.
    fn drain_mail(&mut self) {
        for _ in 0..MAIL_PER_TURN {
            let Some(m) = self.mailbox.try_recv() else {
                return;
            };
            self.on_mail(m);
        }
    }

    fn run_timers(&mut self) {
        self.apply_node_table();
        self.run_controls();
        if !self.drained && self.shared.draining.load(Ordering::Relaxed) {
            self.begin_drain();
        }
        self.run_client_timers();
        let rules = self.p.conn.session;
        if rules.mechanism == HeartbeatMechanism::Tick
            && rules.heartbeat_ms > 0
            && self.now >= self.next_tick_heartbeat
        {
            self.next_tick_heartbeat = self.now + rules.heartbeat_ms;
            self.tick_heartbeats();
        }
        self.expire_requests();
        self.link_housekeeping();
        self.refresh_gauges();
        self.arm_accept();
    }

    /// The route table after a node announced (or re-announced) its routes.
    fn rebuild_routes(&mut self) {
        let default = self.p.link.request_timeout.as_millis() as Millis;
        self.routes.rebuild(&self.links, default);
    }

    fn flush(&mut self) {
        self.flush_clients();
        for i in 0..self.links.len() {
            self.flush_link(i);
        }
    }

    /// Stops accepting for good (the listening sockets are shut down, so
    /// new connections are refused at once) and tells nodes; the sessions
    /// this shard has keep being served.
    fn begin_drain(&mut self) {
        self.drained = true;
        for l in &self.listeners {
            if l.armed {
                self.ring.cancel_fd(l.sock.as_raw_fd());
            }
            let _ = socket2::SockRef::from(&l.sock).shutdown(std::net::Shutdown::Read);
        }
        tracing::info!(
            shard = self.p.id.0,
            "draining: accepting no new connections"
        );
        self.emit(crate::link::proto::Event {
            kind: crate::link::proto::EventKind::EventDrain as i32,
            ..Default::default()
        });
    }

    fn begin_stop(&mut self) {
        self.stopping = true;
        for l in &self.listeners {
            if l.armed {
                self.ring.cancel_fd(l.sock.as_raw_fd());
            }
        }
        if self.wake_armed {
            // Complete our own armed read so nothing of ours stays in flight.
            self.shared.wakers.notify(self.me());
        }
        // The links stay up until every session has closed, so nodes hear
        // each disconnect (the stop loop closes them then).
        self.close_all_clients();
    }

    fn is_drained(&self) -> bool {
        self.listeners.iter().all(|l| !l.armed)
            && !self.wake_armed
            && self.clients.is_empty()
            && self.links.iter().all(Link::is_idle)
    }
}
