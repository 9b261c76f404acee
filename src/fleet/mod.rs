//! Scale-out state shared by every gate and node of a fleet: where a user is
//! bound (which gate and session, which node per service) and the user's
//! session settings.
//!
//! * [`locator`] — the [`Locator`](locator::Locator) contract, its types and
//!   [`MemLocator`](locator::MemLocator) (one process, tests).
//! * [`redis_locator`] — [`RedisLocator`](redis_locator::RedisLocator): due's
//!   key shapes on Redis, each write and its event in one Lua script.
//!
//! Everything here blocks on the network: call it from control threads only,
//! never from a shard's io_uring loop.

pub mod locator;
pub mod redis_locator;
