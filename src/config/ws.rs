//! `[network.ws]` (the WebSocket listener) and the TLS keys shared by both
//! transports (`cert_file`, `key_file` in `[network.tcp]` and
//! `[network.ws]`), with their defaults and rules.
//!
//! Validation only checks the shape (both files or neither, timeouts in
//! range, no port clash); reading and parsing the PEM files is
//! [`crate::tls::load_server_config`]'s job at gate start, so that a bad
//! certificate fails there with a message naming the file.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::validate::MIN_INTERVAL;
use super::{units, Config, ConfigError};

/// `[network.ws] enabled`: the shipped gate serves browsers out of the box.
pub const DEFAULT_WS_ENABLED: bool = true;
/// `[network.ws] addr`: the port beside TCP's 3553 on every IPv4 interface.
pub const DEFAULT_WS_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 3554);
/// `[network.ws] path`: due's default upgrade path.
pub const DEFAULT_WS_PATH: &str = "/";
/// `[network.ws] mqtt_path`: where mqant's JavaScript and Cocos clients connect.
pub const DEFAULT_MQTT_PATH: &str = "/mqtt";
/// `[network.ws] origins`: due's default, every origin.
pub const DEFAULT_WS_ORIGINS: &[&str] = &["*"];
/// `[network.ws] handshake_timeout` and `[network.tcp] tls_handshake_timeout`:
/// a real client finishes in a few round trips; a socket that sends nothing
/// is closed well before it matters.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// `[network.ws] trust_proxy`: off, so a client cannot choose its own address.
pub const DEFAULT_TRUST_PROXY: bool = false;

/// `[network.ws]`, as due's `[network.ws.server]`.
///
/// Connections on this port count against `network.tcp.max_connections`
/// (one limit for the gate), and follow `[network.tcp]`'s heartbeat,
/// `authorize_timeout`, `max_outbound_bytes` and backlog. Each binary
/// message carries one client packet (`[packet]`), so the largest message
/// is the largest packet.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WsConfig {
    /// Listen for WebSocket clients at all.
    pub enabled: bool,
    /// Listen address (`":3554"` means all interfaces).
    #[serde(deserialize_with = "units::addr")]
    pub addr: SocketAddr,
    /// The request path upgrades are accepted on (query strings ignored); others get 404.
    pub path: String,
    /// Allowed `Origin` values: `["*"]` any, `[]` none, else exact matches. A
    /// request without `Origin` (not a browser) counts as the origin `""`.
    pub origins: Vec<String>,
    /// From accept until the upgrade is answered (TLS included, for wss).
    #[serde(deserialize_with = "units::duration")]
    pub handshake_timeout: Duration,
    /// Take the client's address from `X-Forwarded-For` / `X-Real-IP`.
    pub trust_proxy: bool,
    /// The extra path MQTT clients upgrade on (when `[network.mqtt]` is
    /// enabled); on `path` they are told apart by their subprotocol.
    pub mqtt_path: String,
    /// PEM certificate chain; with `key_file`, serves wss. Empty: plain ws.
    pub cert_file: PathBuf,
    /// PEM private key for `cert_file`. Empty: plain ws.
    pub key_file: PathBuf,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            enabled: DEFAULT_WS_ENABLED,
            addr: DEFAULT_WS_ADDR,
            path: DEFAULT_WS_PATH.to_owned(),
            origins: DEFAULT_WS_ORIGINS.iter().map(|&o| o.to_owned()).collect(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            trust_proxy: DEFAULT_TRUST_PROXY,
            mqtt_path: DEFAULT_MQTT_PATH.to_owned(),
            cert_file: PathBuf::new(),
            key_file: PathBuf::new(),
        }
    }
}

impl WsConfig {
    /// `(cert_file, key_file)` when wss is configured (after `validate`, both
    /// are set or neither is).
    #[must_use]
    pub fn tls_files(&self) -> Option<(&Path, &Path)> {
        tls_files(&self.cert_file, &self.key_file)
    }
}

impl super::TcpConfig {
    /// `(cert_file, key_file)` when TLS is configured for TCP clients.
    #[must_use]
    pub fn tls_files(&self) -> Option<(&Path, &Path)> {
        tls_files(&self.cert_file, &self.key_file)
    }
}

pub(super) fn tls_files<'a>(cert: &'a Path, key: &'a Path) -> Option<(&'a Path, &'a Path)> {
    (!cert.as_os_str().is_empty() && !key.as_os_str().is_empty()).then_some((cert, key))
}

impl Config {
    /// The `[network.ws]` rules and the TLS keys of both transports.
    pub(super) fn validate_ws(&self) -> Result<(), ConfigError> {
        let t = &self.network.tcp;
        check_pair("network.tcp", &t.cert_file, &t.key_file)?;
        check_timeout("network.tcp.tls_handshake_timeout", t.tls_handshake_timeout)?;
        let w = &self.network.ws;
        check_pair("network.ws", &w.cert_file, &w.key_file)?;
        check_timeout("network.ws.handshake_timeout", w.handshake_timeout)?;
        if !w.path.starts_with('/')
            || w.path.contains(['?', '#'])
            || w.path.contains(char::is_whitespace)
        {
            return Err(ConfigError::rule(
                "network.ws.path",
                format!(
                    "must start with \"/\" and hold no '?', '#' or spaces, got {:?}",
                    w.path
                ),
            ));
        }
        if !w.mqtt_path.starts_with('/')
            || w.mqtt_path.contains(['?', '#'])
            || w.mqtt_path.contains(char::is_whitespace)
        {
            return Err(ConfigError::rule(
                "network.ws.mqtt_path",
                format!(
                    "must start with \"/\" and hold no '?', '#' or spaces, got {:?}",
                    w.mqtt_path
                ),
            ));
        }
        if let Some(bad) = w.origins.iter().find(|o| o.trim() != o.as_str()) {
            return Err(ConfigError::rule(
                "network.ws.origins",
                format!("origins are matched exactly; {bad:?} has surrounding spaces"),
            ));
        }
        if w.enabled && w.addr.port() != 0 && clash(w.addr, t.addr) {
            return Err(ConfigError::rule(
                "network.ws.addr",
                format!(
                    "{} overlaps network.tcp.addr ({}): give WebSocket its own port",
                    w.addr, t.addr
                ),
            ));
        }
        Ok(())
    }
}

/// Both files or neither. The error names the key that is set (so that
/// the loader points at its line).
pub(super) fn check_pair(section: &str, cert: &Path, key: &Path) -> Result<(), ConfigError> {
    match (cert.as_os_str().is_empty(), key.as_os_str().is_empty()) {
        (true, false) => Err(ConfigError::rule(
            format!("{section}.key_file"),
            format!(
                "set ({}) but {section}.cert_file is empty: set both for TLS, or neither",
                key.display()
            ),
        )),
        (false, true) => Err(ConfigError::rule(
            format!("{section}.cert_file"),
            format!(
                "set ({}) but {section}.key_file is empty: set both for TLS, or neither",
                cert.display()
            ),
        )),
        _ => Ok(()),
    }
}

/// Handshake timeouts always apply: at least [`MIN_INTERVAL`].
pub(super) fn check_timeout(key: &str, value: Duration) -> Result<(), ConfigError> {
    if value < MIN_INTERVAL {
        return Err(ConfigError::rule(
            key,
            format!("must be at least {MIN_INTERVAL:?} (a handshake cannot wait forever), got {value:?}"),
        ));
    }
    Ok(())
}

/// Refuses `addr` (config key `key`) if it overlaps one of the enabled
/// `others` (key, enabled, address); `what` names the listener in the
/// advice ("give {what} its own port").
pub(super) fn own_port(
    key: &str,
    addr: SocketAddr,
    others: &[(&str, bool, SocketAddr)],
    what: &str,
) -> Result<(), ConfigError> {
    for &(other_key, on, other) in others {
        if on && clash(addr, other) {
            return Err(ConfigError::rule(
                key,
                format!("{addr} overlaps {other_key} ({other}): give {what} its own port"),
            ));
        }
    }
    Ok(())
}

/// Two listeners on the same port whose addresses overlap (equal, or one is
/// the unspecified address of the same family or of IPv6, which may cover
/// IPv4 too).
pub(super) fn clash(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() != b.port() {
        return false;
    }
    let (x, y) = (a.ip(), b.ip());
    x == y
        || (x.is_unspecified() && (x.is_ipv6() || y.is_ipv4()))
        || (y.is_unspecified() && (y.is_ipv6() || x.is_ipv4()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, "etc/ringgate.toml")
    }

    fn error(text: &str) -> String {
        parse(text).expect_err("should be refused").to_string()
    }

    #[test]
    fn defaults() {
        let c = parse(super::super::DEFAULT_TOML).unwrap();
        let w = &c.network.ws;
        assert!(w.enabled);
        assert_eq!(w.addr, "0.0.0.0:3554".parse().unwrap());
        assert_eq!(w.path, "/");
        assert_eq!(w.origins, ["*"]);
        assert_eq!(w.handshake_timeout, Duration::from_secs(10));
        assert!(!w.trust_proxy);
        assert_eq!(w.tls_files(), None);
        let t = &c.network.tcp;
        assert_eq!(t.tls_files(), None);
        assert_eq!(t.tls_handshake_timeout, Duration::from_secs(10));
    }

    #[test]
    fn values_are_read() {
        let c = parse(
            r#"
            [network.tcp]
            cert_file = "etc/cert.pem"
            key_file = "etc/key.pem"
            tls_handshake_timeout = "3s"
            [network.ws]
            enabled = false
            addr = "127.0.0.1:8080"
            path = "/game"
            origins = ["https://game.example", ""]
            handshake_timeout = "500ms"
            trust_proxy = true
            cert_file = "a.pem"
            key_file = "b.pem"
            "#,
        )
        .unwrap();
        let t = &c.network.tcp;
        assert_eq!(
            t.tls_files(),
            Some((Path::new("etc/cert.pem"), Path::new("etc/key.pem")))
        );
        assert_eq!(t.tls_handshake_timeout, Duration::from_secs(3));
        let w = &c.network.ws;
        assert!(!w.enabled);
        assert_eq!(w.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(w.path, "/game");
        assert_eq!(w.origins, ["https://game.example", ""]);
        assert_eq!(w.handshake_timeout, Duration::from_millis(500));
        assert!(w.trust_proxy);
        assert_eq!(
            w.tls_files(),
            Some((Path::new("a.pem"), Path::new("b.pem")))
        );
    }

    #[test]
    fn cert_without_key_is_refused() {
        let e = error("[network.ws]\ncert_file = \"c.pem\"\n");
        assert!(
            e.starts_with("etc/ringgate.toml:2: network.ws.cert_file: set (c.pem)"),
            "{e}"
        );
        assert!(e.contains("network.ws.key_file is empty"), "{e}");
        let e = error("[network.tcp]\naddr = \":3553\"\nkey_file = \"k.pem\"\n");
        assert!(
            e.starts_with("etc/ringgate.toml:3: network.tcp.key_file: set (k.pem)"),
            "{e}"
        );
        assert!(e.contains("network.tcp.cert_file is empty"), "{e}");
    }

    #[test]
    fn handshake_timeouts_must_apply() {
        let e = error("[network.ws]\nhandshake_timeout = \"0s\"\n");
        assert!(e.contains("network.ws.handshake_timeout"), "{e}");
        let e = error("[network.tcp]\ntls_handshake_timeout = \"1ms\"\n");
        assert!(e.contains("network.tcp.tls_handshake_timeout"), "{e}");
    }

    #[test]
    fn bad_paths_are_refused() {
        for path in ["", "game", "/a?b", "/a b", "/#x"] {
            let e = error(&format!("[network.ws]\npath = {path:?}\n"));
            assert!(e.contains("network.ws.path"), "{path:?}: {e}");
        }
        assert_eq!(
            parse("[network.ws]\npath = \"/ws/v1\"\n")
                .unwrap()
                .network
                .ws
                .path,
            "/ws/v1"
        );
    }

    #[test]
    fn origins_with_spaces_are_refused() {
        let e = error("[network.ws]\norigins = [\" https://a\"]\n");
        assert!(e.contains("network.ws.origins"), "{e}");
        let c = parse("[network.ws]\norigins = []\n").unwrap();
        assert!(c.network.ws.origins.is_empty());
    }

    #[test]
    fn port_clash_with_tcp() {
        let e = error("[network.ws]\naddr = \":3553\"\n");
        assert!(e.contains("network.ws.addr"), "{e}");
        assert!(e.contains("network.tcp.addr"), "{e}");
        // Different IPs on one port, a disabled listener, or port 0 are fine.
        parse(
            "[network.tcp]\naddr = \"127.0.0.1:4000\"\n[network.ws]\naddr = \"127.0.0.2:4000\"\n",
        )
        .unwrap();
        parse("[network.ws]\nenabled = false\naddr = \":3553\"\n").unwrap();
        parse("[network.tcp]\naddr = \"127.0.0.1:0\"\n[network.ws]\naddr = \"127.0.0.1:0\"\n")
            .unwrap();
        let e =
            error("[network.tcp]\naddr = \"[::]:4000\"\n[network.ws]\naddr = \"127.0.0.1:4000\"\n");
        assert!(e.contains("overlaps"), "{e}");
    }

    #[test]
    fn unknown_ws_key_is_named() {
        let e = error("[network.ws]\nmax_conn_num = 5\n");
        assert!(e.contains("max_conn_num"), "{e}");
    }
}
