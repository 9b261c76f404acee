//! [`EventContext`]: what an event handler sees of one session event.
//!
//! Events run where the session's requests run (inline on the link reader,
//! or on worker `hash(session)`), so a handler sees a session's `Connect`
//! before its first request and its `Disconnect` after its last.

use std::net::{IpAddr, SocketAddr};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use bytes::Bytes;
use tracing::error;

use super::builder::EventHandler;
use super::context::{origin_methods, Origin};
use super::link_handle::Link;
use super::messages::push_msg;
use super::{CloseReason, EventKind, GateClient};
use crate::ids::{SessionId, UserId};
use crate::link::proto::Event;
use crate::link::BatchBuf;

/// One session event being handled (see
/// [`NodeBuilder::on_event`](super::NodeBuilder::on_event)).
///
/// Which fields are set depends on the kind: `Connect` carries the client's
/// address and transport, `Bind`/`Unbind` the uid, `Disconnect` the uid (0 if
/// none was bound) and the reason. Packets to the session and the session
/// shortcuts work as in [`Context`](super::Context); after `Disconnect` the
/// session is gone (blocking calls on it answer `NotFound`).
pub struct EventContext<'a> {
    kind: EventKind,
    event: Event,
    origin: Origin<'a>,
}

impl<'a> EventContext<'a> {
    pub(crate) fn new(
        kind: EventKind,
        event: Event,
        link: &'a Arc<Link>,
        out: &'a mut BatchBuf,
        gates: &'a GateClient,
    ) -> Self {
        EventContext {
            kind,
            event,
            origin: Origin { link, out, gates },
        }
    }

    /// What happened.
    pub fn kind(&self) -> EventKind {
        self.kind
    }

    /// The session it happened to.
    pub fn session(&self) -> SessionId {
        SessionId(self.event.session_id)
    }

    fn this_session(&self) -> SessionId {
        self.session()
    }

    fn set_uid(&mut self, uid: UserId) {
        self.event.uid = uid.0;
    }

    /// `Bind`: the user bound; `Unbind`: the user unbound; `Disconnect`: the
    /// user bound when the session ended (`UserId(0)` if none).
    pub fn uid(&self) -> UserId {
        UserId(self.event.uid)
    }

    /// `Disconnect`: why the session ended; otherwise `Unspecified`.
    pub fn reason(&self) -> CloseReason {
        CloseReason::from_proto(self.event.reason)
    }

    /// `Connect`: the client's IP address as text (empty otherwise).
    pub fn ip(&self) -> &str {
        &self.event.ip
    }

    /// `Connect`: the client's port (0 otherwise).
    pub fn port(&self) -> u16 {
        self.event.port as u16
    }

    /// `Connect`: the client's address, if the gate sent a valid one.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        let ip: IpAddr = self.event.ip.parse().ok()?;
        Some(SocketAddr::new(ip, self.port()))
    }

    /// `Connect`: the transport, e.g. `"tcp"` or `"ws"` (empty otherwise).
    pub fn network(&self) -> &str {
        &self.event.network
    }

    /// Sends a packet to the event's session, batched like a reply (useful
    /// on `Connect` and `Bind`; after `Disconnect` the gate drops it).
    pub fn reply_with(&mut self, route: i32, seq: i32, payload: impl Into<Bytes>) {
        let msg = push_msg(self.event.session_id, route, seq, payload.into(), 0);
        self.origin.out.push(&msg);
    }

    origin_methods!();
}

/// Runs `handler`; a panic is logged and the link keeps serving.
pub(crate) fn run_event_handler(handler: &EventHandler, ctx: &mut EventContext<'_>) {
    if panic::catch_unwind(AssertUnwindSafe(|| handler(ctx))).is_err() {
        error!(
            kind = %ctx.kind(),
            session = %ctx.session(),
            "node: event handler panicked; event dropped"
        );
    }
}
