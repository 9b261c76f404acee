//! What the client threads count: cumulative counters, the per-second
//! reports they send to the runner, and [`Tally`], the response side of the
//! connection state machine (match, check, time). No I/O.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Instant;

use hdrhistogram::Histogram;
use ringgate::codec::{Frame, Packet};

use crate::report::{histogram, record};
use crate::seq::{InFlight, Pattern};

/// Cumulative counters of a thread (or of all threads, summed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Correct responses received within the measured window.
    pub requests: u64,
    /// Requests sent, whole run.
    pub sent: u64,
    /// Error replies (header ext != 0).
    pub errors: u64,
    /// Responses with a wrong route or payload, or a seq nobody waits for.
    pub mismatches: u64,
    /// Connections the server closed.
    pub closed: u64,
    /// Connections dropped on an I/O or decode error.
    pub failed: u64,
    /// Open-loop requests not sent because their seq was still in flight.
    pub unsent: u64,
    /// Heartbeats sent.
    pub hb_sent: u64,
    /// Heartbeats received.
    pub hb_received: u64,
    /// Pushed packets received, each (connection, seq) once, whole run.
    pub delivered: u64,
    /// Pushed packets received again (same connection and seq).
    pub duplicates: u64,
    /// Pushed packets received after a later one of the same connection.
    pub reordered: u64,
}

impl Counters {
    /// Adds `other` into `self`.
    pub fn add(&mut self, o: &Counters) {
        self.requests += o.requests;
        self.sent += o.sent;
        self.errors += o.errors;
        self.mismatches += o.mismatches;
        self.closed += o.closed;
        self.failed += o.failed;
        self.unsent += o.unsent;
        self.hb_sent += o.hb_sent;
        self.hb_received += o.hb_received;
        self.delivered += o.delivered;
        self.duplicates += o.duplicates;
        self.reordered += o.reordered;
    }

    /// Everything that went wrong, in one number (for the progress line).
    pub fn troubles(&self) -> u64 {
        self.errors + self.mismatches + self.closed + self.failed + self.duplicates
    }
}

/// What the pushing side (the in-process node) and the receiving client
/// threads share in `push` and `broadcast`: totals for the in-flight bound
/// and the final drain.
#[derive(Debug, Default)]
pub struct Feed {
    /// Packets the node asked the gate to deliver (a broadcast counts once
    /// per connection logged in).
    pub sent: AtomicU64,
    /// Distinct packets the clients received.
    pub delivered: AtomicU64,
    /// The node stopped sending: `sent` is final.
    pub done: AtomicBool,
}

/// How a pushed packet's seq relates to what its connection saw before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// The next one expected.
    InOrder,
    /// Later than expected: this many seqs before it are missing so far.
    Skipped(u64),
    /// Older than the newest seen, not seen before (fills a gap).
    Late,
    /// Seen before.
    Duplicate,
}

/// One connection's pushed seqs: the next expected and which of the 128
/// before it arrived, so duplicates and reordering are told apart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeqTrack {
    next: u64,
    /// Bit `i`: seq `next - 1 - i` arrived.
    seen: u128,
}

impl SeqTrack {
    /// Records `seq`.
    pub fn record(&mut self, seq: u64) -> Arrival {
        if seq >= self.next {
            let skipped = seq - self.next;
            let shift = skipped + 1;
            self.seen = if shift >= 128 { 0 } else { self.seen << shift } | 1;
            self.next = seq + 1;
            return if skipped == 0 {
                Arrival::InOrder
            } else {
                Arrival::Skipped(skipped)
            };
        }
        let back = self.next - 1 - seq;
        if back >= 128 {
            // Too old to tell: counted as late, never as a second delivery.
            return Arrival::Late;
        }
        let bit = 1u128 << back;
        if self.seen & bit != 0 {
            Arrival::Duplicate
        } else {
            self.seen |= bit;
            Arrival::Late
        }
    }
}

/// The send time and seq a pushed payload starts with (16 bytes, big-endian).
pub fn push_stamp(payload: &[u8]) -> Option<(u64, u64)> {
    let ts = u64::from_be_bytes(*payload.first_chunk::<8>()?);
    let seq = u64::from_be_bytes(*payload.get(8..)?.first_chunk::<8>()?);
    Some((ts, seq))
}

/// Messages from client threads to the runner.
#[derive(Debug)]
pub enum Report {
    /// Second `t` of the run ended.
    Tick {
        /// Seconds since the start.
        t: u64,
        /// Correct responses during that second (warm-up included).
        responses: u64,
        /// Heartbeats received during that second.
        heartbeats: u64,
        /// Latencies of that second.
        hist: Histogram<u64>,
        /// Connections open.
        open: u64,
        /// Cumulative troubles.
        troubles: u64,
    },
    /// The thread's loop is over.
    Done,
}

/// What a thread hands back when it ends.
#[derive(Debug)]
pub struct ThreadResult {
    /// Its counters.
    pub counters: Counters,
    /// Latencies recorded in the window.
    pub hist: Histogram<u64>,
    /// Requests still unanswered.
    pub outstanding: u64,
    /// Connections still open.
    pub open: u64,
}

/// Tallies of one thread; the response side of the state machine.
#[derive(Debug)]
pub struct Tally {
    /// Cumulative counters.
    pub counters: Counters,
    /// Latencies in the measured window.
    pub hist: Histogram<u64>,
    /// Latencies of the current second (warm-up included).
    second_hist: Histogram<u64>,
    /// Correct responses of the current second.
    second_responses: u64,
    /// Heartbeats received in the current second.
    second_heartbeats: u64,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            counters: Counters::default(),
            hist: histogram(),
            second_hist: histogram(),
            second_responses: 0,
            second_heartbeats: 0,
        }
    }
}

impl Tally {
    /// Ends second `t`: its report, with `open` connections; the per-second
    /// figures start again from zero.
    pub fn end_second(&mut self, t: u64, open: u64) -> Report {
        Report::Tick {
            t,
            responses: std::mem::take(&mut self.second_responses),
            heartbeats: std::mem::take(&mut self.second_heartbeats),
            hist: std::mem::replace(&mut self.second_hist, histogram()),
            open,
            troubles: self.counters.troubles(),
        }
    }

    /// Handles one frame received at `now` on a connection; `window` is the
    /// measured interval.
    #[inline]
    pub fn on_frame(
        &mut self,
        frame: Frame,
        inflight: &mut InFlight,
        pattern: &Pattern,
        route: i32,
        now: Instant,
        window: (Instant, Instant),
    ) {
        let Packet {
            ext,
            route: got_route,
            seq,
            payload,
        } = match frame {
            Frame::Heartbeat { .. } => {
                self.counters.hb_received += 1;
                self.second_heartbeats += 1;
                return;
            }
            Frame::Data(p) => p,
        };
        let Some(entry) = inflight.complete(seq) else {
            self.counters.mismatches += 1;
            return;
        };
        if ext != 0 {
            self.counters.errors += 1;
        } else if got_route != route || payload[..] != *pattern.payload(entry.id) {
            self.counters.mismatches += 1;
        } else {
            let latency = now.saturating_duration_since(entry.sent);
            self.second_responses += 1;
            record(&mut self.second_hist, latency);
            if now >= window.0 && now < window.1 {
                self.counters.requests += 1;
                record(&mut self.hist, latency);
            }
        }
    }
}

impl Tally {
    /// Handles one frame of a receiving connection (`push`, `broadcast`):
    /// packets on `route` carry [`push_stamp`]; their latency is `now`
    /// minus the stamp (nanoseconds since `epoch`). Returns whether it was a
    /// new delivery.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn on_delivery(
        &mut self,
        frame: Frame,
        track: &mut SeqTrack,
        route: i32,
        epoch: Instant,
        now: Instant,
        window: (Instant, Instant),
    ) -> bool {
        let p = match frame {
            Frame::Heartbeat { .. } => {
                self.counters.hb_received += 1;
                self.second_heartbeats += 1;
                return false;
            }
            Frame::Data(p) => p,
        };
        let stamp = push_stamp(&p.payload);
        let (Some((ts, seq)), true, 0) = (stamp, p.route == route, p.ext) else {
            self.counters.mismatches += 1;
            return false;
        };
        match track.record(seq) {
            Arrival::Duplicate => {
                self.counters.duplicates += 1;
                return false;
            }
            Arrival::Late => self.counters.reordered += 1,
            Arrival::InOrder | Arrival::Skipped(_) => {}
        }
        self.counters.delivered += 1;
        let now_ns =
            u64::try_from(now.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX);
        let latency = std::time::Duration::from_nanos(now_ns.saturating_sub(ts));
        self.second_responses += 1;
        record(&mut self.second_hist, latency);
        if now >= window.0 && now < window.1 {
            self.counters.requests += 1;
            record(&mut self.hist, latency);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seq::SeqSpace;
    use std::time::Duration;

    #[test]
    fn seq_track_tells_gaps_late_and_duplicates() {
        let mut t = SeqTrack::default();
        assert_eq!(t.record(0), Arrival::InOrder);
        assert_eq!(t.record(1), Arrival::InOrder);
        assert_eq!(t.record(1), Arrival::Duplicate);
        assert_eq!(t.record(4), Arrival::Skipped(2));
        assert_eq!(t.record(3), Arrival::Late);
        assert_eq!(t.record(3), Arrival::Duplicate);
        assert_eq!(t.record(2), Arrival::Late);
        assert_eq!(t.record(0), Arrival::Duplicate);
        assert_eq!(t.record(5), Arrival::InOrder);
        assert_eq!(t.record(500), Arrival::Skipped(494));
        assert_eq!(t.record(5), Arrival::Late, "too old to tell");
        assert_eq!(t.record(499), Arrival::Late);
        assert_eq!(t.record(499), Arrival::Duplicate);
    }

    #[test]
    fn deliveries_are_timed_from_the_stamp() {
        let epoch = Instant::now();
        let now = epoch + Duration::from_millis(5);
        let window = (epoch, epoch + Duration::from_secs(1));
        let mut tally = Tally::default();
        let mut track = SeqTrack::default();
        let push = |seq: u64, ts_ms: u64| {
            let mut payload = (ts_ms * 1_000_000).to_be_bytes().to_vec();
            payload.extend_from_slice(&seq.to_be_bytes());
            payload.extend_from_slice(b"pad");
            Frame::Data(Packet {
                ext: 0,
                route: 100,
                seq: 0,
                payload: bytes::Bytes::from(payload),
            })
        };
        assert!(tally.on_delivery(push(0, 4), &mut track, 100, epoch, now, window));
        assert!(!tally.on_delivery(push(0, 4), &mut track, 100, epoch, now, window));
        assert!(tally.on_delivery(push(1, 2), &mut track, 100, epoch, now, window));
        let short = Frame::Data(Packet {
            ext: 0,
            route: 100,
            seq: 0,
            payload: bytes::Bytes::from_static(b"short"),
        });
        assert!(!tally.on_delivery(short, &mut track, 100, epoch, now, window));
        let c = tally.counters;
        assert_eq!(
            (c.delivered, c.duplicates, c.mismatches, c.requests),
            (2, 1, 1, 2)
        );
        assert!(
            (2990..=3010).contains(&tally.hist.max()),
            "{}",
            tally.hist.max()
        );
        assert!(
            (995..=1005).contains(&tally.hist.min()),
            "{}",
            tally.hist.min()
        );
    }

    #[test]
    fn responses_are_checked_and_timed() {
        let t0 = Instant::now();
        let window = (t0, t0 + Duration::from_secs(10));
        let pattern = Pattern::new(4);
        let mut inflight = InFlight::new(SeqSpace::new(2));
        let mut tally = Tally::default();
        let data = |ext, route, seq, id| {
            Frame::Data(Packet {
                ext,
                route,
                seq,
                payload: bytes::Bytes::copy_from_slice(pattern.payload(id)),
            })
        };
        for _ in 0..5 {
            inflight.issue(t0);
        }
        let later = t0 + Duration::from_micros(250);
        tally.on_frame(data(0, 1, 0, 0), &mut inflight, &pattern, 1, later, window);
        tally.on_frame(data(1, 1, 1, 1), &mut inflight, &pattern, 1, later, window);
        tally.on_frame(data(0, 2, 2, 2), &mut inflight, &pattern, 1, later, window);
        tally.on_frame(data(0, 1, 3, 9), &mut inflight, &pattern, 1, later, window);
        tally.on_frame(
            data(0, 1, 77, 77),
            &mut inflight,
            &pattern,
            1,
            later,
            window,
        );
        tally.on_frame(
            Frame::Heartbeat { time: None },
            &mut inflight,
            &pattern,
            1,
            later,
            window,
        );
        let c = tally.counters;
        assert_eq!(
            (c.requests, c.errors, c.mismatches, c.hb_received),
            (1, 1, 3, 1)
        );
        assert_eq!(tally.hist.max(), 250);
        assert_eq!(inflight.len(), 1, "id 4 still in flight");
        // Outside the window: counted in the second, not in the result.
        let (_, seq) = (4, 4);
        tally.on_frame(
            data(0, 1, seq, 4),
            &mut inflight,
            &pattern,
            1,
            window.1,
            window,
        );
        assert_eq!((tally.counters.requests, tally.second_responses), (1, 2));
    }
}
