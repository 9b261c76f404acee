//! The fleet: how gates and nodes find each other. [`registry`] defines the
//! record each instance publishes, the [`Registry`](registry::Registry)
//! trait and an in-process registry; [`etcd`] keeps the same records in etcd
//! under leases, the way due lays them out.
//!
//! Control threads only: everything here blocks and spawns plain threads
//! (no async runtime) and must never run on a shard loop.

pub mod etcd;
pub mod registry;
