//! The suite's node: echoes (route [`ECHO`]), logs users in (route
//! [`LOGIN`], payload the uid), counts session events, and pushes to the
//! canary and broadcasts to every bound session on a thread of its own.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use ringgate::node::{Context, EventContext, EventKind, GateClient, Node, NodeHandle};
use ringgate::UserId;

/// The echo route.
pub const ECHO: i32 = 1;
/// The log-in route.
pub const LOGIN: i32 = 2;
/// Pushes to the canary, by uid; payload its number (u64, big-endian).
pub const PUSH: i32 = 100;
/// Broadcasts to bound sessions; payload its number.
pub const BROADCAST: i32 = 101;
/// Floods to the never-reading clients.
pub const FLOOD: i32 = 102;

/// Session events seen.
#[derive(Debug, Default)]
pub struct Events {
    pub connects: AtomicU64,
    pub disconnects: AtomicU64,
}

pub struct HostileNode {
    pub handle: NodeHandle,
    pub events: Arc<Events>,
}

impl HostileNode {
    pub fn start() -> HostileNode {
        let events = Arc::new(Events::default());
        let ev = events.clone();
        let handle = Node::builder("hostile")
            .listen("127.0.0.1:0".parse().unwrap())
            // Log-ins bind, a blocking call: on workers.
            .workers(4)
            .route(ECHO, |ctx: &mut Context| {
                let p = ctx.payload().clone();
                ctx.reply(p);
            })
            .route(LOGIN, |ctx: &mut Context| {
                let uid = std::str::from_utf8(ctx.payload())
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok());
                match uid.map(|u| ctx.bind(UserId(u))) {
                    Some(Ok(())) => ctx.reply("ok"),
                    other => ctx.reply(format!("refused: {other:?}")),
                }
            })
            .on_event(
                &[EventKind::Connect, EventKind::Disconnect],
                move |e: &mut EventContext<'_>| {
                    let c = match e.kind() {
                        EventKind::Connect => &ev.connects,
                        _ => &ev.disconnects,
                    };
                    c.fetch_add(1, Relaxed);
                },
            )
            .bind()
            .expect("bind the node")
            .spawn();
        HostileNode { handle, events }
    }

    pub fn gates(&self) -> GateClient {
        self.handle.gates()
    }
}

/// Pushes to one user every 2 ms and broadcasts every 50 ms until stopped.
pub struct Pusher {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<(u64, u64)>,
}

impl Pusher {
    pub fn start(gates: GateClient, uid: i64) -> Pusher {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut pushes, mut broadcasts) = (0u64, 0u64);
            while !s.load(Relaxed) {
                let p = pushes.to_be_bytes().to_vec();
                gates
                    .push_uid_nowait(UserId(uid), PUSH, 0, p)
                    .expect("push to the canary");
                pushes += 1;
                if pushes % 25 == 0 {
                    let b = broadcasts.to_be_bytes().to_vec();
                    gates
                        .broadcast_nowait(BROADCAST, 0, b, true)
                        .expect("broadcast");
                    broadcasts += 1;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            (pushes, broadcasts)
        });
        Pusher { stop, thread }
    }

    /// Stops; returns the pushes and broadcasts sent.
    pub fn stop(self) -> (u64, u64) {
        self.stop.store(true, Relaxed);
        self.thread.join().expect("the pusher")
    }
}
