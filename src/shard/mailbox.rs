//! Cross-shard messages: what one shard asks of another, and the bounded
//! inboxes that carry it.
//!
//! Every shard owns one inbox (a bounded crossbeam channel, many senders).
//! Senders `try_send` during their loop turn; a receiver drains its whole
//! inbox once per turn. Waking a parked shard costs one eventfd write, and
//! only when the receiver has said it is parked:
//!
//! ```text
//!  receiver: parked = true (SeqCst); if inbox empty { wait in the ring (eventfd read armed) }
//!  sender:   try_send(msg); if parked.swap(false) { write(eventfd) }
//! ```
//!
//! **When an inbox is full** the sender keeps the message in a backlog of its
//! own for that destination and retries at the start of every turn, in order.
//! A backlog is bounded by the same capacity: beyond it, messages that carry
//! packets (pushes, broadcasts, publishes) are dropped, counted and answered
//! `BUSY`; control messages (binds, unbinds, kicks) are always kept, since
//! dropping them would leave the uid directory wrong.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::connection::Outgoing;
use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::ids::{SessionId, UserId};
use crate::session::CloseReason;

/// Where a call's result goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyTo {
    /// To the node that made the call: its link index (the same on every
    /// shard, `[[nodes]]` order) and the call id it gave.
    Node {
        /// Index of the node's link on every shard.
        node: u16,
        /// The node's call id.
        call_id: u64,
    },
    /// One target of a multicast: counted by gather `id` on shard `shard`,
    /// which answers the node once every target has been.
    Gather {
        /// The shard that holds the gather.
        shard: u16,
        /// The gather's id there.
        id: u32,
    },
}

/// An operation on one session, executed by the shard that owns it.
#[derive(Debug)]
pub enum SessionOp {
    /// Queue a packet encoded once for many sessions.
    Push(Outgoing),
    /// Close the session (`flush`: after what is queued has been sent).
    Kick {
        /// Send what is queued first.
        flush: bool,
        /// Reason reported to nodes.
        reason: CloseReason,
    },
    /// The directory accepted `uid` for this session: bind it.
    Attach(UserId),
    /// Unbind the session's user.
    Unbind,
    /// Set and remove settings.
    Settings {
        /// Keys to set.
        set: std::collections::HashMap<String, String>,
        /// Keys to remove.
        remove: Vec<String>,
    },
    /// Answer the client's address.
    GetIp,
    /// Answer whether the session is here.
    IsOnline,
    /// Join a channel.
    Subscribe(Arc<str>),
    /// Leave a channel.
    Unsubscribe(Arc<str>),
    /// Bind the session's user to node `node` of `service` (stateful
    /// routes), or with `bind` false remove that binding if it names `node`.
    NodeBinding {
        /// The service.
        service: Box<str>,
        /// The node instance.
        node: Box<str>,
        /// Bind (true) or compare-and-unbind (false).
        bind: bool,
    },
}

impl SessionOp {
    /// Whether this message may be dropped (and answered BUSY) under overload.
    fn droppable(&self) -> bool {
        matches!(
            self,
            SessionOp::Push(_) | SessionOp::GetIp | SessionOp::IsOnline
        )
    }
}

/// A message from one shard to another.
#[derive(Debug)]
pub enum ToShard {
    /// An operation on a session this shard owns.
    Session {
        /// The session.
        sid: SessionId,
        /// What to do.
        op: SessionOp,
        /// Who to answer.
        reply: Option<ReplyTo>,
    },
    /// An operation on the session of a user whose directory entry this shard owns.
    Uid {
        /// The user.
        uid: UserId,
        /// What to do with its session.
        op: SessionOp,
        /// Who to answer.
        reply: Option<ReplyTo>,
    },
    /// Bind `uid` to `sid` in this shard's directory partition.
    DirBind {
        /// The user.
        uid: UserId,
        /// The session.
        sid: SessionId,
        /// Who to answer.
        reply: Option<ReplyTo>,
    },
    /// Remove `uid` from the directory if it is bound to `sid`.
    DirUnbind {
        /// The user.
        uid: UserId,
        /// The session that ended or unbound.
        sid: SessionId,
    },
    /// Write an encoded packet to every (bound) session of this shard.
    Broadcast {
        /// The packet, encoded once for the whole gate.
        packet: Outgoing,
        /// Only sessions with a bound user.
        bound_only: bool,
        /// Where to report how many got it.
        reply: Option<ReplyTo>,
    },
    /// One part of gather `id` (held by this shard) delivered `delivered` packets.
    Gathered {
        /// The gather.
        id: u32,
        /// Sessions the packet was queued for.
        delivered: u64,
    },
    /// An MQTT client connected with `client_id`: claim it in this shard's
    /// partition of the client id directory (a session already holding it
    /// is closed, or the new one, per `session.rebind`).
    ClientIdClaim {
        /// The CONNECT's client id.
        client_id: Arc<str>,
        /// The session that sent it.
        sid: SessionId,
    },
    /// The session holding `client_id` ended.
    ClientIdRelease {
        /// The client id.
        client_id: Arc<str>,
        /// The session that ended.
        sid: SessionId,
    },
    /// A node's packet for a session this shard owns, sent on another
    /// shard's link (a reply if its `request_id` is set).
    NodePush {
        /// The push.
        push: crate::link::proto::Push,
        /// The link it came on (link indexes are the same on every shard).
        link: u16,
    },
    /// Write an encoded packet to this shard's members of a channel.
    Publish {
        /// The channel.
        channel: Arc<str>,
        /// The packet, encoded once for the whole gate.
        packet: Outgoing,
        /// Where to report how many got it.
        reply: Option<ReplyTo>,
    },
}

impl ToShard {
    /// Whether this message may be dropped under overload (see the module docs).
    pub fn droppable(&self) -> bool {
        match self {
            ToShard::Session { op, .. } | ToShard::Uid { op, .. } => op.droppable(),
            ToShard::Broadcast { .. } | ToShard::Publish { .. } => true,
            // A reply is kept: dropping it would turn into a TIMEOUT later.
            ToShard::NodePush { push, .. } => push.request_id == 0,
            ToShard::DirBind { .. }
            | ToShard::DirUnbind { .. }
            | ToShard::Gathered { .. }
            | ToShard::ClientIdClaim { .. }
            | ToShard::ClientIdRelease { .. } => false,
        }
    }

    /// The reply address a dropped message must answer.
    pub fn reply(&self) -> Option<ReplyTo> {
        match self {
            ToShard::Session { reply, .. }
            | ToShard::Uid { reply, .. }
            | ToShard::DirBind { reply, .. }
            | ToShard::Broadcast { reply, .. }
            | ToShard::Publish { reply, .. } => *reply,
            _ => None,
        }
    }
}

/// One shard's ends of every inbox.
pub struct Mailbox {
    inbox: Receiver<ToShard>,
    to: Vec<Sender<ToShard>>,
    backlog: Vec<VecDeque<ToShard>>,
    /// Destinations sent to since the last wake-up pass.
    touched: Vec<bool>,
    capacity: usize,
}

/// What became of a message handed to [`Mailbox::send`].
#[derive(Debug)]
pub enum Sent {
    /// In the destination's inbox or this shard's backlog for it.
    Queued,
    /// Dropped under overload; answer the caller BUSY if it asked.
    Dropped(ToShard),
}

impl Mailbox {
    /// Creates the inboxes of `shards` shards; returns one mailbox per shard.
    pub fn create(shards: usize, capacity: usize) -> Vec<Mailbox> {
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..shards)
            .map(|_| crossbeam_channel::bounded(capacity))
            .unzip();
        rxs.into_iter()
            .map(|inbox| Mailbox {
                inbox,
                to: txs.clone(),
                backlog: (0..shards).map(|_| VecDeque::new()).collect(),
                touched: vec![false; shards],
                capacity,
            })
            .collect()
    }

    /// Sends `msg` to shard `dest` (never this shard: execute locally instead).
    pub fn send(&mut self, dest: usize, msg: ToShard) -> Sent {
        self.touched[dest] = true;
        if self.backlog[dest].is_empty() {
            match self.to[dest].try_send(msg) {
                Ok(()) => return Sent::Queued,
                Err(TrySendError::Full(m)) | Err(TrySendError::Disconnected(m)) => {
                    return self.hold(dest, m);
                }
            }
        }
        self.hold(dest, msg)
    }

    fn hold(&mut self, dest: usize, msg: ToShard) -> Sent {
        if self.backlog[dest].len() >= self.capacity && msg.droppable() {
            return Sent::Dropped(msg);
        }
        self.backlog[dest].push_back(msg);
        Sent::Queued
    }

    /// Moves backlogged messages into their inboxes, in order, as room allows.
    pub fn retry_backlog(&mut self) {
        for dest in 0..self.to.len() {
            while let Some(m) = self.backlog[dest].pop_front() {
                match self.to[dest].try_send(m) {
                    Ok(()) => self.touched[dest] = true,
                    Err(TrySendError::Full(m)) | Err(TrySendError::Disconnected(m)) => {
                        self.backlog[dest].push_front(m);
                        break;
                    }
                }
            }
        }
    }

    /// Destinations sent to since the last call (clears the marks).
    pub fn take_touched(&mut self, mut f: impl FnMut(usize)) {
        for (i, t) in self.touched.iter_mut().enumerate() {
            if std::mem::take(t) {
                f(i);
            }
        }
    }

    /// The next message in this shard's inbox, if any.
    pub fn try_recv(&self) -> Option<ToShard> {
        self.inbox.try_recv().ok()
    }

    /// True if the inbox holds messages.
    pub fn has_mail(&self) -> bool {
        !self.inbox.is_empty()
    }

    /// Messages waiting in this shard's inbox (a gauge for the admin port).
    pub fn inbox_len(&self) -> usize {
        self.inbox.len()
    }

    /// Messages waiting in this shard's backlogs.
    pub fn backlog_len(&self) -> usize {
        self.backlog.iter().map(VecDeque::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push() -> ToShard {
        ToShard::Broadcast {
            packet: Outgoing {
                packet: bytes::Bytes::from_static(b"x"),
                topic: "t".into(),
                payload: bytes::Bytes::from_static(b"x"),
            },
            bound_only: false,
            reply: None,
        }
    }

    #[test]
    fn full_inbox_backlogs_in_order_then_drops_only_droppable() {
        let mut boxes = Mailbox::create(2, 16);
        let (a, b) = {
            let mut it = boxes.drain(..);
            (it.next().unwrap(), it.next().unwrap())
        };
        let mut a = a;
        for _ in 0..32 {
            assert!(matches!(a.send(1, push()), Sent::Queued));
        }
        assert_eq!(a.backlog_len(), 16);
        assert!(matches!(a.send(1, push()), Sent::Dropped(_)));
        let sid = SessionId(1);
        assert!(
            matches!(
                a.send(
                    1,
                    ToShard::DirUnbind {
                        uid: UserId(1),
                        sid
                    }
                ),
                Sent::Queued
            ),
            "control kept"
        );
        let mut n = 0;
        while b.try_recv().is_some() {
            n += 1;
        }
        assert_eq!(n, 16);
        a.retry_backlog();
        while let Some(m) = b.try_recv() {
            n += 1;
            if n == 33 {
                assert!(matches!(m, ToShard::DirUnbind { .. }), "order kept");
            }
        }
        a.retry_backlog();
        while b.try_recv().is_some() {
            n += 1;
        }
        assert_eq!(n, 33);
        let mut touched = vec![];
        a.take_touched(|d| touched.push(d));
        assert_eq!(touched, vec![1]);
    }
}
