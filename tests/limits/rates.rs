//! Per connection: requests and bytes per second (action "reply" and
//! "close", due and MQTT clients), and requests waiting for replies.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ringgate::codec::{self, ext};
use ringgate::config::LimitAction;
use ringgate::link::proto::{to_node, Deliver};
use ringgate::node::{CloseReason, Context, EventContext, EventKind, Node};
use ringgate::session::CloseReason as Reason;

use crate::common::scripted::{reply_to, Announce, NodeLink, ScriptedNode};
use crate::common::{wait_until, Client, PATIENCE};
use crate::mqtt_node::EchoNode;
use crate::mqtt_raw::{self, Mqtt};
use crate::{echo, gate, gate_for, opts, serial, served, shards, Canary, ECHO, SHORT};

/// `n` requests on the echo route, seq 1..=n, encoded back to back.
pub fn requests(n: i32, payload: &[u8]) -> BytesMut {
    let mut b = BytesMut::new();
    for seq in 1..=n {
        codec::encode_data(0, ECHO, seq, payload, &opts(), &mut b).unwrap();
    }
    b
}

/// Reads the answers to requests 1..=n: each seq answered exactly once;
/// returns each one's extension code, by seq.
pub fn answers(c: &mut Client, n: i32) -> Vec<u8> {
    let mut got = vec![None; n as usize];
    for _ in 0..n {
        let p = c.recv_data().expect("an answer to every request");
        let slot = &mut got[(p.seq - 1) as usize];
        assert!(slot.is_none(), "seq {} answered twice", p.seq);
        *slot = Some(p.ext);
    }
    got.into_iter().map(Option::unwrap).collect()
}

/// How many answers carried `code`.
pub fn count(codes: &[u8], code: u8) -> u64 {
    codes.iter().filter(|&&c| c == code).count() as u64
}

#[test]
fn a_flood_over_the_request_rate_is_answered_rate_limited_and_the_canary_loses_nothing() {
    let _turn = serial();
    const RATE: u64 = 50;
    const BURST: u64 = 100;
    const N: i32 = 2000;
    let node = echo();
    let g = gate_for(&node, false, |c| {
        c.limits.requests_per_sec = RATE;
        c.limits.requests_burst = BURST;
    });
    // 25 requests a second, under the rate: the canary never hits it.
    let canary = Canary::start(g.tcp_addr(), Duration::from_millis(40));
    let mut f = Client::connect(g.tcp_addr(), opts());
    std::thread::sleep(Duration::from_millis(200));
    let start = Instant::now();
    f.s.write_all(&requests(N, b"flood")).unwrap();
    let codes = answers(&mut f, N);
    let elapsed = start.elapsed();
    let (passed, limited) = (count(&codes, 0), count(&codes, ext::RATE_LIMITED));
    assert_eq!(passed + limited, N as u64, "echoes and RATE_LIMITED only");
    // The burst, plus what the bucket refilled while the flood was read.
    let most = BURST + RATE * elapsed.as_millis() as u64 / 1000 + 1;
    assert!(
        (BURST..=most).contains(&passed),
        "{passed} of {N} passed in {elapsed:?}; the rate allows {BURST} to {most}"
    );
    // The flooder keeps its connection and is served once it slows down.
    std::thread::sleep(Duration::from_millis(100));
    f.send(ECHO, 1, b"slower");
    assert_eq!(f.recv_data().expect("served again").ext, 0);
    std::thread::sleep(Duration::from_millis(300));
    let sent = canary.finish();
    assert!(sent >= 5, "the canary ran throughout: {sent} requests");
    let st = g.stats();
    assert_eq!(st.rate_limited, limited, "every refusal counted");
    assert_eq!(
        st.closed_for(Reason::RateLimited),
        0,
        "action reply closes nothing"
    );
    g.stop();
}

#[test]
fn payload_bytes_over_bytes_per_sec_are_refused() {
    let _turn = serial();
    const RATE: u64 = 10_000;
    const N: i32 = 40;
    let node = echo();
    let g = gate_for(&node, false, |c| {
        c.limits.bytes_per_sec = RATE;
        c.limits.bytes_burst = RATE;
    });
    let mut f = Client::connect(g.tcp_addr(), opts());
    let start = Instant::now();
    f.s.write_all(&requests(N, &[7u8; 1000])).unwrap();
    let codes = answers(&mut f, N);
    let elapsed = start.elapsed();
    let passed = count(&codes, 0);
    // 1000 bytes each: the burst's 10, plus one per 100 ms of refill.
    let most = 10 + RATE * elapsed.as_millis() as u64 / 1000 / 1000 + 1;
    assert!(
        (10..=most).contains(&passed),
        "{passed} passed in {elapsed:?}, the byte rate allows 10 to {most}"
    );
    assert_eq!(count(&codes, ext::RATE_LIMITED), N as u64 - passed);
    assert_eq!(g.stats().rate_limited, N as u64 - passed);
    // 30 ms later the bucket holds ~300 bytes: a small request fits where
    // a large one does not.
    std::thread::sleep(Duration::from_millis(30));
    let mut two = BytesMut::new();
    codec::encode_data(0, ECHO, 1, &[1u8; 5000], &opts(), &mut two).unwrap();
    codec::encode_data(0, ECHO, 2, &[2u8; 100], &opts(), &mut two).unwrap();
    f.s.write_all(&two).unwrap();
    assert_eq!(answers(&mut f, 2), [ext::RATE_LIMITED, 0]);
    g.stop();
}

/// The first WebSocket close frame in `bytes` (server frames are not
/// masked): its code and reason.
fn close_frame(bytes: &[u8]) -> Option<(u16, String)> {
    let i = bytes.windows(2).position(|w| w[0] == 0x88 && w[1] >= 2)?;
    let len = usize::from(bytes[i + 1]);
    let body = bytes.get(i + 2..i + 2 + len)?;
    let code = u16::from_be_bytes([body[0], body[1]]);
    Some((code, String::from_utf8_lossy(&body[2..]).into_owned()))
}

#[test]
fn action_close_answers_then_closes_with_rate_limited_and_the_node_hears_why() {
    let _turn = serial();
    let reasons: Arc<Mutex<Vec<CloseReason>>> = Arc::default();
    let heard = reasons.clone();
    let node = Node::builder("echo")
        .listen("127.0.0.1:0".parse().unwrap())
        .route(ECHO, |ctx: &mut Context| {
            let p = ctx.payload().clone();
            ctx.reply(p);
        })
        .on_event(&[EventKind::Disconnect], move |ev: &mut EventContext| {
            heard.lock().unwrap().push(ev.reason());
        })
        .bind()
        .unwrap()
        .spawn();
    let g = gate_for(&node, false, |c| {
        c.limits.requests_per_sec = 10;
        c.limits.requests_burst = 5;
        c.limits.action = LimitAction::Close;
    });
    let polite = served(g.tcp_addr()).expect("a client under the rate");
    let mut f = Client::connect(g.tcp_addr(), opts());
    let _ = f.s.write_all(&requests(50, b"x"));
    // Echoes of the first five may come or not (the session is closing
    // when they do); one RATE_LIMITED comes, then the end of the stream.
    let mut limited = 0;
    while let Some(p) = f.recv_data() {
        match p.ext {
            0 => {}
            ext::RATE_LIMITED => limited += 1,
            other => panic!("unexpected answer {other} to seq {}", p.seq),
        }
    }
    assert_eq!(limited, 1, "one RATE_LIMITED, then the close");
    wait_until(PATIENCE, "the node heard of the close", || {
        !reasons.lock().unwrap().is_empty()
    });
    assert_eq!(*reasons.lock().unwrap(), [CloseReason::RateLimited]);
    let st = g.stats();
    assert_eq!(st.closed_for(Reason::RateLimited), 1);
    assert!((1..=45).contains(&st.rate_limited), "{}", st.rate_limited);

    // Over WebSocket the close frame says why: 1008 "rate_limited".
    let ws = g.ws_addr().expect("ws listener");
    let mut s = crate::sources::ws_upgraded(ws).expect("upgraded");
    let mut frames = Vec::new();
    for seq in 1..=20 {
        let mut p = BytesMut::new();
        codec::encode_data(0, ECHO, seq, b"w", &opts(), &mut p).unwrap();
        frames.extend_from_slice(&crate::sources::ws_binary(&p));
    }
    let _ = s.write_all(&frames);
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert_eq!(
        close_frame(&got),
        Some((1008, "rate_limited".to_owned())),
        "{got:02x?}"
    );
    assert_eq!(g.stats().closed_for(Reason::RateLimited), 2);
    assert!(
        crate::served(g.tcp_addr()).is_some(),
        "other clients are served"
    );
    drop(polite);
    g.stop();
}

/// The next Deliver on any of `links`.
fn next_deliver(links: &mut [NodeLink], within: Duration) -> Option<Deliver> {
    let end = Instant::now() + within;
    while Instant::now() < end {
        for l in links.iter_mut() {
            if let Some(to_node::Msg::Deliver(d)) = l.next(Duration::from_millis(10)) {
                return Some(d);
            }
        }
    }
    None
}

#[test]
fn requests_waiting_for_replies_are_capped_per_connection() {
    let _turn = serial();
    let node = ScriptedNode::bind();
    let g = gate(&[node.addr], false, |c| c.limits.max_inflight = 4);
    let answered = Announce {
        reply_routes: vec![(ECHO, 0)],
        ..Default::default()
    };
    let mut links = node.accept_shards(&answered, shards() as usize);
    let mut c = Client::connect(g.tcp_addr(), opts());
    c.s.write_all(&requests(10, b"wait")).unwrap();
    // Four reach the node; the other six are answered at once.
    for _ in 0..6 {
        let p = c.recv_data().unwrap();
        assert_eq!(p.ext, ext::INFLIGHT_FULL, "seq {}", p.seq);
        assert!(p.seq > 4, "the first four were sent: seq {}", p.seq);
    }
    let waiting: Vec<Deliver> = (0..4)
        .map(|_| next_deliver(&mut links, PATIENCE).expect("a request for the node"))
        .collect();
    assert!(next_deliver(&mut links, SHORT).is_none(), "a fifth");
    // A reply makes room for exactly one more.
    let link = &mut links[(waiting[0].session_id >> 48) as usize];
    link.send(&[reply_to(&waiting[0], b"done")]);
    assert_eq!(c.recv_data().unwrap().seq, 1);
    c.send(ECHO, 11, b"next");
    let d = next_deliver(&mut links, PATIENCE).expect("room for one");
    assert_eq!(d.seq, 11);
    c.send(ECHO, 12, b"again");
    assert_eq!(c.recv_data().unwrap().ext, ext::INFLIGHT_FULL);
    assert_eq!(g.stats().inflight_full, 7);
    g.stop();
}

/// The mqant wrapper of an MQTT reply: its `Error` text.
fn reply_error(payload: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(payload).expect("a JSON reply");
    v["Error"].as_str().expect("an Error field").to_owned()
}

/// A gate with MQTT on in front of the Echo node of tests/mqtt.
fn mqtt_gate(
    tweak: impl FnOnce(&mut ringgate::config::Config),
) -> (ringgate::gate::Gate, EchoNode) {
    let mut node = EchoNode::bind();
    let g = gate(&[node.addr], false, |c| {
        c.network.mqtt.enabled = true;
        c.network.mqtt.addr = "127.0.0.1:0".parse().unwrap();
        tweak(c);
    });
    node.serve(shards() as usize);
    wait_until(PATIENCE, "every link up", || g.stats().links_up == shards());
    (g, node)
}

#[test]
fn mqtt_requests_over_the_rate_get_rate_limited_on_their_topic() {
    let _turn = serial();
    let (g, node) = mqtt_gate(|c| {
        c.limits.requests_per_sec = 10;
        c.limits.requests_burst = 3;
    });
    let addr = g.mqtt_addr().unwrap();
    let mut m = Mqtt::connect(addr, "flooder", 60);
    let mut burst = Vec::new();
    for i in 1..=8 {
        burst.extend(mqtt_raw::publish(&format!("Echo/HD_Echo/{i}"), b"{}", 0, 0));
    }
    // A QoS 1 request over the rate is still acknowledged.
    burst.extend(mqtt_raw::publish("Echo/HD_Echo/9", b"{}", 1, 77));
    // A notification over the rate gets nothing and never reaches the node.
    burst.extend(mqtt_raw::publish("Echo/HD_Log", b"dropped", 0, 0));
    m.send(&burst);
    let (mut ok, mut limited, mut acked) = (0, 0, false);
    while ok + limited < 9 {
        let (h, body) = m.recv().expect("an answer");
        if h == 0x40 {
            assert_eq!(body, [0, 77], "PUBACK of packet 77");
            acked = true;
            continue;
        }
        assert_eq!(h, 0x30, "a QoS 0 PUBLISH");
        let n = u16::from_be_bytes([body[0], body[1]]) as usize;
        match reply_error(&body[2 + n..]).as_str() {
            "" => ok += 1,
            "rate limited" => limited += 1,
            other => panic!("unexpected error {other:?}"),
        }
    }
    assert!(acked, "the QoS 1 request was acknowledged");
    assert_eq!((ok, limited), (3, 6), "the burst of 3, then the rate");
    let st = g.stats();
    assert_eq!(st.rate_limited, 7, "six requests and the notification");
    std::thread::sleep(SHORT);
    assert!(
        node.seen_on("Echo/HD_Log").is_empty(),
        "the notification was dropped"
    );
    assert_eq!(node.seen_on("Echo/HD_Echo/1").len(), 1);
    // Another client has its own bucket.
    let mut other = Mqtt::connect(addr, "other", 60);
    other.publish("Echo/HD_Echo/1", b"{}", 0, 0);
    let (_, body) = other.recv_publish().expect("a reply");
    assert_eq!(reply_error(&body), "");
    g.stop();
}

#[test]
fn mqtt_requests_in_flight_follow_the_smaller_of_the_two_caps() {
    let _turn = serial();
    // network.mqtt.max_inflight stays 20; [limits] asks for 2.
    let (g, _node) = mqtt_gate(|c| c.limits.max_inflight = 2);
    let mut m = Mqtt::connect(g.mqtt_addr().unwrap(), "waiter", 60);
    for i in 1..=4 {
        // HD_Slow never answers: the first two wait for their timeout.
        m.publish(&format!("Echo/HD_Slow/{i}"), b"{}", 0, 0);
    }
    for _ in 0..2 {
        let (topic, body) = m.recv_publish().expect("an answer");
        assert!(
            topic == "Echo/HD_Slow/3" || topic == "Echo/HD_Slow/4",
            "{topic}"
        );
        assert_eq!(reply_error(&body), "the work queue is full!");
    }
    assert_eq!(g.stats().inflight_full, 2);
    g.stop();
}
