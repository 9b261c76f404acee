//! The admin HTTP server: [`tiny_http`] parses the requests, a couple of
//! worker threads take them in turn, route them and answer. Every request
//! is checked against `admin.token` first; an event stream is handed to a
//! thread of its own (see `dashboard`) so a slow browser holds no worker.
//!
//! Errors are JSON, `{"error": "..."}`, with the status that fits.

use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};
use tiny_http::{Header, Method, Request, Response, Server};

use super::{api, dashboard, metrics, State};

/// Threads answering requests: one can serve a scrape while another waits
/// on a shard's answer.
const WORKERS: usize = 2;
/// How often an idle worker looks at the stop flag.
const POLL: Duration = Duration::from_millis(200);
/// Largest request body read (kick, broadcast, log level).
pub(super) const MAX_BODY: u64 = 1 << 20;

/// Starts the worker threads on `server`.
pub(super) fn spawn(
    server: Arc<Server>,
    state: Arc<State>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    (0..WORKERS)
        .map(|i| {
            let (server, state) = (server.clone(), state.clone());
            std::thread::Builder::new()
                .name(format!("ringgate-admin-{i}"))
                .spawn(move || serve(&server, &state))
        })
        .collect()
}

fn serve(server: &Server, state: &Arc<State>) {
    while !state.stop.load(Ordering::Relaxed) {
        match server.recv_timeout(POLL) {
            Ok(Some(req)) => handle(state, req),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "admin server: accept failed");
                std::thread::sleep(POLL);
            }
        }
    }
}

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

fn handle(state: &Arc<State>, mut req: Request) {
    let url = req.url().to_owned();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    if !authorized(state, &req, query) {
        let r = Reply::error(
            401,
            "missing or wrong bearer token (Authorization: Bearer <admin.token>)",
        );
        let challenge = Header::from_bytes("WWW-Authenticate", "Bearer").ok();
        return send(req, r, challenge);
    }
    let method = req.method().clone();
    let reply = match (&method, path) {
        (Method::Get, "/metrics") => Reply::bytes(
            200,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            metrics::render(state),
        ),
        (Method::Get, "/" | "/index.html") => {
            Reply::bytes(200, "text/html; charset=utf-8", dashboard::PAGE)
        }
        (Method::Get, "/events") => return dashboard::stream(state, req),
        (_, p) if p.starts_with("/api/") => {
            let mut body = Vec::new();
            let read = req.as_reader().take(MAX_BODY).read_to_end(&mut body);
            match read {
                Ok(_) => api::route(state, &method, p, query, &body),
                Err(e) => Reply::error(400, format!("cannot read the request body: {e}")),
            }
        }
        _ => Reply::error(404, format!("no such endpoint: {method} {path}")),
    };
    send(req, reply, None);
}

pub(super) fn send(req: Request, r: Reply, extra: Option<Header>) {
    let mut resp = Response::from_data(r.body).with_status_code(r.status);
    if let Ok(h) = Header::from_bytes("Content-Type", r.content_type) {
        resp.add_header(h);
    }
    if let Ok(h) = Header::from_bytes("Cache-Control", "no-store") {
        resp.add_header(h);
    }
    if let Some(h) = extra {
        resp.add_header(h);
    }
    if let Err(e) = req.respond(resp) {
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
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .and_then(|h| h.value.as_str().strip_prefix("Bearer "));
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
