//! How a client connection reaches the server: `tcp` (due packets on the
//! socket), `ws` (one packet per WebSocket binary message) or `wss` (the same
//! over TLS, rustls's sans-IO [`ClientConnection`] driven by the caller's
//! mio loop). A [`Dialer`] holds what every connection shares (TLS config,
//! path, host); a [`Stream`] is one connection: its socket, its TLS state and
//! its WebSocket read state, with a non-blocking [`Handshake`] to run first.
//!
//! The `tcp` path is the one the load generator always had: [`Stream::read_frames`]
//! calls [`wire::read_frames`] and [`Stream::write`] calls [`wire::write_some`]
//! directly, one predictable branch away.
//!
//! ```text
//!  tcp:  connect ─────────────────────────────────────────────▶ packets
//!  ws:   connect ─ GET (Upgrade) ─ 101 + Sec-WebSocket-Accept ─▶ masked frames out, frames in
//!  wss:  connect ─ TLS handshake ─ GET ─ 101 ───────────────────▶ the same, encrypted
//! ```

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use bytes::BytesMut;
use clap::{Args, ValueEnum};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use ringgate::codec::{self, CodecError, Frame, PacketOptions};
use rustls::{ClientConfig, ClientConnection};
use rustls_pki_types::ServerName;

use crate::mqttc::{MqttIn, MqttPlan};
use crate::tlsc::{flush_tls, read_tls, read_tls_into, tls_config, TlsRead};
use crate::wire::{self, ReadEnd};
use crate::wsc::{self, Flow, WsIn};
use ringgate::codec::mqtt;

/// An outbox larger than this is freed once written out.
pub const KEEP_OUTBOX: usize = 256 * 1024;

/// The client transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// due packets straight on TCP.
    Tcp,
    /// WebSocket: an HTTP/1.1 upgrade, then one packet per binary message.
    Ws,
    /// WebSocket over TLS (rustls).
    Wss,
    /// MQTT 3.1.1 on TCP (the gate's `[network.mqtt]` port): a request is a
    /// QoS 0 PUBLISH to `<--mqtt-topic>/<seq>`, its reply the PUBLISH back.
    Mqtt,
    /// MQTT in WebSocket binary messages: the upgrade offers the `mqtt`
    /// subprotocol on the ws listener.
    #[value(name = "mqtt-ws")]
    #[serde(rename = "mqtt-ws")]
    MqttWs,
}

impl Transport {
    /// `tcp`, `ws` or `wss`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
            Transport::Mqtt => "mqtt",
            Transport::MqttWs => "mqtt-ws",
        }
    }

    /// Whether the connection opens with a WebSocket upgrade.
    pub fn is_ws(self) -> bool {
        matches!(self, Transport::Ws | Transport::Wss | Transport::MqttWs)
    }

    /// Whether the connection speaks MQTT instead of due packets.
    pub fn is_mqtt(self) -> bool {
        matches!(self, Transport::Mqtt | Transport::MqttWs)
    }
}

/// Transport flags of every client scenario.
#[derive(Args, Clone, Debug)]
pub struct TransportArgs {
    /// tcp, ws (WebSocket), wss (WebSocket over TLS), mqtt (MQTT 3.1.1 on
    /// TCP: point --addr at the gate's [network.mqtt] port) or mqtt-ws (MQTT
    /// in WebSocket binary messages, subprotocol `mqtt`: the ws port).
    #[arg(long, value_enum, default_value = "tcp")]
    pub transport: Transport,
    /// mqtt, mqtt-ws: requests are QoS 0 PUBLISHes to `<topic>/<seq>`,
    /// answered on the same topic. `module/handler`; the handler must reply
    /// the payload unwrapped (raw), as the echo node's HD_Raw does.
    #[arg(long, default_value = "Echo/HD_Raw")]
    pub mqtt_topic: String,
    /// mqtt, mqtt-ws: the CONNECT's keep-alive in seconds (0: none; the gate
    /// then applies its TCP idle rule, which `--heartbeat` PINGREQs satisfy).
    #[arg(long, default_value_t = 0)]
    pub mqtt_keep_alive: u16,
    /// mqtt: broker mode, for a reference such as mosquitto: each connection
    /// subscribes to `<topic>/<n>/+` and publishes to `<topic>/<n>/<seq>`, so
    /// the broker relays each message back to its sender.
    #[arg(long)]
    pub mqtt_subscribe: bool,
    /// Path of the WebSocket upgrade request (ws, wss).
    #[arg(long, default_value = "/")]
    pub ws_path: String,
    /// wss: accept any server certificate (self-signed test certificates).
    #[arg(long)]
    pub insecure: bool,
    /// wss: trust the certificates in this PEM file (e.g. the gate's own
    /// self-signed one) instead of `--insecure`.
    #[arg(long)]
    pub cafile: Option<PathBuf>,
    /// wss: the name the certificate is checked against and sent as SNI
    /// (default: the IP address of `--addr`).
    #[arg(long)]
    pub server_name: Option<String>,
}

impl Default for TransportArgs {
    fn default() -> Self {
        TransportArgs {
            transport: Transport::Tcp,
            ws_path: "/".into(),
            mqtt_topic: "Echo/HD_Raw".into(),
            mqtt_keep_alive: 0,
            mqtt_subscribe: false,
            insecure: false,
            cafile: None,
            server_name: None,
        }
    }
}

/// What every connection of a run shares.
#[derive(Clone)]
pub struct Dialer {
    /// The transport.
    pub transport: Transport,
    /// The server.
    pub addr: SocketAddr,
    path: String,
    host: String,
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    mqtt: Option<Arc<MqttPlan>>,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("transport", &self.transport)
            .field("addr", &self.addr)
            .field("path", &self.path)
            .finish()
    }
}

impl Dialer {
    /// Plain TCP to `addr`.
    #[cfg(test)]
    pub fn tcp(addr: SocketAddr) -> Self {
        Dialer {
            transport: Transport::Tcp,
            addr,
            path: "/".into(),
            host: addr.to_string(),
            tls: None,
            mqtt: None,
        }
    }

    /// Checks the flags and builds the TLS configuration (wss).
    pub fn new(addr: SocketAddr, args: &TransportArgs) -> Result<Self> {
        if !args.ws_path.starts_with('/') || args.ws_path.contains(char::is_whitespace) {
            bail!("--ws-path must start with / and hold no spaces");
        }
        let tls = match args.transport {
            Transport::Wss => Some(tls_config(addr, args)?),
            _ if args.insecure || args.cafile.is_some() => {
                bail!("--insecure and --cafile only apply to --transport wss")
            }
            _ => None,
        };
        let mqtt = match args.transport.is_mqtt() {
            true => Some(Arc::new(
                MqttPlan::new(&args.mqtt_topic, args.mqtt_keep_alive, args.mqtt_subscribe)
                    .map_err(anyhow::Error::msg)?,
            )),
            false => None,
        };
        Ok(Dialer {
            transport: args.transport,
            addr,
            path: args.ws_path.clone(),
            host: addr.to_string(),
            tls,
            mqtt,
        })
    }

    /// A stream over `sock` (connected or still connecting), its handshake
    /// to be run with [`Stream::handshake`].
    pub fn stream(&self, sock: TcpStream) -> io::Result<(Stream, Handshake)> {
        let tls = match &self.tls {
            Some((config, name)) => Some(
                ClientConnection::new(config.clone(), name.clone()).map_err(io::Error::other)?,
            ),
            None => None,
        };
        let upgrade = self.transport.is_ws();
        let ws = upgrade.then(WsIn::default);
        let mqtt = self.mqtt.as_deref().map(MqttIn::new);
        let up = (tls.is_some() || ws.is_some() || mqtt.is_some())
            .then(|| Box::new(Layers { tls, ws, mqtt }));
        let protocol = (self.transport == Transport::MqttWs).then_some("mqtt");
        let hs = Handshake::new(upgrade, &self.path, &self.host, protocol, self.mqtt.clone());
        Ok((Stream { sock, up }, hs))
    }

    /// Connects (blocking, with a timeout) and runs the whole handshake,
    /// waiting with `poll(2)`; returns a non-blocking stream ready for
    /// packets and the bytes that followed the `101`.
    pub fn connect_blocking(&self, timeout: Duration) -> io::Result<(Stream, Vec<u8>)> {
        let deadline = Instant::now() + timeout;
        let std = std::net::TcpStream::connect_timeout(&self.addr, timeout)?;
        std.set_nodelay(true)?;
        std.set_nonblocking(true)?;
        let (mut stream, mut hs) = self.stream(TcpStream::from_std(std))?;
        let mut leftover = Vec::new();
        loop {
            match stream.handshake(&mut hs, &mut leftover) {
                Ok(true) => return Ok((stream, leftover)),
                Ok(false) => {}
                Err(e) => return Err(io::Error::other(e)),
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "handshake timed out",
                ));
            }
            wait_fd(&stream.sock, stream.wants_write(), deadline - now)?;
        }
    }
}

/// Waits until `sock` is readable (or writable, with `write`) or `timeout`.
fn wait_fd(sock: &TcpStream, write: bool, timeout: Duration) -> io::Result<()> {
    let mut pfd = libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLIN | if write { libc::POLLOUT } else { 0 },
        revents: 0,
    };
    let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

/// The WebSocket upgrade and the MQTT CONNECT of one connection, run
/// before any packet.
#[derive(Debug)]
pub struct Handshake {
    /// Request bytes not yet handed to the socket (or to TLS): the upgrade,
    /// then the CONNECT.
    request: Vec<u8>,
    /// The `Sec-WebSocket-Accept` the server must send back.
    accept: String,
    /// Response bytes so far.
    response: Vec<u8>,
    /// Whether there is an upgrade to do at all (ws, wss, mqtt-ws).
    upgrade: bool,
    /// The upgrade is done.
    upgraded: bool,
    /// The subprotocol offered and required (mqtt-ws).
    protocol: Option<&'static str>,
    /// MQTT: the CONNECT to send and the CONNACK to wait for.
    mqtt: Option<Arc<MqttPlan>>,
    /// The CONNECT is in `request` (or written).
    connect_queued: bool,
}

impl Handshake {
    fn new(
        upgrade: bool,
        path: &str,
        host: &str,
        protocol: Option<&'static str>,
        mqtt: Option<Arc<MqttPlan>>,
    ) -> Self {
        let (request, accept) = if upgrade {
            let key = wsc::new_key();
            (
                wsc::upgrade_request(path, host, &key, protocol),
                wsc::accept_for(&key),
            )
        } else {
            (Vec::new(), String::new())
        };
        Handshake {
            request,
            accept,
            response: Vec::new(),
            upgrade,
            upgraded: false,
            protocol,
            mqtt,
            connect_queued: false,
        }
    }
}

/// One client connection: its socket, and for ws and wss its WebSocket and
/// TLS state, boxed so that a `tcp` connection stays one word larger than a
/// bare socket (its hot fields keep fitting the same cache lines).
pub struct Stream {
    /// The socket, registered with the caller's poll.
    pub sock: TcpStream,
    up: Option<Box<Layers>>,
}

/// What runs above the socket: TLS (wss), WebSocket framing (ws, wss,
/// mqtt-ws) and MQTT (mqtt, mqtt-ws).
struct Layers {
    tls: Option<ClientConnection>,
    ws: Option<WsIn>,
    mqtt: Option<MqttIn>,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let up = self.up.as_deref();
        f.debug_struct("Stream")
            .field("sock", &self.sock)
            .field("tls", &up.is_some_and(|u| u.tls.is_some()))
            .field("ws", &up.is_some_and(|u| u.ws.is_some()))
            .field("mqtt", &up.is_some_and(|u| u.mqtt.is_some()))
            .finish()
    }
}

impl Stream {
    /// Advances the handshake as far as the socket allows without blocking.
    /// `Ok(true)`: done (the `101` checked, the CONNACK received); bytes that
    /// came after it are appended to `leftover`. `Ok(false)`: call again when
    /// the socket is readable (or writable, if [`Stream::wants_write`]).
    pub fn handshake(
        &mut self,
        hs: &mut Handshake,
        leftover: &mut Vec<u8>,
    ) -> Result<bool, String> {
        if hs.upgrade && !hs.upgraded {
            if !self.upgrade(hs, leftover)? {
                return Ok(false);
            }
            hs.upgraded = true;
        }
        match hs.mqtt.clone() {
            None => Ok(true),
            Some(plan) => self.mqtt_connect(hs, &plan, leftover),
        }
    }

    /// The MQTT part of the handshake: CONNECT out, CONNACK (accepted) in.
    fn mqtt_connect(
        &mut self,
        hs: &mut Handshake,
        plan: &MqttPlan,
        leftover: &mut Vec<u8>,
    ) -> Result<bool, String> {
        let Some(up) = self.up.as_deref_mut() else {
            return Ok(true);
        };
        if !hs.connect_queued {
            hs.request = plan.connect(up.ws.as_mut(), up.mqtt.as_mut()).to_vec();
            hs.connect_queued = true;
        }
        let (mut rbuf, mut out) = (BytesMut::new(), BytesMut::new());
        let opts = PacketOptions::default();
        let end = up.read_framed(
            &self.sock,
            &mut rbuf,
            leftover,
            &opts,
            &mut out,
            &mut |_| {},
        );
        // Pongs owed to the server go out behind the CONNECT.
        hs.request.extend_from_slice(&out);
        if !hs.request.is_empty() {
            let n = wire::write_some(&self.sock, &hs.request).map_err(|e| e.to_string())?;
            hs.request.drain(..n);
        }
        let connack = up.mqtt.as_ref().and_then(|m| m.connack);
        match (connack, end) {
            (Some(0), ReadEnd::Drained) => Ok(true),
            (Some(0), _) => Err("closed by the server right after CONNACK".into()),
            (Some(code), _) => Err(format!("CONNACK refused: return code {code}")),
            (None, ReadEnd::Drained) => Ok(false),
            (None, ReadEnd::Closed) => Err("closed by the server before CONNACK".into()),
            (None, ReadEnd::Io(e)) => Err(e.to_string()),
            (None, ReadEnd::Codec(e)) => Err(e.to_string()),
            (None, ReadEnd::Protocol(e)) => Err(e),
        }
    }

    /// The WebSocket (and TLS) part of the handshake.
    fn upgrade(&mut self, hs: &mut Handshake, leftover: &mut Vec<u8>) -> Result<bool, String> {
        let Some(up) = self.up.as_deref_mut().filter(|_| hs.upgrade) else {
            return Ok(true);
        };
        // A refusal (404, 403, ...) comes with a close: read to the end,
        // then say what the server answered.
        let mut eof = false;
        match up.tls.as_mut() {
            None => {
                if !hs.request.is_empty() {
                    let n = wire::write_some(&self.sock, &hs.request).map_err(|e| e.to_string())?;
                    hs.request.drain(..n);
                }
                let mut chunk = [0u8; 4096];
                loop {
                    match (&self.sock).read(&mut chunk) {
                        Ok(0) => {
                            eof = true;
                            break;
                        }
                        Ok(n) => hs.response.extend_from_slice(&chunk[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) if wire::is_reset(&e) => {
                            eof = true;
                            break;
                        }
                        Err(e) => return Err(e.to_string()),
                    }
                }
            }
            Some(tls) => {
                if !hs.request.is_empty() {
                    // Buffered by rustls until its handshake is done.
                    tls.writer()
                        .write_all(&hs.request)
                        .map_err(|e| e.to_string())?;
                    hs.request.clear();
                }
                loop {
                    flush_tls(tls, &self.sock).map_err(|e| e.to_string())?;
                    let r = match read_tls(tls, &self.sock, &mut hs.response) {
                        Ok(r) => r,
                        Err(e) if wire::is_reset(&e) => TlsRead {
                            drained: true,
                            closed: true,
                        },
                        Err(e) => return Err(format!("TLS: {e}")),
                    };
                    if r.closed {
                        eof = true;
                        break;
                    }
                    if r.drained {
                        break;
                    }
                }
                if !eof {
                    flush_tls(tls, &self.sock).map_err(|e| e.to_string())?;
                }
            }
        }
        match wsc::parse_response(&hs.response, &hs.accept, hs.protocol)? {
            None if eof => Err(if hs.response.is_empty() {
                "closed by the server during the handshake".to_string()
            } else {
                format!(
                    "closed by the server during the handshake after {} bytes of answer",
                    hs.response.len()
                )
            }),
            None => Ok(false),
            Some(n) => {
                leftover.extend_from_slice(&hs.response[n..]);
                hs.response = Vec::new();
                Ok(true)
            }
        }
    }

    /// Whether TLS holds bytes the socket did not take yet.
    pub fn wants_write(&self) -> bool {
        self.up
            .as_deref()
            .and_then(|u| u.tls.as_ref())
            .is_some_and(|t| t.wants_write())
    }

    /// Appends a data packet, framed for the transport, to `out`.
    #[inline]
    pub fn encode_data(
        &mut self,
        route: i32,
        seq: i32,
        payload: &[u8],
        opts: &PacketOptions,
        out: &mut BytesMut,
    ) -> Result<(), CodecError> {
        let Some(up) = self.up.as_deref_mut() else {
            return codec::encode_data(0, route, seq, payload, opts, out);
        };
        match (up.mqtt.as_mut(), up.ws.as_mut()) {
            (None, None) => codec::encode_data(0, route, seq, payload, opts, out),
            (None, Some(ws)) => wsc::encode_data(route, seq, payload, opts, ws.rng.next_key(), out),
            (Some(m), ws) => m
                .encode_request(route, seq, payload, ws.map(|w| w.rng.next_key()), out)
                .map_err(|_| CodecError::Malformed("topic or payload too large for PUBLISH")),
        }
    }

    /// Appends a heartbeat, framed for the transport, to `out`.
    #[inline]
    pub fn encode_heartbeat(&mut self, opts: &PacketOptions, out: &mut BytesMut) {
        let Some(up) = self.up.as_deref_mut() else {
            return codec::encode_heartbeat(None, opts, out);
        };
        match (up.mqtt.is_some(), up.ws.as_mut()) {
            (false, None) => codec::encode_heartbeat(None, opts, out),
            (false, Some(ws)) => wsc::encode_heartbeat(opts, ws.rng.next_key(), out),
            (true, None) => mqtt::encode_pingreq(out),
            (true, Some(ws)) => {
                let _ = wsc::encode_binary_with(2, ws.rng.next_key(), out, |d| {
                    mqtt::encode_pingreq(d);
                    Ok::<(), ()>(())
                });
            }
        }
    }

    /// Writes as much of `data` as the connection takes without blocking;
    /// returns the bytes taken (with TLS: encrypted, some possibly still in
    /// rustls, see [`Stream::wants_write`]).
    #[inline]
    pub fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self.up.as_deref_mut().and_then(|u| u.tls.as_mut()) {
            None => wire::write_some(&self.sock, data),
            Some(tls) => {
                let mut taken = 0;
                loop {
                    if taken < data.len() {
                        taken += tls.writer().write(&data[taken..])?;
                    }
                    if !flush_tls(tls, &self.sock)? || taken == data.len() {
                        return Ok(taken);
                    }
                }
            }
        }
    }

    /// Writes as much of `outbox` as the connection takes (what is written
    /// leaves `outbox`, whose memory is freed once over [`KEEP_OUTBOX`]),
    /// and keeps the socket registered for writable events only while
    /// bytes are stuck, in `outbox` or in TLS; `watching` says whether it
    /// is registered for them now.
    #[inline]
    pub fn flush_outbox(
        &mut self,
        outbox: &mut BytesMut,
        registry: &Registry,
        token: Token,
        watching: &mut bool,
    ) -> io::Result<()> {
        let n = self.write(outbox)?;
        if n == outbox.len() {
            if outbox.capacity() > KEEP_OUTBOX {
                *outbox = BytesMut::new();
            } else {
                outbox.clear();
            }
        } else {
            let _ = outbox.split_to(n);
        }
        let stuck = !outbox.is_empty() || self.wants_write();
        if stuck != *watching {
            let interest = if stuck {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            registry.reregister(&mut self.sock, token, interest)?;
            *watching = stuck;
        }
        Ok(())
    }

    /// Reads everything available and calls `on_frame` for each packet.
    /// Pongs answering the server's pings are appended to `out` (write it).
    /// `rbuf` and `leftover` as in [`wire::read_frames`].
    #[inline]
    pub fn read_frames(
        &mut self,
        rbuf: &mut BytesMut,
        leftover: &mut Vec<u8>,
        opts: &PacketOptions,
        out: &mut BytesMut,
        mut on_frame: impl FnMut(Frame),
    ) -> ReadEnd {
        match self.up.as_deref_mut() {
            None => wire::read_frames(&self.sock, rbuf, leftover, opts, on_frame),
            Some(up) => up.read_framed(&self.sock, rbuf, leftover, opts, out, &mut on_frame),
        }
    }
}

impl Layers {
    /// [`Stream::read_frames`] for ws and wss.
    fn read_framed(
        &mut self,
        sock: &TcpStream,
        rbuf: &mut BytesMut,
        leftover: &mut Vec<u8>,
        opts: &PacketOptions,
        out: &mut BytesMut,
        on_frame: &mut impl FnMut(Frame),
    ) -> ReadEnd {
        rbuf.clear();
        if !leftover.is_empty() {
            rbuf.extend_from_slice(leftover);
            leftover.clear();
            if leftover.capacity() > 4096 {
                *leftover = Vec::new();
            }
        }
        let end = loop {
            // More bytes: straight from the socket (ws) or decrypted (wss).
            let (drained, closed) = match self.tls.as_mut() {
                None => match wire::recv_into(sock, rbuf) {
                    Ok((0, _)) => (true, true),
                    Ok((n, asked)) => (n < asked, false),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => (true, false),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if wire::is_reset(&e) => break ReadEnd::Closed,
                    Err(e) => break ReadEnd::Io(e),
                },
                Some(tls) => match read_tls_into(tls, sock, rbuf) {
                    Ok(r) => (r.drained, r.closed),
                    Err(e) if wire::is_reset(&e) => break ReadEnd::Closed,
                    Err(e) => break ReadEnd::Io(e),
                },
            };
            let flow = match (self.ws.as_mut(), self.mqtt.as_mut()) {
                (Some(ws), None) => wsc::decode(rbuf, opts, ws, out, on_frame),
                (None, None) => decode_packets(rbuf, opts, on_frame),
                (None, Some(m)) => m.decode(rbuf, on_frame).map(|()| Flow::More),
                (Some(ws), Some(m)) => {
                    // MQTT bytes are a stream across messages.
                    let mut pending = std::mem::take(&mut m.pending);
                    let r =
                        wsc::decode_stream(rbuf, ws, out, &mut |b| pending.extend_from_slice(b))
                            .and_then(|flow| m.decode(&mut pending, on_frame).map(|()| flow));
                    m.pending = pending;
                    r
                }
            };
            match flow {
                Ok(Flow::More) => {}
                Ok(Flow::Closed) => break ReadEnd::Closed,
                Err(e) => {
                    rbuf.clear();
                    return ReadEnd::Protocol(e);
                }
            }
            if closed {
                break ReadEnd::Closed;
            }
            if drained {
                break ReadEnd::Drained;
            }
        };
        if !rbuf.is_empty() && matches!(end, ReadEnd::Drained) {
            leftover.extend_from_slice(rbuf);
        }
        rbuf.clear();
        end
    }
}

/// Decodes raw packets (TLS without WebSocket).
fn decode_packets(
    rbuf: &mut BytesMut,
    opts: &PacketOptions,
    on_frame: &mut impl FnMut(Frame),
) -> Result<Flow, String> {
    loop {
        match codec::decode(rbuf, opts) {
            Ok(Some(f)) => on_frame(f),
            Ok(None) => return Ok(Flow::More),
            Err(e) => return Err(format!("bad packet from server: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wss_needs_a_trust_decision() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut args = TransportArgs {
            transport: Transport::Wss,
            ..TransportArgs::default()
        };
        let e = Dialer::new(addr, &args).unwrap_err().to_string();
        assert!(e.contains("--insecure"), "{e}");
        args.insecure = true;
        assert!(Dialer::new(addr, &args).is_ok());
        args.transport = Transport::Ws;
        assert!(Dialer::new(addr, &args).is_err(), "--insecure without wss");
        args.insecure = false;
        args.ws_path = "nope".into();
        assert!(Dialer::new(addr, &args).is_err());
    }
}
