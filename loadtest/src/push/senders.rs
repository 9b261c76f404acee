//! The senders: timestamped pushes, the in-flight window and the progress line.

use super::*;

/// Nanoseconds since `epoch`.
pub(super) fn nanos_since(epoch: Instant, t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
}

/// A pushed payload: time, seq, then zero padding to `len`.
pub(super) fn stamp(buf: &mut [u8], ts: u64, seq: u64) -> Bytes {
    buf[..8].copy_from_slice(&ts.to_be_bytes());
    buf[8..16].copy_from_slice(&seq.to_be_bytes());
    Bytes::copy_from_slice(buf)
}

/// What the sending threads count.
#[derive(Debug, Default)]
pub(super) struct Sent {
    /// Sends (pushes or broadcasts) whose time is in the window.
    pub(super) in_window: AtomicU64,
    /// Sends, whole run.
    pub(super) total: AtomicU64,
    /// Refused by the SDK.
    pub(super) errors: AtomicU64,
    pub(super) first_error: Mutex<Option<String>>,
}

impl Sent {
    pub(super) fn error(&self, e: impl std::fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.first_error
            .lock()
            .unwrap()
            .get_or_insert_with(|| e.to_string());
    }
}

/// The window of a run started at `t0`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Window {
    pub(super) t0: Instant,
    pub(super) warm_end: Instant,
    pub(super) end: Instant,
}

impl Window {
    pub(super) fn new(t0: Instant, timing: &TimingArgs) -> Self {
        let warm_end = t0 + timing.warmup;
        Window {
            t0,
            warm_end,
            end: warm_end + timing.duration,
        }
    }

    pub(super) fn contains(&self, t: Instant) -> bool {
        t >= self.warm_end && t < self.end
    }
}

/// One `push` thread's schedule.
#[derive(Clone, Debug)]
pub(super) struct Pusher {
    pub(super) gates: GateClient,
    /// This thread's index and the thread count.
    pub(super) k: usize,
    pub(super) threads: usize,
    pub(super) users: usize,
    pub(super) rate: u64,
    pub(super) max_inflight: u64,
    pub(super) route: i32,
    pub(super) payload: usize,
    pub(super) epoch: Instant,
}

impl Pusher {
    /// Pushes to uids `k + 1, k + 1 + threads, …` round robin until the
    /// window ends.
    pub(super) fn run(&self, w: Window, feed: &Feed, sent: &Sent) {
        let users: Vec<i64> = (self.k + 1..=self.users)
            .step_by(self.threads)
            .map(|u| u as i64)
            .collect();
        if users.is_empty() {
            return;
        }
        let mut seqs = vec![0u64; users.len()];
        let mut buf = vec![0u8; self.payload];
        // Push m of thread k is due at t0 + (m × threads + k) / rate.
        let due = |m: u64| {
            let n = u128::from(m) * self.threads as u128 + self.k as u128;
            w.t0 + Duration::from_nanos(
                u64::try_from(n * 1_000_000_000 / u128::from(self.rate.max(1))).unwrap_or(u64::MAX),
            )
        };
        let (mut m, mut i) = (0u64, 0usize);
        loop {
            let now = Instant::now();
            if now >= w.end {
                return;
            }
            let at = if self.rate > 0 {
                let at = due(m);
                if at >= w.end {
                    return;
                }
                if at > now {
                    std::thread::sleep((at - now).min(Duration::from_millis(1)));
                    continue;
                }
                at
            } else {
                let inflight = feed
                    .sent
                    .load(Ordering::Relaxed)
                    .saturating_sub(feed.delivered.load(Ordering::Relaxed));
                if inflight >= self.max_inflight {
                    std::thread::sleep(Duration::from_micros(50));
                    continue;
                }
                now
            };
            m += 1;
            let payload = stamp(&mut buf, nanos_since(self.epoch, at), seqs[i]);
            match self
                .gates
                .push_uid_nowait(UserId(users[i]), self.route, 0, payload)
            {
                Ok(()) => {
                    seqs[i] += 1;
                    feed.sent.fetch_add(1, Ordering::Relaxed);
                    sent.total.fetch_add(1, Ordering::Relaxed);
                    if w.contains(at) {
                        sent.in_window.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) => sent.error(e),
            }
            i = (i + 1) % users.len();
        }
    }
}

/// Starts `threads` sending threads with `body`; the last one to finish
/// marks the feed done.
pub(super) fn spawn_senders(
    threads: usize,
    feed: &Arc<Feed>,
    body: impl Fn(usize) + Send + Sync + 'static,
) -> Vec<JoinHandle<()>> {
    let left = Arc::new(AtomicUsize::new(threads));
    let body = Arc::new(body);
    (0..threads)
        .map(|k| {
            let (feed, left, body) = (feed.clone(), left.clone(), body.clone());
            std::thread::Builder::new()
                .name(format!("node-sender-{k}"))
                .spawn(move || {
                    body(k);
                    if left.fetch_sub(1, Ordering::AcqRel) == 1 {
                        feed.done.store(true, Ordering::Release);
                    }
                })
                .expect("spawn a sender thread")
        })
        .collect()
}

/// A progress suffix: what was sent during each second.
pub(super) fn progress(name: &'static str, sent: Arc<Sent>) -> impl FnMut(u64) -> String {
    let mut last = 0;
    move |_| {
        let total = sent.total.load(Ordering::Relaxed);
        let line = format!(" {name}={}", total - last);
        last = total;
        line
    }
}
