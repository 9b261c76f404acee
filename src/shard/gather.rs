//! Multicast results: one call fans out to many sessions, possibly on every
//! shard, and its answer is the number actually delivered. The shard that
//! received the call holds a gather; each target reports back (found or
//! not, also when its message was dropped as BUSY), and the last report
//! answers the node.

use super::mailbox::ReplyTo;

/// A multicast waiting for its targets.
struct Gather {
    /// Reports still to come.
    pending: usize,
    /// Deliveries reported so far.
    delivered: u64,
    /// Where the total goes.
    reply: ReplyTo,
}

/// This shard's open gathers, by id.
#[derive(Default)]
pub(super) struct Gathers {
    slots: Vec<Option<Gather>>,
    free: Vec<u32>,
}

impl Gathers {
    /// Opens a gather of `targets` (> 0) reports, answered to `reply`.
    pub fn start(&mut self, targets: usize, reply: ReplyTo) -> u32 {
        let g = Gather {
            pending: targets,
            delivered: 0,
            reply,
        };
        if let Some(id) = self.free.pop() {
            self.slots[id as usize] = Some(g);
            return id;
        }
        self.slots.push(Some(g));
        self.slots.len() as u32 - 1
    }

    /// Counts one report; returns the answer when it was the last one.
    pub fn report(&mut self, id: u32, delivered: u64) -> Option<(ReplyTo, u64)> {
        let g = self.slots.get_mut(id as usize)?.as_mut()?;
        g.pending -= 1;
        g.delivered += delivered;
        if g.pending > 0 {
            return None;
        }
        let g = self.slots[id as usize].take()?;
        self.free.push(id);
        Some((g.reply, g.delivered))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_once_with_the_number_found() {
        let mut g = Gathers::default();
        let to = ReplyTo::Node {
            node: 0,
            call_id: 7,
        };
        let id = g.start(3, to);
        assert_eq!(g.report(id, 1), None);
        assert_eq!(g.report(id, 0), None);
        assert_eq!(g.report(id, 5), Some((to, 6)));
        assert_eq!(g.report(id, 1), None, "a finished gather is gone");
        assert_eq!(g.start(1, to), id, "its id is reused");
    }
}
