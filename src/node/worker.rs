//! The handler pool of `workers(n > 0)`: one bounded crossbeam channel per
//! worker; a request or event goes to worker `hash(session) % n`, so one
//! session's requests and events run in order while different sessions run
//! in parallel.
//!
//! A full channel makes the link reader wait (backpressure reaches the gate
//! through TCP). A worker blocks for one job, drains up to [`DRAIN`] more, and
//! writes the replies of the drain with one write per link.
//!
//! This module must not read links: jobs arrive from the link readers,
//! which are above it and hand work down through [`Pool`].

use std::io;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, SendTimeoutError, Sender, TrySendError};

use super::context::{run_handler, Context};
use super::event::{run_event_handler, EventContext};
use super::gate_client::GateClient;
use super::link_handle::Link;
use super::options::Options;
use super::pending;
use super::types::EventKind;
use crate::link::proto::{Deliver, Event};
use crate::link::BatchBuf;

/// Jobs a worker takes per wake-up before writing their replies.
const DRAIN: usize = 256;

/// One request or event for a worker.
pub(crate) struct Job {
    /// The link it came on; replies go back there.
    pub(crate) link: Arc<Link>,
    /// The request or event to run.
    pub(crate) work: Work,
}

/// What a worker runs.
pub(crate) enum Work {
    /// A client request for a route handler.
    Deliver(Deliver),
    /// A session event for an event handler.
    Event(EventKind, Event),
}

impl Job {
    /// A request the gate tracks whose link has closed: the gate answered
    /// its client NODE_DOWN, so running it would act on a request its client
    /// was told failed. (Notifications and events of a closed link still run.)
    pub(crate) fn is_stale(&self) -> bool {
        matches!(&self.work, Work::Deliver(d) if d.request_id != 0) && self.link.is_closed()
    }
}

impl Work {
    fn session_id(&self) -> u64 {
        match self {
            Work::Deliver(d) => d.session_id,
            Work::Event(_, e) => e.session_id,
        }
    }
}

/// Sending halves of the worker channels. Dropping the last `Arc<Pool>`
/// closes them and lets the workers exit.
pub(crate) struct Pool {
    txs: Vec<Sender<Job>>,
}

impl Pool {
    fn pick(&self, job: &Job) -> &Sender<Job> {
        // Fibonacci hashing: session counters are sequential.
        let h = job.work.session_id().wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
        &self.txs[(h % self.txs.len() as u64) as usize]
    }

    /// Queues `job` if its worker has room; gives it back otherwise. (The
    /// job travels by value as it does through the channel: boxing it to
    /// shrink the error would cost an allocation per request.)
    #[allow(clippy::result_large_err)]
    pub(crate) fn try_send(&self, job: Job) -> Result<(), Job> {
        match self.pick(&job).try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(job)) => Err(job),
            // Workers are gone only at shutdown: drop the request.
            Err(TrySendError::Disconnected(_)) => Ok(()),
        }
    }

    /// Queues `job`, waiting at most `timeout` for room; gives it back if
    /// there was none.
    #[allow(clippy::result_large_err)]
    pub(crate) fn send_timeout(&self, job: Job, timeout: Duration) -> Result<(), Job> {
        match self.pick(&job).send_timeout(job, timeout) {
            Ok(()) => Ok(()),
            Err(SendTimeoutError::Timeout(job)) => Err(job),
            Err(SendTimeoutError::Disconnected(_)) => Ok(()),
        }
    }
}

/// The workers [`start`] spawned.
pub(crate) struct Started {
    /// Where the link readers send jobs; `None` with `workers(0)`.
    pub(crate) pool: Option<Arc<Pool>>,
    /// The worker threads, to join at shutdown (after dropping the pool).
    pub(crate) threads: Vec<JoinHandle<()>>,
}

/// Spawns `options.workers` workers (none: handlers run inline).
pub(crate) fn start(options: &Arc<Options>, gates: &GateClient) -> io::Result<Started> {
    let n = options.workers;
    if n == 0 {
        return Ok(Started {
            pool: None,
            threads: Vec::new(),
        });
    }
    let mut txs = Vec::with_capacity(n);
    let mut threads = Vec::with_capacity(n);
    for i in 0..n {
        let (tx, rx) = bounded(options.worker_queue);
        let (options, gates) = (options.clone(), gates.clone());
        let t = thread::Builder::new()
            .name(format!("ringgate-node-worker-{i}"))
            .spawn(move || work(&options, &gates, &rx))?;
        txs.push(tx);
        threads.push(t);
    }
    Ok(Started {
        pool: Some(Arc::new(Pool { txs })),
        threads,
    })
}

/// A worker's loop: until its channel closes.
fn work(options: &Options, gates: &GateClient, rx: &Receiver<Job>) {
    // Reply batches of this drain, one per link (usually one or two).
    let mut outs: Vec<(Arc<Link>, BatchBuf)> = Vec::new();
    while let Ok(job) = rx.recv() {
        run(options, gates, job, &mut outs);
        for job in rx.try_iter().take(DRAIN) {
            run(options, gates, job, &mut outs);
        }
        flush(&mut outs);
    }
}

fn flush(outs: &mut Vec<(Arc<Link>, BatchBuf)>) {
    for (link, mut out) in outs.drain(..) {
        if !out.is_empty() {
            link.send_frames(out.take());
        }
    }
}

/// Runs one job. If its handler waited for the gate, the replies held so
/// far are written now: a drain of handlers that each wait must not hold
/// earlier replies back until the last one is done.
fn run(options: &Options, gates: &GateClient, job: Job, outs: &mut Vec<(Arc<Link>, BatchBuf)>) {
    let waits = pending::waits();
    run_one(options, gates, job, outs);
    if pending::waits() != waits {
        flush(outs);
    }
}

fn run_one(options: &Options, gates: &GateClient, job: Job, outs: &mut Vec<(Arc<Link>, BatchBuf)>) {
    if job.is_stale() {
        tracing::debug!(gate = %job.link.gate_id, shard = job.link.shard.0, "node: request of a closed link skipped");
        return;
    }
    let i = match outs.iter().position(|(l, _)| Arc::ptr_eq(l, &job.link)) {
        Some(i) => i,
        None => {
            let out = BatchBuf::new(job.link.frame_limit);
            outs.push((job.link, out));
            outs.len() - 1
        }
    };
    let (link, out) = &mut outs[i];
    // The reader checked that a handler exists before dispatching.
    match job.work {
        Work::Deliver(d) => {
            if let Some(handler) = options.handler(d.route) {
                let mut ctx = Context::from_deliver(d, link, out, gates);
                run_handler(handler, &mut ctx);
            }
        }
        Work::Event(kind, e) => {
            if let Some(handler) = options.event_handler(kind) {
                let mut ctx = EventContext::from_event(kind, e, link, out, gates);
                run_event_handler(handler, &mut ctx);
            }
        }
    }
}
