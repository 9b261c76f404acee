//! [`Context`]: what a route handler sees of one client request, and the
//! parts it shares with [`EventContext`](super::EventContext) ([`Origin`],
//! the session shortcuts).

use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use bytes::Bytes;
use tracing::error;

use super::builder::Handler;
use super::gate_client::Via;
use super::link_handle::Link;
use super::messages::{call_msg, push_msg, push_op, valid};
use super::{GateClient, NodeError, Target};
use crate::ids::{SessionId, UserId};
use crate::link::proto::{call, CallResult, Deliver};
use crate::link::BatchBuf;

/// One client request being handled, and the way to answer it.
///
/// Replies (and `_nowait` operations that go on the request's link) are
/// appended to a batch that is written after the handler returns, together
/// with the other replies of the same read (inline mode) or worker drain
/// (pool mode): one write for many replies. A blocking operation first
/// writes that batch, so what the handler sent before it reaches the gate
/// first.
///
/// Besides [`Context::reply`], a handler has shortcuts for its own session
/// (`bind`, `unbind`, `set_settings`, `kick`, `subscribe`, `unsubscribe`,
/// each blocking and `_nowait`), `push` / `push_nowait` to any target, and
/// [`Context::gate`] for everything else, bound to the request's gate.
pub struct Context<'a> {
    deliver: Deliver,
    origin: Origin<'a>,
}

/// Where the work being handled came from: its link, that link's reply
/// batch, and the node's gate client.
pub(crate) struct Origin<'a> {
    pub(crate) link: &'a Arc<Link>,
    pub(crate) out: &'a mut BatchBuf,
    pub(crate) gates: &'a GateClient,
}

impl Origin<'_> {
    /// The client bound to the gate the work came from.
    pub(crate) fn client(&self) -> GateClient {
        self.gates
            .pinned(self.link.gate_id.clone(), self.link.shard.0)
    }

    /// Writes the replies batched so far.
    pub(crate) fn flush(&mut self) {
        if !self.out.is_empty() {
            self.link.send_frames(self.out.take());
        }
    }

    /// A blocking call through the work's gate, after flushing.
    pub(crate) fn call(&mut self, via: Via, op: call::Op) -> Result<CallResult, NodeError> {
        self.flush();
        self.client().call(via, op)
    }

    /// A call without result: batched with the replies when it goes on the
    /// work's own link, sent at once on another.
    pub(crate) fn cast(&mut self, via: Via, op: call::Op) -> Result<(), NodeError> {
        let link = self.client().pick(via)?;
        if Arc::ptr_eq(&link, self.link) {
            self.out.push(&call_msg(0, op));
            return Ok(());
        }
        link.send(&call_msg(0, op))
    }

    /// A packet without result: a plain `Push` on the session's own link
    /// (batched if that is the work's link), else a call with id 0.
    pub(crate) fn push_nowait(
        &mut self,
        to: Target,
        route: i32,
        seq: i32,
        payload: Bytes,
    ) -> Result<(), NodeError> {
        let to = valid(to)?;
        if let Target::Session(s) = to {
            if s.shard() == self.link.shard {
                self.out.push(&push_msg(s.0, route, seq, payload, 0));
                return Ok(());
            }
            if let Some(link) = self.gates.link(&self.link.gate_id, s.shard().0) {
                return link.push(s, route, seq, payload, 0);
            }
        }
        self.cast(Via::To(to), push_op(to, route, seq, payload))
    }
}

/// The methods [`Context`] and [`EventContext`](super::EventContext) share:
/// pushes, the session shortcuts, the gate. Each type provides `origin()`,
/// `this_session()` and `set_uid()`.
macro_rules! origin_methods {
    () => {
        /// Id of the gate this came through.
        pub fn gate_id(&self) -> &str {
            &self.origin.link.gate_id
        }

        /// A client bound to this gate, for every operation (push, multicast,
        /// broadcast, kick, bind, settings, get_ip, is_online, stat,
        /// channels). The replies batched so far are written first, so they
        /// reach the gate before anything done through the client.
        pub fn gate(&mut self) -> $crate::node::GateClient {
            self.origin.flush();
            self.origin.client()
        }

        /// Writes the replies batched so far now instead of after the handler.
        pub fn flush(&mut self) {
            self.origin.flush();
        }

        /// Sends a packet to any session or user of this gate and waits for
        /// the gate ([`GateClient::push`](crate::node::GateClient::push)).
        pub fn push(
            &mut self,
            to: impl Into<$crate::node::Target>,
            route: i32,
            seq: i32,
            payload: impl Into<::bytes::Bytes>,
        ) -> Result<(), $crate::node::NodeError> {
            let to = $crate::node::messages::valid(to.into())?;
            let op = $crate::node::messages::push_op(to, route, seq, payload.into());
            self.origin
                .call($crate::node::gate_client::Via::To(to), op)
                .map(drop)
        }

        /// Sends a packet to any session or user of this gate without
        /// waiting. To a session of this link's shard it is batched with the
        /// replies, in order; to one of another shard it goes on that
        /// shard's link at once; to a user it is a call with id 0.
        pub fn push_nowait(
            &mut self,
            to: impl Into<$crate::node::Target>,
            route: i32,
            seq: i32,
            payload: impl Into<::bytes::Bytes>,
        ) -> Result<(), $crate::node::NodeError> {
            self.origin
                .push_nowait(to.into(), route, seq, payload.into())
        }

        /// Binds user `uid` to this session and waits for the gate
        /// ([`GateClient::bind`](crate::node::GateClient::bind)); on success
        /// `uid()` returns it.
        pub fn bind(&mut self, uid: $crate::UserId) -> Result<(), $crate::node::NodeError> {
            $crate::node::messages::valid_bind(uid)?;
            let op = $crate::node::messages::bind_op(self.this_session(), uid);
            let via = $crate::node::gate_client::Via::To($crate::node::Target::User(uid));
            self.origin.call(via, op)?;
            self.set_uid(uid);
            Ok(())
        }

        /// [`bind`](Self::bind) without waiting.
        pub fn bind_nowait(&mut self, uid: $crate::UserId) -> Result<(), $crate::node::NodeError> {
            $crate::node::messages::valid_bind(uid)?;
            let op = $crate::node::messages::bind_op(self.this_session(), uid);
            let via = $crate::node::gate_client::Via::To($crate::node::Target::User(uid));
            self.origin.cast(via, op)
        }

        /// Unbinds this session's user and waits for the gate; on success
        /// `uid()` returns `UserId(0)`.
        pub fn unbind(&mut self) -> Result<(), $crate::node::NodeError> {
            let to = $crate::node::Target::Session(self.this_session());
            let op = $crate::node::messages::unbind_op(to);
            self.origin
                .call($crate::node::gate_client::Via::To(to), op)?;
            self.set_uid($crate::UserId(0));
            Ok(())
        }

        /// [`unbind`](Self::unbind) without waiting.
        pub fn unbind_nowait(&mut self) -> Result<(), $crate::node::NodeError> {
            let to = $crate::node::Target::Session(self.this_session());
            let op = $crate::node::messages::unbind_op(to);
            self.origin.cast($crate::node::gate_client::Via::To(to), op)
        }

        /// Sets and removes settings of this session and waits for the gate
        /// ([`GateClient::set_settings`](crate::node::GateClient::set_settings)).
        pub fn set_settings(
            &mut self,
            set: &[(&str, &str)],
            remove: &[&str],
        ) -> Result<(), $crate::node::NodeError> {
            let to = $crate::node::Target::Session(self.this_session());
            let op = $crate::node::messages::settings_op(to, set, remove);
            self.origin
                .call($crate::node::gate_client::Via::To(to), op)
                .map(drop)
        }

        /// [`set_settings`](Self::set_settings) without waiting.
        pub fn set_settings_nowait(
            &mut self,
            set: &[(&str, &str)],
            remove: &[&str],
        ) -> Result<(), $crate::node::NodeError> {
            let to = $crate::node::Target::Session(self.this_session());
            let op = $crate::node::messages::settings_op(to, set, remove);
            self.origin.cast($crate::node::gate_client::Via::To(to), op)
        }

        /// Closes this session (after sending what is queued for it if
        /// `flush`, replies batched so far included) and waits for the gate.
        pub fn kick(&mut self, flush: bool) -> Result<(), $crate::node::NodeError> {
            let to = $crate::node::Target::Session(self.this_session());
            let op = $crate::node::messages::kick_op(to, flush);
            self.origin
                .call($crate::node::gate_client::Via::To(to), op)
                .map(drop)
        }

        /// [`kick`](Self::kick) without waiting; batched after the replies.
        pub fn kick_nowait(&mut self, flush: bool) -> Result<(), $crate::node::NodeError> {
            let to = $crate::node::Target::Session(self.this_session());
            let op = $crate::node::messages::kick_op(to, flush);
            self.origin.cast($crate::node::gate_client::Via::To(to), op)
        }

        /// Adds this session to channel `channel` and waits for the gate.
        pub fn subscribe(&mut self, channel: &str) -> Result<(), $crate::node::NodeError> {
            let to = $crate::node::Target::Session(self.this_session());
            let op = $crate::node::messages::subscribe_op(channel, &[to]);
            self.origin
                .call($crate::node::gate_client::Via::To(to), op)
                .map(drop)
        }

        /// [`subscribe`](Self::subscribe) without waiting.
        pub fn subscribe_nowait(&mut self, channel: &str) -> Result<(), $crate::node::NodeError> {
            let to = $crate::node::Target::Session(self.this_session());
            let op = $crate::node::messages::subscribe_op(channel, &[to]);
            self.origin.cast($crate::node::gate_client::Via::To(to), op)
        }

        /// Removes this session from channel `channel` and waits for the gate.
        pub fn unsubscribe(&mut self, channel: &str) -> Result<(), $crate::node::NodeError> {
            let to = $crate::node::Target::Session(self.this_session());
            let op = $crate::node::messages::unsubscribe_op(channel, &[to]);
            self.origin
                .call($crate::node::gate_client::Via::To(to), op)
                .map(drop)
        }

        /// [`unsubscribe`](Self::unsubscribe) without waiting.
        pub fn unsubscribe_nowait(&mut self, channel: &str) -> Result<(), $crate::node::NodeError> {
            let to = $crate::node::Target::Session(self.this_session());
            let op = $crate::node::messages::unsubscribe_op(channel, &[to]);
            self.origin.cast($crate::node::gate_client::Via::To(to), op)
        }
    };
}
pub(crate) use origin_methods;

impl<'a> Context<'a> {
    pub(crate) fn new(
        deliver: Deliver,
        link: &'a Arc<Link>,
        out: &'a mut BatchBuf,
        gates: &'a GateClient,
    ) -> Self {
        Context {
            deliver,
            origin: Origin { link, out, gates },
        }
    }

    /// The client session that sent the request.
    pub fn session(&self) -> SessionId {
        SessionId(self.deliver.session_id)
    }

    fn this_session(&self) -> SessionId {
        self.session()
    }

    fn set_uid(&mut self, uid: UserId) {
        self.deliver.uid = uid.0;
    }

    /// The user bound to the session, `UserId(0)` when none is bound.
    pub fn uid(&self) -> UserId {
        UserId(self.deliver.uid)
    }

    /// The request's route.
    pub fn route(&self) -> i32 {
        self.deliver.route
    }

    /// The request's sequence number (0 when the client does not use them).
    pub fn seq(&self) -> i32 {
        self.deliver.seq
    }

    /// The request's payload: a slice of the received frame, no copy.
    pub fn payload(&self) -> &Bytes {
        &self.deliver.payload
    }

    /// Takes the payload out of the request, leaving it empty.
    pub fn take_payload(&mut self) -> Bytes {
        std::mem::take(&mut self.deliver.payload)
    }

    /// The session's settings as the gate sent them with the request
    /// (`Deliver.settings`): empty unless the gate's
    /// `session.deliver_settings` is on. Not updated by `set_settings`.
    pub fn settings(&self) -> &HashMap<String, String> {
        &self.deliver.settings
    }

    /// Answers the request: a packet to its session with the same route and seq.
    pub fn reply(&mut self, payload: impl Into<Bytes>) {
        let d = &self.deliver;
        let msg = push_msg(d.session_id, d.route, d.seq, payload.into(), 0);
        self.origin.out.push(&msg);
    }

    /// Sends a packet with any `route` and `seq` to the request's session.
    pub fn reply_with(&mut self, route: i32, seq: i32, payload: impl Into<Bytes>) {
        let msg = push_msg(self.deliver.session_id, route, seq, payload.into(), 0);
        self.origin.out.push(&msg);
    }

    origin_methods!();
}

/// Runs `handler`; a panic is logged and the link keeps serving.
pub(crate) fn run_handler(handler: &Handler, ctx: &mut Context<'_>) {
    if panic::catch_unwind(AssertUnwindSafe(|| handler(ctx))).is_err() {
        error!(
            route = ctx.route(),
            session = %ctx.session(),
            "node: handler panicked; request dropped"
        );
    }
}
