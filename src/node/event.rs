//! [`EventContext`]: what an event handler sees of one session event — its
//! kind and the fields the gate sent with it.
//!
//! Events run where the session's requests run (inline on the link reader,
//! or on worker `hash(session)`), so a handler sees a session's `Connect`
//! before its first request and its `Disconnect` after its last.
//!
//! `EventContext` is [`SessionContext`] working on a [`SessionEvent`]:
//! everything about the event's session (its id and user, packets to it,
//! the gate calls about it) is written once there, and this module must not
//! repeat it. Also the event handler type and the one place an event
//! handler is run ([`run_event_handler`]).

use std::net::{IpAddr, SocketAddr};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use tracing::error;

use super::gate_client::GateClient;
use super::link_handle::Link;
use super::session_context::SessionContext;
use super::types::{CloseReason, EventKind};
use crate::ids::{SessionId, UserId};
use crate::link::proto::Event;
use crate::link::BatchBuf;

/// An event handler (shared by the kinds it was registered for).
pub(crate) type EventHandler = Arc<dyn Fn(&mut EventContext<'_>) + Send + Sync + 'static>;

/// One session event being handled (see
/// [`NodeBuilder::on_event`](crate::node::NodeBuilder::on_event)): a
/// [`SessionContext`] whose work is a [`SessionEvent`].
///
/// Which fields are set depends on the kind: `Connect` carries the client's
/// address and transport (and, for MQTT clients, the CONNECT's client id,
/// user name and password), `Bind`/`Unbind` the uid, `Disconnect` the uid (0 if
/// none was bound) and the reason.
///
/// Besides the event's accessors below, a handler has everything of
/// [`SessionContext`]: `ev.session()`, `ev.uid()`, `ev.reply_with(..)`
/// (useful on `Connect` and `Bind`), and the session shortcuts, as in
/// [`Context`](crate::node::Context); after `Disconnect` the session is gone
/// (blocking calls on it answer `NotFound`).
pub type EventContext<'a> = SessionContext<'a, SessionEvent>;

/// What an [`EventContext`] works on: the event's kind and the fields the
/// gate sent with it, read through [`EventContext`]'s methods.
#[derive(Debug)]
pub struct SessionEvent {
    kind: EventKind,
    event: Event,
}

impl<'a> EventContext<'a> {
    /// The context of `event` (of a known `kind`), from `link`; packets to
    /// the session go through `out`.
    pub(crate) fn from_event(
        kind: EventKind,
        event: Event,
        link: &'a Arc<Link>,
        out: &'a mut BatchBuf,
        gates: &'a GateClient,
    ) -> Self {
        let (session, uid) = (SessionId(event.session_id), UserId(event.uid));
        let work = SessionEvent { kind, event };
        SessionContext::new(work, session, uid, 0, link, out, gates)
    }

    /// What happened.
    pub fn kind(&self) -> EventKind {
        self.work().kind
    }

    /// The event's sequence number among the events of its kind raised by
    /// its gate shard, from 1 at the gate's start; 0 if the gate does not
    /// number events. The SDK checks them: a gap means events were lost
    /// (see [`GateClient::event_gaps`](crate::node::GateClient::event_gaps)).
    pub fn seq(&self) -> u64 {
        self.work().event.seq
    }

    /// `Disconnect`: why the session ended; otherwise `Unspecified`.
    pub fn reason(&self) -> CloseReason {
        CloseReason::from_proto(self.work().event.reason)
    }

    /// `Connect`: the client's IP address as text (empty otherwise).
    pub fn ip(&self) -> &str {
        &self.work().event.ip
    }

    /// `Connect`: the client's port (0 otherwise).
    pub fn port(&self) -> u16 {
        self.work().event.port as u16
    }

    /// `Connect`: the client's address, if the gate sent a valid one.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        let ip: IpAddr = self.work().event.ip.parse().ok()?;
        Some(SocketAddr::new(ip, self.port()))
    }

    /// `Connect`: the transport, e.g. `"tcp"`, `"ws"` or `"mqtt"` (empty
    /// otherwise).
    pub fn network(&self) -> &str {
        &self.work().event.network
    }

    /// `Connect` of an MQTT client: the client id of its CONNECT (one the
    /// gate assigned when the client sent none); empty otherwise.
    pub fn client_id(&self) -> &str {
        &self.work().event.client_id
    }

    /// `Connect` of an MQTT client: the user name of its CONNECT (empty
    /// when none, and for other clients and events).
    pub fn username(&self) -> &str {
        &self.work().event.username
    }

    /// `Connect` of an MQTT client: the password of its CONNECT, as sent
    /// (MQTT passwords are binary); empty when none.
    pub fn password(&self) -> &[u8] {
        &self.work().event.password
    }
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
