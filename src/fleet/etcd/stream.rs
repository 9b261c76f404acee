//! One watch stream of etcd's v3 JSON gateway, read by hand over a
//! `TcpStream`. `ureq` can only wait for a body with a deadline after which
//! the body is dead, but a watch stays silent for minutes and its watcher
//! must wake every [`POLL`] to see whether it should stop; a socket read
//! timeout does that and the read resumes after it.
//!
//! ```text
//! POST /v3/watch HTTP/1.1             one WatchRequest, then the body ends:
//! Content-Length: 98                  the gateway half-closes its gRPC
//!                                     stream, and etcd keeps the watch
//! {"create_request":{"key":"L3Mvbm9kZS8=","range_end":"L3Mvbm9kZTA=","start_revision":"8"}}
//!
//! HTTP/1.1 200 OK                     (sent with the first message)
//! Transfer-Encoding: chunked          one JSON object per message, "\n" after each
//! {"result":{"header":{"revision":"7",..},"created":true}}
//! {"result":{"header":{..},"events":[{"kv":{..}},{"type":"DELETE","kv":{..}}]}}
//! {"result":{"header":{..},"canceled":true,"compact_revision":"9"}}
//! ```
//! A canceled watch does not end the HTTP stream: the caller drops it.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

use super::client::{etcd_error, int64, Header, KeyValue};
use super::RegistryError;

/// Longest wait in [`WatchStream::next`] before it returns `Ok(None)`.
pub(super) const POLL: Duration = Duration::from_millis(500);
/// Longest response head or chunk-size line accepted.
const MAX_HEAD: usize = 16 << 10;
/// Largest chunk accepted (a watch response holding big records).
const MAX_CHUNK: usize = 64 << 20;

/// One message of a watch stream.
#[derive(Debug, Default, Deserialize)]
pub(super) struct WatchResponse {
    #[serde(default)]
    pub header: Header,
    /// The watch exists now; events follow.
    #[serde(default)]
    pub created: bool,
    /// etcd dropped the watch; nothing more will come.
    #[serde(default)]
    pub canceled: bool,
    /// Set when the start revision was compacted away (the watch is then
    /// canceled): the oldest revision still available.
    #[serde(default, deserialize_with = "int64")]
    pub compact_revision: i64,
    #[serde(default)]
    pub cancel_reason: String,
    #[serde(default)]
    pub events: Vec<Event>,
}

/// A change to one key.
#[derive(Debug, Deserialize)]
pub(super) struct Event {
    #[serde(rename = "type", default)]
    pub kind: EventKind,
    #[serde(default)]
    pub kv: KeyValue,
}

/// What happened to the key (PUT is left out, being the zero value).
#[derive(Debug, Default, PartialEq, Eq, Deserialize)]
pub(super) enum EventKind {
    #[default]
    #[serde(rename = "PUT")]
    Put,
    #[serde(rename = "DELETE")]
    Delete,
}

/// An open watch stream.
pub(super) struct WatchStream {
    sock: TcpStream,
    endpoint: String,
    prefix: String,
    /// Bytes read but not yet de-chunked (or the unparsed response head).
    raw: Vec<u8>,
    /// De-chunked JSON not yet parsed.
    body: Vec<u8>,
    head: Option<Head>,
    /// The last chunk arrived.
    ended: bool,
    /// The first message must arrive before this.
    answer_by: Option<Instant>,
}

#[derive(Clone, Copy)]
struct Head {
    chunked: bool,
}

impl WatchStream {
    /// Connects to `endpoint` and sends the watch request `body`.
    pub(super) fn open(
        endpoint: &str,
        prefix: &str,
        body: &[u8],
        dial_timeout: Duration,
        request_timeout: Duration,
    ) -> Result<WatchStream, RegistryError> {
        let fail = |e: io::Error| RegistryError::Stream {
            endpoint: endpoint.to_string(),
            prefix: prefix.to_string(),
            reason: format!("cannot send the watch request: {e}"),
        };
        let mut last = io::Error::from(io::ErrorKind::NotFound); // no address
        let mut sock = None;
        for addr in endpoint.to_socket_addrs().map_err(fail)? {
            match TcpStream::connect_timeout(&addr, dial_timeout) {
                Ok(s) => {
                    sock = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let sock = sock.ok_or_else(|| fail(last))?;
        sock.set_nodelay(true).map_err(fail)?;
        sock.set_write_timeout(Some(request_timeout))
            .map_err(fail)?;
        sock.set_read_timeout(Some(POLL)).map_err(fail)?;
        let head = format!(
            "POST /v3/watch HTTP/1.1\r\nHost: {endpoint}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        (&sock)
            .write_all(&[head.as_bytes(), body].concat())
            .map_err(fail)?;
        Ok(WatchStream {
            sock,
            endpoint: endpoint.to_string(),
            prefix: prefix.to_string(),
            raw: Vec::new(),
            body: Vec::new(),
            head: None,
            ended: false,
            answer_by: Some(Instant::now() + request_timeout),
        })
    }

    /// The endpoint this stream reads from.
    pub(super) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The next message, or `Ok(None)` when none came within [`POLL`]
    /// (call again after checking the stop signal). An error means the
    /// stream is over: ended, broken, or no answer within the request
    /// timeout.
    pub(super) fn next(&mut self) -> Result<Option<WatchResponse>, RegistryError> {
        let mut buf = [0u8; 16 << 10];
        loop {
            if let Some(msg) = self.parse_one()? {
                self.answer_by = None;
                return Ok(Some(msg));
            }
            if self.ended {
                return Err(self.broke("etcd ended the stream".into()));
            }
            match self.sock.read(&mut buf) {
                Ok(0) => return Err(self.broke("connection closed".into())),
                Ok(n) => {
                    self.raw.extend_from_slice(&buf[..n]);
                    self.absorb()?;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return match self.answer_by {
                        Some(t) if Instant::now() >= t => {
                            Err(self.broke("no answer in time".into()))
                        }
                        _ => Ok(None),
                    };
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.broke(e.to_string())),
            }
        }
    }

    /// An error saying how the stream broke.
    pub(super) fn broke(&self, reason: String) -> RegistryError {
        RegistryError::Stream {
            endpoint: self.endpoint.clone(),
            prefix: self.prefix.clone(),
            reason,
        }
    }

    /// Moves what `raw` holds on: past the response head, then de-chunked
    /// into `body`.
    fn absorb(&mut self) -> Result<(), RegistryError> {
        let head = match self.head {
            Some(h) => h,
            None => match parse_head(&self.raw).map_err(|e| self.broke(e))? {
                None => return Ok(()),
                Some((len, h)) => {
                    self.raw.drain(..len);
                    self.head = Some(h);
                    h
                }
            },
        };
        if self.ended {
            self.raw.clear(); // trailers
        } else if head.chunked {
            self.ended = dechunk(&mut self.raw, &mut self.body).map_err(|e| self.broke(e))?;
        } else {
            self.body.append(&mut self.raw);
        }
        Ok(())
    }

    /// Parses the first complete JSON object of `body`, if any.
    fn parse_one(&mut self) -> Result<Option<WatchResponse>, RegistryError> {
        let mut objects = serde_json::Deserializer::from_slice(&self.body).into_iter::<Value>();
        let v = match objects.next() {
            None => {
                self.body.clear(); // whitespace only
                return Ok(None);
            }
            Some(Err(e)) if e.is_eof() => return Ok(None),
            Some(Err(e)) => return Err(self.broke(format!("bad JSON: {e}"))),
            Some(Ok(v)) => v,
        };
        let used = objects.byte_offset();
        self.body.drain(..used);
        if let Some(e) = etcd_error(&self.endpoint, "/v3/watch", &v) {
            return Err(e);
        }
        let result = v.get("result").cloned().unwrap_or(Value::Null);
        serde_json::from_value(result)
            .map(Some)
            .map_err(|e| self.broke(format!("unexpected JSON ({e}): {v}")))
    }
}

/// Parses the response head at the start of `raw`: `Ok(None)` until it is
/// complete, then its length and whether the body is chunked. Anything but
/// 200 is an error.
fn parse_head(raw: &[u8]) -> Result<Option<(usize, Head)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(raw) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if raw.len() > MAX_HEAD => {
            return Err("response head too long".into())
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("bad response head: {e}")),
    };
    if resp.code != Some(200) {
        return Err(format!("HTTP {}", resp.code.unwrap_or(0)));
    }
    let chunked = resp.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            && String::from_utf8_lossy(h.value)
                .to_ascii_lowercase()
                .contains("chunked")
    });
    Ok(Some((len, Head { chunked })))
}

/// Moves the data of every complete chunk at the front of `raw` into `out`
/// and drops them from `raw`; an incomplete chunk stays. Returns true once
/// the last (empty) chunk has arrived; its trailers are ignored.
fn dechunk(raw: &mut Vec<u8>, out: &mut Vec<u8>) -> Result<bool, String> {
    let mut pos = 0;
    let ended = loop {
        let rest = &raw[pos..];
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            if rest.len() > MAX_HEAD {
                return Err("chunk-size line too long".into());
            }
            break false;
        };
        let line = String::from_utf8_lossy(&rest[..eol]);
        let hex = line.split(';').next().unwrap_or("").trim();
        let size =
            usize::from_str_radix(hex, 16).map_err(|_| format!("bad chunk size {line:?}"))?;
        if size > MAX_CHUNK {
            return Err(format!(
                "chunk of {size} bytes is over the {MAX_CHUNK} limit"
            ));
        }
        if size == 0 {
            pos = raw.len();
            break true;
        }
        let start = eol + 2;
        if rest.len() < start + size + 2 {
            break false;
        }
        if &rest[start + size..start + size + 2] != b"\r\n" {
            return Err("chunk not followed by CRLF".into());
        }
        out.extend_from_slice(&rest[start..start + size]);
        pos += start + size + 2;
    };
    raw.drain(..pos);
    Ok(ended)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two chunks ("ab" and "cde\n" with an extension), then the last chunk
    /// and a trailer.
    const STREAM: &[u8] = b"2\r\nab\r\n4;ext=1\r\ncde\n\r\n0\r\nGrpc-Trailer: x\r\n\r\n";

    #[test]
    fn dechunk_gives_the_same_data_at_every_split_point() {
        for split in 0..=STREAM.len() {
            let (mut raw, mut out) = (STREAM[..split].to_vec(), Vec::new());
            let mut ended = dechunk(&mut raw, &mut out).unwrap();
            if !ended {
                raw.extend_from_slice(&STREAM[split..]);
                ended = dechunk(&mut raw, &mut out).unwrap();
            }
            assert_eq!(out, b"abcde\n", "split at {split}");
            assert!(ended, "split at {split}");
        }
    }

    #[test]
    fn dechunk_rejects_garbage() {
        assert!(dechunk(&mut b"zz\r\n".to_vec(), &mut Vec::new()).is_err());
        assert!(dechunk(&mut b"2\r\nabXY".to_vec(), &mut Vec::new()).is_err());
        assert!(dechunk(&mut b"ffffffffff\r\n".to_vec(), &mut Vec::new()).is_err());
    }

    #[test]
    fn head_is_parsed_once_complete() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(parse_head(&head[..20]).unwrap().is_none());
        let (len, h) = parse_head(head).unwrap().unwrap();
        assert_eq!(len, head.len());
        assert!(h.chunked);
        assert!(parse_head(b"HTTP/1.1 404 Not Found\r\n\r\n").is_err());
    }

    #[test]
    fn watch_messages_are_read() {
        let text = br#"{"result":{"header":{"revision":"7"},"events":[{"kv":{"key":"L2EvYg==","value":"eA==","mod_revision":"7"}},{"type":"DELETE","kv":{"key":"L2EvYw=="}}]}}"#;
        let v: Value = serde_json::from_slice(text).unwrap();
        let r: WatchResponse = serde_json::from_value(v["result"].clone()).unwrap();
        assert_eq!(r.header.revision, 7);
        assert_eq!(r.events[0].kind, EventKind::Put);
        assert_eq!(r.events[1].kind, EventKind::Delete);
        assert_eq!(r.events[1].kv.key, b"/a/c");
    }
}
