//! A hashed timer wheel: O(1) insert, expiry in tick order. Pure (time is a
//! tick count passed in).
//!
//! Entries are never cancelled: the shard re-checks the owner's real deadline
//! when an entry fires (a session whose client sent traffic meanwhile is
//! simply re-inserted at its new deadline). That keeps a packet's cost at one
//! store (`last_rx = now`) instead of a timer update, and keeps at most one
//! entry per connection.

/// Entries hashed by deadline tick into `slots.len()` buckets.
#[derive(Debug)]
pub struct TimerWheel<T> {
    slots: Vec<Vec<(u64, T)>>,
    /// Every tick below this has been expired.
    next_tick: u64,
    len: usize,
}

impl<T> TimerWheel<T> {
    /// A wheel with `slots` buckets (rounded up to a power of two), starting at tick `now`.
    pub fn new(slots: usize, now: u64) -> Self {
        let n = slots.next_power_of_two().max(1);
        TimerWheel {
            slots: (0..n).map(|_| Vec::new()).collect(),
            next_tick: now,
            len: 0,
        }
    }

    /// Entries waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Schedules `item` at tick `at` (a tick already past fires on the next advance).
    pub fn insert(&mut self, at: u64, item: T) {
        let at = at.max(self.next_tick);
        let mask = self.slots.len() as u64 - 1;
        self.slots[(at & mask) as usize].push((at, item));
        self.len += 1;
    }

    /// Moves every entry due at or before tick `now` into `out`.
    pub fn advance(&mut self, now: u64, out: &mut Vec<T>) {
        if now < self.next_tick {
            return;
        }
        let mask = self.slots.len() as u64 - 1;
        // Visit each bucket at most once, however far time jumped.
        let span = (now - self.next_tick + 1).min(self.slots.len() as u64);
        for t in self.next_tick..self.next_tick + span {
            let slot = &mut self.slots[(t & mask) as usize];
            let mut i = 0;
            while i < slot.len() {
                if slot[i].0 <= now {
                    out.push(slot.swap_remove(i).1);
                    self.len -= 1;
                } else {
                    i += 1;
                }
            }
        }
        self.next_tick = now + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_in_time_and_not_before() {
        let mut w = TimerWheel::new(8, 0);
        w.insert(3, "a");
        w.insert(5, "b");
        w.insert(5 + 8, "c"); // same bucket as "b", one round later
        let mut out = Vec::new();
        w.advance(2, &mut out);
        assert!(out.is_empty());
        w.advance(5, &mut out);
        assert_eq!(out, vec!["a", "b"]);
        out.clear();
        w.advance(12, &mut out);
        assert!(out.is_empty());
        w.advance(13, &mut out);
        assert_eq!(out, vec!["c"]);
        assert!(w.is_empty());
    }

    #[test]
    fn big_jump_visits_everything_once() {
        let mut w = TimerWheel::new(4, 0);
        for t in 0..20 {
            w.insert(t, t);
        }
        let mut out = Vec::new();
        w.advance(1000, &mut out);
        out.sort();
        assert_eq!(out, (0..20).collect::<Vec<_>>());
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn past_deadline_fires_next_advance() {
        let mut w = TimerWheel::new(4, 10);
        let mut out = Vec::new();
        w.advance(10, &mut out);
        w.insert(3, 'x');
        w.advance(11, &mut out);
        assert_eq!(out, vec!['x']);
    }
}
