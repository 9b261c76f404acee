//! [`Context`]: what a route handler sees of one client request — route,
//! seq, payload, the settings delivered with it — and the way to answer it.
//!
//! `Context` is [`SessionContext`] working on a [`Request`]: everything
//! about the request's session (its id and user, packets to it, the gate
//! calls about it) is written once there, and this module must not repeat
//! it. Also the route handler type and the one place a route handler is run
//! ([`run_handler`]).

use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use bytes::Bytes;
use tracing::{debug, error};

use super::gate_client::GateClient;
use super::link_handle::Link;
use super::session_context::SessionContext;
use crate::ids::{SessionId, UserId};
use crate::link::proto::Deliver;
use crate::link::BatchBuf;

/// A route handler.
pub(crate) type Handler = Box<dyn Fn(&mut Context<'_>) + Send + Sync + 'static>;

/// One client request being handled, and the way to answer it: a
/// [`SessionContext`] whose work is a [`Request`].
///
/// [`Context::reply`] answers the request. Replies are appended to a batch
/// that is written after the handler returns, together with the other
/// replies of the same read (inline mode) or worker drain (pool mode): one
/// write for many replies.
///
/// Besides the request's accessors below, a handler has everything of
/// [`SessionContext`]: `ctx.session()`, `ctx.uid()`, `ctx.reply_with(..)`,
/// the shortcuts for the request's session (`bind`, `unbind`,
/// `set_settings`, `kick`, `subscribe`, `unsubscribe`, each blocking and
/// `_nowait`), `push` / `push_nowait` to any target, and
/// [`SessionContext::gate`] for everything else, bound to the request's
/// gate.
pub type Context<'a> = SessionContext<'a, Request>;

/// What a [`Context`] works on: the fields of the client's request, read
/// through [`Context::route`], [`Context::seq`], [`Context::payload`] and
/// [`Context::settings`].
#[derive(Debug)]
pub struct Request {
    route: i32,
    seq: i32,
    payload: Bytes,
    settings: HashMap<String, String>,
}

impl<'a> Context<'a> {
    /// The context of the request `deliver`, answered on `link` through `out`.
    pub(crate) fn from_deliver(
        deliver: Deliver,
        link: &'a Arc<Link>,
        out: &'a mut BatchBuf,
        gates: &'a GateClient,
    ) -> Self {
        let Deliver {
            session_id,
            uid,
            route,
            seq,
            payload,
            settings,
            request_id,
        } = deliver;
        let request = Request {
            route,
            seq,
            payload,
            settings,
        };
        let (session, uid) = (SessionId(session_id), UserId(uid));
        SessionContext::new(request, session, uid, request_id, link, out, gates)
    }

    /// The request's route.
    pub fn route(&self) -> i32 {
        self.work().route
    }

    /// The request's sequence number (0 when the client does not use them).
    pub fn seq(&self) -> i32 {
        self.work().seq
    }

    /// The request's payload: a slice of the received frame, no copy.
    pub fn payload(&self) -> &Bytes {
        &self.work().payload
    }

    /// Takes the payload out of the request, leaving it empty.
    pub fn take_payload(&mut self) -> Bytes {
        std::mem::take(&mut self.work_mut().payload)
    }

    /// The session's settings as the gate sent them with the request
    /// (`Deliver.settings`): empty unless the gate's
    /// `session.deliver_settings` is on. Not updated by `set_settings`.
    pub fn settings(&self) -> &HashMap<String, String> {
        &self.work().settings
    }

    /// Answers the request: a packet to its session with the same route and
    /// seq. The first reply of a request of an answered route carries its
    /// request id (the gate's answer to the client); later ones are plain
    /// pushes (see [`SessionContext`]).
    pub fn reply(&mut self, payload: impl Into<Bytes>) {
        let (route, seq) = (self.route(), self.seq());
        self.reply_with(route, seq, payload);
    }
}

/// Runs `handler`; a panic is logged and the link keeps serving. A request
/// the gate tracks that the handler did not answer is logged at debug: the
/// gate will answer the client with `TIMEOUT`.
pub(crate) fn run_handler(handler: &Handler, ctx: &mut Context<'_>) {
    if panic::catch_unwind(AssertUnwindSafe(|| handler(ctx))).is_err() {
        error!(
            route = ctx.route(),
            session = %ctx.session(),
            "node: handler panicked; request dropped"
        );
    } else if ctx.unanswered() != 0 {
        debug!(
            route = ctx.route(),
            session = %ctx.session(),
            request_id = ctx.unanswered(),
            "node: handler returned without replying; the gate will answer the client with TIMEOUT"
        );
    }
}
