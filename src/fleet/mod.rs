//! The fleet: how gates and nodes find each other. [`registry`] defines the
//! record each instance publishes, the [`Registry`](registry::Registry)
//! trait and an in-process registry.
//!
//! Control threads only: everything here blocks and spawns plain threads
//! (no async runtime) and must never run on a shard loop.

pub mod registry;
