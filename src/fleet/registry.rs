//! The service registry: which gates and nodes are in the fleet, in which
//! state, serving which routes, and how to follow that list as it changes.
//!
//! This module owns the record every instance publishes ([`Record`]: due's
//! `ServiceInstance` JSON plus route names and an epoch), the [`Registry`]
//! trait the gate and nodes program against, and [`MemRegistry`], the
//! in-process implementation for tests and single-process use. The etcd one
//! is [`EtcdRegistry`](super::etcd::EtcdRegistry).
//!
//! It must not know about etcd's wire format (that is `etcd`'s) nor about
//! routing (the gate turns the list a watcher receives into its route table).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use serde::{Deserialize, Serialize};

/// What an instance is. Also the directory of its key
/// (`/{namespace}/{kind}/{id}`) and due's `name` field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A gate: holds client connections and routes their packets.
    Gate,
    /// A node: serves routes and events. The default, as most records are.
    #[default]
    Node,
}

impl Kind {
    /// The lowercase name: `"gate"` or `"node"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Gate => "gate",
            Kind::Node => "node",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An instance's state, with due's names and meaning. Stateless routes go to
/// `work` instances, else to `busy` ones; `hang` and `shut` get none, but
/// stateful routes and events still reach any instance whose record exists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Shutting down: about to leave.
    Shut,
    /// Serving normally.
    #[default]
    Work,
    /// Overloaded: picked for stateless routes only when no instance works.
    Busy,
    /// Draining (due's graceful stop sets it first): no new stateless work.
    Hang,
}

impl State {
    /// True if stateless routes may go to an instance in this state (work,
    /// busy).
    pub fn takes_stateless(self) -> bool {
        matches!(self, State::Work | State::Busy)
    }

    /// Preference for stateless routes, lowest first: work 0, busy 1, and 2
    /// for the states that get none.
    pub fn tier(self) -> u8 {
        match self {
            State::Work => 0,
            State::Busy => 1,
            State::Shut | State::Hang => 2,
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn one() -> u32 {
    1
}

/// One route an instance serves, as due writes it: `{"i":3,"s":true}`, with
/// false flags left out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRecord {
    /// The route number (due leaves out route 0, hence the default).
    #[serde(rename = "i", default)]
    pub id: i32,
    /// Internal: for node-to-node calls only; a gate refuses it from clients.
    #[serde(rename = "n", default, skip_serializing_if = "is_false")]
    pub internal: bool,
    /// Stateful: goes to the instance the user is bound to for this service.
    #[serde(rename = "s", default, skip_serializing_if = "is_false")]
    pub stateful: bool,
    /// Authorized: only for sessions bound to a user id.
    #[serde(rename = "a", default, skip_serializing_if = "is_false")]
    pub authorized: bool,
}

/// What an instance publishes about itself: due's `ServiceInstance` JSON
/// (which also has `"name"`, the kind again, written by the etcd registry and
/// ignored when read) plus route names and an epoch.
///
/// ```text
/// {"id":"n1","kind":"node","alias":"game","state":"work",
///  "routes":[{"i":1},{"i":3,"s":true}],"names":{"chat":3},"events":[1],
///  "endpoint":"127.0.0.1:7000","weight":1,"metadata":{},"epoch_ms":1767225600000}
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The instance id, unique per kind; the last part of its key, so it
    /// must be non-empty and hold no `/`.
    pub id: String,
    /// Gate or node.
    pub kind: Kind,
    /// The service name (due's `alias`): instances with one name serve the
    /// same routes, and a user is bound per service name.
    #[serde(rename = "alias")]
    pub name: String,
    /// Whether it takes stateless work (see [`State`]).
    pub state: State,
    /// The routes it serves (nodes; gates have none).
    #[serde(default)]
    pub routes: Vec<RouteRecord>,
    /// Route names (MQTT topic levels) to route numbers.
    #[serde(default)]
    pub names: BTreeMap<String, i32>,
    /// The event kinds it handles.
    #[serde(default)]
    pub events: Vec<i32>,
    /// Where to reach it (a node's link address, a gate's address for nodes).
    pub endpoint: String,
    /// Its share of stateless traffic under weighted round robin; 1 if absent.
    #[serde(default = "one")]
    pub weight: u32,
    /// Free-form labels.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// When this incarnation started, in ms since the Unix epoch: tells a
    /// restarted instance from its predecessor with the same id. `register`
    /// sets it to the current time when it is 0.
    #[serde(default)]
    pub epoch_ms: u64,
}

/// Checks that `rec` can be registered and sets its epoch if unset.
pub(crate) fn admit(rec: &mut Record) -> Result<(), RegistryError> {
    let reason = if rec.id.is_empty() {
        "the id is empty"
    } else if rec.id.contains('/') {
        "the id holds '/', which would put its key in another directory"
    } else {
        if rec.epoch_ms == 0 {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            rec.epoch_ms = now.as_millis() as u64;
        }
        return Ok(());
    };
    Err(RegistryError::BadRecord {
        id: rec.id.clone(),
        reason,
    })
}

/// A watcher's callback: gets the full list of one kind's records, sorted
/// by id, each time it changes.
pub type OnChange = Box<dyn FnMut(&[Record]) + Send>;

/// Where instances announce themselves and learn about each other.
///
/// Both methods block (network calls) and start threads: call them from
/// control threads, never from a shard loop.
pub trait Registry: Send + Sync + 'static {
    /// Puts `rec` under a lease of the registry's TTL and keeps it alive
    /// from a thread until the Registration is deregistered or dropped.
    ///
    /// Fails when the record is unusable or the registry cannot be reached
    /// now; once registered, the record is kept alive through outages.
    fn register(&self, rec: Record) -> Result<Registration, RegistryError>;

    /// Calls `on_change` with the full, sorted-by-id list of `kind` records
    /// at once (the current list) and then after every change, from a
    /// thread, until the handle drops.
    ///
    /// The first call happens on the caller's thread before `watch` returns,
    /// so the caller starts with the current list; `watch` fails if that
    /// first list cannot be read. Later lists are never equal to the one
    /// before; lists that pile up while `on_change` runs may be merged into
    /// the newest.
    fn watch(&self, kind: Kind, on_change: OnChange) -> Result<WatchHandle, RegistryError>;
}

/// What a registry does for one registration.
pub(crate) trait Registered: Send + Sync {
    /// The record as last set.
    fn record(&self) -> Record;
    /// See [`Registration::set_state`].
    fn set_state(&self, s: State) -> Result<(), RegistryError>;
    /// See [`Registration::deregister`].
    fn deregister(self: Box<Self>) -> Result<(), RegistryError>;
}

/// A record kept in the registry. Dropping it without
/// [`deregister`](Registration::deregister) only stops its keep-alive, as a
/// crash would: the record lapses when its lease does.
pub struct Registration {
    inner: Box<dyn Registered>,
}

impl Registration {
    pub(crate) fn new(inner: impl Registered + 'static) -> Registration {
        Registration {
            inner: Box::new(inner),
        }
    }

    /// The record as registered, with its current state.
    pub fn record(&self) -> Record {
        self.inner.record()
    }

    /// Re-puts the record with the new state **under the same lease** (due
    /// grants a new lease on every state change: don't).
    ///
    /// The new state is kept even when this fails: the keep-alive writes it
    /// when it re-registers after an outage.
    pub fn set_state(&self, s: State) -> Result<(), RegistryError> {
        self.inner.set_state(s)
    }

    /// Deletes the key and **revokes** the lease (due only deletes), stops
    /// the keep-alive.
    pub fn deregister(self) -> Result<(), RegistryError> {
        self.inner.deregister()
    }
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rec = self.record();
        write!(f, "Registration({}/{}, {:?})", rec.kind, rec.id, rec.state)
    }
}

/// A running watch. Dropping it stops the watch thread (within about half a
/// second, longer only while a request to an unresponsive registry is under
/// way) and waits for it, so `on_change` is not called after the drop.
#[derive(Debug)]
pub struct WatchHandle {
    _worker: Worker,
}

impl WatchHandle {
    pub(crate) fn new(worker: Worker) -> WatchHandle {
        WatchHandle { _worker: worker }
    }
}

/// Errors of the registries. Every message says what was asked and, for
/// etcd, of which endpoint.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry's options are unusable (e.g. no endpoint, a TTL below
    /// the minimum); the message names the option.
    #[error("registry options: {0}")]
    Options(String),
    /// The record cannot be registered, for the reason given.
    #[error("record {id:?} cannot be registered: {reason}")]
    BadRecord {
        /// The record's id.
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No endpoint gave a usable answer to `request` (each refused, timed
    /// out, broke the connection, answered garbage or was unavailable).
    #[error("{request}: no etcd endpoint answered ({tried})")]
    Unreachable {
        /// The request, e.g. `/v3/lease/grant`.
        request: &'static str,
        /// Each endpoint tried with what went wrong.
        tried: String,
    },
    /// etcd answered `request` with an error: gRPC `code` 5 is "lease not
    /// found", 11 "revision compacted", 9 "failed precondition".
    #[error("etcd at {endpoint}: {request} failed: {message} (gRPC code {code})")]
    Etcd {
        /// The endpoint that answered.
        endpoint: String,
        /// The request, e.g. `/v3/kv/put`.
        request: &'static str,
        /// The gRPC status code.
        code: i64,
        /// etcd's message.
        message: String,
    },
    /// An answer that is not what etcd sends: an unexpected HTTP status,
    /// malformed HTTP, or JSON of another shape.
    #[error("etcd at {endpoint}: {request}: unexpected answer: {reason}")]
    BadAnswer {
        /// The endpoint that answered.
        endpoint: String,
        /// The request.
        request: &'static str,
        /// What was wrong with the answer.
        reason: String,
    },
    /// A watch stream ended or broke (EOF, reset, timeout, cancellation).
    #[error("etcd at {endpoint}: watch stream on {prefix:?} broke: {reason}")]
    Stream {
        /// The endpoint streaming.
        endpoint: String,
        /// The watched prefix.
        prefix: String,
        /// How it ended.
        reason: String,
    },
    /// A record could not be encoded as JSON.
    #[error("cannot encode record {id:?} as JSON: {source}")]
    Encode {
        /// The record's id.
        id: String,
        /// serde_json's error.
        source: serde_json::Error,
    },
    /// The OS refused to start a control thread.
    #[error("cannot start thread {name}: {source}")]
    Spawn {
        /// The thread's name.
        name: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A control thread that runs until its owner drops it. Dropping the
/// `Worker` closes the channel the thread waits on (so a sleeping thread
/// wakes at once) and joins the thread, unless the drop happens on that
/// thread itself (a callback dropping its own handle).
pub(crate) struct Worker {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// The thread's side of a [`Worker`]: tells it when to stop.
pub(crate) struct StopSignal(Receiver<()>);

impl StopSignal {
    /// Sleeps for `d`; false if the worker was stopped before or meanwhile.
    pub(crate) fn sleep(&self, d: Duration) -> bool {
        matches!(self.0.recv_timeout(d), Err(RecvTimeoutError::Timeout))
    }

    /// True once the owner dropped the worker.
    pub(crate) fn stopped(&self) -> bool {
        matches!(self.0.try_recv(), Err(TryRecvError::Disconnected))
    }
}

impl Worker {
    /// Starts `body` on a thread named `name`.
    pub(crate) fn spawn(
        name: String,
        body: impl FnOnce(StopSignal) + Send + 'static,
    ) -> Result<Worker, RegistryError> {
        let (tx, rx) = crossbeam_channel::bounded(0);
        let thread = thread::Builder::new()
            .name(name.clone())
            .spawn(move || body(StopSignal(rx)))
            .map_err(|source| RegistryError::Spawn { name, source })?;
        Ok(Worker {
            stop: Some(tx),
            thread: Some(thread),
        })
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            if t.thread().id() != thread::current().id() {
                let _ = t.join(); // a panic was already reported by the thread
            }
        }
    }
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.thread.as_ref().and_then(|t| t.thread().name());
        write!(f, "Worker({})", name.unwrap_or("?"))
    }
}

/// An in-process registry for tests and single-process use. Clones share
/// one registry. There are no leases: a record stays until deregistered or
/// [`expire`](MemRegistry::expire)d, even if its `Registration` is dropped.
/// Watchers get their lists from a thread, in order.
#[derive(Clone, Default)]
pub struct MemRegistry {
    state: Arc<Mutex<MemState>>,
}

#[derive(Default)]
struct MemState {
    /// Records by kind, then id (so a kind's list comes out sorted by id).
    records: HashMap<Kind, BTreeMap<String, Record>>,
    watchers: Vec<(Kind, Sender<Vec<Record>>)>,
}

impl MemState {
    fn list(&self, kind: Kind) -> Vec<Record> {
        self.records
            .get(&kind)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Removes a record and tells the watchers if there was one.
    fn remove(&mut self, kind: Kind, id: &str) {
        let removed = self.records.get_mut(&kind).and_then(|m| m.remove(id));
        if removed.is_some() {
            self.publish(kind);
        }
    }

    /// Sends `kind`'s list to its watchers, forgetting those that stopped.
    fn publish(&mut self, kind: Kind) {
        let list = self.list(kind);
        self.watchers
            .retain(|(k, tx)| *k != kind || tx.send(list.clone()).is_ok());
    }
}

impl MemRegistry {
    /// An empty registry.
    pub fn new() -> MemRegistry {
        MemRegistry::default()
    }

    /// Removes every record with this id (of any kind), as when a crashed
    /// instance's lease lapses; watchers are told at once. A `Registration`
    /// still held for it puts it back on its next `set_state`, as etcd's
    /// keep-alive re-registers an instance that is still running.
    pub fn expire(&self, id: &str) {
        let mut st = self.lock();
        for kind in [Kind::Gate, Kind::Node] {
            st.remove(kind, id);
        }
    }

    fn lock(&self) -> MutexGuard<'_, MemState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn put(&self, rec: &Record) {
        let mut st = self.lock();
        let of_kind = st.records.entry(rec.kind).or_default();
        of_kind.insert(rec.id.clone(), rec.clone());
        st.publish(rec.kind);
    }
}

impl fmt::Debug for MemRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n: usize = self.lock().records.values().map(BTreeMap::len).sum();
        write!(f, "MemRegistry({n} records)")
    }
}

impl Registry for MemRegistry {
    fn register(&self, mut rec: Record) -> Result<Registration, RegistryError> {
        admit(&mut rec)?;
        self.put(&rec);
        Ok(Registration::new(MemRegistration {
            registry: self.clone(),
            rec: Mutex::new(rec),
        }))
    }

    fn watch(&self, kind: Kind, mut on_change: OnChange) -> Result<WatchHandle, RegistryError> {
        let (tx, rx) = crossbeam_channel::unbounded::<Vec<Record>>();
        let first = {
            let mut st = self.lock();
            st.watchers.push((kind, tx));
            st.list(kind)
        };
        on_change(&first);
        let worker = Worker::spawn(format!("fleet-mem-watch-{kind}"), move |stop| {
            let mut last = first;
            loop {
                let mut list = crossbeam_channel::select! {
                    recv(rx) -> list => match list {
                        Ok(list) => list,
                        Err(_) => return,
                    },
                    recv(stop.0) -> _ => return,
                };
                while let Ok(newer) = rx.try_recv() {
                    list = newer;
                }
                if list != last {
                    on_change(&list);
                    last = list;
                }
            }
        })?;
        Ok(WatchHandle::new(worker))
    }
}

/// A record in a [`MemRegistry`].
struct MemRegistration {
    registry: MemRegistry,
    rec: Mutex<Record>,
}

impl Registered for MemRegistration {
    fn record(&self) -> Record {
        self.rec
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_state(&self, s: State) -> Result<(), RegistryError> {
        let mut rec = self.rec.lock().unwrap_or_else(PoisonError::into_inner);
        rec.state = s;
        self.registry.put(&rec);
        Ok(())
    }

    fn deregister(self: Box<Self>) -> Result<(), RegistryError> {
        let rec = self.record();
        self.registry.lock().remove(rec.kind, &rec.id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::RecvTimeoutError;

    const WAIT: Duration = Duration::from_secs(5);

    fn node(id: &str) -> Record {
        Record {
            id: id.into(),
            kind: Kind::Node,
            name: "game".into(),
            routes: vec![RouteRecord {
                id: 1,
                ..RouteRecord::default()
            }],
            endpoint: "127.0.0.1:7000".into(),
            weight: 1,
            ..Record::default()
        }
    }

    /// Watches `kind`; the lists arrive on the returned channel.
    fn watch(reg: &MemRegistry, kind: Kind) -> (WatchHandle, Receiver<Vec<Record>>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let on_change = move |list: &[Record]| drop(tx.send(list.to_vec()));
        (reg.watch(kind, Box::new(on_change)).unwrap(), rx)
    }

    /// The next list for which `pred` holds.
    fn until(rx: &Receiver<Vec<Record>>, pred: impl Fn(&[Record]) -> bool) -> Vec<Record> {
        loop {
            let list = rx.recv_timeout(WAIT).expect("a list within 5 s");
            if pred(&list) {
                return list;
            }
        }
    }

    fn ids(list: &[Record]) -> Vec<&str> {
        list.iter().map(|r| r.id.as_str()).collect()
    }

    #[test]
    fn watch_starts_with_the_current_list_of_its_kind_sorted_by_id() {
        let reg = MemRegistry::new();
        let _n2 = reg.register(node("n2")).unwrap();
        let _n1 = reg.register(node("n1")).unwrap();
        let gate = Record {
            kind: Kind::Gate,
            ..node("g1")
        };
        let _g1 = reg.register(gate).unwrap();
        let (_h, rx) = watch(&reg, Kind::Node);
        let first = rx
            .try_recv()
            .expect("the first list arrives before watch returns");
        assert_eq!(ids(&first), ["n1", "n2"]);
        assert!(first[0].epoch_ms > 0, "register stamps the epoch");
    }

    #[test]
    fn state_changes_and_deregistration_reach_watchers() {
        let reg = MemRegistry::new();
        let (_h, rx) = watch(&reg, Kind::Node);
        let n1 = reg.register(node("n1")).unwrap();
        until(&rx, |l| ids(l) == ["n1"]);
        n1.set_state(State::Hang).unwrap();
        until(&rx, |l| l.len() == 1 && l[0].state == State::Hang);
        assert_eq!(n1.record().state, State::Hang);
        n1.deregister().unwrap();
        until(&rx, |l| l.is_empty());
    }

    #[test]
    fn expire_drops_a_crashed_record_and_set_state_puts_it_back() {
        let reg = MemRegistry::new();
        let n1 = reg.register(node("n1")).unwrap();
        drop(reg.register(node("n2")).unwrap()); // a dropped registration stays
        let (_h, rx) = watch(&reg, Kind::Node);
        until(&rx, |l| ids(l) == ["n1", "n2"]);
        reg.expire("n2");
        reg.expire("n1");
        until(&rx, |l| l.is_empty());
        n1.set_state(State::Busy).unwrap();
        until(&rx, |l| ids(l) == ["n1"] && l[0].state == State::Busy);
    }

    #[test]
    fn dropping_the_handle_stops_the_callbacks() {
        let reg = MemRegistry::new();
        let (h, rx) = watch(&reg, Kind::Node);
        assert!(rx.try_recv().unwrap().is_empty());
        drop(h);
        let _n1 = reg.register(node("n1")).unwrap();
        // The callback (and its sender) went with the thread.
        assert_eq!(rx.recv_timeout(WAIT), Err(RecvTimeoutError::Disconnected));
        assert!(
            reg.lock().watchers.is_empty(),
            "the stopped watcher is forgotten"
        );
    }

    #[test]
    fn a_callback_may_drop_its_own_handle() {
        let reg = MemRegistry::new();
        let slot: Arc<Mutex<Option<WatchHandle>>> = Arc::default();
        let (tx, rx) = crossbeam_channel::unbounded();
        let own = slot.clone();
        let on_change = move |list: &[Record]| {
            if !list.is_empty() {
                drop(own.lock().unwrap().take());
                let _ = tx.send(());
            }
        };
        *slot.lock().unwrap() = Some(reg.watch(Kind::Node, Box::new(on_change)).unwrap());
        let _n1 = reg.register(node("n1")).unwrap();
        rx.recv_timeout(WAIT).expect("the callback ran");
        assert_eq!(rx.recv_timeout(WAIT), Err(RecvTimeoutError::Disconnected));
    }

    #[test]
    fn bad_ids_are_refused() {
        let reg = MemRegistry::new();
        for id in ["", "a/b"] {
            let e = reg.register(node(id)).unwrap_err();
            assert!(matches!(e, RegistryError::BadRecord { .. }), "{e}");
        }
    }

    #[test]
    fn records_read_dues_json_and_leave_false_flags_out() {
        // due's ServiceInstance (docs/research: due-cluster.md §2.1).
        let due = r#"{"id":"u1","name":"node","kind":"node","alias":"game","state":"work",
            "events":[1,2,3],"routes":[{"i":1},{"i":2,"a":true},{"i":3,"s":true},{"i":9,"n":true}],
            "services":["greeter"],"endpoint":"drpc://192.168.2.202:58906?is_secure=false","weight":1,
            "metadata":{"key":"value"}}"#;
        let rec: Record = serde_json::from_str(due).unwrap();
        assert_eq!(
            (rec.kind, rec.name.as_str(), rec.state),
            (Kind::Node, "game", State::Work)
        );
        assert!(rec.routes[1].authorized && rec.routes[2].stateful && rec.routes[3].internal);
        assert_eq!((rec.events.len(), rec.epoch_ms), (3, 0));
        let no_weight = due.replace(r#","weight":1"#, "");
        assert_eq!(
            serde_json::from_str::<Record>(&no_weight).unwrap().weight,
            1
        );
        let json = serde_json::to_string(&rec.routes[..2]).unwrap();
        assert_eq!(json, r#"[{"i":1},{"i":2,"a":true}]"#);
    }

    #[test]
    fn states_rank_as_due_does() {
        let rank = |s: State| (s.takes_stateless(), s.tier());
        assert_eq!(rank(State::Work), (true, 0));
        assert_eq!(rank(State::Busy), (true, 1));
        assert_eq!(rank(State::Hang), (false, 2));
        assert_eq!(rank(State::Shut), (false, 2));
        assert_eq!(serde_json::to_string(&State::Hang).unwrap(), r#""hang""#);
    }
}
