//! Upgrade request tests: the RFC example, every refusal and its status,
//! the origin policy, proxy headers, split points and pipelined frames.

use std::net::IpAddr;

use bytes::BytesMut;

use super::handshake::{accept_key, MAX_REQUEST_BYTES};
use super::*;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn policy(origins: Origins) -> HandshakePolicy {
    HandshakePolicy {
        path: "/".into(),
        origins,
        trust_proxy: false,
        mqtt_path: None,
    }
}

fn any() -> HandshakePolicy {
    policy(Origins::Any)
}

/// A valid request with `extra` header lines (each ending in CRLF).
fn request(target: &str, extra: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\n\
         Host: gate.example:3554\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\n\
         Sec-WebSocket-Version: 13\r\n\
         {extra}\r\n"
    )
}

fn run(text: &str, p: &HandshakePolicy) -> Result<Option<Accepted>, Rejected> {
    upgrade(&mut BytesMut::from(text.as_bytes()), p)
}

fn accepted(text: &str, p: &HandshakePolicy) -> Accepted {
    run(text, p).expect("accepted").expect("complete")
}

fn rejected(text: &str, p: &HandshakePolicy) -> Rejected {
    run(text, p).expect_err("rejected")
}

#[test]
fn rfc_accept_key() {
    // RFC 6455 §1.3.
    assert_eq!(accept_key(KEY.as_bytes()), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

#[test]
fn accepts_a_valid_request() {
    let mut src = BytesMut::from(request("/", "Origin: http://x\r\n").as_bytes());
    let a = upgrade(&mut src, &any()).unwrap().unwrap();
    assert_eq!(
        &a.response[..],
        b"HTTP/1.1 101 Switching Protocols\r\n\
          Upgrade: websocket\r\n\
          Connection: Upgrade\r\n\
          Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    );
    assert_eq!(a.forwarded_ip, None);
    assert!(src.is_empty(), "the request is consumed");
}

#[test]
fn incomplete_until_the_header_ends() {
    let text = request("/", "");
    for at in 0..text.len() {
        let mut src = BytesMut::from(&text.as_bytes()[..at]);
        assert_eq!(upgrade(&mut src, &any()), Ok(None), "prefix of {at} bytes");
        assert_eq!(src.len(), at, "nothing consumed");
    }
    assert!(run(&text, &any()).unwrap().is_some());
}

#[test]
fn pipelined_frames_stay_in_the_buffer() {
    let frame = super::tests::client_frame(super::tests::BIN, &[0, 0, 0, 1, 0x80], [1, 2, 3, 4]);
    let mut src = BytesMut::from(request("/", "").as_bytes());
    src.extend_from_slice(&frame);
    upgrade(&mut src, &any()).unwrap().unwrap();
    assert_eq!(&src[..], &frame[..], "the leftover is the first frame");
    let msg = Reassembler::new(100).decode(&mut src).unwrap();
    assert_eq!(
        msg,
        Some(Message::Binary(BytesMut::from(&[0, 0, 0, 1, 0x80][..])))
    );
}

#[test]
fn header_over_the_limit_is_refused() {
    let padding = format!("X-Pad: {}\r\n", "a".repeat(MAX_REQUEST_BYTES));
    // Without its end: refused once the buffer reaches the limit.
    let text = format!("GET / HTTP/1.1\r\n{padding}");
    let r = rejected(&text, &any());
    assert_eq!(r.status, 431);
    assert_eq!(
        r.reason,
        WsError::HeaderTooLarge {
            max: MAX_REQUEST_BYTES
        }
    );
    // Complete but too long.
    assert_eq!(rejected(&request("/", &padding), &any()).status, 431);
    // Too many fields.
    let many: String = (0..100).map(|i| format!("X-{i}: y\r\n")).collect();
    assert_eq!(rejected(&request("/", &many), &any()).status, 431);
}

#[test]
fn refusals_and_their_statuses() {
    let p = any();
    let base = request("/", "");
    let cases: Vec<(String, u16, WsError)> = vec![
        (
            "garbage\r\n\r\n".into(),
            400,
            WsError::BadRequest("malformed HTTP request"),
        ),
        (
            base.replacen("GET", "POST", 1),
            405,
            WsError::MethodNotAllowed,
        ),
        (
            base.replacen("HTTP/1.1", "HTTP/1.0", 1),
            400,
            WsError::BadRequest("HTTP/1.1 required"),
        ),
        (request("/other", ""), 404, WsError::NotFound),
        (
            base.replace("Upgrade: websocket\r\n", ""),
            426,
            WsError::NotUpgrade("no Upgrade: websocket"),
        ),
        (
            base.replace("Connection: Upgrade", "Connection: keep-alive"),
            426,
            WsError::NotUpgrade("no Connection: upgrade"),
        ),
        (
            base.replace("Version: 13", "Version: 8"),
            426,
            WsError::UnsupportedVersion,
        ),
        (
            base.replace("Sec-WebSocket-Version: 13\r\n", ""),
            426,
            WsError::UnsupportedVersion,
        ),
        (
            base.replace(&format!("Sec-WebSocket-Key: {KEY}\r\n"), ""),
            400,
            WsError::BadRequest("no Sec-WebSocket-Key"),
        ),
        (
            base.replace(KEY, "c2hvcnQ="),
            400,
            WsError::BadRequest("Sec-WebSocket-Key is not base64 of 16 bytes"),
        ),
        (
            base.replace(KEY, "not base64 at all!"),
            400,
            WsError::BadRequest("Sec-WebSocket-Key is not base64 of 16 bytes"),
        ),
        (
            request("/", &format!("Sec-WebSocket-Key: {KEY}\r\n")),
            400,
            WsError::BadRequest("more than one Sec-WebSocket-Key"),
        ),
    ];
    for (text, status, reason) in cases {
        let r = rejected(&text, &p);
        assert_eq!((r.status, r.reason), (status, reason), "{text:?}");
        let response = std::str::from_utf8(&r.response).unwrap();
        assert!(
            response.starts_with(&format!("HTTP/1.1 {status} ")),
            "{response}"
        );
        assert!(response.contains("\r\nConnection: close\r\n"), "{response}");
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{response}"
        );
        assert_eq!(body, format!("{reason}\n"));
        if status == 426 {
            assert!(head.contains("Sec-WebSocket-Version: 13"), "{response}");
        }
    }
}

#[test]
fn lenient_where_http_is() {
    let p = any();
    // Header names and tokens in any case, tokens in lists, a query string.
    let text = "GET /?token=abc HTTP/1.1\r\n\
                host: h\r\n\
                upgrade: WebSocket\r\n\
                connection: keep-alive, UPGRADE\r\n\
                sec-websocket-key:   dGhlIHNhbXBsZSBub25jZQ==  \r\n\
                sec-websocket-version: 13\r\n\r\n";
    let a = accepted(text, &p);
    assert!(std::str::from_utf8(&a.response)
        .unwrap()
        .contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    let p = HandshakePolicy {
        path: "/game".into(),
        ..any()
    };
    accepted(&request("/game?v=2", ""), &p);
    assert_eq!(rejected(&request("/game/", ""), &p).status, 404);
    assert_eq!(rejected(&request("/", ""), &p).status, 404);
}

#[test]
fn origin_policy() {
    let list = |l: &[&str]| policy(Origins::List(l.iter().map(|s| s.to_string()).collect()));
    let with = |o: &str| request("/", &format!("Origin: {o}\r\n"));
    let without = request("/", "");
    // ["*"]: everything, with or without Origin.
    accepted(&with("https://evil.example"), &any());
    accepted(&without, &any());
    // []: nothing, not even a request without Origin.
    let none = list(&[]);
    for text in [&with("https://game.example"), &without] {
        let r = rejected(text, &none);
        assert_eq!((r.status, r.reason), (403, WsError::OriginRejected));
    }
    // An exact list: byte-for-byte matches only; no Origin is "" (not listed).
    let game = list(&["https://game.example"]);
    accepted(&with("https://game.example"), &game);
    for o in [
        "https://game.example/",
        "https://GAME.example",
        "http://game.example",
        "https://game.example:443",
    ] {
        assert_eq!(rejected(&with(o), &game).status, 403, "{o}");
    }
    assert_eq!(rejected(&without, &game).status, 403);
    // Listing "" admits clients without Origin (native), still not other sites.
    let game_and_native = list(&["https://game.example", ""]);
    accepted(&without, &game_and_native);
    accepted(&with("https://game.example"), &game_and_native);
    assert_eq!(
        rejected(&with("https://evil.example"), &game_and_native).status,
        403
    );
    // Two Origin headers are refused.
    let twice = request(
        "/",
        "Origin: https://game.example\r\nOrigin: https://evil.example\r\n",
    );
    assert_eq!(rejected(&twice, &game).status, 403);
}

#[test]
fn policy_from_config() {
    let mut cfg = crate::config::WsConfig::default();
    assert_eq!(HandshakePolicy::from_config(&cfg, false), any());
    cfg.origins = vec!["https://a".into(), "*".into()];
    assert_eq!(
        HandshakePolicy::from_config(&cfg, false).origins,
        Origins::Any
    );
    cfg.origins = vec![];
    cfg.path = "/ws".into();
    cfg.trust_proxy = true;
    let p = HandshakePolicy::from_config(&cfg, true);
    assert_eq!(
        p,
        HandshakePolicy {
            path: "/ws".into(),
            origins: Origins::List(vec![]),
            trust_proxy: true,
            mqtt_path: Some("/mqtt".into()),
        }
    );
}

#[test]
fn proxy_headers() {
    let trusting = HandshakePolicy {
        trust_proxy: true,
        ..any()
    };
    let ip = |extra: &str, p: &HandshakePolicy| accepted(&request("/", extra), p).forwarded_ip;
    let v4 = |s: &str| Some(s.parse::<IpAddr>().unwrap());
    assert_eq!(
        ip("X-Forwarded-For: 203.0.113.7, 10.0.0.1\r\n", &trusting),
        v4("203.0.113.7")
    );
    assert_eq!(
        ip("X-Forwarded-For: 2001:db8::1\r\n", &trusting),
        v4("2001:db8::1")
    );
    assert_eq!(
        ip("X-Forwarded-For: 203.0.113.7:5555\r\n", &trusting),
        v4("203.0.113.7")
    );
    assert_eq!(
        ip("X-Forwarded-For: [2001:db8::1]:443\r\n", &trusting),
        v4("2001:db8::1")
    );
    assert_eq!(
        ip("X-Real-IP: 198.51.100.2\r\n", &trusting),
        v4("198.51.100.2")
    );
    // X-Forwarded-For wins over X-Real-IP; junk in it falls back to X-Real-IP.
    let both = "X-Real-IP: 198.51.100.2\r\nX-Forwarded-For: 203.0.113.7\r\n";
    assert_eq!(ip(both, &trusting), v4("203.0.113.7"));
    let junk = "X-Forwarded-For: unknown\r\nX-Real-IP: 198.51.100.2\r\n";
    assert_eq!(ip(junk, &trusting), v4("198.51.100.2"));
    assert_eq!(ip("X-Forwarded-For: unknown\r\n", &trusting), None);
    assert_eq!(ip("", &trusting), None);
    // Without trust_proxy the headers are ignored.
    assert_eq!(ip("X-Forwarded-For: 203.0.113.7\r\n", &any()), None);
}

#[test]
fn mqtt_clients_are_told_apart_by_subprotocol_or_path() {
    let p = HandshakePolicy {
        mqtt_path: Some("/mqtt".into()),
        ..any()
    };
    let text = |a: &Accepted| String::from_utf8(a.response.to_vec()).unwrap();
    // paho-python offers "mqtt"; Paho JS for 3.1 offers "mqttv3.1": echoed.
    let a = accepted(&request("/", "Sec-WebSocket-Protocol: mqtt\r\n"), &p);
    assert!(a.mqtt);
    assert!(
        text(&a).contains("\r\nSec-WebSocket-Protocol: mqtt\r\n"),
        "{}",
        text(&a)
    );
    let a = accepted(
        &request("/mqtt", "Sec-WebSocket-Protocol: chat, mqttv3.1\r\n"),
        &p,
    );
    assert!(a.mqtt);
    assert!(text(&a).contains("Sec-WebSocket-Protocol: mqttv3.1\r\n"));
    // mqtt_path alone is enough; no subprotocol is invented.
    let a = accepted(&request("/mqtt", ""), &p);
    assert!(a.mqtt && !text(&a).contains("Sec-WebSocket-Protocol"));
    // due's clients are unchanged.
    let a = accepted(&request("/", "Sec-WebSocket-Protocol: chat\r\n"), &p);
    assert!(!a.mqtt && !text(&a).contains("Sec-WebSocket-Protocol"));
    // Without MQTT served, neither the path nor the subprotocol is MQTT.
    assert_eq!(rejected(&request("/mqtt", ""), &any()).status, 404);
    let a = accepted(&request("/", "Sec-WebSocket-Protocol: mqtt\r\n"), &any());
    assert!(!a.mqtt && !text(&a).contains("Sec-WebSocket-Protocol"));
}
