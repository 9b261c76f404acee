//! Request bookkeeping of one client connection: sequence numbers, the
//! requests in flight, and the payload each request carries. No I/O, no
//! clock: send times are passed in.
//!
//! Every request gets a connection-local id (0, 1, 2, ...). Its wire seq is
//! the id wrapped to the seq width and sign-extended, as the codec decodes it:
//!
//! ```text
//!  seq_bytes  wire seqs in order                     distinct in flight
//!  1          0 1 .. 127 -128 .. -1 0 1 ..           256
//!  2          0 1 .. 32767 -32768 .. -1 0 ..         65536
//!  4          0 1 .. i32::MAX i32::MIN .. -1 0 ..    2^32
//!  0          (no seq on the wire: matched in order) unbounded
//! ```
//!
//! A new request is only issued while no request in flight has the same
//! wire seq, so every response names exactly one request.

use std::collections::VecDeque;
use std::time::Instant;

/// The seq field of one connection's packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqSpace {
    /// Width in bytes: 0, 1, 2 or 4.
    bytes: u8,
}

impl SeqSpace {
    /// A seq field of `bytes` bytes (0, 1, 2 or 4).
    pub fn new(bytes: u8) -> Self {
        debug_assert!(matches!(bytes, 0 | 1 | 2 | 4));
        SeqSpace { bytes }
    }

    /// How many distinct seqs exist; `None` when there is no seq field.
    #[inline]
    pub fn modulus(self) -> Option<u64> {
        (self.bytes != 0).then(|| 1u64 << (8 * u32::from(self.bytes)))
    }

    /// The wire seq of request `id`: wrapped to the width, sign-extended.
    #[inline]
    pub fn wire(self, id: u64) -> i32 {
        match self.bytes {
            0 => 0,
            1 => id as u8 as i8 as i32,
            2 => id as u16 as i16 as i32,
            _ => id as u32 as i32,
        }
    }

    /// Whether `wire` is the seq of request `id`.
    #[inline]
    pub fn matches(self, id: u64, wire: i32) -> bool {
        self.bytes == 0 || self.wire(id) == wire
    }
}

/// One request awaiting its response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Connection-local request id.
    pub id: u64,
    /// When it was sent (closed loop) or meant to be sent (open loop).
    pub sent: Instant,
}

/// The requests of one connection in flight, oldest first.
#[derive(Debug)]
pub struct InFlight {
    space: SeqSpace,
    next_id: u64,
    queue: VecDeque<Entry>,
}

impl InFlight {
    /// No request in flight yet; ids start at 0.
    pub fn new(space: SeqSpace) -> Self {
        InFlight {
            space,
            next_id: 0,
            queue: VecDeque::new(),
        }
    }

    /// Requests in flight.
    #[inline]
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether the next id's wire seq is free. False only when the oldest
    /// request in flight is a whole seq space behind: it must come back first.
    #[inline]
    pub fn can_issue(&self) -> bool {
        match (self.space.modulus(), self.queue.front()) {
            (Some(modulus), Some(oldest)) => self.next_id - oldest.id < modulus,
            _ => true,
        }
    }

    /// Records a new request sent at `sent`; returns its id and wire seq.
    /// Call only when [`InFlight::can_issue`].
    #[inline]
    pub fn issue(&mut self, sent: Instant) -> (u64, i32) {
        debug_assert!(self.can_issue());
        let id = self.next_id;
        self.next_id += 1;
        self.queue.push_back(Entry { id, sent });
        (id, self.space.wire(id))
    }

    /// Drops the requests sent before `before` (oldest first, so the
    /// front ones); returns how many (`soak` counts them lost).
    pub fn expire(&mut self, before: Instant) -> usize {
        let n = self.queue.iter().take_while(|e| e.sent < before).count();
        self.queue.drain(..n);
        n
    }

    /// Drops every request in flight; returns how many.
    pub fn clear(&mut self) -> usize {
        let n = self.queue.len();
        self.queue.clear();
        n
    }

    /// Takes the request a response with `wire` seq answers: the oldest one
    /// when it matches (in-order servers), else a search. `None`: no request
    /// in flight has that seq.
    #[inline]
    pub fn complete(&mut self, wire: i32) -> Option<Entry> {
        let front = self.queue.front()?;
        if self.space.matches(front.id, wire) {
            return self.queue.pop_front();
        }
        let at = self
            .queue
            .iter()
            .position(|e| self.space.matches(e.id, wire))?;
        self.queue.remove(at)
    }
}

/// Payload bytes of every request: request `id` carries a window of a fixed
/// byte ramp starting at `id % 256`, so a reply carrying another request's
/// payload is caught by comparing bytes.
#[derive(Clone, Debug)]
pub struct Pattern {
    ramp: Vec<u8>,
    len: usize,
}

impl Pattern {
    /// Payloads of `len` bytes.
    pub fn new(len: usize) -> Self {
        Pattern {
            ramp: (0..len + 256).map(|i| i as u8).collect(),
            len,
        }
    }

    /// The payload of request `id`.
    #[inline]
    pub fn payload(&self, id: u64) -> &[u8] {
        let start = (id % 256) as usize;
        &self.ramp[start..start + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_seqs_wrap_and_sign_extend() {
        let s = SeqSpace::new(2);
        assert_eq!(s.wire(0), 0);
        assert_eq!(s.wire(32767), 32767);
        assert_eq!(s.wire(32768), -32768);
        assert_eq!(s.wire(65535), -1);
        assert_eq!(s.wire(65536), 0);
        let s = SeqSpace::new(1);
        assert_eq!(s.wire(200), -56);
        assert_eq!(s.modulus(), Some(256));
        let s = SeqSpace::new(4);
        assert_eq!(s.wire(u64::from(u32::MAX)), -1);
        assert_eq!(s.wire(1 << 32), 0);
        let s = SeqSpace::new(0);
        assert_eq!((s.wire(77), s.modulus()), (0, None));
        assert!(s.matches(77, 12345));
    }

    #[test]
    fn in_order_responses_complete_the_oldest() {
        let t = Instant::now();
        let mut f = InFlight::new(SeqSpace::new(2));
        let seqs: Vec<i32> = (0..3).map(|_| f.issue(t).1).collect();
        assert_eq!(seqs, [0, 1, 2]);
        assert_eq!(f.complete(0).map(|e| e.id), Some(0));
        assert_eq!(f.complete(1).map(|e| e.id), Some(1));
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn out_of_order_and_unknown_responses() {
        let t = Instant::now();
        let mut f = InFlight::new(SeqSpace::new(2));
        for _ in 0..4 {
            f.issue(t);
        }
        assert_eq!(f.complete(2).map(|e| e.id), Some(2));
        assert_eq!(f.complete(2), None, "already answered");
        assert_eq!(f.complete(99), None, "never sent");
        assert_eq!(f.complete(0).map(|e| e.id), Some(0));
        assert_eq!(f.len(), 2);
    }

    #[test]
    fn no_seq_field_matches_fifo() {
        let t = Instant::now();
        let mut f = InFlight::new(SeqSpace::new(0));
        for _ in 0..3 {
            assert_eq!(f.issue(t).1, 0);
        }
        assert_eq!(f.complete(0).map(|e| e.id), Some(0));
        assert_eq!(f.complete(0).map(|e| e.id), Some(1));
        assert!(f.can_issue());
    }

    #[test]
    fn a_lagging_request_blocks_its_seq_from_reuse() {
        let t = Instant::now();
        let mut f = InFlight::new(SeqSpace::new(1));
        f.issue(t); // id 0, stays in flight
        for id in 1..256u64 {
            assert!(f.can_issue());
            let (got, wire) = f.issue(t);
            assert_eq!(got, id);
            assert_eq!(f.complete(wire).map(|e| e.id), Some(id));
        }
        assert!(!f.can_issue(), "id 256 would reuse id 0's seq");
        assert_eq!(f.complete(0).map(|e| e.id), Some(0));
        assert!(f.can_issue());
        assert_eq!(f.issue(t), (256, 0));
    }

    #[test]
    fn wrapped_seqs_match_the_right_request() {
        let t = Instant::now();
        let mut f = InFlight::new(SeqSpace::new(1));
        for _ in 0..300 {
            let (_, wire) = f.issue(t);
            f.complete(wire).unwrap();
        }
        let (id, wire) = f.issue(t);
        assert_eq!((id, wire), (300, 44));
        assert_eq!(f.complete(44).map(|e| e.id), Some(300));
        assert_eq!(f.len(), 0);
    }

    #[test]
    fn old_requests_expire_oldest_first() {
        let t = Instant::now();
        let later = t + std::time::Duration::from_secs(5);
        let mut f = InFlight::new(SeqSpace::new(2));
        f.issue(t);
        f.issue(t);
        let (_, young) = f.issue(later);
        assert_eq!(f.expire(t), 0, "sent at `t`, not before it");
        assert_eq!(f.expire(later), 2);
        assert_eq!(f.complete(young).map(|e| e.id), Some(2));
        f.issue(later);
        assert_eq!((f.clear(), f.len()), (1, 0));
    }

    #[test]
    fn payloads_differ_between_neighbours() {
        let p = Pattern::new(8);
        assert_eq!(p.payload(0), [0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(p.payload(255)[..2], [255, 0]);
        assert_eq!(p.payload(256), p.payload(0));
        assert_ne!(p.payload(1), p.payload(2));
        assert!(Pattern::new(0).payload(9).is_empty());
    }
}
