//! The admin port's routing: every request is checked against
//! `admin.token` first, then routed and answered (the HTTP server itself is
//! `http`). An event stream is handed to a thread of its own (see
//! `dashboard`) so a slow browser holds no worker.
//!
//! Errors are JSON, `{"error": "..."}`, with the status that fits.

use std::sync::Arc;

use serde_json::{json, Value};

use super::http::{Method, Request};
use super::{api, dashboard, metrics, State};

/// Threads reading and answering requests: a scrape is served while
/// another waits on a shard's answer, and a client slow to send its
/// request (it has `http::READ_DEADLINE`) holds only one of them.
pub(super) const WORKERS: usize = 4;

/// A reply: status and body.
pub(super) struct Reply {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
}

impl Reply {
    /// A JSON body.
    pub(super) fn json(status: u16, v: &Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: serde_json::to_vec_pretty(v).unwrap_or_default(),
        }
    }

    /// `{"error": message}`.
    pub(super) fn error(status: u16, message: impl std::fmt::Display) -> Reply {
        Reply::json(status, &json!({ "error": message.to_string() }))
    }

    fn bytes(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            content_type,
            body: body.into(),
        }
    }
}

/// Answers one request.
pub(super) fn handle(state: &Arc<State>, req: Request) {
    let url = req.url.clone();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    if !authorized(state, &req, query) {
        let r = Reply::error(
            401,
            "missing or wrong bearer token (Authorization: Bearer <admin.token>)",
        );
        return send(req, r, &[("WWW-Authenticate", "Bearer")]);
    }
    // HEAD is answered as GET without the body (`Request::respond`).
    let method = match &req.method {
        Method::Head => Method::Get,
        m => m.clone(),
    };
    let reply = match (&method, path) {
        (Method::Get, "/metrics") => Reply::bytes(
            200,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            metrics::render(state),
        ),
        (Method::Get, "/" | "/index.html") => {
            Reply::bytes(200, "text/html; charset=utf-8", dashboard::PAGE)
        }
        (Method::Get, "/events") if req.method == Method::Head => {
            Reply::bytes(200, "text/event-stream", Vec::new())
        }
        (Method::Get, "/events") => return dashboard::stream(state, req),
        (_, p) if p.starts_with("/api/") => api::route(state, &method, p, query, &req.body),
        _ => Reply::error(404, format!("no such endpoint: {method} {path}")),
    };
    send(req, reply, &[]);
}

/// Writes `r` (and `extra` headers) and closes the connection.
pub(super) fn send(req: Request, r: Reply, extra: &[(&str, &str)]) {
    if let Err(e) = req.respond(r.status, r.content_type, extra, &r.body) {
        tracing::debug!(error = %e, "admin server: could not send a reply");
    }
}

/// With a token configured: `Authorization: Bearer <token>`, or (for a
/// browser's page and event stream, which cannot set headers) a `token`
/// query parameter.
fn authorized(state: &State, req: &Request, query: &str) -> bool {
    let cfg = state.cfg();
    let token = cfg.admin.token.as_bytes();
    if token.is_empty() {
        return true;
    }
    let header = req
        .header("Authorization")
        .and_then(|v| v.strip_prefix("Bearer "));
    if header.is_some_and(|t| same(t.trim().as_bytes(), token)) {
        return true;
    }
    form_urlencoded::parse(query.as_bytes()).any(|(k, v)| k == "token" && same(v.as_bytes(), token))
}

/// Equal, in time that depends on the lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of query parameter `key`, if given.
pub(super) fn query_param(query: &str, key: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"ab", b"abc"));
        assert!(same(b"", b""));
    }

    #[test]
    fn query_parameters_are_decoded() {
        assert_eq!(query_param("a=1&limit=20", "limit").as_deref(), Some("20"));
        assert_eq!(query_param("token=a%20b", "token").as_deref(), Some("a b"));
        assert_eq!(query_param("", "x"), None);
    }
}
