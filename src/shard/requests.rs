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
//! from the front as soon as they reach it (replies mostly arrive in order),
//! so a FIFO holds about the requests in flight, not a timeout's worth of
//! history.

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

/// One timeout value and the requests that use it, oldest first.
struct Class {
    timeout: Millis,
    fifo: VecDeque<(Millis, u64)>,
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
        PendingRequests {
            next: (u64::from(shard) << 48) | 1,
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
                });
                self.classes.len() - 1
            }
        };
        self.classes[class].fifo.push_back((now + timeout, id));
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

    /// The reply of request `id` arrived: who asked, if it was still waiting.
    pub fn finish(&mut self, id: u64) -> Option<Waiting> {
        let w = self.map.remove(&id)?;
        self.per_link[usize::from(w.link)] -= 1;
        self.prune(usize::from(w.class));
        Some(w)
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
                    self.per_link[usize::from(w.link)] -= 1;
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
        out.extend(ids.into_iter().map(|(_, w)| w));
        self.per_link[link] = 0;
        for c in 0..self.classes.len() {
            self.prune(c);
        }
    }

    /// Pops entries of ended requests off the front of class `c`.
    fn prune(&mut self, c: usize) {
        let fifo = &mut self.classes[c].fifo;
        while let Some(&(_, id)) = fifo.front() {
            if self.map.contains_key(&id) {
                break;
            }
            fifo.pop_front();
        }
    }
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
        assert_eq!(p.finish(a).map(|w| w.seq), Some(1));
        assert_eq!(p.finish(a), None, "a second reply is not a reply");
        let mut out = Vec::new();
        p.expired(100, &mut out);
        assert!(out.is_empty(), "a answered, b not yet due: {out:?}");
        p.expired(110, &mut out);
        assert_eq!(out.iter().map(|w| w.seq).collect::<Vec<_>>(), vec![2]);
        // b timed out; its late reply finds nothing.
        assert_eq!(p.finish(b), None);
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
        assert_eq!(p.finish(ids[1]), None);
        assert_eq!(p.finish(ids[0]).map(|w| w.seq), Some(0));
        out.clear();
        p.expired(100, &mut out);
        assert_eq!(out.iter().map(|w| w.seq).collect::<Vec<_>>(), vec![2, 4]);
    }

    #[test]
    fn answered_requests_do_not_pile_up_behind_the_front() {
        let mut p = PendingRequests::new(0);
        for i in 0..10_000 {
            let id = p.start(0, sid(1), 1, i, i as Millis, 5000);
            p.finish(id);
        }
        assert!(p.is_empty());
        assert!(p.classes[0].fifo.is_empty(), "{}", p.classes[0].fifo.len());
    }
}
