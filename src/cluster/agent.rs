//! The agent's thread and its start-up: see the module docs of `cluster`.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};

use crate::config::{Config, LocatorBackend, RegistryBackend};
use crate::fleet::etcd::{EtcdOptions, EtcdRegistry};
use crate::fleet::locator::{Binding, LocateEvent, Locator, Notice, Subscription};
use crate::fleet::redis_locator::{RedisLocator, RedisOptions};
use crate::fleet::registry::{Kind, Record, Registration, Registry, State, WatchHandle};
use crate::ids::{SessionId, UserId};
use crate::session::CloseReason;
use crate::shard::fleet_hooks::{Control, FleetNote};
use crate::shard::Shared;

/// Bind/unbind notes the agent's queue holds (shards drop and count beyond).
const NOTES_CAPACITY: usize = 65536;
/// How long the agent waits to hand a shard a command.
const CONTROL_WAIT: Duration = Duration::from_secs(1);

/// Why the fleet agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The registry refused the gate's record or its watch.
    #[error("registry: {0}")]
    Registry(#[from] crate::fleet::registry::RegistryError),
    /// The locator could not be reached.
    #[error("locator: {0}")]
    Locator(#[from] crate::fleet::locator::LocatorError),
    /// The agent's thread could not be spawned.
    #[error("cannot spawn the fleet agent thread: {0}")]
    Spawn(std::io::Error),
}

/// What reaches the agent thread besides the shards' notes.
enum AgentMsg {
    /// A locator notice.
    Locator(Notice),
    /// These gates left the registry (lease lapsed or deregistered).
    GatesGone(Vec<String>),
    /// Stop.
    Stop,
}

/// The running agent: its thread, the gate's registration and watches.
pub struct FleetAgent {
    tx: Sender<AgentMsg>,
    thread: Option<JoinHandle<()>>,
    registration: Option<Registration>,
    _watches: Vec<WatchHandle>,
    _subscription: Option<Subscription>,
}

impl FleetAgent {
    /// Starts the agent if the config asks for a registry or a locator;
    /// `None` otherwise. `endpoint` is the gate's client address
    /// (published in its record).
    pub fn start(
        cfg: &Config,
        shared: Arc<Shared>,
        endpoint: SocketAddr,
    ) -> Result<Option<FleetAgent>, FleetError> {
        let c = &cfg.cluster;
        if c.registry.backend == RegistryBackend::None && c.locator.backend == LocatorBackend::None
        {
            return Ok(None);
        }
        let gate_id = cfg.gate.id.clone();
        let (tx, rx) = crossbeam_channel::unbounded::<AgentMsg>();
        let locator: Option<Arc<dyn Locator>> = match c.locator.backend {
            LocatorBackend::None => None,
            LocatorBackend::Redis => Some(Arc::new(RedisLocator::new(RedisOptions {
                url: c.locator.url.clone(),
                prefix: c.locator.prefix.clone(),
                connect_timeout: c.locator.timeout,
                io_timeout: c.locator.timeout,
            })?)),
        };
        // Before the first node link can come up (the node watch below):
        // binds from then on queue for the agent thread. Only a locator
        // needs them; without one shards note nothing.
        let (notes_tx, notes_rx) = crossbeam_channel::bounded(NOTES_CAPACITY);
        if locator.is_some() {
            let _ = shared.fleet.notes.set(notes_tx);
        }
        let mut watches = Vec::new();
        let mut registration = None;
        if c.registry.backend == RegistryBackend::Etcd {
            let registry = EtcdRegistry::new(EtcdOptions {
                endpoints: c.registry.endpoints.clone(),
                namespace: c.registry.namespace.clone(),
                ttl: c.registry.ttl,
                dial_timeout: c.registry.timeout,
                request_timeout: c.registry.timeout,
                ..EtcdOptions::default()
            })?;
            let nodes_shared = shared.clone();
            watches.push(registry.watch(
                Kind::Node,
                Box::new(move |records| follow_nodes(&nodes_shared, records)),
            )?);
            let gates_tx = tx.clone();
            let me = gate_id.clone();
            let mut known: HashSet<String> = HashSet::new();
            watches.push(registry.watch(
                Kind::Gate,
                Box::new(move |records| {
                    let now: HashSet<String> = records.iter().map(|r| r.id.clone()).collect();
                    let gone: Vec<String> = (known.difference(&now))
                        .filter(|id| **id != me)
                        .cloned()
                        .collect();
                    known = now;
                    if !gone.is_empty() {
                        let _ = gates_tx.send(AgentMsg::GatesGone(gone));
                    }
                }),
            )?);
            registration = Some(registry.register(gate_record(cfg, endpoint))?);
        }
        let subscription = match &locator {
            Some(l) => {
                let sub_tx = tx.clone();
                Some(l.subscribe(Box::new(move |n| {
                    let _ = sub_tx.send(AgentMsg::Locator(n));
                }))?)
            }
            None => None,
        };
        let epoch = shared.epoch_ms;
        let mut agent = Agent {
            me: gate_id,
            epoch,
            shared,
            locator,
            local: HashMap::new(),
            session_ttl: c.locator.session_ttl,
        };
        let thread = std::thread::Builder::new()
            .name("ringgate-fleet".into())
            .spawn(move || agent.run(&notes_rx, &rx))
            .map_err(FleetError::Spawn)?;
        Ok(Some(FleetAgent {
            tx,
            thread: Some(thread),
            registration,
            _watches: watches,
            _subscription: subscription,
        }))
    }

    /// Tells the registry this gate is draining (state `hang`).
    pub fn set_state(&self, state: State) {
        if let Some(r) = &self.registration {
            if let Err(e) = r.set_state(state) {
                tracing::warn!(error = %e, ?state, "cannot publish the gate's state to the registry");
            }
        }
    }

    /// Deregisters the gate (deletes its record, revokes its lease) and
    /// stops the agent.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(r) = self.registration.take() {
            if let Err(e) = r.deregister() {
                tracing::warn!(error = %e, "cannot deregister the gate; its record lapses with its lease");
            }
        }
        let _ = self.tx.send(AgentMsg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for FleetAgent {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// This gate's registry record.
fn gate_record(cfg: &Config, endpoint: SocketAddr) -> Record {
    let epoch_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Record {
        id: cfg.gate.id.clone(),
        kind: Kind::Gate,
        name: cfg.gate.name.clone(),
        state: State::Work,
        endpoint: endpoint.to_string(),
        weight: 1,
        epoch_ms,
        ..Record::default()
    }
}

/// Makes the shards' links follow the registered nodes.
fn follow_nodes(shared: &Shared, records: &[Record]) {
    let mut addrs = Vec::with_capacity(records.len());
    for r in records {
        match r.endpoint.parse::<SocketAddr>() {
            Ok(a) => addrs.push(a),
            Err(_) => {
                tracing::warn!(node = %r.id, endpoint = %r.endpoint, "registered node has no ip:port endpoint; ignored")
            }
        }
    }
    if shared.nodes.set_discovered(&addrs) {
        tracing::info!(nodes = addrs.len(), "registry: node list changed");
        for s in 0..shared.wakers.len() {
            shared.wakers.notify(s);
        }
    }
}

/// The agent thread's state.
struct Agent {
    me: String,
    epoch: u64,
    shared: Arc<Shared>,
    locator: Option<Arc<dyn Locator>>,
    /// Users bound on this gate → their session.
    local: HashMap<i64, SessionId>,
    /// `cluster.locator.session_ttl` (zero: no session store).
    session_ttl: Duration,
}

impl Agent {
    fn run(&mut self, notes: &Receiver<FleetNote>, msgs: &Receiver<AgentMsg>) {
        loop {
            crossbeam_channel::select! {
                recv(notes) -> n => match n {
                    Ok(n) => self.on_note(n),
                    Err(_) => return,
                },
                recv(msgs) -> m => match m {
                    Ok(AgentMsg::Locator(n)) => self.on_notice(n),
                    Ok(AgentMsg::GatesGone(ids)) => self.purge(&ids),
                    Ok(AgentMsg::Stop) | Err(_) => return,
                },
            }
        }
    }

    fn binding(&self, sid: SessionId) -> Binding {
        Binding {
            gate: self.me.clone(),
            session: sid.0,
            epoch: self.epoch,
        }
    }

    fn on_note(&mut self, n: FleetNote) {
        let Some(l) = self.locator.clone() else {
            return;
        };
        match n {
            FleetNote::Bound { uid, sid } => {
                self.local.insert(uid.0, sid);
                match l.bind_gate(uid.0, &self.binding(sid)) {
                    Ok(Some(prev)) if prev.gate != self.me => {
                        tracing::debug!(uid = uid.0, from = %prev.gate, "user moved here from another gate");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(uid = uid.0, error = %e, "locator: cannot record the user's gate")
                    }
                }
                self.restore(&*l, uid, sid);
            }
            FleetNote::Unbound { uid, sid } => {
                if self.local.get(&uid.0) == Some(&sid) {
                    self.local.remove(&uid.0);
                }
                if let Err(e) = l.unbind_gate(uid.0, &self.binding(sid)) {
                    tracing::warn!(uid = uid.0, error = %e, "locator: cannot release the user");
                }
                if !self.session_ttl.is_zero() {
                    // The stored settings outlive the session by the TTL.
                    let _ = l.touch_session(uid.0, self.session_ttl);
                }
            }
            FleetNote::NodeBinding {
                uid,
                service,
                node,
                bind,
            } => {
                let r = if bind {
                    l.bind_node(uid.0, &service, &node).map(drop)
                } else {
                    l.unbind_node(uid.0, &service, &node).map(drop)
                };
                if let Err(e) = r {
                    tracing::warn!(uid = uid.0, %service, %node, error = %e, "locator: cannot record the user's node");
                }
            }
            FleetNote::Settings { uid, settings } => {
                if self.session_ttl.is_zero() {
                    return;
                }
                let settings = settings.into_iter().collect();
                if let Err(e) = l.store_session(uid.0, &settings, self.session_ttl) {
                    tracing::warn!(uid = uid.0, error = %e, "session store: cannot save the user's settings");
                }
            }
        }
    }

    fn on_notice(&mut self, n: Notice) {
        match n {
            Notice::Event(LocateEvent::BindGate { uid, binding }) => {
                let Some(&sid) = self.local.get(&uid) else {
                    return;
                };
                if binding == self.binding(sid) {
                    return;
                }
                // A hint: it may be older than our own bind of this user
                // (notifications and notes race). The locator decides.
                let Some(l) = self.locator.clone() else {
                    return;
                };
                match l.locate_gate(uid) {
                    Ok(now) if now.as_ref() != Some(&self.binding(sid)) => self.kick(uid, sid),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(uid, error = %e, "locator: cannot check a user bound elsewhere; closing ours");
                        self.kick(uid, sid);
                    }
                }
            }
            Notice::Event(_) => {}
            Notice::Resync => self.resync(),
        }
    }

    /// After a (re)subscription: close every local user now bound elsewhere.
    fn resync(&mut self) {
        let Some(l) = self.locator.clone() else {
            return;
        };
        let uids: Vec<i64> = self.local.keys().copied().collect();
        for chunk in uids.chunks(512) {
            match l.locate_gates(chunk) {
                Ok(found) => {
                    for (uid, b) in chunk.iter().zip(found) {
                        let sid = self.local[uid];
                        let mine = b.as_ref().is_some_and(|b| *b == self.binding(sid));
                        if !mine {
                            self.kick(*uid, sid);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "locator: cannot check this gate's users after a resubscribe")
                }
            }
        }
    }

    /// Hands a newly bound session what its user left behind: its node
    /// bindings and (with the session store) its settings.
    fn restore(&self, l: &dyn Locator, uid: UserId, sid: SessionId) {
        let nodes: Vec<(String, String)> = match l.locate_nodes(uid.0) {
            Ok(n) => n.into_iter().collect(),
            Err(e) => {
                tracing::warn!(uid = uid.0, error = %e, "locator: cannot load the user's node bindings");
                Vec::new()
            }
        };
        let settings: HashMap<String, String> = if self.session_ttl.is_zero() {
            Default::default()
        } else {
            match l.load_session(uid.0) {
                Ok(s) => s.unwrap_or_default().into_iter().collect(),
                Err(e) => {
                    tracing::warn!(uid = uid.0, error = %e, "session store: cannot load the user's settings");
                    Default::default()
                }
            }
        };
        if nodes.is_empty() && settings.is_empty() {
            return;
        }
        let c = Control::Restore {
            uid,
            sid,
            settings,
            nodes,
        };
        self.control(sid, c);
    }

    /// Queues a command for `sid`'s shard and wakes it.
    fn control(&self, sid: SessionId, c: Control) {
        let shard = usize::from(sid.shard().0);
        let Some((tx, _)) = self.shared.fleet.controls.get(shard) else {
            return;
        };
        if tx.send_timeout(c, CONTROL_WAIT).is_err() {
            tracing::warn!(session = %sid, "shard did not take the fleet agent's command in time");
            return;
        }
        self.shared.wakers.notify(shard);
    }

    fn kick(&mut self, uid: i64, sid: SessionId) {
        self.local.remove(&uid);
        let c = Control::Kick {
            uid: UserId(uid),
            sid,
            reason: CloseReason::Rebind,
        };
        self.control(sid, c);
    }

    fn purge(&mut self, gates: &[String]) {
        let Some(l) = self.locator.clone() else {
            return;
        };
        for g in gates {
            match l.purge_gate(g) {
                Ok(n) => {
                    tracing::info!(gate = %g, users = n, "a gate left the registry; released its users")
                }
                Err(e) => {
                    tracing::warn!(gate = %g, error = %e, "locator: cannot release the users of a gate that left")
                }
            }
        }
    }
}
