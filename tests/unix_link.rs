//! A node on the gate's host reached over its Unix socket (`[[nodes]] unix`,
//! `NodeBuilder::listen_unix`): real gate, real node, real sockets.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{test_config, wait_until, Client, PATIENCE};
use ringgate::codec::PacketOptions;
use ringgate::gate::Gate;
use ringgate::node::{Context, Node, NodeError, NodeHandle};

/// A fresh directory for this test's socket files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringgate-unix-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An address nothing listens on: the gate can only reach the node by its path.
fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// An echo node on an ephemeral TCP port and on the Unix socket `path`;
/// `tag` is prefixed to every reply, so a test can tell two nodes apart.
fn node(path: &Path, tag: &'static str) -> Result<NodeHandle, NodeError> {
    Ok(Node::builder("echo")
        .listen("127.0.0.1:0".parse().unwrap())
        .listen_unix(path)
        .route(1, move |ctx: &mut Context| {
            let mut p = tag.as_bytes().to_vec();
            p.extend_from_slice(ctx.payload());
            ctx.reply(p);
        })
        .bind()?
        .spawn())
}

/// A gate whose one node has a dead TCP address and the Unix socket `path`;
/// returns it with its shard count (links expected when the node is up).
fn gate_via(path: &Path) -> (Gate, u64) {
    let mut cfg = test_config(&[dead_addr()]);
    cfg.nodes[0].unix = Some(path.to_path_buf());
    cfg.validate().unwrap();
    let shards = cfg.shards.cores.len() as u64;
    (Gate::start(&cfg).unwrap(), shards)
}

fn echo(client: &mut Client, seq: i32) -> Vec<u8> {
    client.send(1, seq, b"ping");
    let f = client.recv_data().expect("a reply");
    assert_eq!(f.seq, seq);
    f.payload.to_vec()
}

#[test]
fn a_node_on_this_host_is_reached_over_its_unix_socket_and_again_after_a_restart() {
    common::init_logs();
    let dir = scratch("reach");
    let path = dir.join("echo.sock");
    let first = node(&path, "one:").unwrap();
    let (gate, shards) = gate_via(&path);
    wait_until(PATIENCE, "every shard's link up over the socket", || {
        gate.stats().links_up == shards
    });
    let mut c = Client::connect(gate.tcp_addr(), PacketOptions::default());
    assert_eq!(echo(&mut c, 1), b"one:ping");

    // The node stops: its socket file goes, the links drop.
    first.shutdown();
    assert!(
        !path.exists(),
        "the node removes its socket file when it stops"
    );
    wait_until(PATIENCE, "links down", || gate.stats().links_up == 0);

    // A new node on the same path: the gate redials it there.
    let second = node(&path, "two:").unwrap();
    wait_until(PATIENCE, "links up again", || {
        gate.stats().links_up == shards
    });
    let mut c = Client::connect(gate.tcp_addr(), PacketOptions::default());
    assert_eq!(echo(&mut c, 2), b"two:ping");
    drop(second);
    drop(gate);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_stale_socket_file_is_replaced_but_a_live_socket_or_another_file_is_not() {
    let dir = scratch("stale");
    let path = dir.join("echo.sock");
    // A socket file whose listener is gone (a node that was killed).
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let live = node(&path, "").expect("a stale socket file is replaced");

    // Another node on the same path while the first listens: refused.
    let err = node(&path, "")
        .err()
        .expect("a live socket is not taken over");
    let text = err.to_string();
    assert!(text.contains("another process listens there"), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    drop(live);

    // A regular file is never removed.
    let file = dir.join("not-a-socket");
    std::fs::write(&file, b"keep me").unwrap();
    let err = node(&file, "").err().expect("a regular file is refused");
    assert!(err.to_string().contains("not a socket"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A node that stops after another one has taken its path over (an
/// overlapping restart: the new node found the old file stale once the old
/// listener shut) must not remove the new node's socket file.
#[test]
fn a_stopping_node_leaves_the_socket_of_the_node_that_replaced_it() {
    let dir = scratch("replaced");
    let path = dir.join("echo.sock");
    let old = node(&path, "").unwrap();
    // The old node's file is gone from the path; the new node binds afresh.
    std::fs::remove_file(&path).unwrap();
    let new = node(&path, "").unwrap();
    drop(old);
    assert!(
        path.exists(),
        "the old node removed the new node's socket file"
    );
    std::os::unix::net::UnixStream::connect(&path).expect("the new node still answers there");
    drop(new);
    assert!(!path.exists(), "the new node removes its own file");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_missing_socket_is_retried_like_an_unreachable_node() {
    common::init_logs();
    let dir = scratch("missing");
    let path = dir.join("later.sock");
    let (gate, shards) = gate_via(&path);
    // Nothing there yet: the gate keeps serving clients and keeps retrying.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(gate.stats().links_up, 0);
    let n = node(&path, "late:").unwrap();
    wait_until(PATIENCE, "links up once the socket exists", || {
        gate.stats().links_up == shards
    });
    let mut c = Client::connect(gate.tcp_addr(), PacketOptions::default());
    assert_eq!(echo(&mut c, 7), b"late:ping");
    drop(n);
    drop(gate);
    let _ = std::fs::remove_dir_all(&dir);
}
