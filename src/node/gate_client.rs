//! [`GateClient`]: the node's table of live links, keyed by (gate id, shard),
//! which link a call goes on, and the calls waiting for their results; it
//! also holds the event numbers seen per (gate id, shard), which outlive
//! links (`sequences.rs`).
//!
//! The operations themselves (push, bind, kick, ...) are in `gate_ops.rs`.
//! This module must not know them, nor read links: it takes a ready
//! `call::Op`, picks the link it goes on, sends it, and leaves the wait for
//! its result to the pending table (`pending.rs`).

use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::error::NodeError;
use super::link_handle::Link;
use super::messages::call_msg;
use super::pending::PendingCalls;
use super::sequences::EventSeqs;
use super::types::Target;
use crate::ids::{SessionId, ShardId};
use crate::link::proto::{call, to_gate, CallResult, NodeState, SetState, ToGate};

/// How long a blocking call waits for the gate's result by default: far
/// above a gate's cross-shard round trip (microseconds), short enough that a
/// handler stuck on a vanished gate gives up before the gate would close the
/// link for silence (3 heartbeat intervals of 1 s).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// Talks to the gates connected to this node: packets to sessions and users,
/// binds, kicks, settings, channels, queries (see the operations below).
///
/// Cheap to clone, usable from any thread. Inside a handler prefer
/// [`SessionContext::gate`](super::SessionContext::gate) (already bound to
/// the request's gate) and the session shortcuts of
/// [`SessionContext`](super::SessionContext).
///
/// # Which gate
///
/// A client from [`Node::gates`](super::Node::gates) uses the only gate
/// connected, and fails with [`NodeError::AmbiguousGate`] when several are;
/// [`GateClient::gate`] gives a client bound to one gate by id.
///
/// # Blocking and `_nowait`
///
/// Every operation has a blocking form, named after the operation, that sends
/// the call with a call id and waits for the gate's `CallResult` (at most
/// [`NodeBuilder::call_timeout`](super::NodeBuilder::call_timeout), then
/// [`NodeError::Timeout`]); result codes become [`NodeError::NotFound`],
/// [`NodeError::AlreadyBound`], [`NodeError::Invalid`], [`NodeError::Busy`].
/// Operations that change something also have a fire-and-forget form,
/// `<operation>_nowait`, that sends call id 0: the gate answers nothing, and
/// only "no link" errors are reported. Queries (`get_ip`, `is_online`,
/// `stat`) only exist blocking.
///
/// Blocking calls work from any thread. On a link reader thread (handlers
/// inline, `workers(0)`) the wait keeps reading that link so the answer is
/// seen, but every other session of that link waits with it: handlers that
/// make blocking calls belong on `workers(n)`.
///
/// # Which link
///
/// All links of a gate reach the same gate; the SDK picks the one that saves
/// the gate a cross-shard hop: a call about a session goes on the link of the
/// session's shard, one about a user (and `bind`) on the link of the user's
/// home shard ([`UserId::home_shard`](crate::UserId::home_shard)), others on
/// any link. If the preferred link is down, any live link of that gate is
/// used. A handler's client ([`SessionContext::gate`](super::SessionContext::gate)) sends
/// the calls that may go anywhere on the request's own link, so they reach
/// the gate in order with the handler's replies. Results are accepted on any
/// link.
#[derive(Clone)]
pub struct GateClient {
    inner: Arc<Inner>,
    /// The gate this client is bound to; `None`: the only one connected.
    gate: Option<Arc<str>>,
    /// The shard whose link takes calls that may go on any link (a
    /// handler's client: the request's link, so such calls stay in order
    /// with its replies). `None`: spread over the live links.
    home: Option<u16>,
    /// How long blocking calls wait for their result.
    timeout: Duration,
}

struct Inner {
    reg: RwLock<Vec<GateLinks>>,
    calls: Arc<PendingCalls>,
    /// Spreads calls that may go on any link over the live links.
    rotor: AtomicUsize,
    /// Event numbers seen per (gate, shard), kept across links.
    seqs: EventSeqs,
    /// Where users are, across gates (set by the builder).
    pub(crate) locator: std::sync::OnceLock<Arc<dyn crate::fleet::locator::Locator>>,
    /// This node's state (a `NodeState`), told to every gate.
    state: AtomicI32,
}

/// The links of one gate, indexed by shard.
struct GateLinks {
    id: Arc<str>,
    /// `GateHello.shards` of its latest link.
    shard_count: u16,
    links: Vec<Option<Arc<Link>>>,
}

/// Where a call should go.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Via {
    /// The link of the target's shard (a session's own, a user's home).
    To(Target),
    /// Any link of the gate.
    Any,
    /// The link of a user's home shard on this client's gate (a bind:
    /// where the session is, not where the user was).
    Home(crate::ids::UserId),
}

impl Via {
    /// The shard named in a "no link" error.
    fn shard_hint(self) -> u16 {
        match self {
            Via::To(Target::Session(s)) => s.shard().0,
            _ => 0,
        }
    }
}

impl Default for GateClient {
    fn default() -> Self {
        GateClient::new(DEFAULT_CALL_TIMEOUT)
    }
}

impl GateClient {
    /// A client with no links yet, whose blocking calls wait up to `timeout`.
    pub(crate) fn new(timeout: Duration) -> Self {
        GateClient {
            inner: Arc::new(Inner {
                reg: RwLock::default(),
                calls: Arc::default(),
                rotor: AtomicUsize::new(0),
                seqs: EventSeqs::default(),
                locator: std::sync::OnceLock::new(),
                state: AtomicI32::new(NodeState::Work as i32),
            }),
            gate: None,
            home: None,
            timeout,
        }
    }

    /// The same client bound to the gate whose `GateHello` carried
    /// `gate_id`. Whether that gate is connected is checked at each call
    /// ([`NodeError::NotConnected`] if not).
    pub fn gate(&self, gate_id: &str) -> GateClient {
        GateClient {
            inner: self.inner.clone(),
            gate: Some(gate_id.into()),
            home: None,
            timeout: self.timeout,
        }
    }

    /// The client of a handler: bound to `gate_id`, and sending calls that
    /// may go on any link on the link of `home` (the request's).
    pub(crate) fn pinned(&self, gate_id: Arc<str>, home: u16) -> GateClient {
        GateClient {
            inner: self.inner.clone(),
            gate: Some(gate_id),
            home: Some(home),
            timeout: self.timeout,
        }
    }

    /// The same client with another wait limit for blocking calls.
    pub fn with_timeout(&self, timeout: Duration) -> GateClient {
        GateClient {
            timeout,
            ..self.clone()
        }
    }

    /// The gate this client is bound to, if any ([`GateClient::gate`]).
    pub fn gate_id(&self) -> Option<&str> {
        self.gate.as_deref()
    }

    /// The wait limit of blocking calls.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Ids of the gates with at least one link up.
    pub fn gate_ids(&self) -> Vec<String> {
        let reg = self.inner.reg.read().unwrap();
        reg.iter().map(|g| g.id.to_string()).collect()
    }

    /// Number of links up, over all gates and shards.
    pub fn links(&self) -> usize {
        let reg = self.inner.reg.read().unwrap();
        reg.iter()
            .map(|g| g.links.iter().filter(|l| l.is_some()).count())
            .sum()
    }

    /// How many times this node saw that session events were lost, over
    /// all gates and links: a gap in an event kind's sequence numbers
    /// ([`EventContext::seq`](super::EventContext::seq)), or a gate that
    /// restarted (another `GateHello.epoch_ms`) after the node had seen its
    /// events. Each is also logged as a warning; with a
    /// [`NodeBuilder::on_snapshot`](super::NodeBuilder::on_snapshot) handler
    /// the node asks for a snapshot of that shard. Never reset.
    pub fn event_gaps(&self) -> u64 {
        self.inner.seqs.gaps()
    }

    /// Event numbers seen per (gate, shard), which every link reader checks.
    pub(crate) fn event_seqs(&self) -> &EventSeqs {
        &self.inner.seqs
    }

    /// The gate a call goes to: the bound one, else the only one. `shard`
    /// is named in a "no link" error.
    fn select<'r>(&self, reg: &'r [GateLinks], shard: u16) -> Result<&'r GateLinks, NodeError> {
        let not_connected = || NodeError::NotConnected { shard };
        match &self.gate {
            Some(id) => reg.iter().find(|g| g.id == *id).ok_or_else(not_connected),
            None => match reg {
                [] => Err(not_connected()),
                [gate] => Ok(gate),
                many => Err(NodeError::AmbiguousGate { gates: many.len() }),
            },
        }
    }

    /// The link a call goes on (see "Which link" above).
    pub(crate) fn pick(&self, via: Via) -> Result<Arc<Link>, NodeError> {
        if let Some(gate) = self.locate_for(via)? {
            return gate.pick(via);
        }
        let reg = self.inner.reg.read().unwrap();
        let g = self.select(&reg, via.shard_hint())?;
        let preferred = match via {
            Via::To(t) => Some(t.preferred_shard(g.shard_count).0),
            Via::Home(u) => Some(Target::User(u).preferred_shard(g.shard_count).0),
            Via::Any => self.home,
        };
        if let Some(l) = preferred.and_then(|shard| g.link(shard)) {
            return Ok(l);
        }
        let live = g.links.iter().flatten().count();
        let n = self.inner.rotor.fetch_add(1, Ordering::Relaxed) % live.max(1);
        g.links
            .iter()
            .flatten()
            .nth(n)
            .cloned()
            .ok_or(NodeError::NotConnected {
                shard: via.shard_hint(),
            })
    }

    /// The link of `session`'s own shard, where plain `Push` messages for it
    /// go (any link of the gate would take them, this one saves the gate a
    /// cross-shard hop); `Ok(None)` if the gate is up but that link is not.
    pub(crate) fn session_link(&self, session: SessionId) -> Result<Option<Arc<Link>>, NodeError> {
        let reg = self.inner.reg.read().unwrap();
        let g = self.select(&reg, session.shard().0)?;
        Ok(g.link(session.shard().0))
    }

    /// The link of `shard` of this client's gate, the only one that can
    /// carry a call about that shard alone (a snapshot).
    pub(crate) fn shard_link(&self, shard: ShardId) -> Result<Arc<Link>, NodeError> {
        let reg = self.inner.reg.read().unwrap();
        let g = self.select(&reg, shard.0)?;
        g.link(shard.0)
            .ok_or(NodeError::NotConnected { shard: shard.0 })
    }

    /// Sends `op` with a call id on `link` and waits for its result.
    pub(crate) fn call_on(&self, link: &Link, op: call::Op) -> Result<CallResult, NodeError> {
        let calls = &self.inner.calls;
        let waiting = calls.register(link.gate_id.clone(), link.shard.0);
        if let Err(e) = link.send(&call_msg(waiting.id, op)) {
            calls.forget(waiting.id);
            return Err(e);
        }
        calls.wait(waiting, self.timeout)
    }

    /// Sends `op` with a call id where `via` says and waits for its result.
    pub(crate) fn call(&self, via: Via, op: call::Op) -> Result<CallResult, NodeError> {
        let link = self.pick(via)?;
        self.call_on(&link, op)
    }

    /// Sends `op` with call id 0 (no result) where `via` says.
    pub(crate) fn cast(&self, via: Via, op: call::Op) -> Result<(), NodeError> {
        let link = self.pick(via)?;
        link.send(&call_msg(0, op))
    }

    /// The table of this client's pending calls, where a link's inbox hands
    /// the results it reads.
    pub(crate) fn pending_calls(&self) -> Arc<PendingCalls> {
        self.inner.calls.clone()
    }

    /// Hands a `CallResult` read on any link to the caller waiting for it.
    pub(crate) fn resolve(&self, r: CallResult) {
        self.inner.calls.resolve(r);
    }

    /// The link to `shard` of gate `gate_id`, if up.
    pub(crate) fn link(&self, gate_id: &str, shard: u16) -> Option<Arc<Link>> {
        let reg = self.inner.reg.read().unwrap();
        reg.iter().find(|g| &*g.id == gate_id)?.link(shard)
    }

    /// The locator slot shared by every clone of this client.
    pub(crate) fn inner_locator(
        &self,
    ) -> &std::sync::OnceLock<Arc<dyn crate::fleet::locator::Locator>> {
        &self.inner.locator
    }

    /// This node's state as the gates know it (sent in every hello).
    pub fn state(&self) -> NodeState {
        NodeState::try_from(self.inner.state.load(Ordering::Relaxed)).unwrap_or_default()
    }

    /// Changes this node's state (due's work / busy / hang / shut) and tells
    /// every gate on every link: `busy` gets stateless requests only when no
    /// `work` node serves the route, `hang` and `shut` get none (stateful
    /// requests of users bound here, events and calls still come). Links
    /// made later announce it in their hello. Returns the links told.
    pub fn set_state(&self, state: NodeState) -> usize {
        self.inner.state.store(state as i32, Ordering::Relaxed);
        let msg = ToGate {
            msg: Some(to_gate::Msg::State(SetState {
                state: state as i32,
            })),
        };
        let links: Vec<Arc<Link>> = {
            let reg = self.inner.reg.read().unwrap();
            reg.iter()
                .flat_map(|g| g.links.iter().flatten().cloned())
                .collect()
        };
        links.iter().filter(|l| l.send(&msg).is_ok()).count()
    }

    /// Makes `link` the link for its (gate, shard); returns the one it
    /// replaces, which the caller should close.
    pub(crate) fn insert(&self, link: Arc<Link>) -> Option<Arc<Link>> {
        let shard = usize::from(link.shard.0);
        let mut reg = self.inner.reg.write().unwrap();
        let i = match reg.iter().position(|g| g.id == link.gate_id) {
            Some(i) => i,
            None => {
                reg.push(GateLinks {
                    id: link.gate_id.clone(),
                    shard_count: link.shard_count,
                    links: Vec::new(),
                });
                reg.len() - 1
            }
        };
        let g = &mut reg[i];
        g.shard_count = link.shard_count;
        if g.links.len() <= shard {
            g.links.resize(shard + 1, None);
        }
        g.links[shard].replace(link)
    }

    /// Forgets `link` if it is still the link for its (gate, shard). When it
    /// was the gate's last, calls waiting on that gate fail at once.
    pub(crate) fn remove(&self, link: &Arc<Link>) {
        let mut reg = self.inner.reg.write().unwrap();
        let Some(i) = reg.iter().position(|g| g.id == link.gate_id) else {
            return;
        };
        let g = &mut reg[i];
        if let Some(slot) = g.links.get_mut(usize::from(link.shard.0)) {
            if slot.as_ref().is_some_and(|l| Arc::ptr_eq(l, link)) {
                *slot = None;
            }
        }
        if g.links.iter().all(Option::is_none) {
            let gone = reg.swap_remove(i);
            drop(reg);
            self.inner.calls.fail_gate(&gone.id);
        }
    }
}

impl GateLinks {
    fn link(&self, shard: u16) -> Option<Arc<Link>> {
        self.links.get(usize::from(shard))?.clone()
    }
}

impl std::fmt::Debug for GateClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GateClient")
            .field("gate", &self.gate)
            .field("gates", &self.gate_ids())
            .field("links", &self.links())
            .field("timeout", &self.timeout)
            .finish()
    }
}
