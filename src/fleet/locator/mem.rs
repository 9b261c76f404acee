//! [`MemLocator`]: the locator in one process's memory, with the same
//! semantics as Redis's (CAS unbinds, previous owner on bind, one event per
//! change). For tests and single-gate deployments.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crossbeam_channel::{unbounded, RecvTimeoutError, Sender};

use super::{Binding, LocateEvent, Locator, LocatorError, Notice, Subscription, Uid};

/// How often a subscription thread checks whether it was dropped.
const STOP_POLL: Duration = Duration::from_millis(100);

/// The locator in memory. Clones share one state.
///
/// Session TTLs are not timed: a stored session lives until it is deleted
/// or [`expire_session`](Self::expire_session) simulates its expiry.
#[derive(Clone, Debug, Default)]
pub struct MemLocator {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    gates: HashMap<Uid, Binding>,
    /// Users bound on each gate, for [`Locator::purge_gate`].
    gate_users: HashMap<String, HashSet<Uid>>,
    nodes: HashMap<Uid, BTreeMap<String, String>>,
    sessions: HashMap<Uid, BTreeMap<String, String>>,
    subscribers: Vec<Sender<LocateEvent>>,
}

impl State {
    fn publish(&mut self, ev: LocateEvent) {
        self.subscribers.retain(|tx| tx.send(ev.clone()).is_ok());
    }

    fn forget_on_gate(&mut self, gate: &str, uid: Uid) {
        if let Some(set) = self.gate_users.get_mut(gate) {
            set.remove(&uid);
            if set.is_empty() {
                self.gate_users.remove(gate);
            }
        }
    }
}

impl MemLocator {
    /// An empty locator.
    pub fn new() -> MemLocator {
        MemLocator::default()
    }

    /// Simulates the expiry of `uid`'s session TTL; `true` if there was one.
    pub fn expire_session(&self, uid: Uid) -> bool {
        self.lock().sessions.remove(&uid).is_some()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Locator for MemLocator {
    fn bind_gate(&self, uid: Uid, b: &Binding) -> Result<Option<Binding>, LocatorError> {
        let mut st = self.lock();
        let old = st.gates.insert(uid, b.clone());
        if old.as_ref() == Some(b) {
            return Ok(old);
        }
        if let Some(o) = old.as_ref().filter(|o| o.gate != b.gate) {
            let gate = o.gate.clone();
            st.forget_on_gate(&gate, uid);
        }
        st.gate_users.entry(b.gate.clone()).or_default().insert(uid);
        st.publish(LocateEvent::BindGate {
            uid,
            binding: b.clone(),
        });
        Ok(old)
    }

    fn unbind_gate(&self, uid: Uid, b: &Binding) -> Result<bool, LocatorError> {
        let mut st = self.lock();
        if st.gates.get(&uid) != Some(b) {
            return Ok(false);
        }
        st.gates.remove(&uid);
        st.forget_on_gate(&b.gate, uid);
        st.publish(LocateEvent::UnbindGate {
            uid,
            binding: b.clone(),
        });
        Ok(true)
    }

    fn locate_gate(&self, uid: Uid) -> Result<Option<Binding>, LocatorError> {
        Ok(self.lock().gates.get(&uid).cloned())
    }

    fn locate_gates(&self, uids: &[Uid]) -> Result<Vec<Option<Binding>>, LocatorError> {
        let st = self.lock();
        Ok(uids.iter().map(|u| st.gates.get(u).cloned()).collect())
    }

    fn bind_node(
        &self,
        uid: Uid,
        service: &str,
        node: &str,
    ) -> Result<Option<String>, LocatorError> {
        let mut st = self.lock();
        let entries = st.nodes.entry(uid).or_default();
        let old = entries.insert(service.to_owned(), node.to_owned());
        if old.as_deref() != Some(node) {
            st.publish(LocateEvent::BindNode {
                uid,
                service: service.to_owned(),
                node: node.to_owned(),
            });
        }
        Ok(old)
    }

    fn unbind_node(&self, uid: Uid, service: &str, node: &str) -> Result<bool, LocatorError> {
        let mut st = self.lock();
        let Some(entries) = st.nodes.get_mut(&uid) else {
            return Ok(false);
        };
        if entries.get(service).map(String::as_str) != Some(node) {
            return Ok(false);
        }
        entries.remove(service);
        if entries.is_empty() {
            st.nodes.remove(&uid);
        }
        st.publish(LocateEvent::UnbindNode {
            uid,
            service: service.to_owned(),
            node: node.to_owned(),
        });
        Ok(true)
    }

    fn locate_node(&self, uid: Uid, service: &str) -> Result<Option<String>, LocatorError> {
        Ok(self
            .lock()
            .nodes
            .get(&uid)
            .and_then(|e| e.get(service).cloned()))
    }

    fn locate_nodes(&self, uid: Uid) -> Result<BTreeMap<String, String>, LocatorError> {
        let st = self.lock();
        let nodes = st.nodes.get(&uid);
        Ok(nodes
            .map(|e| e.iter().map(|(s, n)| (s.clone(), n.clone())).collect())
            .unwrap_or_default())
    }

    fn purge_gate(&self, gate: &str) -> Result<usize, LocatorError> {
        let mut st = self.lock();
        let users = st.gate_users.remove(gate).unwrap_or_default();
        let mut released = 0;
        for uid in users {
            let Some(b) = st.gates.get(&uid).filter(|b| b.gate == gate).cloned() else {
                continue;
            };
            st.gates.remove(&uid);
            st.publish(LocateEvent::UnbindGate { uid, binding: b });
            released += 1;
        }
        Ok(released)
    }

    fn subscribe(
        &self,
        mut on_notice: Box<dyn FnMut(Notice) + Send>,
    ) -> Result<Subscription, LocatorError> {
        let (tx, rx) = unbounded();
        self.lock().subscribers.push(tx);
        Subscription::spawn("mem-locator-sub", move |stop| {
            on_notice(Notice::Resync);
            while !stop.load(Ordering::Relaxed) {
                match rx.recv_timeout(STOP_POLL) {
                    Ok(ev) => on_notice(Notice::Event(ev)),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        })
    }

    fn store_session(
        &self,
        uid: Uid,
        settings: &BTreeMap<String, String>,
        _ttl: Duration,
    ) -> Result<(), LocatorError> {
        let mut st = self.lock();
        if settings.is_empty() {
            st.sessions.remove(&uid);
        } else {
            st.sessions.insert(uid, settings.clone());
        }
        Ok(())
    }

    fn load_session(&self, uid: Uid) -> Result<Option<BTreeMap<String, String>>, LocatorError> {
        Ok(self.lock().sessions.get(&uid).cloned())
    }

    fn touch_session(&self, uid: Uid, _ttl: Duration) -> Result<bool, LocatorError> {
        Ok(self.lock().sessions.contains_key(&uid))
    }

    fn delete_session(&self, uid: Uid) -> Result<(), LocatorError> {
        self.lock().sessions.remove(&uid);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
