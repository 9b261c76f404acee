//! # ringgate
//!
//! A thread-per-core game gateway on Linux io_uring, speaking due's binary
//! packet format to clients and batched prost frames to backend nodes.
//!
//! A tour of the modules, from the wire inwards (`docs/architecture.md`
//! draws the data path and says where each rule lives):
//!
//! * [`codec`] — the client packet format (due-compatible): pure functions
//!   over `BytesMut`. No I/O, no clock. *Where a packet is decoded.*
//! * [`ws`] — WebSocket (RFC 6455): the upgrade handshake and the frame
//!   codec, pure like [`codec`]; one due packet per binary message.
//! * [`tls`] — rustls driven sans-IO, and certificate loading.
//! * [`session`] — who a client is and when it must be closed for silence or
//!   for not logging in (heartbeat and authorize deadlines). Pure.
//! * [`connection`] — one client connection as a pure state machine: its
//!   phase (handshake / open / draining / closed), its framing (raw packets,
//!   WebSocket), TLS, outbound accounting and the one close path.
//!   `handle_*` in, `poll_*` out, time passed in. *Where a session times out.*
//! * [`stats`] — per-shard counters, merged when read.
//! * [`limits`] — `[limits]`'s pure parts: token buckets on virtual time,
//!   the key a client address counts under (IPv6 by /64), the gate-wide
//!   count per address, a log limiter. *Where a flood is refused.*
//! * [`link`] — the gate↔node link's protocol (`proto/ringgate.proto`,
//!   prost) and its length-prefixed batch framing. Pure.
//! * [`shard`] — one io_uring event loop per pinned core: the only layer
//!   that owns sockets and submits operations. Its `ring` owns every buffer
//!   the kernel may touch; `clients` drives connections; `nodes` keeps the
//!   links to nodes (*where a node link reconnects*); `session_ops` and
//!   `mailbox` route work to the shard that owns a session (*where a push
//!   crosses shards*).
//! * [`node`] — the SDK backend authors use to serve routes and talk to the
//!   gate, with plain threads (no async runtime imposed).
//! * [`config`] — the serde tree loaded from `etc/ringgate.toml`, with
//!   defaults and validation.
//! * [`fleet`] — the fleet's shared services behind traits: the registry
//!   (etcd, or in process) and the user locator and session store (Redis,
//!   or in process). Blocking; control threads only.
//! * [`cluster`] — the gate's fleet agent, a control thread between the
//!   shards and [`fleet`]: node discovery, cross-gate rebinds, crash
//!   cleanup, the session store. *Where a login on another gate closes the
//!   old session.*
//! * [`admin`] — the operator's HTTP port on threads of its own: Prometheus
//!   `/metrics` (per-shard counters merged at scrape), the JSON API
//!   (sessions, kick, broadcast, drain, log level) and a live dashboard.
//!   It asks shards over their control channels, never takes their locks.
//! * [`gate`] — start-up: probes the kernel, checks limits, spawns shards.
//! * [`reload`] — SIGHUP and `POST /api/reload`: the config file re-read,
//!   what can change live applied (log level, WebSocket origins, static
//!   nodes), the rest named as needing a restart.
//! * [`pidfile`] — the pid file of `[gate] pid`: one running gate per file.
//! * [`logging`] — `[log]` turned into the subscriber: console and rotated
//!   file terminals, written off the shards' threads.
//! * [`host_check`] — `ringgate check-host`: the machine against the config
//!   (kernel, limits, sysctls, cores, NIC interrupts), pure rules over
//!   `/proc` text.
//! * [`ids`] — the id newtypes: shards, sessions (which encode their
//!   shard), users (whose directory entry lives on `hash(uid) % shards`).

pub mod admin;
pub mod cluster;
pub mod codec;
pub mod config;
pub mod connection;
pub mod fleet;
#[doc(hidden)]
pub mod fuzzing;
pub mod gate;
pub mod host_check;
pub mod ids;
pub mod limits;
pub mod link;
pub mod logging;
pub mod mqtt;
pub mod node;
pub mod pidfile;
pub mod reload;
pub mod session;
pub mod shard;
pub mod stats;
pub mod tls;
pub mod ws;

pub use ids::{SessionId, ShardId, UserId};
