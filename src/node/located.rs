//! Calls about users across a fleet of gates. A node linked to several
//! gates (each gate dials every node it finds in the registry) reaches a
//! user through the gate that holds it: with a locator
//! ([`NodeBuilder::locator`](super::NodeBuilder::locator)), an unpinned
//! [`GateClient`] asks it (one Redis read, no cache that could go stale)
//! and sends over that gate's link. A user located nowhere, or on a gate
//! this node has no link to, is offline: `NotFound` (`is_online`: false)
//! at once, never a timeout.
//!
//! | operation | with several gates |
//! |---|---|
//! | push / kick / is_online / get_ip / settings / unbind of a user | the located gate |
//! | `multicast` to users | one multicast per gate holding some of them (one `MGET`) |
//! | `broadcast`, `stat` | every gate, summed |

use std::collections::HashMap;
use std::sync::Arc;

use super::error::NodeError;
use super::gate_client::{GateClient, Via};
use super::types::Target;
use crate::fleet::locator::Locator;

/// Targets grouped by the gate that holds them.
pub(crate) type ByGate = Vec<(GateClient, Vec<Target>)>;

impl GateClient {
    /// Uses `locator` to find users' gates (see the module docs).
    pub fn set_locator(&self, locator: Arc<dyn Locator>) {
        let _ = self.inner_locator().set(locator);
    }

    /// The client of the gate that holds the user `via` names, when that
    /// needs a lookup: unpinned, a locator set, several gates connected.
    pub(crate) fn locate_for(&self, via: Via) -> Result<Option<GateClient>, NodeError> {
        let Via::To(Target::User(uid)) = via else {
            return Ok(None);
        };
        if self.gate_id().is_some() || self.gate_ids().len() < 2 {
            return Ok(None);
        }
        let Some(l) = self.inner_locator().get() else {
            return Ok(None);
        };
        let b = (l.locate_gate(uid.0))
            .map_err(|e| NodeError::Locator(e.to_string()))?
            .ok_or(NodeError::NotFound)?;
        if !self.gate_ids().contains(&b.gate) {
            return Err(NodeError::NotFound);
        }
        Ok(Some(self.gate(&b.gate)))
    }

    /// One client per connected gate when this client is unpinned and
    /// several gates are connected (fan-out); `None` otherwise.
    pub(crate) fn each_gate(&self) -> Option<Vec<GateClient>> {
        if self.gate_id().is_some() {
            return None;
        }
        let ids = self.gate_ids();
        (ids.len() > 1).then(|| ids.iter().map(|id| self.gate(id)).collect())
    }

    /// Users grouped by the gate that holds them (one locator round trip);
    /// `None` when no lookup is needed. Users located nowhere, or on a
    /// gate not connected, are left out.
    pub(crate) fn group_by_gate(&self, to: &[Target]) -> Result<Option<ByGate>, NodeError> {
        let Some(l) = self.inner_locator().get() else {
            return Ok(None);
        };
        if self.each_gate().is_none() || to.iter().any(|t| matches!(t, Target::Session(_))) {
            return Ok(None);
        }
        let uids: Vec<i64> = (to.iter())
            .map(|t| match t {
                Target::User(u) => u.0,
                Target::Session(_) => unreachable!("checked above"),
            })
            .collect();
        let found = l
            .locate_gates(&uids)
            .map_err(|e| NodeError::Locator(e.to_string()))?;
        let connected = self.gate_ids();
        let mut groups: HashMap<String, Vec<Target>> = HashMap::new();
        for (t, b) in to.iter().zip(found) {
            if let Some(b) = b.filter(|b| connected.contains(&b.gate)) {
                groups.entry(b.gate).or_default().push(*t);
            }
        }
        Ok(Some(
            groups
                .into_iter()
                .map(|(g, ts)| (self.gate(&g), ts))
                .collect(),
        ))
    }
}
