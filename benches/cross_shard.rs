//! What does a message from one shard to another cost through ringgate's own
//! mailbox and wake-up: to a parked shard, to a busy one, and in a burst
//! behind one wake-up?
//!
//! ```text
//! cargo bench --bench cross_shard                          # ~3 s: 4 scenarios × 0.75 s
//! cargo bench --bench cross_shard -- --json                # one JSON object per row
//! cargo bench --bench cross_shard -- --secs 3 --burst 256  # longer runs, other burst
//! cargo test --benches                                     # smoke run, numbers meaningless
//! ```
//!
//! Two threads, pinned to cores 0 and 1 when both exist, play shards 0 (A)
//! and 1 (B). Each owns its [`Mailbox`] (one `Mailbox::create(2,
//! DEFAULT_CHANNEL_CAPACITY)`), they share one [`Wakers`], and both use them
//! as `Shard::run` does. A shard waits in an io_uring built by
//! `shard::Ring` with a read of `wakers.fd(me)` armed (the eventfd is
//! read through the ring, as in the shard, not with a blocking `read(2)`):
//!
//! ```text
//!  wait:     park(me); wait in the ring 20 ms if !has_mail(), else 0; unpark(me);
//!            reap the eventfd read and re-arm it
//!  turn:     while try_recv() { handle }; retry_backlog(); take_touched(|s| wake(s))
//! ```
//!
//! A message is a `ToShard::Broadcast` whose 8-byte packet is A's clock (ns
//! since a shared `Instant`, i.e. `CLOCK_MONOTONIC`, one clock for every
//! core) just before `send`; its latency is B's clock after `try_recv` minus
//! that. Per round, A sends `burst` messages, ends its turn (one wake-up of
//! B at most), and waits for B's one reply, which B sends in the turn in
//! which it has received them all.
//!
//! * `pingpong parked`: burst 1, both shards park; every hop wakes a parked shard.
//! * `burst parked`: one wake-up carries `--burst` messages (default 64).
//! * `pingpong busy`, `burst busy`: neither shard parks, both spin on
//!   `try_recv`: the queue alone (`wake` still runs and finds nobody parked).
//!
//! Columns: latency percentiles (µs) of B's messages after a warm-up of a
//! fifth of the run; `ns/msg`, wall time per A→B message with B's reply
//! included (for ping-pong the mean round trip, for a burst the per-message
//! cost of a batch); `wakeups/msg`, B's waits ended by its eventfd;
//! `writes/msg`, eventfd writes to B (the sum of the counters its reads
//! returned); `timeouts`, 20 ms waits of either shard that no wake-up ended (a
//! lost wake-up, or a shard off its core that long).
//!
//! The channel bake-off this bench replaces (commit 4420c8c: flume, crossbeam
//! and a hand-written SPSC ring under the same park/wake protocol) found a hop
//! to a parked shard costs ~6 µs p50 whatever the channel, since the eventfd
//! wake-up dominates, and that crossbeam ties the SPSC ring on the queue alone
//! and beats flume, so shard inboxes are crossbeam channels.

use std::fmt::Debug;
use std::hint::spin_loop;
use std::os::fd::AsRawFd;
use std::str::FromStr;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use ringgate::config::{DEFAULT_CHANNEL_CAPACITY, DEFAULT_RING_ENTRIES};
use ringgate::connection::Outgoing;
use ringgate::shard::mailbox::{Mailbox, Sent, ToShard};
use ringgate::shard::ring::Completion;
use ringgate::shard::{Ring, Wakers};

/// The shard loop's longest wait.
const MAX_WAIT: Duration = Duration::from_millis(20);
/// Stamp of the message that ends a run.
const STOP: u64 = u64::MAX;

/// One shard's mailbox, ring and wake-up, used the way `Shard::run` uses them.
/// The MQTT topic of the broadcasts (shared, as a gate's broadcast shares it).
static TOPIC: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from("bench"));

struct Side {
    me: usize,
    mail: Mailbox,
    wakers: Arc<Wakers>,
    /// ringgate's own ring: its in-flight table owns the eventfd read's buffer.
    ring: Ring,
    done: Vec<Completion>,
    /// Waits that slept and were ended by the eventfd.
    wakeups: u64,
    /// Eventfd writes received (the sum of the counter values read).
    writes: u64,
    /// Waits that slept `MAX_WAIT` without a wake-up.
    timeouts: u64,
}

impl Side {
    /// Call on the thread that will use it: the ring is single-issuer.
    fn new(me: usize, mail: Mailbox, wakers: Arc<Wakers>) -> Side {
        let ring = Ring::new(DEFAULT_RING_ENTRIES, 8, 512).expect("io_uring");
        let mut s = Side {
            me,
            mail,
            wakers,
            ring,
            done: Vec::new(),
            wakeups: 0,
            writes: 0,
            timeouts: 0,
        };
        s.arm();
        s
    }

    /// Queues the eventfd read; the next wait submits it, as in the shard.
    fn arm(&mut self) {
        let fd = self.wakers.fd(self.me).as_raw_fd();
        self.ring.read_eventfd(fd);
    }

    /// The top of a shard loop turn: park, look at the inbox once more, wait
    /// in the ring, unpark, reap.
    fn wait(&mut self) {
        self.wakers.park(self.me);
        let sleep = !self.mail.has_mail();
        let waited = self.ring.wait(
            if sleep { MAX_WAIT } else { Duration::ZERO },
            Duration::ZERO,
        );
        self.wakers.unpark(self.me);
        waited.expect("io_uring_enter");
        let mut woke = false;
        self.ring.completions(&mut self.done);
        for c in self.done.drain(..) {
            if let Completion::Wake { count } = c {
                self.writes += count;
                woke = true;
            }
        }
        if woke {
            self.arm();
        }
        self.wakeups += u64::from(sleep && woke);
        self.timeouts += u64::from(sleep && !woke);
    }

    /// The end of a shard loop turn: the backlog, then one `wake` per
    /// destination sent to.
    fn end_turn(&mut self) {
        self.mail.retry_backlog();
        let wakers = &self.wakers;
        self.mail.take_touched(|s| wakers.wake(s));
    }

    /// Sends a broadcast whose packet is `stamp`.
    fn send(&mut self, dest: usize, stamp: u64) {
        let packet = Bytes::copy_from_slice(&stamp.to_le_bytes());
        let sent = self.mail.send(
            dest,
            ToShard::Broadcast {
                packet: Outgoing {
                    payload: packet.clone(),
                    packet,
                    topic: TOPIC.clone(),
                },
                bound_only: false,
                reply: None,
            },
        );
        assert!(matches!(sent, Sent::Queued), "inbox and backlog full");
    }

    /// The stamp of the next message in the inbox.
    fn try_recv(&mut self) -> Option<u64> {
        match self.mail.try_recv()? {
            ToShard::Broadcast { packet, .. } => Some(u64::from_le_bytes(
                packet.packet[..8].try_into().expect("stamp"),
            )),
            m => panic!("unexpected message {m:?}"),
        }
    }

    /// Parks until woken, or spins once.
    fn idle(&mut self, park: bool) {
        if park {
            self.wait();
        } else {
            spin_loop();
        }
    }
}

/// Table heading, JSON key and decimals of each figure [`run`] returns.
const COLUMNS: [(&str, &str, usize); 10] = [
    ("msgs", "messages", 0),
    ("p50", "p50_us", 2),
    ("p90", "p90_us", 2),
    ("p99", "p99_us", 2),
    ("p99.9", "p999_us", 2),
    ("max", "max_us", 1),
    ("ns/msg", "ns_per_msg", 0),
    ("wakeups/msg", "wakeups_per_msg", 4),
    ("writes/msg", "writes_per_msg", 4),
    ("timeouts", "timeouts", 0),
];

fn pin(core: Option<usize>) {
    if let Some(id) = core {
        core_affinity::set_for_current(core_affinity::CoreId { id });
    }
}

/// Runs A and B for `secs`, rounds of `burst` messages and one reply.
fn run(burst: u64, park: bool, secs: f64, cores: Option<(usize, usize)>) -> [f64; 10] {
    let wakers = Arc::new(Wakers::new(2).expect("eventfd"));
    let mut boxes = Mailbox::create(2, DEFAULT_CHANNEL_CAPACITY);
    let (mail_b, mail_a) = (boxes.pop().expect("2"), boxes.pop().expect("2"));
    let barrier = Barrier::new(2);
    let epoch = Instant::now();
    let now = move || epoch.elapsed().as_nanos() as u64;
    let end = (secs * 1e9) as u64;
    let warm = end / 5;
    let (barrier, wakers) = (&barrier, &wakers);
    std::thread::scope(|sc| {
        let b = sc.spawn(move || {
            pin(cores.map(|c| c.1));
            let mut b = Side::new(1, mail_b, wakers.clone());
            let mut hist = Histogram::<u64>::new(3).expect("histogram");
            let (mut got, mut total) = (0, 0u64);
            barrier.wait();
            'run: loop {
                while let Some(stamp) = b.try_recv() {
                    let t = now();
                    if stamp == STOP {
                        break 'run;
                    }
                    if stamp >= warm {
                        hist.record(t.saturating_sub(stamp)).expect("record");
                    }
                    (got, total) = (got + 1, total + 1);
                    if got == burst {
                        got = 0;
                        b.send(0, now());
                    }
                }
                b.end_turn();
                b.idle(park);
            }
            (hist, total, b.wakeups, b.writes, b.timeouts)
        });
        let a = sc.spawn(move || {
            pin(cores.map(|c| c.0));
            let mut a = Side::new(0, mail_a, wakers.clone());
            let (mut msgs, mut first) = (0, None);
            barrier.wait();
            loop {
                let t0 = now();
                if t0 >= end {
                    break;
                }
                if t0 >= warm && first.is_none() {
                    first = Some(t0);
                }
                for _ in 0..burst {
                    a.send(1, now());
                }
                a.end_turn();
                while a.try_recv().is_none() {
                    a.idle(park);
                }
                if first.is_some() {
                    msgs += burst;
                }
            }
            let wall = now() - first.unwrap_or(end);
            a.send(1, STOP);
            a.end_turn();
            (wall as f64 / msgs.max(1) as f64, a.timeouts)
        });
        let (ns_per_msg, a_timeouts) = a.join().expect("shard A");
        let (hist, total, wakeups, writes, b_timeouts) = b.join().expect("shard B");
        let per_msg = |n: u64| n as f64 / total.max(1) as f64;
        let us = |ns: u64| ns as f64 / 1000.0;
        let q = |q| us(hist.value_at_quantile(q));
        let (p50, p90, p99, p999) = (q(0.5), q(0.9), q(0.99), q(0.999));
        let (max, timeouts) = (us(hist.max()), (a_timeouts + b_timeouts) as f64);
        let (n, wakeups, writes) = (hist.len() as f64, per_msg(wakeups), per_msg(writes));
        [
            n, p50, p90, p99, p999, max, ns_per_msg, wakeups, writes, timeouts,
        ]
    })
}

/// The value after `--name` on the command line.
fn arg<T: FromStr<Err: Debug>>(args: &[String], name: &str) -> Option<T> {
    let v = args.iter().skip_while(|a| *a != name).nth(1)?;
    Some(v.parse().expect(name))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| args.iter().any(|a| a == name);
    let json = flag("--json");
    let smoke = !flag("--bench");
    let quick =
        flag("--quick") || std::env::var_os("RINGGATE_BENCH_QUICK").is_some_and(|v| v != "0");
    let default_secs = match (smoke, quick) {
        (true, _) => 0.05,
        (false, true) => 0.25,
        (false, false) => 0.75,
    };
    let secs: f64 = arg(&args, "--secs").unwrap_or(default_secs);
    let burst: u64 = arg(&args, "--burst").unwrap_or(64);
    let cores = core_affinity::get_core_ids()
        .filter(|ids| ids.iter().any(|c| c.id == 0) && ids.iter().any(|c| c.id == 1))
        .map(|_| (0, 1));

    let scenarios = [
        ("pingpong parked", 1, true),
        ("burst parked", burst, true),
        ("pingpong busy", 1, false),
        ("burst busy", burst, false),
    ];
    let rows = scenarios.map(|(name, n, park)| (name, n, run(n, park, secs, cores)));

    if json {
        for (name, burst, figures) in rows {
            let fields: Vec<String> = COLUMNS
                .iter()
                .zip(figures)
                .map(|((_, key, p), v)| format!("\"{key}\":{v:.p$}"))
                .collect();
            let fields = fields.join(",");
            println!("{{\"scenario\":\"{name}\",\"burst\":{burst},{fields}}}");
        }
        return;
    }
    let pinned = cores.map_or("not pinned (no cores 0 and 1)", |_| {
        "A on core 0, B on core 1"
    });
    println!("cross_shard: {pinned}; {secs} s per scenario, burst {burst}");
    if smoke {
        println!("(smoke run: numbers meaningless; `cargo bench --bench cross_shard`)");
    }
    let heads: String = COLUMNS.iter().map(|(h, _, _)| format!(" {h:>9}")).collect();
    println!("{:<16}{heads}", "scenario");
    for (name, _, figures) in rows {
        let cells: String = COLUMNS
            .iter()
            .zip(figures)
            .map(|((_, _, p), v)| format!(" {v:>9.p$}"))
            .collect();
        println!("{name:<16}{cells}");
    }
    println!(
        "(µs from A's send to B's try_recv; ns/msg: wall time per A→B message, B's reply included)"
    );
}
