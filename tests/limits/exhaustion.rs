//! Resource exhaustion: a node link that stops reading, a full cross-shard
//! inbox, and EMFILE on accept in the real `ringgate` binary run with a
//! lowered `RLIMIT_NOFILE`.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringgate::codec::{self, ext};
use ringgate::link::proto::{to_gate, to_node, EventKind, Push};
use ringgate::node::{Context, Node};

use crate::common::scripted::{Announce, ScriptedNode};
use crate::common::{wait_until, Client, PATIENCE};
use crate::{gate, opts, serial, shards, Canary, ECHO};

/// The process's resident memory in KiB (the gate runs in it).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_node_that_stops_reading_gets_busy_replies_while_other_nodes_serve_on() {
    let _turn = serial();
    const STUCK: i32 = 7;
    const QUEUE: usize = 256 << 10;
    // One node reads nothing after its handshake; the other echoes ECHO.
    let stuck = ScriptedNode::bind();
    let fine = Node::builder("fine")
        .listen("127.0.0.1:0".parse().unwrap())
        .route(ECHO, |ctx: &mut Context| {
            let p = ctx.payload().clone();
            ctx.reply(p);
        })
        .bind()
        .unwrap()
        .spawn();
    let g = gate(&[stuck.addr, fine.local_addr()], false, |c| {
        c.link.max_queued_bytes = QUEUE;
        c.link.hang_timeout = Duration::ZERO;
        c.link.request_timeout = Duration::from_secs(60);
        c.limits.max_inflight = 0; // the link's bound is what is tested
    });
    let announce = Announce {
        reply_routes: vec![(STUCK, 0)],
        ..Default::default()
    };
    let _links = stuck.accept_shards(&announce, shards() as usize);
    wait_until(PATIENCE, "every link up", || {
        g.stats().links_up == 2 * shards()
    });
    let before = rss_kib();
    let canary = Canary::start(g.tcp_addr(), Duration::from_millis(10));
    // 25,000 requests of 4 KB (100 MB) for the node that reads nothing.
    const N: u64 = 25_000;
    let mut c = Client::connect(g.tcp_addr(), opts());
    let mut w = c.s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let payload = vec![7u8; 4000];
        for seq in 1..=N as i32 {
            let mut b = bytes::BytesMut::new();
            codec::encode_data(0, STUCK, seq, &payload, &opts(), &mut b).unwrap();
            w.write_all(&b).unwrap();
        }
    });
    // The gate's queues towards the node stay within their bound meanwhile.
    let mut most_queued = 0;
    while !writer.is_finished() {
        most_queued = most_queued.max(g.stats().link_queued_bytes);
        std::thread::sleep(Duration::from_millis(20));
    }
    writer.join().unwrap();
    let sent = u64::from(canary.finish());
    // Every request was either queued for the node or answered BUSY.
    wait_until(PATIENCE, "every request accounted for", || {
        let st = g.stats();
        st.link_busy + st.to_node == N + sent
    });
    let st = g.stats();
    for _ in 0..st.link_busy {
        let p = c.recv_data().expect("an answer");
        assert_eq!(p.ext, ext::BUSY, "only BUSY can come back: seq {}", p.seq);
    }
    let grew = rss_kib().saturating_sub(before);
    assert!(st.link_busy > N * 3 / 4, "{} of {N} BUSY", st.link_busy);
    assert!(
        most_queued <= (QUEUE as u64 + 64 * 1024) * shards(),
        "link queues held {most_queued} bytes"
    );
    assert!(
        grew < 64 * 1024,
        "100 MB offered to a node that reads nothing grew the process by {grew} KiB"
    );
    assert!(
        sent >= 5,
        "the other node's client was served throughout: {sent}"
    );
    assert_eq!(st.links_up, 2 * shards(), "a slow node keeps its links");
    g.stop();
}

#[test]
fn a_full_cross_shard_inbox_drops_pushes_and_counts_them_but_never_blocks() {
    let _turn = serial();
    if shards() < 2 {
        eprintln!("skipping: one core, so no other shard to cross to");
        return;
    }
    let node = ScriptedNode::bind();
    let g = gate(&[node.addr], false, |c| {
        c.shards.count = 2;
        c.shards.cores.clear();
        c.shards.channel_capacity = 16;
    });
    let announce = Announce {
        reply_routes: vec![(ECHO, 0)],
        events: vec![EventKind::EventConnect],
        ..Default::default()
    };
    let mut links = node.accept_shards(&announce, 2);
    // A client on each shard: the node learns which from connect events.
    let mut on: [Option<(Client, u64)>; 2] = [None, None];
    let end = Instant::now() + PATIENCE;
    while on.iter().any(Option::is_none) {
        assert!(Instant::now() < end, "no client landed on both shards");
        let c = Client::connect(g.tcp_addr(), opts());
        let sid = links.iter_mut().find_map(|l| {
            l.next_where(Duration::from_millis(200), |m| match m {
                to_node::Msg::Event(e) => Some(e.session_id),
                _ => None,
            })
        });
        let sid = sid.expect("a connect event");
        let shard = (sid >> 48) as usize;
        if on[shard].is_none() {
            on[shard] = Some((c, sid));
        }
    }
    let [Some((mut zero, _)), Some((mut one, target))] = on else {
        unreachable!()
    };
    // 5,000 pushes for shard 1's client, in one frame on shard 0's link:
    // shard 0 takes them in one turn, while shard 1 holds 16 in its inbox.
    const N: u64 = 5000;
    let pushes: Vec<to_gate::Msg> = (0..N)
        .map(|i| {
            to_gate::Msg::Push(Push {
                session_id: target,
                route: 9,
                seq: i as i32,
                payload: Bytes::from_static(b"p"),
                ..Default::default()
            })
        })
        .collect();
    links[0].send(&pushes);
    // Shard 0 answers its own client meanwhile (the node replies on link 0).
    zero.send(ECHO, 1, b"still here?");
    let d = links[0]
        .next_where(PATIENCE, |m| match m {
            to_node::Msg::Deliver(d) => Some(d),
            _ => None,
        })
        .expect("shard 0 forwards its client's request");
    links[0].send(&[crate::common::scripted::reply_to(&d, b"yes")]);
    assert_eq!(&zero.recv_data().unwrap().payload[..], b"yes");
    // Every push was delivered or dropped and counted; none waits forever.
    wait_until(PATIENCE, "every push accounted for", || {
        let st = g.stats();
        st.packets_out >= 1 && st.cross_shard_dropped + st.packets_out - 1 == N
    });
    let st = g.stats();
    assert!(st.cross_shard_dropped > 0, "a 16-message inbox overflowed");
    let got = one.drain_data(Duration::from_millis(300));
    assert_eq!(
        got.len() as u64,
        N - st.cross_shard_dropped,
        "delivered = sent - dropped"
    );
    assert!(got.windows(2).all(|w| w[0].seq < w[1].seq), "in order");
    g.stop();
}

const BIN: &str = env!("CARGO_BIN_EXE_ringgate");

/// The gate binary, killed and reaped if the test ends early.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The CPU time (user + system) process `pid` has used, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces): state is
    // field 3, utime 14 and stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn emfile_pauses_accepting_without_spinning_and_resumes_when_descriptors_free_up() {
    let _turn = serial();
    const LIMIT: u64 = 256;
    // Held by "something else" in the process: all but ~50 descriptors.
    const TAKEN: usize = 200;
    let dir = std::env::temp_dir().join(format!("ringgate-emfile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (port, node) = (free_port(), free_port());
    // max_connections fits the limit with the gate's reserve (one shard,
    // one node: 68), so the start-up check passes and EMFILE comes first.
    let cfg = dir.join("gate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[shards]\ncount = 1\n[network.tcp]\naddr = \"127.0.0.1:{port}\"\nmax_connections = {}\n\
             [network.tcp.heartbeat]\ninterval = \"60s\"\n[network.ws]\nenabled = false\n\
             [admin]\nenabled = false\n[log]\nlevel = \"warn\"\n\
             [[nodes]]\naddr = \"127.0.0.1:{node}\"\n",
            LIMIT - 68
        ),
    )
    .unwrap();
    let log = dir.join("gate.log");
    let devnull = std::fs::File::open("/dev/null").unwrap();
    let null_fd = devnull.as_raw_fd();
    let mut cmd = Command::new(BIN);
    cmd.arg("--config")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    // SAFETY: only async-signal-safe calls (setrlimit, dup) between fork
    // and exec; `null_fd` stays open in the parent until after the spawn.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: LIMIT,
                rlim_max: LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // dup() clears close-on-exec: the gate inherits them all.
            for _ in 0..TAKEN {
                if libc::dup(null_fd) < 0 {
                    break;
                }
            }
            Ok(())
        });
    }
    let gate = Process(cmd.spawn().unwrap());
    let started = Instant::now();
    drop(devnull);
    let pid = gate.0.id();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_until(PATIENCE, "the gate to listen", || {
        std::net::TcpStream::connect(addr).is_ok()
    });
    // Clients until the gate stops accepting: it has no node, so it
    // answers every request NO_ROUTE once it has accepted the client.
    let mut served: Vec<Client> = Vec::new();
    let mut waiting: Vec<Client> = Vec::new();
    for seq in 0..200 {
        let mut c = Client::connect(addr, opts());
        c.send(ECHO, seq, b"x");
        match c.recv_data_within(Duration::from_millis(500)) {
            Some(p) => {
                assert_eq!(p.ext, ext::NO_ROUTE);
                served.push(c);
            }
            None => {
                waiting.push(c);
                break;
            }
        }
    }
    assert_eq!(waiting.len(), 1, "the gate never ran out of descriptors");
    assert!(
        served.len() >= 10,
        "only {} clients before EMFILE",
        served.len()
    );
    assert!(
        (served.len() as u64) < LIMIT - 68,
        "EMFILE, not max_connections, stopped it"
    );
    // More clients queue in the kernel's backlog behind the first.
    for seq in 0..9 {
        let mut c = Client::connect(addr, opts());
        c.send(ECHO, seq, b"x");
        waiting.push(c);
    }
    // Saturated, with clients in the backlog: the gate does not spin.
    // SAFETY: sysconf reads no memory of ours.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100);
    let t0 = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(pid) - t0;
    assert!(
        used * 10 < hz,
        "the gate used {used} of {hz} ticks in a second while out of descriptors"
    );
    // Its log says so, at most about once a second, with what it held back.
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("accept failed"))
        .collect();
    assert!(!lines.is_empty(), "no accept error logged:\n{text}");
    // Accepting is retried ten times a second; one line a second at most.
    let most = started.elapsed().as_secs() + 2;
    assert!(
        lines.len() as u64 <= most,
        "the log is flooded: {} lines in {most} s\n{text}",
        lines.len()
    );
    assert!(
        lines.iter().any(|l| !l.contains("held=0")),
        "later lines count what they held back:\n{text}"
    );
    assert!(text.contains("Too many open files"), "{text}");
    // Descriptors free up: the clients in the backlog are served.
    served.truncate(served.len() - 5);
    for (i, c) in waiting.iter_mut().take(3).enumerate() {
        let p = c.recv_data_within(PATIENCE);
        assert!(
            p.is_some(),
            "backlogged client {i} served once descriptors freed up"
        );
    }
    served.clear();
    for c in waiting.iter_mut().skip(3) {
        assert!(
            c.recv_data_within(PATIENCE).is_some(),
            "every backlogged client"
        );
    }
    let mut fresh = Client::connect(addr, opts());
    fresh.send(ECHO, 1, b"x");
    assert!(fresh.recv_data_within(PATIENCE).is_some(), "a new client");
    drop(gate);
    let _ = std::fs::remove_dir_all(&dir);
}
