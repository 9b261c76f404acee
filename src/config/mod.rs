//! Configuration: one serde tree loaded from `etc/ringgate.toml`.
//!
//! This module owns the file format, its defaults and its rules. It reads a file
//! when asked (at start-up, and on a reload: `crate::reload` decides what a
//! running gate takes from it) and does nothing else: no watching, no I/O
//! afterwards.
//!
//! * Every section is `#[serde(default, deny_unknown_fields)]`: a missing key
//!   takes the `DEFAULT_*` constant below, a misspelt key is an error that names
//!   it.
//! * Durations and sizes are written for humans (`"10s"`, `"1m30s"`, `"4KiB"`),
//!   see [`units`].
//! * [`Config::validate`] checks ranges and cross-field rules, and derives what
//!   the file leaves open (the shard cores, the gate id).
//! * [`DEFAULT_TOML`], the annotated `etc/ringgate.toml`, is embedded in the
//!   binary, is what `ringgate print-config` prints, and parses to exactly
//!   [`Config::default()`] (a test holds the two together).
//!
//! Every error ([`ConfigError`]) names the file, the line when known, the key
//! path (`network.tcp.heartbeat.mechanism`) and what is wrong.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::codec::{ByteOrder, PacketOptions};

mod admin;
mod cluster;
mod limits;
mod load;
mod log;
mod mqtt;
mod shards;
pub mod units;
mod validate;
mod ws;

#[cfg(test)]
mod tests;

pub use admin::{AdminConfig, DEFAULT_ADMIN_ADDR, DEFAULT_ADMIN_ENABLED};
pub use cluster::{
    ClusterConfig, Dispatch, LocatorBackend, LocatorConfig, RegistryBackend, RegistryConfig,
    DEFAULT_DISPATCH,
};
pub use limits::{
    LimitAction, LimitsConfig, DEFAULT_ACCEPTS_PER_SEC, DEFAULT_BYTES_BURST, DEFAULT_BYTES_PER_SEC,
    DEFAULT_LIMITS_MAX_INFLIGHT, DEFAULT_LIMIT_ACTION, DEFAULT_MAX_CONNECTIONS_PER_IP,
    DEFAULT_MAX_HANDSHAKES, DEFAULT_REQUESTS_BURST, DEFAULT_REQUESTS_PER_SEC,
};
pub use load::{ConfigError, EMBEDDED_ORIGIN};
pub use log::{
    LogConfig, LogFileConfig, LogFormat, Rotation, Terminal, DEFAULT_LOG_COMPRESS,
    DEFAULT_LOG_FILE_FORMAT, DEFAULT_LOG_FILE_PATH, DEFAULT_LOG_FORMAT, DEFAULT_LOG_LEVEL,
    DEFAULT_LOG_MAX_AGE, DEFAULT_LOG_MAX_SIZE, DEFAULT_LOG_ROTATION, DEFAULT_STACK_LEVEL,
    DEFAULT_TERMINALS,
};
pub use mqtt::{
    MqttConfig, DEFAULT_CONNECT_TIMEOUT_MQTT, DEFAULT_MAX_INFLIGHT, DEFAULT_MAX_PACKET_BYTES,
    DEFAULT_MQTT_ADDR, DEFAULT_MQTT_ENABLED, DEFAULT_MQTT_REQUEST_TIMEOUT,
};
pub use shards::{ShardKnobs, ShardOverride, MAX_BATCH_WAIT, MAX_BUSY_POLL};
pub use validate::LINK_ENVELOPE_BYTES;
pub use ws::{
    WsConfig, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_TRUST_PROXY, DEFAULT_WS_ADDR, DEFAULT_WS_ENABLED,
    DEFAULT_WS_ORIGINS, DEFAULT_WS_PATH,
};

/// The annotated default configuration, embedded in the binary.
pub const DEFAULT_TOML: &str = include_str!("../../etc/ringgate.toml");

/// Where [`Config::load_or_default`] looks when no path is given (relative to
/// the working directory): the repository layout.
pub const DEFAULT_PATH: &str = "etc/ringgate.toml";

/// `[gate] name`: due's default instance name.
pub const DEFAULT_GATE_NAME: &str = "gate";
/// `[shards] count`: 0 = one shard per core this process may run on, the
/// thread-per-core default.
pub const DEFAULT_SHARD_COUNT: usize = 0;
/// `[shards] ring_entries`: room for a burst of accepts, re-armed receives and
/// one send per busy connection in a single submission without a full SQ.
pub const DEFAULT_RING_ENTRIES: u32 = 4096;
/// `[shards] buffer_count`: 2048 × 4 KiB = 8 MiB of read buffers per shard,
/// enough for thousands of connections sending at once (idle ones hold none).
pub const DEFAULT_BUFFER_COUNT: u16 = 2048;
/// `[shards] buffer_size`: one page, larger than most game messages; a due
/// packet of `bufferBytes` 5000 spans two buffers at worst.
pub const DEFAULT_BUFFER_SIZE: u32 = 4096;
/// `[network.tcp] addr`: due's default gate port on every IPv4 interface.
pub const DEFAULT_TCP_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 3553);
/// `[network.tcp] backlog`: absorbs a reconnect storm after a restart (the
/// kernel still caps it at `net.core.somaxconn`).
pub const DEFAULT_BACKLOG: u32 = 4096;
/// `[network.tcp] max_connections`: due's `maxConnNum`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 5000;
/// `[network.tcp] authorize_timeout`: due's default, no authorize check.
pub const DEFAULT_AUTHORIZE_TIMEOUT: Duration = Duration::ZERO;
/// `[network.tcp] max_outbound_bytes`: about 200 full 5000-byte packets; a
/// client this far behind is not keeping up and is cut off.
pub const DEFAULT_MAX_OUTBOUND_BYTES: usize = 1 << 20;
/// `[network.tcp.heartbeat] interval`: due's `heartbeatInterval`.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
/// `[network.tcp.heartbeat] mechanism`: due's `heartbeatMechanism`.
pub const DEFAULT_HEARTBEAT_MECHANISM: HeartbeatMechanism = HeartbeatMechanism::Resp;
/// `[link] heartbeat_interval`: a dead node is noticed within 3 s, at a cost
/// of one tiny frame per second on an idle link.
pub const DEFAULT_LINK_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// `[link] connect_timeout`: due's cluster RPC timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// `[link] reconnect_min`: a restarting node is picked up quickly...
pub const DEFAULT_RECONNECT_MIN: Duration = Duration::from_millis(100);
/// `[link] reconnect_max`: ...and a node that stays down costs a dial every 5 s.
pub const DEFAULT_RECONNECT_MAX: Duration = Duration::from_secs(5);
/// `[link] max_frame_bytes`: a batch of a few thousand full client packets; a
/// corrupt length prefix cannot make the gate allocate more than this.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 << 20;
/// `[link] request_timeout`: a request a node announced it answers gets the
/// TIMEOUT error code after this long without its reply. Long enough for a
/// database round trip under load, short enough that a player sees an error
/// rather than a frozen screen.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// `[link] hang_timeout`: a node that has requests waiting on a link and has
/// sent nothing (not even a pong to the gate's early ping) for this long is
/// taken as hung: the link closes and its waiting requests get NODE_DOWN.
pub const DEFAULT_HANG_TIMEOUT: Duration = Duration::from_secs(1);
/// `[link] max_queued_bytes`: bytes waiting to be written to one node link.
/// Beyond it, requests for that node get the BUSY error code instead of
/// growing the gate (about 1,000 full 4 KiB requests).
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 4 << 20;
/// `[[nodes]] addr`: the echo example node's address, so that the defaults
/// run end to end on one machine.
pub const DEFAULT_NODE_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 3600);
/// `[gate] shutdown_max_wait`: long enough for a round of a typical game to
/// end and its players to move; short enough for a rolling restart.
pub const DEFAULT_SHUTDOWN_MAX_WAIT: Duration = Duration::from_secs(30);
/// Binding a user bound elsewhere closes the old connection, as players expect
/// when they log in again from a new device (due keeps both: its #90).
pub const DEFAULT_REBIND: Rebind = Rebind::Kick;
/// Settings ride on every delivered message only if a node asks: most routes do not need them.
pub const DEFAULT_DELIVER_SETTINGS: bool = false;
/// Keys per session: enough for room, role, region and the like; bounds memory.
pub const DEFAULT_MAX_SETTINGS: usize = 32;
/// Bytes per setting key + value: settings are tags, not storage.
pub const DEFAULT_MAX_SETTING_BYTES: usize = 1024;
/// Messages a shard's inbox holds from the other shards: ~1.5 s of pushes at
/// 40k/s per shard before a sender must hold its own backlog.
pub const DEFAULT_CHANNEL_CAPACITY: usize = 65536;
/// No busy polling: a shard sleeps in the kernel as soon as it has nothing to
/// do, which is right whenever the gate shares its cores (nodes, clients).
pub const DEFAULT_BUSY_POLL: Duration = Duration::ZERO;

/// No batching delay: a shard wakes on its first completion.
pub const DEFAULT_BATCH_WAIT: Duration = Duration::ZERO;

/// The whole configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[gate]`: this gate's identity.
    pub gate: GateConfig,
    /// `[shards]`: cores and per-shard io_uring tuning.
    pub shards: ShardsConfig,
    /// `[network]`: client transports.
    pub network: NetworkConfig,
    /// `[packet]`: client packet format (due's `[packet]`).
    #[serde(deserialize_with = "packet_options")]
    pub packet: PacketOptions,
    /// `[link]`: gate↔node links.
    pub link: LinkConfig,
    /// `[session]`: user binding and settings.
    pub session: SessionConfig,
    /// `[limits]`: rates per connection, limits per client address and per
    /// shard during a storm.
    pub limits: LimitsConfig,
    /// `[[nodes]]`: backend nodes the gate dials. Writing any `[[nodes]]` in
    /// the file replaces the default list as a whole.
    pub nodes: Vec<NodeConfig>,
    /// `[cluster]`: dispatch among nodes, and the fleet's services.
    pub cluster: ClusterConfig,
    /// `[log]`: logging.
    pub log: LogConfig,
    /// `[admin]`: the operator's HTTP port (metrics, API, dashboard).
    pub admin: AdminConfig,
}

/// `[gate]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GateConfig {
    /// Instance id; empty in the file means "generate one at start" (validate fills it).
    pub id: String,
    /// Set by `validate` when it generated `id` (the file left it empty), so
    /// that a reload of the same file keeps the id in force instead of
    /// seeing a new one. Not a key of the file.
    #[serde(skip)]
    pub id_generated: bool,
    /// Instance name.
    pub name: String,
    /// How long a drain (SIGTERM, SIGINT, the admin's drain) keeps serving
    /// the sessions it has before closing the rest (due's
    /// `shutdownMaxWaitTime`).
    #[serde(deserialize_with = "units::duration")]
    pub shutdown_max_wait: std::time::Duration,
    /// Pid file written at start and removed at exit (due's `pid`); empty = none.
    pub pid: std::path::PathBuf,
}

/// `[shards]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShardsConfig {
    /// Shards wanted when `cores` is not given: `n` pins them to the first `n`
    /// cores this process may run on, 0 to every one of them. An input only:
    /// `validate` turns it into `cores` and sets it back to 0, so read
    /// `cores.len()` for the number of shards.
    pub count: usize,
    /// Cores to pin one shard each to, resolved by `validate` from `cores` or `count`.
    #[serde(default)]
    pub cores: Vec<usize>,
    /// Submission queue entries per shard ring.
    pub ring_entries: u32,
    /// Provided read buffers per shard (power of two).
    pub buffer_count: u16,
    /// Bytes per provided read buffer.
    #[serde(deserialize_with = "units::size")]
    pub buffer_size: u32,
    /// Messages each shard's inbox holds from the other shards.
    pub channel_capacity: usize,
    /// Keep polling for completions this long before sleeping (0 = off).
    #[serde(deserialize_with = "units::duration")]
    pub busy_poll: Duration,
    /// Once a loop turn has work waiting, let completions gather this long
    /// before waking (io_uring `min_wait`, Linux 6.12+; 0 = wake on the first).
    #[serde(deserialize_with = "units::duration")]
    pub batch_wait: Duration,
    /// Cores for the gate's own threads (signals, admin, fleet agent, log
    /// writer); empty = wherever the kernel puts them.
    pub control_cores: Vec<usize>,
    /// `[[shards.overrides]]`: knobs of single shards.
    pub overrides: Vec<ShardOverride>,
}

/// `[network]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// `[network.tcp]`.
    pub tcp: TcpConfig,
    /// `[network.ws]`.
    pub ws: WsConfig,
    /// `[network.mqtt]`.
    pub mqtt: MqttConfig,
}

/// `[network.tcp]`, as due's `[network.tcp.server]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TcpConfig {
    /// Listen address (`":3553"` means all interfaces).
    #[serde(deserialize_with = "units::addr")]
    pub addr: SocketAddr,
    /// Listen backlog.
    pub backlog: u32,
    /// Connections accepted at most, across all shards.
    pub max_connections: usize,
    /// `[network.tcp.heartbeat]`.
    pub heartbeat: HeartbeatConfig,
    /// Close a connection with no bound user after this long; zero = off.
    #[serde(deserialize_with = "units::duration")]
    pub authorize_timeout: Duration,
    /// Bytes queued for one client before it is disconnected (`overflow`).
    #[serde(deserialize_with = "units::size")]
    pub max_outbound_bytes: usize,
    /// PEM certificate chain; with `key_file`, clients must speak TLS. Empty: plain TCP.
    pub cert_file: std::path::PathBuf,
    /// PEM private key for `cert_file`. Empty: plain TCP.
    pub key_file: std::path::PathBuf,
    /// Close a TLS connection whose handshake has not finished this long after accept.
    #[serde(deserialize_with = "units::duration")]
    pub tls_handshake_timeout: Duration,
}

/// Heartbeat rules.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// Interval; zero disables heartbeats and the idle check.
    #[serde(deserialize_with = "units::duration")]
    pub interval: Duration,
    /// Who sends heartbeats.
    pub mechanism: HeartbeatMechanism,
}

/// due's `heartbeatMechanism`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HeartbeatMechanism {
    /// Answer each client heartbeat.
    #[default]
    Resp,
    /// Send one every interval, whatever the client does.
    Tick,
}

impl HeartbeatMechanism {
    /// Names as written in the file.
    pub const CHOICES: &'static [(&'static str, HeartbeatMechanism)] = &[
        ("resp", HeartbeatMechanism::Resp),
        ("tick", HeartbeatMechanism::Tick),
    ];
}

impl<'de> Deserialize<'de> for HeartbeatMechanism {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        units::choice(de, Self::CHOICES)
    }
}

/// `[session]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// What binding a user who is bound to another session does.
    pub rebind: Rebind,
    /// Deliver each session's settings with every message to nodes.
    pub deliver_settings: bool,
    /// Settings keys per session at most.
    pub max_settings: usize,
    /// Bytes of one setting (key + value) at most.
    #[serde(deserialize_with = "units::size")]
    pub max_setting_bytes: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            rebind: DEFAULT_REBIND,
            deliver_settings: DEFAULT_DELIVER_SETTINGS,
            max_settings: DEFAULT_MAX_SETTINGS,
            max_setting_bytes: DEFAULT_MAX_SETTING_BYTES,
        }
    }
}

/// `session.rebind`: binding a user already bound to another session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Rebind {
    /// Close the old session (reason `rebind`) and bind the new one.
    #[default]
    Kick,
    /// Refuse the new bind (`ALREADY_BOUND`); the old session stays.
    Reject,
}

impl Rebind {
    /// Names as written in the file.
    pub const CHOICES: &'static [(&'static str, Rebind)] =
        &[("kick", Rebind::Kick), ("reject", Rebind::Reject)];
}

impl<'de> Deserialize<'de> for Rebind {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        units::choice(de, Self::CHOICES)
    }
}

/// `[link]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinkConfig {
    /// Ping interval on an idle link; silent for 3× this closes the link.
    #[serde(deserialize_with = "units::duration")]
    pub heartbeat_interval: Duration,
    /// Give up a connect attempt after this long.
    #[serde(deserialize_with = "units::duration")]
    pub connect_timeout: Duration,
    /// First reconnect delay.
    #[serde(deserialize_with = "units::duration")]
    pub reconnect_min: Duration,
    /// Reconnect delay cap.
    #[serde(deserialize_with = "units::duration")]
    pub reconnect_max: Duration,
    /// Largest frame accepted from (and batched towards) a node.
    #[serde(deserialize_with = "units::size")]
    pub max_frame_bytes: usize,
    /// Default wait for the reply of a request on a route a node answers.
    #[serde(deserialize_with = "units::duration")]
    pub request_timeout: Duration,
    /// Silence, with requests waiting, after which a node counts as hung (0: off).
    #[serde(deserialize_with = "units::duration")]
    pub hang_timeout: Duration,
    /// Bytes queued toward one node link before requests get BUSY.
    #[serde(deserialize_with = "units::size")]
    pub max_queued_bytes: usize,
}

/// One `[[nodes]]` entry. `addr` is required: a node has no default address
/// of its own (the default *list* holds [`DEFAULT_NODE_ADDR`]).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Address the node listens on.
    #[serde(deserialize_with = "units::addr")]
    pub addr: SocketAddr,
    /// A Unix socket the same node also listens on (`NodeBuilder::listen_unix`),
    /// for a node on the gate's own host: the links use it instead of `addr`,
    /// which still names the node (logs, metrics, the admin API). A Unix
    /// stream skips the TCP stack both ways (see docs/tuning.md).
    #[serde(default)]
    pub unix: Option<std::path::PathBuf>,
}

impl Config {
    /// `[[nodes]]` reached over a Unix socket: address → path.
    pub fn unix_node_paths(&self) -> std::collections::HashMap<SocketAddr, std::path::PathBuf> {
        (self.nodes.iter())
            .filter_map(|n| Some((n.addr, n.unix.clone()?)))
            .collect()
    }
}

/// `[packet]` as written in the file. [`PacketOptions`] belongs to the codec,
/// which knows nothing of serde, so the file goes through this mirror.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct PacketFile {
    #[serde(deserialize_with = "byte_order")]
    byte_order: ByteOrder,
    route_bytes: u8,
    seq_bytes: u8,
    #[serde(deserialize_with = "units::size")]
    buffer_bytes: usize,
    heartbeat_time: bool,
}

impl Default for PacketFile {
    fn default() -> Self {
        let d = PacketOptions::default();
        PacketFile {
            byte_order: d.byte_order,
            route_bytes: d.route_bytes,
            seq_bytes: d.seq_bytes,
            buffer_bytes: d.buffer_bytes,
            heartbeat_time: d.heartbeat_time,
        }
    }
}

fn packet_options<'de, D: Deserializer<'de>>(de: D) -> Result<PacketOptions, D::Error> {
    let f = PacketFile::deserialize(de)?;
    Ok(PacketOptions {
        byte_order: f.byte_order,
        route_bytes: f.route_bytes,
        seq_bytes: f.seq_bytes,
        buffer_bytes: f.buffer_bytes,
        heartbeat_time: f.heartbeat_time,
    })
}

fn byte_order<'de, D: Deserializer<'de>>(de: D) -> Result<ByteOrder, D::Error> {
    units::choice(
        de,
        &[("big", ByteOrder::Big), ("little", ByteOrder::Little)],
    )
}

impl Default for Config {
    /// The defaults, equal to parsing [`DEFAULT_TOML`] except for `gate.id`,
    /// which stays empty here (validate generates it). `shards.cores` is
    /// already resolved to every core this process may run on.
    fn default() -> Self {
        Config {
            gate: GateConfig::default(),
            shards: ShardsConfig::default(),
            network: NetworkConfig::default(),
            packet: PacketOptions::default(),
            link: LinkConfig::default(),
            session: SessionConfig::default(),
            limits: LimitsConfig::default(),
            nodes: vec![NodeConfig {
                unix: None,
                addr: DEFAULT_NODE_ADDR,
            }],
            cluster: ClusterConfig::default(),
            log: LogConfig::default(),
            admin: AdminConfig::default(),
        }
    }
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            id: String::new(),
            id_generated: false,
            name: DEFAULT_GATE_NAME.into(),
            shutdown_max_wait: DEFAULT_SHUTDOWN_MAX_WAIT,
            pid: std::path::PathBuf::new(),
        }
    }
}

impl Default for ShardsConfig {
    /// One shard per available core, as `count = 0` resolves to.
    fn default() -> Self {
        ShardsConfig {
            count: DEFAULT_SHARD_COUNT,
            cores: validate::available_cores(),
            ring_entries: DEFAULT_RING_ENTRIES,
            buffer_count: DEFAULT_BUFFER_COUNT,
            buffer_size: DEFAULT_BUFFER_SIZE,
            channel_capacity: DEFAULT_CHANNEL_CAPACITY,
            busy_poll: DEFAULT_BUSY_POLL,
            batch_wait: DEFAULT_BATCH_WAIT,
            control_cores: Vec::new(),
            overrides: Vec::new(),
        }
    }
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            addr: DEFAULT_TCP_ADDR,
            backlog: DEFAULT_BACKLOG,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            heartbeat: HeartbeatConfig::default(),
            authorize_timeout: DEFAULT_AUTHORIZE_TIMEOUT,
            max_outbound_bytes: DEFAULT_MAX_OUTBOUND_BYTES,
            cert_file: std::path::PathBuf::new(),
            key_file: std::path::PathBuf::new(),
            tls_handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig {
            interval: DEFAULT_HEARTBEAT_INTERVAL,
            mechanism: DEFAULT_HEARTBEAT_MECHANISM,
        }
    }
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            heartbeat_interval: DEFAULT_LINK_HEARTBEAT_INTERVAL,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            reconnect_min: DEFAULT_RECONNECT_MIN,
            reconnect_max: DEFAULT_RECONNECT_MAX,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            hang_timeout: DEFAULT_HANG_TIMEOUT,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
        }
    }
}
