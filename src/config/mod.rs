//! Configuration: one serde tree loaded from `etc/ringgate.toml`.
//! (HELPER: finish loading, units, validation, errors; field names are fixed.)

use std::net::SocketAddr;
use std::time::Duration;

use crate::codec::PacketOptions;

/// The whole configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// `[gate]`: this gate's identity.
    pub gate: GateConfig,
    /// `[shards]`: cores and per-shard io_uring tuning.
    pub shards: ShardsConfig,
    /// `[network]`: client transports.
    pub network: NetworkConfig,
    /// `[packet]`: client packet format (due's `[packet]`).
    pub packet: PacketOptions,
    /// `[link]`: gate↔node links.
    pub link: LinkConfig,
    /// `[[nodes]]`: backend nodes the gate dials.
    pub nodes: Vec<NodeConfig>,
    /// `[log]`: logging.
    pub log: LogConfig,
}

/// `[gate]`.
#[derive(Clone, Debug)]
pub struct GateConfig {
    /// Instance id; empty in the file means "generate one at start" (validate fills it).
    pub id: String,
    /// Instance name.
    pub name: String,
}

/// `[shards]`.
#[derive(Clone, Debug)]
pub struct ShardsConfig {
    /// Cores to pin one shard each to, resolved by `validate` from `cores` or `count`.
    pub cores: Vec<usize>,
    /// Submission queue entries per shard ring.
    pub ring_entries: u32,
    /// Provided read buffers per shard (power of two).
    pub buffer_count: u16,
    /// Bytes per provided read buffer.
    pub buffer_size: u32,
}

/// `[network]`.
#[derive(Clone, Debug)]
pub struct NetworkConfig {
    /// `[network.tcp]`.
    pub tcp: TcpConfig,
}

/// `[network.tcp]`, as due's `[network.tcp.server]`.
#[derive(Clone, Debug)]
pub struct TcpConfig {
    /// Listen address (`":3553"` means all interfaces).
    pub addr: SocketAddr,
    /// Listen backlog.
    pub backlog: u32,
    /// Connections accepted at most, across all shards.
    pub max_connections: usize,
    /// `[network.tcp.heartbeat]`.
    pub heartbeat: HeartbeatConfig,
    /// Close a connection with no bound user after this long; zero = off.
    pub authorize_timeout: Duration,
    /// Bytes queued for one client before it is disconnected (`overflow`).
    pub max_outbound_bytes: usize,
}

/// Heartbeat rules.
#[derive(Clone, Copy, Debug)]
pub struct HeartbeatConfig {
    /// Interval; zero disables heartbeats and the idle check.
    pub interval: Duration,
    /// Who sends heartbeats.
    pub mechanism: HeartbeatMechanism,
}

/// due's `heartbeatMechanism`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeartbeatMechanism {
    /// Answer each client heartbeat.
    Resp,
    /// Send one every interval, whatever the client does.
    Tick,
}

/// `[link]`.
#[derive(Clone, Debug)]
pub struct LinkConfig {
    /// Ping interval on an idle link; silent for 3× this closes the link.
    pub heartbeat_interval: Duration,
    /// Give up a connect attempt after this long.
    pub connect_timeout: Duration,
    /// First reconnect delay.
    pub reconnect_min: Duration,
    /// Reconnect delay cap.
    pub reconnect_max: Duration,
    /// Largest frame accepted from (and batched towards) a node.
    pub max_frame_bytes: usize,
}

/// One `[[nodes]]` entry.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Address the node listens on.
    pub addr: SocketAddr,
}

/// `[log]`.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// trace | debug | info | warn | error.
    pub level: String,
    /// text | json.
    pub format: LogFormat,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The annotated default configuration, embedded in the binary.
pub const DEFAULT_TOML: &str = "";

impl Default for Config {
    fn default() -> Self {
        Config {
            gate: GateConfig {
                id: String::new(),
                name: "gate".into(),
            },
            shards: ShardsConfig {
                cores: vec![0],
                ring_entries: 4096,
                buffer_count: 2048,
                buffer_size: 4096,
            },
            network: NetworkConfig {
                tcp: TcpConfig {
                    addr: "0.0.0.0:3553".parse().unwrap(),
                    backlog: 4096,
                    max_connections: 5000,
                    heartbeat: HeartbeatConfig {
                        interval: Duration::from_secs(10),
                        mechanism: HeartbeatMechanism::Resp,
                    },
                    authorize_timeout: Duration::ZERO,
                    max_outbound_bytes: 1 << 20,
                },
            },
            packet: PacketOptions::default(),
            link: LinkConfig {
                heartbeat_interval: Duration::from_secs(1),
                connect_timeout: Duration::from_secs(3),
                reconnect_min: Duration::from_millis(100),
                reconnect_max: Duration::from_secs(5),
                max_frame_bytes: 16 << 20,
            },
            nodes: vec![NodeConfig {
                addr: "127.0.0.1:3600".parse().unwrap(),
            }],
            log: LogConfig {
                level: "info".into(),
                format: LogFormat::Text,
            },
        }
    }
}
