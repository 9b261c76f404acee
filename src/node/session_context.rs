//! [`SessionContext`]: what route and event handlers share — the session
//! the work is about, the gate link it came on with that link's reply batch
//! — and the gate calls about that session: `push`, `push_topic`, `bind`,
//! `unbind`, `set_settings`, `kick`, `subscribe`, `unsubscribe`, each
//! blocking and `_nowait`.
//!
//! [`Context`](crate::node::Context) and
//! [`EventContext`](crate::node::EventContext) are this type with a request
//! or an event as its work `W`, so these methods exist once and read the
//! same on both (`ctx.bind(uid)`). This module must not know what a request
//! or an event holds (`context.rs` and `event.rs` add their accessors) and
//! does not pick links itself: what goes on the work's own link is batched
//! with its replies, everything else is the gate client's to route.

use std::sync::Arc;

use bytes::Bytes;

use super::error::NodeError;
use super::gate_client::{GateClient, Via};
use super::link_handle::Link;
use super::messages::{
    bind_op, call_msg, kick_op, push_msg, push_op, reply_msg, settings_op, subscribe_op,
    topic_push_msg, unbind_op, unsubscribe_op, valid, valid_bind, with_topic,
};
use super::types::Target;
use crate::ids::{SessionId, UserId};
use crate::link::proto::{call, ResultFormat};
use crate::link::BatchBuf;

/// What a handler has while it works on `W` (a request or an event) for
/// one session: the session, and the calls about it.
///
/// Handlers name it [`Context`](crate::node::Context) (`W` =
/// [`Request`](crate::node::Request)) or
/// [`EventContext`](crate::node::EventContext) (`W` =
/// [`SessionEvent`](crate::node::SessionEvent)); the methods below work on
/// both.
///
/// While handling a request of an answered route
/// ([`NodeBuilder::route`](crate::node::NodeBuilder::route)), the first
/// packet sent with [`Context::reply`](crate::node::Context::reply) or
/// [`SessionContext::reply_with`] is the request's reply: it carries the
/// `Deliver.request_id` the gate waits for. Later ones, those of an event
/// handler, and those sent any other way (`push`, `push_nowait`, the gate
/// client) are plain pushes.
///
/// Packets to the session ([`SessionContext::reply_with`], a `_nowait`
/// call on the work's own link) are appended to the batch that carries the
/// handler's replies, written after the handler returns: one write for
/// many replies. A blocking call first writes that batch, so what the
/// handler sent before it reaches the gate first.
pub struct SessionContext<'a, W> {
    /// The request or event being handled.
    work: W,
    session: SessionId,
    uid: UserId,
    /// The id the next reply carries: the request's `Deliver.request_id`
    /// until the first reply takes it, then 0 (always 0 for an event).
    reply_id: u64,
    /// The link the work came on; replies go back there.
    link: &'a Arc<Link>,
    /// That link's reply batch of the current read or worker drain.
    out: &'a mut BatchBuf,
    gates: &'a GateClient,
}

impl<'a, W> SessionContext<'a, W> {
    /// The context of `work` for `session` (whose user is `uid`), which
    /// came on `link`; its packets to the session are batched in `out`, the
    /// first reply carrying `request_id` (0: the work expects no reply).
    pub(crate) fn new(
        work: W,
        session: SessionId,
        uid: UserId,
        request_id: u64,
        link: &'a Arc<Link>,
        out: &'a mut BatchBuf,
        gates: &'a GateClient,
    ) -> Self {
        SessionContext {
            work,
            session,
            uid,
            reply_id: request_id,
            link,
            out,
            gates,
        }
    }

    /// The request or event being handled.
    pub(crate) fn work(&self) -> &W {
        &self.work
    }

    /// The request or event being handled, to take from.
    pub(crate) fn work_mut(&mut self) -> &mut W {
        &mut self.work
    }

    /// The request id no reply has carried yet: non-zero while the gate
    /// still waits for this request's reply.
    pub(crate) fn unanswered(&self) -> u64 {
        self.reply_id
    }

    /// The client session the request or event is about.
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// The session's user, `UserId(0)` when none: as the gate sent it with
    /// the request or event (for an `Unbind` event the user just unbound,
    /// for `Disconnect` the one bound when the session ended), then as this
    /// handler's [`bind`](Self::bind) / [`unbind`](Self::unbind) changed it.
    pub fn uid(&self) -> UserId {
        self.uid
    }

    /// Id of the gate this came through.
    pub fn gate_id(&self) -> &str {
        &self.link.gate_id
    }

    /// A client bound to this gate, for every operation (push, multicast,
    /// broadcast, kick, bind, settings, get_ip, is_online, stat, channels).
    /// The replies batched so far are written first, so they reach the gate
    /// before anything done through the client.
    pub fn gate(&mut self) -> GateClient {
        self.flush();
        self.client()
    }

    /// Writes the replies batched so far now instead of after the handler.
    pub fn flush(&mut self) {
        if !self.out.is_empty() {
            self.link.send_frames(self.out.take());
        }
    }

    /// Sends a packet with any `route` and `seq` to this session, batched
    /// like a reply (after a `Disconnect` event the gate drops it). The
    /// first one of a request of an answered route is its reply (see
    /// above).
    pub fn reply_with(&mut self, route: i32, seq: i32, payload: impl Into<Bytes>) {
        self.reply_as(
            route,
            seq,
            payload.into(),
            ResultFormat::ResultAuto,
            String::new(),
        );
    }

    /// [`reply_with`](Self::reply_with), telling MQTT clients how to see
    /// the payload (`format`) or, with a non-empty `error`, that the
    /// request failed. Only the first reply carries the request id.
    pub(crate) fn reply_as(
        &mut self,
        route: i32,
        seq: i32,
        payload: Bytes,
        format: ResultFormat,
        error: String,
    ) {
        let request_id = std::mem::take(&mut self.reply_id);
        let small = self.link.surely_fits(payload.len() + error.len());
        let msg = reply_msg(
            self.session.0,
            route,
            seq,
            payload,
            request_id,
            format,
            error,
        );
        if let Err(e) = if small { Ok(()) } else { self.link.fits(&msg) } {
            // Sent as it is, the frame would make the gate close the link
            // and fail every request waiting on it: answer with an error.
            tracing::warn!(route, session = %self.session, "node: reply not sent: {e}");
            let msg = reply_msg(
                self.session.0,
                route,
                seq,
                Bytes::new(),
                request_id,
                ResultFormat::ResultAuto,
                "reply too large for the link".into(),
            );
            self.out.push(&msg);
            return;
        }
        self.out.push(&msg);
    }

    /// Sends `payload` to this session on MQTT topic `topic` (mqant's
    /// `session.Send`) and waits for the gate. An MQTT client gets a QoS 0
    /// PUBLISH on `topic`; other clients a packet on route 0, seq 0. Never
    /// the request's reply.
    pub fn push_topic(&mut self, topic: &str, payload: impl Into<Bytes>) -> Result<(), NodeError> {
        let op = with_topic(push_op(self.target(), 0, 0, payload.into()), topic);
        self.call_here(op)
    }

    /// [`push_topic`](Self::push_topic) without waiting: a `Push` with
    /// `topic`, batched with the replies in order (mqant's `SendNR`).
    pub fn push_topic_nowait(&mut self, topic: &str, payload: impl Into<Bytes>) {
        let msg = topic_push_msg(self.session.0, topic, payload.into());
        match self.link.fits(&msg) {
            Ok(()) => self.out.push(&msg),
            Err(e) => tracing::warn!(session = %self.session, topic, "node: push not sent: {e}"),
        }
    }

    /// Sends a packet to any session or user of this gate and waits for the
    /// gate ([`GateClient::push`]).
    pub fn push(
        &mut self,
        to: impl Into<Target>,
        route: i32,
        seq: i32,
        payload: impl Into<Bytes>,
    ) -> Result<(), NodeError> {
        let to = valid(to.into())?;
        self.call(Via::To(to), push_op(to, route, seq, payload.into()))
    }

    /// Sends a packet to any session or user of this gate without waiting.
    /// To a session of this link's shard it is batched with the replies, in
    /// order; to one of another shard it goes on that shard's link at once;
    /// to a user it is a call with id 0.
    pub fn push_nowait(
        &mut self,
        to: impl Into<Target>,
        route: i32,
        seq: i32,
        payload: impl Into<Bytes>,
    ) -> Result<(), NodeError> {
        let (to, payload) = (valid(to.into())?, payload.into());
        if let Target::Session(s) = to {
            if s.shard() == self.link.shard {
                let msg = push_msg(s.0, route, seq, payload, 0, 0);
                self.link.fits(&msg)?;
                self.out.push(&msg);
                return Ok(());
            }
            if let Some(link) = self.gates.link(&self.link.gate_id, s.shard().0) {
                return link.push(s, route, seq, payload, 0);
            }
        }
        self.cast(Via::To(to), push_op(to, route, seq, payload))
    }

    /// Binds user `uid` to this session and waits for the gate
    /// ([`GateClient::bind`]); on success [`uid`](Self::uid) returns it.
    pub fn bind(&mut self, uid: UserId) -> Result<(), NodeError> {
        valid_bind(uid)?;
        self.call(Via::Home(uid), bind_op(self.session, uid))?;
        self.uid = uid;
        Ok(())
    }

    /// [`bind`](Self::bind) without waiting.
    pub fn bind_nowait(&mut self, uid: UserId) -> Result<(), NodeError> {
        valid_bind(uid)?;
        self.cast(Via::Home(uid), bind_op(self.session, uid))
    }

    /// Unbinds this session's user and waits for the gate; on success
    /// [`uid`](Self::uid) returns `UserId(0)`.
    pub fn unbind(&mut self) -> Result<(), NodeError> {
        self.call_here(unbind_op(self.target()))?;
        self.uid = UserId(0);
        Ok(())
    }

    /// [`unbind`](Self::unbind) without waiting.
    pub fn unbind_nowait(&mut self) -> Result<(), NodeError> {
        self.cast_here(unbind_op(self.target()))
    }

    /// Sets and removes settings of this session and waits for the gate
    /// ([`GateClient::set_settings`]).
    pub fn set_settings(&mut self, set: &[(&str, &str)], remove: &[&str]) -> Result<(), NodeError> {
        self.call_here(settings_op(self.target(), set, remove))
    }

    /// [`set_settings`](Self::set_settings) without waiting.
    pub fn set_settings_nowait(
        &mut self,
        set: &[(&str, &str)],
        remove: &[&str],
    ) -> Result<(), NodeError> {
        self.cast_here(settings_op(self.target(), set, remove))
    }

    /// Closes this session (after sending what is queued for it if `flush`,
    /// replies batched so far included) and waits for the gate.
    pub fn kick(&mut self, flush: bool) -> Result<(), NodeError> {
        self.call_here(kick_op(self.target(), flush))
    }

    /// [`kick`](Self::kick) without waiting; batched after the replies.
    pub fn kick_nowait(&mut self, flush: bool) -> Result<(), NodeError> {
        self.cast_here(kick_op(self.target(), flush))
    }

    /// Adds this session to channel `channel` and waits for the gate.
    pub fn subscribe(&mut self, channel: &str) -> Result<(), NodeError> {
        self.call_here(subscribe_op(channel, &[self.target()]))
    }

    /// [`subscribe`](Self::subscribe) without waiting.
    pub fn subscribe_nowait(&mut self, channel: &str) -> Result<(), NodeError> {
        self.cast_here(subscribe_op(channel, &[self.target()]))
    }

    /// Removes this session from channel `channel` and waits for the gate.
    pub fn unsubscribe(&mut self, channel: &str) -> Result<(), NodeError> {
        self.call_here(unsubscribe_op(channel, &[self.target()]))
    }

    /// [`unsubscribe`](Self::unsubscribe) without waiting.
    pub fn unsubscribe_nowait(&mut self, channel: &str) -> Result<(), NodeError> {
        self.cast_here(unsubscribe_op(channel, &[self.target()]))
    }

    pub(crate) fn target(&self) -> Target {
        Target::Session(self.session)
    }

    /// The client bound to the gate the work came from.
    fn client(&self) -> GateClient {
        self.gates
            .pinned(self.link.gate_id.clone(), self.link.shard.0)
    }

    /// A blocking call about this session.
    pub(crate) fn call_here(&mut self, op: call::Op) -> Result<(), NodeError> {
        self.call(Via::To(self.target()), op)
    }

    /// A call without result about this session.
    pub(crate) fn cast_here(&mut self, op: call::Op) -> Result<(), NodeError> {
        self.cast(Via::To(self.target()), op)
    }

    /// A blocking call through the work's gate, after flushing the replies.
    fn call(&mut self, via: Via, op: call::Op) -> Result<(), NodeError> {
        self.flush();
        self.client().call(via, op).map(drop)
    }

    /// A call without result: batched with the replies when it goes on the
    /// work's own link, sent at once on another.
    fn cast(&mut self, via: Via, op: call::Op) -> Result<(), NodeError> {
        let link = self.client().pick(via)?;
        if Arc::ptr_eq(&link, self.link) {
            let msg = call_msg(0, op);
            link.fits(&msg)?;
            self.out.push(&msg);
            return Ok(());
        }
        link.send(&call_msg(0, op))
    }
}
