//! [`Link`]: what the rest of the SDK holds of one gate link once its
//! handshake is done: who is on the other side (gate id, shard) and the
//! link's write half, shared by every thread that sends to that gate shard.
//!
//! # Writing
//!
//! No writer thread: the first producer to find the writer idle becomes the
//! *flusher* and writes on its own thread; producers arriving while a write
//! is in flight append to the pending batch and return at once; the flusher
//! loops until nothing is pending, sending everything that piled up in one
//! `writev`. One syscall per batch under load, no thread hop without load.
//!
//! This module must not read the link (that is the inbox's and the reader's)
//! nor know which link a message should go on (the gate client's).

use std::io::{self, IoSlice, Write};
use std::net::Shutdown;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use tracing::debug;

use super::error::NodeError;
use super::messages::push_msg;
use super::stream::LinkStream;
use crate::ids::{SessionId, ShardId};
use crate::link::proto::ToGate;
use crate::link::BatchBuf;

/// A link that completed its handshake: who is on the other side, and the
/// shared write half.
pub(crate) struct Link {
    /// `GateHello.gate_id`.
    pub(crate) gate_id: Arc<str>,
    /// `GateHello.shard`: sessions of this shard are reachable here.
    pub(crate) shard: ShardId,
    /// `GateHello.shards`: how many shards the gate runs.
    pub(crate) shard_count: u16,
    /// Frames towards this gate stay below this size: the smaller of our
    /// `max_frame_bytes` and the gate's (`GateHello.max_frame_bytes`).
    pub(crate) frame_limit: usize,
    writer: Writer,
}

impl Link {
    /// The link to `shard` of gate `gate_id`, writing through `writer`
    /// (made [`Writer::corked`] with the handshake's answer).
    pub(crate) fn new(
        gate_id: Arc<str>,
        shard: ShardId,
        shard_count: u16,
        frame_limit: usize,
        writer: Writer,
    ) -> Self {
        Link {
            gate_id,
            shard,
            shard_count,
            frame_limit,
            writer,
        }
    }

    /// Sends one `Push` (batched with whatever else is pending).
    pub(crate) fn push(
        &self,
        session: SessionId,
        route: i32,
        seq: i32,
        payload: Bytes,
        ext: u32,
    ) -> Result<(), NodeError> {
        self.send(&push_msg(session.0, route, seq, payload, ext, 0))
    }

    /// A message carrying `bytes` of payload and text fits this link's
    /// frames without measuring it (the fast path of every reply).
    pub(crate) fn surely_fits(&self, bytes: usize) -> bool {
        bytes + SMALL_FIELDS <= self.frame_limit
    }

    /// `msg` fits this link's frames; else [`NodeError::Invalid`] saying so
    /// (the gate would close a link that sent a larger frame).
    pub(crate) fn fits(&self, msg: &ToGate) -> Result<(), NodeError> {
        let len = prost::Message::encoded_len(msg);
        if len + FRAME_OVERHEAD <= self.frame_limit {
            return Ok(());
        }
        Err(NodeError::Invalid(format!(
            "a message of {len} bytes does not fit the link's frames of at most {} bytes \
             (the gate's link.max_frame_bytes, or NodeBuilder::max_frame_bytes)",
            self.frame_limit
        )))
    }

    /// Sends one message (batched with whatever else is pending);
    /// [`NodeError::NotConnected`] if the link is closed,
    /// [`NodeError::Invalid`] if it is too large for a frame.
    pub(crate) fn send(&self, msg: &ToGate) -> Result<(), NodeError> {
        self.fits(msg)?;
        self.writer
            .send(msg)
            .map_err(|Closed| NodeError::NotConnected {
                shard: self.shard.0,
            })
    }

    /// Sends a whole batch of framed messages; drops it if the link closed.
    pub(crate) fn send_frames(&self, frames: BytesMut) {
        if self.writer.send_frames(frames).is_err() {
            debug!(gate = %self.gate_id, shard = self.shard.0, "node: link closed, replies dropped");
        }
    }

    /// Writes what was sent since the writer was made corked, and lets sends
    /// through from now on.
    pub(crate) fn uncork(&self) -> Result<(), NodeError> {
        self.writer
            .uncork()
            .map_err(|Closed| NodeError::NotConnected {
                shard: self.shard.0,
            })
    }

    /// Closes the link: drops what is pending and shuts the socket, which
    /// wakes its reader and any thread blocked writing.
    pub(crate) fn close(&self) {
        self.writer.close();
    }

    /// The link was closed (by either side, or a failed write).
    pub(crate) fn is_closed(&self) -> bool {
        self.writer.state.lock().unwrap().closed
    }
}

/// A frame's header, a message's field tag and its longest length prefix,
/// with room to spare.
const FRAME_OVERHEAD: usize = 16;

/// More than the fields of a push or reply besides its payload and text take
/// (ids, route, seq, codes and their tags).
const SMALL_FIELDS: usize = 256;

/// Chunks of at most this many buffers go into one `writev`.
const MAX_IOVECS: usize = 64;

/// The write half of a link.
pub(crate) struct Writer {
    stream: LinkStream,
    state: Mutex<State>,
    /// Signalled after each write completes, for producers over the backlog.
    room: Condvar,
    max_backlog: usize,
}

struct State {
    /// Pre-framed chunks in send order (a reader's or worker's whole batch).
    queue: Vec<BytesMut>,
    /// Single messages pushed since the last take, after `queue`.
    batch: BatchBuf,
    /// Bytes in `queue` and `batch` (approximate for `batch`).
    backlog: usize,
    /// A thread is writing; it will pick up whatever is pending.
    flushing: bool,
    /// The socket failed or the link ended: drop everything.
    closed: bool,
}

/// The link is closed; nothing was (or will be) sent.
#[derive(Debug)]
struct Closed;

impl Writer {
    /// A writer holding `first` and nothing is written until
    /// [`Writer::uncork`]: everything sent meanwhile queues behind `first`.
    pub(crate) fn corked(
        stream: LinkStream,
        first: &ToGate,
        max_frame_bytes: usize,
        max_backlog: usize,
    ) -> Self {
        let mut batch = BatchBuf::new(max_frame_bytes);
        batch.push(first);
        Writer {
            stream,
            state: Mutex::new(State {
                queue: Vec::new(),
                batch,
                backlog: 0,
                // Nobody writes until uncork() takes over as the flusher.
                flushing: true,
                closed: false,
            }),
            room: Condvar::new(),
            max_backlog,
        }
    }

    /// Writes what queued up since [`Writer::corked`] and lets sends through.
    fn uncork(&self) -> Result<(), Closed> {
        let mut st = self.state.lock().unwrap();
        st.flushing = false;
        self.flush(st)
    }

    /// Sends one message (batched with whatever else is pending).
    fn send(&self, msg: &ToGate) -> Result<(), Closed> {
        let len = prost::Message::encoded_len(msg) + 6;
        let mut st = self.wait_for_room()?;
        st.batch.push(msg);
        st.backlog += len;
        self.flush(st)
    }

    /// Sends already framed bytes (a [`BatchBuf::take`]) as they are.
    fn send_frames(&self, frames: BytesMut) -> Result<(), Closed> {
        if frames.is_empty() {
            return Ok(());
        }
        let mut st = self.wait_for_room()?;
        if !st.batch.is_empty() {
            // Keep send order: single messages pushed earlier go first.
            let earlier = st.batch.take();
            st.queue.push(earlier);
        }
        st.backlog += frames.len();
        st.queue.push(frames);
        self.flush(st)
    }

    /// Marks the link closed and shuts the socket, waking its reader and any
    /// thread blocked writing.
    fn close(&self) {
        let mut st = self.state.lock().unwrap();
        st.closed = true;
        st.queue.clear();
        st.batch.take();
        st.backlog = 0;
        drop(st);
        self.room.notify_all();
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    fn wait_for_room(&self) -> Result<MutexGuard<'_, State>, Closed> {
        let mut st = self.state.lock().unwrap();
        while st.backlog >= self.max_backlog && st.flushing && !st.closed {
            st = self.room.wait(st).unwrap();
        }
        if st.closed {
            return Err(Closed);
        }
        Ok(st)
    }

    /// Becomes the flusher unless another thread is; then writes until
    /// nothing is pending.
    fn flush<'a>(&'a self, mut st: MutexGuard<'a, State>) -> Result<(), Closed> {
        if st.flushing {
            return Ok(());
        }
        st.flushing = true;
        let mut chunks = Vec::new();
        loop {
            chunks.append(&mut st.queue);
            if !st.batch.is_empty() {
                chunks.push(st.batch.take());
            }
            if chunks.is_empty() {
                st.flushing = false;
                return Ok(());
            }
            st.backlog = 0;
            drop(st);
            let r = write_all(&self.stream, &chunks);
            chunks.clear();
            st = self.state.lock().unwrap();
            self.room.notify_all();
            if let Err(e) = r {
                tracing::debug!(error = %e, "node: link write failed, closing");
                st.flushing = false;
                drop(st);
                self.close();
                return Err(Closed);
            }
            if st.closed {
                st.flushing = false;
                return Err(Closed);
            }
        }
    }
}

/// Writes every chunk, using `writev` for several.
fn write_all(mut stream: &LinkStream, chunks: &[BytesMut]) -> io::Result<()> {
    if let [one] = chunks {
        return stream.write_all(one);
    }
    for group in chunks.chunks(MAX_IOVECS) {
        let mut slices: Vec<IoSlice<'_>> = group.iter().map(|c| IoSlice::new(c)).collect();
        let mut bufs = &mut slices[..];
        while !bufs.is_empty() {
            match stream.write_vectored(bufs) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut bufs, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}
