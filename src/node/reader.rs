//! The reader thread of one gate link: the handshake, then the loop that
//! takes messages from the link's [`Inbox`] and runs handlers inline or
//! hands them to the workers.
//!
//! The top of the link side of the SDK: it joins the link to the gate
//! client's registry and runs handlers, so it may use every layer below.
//! It must not accept connections or own threads other than its own (the
//! server starts it) and never decodes frames itself (the inbox does).

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tracing::{debug, info, warn};

use super::context::{run_handler, Context};
use super::error::NodeError;
use super::event::{run_event_handler, EventContext};
use super::gate_client::GateClient;
use super::inbox::{Inbox, Next, MAX_QUEUED};
use super::link_handle::{Link, Writer};
use super::messages::{call_msg, pong_msg, push_msg, snapshot_op};
use super::options::{Options, DEFAULT_IDLE_TIMEOUT, HANDSHAKE_TIMEOUT};
use super::pending;
use super::sequences::LinkSeqs;
use super::snapshot::{run_snapshot_handler, SnapshotPage};
use super::stream::LinkStream;
use super::types::EventKind;
use super::worker::{Job, Pool, Work};
use crate::ids::{SessionId, ShardId};
use crate::link::proto::{to_node, Deliver, Event, GateHello, Snapshot};
use crate::link::{BatchBuf, LinkError, PROTOCOL_VERSION};

/// What a link's reader thread uses of its node.
pub(crate) struct ReaderEnv<'a> {
    /// Handlers, limits, and what the handshake announces.
    pub(crate) options: &'a Options,
    /// The registry this link joins, and the client handlers call through.
    pub(crate) gates: &'a GateClient,
    /// The workers; `None` with `workers(0)` (handlers run on the reader).
    pub(crate) pool: Option<Arc<Pool>>,
    /// Set once the node shuts down (changes only how a link's end is logged).
    pub(crate) stop: &'a AtomicBool,
}

/// Body of a link's reader thread: handshake, then serve until the gate
/// closes the link, it breaks the protocol, or the node shuts down.
pub(crate) fn serve(env: ReaderEnv<'_>, stream: LinkStream, peer: String, id: u64) {
    let inbox = Inbox::new(
        stream,
        env.options.max_frame_bytes,
        env.gates.pending_calls(),
    );
    let waker = inbox.waker();
    let mut reader = Reader {
        env,
        peer: peer.clone(),
        inbox: Rc::new(RefCell::new(inbox)),
    };
    // From here on, calls made on this thread keep reading this link.
    let _reading = pending::reader_thread(reader.inbox.clone(), waker);
    let (link, epoch) = match reader.handshake() {
        Ok(up) => up,
        Err(e) => {
            warn!(%peer, link = id, error = %e, "node: link handshake failed");
            return;
        }
    };
    let (gate, shard) = (&link.gate_id, link.shard.0);
    let seqs = reader
        .env
        .gates
        .event_seqs()
        .open(gate.clone(), shard, epoch);
    let r = reader.run(&link, &seqs);
    reader.env.gates.remove(&link);
    link.close();
    match r {
        _ if reader.env.stop.load(Ordering::SeqCst) => {
            info!(%peer, %gate, shard, "node: link down (node shutting down)");
        }
        Ok(()) => info!(%peer, %gate, shard, "node: link down (gate closed it)"),
        Err(e @ (NodeError::Link(_) | NodeError::IdleTimeout(_))) => {
            warn!(%peer, %gate, shard, error = %e, "node: link closed");
        }
        Err(e) => info!(%peer, %gate, shard, error = %e, "node: link down"),
    }
}

struct Reader<'a> {
    env: ReaderEnv<'a>,
    peer: String,
    /// Also registered with [`pending::reader_thread`], so calls made on
    /// this thread read it while they wait; never borrowed while a handler
    /// runs.
    inbox: Rc<RefCell<Inbox>>,
}

impl Reader<'_> {
    /// Reads `GateHello`, answers `NodeHello` and registers the link; returns
    /// it with the gate's epoch. The rest of the first batch stays queued
    /// for [`Reader::run`].
    fn handshake(&mut self) -> Result<(Arc<Link>, u64), NodeError> {
        let mut inbox = self.inbox.borrow_mut();
        let stream = inbox.stream().try_clone()?;
        stream.set_nodelay()?;
        stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
        let hello = match inbox.first_frame(HANDSHAKE_TIMEOUT)? {
            Some(to_node::Msg::Hello(h)) => h,
            _ => return Err(LinkError::Protocol("first message is not GateHello").into()),
        };
        let (shard, shard_count) = check_hello(&hello)?;
        let options = self.env.options;
        stream.set_read_timeout(options.idle_timeout)?;
        // Never unbounded: a gate that stops reading must not hold the
        // writing thread (a worker, or another link's reader) for good.
        stream.set_write_timeout(Some(options.idle_timeout.unwrap_or(DEFAULT_IDLE_TIMEOUT)))?;
        // The NodeHello goes first on the wire even though the link is
        // visible to pushers before it is written: the writer starts corked.
        // Registering before the hello is written means a gate that has the
        // hello can count on the link being known.
        let frame_limit = match hello.max_frame_bytes as usize {
            0 => options.max_frame_bytes,
            gate => gate.min(options.max_frame_bytes),
        };
        let writer = Writer::corked(
            stream,
            &options.node_hello(self.env.gates.state()),
            frame_limit,
            options.max_write_backlog,
        );
        let link = Arc::new(Link::new(
            hello.gate_id.into(),
            ShardId(shard),
            shard_count,
            frame_limit,
            writer,
        ));
        if let Some(old) = self.env.gates.insert(link.clone()) {
            warn!(gate = %link.gate_id, shard, "node: gate reopened a link, closing the old one");
            old.close();
        }
        if link.uncork().is_err() {
            self.env.gates.remove(&link);
            return Err(io::Error::from(io::ErrorKind::BrokenPipe).into());
        }
        inbox.set_link(link.clone());
        info!(
            peer = %self.peer,
            gate = %link.gate_id,
            shard,
            shards = hello.shards,
            epoch_ms = hello.epoch_ms,
            request_timeout_ms = hello.request_timeout_ms,
            "node: link up"
        );
        Ok((link, hello.epoch_ms))
    }

    /// Serves the link until EOF (`Ok`) or an error.
    fn run(&mut self, link: &Arc<Link>, seqs: &LinkSeqs<'_>) -> Result<(), NodeError> {
        let mut out = BatchBuf::new(link.frame_limit);
        let idle = self.env.options.idle_timeout.unwrap_or(Duration::MAX);
        loop {
            // The borrow ends before the message is handled: handlers may
            // pump this inbox while they wait for a call.
            let next = self.inbox.borrow_mut().next();
            match next? {
                Next::Msg(m) => self.handle(link, seqs, m, &mut out)?,
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
        seqs: &LinkSeqs<'_>,
        msg: to_node::Msg,
        out: &mut BatchBuf,
    ) -> Result<(), NodeError> {
        match msg {
            to_node::Msg::Deliver(d) => self.deliver(link, d, out),
            to_node::Msg::Event(e) => {
                self.event(link, seqs, e, out);
                Ok(())
            }
            to_node::Msg::Ping(p) => {
                out.push(&pong_msg(p.nonce));
                Ok(())
            }
            to_node::Msg::Snapshot(s) => {
                seqs.snapshot(&s.event_seqs, s.last);
                self.snapshot(link, s);
                Ok(())
            }
            to_node::Msg::Pong(_) => Ok(()),
            // Normally resolved as soon as it is decoded (see Inbox).
            to_node::Msg::Result(r) => {
                self.env.gates.resolve(r);
                Ok(())
            }
            to_node::Msg::Hello(_) => {
                Err(LinkError::Protocol("GateHello after the handshake").into())
            }
        }
    }

    fn deliver(&self, link: &Arc<Link>, d: Deliver, out: &mut BatchBuf) -> Result<(), NodeError> {
        let Some(handler) = self.env.options.handler(d.route) else {
            debug!(route = d.route, session = %SessionId(d.session_id), "node: no handler for route");
            // The answer to the request, if the gate tracks it.
            out.push(&push_msg(
                d.session_id,
                d.route,
                d.seq,
                Bytes::new(),
                u32::from(crate::codec::ext::NO_ROUTE),
                d.request_id,
            ));
            return Ok(());
        };
        match &self.env.pool {
            None => {
                let mut ctx = Context::from_deliver(d, link, out, self.env.gates);
                run_handler(handler, &mut ctx);
            }
            Some(pool) => self.dispatch(pool, link.clone(), Work::Deliver(d), out),
        }
        Ok(())
    }

    /// Checks the event's number (here, in link order), then runs it or
    /// hands it to its worker. After a gap, asks for a snapshot if the
    /// node handles them; it is batched with the replies, and its pages
    /// will follow the events already on the way.
    fn event(&self, link: &Arc<Link>, seqs: &LinkSeqs<'_>, e: Event, out: &mut BatchBuf) {
        let Some(kind) = EventKind::from_proto(e.kind) else {
            debug!(kind = e.kind, "node: event of an unknown kind ignored");
            return;
        };
        if seqs.event(kind, e.seq, self.env.options.snapshot.is_some()) {
            info!(gate = %link.gate_id, shard = link.shard.0, "node: asking for a snapshot after lost events");
            out.push(&call_msg(0, snapshot_op()));
        }
        let Some(handler) = self.env.options.event_handler(kind) else {
            debug!(%kind, "node: event nobody subscribed to ignored");
            return;
        };
        match &self.env.pool {
            None => {
                let mut ctx = EventContext::from_event(kind, e, link, out, self.env.gates);
                run_event_handler(handler, &mut ctx);
            }
            Some(pool) => self.dispatch(pool, link.clone(), Work::Event(kind, e), out),
        }
    }

    /// Runs the snapshot handler on this thread, whatever the workers: the
    /// events that follow the page on the link must not run before it.
    fn snapshot(&self, link: &Link, s: Snapshot) {
        let Some(handler) = &self.env.options.snapshot else {
            debug!(gate = %link.gate_id, shard = link.shard.0, "node: snapshot page without a handler ignored");
            return;
        };
        let mut page = SnapshotPage::new(link.gate_id.clone(), link.shard, s);
        run_snapshot_handler(handler, &mut page);
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
            if inbox.queued() >= MAX_QUEUED || !inbox.pump(Duration::ZERO, MAX_QUEUED) {
                drop(inbox);
                return self.wait_for_room(pool, job);
            }
        }
    }

    /// Waits for room in the worker's queue with the inbox full (reading no
    /// more). Gives the job up when the node stops, or when it is a request
    /// of a link that closed meanwhile ([`Job::is_stale`]).
    fn wait_for_room(&self, pool: &Pool, mut job: Job) {
        loop {
            job = match pool.send_timeout(job, Duration::from_millis(100)) {
                Ok(()) => return,
                Err(job) => job,
            };
            if self.env.stop.load(Ordering::SeqCst) || job.is_stale() {
                debug!(gate = %job.link.gate_id, shard = job.link.shard.0,
                    "node: work dropped unrun: the node stops, or its link closed");
                return;
            }
        }
    }
}

/// The shard of a `GateHello` and the gate's shard count (at least enough
/// for that shard), if this build speaks its protocol version.
fn check_hello(hello: &GateHello) -> Result<(u16, u16), NodeError> {
    if hello.version != PROTOCOL_VERSION {
        return Err(NodeError::Version(hello.version));
    }
    let shard = u16::try_from(hello.shard)
        .map_err(|_| LinkError::Protocol("GateHello.shard does not fit 16 bits"))?;
    let shard_count = u16::try_from(hello.shards)
        .map_err(|_| LinkError::Protocol("GateHello.shards does not fit 16 bits"))?
        .max(shard + 1);
    Ok((shard, shard_count))
}
