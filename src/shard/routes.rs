//! Route → the node links whose nodes announced it, and the pick among
//! them: the route's rules (authorized, internal, stateful), then the
//! user's bound node or the `cluster.dispatch` strategy among the live
//! nodes of the best state tier; and whether (and how long) the gate waits
//! for that node's reply.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::nodes::Link;
use crate::codec::ext;
use crate::config::Dispatch;
use crate::session::{Millis, NodeBindings};

/// Tiers that take stateless requests: `work` (0) and `busy` (1).
const STATELESS_TIERS: u8 = 2;

/// The first candidate at or after `from` (cyclically) that is `ok`; the
/// caller knows one is.
fn first_from(c: &[Candidate], from: usize, ok: impl Fn(&Candidate) -> bool) -> usize {
    let n = c.len();
    (0..n)
        .map(|k| (from + k) % n)
        .find(|&k| ok(&c[k]))
        .expect("the tier has a live link")
}

/// Smooth weighted round robin (nginx's, as due's `wrr`) among the `ok`
/// candidates: each gains its weight, the largest is picked and loses the
/// total. Over any window of `total` picks each node gets exactly its share.
fn smooth_weighted(c: &mut [Candidate], links: &[Link], ok: impl Fn(&Candidate) -> bool) -> usize {
    let mut total = 0i64;
    let mut best: Option<usize> = None;
    for k in 0..c.len() {
        if !ok(&c[k]) {
            continue;
        }
        let w = i64::from(links[c[k].link].weight.max(1));
        c[k].current += w;
        total += w;
        if best.is_none_or(|b| c[k].current > c[b].current) {
            best = Some(k);
        }
    }
    let b = best.expect("the tier has a live link");
    c[b].current -= total;
    b
}

fn xorshift(mut x: u64) -> u64 {
    if x == 0 {
        x = 0x9e37_79b9_7f4a_7c15;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^ (x << 17)
}

/// A 64-bit finalizer (splitmix64): spreads a user id and node hash pair.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

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

/// Access rules of a route (due's route flags), from the nodes' hellos.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouteRules {
    /// Needs a bound user.
    pub authorized: bool,
    /// Not for clients.
    pub internal: bool,
    /// Goes to the user's bound node of the route's service.
    pub stateful: bool,
}

impl RouteRules {
    fn union(self, o: RouteRules) -> RouteRules {
        RouteRules {
            authorized: self.authorized || o.authorized,
            internal: self.internal || o.internal,
            stateful: self.stateful || o.stateful,
        }
    }
}

/// A link serving a route.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    link: usize,
    /// The reply timeout if the node answers the route.
    reply: Option<Millis>,
    /// Smooth weighted round robin's current weight.
    current: i64,
}

struct RouteEntry {
    links: Vec<Candidate>,
    next: usize,
    rules: RouteRules,
    /// The service of the first node that announced the route: the group
    /// its stateful bindings are looked up in (due: the route's group).
    service: Box<str>,
}

/// A link picked for a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pick {
    /// The link's index.
    pub link: usize,
    /// How long to wait for the node's reply; `None`: the node does not answer.
    pub reply_within: Option<Millis>,
}

/// Who is asking: what a pick may depend on.
#[derive(Clone, Copy, Debug)]
pub struct Asker<'a> {
    /// The bound user, 0 if none.
    pub uid: i64,
    /// The session (hashed by `uid-hash` before a user is bound).
    pub session: u64,
    /// The user's node bindings.
    pub nodes: &'a NodeBindings,
}

/// Route → the links whose nodes announced it.
#[derive(Default)]
pub struct RouteTable {
    map: HashMap<i32, RouteEntry, BuildHasherDefault<IntHasher>>,
    /// Service → handler name → (link, route), for MQTT topics.
    named: HashMap<String, HashMap<String, NamedEntry>>,
    /// xorshift state for `random`.
    rng: u64,
}

#[derive(Default)]
struct NamedEntry {
    links: Vec<(usize, i32)>,
}

/// Why a `module/handler` topic finds no node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NamedMiss {
    /// No node announced the service (or the pinned instance is not up).
    NoService,
    /// The service's nodes do not announce the handler name.
    NoFunction,
    /// The route refused the asker (an extension code: UNAUTHORIZED,
    /// FORBIDDEN, NOT_BOUND, NODE_DOWN).
    Refused(u8),
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
                    rules: RouteRules::default(),
                    service: l.service.as_str().into(),
                });
                e.rules = e.rules.union(l.rules_of(r));
                match e.links.iter_mut().find(|c| c.link == i) {
                    // Listed in both: it is answered.
                    Some(slot) => slot.reply = slot.reply.or(reply),
                    None => e.links.push(Candidate {
                        link: i,
                        reply,
                        current: 0,
                    }),
                }
            }
        }
    }

    /// The link for a client's request on `route`, or the error code for
    /// the client: the route's rules first, then the user's bound node
    /// (stateful routes) or `how` among the best tier of live nodes.
    pub fn pick(
        &mut self,
        route: i32,
        links: &[Link],
        who: Asker<'_>,
        how: Dispatch,
    ) -> Result<Pick, u8> {
        let e = self.map.get_mut(&route).ok_or(ext::NO_ROUTE)?;
        if e.rules.internal {
            return Err(ext::FORBIDDEN);
        }
        if (e.rules.authorized || e.rules.stateful) && who.uid == 0 {
            return Err(ext::UNAUTHORIZED);
        }
        if e.rules.stateful {
            let node = who.nodes.get(&e.service).ok_or(ext::NOT_BOUND)?;
            let c = (e.links.iter())
                .find(|c| links[c.link].is_active() && links[c.link].node_id == node)
                .ok_or(ext::NODE_DOWN)?;
            return Ok(Pick {
                link: c.link,
                reply_within: c.reply,
            });
        }
        let tier = (e.links.iter())
            .filter(|c| links[c.link].is_active())
            .map(|c| links[c.link].tier())
            .min()
            .filter(|t| *t < STATELESS_TIERS)
            .ok_or(ext::NODE_DOWN)?;
        let ok = |c: &Candidate| links[c.link].is_active() && links[c.link].tier() == tier;
        let k = match how {
            Dispatch::RoundRobin => first_from(&e.links, e.next, ok),
            Dispatch::Random => {
                self.rng = xorshift(self.rng);
                first_from(&e.links, (self.rng % e.links.len() as u64) as usize, ok)
            }
            Dispatch::WeightedRoundRobin => smooth_weighted(&mut e.links, links, ok),
            Dispatch::UidHash => {
                let key = if who.uid != 0 {
                    who.uid as u64
                } else {
                    who.session
                };
                (0..e.links.len())
                    .filter(|&k| ok(&e.links[k]))
                    .max_by_key(|&k| mix(key ^ links[e.links[k].link].id_hash))
                    .expect("the tier has a live link")
            }
        };
        e.next = (k + 1) % e.links.len();
        let c = e.links[k];
        Ok(Pick {
            link: c.link,
            reply_within: c.reply,
        })
    }

    /// The link and route for handler `name` of `service`: on node
    /// `instance` if the topic pins one (any state; the route's rules still
    /// apply), else picked as [`RouteTable::pick`] does.
    pub fn pick_named(
        &mut self,
        service: &str,
        name: &str,
        instance: Option<&str>,
        links: &[Link],
        who: Asker<'_>,
        how: Dispatch,
    ) -> Result<(usize, i32), NamedMiss> {
        let handlers = self.named.get(service).ok_or(NamedMiss::NoService)?;
        let e = handlers.get(name).ok_or(NamedMiss::NoFunction)?;
        let Some(id) = instance else {
            let route = e.links.first().ok_or(NamedMiss::NoFunction)?.1;
            return match self.pick(route, links, who, how) {
                Ok(p) => Ok((p.link, route)),
                Err(ext::NODE_DOWN | ext::NO_ROUTE) => Err(NamedMiss::NoService),
                Err(code) => Err(NamedMiss::Refused(code)),
            };
        };
        let &(link, route) = (e.links.iter())
            .find(|(l, _)| links[*l].is_active() && links[*l].node_id == id)
            .ok_or(NamedMiss::NoService)?;
        let rules = self.map.get(&route).map(|r| r.rules).unwrap_or_default();
        if rules.internal {
            return Err(NamedMiss::Refused(ext::FORBIDDEN));
        }
        if (rules.authorized || rules.stateful) && who.uid == 0 {
            return Err(NamedMiss::Refused(ext::UNAUTHORIZED));
        }
        Ok((link, route))
    }
}

#[cfg(test)]
#[path = "routes_tests.rs"]
mod tests;
