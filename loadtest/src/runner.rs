//! Runs a client scenario on its threads: spawn and pin them, let each open
//! its share of the connections, start them together, print one progress
//! line per second on stderr, and sum their results.
//!
//! ```text
//!  main      spawn ─ connected ─ on_connected ─ go ─ progress… ─ finished ─ on_finished ─ release ─ join
//!  thread i  connect ┘                          └ run ─────────── Done ┘                   └ close
//! ```
//!
//! The hooks run while every connection is open and nothing is sent: `idle`
//! samples the server's memory there.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use hdrhistogram::Histogram;

use crate::client::{Mode, Plan, Worker};
use crate::report::{histogram, show, Latency, LoadReport, Progress};
use crate::tally::{Counters, Report};

/// Connections opened (over all threads) between two pauses.
const CONNECT_BATCH: usize = 500;
/// The pause after each batch.
const CONNECT_PAUSE: Duration = Duration::from_millis(10);

/// Summed results of all client threads.
#[derive(Debug)]
pub struct Outcome {
    /// Connections established.
    pub conns: usize,
    /// Connections that failed to open.
    pub connect_failures: usize,
    /// Counters of all threads.
    pub counters: Counters,
    /// Latencies recorded in the window, all threads.
    pub hist: Histogram<u64>,
    /// Requests unanswered at the end.
    pub outstanding: u64,
    /// Connections still open at the end.
    pub open: u64,
}

/// The rendezvous points of the main thread and the client threads.
struct Sync {
    connected: Barrier,
    go: Barrier,
    finished: Barrier,
    release: Barrier,
    t0: OnceLock<Instant>,
    abort: AtomicBool,
    failures: AtomicUsize,
    first_error: Mutex<Option<String>>,
}

/// Runs `plan` on `plan.threads` threads pinned round robin to `cores`.
/// `on_connected` runs once every connection is open, before the start;
/// `on_finished` after the end, before the connections close.
pub fn run(
    plan: Plan,
    cores: &[usize],
    on_connected: impl FnOnce(),
    on_finished: impl FnOnce(),
) -> Result<Outcome> {
    run_with(
        plan,
        cores,
        Hooks {
            on_connected: Box::new(on_connected),
            on_finished: Box::new(on_finished),
            ..Hooks::default()
        },
    )
}

/// What a scenario does at the runner's rendezvous points.
pub struct Hooks<'a> {
    /// Once every connection is open (and logged in), before the start.
    pub on_connected: Box<dyn FnOnce() + 'a>,
    /// At the start, with the start time `t0` the client threads use and
    /// the connections open.
    pub on_start: Box<dyn FnOnce(Instant, usize) + 'a>,
    /// After the end, before the connections close.
    pub on_finished: Box<dyn FnOnce() + 'a>,
    /// Appended to second `t`'s progress line.
    pub progress: Box<dyn FnMut(u64) -> String + 'a>,
    /// Print neither the connect line nor the per-second progress.
    pub quiet: bool,
}

impl Hooks<'_> {
    /// No hook, and nothing printed while running.
    pub fn quiet() -> Self {
        Hooks {
            quiet: true,
            ..Hooks::default()
        }
    }
}

impl Default for Hooks<'_> {
    fn default() -> Self {
        Hooks {
            on_connected: Box::new(|| {}),
            on_start: Box::new(|_, _| {}),
            on_finished: Box::new(|| {}),
            progress: Box::new(|_| String::new()),
            quiet: false,
        }
    }
}

/// [`run`] with every hook.
pub fn run_with(plan: Plan, cores: &[usize], hooks: Hooks<'_>) -> Result<Outcome> {
    let Hooks {
        on_connected,
        on_start,
        on_finished,
        mut progress,
        quiet,
    } = hooks;
    let plan = Arc::new(plan);
    let threads = plan.threads;
    let workers = (0..threads)
        .map(|i| Worker::new(plan.clone(), i))
        .collect::<std::io::Result<Vec<_>>>()?;
    let sync = Arc::new(Sync {
        connected: Barrier::new(threads + 1),
        go: Barrier::new(threads + 1),
        finished: Barrier::new(threads + 1),
        release: Barrier::new(threads + 1),
        t0: OnceLock::new(),
        abort: AtomicBool::new(false),
        failures: AtomicUsize::new(0),
        first_error: Mutex::new(None),
    });
    let (tx, rx) = mpsc::channel();
    let batch = (CONNECT_BATCH / threads).max(1);
    let mut handles = Vec::with_capacity(threads);
    for (i, mut worker) in workers.into_iter().enumerate() {
        let core = (!cores.is_empty()).then(|| cores[i % cores.len()]);
        let (sync, tx) = (sync.clone(), tx.clone());
        let handle = std::thread::Builder::new()
            .name(format!("client-{i}"))
            .spawn(move || {
                if let Some(id) = core {
                    if !core_affinity::set_for_current(core_affinity::CoreId { id }) {
                        eprintln!("client-{i}: could not pin to core {id}");
                    }
                }
                let (mut failures, mut first) = worker.connect(batch, CONNECT_PAUSE);
                if let Some(login) = worker.plan().login {
                    let (f, e) = worker.login(login);
                    failures += f;
                    first = first.or(e);
                }
                sync.failures.fetch_add(failures, Ordering::Relaxed);
                if let Some(e) = first {
                    sync.first_error.lock().unwrap().get_or_insert(e);
                }
                sync.connected.wait();
                sync.go.wait();
                let result = if sync.abort.load(Ordering::Relaxed) {
                    let _ = tx.send(Report::Done);
                    None
                } else {
                    Some(worker.run(*sync.t0.get().expect("t0 set before go"), &tx))
                };
                sync.finished.wait();
                sync.release.wait();
                drop(worker);
                result
            })?;
        handles.push(handle);
    }
    drop(tx);

    let connect_start = Instant::now();
    sync.connected.wait();
    let failures = sync.failures.load(Ordering::Relaxed);
    let conns = plan.conns - failures;
    if !quiet {
        eprintln!(
            "connected {conns}/{} to {} ({}{}) in {:.2}s",
            plan.conns,
            plan.addr,
            plan.dialer.transport.as_str(),
            if plan.login.is_some() {
                ", logged in"
            } else {
                ""
            },
            connect_start.elapsed().as_secs_f64()
        );
    }
    let first_error = sync.first_error.lock().unwrap().clone();
    if let Some(e) = first_error.as_ref().filter(|_| !quiet) {
        eprintln!("{failures} connections failed; first error: {e}");
    }
    if conns == 0 {
        sync.abort.store(true, Ordering::Relaxed);
    } else {
        on_connected();
    }
    let t0 = Instant::now();
    sync.t0.set(t0).expect("t0 set once");
    if conns > 0 {
        on_start(t0, conns);
    }
    sync.go.wait();

    print_progress(&plan, &rx, &mut *progress, quiet);
    sync.finished.wait();
    if conns > 0 {
        on_finished();
    }
    sync.release.wait();

    let mut outcome = Outcome {
        conns,
        connect_failures: failures,
        counters: Counters::default(),
        hist: histogram(),
        outstanding: 0,
        open: 0,
    };
    for handle in handles {
        let result = handle
            .join()
            .map_err(|_| anyhow!("a client thread panicked"))?;
        if let Some(r) = result {
            outcome.counters.add(&r.counters);
            outcome.hist.add(&r.hist)?;
            outcome.outstanding += r.outstanding;
            outcome.open += r.open;
        }
    }
    if conns == 0 {
        bail!(
            "no connection to {} could be opened: {}",
            plan.addr,
            first_error.unwrap_or_default()
        );
    }
    Ok(outcome)
}

/// Per-second totals, filled as the threads report.
struct Second {
    reports: usize,
    responses: u64,
    heartbeats: u64,
    hist: Histogram<u64>,
    open: u64,
    troubles: u64,
}

/// Prints a progress line each time every thread has reported a second,
/// until every thread is done.
fn print_progress(
    plan: &Plan,
    rx: &mpsc::Receiver<Report>,
    extra: &mut dyn FnMut(u64) -> String,
    quiet: bool,
) {
    let mut seconds: BTreeMap<u64, Second> = BTreeMap::new();
    let mut done = 0;
    let warmup_secs = plan.warmup.as_secs_f64();
    while done < plan.threads {
        let Ok(report) = rx.recv() else { break };
        let Report::Tick {
            t,
            responses,
            heartbeats,
            hist,
            open,
            troubles,
        } = report
        else {
            done += 1;
            continue;
        };
        let s = seconds.entry(t).or_insert_with(|| Second {
            reports: 0,
            responses: 0,
            heartbeats: 0,
            hist: histogram(),
            open: 0,
            troubles: 0,
        });
        s.reports += 1;
        s.responses += responses;
        s.heartbeats += heartbeats;
        let _ = s.hist.add(&hist);
        s.open += open;
        s.troubles += troubles;
        if s.reports == plan.threads {
            let s = seconds.remove(&t).expect("just updated");
            let idle = plan.mode == Mode::Idle;
            let progress = Progress {
                t,
                warmup: (t as f64) <= warmup_secs,
                rate: if idle { s.heartbeats } else { s.responses },
                rate_name: match plan.mode {
                    Mode::Idle => "hb/s",
                    Mode::Listen => "deliveries/s",
                    _ => "rps",
                },
                p99_us: (!idle).then(|| Latency::of(&s.hist).p99),
                conns: s.open,
                errors: s.troubles,
            };
            if !quiet {
                eprintln!("{}{}", progress.line(), extra(t));
            }
        }
    }
}

/// Runs a request scenario (`echo`, `rate`), accounting the CPU time of
/// `cpu_pids` over the measured window, and prints its report.
pub fn run_load(
    scenario: &'static str,
    plan: &Plan,
    client: &crate::args::ClientArgs,
    cpu_pids: &[crate::cpu::CpuPid],
) -> Result<()> {
    let report = run_accounted(scenario, plan, &client.threads.cores, cpu_pids, false)?;
    let table = report.table() + &crate::cpu::lines(&report.cpu);
    crate::report::print(client.json, &report, &table)
}

/// Runs a request scenario and reports it with the CPU time of
/// `cpu_pids` over the measured window (`quiet`: no progress lines).
pub fn run_accounted(
    scenario: &'static str,
    plan: &Plan,
    cores: &[usize],
    cpu_pids: &[crate::cpu::CpuPid],
    quiet: bool,
) -> Result<LoadReport> {
    let window = std::cell::RefCell::new(crate::cpu::CpuWindow::new(cpu_pids));
    let (warmup, duration) = (plan.warmup, plan.duration);
    let outcome = run_with(
        plan.clone(),
        cores,
        Hooks {
            on_start: Box::new(|t0, _| window.borrow_mut().start(t0 + warmup, duration)),
            quiet,
            ..Hooks::default()
        },
    )?;
    let mut report = load_report(scenario, plan, &outcome);
    report.cpu = window.into_inner().finish(report.requests)?;
    Ok(report)
}

/// The report of a request scenario.
pub fn load_report(scenario: &'static str, plan: &Plan, o: &Outcome) -> LoadReport {
    let secs = plan.duration.as_secs_f64();
    let c = &o.counters;
    LoadReport {
        scenario,
        addr: plan.addr.to_string(),
        transport: plan.dialer.transport.as_str(),
        threads: plan.threads,
        conns: o.conns,
        connect_failures: o.connect_failures,
        depth: match plan.mode {
            Mode::Echo { depth } => Some(depth),
            _ => None,
        },
        target_rps: match plan.mode {
            Mode::Rate { rps } => Some(rps),
            _ => None,
        },
        payload: plan.payload,
        warmup: show(plan.warmup),
        duration: show(plan.duration),
        requests: c.requests,
        rps: if secs > 0.0 {
            (c.requests as f64 / secs).round()
        } else {
            0.0
        },
        errors: c.errors,
        mismatches: c.mismatches,
        closed: c.closed,
        failed: c.failed,
        outstanding: o.outstanding,
        unsent: c.unsent,
        heartbeats_sent: c.hb_sent,
        heartbeats_received: c.hb_received,
        latency_us: Latency::of(&o.hist),
        cpu: Vec::new(),
    }
}
