//! The JSON API under `/api/`: what the gate is, its counters, its
//! sessions and users, and the operator's levers (kick, broadcast, drain,
//! log level, reload).
//!
//! Questions about sessions go to the shard that knows: a session's own
//! shard (its id says which), a user's home shard for the directory. The
//! worker thread waits for the answer (see [`State::ask`]); a shard that
//! does not answer in time gives 504.

use super::http::Method;
use base64::Engine as _;
use bytes::BytesMut;
use serde::Deserialize;
use serde_json::{json, Value};

use super::server::{query_param, Reply};
use super::{config_view, log_level, AskError, State};
use crate::codec;
use crate::connection::Outgoing;
use crate::ids::{SessionId, UserId};
use crate::shard::admin_ops::{AdminOp, SessionInfo, SessionPage};

/// Sessions per page when `limit` is not given.
pub const DEFAULT_PAGE: usize = 100;
/// The most sessions one page returns.
pub const MAX_PAGE: usize = 1000;

/// An error reply: status and message.
pub(super) struct ApiError {
    status: u16,
    message: String,
}

fn err(status: u16, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        message: message.into(),
    }
}

impl From<AskError> for ApiError {
    fn from(e: AskError) -> Self {
        let status = match e {
            AskError::Timeout(_) => 504,
            AskError::Gone(_) => 503,
        };
        err(status, e.to_string())
    }
}

type Answer = Result<(u16, Value), ApiError>;

/// Answers `method path` under `/api/`.
pub(super) fn route(state: &State, method: &Method, path: &str, query: &str, body: &[u8]) -> Reply {
    let rest = path.trim_start_matches("/api/").trim_end_matches('/');
    let seg: Vec<&str> = rest.split('/').collect();
    let answer = match (method, seg.as_slice()) {
        (Method::Get, ["info"]) => Ok((200, info(state))),
        (Method::Get, ["config"]) => Ok((200, config_view::effective(&state.cfg()))),
        (Method::Get, ["stats"]) => Ok((200, super::dashboard::stats_json(state))),
        (Method::Get, ["sessions"]) => sessions(state, query),
        (Method::Get, ["sessions", id]) => session(state, id),
        (Method::Get, ["users", uid]) => user(state, uid),
        (Method::Post, ["kick"]) => kick(state, body),
        (Method::Post, ["broadcast"]) => broadcast(state, body),
        (Method::Post, ["drain"]) => {
            state.shared.request_drain();
            Ok((202, json!({ "drain": "requested" })))
        }
        (Method::Put, ["log-level"]) => set_log_level(body),
        (Method::Post, ["reload"]) => reload(state),
        (
            _,
            ["info" | "config" | "stats" | "sessions" | "users" | "kick" | "broadcast" | "drain"
            | "log-level" | "reload", ..],
        ) => Err(err(405, format!("{method} is not allowed on {path}"))),
        _ => Err(err(404, format!("no such endpoint: {method} {path}"))),
    };
    match answer {
        Ok((status, v)) => Reply::json(status, &v),
        Err(e) => Reply::error(e.status, e.message),
    }
}

/// `GET /api/info`.
fn info(state: &State) -> Value {
    let i = &state.info;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let nodes: Vec<String> = state
        .shared
        .nodes
        .slots()
        .iter()
        .filter(|s| s.wanted)
        .map(|s| s.addr.to_string())
        .collect();
    json!({
        "id": i.id,
        "name": i.name,
        "version": env!("CARGO_PKG_VERSION"),
        "started_unix_ms": i.started_ms,
        "uptime_seconds": now_ms.saturating_sub(i.started_ms) / 1000,
        "shards": i.cores.len(),
        "cores": i.cores,
        "listen": {
            "tcp": i.tcp.to_string(),
            "ws": i.ws.map(|a| a.to_string()),
            "mqtt": i.mqtt.map(|a| a.to_string()),
            "admin": state.addr.to_string(),
        },
        "nodes": nodes,
        "log_filter": log_level::current(),
        "drain_requested": state.shared.drain_requested.load(std::sync::atomic::Ordering::Relaxed),
    })
}

/// `GET /api/sessions?offset=&limit=`: shard by shard, in slot order.
fn sessions(state: &State, query: &str) -> Answer {
    let num = |key: &str, default: usize| -> Result<usize, ApiError> {
        match query_param(query, key) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| err(400, format!("{key} must be a whole number, got {v:?}"))),
        }
    };
    let offset = num("offset", 0)?;
    let limit = num("limit", DEFAULT_PAGE)?.min(MAX_PAGE);
    let (mut total, mut out) = (0, Vec::new());
    for shard in 0..state.shards() {
        let skip = offset.saturating_sub(total);
        let room = limit - out.len();
        let page: SessionPage = state.ask(shard, |reply| AdminOp::Sessions {
            offset: skip,
            limit: room,
            reply,
        })?;
        total += page.total;
        out.extend(page.sessions);
    }
    Ok((
        200,
        json!({ "total": total, "offset": offset, "limit": limit, "sessions": out }),
    ))
}

/// Session `sid`, if open.
fn lookup_session(state: &State, sid: SessionId) -> Result<Option<SessionInfo>, ApiError> {
    let shard = usize::from(sid.shard().0);
    if shard >= state.shards() {
        return Ok(None);
    }
    Ok(state.ask(shard, |reply| AdminOp::Session { sid, reply })?)
}

/// The session `uid` is bound to, from its home shard's directory.
fn lookup_uid(state: &State, uid: UserId) -> Result<Option<SessionId>, ApiError> {
    let home = usize::from(uid.home_shard(state.shards() as u16).0);
    Ok(state.ask(home, |reply| AdminOp::LookupUid { uid, reply })?)
}

fn parse_sid(text: &str) -> Result<SessionId, ApiError> {
    text.parse()
        .map(SessionId)
        .map_err(|_| err(400, format!("a session id is a whole number, got {text:?}")))
}

fn parse_uid(text: &str) -> Result<UserId, ApiError> {
    match text.parse::<i64>() {
        Ok(0) | Err(_) => Err(err(
            400,
            format!("a user id is a non-zero whole number, got {text:?}"),
        )),
        Ok(n) => Ok(UserId(n)),
    }
}

/// `GET /api/sessions/{id}`.
fn session(state: &State, id: &str) -> Answer {
    let sid = parse_sid(id)?;
    match lookup_session(state, sid)? {
        Some(s) => Ok((200, json!(s))),
        None => Err(err(404, format!("no open session {} on this gate", sid.0))),
    }
}

/// `GET /api/users/{uid}`.
fn user(state: &State, uid: &str) -> Answer {
    let uid = parse_uid(uid)?;
    let not_here = || err(404, format!("user {} is not bound on this gate", uid.0));
    let sid = lookup_uid(state, uid)?.ok_or_else(not_here)?;
    let s = lookup_session(state, sid)?.ok_or_else(not_here)?;
    Ok((200, json!({ "uid": uid.0, "session": s })))
}

/// `POST /api/kick` with `{"session": id}` or `{"uid": n}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KickBody {
    session: Option<u64>,
    uid: Option<i64>,
}

fn kick(state: &State, body: &[u8]) -> Answer {
    let b: KickBody = parse_body(body)?;
    let sid = match (b.session, b.uid) {
        (Some(s), None) => SessionId(s),
        (None, Some(u)) => {
            let uid = parse_uid(&u.to_string())?;
            lookup_uid(state, uid)?
                .ok_or_else(|| err(404, format!("user {u} is not bound on this gate")))?
        }
        _ => return Err(err(400, "give exactly one of \"session\" and \"uid\"")),
    };
    let shard = usize::from(sid.shard().0);
    let kicked =
        shard < state.shards() && state.ask(shard, |reply| AdminOp::Kick { sid, reply })?;
    if !kicked {
        return Err(err(404, format!("no open session {} on this gate", sid.0)));
    }
    Ok((200, json!({ "kicked": true, "session": sid.0 })))
}

/// `POST /api/broadcast`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BroadcastBody {
    route: i32,
    #[serde(default)]
    seq: i32,
    #[serde(default)]
    payload_base64: String,
    #[serde(default)]
    bound_only: bool,
}

fn broadcast(state: &State, body: &[u8]) -> Answer {
    let b: BroadcastBody = parse_body(body)?;
    let payload = base64::engine::general_purpose::STANDARD
        .decode(b.payload_base64.trim())
        .map_err(|e| err(400, format!("payload_base64: {e}")))?;
    let cfg = state.cfg();
    let opts = &cfg.packet;
    if payload.len() > opts.buffer_bytes {
        let msg = format!(
            "payload of {} bytes is over packet.buffer_bytes ({})",
            payload.len(),
            opts.buffer_bytes
        );
        return Err(err(413, msg));
    }
    let mut pkt = BytesMut::with_capacity(payload.len() + 16);
    codec::encode_data(0, b.route, b.seq, &payload, opts, &mut pkt).map_err(|e| {
        err(
            400,
            format!("cannot encode the packet with the [packet] settings: {e}"),
        )
    })?;
    let packet = Outgoing {
        packet: pkt.freeze(),
        topic: b.route.to_string().into(),
        payload: payload.into(),
    };
    let mut delivered = 0;
    for shard in 0..state.shards() {
        let packet = packet.clone();
        let bound_only = b.bound_only;
        delivered += state.ask(shard, |reply| AdminOp::Broadcast {
            packet,
            bound_only,
            reply,
        })?;
    }
    Ok((200, json!({ "delivered": delivered })))
}

/// `PUT /api/log-level` with `{"level": "debug"}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LevelBody {
    level: String,
}

fn set_log_level(body: &[u8]) -> Answer {
    let b: LevelBody = parse_body(body)?;
    match log_level::set_level(&b.level) {
        Ok(()) => Ok((200, json!({ "level": b.level.trim() }))),
        Err(e @ log_level::LogLevelError::Invalid(_)) => Err(err(400, e.to_string())),
        Err(e @ log_level::LogLevelError::Unsupported) => Err(err(501, e.to_string())),
        Err(e @ log_level::LogLevelError::Failed(_)) => Err(err(500, e.to_string())),
    }
}

/// `POST /api/reload`: re-reads the config file the gate started with (see
/// [`crate::reload`]). 200 with `{"file", "applied", "needs_restart"}`; a
/// bad file changes nothing: 422 with `{"error", "key"}`, the error naming
/// file, line and key.
fn reload(state: &State) -> Answer {
    match state.reloader.reload() {
        Ok(report) => Ok((200, json!(report))),
        Err(e) => Ok((422, json!({ "error": e.to_string(), "key": e.key() }))),
    }
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| err(400, format!("bad JSON body: {e}")))
}
