//! The gate's fleet agent: a control thread (never a shard) that connects
//! one gate to the others through the registry and the locator.
//!
//! ```text
//!  registry watch (nodes) ──▶ shared node table ──▶ shards dial / drop links
//!  registry watch (gates) ──▶ a gate vanished ──▶ locator.purge_gate(it)
//!  shards ──FleetNote──▶ agent ──▶ locator.bind_gate / unbind_gate (CAS)
//!  locator events ──▶ agent ──Control::Kick──▶ shard (user bound elsewhere)
//! ```
//!
//! **Exactly one close per rebind.** When a user binds on gate B while gate
//! A holds it, B's bind script overwrites the location and publishes
//! `BindGate{B}`; A's agent, seeing a `BindGate` for a user it holds under
//! another binding, closes exactly that session (reason `rebind`, after
//! flushing), so nodes see one disconnect with that reason. A's later
//! unbind is a compare-and-delete that no longer matches: no event, the key
//! stays B's.
//!
//! **Events are hints.** Pub/sub loses what is published while the
//! subscriber reconnects, so after every (re)subscription the agent checks
//! every user it holds against the locator and closes those bound
//! elsewhere. Nothing is cached for routing: a node locates a user's gate
//! with one read each time.
//!
//! **Crashes.** A gate killed without a goodbye leaves its users' keys;
//! when its registry lease lapses every other gate sees its record go and
//! purges them (compare-and-delete, so the purges of several gates agree).

mod agent;

pub use agent::{FleetAgent, FleetError};
