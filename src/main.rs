//! `ringgate`: runs the gate (default), prints / checks the configuration,
//! or checks the host against it.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use ringgate::config::{Config, DEFAULT_TOML};
use ringgate::gate::Gate;
use ringgate::pidfile::PidFile;
use ringgate::{host_check, logging};

#[derive(Parser)]
#[command(
    name = "ringgate",
    version,
    about = "A thread-per-core io_uring game gateway (due-compatible)"
)]
struct Cli {
    /// Config file (default: etc/ringgate.toml if present, else the embedded default).
    #[arg(short, long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the gate (the default).
    Run,
    /// Print the annotated default configuration.
    PrintConfig,
    /// Load and validate the configuration, then exit.
    CheckConfig,
    /// Check this machine against the configuration (kernel, limits,
    /// sysctls, cores, NIC interrupts); exit 1 if something should change.
    CheckHost,
    /// Talk to a running gate's admin port (stat, sessions, kick, drain, log-level, reload).
    Admin(ringgate::admin::cli::AdminArgs),
}

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread and in every thread it
/// spawns afterwards (they inherit the mask: the log writers, the shards),
/// so that only `wait_for_signal` takes them (SIGHUP: a reload of the
/// config file). Call it before any thread starts.
fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local, then pthread_sigmask on this thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_for_signal(set: &libc::sigset_t) -> i32 {
    let mut sig = 0;
    // SAFETY: `set` is an initialised sigset blocked in this thread.
    unsafe { libc::sigwait(set, &mut sig) };
    sig
}

/// Serves until a signal (or the admin's drain request), then drains: no
/// new connections, the open ones served until they close or `max_wait`
/// runs out, then the rest closed (reason `shutdown`). A second signal
/// stops at once.
fn serve_then_drain(
    gate: Gate,
    signals: &crossbeam_channel::Receiver<i32>,
    max_wait: std::time::Duration,
) -> anyhow::Result<()> {
    use crossbeam_channel::RecvTimeoutError;
    use std::time::{Duration, Instant};
    loop {
        match signals.recv_timeout(Duration::from_millis(100)) {
            Ok(sig) => {
                tracing::info!(
                    signal = sig,
                    sessions = gate.open_connections(),
                    ?max_wait,
                    "draining"
                );
                break;
            }
            Err(RecvTimeoutError::Timeout) if gate.drain_requested() => {
                tracing::info!(
                    sessions = gate.open_connections(),
                    ?max_wait,
                    "drain requested; draining"
                );
                break;
            }
            Err(RecvTimeoutError::Timeout) if !gate.finished() => {}
            Err(_) => return Ok(gate.wait()?),
        }
    }
    gate.begin_drain();
    let deadline = Instant::now() + max_wait;
    loop {
        let open = gate.open_connections();
        if open == 0 {
            tracing::info!("drained: every session closed");
            break;
        }
        if Instant::now() >= deadline {
            tracing::info!(
                sessions = open,
                "shutdown_max_wait ran out; closing the rest"
            );
            break;
        }
        if let Ok(sig) = signals.recv_timeout(Duration::from_millis(50)) {
            tracing::warn!(
                signal = sig,
                sessions = open,
                "second signal: stopping at once"
            );
            break;
        }
        if gate.finished() {
            break;
        }
    }
    gate.stop();
    Ok(())
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("ringgate: error: {}", one_line(&e));
        std::process::exit(1);
    }
}

/// One clear line with every cause, no backtrace: what an operator reads.
/// A cause already quoted by the message before it is not repeated.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd.unwrap_or(Cmd::Run) {
        Cmd::PrintConfig => {
            print!("{DEFAULT_TOML}");
            Ok(())
        }
        Cmd::Admin(args) => {
            let (cfg, _) = Config::load_or_default(cli.config.as_deref())?;
            println!("{}", ringgate::admin::cli::run(&args, &cfg)?);
            Ok(())
        }
        Cmd::CheckConfig => {
            let (_, origin) = Config::load_or_default(cli.config.as_deref())?;
            println!("{origin}: ok");
            Ok(())
        }
        Cmd::CheckHost => {
            let (cfg, origin) = Config::load_or_default(cli.config.as_deref())?;
            if !host_check::run(&cfg, &origin) {
                std::process::exit(1);
            }
            Ok(())
        }
        Cmd::Run => run_gate(cli.config.as_deref()),
    }
}

/// Runs the gate until SIGINT or SIGTERM; SIGHUP reloads the config file
/// (`ringgate::reload`). The pid file is taken before
/// anything else is set up (a refused second start writes no log), then
/// the logs, then the shards; everything is released in reverse order when
/// this returns, on success or error.
fn run_gate(config: Option<&Path>) -> anyhow::Result<()> {
    let set = block_signals();
    let (cfg, origin) = Config::load_or_default(config)?;
    let starting = || format!("starting ringgate with {origin}");
    // Before any thread starts: every thread but the shards inherits it.
    ringgate::gate::pin_control_threads(&cfg.shards.control_cores)
        .context("shards.control_cores")
        .with_context(starting)?;
    let pid = if cfg.gate.pid.as_os_str().is_empty() {
        None
    } else {
        let taken = PidFile::acquire(&cfg.gate.pid).map_err(|e| anyhow::anyhow!("gate.pid: {e}"));
        Some(taken.with_context(starting)?)
    };
    let _logs = logging::init(&cfg.log).with_context(starting)?;
    let pid_file = pid
        .as_ref()
        .map(|(file, _)| file.path().display().to_string());
    if let Some((file, Some(stale))) = &pid {
        tracing::warn!(
            pid_file = %file.path().display(),
            old_pid = ?stale.pid,
            "replaced a stale pid file: {}",
            stale.why
        );
    }
    let file = Config::file_to_load(config);
    let gate = Gate::start_from_file(&cfg, file).with_context(starting)?;
    println!("{}", gate.banner(&cfg, &origin));
    tracing::info!(
        id = gate.id(),
        config = %origin,
        pid = std::process::id(),
        pid_file = pid_file.as_deref().unwrap_or(""),
        "ringgate started"
    );
    let (tx, signals) = crossbeam_channel::unbounded();
    let reloader = gate.reloader();
    std::thread::Builder::new()
        .name("ringgate-signals".into())
        .spawn(move || loop {
            match wait_for_signal(&set) {
                libc::SIGHUP => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    // The reload logs what it applied, kept or refused.
                    let _ = reloader.reload();
                }
                sig => {
                    if tx.send(sig).is_err() {
                        return;
                    }
                }
            }
        })?;
    serve_then_drain(gate, &signals, cfg.gate.shutdown_max_wait)?;
    tracing::info!("stopped");
    Ok(())
}
