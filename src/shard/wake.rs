//! Waking a parked shard from another thread: one flag and one eventfd per
//! shard, written only when the shard said it is about to sleep.
//!
//! ```text
//!  shard s (receiver):  park(s)            parked[s] = true (SeqCst)
//!                       if inbox empty → wait in the ring (a read of fd(s) is armed)
//!                       unpark(s)          parked[s] = false
//!  any thread (sender): try_send(msg); wake(s): if parked[s].swap(false) { write(fd(s), 1) }
//! ```
//!
//! The receiver checks its inbox after announcing `parked`, and the sender
//! checks `parked` after enqueueing, so (SeqCst on both sides) either the
//! sender sees the flag and writes the eventfd, or the receiver sees the
//! message and does not sleep. A busy shard costs its senders one atomic swap
//! and no syscall.
//!
//! The eventfds are [`OwnedFd`]s that live as long as the [`Wakers`] (held in
//! an `Arc` by every shard and every `Stopper`), so a wake-up sent to a gate
//! that has already stopped writes to its own, still open eventfd: harmless.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

/// One shard's parked flag on a cache line of its own: each shard writes
/// its flag twice per loop turn, which must not evict its neighbours'.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Parked(AtomicBool);

/// The wake-up flags and eventfds of every shard of one gate.
#[derive(Debug)]
pub struct Wakers {
    /// Per shard: about to wait (or waiting) in its ring for completions.
    parked: Vec<Parked>,
    /// Per shard: the eventfd whose read the shard keeps armed in its ring.
    fds: Vec<OwnedFd>,
}

impl Wakers {
    /// One flag and one close-on-exec eventfd for each of `shards` shards.
    pub fn new(shards: usize) -> io::Result<Wakers> {
        let mut fds = Vec::with_capacity(shards);
        for _ in 0..shards {
            // SAFETY: eventfd(2) takes no pointers; the result is checked below.
            let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
            fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        Ok(Wakers {
            parked: (0..shards).map(|_| Parked::default()).collect(),
            fds,
        })
    }

    /// Number of shards.
    pub fn len(&self) -> usize {
        self.fds.len()
    }

    /// True when there are no shards.
    pub fn is_empty(&self) -> bool {
        self.fds.is_empty()
    }

    /// Shard `s` is about to wait: call before its last look at the inbox.
    pub fn park(&self, s: usize) {
        self.parked[s].0.store(true, SeqCst);
    }

    /// Shard `s` is awake again.
    pub fn unpark(&self, s: usize) {
        self.parked[s].0.store(false, SeqCst);
    }

    /// Wakes shard `s` if it is parked (one eventfd write, only when needed).
    /// Call after the message for it is in its inbox.
    pub fn wake(&self, s: usize) {
        if self.parked[s].0.swap(false, SeqCst) {
            self.notify(s);
        }
    }

    /// Writes shard `s`'s eventfd unconditionally (stop, or completing the
    /// shard's own armed read).
    pub fn notify(&self, s: usize) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd this struct owns
        // (open until the Wakers is dropped). Failure (counter saturated) is
        // harmless: the shard is then already due to wake.
        unsafe { libc::write(self.fds[s].as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// The eventfd of shard `s`, for the read the shard arms in its ring.
    pub fn fd(&self, s: usize) -> BorrowedFd<'_> {
        self.fds[s].as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_counter(w: &Wakers, s: usize) -> Option<u64> {
        let mut v = 0u64;
        let mut pfd = libc::pollfd {
            fd: w.fd(s).as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: polls one live pollfd for 0 ms.
        if unsafe { libc::poll(&mut pfd, 1, 0) } != 1 {
            return None;
        }
        // SAFETY: reads 8 bytes into a live u64 from our own eventfd.
        let n = unsafe { libc::read(w.fd(s).as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
        (n == 8).then_some(v)
    }

    #[test]
    fn wakes_only_a_parked_shard_and_only_once() {
        let w = Wakers::new(2).unwrap();
        w.wake(1);
        assert_eq!(read_counter(&w, 1), None, "a busy shard costs no write");
        w.park(1);
        w.wake(1);
        w.wake(1);
        assert_eq!(read_counter(&w, 1), Some(1), "one write per park");
        w.park(0);
        w.unpark(0);
        w.wake(0);
        assert_eq!(read_counter(&w, 0), None);
        w.notify(0);
        assert_eq!(read_counter(&w, 0), Some(1));
    }
}
