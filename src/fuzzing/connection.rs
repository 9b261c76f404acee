//! The `connection` fuzz target: the whole per-connection state machine
//! (tcp, ws, mqtt, mqtt-ws) driven by arbitrary client bytes on a fake
//! clock, checking what it promises (see `super` for the other targets).

use super::*;

/// The networks a byte stream reaches without TLS (MQTT over WebSocket is
/// reached from `Ws` by upgrading on `/mqtt` or with the `mqtt` subprotocol).
const NETWORKS: [Network; 3] = [Network::Tcp, Network::Ws, Network::Mqtt];

/// Connection rules from two bytes: packet options, then heartbeat,
/// mechanism, authorize, outbound bound, trust_proxy and the MQTT limit.
fn conn_rules(a: u8, b: u8) -> ConnRules {
    let mut policy = upgrade_policy(0x10);
    policy.trust_proxy = b & 0x40 != 0;
    let mechanism = [HeartbeatMechanism::Resp, HeartbeatMechanism::Tick];
    ConnRules {
        packet: packet_options(a),
        session: Rules {
            heartbeat_ms: [0, 10, 1000, 0][usize::from(b & 3)],
            mechanism: mechanism[usize::from((b >> 2) & 1)],
            authorize_ms: [0, 500][usize::from((b >> 3) & 1)],
        },
        max_outbound: [64 * 1024, 64, 1024, 1 << 20][usize::from((b >> 4) & 3)],
        ws: Some(Arc::new(policy)),
        mqtt: MqttRules {
            max_packet_bytes: [65_535, 16][usize::from(b >> 7)],
            max_inflight: 2,
        },
    }
}

/// What a shard keeps beside a connection, and its fake clock.
struct Shard {
    rules: ConnRules,
    stats: ShardStats,
    pool: BufPool,
    scratch: BytesMut,
    events: Vec<ConnEvent>,
    now: Millis,
}

impl Shard {
    fn new(rules: ConnRules) -> Shard {
        let (stats, pool, scratch, events) = Default::default();
        Shard {
            rules,
            stats,
            pool,
            scratch,
            events,
            now: 0,
        }
    }

    fn cx(&mut self) -> Ctx<'_> {
        Ctx {
            now: self.now,
            unix_nanos: 1_700_000_000_000_000_000,
            rules: &self.rules,
            stats: &self.stats,
            pool: &mut self.pool,
            scratch: &mut self.scratch,
            events: &mut self.events,
        }
    }
}

/// One connection, its shard, and what it emitted and sent so far.
struct Harness {
    conn: Connection,
    s: Shard,
    /// Events, as `Debug` text, in order.
    log: Vec<String>,
    /// Every byte sent, in order.
    sent: Vec<u8>,
    /// A send started and not completed yet.
    held: Option<BytesMut>,
    /// MQTT requests waiting for their reply (the ones below 4, which the
    /// script can answer).
    tokens: Vec<i32>,
    opened: bool,
    closed: bool,
}

/// The connection state machine under a script of client reads, clock
/// moves, sends (completed at once or held in flight), node-side sends,
/// binds and closes. After every step: one `Opened` at most, requests only
/// while open, one `Closed` that agrees with the phase and the counters;
/// outbound within its bound while open; a timer that fired never asks to
/// fire again at once. The same script with its reads split differently
/// must emit the same events and send the same bytes.
///
/// ```text
///  op % 10   0-3 read arg+1 bytes   4 clock += arg × 16 ms   5 flush   6 start/complete a send
///            7 node send (arg: kind, payload of arg % 32 bytes)   8 bind / unbind   9 close
/// ```
pub fn connection(data: &[u8]) {
    let Some((&[net, a, b, split], script)) = data.split_first_chunk::<4>() else {
        return;
    };
    let network = NETWORKS[usize::from(net & 3) % NETWORKS.len()];
    let handshake_ms = [3000, 0][usize::from((net >> 2) & 1)];
    let run = |split| Harness::run(network, handshake_ms, conn_rules(a, b), script, split);
    assert_eq!(
        run(None),
        run(Some(split)),
        "one read or split reads differ"
    );
}

impl Harness {
    fn run(
        network: Network,
        handshake_ms: Millis,
        rules: ConnRules,
        mut script: &[u8],
        split: Option<u8>,
    ) -> (Vec<String>, Vec<u8>) {
        let mut s = Shard::new(rules);
        let (id, peer) = (
            SessionId::new(ShardId(0), 1),
            SocketAddr::from(([192, 0, 2, 1], 4000)),
        );
        let conn = Connection::new(id, peer, network, None, handshake_ms, &mut s.cx());
        let (log, sent, held, tokens) = Default::default();
        let (opened, closed) = (false, false);
        let mut h = Harness {
            conn,
            s,
            log,
            sent,
            held,
            tokens,
            opened,
            closed,
        };
        h.check();
        while let Some((&op, rest)) = script.split_first() {
            let (&arg, rest) = rest.split_first().unwrap_or((&0, &[]));
            script = rest;
            h.step(op, arg, &mut script, split);
            h.check();
        }
        h.conn.handle_peer_gone(&mut h.s.cx());
        h.check();
        h.flush();
        assert!(h.conn.is_closed() && h.closed, "a gone peer closes");
        check_sent(h.conn.network(), &h.s.rules.packet, &h.sent);
        h.conn.release(&mut h.s.pool);
        (h.log, h.sent)
    }

    fn step(&mut self, op: u8, arg: u8, script: &mut &[u8], split: Option<u8>) {
        let mut take = |n: usize| {
            let (taken, rest) = script.split_at(script.len().min(n));
            *script = rest;
            taken
        };
        match op % 10 {
            0..=3 => {
                let read = take(usize::from(arg) + 1);
                let reads = match split {
                    None => vec![read],
                    Some(s) => reads(read, s, &READS),
                };
                reads
                    .into_iter()
                    .for_each(|r| self.conn.handle_recv(r, &mut self.s.cx()));
            }
            4 => self.advance(Millis::from(arg) * 16),
            5 => self.flush(),
            6 => match self.held.take() {
                Some(buf) => self.conn.handle_sent(buf, &mut self.s.cx()),
                None => {
                    self.held = self.conn.poll_transmit(&mut self.s.cx());
                    self.sent.extend(self.held.iter().flat_map(|b| b.iter()));
                }
            },
            7 => self.node_send(arg, take(usize::from(arg % 32))),
            8 if arg & 1 == 0 => self.conn.session.handle_bind(UserId(i64::from(arg) + 1)),
            8 => self.conn.session.handle_unbind(self.s.now),
            _ => {
                let reason = CloseReason::ALL[usize::from(arg) % CloseReason::ALL.len()];
                let how = [Close::Now, Close::Graceful, Close::AfterFlush];
                self.conn
                    .close(reason, how[usize::from(arg >> 4) % 3], &mut self.s.cx());
            }
        }
    }

    /// What a node (or the shard) may send a connection at any time.
    fn node_send(&mut self, arg: u8, payload: &[u8]) {
        // A push encoded once for many connections, as the shard does.
        let mut packet = BytesMut::new();
        let encoded = codec::encode_data(0, 1, 0, payload, &self.s.rules.packet, &mut packet);
        let (conn, cx) = (&mut self.conn, &mut self.s.cx());
        match arg >> 5 {
            0 => conn.send_packet(arg & 3, i32::from(arg), 1, payload, cx),
            1 => conn.send_heartbeat(cx),
            2 => encoded.is_ok() && conn.send_encoded(&packet, cx),
            // The shard publishes to MQTT sessions only (send_publish does
            // not check: on a due connection it would write MQTT).
            3 => conn.mqtt().is_some() && conn.send_publish("a/b", payload, cx),
            4 if encoded.is_ok() => {
                let topic = Arc::from("Echo/HD_Echo");
                let payload = Bytes::copy_from_slice(payload);
                let o = Outgoing {
                    packet: packet.freeze(),
                    topic,
                    payload,
                };
                conn.send_outgoing(&o, cx)
            }
            4 => false,
            n => {
                let format = ResultFormat::try_from(i32::from(arg % 5)).unwrap_or_default();
                let error = ["", "deadline exceeded"][usize::from(n > 5)];
                let token = i32::from(arg & 3);
                let answered = conn.mqtt_reply(token, error, payload, format, cx);
                assert!(
                    !answered || self.tokens.contains(&token),
                    "{token} not waiting"
                );
                self.tokens.retain(|&t| t != token);
                let again = conn.mqtt_reply(token, error, payload, format, cx);
                assert!(!again, "request {token} answered twice");
                answered
            }
        };
    }

    /// Completes the held send, then every send at once until none is left.
    fn flush(&mut self) {
        if let Some(buf) = self.held.take() {
            self.conn.handle_sent(buf, &mut self.s.cx());
        }
        for _ in 0..64 {
            let Some(buf) = self.conn.poll_transmit(&mut self.s.cx()) else {
                return;
            };
            self.sent.extend_from_slice(&buf);
            self.conn.handle_sent(buf, &mut self.s.cx());
        }
        panic!("poll_transmit never runs dry");
    }

    /// Moves the clock `ms` on, firing every deadline on the way exactly at
    /// its time, as the shard's timer does.
    fn advance(&mut self, ms: Millis) {
        let until = self.s.now + ms;
        for _ in 0..64 {
            let deadline = self.conn.poll_timeout(&self.s.rules.session);
            let Some(t) = deadline.filter(|&t| t <= until) else {
                self.s.now = until;
                return;
            };
            assert!(t >= self.s.now, "deadline {t} passed unfired");
            self.s.now = t;
            self.conn.handle_timeout(&mut self.s.cx());
            self.check();
            let next = self.conn.poll_timeout(&self.s.rules.session);
            assert!(
                next.is_none_or(|n| n > t),
                "fired at {t}, due again at {next:?}"
            );
        }
        panic!("over 64 deadlines in {ms} ms");
    }

    /// The invariants after every step (see [`connection`]).
    fn check(&mut self) {
        for e in self.s.events.drain(..) {
            match &e {
                ConnEvent::Opened => {
                    assert!(!self.opened && !self.closed, "Opened twice or late");
                    self.opened = true;
                }
                ConnEvent::Request(_) => assert!(self.opened && !self.closed, "not open"),
                ConnEvent::Mqtt(r) => {
                    assert!(self.opened && !self.closed, "not open");
                    assert!(
                        r.token >= 0 && !self.tokens.contains(&r.token),
                        "token reused"
                    );
                    self.tokens
                        .extend(Some(r.token).filter(|&t| t > 0 && t < 4));
                }
                ConnEvent::Closed { opened, .. } => {
                    assert!(!self.closed && *opened == self.opened, "bad Closed");
                    self.closed = true;
                }
            }
            self.log.push(format!("{e:?}"));
        }
        let (opened, closed) = (self.opened, self.closed);
        match self.conn.phase() {
            Phase::Handshake { .. } => assert!(!opened && !closed, "handshake"),
            Phase::Open => assert!(opened && !closed, "open"),
            Phase::Draining { .. } | Phase::Closed { .. } => assert!(closed, "closing"),
        }
        let counted: u64 = self.s.stats.snapshot().closed.iter().sum();
        assert_eq!(counted, u64::from(closed), "closes counted");
        let max = self.s.rules.max_outbound;
        assert!(
            closed || self.conn.outbound_bytes() <= max,
            "over the bound"
        );
        if self.conn.is_closed() {
            let sends = self.conn.poll_transmit(&mut self.s.cx());
            assert!(sends.is_none(), "closed, yet sends");
        }
    }
}

/// Everything a connection sent is what its client can read: raw, whole
/// due or MQTT packets; on a WebSocket, the HTTP response, then (after a
/// 101) final unmasked server frames, each binary message one due packet
/// or a piece of an MQTT stream, and nothing after the close frame.
fn check_sent(network: Network, opts: &PacketOptions, sent: &[u8]) {
    // The packet stream: the bytes sent, or MQTT's inside binary messages.
    let mut stream = BytesMut::new();
    if !network.is_websocket() {
        stream.extend_from_slice(sent);
    } else if let Some(end) = sent.windows(4).position(|w| w == b"\r\n\r\n") {
        let mut frames = &sent[end + 4..];
        if !sent.starts_with(b"HTTP/1.1 101 ") {
            let head = String::from_utf8_lossy(&sent[..end]);
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "));
            assert_eq!(
                length,
                Some(frames.len().to_string().as_str()),
                "sent after a 4xx"
            );
            return;
        }
        while !frames.is_empty() {
            let h = frame::parse_header(frames).unwrap().expect("a whole frame");
            assert!(h.fin && h.mask.is_none(), "not a final server frame");
            let (body, rest) = frames[h.header_len..].split_at(h.len as usize);
            frames = rest;
            match h.opcode {
                frame::OpCode::Binary if network.is_mqtt() => stream.extend_from_slice(body),
                frame::OpCode::Binary => drop(ws::packet::decode(&mut body.into(), opts).unwrap()),
                frame::OpCode::Close => assert!(frames.is_empty(), "sent after the close frame"),
                frame::OpCode::Pong => {}
                other => panic!("the gate sent a {other:?} frame"),
            }
        }
    } else {
        assert!(sent.is_empty(), "a partial HTTP response");
    }
    if network.is_mqtt() {
        while !stream.is_empty() {
            let p = mqtt::decode_server(&mut stream, MAX_REMAINING).unwrap();
            p.expect("whole MQTT packets");
        }
    } else if !network.is_websocket() {
        while !stream.is_empty() {
            codec::decode(&mut stream, opts)
                .unwrap()
                .expect("whole packets");
        }
    }
}
