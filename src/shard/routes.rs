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
    /// Service → handler name → (link, route), for MQTT topics.
    named: HashMap<String, HashMap<String, NamedEntry>>,
}

#[derive(Default)]
struct NamedEntry {
    links: Vec<(usize, i32)>,
    next: usize,
}

/// Why a `module/handler` topic finds no node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NamedMiss {
    /// No node announced the service (or the pinned instance is not up).
    NoService,
    /// The service's nodes do not announce the handler name.
    NoFunction,
}

impl RouteTable {
    /// Rebuilds the table from what every link's node announced; a reply
    /// route with timeout 0 waits `default_timeout`.
    pub fn rebuild(&mut self, links: &[Link], default_timeout: Millis) {
        self.map.clear();
        self.named.clear();
        for (i, l) in links.iter().enumerate() {
            if !l.service.is_empty() {
                let handlers = self.named.entry(l.service.clone()).or_default();
                for (route, name) in &l.names {
                    let e = handlers.entry(name.clone()).or_default();
                    e.links.push((i, *route));
                }
            }
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

    /// An active link serving handler `name` of `service` (on node
    /// `instance` if given), round robin, and its route number.
    pub fn pick_named(
        &mut self,
        service: &str,
        name: &str,
        instance: Option<&str>,
        links: &[Link],
    ) -> Result<(usize, i32), NamedMiss> {
        let handlers = self.named.get_mut(service).ok_or(NamedMiss::NoService)?;
        let e = handlers.get_mut(name).ok_or(NamedMiss::NoFunction)?;
        let n = e.links.len();
        for k in 0..n {
            let (link, route) = e.links[(e.next + k) % n];
            let l = &links[link];
            if l.is_active() && instance.is_none_or(|id| l.node_id == id) {
                e.next = (e.next + k + 1) % n;
                return Ok((link, route));
            }
        }
        Err(NamedMiss::NoService)
    }
}

#[cfg(test)]
mod tests {
    use super::super::nodes::LinkState;
    use super::*;

    impl Link {
        fn clone_for_test(&self) -> Link {
            let mut l = link(&self.routes, self.is_active());
            l.service = self.service.clone();
            l.names = self.names.clone();
            l
        }
    }

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
    fn named_handlers_pick_by_service_name_and_instance() {
        let mut a = link(&[1], true);
        a.service = "Echo".into();
        a.node_id = "n1".into();
        a.names = vec![(1, "HD_Echo".into())];
        let mut b = a.clone_for_test();
        b.node_id = "n2".into();
        let links = vec![a, b];
        let mut t = RouteTable::default();
        t.rebuild(&links, 5000);
        let picks: Vec<_> = (0..2)
            .map(|_| t.pick_named("Echo", "HD_Echo", None, &links).unwrap())
            .collect();
        assert_eq!(picks, vec![(0, 1), (1, 1)]);
        assert_eq!(
            t.pick_named("Echo", "HD_Echo", Some("n2"), &links),
            Ok((1, 1))
        );
        assert_eq!(
            t.pick_named("Echo", "HD_Echo", Some("n9"), &links),
            Err(NamedMiss::NoService)
        );
        assert_eq!(
            t.pick_named("Echo", "HD_Nope", None, &links),
            Err(NamedMiss::NoFunction)
        );
        assert_eq!(
            t.pick_named("Chat", "HD_Echo", None, &links),
            Err(NamedMiss::NoService)
        );
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
