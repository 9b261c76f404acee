//! One gate link: the handshake and the reader thread that decodes frames and
//! runs (or dispatches) handlers.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use prost::Message;
use tracing::{debug, info, warn};

use super::builder::{Settings, HANDSHAKE_TIMEOUT};
use super::context::{run_handler, Context};
use super::worker::{Job, Pool};
use super::writer::{Closed, Writer};
use super::{NodeError, Shared};
use crate::ids::{SessionId, ShardId};
use crate::link::proto::{to_gate, to_node, Deliver, NodeHello, Pong, Push, ToGate, ToNodeBatch};
use crate::link::{decode_frame, BatchBuf, LinkError, PROTOCOL_VERSION};

/// Bytes asked of each `recv`.
const READ_CHUNK: usize = 64 * 1024;

/// A link that completed its handshake: who is on the other side, and the
/// shared write half.
pub(crate) struct Link {
    /// `GateHello.gate_id`.
    pub(crate) gate_id: Arc<str>,
    /// `GateHello.shard`: sessions of this shard are reachable here.
    pub(crate) shard: ShardId,
    writer: Writer,
}

impl Link {
    /// Sends one `Push` (batched with whatever else is pending).
    pub(crate) fn push(
        &self,
        session: SessionId,
        route: i32,
        seq: i32,
        payload: Bytes,
        ext: u32,
    ) -> Result<(), NodeError> {
        self.writer
            .send(&push_msg(session.0, route, seq, payload, ext))
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
}

/// Builds a `ToGate::Push`.
pub(crate) fn push_msg(session_id: u64, route: i32, seq: i32, payload: Bytes, ext: u32) -> ToGate {
    ToGate {
        msg: Some(to_gate::Msg::Push(Push {
            session_id,
            route,
            seq,
            payload,
            ext,
        })),
    }
}

/// Body of a link's reader thread: handshake, then serve until the gate
/// closes the link, it breaks the protocol, or the node shuts down.
pub(crate) fn serve(
    shared: &Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    pool: Option<Arc<Pool>>,
) {
    let mut reader = Reader {
        shared,
        settings: &shared.settings,
        stream,
        peer,
        buf: BytesMut::with_capacity(READ_CHUNK),
        pool,
    };
    let link = match reader.handshake() {
        Ok(link) => link,
        Err(e) => {
            warn!(%peer, link = id, error = %e, "node: link handshake failed");
            return;
        }
    };
    let (gate, shard) = (&link.gate_id, link.shard.0);
    let r = reader.run(&link);
    shared.gates.remove(&link);
    link.writer.close();
    let stopping = shared.stop.load(std::sync::atomic::Ordering::SeqCst);
    match r {
        _ if stopping => info!(%peer, %gate, shard, "node: link down (node shutting down)"),
        Ok(()) => info!(%peer, %gate, shard, "node: link down (gate closed it)"),
        Err(e @ (NodeError::Link(_) | NodeError::IdleTimeout(_))) => {
            warn!(%peer, %gate, shard, error = %e, "node: link closed");
        }
        Err(e) => info!(%peer, %gate, shard, error = %e, "node: link down"),
    }
}

struct Reader<'a> {
    shared: &'a Arc<Shared>,
    settings: &'a Settings,
    stream: TcpStream,
    peer: SocketAddr,
    /// Received bytes not yet decoded (a partial frame at most, between turns).
    buf: BytesMut,
    pool: Option<Arc<Pool>>,
}

impl Reader<'_> {
    /// Reads `GateHello`, answers `NodeHello`, registers the link, and
    /// handles whatever else the first batch carried.
    fn handshake(&mut self) -> Result<Arc<Link>, NodeError> {
        self.stream.set_nodelay(true)?;
        self.stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
        let frame = loop {
            if let Some(f) = decode_frame(&mut self.buf, self.settings.max_frame_bytes)? {
                break f;
            }
            if self.recv(HANDSHAKE_TIMEOUT)? == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
            }
        };
        let batch = ToNodeBatch::decode(frame).map_err(LinkError::from)?;
        let mut msgs = batch.msgs.into_iter();
        let hello = match msgs.next().and_then(|m| m.msg) {
            Some(to_node::Msg::Hello(h)) => h,
            _ => return Err(LinkError::Protocol("first message is not GateHello").into()),
        };
        if hello.version != PROTOCOL_VERSION {
            return Err(NodeError::Version(hello.version));
        }
        let shard = u16::try_from(hello.shard)
            .map_err(|_| LinkError::Protocol("GateHello.shard does not fit 16 bits"))?;

        let hello_reply = ToGate {
            msg: Some(to_gate::Msg::Hello(NodeHello {
                service: self.settings.service.clone(),
                node_id: self.settings.node_id.clone(),
                routes: self.settings.routes.iter().map(|(r, _)| *r).collect(),
                version: PROTOCOL_VERSION,
                events: Vec::new(),
            })),
        };
        let timeout = self.settings.idle_timeout;
        self.stream.set_read_timeout(timeout)?;
        self.stream.set_write_timeout(timeout)?;
        // The NodeHello goes first on the wire even though the link is
        // visible to pushers before it is written: the writer starts corked.
        // Registering before the hello is written means a gate that has the
        // hello can count on the link being known.
        let link = Arc::new(Link {
            gate_id: hello.gate_id.into(),
            shard: ShardId(shard),
            writer: Writer::corked(
                self.stream.try_clone()?,
                &hello_reply,
                self.settings.max_frame_bytes,
                self.settings.max_write_backlog,
            ),
        });
        if let Some(old) = self.shared.gates.insert(link.clone()) {
            warn!(gate = %link.gate_id, shard, "node: gate reopened a link, closing the old one");
            old.writer.close();
        }
        if link.writer.uncork().is_err() {
            self.shared.gates.remove(&link);
            return Err(io::Error::from(io::ErrorKind::BrokenPipe).into());
        }
        info!(
            peer = %self.peer,
            gate = %link.gate_id,
            shard,
            shards = hello.shards,
            "node: link up"
        );
        let mut out = BatchBuf::new(self.settings.max_frame_bytes);
        for m in msgs {
            if let Err(e) = self.handle(&link, m.msg, &mut out) {
                self.shared.gates.remove(&link);
                link.writer.close();
                return Err(e);
            }
        }
        link.send_frames(out.take());
        Ok(link)
    }

    /// Serves the link until EOF (`Ok`) or an error.
    fn run(&mut self, link: &Arc<Link>) -> Result<(), NodeError> {
        let mut out = BatchBuf::new(self.settings.max_frame_bytes);
        let idle = self.settings.idle_timeout.unwrap_or(Duration::MAX);
        loop {
            if self.recv(idle)? == 0 {
                return Ok(());
            }
            while let Some(frame) = decode_frame(&mut self.buf, self.settings.max_frame_bytes)? {
                let batch = ToNodeBatch::decode(frame).map_err(LinkError::from)?;
                for m in batch.msgs {
                    self.handle(link, m.msg, &mut out)?;
                }
            }
            if !out.is_empty() {
                link.send_frames(out.take());
            }
        }
    }

    /// Handles one message from the gate; replies go into `out`.
    fn handle(
        &self,
        link: &Arc<Link>,
        msg: Option<to_node::Msg>,
        out: &mut BatchBuf,
    ) -> Result<(), NodeError> {
        match msg {
            Some(to_node::Msg::Deliver(d)) => self.deliver(link, d, out),
            Some(to_node::Msg::Ping(p)) => {
                out.push(&ToGate {
                    msg: Some(to_gate::Msg::Pong(Pong { nonce: p.nonce })),
                });
                Ok(())
            }
            Some(to_node::Msg::Pong(_)) => Ok(()),
            // Events and call results: handled by the session API (in progress).
            Some(to_node::Msg::Event(_)) | Some(to_node::Msg::Result(_)) => Ok(()),
            Some(to_node::Msg::Hello(_)) => {
                Err(LinkError::Protocol("GateHello after the handshake").into())
            }
            // A message kind added by a newer gate: skip it.
            None => Ok(()),
        }
    }

    fn deliver(&self, link: &Arc<Link>, d: Deliver, out: &mut BatchBuf) -> Result<(), NodeError> {
        let Some(handler) = self.settings.handler(d.route) else {
            debug!(route = d.route, session = %SessionId(d.session_id), "node: no handler for route");
            out.push(&push_msg(
                d.session_id,
                d.route,
                d.seq,
                Bytes::new(),
                u32::from(crate::codec::ext::NO_ROUTE),
            ));
            return Ok(());
        };
        let Some(pool) = &self.pool else {
            let mut ctx = Context::new(d, link, out, &self.shared.gates);
            run_handler(handler, &mut ctx);
            return Ok(());
        };
        let job = Job {
            link: link.clone(),
            deliver: d,
        };
        match pool.try_send(job) {
            Ok(()) => Ok(()),
            Err(job) => {
                // The worker's queue is full: send what we have (pongs) so
                // the gate keeps hearing from us, then wait for room.
                if !out.is_empty() {
                    link.send_frames(out.take());
                }
                pool.send(job);
                Ok(())
            }
        }
    }

    /// One `recv` of up to [`READ_CHUNK`] bytes appended to `buf`; 0 = EOF.
    fn recv(&mut self, timeout: Duration) -> Result<usize, NodeError> {
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
                    0,
                )
            };
            if n >= 0 {
                let n = n as usize;
                // SAFETY: the kernel initialised these `n` bytes.
                unsafe { self.buf.set_len(self.buf.len() + n) };
                return Ok(n);
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                    return Err(NodeError::IdleTimeout(timeout))
                }
                _ => return Err(e.into()),
            }
        }
    }
}
