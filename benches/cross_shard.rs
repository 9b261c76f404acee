//! What does one cross-shard hop cost, including waking a parked shard, and
//! which bounded channel should carry cross-shard messages?
//!
//! ```text
//! cargo bench --bench cross_shard               # ~17 s (3 interleaved rounds)
//! cargo bench --bench cross_shard -- --quick    # ~3 s (or RINGGATE_BENCH_QUICK=1)
//! cargo test --benches                          # smoke run, well under a second
//! ```
//!
//! Two threads pinned to cores 0 and 1 play two shards. Each owns an io_uring
//! built like a shard's (`SINGLE_ISSUER | DEFER_TASKRUN`) with a `Read` of its
//! own eventfd armed, and parks the way a shard does: `submit_with_args(1,
//! timeout)`. Every message is a `(u64, Bytes)`: a stamp or sequence number
//! and a clone of a 64-byte pre-encoded packet.
//!
//! Wake protocol (the one ringgate uses), identical for every channel:
//!
//! ```text
//! receiver: parked = true (SeqCst); if queues empty { wait in the ring }; parked = false;
//!           drain everything with try_recv; re-arm the eventfd read
//! sender:   push; if parked.swap(false) (SeqCst) { write(eventfd, 1) }
//! ```
//!
//! Channels: `flume::bounded`, `crossbeam_channel::bounded`, and a minimal
//! hand-written bounded SPSC ring (one per sender/receiver pair), all of
//! capacity `CAPACITY`.
//!
//! Scenarios:
//!
//! * `pingpong+park` — A sends one message to B, B (parked) wakes and replies,
//!   A (parked meanwhile) wakes. Hop = sender's clock before the push to the
//!   receiver's clock after the pop (both threads read the same monotonic
//!   clock); `rtt/2` is the same from A's clock alone, as a check.
//! * `pingpong+spin` — the same, but both sides busy-poll `try_recv`: the
//!   queue cost (the sender still does its `parked.swap`, which then never
//!   finds a parked receiver).
//! * `burst64` — A pushes bursts of `BURST` messages and wakes B once per
//!   burst; B drains and parks when empty. When the queue is full, A wakes B
//!   and spins. Reports messages/s.
//!
//! `hop` percentiles are over every measured hop; `msgs/s` is the median over
//! ten windows (hops/s for ping-pong), so a window in which the machine's
//! other work took a core spoils that window only. `writes/msg` is eventfd
//! writes per message (how often a hop had to wake a parked peer).
//! `timeouts` counts parks that ended by the 20 ms timeout rather than by a
//! wake-up: a lost wake-up, or the peer off its core for 20 ms.

use std::cell::UnsafeCell;
use std::hint::{black_box, spin_loop};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bytes::Bytes;
use io_uring::{opcode, types, IoUring};

/// A cross-shard message: a stamp or sequence number and a pre-encoded packet.
type Msg = (u64, Bytes);

/// Marks the last message of a run.
const STOP: u64 = u64::MAX;
/// Capacity of every channel (a power of two for the SPSC ring).
const CAPACITY: usize = 1024;
/// Messages per burst in `burst64`.
const BURST: usize = 64;
/// Size of the packet each message carries.
const PACKET: usize = 64;
/// Longest park, as in the shard loop.
const MAX_WAIT: Duration = Duration::from_millis(20);
/// `user_data` of the eventfd read.
const WAKE_UD: u64 = 1;

// ---------------------------------------------------------------------------
// Channels

trait Tx: Send + 'static {
    fn try_push(&mut self, m: Msg) -> Result<(), Msg>;
}

trait Rx: Send + 'static {
    fn try_pop(&mut self) -> Option<Msg>;
    fn is_empty(&self) -> bool;
}

trait Channel {
    const NAME: &'static str;
    type Tx: Tx;
    type Rx: Rx;
    fn bounded(cap: usize) -> (Self::Tx, Self::Rx);
}

struct Flume;

impl Channel for Flume {
    const NAME: &'static str = "flume";
    type Tx = flume::Sender<Msg>;
    type Rx = flume::Receiver<Msg>;
    fn bounded(cap: usize) -> (Self::Tx, Self::Rx) {
        flume::bounded(cap)
    }
}

impl Tx for flume::Sender<Msg> {
    fn try_push(&mut self, m: Msg) -> Result<(), Msg> {
        self.try_send(m).map_err(|e| e.into_inner())
    }
}

impl Rx for flume::Receiver<Msg> {
    fn try_pop(&mut self) -> Option<Msg> {
        self.try_recv().ok()
    }
    fn is_empty(&self) -> bool {
        flume::Receiver::is_empty(self)
    }
}

struct Crossbeam;

impl Channel for Crossbeam {
    const NAME: &'static str = "crossbeam";
    type Tx = crossbeam_channel::Sender<Msg>;
    type Rx = crossbeam_channel::Receiver<Msg>;
    fn bounded(cap: usize) -> (Self::Tx, Self::Rx) {
        crossbeam_channel::bounded(cap)
    }
}

impl Tx for crossbeam_channel::Sender<Msg> {
    fn try_push(&mut self, m: Msg) -> Result<(), Msg> {
        self.try_send(m).map_err(|e| e.into_inner())
    }
}

impl Rx for crossbeam_channel::Receiver<Msg> {
    fn try_pop(&mut self) -> Option<Msg> {
        self.try_recv().ok()
    }
    fn is_empty(&self) -> bool {
        crossbeam_channel::Receiver::is_empty(self)
    }
}

/// Keeps a value on its own cache line(s).
#[repr(align(128))]
struct Padded<T>(T);

/// A bounded single-producer single-consumer ring.
struct Ring {
    slots: Box<[UnsafeCell<MaybeUninit<Msg>>]>,
    mask: usize,
    /// Next slot the consumer reads (written by the consumer only).
    head: Padded<AtomicUsize>,
    /// Next slot the producer writes (written by the producer only).
    tail: Padded<AtomicUsize>,
}

// SAFETY: a slot is written only by the single `Producer` while it lies in
// `[tail, head + cap)` and read only by the single `Consumer` while it lies in
// `[head, tail)`; the Release stores and Acquire loads of `head` and `tail`
// hand each slot over. `Msg` is `Send`.
unsafe impl Sync for Ring {}

impl Drop for Ring {
    fn drop(&mut self) {
        let head = *self.head.0.get_mut();
        let tail = *self.tail.0.get_mut();
        for i in head..tail {
            // SAFETY: slots in `[head, tail)` hold initialised messages that
            // nobody else can reach any more.
            unsafe { self.slots[i & self.mask].get_mut().assume_init_drop() };
        }
    }
}

struct Producer {
    ring: Arc<Ring>,
    tail: usize,
    head_cache: usize,
}

struct Consumer {
    ring: Arc<Ring>,
    head: usize,
    tail_cache: usize,
}

struct Spsc;

impl Channel for Spsc {
    const NAME: &'static str = "spsc ring";
    type Tx = Producer;
    type Rx = Consumer;
    fn bounded(cap: usize) -> (Producer, Consumer) {
        assert!(cap.is_power_of_two());
        let ring = Arc::new(Ring {
            slots: (0..cap)
                .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
                .collect(),
            mask: cap - 1,
            head: Padded(AtomicUsize::new(0)),
            tail: Padded(AtomicUsize::new(0)),
        });
        let p = Producer {
            ring: ring.clone(),
            tail: 0,
            head_cache: 0,
        };
        let c = Consumer {
            ring,
            head: 0,
            tail_cache: 0,
        };
        (p, c)
    }
}

impl Tx for Producer {
    fn try_push(&mut self, m: Msg) -> Result<(), Msg> {
        let cap = self.ring.mask + 1;
        if self.tail.wrapping_sub(self.head_cache) == cap {
            self.head_cache = self.ring.head.0.load(Ordering::Acquire);
            if self.tail.wrapping_sub(self.head_cache) == cap {
                return Err(m);
            }
        }
        let slot = &self.ring.slots[self.tail & self.ring.mask];
        // SAFETY: the slot is outside `[head, tail)`, so the consumer does not
        // touch it, and only this producer writes slots.
        unsafe { (*slot.get()).write(m) };
        self.tail = self.tail.wrapping_add(1);
        self.ring.tail.0.store(self.tail, Ordering::Release);
        Ok(())
    }
}

impl Rx for Consumer {
    fn try_pop(&mut self) -> Option<Msg> {
        if self.head == self.tail_cache {
            self.tail_cache = self.ring.tail.0.load(Ordering::Acquire);
            if self.head == self.tail_cache {
                return None;
            }
        }
        let slot = &self.ring.slots[self.head & self.ring.mask];
        // SAFETY: the slot is in `[head, tail)`: initialised by the producer
        // (published by its Release store of `tail`) and not touched by it
        // again until our Release store of `head` below.
        let m = unsafe { (*slot.get()).assume_init_read() };
        self.head = self.head.wrapping_add(1);
        self.ring.head.0.store(self.head, Ordering::Release);
        Some(m)
    }
    fn is_empty(&self) -> bool {
        // SeqCst: this load follows the receiver's SeqCst `parked = true`.
        self.head == self.ring.tail.0.load(Ordering::SeqCst)
    }
}

// ---------------------------------------------------------------------------
// Parking and waking

/// "I am parked": set by the receiver, cleared by whoever wakes it.
type Flag = Arc<Padded<AtomicBool>>;

fn eventfd() -> OwnedFd {
    // SAFETY: eventfd(2) with valid flags; the result is checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    assert!(fd >= 0, "eventfd: {}", io::Error::last_os_error());
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn signal(efd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64 to an eventfd.
    let n = unsafe { libc::write(efd, (&one as *const u64).cast(), 8) };
    debug_assert_eq!(n, 8);
}

/// The sending side of the wake protocol.
struct Waker {
    parked: Flag,
    efd: RawFd,
    writes: u64,
}

impl Waker {
    fn wake(&mut self) {
        if self.parked.0.swap(false, Ordering::SeqCst) {
            signal(self.efd);
            self.writes += 1;
        }
    }
}

/// The receiving side: a shard-like ring with a read of our eventfd armed.
struct Parker {
    // Declared first: dropped before `buf`.
    ring: IoUring,
    efd: RawFd,
    buf: Box<u64>,
    armed: bool,
    parked: Flag,
    timeouts: u64,
}

impl Parker {
    /// Call on the thread that will park: the ring is single-issuer.
    fn new(efd: RawFd, parked: Flag) -> Parker {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_cqsize(64)
            .build(16)
            .expect("io_uring with SINGLE_ISSUER | DEFER_TASKRUN");
        let mut p = Parker {
            ring,
            efd,
            buf: Box::new(0),
            armed: false,
            parked,
            timeouts: 0,
        };
        p.arm();
        p
    }

    fn arm(&mut self) {
        let e = opcode::Read::new(types::Fd(self.efd), (&mut *self.buf as *mut u64).cast(), 8)
            .build()
            .user_data(WAKE_UD);
        // SAFETY: `buf` is a Box we own, not read while the read is armed and
        // not freed before the read completed (see `Drop`).
        unsafe { self.ring.submission().push(&e) }.expect("submission queue full");
        self.armed = true;
    }

    /// Parks unless `is_empty()` turns false after announcing it; returns
    /// after a wake-up (or the timeout) with the eventfd read re-armed (it is
    /// submitted by the next park, as in the shard loop).
    fn park(&mut self, is_empty: impl Fn() -> bool) {
        self.parked.0.store(true, Ordering::SeqCst);
        if !is_empty() {
            self.parked.0.store(false, Ordering::Relaxed);
            return;
        }
        let ts = types::Timespec::from(MAX_WAIT);
        let args = types::SubmitArgs::new().timespec(&ts);
        match self.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) => {}
            Err(e) => panic!("io_uring_enter: {e}"),
        }
        self.parked.0.store(false, Ordering::Relaxed);
        let mut woke = false;
        for cqe in self.ring.completion() {
            if cqe.user_data() == WAKE_UD {
                assert_eq!(cqe.result(), 8, "eventfd read failed");
                self.armed = false;
                woke = true;
            }
        }
        if !woke {
            self.timeouts += 1;
        }
        if !self.armed {
            self.arm();
        }
    }
}

impl Drop for Parker {
    fn drop(&mut self) {
        // Complete our own read so the kernel no longer holds `buf`.
        if !self.armed {
            return;
        }
        signal(self.efd);
        while self.armed {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(_) => {
                    // Leak 8 bytes rather than free memory the kernel may write.
                    Box::leak(std::mem::replace(&mut self.buf, Box::new(0)));
                    return;
                }
            }
            for cqe in self.ring.completion() {
                if cqe.user_data() == WAKE_UD {
                    self.armed = false;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Measurement

/// Log-linear histogram of nanoseconds: 64 sub-buckets per power of two
/// (under 1.6 % error).
#[derive(Clone)]
struct Hist {
    buckets: Vec<u64>,
    n: u64,
    sum: u64,
}

impl Hist {
    fn new() -> Hist {
        Hist {
            buckets: vec![0; 59 * 64],
            n: 0,
            sum: 0,
        }
    }

    fn record(&mut self, v: u64) {
        let i = if v < 64 {
            v as usize
        } else {
            let msb = 63 - v.leading_zeros();
            (((msb - 5) as usize) << 6) | ((v >> (msb - 6)) & 63) as usize
        };
        self.buckets[i] += 1;
        self.n += 1;
        self.sum += v;
    }

    fn mean(&self) -> u64 {
        self.sum / self.n.max(1)
    }

    fn merge(&mut self, o: &Hist) {
        for (a, b) in self.buckets.iter_mut().zip(&o.buckets) {
            *a += b;
        }
        self.n += o.n;
        self.sum += o.sum;
    }

    /// Value at quantile `q` (bucket midpoint).
    fn quantile(&self, q: f64) -> u64 {
        if self.n == 0 {
            return 0;
        }
        let rank = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut seen = 0;
        for (i, &c) in self.buckets.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (g, sub) = (i >> 6, (i & 63) as u64);
                return if g == 0 {
                    sub
                } else {
                    let shift = g - 1;
                    ((64 + sub) << shift) + ((1u64 << shift) >> 1)
                };
            }
        }
        unreachable!()
    }
}

/// Run length and pinning, shared by every scenario.
#[derive(Clone, Copy)]
struct Setup {
    /// Length of one scenario, warm-up included.
    budget: Duration,
    /// Samples taken before this much time has passed are dropped.
    warmup: Duration,
    cores: Option<(usize, usize)>,
}

fn pin(core: Option<usize>) {
    if let Some(id) = core {
        core_affinity::set_for_current(core_affinity::CoreId { id });
    }
}

struct Row {
    channel: &'static str,
    scenario: &'static str,
    /// One-way hop latency (ping-pong only).
    hop: Option<Hist>,
    /// Round trip / 2 from A's clock alone (ping-pong only).
    rtt_half: Option<Hist>,
    msgs_per_s: f64,
    writes_per_msg: f64,
    timeouts: u64,
}

struct Side {
    hop: Hist,
    rtt_half: Hist,
    /// Messages in the measured window.
    msgs: u64,
    /// Messages including the warm-up.
    total: u64,
    writes: u64,
    timeouts: u64,
    /// Messages per second (A only).
    rate: f64,
}

/// Messages/s as the median over ten windows of the measured time, so that
/// the sender losing its core for a while (this machine runs other work)
/// spoils a window, not the row.
struct Rate {
    len: u64,
    first: Option<(u64, u64)>,
    start: (u64, u64),
    rates: Vec<f64>,
}

impl Rate {
    fn new(s: Setup) -> Rate {
        Rate {
            len: (s.budget.saturating_sub(s.warmup).as_nanos() as u64 / 10).max(1),
            first: None,
            start: (0, 0),
            rates: Vec::new(),
        }
    }

    /// `n` messages were done by time `t` (ns).
    fn tick(&mut self, t: u64, n: u64) {
        if self.first.is_none() {
            self.first = Some((t, n));
            self.start = (t, n);
        } else if t - self.start.0 >= self.len {
            let (t0, n0) = self.start;
            self.rates.push((n - n0) as f64 * 1e9 / (t - t0) as f64);
            self.start = (t, n);
        }
    }

    /// Median window rate (whole-run rate if no window completed).
    fn get(mut self) -> f64 {
        if self.rates.is_empty() {
            let (t0, n0) = self.first.unwrap_or_default();
            let (t1, n1) = self.start;
            return (n1 - n0) as f64 * 1e9 / (t1 - t0).max(1) as f64;
        }
        self.rates.sort_by(f64::total_cmp);
        self.rates[self.rates.len() / 2]
    }
}

fn now_ns(epoch: Instant) -> u64 {
    epoch.elapsed().as_nanos() as u64
}

fn push_spin<T: Tx>(tx: &mut T, mut m: Msg, waker: &mut Waker) {
    loop {
        match tx.try_push(m) {
            Ok(()) => return,
            Err(back) => {
                m = back;
                waker.wake();
                spin_loop();
            }
        }
    }
}

fn ping_pong<C: Channel>(s: Setup, park: bool) -> Row {
    let (mut tx_ab, mut rx_ab) = C::bounded(CAPACITY);
    let (mut tx_ba, mut rx_ba) = C::bounded(CAPACITY);
    let (efd_a, efd_b) = (eventfd(), eventfd());
    let (efd_a, efd_b) = (
        std::os::fd::AsRawFd::as_raw_fd(&efd_a),
        std::os::fd::AsRawFd::as_raw_fd(&efd_b),
    );
    let parked_a: Flag = Arc::new(Padded(AtomicBool::new(false)));
    let parked_b: Flag = Arc::new(Padded(AtomicBool::new(false)));
    let packet = Bytes::from(vec![0x5a; PACKET]);
    let barrier = Barrier::new(2);
    let epoch = Instant::now();
    // End of A's warm-up (ns since `epoch`), set by A before its first push.
    let warm_end = AtomicU64::new(u64::MAX);
    let (barrier, warm_end) = (&barrier, &warm_end);

    // Each thread owns its channel ends (`move`): a handle left on this stack
    // would share a cache line with the other thread's handle.
    let (a, b) = std::thread::scope(|sc| {
        let (pa, pb) = (parked_a.clone(), parked_b.clone());
        let b = sc.spawn(move || {
            let (parked_a, parked_b) = (pa, pb);
            pin(s.cores.map(|c| c.1));
            let mut parker = Parker::new(efd_b, parked_b.clone());
            let mut waker = Waker {
                parked: parked_a.clone(),
                efd: efd_a,
                writes: 0,
            };
            let mut hop = Hist::new();
            barrier.wait();
            'run: loop {
                while let Some((stamp, p)) = rx_ab.try_pop() {
                    let t = now_ns(epoch);
                    if stamp == STOP {
                        break 'run;
                    }
                    // A stored `warm_end` before pushing this message.
                    if stamp >= warm_end.load(Ordering::Relaxed) {
                        hop.record(t - stamp);
                    }
                    push_spin(&mut tx_ba, (now_ns(epoch), p), &mut waker);
                    waker.wake();
                }
                if park {
                    parker.park(|| rx_ab.is_empty());
                } else {
                    spin_loop();
                }
            }
            Side {
                hop,
                rtt_half: Hist::new(),
                msgs: 0,
                total: 0,
                writes: waker.writes,
                timeouts: parker.timeouts,
                rate: 0.0,
            }
        });
        let a = sc.spawn(move || {
            pin(s.cores.map(|c| c.0));
            let mut parker = Parker::new(efd_a, parked_a.clone());
            let mut waker = Waker {
                parked: parked_b.clone(),
                efd: efd_b,
                writes: 0,
            };
            let (mut hop, mut rtt_half) = (Hist::new(), Hist::new());
            let (mut round_trips, mut total) = (0u64, 0u64);
            barrier.wait();
            let start = now_ns(epoch);
            let (warm, end) = (
                start + s.warmup.as_nanos() as u64,
                start + s.budget.as_nanos() as u64,
            );
            warm_end.store(warm, Ordering::Relaxed);
            let mut rate = Rate::new(s);
            loop {
                let sent = now_ns(epoch);
                if sent >= end {
                    break;
                }
                push_spin(&mut tx_ab, (sent, packet.clone()), &mut waker);
                waker.wake();
                let (stamp, p) = loop {
                    if let Some(m) = rx_ba.try_pop() {
                        break m;
                    }
                    if park {
                        parker.park(|| rx_ba.is_empty());
                    } else {
                        spin_loop();
                    }
                };
                let t = now_ns(epoch);
                black_box(p);
                total += 1;
                if sent >= warm {
                    hop.record(t - stamp);
                    rtt_half.record((t - sent) / 2);
                    round_trips += 1;
                    rate.tick(t, 2 * round_trips);
                }
            }
            push_spin(&mut tx_ab, (STOP, Bytes::new()), &mut waker);
            waker.wake();
            Side {
                hop,
                rtt_half,
                msgs: 2 * round_trips,
                total: 2 * total,
                writes: waker.writes,
                timeouts: parker.timeouts,
                rate: rate.get(),
            }
        });
        (a.join().unwrap(), b.join().unwrap())
    });
    let mut hop = a.hop;
    hop.merge(&b.hop);
    Row {
        channel: C::NAME,
        scenario: if park {
            "pingpong+park"
        } else {
            "pingpong+spin"
        },
        hop: Some(hop),
        rtt_half: Some(a.rtt_half),
        msgs_per_s: a.rate,
        writes_per_msg: (a.writes + b.writes) as f64 / a.total.max(1) as f64,
        timeouts: a.timeouts + b.timeouts,
    }
}

/// The packet every message carries: a clone of one shared `Bytes` (each
/// clone and drop is an atomic on a refcount both threads touch, as when many
/// pushes point into one decoded link frame), or a static `Bytes` (no
/// refcount: the channel alone).
fn bursts<C: Channel>(s: Setup, shared: bool) -> Row {
    static PACKET_BYTES: [u8; PACKET] = [0x5a; PACKET];
    let (mut tx, mut rx) = C::bounded(CAPACITY);
    let efd_b = eventfd();
    let efd_b = std::os::fd::AsRawFd::as_raw_fd(&efd_b);
    let parked_b: Flag = Arc::new(Padded(AtomicBool::new(false)));
    let packet = if shared {
        Bytes::from(PACKET_BYTES.to_vec())
    } else {
        Bytes::from_static(&PACKET_BYTES)
    };
    let barrier = Barrier::new(2);
    let barrier = &barrier;
    let epoch = Instant::now();

    let (a, b) = std::thread::scope(|sc| {
        let pb = parked_b.clone();
        let b = sc.spawn(move || {
            let parked_b = pb;
            pin(s.cores.map(|c| c.1));
            let mut parker = Parker::new(efd_b, parked_b.clone());
            let (mut n, mut bytes) = (0u64, 0usize);
            barrier.wait();
            'run: loop {
                while let Some((seq, p)) = rx.try_pop() {
                    if seq == STOP {
                        break 'run;
                    }
                    assert_eq!(seq, n, "{}: message out of order", C::NAME);
                    n += 1;
                    bytes += p.len();
                }
                parker.park(|| rx.is_empty());
            }
            black_box(bytes);
            Side {
                hop: Hist::new(),
                rtt_half: Hist::new(),
                msgs: n,
                total: n,
                writes: 0,
                timeouts: parker.timeouts,
                rate: 0.0,
            }
        });
        let a = sc.spawn(move || {
            pin(s.cores.map(|c| c.0));
            let mut waker = Waker {
                parked: parked_b.clone(),
                efd: efd_b,
                writes: 0,
            };
            barrier.wait();
            let start = now_ns(epoch);
            let (warm, end) = (
                start + s.warmup.as_nanos() as u64,
                start + s.budget.as_nanos() as u64,
            );
            let mut rate = Rate::new(s);
            let mut seq = 0u64;
            loop {
                let t = now_ns(epoch);
                if t >= end {
                    break;
                }
                if t >= warm {
                    // What A pushed equals what B popped, within CAPACITY.
                    rate.tick(t, seq);
                }
                for _ in 0..BURST {
                    push_spin(&mut tx, (seq, packet.clone()), &mut waker);
                    seq += 1;
                }
                waker.wake();
            }
            push_spin(&mut tx, (STOP, Bytes::new()), &mut waker);
            waker.wake();
            Side {
                hop: Hist::new(),
                rtt_half: Hist::new(),
                msgs: seq,
                total: seq,
                writes: waker.writes,
                timeouts: 0,
                rate: rate.get(),
            }
        });
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(a.msgs, b.msgs, "{}: messages lost", C::NAME);
    Row {
        channel: C::NAME,
        scenario: if shared {
            "burst64 shared"
        } else {
            "burst64 static"
        },
        hop: None,
        rtt_half: None,
        msgs_per_s: a.rate,
        writes_per_msg: a.writes as f64 / b.msgs.max(1) as f64,
        timeouts: b.timeouts,
    }
}

// ---------------------------------------------------------------------------

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bench = args.iter().any(|a| a == "--bench");
    let quick = args.iter().any(|a| a == "--quick")
        || std::env::var_os("RINGGATE_BENCH_QUICK").is_some_and(|v| v != "0");
    let (rounds, budget, warmup) = match (bench, quick) {
        (false, _) => (1, Duration::from_millis(15), Duration::ZERO),
        (true, true) => (1, Duration::from_millis(250), Duration::from_millis(50)),
        (true, false) => (3, Duration::from_millis(450), Duration::from_millis(100)),
    };
    let cores = core_affinity::get_core_ids()
        .filter(|ids| ids.len() >= 2)
        .map(|ids| (ids[0].id, ids[1].id));
    let s = Setup {
        budget,
        warmup,
        cores,
    };
    match cores {
        Some((a, b)) => println!("cross_shard: A on core {a}, B on core {b}"),
        None => println!("cross_shard: fewer than 2 cores, threads not pinned"),
    }
    if !bench {
        println!("(smoke run: numbers meaningless; `cargo bench --bench cross_shard`)");
    }

    spsc_self_check();
    // Rounds interleave the cells, so a burst of other work on the machine
    // spoils one round of each cell rather than every round of one.
    let rounds: Vec<Vec<Row>> = (0..rounds)
        .map(|_| {
            let mut rows = Vec::new();
            for park in [true, false] {
                rows.push(ping_pong::<Flume>(s, park));
                rows.push(ping_pong::<Crossbeam>(s, park));
                rows.push(ping_pong::<Spsc>(s, park));
            }
            for shared in [true, false] {
                rows.push(bursts::<Flume>(s, shared));
                rows.push(bursts::<Crossbeam>(s, shared));
                rows.push(bursts::<Spsc>(s, shared));
            }
            rows
        })
        .collect();
    let stats = summarize(&rounds);

    println!(
        "{:<10} {:<15} {:>8} {:>8} {:>9} {:>8} {:>11} {:>10} {:>8}",
        "channel",
        "scenario",
        "hop p50",
        "hop p99",
        "hop p99.9",
        "hop mean",
        "msgs/s",
        "writes/msg",
        "timeouts"
    );
    let ns = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
    let mut clock_skew = 0f64;
    for r in &stats {
        println!(
            "{:<10} {:<15} {:>8} {:>8} {:>9} {:>8} {:>11.0} {:>10.3} {:>8}",
            r.channel,
            r.scenario,
            ns(r.p50),
            ns(r.p99),
            ns(r.p999),
            ns(r.mean),
            r.msgs_per_s,
            r.writes_per_msg,
            r.timeouts
        );
        if let (Some(h), Some(rt)) = (r.p50, r.rtt_half_p50) {
            if (h - rt).abs() > clock_skew.abs() {
                clock_skew = h - rt;
            }
        }
    }
    println!(
        "(ns, median of {} round(s); hop = sender's clock before push to receiver's clock \
         after pop; ping-pong msgs/s counts hops; largest hop-p50 minus rtt/2-p50: \
         {clock_skew:.0} ns)",
        rounds.len()
    );
    println!(
        "(a sender's eventfd write with no waiter costs {} ns: the floor of a wake-up's \
         cost to the sender)",
        eventfd_write_ns()
    );
    if bench {
        verdict(&stats);
    }
}

/// One line of the table: each figure is its median over the rounds.
struct Stats {
    channel: &'static str,
    scenario: &'static str,
    p50: Option<f64>,
    p99: Option<f64>,
    p999: Option<f64>,
    mean: Option<f64>,
    rtt_half_p50: Option<f64>,
    msgs_per_s: f64,
    writes_per_msg: f64,
    /// Summed over the rounds.
    timeouts: u64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn summarize(rounds: &[Vec<Row>]) -> Vec<Stats> {
    (0..rounds[0].len())
        .map(|i| {
            let rs: Vec<&Row> = rounds.iter().map(|r| &r[i]).collect();
            let over = |f: &dyn Fn(&Row) -> Option<f64>| -> Option<f64> {
                let v: Option<Vec<f64>> = rs.iter().map(|r| f(r)).collect();
                v.map(median)
            };
            let q = |q| over(&|r| r.hop.as_ref().map(|h| h.quantile(q) as f64));
            Stats {
                channel: rs[0].channel,
                scenario: rs[0].scenario,
                p50: q(0.5),
                p99: q(0.99),
                p999: q(0.999),
                mean: over(&|r| r.hop.as_ref().map(|h| h.mean() as f64)),
                rtt_half_p50: over(&|r| r.rtt_half.as_ref().map(|h| h.quantile(0.5) as f64)),
                msgs_per_s: median(rs.iter().map(|r| r.msgs_per_s).collect()),
                writes_per_msg: median(rs.iter().map(|r| r.writes_per_msg).collect()),
                timeouts: rs.iter().map(|r| r.timeouts).sum(),
            }
        })
        .collect()
}

/// Median cost of one `write(eventfd)` that wakes nobody (100 rounds of 100).
fn eventfd_write_ns() -> u64 {
    let efd = eventfd();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&efd);
    let mut rounds: Vec<u64> = (0..100)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..100 {
                signal(fd);
            }
            t.elapsed().as_nanos() as u64 / 100
        })
        .collect();
    rounds.sort_unstable();
    rounds[rounds.len() / 2]
}

/// FIFO order, wrap-around, full, and no leak of what is left at drop.
fn spsc_self_check() {
    let b = Bytes::from(vec![1u8; 8]);
    let (mut p, mut c) = Spsc::bounded(4);
    let mut next = 0;
    for i in 0..8u64 {
        p.try_push((i, b.clone())).unwrap();
        if i % 2 == 0 {
            assert_eq!(c.try_pop().map(|m| m.0), Some(next));
            next += 1;
        }
    }
    assert!(p.try_push((8, b.clone())).is_err(), "ring should be full");
    assert_eq!(c.try_pop().map(|m| m.0), Some(next));
    assert!(!c.is_empty());
    drop((p, c));
    assert!(b.is_unique(), "spsc ring leaked a message");
}

fn verdict(stats: &[Stats]) {
    let find = |channel: &str, scenario: &str| {
        stats
            .iter()
            .find(|r| r.channel == channel && r.scenario == scenario)
            .expect("row")
    };
    let chans = [Flume::NAME, Crossbeam::NAME, Spsc::NAME];
    let p50s = |scenario| -> Vec<f64> {
        chans
            .iter()
            .map(|c| find(c, scenario).p50.unwrap_or(0.0))
            .collect()
    };
    let (park, spin) = (p50s("pingpong+park"), p50s("pingpong+spin"));
    let rates: Vec<f64> = chans
        .iter()
        .map(|c| find(c, "burst64 static").msgs_per_s)
        .collect();
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    if min(&park) <= 0.0 || min(&spin) <= 0.0 || min(&rates) <= 0.0 || max(&spin) >= min(&park) {
        println!(
            "verdict: inconclusive: other work on the machine disturbed this run \
             (a cell has no samples, or a busy-polled hop was slower than a parked one); rerun"
        );
        return;
    }
    let best = (0..3)
        .max_by(|&a, &b| rates[a].total_cmp(&rates[b]))
        .unwrap_or(0);
    // One MPSC inbox per shard is simpler than N-1 rings (one emptiness check
    // before parking, no unsafe code): prefer it unless clearly slower.
    let pick = if rates[1] >= 0.8 * rates[best] {
        Crossbeam::NAME
    } else {
        chans[best]
    };
    println!(
        "verdict: a hop to a parked shard costs {:.1}-{:.1} µs p50 across channels, \
         the queue alone {:.0}-{:.0} ns, so the wake-up (~{:.0}x the queue) decides latency, \
         not the channel; batched (static packet) {} {:.1} / {} {:.1} / {} {:.1} M msgs/s: \
         use {}.",
        min(&park) / 1000.0,
        max(&park) / 1000.0,
        min(&spin),
        max(&spin),
        median(park.clone()) / median(spin.clone()),
        chans[0],
        rates[0] / 1e6,
        chans[1],
        rates[1] / 1e6,
        chans[2],
        rates[2] / 1e6,
        pick
    );
}
