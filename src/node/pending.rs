//! Calls waiting for their `CallResult`: ids, the pending table, and how a
//! caller waits without ever blocking the thread that must read its answer.
//! This module must not send calls nor pick links (the gate client does);
//! it only files, waits for and hands out answers.
//!
//! ```text
//!  caller ── register(id) ──▶ pending[id] = (gate, tx, waker?)
//!         ── Call{id} on a link ──▶ gate ── CallResult{id} on ANY link of that gate
//!                                          │
//!  any link reader ── resolve(id) ─────────┘  take pending[id], tx.send, wake
//!  caller ◀── rx (worker / user thread: blocks on rx;
//!                 link reader thread: keeps reading its own link meanwhile)
//! ```
//! Every remover of a pending entry (resolve, the gate going away, the
//! caller's timeout) sends on its channel right after removing it, so a
//! caller that finds its entry gone can wait for the answer without a
//! deadline.
//!
//! # Waiting on a link reader thread
//!
//! A [`GateClient`](crate::node::GateClient) is `Send` and may be used on any
//! thread, including a link reader running a handler inline; only the thread
//! itself knows whether it is a reader. So a reader registers, for as long as
//! it serves its link, how to keep reading that link ([`KeepReading`], with
//! [`reader_thread`]) in this module's one thread-local, which nothing
//! outside this file touches. A wait on such a thread keeps reading instead
//! of blocking, and an answer resolved by another reader wakes it through
//! the registered [`Waker`]. The same thread-local counts blocking waits
//! ([`waits`]).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TryRecvError};
use tracing::debug;

use super::error::NodeError;
use crate::link::proto::{CallResult, Code};

/// Call ids are unique in the process (0 means "no answer wanted").
static NEXT_CALL_ID: AtomicU64 = AtomicU64::new(1);

/// How a link reader thread keeps reading its link while a call made on
/// that thread waits for its answer (implemented by the link's inbox).
pub(crate) trait KeepReading {
    /// Reads what arrives within `timeout`, or until the thread's waker
    /// fires: results resolved, pings answered, the rest queued for later.
    /// False once the link can no longer be read.
    fn keep_reading(&mut self, timeout: Duration) -> bool;
}

/// What this module knows about the calling thread.
struct ThisThread {
    /// Blocking waits done by this thread so far (see [`waits`]).
    waits: Cell<u64>,
    /// Set while the thread is a link reader (see [`reader_thread`]).
    reader: RefCell<Option<ReaderHook>>,
}

struct ReaderHook {
    link: Rc<RefCell<dyn KeepReading>>,
    /// What another thread resolving this thread's call signals.
    waker: Option<Arc<Waker>>,
}

thread_local! {
    static THIS_THREAD: ThisThread = const {
        ThisThread {
            waits: Cell::new(0),
            reader: RefCell::new(None),
        }
    };
}

/// Declares the calling thread a link reader until the guard drops: calls
/// made on it keep reading `link` while they wait, and are woken through
/// `waker` (`None`: they poll in short slices). `link` must not be borrowed
/// while a handler runs on this thread.
pub(crate) fn reader_thread(
    link: Rc<RefCell<dyn KeepReading>>,
    waker: Option<Arc<Waker>>,
) -> ReaderThread {
    THIS_THREAD.with(|t| *t.reader.borrow_mut() = Some(ReaderHook { link, waker }));
    ReaderThread(())
}

/// Ends [`reader_thread`] on drop.
pub(crate) struct ReaderThread(());

impl Drop for ReaderThread {
    fn drop(&mut self) {
        THIS_THREAD.with(|t| t.reader.borrow_mut().take());
    }
}

/// How many blocking waits this thread has done: a worker compares it
/// around a handler and, if it changed, writes the replies it holds at once
/// rather than after its whole drain.
pub(crate) fn waits() -> u64 {
    THIS_THREAD.with(|t| t.waits.get())
}

/// The waker of the calling thread, if it is a link reader.
fn this_waker() -> Option<Arc<Waker>> {
    THIS_THREAD.with(|t| t.reader.borrow().as_ref().and_then(|r| r.waker.clone()))
}

/// The link the calling thread reads, if it is a link reader; counts a wait.
fn start_wait() -> Option<Rc<RefCell<dyn KeepReading>>> {
    THIS_THREAD.with(|t| {
        t.waits.set(t.waits.get() + 1);
        t.reader.borrow().as_ref().map(|r| r.link.clone())
    })
}

/// Independent locks of the pending table (calls from many workers at once).
const SLOTS: usize = 16;

/// What a caller receives: the gate's answer, or why there will be none.
pub(crate) type Answer = Result<CallResult, NodeError>;

/// Calls sent with a call id and not answered yet.
pub(crate) struct PendingCalls {
    slots: [Mutex<HashMap<u64, Entry>>; SLOTS],
}

struct Entry {
    /// The gate asked: its going away fails the call at once.
    gate: Arc<str>,
    /// The shard of the link the call went out on (for the error).
    shard: u16,
    tx: Sender<Answer>,
    /// Set when the caller is a link reader polling its socket meanwhile.
    wake: Option<Arc<Waker>>,
}

impl Default for PendingCalls {
    fn default() -> Self {
        PendingCalls {
            slots: std::array::from_fn(|_| Mutex::default()),
        }
    }
}

/// A registered call: wait for it with [`PendingCalls::wait`].
pub(crate) struct Waiting {
    /// The call id to send with the call.
    pub(crate) id: u64,
    rx: Receiver<Answer>,
}

impl PendingCalls {
    fn slot(&self, id: u64) -> &Mutex<HashMap<u64, Entry>> {
        &self.slots[(id % SLOTS as u64) as usize]
    }

    /// Takes a fresh call id and files the call as pending. Must happen
    /// before the call is written: the answer may beat the writer back.
    pub(crate) fn register(&self, gate: Arc<str>, shard: u16) -> Waiting {
        let id = NEXT_CALL_ID.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = bounded(1);
        let entry = Entry {
            gate,
            shard,
            tx,
            wake: this_waker(),
        };
        self.slot(id).lock().unwrap().insert(id, entry);
        Waiting { id, rx }
    }

    /// Forgets a call (it could not be sent, or its caller gave up).
    /// False when it was already resolved: its answer is in the channel.
    pub(crate) fn forget(&self, id: u64) -> bool {
        self.slot(id).lock().unwrap().remove(&id).is_some()
    }

    /// Hands a `CallResult` read on any link to its caller.
    pub(crate) fn resolve(&self, r: CallResult) {
        let Some(p) = self.slot(r.call_id).lock().unwrap().remove(&r.call_id) else {
            debug!(
                call_id = r.call_id,
                "node: result for an unknown or timed-out call dropped"
            );
            return;
        };
        let _ = p.tx.send(Ok(r));
        if let Some(w) = p.wake {
            w.wake();
        }
    }

    /// Fails every call pending on `gate` (its last link went down: no
    /// answer can come any more).
    pub(crate) fn fail_gate(&self, gate: &str) {
        for slot in &self.slots {
            let gone: Vec<Entry> = {
                let mut map = slot.lock().unwrap();
                let ids: Vec<u64> = map
                    .iter()
                    .filter(|(_, p)| &*p.gate == gate)
                    .map(|(id, _)| *id)
                    .collect();
                ids.iter().filter_map(|id| map.remove(id)).collect()
            };
            for p in gone {
                let _ = p.tx.send(Err(NodeError::NotConnected { shard: p.shard }));
                if let Some(w) = p.wake {
                    w.wake();
                }
            }
        }
    }

    /// Waits up to `timeout` for the answer of `w` and maps its code.
    ///
    /// On a link reader thread (handlers inline, `workers(0)`), the wait
    /// keeps reading that link: results are resolved (this one may well be
    /// among them), pings answered, and requests and events queued to run,
    /// in order, after the current handler returns.
    pub(crate) fn wait(&self, w: Waiting, timeout: Duration) -> Result<CallResult, NodeError> {
        let deadline = Instant::now() + timeout;
        let got = match start_wait() {
            None => w.rx.recv_deadline(deadline).ok(),
            Some(link) => loop {
                match w.rx.try_recv() {
                    Ok(a) => break Some(a),
                    Err(TryRecvError::Disconnected) => break None,
                    Err(TryRecvError::Empty) => {}
                }
                let now = Instant::now();
                if now >= deadline {
                    break None;
                }
                if !link.borrow_mut().keep_reading(deadline - now) {
                    // This link is down; the answer may still come on another.
                    break w.rx.recv_deadline(deadline).ok();
                }
            },
        };
        let answer = match got {
            Some(a) => a,
            None if self.forget(w.id) => return Err(NodeError::Timeout(timeout)),
            // Resolved just as we gave up: the answer is being sent.
            None => w.rx.recv().unwrap_or(Err(NodeError::Timeout(timeout))),
        };
        answer.and_then(check)
    }
}

/// Maps a result's code to `Ok(result)` or the matching [`NodeError`].
pub(crate) fn check(r: CallResult) -> Result<CallResult, NodeError> {
    match Code::try_from(r.code) {
        Ok(Code::Ok) => Ok(r),
        Ok(Code::NotFound) => Err(NodeError::NotFound),
        Ok(Code::AlreadyBound) => Err(NodeError::AlreadyBound),
        Ok(Code::Invalid) => Err(NodeError::Invalid(r.message)),
        Ok(Code::Busy) => Err(NodeError::Busy),
        Err(_) => Err(NodeError::Gate {
            code: r.code,
            message: r.message,
        }),
    }
}

/// An eventfd that wakes a link reader polling its socket while it waits
/// for an answer another reader resolves.
pub(crate) struct Waker {
    fd: OwnedFd,
}

impl Waker {
    /// A fresh non-blocking eventfd.
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the returned fd is owned below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Waker { fd })
    }

    /// Makes the eventfd readable, waking a `poll` on it.
    pub(crate) fn wake(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live buffer to our eventfd. A full
        // counter (EAGAIN) is already a pending wake-up.
        unsafe { libc::write(self.fd.as_raw_fd(), one.as_ptr().cast(), 8) };
    }

    /// Resets the counter after a wake-up was seen.
    pub(crate) fn drain(&self) {
        let mut b = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a live buffer; non-blocking.
        unsafe { libc::read(self.fd.as_raw_fd(), b.as_mut_ptr().cast(), 8) };
    }

    /// The eventfd, to `poll` beside the link's socket.
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
