//! A link's read side: the socket, the bytes not yet decoded, and the
//! messages decoded but not yet handled.
//!
//! The reader thread takes messages one at a time with [`Inbox::next`]. While
//! a handler on that thread waits for a call's answer (handlers inline), or
//! the reader waits for room in a worker's queue, [`Inbox::pump`] keeps
//! reading the same socket: call results are resolved at once, pings
//! answered at once, and everything else is queued behind what was already
//! decoded, so requests and events still run in arrival order. That is why a
//! blocking call from an inline handler cannot deadlock on its own reader.
//!
//! The inbox offers that reading to waiting calls as [`KeepReading`]; the
//! reader registers it with
//! [`pending::reader_thread`](super::pending::reader_thread). It must not run
//! handlers nor write anything but pongs: what to do with a message is the
//! reader's business.

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use prost::Message;
use tracing::warn;

use super::error::NodeError;
use super::link_handle::Link;
use super::messages::pong_msg;
use super::pending::{KeepReading, PendingCalls, Waker};
use super::stream::LinkStream;
use crate::link::proto::{to_node, ToNodeBatch};
use crate::link::{decode_frame, LinkError};

/// A message with no field set: a protocol error (docs/node-protocol.md §1),
/// which closes the link.
const EMPTY: LinkError = LinkError::Protocol("a message from the gate with no field set");

/// Messages an inbox takes in while its reader cannot return to its loop (a
/// handler inline waiting for a call's answer, or every worker busy); past
/// that it stops reading the socket, so a gate sending faster than the
/// handlers run is held back by the link instead of growing the node's
/// memory. A call whose answer is stuck behind them times out.
pub(crate) const MAX_QUEUED: usize = 4096;

/// Bytes asked of each `recv`.
const READ_CHUNK: usize = 64 * 1024;

/// What [`Inbox::next`] found.
pub(crate) enum Next {
    /// A message to handle.
    Msg(to_node::Msg),
    /// Nothing buffered: flush replies, then [`Inbox::fill`].
    Empty,
    /// The gate closed the link (seen while pumping).
    Eof,
}

/// The read side of one link (see the module docs).
pub(crate) struct Inbox {
    stream: LinkStream,
    /// Received bytes not yet decoded (a partial frame at most, between turns).
    buf: BytesMut,
    /// Decoded messages not yet handled, in arrival order.
    queue: VecDeque<to_node::Msg>,
    max_frame_bytes: usize,
    /// Where call results go as soon as they are decoded.
    calls: Arc<PendingCalls>,
    /// Set after the handshake; pongs sent while pumping go there.
    link: Option<Arc<Link>>,
    /// Wakes this thread's pump when another reader resolves its call.
    /// `None` if no eventfd could be made: the pump then polls in slices.
    waker: Option<Arc<Waker>>,
    /// The socket ended (EOF: `None` inside) or failed while pumping; the
    /// reader returns it once the queue is drained.
    ended: Option<Option<NodeError>>,
}

impl Inbox {
    /// The read side of `stream`; results go to `calls` as soon as decoded.
    pub(crate) fn new(
        stream: LinkStream,
        max_frame_bytes: usize,
        calls: Arc<PendingCalls>,
    ) -> Self {
        let waker = match Waker::new() {
            Ok(w) => Some(Arc::new(w)),
            Err(e) => {
                warn!(error = %e, "node: no eventfd for the link reader; calls from inline handlers poll");
                None
            }
        };
        Inbox {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK),
            queue: VecDeque::new(),
            max_frame_bytes,
            calls,
            link: None,
            waker,
            ended: None,
        }
    }

    /// What wakes this inbox's [`Inbox::pump`] when another reader resolves
    /// a call made on this thread.
    pub(crate) fn waker(&self) -> Option<Arc<Waker>> {
        self.waker.clone()
    }

    /// The link's socket (the handshake clones it for the writer).
    pub(crate) fn stream(&self) -> &LinkStream {
        &self.stream
    }

    /// The link the handshake made, where pongs sent while pumping go.
    pub(crate) fn set_link(&mut self, link: Arc<Link>) {
        self.link = Some(link);
    }

    /// Messages waiting to be handled.
    pub(crate) fn queued(&self) -> usize {
        self.queue.len()
    }

    /// The first frame's messages, waiting up to `timeout` for it (the
    /// handshake). Later messages of that frame are queued.
    pub(crate) fn first_frame(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<to_node::Msg>, NodeError> {
        loop {
            if let Some(frame) = decode_frame(&mut self.buf, self.max_frame_bytes)? {
                let batch = ToNodeBatch::decode(frame).map_err(LinkError::from)?;
                let mut msgs = batch.msgs.into_iter().map(|m| m.msg.ok_or(EMPTY));
                let first = msgs.next().transpose()?;
                for m in msgs {
                    self.keep(m?, false);
                }
                return Ok(first);
            }
            if self.fill(timeout)? == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
            }
        }
    }

    /// The next message to handle, decoding buffered frames as needed. An
    /// error or EOF met while pumping is returned once the queue is empty.
    pub(crate) fn next(&mut self) -> Result<Next, NodeError> {
        loop {
            if let Some(m) = self.queue.pop_front() {
                return Ok(Next::Msg(m));
            }
            if let Some(ended) = self.ended.take() {
                return match ended {
                    Some(e) => Err(e),
                    None => Ok(Next::Eof),
                };
            }
            if !self.decode_one(false)? {
                return Ok(Next::Empty);
            }
        }
    }

    /// Decodes one buffered frame into the queue; false if none is complete.
    fn decode_one(&mut self, pumping: bool) -> Result<bool, NodeError> {
        let Some(frame) = decode_frame(&mut self.buf, self.max_frame_bytes)? else {
            return Ok(false);
        };
        let batch = ToNodeBatch::decode(frame).map_err(LinkError::from)?;
        for m in batch.msgs {
            self.keep(m.msg.ok_or(EMPTY)?, pumping);
        }
        Ok(true)
    }

    /// Resolves a result now; answers a ping now if pumping; queues the rest.
    fn keep(&mut self, m: to_node::Msg, pumping: bool) {
        match m {
            to_node::Msg::Result(r) => self.calls.resolve(r),
            to_node::Msg::Ping(p) if pumping => {
                if let Some(link) = &self.link {
                    let _ = link.send(&pong_msg(p.nonce));
                }
            }
            m => self.queue.push_back(m),
        }
    }

    /// One blocking `recv` of up to [`READ_CHUNK`] bytes (the socket's read
    /// timeout applies); 0 = EOF.
    pub(crate) fn fill(&mut self, timeout: Duration) -> Result<usize, NodeError> {
        if let Some(ended) = self.ended.take() {
            return match ended {
                Some(e) => Err(e),
                None => Ok(0),
            };
        }
        self.recv(0).map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => NodeError::IdleTimeout(timeout),
            _ => e.into(),
        })
    }

    fn recv(&mut self, flags: i32) -> io::Result<usize> {
        self.buf.reserve(READ_CHUNK);
        loop {
            let spare = self.buf.spare_capacity_mut();
            // SAFETY: recv writes at most `spare.len()` bytes into memory
            // owned by `buf` and returns how many it wrote; only those are
            // marked initialised below.
            let n = unsafe {
                libc::recv(
                    self.stream.as_raw_fd(),
                    spare.as_mut_ptr().cast(),
                    spare.len(),
                    flags,
                )
            };
            if n >= 0 {
                let n = n as usize;
                // SAFETY: the kernel initialised these `n` bytes.
                unsafe { self.buf.set_len(self.buf.len() + n) };
                return Ok(n);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Reads what arrives within `timeout` (or until this thread's waker
    /// fires) while the reader cannot return to its loop: results resolved,
    /// pings answered, the rest queued. Once `queue_limit` messages are
    /// queued it reads nothing more (the gate then sees the link's back
    /// pressure) and only waits, for the waker or `timeout`. Returns false if
    /// the link can no longer be read (the error is kept for the reader loop).
    pub(crate) fn pump(&mut self, timeout: Duration, queue_limit: usize) -> bool {
        if self.ended.is_some() {
            return false;
        }
        let full = self.queue.len() >= queue_limit;
        if full && timeout.is_zero() {
            return true;
        }
        // Without a waker, wake up regularly to look at the answer channel.
        let timeout = match self.waker {
            Some(_) => timeout,
            None => timeout.min(Duration::from_millis(1)),
        };
        let mut fds = [
            libc::pollfd {
                fd: if full { -1 } else { self.stream.as_raw_fd() },
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.waker.as_ref().map_or(-1, |w| w.raw_fd()),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        // SAFETY: `fds` is a live array of two pollfds; a negative fd is ignored.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
        if n <= 0 {
            return true; // timeout or EINTR: the caller looks again
        }
        if fds[1].revents != 0 {
            if let Some(w) = &self.waker {
                w.drain();
            }
        }
        if fds[0].revents == 0 {
            return true;
        }
        match self.recv(libc::MSG_DONTWAIT) {
            Ok(0) => {
                self.ended = Some(None);
                return false;
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) => {
                self.ended = Some(Some(e.into()));
                return false;
            }
        }
        loop {
            match self.decode_one(true) {
                Ok(true) => {}
                Ok(false) => return true,
                Err(e) => {
                    self.ended = Some(Some(e));
                    return false;
                }
            }
        }
    }
}

impl KeepReading for Inbox {
    fn keep_reading(&mut self, timeout: Duration) -> bool {
        self.pump(timeout, MAX_QUEUED)
    }
}
