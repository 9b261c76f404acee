//! Event sequence numbers: which events of each gate shard were seen, so
//! that lost ones are noticed.
//!
//! The gate numbers the events of each (shard, event kind) from 1 at its
//! start (`Event.seq`, `GateHello.epoch_ms` naming the start). The node
//! keeps, per (gate id, shard), the epoch and the last number seen of each
//! kind, across that shard's successive links: events lost while a link was
//! down show up as a gap on the next one. A gap, or a gate that restarted
//! (another epoch), is logged and counted ([`EventSeqs::gaps`]); after a
//! gap the link reader may ask for a snapshot, which resets the numbers to
//! the snapshot's `event_seqs`.
//!
//! Numbers are checked on the link's reader thread, in link order, before
//! the event is run or handed to a worker. This module only keeps the
//! numbers and says when to ask: it must not send anything (the reader
//! does).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::types::EventKind;

/// A snapshot asked for after a gap and not received is asked for again
/// at a later gap only after this long: an overloaded gate dropping events
/// must not also get a snapshot request per gap.
const ASK_AGAIN_AFTER: Duration = Duration::from_secs(10);

/// Slots of the per-kind numbers, indexed by the protocol's `EventKind`
/// value (0 unused).
const KINDS: usize = EventKind::ALL.len() + 1;

/// A gate shard: (gate id, shard).
type ShardKey = (Arc<str>, u16);

/// The event numbers of every gate shard this node heard from, and the
/// count of gaps seen.
#[derive(Default)]
pub(crate) struct EventSeqs {
    shards: Mutex<HashMap<ShardKey, Arc<Mutex<Track>>>>,
    gaps: AtomicU64,
}

/// What is known of one gate shard's events.
#[derive(Default)]
struct Track {
    /// `GateHello.epoch_ms` of the latest link.
    epoch: u64,
    /// Bumped by each new link: an older link's reader (still draining
    /// what it read before it was replaced) no longer counts.
    link: u64,
    /// The last number seen of each kind; `None`: unknown (nothing seen
    /// since the gate started or the node met it, and no snapshot).
    last: [Option<u64>; KINDS],
    /// When a snapshot was asked for and has not arrived yet.
    asked: Option<Instant>,
}

impl Track {
    fn knows_something(&self) -> bool {
        self.last.iter().any(Option::is_some)
    }
}

/// The numbers of one link's gate shard, for that link's reader.
pub(crate) struct LinkSeqs<'a> {
    seqs: &'a EventSeqs,
    track: Arc<Mutex<Track>>,
    link: u64,
    gate: Arc<str>,
    shard: u16,
}

impl EventSeqs {
    /// Gaps seen so far (lost events, gate restarts), over all gates.
    pub(crate) fn gaps(&self) -> u64 {
        self.gaps.load(Ordering::Relaxed)
    }

    /// The numbers of `shard` of gate `gate` for a new link whose hello
    /// carried `epoch`. Another epoch than the last link's means the gate
    /// restarted: what was known is forgotten and, if anything was, that is
    /// a gap (the events of the sessions that ended with it are lost).
    pub(crate) fn open(&self, gate: Arc<str>, shard: u16, epoch: u64) -> LinkSeqs<'_> {
        let track = {
            let mut shards = self.shards.lock().unwrap();
            let key = (gate.clone(), shard);
            shards.entry(key).or_default().clone()
        };
        let link = {
            let mut t = track.lock().unwrap();
            if t.epoch != epoch {
                if t.knows_something() {
                    self.gaps.fetch_add(1, Ordering::Relaxed);
                    warn!(%gate, shard, old = t.epoch, new = epoch, "node: gate restarted (new epoch): events of its previous run may be lost");
                }
                t.last = [None; KINDS];
                t.epoch = epoch;
            }
            t.asked = None;
            t.link += 1;
            t.link
        };
        LinkSeqs {
            seqs: self,
            track,
            link,
            gate,
            shard,
        }
    }
}

impl LinkSeqs<'_> {
    /// Checks the number `seq` of an event of `kind` read on this link.
    /// A gap is logged and counted; returns true if a snapshot should be
    /// asked for now (`can_ask`: the node has a snapshot handler, and none
    /// was asked for recently). `seq` 0 is a gate that does not number its
    /// events: nothing is checked.
    pub(crate) fn event(&self, kind: EventKind, seq: u64, can_ask: bool) -> bool {
        if seq == 0 {
            return false;
        }
        let mut t = self.track.lock().unwrap();
        if t.link != self.link {
            return false;
        }
        let i = kind.to_proto() as usize;
        let last = t.last[i].replace(seq);
        match last {
            None => false,
            Some(l) if seq == l + 1 => false,
            Some(l) if seq > l => {
                self.seqs.gaps.fetch_add(1, Ordering::Relaxed);
                warn!(
                    gate = %self.gate,
                    shard = self.shard,
                    %kind,
                    expected = l + 1,
                    got = seq,
                    lost = seq - l - 1,
                    "node: events lost"
                );
                let now = Instant::now();
                let ask = can_ask
                    && t.asked
                        .is_none_or(|at| now.duration_since(at) >= ASK_AGAIN_AFTER);
                if ask {
                    t.asked = Some(now);
                }
                ask
            }
            Some(l) => {
                debug!(gate = %self.gate, shard = self.shard, %kind, last = l, got = seq, "node: event number went back");
                false
            }
        }
    }

    /// A snapshot page read on this link: `event_seqs` (indexed by kind;
    /// empty: not carried by this page) are the last numbers before the
    /// events that follow it. The last page ends a snapshot asked for.
    pub(crate) fn snapshot(&self, event_seqs: &[u64], last: bool) {
        let mut t = self.track.lock().unwrap();
        if t.link != self.link {
            return;
        }
        if !event_seqs.is_empty() {
            for (i, l) in t.last.iter_mut().enumerate().skip(1) {
                *l = Some(event_seqs.get(i).copied().unwrap_or(0));
            }
        }
        if last {
            t.asked = None;
        }
    }
}
