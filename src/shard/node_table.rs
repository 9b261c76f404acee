//! The gate's node list, shared by every shard: which addresses to keep a
//! link to. Static `[[nodes]]` are in it from the start (a configuration
//! reload, `crate::reload`, may change them); a registry watcher (on a
//! control thread) adds the nodes it discovers and withdraws the ones that
//! leave. A slot is wanted while either source names its address.
//!
//! Slots are append-only and an address keeps its slot for the life of the
//! process, so a link's index is the same on every shard (call replies and
//! cross-shard pushes name links by index) even though each shard applies
//! the table on its own loop turn and may skip intermediate versions.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One slot: an address and whether a link to it is wanted now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeSlot {
    /// The node's address.
    pub addr: SocketAddr,
    /// Keep (or make) a link; false: close it and do not redial. Always
    /// `fixed || discovered`.
    pub wanted: bool,
    /// In `[[nodes]]` now: never withdrawn by the registry.
    pub fixed: bool,
    /// In the registry's last list of nodes.
    pub discovered: bool,
}

impl NodeSlot {
    fn new(addr: SocketAddr, fixed: bool, discovered: bool) -> NodeSlot {
        NodeSlot {
            addr,
            wanted: fixed || discovered,
            fixed,
            discovered,
        }
    }
}

/// The shared table; see the module docs.
#[derive(Debug, Default)]
pub struct NodeTable {
    version: AtomicU64,
    slots: Mutex<Arc<Vec<NodeSlot>>>,
    /// `[[nodes]] unix`: the Unix socket to dial instead of the address,
    /// read when a link connects (a reload's change applies on the next one).
    unix: Mutex<Arc<HashMap<SocketAddr, PathBuf>>>,
}

impl NodeTable {
    /// A table holding the static nodes.
    pub fn new(fixed: &[SocketAddr]) -> NodeTable {
        let slots = (fixed.iter())
            .map(|&addr| NodeSlot::new(addr, true, false))
            .collect();
        NodeTable {
            version: AtomicU64::new(0),
            slots: Mutex::new(Arc::new(slots)),
            unix: Mutex::default(),
        }
    }

    /// Sets which nodes are dialled over a Unix socket, and where.
    pub fn set_unix_paths(&self, paths: HashMap<SocketAddr, PathBuf>) {
        *self.unix.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(paths);
    }

    /// The Unix socket to dial for the node at `addr`, if it has one.
    pub fn unix_path(&self, addr: SocketAddr) -> Option<Arc<Path>> {
        let paths = self.unix.lock().unwrap_or_else(|p| p.into_inner()).clone();
        paths.get(&addr).map(|p| Arc::from(p.as_path()))
    }

    /// The table's version; it changes with every change of the slots.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The slots now (cheap: an `Arc`).
    pub fn slots(&self) -> Arc<Vec<NodeSlot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Makes the discovered nodes exactly `addrs` (static ones always stay):
    /// new addresses get a slot at the end, known ones are wanted again,
    /// the rest are withdrawn. Returns whether anything changed; the
    /// caller then wakes the shards.
    pub fn set_discovered(&self, addrs: &[SocketAddr]) -> bool {
        self.update(
            addrs,
            |s, on| s.discovered = on,
            |a| NodeSlot::new(a, false, true),
        )
    }

    /// Makes the static (`[[nodes]]`) nodes exactly `addrs`, as a reload
    /// does: new addresses get a slot at the end, those no longer listed are
    /// withdrawn unless the registry lists them. Returns whether anything
    /// changed; the caller then wakes the shards.
    pub fn set_fixed(&self, addrs: &[SocketAddr]) -> bool {
        self.update(
            addrs,
            |s, on| s.fixed = on,
            |a| NodeSlot::new(a, true, false),
        )
    }

    /// Sets one source's flag on every slot (`mark`), appends a slot made by
    /// `fresh` for each address not in the table, and recomputes `wanted`.
    fn update(
        &self,
        addrs: &[SocketAddr],
        mark: impl Fn(&mut NodeSlot, bool),
        fresh: impl Fn(SocketAddr) -> NodeSlot,
    ) -> bool {
        let mut guard = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let mut next: Vec<NodeSlot> = (**guard).clone();
        for s in &mut next {
            mark(s, addrs.contains(&s.addr));
            s.wanted = s.fixed || s.discovered;
        }
        for &addr in addrs {
            if !next.iter().any(|s| s.addr == addr) {
                next.push(fresh(addr));
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

    #[test]
    fn static_nodes_follow_a_reload_and_a_discovered_one_outlives_its_removal() {
        let t = NodeTable::new(&[a(1), a(2)]);
        assert!(t.set_discovered(&[a(2), a(3)]));
        assert!(!t.set_fixed(&[a(2), a(1)]), "same set: no change");
        assert!(t.set_fixed(&[a(2), a(4)]));
        let s = t.slots();
        let view: Vec<(u16, bool)> = s.iter().map(|s| (s.addr.port(), s.wanted)).collect();
        assert_eq!(
            view,
            [(1, false), (2, true), (3, true), (4, true)],
            "1 withdrawn, 4 appended, 2 and 3 kept"
        );
        assert!(t.set_fixed(&[]));
        let s = t.slots();
        let view: Vec<(u16, bool)> = s.iter().map(|s| (s.addr.port(), s.wanted)).collect();
        assert_eq!(
            view,
            [(1, false), (2, true), (3, true), (4, false)],
            "2 stays: the registry still lists it"
        );
        assert!(t.set_fixed(&[a(1)]), "a node listed again keeps its slot");
        assert!(t.slots()[0].wanted);
        assert_eq!(t.slots().len(), 4);
    }
}
