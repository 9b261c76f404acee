//! Independent clients: the Python websockets library and headless Chromium.

use super::*;

// ---------------------------------------------------------------------------
// 1. The Python websockets client (an independent implementation)
// ---------------------------------------------------------------------------

const WS_SCENARIOS: [&str; 9] = [
    "heartbeat",
    "echo",
    "unknown-route",
    "fragmented",
    "ping",
    "text",
    "oversize",
    "close",
    "chat",
];

fn python_ws_check(st: &WsStack, url: String, cafile: Option<&Path>) {
    let mut args = vec![
        "--url".to_string(),
        url,
        "--scenario".into(),
        "all".into(),
        "--echo-route".into(),
        ECHO.to_string(),
        "--echo-conns".into(),
        "20".into(),
        "--echo-requests".into(),
        "100".into(),
    ];
    if let Some(ca) = cafile {
        args.push("--cafile".into());
        args.push(ca.display().to_string());
    }
    let before = st.gate.stats();
    let (ok, out) = run_python("ws_check.py", &args, Duration::from_secs(60));
    assert!(ok, "ws_check.py failed:\n{out}");
    for s in WS_SCENARIOS {
        assert!(
            out.contains(&format!("PASS {s} ")),
            "{s} missing from:\n{out}"
        );
    }
    eprintln!("{out}");
    // The gate's own account of what the client did.
    let s = st.gate.stats();
    // echo: 20 connections; heartbeat, unknown-route, fragmented, ping, text,
    // oversize, close: one each; chat: two.
    assert!(s.ws_upgrades - before.ws_upgrades >= 29, "{s:?}");
    assert_eq!(s.ws_rejected, before.ws_rejected, "no upgrade refused");
    assert_eq!(s.ws_text_rejected - before.ws_text_rejected, 1, "text");
    assert!(s.packets_in - before.packets_in >= 2000, "{s:?}");
    wait_until(PATIENCE, "every connection closed", || {
        st.gate.stats().connections == 0
    });
    let s = st.gate.stats();
    // text (1003) and oversize (1009) are the only protocol errors.
    assert_eq!(
        s.closed_for(CloseReason::ProtocolError) - before.closed_for(CloseReason::ProtocolError),
        2,
        "{s:?}"
    );
}

#[test]
fn python_websockets_client_over_ws() {
    let st = WsStack::start(None, |_| {});
    let url = format!("ws://{}/", st.ws_addr());
    python_ws_check(&st, url, None);
}

#[test]
fn python_websockets_client_over_wss() {
    let dir = TempDir::new("wss");
    let cert = write_cert(&dir.0, "ws");
    let st = WsStack::start(Some(&cert), |_| {});
    let url = format!("wss://{}/", st.ws_addr());
    python_ws_check(&st, url, Some(&cert.cert_file));
    // A plain ws client on the wss port is not a TLS client: refused, counted.
    let before = st.gate.stats().tls_failures;
    let mut s = TcpStream::connect(st.ws_addr()).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(upgrade_request("/", None).as_bytes()).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(
        !buf.starts_with(b"HTTP/"),
        "no HTTP answer in the clear on wss"
    );
    wait_until(PATIENCE, "tls failure counted", || {
        st.gate.stats().tls_failures > before
    });
}

// ---------------------------------------------------------------------------
// 2. A real browser: headless Chromium driven over the DevTools protocol
// ---------------------------------------------------------------------------

#[test]
fn headless_chromium_chats_over_ws_and_wss() {
    let chromium =
        std::env::var("RINGGATE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: scripts/test.sh installs Debian's chromium"
    );
    let dir = TempDir::new("browser");
    let cert = write_cert(&dir.0, "ws");
    let ws = WsStack::start(None, |_| {});
    let wss = WsStack::start(Some(&cert), |_| {});
    let args = vec![
        "--chromium".to_string(),
        chromium,
        "--gate".into(),
        format!("ws://{}/", ws.ws_addr()),
        "--gate".into(),
        format!("wss://{}/", wss.ws_addr()),
        "--timeout".into(),
        "45".into(),
    ];
    // browser_check.py stops itself after 45 s and then kills Chromium; this
    // is the backstop (SIGTERM, which it also cleans up after).
    let (ok, out) = run_python("browser_check.py", &args, Duration::from_secs(60));
    assert!(ok, "browser_check.py failed:\n{out}");
    eprintln!("{out}");
    for (st, scheme) in [(&ws, "ws"), (&wss, "wss")] {
        assert!(out.contains(&format!("PASS {scheme} ")), "{scheme}:\n{out}");
        let s = st.gate.stats();
        // The test page and the example page each opened one connection.
        assert!(s.ws_upgrades >= 2, "{scheme}: {s:?}");
        assert_eq!(s.ws_rejected, 0, "{scheme}: {s:?}");
    }
}

/// The example page's MQTT mode in Chromium against a gate with
/// `[network.mqtt]` on and examples/echo_node.rs's handlers (module `Echo`):
/// once on `mqtt_path` (/mqtt) and once on `/`, where only the page's
/// `mqtt` subprotocol makes the gate speak MQTT.
#[test]
fn headless_chromium_example_page_speaks_mqtt_over_ws() {
    let chromium =
        std::env::var("RINGGATE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: scripts/test.sh installs Debian's chromium"
    );
    init_logs();
    let node = echo_node::mqtt_handlers(Node::builder("Echo"))
        .listen("127.0.0.1:0".parse().unwrap())
        .workers(2)
        .bind()
        .expect("bind echo node")
        .spawn();
    let st = WsStack::start_with(node, None, |cfg| {
        cfg.network.mqtt.enabled = true;
        cfg.network.mqtt.addr = "127.0.0.1:0".parse().unwrap();
    });
    let on_path = format!("ws://{}/mqtt", st.ws_addr());
    let on_root = format!("ws://{}/", st.ws_addr());
    let args = vec![
        "--chromium".to_string(),
        chromium,
        "--mqtt".into(),
        on_path.clone(),
        "--mqtt".into(),
        on_root.clone(),
        "--timeout".into(),
        "45".into(),
    ];
    let (ok, out) = run_python("browser_check.py", &args, Duration::from_secs(60));
    assert!(ok, "browser_check.py --mqtt failed:\n{out}");
    eprintln!("{out}");
    for url in [&on_path, &on_root] {
        assert!(out.contains(&format!("PASS mqtt {url} ")), "{url}:\n{out}");
    }
    assert!(!out.contains("FAIL"), "{out}");
    wait_until(PATIENCE, "both pages' connections closed", || {
        st.gate.stats().connections == 0
    });
    let s = st.gate.stats();
    assert!(s.ws_upgrades >= 2, "{s:?}");
    // Each page ended its connection itself (DISCONNECT): client_closed.
    assert_eq!(s.closed_for(CloseReason::ClientClosed), 2, "{s:?}");
    assert_eq!(s.ws_rejected, 0, "{s:?}");
    // Every byte the page sent was good MQTT.
    assert_eq!(s.mqtt_errors, 0, "{s:?}");
    assert_eq!(s.closed_for(CloseReason::ProtocolError), 0, "{s:?}");
}
