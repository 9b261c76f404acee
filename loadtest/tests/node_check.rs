//! `node-check` through the real binary against fake nodes on 127.0.0.1:
//! one that follows protocol v2 (every row must PASS), and the same node
//! with one rule broken at a time (that row must FAIL, and the run exit
//! non-zero). The fake node is strict in turn: it records everything the
//! checker does that a gate must not (a Deliver before its session's
//! EVENT_CONNECT, an event before the snapshot it asked for, a gap in event
//! seqs, ...), and every test asserts it recorded nothing.
//!
//! The fake node speaks the wire with the generated types and the framing
//! helpers only; one test also runs the checker against the node SDK.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use prost::Message;
use ringgate::link::proto::{
    call, to_gate, to_node, Call, EventKind, GateHello, NodeHello, Ping, Pong, Push, RouteSpec,
    SnapshotRequest, ToGate, ToNode, ToNodeBatch,
};
use ringgate::link::{decode_frame, BatchBuf, PROTOCOL_VERSION};

const BIN: &str = env!("CARGO_BIN_EXE_ringgate-loadtest");

/// The fake node's reply route and notification route.
const REPLY: i32 = 1;
const NOTIFY: i32 = 2;
/// The largest frame the fake node accepts (announced in its hello).
const NODE_MAX: u32 = 1 << 20;

/// Rules the fake node breaks; all off: it follows the contract.
#[derive(Clone, Copy, Debug, Default)]
struct Faults {
    /// Writes its NodeHello as soon as the link opens.
    speaks_first: bool,
    /// Announces this protocol version instead of 2.
    hello_version: Option<u32>,
    /// Announces its reply route twice.
    duplicate_route: bool,
    /// Accepts a GateHello of any version.
    any_version: bool,
    /// Stops accepting links after a GateHello of another version.
    dies_on_bad_version: bool,
    /// Answers a Ping with another nonce.
    wrong_pong: bool,
    /// Replies with request_id 0 (the v1 SDK's replies).
    no_request_id: bool,
    /// Replies twice.
    double_reply: bool,
    /// Answers a notification with a Push carrying a request id.
    notify_with_id: bool,
    /// Replies on another link of the same gate when there is one.
    reply_elsewhere: bool,
    /// Handles only the first N Delivers of each frame.
    first_n_delivers: Option<usize>,
    /// Writes all its messages in one frame, whatever the gate's limit.
    ignores_frame_limit: bool,
    /// Closes the link on EVENT_UNBIND.
    dies_on_unbind: bool,
    /// Skips a frame that does not decode instead of closing the link.
    skips_bad_frames: bool,
    /// Does not check a frame's length prefix (waits for the body).
    no_length_check: bool,
    /// Sends another node_id on each link.
    node_id_per_link: bool,
    /// Skips a ToNode with no field set instead of closing the link.
    ignores_empty_messages: bool,
    /// Closes the link on an empty frame (which is valid).
    closes_on_empty_frame: bool,
    /// Writes a ToGate with no field set before its replies.
    sends_empty_message: bool,
    /// Announces max_frame_bytes 0 (and so accepts 16 MiB).
    announces_no_limit: bool,
}

/// What the fake node shares between its links.
struct Shared {
    faults: Faults,
    /// Writers of the links whose hello is done, by link number.
    links: Mutex<Vec<(u64, Arc<Mutex<TcpStream>>)>>,
    next_link: AtomicU64,
    /// What the checker did that a gate must not.
    gate_faults: Mutex<Vec<String>>,
    dead: AtomicBool,
}

impl Shared {
    fn gate_fault(&self, what: String) {
        self.gate_faults.lock().unwrap().push(what);
    }
}

/// A fake node listening on 127.0.0.1 (threads end with the test process).
struct FakeNode {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FakeNode {
    fn start(faults: Faults) -> FakeNode {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            faults,
            links: Mutex::new(Vec::new()),
            next_link: AtomicU64::new(0),
            gate_faults: Mutex::new(Vec::new()),
            dead: AtomicBool::new(false),
        });
        let sh = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if sh.dead.load(Ordering::SeqCst) {
                    return; // drops the listener: the node is gone
                }
                let Ok(stream) = stream else { continue };
                let sh = sh.clone();
                std::thread::spawn(move || serve_link(&sh, stream));
            }
        });
        FakeNode { addr, shared }
    }

    /// Asserts the checker behaved as a gate towards this node.
    fn assert_gate_was_faithful(&self) {
        let faults = self.shared.gate_faults.lock().unwrap();
        assert!(
            faults.is_empty(),
            "the checker broke the gate's side: {faults:?}"
        );
    }
}

/// One link's view of the gate.
#[derive(Default)]
struct LinkState {
    hello: Option<GateHello>,
    /// Inside the hello's snapshot (asked for), until its last page.
    awaiting_snapshot: bool,
    /// Last event seq per kind.
    seqs: [u64; 5],
    live: BTreeSet<u64>,
    /// On its first Deliver the node pings the gate and calls for a
    /// snapshot: (nonce, call id), and what came back.
    asked: Option<(u64, u64)>,
    got_pong: bool,
    got_call_snapshot: bool,
    got_result: bool,
}

fn node_hello(faults: &Faults, link: u64) -> ToGate {
    let mut routes = vec![NOTIFY];
    if faults.duplicate_route {
        routes.push(NOTIFY);
    }
    ToGate {
        msg: Some(to_gate::Msg::Hello(NodeHello {
            service: "fake".into(),
            node_id: if faults.node_id_per_link {
                format!("fake-{link}")
            } else {
                "fake".into()
            },
            routes,
            version: faults.hello_version.unwrap_or(PROTOCOL_VERSION),
            events: (1..=4).collect(),
            max_frame_bytes: if faults.announces_no_limit {
                0
            } else {
                NODE_MAX
            },
            reply_routes: vec![RouteSpec {
                route: REPLY,
                timeout_ms: 0,
            }],
            snapshot: true,
            ..Default::default()
        })),
    }
}

fn push(p: Push) -> ToGate {
    ToGate {
        msg: Some(to_gate::Msg::Push(p)),
    }
}

/// Writes `msgs` in frames of at most `limit` bytes.
fn write(w: &Mutex<TcpStream>, msgs: &[ToGate], limit: usize) -> bool {
    if msgs.is_empty() {
        return true;
    }
    let mut b = BatchBuf::new(limit);
    for m in msgs {
        b.push(m);
    }
    w.lock().unwrap().write_all(&b.take()).is_ok()
}

fn serve_link(sh: &Shared, stream: TcpStream) {
    let f = sh.faults;
    let id = sh.next_link.fetch_add(1, Ordering::SeqCst);
    let writer = Arc::new(Mutex::new(stream.try_clone().unwrap()));
    if f.speaks_first {
        write(&writer, &[node_hello(&f, id)], usize::MAX);
    }
    let mut st = LinkState::default();
    let mut reader = stream;
    let mut buf = BytesMut::new();
    let mut chunk = vec![0u8; 64 << 10];
    let mut gate_closed = false;
    let max_in = if f.no_length_check {
        usize::MAX
    } else if f.announces_no_limit {
        16 << 20
    } else {
        NODE_MAX as usize
    };
    'link: loop {
        loop {
            match decode_frame(&mut buf, max_in) {
                Ok(Some(frame)) if frame.is_empty() && f.closes_on_empty_frame => break 'link,
                Ok(Some(frame)) => match ToNodeBatch::decode(frame) {
                    Ok(batch) => {
                        if !handle(sh, id, &writer, &mut st, batch.msgs) {
                            break 'link;
                        }
                    }
                    Err(_) if f.skips_bad_frames => {}
                    Err(_) => break 'link,
                },
                Ok(None) => break,
                Err(_) => break 'link,
            }
        }
        match reader.read(&mut chunk) {
            Ok(0) => {
                gate_closed = true;
                break;
            }
            Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let answered = st.got_pong && st.got_call_snapshot && st.got_result;
    if gate_closed && st.asked.is_some() && !answered {
        sh.gate_fault(format!(
            "link {id}: the gate closed the link without answering the node's Ping \
             (pong {}) and Call.snapshot (snapshot {}, result {})",
            st.got_pong, st.got_call_snapshot, st.got_result
        ));
    }
    sh.links.lock().unwrap().retain(|(l, _)| *l != id);
    let _ = reader.shutdown(Shutdown::Both);
}

/// Handles one batch; false closes the link.
fn handle(
    sh: &Shared,
    id: u64,
    writer: &Arc<Mutex<TcpStream>>,
    st: &mut LinkState,
    msgs: Vec<ToNode>,
) -> bool {
    let f = sh.faults;
    let mut out = Vec::new();
    let mut elsewhere: Vec<ToGate> = Vec::new();
    let mut delivers = 0;
    for m in msgs {
        let Some(msg) = m.msg else {
            if f.ignores_empty_messages {
                continue;
            }
            return false; // a protocol error, as the contract says
        };
        let hello = match (&st.hello, msg) {
            (None, to_node::Msg::Hello(h)) => h,
            (None, other) => {
                sh.gate_fault(format!("link {id}: {other:?} before GateHello"));
                return false;
            }
            (Some(_), to_node::Msg::Hello(_)) => {
                sh.gate_fault(format!("link {id}: a second GateHello"));
                return false;
            }
            (Some(_), msg) => {
                if !on_msg(sh, id, st, msg, &mut delivers, &mut out, &mut elsewhere) {
                    return false;
                }
                continue;
            }
        };
        if hello.version != PROTOCOL_VERSION && !f.any_version {
            if f.dies_on_bad_version {
                sh.dead.store(true, Ordering::SeqCst);
            }
            return false; // refused, as the contract says (not a gate fault)
        }
        if hello.gate_id.is_empty()
            || hello.shard >= hello.shards
            || hello.epoch_ms == 0
            || hello.max_frame_bytes == 0
        {
            sh.gate_fault(format!("link {id}: a poor GateHello {hello:?}"));
        }
        st.hello = Some(hello);
        st.awaiting_snapshot = true;
        if !f.speaks_first {
            out.push(node_hello(&f, id));
        }
        sh.links.lock().unwrap().push((id, writer.clone()));
    }
    let limit = match st.hello.as_ref().map(|h| h.max_frame_bytes as usize) {
        _ if f.ignores_frame_limit => usize::MAX,
        Some(n) if n > 0 => n,
        _ => usize::MAX,
    };
    if !elsewhere.is_empty() {
        let other = sh
            .links
            .lock()
            .unwrap()
            .iter()
            .find(|(l, _)| *l != id)
            .map(|(_, w)| w.clone());
        match other {
            Some(w) => {
                write(&w, &elsewhere, limit);
            }
            None => out.append(&mut elsewhere),
        }
    }
    write(writer, &out, limit)
}

/// Handles one message after the handshake; false closes the link.
fn on_msg(
    sh: &Shared,
    id: u64,
    st: &mut LinkState,
    msg: to_node::Msg,
    delivers: &mut usize,
    out: &mut Vec<ToGate>,
    elsewhere: &mut Vec<ToGate>,
) -> bool {
    let f = sh.faults;
    let shard = st.hello.as_ref().map_or(0, |h| h.shard);
    match msg {
        to_node::Msg::Hello(_) => unreachable!("handled by the caller"),
        to_node::Msg::Snapshot(s) if s.call_id == 0 => {
            if !st.awaiting_snapshot {
                sh.gate_fault(format!("link {id}: an unasked snapshot page"));
            }
            st.live.extend(s.sessions.iter().map(|i| i.session_id));
            if s.last {
                st.awaiting_snapshot = false;
                if s.event_seqs.len() != 5 {
                    sh.gate_fault(format!("link {id}: event_seqs {:?}", s.event_seqs));
                }
                for (k, &n) in s.event_seqs.iter().enumerate().take(5) {
                    st.seqs[k] = n;
                }
            }
        }
        to_node::Msg::Event(e) => {
            if st.awaiting_snapshot {
                sh.gate_fault(format!("link {id}: an event before the hello's snapshot"));
            }
            let k = e.kind as usize;
            if !(1..=4).contains(&k) {
                sh.gate_fault(format!("link {id}: event kind {k}"));
                return true;
            }
            if e.seq != st.seqs[k] + 1 {
                sh.gate_fault(format!(
                    "link {id}: event kind {k} seq {} after {}",
                    e.seq, st.seqs[k]
                ));
            }
            st.seqs[k] = e.seq;
            if e.session_id >> 48 != u64::from(shard) {
                sh.gate_fault(format!("link {id}: event of another shard's session"));
            }
            let fresh = match EventKind::try_from(e.kind) {
                Ok(EventKind::EventConnect) => st.live.insert(e.session_id),
                Ok(EventKind::EventDisconnect) => st.live.remove(&e.session_id),
                _ => st.live.contains(&e.session_id),
            };
            if !fresh {
                sh.gate_fault(format!(
                    "link {id}: event {k} for session {:#x} out of its life cycle",
                    e.session_id
                ));
            }
            if f.dies_on_unbind && e.kind == EventKind::EventUnbind as i32 {
                return false;
            }
        }
        to_node::Msg::Deliver(d) => {
            if st.asked.is_none() {
                let asked = (0xab00 + id, 1000 + id);
                st.asked = Some(asked);
                out.push(ToGate {
                    msg: Some(to_gate::Msg::Ping(Ping { nonce: asked.0 })),
                });
                out.push(ToGate {
                    msg: Some(to_gate::Msg::Call(Call {
                        call_id: asked.1,
                        op: Some(call::Op::Snapshot(SnapshotRequest {})),
                    })),
                });
            }
            *delivers += 1;
            if f.first_n_delivers.is_some_and(|n| *delivers > n) {
                return true;
            }
            if !st.live.contains(&d.session_id) {
                sh.gate_fault(format!(
                    "link {id}: a Deliver from session {:#x} before its EVENT_CONNECT",
                    d.session_id
                ));
            }
            let reply_route = d.route == REPLY;
            if reply_route == (d.request_id == 0) {
                sh.gate_fault(format!(
                    "link {id}: route {} with request_id {}",
                    d.route, d.request_id
                ));
            }
            let mut p = Push {
                session_id: d.session_id,
                route: d.route,
                seq: d.seq,
                payload: d.payload,
                ext: 0,
                request_id: d.request_id,
                ..Default::default()
            };
            if !reply_route {
                // A notification: the node pushes back anyway, as it may.
                p.request_id = if f.notify_with_id { 77_777 } else { 0 };
            } else if f.no_request_id {
                p.request_id = 0;
            }
            let to = if f.reply_elsewhere { elsewhere } else { out };
            if f.sends_empty_message {
                to.push(ToGate { msg: None });
            }
            if f.double_reply {
                to.push(push(p.clone()));
            }
            to.push(push(p));
        }
        to_node::Msg::Pong(p) => {
            st.got_pong |= st.asked.is_some_and(|a| a.0 == p.nonce);
        }
        to_node::Msg::Snapshot(s) => {
            st.got_call_snapshot |= s.last && st.asked.is_some_and(|a| a.1 == s.call_id);
        }
        to_node::Msg::Result(r) => {
            if st.asked.is_some_and(|a| a.1 == r.call_id) {
                st.got_result = true;
                if !st.got_call_snapshot || r.code != 0 {
                    sh.gate_fault(format!("link {id}: CallResult {r:?} before its snapshot"));
                }
            }
        }
        to_node::Msg::Ping(p) => out.push(ToGate {
            msg: Some(to_gate::Msg::Pong(Pong {
                nonce: if f.wrong_pong { p.nonce ^ 1 } else { p.nonce },
            })),
        }),
    }
    true
}

/// A run of the checker: exit status and the table's rows.
struct Report {
    success: bool,
    /// check → (result, detail)
    rows: BTreeMap<String, (String, String)>,
    /// Checks in table order.
    order: Vec<String>,
    stdout: String,
    stderr: String,
}

impl Report {
    fn status(&self, check: &str) -> &str {
        match self.rows.get(check) {
            Some((s, _)) => s,
            None => panic!("no row {check}:\n{}", self.stdout),
        }
    }

    fn detail(&self, check: &str) -> &str {
        &self.rows[check].1
    }

    fn assert_row(&self, check: &str, status: &str, needle: &str) {
        assert_eq!(
            self.status(check),
            status,
            "{check}: {}\n{}{}",
            self.detail(check),
            self.stdout,
            self.stderr
        );
        assert!(
            self.detail(check).contains(needle),
            "{check}: {:?} lacks {needle:?}\n{}",
            self.detail(check),
            self.stdout
        );
    }
}

/// Runs `node-check --node addr` with `extra` flags and parses the table.
fn node_check(addr: SocketAddr, extra: &[&str]) -> Report {
    let out = Command::new(BIN)
        .args(["node-check", "--node", &addr.to_string()])
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    // Every table, for `--nocapture` (the README's examples come from here).
    print!("{stdout}{stderr}");
    let mut lines = stdout.lines();
    assert!(
        lines.next().unwrap_or("").starts_with("node-check "),
        "{stdout}{stderr}"
    );
    assert!(
        lines.next().unwrap_or("").starts_with("check "),
        "{stdout}{stderr}"
    );
    let mut rows = BTreeMap::new();
    let mut order = Vec::new();
    let mut totals = None;
    for line in lines {
        if line.contains(" passed, ") {
            totals = Some(line.to_string());
            break;
        }
        let mut it = line.splitn(2, ' ');
        let name = it.next().unwrap().to_string();
        let rest = it.next().unwrap_or("").trim_start();
        let (status, detail) = rest.split_at(4.min(rest.len()));
        order.push(name.clone());
        rows.insert(name, (status.to_string(), detail.trim().to_string()));
    }
    let totals = totals.unwrap_or_else(|| panic!("no totals line:\n{stdout}{stderr}"));
    let fails = rows.values().filter(|(s, _)| s == "FAIL").count();
    assert!(totals.contains(&format!(" {fails} failed")), "{totals}");
    assert_eq!(
        out.status.success(),
        fails == 0,
        "exit status vs table:\n{stdout}{stderr}"
    );
    Report {
        success: out.status.success(),
        rows,
        order,
        stdout,
        stderr,
    }
}

const ALL: [&str; 11] = [
    "hello",
    "version",
    "ping",
    "reply",
    "multi-link",
    "big-batch",
    "frame-limit",
    "events",
    "garbage",
    "oversized-frame",
    "reconnect",
];

/// Runs only `check` (and hello) against a node with `faults`; that row
/// must FAIL with `needle` in its detail, hello must PASS.
fn assert_fails(faults: Faults, check: &str, needle: &str) -> Report {
    let node = FakeNode::start(faults);
    let r = node_check(node.addr, &["--only", check, "--timeout", "2s"]);
    assert!(!r.success);
    r.assert_row("hello", "PASS", "service \"fake\"");
    r.assert_row(check, "FAIL", needle);
    assert_eq!(r.rows.len(), 2, "{}", r.stdout);
    node.assert_gate_was_faithful();
    r
}

#[test]
fn a_node_that_follows_the_contract_passes_every_check() {
    let node = FakeNode::start(Faults::default());
    let r = node_check(node.addr, &["--timeout", "10s"]);
    assert!(r.success, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.order, ALL, "one row per check, in order");
    for check in ALL {
        assert_eq!(r.status(check), "PASS", "{check}: {}", r.detail(check));
    }
    r.assert_row("hello", "PASS", "reply_routes [1], events [connect, bind, unbind, disconnect], max_frame_bytes 1048576, snapshot yes");
    r.assert_row("version", "PASS", "a new link then got NodeHello");
    r.assert_row("ping", "PASS", "200/200 answered");
    r.assert_row(
        "reply",
        "PASS",
        "route 1: 4/4 answered once; notification routes [2]: 4 Delivers",
    );
    r.assert_row(
        "multi-link",
        "PASS",
        "40/40 answered: all 40 on the link they were sent on",
    );
    r.assert_row(
        "big-batch",
        "PASS",
        "1000 Delivers from 100 sessions in 1 frame(s)",
    );
    r.assert_row("big-batch", "PASS", "1000/1000 answered once");
    r.assert_row("frame-limit", "PASS", "GateHello.max_frame_bytes 4096");
    r.assert_row("events", "PASS", "Snapshot of 3 sessions in 2 pages");
    r.assert_row("events", "PASS", "link kept");
    r.assert_row(
        "garbage",
        "PASS",
        "a ToNode with no field set: closed (EOF)",
    );
    r.assert_row(
        "garbage",
        "PASS",
        "the survivor link, after an empty frame (valid), still answers (Pong, 1/1 answered)",
    );
    r.assert_row("oversized-frame", "PASS", "length prefix 1048577");
    r.assert_row(
        "reconnect",
        "PASS",
        "after reconnecting: 2 links, 10/10 answered",
    );
    assert!(!r.detail("multi-link").contains("without request_id"));
    node.assert_gate_was_faithful();
}

#[test]
fn more_links_are_more_shards() {
    let node = FakeNode::start(Faults::default());
    let r = node_check(
        node.addr,
        &[
            "--links",
            "3",
            "--only",
            "multi-link,reconnect",
            "--batch",
            "10",
        ],
    );
    r.assert_row(
        "multi-link",
        "PASS",
        "3 links, same node_id; 60/60 answered",
    );
    r.assert_row(
        "reconnect",
        "PASS",
        "after reconnecting: 3 links, 15/15 answered",
    );
    node.assert_gate_was_faithful();
}

#[test]
fn replies_on_another_link_pass_and_are_reported() {
    let node = FakeNode::start(Faults {
        reply_elsewhere: true,
        ..Faults::default()
    });
    let r = node_check(node.addr, &["--only", "multi-link"]);
    r.assert_row(
        "multi-link",
        "PASS",
        "20 sent on shard 0 came on shard 1, 20 sent on shard 1 came on shard 0 (allowed)",
    );
    node.assert_gate_was_faithful();
}

#[test]
fn replies_without_request_id_fail_reply_and_big_batch_only() {
    let node = FakeNode::start(Faults {
        no_request_id: true,
        ..Faults::default()
    });
    let r = node_check(node.addr, &["--timeout", "10s"]);
    assert!(!r.success);
    r.assert_row(
        "reply",
        "FAIL",
        "4 got a Push with request_id 0 but their session/route/seq",
    );
    r.assert_row("big-batch", "FAIL", "1000 of 1000 requests unanswered");
    for check in ALL.iter().filter(|c| !["reply", "big-batch"].contains(c)) {
        assert_eq!(r.status(check), "PASS", "{check}: {}", r.detail(check));
    }
    r.assert_row("multi-link", "PASS", "(40 without request_id: see reply)");
    node.assert_gate_was_faithful();
}

#[test]
fn a_node_that_speaks_first_fails_hello_and_the_rest_is_skipped() {
    let node = FakeNode::start(Faults {
        speaks_first: true,
        ..Faults::default()
    });
    let r = node_check(node.addr, &[]);
    r.assert_row("hello", "FAIL", "NodeHello before the gate's hello");
    for check in &ALL[1..] {
        r.assert_row(check, "SKIP", "needs a NodeHello");
    }
}

#[test]
fn a_hello_of_another_version_fails_and_ends_the_run() {
    let node = FakeNode::start(Faults {
        hello_version: Some(1),
        ..Faults::default()
    });
    let r = node_check(node.addr, &[]);
    r.assert_row("hello", "FAIL", "version 1, expected 2");
    r.assert_row("reply", "SKIP", "needs a NodeHello");
}

#[test]
fn a_route_announced_twice_fails_hello_but_the_checks_go_on() {
    let node = FakeNode::start(Faults {
        duplicate_route: true,
        ..Faults::default()
    });
    let r = node_check(node.addr, &["--only", "reply"]);
    r.assert_row("hello", "FAIL", "route 2 twice in routes");
    r.assert_row("reply", "PASS", "route 1: 4/4 answered once");
}

#[test]
fn nothing_listening_fails_hello() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let r = node_check(addr, &["--only", "ping"]);
    r.assert_row("hello", "FAIL", "cannot connect");
    r.assert_row("ping", "SKIP", "needs a NodeHello");
}

#[test]
fn accepting_any_version_fails_version() {
    let faults = Faults {
        any_version: true,
        ..Faults::default()
    };
    assert_fails(
        faults,
        "version",
        "link still open 2s after GateHello version 999, having sent NodeHello",
    );
}

#[test]
fn dying_on_a_bad_version_fails_version() {
    let faults = Faults {
        dies_on_bad_version: true,
        ..Faults::default()
    };
    let r = assert_fails(faults, "version", "closed (EOF)");
    r.assert_row(
        "version",
        "FAIL",
        "a new link then: before NodeHello: link closed",
    );
}

#[test]
fn a_wrong_pong_fails_ping() {
    let faults = Faults {
        wrong_pong: true,
        ..Faults::default()
    };
    assert_fails(
        faults,
        "ping",
        "idle: Pong 0xfedcba9876543211 for Ping 0xfedcba9876543210",
    );
}

#[test]
fn replying_twice_fails_reply() {
    let faults = Faults {
        double_reply: true,
        ..Faults::default()
    };
    assert_fails(faults, "reply", "4 requests answered more than once");
}

#[test]
fn a_request_id_on_a_notification_fails_reply() {
    let faults = Faults {
        notify_with_id: true,
        ..Faults::default()
    };
    assert_fails(
        faults,
        "reply",
        "carry a request_id that was never asked for (ids 77777",
    );
}

#[test]
fn answering_part_of_a_big_frame_fails_big_batch() {
    let faults = Faults {
        first_n_delivers: Some(100),
        ..Faults::default()
    };
    assert_fails(faults, "big-batch", "900 of 1000 requests unanswered");
}

#[test]
fn ignoring_the_gate_frame_limit_fails_frame_limit() {
    let faults = Faults {
        ignores_frame_limit: true,
        ..Faults::default()
    };
    assert_fails(faults, "frame-limit", "over the announced 4096");
}

#[test]
fn closing_on_an_event_fails_events() {
    let faults = Faults {
        dies_on_unbind: true,
        ..Faults::default()
    };
    assert_fails(faults, "events", "link lost");
}

#[test]
fn skipping_an_undecodable_frame_fails_garbage() {
    let faults = Faults {
        skips_bad_frames: true,
        ..Faults::default()
    };
    assert_fails(
        faults,
        "garbage",
        "no ToNodeBatch: link still open after 2s",
    );
}

#[test]
fn waiting_for_an_oversized_body_fails_oversized_frame() {
    let faults = Faults {
        no_length_check: true,
        ..Faults::default()
    };
    assert_fails(
        faults,
        "oversized-frame",
        "length prefix 1048577 (max_frame_bytes 1048576 + 1): link still open after 2s",
    );
}

#[test]
fn another_node_id_per_link_fails_multi_link_and_reconnect() {
    let faults = Faults {
        node_id_per_link: true,
        ..Faults::default()
    };
    assert_fails(
        faults,
        "multi-link",
        "(every link of a node sends the same id)",
    );
    assert_fails(faults, "reconnect", "has node_id \"fake-");
}

/// The contract's wording for an empty message is not a "must" (and the
/// node SDK skips them): noted, not failed.
#[test]
fn ignoring_a_message_with_no_field_is_noted_not_failed() {
    let node = FakeNode::start(Faults {
        ignores_empty_messages: true,
        ..Faults::default()
    });
    let r = node_check(node.addr, &["--only", "garbage"]);
    assert!(r.success, "{}", r.stdout);
    r.assert_row(
        "garbage",
        "PASS",
        "a ToNode with no field set: link kept 1s (docs/node-protocol.md calls it a protocol error",
    );
    node.assert_gate_was_faithful();
}

#[test]
fn closing_on_an_empty_frame_fails_garbage() {
    let faults = Faults {
        closes_on_empty_frame: true,
        ..Faults::default()
    };
    // The lost link ends the wait at once (no "unanswered" after a timeout
    // first): the cause leads the detail.
    assert_fails(
        faults,
        "garbage",
        "the survivor link, after an empty frame (valid), link 1: link closed (EOF); 1 of 1 requests unanswered",
    );
}

#[test]
fn a_message_with_no_field_from_the_node_fails() {
    let faults = Faults {
        sends_empty_message: true,
        ..Faults::default()
    };
    assert_fails(faults, "reply", "a ToGate with no field set");
}

#[test]
fn a_node_without_an_announced_limit_is_held_to_16_mib() {
    let node = FakeNode::start(Faults {
        announces_no_limit: true,
        ..Faults::default()
    });
    let r = node_check(node.addr, &["--only", "oversized-frame"]);
    r.assert_row(
        "oversized-frame",
        "PASS",
        "length prefix 16777217 (none announced: 16 MiB 16777216 + 1): closed (EOF)",
    );
    node.assert_gate_was_faithful();
}

/// The node SDK's echo: every check that applies passes (it subscribes to
/// no events: that one SKIPs).
#[test]
fn the_sdk_echo_node_passes() {
    use ringgate::node::{Context, Node};
    let node = Node::builder("echo")
        .listen("127.0.0.1:0".parse().unwrap())
        .route(1, |ctx: &mut Context| {
            let p = ctx.payload().clone();
            ctx.reply(p);
        })
        .bind()
        .unwrap();
    let addr = node.local_addr();
    let _handle = node.spawn();
    let r = node_check(addr, &["--timeout", "10s"]);
    assert!(r.success, "{}{}", r.stdout, r.stderr);
    for check in ALL.iter().filter(|&&c| c != "events") {
        assert_eq!(r.status(check), "PASS", "{check}: {}", r.detail(check));
    }
    r.assert_row("reply", "PASS", "route 1: 4/4 answered once");
    r.assert_row("events", "SKIP", "subscribes to no events");
}

/// A node SDK node with a notification route, every event and snapshots
/// passes every check; and the SDK, which checks event numbers itself,
/// saw no gap in the checker's.
#[test]
fn an_sdk_node_with_events_and_snapshots_passes_every_check() {
    use ringgate::node::{Context, EventContext, EventKind, Node, SnapshotPage};
    let pages = Arc::new(AtomicU64::new(0));
    let events = Arc::new(AtomicU64::new(0));
    let (p, e) = (pages.clone(), events.clone());
    let node = Node::builder("sdk-full")
        .listen("127.0.0.1:0".parse().unwrap())
        .workers(2)
        .route(1, |ctx: &mut Context| {
            let p = ctx.payload().clone();
            ctx.reply(p);
        })
        .notify(2, |_: &mut Context| {})
        .on_event(
            &[
                EventKind::Connect,
                EventKind::Bind,
                EventKind::Unbind,
                EventKind::Disconnect,
            ],
            move |_: &mut EventContext| {
                e.fetch_add(1, Ordering::SeqCst);
            },
        )
        .on_snapshot(move |_: &mut SnapshotPage| {
            p.fetch_add(1, Ordering::SeqCst);
        })
        .bind()
        .unwrap();
    let addr = node.local_addr();
    let handle = node.spawn();
    let r = node_check(addr, &["--timeout", "10s"]);
    assert!(r.success, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.order, ALL);
    for check in ALL {
        assert_eq!(r.status(check), "PASS", "{check}: {}", r.detail(check));
    }
    r.assert_row("hello", "PASS", "routes [2], reply_routes [1]");
    r.assert_row("events", "PASS", "Snapshot of 3 sessions in 2 pages");
    assert_eq!(
        handle.gates().event_gaps(),
        0,
        "the SDK saw a gap in the checker's event seqs"
    );
    assert!(pages.load(Ordering::SeqCst) > 0 && events.load(Ordering::SeqCst) > 0);
}
