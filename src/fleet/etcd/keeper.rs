//! One registration on etcd: the record under its lease, and the thread
//! that keeps the lease alive.
//!
//! The keep-alive sends one keepalive every TTL/3. When etcd says the lease
//! is gone (it expired while etcd was unreachable, or someone revoked it) it
//! grants a new one and puts the current record (with its current state)
//! under it; when etcd does not answer it retries with backoff. It never
//! gives up (due stops after 3 tries and lets the record lapse while the
//! process runs on); only deregistering or dropping the `Registration`
//! stops it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tracing::warn;

use super::client::{Client, NOT_FOUND};
use super::{encode, Health};
use crate::fleet::registry::{
    Record, Registered, Registration, RegistryError, State, StopSignal, Worker,
};

/// What the `Registration` and its keep-alive thread share.
struct Shared {
    client: Arc<Client>,
    key: String,
    /// Lease TTL in seconds.
    ttl: i64,
    /// The record as last set. Held while writing it, so that a state
    /// change and a re-grant do not interleave.
    rec: Mutex<Record>,
    /// The lease the record was last put under (possibly gone).
    lease: AtomicI64,
}

/// A [`Registration`] on etcd.
struct EtcdRegistration {
    shared: Arc<Shared>,
    /// The keep-alive thread; `None` once deregistered.
    keeper: Option<Worker>,
}

/// Grants a lease, puts `rec` at `key` under it and starts the keep-alive.
pub(super) fn register(
    client: Arc<Client>,
    key: String,
    ttl: i64,
    rec: Record,
) -> Result<Registration, RegistryError> {
    let value = encode(&rec)?;
    let lease = client.grant(ttl)?;
    if let Err(e) = client.put(&key, &value, lease) {
        let _ = client.revoke(lease); // it would lapse anyway
        return Err(e);
    }
    let shared = Arc::new(Shared {
        client,
        key,
        ttl,
        rec: Mutex::new(rec),
        lease: AtomicI64::new(lease),
    });
    let interval = Duration::from_secs(ttl as u64) / 3;
    let name = format!("fleet-keepalive-{}", shared.key);
    let s = shared.clone();
    let keeper = Worker::spawn(name, move |stop| keep_alive(&s, &stop, interval));
    let keeper = match keeper {
        Ok(k) => k,
        Err(e) => {
            let _ = shared.client.revoke(lease);
            return Err(e);
        }
    };
    Ok(Registration::new(EtcdRegistration {
        shared,
        keeper: Some(keeper),
    }))
}

/// The keep-alive thread's loop.
fn keep_alive(s: &Shared, stop: &StopSignal, interval: Duration) {
    let mut health = Health::new(format!("registration {}", s.key));
    let mut pause = interval;
    while stop.sleep(pause) {
        pause = match s.refresh() {
            Ok(()) => {
                health.recovered();
                interval
            }
            Err(e) => health.failed(&e),
        };
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Record> {
        self.rec.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends one keepalive; if the lease is gone, re-registers.
    fn refresh(&self) -> Result<(), RegistryError> {
        let lease = self.lease.load(Ordering::Acquire);
        match self.client.keepalive(lease) {
            Ok(ttl) if ttl > 0 => return Ok(()),
            Ok(_)
            | Err(RegistryError::Etcd {
                code: NOT_FOUND, ..
            }) => {} // gone
            Err(e) => return Err(e),
        }
        let rec = self.lock();
        let value = encode(&rec)?;
        let new = self.client.grant(self.ttl)?;
        if let Err(e) = self.client.put(&self.key, &value, new) {
            let _ = self.client.revoke(new); // the next round grants again
            return Err(e);
        }
        self.lease.store(new, Ordering::Release);
        warn!(
            key = %self.key,
            old_lease = lease,
            new_lease = new,
            state = ?rec.state,
            "lease was gone (the record had lapsed); re-registered under a new lease"
        );
        Ok(())
    }
}

impl Registered for EtcdRegistration {
    fn record(&self) -> Record {
        self.shared.lock().clone()
    }

    fn set_state(&self, s: State) -> Result<(), RegistryError> {
        let mut rec = self.shared.lock();
        rec.state = s;
        let value = encode(&rec)?;
        let lease = self.shared.lease.load(Ordering::Acquire);
        self.shared.client.put(&self.shared.key, &value, lease)
    }

    fn deregister(mut self: Box<Self>) -> Result<(), RegistryError> {
        drop(self.keeper.take()); // stops and joins: no re-put after the delete
        let s = &self.shared;
        let deleted = s.client.delete(&s.key);
        let revoked = s.client.revoke(s.lease.load(Ordering::Acquire));
        deleted.and(revoked)
    }
}
