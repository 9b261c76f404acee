//! One client thread of `connect`: its share of a connection storm. Each
//! attempt opens a non-blocking connection at its scheduled time, sends one
//! request as soon as the handshake completes, waits for the reply, then
//! closes (or, with `hold`, keeps the connection until every thread is done).
//!
//! ```text
//!  attempt g   due ─ connect() ─ writable ─ [TLS, upgrade ─ 101] ─ send ─ reply ─ close | hold
//!              │     connect_us ┘            handshake_us ┘              │
//!              └──────────────── first_reply_us ─────────────────────────┘
//! ```
//!
//! With `--transport ws|wss` the handshake (TLS, then the WebSocket upgrade
//! until the `101` is checked) runs between the connect and the request.
//!
//! With a rate, latencies run from the attempt's *scheduled* start, so a
//! client that falls behind its schedule shows it instead of hiding it;
//! without one (all attempts due at once), from its `connect()` call.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use ringgate::codec::{Frame, PacketOptions};

use crate::report::{histogram, record};
use crate::sched::Timer;
use crate::seq::{Pattern, SeqSpace};
use crate::transport::{Dialer, Handshake, Stream, Transport};
use crate::wire::ReadEnd;

/// Token of the pacing timer; attempts use their local index.
const TIMER: Token = Token(usize::MAX - 1);
/// Attempts started per loop turn before events are looked at again.
const START_BURST: usize = 16;
/// How often attempts are checked against `--timeout`.
const TIMEOUT_CHECK: Duration = Duration::from_millis(50);

/// What every storm thread shares, read-only.
#[derive(Clone, Debug)]
pub struct StormPlan {
    /// Server address; the only one connected to.
    pub addr: SocketAddr,
    /// The transport (tcp, ws, wss).
    pub dialer: Dialer,
    /// Packet layout.
    pub opts: PacketOptions,
    /// Attempts, all threads together.
    pub conns: usize,
    /// Client threads.
    pub threads: usize,
    /// Attempts per second, all threads together; 0: as fast as possible.
    pub rate: u64,
    /// Route of every request.
    pub route: i32,
    /// Payload bytes of every request.
    pub payload: usize,
    /// Keep each connection open after its reply until all are done.
    pub hold: bool,
    /// Close with a reset (`SO_LINGER` 0) instead of a FIN.
    pub reset: bool,
    /// An attempt without a reply after this long failed.
    pub timeout: Duration,
}

impl StormPlan {
    /// When global attempt `g` is due, relative to the start.
    pub fn due(&self, g: u64) -> Duration {
        if self.rate == 0 {
            Duration::ZERO
        } else {
            Duration::from_nanos(
                u64::try_from(u128::from(g) * 1_000_000_000 / u128::from(self.rate))
                    .unwrap_or(u64::MAX),
            )
        }
    }
}

/// Live totals the main thread prints once per second.
#[derive(Debug, Default)]
pub struct Live {
    /// Attempts started.
    pub started: AtomicU64,
    /// Attempts answered.
    pub replied: AtomicU64,
    /// Attempts failed.
    pub failed: AtomicU64,
}

/// How one thread's attempts ended.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StormCounts {
    /// Answered with the right reply.
    pub replied: u64,
    /// The connection could not be established (refused, reset, unreachable).
    pub connect_errors: u64,
    /// No reply within the timeout (in the handshake or after the request).
    pub timeouts: u64,
    /// Closed by the server before the reply.
    pub closed: u64,
    /// Answered with an error reply (header ext ≠ 0).
    pub errors: u64,
    /// Answered with a wrong route, seq or payload.
    pub mismatches: u64,
    /// TLS or WebSocket upgrades completed (ws, wss).
    pub handshakes: u64,
    /// TLS or WebSocket upgrades that failed (refused, bad answer, TLS error).
    pub handshake_errors: u64,
}

impl StormCounts {
    /// Adds `o` to `self`.
    pub fn add(&mut self, o: &StormCounts) {
        self.replied += o.replied;
        self.connect_errors += o.connect_errors;
        self.timeouts += o.timeouts;
        self.closed += o.closed;
        self.errors += o.errors;
        self.mismatches += o.mismatches;
        self.handshakes += o.handshakes;
        self.handshake_errors += o.handshake_errors;
    }

    /// Every attempt that did not get its reply.
    pub fn failures(&self) -> u64 {
        self.connect_errors
            + self.handshake_errors
            + self.timeouts
            + self.closed
            + self.errors
            + self.mismatches
    }
}

/// One thread's results.
#[derive(Debug)]
pub struct StormResult {
    /// Outcome counts.
    pub counts: StormCounts,
    /// Scheduled start → TCP handshake complete, µs.
    pub connect: Histogram<u64>,
    /// Scheduled start → `101` checked (ws, wss), µs.
    pub handshake: Histogram<u64>,
    /// Scheduled start → reply, µs.
    pub first_reply: Histogram<u64>,
    /// When this thread's last attempt ended.
    pub last_end: Option<Instant>,
    /// Connections held open at the end (`hold`).
    pub held: u64,
}

/// Where an attempt stands.
#[derive(Debug)]
enum Stage {
    /// Not started yet.
    Waiting,
    /// TCP handshake under way.
    Connecting(TcpStream),
    /// TLS handshake and WebSocket upgrade under way (ws, wss).
    Handshaking(Stream, Box<Handshake>),
    /// Request sent (or part of it); waiting for the reply.
    Awaiting(Stream),
    /// Replied and held open.
    Held(Stream),
    /// Over (replied and closed, or failed).
    Over,
}

/// One attempt.
#[derive(Debug)]
struct Attempt {
    /// Global index (seq and payload are derived from it).
    g: u64,
    /// Scheduled start.
    due: Instant,
    stage: Stage,
    leftover: Vec<u8>,
    /// Request bytes the socket did not take yet.
    unsent: Vec<u8>,
}

/// What a reply said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// The right reply.
    Replied,
    /// An error reply (header ext ≠ 0).
    Error,
    /// Wrong route, seq or payload.
    Mismatch,
}

/// Per-thread scratch state shared by every attempt's steps.
struct Ctx<'a> {
    plan: &'a StormPlan,
    live: &'a Live,
    space: SeqSpace,
    pattern: Pattern,
    rbuf: BytesMut,
    wbuf: BytesMut,
    r: StormResult,
}

/// Runs thread `index`'s attempts from `t0` on. Once each one has ended,
/// calls `before_close` (with `hold`, the held connections are still open
/// then) and returns.
pub fn run(
    plan: &StormPlan,
    index: usize,
    t0: Instant,
    live: &Live,
    before_close: impl FnOnce(),
) -> std::io::Result<StormResult> {
    let mut attempts: Vec<Attempt> = (index..plan.conns)
        .step_by(plan.threads)
        .map(|g| Attempt {
            g: g as u64,
            due: t0 + plan.due(g as u64),
            stage: Stage::Waiting,
            leftover: Vec::new(),
            unsent: Vec::new(),
        })
        .collect();
    let mut poll = Poll::new()?;
    let mut timer = Timer::new()?;
    let timer_fd = std::os::fd::AsRawFd::as_raw_fd(&timer);
    poll.registry()
        .register(&mut SourceFd(&timer_fd), TIMER, Interest::READABLE)?;
    let mut events = Events::with_capacity(1024);
    let mut cx = Ctx {
        plan,
        live,
        space: SeqSpace::new(plan.opts.seq_bytes),
        pattern: Pattern::new(plan.payload),
        rbuf: BytesMut::new(),
        wbuf: BytesMut::new(),
        r: StormResult {
            counts: StormCounts::default(),
            connect: histogram(),
            handshake: histogram(),
            first_reply: histogram(),
            last_end: None,
            held: 0,
        },
    };
    // `next`: first attempt not started; `busy`: attempts connecting or awaiting.
    let (mut next, mut busy) = (0usize, 0usize);
    let mut next_check = Instant::now() + TIMEOUT_CHECK;
    while next < attempts.len() || busy > 0 {
        let now = Instant::now();
        let mut burst = 0;
        while next < attempts.len() && attempts[next].due <= now && burst < START_BURST {
            let a = &mut attempts[next];
            live.started.fetch_add(1, Ordering::Relaxed);
            if plan.rate == 0 {
                // No schedule: latency runs from the connect() call.
                a.due = Instant::now();
            }
            match TcpStream::connect(plan.addr) {
                Ok(mut s) => {
                    poll.registry().register(
                        &mut s,
                        Token(next),
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    a.stage = Stage::Connecting(s);
                    busy += 1;
                }
                Err(_) => {
                    cx.r.counts.connect_errors += 1;
                    cx.end(a, None);
                }
            }
            next += 1;
            burst += 1;
        }
        let now = Instant::now();
        let timeout = match attempts.get(next) {
            Some(a) if a.due <= now => Duration::ZERO,
            Some(a) => {
                timer.arm(a.due, now)?;
                next_check.saturating_duration_since(now)
            }
            None => next_check.saturating_duration_since(now),
        };
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        for event in events.iter() {
            if event.token() == TIMER {
                timer.clear();
                continue;
            }
            let a = &mut attempts[event.token().0];
            let was_busy = a.busy();
            cx.step(a);
            if was_busy && !a.busy() {
                busy -= 1;
            }
        }
        let now = Instant::now();
        if now >= next_check {
            next_check = now + TIMEOUT_CHECK;
            for a in attempts[..next].iter_mut() {
                if a.busy() && now.duration_since(a.due) > plan.timeout {
                    busy -= 1;
                    cx.r.counts.timeouts += 1;
                    cx.end(a, None);
                }
            }
        }
    }
    cx.r.held = attempts
        .iter()
        .filter(|a| matches!(a.stage, Stage::Held(_)))
        .count() as u64;
    before_close();
    if plan.reset {
        attempts.iter().for_each(|a| a.reset());
    }
    Ok(cx.r)
}

impl Attempt {
    /// Connecting or awaiting its reply.
    fn busy(&self) -> bool {
        matches!(
            self.stage,
            Stage::Connecting(_) | Stage::Handshaking(..) | Stage::Awaiting(_)
        )
    }

    /// Makes the coming close a reset: no TIME_WAIT left behind, so repeated
    /// storms do not run out of ephemeral ports.
    fn reset(&self) {
        let sock = match &self.stage {
            Stage::Connecting(s) => s,
            Stage::Handshaking(s, _) | Stage::Awaiting(s) | Stage::Held(s) => &s.sock,
            Stage::Waiting | Stage::Over => return,
        };
        let _ = socket2::SockRef::from(sock).set_linger(Some(Duration::ZERO));
    }
}

impl Ctx<'_> {
    /// Advances attempt `a` on a readiness event.
    fn step(&mut self, a: &mut Attempt) {
        if let Stage::Connecting(s) = &a.stage {
            if !matches!(s.take_error(), Ok(None)) {
                self.r.counts.connect_errors += 1;
                return self.end(a, None);
            }
            match s.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotConnected => return,
                Err(_) => {
                    self.r.counts.connect_errors += 1;
                    return self.end(a, None);
                }
            }
            record(&mut self.r.connect, a.due.elapsed());
            let _ = s.set_nodelay(true);
            let Stage::Connecting(s) = std::mem::replace(&mut a.stage, Stage::Over) else {
                unreachable!("checked above")
            };
            match self.plan.dialer.stream(s) {
                Ok((stream, hs)) => a.stage = Stage::Handshaking(stream, Box::new(hs)),
                Err(_) => {
                    self.r.counts.handshake_errors += 1;
                    return self.end(a, None);
                }
            }
        }
        if let Stage::Handshaking(stream, hs) = &mut a.stage {
            match stream.handshake(hs, &mut a.leftover) {
                Ok(true) => {}
                Ok(false) => return,
                Err(_) => {
                    self.r.counts.handshake_errors += 1;
                    return self.end(a, None);
                }
            }
            if self.plan.dialer.transport != Transport::Tcp {
                record(&mut self.r.handshake, a.due.elapsed());
                self.r.counts.handshakes += 1;
            }
            self.wbuf.clear();
            let (route, seq) = (self.plan.route, self.space.wire(a.g));
            let payload = self.pattern.payload(a.g);
            // `connect::run` checked the payload against `buffer_bytes`.
            let _ = stream.encode_data(route, seq, payload, &self.plan.opts, &mut self.wbuf);
            a.unsent = self.wbuf.to_vec();
            let Stage::Handshaking(stream, _) = std::mem::replace(&mut a.stage, Stage::Over) else {
                unreachable!("checked above")
            };
            a.stage = Stage::Awaiting(stream);
        }
        let Stage::Awaiting(s) = &mut a.stage else {
            // Held: nothing more to do (a close by the server is not counted).
            return;
        };
        if !a.unsent.is_empty() || s.wants_write() {
            match s.write(&a.unsent) {
                Ok(n) => drop(a.unsent.drain(..n)),
                Err(_) => {
                    self.r.counts.closed += 1;
                    return self.end(a, None);
                }
            }
        }
        let (plan, space, pattern, g) = (self.plan, self.space, &self.pattern, a.g);
        let mut verdict = None;
        self.wbuf.clear();
        let ended = s.read_frames(
            &mut self.rbuf,
            &mut a.leftover,
            &plan.opts,
            &mut self.wbuf,
            |f| {
                let Frame::Data(p) = f else { return };
                verdict.get_or_insert(if p.ext != 0 {
                    Verdict::Error
                } else if p.route != plan.route
                    || !space.matches(g, p.seq)
                    || p.payload[..] != pattern.payload(g)[..]
                {
                    Verdict::Mismatch
                } else {
                    Verdict::Replied
                });
            },
        );
        if !self.wbuf.is_empty() {
            // Pongs owed to the server.
            let _ = s.write(&self.wbuf);
        }
        match (verdict, ended) {
            (Some(v), _) => self.end(a, Some(v)),
            (None, ReadEnd::Drained) => {}
            (None, _) => {
                self.r.counts.closed += 1;
                self.end(a, None);
            }
        }
    }

    /// Ends attempt `a` with a reply (`verdict`) or a failure counted by
    /// the caller (`None`). A right reply under `hold` keeps the socket.
    fn end(&mut self, a: &mut Attempt, verdict: Option<Verdict>) {
        let now = Instant::now();
        self.r.last_end = Some(now);
        a.leftover = Vec::new();
        a.unsent = Vec::new();
        match verdict {
            Some(Verdict::Replied) => {
                self.r.counts.replied += 1;
                self.live.replied.fetch_add(1, Ordering::Relaxed);
                record(&mut self.r.first_reply, now.duration_since(a.due));
                if self.plan.hold {
                    if let Stage::Awaiting(s) = std::mem::replace(&mut a.stage, Stage::Over) {
                        a.stage = Stage::Held(s);
                    }
                    return;
                }
            }
            Some(Verdict::Error) => self.r.counts.errors += 1,
            Some(Verdict::Mismatch) => self.r.counts.mismatches += 1,
            None => {}
        }
        if verdict != Some(Verdict::Replied) {
            self.live.failed.fetch_add(1, Ordering::Relaxed);
        }
        if self.plan.reset {
            a.reset();
        }
        a.stage = Stage::Over;
    }
}
