//! The fleet's shared services, behind traits with in-process versions:
//!
//! * [`registry`] — where gates and nodes find each other: the instance
//!   record (due's), the [`Registry`](registry::Registry) trait and
//!   [`MemRegistry`](registry::MemRegistry); [`etcd`] keeps the records in
//!   etcd under leases, laid out as due does.
//! * [`locator`] — where a user is bound (which gate and session, which
//!   node per service) and the user's session settings: the
//!   [`Locator`](locator::Locator) contract and
//!   [`MemLocator`](locator::MemLocator); [`redis_locator`] is due's key
//!   shapes on Redis, each write and its event in one Lua script.
//!
//! Everything here blocks on the network and spawns plain threads (no
//! async runtime): call it from control threads only (the gate's fleet
//! agent in `crate::cluster`, the node SDK), never from a shard's loop.
//! docs/fleet.md tells the whole story.

pub mod etcd;
pub mod locator;
pub mod redis_locator;
pub mod registry;
