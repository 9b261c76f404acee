//! The checks about a link's life: events and snapshots across a session's
//! life cycle, links the node must close (garbage, oversized frames), and
//! reconnecting. Split from `checks` by concept; they share its context and
//! helpers.

use super::*;

/// events: a snapshot of sessions live before the link, then a session
/// life cycle in events, with Delivers in between; the link must hold.
pub(super) fn events(ctx: &mut Ctx<'_>) -> Row {
    let name = CheckName::Events;
    let subscribed = ctx.hello.events.clone();
    if subscribed.is_empty() && !ctx.hello.snapshot {
        return skip(
            name,
            "the node subscribes to no events and asks no snapshot".into(),
        );
    }
    let shard = 0;
    let mut lost = Vec::new();
    let mut before = Vec::new();
    if ctx.hello.snapshot {
        // Sessions that connected while no link was up: their events are
        // lost to this node; the snapshot after the hello carries them.
        for i in 0..3 {
            let sid = ctx.gate.connect_session(None, shard, &mut lost);
            if i == 0 {
                ctx.gate.bind(None, sid, 1001, &mut lost);
            }
            before.push(sid);
        }
    }
    let (link, _) = match ctx.gate.open(shard, ctx.max_frame) {
        Ok(l) => l,
        Err(e) => return fail(name, e),
    };
    let pages = if ctx.hello.snapshot {
        ctx.gate.snapshot_pages(shard, 0).len()
    } else {
        0
    };
    let (routes, reply) = traffic_routes(ctx);
    let route = routes[0];
    let payload = ctx.args.payload.clone();
    let g = &mut ctx.gate;
    let mut first = Vec::new();
    let d = g.connect_session(Some(link), shard, &mut first);
    let e = g.connect_session(Some(link), shard, &mut first);
    g.bind(Some(link), d, 2001, &mut first);
    g.bind(Some(link), e, 2002, &mut first);
    let mut sent = vec![g.deliver(link, d, route, reply, &payload, &mut first)];
    let mut second = Vec::new();
    g.unbind(Some(link), d, &mut second);
    sent.push(g.deliver(link, d, route, reply, &payload, &mut second));
    g.bind(Some(link), d, 2003, &mut second);
    sent.push(g.deliver(link, d, route, reply, &payload, &mut second));
    sent.push(g.deliver(link, e, route, reply, &payload, &mut second));
    g.disconnect(Some(link), d, CloseReason::CloseClientClosed, &mut second);
    g.disconnect(
        Some(link),
        e,
        CloseReason::CloseHeartbeatTimeout,
        &mut second,
    );
    let reasons = [
        CloseReason::CloseKicked,
        CloseReason::CloseRebind,
        CloseReason::CloseShutdown,
    ];
    for (sid, reason) in before.iter().zip(reasons) {
        g.disconnect(Some(link), *sid, reason, &mut second);
    }
    let mut counts = [0usize; 5];
    for m in first.iter().chain(&second) {
        if let Some(ringgate::link::proto::to_node::Msg::Event(ev)) = &m.msg {
            counts[ev.kind as usize] += 1;
        }
    }
    for frame in [&first, &second] {
        if let Err(err) = g.send(link, frame) {
            return fail(name, err);
        }
    }
    let got = collect(g, &sent, &[link]);
    let v = judge(&sent, &got, Strictness::Answered);
    let up = g.is_up(link);
    let kinds: Vec<String> = (1..5)
        .filter(|&k| counts[k] > 0)
        .map(|k| format!("{} {}", kind_name(k as i32), counts[k]))
        .collect();
    let mut detail = String::new();
    if ctx.hello.snapshot {
        detail.push_str(&format!(
            "Snapshot of {} sessions in {pages} pages after the hello; ",
            before.len()
        ));
    }
    detail.push_str(&format!(
        "sent {} events ({}; seq consecutive per kind)",
        counts.iter().sum::<usize>(),
        kinds.join(", ")
    ));
    if reply {
        detail.push_str(&format!(
            "; {}/{} Delivers answered{}",
            v.answered,
            v.asked,
            v.id_note()
        ));
    } else {
        detail.push_str(&format!("; {} notifications", sent.len()));
    }
    detail.push_str(if up { "; link kept" } else { "; link lost" });
    if v.ok && up {
        row(name, true, detail)
    } else {
        fail(name, format!("{}; {detail}", v.errors.join("; ")))
    }
}

/// A frame of `body`.
fn frame_of(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

/// An empty batch: valid, and means nothing.
const EMPTY_FRAME: [u8; 4] = [0; 4];

/// Something written on a link that the node should close it for.
struct Poison {
    bytes: Vec<u8>,
    what: String,
    /// False: the contract's wording is not a "must"; a link kept open is
    /// noted in the detail, and only waited for [`ADVISORY_WAIT`].
    required: bool,
}

/// How long an advisory probe waits for the node to close the link.
const ADVISORY_WAIT: Duration = Duration::from_secs(1);

/// A survivor link stays up on another shard while each poison is written
/// on a fresh link of shard 0, which the node must close (or, advisory,
/// should); then (with `empty_frame`, an empty batch written on it first)
/// the survivor must still answer.
fn kill_links(ctx: &mut Ctx<'_>, name: CheckName, poisons: &[Poison], empty_frame: bool) -> Row {
    let (survivor, _) = match ctx.gate.open(1, ctx.max_frame) {
        Ok(l) => l,
        Err(e) => return fail(name, format!("the survivor link: {e}")),
    };
    let mut detail = Vec::new();
    for p in poisons {
        let what = &p.what;
        let (victim, _) = match ctx.gate.open(0, ctx.max_frame) {
            Ok(l) => l,
            Err(e) => return fail(name, format!("{}a link for {what}: {e}", done(&detail))),
        };
        let g = &mut ctx.gate;
        let start = Instant::now();
        if let Err(e) = g.send_raw(victim, &p.bytes) {
            return fail(name, format!("{}writing {what}: {e}", done(&detail)));
        }
        let wait = if p.required {
            g.timeout
        } else {
            g.timeout.min(ADVISORY_WAIT)
        };
        let deadline = Instant::now() + wait;
        let closed = loop {
            match g.recv_on(victim, deadline) {
                None if !p.required => break Ok(None),
                None => break Err(format!("{what}: link still open after {}", show(wait))),
                Some(In::Eof(why)) => break Ok(Some(why)),
                Some(In::Broken(e)) => break Err(format!("{what}: then {e}")),
                Some(_) => {}
            }
        };
        let took = start.elapsed();
        g.close(victim);
        match closed {
            Ok(Some(why)) => detail.push(format!(
                "{what}: closed ({why}) after {}ms",
                took.as_millis()
            )),
            Ok(None) => detail.push(format!(
                "{what}: link kept {} (docs/node-protocol.md calls it a protocol error: \
                 a node should close)",
                show(wait)
            )),
            Err(e) => return fail(name, format!("{}{e}", done(&detail))),
        }
    }
    let mut survived = "the survivor link".to_string();
    if empty_frame {
        if let Err(e) = ctx.gate.send_raw(survivor, &EMPTY_FRAME) {
            return fail(name, format!("{}an empty frame: {e}", done(&detail)));
        }
        survived = "the survivor link, after an empty frame (valid),".into();
    }
    let v = match traffic_on_all(ctx, &[survivor], 1) {
        Ok(v) => v,
        Err(e) => return fail(name, format!("{}{survived} {e}", done(&detail))),
    };
    if !v.ok {
        return fail(
            name,
            format!("{}{survived} {}", done(&detail), v.errors.join("; ")),
        );
    }
    let mut answers = "Pong".to_string();
    if v.asked > 0 {
        answers.push_str(&format!(
            ", {}/{} answered{}",
            v.answered,
            v.asked,
            v.id_note()
        ));
    }
    row(
        name,
        true,
        format!("{}{survived} still answers ({answers})", done(&detail)),
    )
}

/// What went right before a failure, as a prefix.
fn done(detail: &[String]) -> String {
    detail.iter().map(|d| format!("{d}; ")).collect()
}

/// garbage: a frame whose body is not a batch, and a message with no field
/// set; an empty frame, which is valid, on the survivor.
pub(super) fn garbage(ctx: &mut Ctx<'_>) -> Row {
    let poisons = [
        // Field 1 (a ToNode) declared 127 bytes long, one byte present.
        Poison {
            bytes: frame_of(&[0x0a, 0x7f, 0x00]),
            what: "a 3-byte frame that is no ToNodeBatch".into(),
            required: true,
        },
        // Field 1 present and empty: a ToNode with no field set. The proto
        // says nothing; the long-form doc calls it a protocol error without
        // its "must", and the node SDK skips it: advisory.
        Poison {
            bytes: frame_of(&[0x0a, 0x00]),
            what: "a ToNode with no field set".into(),
            required: false,
        },
    ];
    kill_links(ctx, CheckName::Garbage, &poisons, true)
}

/// oversized-frame: a length prefix over the node's own limit (16 MiB when
/// it announced none).
pub(super) fn oversized_frame(ctx: &mut Ctx<'_>) -> Row {
    let name = CheckName::OversizedFrame;
    let (max, which) = match ctx.hello.max_frame_bytes {
        0 => (
            u32::try_from(DEFAULT_MAX_FRAME_BYTES).unwrap_or(u32::MAX),
            "none announced: 16 MiB",
        ),
        n => (n, "max_frame_bytes"),
    };
    let Some(len) = max.checked_add(1) else {
        return skip(
            name,
            "the node announces max_frame_bytes 2^32-1: no frame is larger".into(),
        );
    };
    // The prefix and a little of the body, which never completes.
    let mut frame = len.to_be_bytes().to_vec();
    frame.extend_from_slice(&[0x0a; 16]);
    let what = format!("length prefix {len} ({which} {max} + 1)");
    let poison = Poison {
        bytes: frame,
        what,
        required: true,
    };
    kill_links(ctx, name, &[poison], false)
}

/// reconnect: all links down, then up again with the same node.
pub(super) fn reconnect(ctx: &mut Ctx<'_>) -> Row {
    let name = CheckName::Reconnect;
    let mut detail = Vec::new();
    for round in ["first", "after reconnecting"] {
        let links = match open_all(ctx) {
            Ok(l) => l,
            Err(e) => return fail(name, format!("{round}: {e}")),
        };
        let v = match traffic_on_all(ctx, &links, 5) {
            Ok(v) => v,
            Err(e) => return fail(name, format!("{round}: {e}")),
        };
        if !v.ok {
            return fail(name, format!("{round}: {}", v.errors.join("; ")));
        }
        detail.push(if v.asked > 0 {
            format!(
                "{round}: {} links, {}/{} answered{}",
                links.len(),
                v.answered,
                v.asked,
                v.id_note()
            )
        } else {
            format!("{round}: {} links, Pongs", links.len())
        });
        ctx.gate.close_all();
    }
    row(
        name,
        true,
        format!("{}; NodeHellos with the same node_id", detail.join("; ")),
    )
}
