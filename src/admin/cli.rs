//! `ringgate admin <verb>`: the admin API from a terminal, and the small
//! blocking client it uses (also handy in tests and scripts).
//!
//! The address and token default to the config's `[admin]` section (the
//! same `--config` the gate runs with); `--json` prints the API's answer
//! as it came.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::config::Config;

/// `ringgate admin`'s options.
#[derive(Args, Debug)]
pub struct AdminArgs {
    /// Admin address (default: `[admin] addr` of the config).
    #[arg(long, global = true)]
    pub addr: Option<SocketAddr>,
    /// Bearer token (default: `[admin] token` of the config, else
    /// $RINGGATE_ADMIN_TOKEN).
    #[arg(long, global = true)]
    pub token: Option<String>,
    /// Print the API's JSON instead of a summary.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub verb: Verb,
}

/// The admin verbs.
#[derive(Subcommand, Debug)]
pub enum Verb {
    /// The gate, its counters and round trips.
    Stat,
    /// Sessions, a page at a time.
    Sessions {
        /// Sessions to show at most.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Sessions to skip.
        #[arg(long, default_value_t = 0)]
        offset: usize,
    },
    /// Close a session (reason "kicked"), by id or by user.
    Kick {
        /// The session id.
        #[arg(long, conflicts_with = "uid", required_unless_present = "uid")]
        session: Option<u64>,
        /// The user id.
        #[arg(long)]
        uid: Option<i64>,
    },
    /// Ask the gate to drain.
    Drain,
    /// Change the log filter (a level, or directives such as "info,ringgate::shard=debug").
    LogLevel {
        /// The new filter.
        level: String,
    },
    /// Re-read the gate's config file: apply what can change live, list
    /// what needs a restart (as SIGHUP does).
    Reload,
}

/// Why a command failed: the message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The admin port could not be reached.
    #[error("cannot reach the admin port at {addr} ({error}); is the gate running with [admin] enabled?")]
    Unreachable {
        /// Where.
        addr: SocketAddr,
        /// What the client said.
        error: String,
    },
    /// The API answered with an error.
    #[error("{status}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Its `error` field.
        message: String,
    },
}

/// A blocking client of the admin API.
pub struct AdminClient {
    addr: SocketAddr,
    token: Option<String>,
    agent: ureq::Agent,
}

impl AdminClient {
    /// A client of the admin port at `addr`.
    pub fn new(addr: SocketAddr, token: Option<String>) -> AdminClient {
        let agent = ureq::Agent::config_builder()
            .proxy(None)
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        AdminClient { addr, token, agent }
    }

    /// `method path` with an optional JSON body: status and parsed body
    /// (a non-JSON body comes back as a JSON string).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), CliError> {
        let url = format!("http://{}{path}", self.addr);
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let text = body.map(Value::to_string).unwrap_or_default();
        let res = match method {
            "GET" => with_auth(self.agent.get(&url), auth.as_deref()).call(),
            "POST" => with_auth(self.agent.post(&url), auth.as_deref())
                .header("content-type", "application/json")
                .send(text.as_str()),
            _ => with_auth(self.agent.put(&url), auth.as_deref())
                .header("content-type", "application/json")
                .send(text.as_str()),
        };
        let unreachable = |e: ureq::Error| CliError::Unreachable {
            addr: self.addr,
            error: e.to_string(),
        };
        let mut resp = res.map_err(unreachable)?;
        let status = resp.status().as_u16();
        let raw = resp.body_mut().read_to_string().map_err(unreachable)?;
        let v = serde_json::from_str(&raw).unwrap_or(Value::String(raw));
        Ok((status, v))
    }

    /// Like [`AdminClient::call`], but an error status is an error.
    pub fn ok(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, CliError> {
        let (status, v) = self.call(method, path, body)?;
        if !(200..300).contains(&status) {
            let message = v["error"]
                .as_str()
                .map_or_else(|| v.to_string(), str::to_owned);
            return Err(CliError::Api { status, message });
        }
        Ok(v)
    }
}

fn with_auth<B>(r: ureq::RequestBuilder<B>, auth: Option<&str>) -> ureq::RequestBuilder<B> {
    match auth {
        Some(a) => r.header("authorization", a),
        None => r,
    }
}

/// Runs `ringgate admin ...` against the gate `cfg` describes; returns what
/// to print.
pub fn run(args: &AdminArgs, cfg: &Config) -> Result<String, CliError> {
    let mut addr = args.addr.unwrap_or(cfg.admin.addr);
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let token = args
        .token
        .clone()
        .or_else(|| (!cfg.admin.token.is_empty()).then(|| cfg.admin.token.clone()))
        .or_else(|| std::env::var("RINGGATE_ADMIN_TOKEN").ok());
    let c = AdminClient::new(addr, token);
    let v = match &args.verb {
        Verb::Stat => {
            json!({ "info": c.ok("GET", "/api/info", None)?, "stats": c.ok("GET", "/api/stats", None)? })
        }
        Verb::Sessions { limit, offset } => c.ok(
            "GET",
            &format!("/api/sessions?limit={limit}&offset={offset}"),
            None,
        )?,
        Verb::Kick { session, uid } => {
            let body = match (session, uid) {
                (Some(s), _) => json!({ "session": s }),
                (None, u) => json!({ "uid": u }),
            };
            c.ok("POST", "/api/kick", Some(&body))?
        }
        Verb::Drain => c.ok("POST", "/api/drain", None)?,
        Verb::LogLevel { level } => {
            c.ok("PUT", "/api/log-level", Some(&json!({ "level": level })))?
        }
        Verb::Reload => c.ok("POST", "/api/reload", None)?,
    };
    if args.json {
        return Ok(serde_json::to_string_pretty(&v).unwrap_or_default());
    }
    Ok(match &args.verb {
        Verb::Stat => human_stat(&v),
        Verb::Sessions { .. } => human_sessions(&v),
        Verb::Kick { .. } => format!("kicked session {}", v["session"]),
        Verb::Drain => "drain requested".to_owned(),
        Verb::LogLevel { .. } => format!("log filter is now {}", v["level"]),
        Verb::Reload => human_reload(&v),
    })
}

/// One line per changed key: what was applied, what waits for a restart.
fn human_reload(v: &Value) -> String {
    use crate::reload::show;
    let Some(file) = v["file"].as_str() else {
        return "the gate started without a config file (embedded default): nothing to reload"
            .to_owned();
    };
    let mut o = format!("reloaded {file}");
    let list = |k: &str| v[k].as_array().cloned().unwrap_or_default();
    let (applied, kept) = (list("applied"), list("needs_restart"));
    if applied.is_empty() && kept.is_empty() {
        o.push_str(": nothing changed");
    }
    for c in &applied {
        let (old, new) = (show(&c["old"]), show(&c["new"]));
        let _ = write!(o, "\napplied        {}: {old} -> {new}", s(&c["key"]));
    }
    for c in &kept {
        let (old, new) = (show(&c["old"]), show(&c["new"]));
        let why = c["note"]
            .as_str()
            .map(|n| format!("; {n}"))
            .unwrap_or_default();
        let _ = write!(
            o,
            "\nneeds restart  {}: kept {old} (file: {new}{why})",
            s(&c["key"])
        );
    }
    o
}

fn human_stat(v: &Value) -> String {
    let (i, t) = (&v["info"], &v["stats"]["total"]);
    let mut o = String::new();
    let _ = writeln!(
        o,
        "gate        {} (ringgate {}), up {}s, {} shards",
        s(&i["id"]),
        s(&i["version"]),
        i["uptime_seconds"],
        i["shards"]
    );
    let _ = writeln!(
        o,
        "listening   tcp {}  ws {}  mqtt {}",
        s(&i["listen"]["tcp"]),
        s(&i["listen"]["ws"]),
        s(&i["listen"]["mqtt"])
    );
    let _ = writeln!(
        o,
        "connections {} open, {} accepted, {} refused; {} users bound",
        t["connections"], t["accepted"], t["refused"], t["bound"]
    );
    let _ = writeln!(
        o,
        "packets     {} in, {} out; bytes {} in, {} out",
        t["packets_in"], t["packets_out"], t["bytes_in"], t["bytes_out"]
    );
    let l = &t["latency"];
    let _ = writeln!(
        o,
        "round trip  {} answered; p50 {} ms, p90 {} ms, p99 {} ms",
        l["count"],
        s(&l["p50_ms"]),
        s(&l["p90_ms"]),
        s(&l["p99_ms"])
    );
    let _ = writeln!(o, "closes      {}", nonzero(&t["closed"]));
    let _ = writeln!(o, "errors      {}", nonzero(&t["errors"]));
    for n in v["stats"]["nodes"].as_array().into_iter().flatten() {
        let total = n["shards"].as_array().map_or(0, Vec::len);
        let _ = writeln!(
            o,
            "node        {} up on {}/{} shards",
            s(&n["node"]),
            n["shards_up"],
            total
        );
    }
    o.trim_end().to_owned()
}

fn human_sessions(v: &Value) -> String {
    let mut o = format!(
        "{:<20} {:>10} {:<22} {:<8} {:<9}\n",
        "SESSION", "UID", "PEER", "NETWORK", "PHASE"
    );
    for x in v["sessions"].as_array().into_iter().flatten() {
        let peer = format!("{}:{}", s(&x["ip"]), x["port"]);
        let _ = writeln!(
            o,
            "{:<20} {:>10} {:<22} {:<8} {:<9}",
            x["id"],
            x["uid"],
            peer,
            s(&x["network"]),
            s(&x["phase"])
        );
    }
    let shown = v["sessions"].as_array().map_or(0, Vec::len);
    let _ = write!(
        o,
        "{shown} of {} sessions (offset {})",
        v["total"], v["offset"]
    );
    o
}

/// A JSON string without quotes, `-` for null.
fn s(v: &Value) -> String {
    match v {
        Value::String(x) => x.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// `reason=n` pairs of a map, nonzero ones only.
fn nonzero(v: &Value) -> String {
    let parts: Vec<String> = (v.as_object().into_iter().flatten())
        .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
        .map(|(k, n)| format!("{k}={n}"))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(" ")
    }
}
