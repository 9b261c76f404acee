//! The client side: one connection's state machine and the event loop of
//! one client thread, shared by `echo` (closed loop), `rate` (open loop) and
//! `idle` (heartbeats only). Thread orchestration is in `runner`.
//!
//! Per wake-up and connection: one read loop that decodes everything
//! buffered, then every new request encoded into the connection's outbox,
//! then one write.

use std::net::SocketAddr;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use ringgate::codec::{self, PacketOptions};

use crate::sched::{Timer, Timetable};
use crate::seq::{InFlight, Pattern, SeqSpace};
use crate::tally::{Report, Tally, ThreadResult};
use crate::wire::{self, ReadEnd};

/// Token of the open-loop timer; connections use their local index.
const TIMER: Token = Token(usize::MAX - 1);

/// An outbox larger than this is freed once written out.
const KEEP_OUTBOX: usize = 256 * 1024;

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
}

/// Everything a client thread needs to know, shared read-only.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Server address; the only one connected to.
    pub addr: SocketAddr,
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
    stream: TcpStream,
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
        })
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

    fn connect_one(&self, j: usize) -> std::io::Result<Conn> {
        let std = std::net::TcpStream::connect_timeout(&self.plan.addr, Duration::from_secs(10))?;
        std.set_nodelay(true)?;
        std.set_nonblocking(true)?;
        let mut stream = TcpStream::from_std(std);
        self.poll
            .registry()
            .register(&mut stream, Token(j), Interest::READABLE)?;
        Ok(Conn {
            stream,
            leftover: Vec::new(),
            outbox: BytesMut::new(),
            inflight: InFlight::new(self.space),
            dirty: false,
            watching_writes: false,
        })
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
            self.await_heartbeats(&mut events, window, end + IDLE_GRACE);
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

    /// After an idle hold: keeps reading until every heartbeat sent has
    /// been answered, or `until` (heartbeats on a connection the server
    /// closed never are).
    fn await_heartbeats(
        &mut self,
        events: &mut Events,
        window: (Instant, Instant),
        until: Instant,
    ) {
        loop {
            let c = &self.tally.counters;
            let now = Instant::now();
            if c.hb_received >= c.hb_sent || now >= until {
                return;
            }
            if self.poll.poll(events, Some(until - now)).is_err() {
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
        let (tally, pattern, route) = (&mut self.tally, &self.pattern, self.plan.route);
        let inflight = &mut conn.inflight;
        let end = wire::read_frames(
            &conn.stream,
            &mut self.rbuf,
            &mut conn.leftover,
            &self.plan.opts,
            |frame| tally.on_frame(frame, inflight, pattern, route, now, window),
        );
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
            codec::encode_data(
                0,
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
            codec::encode_data(
                0,
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
        codec::encode_heartbeat(None, &self.plan.opts, &mut conn.outbox);
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
        if conn.outbox.is_empty() {
            return;
        }
        let result = wire::write_some(&conn.stream, &conn.outbox).and_then(|n| {
            if n == conn.outbox.len() {
                if conn.outbox.capacity() > KEEP_OUTBOX {
                    conn.outbox = BytesMut::new();
                } else {
                    conn.outbox.clear();
                }
            } else {
                let _ = conn.outbox.split_to(n);
            }
            // Writable events only while the outbox is stuck.
            let stuck = !conn.outbox.is_empty();
            if stuck != conn.watching_writes {
                let interest = if stuck {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                self.poll
                    .registry()
                    .reregister(&mut conn.stream, Token(j), interest)?;
                conn.watching_writes = stuck;
            }
            Ok(())
        });
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
            let _ = self.poll.registry().deregister(&mut conn.stream);
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
        let plan = Plan {
            addr: "127.0.0.1:9".parse().unwrap(),
            opts: PacketOptions::default(),
            mode: Mode::Idle,
            route: 1,
            payload: 0,
            conns: 7,
            threads: 3,
            warmup: Duration::ZERO,
            duration: Duration::from_secs(1),
            heartbeat: None,
        };
        assert_eq!(plan.globals(0), [0, 3, 6]);
        assert_eq!(plan.globals(1), [1, 4]);
        assert_eq!(plan.globals(2), [2, 5]);
    }
}
