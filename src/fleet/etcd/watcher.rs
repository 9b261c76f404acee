//! The watch loop behind [`EtcdRegistry::watch`](super::EtcdRegistry): list
//! the prefix, then follow it from the list's revision + 1, applying PUTs
//! and DELETEs to a local copy and handing the full list to `on_change`
//! whenever it changed.
//!
//! On anything unexpected (a compaction of the revision it needs, a canceled
//! watch, an error, the stream ending, etcd restarting) it re-lists and
//! re-watches, with backoff while etcd does not answer; every `resync` it
//! re-lists anyway. It stops only when its handle drops: due's watcher
//! returned for good at the first error, leaving its consumers stale.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::client::{Client, KeyValue};
use super::stream::{EventKind, WatchResponse};
use super::Health;
use crate::fleet::registry::{OnChange, Record, RegistryError, StopSignal, WatchHandle, Worker};

/// One watcher's state: its copy of the prefix and what `on_change` saw last.
pub(super) struct Watcher {
    client: Arc<Client>,
    prefix: String,
    resync: Duration,
    on_change: OnChange,
    /// The records by key.
    records: BTreeMap<Vec<u8>, Record>,
    /// The list `on_change` got last (`None` before the first call).
    published: Option<Vec<Record>>,
}

/// Why following a watch stream stopped.
enum Ended {
    /// The handle dropped.
    Stopped,
    /// Time for the periodic re-list.
    Resync,
    /// The revision to watch from was compacted away.
    Compacted(i64),
    /// The stream failed.
    Failed(RegistryError),
}

impl Watcher {
    pub(super) fn new(
        client: Arc<Client>,
        prefix: String,
        resync: Duration,
        on_change: OnChange,
    ) -> Watcher {
        Watcher {
            client,
            prefix,
            resync,
            on_change,
            records: BTreeMap::new(),
            published: None,
        }
    }

    /// Lists the prefix and hands the list to `on_change` on this thread,
    /// then follows it from a thread.
    pub(super) fn start(mut self) -> Result<WatchHandle, RegistryError> {
        let (rev, kvs) = self.client.range_prefix(&self.prefix)?;
        self.reset(kvs);
        self.publish();
        let name = format!("fleet-watch-{}", self.prefix.trim_end_matches('/'));
        let worker = Worker::spawn(name, move |stop| self.run(rev, &stop))?;
        Ok(WatchHandle::new(worker))
    }

    fn run(mut self, mut rev: i64, stop: &StopSignal) {
        let mut health = Health::new(format!("watch of {}", self.prefix));
        loop {
            match self.follow(rev, stop, &mut health) {
                Ended::Stopped => return,
                Ended::Resync => debug!(prefix = %self.prefix, "periodic re-list"),
                Ended::Compacted(at) => info!(
                    prefix = %self.prefix,
                    from = rev + 1,
                    compacted = at,
                    "watch revision compacted away; re-listing"
                ),
                Ended::Failed(e) => {
                    if !stop.sleep(health.failed(&e)) {
                        return;
                    }
                }
            }
            rev = loop {
                match self.client.range_prefix(&self.prefix) {
                    Ok((rev, kvs)) => {
                        self.reset(kvs);
                        self.publish();
                        break rev;
                    }
                    Err(e) => {
                        if !stop.sleep(health.failed(&e)) {
                            return;
                        }
                    }
                }
            };
        }
    }

    /// Watches from `rev + 1` until the stream ends, the resync time comes
    /// or the handle drops.
    fn follow(&mut self, rev: i64, stop: &StopSignal, health: &mut Health) -> Ended {
        let resync_at = Instant::now() + self.resync;
        let mut stream = match self.client.watch(&self.prefix, rev + 1) {
            Ok(s) => s,
            Err(e) => return Ended::Failed(e),
        };
        loop {
            if stop.stopped() {
                return Ended::Stopped;
            }
            if Instant::now() >= resync_at {
                return Ended::Resync;
            }
            let msg = match stream.next() {
                Ok(None) => continue,
                Ok(Some(msg)) => msg,
                Err(e) => return Ended::Failed(e),
            };
            if msg.created {
                health.recovered();
            }
            if msg.compact_revision > 0 {
                return Ended::Compacted(msg.compact_revision);
            }
            if msg.canceled {
                let why = format!("etcd canceled the watch: {:?}", msg.cancel_reason);
                return Ended::Failed(stream.broke(why));
            }
            self.apply(msg, stream.endpoint());
        }
    }

    /// Applies one message's events, then tells `on_change` if the list
    /// changed.
    fn apply(&mut self, msg: WatchResponse, endpoint: &str) {
        if msg.events.is_empty() {
            return; // created, or a progress notification
        }
        for ev in msg.events {
            let record = match ev.kind {
                EventKind::Put => decode(&ev.kv),
                EventKind::Delete => None,
            };
            match record {
                Some(r) => self.records.insert(ev.kv.key, r),
                None => self.records.remove(&ev.kv.key),
            };
        }
        let revision = msg.header.revision;
        debug!(prefix = %self.prefix, endpoint, revision, "watch events applied");
        self.publish();
    }

    /// Replaces the local copy with a fresh list.
    fn reset(&mut self, kvs: Vec<KeyValue>) {
        self.records = kvs
            .into_iter()
            .filter_map(|kv| decode(&kv).map(|r| (kv.key, r)))
            .collect();
    }

    /// Hands the list to `on_change` unless it is the one it saw last.
    fn publish(&mut self) {
        let mut list: Vec<Record> = self.records.values().cloned().collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        if self.published.as_ref() != Some(&list) {
            (self.on_change)(&list);
            self.published = Some(list);
        }
    }
}

/// The record in a value; a value that is not one is skipped with a warning.
fn decode(kv: &KeyValue) -> Option<Record> {
    match serde_json::from_slice(&kv.value) {
        Ok(r) => Some(r),
        Err(e) => {
            let key = String::from_utf8_lossy(&kv.key);
            warn!(%key, error = %e, "registry value is not a record; skipped");
            None
        }
    }
}
