//! `[network.mqtt]`: the MQTT listener for mqant's clients, with its
//! defaults and rules.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{units, Config, ConfigError};

/// `[network.mqtt] enabled`: off until asked for; due's clients need no MQTT port.
pub const DEFAULT_MQTT_ENABLED: bool = false;
/// `[network.mqtt] addr`: mqant's gate port, on every IPv4 interface.
pub const DEFAULT_MQTT_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 3563);
/// `[network.mqtt] max_packet_bytes`: mqant's `MaxPackSize` (remaining length).
pub const DEFAULT_MAX_PACKET_BYTES: usize = 65535;
/// `[network.mqtt] max_inflight`: mqant's `ConcurrentTasks`.
pub const DEFAULT_MAX_INFLIGHT: usize = 20;
/// `[network.mqtt] request_timeout`: mqant's `RPCExpired`.
pub const DEFAULT_MQTT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// `[network.mqtt] connect_timeout`: mqant's `OverTime` for the CONNECT packet.
pub const DEFAULT_CONNECT_TIMEOUT_MQTT: Duration = Duration::from_secs(10);
/// The largest remaining length MQTT can express.
pub const MQTT_MAX_REMAINING: usize = 268_435_455;

/// `[network.mqtt]`: MQTT 3.1 / 3.1.1 clients, mqant's way (requests and
/// pushes by topic; see docs/mqtt.md). Connections count against
/// `network.tcp.max_connections` and follow `[network.tcp]`'s
/// `authorize_timeout`, `max_outbound_bytes` and backlog; keep-alive comes
/// from each client's CONNECT.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// Listen for MQTT clients at all.
    pub enabled: bool,
    /// Listen address.
    #[serde(deserialize_with = "units::addr")]
    pub addr: SocketAddr,
    /// Largest remaining length of one packet a client may send.
    #[serde(deserialize_with = "units::size")]
    pub max_packet_bytes: usize,
    /// Requests of one connection waiting for their replies, at most.
    pub max_inflight: usize,
    /// How long a request waits for its node's reply.
    #[serde(deserialize_with = "units::duration")]
    pub request_timeout: Duration,
    /// From accept until CONNECT (and the TLS handshake, with TLS).
    #[serde(deserialize_with = "units::duration")]
    pub connect_timeout: Duration,
    /// PEM certificate chain; with `key_file`, clients must speak TLS.
    pub cert_file: PathBuf,
    /// PEM private key for `cert_file`.
    pub key_file: PathBuf,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            enabled: DEFAULT_MQTT_ENABLED,
            addr: DEFAULT_MQTT_ADDR,
            max_packet_bytes: DEFAULT_MAX_PACKET_BYTES,
            max_inflight: DEFAULT_MAX_INFLIGHT,
            request_timeout: DEFAULT_MQTT_REQUEST_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT_MQTT,
            cert_file: PathBuf::new(),
            key_file: PathBuf::new(),
        }
    }
}

impl MqttConfig {
    /// `(cert_file, key_file)` when MQTT over TLS is configured.
    #[must_use]
    pub fn tls_files(&self) -> Option<(&Path, &Path)> {
        super::ws::tls_files(&self.cert_file, &self.key_file)
    }
}

impl Config {
    /// The `[network.mqtt]` rules.
    pub(super) fn validate_mqtt(&self) -> Result<(), ConfigError> {
        let m = &self.network.mqtt;
        super::ws::check_pair("network.mqtt", &m.cert_file, &m.key_file)?;
        super::ws::check_timeout("network.mqtt.connect_timeout", m.connect_timeout)?;
        if !(2..=MQTT_MAX_REMAINING).contains(&m.max_packet_bytes) {
            return Err(ConfigError::rule(
                "network.mqtt.max_packet_bytes",
                format!(
                    "must be from 2 to {MQTT_MAX_REMAINING} bytes (MQTT's largest packet), got {}",
                    m.max_packet_bytes
                ),
            ));
        }
        if m.max_inflight == 0 || m.max_inflight > 65535 {
            return Err(ConfigError::rule(
                "network.mqtt.max_inflight",
                format!("must be from 1 to 65535, got {}", m.max_inflight),
            ));
        }
        if m.request_timeout.is_zero() || m.request_timeout.as_millis() > u128::from(u32::MAX) {
            return Err(ConfigError::rule(
                "network.mqtt.request_timeout",
                format!(
                    "must be more than 0s and below 49 days, got {:?}",
                    m.request_timeout
                ),
            ));
        }
        if m.enabled && m.addr.port() != 0 {
            let n = &self.network;
            let others = [
                ("network.tcp.addr", true, n.tcp.addr),
                ("network.ws.addr", n.ws.enabled, n.ws.addr),
            ];
            super::ws::own_port("network.mqtt.addr", m.addr, &others, "MQTT")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        Config::from_toml(text, "etc/ringgate.toml")
            .expect_err("should be refused")
            .to_string()
    }

    #[test]
    fn defaults_are_mqant_s() {
        let m = Config::default().network.mqtt;
        assert!(!m.enabled);
        assert_eq!(m.addr.port(), 3563);
        assert_eq!((m.max_packet_bytes, m.max_inflight), (65535, 20));
        assert_eq!(m.request_timeout, Duration::from_secs(10));
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = error("[network.mqtt]\nenabled = true\naddr = \":3553\"\n");
        assert!(
            e.contains("network.mqtt.addr") && e.contains("network.tcp.addr"),
            "{e}"
        );
        let e = error("[network.mqtt]\nmax_packet_bytes = 1\n");
        assert!(e.contains("network.mqtt.max_packet_bytes"), "{e}");
        let e = error("[network.mqtt]\nmax_inflight = 0\n");
        assert!(e.contains("network.mqtt.max_inflight"), "{e}");
        let e = error("[network.mqtt]\nrequest_timeout = \"0s\"\n");
        assert!(e.contains("network.mqtt.request_timeout"), "{e}");
        let e = error("[network.mqtt]\ncert_file = \"a.pem\"\n");
        assert!(e.contains("network.mqtt.cert_file"), "{e}");
    }
}
