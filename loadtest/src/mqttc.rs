//! The client side of the gate's MQTT (`--transport mqtt`, `mqtt-ws`),
//! mapped onto the load generator's packets so every scenario runs
//! unchanged: pure functions over byte buffers, no I/O.
//!
//! ```text
//!  handshake: CONNECT (client id per connection, keep-alive) ─▶ CONNACK 0
//!  request (route, seq, payload) ─▶ QoS 0 PUBLISH "<topic>/<seq>" payload
//!  PUBLISH "<topic>/<seq>" payload ─▶ Frame::Data { route, seq, payload, ext 0 }
//!  PUBLISH of mqant's error wrapper {"Trace":..,"Error":"<text>",..} ─▶ the same with ext 1 (an error)
//!  heartbeat ─▶ PINGREQ;  PINGRESP ─▶ Frame::Heartbeat
//! ```
//!
//! A PUBLISH on any other topic (or a msgid that is not a number) becomes a
//! packet with seq -1, which no request has: it counts as a mismatch.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use ringgate::codec::mqtt::{self, Connect, Outbound};
use ringgate::codec::{Frame, Packet};

use crate::wsc;

/// Largest packet accepted from the server.
const MAX_REMAINING: usize = 16 << 20;

/// What every MQTT connection of a run shares.
#[derive(Clone, Debug)]
pub struct MqttPlan {
    /// Requests go to `<topic>/<seq>`.
    pub topic: String,
    /// CONNECT keep-alive, seconds (0: none).
    pub keep_alive: u16,
    /// Broker mode (`--mqtt-subscribe`): each connection subscribes to
    /// `<topic>/<n>/+` and publishes to `<topic>/<n>/<seq>`, so a broker
    /// relays every message back to its sender (a reference for the gate).
    pub subscribe: bool,
}

impl MqttPlan {
    /// Checks `--mqtt-topic`: `module/handler` as the gate routes it (no
    /// wildcards, no empty segment, no msgid: the seq is appended).
    pub fn new(topic: &str, keep_alive: u16, subscribe: bool) -> Result<Self, String> {
        let segments: Vec<&str> = topic.split('/').collect();
        if segments.len() != 2 || segments.iter().any(|s| s.is_empty()) {
            return Err(format!(
                "--mqtt-topic {topic:?} must be module/handler (the seq is appended as the msgid)"
            ));
        }
        if topic.contains(['+', '#', '\0']) {
            return Err(format!("--mqtt-topic {topic:?} holds a wildcard"));
        }
        Ok(MqttPlan {
            topic: topic.to_string(),
            keep_alive,
            subscribe,
        })
    }

    /// The CONNECT of a new connection, framed (`ws`: one masked binary
    /// message). Client ids are `ringgate-loadtest-<pid>-<n>`, unique per
    /// process.
    pub fn connect(&self, ws: Option<&mut wsc::WsIn>, m: Option<&mut MqttIn>) -> BytesMut {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let c = Connect {
            level: 4,
            client_id: format!("ringgate-loadtest-{}-{n}", std::process::id()),
            clean_session: true,
            keep_alive: self.keep_alive,
            username: None,
            password: None,
            will: None,
        };
        let mut bare = BytesMut::new();
        mqtt::encode_connect(&c, &mut bare).expect("a valid CONNECT");
        if let (true, Some(m)) = (self.subscribe, m) {
            m.prefix = format!("{}/{n}/", self.topic);
            let filter = format!("{}+", m.prefix);
            mqtt::encode_subscribe(1, &[(filter.as_str(), 0)], &mut bare)
                .expect("a valid SUBSCRIBE");
        }
        match ws {
            None => bare,
            Some(ws) => {
                let mut out = BytesMut::new();
                let _ = wsc::encode_binary_with(bare.len(), ws.rng.next_key(), &mut out, |d| {
                    d.extend_from_slice(&bare);
                    Ok::<(), ()>(())
                });
                out
            }
        }
    }
}

/// One connection's MQTT state.
#[derive(Debug, Default)]
pub struct MqttIn {
    /// `<topic>/`, the prefix of every request and reply topic.
    prefix: String,
    /// Scratch for the topic of the next request.
    topic: String,
    /// Route of the requests (answers are reported on it).
    route: i32,
    /// The CONNACK's return code, once received.
    pub connack: Option<u8>,
    /// mqtt-ws: MQTT bytes unwrapped from messages, not yet a whole packet.
    pub pending: BytesMut,
}

impl MqttIn {
    /// The state of a new connection of `plan`.
    pub fn new(plan: &MqttPlan) -> Self {
        MqttIn {
            prefix: format!("{}/", plan.topic),
            ..MqttIn::default()
        }
    }

    /// Appends request `seq` as a QoS 0 PUBLISH to `<topic>/<seq>`, framed
    /// (`key`: one masked binary message). On `Err` `out` is untouched.
    pub fn encode_request(
        &mut self,
        route: i32,
        seq: i32,
        payload: &[u8],
        key: Option<[u8; 4]>,
        out: &mut BytesMut,
    ) -> Result<(), mqtt::MqttError> {
        self.route = route;
        self.topic.clear();
        self.topic.push_str(&self.prefix);
        let _ = write!(self.topic, "{seq}");
        let topic = self.topic.as_str();
        match key {
            None => mqtt::encode_publish(topic, payload, out),
            Some(key) => {
                let len = mqtt::publish_len(topic.len(), payload.len());
                wsc::encode_binary_with(len, key, out, |d| mqtt::encode_publish(topic, payload, d))
            }
        }
    }

    /// Decodes every complete server packet at the front of `src`,
    /// calling `on_frame` with what it means to the load generator.
    pub fn decode(
        &mut self,
        src: &mut BytesMut,
        on_frame: &mut impl FnMut(Frame),
    ) -> Result<(), String> {
        loop {
            match mqtt::decode_server(src, MAX_REMAINING) {
                Ok(None) => return Ok(()),
                Ok(Some(Outbound::ConnAck { return_code, .. })) => {
                    if self.connack.is_some() {
                        return Err("a second CONNACK".into());
                    }
                    self.connack = Some(return_code);
                }
                Ok(Some(Outbound::Publish(p))) => {
                    let seq = p
                        .topic
                        .as_str()
                        .strip_prefix(self.prefix.as_str())
                        .and_then(|s| s.parse::<i32>().ok())
                        .unwrap_or(-1);
                    let ext = u8::from(is_error(&p.payload));
                    on_frame(Frame::Data(Packet {
                        ext,
                        route: self.route,
                        seq,
                        payload: p.payload,
                    }));
                }
                Ok(Some(Outbound::PingResp)) => on_frame(Frame::Heartbeat { time: None }),
                Ok(Some(_)) => {}
                Err(e) => return Err(format!("bad MQTT packet from server: {e}")),
            }
        }
    }
}

/// Whether `payload` is mqant's reply wrapper with a non-empty `Error`
/// (`{"Trace":"..","Error":"Service(type:X) not found","Result":null}`).
pub fn is_error(payload: &Bytes) -> bool {
    if !payload.starts_with(b"{\"Trace\":") {
        return false;
    }
    match serde_json::from_slice::<serde_json::Value>(payload) {
        Ok(v) => v
            .get("Error")
            .and_then(|e| e.as_str())
            .is_some_and(|e| !e.is_empty()),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringgate::codec::mqtt::Inbound;

    fn plan() -> MqttPlan {
        MqttPlan::new("Echo/HD_Raw", 0, false).unwrap()
    }

    #[test]
    fn topics_are_checked() {
        assert!(MqttPlan::new("Echo/HD_Raw", 30, false).is_ok());
        for bad in ["Echo", "Echo/HD_Raw/1", "/HD_Raw", "Echo/", "E+/x", ""] {
            assert!(MqttPlan::new(bad, 0, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn requests_are_qos0_publishes_the_gate_reads() {
        let mut m = MqttIn::new(&plan());
        let mut wire = BytesMut::new();
        m.encode_request(1, 42, b"abc", None, &mut wire).unwrap();
        let Some(Inbound::Publish(p)) = mqtt::decode(&mut wire, 1 << 20).unwrap() else {
            panic!("not a publish")
        };
        assert_eq!((p.topic.as_str(), p.qos), ("Echo/HD_Raw/42", 0));
        assert_eq!(&p.payload[..], b"abc");
        // Over WebSocket: one masked binary message holding the same bytes.
        m.encode_request(1, 7, b"xyz", Some([1, 2, 3, 4]), &mut wire)
            .unwrap();
        let mut f = ringgate::ws::decode_frame(&mut wire, 1 << 20)
            .unwrap()
            .unwrap();
        let Some(Inbound::Publish(p)) = mqtt::decode(&mut f.payload, 1 << 20).unwrap() else {
            panic!("not a publish")
        };
        assert_eq!(
            (p.topic.as_str(), &p.payload[..]),
            ("Echo/HD_Raw/7", &b"xyz"[..])
        );
        assert!(wire.is_empty());
    }

    #[test]
    fn connect_is_a_connect() {
        let mut wire = plan().connect(None, None);
        let Some(Inbound::Connect(c)) = mqtt::decode(&mut wire, 1 << 20).unwrap() else {
            panic!("not a connect")
        };
        assert!(c.client_id.starts_with("ringgate-loadtest-"));
        let again = plan().connect(None, None);
        assert_ne!(
            &again[..],
            &plan().connect(None, None)[..],
            "client ids differ"
        );
    }

    #[test]
    fn broker_mode_subscribes_to_its_own_topics() {
        let plan = MqttPlan::new("Echo/HD_Raw", 0, true).unwrap();
        let mut m = MqttIn::new(&plan);
        let mut wire = plan.connect(None, Some(&mut m));
        assert!(matches!(
            mqtt::decode(&mut wire, 1 << 20).unwrap(),
            Some(Inbound::Connect(_))
        ));
        let Some(Inbound::Subscribe { filters, .. }) = mqtt::decode(&mut wire, 1 << 20).unwrap()
        else {
            panic!("no SUBSCRIBE after the CONNECT")
        };
        assert!(filters[0].0.starts_with("Echo/HD_Raw/") && filters[0].0.ends_with("/+"));
        let mut out = BytesMut::new();
        m.encode_request(1, 7, b"x", None, &mut out).unwrap();
        let Some(Inbound::Publish(p)) = mqtt::decode(&mut out, 1 << 20).unwrap() else {
            panic!("not a publish")
        };
        assert_eq!(
            format!("{}7", &filters[0].0[..filters[0].0.len() - 1]),
            p.topic.as_str()
        );
    }

    #[test]
    fn replies_map_to_frames() {
        let mut m = MqttIn::new(&plan());
        m.encode_request(3, 5, b"x", None, &mut BytesMut::new())
            .unwrap();
        let mut src = BytesMut::new();
        mqtt::encode_connack(false, 0, &mut src);
        mqtt::encode_publish("Echo/HD_Raw/5", b"payload", &mut src).unwrap();
        let err =
            br#"{"Trace":"9e3779b97f4a7c15","Error":"Service(type:Echo) not found","Result":null}"#;
        mqtt::encode_publish("Echo/HD_Raw/6", err, &mut src).unwrap();
        let ok = br#"{"Trace":"9e3779b97f4a7c15","Error":"","Result":{"a":1}}"#;
        mqtt::encode_publish("Echo/HD_Raw/7", ok, &mut src).unwrap();
        mqtt::encode_publish("Other/HD_Raw/8", b"p", &mut src).unwrap();
        mqtt::encode_pingresp(&mut src);
        let full = src.clone();
        let mut got = Vec::new();
        // Byte by byte: partial packets wait.
        let mut buf = BytesMut::new();
        for b in full.iter() {
            buf.extend_from_slice(&[*b]);
            m.decode(&mut buf, &mut |f| got.push(f)).unwrap();
        }
        assert_eq!(m.connack, Some(0));
        let data: Vec<(u8, i32, i32)> = got
            .iter()
            .filter_map(|f| match f {
                Frame::Data(p) => Some((p.ext, p.route, p.seq)),
                _ => None,
            })
            .collect();
        assert_eq!(data, [(0, 3, 5), (1, 3, 6), (0, 3, 7), (0, 3, -1)]);
        assert_eq!(got.last(), Some(&Frame::Heartbeat { time: None }));
    }
}
