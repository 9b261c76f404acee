//! [`GateClient`]: the node's table of live links, keyed by (gate id, shard),
//! and pushes to client sessions through them.

use std::sync::{Arc, RwLock};

use bytes::Bytes;

use super::link::Link;
use super::NodeError;
use crate::ids::SessionId;

/// Sends packets to client sessions through the gates connected to this node.
///
/// Cheap to clone, usable from any thread. Inside a handler prefer
/// [`Context::push`](super::Context::push), which knows the request's gate and
/// batches with the handler's replies.
#[derive(Clone, Default)]
pub struct GateClient {
    reg: Arc<RwLock<Vec<GateLinks>>>,
}

/// The links of one gate, indexed by shard.
struct GateLinks {
    id: Arc<str>,
    shards: Vec<Option<Arc<Link>>>,
}

impl GateClient {
    pub(crate) fn new() -> Self {
        GateClient::default()
    }

    /// Sends `payload` to `session` as a packet with `route` and `seq`.
    ///
    /// Goes on the link of the session's shard of the only connected gate.
    /// Errors: [`NodeError::NotConnected`] when that link is not up,
    /// [`NodeError::AmbiguousGate`] when several gates are connected (use
    /// [`GateClient::push_to`]). Waits only if the link's write backlog is
    /// full.
    pub fn push(
        &self,
        session: SessionId,
        route: i32,
        seq: i32,
        payload: impl Into<Bytes>,
    ) -> Result<(), NodeError> {
        let shard = session.shard().0;
        let link = {
            let reg = self.reg.read().unwrap();
            match reg.as_slice() {
                [] => return Err(NodeError::NotConnected { shard }),
                [gate] => gate.link(shard),
                many => return Err(NodeError::AmbiguousGate { gates: many.len() }),
            }
        };
        let link = link.ok_or(NodeError::NotConnected { shard })?;
        link.push(session, route, seq, payload.into(), 0)
    }

    /// Like [`GateClient::push`], through the gate whose `GateHello` carried
    /// `gate_id`.
    pub fn push_to(
        &self,
        gate_id: &str,
        session: SessionId,
        route: i32,
        seq: i32,
        payload: impl Into<Bytes>,
    ) -> Result<(), NodeError> {
        let shard = session.shard().0;
        let link = self
            .link(gate_id, shard)
            .ok_or(NodeError::NotConnected { shard })?;
        link.push(session, route, seq, payload.into(), 0)
    }

    /// Ids of the gates with at least one link up.
    pub fn gate_ids(&self) -> Vec<String> {
        let reg = self.reg.read().unwrap();
        reg.iter().map(|g| g.id.to_string()).collect()
    }

    /// Number of links up, over all gates and shards.
    pub fn links(&self) -> usize {
        let reg = self.reg.read().unwrap();
        reg.iter()
            .map(|g| g.shards.iter().filter(|l| l.is_some()).count())
            .sum()
    }

    /// The link to `shard` of gate `gate_id`, if up.
    pub(crate) fn link(&self, gate_id: &str, shard: u16) -> Option<Arc<Link>> {
        let reg = self.reg.read().unwrap();
        reg.iter().find(|g| &*g.id == gate_id)?.link(shard)
    }

    /// Makes `link` the link for its (gate, shard); returns the one it
    /// replaces, which the caller should close.
    pub(crate) fn insert(&self, link: Arc<Link>) -> Option<Arc<Link>> {
        let shard = usize::from(link.shard.0);
        let mut reg = self.reg.write().unwrap();
        let i = match reg.iter().position(|g| g.id == link.gate_id) {
            Some(i) => i,
            None => {
                reg.push(GateLinks {
                    id: link.gate_id.clone(),
                    shards: Vec::new(),
                });
                reg.len() - 1
            }
        };
        let shards = &mut reg[i].shards;
        if shards.len() <= shard {
            shards.resize(shard + 1, None);
        }
        shards[shard].replace(link)
    }

    /// Forgets `link` if it is still the link for its (gate, shard).
    pub(crate) fn remove(&self, link: &Arc<Link>) {
        let mut reg = self.reg.write().unwrap();
        let Some(i) = reg.iter().position(|g| g.id == link.gate_id) else {
            return;
        };
        let g = &mut reg[i];
        if let Some(slot) = g.shards.get_mut(usize::from(link.shard.0)) {
            if slot.as_ref().is_some_and(|l| Arc::ptr_eq(l, link)) {
                *slot = None;
            }
        }
        if g.shards.iter().all(Option::is_none) {
            reg.swap_remove(i);
        }
    }
}

impl GateLinks {
    fn link(&self, shard: u16) -> Option<Arc<Link>> {
        self.shards.get(usize::from(shard))?.clone()
    }
}

impl std::fmt::Debug for GateClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GateClient")
            .field("gates", &self.gate_ids())
            .field("links", &self.links())
            .finish()
    }
}
