//! The client side: one connection's state machine and the event loop of
//! one client thread, shared by `echo` (closed loop), `rate` (open loop),
//! `idle` (heartbeats only) and `push` / `broadcast` (log in, then receive).
//! Thread orchestration is in `runner`; the transport (tcp, ws, wss) in
//! `transport`.
//!
//! Per wake-up and connection: one read loop that decodes everything
//! buffered, then every new request encoded into the connection's outbox,
//! then one write.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use ringgate::codec::{Frame, PacketOptions};

use crate::sched::{Timer, Timetable};
use crate::seq::{InFlight, Pattern, SeqSpace};
use crate::tally::{Feed, Report, SeqTrack, Tally, ThreadResult};
use crate::transport::{Dialer, Stream};
use crate::wire::{self, ReadEnd};

/// Token of the open-loop timer; connections use their local index.
const TIMER: Token = Token(usize::MAX - 1);

/// How long `idle` waits for the last heartbeat answers after the hold.
const IDLE_GRACE: Duration = Duration::from_secs(1);

/// Open-loop sends handled per wake-up before reading again.
const RATE_BUDGET: usize = 4096;

/// What the connections do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Closed loop: keep `depth` requests in flight per connection.
    Echo {
        /// Requests in flight per connection.
        depth: usize,
    },
    /// Open loop: `rps` requests per second over all connections, each on
    /// its own schedule whatever the responses do.
    Rate {
        /// Target requests per second, all connections together.
        rps: u64,
    },
    /// No requests: heartbeats only.
    Idle,
    /// No requests: receive what the server pushes (`push`, `broadcast`).
    Listen,
}

/// Logging in before the run (`push`, `broadcast`): connection `g` sends
/// its uid `g + 1` in decimal on `route` and waits for `ok`.
#[derive(Clone, Copy, Debug)]
pub struct Login {
    /// Route of the login request.
    pub route: i32,
    /// How long all logins of a thread may take.
    pub timeout: Duration,
}

/// What the receiving connections of [`Mode::Listen`] check.
#[derive(Clone, Debug)]
pub struct Receive {
    /// Route of the pushed packets.
    pub route: i32,
    /// Time zero of the timestamps in the pushed payloads.
    pub epoch: Instant,
    /// Totals shared with the sending side.
    pub feed: Arc<Feed>,
    /// How long to wait after the window for the last deliveries.
    pub drain: Duration,
}

/// Everything a client thread needs to know, shared read-only.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Server address; the only one connected to.
    pub addr: SocketAddr,
    /// How connections reach it (tcp, ws, wss).
    pub dialer: Dialer,
    /// Packet layout.
    pub opts: PacketOptions,
    /// Closed loop, open loop or idle.
    pub mode: Mode,
    /// Route of every request.
    pub route: i32,
    /// Payload bytes of every request.
    pub payload: usize,
    /// Connections, all threads together.
    pub conns: usize,
    /// Client threads.
    pub threads: usize,
    /// Warm-up: run but do not record.
    pub warmup: Duration,
    /// Measured window after the warm-up.
    pub duration: Duration,
    /// Heartbeat period per connection; `None`: no heartbeats.
    pub heartbeat: Option<Duration>,
    /// Log every connection in before the start.
    pub login: Option<Login>,
    /// [`Mode::Listen`]: what is received.
    pub receive: Option<Receive>,
}

impl Plan {
    /// Global indexes of thread `index`'s connections (round robin).
    pub fn globals(&self, index: usize) -> Vec<u64> {
        (index..self.conns)
            .step_by(self.threads)
            .map(|g| g as u64)
            .collect()
    }
}

/// One client connection.
#[derive(Debug)]
struct Conn {
    stream: Stream,
    /// Partial frame left from the last read.
    leftover: Vec<u8>,
    /// Encoded bytes not yet written.
    outbox: BytesMut,
    inflight: InFlight,
    /// Queued for a flush at the end of this wake-up.
    dirty: bool,
    /// Registered for writable events (only while the outbox is stuck).
    watching_writes: bool,
}

/// Where a connection's login stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LoginState {
    Waiting,
    Done,
}

/// One client thread: its poll, its connections and their schedules.
pub struct Worker {
    plan: std::sync::Arc<Plan>,
    poll: Poll,
    conns: Vec<Option<Conn>>,
    globals: Vec<u64>,
    open: u64,
    rbuf: BytesMut,
    pattern: Pattern,
    space: SeqSpace,
    tally: Tally,
    dirty: Vec<usize>,
    timer: Option<Timer>,
    /// Seqs of pushed packets per connection ([`Mode::Listen`] only: kept
    /// out of [`Conn`] so the request scenarios' connections stay small).
    tracks: Vec<SeqTrack>,
}

impl Worker {
    /// A worker for thread `index`; fails only if epoll or timerfd does.
    pub fn new(plan: std::sync::Arc<Plan>, index: usize) -> std::io::Result<Self> {
        let poll = Poll::new()?;
        let timer = match plan.mode {
            Mode::Rate { .. } => {
                let timer = Timer::new()?;
                let fd = std::os::fd::AsRawFd::as_raw_fd(&timer);
                poll.registry()
                    .register(&mut SourceFd(&fd), TIMER, Interest::READABLE)?;
                Some(timer)
            }
            _ => None,
        };
        Ok(Worker {
            globals: plan.globals(index),
            pattern: Pattern::new(plan.payload),
            space: SeqSpace::new(plan.opts.seq_bytes),
            plan,
            poll,
            conns: Vec::new(),
            open: 0,
            rbuf: BytesMut::with_capacity(wire::READ_CHUNK),
            tally: Tally::default(),
            dirty: Vec::new(),
            timer,
            tracks: Vec::new(),
        })
    }

    /// The plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Opens this thread's connections one by one, pausing after every
    /// `batch` so the server's accept backlog never overflows. Returns the
    /// failures and the first error.
    pub fn connect(&mut self, batch: usize, pause: Duration) -> (usize, Option<String>) {
        let (mut failures, mut first) = (0, None);
        for j in 0..self.globals.len() {
            if j > 0 && j % batch.max(1) == 0 {
                std::thread::sleep(pause);
            }
            match self.connect_one(j) {
                Ok(conn) => {
                    self.conns.push(Some(conn));
                    self.open += 1;
                }
                Err(e) => {
                    failures += 1;
                    first.get_or_insert_with(|| e.to_string());
                    self.conns.push(None);
                }
            }
        }
        (failures, first)
    }

    /// Connects connection `j` and runs its transport's handshake (TLS,
    /// WebSocket upgrade) to the end, blocking: set-up is not measured.
    fn connect_one(&self, j: usize) -> std::io::Result<Conn> {
        let (mut stream, leftover) = self.plan.dialer.connect_blocking(Duration::from_secs(10))?;
        self.poll
            .registry()
            .register(&mut stream.sock, Token(j), Interest::READABLE)?;
        Ok(Conn {
            stream,
            leftover,
            outbox: BytesMut::new(),
            inflight: InFlight::new(self.space),
            dirty: false,
            watching_writes: false,
        })
    }

    /// Logs every open connection in: connection `g` sends its uid `g + 1`
    /// on `login.route` and must get `ok` back. A connection refused, closed
    /// or unanswered within the timeout is closed and counted as a failure.
    pub fn login(&mut self, login: Login) -> (usize, Option<String>) {
        let opts = self.plan.opts;
        let n = self.conns.len();
        let mut state = vec![LoginState::Done; n];
        let mut waiting = 0;
        for (j, st) in state.iter_mut().enumerate() {
            let uid = self.globals[j] + 1;
            let Some(conn) = self.conns[j].as_mut() else {
                continue;
            };
            let payload = uid.to_string();
            if conn
                .stream
                .encode_data(login.route, 1, payload.as_bytes(), &opts, &mut conn.outbox)
                .is_ok()
            {
                *st = LoginState::Waiting;
                waiting += 1;
            }
            self.flush(j);
        }
        let (mut failures, mut first) = (0, None::<String>);
        let mut fail = |w: &mut Worker, j: usize, why: String, failures: &mut usize| {
            if let Some(mut conn) = w.conns.get_mut(j).and_then(Option::take) {
                let _ = w.poll.registry().deregister(&mut conn.stream.sock);
                w.open -= 1;
            }
            *failures += 1;
            first.get_or_insert(why);
        };
        let deadline = Instant::now() + login.timeout;
        let mut events = Events::with_capacity(1024);
        while waiting > 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if let Err(e) = self.poll.poll(&mut events, Some(deadline - now)) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    break;
                }
            }
            let ready: Vec<usize> = events
                .iter()
                .map(|e| e.token().0)
                .filter(|&j| j < n)
                .collect();
            for j in ready {
                if state[j] != LoginState::Waiting {
                    self.flush(j);
                    continue;
                }
                let uid = self.globals[j] + 1;
                let mut verdict: Option<Result<(), String>> = None;
                let end = self.read_conn(j, |frame| {
                    let Frame::Data(p) = frame else { return };
                    if verdict.is_some() || p.route != login.route {
                        return;
                    }
                    verdict = Some(if p.ext != 0 {
                        Err(format!(
                            "login of uid {uid}: error reply ext {} on route {} (does a node serve it?)",
                            p.ext, login.route
                        ))
                    } else if &p.payload[..] == b"ok" {
                        Ok(())
                    } else {
                        Err(format!(
                            "login of uid {uid} refused: {}",
                            String::from_utf8_lossy(&p.payload)
                        ))
                    });
                });
                match (verdict, end) {
                    (Some(Ok(())), ReadEnd::Drained) => {
                        state[j] = LoginState::Done;
                        waiting -= 1;
                        self.flush(j);
                    }
                    (Some(Err(why)), _) => {
                        state[j] = LoginState::Done;
                        waiting -= 1;
                        fail(self, j, why, &mut failures);
                    }
                    (_, ReadEnd::Drained) => self.flush(j),
                    (_, end) => {
                        state[j] = LoginState::Done;
                        waiting -= 1;
                        fail(
                            self,
                            j,
                            format!("uid {uid}: connection ended during login: {end:?}"),
                            &mut failures,
                        );
                    }
                }
            }
        }
        for (j, s) in state.iter().enumerate() {
            if *s == LoginState::Waiting {
                let uid = self.globals[j] + 1;
                fail(
                    self,
                    j,
                    format!("login of uid {uid}: no answer within {:?}", login.timeout),
                    &mut failures,
                );
            }
        }
        (failures, first)
    }

    /// Reads connection `j`, calling `f` for each frame; pongs owed to the
    /// server go into its outbox.
    fn read_conn(&mut self, j: usize, f: impl FnMut(Frame)) -> ReadEnd {
        let Some(conn) = self.conns.get_mut(j).and_then(Option::as_mut) else {
            return ReadEnd::Closed;
        };
        conn.stream.read_frames(
            &mut self.rbuf,
            &mut conn.leftover,
            &self.plan.opts,
            &mut conn.outbox,
            f,
        )
    }

    /// Runs the scenario from `t0` until the window ends, sending a
    /// [`Report::Tick`] every second and [`Report::Done`] at the end.
    pub fn run(&mut self, t0: Instant, reports: &Sender<Report>) -> ThreadResult {
        let plan = self.plan.clone();
        let warm_end = t0 + plan.warmup;
        let end = warm_end + plan.duration;
        let window = (warm_end, end);
        let n = self.conns.len();
        let mut heartbeats = plan.heartbeat.map(|p| Timetable::even(t0, p, n));
        let mut requests = match plan.mode {
            Mode::Rate { rps } if rps > 0 => Some(Timetable::new(
                t0,
                Duration::from_secs_f64(plan.conns as f64 / rps as f64),
                self.globals.clone(),
                plan.conns as u64,
            )),
            _ => None,
        };
        if let Mode::Echo { depth } = plan.mode {
            for j in 0..n {
                self.refill(j, depth, Instant::now());
                self.flush(j);
            }
        }
        let mut events = Events::with_capacity(1024);
        let mut next_tick = t0 + Duration::from_secs(1);
        let mut t = 1;
        loop {
            let now = Instant::now();
            let mut wake = next_tick.min(end);
            if let Some(due) = heartbeats.as_ref().and_then(Timetable::next_due) {
                wake = wake.min(due);
            }
            if let (Some(due), Some(timer)) = (
                requests.as_ref().and_then(Timetable::next_due),
                self.timer.as_mut(),
            ) {
                let _ = timer.arm(due, now);
            }
            let timeout = wake.saturating_duration_since(now);
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    eprintln!("poll failed: {e}");
                    break;
                }
            }
            for event in events.iter() {
                if event.token() == TIMER {
                    if let Some(timer) = self.timer.as_mut() {
                        timer.clear();
                    }
                    continue;
                }
                let j = event.token().0;
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.on_readable(j, window);
                }
                if event.is_writable() {
                    self.flush(j);
                }
            }
            let now = Instant::now();
            if let Some(table) = requests.as_mut() {
                self.send_due(table, now.min(end));
            }
            if let Some(table) = heartbeats.as_mut().filter(|_| now < end) {
                while let Some((j, _)) = table.pop_due(now) {
                    self.heartbeat(j);
                }
            }
            self.flush_dirty();
            while now >= next_tick && next_tick <= end {
                self.tick(t, reports);
                t += 1;
                next_tick += Duration::from_secs(1);
            }
            if now >= end {
                break;
            }
        }
        if plan.mode == Mode::Idle {
            self.linger(&mut events, window, end + IDLE_GRACE, |w| {
                let c = &w.tally.counters;
                c.hb_received >= c.hb_sent
            });
        }
        if let Some(rx) = plan.receive.as_ref() {
            // The last pushes are still on their way: wait until every one
            // sent was delivered (over all threads) or the drain time is up.
            let feed = rx.feed.clone();
            self.linger(&mut events, window, end + rx.drain, move |_| {
                feed.done.load(Ordering::Acquire)
                    && feed.delivered.load(Ordering::Relaxed) >= feed.sent.load(Ordering::Relaxed)
            });
        }
        let _ = reports.send(Report::Done);
        ThreadResult {
            counters: self.tally.counters,
            hist: self.tally.hist.clone(),
            outstanding: self
                .conns
                .iter()
                .flatten()
                .map(|c| c.inflight.len() as u64)
                .sum(),
            open: self.open,
        }
    }

    /// After the window: keeps reading until `done` holds or `until` (an
    /// idle hold waits for its last heartbeat answers; heartbeats on a
    /// connection the server closed never are). Checks `done` at least
    /// every 10 ms, as it may depend on other threads.
    fn linger(
        &mut self,
        events: &mut Events,
        window: (Instant, Instant),
        until: Instant,
        done: impl Fn(&Worker) -> bool,
    ) {
        loop {
            let now = Instant::now();
            if done(self) || now >= until {
                return;
            }
            let wait = (until - now).min(Duration::from_millis(10));
            if self.poll.poll(events, Some(wait)).is_err() {
                return;
            }
            let ready: Vec<usize> = events.iter().map(|e| e.token().0).collect();
            for j in ready {
                if j != TIMER.0 {
                    self.on_readable(j, window);
                }
            }
        }
    }

    /// Reads and handles everything connection `j` received; the closed
    /// loop then sends as many new requests as were answered.
    fn on_readable(&mut self, j: usize, window: (Instant, Instant)) {
        let Some(conn) = self.conns.get_mut(j).and_then(Option::as_mut) else {
            return;
        };
        let now = Instant::now();
        let tally = &mut self.tally;
        let end = if let Some(rx) = self.plan.receive.as_ref() {
            if self.tracks.len() <= j {
                self.tracks.resize(j + 1, SeqTrack::default());
            }
            let track = &mut self.tracks[j];
            let mut fresh = 0;
            let end = conn.stream.read_frames(
                &mut self.rbuf,
                &mut conn.leftover,
                &self.plan.opts,
                &mut conn.outbox,
                |frame| {
                    fresh +=
                        u64::from(tally.on_delivery(frame, track, rx.route, rx.epoch, now, window))
                },
            );
            if fresh > 0 {
                rx.feed.delivered.fetch_add(fresh, Ordering::Relaxed);
            }
            end
        } else {
            let (pattern, route) = (&self.pattern, self.plan.route);
            let inflight = &mut conn.inflight;
            conn.stream.read_frames(
                &mut self.rbuf,
                &mut conn.leftover,
                &self.plan.opts,
                &mut conn.outbox,
                |frame| tally.on_frame(frame, inflight, pattern, route, now, window),
            )
        };
        match end {
            ReadEnd::Drained => {}
            ReadEnd::Closed => return self.close(j, false),
            ReadEnd::Io(e) => {
                eprintln!("read error: {e}");
                return self.close(j, true);
            }
            ReadEnd::Codec(e) => {
                eprintln!("bad packet from server: {e}");
                return self.close(j, true);
            }
            ReadEnd::Protocol(e) => {
                eprintln!("{e}");
                return self.close(j, true);
            }
        }
        if let Mode::Echo { depth } = self.plan.mode {
            if now < window.1 {
                self.refill(j, depth, now);
            }
        }
        self.flush(j);
    }

    /// Tops connection `j` up to `depth` requests in flight, sent at `now`.
    fn refill(&mut self, j: usize, depth: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(j).and_then(Option::as_mut) else {
            return;
        };
        while conn.inflight.len() < depth && conn.inflight.can_issue() {
            let (id, seq) = conn.inflight.issue(now);
            let payload = self.pattern.payload(id);
            conn.stream
                .encode_data(
                    self.plan.route,
                    seq,
                    payload,
                    &self.plan.opts,
                    &mut conn.outbox,
                )
                .expect("route, seq and payload were validated");
            self.tally.counters.sent += 1;
        }
    }

    /// Queues every open-loop request due by `now` (at most a budget).
    fn send_due(&mut self, table: &mut Timetable, now: Instant) {
        for _ in 0..RATE_BUDGET {
            let Some((j, intended)) = table.pop_due(now) else {
                return;
            };
            let Some(conn) = self.conns.get_mut(j).and_then(Option::as_mut) else {
                continue;
            };
            if !conn.inflight.can_issue() {
                self.tally.counters.unsent += 1;
                continue;
            }
            let (id, seq) = conn.inflight.issue(intended);
            let payload = self.pattern.payload(id);
            conn.stream
                .encode_data(
                    self.plan.route,
                    seq,
                    payload,
                    &self.plan.opts,
                    &mut conn.outbox,
                )
                .expect("route, seq and payload were validated");
            self.tally.counters.sent += 1;
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(j);
            }
        }
    }

    /// Queues a heartbeat on connection `j`.
    fn heartbeat(&mut self, j: usize) {
        let Some(conn) = self.conns.get_mut(j).and_then(Option::as_mut) else {
            return;
        };
        conn.stream
            .encode_heartbeat(&self.plan.opts, &mut conn.outbox);
        self.tally.counters.hb_sent += 1;
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(j);
        }
    }

    fn flush_dirty(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        for &j in &dirty {
            if let Some(conn) = self.conns.get_mut(j).and_then(Option::as_mut) {
                conn.dirty = false;
            }
            self.flush(j);
        }
        self.dirty = dirty;
        self.dirty.clear();
    }

    /// Writes as much of connection `j`'s outbox as the socket takes.
    fn flush(&mut self, j: usize) {
        let Some(conn) = self.conns.get_mut(j).and_then(Option::as_mut) else {
            return;
        };
        if conn.outbox.is_empty() && !conn.stream.wants_write() {
            return;
        }
        let result = conn.stream.flush_outbox(
            &mut conn.outbox,
            self.poll.registry(),
            Token(j),
            &mut conn.watching_writes,
        );
        match result {
            Ok(()) => {}
            Err(e) if wire::is_reset(&e) => self.close(j, false),
            Err(e) => {
                eprintln!("write error: {e}");
                self.close(j, true);
            }
        }
    }

    /// Drops connection `j`: closed by the server, or failed on our side.
    fn close(&mut self, j: usize, failed: bool) {
        if let Some(mut conn) = self.conns.get_mut(j).and_then(Option::take) {
            let _ = self.poll.registry().deregister(&mut conn.stream.sock);
            self.open -= 1;
            if failed {
                self.tally.counters.failed += 1;
            } else {
                self.tally.counters.closed += 1;
            }
        }
    }

    fn tick(&mut self, t: u64, reports: &Sender<Report>) {
        let _ = reports.send(self.tally.end_second(t, self.open));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_dealt_round_robin() {
        let addr = "127.0.0.1:9".parse().unwrap();
        let plan = Plan {
            addr,
            dialer: Dialer::tcp(addr),
            opts: PacketOptions::default(),
            mode: Mode::Idle,
            route: 1,
            payload: 0,
            conns: 7,
            threads: 3,
            warmup: Duration::ZERO,
            duration: Duration::from_secs(1),
            heartbeat: None,
            login: None,
            receive: None,
        };
        assert_eq!(plan.globals(0), [0, 3, 6]);
        assert_eq!(plan.globals(1), [1, 4]);
        assert_eq!(plan.globals(2), [2, 5]);
    }
}
