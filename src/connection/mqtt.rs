//! MQTT on a connection: the session rules of mqant's gate, done properly
//! (`../shared/research/mqant-mqtt.md` §3), on top of the pure packet codec
//! [`crate::codec::mqtt`] and mqant's topic and reply rules [`crate::mqtt`].
//!
//! ```text
//!  accept ── CONNECT (within connect_timeout) ──▶ CONNACK 20 02 00 00, Opened
//!  PUBLISH a/HD_b/7   QoS 0/1/2 ──▶ (PUBACK | PUBREC) ──▶ Request{token} ──▶ a node
//!                     reply ◀── PUBLISH a/HD_b/7 {"Trace","Error","Result"} (QoS 0)
//!  PUBLISH a/HD_b     a notification: to the node, nothing back
//!  PUBREL ──▶ PUBCOMP     SUBSCRIBE ──▶ SUBACK (granted 0)     UNSUBSCRIBE ──▶ UNSUBACK
//!  PINGREQ ──▶ PINGRESP   DISCONNECT ──▶ closed (client_closed)
//!  silent for 1.5 × keep-alive ──▶ closed (heartbeat_timeout); keep-alive 0: the gate's idle rule
//! ```
//! Everything sent to clients is QoS 0. A request waits in `inflight`
//! (at most `max_inflight`, mqant's ConcurrentTasks) until its reply or its
//! error is published on the request topic: each is answered exactly once.
//! A QoS 2 packet id is remembered from PUBLISH to PUBREL, so a resent
//! PUBLISH (DUP) is acknowledged again but not delivered twice.
//! Subscriptions grant QoS 0 and change nothing: pushes reach a client
//! whether it subscribed or not, as with mqant.

use bytes::{Bytes, BytesMut};

use super::framing::{FramingError, Inbound};
use super::{Close, ConnEvent, Connection, Ctx};
use crate::codec::mqtt::{self as wire, Connect, MqttError, Publish, Topic};
use crate::mqtt::{errors, is_json, looks_like_json_object, parse_topic, ResultFormat, TRACE_LEN};
use crate::session::CloseReason;
use crate::stats::ShardStats;
use crate::ws::frame::Message;
use crate::ws::{Reassembler, WsError};

/// QoS 2 packet ids remembered at most per connection (a client keeps at
/// most its own in-flight window of them).
const MAX_QOS2_PENDING: usize = 1024;

/// MQTT limits shared by a shard's connections.
#[derive(Clone, Copy, Debug)]
pub struct MqttRules {
    /// Largest remaining length a client may send.
    pub max_packet_bytes: usize,
    /// Requests per connection waiting for replies, at most: the smaller of
    /// `network.mqtt.max_inflight` and a non-zero `limits.max_inflight`.
    pub max_inflight: usize,
}

/// One connection's MQTT state. Boxed in the framing: a due connection
/// pays nothing for it.
#[derive(Debug, Default)]
pub struct MqttState {
    /// CONNECT was received.
    connected: bool,
    /// The client id (assigned when the client sent none).
    pub client_id: String,
    /// The gate assigned `client_id` (the CONNECT had none).
    pub assigned_id: bool,
    /// CONNECT's user name, if any.
    pub username: String,
    /// CONNECT's password, if any.
    pub password: Bytes,
    /// 16 hex digits, fixed for the connection (mqant's Trace).
    trace: [u8; TRACE_LEN],
    /// Requests waiting for a reply: token and topic, oldest first.
    inflight: Vec<(i32, Topic)>,
    next_token: i32,
    /// QoS 2 packet ids delivered and not yet released.
    qos2: Vec<u16>,
    /// MQTT in WebSocket binary messages (`mqtt-ws`): the frames around it.
    pub(super) ws: Option<Box<MqttWs>>,
}

/// The WebSocket layer under MQTT: binary messages are a byte stream, so a
/// packet may span messages and a message may hold several packets.
#[derive(Debug)]
pub(super) struct MqttWs {
    reader: Option<Reassembler>,
    /// Bytes of messages not yet decoded as packets (usually empty).
    stream: BytesMut,
}

impl MqttWs {
    /// The next MQTT packet, reading WebSocket messages as needed.
    pub(super) fn decode(
        &mut self,
        src: &mut BytesMut,
        max: usize,
    ) -> Result<Option<Inbound>, FramingError> {
        loop {
            if !self.stream.is_empty() {
                match wire::decode(&mut self.stream, max) {
                    Ok(Some(p)) => return Ok(Some(Inbound::Mqtt(p))),
                    Ok(None) => {}
                    Err(e) => return Err(FramingError::Mqtt(e)),
                }
            }
            let Some(reader) = &mut self.reader else {
                src.clear();
                return Ok(None);
            };
            let msg = match reader.decode(src) {
                Ok(Some(m)) => m,
                Ok(None) => return Ok(None),
                Err(err) => return Err(self.fail(err)),
            };
            match msg {
                Message::Binary(m) => self.stream.extend_from_slice(&m),
                Message::Ping(p) => {
                    let mut b = BytesMut::new();
                    crate::ws::frame::encode_pong(&p, &mut b);
                    return Ok(Some(Inbound::Reply(b)));
                }
                Message::Pong(_) => {}
                Message::Close(cf) => {
                    let mut reply = BytesMut::new();
                    crate::ws::frame::encode_close_reply(cf.as_ref(), &mut reply);
                    self.reader = None;
                    return Ok(Some(Inbound::PeerClosed { reply }));
                }
            }
        }
    }

    fn fail(&mut self, err: WsError) -> FramingError {
        let mut goodbye = BytesMut::new();
        crate::ws::frame::encode_close(err.close_code(), "", &mut goodbye);
        self.reader = None;
        FramingError::Ws { err, goodbye }
    }

    /// The close frame, once.
    pub(super) fn goodbye(&mut self, reason: CloseReason, dst: &mut BytesMut) -> bool {
        if self.reader.take().is_none() {
            return false;
        }
        super::framing::encode_close_for(reason, dst);
        true
    }
}

/// A client request or notification for a node, decoded from a PUBLISH.
#[derive(Debug)]
pub struct MqttRequest {
    /// Identifies the request on this connection until it is answered
    /// (sent to the node as the `Deliver`'s seq); 0 for a notification.
    pub token: i32,
    /// The PUBLISH topic (`module[@instance]/handler[/msgid]`).
    pub topic: Topic,
    /// The payload, as sent.
    pub payload: Bytes,
}

impl MqttRequest {
    /// The client waits for a reply.
    pub fn is_request(&self) -> bool {
        self.token != 0
    }
}

impl MqttState {
    /// The state of a client that upgraded a WebSocket to MQTT; messages
    /// up to one packet of `max` (and at least 64 KiB) are accepted.
    pub(super) fn over_websocket(max: usize) -> Self {
        MqttState {
            ws: Some(Box::new(MqttWs {
                reader: Some(Reassembler::new((max + 5).max(64 * 1024))),
                stream: BytesMut::new(),
            })),
            ..Default::default()
        }
    }

    /// The trace id of this connection.
    pub fn trace(&self) -> &str {
        // Written from hex digits only (see `on_connect`).
        std::str::from_utf8(&self.trace).unwrap_or_default()
    }
}

impl Connection {
    /// The connection's MQTT state, if it speaks MQTT.
    pub fn mqtt(&self) -> Option<&MqttState> {
        self.framing.mqtt()
    }

    /// Acts on one packet from an MQTT client.
    pub(super) fn on_mqtt(&mut self, p: wire::Inbound, cx: &mut Ctx<'_>) {
        let connected = self.framing.mqtt().is_some_and(|m| m.connected);
        match p {
            wire::Inbound::Connect(c) if !connected => self.on_connect(c, cx),
            wire::Inbound::Connect(_) => self.mqtt_violation("a second CONNECT", cx),
            _ if !connected => self.mqtt_violation("the first packet is not CONNECT", cx),
            wire::Inbound::Publish(p) => self.on_publish(p, cx),
            wire::Inbound::PubRel(id) => {
                if let Some(m) = self.framing.mqtt_mut() {
                    m.qos2.retain(|x| *x != id);
                }
                self.queue_mqtt(|b| wire::encode_pubcomp(id, b), cx);
            }
            // We publish at QoS 0 only: nothing of ours is acknowledged.
            wire::Inbound::PubAck(_) | wire::Inbound::PubRec(_) | wire::Inbound::PubComp(_) => {}
            wire::Inbound::Subscribe { packet_id, filters } => {
                let granted = vec![0u8; filters.len()];
                self.queue_mqtt(|b| wire::encode_suback(packet_id, &granted, b), cx);
            }
            wire::Inbound::Unsubscribe { packet_id, .. } => {
                self.queue_mqtt(|b| wire::encode_unsuback(packet_id, b), cx);
            }
            wire::Inbound::PingReq => self.queue_mqtt(wire::encode_pingresp, cx),
            // Over WebSocket the goodbye is a close frame (1000); raw: at once.
            wire::Inbound::Disconnect => self.close(CloseReason::ClientClosed, Close::Graceful, cx),
        }
    }

    fn on_connect(&mut self, c: Connect, cx: &mut Ctx<'_>) {
        let sid = self.session.id;
        let Some(m) = self.framing.mqtt_mut() else {
            return;
        };
        m.connected = true;
        m.assigned_id = c.client_id.is_empty();
        m.client_id = if c.client_id.is_empty() {
            // 3.1.1 §3.1.3.1: the server assigns one.
            format!("ringgate-{:016x}", sid.0)
        } else {
            c.client_id
        };
        m.username = c.username.unwrap_or_default();
        m.password = c.password.unwrap_or_default();
        // splitmix64 of the session and the time: 16 well-spread hex digits.
        let mut z = (sid.0 ^ cx.now.rotate_left(32)).wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        let trace = format!("{:016x}", z ^ (z >> 31));
        m.trace.copy_from_slice(trace.as_bytes());
        // MQTT 3.1.1 §3.1.2.10: silent for 1.5 × keep-alive closes; 0: the gate's rule.
        self.session.keep_alive_ms = (c.keep_alive > 0).then(|| u32::from(c.keep_alive) * 1500);
        self.queue_raw_mqtt(|b| wire::encode_connack(false, 0, b), cx);
        self.open(cx);
    }

    fn on_publish(&mut self, p: Publish, cx: &mut Ctx<'_>) {
        ShardStats::add(&cx.stats.packets_in, 1);
        if let Some(id) = p.packet_id {
            if p.qos == 1 {
                self.queue_mqtt(|b| wire::encode_puback(id, b), cx);
            } else {
                self.queue_mqtt(|b| wire::encode_pubrec(id, b), cx);
                let Some(m) = self.framing.mqtt_mut() else {
                    return;
                };
                if m.qos2.contains(&id) {
                    return; // a resend before PUBREL: delivered already
                }
                if m.qos2.len() >= MAX_QOS2_PENDING {
                    return self.mqtt_violation("too many QoS 2 packets never released", cx);
                }
                m.qos2.push(id);
            }
        }
        let topic = match parse_topic(&p.topic) {
            Ok(t) => t,
            Err(_) => return self.mqtt_answer_topic(&p.topic, errors::BAD_TOPIC, cx),
        };
        let request = topic.is_request();
        if looks_like_json_object(&p.payload) && !is_json(&p.payload) {
            if request {
                self.mqtt_answer_topic(&p.topic, errors::BAD_JSON, cx);
            }
            return;
        }
        let token = if request {
            let max = cx.rules.mqtt.max_inflight;
            let Some(m) = self.framing.mqtt_mut() else {
                return;
            };
            if m.inflight.len() >= max {
                ShardStats::add(&cx.stats.inflight_full, 1);
                return self.mqtt_answer_topic(&p.topic, errors::QUEUE_FULL, cx);
            }
            m.next_token = m.next_token.checked_add(1).unwrap_or(1).max(1);
            // A copy: the parsed topic is a slice of the whole read buffer,
            // which it would keep alive until the reply (up to
            // request_timeout) for every request waiting.
            m.inflight
                .push((m.next_token, Topic::from(p.topic.as_str())));
            m.next_token
        } else {
            0
        };
        cx.events.push(ConnEvent::Mqtt(MqttRequest {
            token,
            topic: p.topic,
            payload: p.payload,
        }));
    }

    /// Answers request `token` (a reply, or an error when `error` is not
    /// empty), once: later answers for it are ignored. False if nothing
    /// waited for it.
    pub fn mqtt_reply(
        &mut self,
        token: i32,
        error: &str,
        payload: &[u8],
        format: ResultFormat,
        cx: &mut Ctx<'_>,
    ) -> bool {
        let Some(m) = self.framing.mqtt_mut() else {
            return false;
        };
        let Some(i) = m.inflight.iter().position(|(t, _)| *t == token) else {
            return false;
        };
        let (_, topic) = m.inflight.remove(i);
        let mut body = BytesMut::with_capacity(payload.len() + 64);
        crate::mqtt::wrap_reply(m.trace(), error, payload, format, &mut body);
        self.send_publish(&topic, &body, cx)
    }

    /// Queues a QoS 0 PUBLISH (a push, or a reply already wrapped).
    pub fn send_publish(&mut self, topic: &str, payload: &[u8], cx: &mut Ctx<'_>) -> bool {
        let queued = self.queue(cx, |f, _, b| {
            f.encode_mqtt(b, |b| wire::encode_publish(topic, payload, b))
                .map_err(|_| crate::codec::CodecError::OutOfRange("MQTT topic or payload size"))
        });
        if queued {
            ShardStats::add(&cx.stats.packets_out, 1);
        }
        queued
    }

    /// An error reply for a request that never reached a node (its topic
    /// is not in `inflight`): only requests are answered, as mqant does.
    fn mqtt_answer_topic(&mut self, topic: &Topic, error: &str, cx: &mut Ctx<'_>) {
        let Some(m) = self.framing.mqtt() else {
            return;
        };
        let mut body = BytesMut::with_capacity(error.len() + 64);
        crate::mqtt::wrap_reply(m.trace(), error, b"", ResultFormat::ResultRaw, &mut body);
        ShardStats::add(&cx.stats.mqtt_errors, 1);
        self.send_publish(topic, &body, cx);
    }

    /// Queues a control packet of an open connection.
    fn queue_mqtt(&mut self, encode: impl FnOnce(&mut BytesMut), cx: &mut Ctx<'_>) {
        self.queue(cx, |f, _, b| {
            let _ = f.encode_mqtt(b, |b| {
                encode(b);
                Ok(())
            });
            Ok(())
        });
    }

    /// Queues a packet whatever the phase (CONNACK, before the connection opens).
    fn queue_raw_mqtt(&mut self, encode: impl FnOnce(&mut BytesMut), cx: &mut Ctx<'_>) {
        let mut b = BytesMut::with_capacity(8);
        let _ = self.framing.encode_mqtt(&mut b, |b| {
            encode(b);
            Ok(())
        });
        self.queue_raw(&b, cx);
    }

    fn mqtt_violation(&mut self, what: &'static str, cx: &mut Ctx<'_>) {
        tracing::info!(session = %self.session.id, peer = %self.peer, what, "closing MQTT connection: protocol violation");
        ShardStats::add(&cx.stats.mqtt_errors, 1);
        self.close(CloseReason::ProtocolError, Close::Now, cx);
    }

    /// A packet that does not decode: MQTT 5 is told CONNACK 0x01 (3.1.1
    /// §3.1.2.2), everything else closes at once.
    pub(super) fn on_mqtt_error(&mut self, err: MqttError, cx: &mut Ctx<'_>) {
        tracing::info!(session = %self.session.id, peer = %self.peer, %err, reason = err.reason(), "closing MQTT connection: bad packet");
        ShardStats::add(&cx.stats.mqtt_errors, 1);
        if let MqttError::UnsupportedLevel(_) = err {
            self.queue_raw_mqtt(
                |b| wire::encode_connack(false, wire::connack::UNACCEPTABLE_PROTOCOL_VERSION, b),
                cx,
            );
            return self.close(CloseReason::ProtocolError, Close::AfterFlush, cx);
        }
        self.close(CloseReason::ProtocolError, Close::Now, cx);
    }
}
