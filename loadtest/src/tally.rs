//! What the client threads count: cumulative counters, the per-second
//! reports they send to the runner, and [`Tally`], the response side of the
//! connection state machine (match, check, time). No I/O.

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
    }

    /// Everything that went wrong, in one number (for the progress line).
    pub fn troubles(&self) -> u64 {
        self.errors + self.mismatches + self.closed + self.failed
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seq::SeqSpace;
    use std::time::Duration;

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
