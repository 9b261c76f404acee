//! The unary calls of etcd's v3 JSON gateway: one blocking HTTP/1.1 POST
//! each, through `ureq`. This module knows the endpoints and the wire shapes
//! and nothing else: it does not retry (beyond trying the next endpoint) nor
//! start threads. The watch stream is `stream.rs`'s.
//!
//! ```text
//! POST /v3/kv/put  {"key":"<base64>","value":"<base64>","lease":"<id>"}
//! 200              {"header":{"revision":"9",...}}
//! 404              {"error":"etcdserver: requested lease not found",
//!                   "message":"...","code":5}
//! ```
//! Keys and values are base64; int64s are JSON strings; fields at their
//! zero value are left out; streaming calls (keepalive) wrap their one answer
//! in `{"result":...}`, and their errors read `{"error":{"grpc_code":5,
//! "message":...}}`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use super::stream::WatchStream;
use super::{prefix_end, EtcdOptions, RegistryError};

/// gRPC's "unavailable": this member cannot serve now (no leader, stopping);
/// another endpoint may.
const UNAVAILABLE: i64 = 14;
/// gRPC's "not found", which etcd uses for an unknown lease.
pub(super) const NOT_FOUND: i64 = 5;

/// A connection pool to etcd's endpoints, preferring the last one that
/// answered.
pub(super) struct Client {
    endpoints: Vec<String>,
    preferred: AtomicUsize,
    agent: ureq::Agent,
    dial_timeout: Duration,
    request_timeout: Duration,
}

/// The part of etcd's response header we use.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Header {
    /// The store revision the answer reflects.
    #[serde(default, deserialize_with = "int64")]
    pub revision: i64,
}

/// A key and its value, as ranges and watch events carry them.
#[derive(Debug, Default, Deserialize)]
pub(super) struct KeyValue {
    #[serde(default, deserialize_with = "base64")]
    pub key: Vec<u8>,
    #[serde(default, deserialize_with = "base64")]
    pub value: Vec<u8>,
}

#[derive(Deserialize)]
struct RangeResponse {
    #[serde(default)]
    header: Header,
    #[serde(default)]
    kvs: Vec<KeyValue>,
}

#[derive(Deserialize)]
struct LeaseResponse {
    #[serde(rename = "ID", default, deserialize_with = "int64")]
    id: i64,
    #[serde(rename = "TTL", default, deserialize_with = "int64")]
    ttl: i64,
}

/// Any answer whose content we do not need.
#[derive(Debug, Deserialize)]
struct Ignored {}

impl Client {
    pub(super) fn new(opts: &EtcdOptions) -> Client {
        let agent = ureq::Agent::config_builder()
            .proxy(None) // loopback or a private network: never through $http_proxy
            .http_status_as_error(false) // etcd's errors are JSON bodies we read
            .timeout_connect(Some(opts.dial_timeout))
            .timeout_per_call(Some(opts.dial_timeout + opts.request_timeout))
            .build()
            .into();
        Client {
            endpoints: opts.endpoints.clone(),
            preferred: AtomicUsize::new(0),
            agent,
            dial_timeout: opts.dial_timeout,
            request_timeout: opts.request_timeout,
        }
    }

    /// Grants a lease of `ttl` seconds; returns its id.
    pub(super) fn grant(&self, ttl: i64) -> Result<i64, RegistryError> {
        let r: LeaseResponse = self.call("/v3/lease/grant", &json!({ "TTL": ttl }))?;
        Ok(r.id)
    }

    /// Puts `key` = `value` under `lease`.
    pub(super) fn put(&self, key: &str, value: &[u8], lease: i64) -> Result<(), RegistryError> {
        let body = json!({
            "key": B64.encode(key),
            "value": B64.encode(value),
            "lease": lease.to_string(),
        });
        self.call::<Ignored>("/v3/kv/put", &body).map(drop)
    }

    /// Deletes `key` (no error if it is absent).
    pub(super) fn delete(&self, key: &str) -> Result<(), RegistryError> {
        let body = json!({ "key": B64.encode(key) });
        self.call::<Ignored>("/v3/kv/deleterange", &body).map(drop)
    }

    /// Every key under `prefix`, and the revision they were read at.
    pub(super) fn range_prefix(&self, prefix: &str) -> Result<(i64, Vec<KeyValue>), RegistryError> {
        let end = prefix_end(prefix.as_bytes());
        let body = json!({ "key": B64.encode(prefix), "range_end": B64.encode(end) });
        let r: RangeResponse = self.call("/v3/kv/range", &body)?;
        Ok((r.header.revision, r.kvs))
    }

    /// Refreshes `lease`; returns its TTL in seconds, 0 or less if it is
    /// gone (expired or revoked).
    pub(super) fn keepalive(&self, lease: i64) -> Result<i64, RegistryError> {
        let r: LeaseResponse =
            self.call("/v3/lease/keepalive", &json!({ "ID": lease.to_string() }))?;
        Ok(r.ttl)
    }

    /// Revokes `lease`, deleting its keys; a lease already gone is fine.
    pub(super) fn revoke(&self, lease: i64) -> Result<(), RegistryError> {
        match self.call::<Ignored>("/v3/lease/revoke", &json!({ "ID": lease.to_string() })) {
            Err(RegistryError::Etcd {
                code: NOT_FOUND, ..
            })
            | Ok(_) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Opens a watch on every key under `prefix` from revision `start`,
    /// trying the endpoints in order.
    pub(super) fn watch(&self, prefix: &str, start: i64) -> Result<WatchStream, RegistryError> {
        let create = json!({ "create_request": {
            "key": B64.encode(prefix),
            "range_end": B64.encode(prefix_end(prefix.as_bytes())),
            "start_revision": start.to_string(),
        }});
        let body = create.to_string();
        let mut tried = Vec::new();
        for (i, ep) in self.in_order() {
            match WatchStream::open(
                ep,
                prefix,
                body.as_bytes(),
                self.dial_timeout,
                self.request_timeout,
            ) {
                Ok(s) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return Ok(s);
                }
                Err(e) => tried.push(e.to_string()),
            }
        }
        Err(RegistryError::Unreachable {
            request: "/v3/watch",
            tried: tried.join("; "),
        })
    }

    /// The endpoints with their index, the one that answered last first.
    fn in_order(&self) -> impl Iterator<Item = (usize, &str)> {
        let first = self.preferred.load(Ordering::Relaxed) % self.endpoints.len();
        let n = self.endpoints.len();
        (0..n).map(move |k| {
            let i = (first + k) % n;
            (i, self.endpoints[i].as_str())
        })
    }

    /// POSTs `body` to `path`, trying each endpoint until one answers with
    /// a result or with an etcd error other than "unavailable".
    fn call<T: DeserializeOwned>(
        &self,
        path: &'static str,
        body: &Value,
    ) -> Result<T, RegistryError> {
        let body = body.to_string();
        let mut tried = Vec::new();
        for (i, ep) in self.in_order() {
            let answer = match self.post(ep, path, body.as_bytes()) {
                Ok((status, text)) => parse_answer(ep, path, status, &text),
                Err(e) => {
                    tried.push(format!("{ep}: {e}"));
                    continue;
                }
            };
            match answer {
                Err(
                    RegistryError::Etcd {
                        code: UNAVAILABLE, ..
                    }
                    | RegistryError::BadAnswer { .. },
                ) => {
                    tried.push(answer.err().map(|e| e.to_string()).unwrap_or_default());
                }
                _ => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return answer;
                }
            }
        }
        Err(RegistryError::Unreachable {
            request: path,
            tried: tried.join("; "),
        })
    }

    fn post(&self, ep: &str, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>), ureq::Error> {
        let mut resp = self
            .agent
            .post(format!("http://{ep}{path}"))
            .header("content-type", "application/json")
            .send(body)?;
        let status = resp.status().as_u16();
        Ok((status, resp.body_mut().read_to_vec()?))
    }
}

/// Turns an HTTP answer into `T`, or into the error etcd reported.
fn parse_answer<T: DeserializeOwned>(
    endpoint: &str,
    request: &'static str,
    status: u16,
    body: &[u8],
) -> Result<T, RegistryError> {
    let bad = |reason: String| RegistryError::BadAnswer {
        endpoint: endpoint.to_string(),
        request,
        reason,
    };
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        bad(format!("HTTP {status}, body is not JSON ({e}): {text:?}"))
    })?;
    if let Some(e) = etcd_error(endpoint, request, &v) {
        return Err(e);
    }
    if status != 200 {
        return Err(bad(format!("HTTP {status}: {v}")));
    }
    let v = match v {
        Value::Object(mut m) if m.contains_key("result") => m.remove("result").unwrap_or_default(),
        v => v,
    };
    serde_json::from_value(v).map_err(|e| bad(format!("unexpected JSON: {e}")))
}

/// The error in an answer, in either of the gateway's two shapes (unary:
/// `{"error":"..","code":5}`; streaming: `{"error":{"grpc_code":5,..}}`).
pub(super) fn etcd_error(
    endpoint: &str,
    request: &'static str,
    v: &Value,
) -> Option<RegistryError> {
    let err = v.get("error")?;
    let (code, message) = match err {
        Value::Object(e) => (e.get("grpc_code"), e.get("message")),
        _ => (v.get("code"), v.get("message").or(Some(err))),
    };
    Some(RegistryError::Etcd {
        endpoint: endpoint.to_string(),
        request,
        code: code.and_then(Value::as_i64).unwrap_or(-1),
        message: message
            .and_then(Value::as_str)
            .unwrap_or("(no message)")
            .to_string(),
    })
}

/// Reads an int64, which the gateway writes as a string (numbers accepted).
pub(super) fn int64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int64 {
        Text(String),
        Number(i64),
    }
    match Int64::deserialize(d)? {
        Int64::Number(n) => Ok(n),
        Int64::Text(s) => s.parse().map_err(D::Error::custom),
    }
}

/// Reads a base64 string as bytes.
fn base64<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let s = String::deserialize(d)?;
    B64.decode(s).map_err(D::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_parsed_with_string_int64s_and_base64() {
        let body = br#"{"header":{"revision":"7"},"kvs":[{"key":"L2EvYg==","value":"eA==","lease":"12"}],"count":"1"}"#;
        let r: RangeResponse = parse_answer("e", "/v3/kv/range", 200, body).unwrap();
        assert_eq!(r.header.revision, 7);
        assert_eq!(r.kvs[0].key, b"/a/b");
        assert_eq!(r.kvs[0].value, b"x");
        let ka = br#"{"result":{"header":{"revision":"2"},"ID":"1"}}"#;
        let r: LeaseResponse = parse_answer("e", "/v3/lease/keepalive", 200, ka).unwrap();
        assert_eq!((r.id, r.ttl), (1, 0), "a lease gone answers without a TTL");
    }

    #[test]
    fn both_error_shapes_become_etcd_errors() {
        let unary = br#"{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}"#;
        let e = parse_answer::<Ignored>("h:1", "/v3/lease/revoke", 404, unary).unwrap_err();
        assert!(
            matches!(
                e,
                RegistryError::Etcd {
                    code: NOT_FOUND,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("h:1") && e.to_string().contains("/v3/lease/revoke"));
        let stream = br#"{"error":{"grpc_code":14,"http_code":503,"message":"no leader"}}"#;
        let e = parse_answer::<Ignored>("h:1", "/v3/lease/keepalive", 503, stream).unwrap_err();
        assert!(
            matches!(
                e,
                RegistryError::Etcd {
                    code: UNAVAILABLE,
                    ..
                }
            ),
            "{e}"
        );
        let html = b"<html>not etcd</html>";
        let e = parse_answer::<Ignored>("h:1", "/v3/kv/put", 404, html).unwrap_err();
        assert!(matches!(e, RegistryError::BadAnswer { .. }), "{e}");
    }
}
