//! `--transport mqtt` and `mqtt-ws` end to end against a real gate started
//! in this process (`[network.mqtt]` on, both shards), in front of an echo
//! node played here on the raw link protocol: service `Echo`, route 1 named
//! `HD_Raw`, every Deliver answered with a Push carrying its request id, the
//! same payload and `RESULT_RAW` (no wrapper), as the echo example's
//! `Echo/HD_Raw` does. Everything through the real binary and its JSON.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;

use bytes::BytesMut;
use prost::Message;
use ringgate::gate::Gate;
use ringgate::link::proto::{
    to_gate, to_node, NodeHello, Pong, Push, ResultFormat, RouteSpec, ToGate, ToNodeBatch,
};
use ringgate::link::{decode_frame, BatchBuf, PROTOCOL_VERSION};

mod common;
use common::{assert_clean, client, gate_config, BIN};

/// Starts the raw echo node: one thread accepting links, one per link.
fn echo_node() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(s) = s else { return };
            std::thread::spawn(move || serve_link(s));
        }
    });
    addr
}

fn send(s: &mut TcpStream, msgs: Vec<to_gate::Msg>) -> std::io::Result<()> {
    let mut b = BatchBuf::new(1 << 20);
    for m in msgs {
        b.push(&ToGate { msg: Some(m) });
    }
    s.write_all(&b.take())
}

/// One link: hello, then every Deliver echoed raw; pings answered.
fn serve_link(mut s: TcpStream) {
    s.set_nodelay(true).unwrap();
    let hello = NodeHello {
        service: "Echo".into(),
        node_id: "echo-mqtt-test".into(),
        version: PROTOCOL_VERSION,
        reply_routes: vec![RouteSpec {
            route: 1,
            timeout_ms: 0,
        }],
        route_names: [("HD_Raw".to_string(), 1)].into_iter().collect(),
        ..Default::default()
    };
    let mut buf = BytesMut::new();
    let mut said_hello = false;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let mut out = Vec::new();
        while let Some(frame) = decode_frame(&mut buf, 64 << 20).unwrap() {
            let batch = ToNodeBatch::decode(frame).unwrap();
            for m in batch.msgs.into_iter().filter_map(|m| m.msg) {
                match m {
                    to_node::Msg::Hello(_) if !said_hello => {
                        said_hello = true;
                        out.push(to_gate::Msg::Hello(hello.clone()));
                    }
                    to_node::Msg::Ping(p) => out.push(to_gate::Msg::Pong(Pong { nonce: p.nonce })),
                    to_node::Msg::Deliver(d) => out.push(to_gate::Msg::Push(Push {
                        session_id: d.session_id,
                        route: d.route,
                        seq: d.seq,
                        payload: d.payload,
                        request_id: d.request_id,
                        format: ResultFormat::ResultRaw as i32,
                        ..Default::default()
                    })),
                    _ => {}
                }
            }
        }
        if !out.is_empty() && send(&mut s, out).is_err() {
            return;
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A gate on loopback port 0 for tcp, ws and mqtt, two shards, in front of
/// `node`; returns once both links are up.
fn start_gate(node: SocketAddr) -> Gate {
    let mut cfg = gate_config(&[node]);
    cfg.network.mqtt.enabled = true;
    cfg.network.mqtt.addr = "127.0.0.1:0".parse().unwrap();
    cfg.validate().expect("test config is valid");
    let links = cfg.shards.cores.len() as u64;
    common::start_gate(cfg, links)
}

const CLEAN: &[&str] = &[
    "errors",
    "mismatches",
    "closed",
    "failed",
    "connect_failures",
];

/// `echo` over `transport` at `addr`: requests answered, nothing wrong,
/// PINGREQs answered.
fn echo_clean(transport: &str, addr: &str) {
    let r = client(&[
        "echo",
        "--transport",
        transport,
        "--addr",
        addr,
        "--conns",
        "20",
        "--depth",
        "2",
        "--threads",
        "2",
        "--duration",
        "1s",
        "--warmup",
        "0s",
        "--payload",
        "300",
        "--heartbeat",
        "200ms",
    ]);
    assert_eq!(r["transport"], transport, "{r}");
    assert_eq!(r["conns"], 20, "{r}");
    assert!(r["requests"].as_u64().unwrap() > 100, "{r}");
    assert_clean(&r, CLEAN);
    // PINGREQ → PINGRESP counts as a heartbeat answered.
    assert!(r["heartbeats_received"].as_u64().unwrap() >= 20, "{r}");
}

#[test]
fn echo_and_rate_over_mqtt() {
    let gate = start_gate(echo_node());
    let mqtt = gate.mqtt_addr().unwrap().to_string();
    echo_clean("mqtt", &mqtt);

    let r = client(&[
        "rate",
        "--transport",
        "mqtt",
        "--addr",
        &mqtt,
        "--conns",
        "10",
        "--rate",
        "2000",
        "--duration",
        "1s",
        "--warmup",
        "0s",
    ]);
    assert_eq!(r["transport"], "mqtt", "{r}");
    assert!(r["requests"].as_u64().unwrap() >= 1500, "{r}");
    assert_clean(&r, CLEAN);
    assert_eq!(r["unsent"], 0, "{r}");

    drop(gate);
}

#[test]
fn echo_over_mqtt_websocket() {
    let gate = start_gate(echo_node());
    let ws = gate.ws_addr().unwrap().to_string();
    echo_clean("mqtt-ws", &ws);

    // The plain ws transport on the same listener still speaks due packets.
    let r = client(&[
        "echo",
        "--transport",
        "ws",
        "--addr",
        &ws,
        "--conns",
        "2",
        "--duration",
        "500ms",
        "--warmup",
        "0s",
    ]);
    assert!(r["requests"].as_u64().unwrap() > 10, "{r}");
    assert_clean(&r, CLEAN);
    drop(gate);
}

#[test]
fn wrong_topics_are_counted_as_errors() {
    let gate = start_gate(echo_node());
    let mqtt = gate.mqtt_addr().unwrap().to_string();
    let ws = gate.ws_addr().unwrap().to_string();
    // No such module, no such handler: mqant error wrappers, one per request.
    for (transport, addr, topic) in [
        ("mqtt", &mqtt, "Nope/HD_Raw"),
        ("mqtt", &mqtt, "Echo/HD_Nope"),
        ("mqtt-ws", &ws, "Nope/HD_Raw"),
    ] {
        let r = client(&[
            "echo",
            "--transport",
            transport,
            "--addr",
            addr,
            "--mqtt-topic",
            topic,
            "--conns",
            "4",
            "--duration",
            "500ms",
            "--warmup",
            "0s",
        ]);
        assert_eq!(r["requests"], 0, "{topic}: {r}");
        assert!(r["errors"].as_u64().unwrap() > 10, "{topic}: {r}");
        assert_clean(&r, &["mismatches", "closed", "failed", "connect_failures"]);
    }
    // A topic the gate could not route is refused before connecting.
    let out = Command::new(BIN)
        .args(["echo", "--transport", "mqtt", "--addr", &mqtt])
        .args(["--mqtt-topic", "Echo/HD_Raw/1", "--duration", "1s"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--mqtt-topic"));
    drop(gate);
}

#[test]
fn connect_storm_and_idle_over_mqtt() {
    let gate = start_gate(echo_node());
    let mqtt = gate.mqtt_addr().unwrap().to_string();
    let ws = gate.ws_addr().unwrap().to_string();
    for (transport, addr) in [("mqtt", &mqtt), ("mqtt-ws", &ws)] {
        let r = client(&[
            "connect",
            "--transport",
            transport,
            "--addr",
            addr,
            "--conns",
            "100",
            "--threads",
            "2",
            "--reset",
        ]);
        assert_eq!(r["replied"], 100, "{transport}: {r}");
        // CONNECT/CONNACK is the handshake.
        assert_eq!(r["handshakes"], 100, "{transport}: {r}");
        assert_eq!(r["failures"], 0, "{transport}: {r}");
    }
    let r = client(&[
        "idle",
        "--transport",
        "mqtt",
        "--addr",
        &mqtt,
        "--conns",
        "10",
        "--hold",
        "1s",
        "--heartbeat",
        "300ms",
    ]);
    assert!(r["heartbeats_received"].as_u64().unwrap() >= 10, "{r}");
    assert_eq!(r["heartbeats_received"], r["heartbeats_sent"], "{r}");
    assert_eq!(r["closed"], 0, "{r}");
    drop(gate);
}
