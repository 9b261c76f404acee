//! Command-line flags shared by the subcommands, and the small parsers they
//! need (human durations, core lists). No I/O here.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use ringgate::codec::{ByteOrder, PacketOptions};

use crate::transport::{Dialer, TransportArgs};

/// Default gate address (ringgate's default client port).
pub const DEFAULT_ADDR: &str = "127.0.0.1:3553";

/// Byte order flag, mapped onto [`ByteOrder`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OrderArg {
    /// Network order, due's default.
    Big,
    /// Little-endian.
    Little,
}

/// The packet layout; must match the server's `[packet]` section.
#[derive(Args, Clone, Debug)]
pub struct PacketArgs {
    /// Byte order of size, route, seq and heartbeat time.
    #[arg(long, value_enum, default_value = "big")]
    pub byte_order: OrderArg,
    /// Width of the route field: 1, 2 or 4.
    #[arg(long, default_value_t = 2)]
    pub route_bytes: u8,
    /// Width of the seq field: 0, 1, 2 or 4 (0: responses are matched in order).
    #[arg(long, default_value_t = 2)]
    pub seq_bytes: u8,
    /// Largest payload accepted or produced.
    #[arg(long, default_value_t = 5000)]
    pub buffer_bytes: usize,
    /// Heartbeats from the server carry its unix time (serve-echo sends it).
    #[arg(long)]
    pub heartbeat_time: bool,
}

impl PacketArgs {
    /// Checks the widths and builds the codec options.
    pub fn options(&self) -> Result<PacketOptions> {
        if !matches!(self.route_bytes, 1 | 2 | 4) {
            bail!("--route-bytes must be 1, 2 or 4, not {}", self.route_bytes);
        }
        if !matches!(self.seq_bytes, 0 | 1 | 2 | 4) {
            bail!("--seq-bytes must be 0, 1, 2 or 4, not {}", self.seq_bytes);
        }
        Ok(PacketOptions {
            byte_order: match self.byte_order {
                OrderArg::Big => ByteOrder::Big,
                OrderArg::Little => ByteOrder::Little,
            },
            route_bytes: self.route_bytes,
            seq_bytes: self.seq_bytes,
            buffer_bytes: self.buffer_bytes,
            heartbeat_time: self.heartbeat_time,
        })
    }
}

/// Event-loop threads and their pinning.
#[derive(Args, Clone, Debug)]
pub struct ThreadArgs {
    /// Event-loop threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Pin thread i to core `cores[i % len]`, e.g. `--cores 0,1`.
    #[arg(long, value_delimiter = ',')]
    pub cores: Vec<usize>,
}

impl ThreadArgs {
    /// Checks the thread count.
    pub fn validate(&self) -> Result<()> {
        if self.threads == 0 {
            bail!("--threads must be at least 1");
        }
        Ok(())
    }
}

/// Flags of every client scenario.
#[derive(Args, Clone, Debug)]
pub struct ClientArgs {
    /// Server address; the only address ever connected to.
    #[arg(long, default_value = DEFAULT_ADDR)]
    pub addr: SocketAddr,
    #[command(flatten)]
    pub packet: PacketArgs,
    #[command(flatten)]
    pub threads: ThreadArgs,
    #[command(flatten)]
    pub transport: TransportArgs,
    /// Print one JSON object with all results to stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

impl ClientArgs {
    /// How connections reach `--addr` (`--transport` and its flags checked).
    pub fn dialer(&self) -> Result<Dialer> {
        Dialer::new(self.addr, &self.transport)
    }
}

/// The load generator's own node (`push`, `broadcast`, `soak`): where it
/// listens for the gate, how long it waits for the gate's links, its
/// handler threads, and the route clients log in on.
#[derive(Args, Clone, Debug)]
pub struct OwnNodeArgs {
    /// Address the in-process node listens on; the gate must list it under
    /// `[[nodes]]` and dials it.
    #[arg(long, default_value = "127.0.0.1:4601")]
    pub node_listen: SocketAddr,
    /// How long to wait for the gate's links to the node.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub link_wait: Duration,
    /// Node handler threads (a log-in's bind blocks its thread for a gate
    /// round trip).
    #[arg(long, default_value_t = 4)]
    pub node_workers: usize,
    /// Route the clients log in on (payload: the uid in decimal). No other
    /// node of the gate may serve it.
    #[arg(long, default_value_t = 1)]
    pub login_route: i32,
}

/// Warm-up and measurement window of the load scenarios.
#[derive(Args, Clone, Debug)]
pub struct TimingArgs {
    /// Run this long before recording (e.g. `2s`, `500ms`).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Record this long after the warm-up.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
}

/// Parses a human duration: a number followed by `ns`, `us`, `ms`, `s`, `m`
/// or `h`; a bare number is seconds. Fractions are allowed (`1.5s`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (try 10s, 500ms, 2m)"))?;
    let scale = match unit.trim() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "" | "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("unknown duration unit `{other}` in `{text}`")),
    };
    Duration::try_from_secs_f64(value * scale).map_err(|e| format!("`{text}`: {e}"))
}

/// Formats a duration the way [`parse_duration`] reads it back (`10s`, `1.5s`, `250ms`).
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        "0s".to_string()
    } else if nanos % 1_000_000_000 == 0 {
        format!("{}s", nanos / 1_000_000_000)
    } else if nanos >= 1_000_000_000 {
        format!("{}s", d.as_secs_f64())
    } else if nanos % 1_000_000 == 0 {
        format!("{}ms", nanos / 1_000_000)
    } else if nanos % 1_000 == 0 {
        format!("{}us", nanos / 1_000)
    } else {
        format!("{nanos}ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration(" 3 s "), Ok(Duration::from_secs(3)));
    }

    #[test]
    fn durations_reject_garbage() {
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("10parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1.2.3s").is_err());
    }

    #[test]
    fn durations_round_trip_through_format() {
        for text in ["0s", "10s", "1.5s", "250ms", "40us", "7ns"] {
            let d = parse_duration(text).unwrap();
            assert_eq!(format_duration(d), text);
        }
    }

    #[test]
    fn packet_widths_are_checked() {
        let mut args = PacketArgs {
            byte_order: OrderArg::Little,
            route_bytes: 2,
            seq_bytes: 0,
            buffer_bytes: 100,
            heartbeat_time: false,
        };
        let opts = args.options().unwrap();
        assert_eq!(opts.byte_order, ByteOrder::Little);
        args.route_bytes = 3;
        assert!(args.options().is_err());
        args.route_bytes = 4;
        args.seq_bytes = 8;
        assert!(args.options().is_err());
    }
}
