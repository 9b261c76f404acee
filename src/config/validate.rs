//! [`Config::validate`]: range and cross-field checks, and the values derived
//! at start (shard cores, gate id).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::cluster::RegistryBackend;
use super::{Config, ConfigError};

/// Smallest `shards.ring_entries`: below this a burst of sends overflows the SQ.
pub const MIN_RING_ENTRIES: u32 = 64;
/// Largest `shards.ring_entries`: the kernel's `IORING_MAX_ENTRIES`.
pub const MAX_RING_ENTRIES: u32 = 32768;
/// Largest `shards.buffer_count`: the kernel's limit for one provided-buffer ring.
pub const MAX_BUFFER_COUNT: u16 = 32768;
/// Smallest `shards.buffer_size`: smaller buffers cost more completions than
/// they save memory.
pub const MIN_BUFFER_SIZE: u32 = 512;
/// Largest `packet.buffer_bytes`: the gate holds a whole packet in memory.
pub const MAX_BUFFER_BYTES: usize = 16 << 20;
/// Shortest non-zero heartbeat or authorize interval: the shard timers' grain.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// Room for the envelope (ids, route, seq) around one client packet in a link
/// frame; `link.max_frame_bytes` must hold `packet.buffer_bytes` plus this.
pub const LINK_ENVELOPE_BYTES: usize = 1024;
/// Longest `nodes[].unix` path: `sun_path` holds 108 bytes with its NUL.
pub const MAX_UNIX_PATH: usize = 107;
/// Size prefix and header of a client packet (route and seq are added).
const PACKET_OVERHEAD: usize = 4 + 1;

impl Config {
    /// Checks every value and derives what the file leaves open: resolves
    /// `shards.cores` from `shards.count` (then sets `count` to 0), generates
    /// `gate.id` when it is empty, sets a `[limits]` burst left at 0 to twice
    /// its rate, and lower-cases `log.level` and `log.stack_level`. Idempotent:
    /// call it again after changing fields in code (e.g. from the command
    /// line). Errors name the key; [`Config::from_toml`] adds file and line.
    pub fn validate(&mut self) -> Result<(), ConfigError> {
        self.validate_gate()?;
        self.validate_shards()?;
        self.validate_packet()?;
        self.validate_tcp()?;
        self.validate_ws()?;
        self.validate_link()?;
        self.validate_mqtt()?;
        self.cluster.validate()?;
        self.validate_nodes()?;
        self.validate_session()?;
        self.validate_limits()?;
        self.validate_admin()?;
        self.log.validate()
    }

    fn validate_session(&mut self) -> Result<(), ConfigError> {
        if self.session.max_setting_bytes == 0 {
            return Err(ConfigError::rule(
                "session.max_setting_bytes",
                "must be at least 1 byte",
            ));
        }
        if self.shards.channel_capacity < 16 {
            return Err(ConfigError::rule(
                "shards.channel_capacity",
                format!("must be at least 16, got {}", self.shards.channel_capacity),
            ));
        }
        Ok(())
    }

    fn validate_gate(&mut self) -> Result<(), ConfigError> {
        if self.gate.name.trim().is_empty() {
            return Err(ConfigError::rule("gate.name", "must not be empty"));
        }
        if self.gate.id.is_empty() {
            self.gate.id = generate_gate_id();
            self.gate.id_generated = true;
        }
        let pid = &self.gate.pid;
        if !pid.as_os_str().is_empty()
            && (pid.file_name().is_none() || pid.to_string_lossy().ends_with('/'))
        {
            return Err(ConfigError::rule(
                "gate.pid",
                format!("must name a file, not a directory, got {pid:?} (\"\" for no pid file)"),
            ));
        }
        Ok(())
    }

    fn validate_shards(&mut self) -> Result<(), ConfigError> {
        let s = &mut self.shards;
        let available = available_cores();
        if s.count != 0 && !s.cores.is_empty() {
            return Err(ConfigError::rule(
                "shards.cores",
                format!(
                    "set either shards.count or shards.cores, not both (count = {}, cores = {:?})",
                    s.count, s.cores
                ),
            ));
        }
        if s.cores.is_empty() {
            if s.count > available.len() {
                return Err(ConfigError::rule(
                    "shards.count",
                    format!(
                        "{} shards asked but this process may run on {} cores ({})",
                        s.count,
                        available.len(),
                        list(&available)
                    ),
                ));
            }
            let n = if s.count == 0 {
                available.len()
            } else {
                s.count
            };
            s.cores = available[..n].to_vec();
            s.count = 0;
        } else {
            let mut seen = HashMap::new();
            for (i, &core) in s.cores.iter().enumerate() {
                if !available.contains(&core) {
                    return Err(ConfigError::rule(
                        "shards.cores",
                        format!(
                            "core {core} is not available to this process (available: {})",
                            list(&available)
                        ),
                    ));
                }
                if let Some(first) = seen.insert(core, i) {
                    return Err(ConfigError::rule(
                        "shards.cores",
                        format!("core {core} is listed twice (at {first} and {i})"),
                    ));
                }
            }
        }
        s.validate_knobs(&available)?;
        Ok(())
    }

    fn validate_packet(&self) -> Result<(), ConfigError> {
        let p = &self.packet;
        if ![1, 2, 4].contains(&p.route_bytes) {
            return Err(ConfigError::rule(
                "packet.route_bytes",
                format!("must be 1, 2 or 4, got {}", p.route_bytes),
            ));
        }
        if ![0, 1, 2, 4].contains(&p.seq_bytes) {
            return Err(ConfigError::rule(
                "packet.seq_bytes",
                format!("must be 0, 1, 2 or 4, got {}", p.seq_bytes),
            ));
        }
        if !(1..=MAX_BUFFER_BYTES).contains(&p.buffer_bytes) {
            return Err(ConfigError::rule(
                "packet.buffer_bytes",
                format!(
                    "must be from 1 to {MAX_BUFFER_BYTES} bytes (16MiB), got {}",
                    p.buffer_bytes
                ),
            ));
        }
        Ok(())
    }

    fn validate_tcp(&self) -> Result<(), ConfigError> {
        let t = &self.network.tcp;
        if t.backlog == 0 || t.backlog > i32::MAX as u32 {
            return Err(ConfigError::rule(
                "network.tcp.backlog",
                format!("must be from 1 to {}, got {}", i32::MAX, t.backlog),
            ));
        }
        if t.max_connections == 0 {
            return Err(ConfigError::rule(
                "network.tcp.max_connections",
                "must be at least 1, got 0",
            ));
        }
        check_interval("network.tcp.heartbeat.interval", t.heartbeat.interval)?;
        check_interval("network.tcp.authorize_timeout", t.authorize_timeout)?;
        let p = &self.packet;
        let largest =
            PACKET_OVERHEAD + p.route_bytes as usize + p.seq_bytes as usize + p.buffer_bytes;
        if t.max_outbound_bytes < largest {
            return Err(ConfigError::rule(
                "network.tcp.max_outbound_bytes",
                format!(
                    "must hold at least one largest packet ({largest} bytes with the [packet] \
                     settings), got {}",
                    t.max_outbound_bytes
                ),
            ));
        }
        Ok(())
    }

    fn validate_link(&self) -> Result<(), ConfigError> {
        let l = &self.link;
        if l.heartbeat_interval < MIN_INTERVAL {
            return Err(ConfigError::rule(
                "link.heartbeat_interval",
                format!(
                    "must be at least {MIN_INTERVAL:?} (links always ping), got {:?}",
                    l.heartbeat_interval
                ),
            ));
        }
        for (key, value) in [
            ("link.connect_timeout", l.connect_timeout),
            ("link.reconnect_min", l.reconnect_min),
            ("link.request_timeout", l.request_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::rule(key, "must be more than 0s"));
            }
        }
        if l.reconnect_min > l.reconnect_max {
            return Err(ConfigError::rule(
                "link.reconnect_min",
                format!(
                    "must not exceed link.reconnect_max ({:?}), got {:?}",
                    l.reconnect_max, l.reconnect_min
                ),
            ));
        }
        let least = self.packet.buffer_bytes + LINK_ENVELOPE_BYTES;
        if l.max_frame_bytes < least || l.max_frame_bytes > u32::MAX as usize {
            return Err(ConfigError::rule(
                "link.max_frame_bytes",
                format!(
                    "must be from packet.buffer_bytes + {LINK_ENVELOPE_BYTES} ({least}, one client \
                     packet and its envelope) to {} bytes, got {}",
                    u32::MAX,
                    l.max_frame_bytes
                ),
            ));
        }
        if l.request_timeout.as_millis() > u128::from(u32::MAX) {
            return Err(ConfigError::rule(
                "link.request_timeout",
                format!("must be below 49 days, got {:?}", l.request_timeout),
            ));
        }
        if l.max_queued_bytes < least {
            return Err(ConfigError::rule(
                "link.max_queued_bytes",
                format!(
                    "must hold at least one client packet and its envelope ({least} bytes), got {}",
                    l.max_queued_bytes
                ),
            ));
        }
        Ok(())
    }

    fn validate_nodes(&self) -> Result<(), ConfigError> {
        if self.nodes.is_empty() && self.cluster.registry.backend == RegistryBackend::None {
            return Err(ConfigError::rule(
                "nodes",
                "at least one [[nodes]] entry is needed (or a [cluster.registry] to discover nodes)",
            ));
        }
        let mut seen = HashMap::new();
        let mut paths = HashMap::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let key = format!("nodes[{i}].addr");
            if node.addr.port() == 0 {
                return Err(ConfigError::rule(
                    key,
                    format!("port 0 cannot be dialed, got {}", node.addr),
                ));
            }
            if let Some(path) = &node.unix {
                let len = path.as_os_str().len();
                if len == 0 || len > MAX_UNIX_PATH {
                    return Err(ConfigError::rule(
                        format!("nodes[{i}].unix"),
                        format!(
                            "a Unix socket path must be 1 to {MAX_UNIX_PATH} bytes, got {len} ({})",
                            path.display()
                        ),
                    ));
                }
                if let Some(first) = paths.insert(path, i) {
                    return Err(ConfigError::rule(
                        format!("nodes[{i}].unix"),
                        format!(
                            "{} is listed twice (also nodes[{first}].unix): one socket is one node",
                            path.display()
                        ),
                    ));
                }
            }
            if let Some(first) = seen.insert(node.addr, i) {
                return Err(ConfigError::rule(
                    key,
                    format!("{} is listed twice (also nodes[{first}].addr)", node.addr),
                ));
            }
        }
        Ok(())
    }
}

/// Zero (off) or at least [`MIN_INTERVAL`].
fn check_interval(key: &str, value: Duration) -> Result<(), ConfigError> {
    if !value.is_zero() && value < MIN_INTERVAL {
        return Err(ConfigError::rule(
            key,
            format!("must be 0s (off) or at least {MIN_INTERVAL:?}, got {value:?}"),
        ));
    }
    Ok(())
}

/// The cores this process may run on (its affinity mask), in order; falls
/// back to `0..available_parallelism` where the mask cannot be read.
pub(super) fn available_cores() -> Vec<usize> {
    match core_affinity::get_core_ids() {
        Some(ids) if !ids.is_empty() => {
            let mut cores: Vec<usize> = ids.into_iter().map(|c| c.id).collect();
            cores.sort_unstable();
            cores
        }
        _ => (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect(),
    }
}

/// `0-3, 6`-style rendering of a sorted core list.
fn list(cores: &[usize]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < cores.len() {
        let mut j = i;
        while j + 1 < cores.len() && cores[j + 1] == cores[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            cores[i].to_string()
        } else {
            format!("{}-{}", cores[i], cores[j])
        });
        i = j + 1;
    }
    out.join(", ")
}

/// `<hostname>-<pid>-<start time in unix nanos, hex>`: unique across a fleet
/// and across restarts on one host without a uuid crate.
fn generate_gate_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "gate".to_owned());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{host}-{}-{nanos:x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_lists() {
        assert_eq!(list(&[0, 1, 2, 3, 6]), "0-3, 6");
        assert_eq!(list(&[5]), "5");
        assert_eq!(list(&[1, 3, 4]), "1, 3-4");
        assert_eq!(list(&[]), "");
    }

    #[test]
    fn gate_ids_are_unique() {
        let a = generate_gate_id();
        std::thread::sleep(Duration::from_micros(1));
        let b = generate_gate_id();
        assert_ne!(a, b);
        assert!(a.contains(&format!("-{}-", std::process::id())), "{a}");
    }
}
