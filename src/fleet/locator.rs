//! The user locator and session store contract: which gate and session hold a
//! user, which node serves the user for each stateful service, and the
//! user's session settings (mqant's `StorageHandler`).
//!
//! This module owns the types every implementation shares and
//! [`MemLocator`], the in-process implementation for tests and single-gate
//! deployments. [`RedisLocator`](super::redis_locator::RedisLocator) is the
//! fleet one. Calls block: make them from control threads, never from a
//! shard loop.
//!
//! # Rules every implementation keeps (and due does not)
//!
//! * A bind returns the binding it replaced, so the caller can kick exactly
//!   that session (due overwrites blindly and nobody kicks).
//! * Unbinds compare and delete: a gate unbind must name the whole binding
//!   (gate, session and epoch), a node unbind only touches its own service's
//!   entry (due once deleted every service's entry).
//! * Every change publishes exactly one [`LocateEvent`], atomically with the
//!   write; a bind or unbind that changes nothing publishes nothing.
//! * Events are a cache-invalidation hint, not a log: after
//!   [`Notice::Resync`] a subscriber must drop or re-check what it cached,
//!   because events published while it was disconnected are lost.

mod mem;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use mem::MemLocator;

/// A user id, as due's `int64` uid.
pub type Uid = i64;

/// Where a user's client is connected: a gate instance, the session on it,
/// and an epoch that tells two bindings of one session id apart.
///
/// Stored as `"{gate}|{session}|{epoch}"`:
///
/// ```text
/// e3af236b-…|281474976710657|1718000000123
/// └─ gate ─┘ └─── session ──┘ └── epoch ──┘
/// ```
/// The gate id may itself contain `|`: parsing splits from the right.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Binding {
    /// The gate instance id (its registry id; unique per gate process run).
    pub gate: String,
    /// The session on that gate (a [`SessionId`](crate::SessionId)'s raw value).
    pub session: u64,
    /// Increases with every bind the gate makes, so that a late unbind or
    /// disconnect of an older binding is recognised as stale.
    pub epoch: u64,
}

impl Binding {
    /// The stored form, `"{gate}|{session}|{epoch}"`.
    pub fn encode(&self) -> String {
        format!("{}|{}|{}", self.gate, self.session, self.epoch)
    }

    /// Parses [`encode`](Self::encode)'s form; `None` if `s` is not in it
    /// (for instance a due gate's value, which is only the gate id).
    pub fn parse(s: &str) -> Option<Binding> {
        let mut parts = s.rsplitn(3, '|');
        let epoch = parse_digits(parts.next()?)?;
        let session = parse_digits(parts.next()?)?;
        let gate = parts.next()?.to_owned();
        Some(Binding {
            gate,
            session,
            epoch,
        })
    }
}

/// Only plain decimal digits: `u64::from_str` would also take `+7`, which
/// the Lua scripts' patterns do not.
fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A change in the locator, as published to subscribers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocateEvent {
    /// `uid` is now bound to `binding` (due's BindGate, type 1).
    BindGate {
        /// The user.
        uid: Uid,
        /// The new binding.
        binding: Binding,
    },
    /// `uid` was bound to `binding` and no longer is (due's UnbindGate, type 3):
    /// an unbind or the purge of a dead gate.
    UnbindGate {
        /// The user.
        uid: Uid,
        /// The binding that was removed.
        binding: Binding,
    },
    /// `uid` is now served by `node` for `service` (due's BindNode, type 2).
    BindNode {
        /// The user.
        uid: Uid,
        /// The service (due's node name).
        service: String,
        /// The node instance id.
        node: String,
    },
    /// `uid` is no longer served by `node` for `service` (due's UnbindNode, type 4).
    UnbindNode {
        /// The user.
        uid: Uid,
        /// The service (due's node name).
        service: String,
        /// The node instance id that was removed.
        node: String,
    },
}

/// What a subscriber's callback receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// One change, in the order the locator applied them.
    Event(LocateEvent),
    /// The subscription was (re)established: events may have been lost,
    /// caches must be dropped or re-checked. Sent first on every
    /// subscription, and again after every reconnect; events published after
    /// it are delivered after it.
    Resync,
}

/// Where users are and what their sessions hold. See the module docs for
/// the rules every implementation keeps.
pub trait Locator: Send + Sync + 'static {
    /// Binds `uid` to `b` and publishes [`LocateEvent::BindGate`]. Returns
    /// the binding it replaced, if any, even on the same gate: the caller
    /// kicks that session unless it is `b` itself. Binding exactly the
    /// current binding again changes nothing and publishes nothing.
    fn bind_gate(&self, uid: Uid, b: &Binding) -> Result<Option<Binding>, LocatorError>;
    /// Removes `uid`'s binding if it is exactly `b` (gate, session and
    /// epoch), publishing [`LocateEvent::UnbindGate`]. `false`, with nothing
    /// published, if the user is bound elsewhere or not at all.
    fn unbind_gate(&self, uid: Uid, b: &Binding) -> Result<bool, LocatorError>;
    /// Where `uid` is bound, if anywhere.
    fn locate_gate(&self, uid: Uid) -> Result<Option<Binding>, LocatorError>;
    /// [`locate_gate`](Self::locate_gate) for many users at once (one round
    /// trip), in the order of `uids`; for grouping a multicast by gate.
    fn locate_gates(&self, uids: &[Uid]) -> Result<Vec<Option<Binding>>, LocatorError>;
    /// Sets the node serving `uid` for `service`, publishing
    /// [`LocateEvent::BindNode`]; returns the node it replaced. Binding the
    /// current node again changes nothing and publishes nothing.
    fn bind_node(
        &self,
        uid: Uid,
        service: &str,
        node: &str,
    ) -> Result<Option<String>, LocatorError>;
    /// Removes `uid`'s entry for `service` if it names `node`, publishing
    /// [`LocateEvent::UnbindNode`]. Other services' entries are untouched.
    fn unbind_node(&self, uid: Uid, service: &str, node: &str) -> Result<bool, LocatorError>;
    /// The node serving `uid` for `service`, if any.
    fn locate_node(&self, uid: Uid, service: &str) -> Result<Option<String>, LocatorError>;
    /// Every node binding of `uid`, service → node (one round trip).
    fn locate_nodes(&self, uid: Uid) -> Result<BTreeMap<String, String>, LocatorError>;
    /// Crash cleanup, for a gate known to be dead (its registry lease
    /// expired): releases every user whose binding still names `gate`,
    /// publishing [`LocateEvent::UnbindGate`] for each, and forgets the
    /// gate's user set. Users since bound elsewhere are left alone. Returns
    /// how many users were released.
    fn purge_gate(&self, gate: &str) -> Result<usize, LocatorError>;
    /// Delivers [`Notice`]s to `on_notice` from a thread of its own, starting
    /// with [`Notice::Resync`]. The thread reconnects forever (backoff 100 ms
    /// doubling to 2 s), warns once per outage and sends `Resync` again after
    /// each reconnect. Dropping the [`Subscription`] stops it.
    fn subscribe(
        &self,
        on_notice: Box<dyn FnMut(Notice) + Send>,
    ) -> Result<Subscription, LocatorError>;
    /// Replaces `uid`'s session settings and makes them expire after `ttl`
    /// (at least 1 ms). An empty map deletes the session: an empty session
    /// is no session.
    fn store_session(
        &self,
        uid: Uid,
        settings: &BTreeMap<String, String>,
        ttl: Duration,
    ) -> Result<(), LocatorError>;
    /// `uid`'s session settings, unless they were deleted or expired.
    fn load_session(&self, uid: Uid) -> Result<Option<BTreeMap<String, String>>, LocatorError>;
    /// Heartbeat: the session now expires `ttl` from now. `false` if it is gone.
    fn touch_session(&self, uid: Uid, ttl: Duration) -> Result<bool, LocatorError>;
    /// Deletes `uid`'s session settings (no error if there were none).
    fn delete_session(&self, uid: Uid) -> Result<(), LocatorError>;
}

/// A running subscription (see [`Locator::subscribe`]). Dropping it stops
/// the thread and waits for it, about a second at most (longer only if a
/// callback is slow to return), so no notice arrives after the drop
/// returns; dropped from inside its own callback, it does not wait.
#[derive(Debug)]
pub struct Subscription {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Subscription {
    /// Spawns `run(stop)` as the subscription thread named `name`; `run`
    /// must return soon after `stop` is set.
    pub(crate) fn spawn(
        name: &str,
        run: impl FnOnce(Arc<AtomicBool>) + Send + 'static,
    ) -> Result<Subscription, LocatorError> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || run(flag))
            .map_err(LocatorError::Spawn)?;
        Ok(Subscription {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

/// Why a locator call failed. Redis variants name the server address and
/// the operation.
#[derive(Debug, thiserror::Error)]
pub enum LocatorError {
    /// `RedisOptions::url` is not a Redis URL (`redis://host:port/db`).
    #[error("bad Redis URL {url:?}: {source}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What the redis crate objected to.
        #[source]
        source: redis::RedisError,
    },
    /// No connection to Redis could be made (refused, timed out, AUTH or
    /// SELECT failed). The operation was not sent.
    #[error("redis {addr}: {op}: cannot connect: {source}")]
    Connect {
        /// `host:port/db` of the server.
        addr: String,
        /// The locator operation (`bind_gate`, `subscribe`, ...).
        op: &'static str,
        /// The underlying error.
        #[source]
        source: redis::RedisError,
    },
    /// The operation was sent and failed: an error reply, or an I/O error or
    /// timeout after which it may or may not have been applied.
    #[error("redis {addr}: {op} failed: {source}")]
    Command {
        /// `host:port/db` of the server.
        addr: String,
        /// The locator operation.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: redis::RedisError,
    },
    /// A value in Redis is not in the shape this locator writes (for
    /// instance a gate key written by due, which holds only the gate id).
    #[error("redis {addr}: {op}: {key} holds {value:?}, not \"gate|session|epoch\"")]
    Corrupt {
        /// `host:port/db` of the server.
        addr: String,
        /// The locator operation.
        op: &'static str,
        /// The key read.
        key: String,
        /// What it held.
        value: String,
    },
    /// The subscription thread could not be started.
    #[error("cannot start the locator subscription thread: {0}")]
    Spawn(#[source] std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_round_trips_and_splits_from_the_right() {
        let b = Binding {
            gate: "g|1".into(),
            session: 281_474_976_710_657,
            epoch: 9,
        };
        assert_eq!(b.encode(), "g|1|281474976710657|9");
        assert_eq!(Binding::parse(&b.encode()), Some(b));
        let empty = Binding::parse("|0|0").unwrap();
        assert_eq!(empty.gate, "");
    }

    #[test]
    fn binding_rejects_other_shapes() {
        for bad in [
            "gate-only",
            "g|1",
            "g|x|1",
            "g|1|",
            "g|+1|2",
            "g|1|18446744073709551616",
        ] {
            assert_eq!(Binding::parse(bad), None, "{bad}");
        }
    }
}
