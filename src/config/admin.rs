//! `[admin]`: the operator's port (Prometheus `/metrics`, the JSON API, the
//! dashboard), with its defaults and rules.
//!
//! The admin port can kick users, broadcast to every client and drain the
//! gate, so it listens on loopback by default, and validation refuses to
//! expose it on any other address unless a bearer token guards it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::Deserialize;

use super::{units, Config, ConfigError};

/// `[admin] enabled`: on, so `/metrics` and the dashboard work out of the box
/// (on loopback only, see [`DEFAULT_ADMIN_ADDR`]).
pub const DEFAULT_ADMIN_ENABLED: bool = true;
/// `[admin] addr`: loopback, the port beside the client ports' 35xx; reach
/// it from elsewhere through an SSH tunnel or a proxy, or set a token.
pub const DEFAULT_ADMIN_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 3580);

/// `[admin]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Serve the admin port at all.
    pub enabled: bool,
    /// Listen address of the admin HTTP server.
    #[serde(deserialize_with = "units::addr")]
    pub addr: SocketAddr,
    /// Bearer token every request must carry (`Authorization: Bearer
    /// <token>`); empty: no check (loopback `addr` only).
    pub token: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: DEFAULT_ADMIN_ENABLED,
            addr: DEFAULT_ADMIN_ADDR,
            token: String::new(),
        }
    }
}

impl Config {
    /// The `[admin]` rules: a non-loopback address needs a token, and the
    /// port must not be one of the client listeners'.
    pub(super) fn validate_admin(&self) -> Result<(), ConfigError> {
        let a = &self.admin;
        if !a.enabled {
            return Ok(());
        }
        if a.token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ConfigError::rule(
                "admin.token",
                "must not contain spaces or control characters (it travels in an HTTP header)",
            ));
        }
        if !a.addr.ip().is_loopback() && a.token.is_empty() {
            return Err(ConfigError::rule(
                "admin.addr",
                format!(
                    "{} is reachable from other machines, and the admin port can kick users, \
                     broadcast and drain the gate: set admin.token, or listen on loopback \
                     (127.0.0.1)",
                    a.addr
                ),
            ));
        }
        if a.addr.port() == 0 {
            return Ok(());
        }
        let n = &self.network;
        let others = [
            ("network.tcp.addr", true, n.tcp.addr),
            ("network.ws.addr", n.ws.enabled, n.ws.addr),
            ("network.mqtt.addr", n.mqtt.enabled, n.mqtt.addr),
        ];
        super::ws::own_port("admin.addr", a.addr, &others, "the admin port")
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
    fn defaults_listen_on_loopback_without_a_token() {
        let c = Config::from_toml("", "x").unwrap();
        assert!(c.admin.enabled);
        assert_eq!(c.admin.addr, "127.0.0.1:3580".parse().unwrap());
        assert!(c.admin.token.is_empty());
    }

    #[test]
    fn a_public_address_needs_a_token() {
        let e = error("[admin]\naddr = \"0.0.0.0:3580\"\n");
        assert!(e.contains("admin.addr") && e.contains("admin.token"), "{e}");
        assert!(e.contains(":2:"), "points at the line: {e}");
        let ok = "[admin]\naddr = \"0.0.0.0:3580\"\ntoken = \"s3cret\"\n";
        Config::from_toml(ok, "x").expect("a token makes it acceptable");
        let off = "[admin]\nenabled = false\naddr = \"0.0.0.0:3580\"\n";
        Config::from_toml(off, "x").expect("a disabled port is not checked");
    }

    #[test]
    fn the_port_must_be_its_own() {
        let e = error("[admin]\naddr = \"127.0.0.1:3553\"\n");
        assert!(e.contains("overlaps network.tcp.addr"), "{e}");
        let e = error("[admin]\ntoken = \"a b\"\n");
        assert!(e.contains("admin.token"), "{e}");
    }
}
