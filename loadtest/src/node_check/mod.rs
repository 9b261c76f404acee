//! `node-check`: a conformance suite for node implementations. The checker
//! plays the gate against a node (it dials the node, as a gate does) and
//! checks the node follows protocol version 2 of `proto/ringgate.proto`,
//! judging it only by what crosses the wire.
//!
//! * [`gate`] — the checker's links and the state a gate keeps (sessions,
//!   event counters, snapshots, request ids).
//! * [`replies`] — waiting for the answers to a set of Delivers and judging them.
//! * [`checks`] — the checks, one function each, in table order.

mod checks;
mod gate;
mod replies;

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use clap::{Args, ValueEnum};

use crate::args::parse_duration;

/// Every check, in the order they run and print.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CheckName {
    /// NodeHello first, version 2, a service, routes, no duplicates.
    Hello,
    /// A GateHello of another version: the node closes the link.
    Version,
    /// Ping answered by a Pong with the same nonce, idle and busy.
    Ping,
    /// One Push per request, carrying its request id; none for notifications.
    Reply,
    /// Several links (shards) at once; replies accepted on any link.
    MultiLink,
    /// Many Delivers in one frame, every one answered once.
    BigBatch,
    /// A small GateHello.max_frame_bytes: every frame of the node stays below.
    FrameLimit,
    /// Session events (and the hello's snapshot) do not break the link.
    Events,
    /// An undecodable frame: that link is closed, the others serve on.
    Garbage,
    /// A length prefix over the node's max_frame_bytes: that link is closed.
    OversizedFrame,
    /// All links closed and opened again: hello and replies again.
    Reconnect,
}

impl CheckName {
    /// The name printed in the table (the `--only` spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            CheckName::Hello => "hello",
            CheckName::Version => "version",
            CheckName::Ping => "ping",
            CheckName::Reply => "reply",
            CheckName::MultiLink => "multi-link",
            CheckName::BigBatch => "big-batch",
            CheckName::FrameLimit => "frame-limit",
            CheckName::Events => "events",
            CheckName::Garbage => "garbage",
            CheckName::OversizedFrame => "oversized-frame",
            CheckName::Reconnect => "reconnect",
        }
    }

    /// All checks in table order.
    pub const ALL: [CheckName; 11] = [
        CheckName::Hello,
        CheckName::Version,
        CheckName::Ping,
        CheckName::Reply,
        CheckName::MultiLink,
        CheckName::BigBatch,
        CheckName::FrameLimit,
        CheckName::Events,
        CheckName::Garbage,
        CheckName::OversizedFrame,
        CheckName::Reconnect,
    ];
}

/// The checks and their pass criteria, for `--help` (README's
/// "node-check" section says the same at more length).
const CHECKS_HELP: &str = "\
The checker dials the node as a gate would (gate_id node-check-<pid>, one
epoch for the run, shards 0..N-1 of N = --links) and judges it only by the
wire. Every wait is bounded by --timeout. A check that cannot apply prints
SKIP; the exit status is 1 if any check FAILs.

Reply routes are the node's NodeHello.reply_routes, or the --route list
(which replaces them); notification routes are the other announced routes.
Before a session's first Deliver the checker raises its EVENT_CONNECT, and
ends it with EVENT_DISCONNECT, sent when the node subscribed; a node that
asks `snapshot` gets the shard's Snapshot right after its hello on every
link. The node's pings are answered, and its calls get CODE_OK (a
Call.snapshot gets its Snapshot first): the checker is not a gate.

A message with no field set from the node breaks its link (the gate closes
a link for it), and so fails the check it happens in.

Only reply and big-batch judge request ids. The other checks count a
request as answered when a Push comes back with its request_id or, lacking
one, with its session, route and seq (the detail says how many lacked it),
so that one fault fails one row. Before judging, the checker pings every
link and waits for the Pongs, then reads 100 ms more for late duplicates.

Checks:
  hello            Nothing arrives in the 200 ms before GateHello (version 2,
                   shard 0 of N, max_frame_bytes 16 MiB, epoch_ms,
                   request_timeout_ms = --timeout). Then the first message
                   is NodeHello with version 2, a non-empty service, at least
                   one route in routes + reply_routes, no route twice in
                   routes or in reply_routes (a route in both counts as a
                   reply route), only event kinds 1-4, none twice.
  version          After a GateHello with version 999 the node closes the
                   link (EOF or reset) within the timeout; then a new link
                   with version 2 gets a NodeHello.
  ping             Ping(nonce above 2^53) on an idle link gets a Pong with
                   the same nonce; a Ping written right behind a frame of
                   200 Delivers gets its Pong too (and the Delivers are
                   answered).
  reply            Two sessions send two Delivers each on every reply route:
                   each request gets exactly one Push carrying its
                   request_id, session_id, route and seq. As many on every
                   notification route (request_id 0) draw no Push with a
                   request_id. No Push carries an id never asked for.
                   SKIP when there is no reply route (unless a
                   notification drew a Push with an id: FAIL).
  multi-link       N links open at once (shards 0..N-1); all NodeHellos
                   have the same node_id and service; 20 requests per link
                   are all answered, on any link of the node (which link
                   is reported). SKIP without a reply route.
  big-batch        --batch Delivers (1000) from 100 sessions in ONE frame
                   (unless the node's max_frame_bytes forces more): each
                   request answered by exactly one Push with its
                   request_id, session, route and seq; no stray ids.
                   SKIP without a reply route.
  frame-limit      A link whose GateHello says max_frame_bytes =
                   --frame-limit (4096) and enough Delivers that the replies
                   need many frames: every frame from the node, its hello
                   included, is at most that long, and every request is
                   answered. SKIP without a reply route.
  events           If the node subscribed to events or asked a snapshot:
                   with `snapshot`, three sessions live before the link
                   opens arrive as a 2-page Snapshot (last set on the
                   second, event_seqs the shard's counters); then, in two
                   frames, two sessions connect and bind, Deliver, unbind,
                   rebind and disconnect, and all five disconnect (events
                   of subscribed kinds, seq consecutive per kind). The link
                   must stay up, the barrier Ping get its Pong, and the
                   Delivers be answered. SKIP otherwise.
  garbage          A survivor link up on shard 1; on a fresh link of shard
                   0, a frame whose body is not a ToNodeBatch: the node
                   closes that link within the timeout. On another, a
                   ToNode with no field set: advisory (docs/node-protocol.md
                   calls it a protocol error, without a 'must'): a link kept
                   open 1 s is noted, not failed. Then an empty frame (len
                   0: valid, means nothing) on the survivor, which must
                   still answer a Ping (and a request, when there is a
                   reply route).
  oversized-frame  As garbage, with a length prefix one byte over the
                   node's NodeHello.max_frame_bytes (16 MiB when it
                   announced 0) and 16 bytes of a body that never
                   completes: the node closes that link without waiting for
                   the rest.
  reconnect        N links up and answering, all closed, N new links: a
                   NodeHello on each with the node_id seen before, and
                   replies (or pongs) again.

There is no row for Call.snapshot: nothing is required of a node there.
";

/// `node-check` flags.
#[derive(Args, Clone, Debug)]
#[command(
    after_help = "Checks: hello, version, ping, reply, multi-link, big-batch, frame-limit, \
                  events, garbage, oversized-frame, reconnect (--help says what each requires).",
    after_long_help = CHECKS_HELP
)]
pub struct NodeCheckArgs {
    /// Address of the node under test (host:port); the checker dials it.
    #[arg(long)]
    pub node: String,
    /// Check ROUTE as a reply route (repeatable); replaces the node's
    /// announced reply_routes for the checks that need replies.
    #[arg(long = "route", value_name = "ROUTE")]
    pub routes: Vec<i32>,
    /// Payload of every Deliver: UTF-8 text, or bytes as `hex:0a1b...`.
    #[arg(long, default_value = "node-check", value_parser = parse_payload)]
    pub payload: Bytes,
    /// Links opened at once (the checker's gate has this many shards).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(2..=64))]
    pub links: u32,
    /// Longest wait for any one answer (e.g. `3s`, `500ms`).
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Delivers in the big-batch frame.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,
    /// GateHello.max_frame_bytes in the frame-limit check.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(256..))]
    pub frame_limit: u32,
    /// Run only these checks (comma-separated); hello always runs.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<CheckName>,
}

/// Parses `--payload`: `hex:` then pairs of hex digits, else the text's bytes.
pub fn parse_payload(text: &str) -> Result<Bytes, String> {
    let Some(hex) = text.strip_prefix("hex:") else {
        return Ok(Bytes::copy_from_slice(text.as_bytes()));
    };
    let hex: String = hex.chars().filter(|c| !c.is_whitespace()).collect();
    if hex.len() % 2 != 0 {
        return Err(format!("`{text}`: odd number of hex digits"));
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map(Bytes::from)
        .map_err(|e| format!("`{text}`: {e}"))
}

/// A check's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The node did what the contract says.
    Pass,
    /// It did not.
    Fail,
    /// The check does not apply to this node (or could not run).
    Skip,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        }
    }
}

/// One row of the table.
#[derive(Clone, Debug)]
pub struct Row {
    pub name: CheckName,
    pub status: Status,
    pub detail: String,
}

/// Runs the checks against `--node`, prints the table; an error when any
/// check failed.
pub fn run(args: NodeCheckArgs) -> Result<()> {
    let addr = resolve(&args.node)?;
    println!(
        "node-check {addr}: protocol {}, {} links, timeout {}",
        ringgate::link::PROTOCOL_VERSION,
        args.links,
        crate::args::format_duration(args.timeout)
    );
    let rows = checks::run_all(addr, &args);
    print!("{}", table(&rows));
    let failed = rows.iter().filter(|r| r.status == Status::Fail).count();
    if failed > 0 {
        bail!("{failed} of {} checks failed", rows.len());
    }
    Ok(())
}

fn resolve(node: &str) -> Result<SocketAddr> {
    node.to_socket_addrs()
        .with_context(|| format!("--node {node}: not an address (host:port)"))?
        .next()
        .with_context(|| format!("--node {node}: resolves to no address"))
}

/// The table: check, result, detail; then the totals.
fn table(rows: &[Row]) -> String {
    let width = rows
        .iter()
        .map(|r| r.name.as_str().len())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut s = format!("{:<width$}  result  detail\n", "check");
    for r in rows {
        s.push_str(&format!(
            "{:<width$}  {:<6}  {}\n",
            r.name.as_str(),
            r.status.as_str(),
            r.detail
        ));
    }
    let count = |st| rows.iter().filter(|r| r.status == st).count();
    s.push_str(&format!(
        "{} passed, {} failed, {} skipped\n",
        count(Status::Pass),
        count(Status::Fail),
        count(Status::Skip)
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse_as_text_or_hex() {
        assert_eq!(parse_payload("hi").unwrap(), Bytes::from_static(b"hi"));
        assert_eq!(
            parse_payload("hex:00ff 10").unwrap(),
            Bytes::from_static(&[0, 0xff, 0x10])
        );
        assert_eq!(parse_payload("hex:").unwrap(), Bytes::new());
        assert!(parse_payload("hex:abc").is_err());
        assert!(parse_payload("hex:zz").is_err());
    }

    #[test]
    fn table_has_one_row_per_check_and_totals() {
        let rows = [
            Row {
                name: CheckName::Hello,
                status: Status::Pass,
                detail: "service \"echo\"".into(),
            },
            Row {
                name: CheckName::OversizedFrame,
                status: Status::Fail,
                detail: "link still open".into(),
            },
        ];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[1].starts_with("hello            PASS    service"));
        assert!(lines[2].starts_with("oversized-frame  FAIL    link still open"));
        assert_eq!(lines[3], "1 passed, 1 failed, 0 skipped");
    }

    #[test]
    fn names_match_the_flag_spelling() {
        for c in CheckName::ALL {
            let v = c.to_possible_value().unwrap();
            assert_eq!(v.get_name(), c.as_str());
        }
    }
}
