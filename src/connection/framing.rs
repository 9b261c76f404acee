//! How client packets are framed on a connection's plaintext byte stream:
//! one encode/decode surface over every protocol a listener serves.
//!
//! ```text
//!  Framing::Packets     due packets straight on the stream (TCP, TLS)
//!  Framing::WebSocket   HTTP upgrade, then one due packet per binary message (ws, wss)
//!  Framing::Mqtt        MQTT 3.1 / 3.1.1 packets on the stream (mqtt, mqtts)
//! ```
//!
//! Adding a protocol is adding a variant here and a codec beside
//! [`crate::codec`] and [`crate::ws`]: the connection's phases, deadlines,
//! outbound accounting and its one close path do not change.

use std::net::IpAddr;

use bytes::{Bytes, BytesMut};

use super::mqtt::MqttState;
use super::Network;
use crate::codec::mqtt::MqttError;
use crate::codec::{self, CodecError, Frame, PacketOptions};
use crate::session::CloseReason;
use crate::ws::{self, close, frame::Message, handshake, HandshakePolicy, Reassembler, WsError};

/// Where a WebSocket connection is.
#[derive(Debug)]
pub enum WsState {
    /// Waiting for the HTTP upgrade request.
    Upgrade,
    /// Upgraded: frames are reassembled into messages.
    Open(Reassembler),
    /// A close frame was sent or received: nothing more is read or framed.
    Closed,
}

/// A connection's framing.
#[derive(Debug)]
pub enum Framing {
    /// due packets straight on the byte stream.
    Packets,
    /// due packets, one per WebSocket binary message, after an HTTP upgrade.
    WebSocket(Box<WsState>),
    /// MQTT packets straight on the byte stream (see `connection::mqtt`).
    Mqtt(Box<MqttState>),
}

/// One thing decoded from the client.
#[derive(Debug)]
pub enum Inbound {
    /// A packet or a heartbeat.
    Frame(Frame),
    /// The WebSocket upgrade was accepted: send `response` first; the client's
    /// real address is `forwarded_ip` when a trusted proxy named it.
    Upgraded {
        /// The `101` response.
        response: Bytes,
        /// The address from the proxy headers, if trusted and present.
        forwarded_ip: Option<IpAddr>,
        /// An MQTT client: the framing is now MQTT in binary messages.
        mqtt: bool,
    },
    /// Bytes to send back at once (a WebSocket pong).
    Reply(BytesMut),
    /// An MQTT packet.
    Mqtt(crate::codec::mqtt::Inbound),
    /// The client said goodbye: send `reply` (its close frame echoed), then close.
    PeerClosed {
        /// The close reply.
        reply: BytesMut,
    },
}

/// Why the client's bytes cannot be read on; each error says what to send
/// before closing (or nothing).
#[derive(Debug)]
pub enum FramingError {
    /// A broken due packet on a raw stream.
    Packet(CodecError),
    /// A WebSocket protocol error: send `goodbye` (a close frame with its code).
    Ws {
        /// What went wrong.
        err: WsError,
        /// The close frame to send.
        goodbye: BytesMut,
    },
    /// The upgrade request was refused: send the HTTP response, then close.
    Rejected(handshake::Rejected),
    /// A broken MQTT packet.
    Mqtt(MqttError),
}

impl Framing {
    /// The framing for a listener's network: WebSocket ones start waiting
    /// for the upgrade, MQTT ones for CONNECT.
    pub fn new(network: Network) -> Framing {
        if network.is_websocket() {
            Framing::WebSocket(Box::new(WsState::Upgrade))
        } else if network.is_mqtt() {
            Framing::Mqtt(Box::default())
        } else {
            Framing::Packets
        }
    }

    /// The MQTT state, on an MQTT connection.
    pub fn mqtt(&self) -> Option<&MqttState> {
        match self {
            Framing::Mqtt(m) => Some(m),
            _ => None,
        }
    }

    /// See [`Framing::mqtt`].
    pub fn mqtt_mut(&mut self) -> Option<&mut MqttState> {
        match self {
            Framing::Mqtt(m) => Some(m),
            _ => None,
        }
    }

    /// True when packets travel in WebSocket messages.
    pub fn is_websocket(&self) -> bool {
        matches!(self, Framing::WebSocket(_))
    }

    /// Decodes the next thing from `src`. `Ok(None)`: not enough bytes yet
    /// (what is there stays in `src`). Call only while the transport below
    /// (TLS) has finished its handshake.
    pub fn decode(
        &mut self,
        src: &mut BytesMut,
        opts: &PacketOptions,
        policy: Option<&HandshakePolicy>,
        mqtt_max: usize,
    ) -> Result<Option<Inbound>, FramingError> {
        match self {
            Framing::Packets => codec::decode(src, opts)
                .map(|f| f.map(Inbound::Frame))
                .map_err(FramingError::Packet),
            Framing::WebSocket(ws) => ws.decode(src, opts, policy),
            Framing::Mqtt(m) => match &mut m.ws {
                None => crate::codec::mqtt::decode(src, mqtt_max)
                    .map(|p| p.map(Inbound::Mqtt))
                    .map_err(FramingError::Mqtt),
                Some(ws) => ws.decode(src, mqtt_max),
            },
        }
    }

    /// Switches a WebSocket connection whose client upgraded as MQTT to
    /// MQTT in binary messages.
    pub fn become_mqtt_over_ws(&mut self, mqtt_max: usize) {
        *self = Framing::Mqtt(Box::new(MqttState::over_websocket(mqtt_max)));
    }

    /// Appends an MQTT packet written by `encode` (in a binary message on
    /// a WebSocket).
    pub fn encode_mqtt(
        &self,
        dst: &mut BytesMut,
        encode: impl FnOnce(&mut BytesMut) -> Result<(), MqttError>,
    ) -> Result<(), MqttError> {
        match self {
            Framing::Mqtt(m) if m.ws.is_some() => {
                let mut packet = BytesMut::new();
                encode(&mut packet)?;
                ws::frame::encode_binary(&packet, dst);
                Ok(())
            }
            _ => encode(dst),
        }
    }

    /// Appends a data packet.
    pub fn encode_data(
        &self,
        ext: u8,
        route: i32,
        seq: i32,
        payload: &[u8],
        opts: &PacketOptions,
        dst: &mut BytesMut,
    ) -> Result<(), CodecError> {
        match self {
            Framing::Packets => codec::encode_data(ext, route, seq, payload, opts, dst),
            Framing::WebSocket(_) => ws::packet::encode_data(ext, route, seq, payload, opts, dst),
            Framing::Mqtt(_) => Err(CodecError::OutOfRange("a due packet for an MQTT client")),
        }
    }

    /// Appends a server heartbeat (with the server's unix time in ns, if given).
    pub fn encode_heartbeat(&self, time: Option<i64>, opts: &PacketOptions, dst: &mut BytesMut) {
        match self {
            Framing::Packets => codec::encode_heartbeat(time, opts, dst),
            Framing::WebSocket(_) => ws::packet::encode_heartbeat(time, opts, dst),
            // Never asked: `Connection::send_heartbeat` skips MQTT clients.
            Framing::Mqtt(_) => {}
        }
    }

    /// Appends a packet already encoded for raw streams (a push or broadcast
    /// encoded once for many connections).
    pub fn encode_encoded(&self, packet: &[u8], dst: &mut BytesMut) {
        match self {
            Framing::Packets => dst.extend_from_slice(packet),
            Framing::WebSocket(_) => ws::packet::encode_encoded(packet, dst),
            // Callers send MQTT clients the topic and payload instead.
            Framing::Mqtt(_) => {}
        }
    }

    /// Appends the protocol's goodbye for `reason`, if it has one and has not
    /// said it yet (a WebSocket close frame: 1001 on shutdown, 1002 for a bad
    /// packet, 1008 otherwise); afterwards nothing more is framed or read.
    /// Returns whether a goodbye was written.
    pub fn encode_goodbye(&mut self, reason: CloseReason, dst: &mut BytesMut) -> bool {
        if let Framing::Mqtt(m) = self {
            return m.ws.as_mut().is_some_and(|ws| ws.goodbye(reason, dst));
        }
        let Framing::WebSocket(ws) = self else {
            return false;
        };
        if !matches!(**ws, WsState::Open(_)) {
            **ws = WsState::Closed;
            return false;
        }
        encode_close_for(reason, dst);
        **ws = WsState::Closed;
        true
    }
}

/// The close frame for a connection closing for `reason`: 1000 when the
/// client said goodbye (MQTT's DISCONNECT), 1001 on shutdown, 1002 for a bad
/// packet, 1008 otherwise.
pub(super) fn encode_close_for(reason: CloseReason, dst: &mut BytesMut) {
    let (code, text) = match reason {
        CloseReason::ClientClosed => (close::NORMAL, ""),
        CloseReason::Shutdown => (close::GOING_AWAY, reason.as_str()),
        CloseReason::ProtocolError => (close::PROTOCOL_ERROR, "bad packet"),
        _ => (close::POLICY_VIOLATION, reason.as_str()),
    };
    ws::frame::encode_close(code, text, dst);
}

impl WsState {
    fn decode(
        &mut self,
        src: &mut BytesMut,
        opts: &PacketOptions,
        policy: Option<&HandshakePolicy>,
    ) -> Result<Option<Inbound>, FramingError> {
        match self {
            WsState::Upgrade => {
                let policy = policy.expect("a WebSocket listener has an upgrade policy");
                match handshake::upgrade(src, policy) {
                    Ok(None) => Ok(None),
                    Ok(Some(acc)) => {
                        *self = WsState::Open(Reassembler::new(ws::packet::max_message(opts)));
                        Ok(Some(Inbound::Upgraded {
                            response: acc.response,
                            forwarded_ip: acc.forwarded_ip,
                            mqtt: acc.mqtt,
                        }))
                    }
                    Err(rej) => {
                        *self = WsState::Closed;
                        Err(FramingError::Rejected(rej))
                    }
                }
            }
            WsState::Open(r) => {
                let msg = match r.decode(src) {
                    Ok(Some(m)) => m,
                    Ok(None) => return Ok(None),
                    Err(e) => return Err(self.fail(e)),
                };
                match msg {
                    Message::Binary(mut m) => match ws::packet::decode(&mut m, opts) {
                        Ok(f) => Ok(Some(Inbound::Frame(f))),
                        Err(e) => Err(self.fail(e)),
                    },
                    Message::Ping(p) => {
                        let mut b = BytesMut::new();
                        ws::frame::encode_pong(&p, &mut b);
                        Ok(Some(Inbound::Reply(b)))
                    }
                    Message::Pong(_) => Ok(Some(Inbound::Reply(BytesMut::new()))),
                    Message::Close(cf) => {
                        let mut reply = BytesMut::new();
                        ws::frame::encode_close_reply(cf.as_ref(), &mut reply);
                        *self = WsState::Closed;
                        Ok(Some(Inbound::PeerClosed { reply }))
                    }
                }
            }
            WsState::Closed => {
                src.clear();
                Ok(None)
            }
        }
    }

    /// A protocol error: the close frame that says so, and no more framing.
    fn fail(&mut self, err: WsError) -> FramingError {
        let mut goodbye = BytesMut::new();
        ws::frame::encode_close(err.close_code(), "", &mut goodbye);
        *self = WsState::Closed;
        FramingError::Ws { err, goodbye }
    }
}
