//! The admin port's HTTP/1.1 server: one thread accepts, a few workers read
//! one request per connection (parsed by `httparse`), answer it and close
//! (`Connection: close`). An admin port sees a scrape every few seconds and
//! an operator now and then, so keep-alive buys nothing, and one request per
//! connection keeps a worker from being held by an idle client.
//!
//! What it guards against:
//!
//! * **running out of file descriptors**: a failed `accept` is counted,
//!   logged (rarely) and retried after [`ACCEPT_PAUSE`]; the clients wait in
//!   the kernel's backlog meanwhile (the server it replaced, `tiny_http`,
//!   stopped accepting for good at the first such error);
//! * **floods**: at most [`QUEUE`] accepted connections wait for a worker;
//!   beyond that new ones are closed at once, so the threads and descriptors
//!   it holds stay bounded;
//! * **slow or silent clients**: the request head and body must arrive
//!   within [`READ_DEADLINE`], and a reply that cannot be written within
//!   [`WRITE_TIMEOUT`] is abandoned;
//! * **oversized requests**: a head over [`MAX_HEAD`] is answered 431, a body
//!   over [`MAX_BODY`] 413, a chunked body 411, garbage 400.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

/// Largest request head (request line and headers).
pub(super) const MAX_HEAD: usize = 16 * 1024;
/// Largest request body (kick, broadcast, log level).
pub(super) const MAX_BODY: usize = 1 << 20;
/// Headers parsed at most.
const MAX_HEADERS: usize = 32;
/// Time a client has to send its whole request.
pub(super) const READ_DEADLINE: Duration = Duration::from_secs(5);
/// Time one write of a reply may block.
pub(super) const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Accepted connections waiting for a worker.
pub(super) const QUEUE: usize = 64;
/// Pause after a failed `accept` (out of descriptors, memory, ...).
pub(super) const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Longest wait for a refused client to stop sending before the close.
const LINGER: Duration = Duration::from_millis(500);
/// How often blocked threads look at the stop flag.
const POLL: Duration = Duration::from_millis(200);

/// A request method.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Method {
    Get,
    Post,
    Put,
    Delete,
    Other(String),
}

impl Method {
    fn parse(m: &str) -> Method {
        match m {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            other => Method::Other(other.to_owned()),
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Other(m) => m,
        })
    }
}

/// One request, read whole, and the connection to answer it on.
#[derive(Debug)]
pub(super) struct Request {
    pub method: Method,
    /// The request target as sent (path and query).
    pub url: String,
    headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    stream: TcpStream,
}

impl Request {
    /// The value of header `name` (case-insensitive), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Writes a whole reply and closes the connection.
    pub fn respond(
        mut self,
        status: u16,
        content_type: &str,
        extra: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<()> {
        write_reply(&mut self.stream, status, content_type, extra, body)
    }

    /// The connection, for a reply that writes its own head (an event stream).
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }
}

/// Why a request could not be read: the status to answer, and why.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Refusal(pub u16, pub String);

/// The head of a request, parsed.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    /// Bytes of `buf` the head took.
    len: usize,
    /// `Content-Length` (0 if absent).
    body_len: usize,
}

/// Parses the head at the start of `buf`: `Ok(None)` while incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, Refusal> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(Refusal(431, format!("request head over {MAX_HEAD} bytes")));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Refusal(431, format!("more than {MAX_HEADERS} headers")));
        }
        Err(e) => return Err(Refusal(400, format!("malformed request: {e}"))),
    };
    if len > MAX_HEAD {
        return Err(Refusal(431, format!("request head over {MAX_HEAD} bytes")));
    }
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|h| {
            let v = String::from_utf8_lossy(h.value).trim().to_owned();
            (h.name.to_owned(), v)
        })
        .collect();
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    if find("Transfer-Encoding").is_some() {
        return Err(Refusal(
            411,
            "chunked request bodies are not accepted; send Content-Length".into(),
        ));
    }
    let body_len = match find("Content-Length") {
        None => 0,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| Refusal(400, format!("bad Content-Length {v:?}")))?,
    };
    if body_len > MAX_BODY {
        return Err(Refusal(
            413,
            format!("request body of {body_len} bytes is over {MAX_BODY}"),
        ));
    }
    Ok(Some(Head {
        method: Method::parse(req.method.unwrap_or_default()),
        url: req.path.unwrap_or("/").to_owned(),
        headers,
        len,
        body_len,
    }))
}

/// Why no request was read.
#[derive(Debug)]
enum ReadError {
    /// A request the server will not take: worth an answer.
    Refused(Refusal),
    /// The client went away or stalled.
    Io(io::Error),
}

/// A request's head and body, or why there is none.
type ReadResult = Result<(Head, Vec<u8>), ReadError>;

/// Reads one request (head and body) from `s` by `deadline`.
fn read_request<S: Read + Write>(
    s: &mut S,
    mut set_timeout: impl FnMut(&mut S, Duration) -> io::Result<()>,
    deadline: Instant,
) -> ReadResult {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let mut read = |s: &mut S, buf: &mut Vec<u8>| -> io::Result<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        set_timeout(s, left)?;
        match s.read(&mut chunk)? {
            0 => Err(io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
        }
    };
    let head = loop {
        match parse_head(&buf) {
            Ok(Some(head)) => break head,
            Ok(None) => read(s, &mut buf).map_err(ReadError::Io)?,
            Err(refusal) => return Err(ReadError::Refused(refusal)),
        }
    };
    let expect = head
        .headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("Expect") && v.eq_ignore_ascii_case("100-continue"));
    if expect && head.body_len > buf.len() - head.len {
        s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .map_err(ReadError::Io)?;
    }
    while buf.len() - head.len < head.body_len {
        read(s, &mut buf).map_err(ReadError::Io)?;
    }
    let body = buf[head.len..head.len + head.body_len].to_vec();
    Ok((head, body))
}

/// The reason phrase of `status`.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

fn write_reply<W: Write>(
    w: &mut W,
    status: u16,
    content_type: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n",
        reason(status),
        body.len()
    );
    for (k, v) in extra {
        head.push_str(k);
        head.push_str(": ");
        head.push_str(v);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    w.write_all(body)?;
    w.flush()
}

/// The admin HTTP server's threads.
pub(super) struct Server {
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    /// Accepts on `listener` and hands each request to `handle` on one of
    /// `workers` threads until `stop` is set; failed accepts count in
    /// `accept_errors`.
    pub fn start(
        listener: TcpListener,
        workers: usize,
        stop: Arc<AtomicBool>,
        accept_errors: Arc<AtomicU64>,
        handle: Arc<dyn Fn(Request) + Send + Sync>,
    ) -> io::Result<Server> {
        // accept(2) honours SO_RCVTIMEO: the acceptor looks at `stop` that often.
        socket2::SockRef::from(&listener).set_read_timeout(Some(POLL))?;
        let (tx, rx) = crossbeam_channel::bounded::<TcpStream>(QUEUE);
        let mut threads = Vec::with_capacity(workers + 1);
        let st = stop.clone();
        threads.push(
            std::thread::Builder::new()
                .name("ringgate-admin-accept".into())
                .spawn(move || accept_loop(&listener, &tx, &st, &accept_errors))?,
        );
        for i in 0..workers {
            let (rx, stop, handle) = (rx.clone(), stop.clone(), handle.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("ringgate-admin-{i}"))
                    .spawn(move || work(&rx, &stop, &*handle))?,
            );
        }
        Ok(Server { threads })
    }

    /// Waits for the threads (after `stop` was set).
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn accept_loop(
    listener: &TcpListener,
    tx: &Sender<TcpStream>,
    stop: &AtomicBool,
    errors: &AtomicU64,
) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((s, _)) => match tx.try_send(s) {
                Ok(()) => {}
                Err(TrySendError::Full(s)) => {
                    tracing::debug!(
                        queue = QUEUE,
                        "admin port busy: connection closed unanswered"
                    );
                    drop(s);
                }
                Err(TrySendError::Disconnected(_)) => return,
            },
            Err(e) if accept_retry_now(&e) => {}
            Err(e) => {
                let n = errors.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(error = %e, failures = n, pause = ?ACCEPT_PAUSE,
                        "admin port: accept failed; accepting again after a pause");
                }
                std::thread::sleep(ACCEPT_PAUSE);
            }
        }
    }
}

/// Accept errors that are no trouble of ours: a timeout (to look at the
/// stop flag), a signal, a client that left before it was accepted.
fn accept_retry_now(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock
            | io::ErrorKind::TimedOut
            | io::ErrorKind::Interrupted
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

fn work(rx: &Receiver<TcpStream>, stop: &AtomicBool, handle: &(dyn Fn(Request) + Send + Sync)) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = rx.recv_timeout(POLL) else {
            continue;
        };
        if let Err(e) = s.set_write_timeout(Some(WRITE_TIMEOUT)) {
            tracing::debug!(error = %e, "admin port: cannot set a write timeout");
            continue;
        }
        let deadline = Instant::now() + READ_DEADLINE;
        let set = |s: &mut TcpStream, d: Duration| s.set_read_timeout(Some(d));
        match read_request(&mut s, set, deadline) {
            Ok((head, body)) => handle(Request {
                method: head.method,
                url: head.url,
                headers: head.headers,
                body,
                stream: s,
            }),
            Err(ReadError::Refused(Refusal(status, why))) => {
                tracing::debug!(status, %why, "admin port: request refused");
                let body = serde_json::json!({ "error": why }).to_string();
                let _ = write_reply(&mut s, status, "application/json", &[], body.as_bytes());
                linger(s);
            }
            Err(ReadError::Io(e)) => tracing::debug!(error = %e, "admin port: no request read"),
        }
    }
}

/// Closes a connection whose request was not read to its end without
/// resetting it, so the client reads the refusal before the close.
/// Gives up within [`LINGER`] whatever the client does.
fn linger(s: TcpStream) {
    let _ = s.shutdown(Shutdown::Write);
    let deadline = Instant::now() + LINGER;
    let mut sink = [0u8; 4096];
    let mut left = MAX_BODY + MAX_HEAD;
    while left > 0 {
        let wait = deadline.saturating_duration_since(Instant::now());
        if wait.is_zero() || s.set_read_timeout(Some(wait)).is_err() {
            break;
        }
        match (&s).read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Result<Option<Head>, Refusal> {
        parse_head(text.as_bytes())
    }

    #[test]
    fn a_whole_head_is_parsed_and_a_partial_one_waits() {
        let h =
            head("POST /api/kick?x=1 HTTP/1.1\r\nHost: a\r\ncontent-length: 7\r\n\r\n{\"u\":1}")
                .unwrap()
                .unwrap();
        assert_eq!(h.method, Method::Post);
        assert_eq!(h.url, "/api/kick?x=1");
        assert_eq!(h.body_len, 7);
        assert_eq!(
            h.len,
            "POST /api/kick?x=1 HTTP/1.1\r\nHost: a\r\ncontent-length: 7\r\n\r\n".len()
        );
        assert_eq!(head("GET /metrics HTTP/1.1\r\nHost: a\r\n").unwrap(), None);
        assert_eq!(head("").unwrap(), None);
    }

    #[test]
    fn bad_heads_are_refused_with_a_status_that_says_why() {
        assert_eq!(
            head("GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n")
                .unwrap_err()
                .0,
            400
        );
        assert_eq!(head("\x01\x02 nonsense\r\n\r\n").unwrap_err().0, 400);
        let chunked = "POST /api/kick HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(head(chunked).unwrap_err().0, 411);
        let big = format!(
            "POST /api/kick HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert_eq!(head(&big).unwrap_err().0, 413);
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(head(&long).unwrap_err().0, 431);
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: 1\r\n")).collect();
        assert_eq!(
            head(&format!("GET / HTTP/1.1\r\n{many}\r\n"))
                .unwrap_err()
                .0,
            431
        );
    }

    /// A fake connection: what the client sends, in the pieces it sends
    /// them, and what the server wrote back.
    struct Pipe {
        pieces: Vec<Vec<u8>>,
        written: Vec<u8>,
    }

    impl Read for Pipe {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.pieces.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut p = self.pieces.remove(0);
            let n = p.len().min(out.len());
            out[..n].copy_from_slice(&p[..n]);
            if n < p.len() {
                self.pieces.insert(0, p.split_off(n));
            }
            Ok(n)
        }
    }

    impl Write for Pipe {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.written.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn read_from(pieces: &[&[u8]]) -> (ReadResult, Vec<u8>) {
        let mut p = Pipe {
            pieces: pieces.iter().map(|p| p.to_vec()).collect(),
            written: Vec::new(),
        };
        let r = read_request(
            &mut p,
            |_, _| Ok(()),
            Instant::now() + Duration::from_secs(5),
        );
        (r, p.written)
    }

    #[test]
    fn a_request_split_across_reads_is_put_back_together() {
        let (r, written) = read_from(&[
            b"PUT /api/log-",
            b"level HTTP/1.1\r\nContent-Le",
            b"ngth: 5\r\n\r\nde",
            b"bug",
        ]);
        let (h, body) = r.unwrap();
        assert_eq!(
            (h.method, h.url.as_str(), body.as_slice()),
            (Method::Put, "/api/log-level", &b"debug"[..])
        );
        assert!(written.is_empty());
    }

    #[test]
    fn expect_continue_is_answered_before_the_body_is_read() {
        let (r, written) = read_from(&[
            b"POST /api/broadcast HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
            b"{}",
        ]);
        assert_eq!(r.unwrap().1, b"{}");
        assert_eq!(written, b"HTTP/1.1 100 Continue\r\n\r\n");
    }

    #[test]
    fn a_client_that_stops_mid_request_is_an_io_error_not_a_request() {
        let (r, _) = read_from(&[b"POST /api/kick HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"]);
        assert!(matches!(r, Err(ReadError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock));
        let mut p = Pipe {
            pieces: vec![b"GET / HTTP/1.1\r\n".to_vec()],
            written: vec![],
        };
        let r = read_request(&mut p, |_, _| Ok(()), Instant::now());
        assert!(matches!(r, Err(ReadError::Io(e)) if e.kind() == io::ErrorKind::TimedOut));
    }

    #[test]
    fn replies_carry_length_type_and_close() {
        let mut out = Vec::new();
        write_reply(
            &mut out,
            401,
            "application/json",
            &[("WWW-Authenticate", "Bearer")],
            b"{}",
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{text}");
        for h in [
            "Content-Type: application/json\r\n",
            "Content-Length: 2\r\n",
            "Connection: close\r\n",
            "WWW-Authenticate: Bearer\r\n",
        ] {
            assert!(text.contains(h), "{h} missing: {text}");
        }
        assert!(text.ends_with("\r\n\r\n{}"), "{text}");
    }
}
