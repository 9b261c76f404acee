//! The soak's own node, which the gate dials: it logs users in (binds a
//! uid per log-in), echoes requests, keeps the ledger of session events,
//! and, while the run lasts, pushes to and kicks random bound users and
//! floods the slow readers the clients point it at.
//!
//! The ledger is the judge of "exactly one disconnect event per session":
//! a session enters it with its `Connect` and leaves it with its
//! `Disconnect`; a second `Connect` or a `Disconnect` for a session not in
//! it is counted, and whatever is left in it once every connection closed
//! never got its `Disconnect`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use ringgate::node::{Context, EventContext, EventKind, GateClient, Node, NodeHandle};
use ringgate::UserId;

use super::counts::{bump, NodeCounts};
use super::pace::{below, Bucket};
use super::SoakArgs;
use crate::push::{log_in, start_own};
use crate::wsc::MaskRng;

/// Flood pushes sent between two `is_online` checks.
const FLOOD_BATCH: u64 = 64;

/// A slow reader to flood: its uid, and when it reads again.
#[derive(Clone, Copy, Debug)]
pub struct Flood {
    /// The user bound on the slow connection.
    pub uid: i64,
    /// The flood stops then: the reader drains what it got from there on.
    pub until: Instant,
}

/// Bound users, for random picks: a vector and each uid's place in it.
#[derive(Debug, Default)]
struct LiveSet {
    uids: Vec<i64>,
    at: HashMap<i64, usize>,
}

impl LiveSet {
    fn insert(&mut self, uid: i64) {
        if let std::collections::hash_map::Entry::Vacant(e) = self.at.entry(uid) {
            e.insert(self.uids.len());
            self.uids.push(uid);
        }
    }

    fn remove(&mut self, uid: i64) {
        if let Some(i) = self.at.remove(&uid) {
            self.uids.swap_remove(i);
            if let Some(&moved) = self.uids.get(i) {
                self.at.insert(moved, i);
            }
        }
    }

    fn pick(&self, rng: &mut MaskRng) -> Option<i64> {
        (!self.uids.is_empty()).then(|| self.uids[below(rng, self.uids.len())])
    }
}

/// What the node's handlers and threads share.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Sessions connected and not yet disconnected.
    open: Mutex<HashSet<u64>>,
    /// Users bound now.
    live: Mutex<LiveSet>,
    /// `Disconnect` events per close reason.
    reasons: Mutex<BTreeMap<&'static str, u64>>,
    /// The counters.
    pub counts: NodeCounts,
    /// The run is over: pushes, kicks and floods stop.
    stop: AtomicBool,
}

impl Ledger {
    /// Sessions that connected and have not disconnected yet.
    pub fn open_sessions(&self) -> u64 {
        self.open.lock().map_or(0, |o| o.len() as u64)
    }

    /// `Disconnect` events per reason.
    pub fn reasons(&self) -> BTreeMap<String, u64> {
        self.reasons.lock().map_or_else(
            |_| BTreeMap::new(),
            |r| r.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        )
    }

    fn on_event(&self, ev: &mut EventContext<'_>) {
        let (session, uid) = (ev.session().0, ev.uid().0);
        let c = &self.counts;
        match ev.kind() {
            EventKind::Connect => {
                let fresh = self.open.lock().is_ok_and(|mut o| o.insert(session));
                bump(
                    if fresh {
                        &c.connects
                    } else {
                        &c.duplicate_connects
                    },
                    1,
                );
            }
            EventKind::Bind => {
                bump(&c.binds, 1);
                if let Ok(mut l) = self.live.lock() {
                    l.insert(uid);
                }
            }
            EventKind::Unbind => {
                if let Ok(mut l) = self.live.lock() {
                    l.remove(uid);
                }
            }
            EventKind::Disconnect => {
                let known = self.open.lock().is_ok_and(|mut o| o.remove(&session));
                bump(
                    if known {
                        &c.disconnects
                    } else {
                        &c.stray_disconnects
                    },
                    1,
                );
                if let Ok(mut r) = self.reasons.lock() {
                    *r.entry(ev.reason().as_str()).or_default() += 1;
                }
                if uid != 0 {
                    if let Ok(mut l) = self.live.lock() {
                        l.remove(uid);
                    }
                }
            }
            EventKind::Drain => {}
        }
    }

    fn pick(&self, rng: &mut MaskRng) -> Option<i64> {
        self.live.lock().ok()?.pick(rng)
    }
}

/// The running node and its threads.
pub struct SoakNode {
    /// The SDK's handle (links, shutdown).
    pub handle: NodeHandle,
    /// Events and counters.
    pub ledger: Arc<Ledger>,
    threads: Vec<JoinHandle<()>>,
}

impl SoakNode {
    /// Starts the node on `--node-listen` and waits for the gate's links.
    pub fn start(args: &SoakArgs) -> Result<SoakNode> {
        let ledger = Arc::new(Ledger::default());
        let (l1, l2) = (ledger.clone(), ledger.clone());
        let builder = Node::builder("ringgate-soak")
            .route(args.own.login_route, move |ctx: &mut Context| {
                if !log_in(ctx) {
                    bump(&l1.counts.bind_failures, 1);
                }
            })
            .route(args.route, |ctx: &mut Context| {
                let p = ctx.payload().clone();
                ctx.reply(p);
            })
            .on_event(
                &[
                    EventKind::Connect,
                    EventKind::Bind,
                    EventKind::Unbind,
                    EventKind::Disconnect,
                ],
                move |ev: &mut EventContext<'_>| l2.on_event(ev),
            );
        let handle = start_own(builder, &args.own)?;
        Ok(SoakNode {
            handle,
            ledger,
            threads: Vec::new(),
        })
    }

    /// Starts pushing and kicking at the run's rates, and flooding what
    /// comes from `floods`.
    pub fn act(&mut self, args: &SoakArgs, floods: Receiver<Flood>) -> Result<()> {
        let (gates, ledger) = (self.handle.gates(), self.ledger.clone());
        let (pushes, kicks, route) = (args.pushes as f64, args.kicks as f64, args.push_route);
        self.threads.push(
            std::thread::Builder::new()
                .name("soak-node-actions".into())
                .spawn(move || actions(&gates, &ledger, pushes, kicks, route))?,
        );
        let (gates, ledger) = (self.handle.gates(), self.ledger.clone());
        let payload = Bytes::from(vec![0xa5u8; args.flood_payload]);
        let (cap, route) = (args.flood_bytes, args.push_route);
        self.threads.push(
            std::thread::Builder::new()
                .name("soak-node-flood".into())
                .spawn(move || flood_all(&gates, &ledger, &floods, &payload, cap, route))?,
        );
        Ok(())
    }

    /// Stops pushing, kicking and flooding (the links stay up).
    pub fn stop_acting(&mut self) {
        self.ledger.stop.store(true, Ordering::Release);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }

    /// Event numbering gaps the SDK saw (events the gate dropped).
    pub fn event_gaps(&self) -> u64 {
        self.handle.gates().event_gaps()
    }
}

/// Pushes to and kicks random bound users until the ledger says stop.
fn actions(gates: &GateClient, ledger: &Ledger, pushes: f64, kicks: f64, route: i32) {
    let mut rng = MaskRng::new();
    let now = Instant::now();
    let (mut push, mut kick) = (Bucket::new(pushes, now), Bucket::new(kicks, now));
    let c = &ledger.counts;
    let mut n = 0u64;
    while !ledger.stop.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(2));
        let now = Instant::now();
        push.refill(now);
        kick.refill(now);
        while push.take() {
            let Some(uid) = ledger.pick(&mut rng) else {
                break;
            };
            n += 1;
            let mut p = [0u8; 16];
            p[..8].copy_from_slice(&uid.to_be_bytes());
            p[8..].copy_from_slice(&n.to_be_bytes());
            let r = gates.push_uid_nowait(UserId(uid), route, 0, Bytes::copy_from_slice(&p));
            bump(if r.is_ok() { &c.pushes } else { &c.call_errors }, 1);
        }
        while kick.take() {
            let Some(uid) = ledger.pick(&mut rng) else {
                break;
            };
            let r = gates.kick_nowait(UserId(uid), true);
            bump(if r.is_ok() { &c.kicks } else { &c.call_errors }, 1);
        }
    }
}

/// Floods each slow reader sent on `floods`, one after the other.
fn flood_all(
    gates: &GateClient,
    ledger: &Ledger,
    floods: &Receiver<Flood>,
    payload: &Bytes,
    cap: u64,
    route: i32,
) {
    while !ledger.stop.load(Ordering::Acquire) {
        match floods.recv_timeout(Duration::from_millis(50)) {
            Ok(f) => flood(gates, ledger, f, payload, cap, route),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Pushes `payload` to `f.uid` until the gate closes that user's
/// connection (it is offline), the reader reads again, or `cap` bytes.
fn flood(gates: &GateClient, ledger: &Ledger, f: Flood, payload: &Bytes, cap: u64, route: i32) {
    let c = &ledger.counts;
    bump(&c.floods, 1);
    let mut sent = 0u64;
    while Instant::now() < f.until && sent < cap && !ledger.stop.load(Ordering::Acquire) {
        for _ in 0..FLOOD_BATCH {
            if gates
                .push_uid_nowait(UserId(f.uid), route, 0, payload.clone())
                .is_err()
            {
                bump(&c.call_errors, 1);
                return;
            }
        }
        bump(&c.flood_pushes, FLOOD_BATCH);
        sent += FLOOD_BATCH * payload.len() as u64;
        match gates.is_online(UserId(f.uid)) {
            Ok(true) => {}
            Ok(false) => return bump(&c.floods_closed, 1),
            Err(_) => return bump(&c.call_errors, 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_set_picks_only_members() {
        let mut s = LiveSet::default();
        for u in 1..=5 {
            s.insert(u);
        }
        s.insert(3);
        s.remove(2);
        s.remove(9);
        let mut rng = MaskRng::new();
        for _ in 0..100 {
            let u = s.pick(&mut rng).unwrap();
            assert!([1, 3, 4, 5].contains(&u), "{u}");
        }
        for u in [1, 3, 4, 5] {
            s.remove(u);
        }
        assert_eq!(s.pick(&mut rng), None);
        assert!(s.at.is_empty());
    }
}
