//! The `ringgate` binary as a user runs it: print-config, a bad config, and
//! the README's gate + echo node example on a config file.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ringgate");

fn tmp(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringgate-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn print_config_prints_the_embedded_annotated_default() {
    let out = Command::new(BIN).arg("print-config").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text, ringgate::config::DEFAULT_TOML);
    assert!(
        text.contains("[network.tcp]") && text.contains("max_connections") && text.contains('#')
    );
}

#[test]
fn a_bad_config_fails_at_start_naming_file_key_and_problem() {
    let p = tmp("bad.toml", "[packet]\nroute_bytes = 3\n");
    let out = Command::new(BIN).arg("--config").arg(&p).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("packet.route_bytes") && err.contains("1, 2 or 4"),
        "{err}"
    );

    let p = tmp("unknown.toml", "[network.tcp]\nmaxConnNum = 10\n");
    let out = Command::new(BIN).arg("--config").arg(&p).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown.toml") && err.contains("maxConnNum"),
        "{err}"
    );
}

#[test]
fn max_connections_over_the_file_limit_is_refused_with_a_clear_message() {
    let p = tmp(
        "fd.toml",
        "[network.tcp]\naddr = \"127.0.0.1:0\"\nmax_connections = 5000000\n[network.ws]\nenabled = false\n",
    );
    let out = Command::new(BIN).arg("--config").arg(&p).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("max_connections = 5000000") && err.contains("open files"),
        "{err}"
    );
}

#[test]
fn gate_binary_with_the_echo_node_example_serves_clients() {
    let examples = PathBuf::from(BIN)
        .parent()
        .unwrap()
        .join("examples/echo_node");
    assert!(
        examples.exists(),
        "build the examples first (scripts/test.sh does: cargo build --release --examples): {examples:?}"
    );
    let (gate_port, node_port) = (free_port(), free_port());
    let cfg = tmp(
        "run.toml",
        &format!(
            "[network.tcp]\naddr = \"127.0.0.1:{gate_port}\"\n[network.ws]\naddr = \"127.0.0.1:0\"\n\
             [admin]\naddr = \"127.0.0.1:0\"\n\
             [link]\nreconnect_min = \"20ms\"\n\
             [[nodes]]\naddr = \"127.0.0.1:{node_port}\"\n"
        ),
    );
    let _node = Kill(
        Command::new(&examples)
            .arg("--config")
            .arg(&cfg)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut gate = Kill(
        Command::new(BIN)
            .arg("--config")
            .arg(&cfg)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // The banner names the instance, shards and listen address.
    let mut banner = String::new();
    let mut out = gate.0.stdout.take().unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    while !banner.contains("Nodes:") && Instant::now() < end {
        let n = out.read(&mut buf).unwrap();
        assert!(n > 0, "gate exited early");
        banner.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(
        banner.contains(&format!("[tcp] 127.0.0.1:{gate_port}")) && banner.contains("Shards:"),
        "{banner}"
    );

    // A request on route 1 echoes once the link is up.
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let mut s = TcpStream::connect(("127.0.0.1", gate_port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        // size=7 | header 0 | route 1 | seq 9 | "hi"
        s.write_all(&[0, 0, 0, 7, 0, 0, 1, 0, 9, b'h', b'i'])
            .unwrap();
        let mut size = [0u8; 4];
        s.read_exact(&mut size).unwrap();
        let mut r = vec![0u8; u32::from_be_bytes(size) as usize];
        s.read_exact(&mut r).unwrap();
        if r == [0, 0, 1, 0, 9, b'h', b'i'] {
            break;
        }
        // An error reply (ext 1 "no route" or 2 "node down") until the link is up.
        assert!(
            r.len() == 5 && (r[0] == 1 || r[0] == 2),
            "unexpected reply {r:?}"
        );
        assert!(Instant::now() < end, "echo never came up");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SIGTERM stops it cleanly.
    // SAFETY: kill(2) reads no memory of ours. The pid is our child's, not
    // yet waited for (we hold its `Child`), so it cannot name another process.
    unsafe { libc::kill(gate.0.id() as i32, libc::SIGTERM) };
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(st) = gate.0.try_wait().unwrap() {
            assert!(st.success(), "gate exit status {st}");
            break;
        }
        assert!(Instant::now() < end, "gate did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_second_gate_on_the_same_port_is_refused() {
    let port = free_port();
    let cfg = tmp(
        "port.toml",
        &format!("[network.tcp]\naddr = \"127.0.0.1:{port}\"\n[network.ws]\nenabled = false\n[admin]\nenabled = false\n"),
    );
    let _first = Kill(
        Command::new(BIN)
            .arg("--config")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let end = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "first gate never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success(), "second gate must not share the port");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) && err.contains("in use"),
        "{err}"
    );
}

/// 10,000 clients in this process, the gate in its own (each process holds
/// one end of every connection: both ends in one process would pass the
/// 20,000 open-file limit), a node in this process that broadcasts.
#[test]
fn a_broadcast_reaches_ten_thousand_connections() {
    use ringgate::node::{Context, Node};
    let node = Node::builder("bcast")
        .listen("127.0.0.1:0".parse().unwrap())
        .route(1, |ctx: &mut Context| {
            let p = ctx.payload().clone();
            ctx.reply(p);
        })
        .bind()
        .unwrap()
        .spawn();
    let port = free_port();
    let cfg = tmp(
        "bcast.toml",
        &format!(
            "[network.tcp]\naddr = \"127.0.0.1:{port}\"\nmax_connections = 12000\n\
             [network.ws]\nenabled = false\n[admin]\nenabled = false\n[link]\nreconnect_min = \"20ms\"\n\
             [[nodes]]\naddr = \"{}\"\n",
            node.local_addr()
        ),
    );
    let _gate = Kill(
        Command::new(BIN)
            .arg("--config")
            .arg(&cfg)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let end = Instant::now() + Duration::from_secs(10);
    while node.gates().links() < 2 {
        assert!(Instant::now() < end, "gate never linked to the node");
        std::thread::sleep(Duration::from_millis(20));
    }
    const N: usize = 10_000;
    let mut clients = Vec::with_capacity(N);
    for _ in 0..N {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        clients.push(s);
    }
    // Every connection is accepted before the broadcast (the gate counts them).
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let stat = node.gates().stat().unwrap();
        if stat.connections == N as u64 {
            break;
        }
        assert!(
            Instant::now() < end,
            "only {} of {N} accepted",
            stat.connections
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let delivered = node.gates().broadcast(7, 0, "to everyone", false).unwrap();
    assert!(delivered > 0);
    // size 16 | header 0 | route 7 | seq 0 | "to everyone"
    let want = [&[0u8, 0, 0, 16, 0, 0, 7, 0, 0][..], b"to everyone"].concat();
    for (i, s) in clients.iter_mut().enumerate() {
        let mut got = vec![0u8; want.len()];
        s.read_exact(&mut got)
            .unwrap_or_else(|e| panic!("client {i}: {e}"));
        assert_eq!(got, want, "client {i}");
    }
    node.shutdown();
}
