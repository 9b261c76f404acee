//! Replays every committed fuzz input on stable, without cargo-fuzz: each
//! file under `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` goes
//! through `ringgate::fuzzing::<target>`, the very function the fuzzer
//! calls. A directory with no such target, or a target without a fuzzer
//! or a corpus, fails the test, so the three stay in step.
//!
//! The seed corpus is made here too, from the codecs' own encoders:
//! `RINGGATE_WRITE_SEEDS=1 cargo test --test fuzz_regressions seeds_replay_clean`
//! also writes the seeds into `fuzz/corpus/` (then minimize: see
//! `docs/fuzzing.md`).

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use ringgate::codec::{self, mqtt, PacketOptions};
use ringgate::fuzzing::TARGETS;
use ringgate::link::proto::{to_gate, to_node, Deliver, GateHello, NodeHello, Push};
use ringgate::link::proto::{Ping, ToGate, ToNode};
use ringgate::link::BatchBuf;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn target(name: &str) -> Option<fn(&[u8])> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|&(_, f)| f)
}

/// Every file under `fuzz/<kind>/<target>/`, with its target's name.
fn inputs(kind: &str) -> Vec<(String, PathBuf)> {
    let Ok(dirs) = fs::read_dir(fuzz_dir().join(kind)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for dir in dirs {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue; // a README
        }
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        for file in fs::read_dir(&dir).unwrap() {
            out.push((name.clone(), file.unwrap().path()));
        }
    }
    out.sort();
    out
}

/// Runs each input through its target; returns the failures, each named.
fn replay(inputs: &[(String, PathBuf)]) -> Vec<String> {
    let mut failures = Vec::new();
    for (name, path) in inputs {
        let Some(run) = target(name) else {
            failures.push(format!("{}: no ringgate::fuzzing::{name}", path.display()));
            continue;
        };
        let data = fs::read(path).unwrap();
        if let Err(e) = panic::catch_unwind(AssertUnwindSafe(|| run(&data))) {
            let why = e
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| e.downcast_ref::<&str>().copied())
                .unwrap_or("panic");
            failures.push(format!("{}: {why}", path.display()));
        }
    }
    failures
}

#[test]
fn corpus_and_regressions_replay_clean() {
    let mut all = inputs("corpus");
    assert!(!all.is_empty(), "no fuzz/corpus/*/ files");
    all.extend(inputs("regressions"));
    let failures = replay(&all);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_target_has_a_fuzzer_a_corpus_and_seeds() {
    let dir = fuzz_dir();
    for (name, _) in TARGETS {
        let fuzzer = dir.join("fuzz_targets").join(format!("{name}.rs"));
        let body = fs::read_to_string(&fuzzer).unwrap_or_default();
        assert!(
            body.contains(&format!("ringgate::fuzzing::{name}(")),
            "{} must call ringgate::fuzzing::{name}",
            fuzzer.display()
        );
        let corpus = fs::read_dir(dir.join("corpus").join(name)).map(Iterator::count);
        assert!(corpus.unwrap_or(0) > 0, "fuzz/corpus/{name}/ is empty");
        assert!(
            seeds().iter().any(|(n, _)| *n == name),
            "no seeds for {name}"
        );
    }
    for file in fs::read_dir(dir.join("fuzz_targets")).unwrap() {
        let file = file.unwrap().path();
        let name = file.file_stem().unwrap().to_string_lossy();
        assert!(
            target(&name).is_some(),
            "{}: no such target",
            file.display()
        );
    }
}

#[test]
fn seeds_replay_clean() {
    let failures: Vec<String> = seeds()
        .into_iter()
        .enumerate()
        .filter_map(|(i, (name, data))| {
            let run = target(name).unwrap();
            let ok = panic::catch_unwind(AssertUnwindSafe(|| run(&data))).is_ok();
            (!ok).then(|| format!("seed {i} of {name}"))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    if std::env::var_os("RINGGATE_WRITE_SEEDS").is_some_and(|v| v == "1") {
        write_seed_corpus();
    }
}

/// Writes the seeds into `fuzz/corpus/<target>/seed-<n>`.
fn write_seed_corpus() {
    for (i, (name, data)) in seeds().into_iter().enumerate() {
        let dir = fuzz_dir().join("corpus").join(name);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("seed-{i:03}")), data).unwrap();
    }
}

// ------------------------------------------------------------------ seeds

/// A few small valid inputs per target, each with the option bytes its
/// target reads first (see `ringgate::fuzzing`).
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut s = Vec::new();
    for (opts, split) in [(0x00, 0), (0x8d, 2)] {
        s.push((
            "due_packet",
            [&[opts, split][..], &due_stream(opts)].concat(),
        ));
    }
    for (limit, split) in [(6, 0), (2, 1), (4, 3)] {
        s.push(("ws_frame", [&[limit, split][..], &ws_frames()].concat()));
    }
    let upgrades = [
        (0x00, upgrade("/", "")),
        (
            0x0a,
            upgrade(
                "/?t=1",
                "Origin: https://game.example\r\nX-Forwarded-For: 203.0.113.7, 10.0.0.1\r\n",
            ),
        ),
        (0x10, upgrade("/mqtt", "Sec-WebSocket-Protocol: mqtt\r\n")),
        (0x00, b"POST / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
    ];
    for (policy, request) in upgrades {
        s.push(("ws_upgrade", [&[policy, 2][..], &request].concat()));
    }
    s.push(("mqtt_packet", [&[5, 0][..], &mqtt_client_stream()].concat()));
    s.push(("mqtt_packet", [&[6, 2][..], &mqtt_server_stream()].concat()));
    s.push(("link_batch", [&[0x0e, 0][..], &link_stream()].concat()));
    s.push(("link_batch", [&[0x06, 3][..], &link_stream()].concat()));
    for text in [
        ringgate::config::DEFAULT_TOML,
        SMALL_TOML,
        "[gate]\nname = \"\"\n",
    ] {
        s.push(("config_toml", text.as_bytes().to_vec()));
    }
    for script in connection_scripts() {
        s.push(("connection", script));
    }
    s
}

/// A data packet, a heartbeat and a timed heartbeat under the options
/// byte `opts`: 0 (the defaults) or 0x8d (little-endian, route 4, no seq,
/// heartbeat time).
fn due_stream(opts: u8) -> Vec<u8> {
    let mut o = PacketOptions::default();
    if opts != 0 {
        o.byte_order = codec::ByteOrder::Little;
        (o.route_bytes, o.seq_bytes, o.heartbeat_time) = (4, 0, true);
    }
    let mut b = BytesMut::new();
    codec::encode_data(0, 7, 1, b"hi", &o, &mut b).unwrap();
    codec::encode_heartbeat(None, &o, &mut b);
    codec::encode_heartbeat(Some(1_735_689_600_000_000_000), &o, &mut b);
    b.to_vec()
}

const KEY: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

/// A masked client frame: `b0` (FIN, opcode), a 7-bit length, `KEY`.
fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut body = payload.to_vec();
    ringgate::ws::apply_mask(&mut body, KEY);
    [&[b0, 0x80 | payload.len() as u8][..], &KEY, &body].concat()
}

/// A packet in one binary frame, then in two fragments with a ping
/// between, a pong, and a close with a code and a reason.
fn ws_frames() -> Vec<u8> {
    let mut packet = BytesMut::new();
    codec::encode_data(0, 7, 1, b"hi", &PacketOptions::default(), &mut packet).unwrap();
    [
        client_frame(0x82, &packet),
        client_frame(0x02, &packet[..4]),
        client_frame(0x89, b"ping"),
        client_frame(0x80, &packet[4..]),
        client_frame(0x8a, b""),
        client_frame(0x88, b"\x03\xe8bye"),
    ]
    .concat()
}

fn upgrade(target: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET {target} HTTP/1.1\r\n\
         Host: gate.example:3554\r\n\
         Upgrade: websocket\r\n\
         Connection: keep-alive, Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    .into_bytes()
}

fn connect(keep_alive: u16) -> mqtt::Connect {
    mqtt::Connect {
        level: 4,
        client_id: "c1".into(),
        clean_session: true,
        keep_alive,
        username: Some("u".into()),
        password: Some(Bytes::from_static(b"p")),
        will: Some(mqtt::Will {
            topic: "w/t".into(),
            payload: Bytes::from_static(b"gone"),
            qos: 1,
            retain: false,
        }),
    }
}

fn publish(topic: &str, qos: u8, payload: &'static [u8]) -> mqtt::Publish {
    mqtt::Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.into(),
        packet_id: (qos > 0).then_some(7),
        payload: Bytes::from_static(payload),
    }
}

/// What a client sends: CONNECT, PUBLISHes, SUBSCRIBE, UNSUBSCRIBE,
/// PUBREL, PINGREQ, DISCONNECT.
fn mqtt_client_stream() -> Vec<u8> {
    use mqtt::Inbound::*;
    let packets = [
        Connect(connect(60)),
        Publish(publish("Echo/HD_Echo/1", 0, b"{\"a\":1}")),
        Publish(publish("Echo/HD_Log", 2, b"hello")),
        Subscribe {
            packet_id: 2,
            filters: vec![("a/+/#".into(), 1)],
        },
        Unsubscribe {
            packet_id: 3,
            filters: vec!["a/+/#".into()],
        },
        PubRel(7),
        PingReq,
        Disconnect,
    ];
    let mut b = BytesMut::new();
    packets
        .iter()
        .for_each(|p| mqtt::encode_inbound(p, &mut b).unwrap());
    b.to_vec()
}

/// What a server sends: CONNACK, PUBLISH, SUBACK, PUBACK, PINGRESP.
fn mqtt_server_stream() -> Vec<u8> {
    use mqtt::Outbound::*;
    let packets = [
        ConnAck {
            session_present: false,
            return_code: 0,
        },
        Publish(publish("Echo/HD_Echo/1", 0, b"{}")),
        SubAck {
            packet_id: 2,
            granted: vec![0, 0x80],
        },
        PubAck(7),
        PingResp,
    ];
    let mut b = BytesMut::new();
    packets
        .iter()
        .for_each(|p| mqtt::encode_outbound(p, &mut b).unwrap());
    b.to_vec()
}

/// A gate's hello and deliver, then a node's hello, push and ping, each
/// direction in its own frame.
fn link_stream() -> Vec<u8> {
    let mut b = BatchBuf::new(1 << 20);
    b.push(&ToNode {
        msg: Some(to_node::Msg::Hello(GateHello {
            gate_id: "g1".into(),
            shard: 1,
            shards: 2,
            version: 2,
            max_frame_bytes: 65536,
            epoch_ms: 1_700_000_000_000,
            request_timeout_ms: 5000,
        })),
    });
    b.push(&ToNode {
        msg: Some(to_node::Msg::Deliver(Deliver {
            session_id: 5,
            route: 1,
            seq: 2,
            payload: Bytes::from_static(b"hi"),
            settings: [("k".to_owned(), "v".to_owned())].into(),
            ..Default::default()
        })),
    });
    let mut wire = b.take().to_vec();
    b.push(&ToGate {
        msg: Some(to_gate::Msg::Hello(NodeHello {
            service: "echo".into(),
            node_id: "echo-1".into(),
            version: 2,
            ..Default::default()
        })),
    });
    b.push(&ToGate {
        msg: Some(to_gate::Msg::Push(Push {
            session_id: 5,
            route: 1,
            payload: Bytes::from_static(b"hi"),
            ..Default::default()
        })),
    });
    b.push(&ToGate {
        msg: Some(to_gate::Msg::Ping(Ping { nonce: 9 })),
    });
    wire.extend_from_slice(&b.take());
    wire
}

const SMALL_TOML: &str = r#"
[gate]
name = "fuzz"
[packet]
byte_order = "little"
route_bytes = 4
seq_bytes = 0
buffer_bytes = "8KiB"
[network.tcp]
addr = ":3553"
heartbeat = { interval = "10s", mechanism = "tick" }
[network.ws]
enabled = true
origins = ["https://game.example", ""]
[network.mqtt]
enabled = true
[[nodes]]
addr = "127.0.0.1:7000"
"#;

/// Connection script steps (see `ringgate::fuzzing::connection`): a read
/// of `bytes` (in reads of at most 256), a flush, a clock move.
fn recv(bytes: &[u8]) -> Vec<u8> {
    let reads = bytes.chunks(256);
    reads
        .flat_map(|c| [&[0, (c.len() - 1) as u8][..], c].concat())
        .collect()
}
const FLUSH: [u8; 2] = [5, 0];
const WAIT_1S: [u8; 2] = [4, 63];

/// One script per network: due over TCP, due over WebSocket, MQTT, MQTT
/// over WebSocket.
fn connection_scripts() -> Vec<Vec<u8>> {
    let due = due_stream(0);
    let ws = [upgrade("/", ""), ws_frames()].concat();
    let mqtt = mqtt_client_stream();
    // DISCONNECT (the last 2 bytes) after a flush: it closes at once.
    let (mqtt_body, disconnect) = mqtt.split_at(mqtt.len() - 2);
    let mut mqtt_ws = upgrade("/mqtt", "");
    for packet in mqtt.chunks(20) {
        mqtt_ws.extend(client_frame(0x82, packet));
    }
    let node_push = [7, 3, b'p', b'u', b's'];
    vec![
        [
            &[0, 0, 0x0a, 0][..],
            &recv(&due),
            &node_push,
            &FLUSH,
            &WAIT_1S,
            &FLUSH,
        ]
        .concat(),
        [&[1, 0, 0x02, 1][..], &recv(&ws), &FLUSH, &WAIT_1S, &FLUSH].concat(),
        [
            &[2, 0, 0x00, 2][..],
            &recv(mqtt_body),
            &[7, 0xa1, b'x'],
            &FLUSH,
            &recv(disconnect),
        ]
        .concat(),
        [
            &[1, 0, 0x00, 3][..],
            &recv(&mqtt_ws),
            &FLUSH,
            &WAIT_1S,
            &FLUSH,
        ]
        .concat(),
    ]
}
