//! `ringgate-loadtest`: the load generator and the one-hop baseline.
//!
//! * [`echo`] — closed loop: `depth` requests in flight per connection.
//! * [`rate`] — open loop: a fixed request rate, latency from the intended
//!   send time.
//! * [`idle`] — idle connections with heartbeats; the server's memory per
//!   connection.
//! * [`connect`] — a connection storm: connects per second and the time
//!   to a new connection's first reply ([`storm`] is one thread of it).
//! * [`serve`] — `serve-echo`, a due-format echo server with no gate: the
//!   ceiling the gate is compared against.
//! * [`push`] — `push` and `broadcast`: an in-process node pushes by uid
//!   or broadcasts to logged-in clients; delivery rate, losses, latency.
//! * [`node_check`] — `node-check`: a conformance suite that plays the
//!   gate against a node and checks it follows the link protocol.
//! * [`soak`] — `soak`: thousands of connections with churn for minutes
//!   against a running gate, then PASS/FAIL checks on its RSS, lost
//!   replies, disconnect events and descriptors.
//!
//! Every client scenario speaks `--transport tcp|ws|wss` ([`transport`],
//! [`wsc`] for the WebSocket client frames); `echo`, `rate`, `idle` and
//! `connect` also `mqtt|mqtt-ws` ([`mqttc`]: a request is a QoS 0 PUBLISH
//! to `<--mqtt-topic>/<seq>`, answered on the same topic).
//!
//! Shared parts: [`client`] (connection state machine and client event
//! loop), [`tally`] (response checks and counters), [`runner`] (threads, start and progress), [`report`] (histograms,
//! tables, JSON), [`seq`] (request matching), [`sched`] (timetables),
//! [`wire`] (batched socket I/O), [`args`] (flags).

mod args;
mod client;
mod connect;
mod cpu;
mod echo;
mod idle;
mod mqttc;
mod node_check;
mod push;
mod rate;
mod report;
mod runner;
mod sched;
mod seq;
mod serve;
mod soak;
mod storm;
mod tally;
mod tlsc;
mod transport;
mod tune;
mod wire;
mod wsc;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Load generator for ringgate (and any due-format server).
#[derive(Parser, Debug)]
#[command(name = "ringgate-loadtest", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Closed loop: each connection keeps `--depth` requests in flight.
    Echo(echo::EchoArgs),
    /// Open loop: `--rate` requests/s in all, latency from the intended send time.
    Rate(rate::RateArgs),
    /// Idle connections with heartbeats; server memory per connection.
    Idle(idle::IdleArgs),
    /// Connection storm: each connection sends one request, gets its reply, closes.
    Connect(connect::ConnectArgs),
    /// A due-format echo server without a gate: the one-hop baseline.
    ServeEcho(serve::ServeArgs),
    /// An in-process node pushes by uid to logged-in clients: delivery rate and latency.
    Push(push::PushArgs),
    /// An in-process node broadcasts every interval: fan-out rate and latency.
    Broadcast(push::BroadcastArgs),
    /// Conformance suite for nodes: plays the gate against a node and checks
    /// it follows protocol version 2; a PASS/FAIL/SKIP table, exit 1 on a FAIL.
    NodeCheck(node_check::NodeCheckArgs),
    /// Holds a gate near its file limit with churn for a long time, then
    /// checks RSS, lost replies, disconnect events and descriptors; exit 1
    /// on a FAIL.
    Soak(soak::SoakArgs),
    /// Tries a small grid of shard settings against the real gate binary
    /// under a load and prints the best as TOML (docs/tuning.md).
    Tune(tune::TuneArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    raise_fd_limit();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Echo(args) => echo::run(args),
        Command::Rate(args) => rate::run(args),
        Command::Idle(args) => idle::run(args),
        Command::Connect(args) => connect::run(args),
        Command::ServeEcho(args) => serve::run(args),
        Command::Push(args) => push::run_push(args),
        Command::Broadcast(args) => push::run_broadcast(args),
        Command::NodeCheck(args) => node_check::run(args),
        Command::Soak(args) => soak::run(args),
        Command::Tune(args) => tune::run(args),
    }
}

/// Raises the soft open-files limit to the hard one: thousands of
/// connections need thousands of descriptors.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn echo_flags_parse() {
        let cli = Cli::try_parse_from([
            "ringgate-loadtest",
            "echo",
            "--addr",
            "127.0.0.1:9",
            "--conns",
            "20",
            "--depth",
            "2",
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "--json",
            "--threads",
            "2",
            "--cores",
            "0,1",
            "--seq-bytes",
            "0",
            "--byte-order",
            "little",
        ])
        .unwrap();
        let Command::Echo(a) = cli.command else {
            panic!("not echo")
        };
        assert_eq!((a.load.conns, a.depth, a.client.json), (20, 2, true));
        assert_eq!(a.client.threads.cores, [0, 1]);
        assert_eq!(a.timing.warmup, std::time::Duration::ZERO);
        assert_eq!(a.client.packet.seq_bytes, 0);
    }

    #[test]
    fn connect_flags_parse() {
        let cli = Cli::try_parse_from([
            "ringgate-loadtest",
            "connect",
            "--conns",
            "5000",
            "--rate",
            "2000",
            "--hold",
            "--threads",
            "2",
        ])
        .unwrap();
        let Command::Connect(a) = cli.command else {
            panic!("not connect")
        };
        assert_eq!(
            (a.conns, a.rate, a.hold, a.reset),
            (5000, 2000, true, false)
        );
        assert_eq!(a.client.threads.threads, 2);
        assert_eq!(a.timeout, std::time::Duration::from_secs(10));
    }

    #[test]
    fn push_and_broadcast_flags_parse() {
        let cli = Cli::try_parse_from([
            "ringgate-loadtest",
            "push",
            "--conns",
            "50",
            "--rate",
            "0",
            "--transport",
            "wss",
            "--insecure",
            "--node-listen",
            "127.0.0.1:4601",
            "--login-route",
            "11",
        ])
        .unwrap();
        let Command::Push(a) = cli.command else {
            panic!("not push")
        };
        assert_eq!((a.node.conns, a.rate, a.node.own.login_route), (50, 0, 11));
        assert_eq!(a.client.transport.transport, transport::Transport::Wss);
        assert!(a.client.transport.insecure);
        assert_eq!(
            (a.max_inflight, a.node.push_route, a.push_threads),
            (65536, 100, 2)
        );
        let cli = Cli::try_parse_from([
            "ringgate-loadtest",
            "broadcast",
            "--interval",
            "200ms",
            "--transport",
            "ws",
            "--ws-path",
            "/game",
        ])
        .unwrap();
        let Command::Broadcast(a) = cli.command else {
            panic!("not broadcast")
        };
        assert_eq!(a.interval, std::time::Duration::from_millis(200));
        assert_eq!(a.client.transport.ws_path, "/game");
        assert_eq!(a.node.conns, 1000);
    }

    #[test]
    fn soak_flags_parse() {
        let cli = Cli::try_parse_from([
            "ringgate-loadtest",
            "soak",
            "--gate-pid",
            "42",
            "--duration",
            "60s",
            "--conns",
            "4000",
            "--abrupt",
            "0",
        ])
        .unwrap();
        let Command::Soak(a) = cli.command else {
            panic!("not soak")
        };
        assert_eq!(
            (a.gate_pid, a.conns, a.abrupt, a.kicks),
            (42, Some(4000), 0, 5)
        );
        assert_eq!(a.warmup(), std::time::Duration::from_secs(12), "a fifth");
        assert_eq!(a.own.node_listen.to_string(), "127.0.0.1:4601");
        let cli = Cli::try_parse_from(["ringgate-loadtest", "soak", "--gate-pid", "1"]).unwrap();
        let Command::Soak(a) = cli.command else {
            panic!("not soak")
        };
        assert_eq!(a.duration, std::time::Duration::from_secs(600));
        assert_eq!(a.conns, None, "from the open-file limits");
        assert!(
            Cli::try_parse_from(["ringgate-loadtest", "soak"]).is_err(),
            "--gate-pid is required"
        );
    }

    #[test]
    fn serve_for_parses() {
        let cli = Cli::try_parse_from(["ringgate-loadtest", "serve-echo", "--for", "60s"]).unwrap();
        let Command::ServeEcho(a) = cli.command else {
            panic!("not serve-echo")
        };
        assert_eq!(a.run_for, Some(std::time::Duration::from_secs(60)));
    }
}
