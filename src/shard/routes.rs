//! Route → the node links whose nodes announced it, picked round robin
//! among the active ones.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::nodes::Link;
use crate::codec::ext;

/// A multiplicative hasher for small integer keys (routes): the default
/// SipHash costs more than the rest of a route lookup.
#[derive(Default)]
pub struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_i32(&mut self, n: i32) {
        self.0 = (n as u32 as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

struct RouteEntry {
    links: Vec<usize>,
    next: usize,
}

/// Route → the links whose nodes announced it.
#[derive(Default)]
pub struct RouteTable {
    map: HashMap<i32, RouteEntry, BuildHasherDefault<IntHasher>>,
}

impl RouteTable {
    /// Rebuilds the table from what every link's node announced.
    pub fn rebuild(&mut self, links: &[Link]) {
        self.map.clear();
        for (i, l) in links.iter().enumerate() {
            for r in &l.routes {
                self.map
                    .entry(*r)
                    .or_insert_with(|| RouteEntry {
                        links: Vec::new(),
                        next: 0,
                    })
                    .links
                    .push(i);
            }
        }
    }

    /// An active link serving `route` (round robin), or the error code for the client.
    pub fn pick(&mut self, route: i32, links: &[Link]) -> Result<usize, u8> {
        let e = self.map.get_mut(&route).ok_or(ext::NO_ROUTE)?;
        let n = e.links.len();
        for k in 0..n {
            let i = e.links[(e.next + k) % n];
            if links[i].is_active() {
                e.next = (e.next + k + 1) % n;
                return Ok(i);
            }
        }
        Err(ext::NODE_DOWN)
    }
}

#[cfg(test)]
mod tests {
    use super::super::nodes::LinkState;
    use super::*;

    fn link(routes: &[i32], active: bool) -> Link {
        let mut l = Link::new("127.0.0.1:1".parse().unwrap(), 1 << 20);
        l.routes = routes.to_vec();
        if active {
            l.state = LinkState::Active;
        }
        l
    }

    #[test]
    fn pick_round_robins_active_links_and_reports_why_not() {
        let links = vec![link(&[1, 2], true), link(&[1], true), link(&[3], false)];
        let mut t = RouteTable::default();
        t.rebuild(&links);
        let picks: Vec<_> = (0..4).map(|_| t.pick(1, &links).unwrap()).collect();
        assert_eq!(picks, vec![0, 1, 0, 1]);
        assert_eq!(t.pick(2, &links), Ok(0));
        assert_eq!(t.pick(3, &links), Err(ext::NODE_DOWN));
        assert_eq!(t.pick(4, &links), Err(ext::NO_ROUTE));
    }
}
