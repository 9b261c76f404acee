//! Waiting for the answers to a set of Delivers and judging them: every
//! request answered by exactly one Push carrying its request id, session,
//! route and seq (on any link), no Push with a request id the checker never
//! sent, the links kept up.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use ringgate::link::proto::{to_gate, Push};

use super::gate::{describe, Expect, Gate, In};

/// After the last expected reply and a ping round trip on every link, the
/// checker keeps reading this long for duplicates.
pub(super) const SETTLE: Duration = Duration::from_millis(100);

/// What came back for a set of Delivers.
#[derive(Debug, Default)]
pub(super) struct Collected {
    /// Replies per request id: (link it came on, the Push).
    pub(super) replies: HashMap<u64, Vec<(usize, Push)>>,
    /// Pushes with a request id the checker did not send (or sent for a
    /// notification).
    pub(super) stray: Vec<u64>,
    /// Requests answered by a Push without a request id but with their
    /// session, route and seq (a reply that forgot its id), and the link
    /// the first such Push came on.
    pub(super) unnumbered: HashMap<u64, usize>,
    /// Other pushes without a request id (a node may push at will).
    pub(super) other_pushes: usize,
    /// Pongs seen, by nonce.
    pub(super) pongs: Vec<(usize, u64)>,
    /// Protocol breaches and links lost, in order.
    pub(super) problems: Vec<String>,
    /// Links that went down.
    pub(super) down: Vec<usize>,
}

/// The requests of one `collect`, indexed both ways.
struct Want<'a> {
    by_id: HashMap<u64, &'a Expect>,
    /// (session, route, seq) → request id, to recognise a reply without its id.
    by_fields: HashMap<(u64, i32, i32), u64>,
}

impl<'a> Want<'a> {
    fn new(sent: &'a [Expect]) -> Self {
        let asked = sent.iter().filter(|e| e.request_id != 0);
        Want {
            by_id: asked.clone().map(|e| (e.request_id, e)).collect(),
            by_fields: asked
                .map(|e| ((e.session_id, e.route, e.seq), e.request_id))
                .collect(),
        }
    }
}

impl Collected {
    fn take(&mut self, link: usize, ev: In, want: &Want<'_>) {
        match ev {
            In::Msg(to_gate::Msg::Push(p)) => {
                if p.request_id != 0 {
                    if want.by_id.contains_key(&p.request_id) {
                        self.replies
                            .entry(p.request_id)
                            .or_default()
                            .push((link, p));
                    } else {
                        self.stray.push(p.request_id);
                    }
                } else if let Some(&id) = want.by_fields.get(&(p.session_id, p.route, p.seq)) {
                    self.unnumbered.entry(id).or_insert(link);
                } else {
                    self.other_pushes += 1;
                }
            }
            In::Msg(to_gate::Msg::Pong(p)) => self.pongs.push((link, p.nonce)),
            In::Msg(to_gate::Msg::Hello(_)) => {
                self.problems
                    .push(format!("link {link}: a second NodeHello"));
            }
            In::Msg(_) => {}
            ev @ (In::Eof(_) | In::Broken(_)) => {
                self.down.push(link);
                self.problems
                    .push(format!("link {link}: {}", describe(&ev)));
            }
            ev @ In::OverLimit { .. } => {
                self.problems
                    .push(format!("link {link}: {}", describe(&ev)));
            }
        }
    }

    /// True once every request has a Push: with its id, or (a reply that
    /// forgot its id) with its session, route and seq.
    fn complete(&self, want: &Want<'_>) -> bool {
        want.by_id
            .keys()
            .all(|id| self.replies.contains_key(id) || self.unnumbered.contains_key(id))
    }
}

/// Waits (until the gate's timeout) for the replies to `sent`, then sends a
/// ping on every link still up in `links`, waits for their pongs and reads
/// [`SETTLE`] longer, so that a duplicate or stray Push written right after
/// is seen.
pub(super) fn collect(gate: &mut Gate, sent: &[Expect], links: &[usize]) -> Collected {
    let want = Want::new(sent);
    let mut got = Collected::default();
    let deadline = gate.deadline();
    // Once every link is down no answer can come: no need to wait longer.
    let all_down = |gate: &Gate| links.iter().all(|&l| !gate.is_up(l));
    while !got.complete(&want) && !all_down(gate) {
        let Some((link, ev)) = gate.recv(deadline) else {
            break;
        };
        got.take(link, ev, &want);
    }
    // Barrier: a pong on every link says the node has handled what came
    // before it; then a short quiet read for late duplicates.
    let mut nonces = Vec::new();
    for &l in links {
        if gate.is_up(l) {
            if let Ok(n) = gate.ping(l) {
                nonces.push((l, n));
            }
        }
    }
    let barrier_end = gate.deadline();
    while !nonces
        .iter()
        .all(|n| got.pongs.contains(n) || !gate.is_up(n.0))
    {
        let Some((link, ev)) = gate.recv(barrier_end) else {
            break;
        };
        got.take(link, ev, &want);
    }
    for n in &nonces {
        if gate.is_up(n.0) && !got.pongs.contains(n) {
            got.problems
                .push(format!("link {}: no Pong for a barrier Ping", n.0));
        }
    }
    let settle_end = Instant::now() + SETTLE;
    while !all_down(gate) {
        let Some((link, ev)) = gate.recv(settle_end) else {
            break;
        };
        got.take(link, ev, &want);
    }
    got
}

/// How strictly replies are judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Strictness {
    /// The reply contract itself (reply, big-batch): exactly one Push per
    /// request carrying its request_id, session, route and seq; no Push with
    /// an id never asked for.
    Ids,
    /// Liveness (the other checks): a request counts as answered by a Push
    /// carrying its id or, lacking an id, its session, route and seq; ids,
    /// duplicates and strays are left to reply and big-batch, so one fault
    /// fails one row, not every row.
    Answered,
}

/// The verdict on one set of requests.
#[derive(Debug, Default)]
pub(super) struct Verdict {
    pub(super) ok: bool,
    /// Requests answered (by the standard of the strictness).
    pub(super) answered: usize,
    /// Requests expecting a reply.
    pub(super) asked: usize,
    /// Answered without the request id (counted in `answered` only when
    /// judging liveness).
    pub(super) without_id: usize,
    /// How many replies came on each (sent-on, came-on) pair of links.
    pub(super) paths: BTreeMap<(usize, usize), usize>,
    /// What went wrong, for the table.
    pub(super) errors: Vec<String>,
}

impl Verdict {
    /// `" (N without request_id: see reply)"` when some replies lacked their id.
    pub(super) fn id_note(&self) -> String {
        if self.without_id > 0 {
            format!(" ({} without request_id: see reply)", self.without_id)
        } else {
            String::new()
        }
    }
}

/// Judges what came back for `sent`.
pub(super) fn judge(sent: &[Expect], got: &Collected, strictness: Strictness) -> Verdict {
    let strict = strictness == Strictness::Ids;
    let mut v = Verdict::default();
    // A lost link first: it explains what follows.
    v.errors.extend(got.problems.iter().cloned());
    let mut missing = Vec::new();
    let mut duplicated = Vec::new();
    let mut wrong = Vec::new();
    for e in sent.iter().filter(|e| e.request_id != 0) {
        v.asked += 1;
        let Some(replies) = got.replies.get(&e.request_id) else {
            match got.unnumbered.get(&e.request_id) {
                Some(&link) => {
                    v.without_id += 1;
                    if strict {
                        missing.push(e.request_id);
                    } else {
                        v.answered += 1;
                        *v.paths.entry((e.link, link)).or_default() += 1;
                    }
                }
                None => missing.push(e.request_id),
            }
            continue;
        };
        v.answered += 1;
        if replies.len() > 1 {
            duplicated.push(e.request_id);
        }
        let (link, p) = &replies[0];
        *v.paths.entry((e.link, *link)).or_default() += 1;
        if (p.session_id, p.route, p.seq) != (e.session_id, e.route, e.seq) {
            wrong.push(format!(
                "request {} (session {:#x} route {} seq {}) answered with session {:#x} route {} seq {}",
                e.request_id, e.session_id, e.route, e.seq, p.session_id, p.route, p.seq
            ));
        }
    }
    if !missing.is_empty() {
        let mut s = format!(
            "{} of {} requests unanswered (ids {})",
            missing.len(),
            v.asked,
            list(&missing)
        );
        if strict && v.without_id > 0 {
            s.push_str(&format!(
                "; {} got a Push with request_id 0 but their session/route/seq: \
                 a reply must carry the Deliver's request_id",
                v.without_id
            ));
        }
        v.errors.push(s);
    }
    if strict {
        if !duplicated.is_empty() {
            v.errors.push(format!(
                "{} requests answered more than once (ids {})",
                duplicated.len(),
                list(&duplicated)
            ));
        }
        if let Some(first) = wrong.first() {
            v.errors
                .push(format!("{} wrong replies, e.g. {first}", wrong.len()));
        }
        if !got.stray.is_empty() {
            v.errors.push(format!(
                "{} Push(es) carry a request_id that was never asked for (ids {})",
                got.stray.len(),
                list(&got.stray)
            ));
        }
    }
    v.ok = v.errors.is_empty();
    v
}

/// At most five ids, then how many more.
pub(super) fn list(ids: &[u64]) -> String {
    let mut s: Vec<String> = ids.iter().take(5).map(u64::to_string).collect();
    if ids.len() > 5 {
        s.push(format!("… {} more", ids.len() - 5));
    }
    s.join(", ")
}
