//! A chat node: login (bind a user), rooms (gate channels), room messages
//! (publish) and whispers (push to a user). Shows the node SDK's calls to
//! the gate and its session events. Protocol and bytes: `docs/chat.md`.
//!
//! ```text
//! cargo run --release --example chat_node                    # cfg.nodes[0].addr
//! cargo run --release --example chat_node -- --listen 127.0.0.1:3601
//! cargo run --release --example chat_node -- --config etc/ringgate.toml --workers 8
//! ```
//! Options: `--listen ADDR` (overrides the config), `--config PATH` (default:
//! `etc/ringgate.toml` if present, else the embedded defaults), `--workers N`
//! (default 4; handlers make blocking calls to the gate, so they run on a
//! pool, never inline on the link threads).
//!
//! | route | request payload | reply (same route and seq) |
//! |---|---|---|
//! | 1 login | decimal uid, e.g. `42` | `ok 42` / `error <reason>` |
//! | 2 join | room name | `joined <room>` / `error not logged in` |
//! | 3 say | text | `sent`; every member of the session's rooms gets route 100 `<uid>@<room>: <text>` |
//! | 4 whisper | `<to_uid> <text>` | `delivered` / `error offline`; the user gets route 101 `<from_uid>: <text>` |
//!
//! MQTT clients reach the same routes as mqant module `Chat`: topics
//! `Chat/HD_Login/<msgid>`, `Chat/HD_Join/..`, `Chat/HD_Say/..`,
//! `Chat/HD_Whisper/..`; the replies are text (`reply_string`: in mqant's
//! wrapper `Result` is a JSON string; due clients see no difference). Room messages and
//! whispers are pushed on routes 100 and 101, which have no name: MQTT
//! clients get them on topics `100` and `101`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context as _};
use ringgate::config::Config;
use ringgate::node::{Context, EventContext, EventKind, Node, NodeBuilder, NodeError};
use ringgate::{SessionId, UserId};
use tracing::info;

/// The service name, also mqant's module name for MQTT topics (`Chat/HD_Login/1`).
pub const SERVICE: &str = "Chat";
/// Route of `login`.
pub const LOGIN: i32 = 1;
/// Route of `join`.
pub const JOIN: i32 = 2;
/// Route of `say`.
pub const SAY: i32 = 3;
/// Route of `whisper`.
pub const WHISPER: i32 = 4;
/// Route of room messages pushed to room members.
pub const ROOM_MESSAGE: i32 = 100;
/// Route of whispers pushed to their recipient.
pub const WHISPER_MESSAGE: i32 = 101;

/// Default handler threads.
const DEFAULT_WORKERS: usize = 4;

/// Session events seen, by kind (also logged one line each).
pub static CONNECTS: AtomicU64 = AtomicU64::new(0);
/// See [`CONNECTS`].
pub static BINDS: AtomicU64 = AtomicU64::new(0);
/// See [`CONNECTS`].
pub static DISCONNECTS: AtomicU64 = AtomicU64::new(0);

/// What the node remembers: the rooms each session joined. The gate keeps
/// the channel memberships themselves (and drops them when a session ends);
/// this is only so `say` knows where to publish.
#[derive(Default)]
pub struct Chat {
    rooms: Mutex<HashMap<SessionId, Vec<String>>>,
}

impl Chat {
    /// Rooms `session` joined, in join order.
    pub fn rooms_of(&self, session: SessionId) -> Vec<String> {
        let rooms = self.rooms.lock().unwrap();
        rooms.get(&session).cloned().unwrap_or_default()
    }

    /// Sessions the node holds room state for.
    pub fn sessions(&self) -> usize {
        self.rooms.lock().unwrap().len()
    }
}

/// The chat service: routes and event handlers, without listen address or
/// worker count (the caller chooses; use `workers(n > 0)`).
///
/// Every route answers each request on every path (an `ok`/`error` text),
/// so all four are answered routes (`route`): the gate tracks each request
/// and answers the client itself if the node does not. None is a
/// notification (`notify`). Their handlers wait for the gate's results
/// (each call at most the node's call timeout, 3 s by default) before
/// replying; with a gate whose `link.request_timeout` is shorter than that,
/// `reply_timeout` should give these routes more.
pub fn chat(state: Arc<Chat>) -> NodeBuilder {
    let (s_join, s_say, s_event) = (state.clone(), state.clone(), state);
    Node::builder(SERVICE)
        .route(LOGIN, login)
        .route(JOIN, move |ctx: &mut Context| join(&s_join, ctx))
        .route(SAY, move |ctx: &mut Context| say(&s_say, ctx))
        .route(WHISPER, whisper)
        .name(LOGIN, "HD_Login")
        .name(JOIN, "HD_Join")
        .name(SAY, "HD_Say")
        .name(WHISPER, "HD_Whisper")
        .push_topic(ROOM_MESSAGE, "Chat/OnChat")
        .push_topic(WHISPER_MESSAGE, "Chat/OnWhisper")
        .on_event(
            &[EventKind::Connect, EventKind::Bind, EventKind::Disconnect],
            move |ev: &mut EventContext| event(&s_event, ev),
        )
}

fn text<'c>(ctx: &'c Context<'_>) -> Result<&'c str, String> {
    std::str::from_utf8(ctx.payload()).map_err(|_| "error payload is not UTF-8".to_string())
}

fn login(ctx: &mut Context) {
    let uid = match text(ctx).map(|t| t.trim().parse::<i64>()) {
        Ok(Ok(uid)) if uid > 0 => UserId(uid),
        Ok(_) => return ctx.reply_string("error uid must be a positive decimal number"),
        Err(e) => return ctx.reply_string(e),
    };
    match ctx.bind(uid) {
        Ok(()) => ctx.reply_string(format!("ok {}", uid.0)),
        Err(e) => ctx.reply_string(format!("error {e}")),
    }
}

fn join(state: &Chat, ctx: &mut Context) {
    if ctx.uid() == UserId(0) {
        return ctx.reply_string("error not logged in");
    }
    let room = match text(ctx) {
        Ok(r) if !r.trim().is_empty() => r.trim().to_string(),
        Ok(_) => return ctx.reply_string("error empty room name"),
        Err(e) => return ctx.reply_string(e),
    };
    if let Err(e) = ctx.subscribe(&format!("room:{room}")) {
        return ctx.reply_string(format!("error {e}"));
    }
    let mut rooms = state.rooms.lock().unwrap();
    let mine = rooms.entry(ctx.session()).or_default();
    if !mine.contains(&room) {
        mine.push(room.clone());
    }
    drop(rooms);
    ctx.reply_string(format!("joined {room}"));
}

fn say(state: &Chat, ctx: &mut Context) {
    let uid = ctx.uid();
    if uid == UserId(0) {
        return ctx.reply_string("error not logged in");
    }
    let said = match text(ctx) {
        Ok(t) => t.to_string(),
        Err(e) => return ctx.reply_string(e),
    };
    let rooms = state.rooms_of(ctx.session());
    if rooms.is_empty() {
        return ctx.reply_string("error not in a room");
    }
    // The handler's client sends on this request's link: the room message
    // reaches the sender (a member) before the "sent" reply.
    let gate = ctx.gate();
    for room in &rooms {
        let msg = format!("{}@{room}: {said}", uid.0);
        if let Err(e) = gate.publish(&format!("room:{room}"), ROOM_MESSAGE, 0, msg) {
            return ctx.reply_string(format!("error {e}"));
        }
    }
    ctx.reply_string("sent");
}

fn whisper(ctx: &mut Context) {
    let from = ctx.uid();
    if from == UserId(0) {
        return ctx.reply_string("error not logged in");
    }
    let parsed = text(ctx).map(|t| {
        let (to, said) = t.split_once(' ').unwrap_or((t, ""));
        (to.parse::<i64>(), said.to_string())
    });
    let (to, said) = match parsed {
        Ok((Ok(to), said)) if to > 0 => (UserId(to), said),
        Ok(_) => return ctx.reply_string("error expected \"<to_uid> <text>\""),
        Err(e) => return ctx.reply_string(e),
    };
    let msg = format!("{}: {said}", from.0);
    match ctx.push(to, WHISPER_MESSAGE, 0, msg) {
        Ok(()) => ctx.reply_string("delivered"),
        Err(NodeError::NotFound) => ctx.reply_string("error offline"),
        Err(e) => ctx.reply_string(format!("error {e}")),
    }
}

fn event(state: &Chat, ev: &mut EventContext) {
    match ev.kind() {
        EventKind::Connect => {
            let n = CONNECTS.fetch_add(1, Ordering::Relaxed) + 1;
            info!(session = %ev.session(), ip = ev.ip(), port = ev.port(), network = ev.network(), connects = n, "chat: connect");
        }
        EventKind::Bind => {
            let n = BINDS.fetch_add(1, Ordering::Relaxed) + 1;
            info!(session = %ev.session(), uid = ev.uid().0, binds = n, "chat: bind");
        }
        EventKind::Disconnect => {
            let n = DISCONNECTS.fetch_add(1, Ordering::Relaxed) + 1;
            state.rooms.lock().unwrap().remove(&ev.session());
            info!(session = %ev.session(), uid = ev.uid().0, reason = %ev.reason(), disconnects = n, "chat: disconnect");
        }
        EventKind::Unbind => {}
        EventKind::Drain => info!(gate = ev.gate_id(), "chat: a gate is draining"),
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let mut listen: Option<SocketAddr> = None;
    let mut config: Option<PathBuf> = None;
    let mut workers = DEFAULT_WORKERS;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--listen" => listen = Some(value("--listen")?.parse().context("--listen ADDR")?),
            "--config" => config = Some(value("--config")?.into()),
            "--workers" => workers = value("--workers")?.parse().context("--workers N")?,
            "-h" | "--help" => {
                println!("usage: chat_node [--listen ADDR] [--config PATH] [--workers N]");
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    if workers == 0 {
        bail!("--workers must be at least 1: chat handlers wait for the gate");
    }

    let addr = match listen {
        Some(addr) => addr,
        None => {
            let (cfg, origin) = Config::load_or_default(config.as_deref())?;
            match cfg.nodes.first() {
                Some(n) => n.addr,
                None => bail!("{origin} lists no [[nodes]]; pass --listen ADDR"),
            }
        }
    };

    let node = chat(Arc::new(Chat::default()))
        .listen(addr)
        .workers(workers)
        .bind()?;
    println!(
        "chat node \"{SERVICE}\" serving routes {LOGIN}-{WHISPER} on {} ({workers} workers)",
        node.local_addr()
    );
    node.run()?;
    Ok(())
}
