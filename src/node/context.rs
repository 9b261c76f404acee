//! [`Context`]: what a route handler sees of one client request.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use bytes::Bytes;
use tracing::error;

use super::builder::Handler;
use super::link::{push_msg, Link};
use super::{GateClient, NodeError};
use crate::ids::{SessionId, UserId};
use crate::link::proto::Deliver;
use crate::link::BatchBuf;

/// One client request being handled, and the way to answer it.
///
/// Replies (and pushes to sessions of the same gate shard) are appended to a
/// batch that is written after the handler returns, together with the other
/// replies of the same read (inline mode) or worker drain (pool mode): one
/// write for many replies.
pub struct Context<'a> {
    deliver: Deliver,
    link: &'a Arc<Link>,
    out: &'a mut BatchBuf,
    gates: &'a GateClient,
}

impl<'a> Context<'a> {
    pub(crate) fn new(
        deliver: Deliver,
        link: &'a Arc<Link>,
        out: &'a mut BatchBuf,
        gates: &'a GateClient,
    ) -> Self {
        Context {
            deliver,
            link,
            out,
            gates,
        }
    }

    /// The client session that sent the request.
    pub fn session(&self) -> SessionId {
        SessionId(self.deliver.session_id)
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

    /// Id of the gate the request came through.
    pub fn gate_id(&self) -> &str {
        &self.link.gate_id
    }

    /// Answers the request: a packet to its session with the same route and seq.
    pub fn reply(&mut self, payload: impl Into<Bytes>) {
        let d = &self.deliver;
        let msg = push_msg(d.session_id, d.route, d.seq, payload.into(), 0);
        self.out.push(&msg);
    }

    /// Sends a packet with any `route` and `seq` to the request's session.
    pub fn reply_with(&mut self, route: i32, seq: i32, payload: impl Into<Bytes>) {
        let msg = push_msg(self.deliver.session_id, route, seq, payload.into(), 0);
        self.out.push(&msg);
    }

    /// Sends a packet to any session of the gate this request came from.
    ///
    /// A session on the request's shard is batched with the replies; one on
    /// another shard goes straight to that shard's link. Fails with
    /// [`NodeError::NotConnected`] when that link is not up.
    pub fn push(
        &mut self,
        session: SessionId,
        route: i32,
        seq: i32,
        payload: impl Into<Bytes>,
    ) -> Result<(), NodeError> {
        let payload = payload.into();
        if session.shard() == self.link.shard {
            self.out.push(&push_msg(session.0, route, seq, payload, 0));
            return Ok(());
        }
        let shard = session.shard().0;
        let link = self
            .gates
            .link(&self.link.gate_id, shard)
            .ok_or(NodeError::NotConnected { shard })?;
        link.push(session, route, seq, payload, 0)
    }

    /// The client for pushes to any gate (e.g. to hand to another thread).
    pub fn gate(&self) -> &GateClient {
        self.gates
    }
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
