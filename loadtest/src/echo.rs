//! `echo`: the closed-loop scenario. Every connection keeps `depth`
//! requests in flight and sends a new one as each response arrives, so the
//! figure is the server's throughput at that concurrency and its latency.

use std::time::Duration;

use anyhow::{bail, Result};
use bytes::BytesMut;
use clap::Args;
use ringgate::codec;

use crate::args::{parse_duration, ClientArgs, TimingArgs};
use crate::client::{Mode, Plan};
use crate::runner;
use crate::seq::SeqSpace;

/// Flags of `echo`.
#[derive(Args, Clone, Debug)]
pub struct EchoArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub timing: TimingArgs,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 1)]
    pub depth: usize,
}

/// Flags shared by `echo` and `rate`.
#[derive(Args, Clone, Debug)]
pub struct LoadArgs {
    /// Connections, all threads together.
    #[arg(long, default_value_t = 100)]
    pub conns: usize,
    /// Payload bytes per request.
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Route of every request.
    #[arg(long, default_value_t = 1)]
    pub route: i32,
    /// Heartbeat period per connection, keeping the server's idle check
    /// quiet; `0s` sends none.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub heartbeat: Duration,
    /// Accounts the CPU time of a process under test in the measured
    /// window, per response: `NAME=PID`, repeatable (pids under one name
    /// are summed). The load generator's own is reported as `self`.
    #[arg(long = "cpu-pid", value_name = "NAME=PID", value_parser = crate::cpu::parse_cpu_pid)]
    pub cpu_pids: Vec<crate::cpu::CpuPid>,
}

/// Checks the flags against each other and builds the plan.
pub fn plan(client: &ClientArgs, timing: &TimingArgs, load: &LoadArgs, mode: Mode) -> Result<Plan> {
    client.threads.validate()?;
    let opts = client.packet.options()?;
    if load.conns == 0 {
        bail!("--conns must be at least 1");
    }
    if timing.duration.is_zero() {
        bail!("--duration must be more than 0s");
    }
    let probe = vec![0u8; load.payload];
    if let Err(e) = codec::encode_data(0, load.route, 0, &probe, &opts, &mut BytesMut::new()) {
        bail!(
            "--route {} / --payload {} do not fit the packet options: {e}",
            load.route,
            load.payload
        );
    }
    if let (Mode::Echo { depth }, Some(modulus)) = (mode, SeqSpace::new(opts.seq_bytes).modulus()) {
        if depth as u64 > modulus {
            bail!(
                "--depth {depth} exceeds the {modulus} distinct seqs of --seq-bytes {}",
                opts.seq_bytes
            );
        }
    }
    if mode == (Mode::Echo { depth: 0 }) {
        bail!("--depth must be at least 1");
    }
    Ok(Plan {
        addr: client.addr,
        dialer: client.dialer()?,
        opts,
        mode,
        route: load.route,
        payload: load.payload,
        conns: load.conns,
        threads: client.threads.threads.min(load.conns),
        warmup: timing.warmup,
        duration: timing.duration,
        heartbeat: (!load.heartbeat.is_zero()).then_some(load.heartbeat),
        login: None,
        receive: None,
    })
}

/// Runs `echo` and prints its report.
pub fn run(args: EchoArgs) -> Result<()> {
    let plan = plan(
        &args.client,
        &args.timing,
        &args.load,
        Mode::Echo { depth: args.depth },
    )?;
    runner::run_load("echo", &plan, &args.client, &args.load.cpu_pids)
}
