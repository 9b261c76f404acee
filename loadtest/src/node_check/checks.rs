//! The checks, in table order. Each opens the links it needs, closes them
//! before it returns, and turns what it saw into one [`Row`]; `--help`
//! (`CHECKS_HELP`) states each one's pass criteria.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringgate::config::DEFAULT_MAX_FRAME_BYTES;
use ringgate::link::proto::{to_gate, CloseReason, EventKind, NodeHello, ToNode};
use ringgate::link::PROTOCOL_VERSION;

use super::gate::{describe, msg_name, show, Expect, Gate, In};
use super::replies::{collect, judge, Strictness, Verdict};
use super::{CheckName, NodeCheckArgs, Row, Status};

mod lifecycle;
use lifecycle::{events, garbage, oversized_frame, reconnect};

/// How long the hello check listens before writing GateHello: a node must
/// not speak first.
const HELLO_QUIET: Duration = Duration::from_millis(200);

/// A version no node speaks.
const BAD_VERSION: u32 = 999;

/// Requests per link in multi-link, and delivers in flight in ping.
const PER_LINK: usize = 20;
const IN_FLIGHT: usize = 200;

/// What every check after hello works with.
struct Ctx<'a> {
    gate: Gate,
    args: &'a NodeCheckArgs,
    /// The hello check's NodeHello.
    hello: NodeHello,
    /// Routes answered with a reply (`--route`, else the announced reply routes).
    reply: Vec<i32>,
    /// Announced routes that are not reply routes.
    notify: Vec<i32>,
    /// GateHello.max_frame_bytes of ordinary links.
    max_frame: u32,
}

/// Runs hello, then the selected checks (all when `--only` is empty).
pub(super) fn run_all(addr: SocketAddr, args: &NodeCheckArgs) -> Vec<Row> {
    let max_frame = u32::try_from(DEFAULT_MAX_FRAME_BYTES).unwrap_or(u32::MAX);
    let mut gate = Gate::new(addr, args.links, args.timeout);
    let (row, hello) = hello(&mut gate, max_frame);
    let mut rows = vec![row];
    let selected = |c: CheckName| args.only.is_empty() || args.only.contains(&c);
    let hello = match hello {
        Some(h)
            if !(h.routes.is_empty() && h.reply_routes.is_empty() && args.routes.is_empty()) =>
        {
            h
        }
        h => {
            let why = if h.is_some() {
                "needs a route to deliver to"
            } else {
                "needs a NodeHello"
            };
            for &c in &CheckName::ALL[1..] {
                if selected(c) {
                    rows.push(skip(c, format!("{why} (see hello)")));
                }
            }
            return rows;
        }
    };
    let reply = if args.routes.is_empty() {
        dedup(hello.reply_routes.iter().map(|r| r.route))
    } else {
        dedup(args.routes.iter().copied())
    };
    let notify = dedup(hello.routes.iter().copied().filter(|r| !reply.contains(r)));
    let mut ctx = Ctx {
        gate,
        args,
        hello,
        reply,
        notify,
        max_frame,
    };
    type Check = fn(&mut Ctx<'_>) -> Row;
    let checks: [(CheckName, Check); 10] = [
        (CheckName::Version, version),
        (CheckName::Ping, ping),
        (CheckName::Reply, reply_check),
        (CheckName::MultiLink, multi_link),
        (CheckName::BigBatch, big_batch),
        (CheckName::FrameLimit, frame_limit),
        (CheckName::Events, events),
        (CheckName::Garbage, garbage),
        (CheckName::OversizedFrame, oversized_frame),
        (CheckName::Reconnect, reconnect),
    ];
    for (name, check) in checks {
        if selected(name) {
            let row = check(&mut ctx);
            ctx.gate.close_all();
            rows.push(row);
        }
    }
    if ctx.gate.calls > 0 || ctx.gate.node_pings > 0 {
        eprintln!(
            "node-check: the node made {} call(s) and sent {} ping(s); all answered",
            ctx.gate.calls, ctx.gate.node_pings
        );
    }
    rows
}

fn dedup(routes: impl Iterator<Item = i32>) -> Vec<i32> {
    let set: BTreeSet<i32> = routes.collect();
    set.into_iter().collect()
}

fn row(name: CheckName, ok: bool, detail: String) -> Row {
    Row {
        name,
        status: if ok { Status::Pass } else { Status::Fail },
        detail,
    }
}

fn fail(name: CheckName, detail: String) -> Row {
    row(name, false, detail)
}

fn skip(name: CheckName, detail: String) -> Row {
    Row {
        name,
        status: Status::Skip,
        detail,
    }
}

const NO_REPLY_ROUTE: &str =
    "no reply route (the node announces no reply_routes; --route R checks R as one)";

/// Names of event kinds.
fn kind_name(k: i32) -> String {
    match EventKind::try_from(k) {
        Ok(EventKind::EventConnect) => "connect".into(),
        Ok(EventKind::EventBind) => "bind".into(),
        Ok(EventKind::EventUnbind) => "unbind".into(),
        Ok(EventKind::EventDisconnect) => "disconnect".into(),
        _ => format!("kind {k}"),
    }
}

/// What a NodeHello announces, for the table.
fn announce(h: &NodeHello) -> String {
    let replies: Vec<String> = h
        .reply_routes
        .iter()
        .map(|r| match r.timeout_ms {
            0 => r.route.to_string(),
            t => format!("{} ({t}ms)", r.route),
        })
        .collect();
    let events: Vec<String> = h.events.iter().map(|&k| kind_name(k)).collect();
    format!(
        "service {:?}, node_id {:?}, routes {:?}, reply_routes [{}], events [{}], \
         max_frame_bytes {}, snapshot {}",
        h.service,
        h.node_id,
        h.routes,
        replies.join(", "),
        events.join(", "),
        h.max_frame_bytes,
        if h.snapshot { "yes" } else { "no" }
    )
}

/// Values found more than once.
fn twice<T: Ord + Copy>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut seen = BTreeSet::new();
    let mut dup = BTreeSet::new();
    for i in items {
        if !seen.insert(i) {
            dup.insert(i);
        }
    }
    dup.into_iter().collect()
}

/// What a NodeHello breaks of the contract.
fn hello_problems(h: &NodeHello) -> Vec<String> {
    let mut p = Vec::new();
    if h.version != PROTOCOL_VERSION {
        p.push(format!(
            "version {}, expected {PROTOCOL_VERSION}",
            h.version
        ));
    }
    if h.service.is_empty() {
        p.push("empty service".into());
    }
    if h.routes.is_empty() && h.reply_routes.is_empty() {
        p.push("no route in routes or reply_routes".into());
    }
    for r in twice(h.routes.iter().copied()) {
        p.push(format!("route {r} twice in routes"));
    }
    for r in twice(h.reply_routes.iter().map(|r| r.route)) {
        p.push(format!("route {r} twice in reply_routes"));
    }
    for &k in &h.events {
        if !(1..=4).contains(&k) {
            p.push(format!("unknown event kind {k}"));
        }
    }
    for k in twice(h.events.iter().copied()) {
        p.push(format!("event {} twice", kind_name(k)));
    }
    p
}

/// hello: silence before GateHello, then a well-formed NodeHello first.
fn hello(gate: &mut Gate, max_frame: u32) -> (Row, Option<NodeHello>) {
    let name = CheckName::Hello;
    let link = match gate.connect(0, max_frame) {
        Ok(l) => l,
        Err(e) => return (fail(name, e), None),
    };
    if let Some(ev) = gate.recv_on(link, Instant::now() + HELLO_QUIET) {
        let what = describe(&ev);
        gate.close(link);
        return (fail(name, format!("{what} before the gate's hello")), None);
    }
    let h = match gate.handshake(link, max_frame) {
        Ok(h) => h,
        Err(e) => {
            gate.close(link);
            return (fail(name, e), None);
        }
    };
    gate.close(link);
    let problems = hello_problems(&h);
    let mut detail = announce(&h);
    let reply: BTreeSet<i32> = h.reply_routes.iter().map(|r| r.route).collect();
    let both: Vec<i32> = h
        .routes
        .iter()
        .copied()
        .filter(|r| reply.contains(r))
        .collect();
    if !both.is_empty() {
        detail.push_str(&format!("; {both:?} in both lists: reply routes"));
    }
    if problems.is_empty() {
        (row(name, true, detail), Some(h))
    } else {
        let ok = h.version == PROTOCOL_VERSION;
        let detail = format!("{}; {detail}", problems.join("; "));
        // A NodeHello of another version ends the run: nothing else would
        // mean anything. Other faults are reported and the checks go on.
        (fail(name, detail), ok.then_some(h))
    }
}

/// version: GateHello 999 → the node closes; then a good link works.
fn version(ctx: &mut Ctx<'_>) -> Row {
    let name = CheckName::Version;
    let g = &mut ctx.gate;
    let link = match g.connect(0, ctx.max_frame) {
        Ok(l) => l,
        Err(e) => return fail(name, e),
    };
    let bad = g.gate_hello(0, BAD_VERSION, ctx.max_frame);
    if let Err(e) = g.send(link, &[bad]) {
        return fail(name, e);
    }
    let start = Instant::now();
    let deadline = g.deadline();
    let mut said = Vec::new();
    let closed = loop {
        match g.recv_on(link, deadline) {
            None => {
                break Err(format!(
                    "link still open {} after GateHello version {BAD_VERSION}",
                    show(g.timeout)
                ))
            }
            Some(In::Eof(why)) => break Ok(why),
            Some(In::Broken(e)) => break Err(e),
            Some(In::Msg(m)) => said.push(msg_name(&m)),
            Some(In::OverLimit { .. }) => {}
        }
    };
    g.close(link);
    let took = start.elapsed();
    let sent = if said.is_empty() {
        String::new()
    } else {
        format!(", having sent {}", said.join(", "))
    };
    let why = match closed {
        Ok(why) => why,
        Err(e) => return fail(name, format!("{e}{sent}")),
    };
    let detail = format!(
        "version {BAD_VERSION}: closed ({why}) after {}ms{sent}",
        took.as_millis()
    );
    match g.open(0, ctx.max_frame) {
        Ok((l, _)) => {
            g.close(l);
            row(
                name,
                true,
                format!("{detail}; a new link then got NodeHello"),
            )
        }
        Err(e) => fail(name, format!("{detail}; a new link then: {e}")),
    }
}

/// The routes Delivers go to when a check needs traffic: reply routes
/// first, else notification routes.
fn traffic_routes(ctx: &Ctx<'_>) -> (Vec<i32>, bool) {
    if ctx.reply.is_empty() {
        (ctx.notify.clone(), false)
    } else {
        (ctx.reply.clone(), true)
    }
}

/// Connects `sessions` sessions on `link`'s shard and queues `count`
/// Delivers among them, round robin over `routes`, in `out`.
fn traffic(
    ctx: &mut Ctx<'_>,
    link: usize,
    sessions: usize,
    count: usize,
    routes: &[i32],
    reply: bool,
    out: &mut Vec<ToNode>,
) -> (Vec<u64>, Vec<Expect>) {
    let shard = ctx.gate.shard_of(link);
    let sids: Vec<u64> = (0..sessions.max(1))
        .map(|_| ctx.gate.connect_session(Some(link), shard, out))
        .collect();
    let payload: Bytes = ctx.args.payload.clone();
    let sent = (0..count)
        .map(|i| {
            let route = routes[i % routes.len()];
            ctx.gate
                .deliver(link, sids[i % sids.len()], route, reply, &payload, out)
        })
        .collect();
    (sids, sent)
}

/// ping: idle, then right behind a frame of Delivers.
fn ping(ctx: &mut Ctx<'_>) -> Row {
    let name = CheckName::Ping;
    let (link, _) = match ctx.gate.open(0, ctx.max_frame) {
        Ok(l) => l,
        Err(e) => return fail(name, e),
    };
    let g = &mut ctx.gate;
    let nonce = match g.ping(link) {
        Ok(n) => n,
        Err(e) => return fail(name, e),
    };
    let deadline = g.deadline();
    let idle = loop {
        match g.recv_on(link, deadline) {
            None => break Err(format!("no Pong within {}", show(g.timeout))),
            Some(In::Msg(to_gate::Msg::Pong(p))) if p.nonce == nonce => break Ok(()),
            Some(In::Msg(to_gate::Msg::Pong(p))) => {
                break Err(format!("Pong {:#x} for Ping {nonce:#x}", p.nonce))
            }
            Some(ev @ (In::Eof(_) | In::Broken(_) | In::OverLimit { .. })) => {
                break Err(describe(&ev))
            }
            Some(In::Msg(_)) => {}
        }
    };
    if let Err(e) = idle {
        return fail(name, format!("idle: {e}"));
    }
    let (routes, reply) = traffic_routes(ctx);
    let mut out = Vec::new();
    let (sids, sent) = traffic(ctx, link, 4, IN_FLIGHT, &routes, reply, &mut out);
    let g = &mut ctx.gate;
    if let Err(e) = g.send(link, &out) {
        return fail(name, e);
    }
    let busy = match g.ping(link) {
        Ok(n) => n,
        Err(e) => return fail(name, e),
    };
    let got = collect(g, &sent, &[link]);
    g.end_sessions(link, &sids);
    let v = judge(&sent, &got, Strictness::Answered);
    let kind = if reply { "requests" } else { "notifications" };
    if !got.pongs.contains(&(link, busy)) {
        return fail(
            name,
            format!(
                "idle Pong ok; no Pong for the Ping behind {IN_FLIGHT} {kind}; {}",
                v.errors.join("; ")
            ),
        );
    }
    let mut detail = format!("idle Pong ok (nonce {nonce:#x}); Pong behind {IN_FLIGHT} {kind} ok");
    if reply {
        detail.push_str(&format!(
            ", {}/{} answered{}",
            v.answered,
            v.asked,
            v.id_note()
        ));
    }
    if !v.ok {
        detail = format!("{}; {detail}", v.errors.join("; "));
    }
    row(name, v.ok, detail)
}

/// reply: exactly one Push per request, carrying its ids; none with an id
/// for notifications.
fn reply_check(ctx: &mut Ctx<'_>) -> Row {
    let name = CheckName::Reply;
    let (link, _) = match ctx.gate.open(0, ctx.max_frame) {
        Ok(l) => l,
        Err(e) => return fail(name, e),
    };
    let mut out = Vec::new();
    let mut sids = Vec::new();
    let mut sent = Vec::new();
    for (routes, reply) in [(ctx.reply.clone(), true), (ctx.notify.clone(), false)] {
        for r in routes {
            let (s, e) = traffic(ctx, link, 2, 4, &[r], reply, &mut out);
            sids.extend(s);
            sent.extend(e);
        }
    }
    let g = &mut ctx.gate;
    if let Err(e) = g.send(link, &out) {
        return fail(name, e);
    }
    let got = collect(g, &sent, &[link]);
    g.end_sessions(link, &sids);
    let v = judge(&sent, &got, Strictness::Ids);
    let mut parts = Vec::new();
    for &r in &ctx.reply {
        let on_route: Vec<&Expect> = sent.iter().filter(|e| e.route == r).collect();
        let ok = on_route
            .iter()
            .filter(|e| got.replies.get(&e.request_id).is_some_and(|p| p.len() == 1))
            .count();
        let announced =
            ctx.hello.routes.contains(&r) || ctx.hello.reply_routes.iter().any(|s| s.route == r);
        let note = if announced { "" } else { " (not announced)" };
        parts.push(format!(
            "route {r}{note}: {ok}/{} answered once",
            on_route.len()
        ));
    }
    if !ctx.notify.is_empty() {
        parts.push(format!(
            "notification routes {:?}: {} Delivers, {} Push(es) without id",
            ctx.notify,
            ctx.notify.len() * 4,
            got.other_pushes
        ));
    }
    let detail = parts.join("; ");
    if !v.ok {
        return fail(name, format!("{}; {detail}", v.errors.join("; ")));
    }
    if ctx.reply.is_empty() {
        return skip(name, format!("{NO_REPLY_ROUTE}; {detail}"));
    }
    row(name, true, detail)
}

/// Describes which links replies came on: link ids are shown as the
/// shards they serve.
fn paths(g: &Gate, v: &Verdict) -> String {
    let own: usize = v
        .paths
        .iter()
        .filter(|((a, b), _)| a == b)
        .map(|(_, n)| n)
        .sum();
    let other: Vec<String> = v
        .paths
        .iter()
        .filter(|((a, b), _)| a != b)
        .map(|((a, b), n)| {
            format!(
                "{n} sent on shard {} came on shard {}",
                g.shard_of(*a),
                g.shard_of(*b)
            )
        })
        .collect();
    if other.is_empty() {
        format!("all {own} on the link they were sent on")
    } else {
        format!("{own} on their own link, {} (allowed)", other.join(", "))
    }
}

/// Opens a link per shard; checks their hellos agree with the first one.
fn open_all(ctx: &mut Ctx<'_>) -> Result<Vec<usize>, String> {
    let mut links = Vec::new();
    for shard in 0..ctx.gate.shard_count() {
        let (l, h) = ctx
            .gate
            .open(shard, ctx.max_frame)
            .map_err(|e| format!("link of shard {shard}: {e}"))?;
        links.push(l);
        if h.node_id != ctx.hello.node_id {
            return Err(format!(
                "shard {shard}'s NodeHello has node_id {:?}, the first had {:?} (every link of a node sends the same id)",
                h.node_id, ctx.hello.node_id
            ));
        }
        if h.service != ctx.hello.service {
            return Err(format!(
                "shard {shard}'s NodeHello has service {:?}, the first had {:?}",
                h.service, ctx.hello.service
            ));
        }
    }
    Ok(links)
}

/// Sends `per_link` Delivers on every link and judges the replies.
fn traffic_on_all(ctx: &mut Ctx<'_>, links: &[usize], per_link: usize) -> Result<Verdict, String> {
    let (routes, reply) = traffic_routes(ctx);
    let mut sent = Vec::new();
    let mut sessions = Vec::new();
    for &l in links {
        let mut out = Vec::new();
        let (sids, s) = traffic(ctx, l, 2, per_link, &routes, reply, &mut out);
        ctx.gate.send(l, &out)?;
        sessions.push((l, sids));
        sent.extend(s);
    }
    let got = collect(&mut ctx.gate, &sent, links);
    for (l, sids) in sessions {
        ctx.gate.end_sessions(l, &sids);
    }
    Ok(judge(&sent, &got, Strictness::Answered))
}

/// multi-link: N links at once, replies accepted on any of them.
fn multi_link(ctx: &mut Ctx<'_>) -> Row {
    let name = CheckName::MultiLink;
    if ctx.reply.is_empty() {
        return skip(name, NO_REPLY_ROUTE.into());
    }
    let links = match open_all(ctx) {
        Ok(l) => l,
        Err(e) => return fail(name, e),
    };
    let v = match traffic_on_all(ctx, &links, PER_LINK) {
        Ok(v) => v,
        Err(e) => return fail(name, e),
    };
    let detail = format!(
        "{} links, same node_id; {}/{} answered{}: {}",
        links.len(),
        v.answered,
        v.asked,
        v.id_note(),
        paths(&ctx.gate, &v)
    );
    if v.ok {
        row(name, true, detail)
    } else {
        fail(name, format!("{}; {detail}", v.errors.join("; ")))
    }
}

/// big-batch: `--batch` Delivers in one frame.
fn big_batch(ctx: &mut Ctx<'_>) -> Row {
    let name = CheckName::BigBatch;
    if ctx.reply.is_empty() {
        return skip(name, NO_REPLY_ROUTE.into());
    }
    let (link, _) = match ctx.gate.open(0, ctx.max_frame) {
        Ok(l) => l,
        Err(e) => return fail(name, e),
    };
    let n = ctx.args.batch as usize;
    let mut connects = Vec::new();
    let routes = ctx.reply.clone();
    let (sids, sent) = traffic(ctx, link, n.min(100), 0, &routes, true, &mut connects);
    let mut out = Vec::new();
    let payload = ctx.args.payload.clone();
    let sent: Vec<Expect> = sent
        .into_iter()
        .chain((0..n).map(|i| {
            let route = routes[i % routes.len()];
            ctx.gate
                .deliver(link, sids[i % sids.len()], route, true, &payload, &mut out)
        }))
        .collect();
    let g = &mut ctx.gate;
    if !connects.is_empty() {
        if let Err(e) = g.send(link, &connects) {
            return fail(name, e);
        }
    }
    let (frames_before, _) = g.frame_stats(link);
    let (frames, bytes) = match g.send(link, &out) {
        Ok(f) => f,
        Err(e) => return fail(name, e),
    };
    let got = collect(g, &sent, &[link]);
    g.end_sessions(link, &sids);
    let (frames_after, _) = g.frame_stats(link);
    let v = judge(&sent, &got, Strictness::Ids);
    let mut detail = format!(
        "{n} Delivers from {} sessions in {frames} frame(s) of {bytes} bytes: {}/{} answered once",
        sids.len(),
        v.answered,
        v.asked
    );
    if frames > 1 {
        detail.push_str(" (split by the node's max_frame_bytes)");
    }
    detail.push_str(&format!(
        ", replies in {} frame(s)",
        frames_after.saturating_sub(frames_before)
    ));
    if v.ok {
        row(name, true, detail)
    } else {
        fail(name, format!("{}; {detail}", v.errors.join("; ")))
    }
}

/// frame-limit: a small GateHello.max_frame_bytes is respected.
fn frame_limit(ctx: &mut Ctx<'_>) -> Row {
    let name = CheckName::FrameLimit;
    if ctx.reply.is_empty() {
        return skip(name, NO_REPLY_ROUTE.into());
    }
    let per_reply = ctx.args.payload.len() + 32;
    // One reply must fit, or no node could comply.
    let limit = (ctx.args.frame_limit as usize).max(per_reply + 256);
    let limit32 = u32::try_from(limit).unwrap_or(u32::MAX);
    // Enough replies for about eight full frames.
    let n = (8 * limit / per_reply).clamp(200, 5000);
    let g = &mut ctx.gate;
    let link = match g.connect(0, limit32) {
        Ok(l) => l,
        Err(e) => return fail(name, e),
    };
    if let Err(e) = g.handshake(link, limit32) {
        return fail(name, e);
    }
    let mut out = Vec::new();
    let routes = ctx.reply.clone();
    let (sids, sent) = traffic(ctx, link, 20, n, &routes, true, &mut out);
    let g = &mut ctx.gate;
    if let Err(e) = g.send(link, &out) {
        return fail(name, e);
    }
    let got = collect(g, &sent, &[link]);
    g.end_sessions(link, &sids);
    let (frames, largest) = g.frame_stats(link);
    let v = judge(&sent, &got, Strictness::Answered);
    let mut detail = format!(
        "GateHello.max_frame_bytes {limit}: {n} requests, {}/{} answered{}, {frames} frames from the node, largest {largest} bytes",
        v.answered,
        v.asked,
        v.id_note()
    );
    if limit != ctx.args.frame_limit as usize {
        detail.push_str(&format!(
            " (limit raised from {} so one reply fits)",
            ctx.args.frame_limit
        ));
    }
    if frames <= 2 {
        detail.push_str(" (the replies fit one frame: the limit was hardly exercised)");
    }
    if v.ok {
        row(name, true, detail)
    } else {
        fail(name, format!("{}; {detail}", v.errors.join("; ")))
    }
}
