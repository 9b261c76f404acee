//! The gate's node list, shared by every shard: which addresses to keep a
//! link to. Static `[[nodes]]` are in it from the start; a registry watcher
//! (on a control thread) adds the nodes it discovers and withdraws the
//! ones that leave.
//!
//! Slots are append-only and an address keeps its slot for the life of the
//! process, so a link's index is the same on every shard (call replies and
//! cross-shard pushes name links by index) even though each shard applies
//! the table on its own loop turn and may skip intermediate versions.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One slot: an address and whether a link to it is wanted now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeSlot {
    /// The node's address.
    pub addr: SocketAddr,
    /// Keep (or make) a link; false: close it and do not redial.
    pub wanted: bool,
    /// From `[[nodes]]`: never withdrawn by the registry.
    pub fixed: bool,
}

/// The shared table; see the module docs.
#[derive(Debug, Default)]
pub struct NodeTable {
    version: AtomicU64,
    slots: Mutex<Arc<Vec<NodeSlot>>>,
}

impl NodeTable {
    /// A table holding the static nodes.
    pub fn new(fixed: &[SocketAddr]) -> NodeTable {
        let slots = (fixed.iter())
            .map(|&addr| NodeSlot {
                addr,
                wanted: true,
                fixed: true,
            })
            .collect();
        NodeTable {
            version: AtomicU64::new(0),
            slots: Mutex::new(Arc::new(slots)),
        }
    }

    /// The table's version; it changes with every change of the slots.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The slots now (cheap: an `Arc`).
    pub fn slots(&self) -> Arc<Vec<NodeSlot>> {
        self.slots.lock().unwrap().clone()
    }

    /// Makes the discovered nodes exactly `addrs` (static ones always stay):
    /// new addresses get a slot at the end, known ones are wanted again,
    /// the rest are withdrawn. Returns whether anything changed; the
    /// caller then wakes the shards.
    pub fn set_discovered(&self, addrs: &[SocketAddr]) -> bool {
        let mut guard = self.slots.lock().unwrap();
        let mut next: Vec<NodeSlot> = (**guard).clone();
        for s in next.iter_mut().filter(|s| !s.fixed) {
            s.wanted = addrs.contains(&s.addr);
        }
        for &addr in addrs {
            if !next.iter().any(|s| s.addr == addr) {
                next.push(NodeSlot {
                    addr,
                    wanted: true,
                    fixed: false,
                });
            }
        }
        if next == **guard {
            return false;
        }
        *guard = Arc::new(next);
        self.version.fetch_add(1, Ordering::Release);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn slots_are_append_only_and_static_nodes_stay() {
        let t = NodeTable::new(&[a(1)]);
        assert_eq!(t.version(), 0);
        assert!(t.set_discovered(&[a(2), a(3)]));
        assert!(!t.set_discovered(&[a(3), a(2)]), "same set: no change");
        assert!(t.set_discovered(&[a(3)]));
        let s = t.slots();
        let view: Vec<(u16, bool)> = s.iter().map(|s| (s.addr.port(), s.wanted)).collect();
        assert_eq!(view, [(1, true), (2, false), (3, true)]);
        assert!(
            t.set_discovered(&[a(2)]),
            "a node coming back keeps its slot"
        );
        let s = t.slots();
        let view: Vec<(u16, bool)> = s.iter().map(|s| (s.addr.port(), s.wanted)).collect();
        assert_eq!(view, [(1, true), (2, true), (3, false)]);
        assert!(t.set_discovered(&[]));
        assert!(t.slots()[0].wanted, "static nodes are never withdrawn");
        assert_eq!(t.version(), 4);
    }
}
