//! MQTT clients' requests, routed by topic (`module[@instance]/handler`)
//! to the node that announced that handler name, and the gate's own
//! answers in mqant's words when no node can take them.

use std::sync::Arc;

use super::directory::{client_id_home, BindOutcome};
use super::mailbox::{SessionOp, ToShard};
use super::routes::{Asker, NamedMiss};
use super::{Shard, ShardStats};
use crate::codec::ext;
use crate::connection::MqttRequest;
use crate::ids::SessionId;
use crate::link::proto::{to_node, Deliver, ResultFormat, ToNode};
use crate::mqtt::{errors, parse_topic};
use crate::session::CloseReason;

impl Shard {
    /// Claims (`claim`) or releases the client id of MQTT session `idx`,
    /// on the shard that owns it. Ids the gate assigned are unique already.
    pub(super) fn route_client_id(&mut self, idx: u32, claim: bool) {
        let Some(c) = self.clients.get_mut(idx) else {
            return;
        };
        let Some(m) = c.conn.mqtt().filter(|m| !m.assigned_id) else {
            return;
        };
        let (client_id, sid): (Arc<str>, _) = (m.client_id.as_str().into(), c.conn.id());
        let home = client_id_home(&client_id, self.p.shards);
        let msg = if claim {
            ToShard::ClientIdClaim { client_id, sid }
        } else {
            ToShard::ClientIdRelease { client_id, sid }
        };
        if home == self.me() {
            self.on_mail(msg);
        } else {
            self.send_to(home, msg);
        }
    }

    /// A session connected with `client_id`: as MQTT says, a second
    /// connection with the same id takes over (`session.rebind = "kick"`:
    /// the old one is closed with reason `rebind`), or is refused
    /// (`"reject"`: the new one is closed).
    pub(super) fn claim_client_id(&mut self, client_id: Arc<str>, sid: SessionId) {
        // The newcomer refused gets its CONNACK (already queued) first:
        // closed after a flush, not mid-handshake.
        let kick = |this: &mut Self, victim, flush| {
            let op = SessionOp::Kick {
                flush,
                reason: CloseReason::Rebind,
            };
            this.route_session(victim, op, None);
        };
        match self
            .client_ids
            .bind(client_id.clone(), sid, self.p.session.rebind)
        {
            BindOutcome::Bound | BindOutcome::Unchanged => {}
            BindOutcome::Replaced { old } => {
                tracing::debug!(%client_id, %old, new = %sid, "MQTT client id taken over");
                kick(self, old, false);
            }
            BindOutcome::Rejected { other } => {
                tracing::debug!(%client_id, %other, new = %sid, "MQTT client id in use; refusing the new connection");
                kick(self, sid, true);
            }
        }
    }

    /// Routes one MQTT request or notification to a node, or answers it.
    pub(super) fn dispatch_mqtt(&mut self, idx: u32, r: MqttRequest) {
        // The connection parsed the topic before emitting the request.
        let Ok(topic) = parse_topic(&r.topic) else {
            return;
        };
        if self.over_rate(idx, r.payload.len()) {
            self.count_refusal(ext::RATE_LIMITED);
            self.mqtt_error(idx, r.token, errors::RATE_LIMITED);
            return self.after_rate_limit(idx);
        }
        let Some(c) = self.clients.get_mut(idx) else {
            return;
        };
        let s = &c.conn.session;
        let who = Asker {
            uid: s.uid.0,
            session: s.id.0,
            nodes: &s.nodes,
        };
        let picked = self.routes.pick_named(
            topic.module,
            topic.handler,
            topic.instance,
            &self.links,
            who,
            self.p.dispatch,
        );
        let (link, route) = match picked {
            Ok(x) => x,
            Err(NamedMiss::Refused(code)) => {
                self.count_refusal(code);
                return self.mqtt_error(idx, r.token, errors::refused(code));
            }
            Err(miss) => {
                ShardStats::add(&self.stats().no_route, 1);
                let error = match miss {
                    NamedMiss::NoFunction => errors::function_not_found(topic.handler),
                    _ => errors::service_not_found(topic.module),
                };
                return self.mqtt_error(idx, r.token, &error);
            }
        };
        if self.links[link].queued() >= self.p.link.max_queued_bytes {
            ShardStats::add(&self.stats().link_busy, 1);
            return self.mqtt_error(idx, r.token, errors::QUEUE_FULL);
        }
        if r.payload.len() + crate::config::LINK_ENVELOPE_BYTES + r.topic.len()
            > self.links[link].batch.frame_limit()
        {
            ShardStats::add(&self.stats().too_large, 1);
            return self.mqtt_error(idx, r.token, errors::TOO_LARGE);
        }
        let Some(c) = self.clients.get_mut(idx) else {
            return;
        };
        let s = &c.conn.session;
        let (sid, uid) = (s.id, s.uid);
        let settings = if self.p.session.deliver_settings {
            s.settings.to_map()
        } else {
            Default::default()
        };
        let request_id = if r.is_request() {
            let timeout = self.p.mqtt_request_timeout;
            let id =
                self.pending
                    .start_at(link, sid, route, r.token, self.now, timeout, self.now_ns);
            if self.pending.on_link(link) == 1 {
                self.links[link].busy_since = self.now;
            }
            id
        } else {
            0
        };
        self.links[link].batch.push(&ToNode {
            msg: Some(to_node::Msg::Deliver(Deliver {
                session_id: sid.0,
                uid: uid.0,
                route,
                seq: r.token,
                payload: r.payload,
                settings,
                request_id,
                topic: r.topic.as_str().to_owned(),
            })),
        });
        ShardStats::add(&self.stats().to_node, 1);
    }

    /// Answers MQTT request `token` of `idx` with mqant's `error` (nothing
    /// for a notification, token 0).
    pub(super) fn mqtt_error(&mut self, idx: u32, token: i32, error: &str) {
        if token == 0 {
            return;
        }
        ShardStats::add(&self.stats().mqtt_errors, 1);
        tracing::debug!(idx, token, error, "MQTT request answered by the gate");
        self.with_conn(idx, |c, cx| {
            c.mqtt_reply(token, error, b"", ResultFormat::ResultRaw, cx)
        });
    }

    /// A node's answer, or the gate's error, for a request of session
    /// `sid`: MQTT clients get it wrapped on the request's topic, due
    /// clients a packet (a node's error text with extension NODE_ERROR).
    pub(super) fn answer_request(&mut self, sid: SessionId, a: Answer<'_>) {
        let Some((idx, c)) = self.clients.by_session(sid) else {
            ShardStats::add(&self.stats().push_misses, 1);
            return;
        };
        if c.conn.mqtt().is_some() {
            let error = match a.ext {
                0 => a.error,
                ext::TIMEOUT | ext::NODE_DOWN => errors::DEADLINE,
                ext::BUSY => errors::QUEUE_FULL,
                ext::TOO_LARGE => errors::TOO_LARGE,
                ext::UNAUTHORIZED | ext::FORBIDDEN | ext::NOT_BOUND => errors::refused(a.ext),
                _ if !a.error.is_empty() => a.error,
                _ => "error",
            };
            let (token, payload, format) = (a.token, a.payload, a.format);
            self.with_conn(idx, |c, cx| c.mqtt_reply(token, error, payload, format, cx));
            return;
        }
        // One request of this due connection less waits for its reply.
        c.inflight = c.inflight.saturating_sub(1);
        let (ext, payload) = if a.error.is_empty() {
            (a.ext, a.payload)
        } else {
            (ext::NODE_ERROR, a.error.as_bytes())
        };
        self.with_conn(idx, |c, cx| c.send_packet(ext, a.route, a.seq, payload, cx));
    }
}

/// What answers a request (see [`Shard::answer_request`]).
pub(super) struct Answer<'a> {
    /// Extension code (0: the node's reply).
    pub ext: u8,
    /// The request's route and seq (an MQTT request's token).
    pub route: i32,
    /// See `route`.
    pub seq: i32,
    /// The MQTT request's token (the gate's record of it).
    pub token: i32,
    /// The reply's payload.
    pub payload: &'a [u8],
    /// A node's error text (empty: success).
    pub error: &'a str,
    /// How an MQTT client sees the payload.
    pub format: ResultFormat,
}
