//! The opening handshake (RFC 6455 §4.2): an HTTP/1.1 upgrade request in,
//! a `101 Switching Protocols` or a refusal out. Pure: the shard appends
//! received bytes to a buffer and calls [`upgrade`] until it answers, and
//! owns the `handshake_timeout`.
//!
//! ```text
//!  GET /?token=... HTTP/1.1          path must be network.ws.path (query ignored)
//!  Host: gate.example:3554
//!  Upgrade: websocket                a token, case-insensitive
//!  Connection: keep-alive, Upgrade   contains the token "upgrade"
//!  Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==   base64 of 16 bytes
//!  Sec-WebSocket-Version: 13
//!  Origin: https://game.example      checked against network.ws.origins
//!  X-Forwarded-For: 203.0.113.7, 10.0.0.1        first entry, with trust_proxy
//!
//!  HTTP/1.1 101 Switching Protocols
//!  Upgrade: websocket
//!  Connection: Upgrade
//!  Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=   base64(sha1(key + GUID))
//! ```
//!
//! Refusals, each with a short text body and `Connection: close`: 400 (a
//! malformed request or key), 403 (origin), 404 (path), 405 (not GET), 426
//! (not an upgrade, or a version other than 13: with `Sec-WebSocket-Version:
//! 13`), 431 (header over [`MAX_REQUEST_BYTES`]).
//!
//! **Origin policy** (as due's): `["*"]` allows every request, `[]` refuses
//! every one, any other list allows exact (byte-for-byte) matches. A request
//! without an `Origin` header — a native client, not a browser — counts as
//! the origin `""`: allowed by `["*"]`, or by a list that includes `""`.
//! Browsers always send `Origin`, and the check exists to keep other sites'
//! pages out, so `origins = ["https://game.example", ""]` admits the game's
//! page and native clients and nothing else.

use std::net::{IpAddr, SocketAddr};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::{Buf, Bytes, BytesMut};
use sha1::{Digest, Sha1};

use super::WsError;
use crate::config::WsConfig;

/// Largest request header accepted; a longer one is refused with 431.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Header fields parsed at most (more is refused like a long header).
const MAX_HEADERS: usize = 64;
/// RFC 6455's fixed GUID appended to the key.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Which `Origin` values may upgrade.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origins {
    /// `["*"]`: every request.
    Any,
    /// Exact matches only (empty: none). `""` stands for "no Origin header".
    List(Vec<String>),
}

/// What the handshake checks, from `[network.ws]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandshakePolicy {
    /// The only path upgrades are accepted on.
    pub path: String,
    /// The origin policy.
    pub origins: Origins,
    /// Read the client address from `X-Forwarded-For` / `X-Real-IP`.
    pub trust_proxy: bool,
    /// MQTT over WebSocket, when `[network.mqtt]` is enabled: the extra
    /// path MQTT clients may upgrade on (`mqtt_path`). `None`: no MQTT.
    pub mqtt_path: Option<String>,
}

impl HandshakePolicy {
    /// The policy `[network.ws]` describes (`"*"` anywhere in the list means
    /// any); `mqtt`: MQTT clients may upgrade too (`[network.mqtt] enabled`).
    #[must_use]
    pub fn from_config(cfg: &WsConfig, mqtt: bool) -> Self {
        let origins = if cfg.origins.iter().any(|o| o == "*") {
            Origins::Any
        } else {
            Origins::List(cfg.origins.clone())
        };
        HandshakePolicy {
            path: cfg.path.clone(),
            origins,
            trust_proxy: cfg.trust_proxy,
            mqtt_path: mqtt.then(|| cfg.mqtt_path.clone()),
        }
    }

    fn origin_allowed(&self, origin: Option<&[u8]>) -> bool {
        match &self.origins {
            Origins::Any => true,
            Origins::List(list) => {
                let origin = origin.unwrap_or_default();
                list.iter().any(|o| o.as_bytes() == origin)
            }
        }
    }
}

/// An accepted upgrade.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The `101` response to send before any frame.
    pub response: Bytes,
    /// The client's address from the proxy headers (with `trust_proxy`, when
    /// present and parseable); else use the socket's peer address.
    pub forwarded_ip: Option<IpAddr>,
    /// The client speaks MQTT over this WebSocket: it offered the `mqtt` or
    /// `mqttv3.1` subprotocol (echoed in the response), or upgraded on
    /// `mqtt_path`.
    pub mqtt: bool,
}

/// A refused upgrade: send `response`, then close.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// The HTTP status (`reason.http_status()`).
    pub status: u16,
    /// The whole response: status line, headers, a one-line text body.
    pub response: Bytes,
    /// Why (for logs and counters: [`WsError::OriginRejected`] is the 403).
    pub reason: WsError,
}

/// Reads the upgrade request at the front of `src` and decides.
///
/// `Ok(None)`: the header has not ended yet (it is re-parsed on the next
/// call; nothing is consumed). `Ok(Some(_))`: the request is consumed and
/// whatever followed it (a client may send its first frames right away) is
/// left in `src` for the frame decoder. `Err(_)`: send
/// [`Rejected::response`] and close.
pub fn upgrade(src: &mut BytesMut, policy: &HandshakePolicy) -> Result<Option<Accepted>, Rejected> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let too_large = WsError::HeaderTooLarge {
        max: MAX_REQUEST_BYTES,
    };
    let end = match req.parse(src) {
        Ok(httparse::Status::Partial) if src.len() >= MAX_REQUEST_BYTES => {
            return Err(reject(too_large))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Ok(httparse::Status::Complete(n)) if n > MAX_REQUEST_BYTES => {
            return Err(reject(too_large))
        }
        Ok(httparse::Status::Complete(n)) => n,
        Err(httparse::Error::TooManyHeaders) => return Err(reject(too_large)),
        Err(_) => return Err(reject(WsError::BadRequest("malformed HTTP request"))),
    };
    let accepted = check(&req, policy).map_err(reject)?;
    src.advance(end);
    Ok(Some(accepted))
}

/// The checks, in the order a client would want them reported.
fn check(req: &httparse::Request<'_, '_>, policy: &HandshakePolicy) -> Result<Accepted, WsError> {
    if req.method != Some("GET") {
        return Err(WsError::MethodNotAllowed);
    }
    if req.version != Some(1) {
        return Err(WsError::BadRequest("HTTP/1.1 required"));
    }
    let target = req.path.unwrap_or_default();
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    let on_mqtt_path = policy.mqtt_path.as_deref() == Some(path);
    if path != policy.path && !on_mqtt_path {
        return Err(WsError::NotFound);
    }
    let headers = req.headers.iter();
    let values = |name: &'static str| {
        headers
            .clone()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    // The first MQTT subprotocol offered, if MQTT is served (mqant echoes
    // the first one offered: Paho JS offers `mqttv3.1` for 3.1, `mqtt` for 3.1.1).
    let subprotocol = policy.mqtt_path.as_ref().and_then(|_| {
        values("Sec-WebSocket-Protocol")
            .flat_map(|v| v.split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .find_map(|t| {
                MQTT_SUBPROTOCOLS
                    .iter()
                    .copied()
                    .find(|p| p.as_bytes() == t)
            })
    });
    if !values("Upgrade").any(|v| has_token(v, "websocket")) {
        return Err(WsError::NotUpgrade("no Upgrade: websocket"));
    }
    if !values("Connection").any(|v| has_token(v, "upgrade")) {
        return Err(WsError::NotUpgrade("no Connection: upgrade"));
    }
    let mut versions = values("Sec-WebSocket-Version");
    if versions.next().map(<[u8]>::trim_ascii) != Some(b"13") || versions.next().is_some() {
        return Err(WsError::UnsupportedVersion);
    }
    let mut keys = values("Sec-WebSocket-Key");
    let key = match (keys.next(), keys.next()) {
        (Some(key), None) => key.trim_ascii(),
        (None, _) => return Err(WsError::BadRequest("no Sec-WebSocket-Key")),
        (Some(_), Some(_)) => return Err(WsError::BadRequest("more than one Sec-WebSocket-Key")),
    };
    if !matches!(BASE64.decode(key), Ok(k) if k.len() == 16) {
        return Err(WsError::BadRequest(
            "Sec-WebSocket-Key is not base64 of 16 bytes",
        ));
    }
    let mut origins = values("Origin");
    let origin = origins.next().map(<[u8]>::trim_ascii);
    if origins.next().is_some() || !policy.origin_allowed(origin) {
        return Err(WsError::OriginRejected);
    }
    let forwarded_ip = if policy.trust_proxy {
        values("X-Forwarded-For")
            .next()
            .and_then(first_forwarded)
            .or_else(|| values("X-Real-IP").next().and_then(parse_ip))
    } else {
        None
    };
    Ok(Accepted {
        response: switching_protocols(key, subprotocol),
        forwarded_ip,
        mqtt: subprotocol.is_some() || on_mqtt_path,
    })
}

/// The WebSocket subprotocols of MQTT clients (3.1.1 and 3.1).
const MQTT_SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// Whether the comma-separated header value holds `token` (any case).
fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// The client of `X-Forwarded-For: client, proxy1, proxy2`.
fn first_forwarded(value: &[u8]) -> Option<IpAddr> {
    value.split(|&b| b == b',').next().and_then(parse_ip)
}

/// An address as proxies write it: `1.2.3.4`, `2001:db8::1`, `1.2.3.4:5678`
/// or `[2001:db8::1]:443`.
fn parse_ip(value: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(value.trim_ascii()).ok()?;
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

/// `Sec-WebSocket-Accept` for `key`: base64(SHA-1(key ‖ GUID)).
#[must_use]
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    BASE64.encode(sha.finalize())
}

fn switching_protocols(key: &[u8], subprotocol: Option<&str>) -> Bytes {
    let protocol = subprotocol
        .map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n"))
        .unwrap_or_default();
    Bytes::from(format!(
        "HTTP/1.1 101 Switching Protocols\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n{protocol}\r\n",
        accept_key(key)
    ))
}

fn reject(reason: WsError) -> Rejected {
    let status = reason.http_status();
    let text = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    };
    let extra = match status {
        405 => "Allow: GET\r\n",
        426 => "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
        _ => "",
    };
    let body = format!("{reason}\n");
    let response = format!(
        "HTTP/1.1 {status} {text}\r\n\
         Connection: close\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\n\
         {extra}\r\n\
         {body}",
        body.len()
    );
    Rejected {
        status,
        response: Bytes::from(response),
        reason,
    }
}
