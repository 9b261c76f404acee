//! The reader thread of one gate link: the handshake, then the loop that
//! takes messages from the link's [`Inbox`] and runs handlers inline or
//! hands them to the workers.

use std::cell::RefCell;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tracing::{debug, info, warn};

use super::builder::{Settings, HANDSHAKE_TIMEOUT};
use super::context::{run_handler, Context};
use super::event::{run_event_handler, EventContext};
use super::inbox::{Inbox, Next};
use super::link_handle::{Link, Writer};
use super::messages::{pong_msg, push_msg};
use super::pending;
use super::worker::{Job, Pool, Work};
use super::{EventKind, NodeError, Shared};
use crate::ids::{SessionId, ShardId};
use crate::link::proto::{to_gate, to_node, Deliver, Event, NodeHello, ToGate};
use crate::link::{BatchBuf, LinkError, PROTOCOL_VERSION};

/// While a worker's queue is full, the reader keeps reading its link (to
/// resolve call results workers wait for) until this many messages are
/// queued in its inbox; then it simply waits.
const MAX_QUEUED_WHILE_FULL: usize = 4096;

/// Body of a link's reader thread: handshake, then serve until the gate
/// closes the link, it breaks the protocol, or the node shuts down.
pub(crate) fn serve(
    shared: &Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    pool: Option<Arc<Pool>>,
) {
    let inbox = Inbox::new(
        stream,
        shared.settings.max_frame_bytes,
        shared.gates.pending_calls(),
    );
    let waker = inbox.waker();
    let mut reader = Reader {
        shared,
        settings: &shared.settings,
        peer,
        inbox: Rc::new(RefCell::new(inbox)),
        pool,
    };
    // From here on, calls made on this thread keep reading this link.
    let _reading = pending::reader_thread(reader.inbox.clone(), waker);
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
    link.close();
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
    peer: SocketAddr,
    /// Also registered with [`pending::reader_thread`], so calls made on
    /// this thread read it while they wait; never borrowed while a handler
    /// runs.
    inbox: Rc<RefCell<Inbox>>,
    pool: Option<Arc<Pool>>,
}

impl Reader<'_> {
    /// Reads `GateHello`, answers `NodeHello` and registers the link. The
    /// rest of the first batch stays queued for [`Reader::run`].
    fn handshake(&mut self) -> Result<Arc<Link>, NodeError> {
        let mut inbox = self.inbox.borrow_mut();
        let stream = inbox.stream().try_clone()?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
        let hello = match inbox.first_frame(HANDSHAKE_TIMEOUT)? {
            Some(to_node::Msg::Hello(h)) => h,
            _ => return Err(LinkError::Protocol("first message is not GateHello").into()),
        };
        if hello.version != PROTOCOL_VERSION {
            return Err(NodeError::Version(hello.version));
        }
        let shard = u16::try_from(hello.shard)
            .map_err(|_| LinkError::Protocol("GateHello.shard does not fit 16 bits"))?;
        let shard_count = u16::try_from(hello.shards)
            .map_err(|_| LinkError::Protocol("GateHello.shards does not fit 16 bits"))?
            .max(shard + 1);

        let hello_reply = ToGate {
            msg: Some(to_gate::Msg::Hello(NodeHello {
                service: self.settings.service.clone(),
                node_id: self.settings.node_id.clone(),
                routes: self.settings.routes.iter().map(|(r, _)| *r).collect(),
                version: PROTOCOL_VERSION,
                events: self
                    .settings
                    .event_kinds()
                    .map(EventKind::to_proto)
                    .collect(),
                max_frame_bytes: u32::try_from(self.settings.max_frame_bytes).unwrap_or(u32::MAX),
            })),
        };
        let timeout = self.settings.idle_timeout;
        stream.set_read_timeout(timeout)?;
        stream.set_write_timeout(timeout)?;
        // The NodeHello goes first on the wire even though the link is
        // visible to pushers before it is written: the writer starts corked.
        // Registering before the hello is written means a gate that has the
        // hello can count on the link being known.
        let frame_limit = match hello.max_frame_bytes as usize {
            0 => self.settings.max_frame_bytes,
            gate => gate.min(self.settings.max_frame_bytes),
        };
        let writer = Writer::corked(
            stream,
            &hello_reply,
            frame_limit,
            self.settings.max_write_backlog,
        );
        let link = Arc::new(Link::new(
            hello.gate_id.into(),
            ShardId(shard),
            shard_count,
            frame_limit,
            writer,
        ));
        if let Some(old) = self.shared.gates.insert(link.clone()) {
            warn!(gate = %link.gate_id, shard, "node: gate reopened a link, closing the old one");
            old.close();
        }
        if link.uncork().is_err() {
            self.shared.gates.remove(&link);
            return Err(io::Error::from(io::ErrorKind::BrokenPipe).into());
        }
        inbox.set_link(link.clone());
        info!(
            peer = %self.peer,
            gate = %link.gate_id,
            shard,
            shards = hello.shards,
            "node: link up"
        );
        Ok(link)
    }

    /// Serves the link until EOF (`Ok`) or an error.
    fn run(&mut self, link: &Arc<Link>) -> Result<(), NodeError> {
        let mut out = BatchBuf::new(link.frame_limit);
        let idle = self.settings.idle_timeout.unwrap_or(Duration::MAX);
        loop {
            // The borrow ends before the message is handled: handlers may
            // pump this inbox while they wait for a call.
            let next = self.inbox.borrow_mut().next();
            match next? {
                Next::Msg(m) => self.handle(link, m, &mut out)?,
                Next::Eof => return Ok(()),
                Next::Empty => {
                    // Everything read so far is handled: one write for it all.
                    if !out.is_empty() {
                        link.send_frames(out.take());
                    }
                    if self.inbox.borrow_mut().fill(idle)? == 0 {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Handles one message from the gate; replies go into `out`.
    fn handle(
        &self,
        link: &Arc<Link>,
        msg: to_node::Msg,
        out: &mut BatchBuf,
    ) -> Result<(), NodeError> {
        match msg {
            to_node::Msg::Deliver(d) => self.deliver(link, d, out),
            to_node::Msg::Event(e) => {
                self.event(link, e, out);
                Ok(())
            }
            to_node::Msg::Ping(p) => {
                out.push(&pong_msg(p.nonce));
                Ok(())
            }
            to_node::Msg::Pong(_) => Ok(()),
            // Normally resolved as soon as it is decoded (see Inbox).
            to_node::Msg::Result(r) => {
                self.shared.gates.resolve(r);
                Ok(())
            }
            to_node::Msg::Hello(_) => {
                Err(LinkError::Protocol("GateHello after the handshake").into())
            }
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
        match &self.pool {
            None => {
                let mut ctx = Context::from_deliver(d, link, out, &self.shared.gates);
                run_handler(handler, &mut ctx);
            }
            Some(pool) => self.dispatch(pool, link.clone(), Work::Deliver(d), out),
        }
        Ok(())
    }

    fn event(&self, link: &Arc<Link>, e: Event, out: &mut BatchBuf) {
        let Some(kind) = EventKind::from_proto(e.kind) else {
            debug!(kind = e.kind, "node: event of an unknown kind ignored");
            return;
        };
        let Some(handler) = self.settings.event_handler(kind) else {
            debug!(%kind, "node: event nobody subscribed to ignored");
            return;
        };
        match &self.pool {
            None => {
                let mut ctx = EventContext::from_event(kind, e, link, out, &self.shared.gates);
                run_event_handler(handler, &mut ctx);
            }
            Some(pool) => self.dispatch(pool, link.clone(), Work::Event(kind, e), out),
        }
    }

    /// Hands work to the worker of its session. When that worker's queue is
    /// full, keeps reading the link meanwhile (bounded), so that results of
    /// calls the workers are blocked on still arrive.
    fn dispatch(&self, pool: &Pool, link: Arc<Link>, work: Work, out: &mut BatchBuf) {
        let mut job = match pool.try_send(Job { link, work }) {
            Ok(()) => return,
            Err(job) => job,
        };
        // Send what we have (pongs, replies of inline work) so the gate
        // keeps hearing from us, then wait for room.
        if !out.is_empty() {
            job.link.send_frames(out.take());
        }
        loop {
            job = match pool.send_timeout(job, Duration::from_millis(1)) {
                Ok(()) => return,
                Err(job) => job,
            };
            let mut inbox = self.inbox.borrow_mut();
            if inbox.queued() >= MAX_QUEUED_WHILE_FULL
                || !inbox.pump(Duration::ZERO, MAX_QUEUED_WHILE_FULL)
            {
                drop(inbox);
                pool.send(job);
                return;
            }
        }
    }
}
