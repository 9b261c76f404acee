//! Transport layers between a socket and the due codec: TLS (rustls, sans-IO)
//! and WebSocket (RFC 6455), in any combination. A plain TCP connection has
//! none of this (`Conn::xport` is `None`) and takes the direct path.
//!
//! ```text
//!  inbound:   socket bytes ─[TLS feed → plaintext]─[WS upgrade, then frames → one packet per
//!             binary message]─▶ due codec ─▶ dispatch / heartbeat (same as TCP)
//!  outbound:  packet ─[WS binary frame header]─▶ plain_out ─[TLS encrypt at flush]─▶ wbuf ─▶ send
//! ```
//!
//! The connect event is sent once the transport's handshake is done (a
//! refused upgrade or a failed TLS handshake never becomes a session nodes
//! hear of); the handshake has its own deadline (`handshake_timeout`).

use std::sync::Arc;

use bytes::BytesMut;

use super::{Shard, ShardStats};
use crate::codec::Frame;
use crate::link::proto::{Event, EventKind};
use crate::session::CloseReason;
use crate::tls::TlsConn;
use crate::ws::{self, close, frame::Message, handshake, Reassembler, WsError};

/// How long a connection closing after a flush (close frame, HTTP refusal,
/// TLS alert) may take to read it before it is closed anyway.
pub const LINGER_MS: u64 = 1000;

/// What a listener serves.
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
}

impl Network {
    /// The name sent to nodes in connect events.
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Tcp => "tcp",
            Network::Tls => "tls",
            Network::Ws => "ws",
            Network::Wss => "wss",
        }
    }
}

/// Where a WebSocket connection is.
pub enum WsPhase {
    /// Not a WebSocket connection.
    None,
    /// Waiting for the HTTP upgrade request.
    Handshake,
    /// Upgraded: frames are reassembled into messages.
    Open(Reassembler),
    /// A close frame was sent or received: input is ignored.
    Closed,
}

/// Transport state of a TLS and/or WebSocket connection.
pub struct Xport {
    /// The network name.
    pub network: Network,
    /// TLS state, for tls and wss.
    pub tls: Option<Box<TlsConn>>,
    /// WebSocket state.
    pub ws: WsPhase,
    /// Plaintext received and not yet consumed (partial request, frame or packet).
    pub plain_in: BytesMut,
    /// Plaintext queued for TLS encryption at the next flush.
    pub plain_out: BytesMut,
}

impl Xport {
    /// Bytes queued here and not yet in the connection's write buffer.
    pub fn pending(&self) -> usize {
        self.plain_out.len()
    }

    /// True for WebSocket connections (framing applies to everything sent).
    pub fn is_ws(&self) -> bool {
        !matches!(self.ws, WsPhase::None)
    }
}

/// Per-listener transport settings shared by a shard's connections.
#[derive(Clone)]
pub struct ListenerXport {
    /// What the listener serves.
    pub network: Network,
    /// TLS server config (tls, wss).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Handshake deadline in ms after accept (TLS and/or WebSocket), 0 for plain TCP.
    pub handshake_ms: u64,
}

impl Shard {
    /// Builds the transport state for a connection accepted on `li`.
    pub(super) fn new_xport(&self, li: usize) -> Result<Option<Box<Xport>>, crate::tls::TlsError> {
        let l = &self.listeners[li].xport;
        if l.network == Network::Tcp {
            return Ok(None);
        }
        let tls = match &l.tls {
            Some(cfg) => Some(Box::new(TlsConn::new(cfg.clone())?)),
            None => None,
        };
        let ws = if matches!(l.network, Network::Ws | Network::Wss) {
            WsPhase::Handshake
        } else {
            WsPhase::None
        };
        Ok(Some(Box::new(Xport {
            network: l.network,
            tls,
            ws,
            plain_in: BytesMut::new(),
            plain_out: BytesMut::new(),
        })))
    }

    /// Bytes read from a TLS and/or WebSocket connection.
    pub(super) fn on_xport_data(&mut self, idx: u32, raw: &[u8]) {
        let c = self.conns.get_mut(idx).expect("live");
        if c.kick.is_some() {
            return; // closing after a flush: input no longer matters
        }
        let x = c.xport.as_mut().expect("xport connection");
        // 1. TLS: decrypt, and send whatever the handshake wants to send.
        if let Some(tls) = x.tls.as_mut() {
            let fed = tls.feed(raw);
            let was_handshaking = c.session.is_handshaking();
            tls.read_plaintext(&mut x.plain_in);
            let mut out = BytesMut::new();
            tls.take_ciphertext(&mut out);
            let done = !tls.is_handshaking();
            let ws = x.is_ws();
            if !out.is_empty() {
                self.queue_ciphertext(idx, &out);
            }
            if let Err(e) = fed {
                ShardStats::add(&self.stats().tls_failures, 1);
                let c = self.conns.get_mut(idx).expect("live");
                tracing::info!(session = %c.session.id, peer = %c.peer, err = %e, "closing connection: TLS error");
                self.close_after_flush(idx, CloseReason::ProtocolError);
                return;
            }
            if done && was_handshaking && !ws {
                ShardStats::add(&self.stats().tls_handshakes, 1);
                self.announce(idx);
            }
        } else {
            x.plain_in.extend_from_slice(raw);
        }
        // 2. WebSocket: upgrade, then messages; or TLS-only: packets.
        let c = self.conns.get_mut(idx).expect("live");
        let x = c.xport.as_mut().expect("xport");
        match x.ws {
            WsPhase::None => {
                if !c.session.is_handshaking() {
                    self.decode_plain_packets(idx);
                }
            }
            WsPhase::Handshake => {
                if x.tls.as_ref().is_some_and(|t| t.is_handshaking()) {
                    return;
                }
                self.ws_upgrade(idx);
            }
            WsPhase::Open(_) => self.ws_messages(idx),
            WsPhase::Closed => x.plain_in.clear(),
        }
    }

    /// TLS without WebSocket: due packets straight from the plaintext.
    fn decode_plain_packets(&mut self, idx: u32) {
        let c = self.conns.get_mut(idx).expect("live");
        let mut src = std::mem::take(&mut c.xport.as_mut().expect("xport").plain_in);
        if !self.decode_packets(idx, &mut src) {
            return;
        }
        if let Some(x) = self.conns.get_mut(idx).and_then(|c| c.xport.as_mut()) {
            x.plain_in = src;
        }
    }

    fn ws_upgrade(&mut self, idx: u32) {
        let policy = self.ws_policy.clone().expect("ws listener has a policy");
        let c = self.conns.get_mut(idx).expect("live");
        let x = c.xport.as_mut().expect("xport");
        match handshake::upgrade(&mut x.plain_in, &policy) {
            Ok(None) => {}
            Ok(Some(acc)) => {
                if let Some(ip) = acc.forwarded_ip {
                    c.peer.set_ip(ip);
                }
                x.ws = WsPhase::Open(Reassembler::new(ws::packet::max_message(&self.p.packet)));
                self.queue_raw(idx, &acc.response);
                ShardStats::add(&self.stats().ws_upgrades, 1);
                self.announce(idx);
                self.ws_messages(idx);
            }
            Err(rej) => {
                tracing::info!(session = %c.session.id, peer = %c.peer, status = rej.status, reason = %rej.reason, "websocket upgrade refused");
                x.ws = WsPhase::Closed;
                ShardStats::add(&self.stats().ws_rejected, 1);
                self.queue_raw(idx, &rej.response);
                self.close_after_flush(idx, CloseReason::UpgradeRejected);
            }
        }
    }

    fn ws_messages(&mut self, idx: u32) {
        let opts = self.p.packet;
        loop {
            let c = self.conns.get_mut(idx).expect("live");
            if c.kick.is_some() || c.closing.is_some() {
                return;
            }
            let x = c.xport.as_mut().expect("xport");
            let WsPhase::Open(r) = &mut x.ws else { return };
            let msg = match r.decode(&mut x.plain_in) {
                Ok(Some(m)) => m,
                Ok(None) => return,
                Err(e) => return self.ws_fail(idx, e),
            };
            match msg {
                Message::Binary(mut m) => match ws::packet::decode(&mut m, &opts) {
                    Ok(f) => self.on_frame(idx, f),
                    Err(e) => return self.ws_fail(idx, e),
                },
                Message::Ping(p) => {
                    let mut b = BytesMut::new();
                    ws::frame::encode_pong(&p, &mut b);
                    self.queue_raw(idx, &b);
                }
                Message::Pong(_) => {}
                Message::Close(cf) => {
                    let mut b = BytesMut::new();
                    ws::frame::encode_close_reply(cf.as_ref(), &mut b);
                    self.queue_raw(idx, &b);
                    if let Some(x) = self.conns.get_mut(idx).and_then(|c| c.xport.as_mut()) {
                        x.ws = WsPhase::Closed;
                    }
                    self.close_after_flush(idx, CloseReason::ClientClosed);
                    return;
                }
            }
        }
    }

    /// A WebSocket protocol error: send a close frame with its code, then close.
    fn ws_fail(&mut self, idx: u32, e: WsError) {
        let st = self.stats();
        if matches!(e, WsError::Text) {
            ShardStats::add(&st.ws_text_rejected, 1);
        }
        let c = self.conns.get_mut(idx).expect("live");
        tracing::info!(session = %c.session.id, peer = %c.peer, err = %e, code = e.close_code(), "closing websocket");
        let mut b = BytesMut::new();
        ws::frame::encode_close(e.close_code(), "", &mut b);
        self.queue_raw(idx, &b);
        if let Some(x) = self.conns.get_mut(idx).and_then(|c| c.xport.as_mut()) {
            x.ws = WsPhase::Closed;
        }
        self.close_after_flush(idx, CloseReason::ProtocolError);
    }

    /// The transport handshake is done: the session starts for nodes.
    pub(super) fn announce(&mut self, idx: u32) {
        let c = self.conns.get_mut(idx).expect("live");
        c.session.handle_handshake_done();
        if c.announced {
            return;
        }
        c.announced = true;
        let network = c.xport.as_ref().map_or(Network::Tcp, |x| x.network);
        let ev = Event {
            kind: EventKind::EventConnect as i32,
            session_id: c.session.id.0,
            ip: c.peer.ip().to_string(),
            port: u32::from(c.peer.port()),
            network: network.as_str().into(),
            ..Default::default()
        };
        self.rearm_timer(idx);
        self.emit(ev);
    }

    /// Queues bytes that bypass packet framing (HTTP response, WS control
    /// frames); they are still encrypted when the connection uses TLS.
    pub(super) fn queue_raw(&mut self, idx: u32, bytes: &[u8]) -> bool {
        self.queue_with(idx, |buf, _| {
            buf.extend_from_slice(bytes);
            Ok(())
        })
    }

    /// Queues TLS records (already encrypted) straight into the write buffer.
    fn queue_ciphertext(&mut self, idx: u32, bytes: &[u8]) {
        let spare = self
            .conns
            .get_mut(idx)
            .is_some_and(|c| c.wbuf.capacity() == 0)
            .then(|| self.take_buf());
        let Some(c) = self.conns.get_mut(idx) else {
            return;
        };
        if let Some(b) = spare {
            c.wbuf = b;
        }
        c.wbuf.extend_from_slice(bytes);
        self.mark_dirty(idx);
    }

    /// Moves plaintext queued for a TLS connection into its write buffer, encrypted.
    pub(super) fn encrypt_pending(&mut self, idx: u32) {
        let Some(c) = self.conns.get_mut(idx) else {
            return;
        };
        let Some(x) = c.xport.as_mut() else { return };
        let Some(tls) = x.tls.as_mut() else { return };
        if x.plain_out.is_empty() && !tls.wants_write() {
            return;
        }
        if !x.plain_out.is_empty() {
            if let Err(e) = tls.write_plaintext(&x.plain_out) {
                tracing::debug!(session = %c.session.id, err = %e, "TLS write failed");
            }
            x.plain_out.clear();
        }
        if c.wbuf.capacity() == 0 {
            c.wbuf = self.pool.pop().unwrap_or_default();
        }
        tls.take_ciphertext(&mut c.wbuf);
    }

    /// Stops reading and closes the connection once everything queued (a
    /// close frame, an HTTP refusal, a TLS alert) has been sent.
    pub(super) fn close_after_flush(&mut self, idx: u32, reason: CloseReason) {
        let Some(c) = self.conns.get_mut(idx) else {
            return;
        };
        if c.closing.is_some() || c.kick.is_some() {
            return;
        }
        c.kick = Some(reason);
        c.linger_until = self.now + LINGER_MS;
        self.mark_dirty(idx);
        self.rearm_timer(idx);
    }

    /// Handles one decoded client frame (any transport).
    pub(super) fn on_frame(&mut self, idx: u32, f: Frame) {
        match f {
            Frame::Data(p) => {
                ShardStats::add(&self.stats().packets_in, 1);
                self.dispatch(idx, p);
            }
            Frame::Heartbeat { .. } => {
                ShardStats::add(&self.stats().heartbeats_in, 1);
                self.on_client_heartbeat(idx);
            }
        }
    }

    /// A broken packet: log, count, close (after a WebSocket close frame).
    pub(super) fn protocol_error(&mut self, idx: u32, err: &dyn std::fmt::Display) {
        let Some(c) = self.conns.get_mut(idx) else {
            return;
        };
        tracing::info!(session = %c.session.id, peer = %c.peer, %err, "closing connection: bad packet");
        if c.xport.as_ref().is_some_and(|x| x.is_ws()) {
            let mut b = BytesMut::new();
            ws::frame::encode_close(close::PROTOCOL_ERROR, "bad packet", &mut b);
            self.queue_raw(idx, &b);
            self.close_after_flush(idx, CloseReason::ProtocolError);
        } else {
            self.close_now(idx, CloseReason::ProtocolError);
        }
    }
}
