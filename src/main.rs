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
    /// Talk to a running gate's admin port (stat, sessions, kick, drain, log-level).
    Admin(ringgate::admin::cli::AdminArgs),
}

fn init_logs(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.log.level));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // The admin port's PUT /api/log-level swaps the filter through this handle.
    match cfg.log.format {
        LogFormat::Json => {
            let b = b.json().with_filter_reloading();
            ringgate::admin::set_log_reload(b.reload_handle(), &cfg.log.level);
            b.init()
        }
        LogFormat::Text => {
            let b = b.with_filter_reloading();
            ringgate::admin::set_log_reload(b.reload_handle(), &cfg.log.level);
            b.init()
        }
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
        Cmd::Run => {
            let (cfg, origin) = Config::load_or_default(cli.config.as_deref())?;
            init_logs(&cfg);
            let set = block_signals();
            let gate =
                Gate::start(&cfg).with_context(|| format!("starting ringgate with {origin}"))?;
            println!("{}", gate.banner(&cfg, &origin));
            let stopper = gate.stopper();
            std::thread::Builder::new()
                .name("ringgate-signals".into())
                .spawn(move || {
                    let sig = wait_for_signal(&set);
                    tracing::info!(signal = sig, "stopping");
                    stopper.stop();
                })?;
            gate.wait()?;
            tracing::info!("stopped");
            Ok(())
        }
    }
}
