//! One client connection as a pure state machine, quinn-proto style: no
//! socket, no clock, no io_uring. The shard feeds it what the socket did and
//! asks it what to do next.
//!
//! ```text
//!  inputs                                   outputs
//!  handle_recv(bytes)    ─┐             ┌─ poll_transmit() → bytes for one send
//!  handle_sent(buf)       │ Connection  │─ poll_timeout()  → when to call handle_timeout
//!  handle_timeout()       ├─▶ Phase ───▶│─ events (Ctx::events): Opened, Request, Closed
//!  handle_peer_gone()     │  Framing    └─ is_closed()     → shut the socket, free when idle
//!  send_* / close(..)    ─┘  Outbound
//! ```
//!
//! A connection's life is one [`Phase`]:
//!
//! ```text
//!  Handshake ──TLS done / 101 sent──▶ Open ──close(Graceful | AfterFlush)──▶ Draining ──flushed or linger──▶ Closed
//!      │                                │                                                                  ▲
//!      └──── deadline, error ───────────┴──────────── close(Now) ─────────────────────────────────────────────┘
//! ```
//!
//! There is exactly one way to close, [`Connection::close`], whatever the
//! protocol: it counts the reason, emits [`ConnEvent::Closed`] once, writes
//! the framing's goodbye where it has one and decides whether to drain.

mod framing;
mod mqtt;
mod outbound;
mod peer;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;

pub use framing::{Framing, FramingError, Inbound, WsState};
pub use mqtt::{MqttRequest, MqttRules, MqttState};
pub use outbound::{BufPool, Outbound, SpareBuf};
pub use peer::PeerAddr;

use crate::codec::{CodecError, Frame, Packet, PacketOptions};
use crate::ids::SessionId;
use crate::session::{CloseReason, HeartbeatAction, Millis, Rules, Session};
use crate::stats::ShardStats;
use crate::tls::TlsConn;
use crate::ws::HandshakePolicy;

/// How long a draining connection (close frame, HTTP refusal, TLS alert,
/// kick with flush) may take to read what is queued before it is closed anyway.
pub const LINGER_MS: Millis = 1000;

/// What a listener serves (named in connect events).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Network {
    /// due packets over TCP.
    Tcp,
    /// due packets over TLS.
    Tls,
    /// due packets in WebSocket binary messages.
    Ws,
    /// WebSocket over TLS.
    Wss,
    /// MQTT over TCP.
    Mqtt,
    /// MQTT over TLS.
    Mqtts,
    /// MQTT in WebSocket binary messages (upgraded on the ws listener).
    MqttWs,
    /// MQTT over WebSocket over TLS.
    MqttWss,
}

impl Network {
    /// The name sent to nodes in connect events.
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Tcp => "tcp",
            Network::Tls => "tls",
            Network::Ws => "ws",
            Network::Wss => "wss",
            Network::Mqtt => "mqtt",
            Network::Mqtts => "mqtts",
            Network::MqttWs => "mqtt-ws",
            Network::MqttWss => "mqtt-wss",
        }
    }

    /// The client speaks MQTT.
    pub fn is_mqtt(self) -> bool {
        matches!(
            self,
            Network::Mqtt | Network::Mqtts | Network::MqttWs | Network::MqttWss
        )
    }

    /// The connection opens on the client's first message (an upgrade
    /// request, a CONNECT), not when the transport is up.
    pub fn opens_on_hello(self) -> bool {
        self.is_websocket() || self.is_mqtt()
    }

    /// Packets travel in WebSocket messages.
    pub fn is_websocket(self) -> bool {
        matches!(
            self,
            Network::Ws | Network::Wss | Network::MqttWs | Network::MqttWss
        )
    }
}

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The transport handshake (TLS, WebSocket upgrade) must finish by `deadline`.
    Handshake {
        /// When it times out.
        deadline: Millis,
    },
    /// Serving: requests go to nodes, packets come back.
    Open,
    /// Closing: nothing is read; what is queued is sent until `deadline`.
    Draining {
        /// Why it closes.
        reason: CloseReason,
        /// Closed anyway at this time (linger).
        deadline: Millis,
    },
    /// Done: the shard shuts the socket and frees the slot once idle.
    Closed {
        /// Why it closed.
        reason: CloseReason,
    },
}

/// How to close (see [`Connection::close`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Close {
    /// At once: nothing more is sent (the peer is gone, or will not read).
    Now,
    /// With the framing's goodbye if it has one (a WebSocket close frame,
    /// sent after what is queued), else at once.
    Graceful,
    /// After everything queued, plus the framing's goodbye, has been sent.
    AfterFlush,
}

/// What a connection tells the shard.
#[derive(Debug)]
pub enum ConnEvent {
    /// The transport handshake is done: nodes may hear of the session.
    Opened,
    /// A request for a node.
    Request(Packet),
    /// A request or notification of an MQTT client.
    Mqtt(MqttRequest),
    /// The session ended (emitted once); `opened`: nodes heard of it.
    Closed {
        /// Why.
        reason: CloseReason,
        /// An [`ConnEvent::Opened`] was emitted before.
        opened: bool,
    },
}

/// A packet for many sessions (a push, multicast, broadcast or channel
/// publish), encoded once: due's packet for due clients (raw or in a
/// WebSocket message), topic and payload for MQTT clients.
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// The due packet, encoded for raw streams.
    pub packet: bytes::Bytes,
    /// The PUBLISH topic for MQTT clients.
    pub topic: Arc<str>,
    /// The payload alone, for MQTT clients.
    pub payload: bytes::Bytes,
}

/// Rules shared by every connection of a shard.
#[derive(Clone, Debug)]
pub struct ConnRules {
    /// Client packet format.
    pub packet: PacketOptions,
    /// Heartbeat and authorize rules.
    pub session: Rules,
    /// Outbound bytes (queued + in flight) beyond which a connection overflows.
    pub max_outbound: usize,
    /// WebSocket upgrade rules, when a WebSocket listener is served.
    pub ws: Option<Arc<HandshakePolicy>>,
    /// MQTT limits.
    pub mqtt: MqttRules,
}

/// What every input needs besides the connection: time, rules and the
/// shard's shared scratch space. Built by the shard once per call.
pub struct Ctx<'a> {
    /// Now, in ms on the shard's clock.
    pub now: Millis,
    /// Unix time in ns for heartbeats that carry it (read by the shard).
    pub unix_nanos: i64,
    /// The shard's rules.
    pub rules: &'a ConnRules,
    /// The shard's counters.
    pub stats: &'a ShardStats,
    /// Spare write buffers.
    pub pool: &'a mut BufPool,
    /// Decode buffer for reads of connections that hold no partial packet.
    pub scratch: &'a mut BytesMut,
    /// Events for the shard, drained by it after each call.
    pub events: &'a mut Vec<ConnEvent>,
}

/// One client connection.
#[derive(Debug)]
pub struct Connection {
    /// The session (ids, user, settings, idle and authorize deadlines).
    pub session: Session,
    /// The client's address (the proxy's view replaced by a trusted forwarded one).
    peer: PeerAddr,
    network: Network,
    phase: Phase,
    framing: Framing,
    tls: Option<Box<TlsConn>>,
    /// Plaintext of an incomplete packet, frame or request (usually empty, unallocated).
    rbuf: SpareBuf,
    out: Outbound,
}

impl Connection {
    /// A connection accepted at `cx.now`. `tls` is the TLS state for tls/wss;
    /// `handshake_ms` bounds the transport handshake where there is one.
    /// A plain TCP connection opens at once (emits [`ConnEvent::Opened`]).
    pub fn new(
        id: SessionId,
        peer: SocketAddr,
        network: Network,
        tls: Option<Box<TlsConn>>,
        handshake_ms: Millis,
        cx: &mut Ctx<'_>,
    ) -> Connection {
        let handshake = tls.is_some() || network.opens_on_hello();
        let mut c = Connection {
            session: Session::new(id, cx.now),
            peer: peer.into(),
            network,
            phase: Phase::Open,
            framing: Framing::new(network),
            tls,
            rbuf: SpareBuf::default(),
            out: Outbound::default(),
        };
        if handshake {
            let deadline = if handshake_ms > 0 {
                cx.now + handshake_ms
            } else {
                Millis::MAX
            };
            c.phase = Phase::Handshake { deadline };
        } else {
            cx.events.push(ConnEvent::Opened);
        }
        c
    }

    /// The session id.
    pub fn id(&self) -> SessionId {
        self.session.id
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer.get()
    }

    /// What the listener serves.
    pub fn network(&self) -> Network {
        self.network
    }

    /// Where the connection is.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Open: nodes know the session and packets may be sent to it.
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// Closed: the shard shuts the socket and frees the connection once no
    /// operation on it is in flight.
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed { .. })
    }

    /// The reason it is closing or closed.
    pub fn close_reason(&self) -> Option<CloseReason> {
        match self.phase {
            Phase::Draining { reason, .. } | Phase::Closed { reason } => Some(reason),
            _ => None,
        }
    }

    /// Call with every chunk of bytes the socket received.
    pub fn handle_recv(&mut self, data: &[u8], cx: &mut Ctx<'_>) {
        if !matches!(self.phase, Phase::Handshake { .. } | Phase::Open) {
            return; // draining: input no longer matters
        }
        self.session.handle_inbound(cx.now);
        // Decode from the connection's leftover if it has one, else from the
        // shared scratch buffer (so an idle connection holds no read buffer).
        let from_scratch = self.rbuf.is_empty();
        let mut src = if from_scratch {
            std::mem::take(cx.scratch)
        } else {
            self.rbuf.take()
        };
        if self.tls.is_some() {
            if !self.feed_tls(data, &mut src, cx) {
                src.clear();
                if from_scratch {
                    *cx.scratch = src;
                }
                return;
            }
        } else {
            src.extend_from_slice(data);
        }
        if !matches!(self.phase, Phase::Handshake { .. }) || self.network.opens_on_hello() {
            self.decode_all(&mut src, cx);
        }
        if from_scratch {
            if !src.is_empty() && self.accepts_input() {
                self.rbuf.get_mut().extend_from_slice(&src);
            }
            src.clear();
            *cx.scratch = src;
        } else if !src.is_empty() && self.accepts_input() {
            self.rbuf.set(src);
        }
        // else: the leftover buffer is dropped, the connection holds none again.
    }

    fn accepts_input(&self) -> bool {
        matches!(self.phase, Phase::Handshake { .. } | Phase::Open)
    }

    /// TLS: decrypts into `src` and queues what the handshake sends. False
    /// when the connection failed (and is draining its alert).
    fn feed_tls(&mut self, data: &[u8], src: &mut BytesMut, cx: &mut Ctx<'_>) -> bool {
        let tls = self.tls.as_mut().expect("caller checked");
        let was_handshaking = tls.is_handshaking();
        let fed = tls.feed(data);
        tls.read_plaintext(src);
        if tls.wants_write() {
            let buf = self.out.framing_buf(false, cx.pool);
            tls.take_ciphertext(buf);
        }
        if let Err(e) = fed {
            ShardStats::add(&cx.stats.tls_failures, 1);
            tracing::info!(session = %self.session.id, peer = %self.peer, err = %e, "closing connection: TLS error");
            self.close(CloseReason::ProtocolError, Close::AfterFlush, cx);
            return false;
        }
        if was_handshaking && !tls.is_handshaking() && !self.network.opens_on_hello() {
            ShardStats::add(&cx.stats.tls_handshakes, 1);
            self.open(cx);
        }
        true
    }

    /// Decodes and acts on everything complete in `src`, while the connection reads.
    fn decode_all(&mut self, src: &mut BytesMut, cx: &mut Ctx<'_>) {
        let policy = cx.rules.ws.clone();
        let mqtt_max = cx.rules.mqtt.max_packet_bytes;
        while self.accepts_input() {
            match self
                .framing
                .decode(src, &cx.rules.packet, policy.as_deref(), mqtt_max)
            {
                Ok(Some(x)) => self.on_inbound(x, cx),
                Ok(None) => return,
                Err(e) => {
                    src.clear();
                    return self.on_framing_error(e, cx);
                }
            }
        }
    }

    fn on_inbound(&mut self, x: Inbound, cx: &mut Ctx<'_>) {
        match x {
            Inbound::Frame(Frame::Data(p)) => {
                ShardStats::add(&cx.stats.packets_in, 1);
                cx.events.push(ConnEvent::Request(p));
            }
            Inbound::Frame(Frame::Heartbeat { .. }) => {
                ShardStats::add(&cx.stats.heartbeats_in, 1);
                if self.session.handle_heartbeat(&cx.rules.session) == HeartbeatAction::Answer {
                    self.send_heartbeat(cx);
                }
            }
            Inbound::Upgraded {
                response,
                forwarded_ip,
                mqtt,
            } => {
                if let Some(ip) = forwarded_ip {
                    self.peer.set_ip(ip);
                }
                self.queue_raw(&response, cx);
                ShardStats::add(&cx.stats.ws_upgrades, 1);
                if mqtt {
                    // MQTT in binary messages; it opens on CONNECT.
                    self.framing
                        .become_mqtt_over_ws(cx.rules.mqtt.max_packet_bytes);
                    self.network = match self.network {
                        Network::Wss => Network::MqttWss,
                        _ => Network::MqttWs,
                    };
                } else {
                    self.open(cx);
                }
            }
            Inbound::Reply(b) => {
                if !b.is_empty() {
                    self.queue_raw(&b, cx);
                }
            }
            Inbound::PeerClosed { reply } => {
                self.queue_raw(&reply, cx);
                self.close(CloseReason::ClientClosed, Close::AfterFlush, cx);
            }
            Inbound::Mqtt(p) => self.on_mqtt(p, cx),
        }
    }

    fn on_framing_error(&mut self, e: FramingError, cx: &mut Ctx<'_>) {
        let (id, peer) = (self.session.id, self.peer);
        match e {
            FramingError::Packet(err) => {
                tracing::info!(session = %id, %peer, %err, "closing connection: bad packet");
                self.close(CloseReason::ProtocolError, Close::Now, cx);
            }
            FramingError::Ws { err, goodbye } => {
                if matches!(err, crate::ws::WsError::Text) {
                    ShardStats::add(&cx.stats.ws_text_rejected, 1);
                }
                tracing::info!(session = %id, %peer, %err, code = err.close_code(), "closing websocket");
                self.queue_raw(&goodbye, cx);
                self.close(CloseReason::ProtocolError, Close::AfterFlush, cx);
            }
            FramingError::Mqtt(err) => self.on_mqtt_error(err, cx),
            FramingError::Rejected(rej) => {
                tracing::info!(session = %id, %peer, status = rej.status, reason = %rej.reason, "websocket upgrade refused");
                ShardStats::add(&cx.stats.ws_rejected, 1);
                self.queue_raw(&rej.response, cx);
                self.close(CloseReason::UpgradeRejected, Close::AfterFlush, cx);
            }
        }
    }

    /// The transport handshake is done.
    fn open(&mut self, cx: &mut Ctx<'_>) {
        if let Phase::Handshake { .. } = self.phase {
            self.phase = Phase::Open;
            cx.events.push(ConnEvent::Opened);
        }
    }

    /// Call when the socket reached end of stream or failed: the client is gone.
    pub fn handle_peer_gone(&mut self, cx: &mut Ctx<'_>) {
        self.close(CloseReason::ClientClosed, Close::Now, cx);
    }

    /// When [`Connection::handle_timeout`] should next be called; `None`: never.
    pub fn poll_timeout(&self, rules: &Rules) -> Option<Millis> {
        match self.phase {
            // `Millis::MAX`: a handshake without a deadline (handshake_ms = 0).
            Phase::Handshake { deadline } => match self.session.next_deadline(rules) {
                Some(d) => Some(d.min(deadline)),
                None => (deadline != Millis::MAX).then_some(deadline),
            },
            Phase::Open => self.session.next_deadline(rules),
            Phase::Draining { deadline, .. } => Some(deadline),
            Phase::Closed { .. } => None,
        }
    }

    /// Call when the time from [`Connection::poll_timeout`] has come (early
    /// calls are harmless): expires handshakes, idle and unauthorized
    /// sessions, and drains that lingered too long.
    pub fn handle_timeout(&mut self, cx: &mut Ctx<'_>) {
        let now = cx.now;
        match self.phase {
            Phase::Handshake { deadline } => {
                let expired = (now >= deadline)
                    .then_some(CloseReason::HandshakeTimeout)
                    .or_else(|| self.session.poll_expired(now, &cx.rules.session));
                if let Some(reason) = expired {
                    self.close(reason, Close::Now, cx);
                }
            }
            Phase::Open => {
                if let Some(reason) = self.session.poll_expired(now, &cx.rules.session) {
                    tracing::debug!(session = %self.session.id, reason = reason.as_str(), "session expired");
                    self.close(reason, Close::Graceful, cx);
                }
            }
            Phase::Draining { reason, deadline } if now >= deadline => {
                self.phase = Phase::Closed { reason };
            }
            Phase::Draining { .. } | Phase::Closed { .. } => {}
        }
    }

    /// Closes the connection for `reason` — the one way to close, whatever
    /// the protocol. The first call decides the reason, counts it and emits
    /// [`ConnEvent::Closed`]; a later call can only hurry a drain (`Now`).
    pub fn close(&mut self, reason: CloseReason, how: Close, cx: &mut Ctx<'_>) {
        let opened = match self.phase {
            Phase::Closed { .. } => return,
            Phase::Draining { reason, .. } => {
                if how == Close::Now {
                    self.phase = Phase::Closed { reason };
                }
                return;
            }
            Phase::Handshake { .. } => false,
            Phase::Open => true,
        };
        cx.stats.closed(reason);
        cx.events.push(ConnEvent::Closed { reason, opened });
        let goodbye = how != Close::Now && {
            let tls = self.tls.is_some();
            let buf = self.out.framing_buf(tls, cx.pool);
            let framed = self.framing.encode_goodbye(reason, buf);
            // TLS ends with close_notify, after the framing's goodbye
            // (a handshake that never finished has no session to close).
            let sealed = match self.tls.as_deref_mut() {
                Some(t) if !t.is_handshaking() => {
                    self.out.seal(t);
                    true
                }
                _ => false,
            };
            framed || sealed
        };
        self.phase = if how == Close::AfterFlush || goodbye {
            Phase::Draining {
                reason,
                deadline: cx.now + LINGER_MS,
            }
        } else {
            Phase::Closed { reason }
        };
    }

    /// Queues a data packet. False if it was not queued (not open, cannot
    /// be encoded, or the connection overflowed and closed).
    pub fn send_packet(
        &mut self,
        ext: u8,
        route: i32,
        seq: i32,
        payload: &[u8],
        cx: &mut Ctx<'_>,
    ) -> bool {
        let queued = self.queue(cx, |f, opts, buf| {
            f.encode_data(ext, route, seq, payload, opts, buf)
        });
        if queued {
            ShardStats::add(&cx.stats.packets_out, 1);
        }
        queued
    }

    /// Queues a packet encoded once for many connections (push, broadcast).
    pub fn send_encoded(&mut self, packet: &[u8], cx: &mut Ctx<'_>) -> bool {
        let queued = self.queue(cx, |f, _, buf| {
            f.encode_encoded(packet, buf);
            Ok(())
        });
        if queued {
            ShardStats::add(&cx.stats.packets_out, 1);
        }
        queued
    }

    /// Queues a packet made for many connections: its due encoding, or for
    /// an MQTT client a PUBLISH of its topic and payload.
    pub fn send_outgoing(&mut self, o: &Outgoing, cx: &mut Ctx<'_>) -> bool {
        if self.framing.mqtt().is_some() {
            self.send_publish(&o.topic, &o.payload, cx)
        } else {
            self.send_encoded(&o.packet, cx)
        }
    }

    /// Queues a server heartbeat (with the time when `heartbeat_time` is on).
    pub fn send_heartbeat(&mut self, cx: &mut Ctx<'_>) -> bool {
        if self.framing.mqtt().is_some() {
            return false; // MQTT clients ping; the server never does
        }
        let time = cx.rules.packet.heartbeat_time.then_some(cx.unix_nanos);
        self.queue(cx, |f, opts, buf| {
            f.encode_heartbeat(time, opts, buf);
            Ok(())
        })
    }

    /// Frames something for an open connection, then checks the bound.
    fn queue(
        &mut self,
        cx: &mut Ctx<'_>,
        encode: impl FnOnce(&Framing, &PacketOptions, &mut BytesMut) -> Result<(), CodecError>,
    ) -> bool {
        if !self.is_open() {
            return false;
        }
        let buf = self.out.framing_buf(self.tls.is_some(), cx.pool);
        if let Err(err) = encode(&self.framing, &cx.rules.packet, buf) {
            tracing::warn!(session = %self.session.id, %err, "dropping a packet that cannot be encoded");
            return false;
        }
        self.check_overflow(cx)
    }

    /// Queues bytes outside packet framing (HTTP response, WebSocket control
    /// frames); still encrypted under TLS.
    fn queue_raw(&mut self, bytes: &[u8], cx: &mut Ctx<'_>) {
        let buf = self.out.framing_buf(self.tls.is_some(), cx.pool);
        buf.extend_from_slice(bytes);
        self.check_overflow(cx);
    }

    fn check_overflow(&mut self, cx: &mut Ctx<'_>) -> bool {
        let (queued, max) = (self.out.queued(), cx.rules.max_outbound);
        if queued <= max {
            return true;
        }
        tracing::info!(session = %self.session.id, peer = %self.peer, queued, max, "closing connection: outbound queue overflow");
        self.close(CloseReason::Overflow, Close::Now, cx);
        false
    }

    /// Something should be flushed at the end of the loop turn: bytes wait
    /// and no send is in flight, or a drain may be complete.
    pub fn wants_flush(&self) -> bool {
        !self.out.is_sending()
            && (self.out.has_pending(self.tls.as_deref())
                || matches!(self.phase, Phase::Draining { .. }))
    }

    /// The bytes for the next send, or `None` (nothing queued, a send is in
    /// flight, or closed). Call at the end of a loop turn; own the buffer
    /// until the send completes, then give it to [`Connection::handle_sent`].
    /// A draining connection with nothing left to send becomes closed here.
    pub fn poll_transmit(&mut self, cx: &mut Ctx<'_>) -> Option<BytesMut> {
        if self.is_closed() {
            return None;
        }
        let buf = self.out.take(self.tls.as_deref_mut(), cx.pool);
        if buf.is_none() && !self.out.is_sending() {
            if let Phase::Draining { reason, .. } = self.phase {
                // Everything queued before the close has been sent.
                self.phase = Phase::Closed { reason };
            }
        }
        buf
    }

    /// The send of a buffer from [`Connection::poll_transmit`] completed
    /// (all of it). Partial writes are the caller's to finish first.
    pub fn handle_sent(&mut self, buf: BytesMut, cx: &mut Ctx<'_>) {
        self.out.sent(buf, cx.pool);
    }

    /// Bytes queued or in flight.
    pub fn outbound_bytes(&self) -> usize {
        self.out.queued()
    }

    /// Gives every buffer back (call when freeing the connection).
    pub fn release(mut self, pool: &mut BufPool) {
        self.out.release(pool);
    }
}
