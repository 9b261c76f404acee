//! [`Context`]: what a route handler sees of one client request — route,
//! seq, payload, the settings and MQTT topic delivered with it — and the
//! ways to answer it (plain, or formatted for MQTT clients, or an error).
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
use crate::link::proto::{Deliver, ResultFormat};
use crate::link::BatchBuf;

/// A route handler.
pub(crate) type Handler = Box<dyn Fn(&mut Context<'_>) + Send + Sync + 'static>;

/// One client request being handled, and the way to answer it: a
/// [`SessionContext`] whose work is a [`Request`].
///
/// [`Context::reply`] answers the request (for MQTT clients also
/// [`Context::reply_json`], [`reply_bytes`](Context::reply_bytes),
/// [`reply_string`](Context::reply_string), [`reply_raw`](Context::reply_raw)
/// and [`reply_error`](Context::reply_error), which say how the gate
/// presents the payload in mqant's `{"Trace","Error","Result"}` wrapper;
/// a due client gets any of them as a plain reply). Replies are appended to a batch
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
/// through [`Context::route`], [`Context::seq`], [`Context::payload`],
/// [`Context::settings`] and [`Context::topic`].
#[derive(Debug)]
pub struct Request {
    route: i32,
    seq: i32,
    payload: Bytes,
    settings: HashMap<String, String>,
    topic: String,
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
            topic,
        } = deliver;
        let request = Request {
            route,
            seq,
            payload,
            settings,
            topic,
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

    /// The MQTT topic the client published the request on
    /// (`<service>[@<node_id>]/<name>[/<msgid>]`); empty for due clients.
    pub fn topic(&self) -> &str {
        &self.work().topic
    }

    /// [`reply`](Self::reply) with a payload that is JSON: an MQTT client
    /// gets it as is in the wrapper's `"Result"` (mqant's map or struct
    /// result). The SDK does not check it is JSON.
    pub fn reply_json(&mut self, json: impl Into<Bytes>) {
        self.reply_format(json.into(), ResultFormat::ResultJson);
    }

    /// [`reply`](Self::reply) with a payload of bytes: an MQTT client gets
    /// their base64 string as `"Result"` (mqant's `[]byte` result).
    pub fn reply_bytes(&mut self, bytes: impl Into<Bytes>) {
        self.reply_format(bytes.into(), ResultFormat::ResultBytes);
    }

    /// [`reply`](Self::reply) with text: an MQTT client gets it as a JSON
    /// string in `"Result"` (mqant's string result).
    pub fn reply_string(&mut self, text: impl Into<String>) {
        let text: String = text.into();
        self.reply_format(text.into(), ResultFormat::ResultString);
    }

    /// [`reply`](Self::reply) without mqant's wrapper: an MQTT client gets
    /// the payload as it is, on the request's topic.
    pub fn reply_raw(&mut self, payload: impl Into<Bytes>) {
        self.reply_format(payload.into(), ResultFormat::ResultRaw);
    }

    /// Answers that the request failed with `error` (`Push.error`, empty
    /// payload): an MQTT client gets it in the wrapper's `"Error"` field
    /// (`"Result": null`), a due client a packet with extension code
    /// `NODE_ERROR` (6) whose payload is the text. Like every reply, only
    /// the first one of a request answers it; later ones are plain pushes.
    pub fn reply_error(&mut self, error: impl Into<String>) {
        let (route, seq) = (self.route(), self.seq());
        let format = ResultFormat::ResultAuto;
        self.reply_as(route, seq, Bytes::new(), format, error.into());
    }

    fn reply_format(&mut self, payload: Bytes, format: ResultFormat) {
        let (route, seq) = (self.route(), self.seq());
        self.reply_as(route, seq, payload, format, String::new());
    }
}

/// Runs `handler`; a panic is logged, the request the gate tracks (if the
/// handler had not answered it yet) is answered with an error at once, and
/// the link keeps serving. A request the handler returned without answering
/// is logged at debug: the gate will answer the client with `TIMEOUT`.
pub(crate) fn run_handler(handler: &Handler, ctx: &mut Context<'_>) {
    if panic::catch_unwind(AssertUnwindSafe(|| handler(ctx))).is_err() {
        error!(
            route = ctx.route(),
            session = %ctx.session(),
            "node: handler panicked; request answered with an error"
        );
        if ctx.unanswered() != 0 {
            ctx.reply_error("the node's handler failed");
        }
    } else if ctx.unanswered() != 0 {
        debug!(
            route = ctx.route(),
            session = %ctx.session(),
            request_id = ctx.unanswered(),
            "node: handler returned without replying; the gate will answer the client with TIMEOUT"
        );
    }
}
