//! # ringgate
//!
//! A thread-per-core game gateway on Linux io_uring, speaking due's binary
//! packet format to clients and batched prost frames to backend nodes.
//!
//! A tour of the modules, from the wire inwards:
//!
//! * [`codec`] — the client packet format (due-compatible), pure functions
//!   over `BytesMut`. No I/O, no clock.
//! * [`session`] — the per-connection state machine: heartbeat and authorize
//!   deadlines, bound user. Time is passed in. No I/O.
//! * [`shard`] — one io_uring event loop per pinned core: listener, client
//!   connections, timers, node links. The only layer that owns sockets.
//! * [`link`] — the gate↔node protocol (`proto/ringgate.proto`) and its
//!   length-prefixed batch framing.
//! * [`node`] — the SDK backend authors use to serve routes and talk to the
//!   gate, with plain threads (no async runtime imposed).
//! * [`ws`] — WebSocket (RFC 6455): the upgrade handshake and the frame codec,
//!   pure like [`codec`]; one due packet per binary message.
//! * [`tls`] — rustls driven sans-IO by the shard loop, and certificate loading.
//! * [`config`] — the serde tree loaded from `etc/ringgate.toml`, with
//!   defaults and validation.
//! * [`gate`] — start-up: probes the kernel, checks limits, spawns shards.

pub mod codec;
pub mod config;
pub mod connection;
pub mod gate;
pub mod ids;
pub mod link;
pub mod node;
pub mod session;
pub mod shard;
pub mod stats;
pub mod tls;
pub mod ws;

pub use ids::{SessionId, ShardId, UserId};
