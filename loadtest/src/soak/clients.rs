//! The soak's client threads. Each keeps its share of `--conns` open
//! (replacing every connection that closes, at most `--connect-rate`), and
//! once the run starts does its share of each action rate:
//!
//! * requests on the echo route, open loop, round robin over its open
//!   connections (a connection's requests may overlap);
//! * churn: closes a random connection with a FIN (`--connects`) or a reset
//!   (`--abrupt`); the replacement is a new connection and a new session;
//! * slow readers: a random bound connection stops reading for
//!   `--slow-pause`; for some of them (`--overflow-fraction`) the node is
//!   asked to flood the user meanwhile, which the gate answers by closing
//!   the connection (`overflow`) once its outbound queue is full.
//!
//! A sweep every [`SWEEP`] sends heartbeats (a connection silent for
//! `--heartbeat`), resumes slow readers, times out connects, and counts as
//! lost every question unanswered for `--lost-after` on an open connection.
//! After the run: no more actions, slow readers resume, and the thread waits
//! up to `--drain` for its last answers; what is still unanswered on an open
//! connection then is lost too. Then it closes everything.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use ringgate::codec::PacketOptions;

use super::conn::{Conn, Judge, Stage, LOGIN_SEQ, MAX_EXT};
use super::counts::{bump, ClientCounts};
use super::node::Flood;
use super::pace::{below, chance, Bucket};
use crate::seq::{Pattern, SeqSpace};
use crate::transport::Dialer;
use crate::wire::{self, ReadEnd};
use crate::wsc::MaskRng;

/// How often connections are swept (heartbeats, resumes, time-outs).
pub const SWEEP: Duration = Duration::from_millis(200);

/// A connect (and upgrade) not done after this long failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Random probes for a connection to act on before giving up this turn.
const PROBES: usize = 16;

/// What every client thread is told, read-only.
#[derive(Clone, Debug)]
pub struct ClientPlan {
    /// How connections reach the gate.
    pub dialer: Dialer,
    /// Packet layout.
    pub opts: PacketOptions,
    /// Connections, all threads together.
    pub conns: usize,
    /// Client threads.
    pub threads: usize,
    /// Connects per second at most (ramp and replacements), all threads.
    pub connect_rate: f64,
    /// FIN closes per second, all threads.
    pub churn: f64,
    /// Reset closes per second, all threads.
    pub abrupt: f64,
    /// Requests per second, all threads.
    pub rate: f64,
    /// Slow-reader episodes per second, all threads.
    pub slow_rate: f64,
    /// Fraction of new connections that log in.
    pub bind_fraction: f64,
    /// Fraction of slow readers the node floods.
    pub overflow_fraction: f64,
    /// How long a slow reader stops reading.
    pub slow_pause: Duration,
    /// A connection sends a heartbeat after this long without sending.
    pub heartbeat: Duration,
    /// A question unanswered this long on an open connection is lost.
    pub lost_after: Duration,
    /// After the run: how long to wait for the last answers.
    pub drain: Duration,
    /// Log-in route.
    pub login_route: i32,
    /// Request (echo) route.
    pub route: i32,
    /// Route of the node's pushes.
    pub push_route: i32,
    /// Request payload bytes.
    pub payload: usize,
}

/// What the client threads and the main thread share.
#[derive(Debug, Default)]
pub struct Shared {
    /// Set when the run starts (the connections are up): actions begin.
    pub t0: OnceLock<Instant>,
    /// Set when the run ends: drain, then close.
    pub stop: AtomicBool,
    /// The counters.
    pub counts: ClientCounts,
    /// Error replies per extension code.
    pub errors: [AtomicU64; MAX_EXT],
    /// Connections open now.
    pub open: AtomicU64,
    /// The last uid handed out.
    pub uids: AtomicI64,
}

/// The action buckets of a thread, from the run's start.
struct Buckets {
    requests: Bucket,
    churn: Bucket,
    abrupt: Bucket,
    slow: Bucket,
}

/// How a connection ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// Churn: the client closes with a FIN.
    Graceful,
    /// Churn: the client closes with a reset.
    Abrupt,
    /// The gate closed it.
    ByGate,
    /// An I/O or protocol error on our side.
    Failed,
    /// Still open when the run is over.
    Finished,
}

/// One client thread.
pub struct ClientThread {
    plan: Arc<ClientPlan>,
    shared: Arc<Shared>,
    floods: Sender<Flood>,
    poll: Poll,
    slab: Vec<Option<Conn>>,
    free: Vec<usize>,
    /// Connections this thread keeps open.
    target: usize,
    /// Connections connecting or open.
    live: usize,
    connect: Bucket,
    actions: Option<Buckets>,
    rbuf: BytesMut,
    pattern: Pattern,
    space: SeqSpace,
    rng: MaskRng,
    cursor: usize,
    next_sweep: Instant,
    first_error: bool,
}

impl ClientThread {
    /// Thread `index` of `plan.threads`.
    pub fn new(
        plan: Arc<ClientPlan>,
        shared: Arc<Shared>,
        floods: Sender<Flood>,
        index: usize,
    ) -> io::Result<Self> {
        let target = plan.conns / plan.threads + usize::from(index < plan.conns % plan.threads);
        let now = Instant::now();
        Ok(ClientThread {
            connect: Bucket::new(plan.connect_rate / plan.threads as f64, now),
            pattern: Pattern::new(plan.payload),
            space: SeqSpace::new(plan.opts.seq_bytes),
            poll: Poll::new()?,
            slab: Vec::with_capacity(target),
            free: Vec::new(),
            target,
            live: 0,
            actions: None,
            rbuf: BytesMut::with_capacity(wire::READ_CHUNK),
            rng: MaskRng::new(),
            cursor: 0,
            next_sweep: now,
            first_error: true,
            plan,
            shared,
            floods,
        })
    }

    /// Runs until [`Shared::stop`], drains, closes every connection.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        while !self.shared.stop.load(Ordering::Acquire) {
            let now = Instant::now();
            self.open_more(now);
            if let Some(&t0) = self.shared.t0.get() {
                self.act(t0, now);
            }
            if now >= self.next_sweep {
                self.sweep(now, false);
                self.next_sweep = now + SWEEP;
            }
            self.poll_once(&mut events, Duration::from_millis(5))?;
        }
        self.drain(&mut events)?;
        for j in 0..self.slab.len() {
            self.end(j, End::Finished);
        }
        Ok(())
    }

    fn counts(&self) -> &ClientCounts {
        &self.shared.counts
    }

    /// Starts connects while fewer than the target are live.
    fn open_more(&mut self, now: Instant) {
        self.connect.refill(now);
        while self.live < self.target && self.connect.take() {
            bump(&self.counts().connects, 1);
            let sock = TcpStream::connect(self.plan.dialer.addr);
            let j = self.free.pop().unwrap_or_else(|| {
                self.slab.push(None);
                self.slab.len() - 1
            });
            let registered = sock.and_then(|mut s| {
                self.poll.registry().register(
                    &mut s,
                    Token(j),
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                Ok(s)
            });
            match registered {
                Ok(s) => {
                    self.slab[j] = Some(Conn::connecting(s, self.space, now));
                    self.live += 1;
                }
                Err(_) => {
                    bump(&self.counts().connect_failures, 1);
                    self.free.push(j);
                }
            }
        }
    }

    /// The run's actions due by `now`.
    fn act(&mut self, t0: Instant, now: Instant) {
        let per = |rate: f64| Bucket::new(rate / self.plan.threads as f64, t0);
        let b = self.actions.get_or_insert_with(|| Buckets {
            requests: per(self.plan.rate),
            churn: per(self.plan.churn),
            abrupt: per(self.plan.abrupt),
            slow: per(self.plan.slow_rate),
        });
        for bucket in [&mut b.requests, &mut b.churn, &mut b.abrupt, &mut b.slow] {
            bucket.refill(now);
        }
        let mut b = self.actions.take().expect("just set");
        while b.requests.take() {
            self.request(now);
        }
        while b.churn.take() {
            if let Some(j) = self.pick(false) {
                self.end(j, End::Graceful);
            }
        }
        while b.abrupt.take() {
            if let Some(j) = self.pick(false) {
                self.end(j, End::Abrupt);
            }
        }
        while b.slow.take() {
            if let Some(j) = self.pick(true) {
                self.slow(j, now);
            }
        }
        self.actions = Some(b);
    }

    /// A random ready connection (bound, with `bound`), if a few probes find one.
    fn pick(&mut self, bound: bool) -> Option<usize> {
        if self.slab.is_empty() {
            return None;
        }
        (0..PROBES).find_map(|_| {
            let j = below(&mut self.rng, self.slab.len());
            let c = self.slab[j].as_ref()?;
            (c.ready() && (!bound || c.replies.bound)).then_some(j)
        })
    }

    /// Sends one request on the next open connection that can take one.
    fn request(&mut self, now: Instant) {
        let n = self.slab.len();
        for _ in 0..n {
            let j = self.cursor % n;
            self.cursor = self.cursor.wrapping_add(1);
            let Some(c) = self.slab[j].as_mut() else {
                continue;
            };
            let Stage::Open(stream) = &mut c.stage else {
                continue;
            };
            if !c.replies.inflight.can_issue() {
                continue;
            }
            let (id, seq) = c.replies.inflight.issue(now);
            let payload = self.pattern.payload(id);
            stream
                .encode_data(
                    self.plan.route,
                    seq,
                    payload,
                    &self.plan.opts,
                    &mut c.outbox,
                )
                .expect("route, seq and payload were validated");
            c.last_sent = now;
            bump(&self.shared.counts.requests, 1);
            self.flush(j);
            return;
        }
    }

    /// Connection `j` stops reading; the node may be asked to flood it.
    fn slow(&mut self, j: usize, now: Instant) {
        let (pause, fraction) = (self.plan.slow_pause, self.plan.overflow_fraction);
        let flood = chance(&mut self.rng, fraction);
        let Some(c) = self.slab[j].as_mut() else {
            return;
        };
        let until = now + pause;
        c.paused_until = Some(until);
        bump(&self.shared.counts.slow_episodes, 1);
        if flood {
            let uid = c.replies.uid;
            if self.floods.send(Flood { uid, until }).is_ok() {
                bump(&self.shared.counts.floods_requested, 1);
            }
        }
    }

    /// Waits up to `timeout` for events and handles them.
    fn poll_once(&mut self, events: &mut Events, timeout: Duration) -> io::Result<()> {
        if let Err(e) = self.poll.poll(events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        for event in events.iter() {
            let j = event.token().0;
            let Some(c) = self.slab.get(j).and_then(Option::as_ref) else {
                continue;
            };
            match c.stage {
                Stage::Connecting(_) | Stage::Handshaking(..) => self.step(j),
                Stage::Gone => {}
                Stage::Open(_) => {
                    if c.paused_until.is_none() {
                        self.on_readable(j);
                    }
                    if event.is_writable() {
                        self.flush(j);
                    }
                }
            }
        }
        Ok(())
    }
}

mod io_steps;
