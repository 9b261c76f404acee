//! `rate`: the open-loop scenario. Requests leave on a fixed schedule,
//! `rate` per second spread evenly over the connections, whatever the
//! responses do; latency is measured from each request's *intended* send
//! time, so a server stall shows up in full (no coordinated omission).

use anyhow::{bail, Result};
use clap::Args;

use crate::args::{ClientArgs, TimingArgs};
use crate::client::Mode;
use crate::echo::{plan, LoadArgs};
use crate::runner;

/// Flags of `rate`.
#[derive(Args, Clone, Debug)]
pub struct RateArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub timing: TimingArgs,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Requests per second, all connections together.
    #[arg(long)]
    pub rate: u64,
}

/// Runs `rate` and prints its report.
pub fn run(args: RateArgs) -> Result<()> {
    if args.rate == 0 {
        bail!("--rate must be at least 1");
    }
    let plan = plan(
        &args.client,
        &args.timing,
        &args.load,
        Mode::Rate { rps: args.rate },
    )?;
    runner::run_load("rate", &plan, &args.client, &args.load.cpu_pids)
}
