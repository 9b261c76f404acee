//! Route → the node links whose nodes announced it, picked round robin
//! among the active ones, and whether (and how long) the gate waits for
//! that node's reply.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::nodes::Link;
use crate::codec::ext;
use crate::session::Millis;

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
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

struct RouteEntry {
    /// Link index, and the reply timeout if the node answers the route.
    links: Vec<(usize, Option<Millis>)>,
    next: usize,
}

/// A link picked for a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pick {
    /// The link's index.
    pub link: usize,
    /// How long to wait for the node's reply; `None`: the node does not answer.
    pub reply_within: Option<Millis>,
}

/// Route → the links whose nodes announced it.
#[derive(Default)]
pub struct RouteTable {
    map: HashMap<i32, RouteEntry, BuildHasherDefault<IntHasher>>,
}

impl RouteTable {
    /// Rebuilds the table from what every link's node announced; a reply
    /// route with timeout 0 waits `default_timeout`.
    pub fn rebuild(&mut self, links: &[Link], default_timeout: Millis) {
        self.map.clear();
        for (i, l) in links.iter().enumerate() {
            let served = l.routes.iter().map(|r| (*r, None));
            let answered = (l.reply_routes.iter()).map(|&(r, t)| {
                let t = if t == 0 {
                    default_timeout
                } else {
                    Millis::from(t)
                };
                (r, Some(t))
            });
            for (r, reply) in served.chain(answered) {
                let e = self.map.entry(r).or_insert_with(|| RouteEntry {
                    links: Vec::new(),
                    next: 0,
                });
                match e.links.iter_mut().find(|(j, _)| *j == i) {
                    // Listed in both: it is answered.
                    Some(slot) => slot.1 = slot.1.or(reply),
                    None => e.links.push((i, reply)),
                }
            }
        }
    }

    /// An active link serving `route` (round robin), or the error code for the client.
    pub fn pick(&mut self, route: i32, links: &[Link]) -> Result<Pick, u8> {
        let e = self.map.get_mut(&route).ok_or(ext::NO_ROUTE)?;
        let n = e.links.len();
        for k in 0..n {
            let (link, reply_within) = e.links[(e.next + k) % n];
            if links[link].is_active() {
                e.next = (e.next + k + 1) % n;
                return Ok(Pick { link, reply_within });
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
        t.rebuild(&links, 5000);
        let picks: Vec<_> = (0..4).map(|_| t.pick(1, &links).unwrap().link).collect();
        assert_eq!(picks, vec![0, 1, 0, 1]);
        assert_eq!(t.pick(2, &links).map(|p| p.link), Ok(0));
        assert_eq!(t.pick(3, &links), Err(ext::NODE_DOWN));
        assert_eq!(t.pick(4, &links), Err(ext::NO_ROUTE));
    }

    #[test]
    fn answered_routes_carry_their_timeout_or_the_default() {
        let mut a = link(&[1, 2], true);
        a.reply_routes = vec![(2, 0), (3, 250)];
        let links = vec![a];
        let mut t = RouteTable::default();
        t.rebuild(&links, 5000);
        let within = |t: &mut RouteTable, r| t.pick(r, &links).unwrap().reply_within;
        assert_eq!(within(&mut t, 1), None, "a notification route");
        assert_eq!(within(&mut t, 2), Some(5000), "in both lists: answered");
        assert_eq!(within(&mut t, 3), Some(250));
    }
}
