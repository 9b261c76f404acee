//! `GET /api/config`: the effective configuration (after defaults and
//! `validate`) as JSON, shaped like `etc/ringgate.toml`, with durations as
//! `"1.5s"`-style strings.
//!
//! Secrets stay out: `admin.token` shows only whether one is set, the
//! password of a Redis URL is masked, and TLS key files are named, never
//! read. Every struct is destructured without `..`, so a new config field
//! does not compile until this view decides how to show it.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::codec::{ByteOrder, PacketOptions};
use crate::config::{
    AdminConfig, ClusterConfig, Config, GateConfig, HeartbeatConfig, LimitAction, LimitsConfig,
    LinkConfig, LocatorConfig, LogConfig, MqttConfig, NetworkConfig, NodeConfig, RegistryConfig,
    SessionConfig, ShardsConfig, TcpConfig, WsConfig,
};

/// The configuration in force, without secrets.
pub(super) fn effective(cfg: &Config) -> Value {
    let Config {
        gate,
        shards,
        network,
        packet,
        link,
        session,
        limits,
        nodes,
        cluster,
        log,
        admin,
    } = cfg;
    let GateConfig {
        id,
        id_generated: _,
        name,
        shutdown_max_wait,
        pid,
    } = gate;
    let LogConfig {
        level,
        format,
        terminals,
        stack_level,
        file,
    } = log;
    let crate::config::LogFileConfig {
        path,
        format: file_format,
        max_size,
        max_age,
        rotation,
        compress,
    } = file;
    let AdminConfig {
        enabled,
        addr,
        token,
    } = admin;
    json!({
        "gate": {
            "id": id, "name": name, "shutdown_max_wait": dur(*shutdown_max_wait),
            "pid": pid.display().to_string(),
        },
        "shards": shards_json(shards),
        "network": network_json(network),
        "packet": packet_json(packet),
        "link": link_json(link),
        "session": session_json(session),
        "limits": limits_json(limits),
        "nodes": nodes.iter().map(|NodeConfig { addr, unix }| match unix {
            None => json!({ "addr": addr.to_string() }),
            Some(p) => json!({ "addr": addr.to_string(), "unix": p.display().to_string() }),
        }).collect::<Vec<_>>(),
        "cluster": cluster_json(cluster),
        "log": {
            "level": level,
            "format": choice(crate::config::LogFormat::CHOICES, *format),
            "terminals": terminals.iter().map(|t| choice(crate::config::Terminal::CHOICES, *t)).collect::<Vec<_>>(),
            "stack_level": stack_level,
            "file": {
                "path": path.display().to_string(),
                "format": choice(crate::config::LogFormat::CHOICES, *file_format),
                "max_size": max_size, "max_age": dur(*max_age),
                "rotation": choice(crate::config::Rotation::CHOICES, *rotation),
                "compress": compress,
            },
        },
        "admin": { "enabled": enabled, "addr": addr.to_string(), "token_set": !token.is_empty() },
    })
}

fn shards_json(s: &ShardsConfig) -> Value {
    let ShardsConfig {
        count,
        cores,
        ring_entries,
        buffer_count,
        buffer_size,
        channel_capacity,
        busy_poll,
        batch_wait,
        control_cores,
        overrides,
    } = s;
    let overrides: Vec<Value> = overrides
        .iter()
        .map(|o| {
            json!({
                "shard": o.shard, "core": o.core, "ring_entries": o.ring_entries,
                "buffer_count": o.buffer_count, "buffer_size": o.buffer_size,
                "busy_poll": o.busy_poll.map(dur), "batch_wait": o.batch_wait.map(dur),
            })
        })
        .collect();
    json!({
        "count": count, "cores": cores, "ring_entries": ring_entries,
        "buffer_count": buffer_count, "buffer_size": buffer_size,
        "channel_capacity": channel_capacity, "busy_poll": dur(*busy_poll),
        "batch_wait": dur(*batch_wait), "control_cores": control_cores,
        "overrides": overrides,
    })
}

fn network_json(n: &NetworkConfig) -> Value {
    let NetworkConfig { tcp, ws, mqtt } = n;
    let TcpConfig {
        addr,
        backlog,
        max_connections,
        heartbeat,
        authorize_timeout,
        max_outbound_bytes,
        cert_file,
        key_file,
        tls_handshake_timeout,
    } = tcp;
    let HeartbeatConfig {
        interval,
        mechanism,
    } = heartbeat;
    let tcp = json!({
        "addr": addr.to_string(), "backlog": backlog, "max_connections": max_connections,
        "heartbeat": {
            "interval": dur(*interval),
            "mechanism": choice(crate::config::HeartbeatMechanism::CHOICES, *mechanism),
        },
        "authorize_timeout": dur(*authorize_timeout), "max_outbound_bytes": max_outbound_bytes,
        "cert_file": path(cert_file), "key_file": path(key_file),
        "tls_handshake_timeout": dur(*tls_handshake_timeout),
    });
    json!({ "tcp": tcp, "ws": ws_json(ws), "mqtt": mqtt_json(mqtt) })
}

fn ws_json(w: &WsConfig) -> Value {
    let WsConfig {
        enabled,
        addr,
        path: upgrade_path,
        origins,
        handshake_timeout,
        trust_proxy,
        mqtt_path,
        cert_file,
        key_file,
    } = w;
    json!({
        "enabled": enabled, "addr": addr.to_string(), "path": upgrade_path,
        "mqtt_path": mqtt_path, "origins": origins,
        "handshake_timeout": dur(*handshake_timeout), "trust_proxy": trust_proxy,
        "cert_file": path(cert_file), "key_file": path(key_file),
    })
}

fn mqtt_json(m: &MqttConfig) -> Value {
    let MqttConfig {
        enabled,
        addr,
        max_packet_bytes,
        max_inflight,
        request_timeout,
        connect_timeout,
        cert_file,
        key_file,
    } = m;
    json!({
        "enabled": enabled, "addr": addr.to_string(), "max_packet_bytes": max_packet_bytes,
        "max_inflight": max_inflight, "request_timeout": dur(*request_timeout),
        "connect_timeout": dur(*connect_timeout),
        "cert_file": path(cert_file), "key_file": path(key_file),
    })
}

fn packet_json(p: &PacketOptions) -> Value {
    let PacketOptions {
        byte_order,
        route_bytes,
        seq_bytes,
        buffer_bytes,
        heartbeat_time,
    } = p;
    let order = match byte_order {
        ByteOrder::Big => "big",
        ByteOrder::Little => "little",
    };
    json!({
        "byte_order": order, "route_bytes": route_bytes, "seq_bytes": seq_bytes,
        "buffer_bytes": buffer_bytes, "heartbeat_time": heartbeat_time,
    })
}

fn link_json(l: &LinkConfig) -> Value {
    let LinkConfig {
        heartbeat_interval,
        connect_timeout,
        reconnect_min,
        reconnect_max,
        max_frame_bytes,
        request_timeout,
        hang_timeout,
        max_queued_bytes,
    } = l;
    json!({
        "heartbeat_interval": dur(*heartbeat_interval), "connect_timeout": dur(*connect_timeout),
        "reconnect_min": dur(*reconnect_min), "reconnect_max": dur(*reconnect_max),
        "max_frame_bytes": max_frame_bytes, "request_timeout": dur(*request_timeout),
        "hang_timeout": dur(*hang_timeout), "max_queued_bytes": max_queued_bytes,
    })
}

fn session_json(s: &SessionConfig) -> Value {
    let SessionConfig {
        rebind,
        deliver_settings,
        max_settings,
        max_setting_bytes,
    } = s;
    json!({
        "rebind": choice(crate::config::Rebind::CHOICES, *rebind),
        "deliver_settings": deliver_settings, "max_settings": max_settings,
        "max_setting_bytes": max_setting_bytes,
    })
}

fn limits_json(l: &LimitsConfig) -> Value {
    let LimitsConfig {
        requests_per_sec,
        requests_burst,
        bytes_per_sec,
        bytes_burst,
        action,
        max_inflight,
        max_connections_per_ip,
        accepts_per_sec,
        max_handshakes,
    } = l;
    json!({
        "requests_per_sec": requests_per_sec, "requests_burst": requests_burst,
        "bytes_per_sec": bytes_per_sec, "bytes_burst": bytes_burst,
        "action": choice(LimitAction::CHOICES, *action),
        "max_inflight": max_inflight, "max_connections_per_ip": max_connections_per_ip,
        "accepts_per_sec": accepts_per_sec, "max_handshakes": max_handshakes,
    })
}

fn cluster_json(c: &ClusterConfig) -> Value {
    let ClusterConfig {
        dispatch,
        registry,
        locator,
    } = c;
    let RegistryConfig {
        backend,
        endpoints,
        namespace,
        ttl,
        timeout,
    } = registry;
    let registry = json!({
        "backend": choice(crate::config::RegistryBackend::CHOICES, *backend),
        "endpoints": endpoints, "namespace": namespace, "ttl": dur(*ttl), "timeout": dur(*timeout),
    });
    let LocatorConfig {
        backend,
        url,
        prefix,
        timeout,
        session_ttl,
    } = locator;
    let locator = json!({
        "backend": choice(crate::config::LocatorBackend::CHOICES, *backend),
        "url": mask_password(url), "prefix": prefix, "timeout": dur(*timeout),
        "session_ttl": dur(*session_ttl),
    });
    json!({
        "dispatch": choice(crate::config::Dispatch::CHOICES, *dispatch),
        "registry": registry,
        "locator": locator,
    })
}

/// The name a value has in the file.
fn choice<T: PartialEq + Copy>(choices: &'static [(&'static str, T)], v: T) -> &'static str {
    choices
        .iter()
        .find(|(_, c)| *c == v)
        .map_or("?", |(name, _)| name)
}

/// A duration as the file writes it: `"0s"`, `"250ms"`, `"10s"`, `"1.5s"`.
fn dur(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    if d.subsec_nanos() == 0 {
        return format!("{}s", d.as_secs());
    }
    if d.as_nanos() % 1_000_000 == 0 && d < Duration::from_secs(1) {
        return format!("{}ms", d.as_millis());
    }
    format!("{}s", d.as_secs_f64())
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// `redis://user:secret@host/0` → `redis://user:***@host/0`.
fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((auth, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => format!("{scheme}://***@{host}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_written() {
        assert_eq!(dur(Duration::ZERO), "0s");
        assert_eq!(dur(Duration::from_secs(10)), "10s");
        assert_eq!(dur(Duration::from_millis(250)), "250ms");
        assert_eq!(dur(Duration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn secrets_stay_out() {
        let mut cfg = Config::default();
        cfg.admin.token = "hunter2".into();
        cfg.cluster.locator.url = "redis://app:pw@10.0.0.1:6379/0".into();
        let v = effective(&cfg);
        let text = v.to_string();
        assert!(
            !text.contains("hunter2") && !text.contains(":pw@"),
            "{text}"
        );
        assert_eq!(v["admin"]["token_set"], true);
        assert_eq!(
            v["cluster"]["locator"]["url"],
            "redis://app:***@10.0.0.1:6379/0"
        );
        assert_eq!(v["network"]["tcp"]["heartbeat"]["interval"], "10s");
        assert_eq!(v["cluster"]["dispatch"], "rr");
        assert_eq!(v["log"]["format"], "text");
        assert_eq!(v["limits"]["action"], "reply");
        assert_eq!(v["limits"]["max_inflight"], 256);
    }
}
