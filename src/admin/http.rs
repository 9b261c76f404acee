//! The admin port's HTTP/1.1 server. One I/O thread accepts connections
//! and reads their requests without blocking (mio); only a request read
//! whole goes to one of a few workers, which answer it and close the
//! connection (`Connection: close`: an admin port sees a scrape every few
//! seconds and an operator now and then, so keep-alive buys nothing).
//! Request heads are parsed by `httparse`.
//!
//! What it guards against:
//!
//! * **running out of file descriptors**: a failed `accept` is counted,
//!   logged (rarely) and retried after [`ACCEPT_PAUSE`]; clients wait in the
//!   kernel's backlog meanwhile (`tiny_http`, which this replaced, stopped
//!   accepting for good at the first such error);
//! * **idle, slow or silent clients**: they cost the I/O thread a slot, not
//!   a worker: at most [`MAX_READING`] connections are being read at once
//!   (a new one past that closes the one accepted longest ago), and each
//!   has [`READ_DEADLINE`] from its accept to send its whole request;
//! * **floods**: at most [`QUEUE`] read requests wait for a worker; beyond
//!   that they are answered 503;
//! * **slow readers**: a reply has [`WRITE_DEADLINE`] to be written, and
//!   gives up sooner when the gate stops;
//! * **oversized or bad requests**: a head over [`MAX_HEAD`] is answered
//!   431, a body over [`MAX_BODY`] 413, a chunked body 411, garbage 400.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::{Events, Interest, Poll, Token};

/// Largest request head (request line and headers).
pub(super) const MAX_HEAD: usize = 16 * 1024;
/// Largest request body (kick, broadcast, log level).
pub(super) const MAX_BODY: usize = 1 << 20;
/// Headers parsed at most.
const MAX_HEADERS: usize = 32;
/// Time a client has, from its accept, to send its whole request.
pub(super) const READ_DEADLINE: Duration = Duration::from_secs(5);
/// Time a reply has to be written whole.
pub(super) const WRITE_DEADLINE: Duration = Duration::from_secs(10);
/// Connections whose request is being read, at most.
pub(super) const MAX_READING: usize = 64;
/// Requests read and waiting for a worker, at most.
pub(super) const QUEUE: usize = 64;
/// Pause after a failed `accept` (out of descriptors, memory, ...).
pub(super) const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Longest wait for a refused client to stop sending before the close.
const LINGER: Duration = Duration::from_millis(500);
/// How often blocked threads look at the stop flag.
const POLL: Duration = Duration::from_millis(200);
/// Bytes read from a connection at a time.
const CHUNK: usize = 4096;
/// The listener's token; connections count up from 1.
const LISTENER: Token = Token(0);

/// A request method.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Other(String),
}

impl Method {
    fn parse(m: &str) -> Method {
        match m {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
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
            Method::Head => "HEAD",
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
    stop: Arc<AtomicBool>,
}

impl Request {
    /// The value of header `name` (case-insensitive), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Writes a whole reply (its head only, for HEAD) and closes the
    /// connection.
    pub fn respond(
        mut self,
        status: u16,
        content_type: &str,
        extra: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<()> {
        let mut out = reply_head(status, content_type, extra, body.len());
        if self.method != Method::Head {
            out.extend_from_slice(body);
        }
        let deadline = Instant::now() + WRITE_DEADLINE;
        write_all_by(&mut self.stream, &out, deadline, &self.stop)
    }

    /// The connection, for a reply that writes its own head (an event
    /// stream; see [`write_all_by`]).
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

/// A request being read: the bytes so far.
#[derive(Debug, Default)]
struct Incoming {
    buf: Vec<u8>,
    /// `100 Continue` was sent.
    continued: bool,
}

/// What a connection's bytes amount to so far.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Not a whole request yet.
    More,
    /// The head asked for `100 Continue` before it sends the body: send it.
    Continue,
    /// A whole request: its head and body.
    Done(Head, Vec<u8>),
    /// A request the server will not take: answer it so.
    Refused(Refusal),
}

impl Incoming {
    /// Adds `bytes` (at most a [`CHUNK`]) and says what there is now. The
    /// buffer never grows past a head, a body and a chunk: a head over
    /// [`MAX_HEAD`] or a body over [`MAX_BODY`] is refused first.
    fn push(&mut self, bytes: &[u8]) -> Step {
        self.buf.extend_from_slice(bytes);
        let head = match parse_head(&self.buf) {
            Ok(Some(head)) => head,
            Ok(None) => return Step::More,
            Err(refusal) => return Step::Refused(refusal),
        };
        if self.buf.len() - head.len >= head.body_len {
            let body = self.buf[head.len..head.len + head.body_len].to_vec();
            return Step::Done(head, body);
        }
        let expect = head.headers.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("Expect") && v.eq_ignore_ascii_case("100-continue")
        });
        if expect && !self.continued {
            self.continued = true;
            return Step::Continue;
        }
        Step::More
    }
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
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

/// A reply's status line and headers, for a body of `len` bytes.
fn reply_head(status: u16, content_type: &str, extra: &[(&str, &str)], len: usize) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n",
        reason(status),
    );
    for (k, v) in extra {
        head.push_str(k);
        head.push_str(": ");
        head.push_str(v);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// A whole reply with a JSON `{"error": why}` body.
fn refusal_reply(Refusal(status, why): &Refusal) -> Vec<u8> {
    let body = serde_json::json!({ "error": why }).to_string();
    let mut out = reply_head(*status, "application/json", &[], body.len());
    out.extend_from_slice(body.as_bytes());
    out
}

/// Writes all of `buf` to the blocking stream `s` by `deadline`, giving up
/// early when `stop` is set (it looks every [`POLL`]).
pub(super) fn write_all_by(
    s: &mut TcpStream,
    mut buf: &[u8],
    deadline: Instant,
    stop: &AtomicBool,
) -> io::Result<()> {
    while !buf.is_empty() {
        if stop.load(Ordering::Relaxed) {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "the gate is stopping",
            ));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client reads too slowly",
            ));
        }
        s.set_write_timeout(Some(left.min(POLL)))?;
        match s.write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if retry_write(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A write that timed out (to look at the deadline and the stop flag) or
/// was interrupted: try again.
fn retry_write(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// What the I/O thread hands a worker.
enum Job {
    /// A request read whole: route and answer it.
    Request(Request),
    /// A request refused while reading: send the refusal and close.
    Refuse(TcpStream, Refusal),
}

/// The admin HTTP server's threads.
pub(super) struct Server {
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    /// Accepts on `listener` and hands each request to `handle` on one of
    /// `workers` threads until `stop` is set; failed accepts count in
    /// `accept_errors`. If a thread cannot be started, those started stop
    /// (`stop` is set) before the error returns.
    pub fn start(
        listener: TcpListener,
        workers: usize,
        stop: Arc<AtomicBool>,
        accept_errors: Arc<AtomicU64>,
        handle: Arc<dyn Fn(Request) + Send + Sync>,
    ) -> io::Result<Server> {
        listener.set_nonblocking(true)?;
        let mut listener = mio::net::TcpListener::from_std(listener);
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let (tx, rx) = crossbeam_channel::bounded::<Job>(QUEUE);
        let mut server = Server {
            threads: Vec::with_capacity(workers + 1),
        };
        let io = Io {
            poll,
            listener,
            tx,
            stop: stop.clone(),
            accept_errors,
            reading: HashMap::new(),
            next_token: 1,
            accept_due: true,
            paused_until: None,
        };
        let spawned = std::thread::Builder::new()
            .name("ringgate-admin-io".into())
            .spawn(move || io.run());
        let spawned = spawned.and_then(|t| {
            server.threads.push(t);
            for i in 0..workers {
                let (rx, stop, handle) = (rx.clone(), stop.clone(), handle.clone());
                let t = std::thread::Builder::new()
                    .name(format!("ringgate-admin-{i}"))
                    .spawn(move || work(&rx, &stop, &*handle))?;
                server.threads.push(t);
            }
            Ok(())
        });
        match spawned {
            Ok(()) => Ok(server),
            Err(e) => {
                stop.store(true, Ordering::SeqCst);
                server.join();
                Err(e)
            }
        }
    }

    /// Waits for the threads (after `stop` was set).
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// A connection whose request is being read.
struct Reading {
    stream: mio::net::TcpStream,
    incoming: Incoming,
    deadline: Instant,
}

/// The I/O thread: accepts, reads requests, hands them to the workers.
struct Io {
    poll: Poll,
    listener: mio::net::TcpListener,
    tx: Sender<Job>,
    stop: Arc<AtomicBool>,
    accept_errors: Arc<AtomicU64>,
    reading: HashMap<Token, Reading>,
    next_token: usize,
    /// The listener may have connections waiting (mio is edge-triggered).
    accept_due: bool,
    /// Accepting resumes then, after a failed accept.
    paused_until: Option<Instant>,
}

impl Io {
    fn run(mut self) {
        let mut events = Events::with_capacity(128);
        while !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let wait = match self.paused_until {
                Some(t) => t.saturating_duration_since(now).min(POLL),
                None => POLL,
            };
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::warn!(error = %e, "admin port: poll failed");
                    std::thread::sleep(POLL);
                }
                continue;
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept_due = true,
                    token => self.read(token),
                }
            }
            if self.paused_until.is_some_and(|t| Instant::now() >= t) {
                self.paused_until = None;
            }
            if self.accept_due && self.paused_until.is_none() {
                self.accept();
            }
            let now = Instant::now();
            self.reading.retain(|_, r| r.deadline > now);
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    if self.reading.len() >= MAX_READING {
                        self.evict_oldest();
                    }
                    let token = Token(self.next_token);
                    self.next_token = self.next_token.wrapping_add(1).max(1);
                    let registered =
                        self.poll
                            .registry()
                            .register(&mut stream, token, Interest::READABLE);
                    if let Err(e) = registered {
                        tracing::debug!(error = %e, "admin port: cannot watch a connection");
                        continue;
                    }
                    let r = Reading {
                        stream,
                        incoming: Incoming::default(),
                        deadline: Instant::now() + READ_DEADLINE,
                    };
                    self.reading.insert(token, r);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.accept_due = false;
                    return;
                }
                Err(e) if accept_retry_now(&e) => {}
                Err(e) => {
                    let n = self.accept_errors.fetch_add(1, Ordering::Relaxed) + 1;
                    if n.is_power_of_two() {
                        tracing::warn!(error = %e, failures = n, pause = ?ACCEPT_PAUSE,
                            "admin port: accept failed; accepting again after a pause");
                    }
                    self.paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                    return;
                }
            }
        }
    }

    /// Closes the connection that has waited longest for its request: a
    /// client that means it sends its request right after connecting, so
    /// idle connections cannot keep the port from new ones.
    fn evict_oldest(&mut self) {
        let oldest = self
            .reading
            .iter()
            .min_by_key(|(_, r)| r.deadline)
            .map(|(t, _)| *t);
        if let Some(mut r) = oldest.and_then(|t| self.reading.remove(&t)) {
            let _ = self.poll.registry().deregister(&mut r.stream);
            tracing::debug!(
                reading = MAX_READING,
                "admin port: closed the connection idle longest to make room"
            );
        }
    }

    /// Reads what connection `token` has sent; a whole request (or a
    /// refusal) leaves for a worker, a closed or failed connection is
    /// dropped.
    fn read(&mut self, token: Token) {
        let Some(r) = self.reading.get_mut(&token) else {
            return;
        };
        let mut chunk = [0u8; CHUNK];
        let step = loop {
            match r.stream.read(&mut chunk) {
                Ok(0) => break None,
                Ok(n) => match r.incoming.push(&chunk[..n]) {
                    Step::More => {}
                    Step::Continue => {
                        // 25 bytes into an empty send buffer: it fits.
                        let _ = r.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
                    }
                    done => break Some(done),
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break None,
            }
        };
        let Some(mut r) = self.reading.remove(&token) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut r.stream);
        let Some(step) = step else {
            return; // closed or failed before a whole request
        };
        let stream = TcpStream::from(r.stream);
        if let Err(e) = stream.set_nonblocking(false) {
            tracing::debug!(error = %e, "admin port: cannot make a connection blocking");
            return;
        }
        let job = match step {
            Step::Done(head, body) => Job::Request(Request {
                method: head.method,
                url: head.url,
                headers: head.headers,
                body,
                stream,
                stop: self.stop.clone(),
            }),
            Step::Refused(refusal) => Job::Refuse(stream, refusal),
            Step::More | Step::Continue => return,
        };
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(job)) => {
                let mut stream = match job {
                    Job::Request(req) => req.stream,
                    Job::Refuse(stream, _) => stream,
                };
                let busy = Refusal(
                    503,
                    format!("the admin port has {QUEUE} requests waiting; try again"),
                );
                let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
                let _ = stream.write_all(&refusal_reply(&busy));
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

/// Accept errors that are no trouble of ours: a signal, a client that
/// left before it was accepted.
fn accept_retry_now(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Interrupted
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

fn work(rx: &Receiver<Job>, stop: &AtomicBool, handle: &(dyn Fn(Request) + Send + Sync)) {
    while !stop.load(Ordering::Relaxed) {
        match rx.recv_timeout(POLL) {
            Ok(Job::Request(req)) => {
                let answered =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handle(req)));
                if answered.is_err() {
                    tracing::error!(
                        "admin port: a request handler panicked; its connection is closed"
                    );
                }
            }
            Ok(Job::Refuse(mut s, refusal)) => {
                tracing::debug!(status = refusal.0, why = %refusal.1, "admin port: request refused");
                let deadline = Instant::now() + LINGER;
                let _ = write_all_by(&mut s, &refusal_reply(&refusal), deadline, stop);
                linger(s);
            }
            Err(_) => {}
        }
    }
}

/// Closes a connection whose request was not read to its end without
/// resetting it, so the client reads the refusal before the close.
/// Gives up within [`LINGER`] whatever the client does.
fn linger(s: TcpStream) {
    let _ = s.shutdown(Shutdown::Write);
    let deadline = Instant::now() + LINGER;
    let mut sink = [0u8; CHUNK];
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
        let text = "POST /api/kick?x=1 HTTP/1.1\r\nHost: a\r\ncontent-length: 7\r\n\r\n";
        let h = head(&format!("{text}{{\"u\":1}}")).unwrap().unwrap();
        assert_eq!(h.method, Method::Post);
        assert_eq!(h.url, "/api/kick?x=1");
        assert_eq!(h.body_len, 7);
        assert_eq!(h.len, text.len());
        assert_eq!(head("GET /metrics HTTP/1.1\r\nHost: a\r\n").unwrap(), None);
        assert_eq!(head("").unwrap(), None);
        assert_eq!(
            head("HEAD / HTTP/1.0\r\n\r\n").unwrap().unwrap().method,
            Method::Head
        );
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

    #[test]
    fn a_request_split_across_reads_is_put_back_together() {
        let mut inc = Incoming::default();
        for piece in [
            "PUT /api/log-",
            "level HTTP/1.1\r\nContent-Le",
            "ngth: 5\r\n\r\nde",
        ] {
            assert_eq!(inc.push(piece.as_bytes()), Step::More);
        }
        let Step::Done(h, body) = inc.push(b"bug") else {
            panic!("not done");
        };
        assert_eq!(
            (h.method, h.url.as_str(), body.as_slice()),
            (Method::Put, "/api/log-level", &b"debug"[..])
        );
    }

    #[test]
    fn expect_continue_is_asked_for_once_before_the_body() {
        let mut inc = Incoming::default();
        let head =
            "POST /api/broadcast HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n";
        assert_eq!(inc.push(head.as_bytes()), Step::Continue);
        assert_eq!(inc.push(b"{}"), Step::More);
        assert!(matches!(inc.push(b"  "), Step::Done(_, body) if body == b"{}  "));
        // A body that came with the head needs no 100 Continue.
        let mut inc = Incoming::default();
        let whole = "POST /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}";
        assert!(matches!(inc.push(whole.as_bytes()), Step::Done(..)));
    }

    #[test]
    fn a_head_that_grows_too_long_is_refused_before_its_end() {
        let mut inc = Incoming::default();
        assert_eq!(inc.push(b"GET / HTTP/1.1\r\nX-A: "), Step::More);
        let filler = [b'a'; CHUNK];
        let step = loop {
            match inc.push(&filler) {
                Step::More => assert!(inc.buf.len() <= MAX_HEAD + CHUNK),
                other => break other,
            }
        };
        assert!(matches!(step, Step::Refused(Refusal(431, _))), "{step:?}");
    }

    #[test]
    fn replies_carry_length_type_and_close() {
        let text = String::from_utf8(reply_head(
            401,
            "application/json",
            &[("WWW-Authenticate", "Bearer")],
            2,
        ))
        .unwrap();
        assert!(text.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{text}");
        for h in [
            "Content-Type: application/json\r\n",
            "Content-Length: 2\r\n",
            "Connection: close\r\n",
            "WWW-Authenticate: Bearer\r\n",
        ] {
            assert!(text.contains(h), "{h} missing: {text}");
        }
        assert!(text.ends_with("\r\n\r\n"), "{text}");
        let refused = String::from_utf8(refusal_reply(&Refusal(413, "too big".into()))).unwrap();
        assert!(
            refused.starts_with("HTTP/1.1 413 Content Too Large\r\n"),
            "{refused}"
        );
        assert!(refused.ends_with("{\"error\":\"too big\"}"), "{refused}");
    }
}
