//! Timetables of one client thread: when each connection's next heartbeat
//! or open-loop request is due, and a precise timer to wake for it.
//!
//! All connections share one period and are staggered inside it, so their
//! due times interleave in a fixed round-robin order and a single cursor
//! walks them: event `m` belongs to local connection `m % n` in round
//! `m / n`. No heap, no per-connection timer.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// A round-robin timetable over `offsets.len()` connections: connection `j`
/// is due at `start + offsets[j] + round * period`.
#[derive(Clone, Debug)]
pub struct Timetable {
    start: Instant,
    period_ns: u128,
    /// Offset of each connection inside the period, in units of
    /// `period / spread` (ascending).
    slots: Vec<u64>,
    spread: u64,
    next: u64,
}

impl Timetable {
    /// Connection `j` gets offset `slots[j] / spread` of a period, so pass
    /// global connection indexes and the global count to stagger the
    /// connections of all threads together. `slots` must ascend and stay
    /// below `spread`.
    pub fn new(start: Instant, period: Duration, slots: Vec<u64>, spread: u64) -> Self {
        debug_assert!(slots.windows(2).all(|w| w[0] < w[1]));
        debug_assert!(slots.last().is_none_or(|&s| s < spread));
        Timetable {
            start,
            period_ns: period.as_nanos(),
            slots,
            spread: spread.max(1),
            next: 0,
        }
    }

    /// A timetable for `n` connections staggered evenly over one thread.
    pub fn even(start: Instant, period: Duration, n: usize) -> Self {
        Timetable::new(start, period, (0..n as u64).collect(), n as u64)
    }

    /// When event `m` is due.
    fn due_of(&self, m: u64) -> Instant {
        let n = self.slots.len() as u64;
        let (round, j) = (m / n, (m % n) as usize);
        let units = u128::from(round) * u128::from(self.spread) + u128::from(self.slots[j]);
        let ns = units * self.period_ns / u128::from(self.spread);
        self.start + Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    /// When the next event is due; `None` without connections.
    pub fn next_due(&self) -> Option<Instant> {
        (!self.slots.is_empty()).then(|| self.due_of(self.next))
    }

    /// The next event if it is due at `now`: the local connection index and
    /// the intended time. Advances past it.
    pub fn pop_due(&mut self, now: Instant) -> Option<(usize, Instant)> {
        let due = self.next_due()?;
        if due > now {
            return None;
        }
        let j = (self.next % self.slots.len() as u64) as usize;
        self.next += 1;
        Some((j, due))
    }
}

/// A `timerfd` for sub-millisecond wake-ups (epoll timeouts are whole ms).
#[derive(Debug)]
pub struct Timer {
    fd: OwnedFd,
    armed_for: Option<Instant>,
}

impl Timer {
    /// A disarmed non-blocking monotonic timer.
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall, no pointers.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Timer {
            fd,
            armed_for: None,
        })
    }

    /// Makes the timer fire at `at` (at once if it has passed); a no-op when
    /// already armed for that instant.
    pub fn arm(&mut self, at: Instant, now: Instant) -> io::Result<()> {
        if self.armed_for == Some(at) {
            return Ok(());
        }
        let wait = at
            .saturating_duration_since(now)
            .max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: wait.as_secs() as libc::time_t,
                tv_nsec: libc::c_long::from(wait.subsec_nanos() as i32),
            },
        };
        // SAFETY: `spec` is a valid itimerspec; the old value is not wanted.
        let rc =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        self.armed_for = Some(at);
        Ok(())
    }

    /// Clears a expiration after the timer fired.
    pub fn clear(&mut self) {
        let mut expirations = 0u64;
        // SAFETY: reads at most 8 bytes into `expirations`.
        let _ = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                (&mut expirations as *mut u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
        self.armed_for = None;
    }
}

impl AsRawFd for Timer {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_timetable_staggers_connections() {
        let t0 = Instant::now();
        let mut t = Timetable::even(t0, Duration::from_secs(1), 4);
        let ms = |d: Instant| (d - t0).as_millis();
        let mut got = Vec::new();
        while let Some((j, due)) = t.pop_due(t0 + Duration::from_millis(1500)) {
            got.push((j, ms(due)));
        }
        assert_eq!(
            got,
            [
                (0, 0),
                (1, 250),
                (2, 500),
                (3, 750),
                (0, 1000),
                (1, 1250),
                (2, 1500)
            ]
        );
        assert_eq!(t.next_due().map(ms), Some(1750));
    }

    #[test]
    fn global_slots_interleave_threads() {
        // 6 connections over 2 threads, 60 requests/s in all: each connection
        // every 100 ms; thread 1 owns global connections 1, 3, 5.
        let t0 = Instant::now();
        let mut t = Timetable::new(t0, Duration::from_millis(100), vec![1, 3, 5], 6);
        let mut got = Vec::new();
        while let Some((j, due)) = t.pop_due(t0 + Duration::from_millis(200)) {
            got.push((j, (due - t0).as_micros()));
        }
        assert_eq!(
            got,
            [
                (0, 16666),
                (1, 50000),
                (2, 83333),
                (0, 116666),
                (1, 150000),
                (2, 183333)
            ]
        );
    }

    #[test]
    fn empty_timetable_is_never_due() {
        let mut t = Timetable::even(Instant::now(), Duration::from_secs(1), 0);
        assert_eq!(t.next_due(), None);
        assert_eq!(t.pop_due(Instant::now()), None);
    }

    #[test]
    fn timer_fires() {
        let mut timer = Timer::new().unwrap();
        let now = Instant::now();
        timer.arm(now + Duration::from_millis(2), now).unwrap();
        let mut pfd = libc::pollfd {
            fd: timer.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, 1000) };
        assert_eq!(n, 1);
        assert!(now.elapsed() >= Duration::from_millis(2));
        timer.clear();
    }
}
