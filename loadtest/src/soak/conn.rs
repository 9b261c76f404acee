//! One soak connection and how what it receives is judged: a log-in
//! answered, a request answered (its own payload, or a documented error
//! code), a push, a heartbeat, or a mismatch. No I/O here: the thread in
//! `clients.rs` reads and writes, these types keep the books.
//!
//! ```text
//!  Connecting ─ writable ─▶ Handshaking ─ (ws: 101) ─▶ Open ─ log-in? ─ requests, pushes, heartbeats
//!                                                        └ slow: stops reading until `paused_until`
//! ```

use std::sync::atomic::AtomicU64;
use std::time::Instant;

use bytes::BytesMut;
use mio::net::TcpStream;
use ringgate::codec::{ext, Frame, Packet};

use super::counts::{bump, ClientCounts};
use crate::seq::{InFlight, Pattern, SeqSpace};
use crate::transport::{Handshake, Stream};

/// Error replies are counted per extension code up to this one.
pub const MAX_EXT: usize = 16;

/// The seq of every log-in request (its route tells it apart).
pub const LOGIN_SEQ: i32 = 0;

/// Where a connection stands.
#[derive(Debug)]
pub enum Stage {
    /// TCP handshake under way.
    Connecting(TcpStream),
    /// TLS handshake and WebSocket upgrade under way (tcp: done at once).
    Handshaking(Stream, Box<Handshake>),
    /// Ready for packets.
    Open(Stream),
    /// Only while a step takes the stage apart to build the next one.
    Gone,
}

/// A connection's outstanding questions: its log-in and its requests.
#[derive(Debug)]
pub struct Replies {
    /// Requests in flight.
    pub inflight: InFlight,
    /// The log-in in flight, since when.
    pub login: Option<Instant>,
    /// The uid logged in with (0: none).
    pub uid: i64,
    /// The log-in was answered `ok`.
    pub bound: bool,
}

impl Replies {
    /// Questions in flight, log-in included.
    pub fn outstanding(&self) -> u64 {
        self.inflight.len() as u64 + u64::from(self.login.is_some())
    }

    /// Forgets every question in flight; returns how many there were.
    pub fn forget(&mut self) -> u64 {
        self.inflight.clear() as u64 + u64::from(self.login.take().is_some())
    }

    /// Forgets the questions asked before `before`; returns how many.
    pub fn expire(&mut self, before: Instant) -> u64 {
        let login = self.login.take_if(|at| *at < before).is_some();
        self.inflight.expire(before) as u64 + u64::from(login)
    }
}

/// One client connection.
#[derive(Debug)]
pub struct Conn {
    /// Its stage, with the socket.
    pub stage: Stage,
    /// Partial frame from the last read (and bytes after the `101`).
    pub leftover: Vec<u8>,
    /// Bytes not yet written.
    pub outbox: BytesMut,
    /// Its questions.
    pub replies: Replies,
    /// A slow reader: not read until then.
    pub paused_until: Option<Instant>,
    /// Last packet or heartbeat sent (heartbeats keep it alive).
    pub last_sent: Instant,
    /// When the connect started (connect and upgrade time out from it).
    pub since: Instant,
    /// Registered for writable events (while the outbox is stuck).
    pub watching_writes: bool,
}

impl Conn {
    /// A connection whose TCP connect is under way.
    pub fn connecting(sock: TcpStream, space: SeqSpace, now: Instant) -> Self {
        Conn {
            stage: Stage::Connecting(sock),
            leftover: Vec::new(),
            outbox: BytesMut::new(),
            replies: Replies {
                inflight: InFlight::new(space),
                login: None,
                uid: 0,
                bound: false,
            },
            paused_until: None,
            last_sent: now,
            since: now,
            watching_writes: false,
        }
    }

    /// Open, not paused: takes part in the run's actions.
    pub fn ready(&self) -> bool {
        matches!(self.stage, Stage::Open(_)) && self.paused_until.is_none()
    }
}

/// What a frame is judged against: the routes and payloads of the run,
/// and where the verdicts are counted.
pub struct Judge<'a> {
    /// Route of the log-ins.
    pub login_route: i32,
    /// Route of the requests.
    pub route: i32,
    /// Route of the node's pushes.
    pub push_route: i32,
    /// Request payloads.
    pub pattern: &'a Pattern,
    /// The counters.
    pub counts: &'a ClientCounts,
    /// Error replies per extension code.
    pub errors: &'a [AtomicU64; MAX_EXT],
}

impl Judge<'_> {
    /// Judges one frame received on a connection with questions `r`.
    pub fn frame(&self, frame: Frame, r: &mut Replies) {
        let c = self.counts;
        let p = match frame {
            Frame::Heartbeat { .. } => return bump(&c.heartbeats_received, 1),
            Frame::Data(p) => p,
        };
        if p.route == self.route {
            self.reply(p, r);
        } else if p.route == self.push_route && p.ext == 0 {
            bump(&c.pushes, 1);
        } else if p.route == self.login_route && p.seq == LOGIN_SEQ && r.login.is_some() {
            r.login = None;
            if p.ext == 0 && &p.payload[..] == b"ok" {
                r.bound = true;
                bump(&c.bound, 1);
            } else {
                bump(&c.login_failures, 1);
            }
        } else {
            bump(&c.mismatches, 1);
        }
    }

    /// A packet on the request route: its request's answer, or a mismatch.
    fn reply(&self, p: Packet, r: &mut Replies) {
        let c = self.counts;
        let Some(entry) = r.inflight.complete(p.seq) else {
            return bump(&c.mismatches, 1);
        };
        let documented = (ext::NO_ROUTE..=ext::INFLIGHT_FULL).contains(&p.ext);
        if p.ext == 0 && p.payload[..] == *self.pattern.payload(entry.id) {
            bump(&c.answered, 1);
        } else if documented {
            bump(&c.error_replies, 1);
            bump(&self.errors[usize::from(p.ext) % MAX_EXT], 1);
        } else {
            bump(&c.mismatches, 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::sync::atomic::Ordering::Relaxed;

    fn data(ext: u8, route: i32, seq: i32, payload: &[u8]) -> Frame {
        Frame::Data(Packet {
            ext,
            route,
            seq,
            payload: Bytes::copy_from_slice(payload),
        })
    }

    #[test]
    fn frames_are_judged() {
        let (pattern, counts) = (Pattern::new(4), ClientCounts::default());
        let errors = Default::default();
        let j = Judge {
            login_route: 1,
            route: 2,
            push_route: 100,
            pattern: &pattern,
            counts: &counts,
            errors: &errors,
        };
        let t = Instant::now();
        let mut r = Replies {
            inflight: InFlight::new(SeqSpace::new(2)),
            login: Some(t),
            uid: 7,
            bound: false,
        };
        let (a, b, x) = (
            r.inflight.issue(t),
            r.inflight.issue(t),
            r.inflight.issue(t),
        );
        assert_eq!(r.outstanding(), 4);
        j.frame(data(0, 1, LOGIN_SEQ, b"ok"), &mut r);
        assert!(r.bound && r.login.is_none());
        j.frame(data(0, 2, a.1, pattern.payload(a.0)), &mut r);
        j.frame(data(ext::TIMEOUT, 2, b.1, b""), &mut r);
        j.frame(data(0, 2, x.1, b"nope"), &mut r);
        j.frame(data(0, 2, 999, b""), &mut r);
        j.frame(data(0, 100, 0, b"push"), &mut r);
        j.frame(data(0, 5, 0, b"?"), &mut r);
        j.frame(Frame::Heartbeat { time: None }, &mut r);
        let s = counts.snapshot();
        assert_eq!((s.bound, s.answered, s.error_replies), (1, 1, 1));
        assert_eq!((s.mismatches, s.pushes, s.heartbeats_received), (3, 1, 1));
        assert_eq!(errors[usize::from(ext::TIMEOUT)].load(Relaxed), 1);
        assert_eq!(r.outstanding(), 0);
    }

    #[test]
    fn questions_expire_and_are_forgotten() {
        let t = Instant::now();
        let later = t + std::time::Duration::from_secs(30);
        let mut r = Replies {
            inflight: InFlight::new(SeqSpace::new(2)),
            login: Some(t),
            uid: 1,
            bound: false,
        };
        r.inflight.issue(t);
        r.inflight.issue(later);
        assert_eq!(r.expire(later), 2);
        assert_eq!(r.forget(), 1);
        assert_eq!(r.outstanding(), 0);
    }
}
