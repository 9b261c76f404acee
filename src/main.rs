//! `ringgate`: runs the gate (default), or prints / checks the configuration.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use ringgate::config::{Config, LogFormat, DEFAULT_TOML};
use ringgate::gate::Gate;

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
}

fn init_logs(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.log.level));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cfg.log.format {
        LogFormat::Json => b.json().init(),
        LogFormat::Text => b.init(),
    }
}

/// Blocks SIGINT/SIGTERM in this thread (and the shards it spawns, which
/// inherit the mask) so `wait_for_signal` can take them synchronously.
fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local, then pthread_sigmask on this thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
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
        Cmd::CheckConfig => {
            let (_, origin) = Config::load_or_default(cli.config.as_deref())?;
            println!("{origin}: ok");
            Ok(())
        }
        Cmd::Run => {
            let (cfg, origin) = Config::load_or_default(cli.config.as_deref())?;
            init_logs(&cfg);
            let set = block_signals();
            let gate =
                Gate::start(&cfg).with_context(|| format!("starting ringgate with {origin}"))?;
            println!("{}", gate.banner(&cfg, &origin));
            let (tx, signals) = crossbeam_channel::unbounded();
            std::thread::Builder::new()
                .name("ringgate-signals".into())
                .spawn(move || loop {
                    if tx.send(wait_for_signal(&set)).is_err() {
                        return;
                    }
                })?;
            serve_then_drain(gate, &signals, cfg.gate.shutdown_max_wait)?;
            tracing::info!("stopped");
            Ok(())
        }
    }
}
