//! The canary: one well-behaved due client that logs in and keeps
//! [`WINDOW`] echo requests in flight the whole time, checking every reply
//! comes back, in order, with its own payload, and that every push the node
//! sends it arrives, in order, and every broadcast exactly once.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use ringgate::codec::{Packet, PacketOptions};

use crate::common::{wait_until, Client, PATIENCE};
use crate::node::{BROADCAST, ECHO, LOGIN, PUSH};

/// Requests in flight at once.
const WINDOW: i32 = 8;

/// What the canary received.
#[derive(Debug, Default)]
pub struct Tally {
    /// Requests answered (each in order, with its payload).
    pub answered: u64,
    /// Pushes received (each the next number).
    pub pushes: u64,
    /// Broadcast numbers received (each once).
    pub broadcasts: BTreeSet<u64>,
}

impl Tally {
    /// Books an unasked packet: a push or a broadcast.
    fn unasked(&mut self, p: &Packet) {
        let n = u64::from_be_bytes(p.payload[..].try_into().expect("an 8-byte number"));
        match p.route {
            PUSH => {
                assert_eq!(n, self.pushes, "canary: push out of order or lost");
                self.pushes += 1;
            }
            BROADCAST => assert!(self.broadcasts.insert(n), "canary: broadcast {n} twice"),
            other => panic!("canary: unexpected packet on route {other}: {p:?}"),
        }
    }
}

pub struct Canary {
    stop: Arc<AtomicBool>,
    /// Pushes and broadcasts to wait for before the canary stops.
    expect: Arc<OnceLock<(u64, u64)>>,
    answered: Arc<AtomicU64>,
    thread: JoinHandle<Tally>,
}

impl Canary {
    /// Connects, logs in as `uid`, starts asking.
    pub fn start(addr: SocketAddr, uid: i64) -> Canary {
        let mut c = Client::connect(addr, PacketOptions::default());
        c.send(LOGIN, 1, uid.to_string().as_bytes());
        let p = c.recv_data().expect("canary: log-in answered");
        assert_eq!((p.route, p.seq, &p.payload[..]), (LOGIN, 1, &b"ok"[..]));
        let stop = Arc::new(AtomicBool::new(false));
        let expect = Arc::new(OnceLock::new());
        let answered = Arc::new(AtomicU64::new(0));
        let (s, e, a) = (stop.clone(), expect.clone(), answered.clone());
        let thread = std::thread::spawn(move || run(c, &s, &e, &a));
        Canary {
            stop,
            expect,
            answered,
            thread,
        }
    }

    /// Waits for `more` further answers: the canary is still served.
    pub fn advance(&self, more: u64, what: &str) {
        let from = self.answered.load(Relaxed);
        wait_until(PATIENCE, what, || {
            self.answered.load(Relaxed) >= from + more
        });
    }

    /// Stops asking, waits for the `pushes` and `broadcasts` the node
    /// sent, and returns the tally.
    pub fn finish(self, pushes: u64, broadcasts: u64) -> Tally {
        self.expect
            .set((pushes, broadcasts))
            .expect("finished once");
        self.stop.store(true, Relaxed);
        match self.thread.join() {
            Ok(t) => t,
            Err(e) => std::panic::resume_unwind(e),
        }
    }
}

fn payload(seq: i32) -> Vec<u8> {
    format!("canary request {seq}").into_bytes()
}

/// The canary's loop: a window of requests, their replies in order, pushes
/// and broadcasts in between; then the last pushes and broadcasts.
fn run(
    mut c: Client,
    stop: &AtomicBool,
    expect: &OnceLock<(u64, u64)>,
    answered: &AtomicU64,
) -> Tally {
    let mut t = Tally::default();
    let mut seq = 1;
    while !stop.load(Relaxed) {
        for k in 0..WINDOW {
            c.send(ECHO, seq + k, &payload(seq + k));
        }
        let mut want = seq;
        while want < seq + WINDOW {
            let p = c.recv_data().expect("canary: the gate closed the canary");
            if p.route != ECHO {
                t.unasked(&p);
                continue;
            }
            assert_eq!(
                (p.ext, p.seq),
                (0, want),
                "canary: reply out of order or an error"
            );
            assert_eq!(p.payload[..], payload(want)[..], "canary: another payload");
            want += 1;
            t.answered += 1;
            answered.fetch_add(1, Relaxed);
        }
        // Seqs are 16 bits on the wire: wrap long before.
        seq = if seq > 30_000 { 1 } else { seq + WINDOW };
        std::thread::sleep(Duration::from_millis(1));
    }
    let &(pushes, broadcasts) = expect.get().expect("set before stop");
    while t.pushes < pushes || (t.broadcasts.len() as u64) < broadcasts {
        let p = c.recv_data().unwrap_or_else(|| {
            panic!(
                "canary: closed with {}/{pushes} pushes, {}/{broadcasts} broadcasts",
                t.pushes,
                t.broadcasts.len()
            )
        });
        t.unasked(&p);
    }
    assert!(
        t.broadcasts.iter().copied().eq(0..broadcasts),
        "canary: broadcasts {:?}",
        t.broadcasts
    );
    t
}
