//! Requests forwarded to nodes that still wait for their reply.
//!
//! A node announces the routes it answers (`NodeHello.reply_routes`). For
//! each request on such a route the shard gives the `Deliver` a request id
//! and remembers who asked. The request then ends exactly once:
//!
//! ```text
//!            ┌─ Push with its request_id ─▶ reply to the client     (finish)
//!  start ────┼─ deadline passes ──────────▶ TIMEOUT to the client   (expired)
//!            └─ its link drops ───────────▶ NODE_DOWN to the client (drain_link)
//! ```
//! Whichever comes first removes the entry, so the other two find nothing:
//! a reply after the timeout is dropped (and counted by the caller), never
//! sent after the error.
//!
//! Pure bookkeeping with the clock passed in; no sockets, no shard.
//!
//! Timing: requests with the same timeout expire in the order they started,
//! so each distinct timeout keeps a FIFO of `(deadline, id)` and only its
//! front is ever looked at. Entries whose request already ended are popped
//! from the front as soon as they reach it (replies mostly arrive in order);
//! one request that stays unanswered at the front would keep every later
//! entry behind it, so a FIFO holding more than twice its live requests
//! (plus [`SLACK`]) is compacted. A FIFO holds about the requests in flight,
//! never a timeout's worth of history, at an amortised O(1) per request.
//!
//! Ids carry the shard in their top 16 bits and start at a value taken from
//! the clock at start, so a node that replays replies buffered for an
//! earlier gate process hits no request of this one; a reply is taken only
//! from the link (node) the request went to.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;

use super::routes::IntHasher;
use crate::ids::SessionId;
use crate::session::Millis;

/// Who asked: enough to answer the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Waiting {
    /// The link the request went on.
    pub link: u16,
    /// The session that sent it.
    pub sid: SessionId,
    /// Its route and seq, echoed in an error reply.
    pub route: i32,
    /// See `route`.
    pub seq: i32,
    /// When it was forwarded, in ns on the shard's clock (for the
    /// round-trip histogram).
    pub started_ns: u64,
    /// Index of its timeout class.
    class: u16,
}

/// Dead entries a FIFO may carry beyond twice its live ones before it is
/// compacted.
const SLACK: usize = 64;

/// One timeout value and the requests that use it, oldest first.
struct Class {
    timeout: Millis,
    fifo: VecDeque<(Millis, u64)>,
    /// Requests of this class still waiting.
    live: usize,
}

/// This shard's requests waiting for a reply.
pub struct PendingRequests {
    next: u64,
    map: HashMap<u64, Waiting, BuildHasherDefault<IntHasher>>,
    classes: Vec<Class>,
    /// Waiting requests per link index.
    per_link: Vec<u32>,
}

impl PendingRequests {
    /// An empty table whose ids carry `shard` in their top 16 bits, so ids
    /// are unique across the gate.
    pub fn new(shard: u16) -> Self {
        Self::starting_at(shard, start_offset())
    }

    /// [`PendingRequests::new`] with the first id's low bits given.
    fn starting_at(shard: u16, offset: u64) -> Self {
        PendingRequests {
            next: (u64::from(shard) << 48) | (offset & OFFSET_MASK) | 1,
            map: HashMap::default(),
            classes: Vec::new(),
            per_link: Vec::new(),
        }
    }

    /// No request is waiting.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Requests waiting, on every link.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Requests waiting on `link`.
    pub fn on_link(&self, link: usize) -> u32 {
        self.per_link.get(link).copied().unwrap_or(0)
    }

    /// Remembers a request sent on `link` at `now` that expires after
    /// `timeout`; returns its id (never 0). No start time on the finer
    /// clock: see [`PendingRequests::start_at`].
    pub fn start(
        &mut self,
        link: usize,
        sid: SessionId,
        route: i32,
        seq: i32,
        now: Millis,
        timeout: Millis,
    ) -> u64 {
        self.start_at(link, sid, route, seq, now, timeout, 0)
    }

    /// [`PendingRequests::start`], noting `started_ns` (the shard's clock in
    /// ns) for the round-trip histogram.
    #[allow(clippy::too_many_arguments)]
    pub fn start_at(
        &mut self,
        link: usize,
        sid: SessionId,
        route: i32,
        seq: i32,
        now: Millis,
        timeout: Millis,
        started_ns: u64,
    ) -> u64 {
        let id = self.next;
        self.next += 1;
        let class = match self.classes.iter().position(|c| c.timeout == timeout) {
            Some(c) => c,
            None => {
                self.classes.push(Class {
                    timeout,
                    fifo: VecDeque::new(),
                    live: 0,
                });
                self.classes.len() - 1
            }
        };
        self.classes[class].fifo.push_back((now + timeout, id));
        self.classes[class].live += 1;
        if self.per_link.len() <= link {
            self.per_link.resize(link + 1, 0);
        }
        self.per_link[link] += 1;
        self.map.insert(
            id,
            Waiting {
                link: link as u16,
                sid,
                route,
                seq,
                started_ns,
                class: class as u16,
            },
        );
        id
    }

    /// The reply of request `id` arrived over the link to node `link`: who
    /// asked, if it was still waiting for that node.
    pub fn finish(&mut self, id: u64, link: usize) -> Option<Waiting> {
        let w = match self.map.entry(id) {
            Entry::Occupied(e) if usize::from(e.get().link) == link => e.remove(),
            _ => return None,
        };
        self.ended(&w);
        self.prune(usize::from(w.class));
        Some(w)
    }

    /// Counts `w` out of its link and class.
    fn ended(&mut self, w: &Waiting) {
        self.per_link[usize::from(w.link)] -= 1;
        self.classes[usize::from(w.class)].live -= 1;
    }

    /// Removes and returns (into `out`) every request whose deadline is at or
    /// before `now`.
    pub fn expired(&mut self, now: Millis, out: &mut Vec<Waiting>) {
        for c in 0..self.classes.len() {
            while let Some(&(deadline, id)) = self.classes[c].fifo.front() {
                if deadline > now {
                    break;
                }
                self.classes[c].fifo.pop_front();
                if let Some(w) = self.map.remove(&id) {
                    self.ended(&w);
                    out.push(w);
                }
            }
        }
    }

    /// Removes and returns (into `out`, oldest first) every request waiting
    /// on `link`.
    pub fn drain_link(&mut self, link: usize, out: &mut Vec<Waiting>) {
        if self.on_link(link) == 0 {
            return;
        }
        let mut ids = Vec::new();
        self.map.retain(|id, w| {
            let keep = usize::from(w.link) != link;
            if !keep {
                ids.push((*id, *w));
            }
            keep
        });
        // HashMap order is arbitrary; answer clients in the order they asked.
        ids.sort_unstable_by_key(|(id, _)| *id);
        for (_, w) in &ids {
            self.ended(w);
        }
        out.extend(ids.into_iter().map(|(_, w)| w));
        for c in 0..self.classes.len() {
            self.prune(c);
        }
    }

    /// Pops entries of ended requests off the front of class `c`, and drops
    /// them all when too many sit behind a request still waiting.
    fn prune(&mut self, c: usize) {
        let class = &mut self.classes[c];
        while let Some(&(_, id)) = class.fifo.front() {
            if self.map.contains_key(&id) {
                break;
            }
            class.fifo.pop_front();
        }
        if class.fifo.len() > 2 * class.live + SLACK {
            class.fifo.retain(|(_, id)| self.map.contains_key(id));
        }
    }
}

/// Bits of an id below the shard's.
const OFFSET_MASK: u64 = (1 << 48) - 1;

/// Where this process's ids start below the shard bits: the clock in µs,
/// masked to 40 bits (a different start for every gate process started more
/// than a microsecond apart, over 12 days; 2^48 - 2^40 ids remain above it).
fn start_offset() -> u64 {
    let us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    us & ((1 << 40) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(n: u64) -> SessionId {
        SessionId(n)
    }

    #[test]
    fn a_request_ends_once_whichever_comes_first() {
        let mut p = PendingRequests::new(1);
        let a = p.start(0, sid(1), 7, 1, 0, 100);
        let b = p.start(0, sid(2), 7, 2, 10, 100);
        assert_eq!(a >> 48, 1, "ids carry the shard");
        assert_ne!(a, b);
        assert_eq!(p.on_link(0), 2);

        // a is answered; its timeout later finds nothing.
        assert_eq!(p.finish(a, 0).map(|w| w.seq), Some(1));
        assert_eq!(p.finish(a, 0), None, "a second reply is not a reply");
        let mut out = Vec::new();
        p.expired(100, &mut out);
        assert!(out.is_empty(), "a answered, b not yet due: {out:?}");
        p.expired(110, &mut out);
        assert_eq!(out.iter().map(|w| w.seq).collect::<Vec<_>>(), vec![2]);
        // b timed out; its late reply finds nothing.
        assert_eq!(p.finish(b, 0), None);
        assert!(p.is_empty());
        assert_eq!(p.on_link(0), 0);
    }

    #[test]
    fn timeouts_of_different_lengths_expire_on_their_own_deadlines() {
        let mut p = PendingRequests::new(0);
        p.start(0, sid(1), 1, 1, 0, 1000);
        p.start(0, sid(1), 2, 2, 0, 50);
        p.start(1, sid(1), 2, 3, 20, 50);
        let mut out = Vec::new();
        p.expired(50, &mut out);
        assert_eq!(out.iter().map(|w| w.seq).collect::<Vec<_>>(), vec![2]);
        p.expired(70, &mut out);
        assert_eq!(out.iter().map(|w| w.seq).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!((p.on_link(0), p.on_link(1)), (1, 0));
        p.expired(999, &mut out);
        assert_eq!(out.len(), 2);
        p.expired(1000, &mut out);
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn a_dropped_link_gives_back_its_requests_only() {
        let mut p = PendingRequests::new(0);
        let ids: Vec<u64> = (0..6)
            .map(|i| p.start(i % 2, sid(i as u64), 1, i as i32, 0, 100))
            .collect();
        let mut out = Vec::new();
        p.drain_link(1, &mut out);
        assert_eq!(out.iter().map(|w| w.seq).collect::<Vec<_>>(), vec![1, 3, 5]);
        assert_eq!((p.on_link(0), p.on_link(1)), (3, 0));
        // Their replies and timeouts find nothing; link 0's still work.
        assert_eq!(p.finish(ids[1], 1), None);
        assert_eq!(p.finish(ids[0], 1), None, "a reply from another node");
        assert_eq!(p.finish(ids[0], 0).map(|w| w.seq), Some(0));
        out.clear();
        p.expired(100, &mut out);
        assert_eq!(out.iter().map(|w| w.seq).collect::<Vec<_>>(), vec![2, 4]);
    }

    #[test]
    fn one_unanswered_request_does_not_keep_the_answered_ones_behind_it() {
        let mut p = PendingRequests::new(0);
        let stuck = p.start(0, sid(1), 1, 0, 0, 5000);
        for i in 1..100_000 {
            let id = p.start(0, sid(1), 1, i, (i / 100) as Millis, 5000);
            assert!(p.finish(id, 0).is_some());
            assert!(
                p.classes[0].fifo.len() <= 2 + SLACK,
                "at {i}: {}",
                p.classes[0].fifo.len()
            );
        }
        assert_eq!(p.len(), 1);
        let mut out = Vec::new();
        p.expired(5000, &mut out);
        assert_eq!(out.iter().map(|w| w.seq).collect::<Vec<_>>(), vec![0]);
        assert_eq!(p.finish(stuck, 0), None);
        assert!(p.is_empty());
    }

    #[test]
    fn ids_start_where_the_clock_says_and_keep_the_shard() {
        let a = PendingRequests::starting_at(3, 1 << 30).next;
        let b = PendingRequests::starting_at(3, 2 << 30).next;
        assert_ne!(a, b, "two gate processes start their ids apart");
        assert_eq!((a >> 48, b >> 48), (3, 3));
        let top = PendingRequests::starting_at(3, u64::MAX).next;
        assert_eq!(top >> 48, 3, "an offset never spills into the shard bits");
        assert_ne!(PendingRequests::new(0).next, 0);
    }

    #[test]
    fn answered_requests_do_not_pile_up_behind_the_front() {
        let mut p = PendingRequests::new(0);
        for i in 0..10_000 {
            let id = p.start(0, sid(1), 1, i, i as Millis, 5000);
            p.finish(id, 0);
        }
        assert!(p.is_empty());
        assert!(p.classes[0].fifo.is_empty(), "{}", p.classes[0].fifo.len());
    }
}
