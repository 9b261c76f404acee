//! The admin port end to end: a real gate (2 shards) in front of a real
//! node, real clients, the JSON API and `/metrics` over HTTP, a real
//! Prometheus scraping the gate, and the `ringgate admin` CLI against the
//! real binary.

mod common;

use std::time::Duration;

use common::admin::*;
use common::*;
use ringgate::config::Config;
use serde_json::json;

#[test]
fn info_config_and_stats_after_traffic() {
    let s = AdminStack::start(|_| {});
    let api = s.api();
    let info = get(&api, "/api/info");
    assert_eq!(info["id"], s.gate.id());
    assert_eq!(info["shards"], s.cfg.shards.cores.len());
    assert_eq!(info["listen"]["tcp"], s.gate.tcp_addr().to_string());
    assert_eq!(info["listen"]["admin"], s.admin_addr().to_string());
    assert_eq!(info["nodes"][0], s.node.local_addr().to_string());

    let cfg = get(&api, "/api/config");
    assert_eq!(cfg["admin"]["token_set"], false);
    assert_eq!(
        cfg["network"]["tcp"]["addr"], "127.0.0.1:0",
        "the configured address"
    );

    // 3 clients × 10 echo requests.
    let mut clients: Vec<Client> = (0..3).map(|_| s.client()).collect();
    for c in &mut clients {
        for i in 0..10 {
            c.send(ECHO, i, b"hello");
            assert_eq!(c.recv_data().unwrap().payload.as_ref(), b"hello");
        }
    }
    wait_until(PATIENCE, "30 round trips recorded", || {
        get(&api, "/api/stats")["total"]["latency"]["count"] == 30
    });
    let st = get(&api, "/api/stats");
    let t = &st["total"];
    assert_eq!(t["connections"], 3);
    assert_eq!(t["packets_in"], 30);
    assert_eq!(t["packets_out"], 30);
    assert_eq!(t["net"]["tcp"]["accepted"], 3);
    assert!(t["bytes_in"].as_u64().unwrap() >= 30 * (4 + 1 + 2 + 2 + 5));
    assert!(t["latency"]["p99_ms"].as_f64().unwrap() > 0.0, "{t}");
    let per: u64 = (st["shards"].as_array().unwrap().iter())
        .map(|x| x["packets_in"].as_u64().unwrap())
        .sum();
    assert_eq!(per, 30, "per-shard counters add up to the total");
    // Link gauges are published by housekeeping, a few times a second.
    wait_until(PATIENCE, "the node link up on every shard", || {
        get(&api, "/api/stats")["nodes"][0]["shards_up"] == s.cfg.shards.cores.len()
    });
}

#[test]
fn sessions_by_page_by_id_and_by_user() {
    let s = AdminStack::start(|_| {});
    let api = s.api();
    let _clients: Vec<Client> = (1..=5).map(|uid| s.login(1000 + uid)).collect();
    let all = get(&api, "/api/sessions");
    assert_eq!(all["total"], 5);
    let sessions = all["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 5);
    let mut uids: Vec<i64> = sessions
        .iter()
        .map(|x| x["uid"].as_i64().unwrap())
        .collect();
    uids.sort();
    assert_eq!(uids, vec![1001, 1002, 1003, 1004, 1005]);
    assert!(sessions
        .iter()
        .all(|x| x["ip"] == "127.0.0.1" && x["network"] == "tcp"));

    // Pages cover every session once.
    let mut paged = Vec::new();
    for offset in [0, 2, 4] {
        let p = get(&api, &format!("/api/sessions?offset={offset}&limit=2"));
        assert_eq!(p["total"], 5);
        paged.extend(
            p["sessions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x["id"].as_u64().unwrap()),
        );
    }
    let mut ids: Vec<u64> = sessions.iter().map(|x| x["id"].as_u64().unwrap()).collect();
    ids.sort();
    paged.sort();
    assert_eq!(paged, ids);

    let one = &sessions[0];
    let by_id = get(&api, &format!("/api/sessions/{}", one["id"]));
    assert_eq!(&by_id, one);
    let by_uid = get(&api, &format!("/api/users/{}", one["uid"]));
    assert_eq!(by_uid["session"]["id"], one["id"]);

    let (status, v) = api.call("GET", "/api/users/424242", None).unwrap();
    assert_eq!((status, v["error"].is_string()), (404, true), "{v}");
    let (status, _) = api.call("GET", "/api/sessions/12345", None).unwrap();
    assert_eq!(status, 404);
    let (status, _) = api.call("GET", "/api/sessions/nope", None).unwrap();
    assert_eq!(status, 400);
    let (status, _) = api.call("POST", "/api/sessions", Some(&json!({}))).unwrap();
    assert_eq!(status, 405);
}

#[test]
fn kick_closes_the_client_by_session_and_by_uid() {
    let s = AdminStack::start(|_| {});
    let api = s.api();
    let mut a = s.login(7);
    let mut b = s.login(8);
    let sid = get(&api, "/api/users/7")["session"]["id"].as_u64().unwrap();
    let r = api
        .ok("POST", "/api/kick", Some(&json!({ "session": sid })))
        .unwrap();
    assert_eq!(r["kicked"], true);
    assert!(a.closed_within(PATIENCE), "kicked by session id");
    let r = api
        .ok("POST", "/api/kick", Some(&json!({ "uid": 8 })))
        .unwrap();
    assert_eq!(r["kicked"], true);
    assert!(b.closed_within(PATIENCE), "kicked by uid");
    wait_until(PATIENCE, "two kicks counted", || {
        get(&api, "/api/stats")["total"]["closed"]["kicked"] == 2
    });
    let (status, _) = api
        .call("POST", "/api/kick", Some(&json!({ "uid": 8 })))
        .unwrap();
    assert_eq!(status, 404, "nobody is bound as 8 any more");
    let (status, _) = api
        .call(
            "POST",
            "/api/kick",
            Some(&json!({ "session": 1, "uid": 2 })),
        )
        .unwrap();
    assert_eq!(status, 400);
}

#[test]
fn broadcast_reaches_clients() {
    let s = AdminStack::start(|_| {});
    let api = s.api();
    let mut bound: Vec<Client> = (0..3).map(|i| s.login(50 + i)).collect();
    let mut anon = s.client();
    anon.send(ECHO, 1, b"x"); // make sure it is accepted and open
    anon.recv_data().unwrap();
    let body = json!({ "route": 77, "seq": 5, "payload_base64": "aGVsbG8=", "bound_only": false });
    let r = api.ok("POST", "/api/broadcast", Some(&body)).unwrap();
    assert_eq!(r["delivered"], 4);
    for c in bound.iter_mut().chain([&mut anon]) {
        let p = c.recv_data().unwrap();
        assert_eq!((p.route, p.seq, p.payload.as_ref()), (77, 5, &b"hello"[..]));
    }
    let body = json!({ "route": 78, "payload_base64": "", "bound_only": true });
    assert_eq!(
        api.ok("POST", "/api/broadcast", Some(&body)).unwrap()["delivered"],
        3
    );
    let (status, _) = api
        .call(
            "POST",
            "/api/broadcast",
            Some(&json!({ "route": 1, "payload_base64": "!!" })),
        )
        .unwrap();
    assert_eq!(status, 400);
}

#[test]
fn drain_hook_and_log_level() {
    let s = AdminStack::start(|_| {});
    let api = s.api();
    let (status, v) = api.call("POST", "/api/drain", None).unwrap();
    assert_eq!((status, &v["drain"]), (202, &json!("requested")));
    assert_eq!(get(&api, "/api/info")["drain_requested"], true);
    let (status, _) = api
        .call("PUT", "/api/log-level", Some(&json!({ "level": "loud" })))
        .unwrap();
    assert_eq!(status, 400);
    // A library gate has no reload handle (the binary installs one; see the CLI test).
    let (status, _) = api
        .call("PUT", "/api/log-level", Some(&json!({ "level": "debug" })))
        .unwrap();
    assert_eq!(status, 501);
}

#[test]
fn a_token_guards_every_endpoint() {
    let s = AdminStack::start(|c| c.admin.token = "s3cret".into());
    let addr = s.admin_addr();
    let none = ringgate::admin::cli::AdminClient::new(addr, None);
    let wrong = ringgate::admin::cli::AdminClient::new(addr, Some("nope".into()));
    for path in ["/metrics", "/api/info", "/api/stats", "/", "/events"] {
        assert_eq!(
            none.call("GET", path, None).unwrap().0,
            401,
            "{path} without a token"
        );
        assert_eq!(
            wrong.call("GET", path, None).unwrap().0,
            401,
            "{path} with a wrong token"
        );
    }
    assert_eq!(none.call("POST", "/api/drain", None).unwrap().0, 401);
    assert_eq!(s.api().call("GET", "/api/info", None).unwrap().0, 200);
    assert_eq!(
        none.call("GET", "/api/info?token=s3cret", None).unwrap().0,
        200,
        "query token for browsers"
    );
    let cfg = get(&s.api(), "/api/config");
    assert_eq!(cfg["admin"]["token_set"], true);
    assert!(!cfg.to_string().contains("s3cret"));
}

#[test]
fn a_public_admin_port_without_a_token_is_refused() {
    let mut cfg = Config::default();
    cfg.admin.addr = "0.0.0.0:3580".parse().unwrap();
    let e = cfg.validate().expect_err("refused").to_string();
    assert!(e.contains("admin.addr") && e.contains("admin.token"), "{e}");
    cfg.admin.token = "t".into();
    cfg.validate().expect("a token makes it acceptable");
}

#[test]
fn metrics_in_prometheus_text_format() {
    let s = AdminStack::start(|_| {});
    let mut c = s.client();
    for i in 0..5 {
        c.send(ECHO, i, b"m");
        c.recv_data().unwrap();
    }
    c.send(999, 1, b""); // no node serves it: NO_ROUTE
    c.recv_data().unwrap();
    let text = (s.api().call("GET", "/metrics", None).unwrap().1)
        .as_str()
        .unwrap()
        .to_owned();
    for want in [
        "# TYPE ringgate_packets_in_total counter",
        "# TYPE ringgate_connections gauge",
        "# TYPE ringgate_request_duration_seconds histogram",
        "ringgate_closes_total{shard=\"0\",reason=\"kicked\"} 0",
        "ringgate_node_link_up{shard=\"0\",node=\"",
        "ringgate_request_duration_seconds_bucket{shard=\"0\",le=\"+Inf\"}",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    let sum = |name: &str| -> f64 {
        (text.lines())
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    };
    assert_eq!(sum("ringgate_packets_in_total"), 6.0);
    assert_eq!(sum("ringgate_connections"), 1.0);
    assert_eq!(sum("ringgate_request_duration_seconds_count"), 5.0);
    let no_route: f64 = (text.lines())
        .filter(|l| {
            l.starts_with("ringgate_error_replies_total") && l.contains("code=\"no_route\"")
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(no_route, 1.0);
}

/// A real Prometheus scrapes the gate every second while M clients send N
/// requests; its query API must then agree with what the test did.
#[test]
fn prometheus_scrapes_what_the_load_did() {
    let s = AdminStack::start(|_| {});
    let prom = Prometheus::start(s.admin_addr());
    const M: usize = 4;
    const N: i32 = 50;
    let mut clients: Vec<Client> = (0..M).map(|_| s.client()).collect();
    for c in &mut clients {
        for i in 0..N {
            c.send(ECHO, i, b"prom");
            c.recv_data().unwrap();
        }
    }
    let want = (M as i32 * N) as f64;
    let q = |e: &str| prom.query(e);
    wait_until(
        Duration::from_secs(15),
        "Prometheus to see the load",
        || {
            q("sum(ringgate_packets_in_total)") == Some(want)
                && q("sum(ringgate_connections)") == Some(M as f64)
        },
    );
    assert_eq!(
        q("sum(ringgate_connections_accepted_total)"),
        Some(M as f64)
    );
    assert_eq!(q("sum(ringgate_packets_out_total)"), Some(want));
    assert_eq!(
        q("sum(ringgate_request_duration_seconds_count)"),
        Some(want)
    );
    assert_eq!(
        q("count(ringgate_node_link_up == 1)"),
        Some(s.cfg.shards.cores.len() as f64)
    );
    let p99 = q("histogram_quantile(0.99, sum by (le) (ringgate_request_duration_seconds_bucket))");
    assert!(
        p99.is_some_and(|v| v > 0.0 && v < 5.0),
        "p99 {p99:?}; log:\n{}",
        prom.log()
    );
}

/// `ringgate admin ...` against the real binary (which also installs the
/// reloadable log filter).
#[test]
fn cli_against_the_real_binary() {
    let node = admin_node();
    let (dir, conf, admin_addr) = binary_config("cli", node.local_addr(), "", "");
    let exe = env!("CARGO_BIN_EXE_ringgate");
    let mut gate = std::process::Command::new(exe)
        .arg("-c")
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let admin = |args: &[&str]| {
        let out = std::process::Command::new(exe)
            .arg("-c")
            .arg(&conf)
            .arg("admin")
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let api = ringgate::admin::cli::AdminClient::new(admin_addr, None);
    wait_until(PATIENCE, "the binary's admin port", || {
        api.call("GET", "/api/stats", None)
            .is_ok_and(|(st, v)| st == 200 && v["total"]["links_up"].as_u64() >= Some(1))
    });
    let tcp: std::net::SocketAddr = get(&api, "/api/info")["listen"]["tcp"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut c = Client::connect(tcp, Default::default());
    c.send(LOGIN, 1, b"31");
    c.recv_data().unwrap();

    let (ok, out) = admin(&["stat"]);
    assert!(
        ok && out.contains("connections 1 open") && out.contains("1 users bound"),
        "{out}"
    );
    let (ok, out) = admin(&["sessions", "--limit", "5"]);
    assert!(
        ok && out.contains("1 of 1 sessions") && out.contains(" 31 "),
        "{out}"
    );
    let (ok, out) = admin(&["--json", "sessions"]);
    assert!(
        ok && serde_json::from_str::<serde_json::Value>(&out).unwrap()["total"] == 1,
        "{out}"
    );
    let (ok, out) = admin(&["log-level", "debug"]);
    assert!(ok && out.contains("debug"), "{out}");
    let (ok, out) = admin(&["drain"]);
    assert!(ok && out.contains("drain requested"), "{out}");
    let (ok, out) = admin(&["kick", "--uid", "31"]);
    assert!(ok && out.contains("kicked session"), "{out}");
    assert!(c.closed_within(PATIENCE));
    let (ok, out) = admin(&["kick", "--uid", "31"]);
    assert!(!ok && out.contains("404"), "{out}");

    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe { libc::kill(gate.id() as libc::pid_t, libc::SIGTERM) };
    let _ = gate.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A failed `accept` (out of file descriptors) must not stop the admin port:
/// it answers again once descriptors are free. The real binary runs with
/// `ulimit -n` just above what the config needs (70 for one shard, one node
/// and `max_connections = 1`); a flood of idle connections to the admin
/// port (its queue holds 64) uses up the rest.
#[test]
fn the_admin_port_answers_again_after_running_out_of_file_descriptors() {
    use std::net::TcpStream;

    let node = admin_node();
    let (dir, conf, admin) = binary_config(
        "emfile",
        node.local_addr(),
        "count = 1\n",
        "max_connections = 1\n",
    );
    let exe = env!("CARGO_BIN_EXE_ringgate");
    let _gate = KillOnDrop(
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ulimit -n 70 && exec '{exe}' -c '{}'",
                conf.display()
            ))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let metrics = || scrape(admin, Duration::from_secs(1));
    wait_until(PATIENCE, "the admin port", || metrics().is_some());

    // Hold more connections than the gate has descriptors left.
    let flood: Vec<TcpStream> = (0..120)
        .filter_map(|_| TcpStream::connect_timeout(&admin, Duration::from_millis(200)).ok())
        .collect();
    assert!(flood.len() > 100, "only {} connections made", flood.len());
    std::thread::sleep(Duration::from_millis(500));
    drop(flood);

    let mut last = String::new();
    wait_until(PATIENCE, "the admin port answering after EMFILE", || {
        let Some(text) = metrics() else { return false };
        last = text;
        true
    });
    let failures = last
        .lines()
        .find_map(|l| l.strip_prefix("ringgate_admin_accept_errors_total "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert!(failures.is_some_and(|n| n >= 1), "failures {failures:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A config file for the real binary in a fresh directory: `shards` and
/// `tcp` lines under their sections, the client port on 127.0.0.1:0, the
/// admin port on a free port, and `node`. Returns the directory, the file
/// and the admin address.
fn binary_config(
    tag: &str,
    node: std::net::SocketAddr,
    shards: &str,
    tcp: &str,
) -> (std::path::PathBuf, std::path::PathBuf, std::net::SocketAddr) {
    let dir = std::env::temp_dir().join(format!("ringgate-admin-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let admin = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let conf = dir.join("gate.toml");
    let text = format!(
        "[shards]\n{shards}[network.tcp]\naddr = \"127.0.0.1:0\"\n{tcp}[network.ws]\nenabled = false\n\
         [admin]\naddr = \"{admin}\"\n[[nodes]]\naddr = \"{node}\"\n"
    );
    std::fs::write(&conf, text).unwrap();
    (dir, conf, admin)
}

/// A child process killed (and reaped) when the test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET /metrics` on a fresh connection, answered within `within`: the
/// whole reply on 200.
fn scrape(admin: std::net::SocketAddr, within: Duration) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&admin, within).ok()?;
    s.set_read_timeout(Some(within)).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.starts_with("HTTP/1.1 200").then_some(text)
}

/// Connections that never finish their request hold no worker: a scrape
/// behind a hundred of them (more than the port reads at once) is still
/// answered at once, and the gate stops promptly with one of them open.
#[test]
fn idle_admin_connections_neither_delay_a_scrape_nor_the_stop() {
    use std::io::Write;
    let s = AdminStack::start(|_| {});
    let admin = s.admin_addr();
    let mut idle: Vec<std::net::TcpStream> = (0..100)
        .map(|_| std::net::TcpStream::connect(admin).unwrap())
        .collect();
    for c in idle.iter_mut().step_by(2) {
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    for round in 0..3 {
        let t = std::time::Instant::now();
        let reply = scrape(admin, Duration::from_secs(3));
        assert!(
            reply.is_some_and(|r| r.contains("ringgate_info")),
            "round {round}: no scrape behind idle connections"
        );
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "round {round}: {:?}",
            t.elapsed()
        );
    }
    // One more, mid-request, then stop: the admin port does not wait out
    // the client's 5 s.
    let mut partial = std::net::TcpStream::connect(admin).unwrap();
    partial
        .write_all(b"POST /api/kick HTTP/1.1\r\nContent-Length: 10\r\n\r\nab")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let AdminStack { gate, node, .. } = s;
    let t = std::time::Instant::now();
    gate.stop();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "stop took {:?}",
        t.elapsed()
    );
    drop((node, idle, partial));
}
