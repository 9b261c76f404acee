//! MQTT clients against a real gate (`[network.mqtt]` on) and a node that
//! speaks the raw link protocol (node.rs): third-party clients (paho-mqtt,
//! mosquitto_pub/_sub, MQTT.js) run from tests/clients, and bad input sent
//! through raw sockets. A missing client tool fails the test with what to
//! install (scripts/test.sh installs them).

#[path = "../common/mod.rs"]
mod common;
mod node;

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::mqtt_raw as raw;
use common::{test_config, wait_until, PATIENCE};
use ringgate::config::Config;
use ringgate::gate::Gate;
use ringgate::session::CloseReason;

use node::EchoNode;

const SHARDS: usize = 2;
const MAX_INFLIGHT: usize = 5;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

/// A gate with MQTT on, in front of the Echo node.
struct Stack {
    gate: Option<Gate>,
    node: EchoNode,
}

impl Stack {
    fn start(tweak: impl FnOnce(&mut Config)) -> Stack {
        common::init_logs();
        let mut node = EchoNode::bind();
        let mut cfg = test_config(&[node.addr]);
        cfg.shards.count = SHARDS;
        cfg.shards.cores.clear();
        cfg.network.mqtt.enabled = true;
        cfg.network.mqtt.addr = "127.0.0.1:0".parse().unwrap();
        cfg.network.mqtt.max_inflight = MAX_INFLIGHT;
        cfg.network.mqtt.request_timeout = REQUEST_TIMEOUT;
        tweak(&mut cfg);
        cfg.validate().expect("valid test config");
        let gate = Gate::start(&cfg).expect("gate starts");
        node.serve(SHARDS);
        wait_until(PATIENCE, "every shard's link up", || {
            gate.stats().links_up == SHARDS as u64
        });
        Stack {
            gate: Some(gate),
            node,
        }
    }

    fn gate(&self) -> &Gate {
        self.gate.as_ref().unwrap()
    }

    fn mqtt(&self) -> SocketAddr {
        self.gate().mqtt_addr().expect("MQTT listener enabled")
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(g) = self.gate.take() {
            g.stop();
        }
    }
}

/// Runs a client tool with a hard deadline; (success, stdout+stderr).
fn run(program: &str, args: &[String], deadline: Duration, install: &str) -> (bool, String) {
    let mut cmd = Command::new(program);
    cmd.args(args);
    common::run_with_deadline(cmd, deadline, install)
}

fn client_path(file: &str) -> String {
    format!("{}/tests/clients/{file}", env!("CARGO_MANIFEST_DIR"))
}

const PAHO: &str = "pip install paho-mqtt==2.1.0 (scripts/test.sh installs it)";
const MOSQUITTO: &str = "apt-get install mosquitto-clients (scripts/test.sh installs it)";
const MQTT_JS: &str = "apt-get install nodejs npm && npm install --prefix tests/clients \
     --no-save --no-package-lock mqtt@5.10.4 (scripts/test.sh installs them)";

#[test]
fn paho_mqtt_passes_every_scenario_on_mqtt_3_1_and_3_1_1() {
    let st = Stack::start(|_| {});
    let port = st.mqtt().port().to_string();
    let args: Vec<String> = [
        &client_path("mqtt_check.py"),
        "--port",
        &port,
        "--max-inflight",
        &MAX_INFLIGHT.to_string(),
        "--request-timeout",
        &REQUEST_TIMEOUT.as_secs_f64().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (ok, out) = run("python3", &args, Duration::from_secs(180), PAHO);
    eprintln!("{out}");
    assert!(ok, "paho-mqtt scenarios failed:\n{out}");
    assert_eq!(out.matches("PASS ").count(), 28, "{out}");
    assert!(!out.contains("FAIL"), "{out}");
    // The notifications at QoS 2 reached the node once each.
    assert_eq!(st.node.seen_on("Echo/HD_Slow").len(), 4, "{out}");
}

#[test]
fn paho_mqtt_passes_every_scenario_over_websocket_too() {
    let st = Stack::start(|_| {});
    let port = st.gate().ws_addr().expect("ws listener").port().to_string();
    // On mqtt_path (paho-python also offers the "mqtt" subprotocol).
    let args: Vec<String> = [
        &client_path("mqtt_check.py"),
        "--port",
        &port,
        "--ws-path",
        "/mqtt",
        "--max-inflight",
        &MAX_INFLIGHT.to_string(),
        "--request-timeout",
        &REQUEST_TIMEOUT.as_secs_f64().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (ok, out) = run("python3", &args, Duration::from_secs(180), PAHO);
    eprintln!("{out}");
    assert!(ok, "paho-mqtt over WebSocket failed:\n{out}");
    assert!(out.contains("over WebSocket /mqtt"), "{out}");
    assert_eq!(out.matches("PASS ").count(), 28, "{out}");
    assert!(!out.contains("FAIL"), "{out}");
}

fn mosquitto(program: &str, args: &[&str]) -> (bool, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    run(program, &args, PATIENCE, MOSQUITTO)
}

#[test]
fn mosquitto_pub_and_sub_connect_publish_at_every_qos_and_receive_a_broadcast() {
    let st = Stack::start(|_| {});
    let port = st.mqtt().port().to_string();
    // mosquitto_pub: CONNECT, PUBLISH, (PUBACK | PUBREC/PUBREL/PUBCOMP),
    // DISCONNECT; it exits 0 only if the CONNACK accepted it and the QoS
    // flow finished. Notifications only: the client leaves at once, so a
    // reply would have no one to go to.
    for v in ["mqttv31", "mqttv311"] {
        for q in ["0", "1", "2"] {
            let msg = format!("mosquitto {v} qos {q}");
            let (ok, out) = mosquitto(
                "mosquitto_pub",
                &[
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-V",
                    v,
                    "-q",
                    q,
                    "-t",
                    "Echo/HD_Log",
                    "-m",
                    &msg,
                ],
            );
            assert!(ok, "mosquitto_pub {v} QoS {q}:\n{out}");
            wait_until(PATIENCE, "the node saw it", || {
                let seen = st.node.seen_on("Echo/HD_Log");
                seen.iter().any(|s| s.payload == msg.as_bytes())
            });
        }
    }
    let seen = st.node.seen_on("Echo/HD_Log");
    assert_eq!(seen.len(), 6, "one Deliver per publish: {seen:?}");
    assert!(seen.iter().all(|s| s.request_id == 0), "{seen:?}");

    // MQTT 5 is refused with CONNACK 0x01 (unacceptable protocol version).
    let (ok, out) = mosquitto(
        "mosquitto_pub",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-V",
            "5",
            "-t",
            "Echo/HD_Log",
            "-m",
            "v5",
        ],
    );
    assert!(!ok, "an MQTT 5 client was accepted:\n{out}");
    eprintln!("mosquitto_pub -V 5: {out}");
    assert!(
        out.to_lowercase().contains("protocol version"),
        "MQTT 5 refusal not told as a protocol version: {out}"
    );

    // mosquitto_sub: subscribes (SUBACK), then receives a QoS 0 PUBLISH the
    // node broadcasts to every session on a topic of its choosing. Its
    // output is block-buffered in a pipe, so the test cannot wait for its
    // SUBACK line: it broadcasts until mosquitto_sub has one message (-C 1)
    // and exits, then reads the whole log.
    for v in ["mqttv31", "mqttv311"] {
        let before = st.gate().stats().accepted;
        let mut sub = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &port, "-V", v, "-d", "-v"])
            .args(["-t", "Echo/#", "-C", "1", "-W", "10"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run mosquitto_sub ({e}): {MOSQUITTO}"));
        wait_until(PATIENCE, "mosquitto_sub connected", || {
            st.gate().stats().accepted > before
        });
        let body = format!("hello all {v}");
        let end = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(s) = sub.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < end,
                "mosquitto_sub {v} never got a broadcast"
            );
            let (ok, out) = mosquitto(
                "mosquitto_pub",
                &[
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-t",
                    "Echo/HD_Broadcast",
                    "-m",
                    &body,
                ],
            );
            assert!(ok, "{out}");
            std::thread::sleep(Duration::from_millis(300));
        };
        let mut log = String::new();
        let _ = sub.stdout.take().unwrap().read_to_string(&mut log);
        let _ = sub.stderr.take().unwrap().read_to_string(&mut log);
        assert!(
            status.success(),
            "mosquitto_sub {v} failed ({status}):\n{log}"
        );
        assert!(
            log.contains("received SUBACK") && log.contains("Subscribed (mid: 1): 0"),
            "no SUBACK granting QoS 0:\n{log}"
        );
        assert!(
            log.contains(&format!("Echo/OnBroadcast {body}")),
            "broadcast not printed:\n{log}"
        );
        assert!(
            log.contains("received PUBLISH (d0, q0, r0"),
            "not a QoS 0 PUBLISH:\n{log}"
        );
    }
}

#[test]
fn mqtt_js_connects_requests_gets_a_push_acks_qos_1_and_pings() {
    let st = Stack::start(|_| {});
    let module = client_path("node_modules/mqtt/package.json");
    assert!(
        std::path::Path::new(&module).exists(),
        "MQTT.js is not installed at tests/clients/node_modules: {MQTT_JS}"
    );
    let args = vec![
        client_path("mqtt_js_check.mjs"),
        "--port".to_string(),
        st.mqtt().port().to_string(),
    ];
    let (ok, out) = run("node", &args, Duration::from_secs(60), MQTT_JS);
    eprintln!("{out}");
    assert!(ok, "MQTT.js scenarios failed:\n{out}");
    assert!(!out.contains("FAIL"), "{out}");
    assert_eq!(out.matches("PASS ").count(), 5, "{out}");
}

/// Bad packets, each on a connection of its own: each closes that
/// connection only, is counted, and a due client and an MQTT client that
/// were connected all along keep working.
#[test]
fn bad_input_closes_only_the_connection_that_sent_it() {
    let st = Stack::start(|c| {
        c.network.mqtt.max_packet_bytes = 1024;
        c.network.mqtt.connect_timeout = Duration::from_millis(400);
    });
    let addr = st.mqtt();
    let mut due = common::Client::connect(st.gate().tcp_addr(), Config::default().packet);
    let mut good = raw::Mqtt::connect(addr, "good", 60);
    let still_working = |due: &mut common::Client, good: &mut raw::Mqtt, n: usize| {
        due.send(1, n as i32, b"due ok");
        let r = due.recv_data().expect("due client still connected");
        assert_eq!((r.seq, &r.payload[..]), (n as i32, &b"due ok"[..]));
        let topic = format!("Echo/HD_Echo/{n}");
        good.publish(&topic, b"{}", 0, 0);
        let (t, p) = good.recv_publish().expect("MQTT client still connected");
        assert_eq!(t, topic);
        assert!(
            String::from_utf8_lossy(&p).contains(&format!("\"topic\":\"{topic}\"")),
            "{}",
            String::from_utf8_lossy(&p)
        );
    };
    still_working(&mut due, &mut good, 0);

    struct Case {
        name: &'static str,
        connect_first: bool,
        bytes: Vec<u8>,
    }
    let long_topic_publish = {
        // PUBLISH with a remaining length of 2000 > max_packet_bytes 1024:
        // the gate can refuse it from the fixed header alone.
        let mut b = vec![0x30, 0xd0, 0x0f];
        b.extend_from_slice(&[0, 3, b'a', b'/', b'b']);
        b
    };
    let cases = [
        Case {
            name: "first packet not CONNECT (PINGREQ)",
            connect_first: false,
            bytes: vec![0xc0, 0x00],
        },
        Case {
            name: "first packet not CONNECT (PUBLISH)",
            connect_first: false,
            bytes: raw::publish("Echo/HD_Echo/1", b"{}", 0, 0),
        },
        Case {
            name: "remaining length over max_packet_bytes",
            connect_first: true,
            bytes: long_topic_publish,
        },
        Case {
            name: "5-byte remaining length",
            connect_first: true,
            bytes: vec![0x30, 0xff, 0xff, 0xff, 0xff, 0x01],
        },
        Case {
            name: "5-byte remaining length before CONNECT",
            connect_first: false,
            bytes: vec![0x10, 0x80, 0x80, 0x80, 0x80, 0x01],
        },
        Case {
            name: "wildcard + in a PUBLISH topic",
            connect_first: true,
            bytes: raw::publish("Echo/+/1", b"{}", 0, 0),
        },
        Case {
            name: "wildcard # in a PUBLISH topic",
            connect_first: true,
            bytes: raw::publish("Echo/HD_Echo/#", b"{}", 1, 7),
        },
        Case {
            name: "bad UTF-8 topic",
            connect_first: true,
            bytes: raw::publish_bytes(b"Echo/\xff\xfe/1", b"{}", 0, 0),
        },
        Case {
            name: "NUL in the topic",
            connect_first: true,
            bytes: raw::publish_bytes(b"Echo/HD_Echo\x00/1", b"{}", 0, 0),
        },
        Case {
            name: "QoS 3",
            connect_first: true,
            bytes: {
                let mut b = raw::publish("Echo/HD_Echo/1", b"{}", 1, 9);
                b[0] = 0x36;
                b
            },
        },
        Case {
            name: "SUBSCRIBE without its reserved flags 0010",
            connect_first: true,
            bytes: vec![0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00],
        },
        Case {
            name: "PUBREL without its reserved flags 0010",
            connect_first: true,
            bytes: vec![0x60, 0x02, 0x00, 0x01],
        },
        Case {
            name: "PINGREQ with flag bits set",
            connect_first: true,
            bytes: vec![0xc1, 0x00],
        },
        Case {
            name: "CONNECT with the reserved flag bit set",
            connect_first: false,
            bytes: {
                let mut b = raw::connect("bad", 60);
                b[9] |= 0x01; // connect flags byte
                b
            },
        },
        Case {
            name: "reserved packet type 0",
            connect_first: true,
            bytes: vec![0x00, 0x00],
        },
        Case {
            name: "reserved packet type 15",
            connect_first: true,
            bytes: vec![0xf0, 0x00],
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        let before = st.gate().stats();
        let mut c = if case.connect_first {
            raw::Mqtt::connect(addr, &format!("bad{i}"), 60)
        } else {
            raw::Mqtt::open(addr)
        };
        c.send(&case.bytes);
        let got = c.until_closed(PATIENCE);
        assert!(
            got.is_ok(),
            "{}: not closed: {:?}",
            case.name,
            got.err().unwrap()
        );
        let got = got.unwrap();
        assert!(
            got.is_empty(),
            "{}: the gate answered {got:02x?}",
            case.name
        );
        wait_until(PATIENCE, "the close counted", || {
            let now = st.gate().stats();
            now.closed_for(CloseReason::ProtocolError)
                == before.closed_for(CloseReason::ProtocolError) + 1
        });
        let now = st.gate().stats();
        assert_eq!(
            now.mqtt_errors,
            before.mqtt_errors + 1,
            "{}: mqtt_errors",
            case.name
        );
        still_working(&mut due, &mut good, i + 1);
    }

    // No CONNECT at all: closed at connect_timeout, without a word.
    let before = st.gate().stats();
    let mut c = raw::Mqtt::open(addr);
    let t = Instant::now();
    let got = c.until_closed(PATIENCE).expect("closed without CONNECT");
    let took = t.elapsed();
    assert!(got.is_empty(), "{got:02x?}");
    assert!(took >= Duration::from_millis(350), "closed after {took:?}");
    wait_until(PATIENCE, "the close counted", || {
        st.gate().stats().closed_for(CloseReason::HandshakeTimeout)
            == before.closed_for(CloseReason::HandshakeTimeout) + 1
    });
    // A CONNECT cut short also waits for connect_timeout only.
    let mut c = raw::Mqtt::open(addr);
    c.send(&raw::connect("partial", 60)[..6]);
    c.until_closed(PATIENCE).expect("partial CONNECT closed");
    still_working(&mut due, &mut good, 100);
}
