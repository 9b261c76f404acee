//! What a reload would change, worked out without touching the gate: the
//! keys that differ between two configurations, and the configuration in
//! force after a reload. Pure (no I/O, no clock).
//!
//! Keys are compared on the view `GET /api/config` shows
//! (`crate::admin`'s `config_view`), which names every key as the file
//! does and is written without `..`: a new config field does not compile
//! until the view shows it, so no key can slip past a reload unnoticed.
//! Arrays (`nodes`, `network.ws.origins`) are compared whole. Secrets stay
//! out of the view; [`changes`] compares them itself and shows them masked.
//!
//! [`merge_live`] is the one place that says which keys a reload applies.

use serde::Serialize;
use serde_json::Value;

use crate::config::Config;

/// What a masked secret shows.
const MASKED: &str = "***";

/// One key whose value differs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Change {
    /// Dotted key path as the file writes it: `network.tcp.addr`, `nodes`.
    pub key: String,
    /// The value in force before the reload (as `GET /api/config` shows it).
    pub old: Value,
    /// The value in the file.
    pub new: Value,
    /// Why a change that can be made live was not (it is listed with the
    /// ones that need a restart).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Change {
    fn new(key: String, old: Value, new: Value) -> Change {
        Change {
            key,
            old,
            new,
            note: None,
        }
    }
}

/// What a reload of `file` into a gate running `running` does.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The configuration in force afterwards: `running` with the live keys
    /// taken from the file.
    pub in_force: Config,
    /// Keys whose new value takes effect now.
    pub applied: Vec<Change>,
    /// Keys that differ in the file but keep their running value until the
    /// gate restarts.
    pub needs_restart: Vec<Change>,
}

/// Plans the reload of `file` (loaded and validated) into a gate that runs
/// `running`. A `gate.id` the file leaves empty keeps the running one
/// (validate generates a fresh one on every load).
pub fn plan(running: &Config, file: &Config) -> Plan {
    let mut file = file.clone();
    if file.gate.id_generated {
        file.gate.id.clone_from(&running.gate.id);
        file.gate.id_generated = running.gate.id_generated;
    }
    let in_force = merge_live(running, &file);
    Plan {
        applied: changes(running, &in_force),
        needs_restart: changes(&in_force, &file),
        in_force,
    }
}

/// `running` with every key a running gate can change taken from `file`:
/// `[log] level`, the static node list `[[nodes]]`, `[limits]` (all of it:
/// see docs/limits.md for what open connections get), and, when a
/// WebSocket listener is served, its upgrade rules (`[network.ws]`
/// `origins`, `path`, `trust_proxy`, `mqtt_path`). Everything else stays as
/// it runs.
///
/// A key made live here must also reach the gate: the log filter and the
/// node table in `crate::reload`, a shard's value through
/// [`crate::shard::live::LiveSettings`].
pub fn merge_live(running: &Config, file: &Config) -> Config {
    let mut next = running.clone();
    next.log.level.clone_from(&file.log.level);
    next.nodes.clone_from(&file.nodes);
    next.limits.clone_from(&file.limits);
    if running.network.ws.enabled {
        let (to, from) = (&mut next.network.ws, &file.network.ws);
        to.origins.clone_from(&from.origins);
        to.path.clone_from(&from.path);
        to.trust_proxy = from.trust_proxy;
        to.mqtt_path.clone_from(&from.mqtt_path);
    }
    next
}

/// Every key whose value differs between `old` and `new`, in the order of
/// the config view (sections alphabetically, then keys).
pub fn changes(old: &Config, new: &Config) -> Vec<Change> {
    let (a, b) = (
        crate::admin::config_json(old),
        crate::admin::config_json(new),
    );
    let mut out = Vec::new();
    walk("", &a, &b, &mut out);
    out.retain(|c| c.key != "admin.token_set");
    secrets(old, new, &mut out);
    out
}

/// Appends the leaves of `new` that differ from `old` under `prefix`.
fn walk(prefix: &str, old: &Value, new: &Value, out: &mut Vec<Change>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                walk(&key, a.get(k).unwrap_or(&Value::Null), v, out);
            }
        }
        _ if old != new => out.push(Change::new(prefix.to_owned(), old.clone(), new.clone())),
        _ => {}
    }
}

/// The secrets the view leaves out: `admin.token`, and the password in
/// `cluster.locator.url` (the view masks it, so a new password alone shows
/// no difference there).
fn secrets(old: &Config, new: &Config, out: &mut Vec<Change>) {
    let mask = |t: &str| Value::from(if t.is_empty() { "" } else { MASKED });
    let (a, b) = (&old.admin.token, &new.admin.token);
    if a != b {
        out.push(Change::new("admin.token".into(), mask(a), mask(b)));
    }
    let key = "cluster.locator.url";
    let (a, b) = (&old.cluster.locator.url, &new.cluster.locator.url);
    if a != b && !out.iter().any(|c| c.key == key) {
        out.push(Change::new(key.into(), MASKED.into(), MASKED.into()));
    }
}

/// A value as an operator reads it in a log line or the CLI: strings
/// without quotes (but `""` in a list, where it means something: the
/// origin of native clients), `[a, b]` for arrays, a one-key table
/// (`{"addr": x}`) as its value, other tables as JSON.
pub fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let item = |v: &Value| match v.as_str() {
                Some("") => "\"\"".to_owned(),
                _ => show(v),
            };
            let items: Vec<String> = items.iter().map(item).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(m) if m.len() == 1 => m.values().map(show).collect(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeConfig;
    use serde_json::json;

    fn base() -> Config {
        let mut c = Config::default();
        c.gate.id = "gate-1".into();
        c
    }

    fn keys(changes: &[Change]) -> Vec<&str> {
        changes.iter().map(|c| c.key.as_str()).collect()
    }

    fn node(port: u16) -> NodeConfig {
        NodeConfig {
            addr: ([127, 0, 0, 1], port).into(),
            unix: None,
        }
    }

    #[test]
    fn the_same_file_changes_nothing() {
        let p = plan(&base(), &base());
        assert!(p.applied.is_empty() && p.needs_restart.is_empty(), "{p:?}");
    }

    #[test]
    fn live_keys_are_applied_and_the_rest_kept_for_a_restart() {
        let running = base();
        let mut file = base();
        file.log.level = "debug".into();
        file.network.ws.origins = vec!["https://game.example".into()];
        file.nodes = vec![node(3600), node(3601)];
        file.network.tcp.addr = "127.0.0.1:4000".parse().unwrap();
        file.shards.ring_entries = 128;
        file.log.format = crate::config::LogFormat::Json;
        let p = plan(&running, &file);
        assert_eq!(
            keys(&p.applied),
            ["log.level", "network.ws.origins", "nodes"]
        );
        assert_eq!(
            keys(&p.needs_restart),
            ["log.format", "network.tcp.addr", "shards.ring_entries"]
        );
        let addr = &p.needs_restart[1];
        assert_eq!(addr.old, json!("0.0.0.0:3553"), "kept: the running value");
        assert_eq!(addr.new, json!("127.0.0.1:4000"));
        assert_eq!(p.applied[0].old, json!("info"));
        assert_eq!(p.applied[0].new, json!("debug"));
        assert_eq!(show(&p.applied[2].new), "[127.0.0.1:3600, 127.0.0.1:3601]");
        assert_eq!(p.in_force.log.level, "debug");
        assert_eq!(p.in_force.nodes.len(), 2);
        assert_eq!(p.in_force.network.tcp.addr, running.network.tcp.addr);
        assert_eq!(p.in_force.shards.ring_entries, running.shards.ring_entries);
    }

    #[test]
    fn every_limits_key_is_applied() {
        let running = base();
        let mut file = base();
        file.limits.requests_per_sec = 30;
        file.limits.requests_burst = 60;
        file.limits.max_connections_per_ip = 100;
        file.limits.action = crate::config::LimitAction::Close;
        let p = plan(&running, &file);
        assert_eq!(
            keys(&p.applied),
            [
                "limits.action",
                "limits.max_connections_per_ip",
                "limits.requests_burst",
                "limits.requests_per_sec"
            ]
        );
        assert!(p.needs_restart.is_empty(), "{:?}", p.needs_restart);
        assert_eq!(p.in_force.limits.requests_per_sec, 30);
    }

    #[test]
    fn a_key_left_for_a_restart_is_reported_again_on_the_next_reload() {
        let mut file = base();
        file.network.tcp.addr = "127.0.0.1:4000".parse().unwrap();
        let first = plan(&base(), &file);
        let second = plan(&first.in_force, &file);
        assert_eq!(keys(&second.needs_restart), ["network.tcp.addr"]);
        assert!(second.applied.is_empty());
    }

    #[test]
    fn websocket_rules_need_a_restart_when_no_websocket_listener_runs() {
        let mut running = base();
        running.network.ws.enabled = false;
        let mut file = running.clone();
        file.network.ws.origins = vec![];
        let p = plan(&running, &file);
        assert!(p.applied.is_empty());
        assert_eq!(keys(&p.needs_restart), ["network.ws.origins"]);
    }

    #[test]
    fn a_generated_gate_id_is_not_a_change_but_a_written_one_is() {
        let mut running = Config::default();
        running.validate().unwrap();
        let mut file = Config::default();
        file.validate().unwrap();
        assert!(running.gate.id_generated && file.gate.id_generated);
        let p = plan(&running, &file);
        assert!(p.needs_restart.is_empty(), "{:?}", p.needs_restart);
        assert_eq!(p.in_force.gate.id, running.gate.id);
        file.gate.id = "edge-7".into();
        file.gate.id_generated = false;
        assert_eq!(keys(&plan(&running, &file).needs_restart), ["gate.id"]);
    }

    #[test]
    fn secrets_are_compared_but_never_shown() {
        let running = base();
        let mut file = base();
        file.admin.token = "hunter2".into();
        let p = plan(&running, &file);
        assert_eq!(keys(&p.needs_restart), ["admin.token"]);
        assert_eq!(p.needs_restart[0].new, json!(MASKED));

        let mut running = base();
        running.cluster.locator.url = "redis://app:pw1@10.0.0.1/0".into();
        let mut file = running.clone();
        file.cluster.locator.url = "redis://app:pw2@10.0.0.1/0".into();
        let p = plan(&running, &file);
        assert_eq!(keys(&p.needs_restart), ["cluster.locator.url"]);
        let text = serde_json::to_string(&p.needs_restart).unwrap();
        assert!(!text.contains("pw1") && !text.contains("pw2"), "{text}");
    }

    #[test]
    fn values_read_as_an_operator_writes_them() {
        assert_eq!(show(&json!("0.0.0.0:3553")), "0.0.0.0:3553");
        assert_eq!(show(&json!(["*"])), "[*]");
        assert_eq!(show(&json!([])), "[]");
        assert_eq!(
            show(&json!(["https://a.example", ""])),
            r#"[https://a.example, ""]"#
        );
        assert_eq!(show(&json!([{ "addr": "127.0.0.1:1" }])), "[127.0.0.1:1]");
        assert_eq!(show(&json!(4096)), "4096");
        assert_eq!(show(&json!({ "a": 1, "b": 2 })), r#"{"a":1,"b":2}"#);
    }
}
