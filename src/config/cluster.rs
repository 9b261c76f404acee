//! `[cluster]`: how the gate spreads requests over the nodes serving a
//! route (due's `[cluster.gate] dispatch`), and the fleet's shared services.

use serde::{Deserialize, Deserializer};

use super::units;

/// `[cluster] dispatch`: round robin spreads evenly with no state to lose
/// and is what a single gate did before; due's own default is `random`.
pub const DEFAULT_DISPATCH: Dispatch = Dispatch::RoundRobin;

/// `[cluster]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// How a stateless request picks one of the nodes serving its route.
    pub dispatch: Dispatch,
}

/// `cluster.dispatch`: the pick among the nodes that serve a route, within
/// the best state tier (`work` nodes first, then `busy`; `hang` and `shut`
/// get no stateless request).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Dispatch {
    /// Uniformly at random.
    Random,
    /// In turn.
    #[default]
    RoundRobin,
    /// In turn, in proportion to the nodes' weights (smooth weighted round
    /// robin, as nginx and due).
    WeightedRoundRobin,
    /// By a hash of the user id (the session id before a user is bound):
    /// one user's requests reach the same live node, and only the users of
    /// a node that leaves move (rendezvous hashing).
    UidHash,
}

impl Dispatch {
    /// Names as written in the file (due's, plus `uid-hash`).
    pub const CHOICES: &'static [(&'static str, Dispatch)] = &[
        ("random", Dispatch::Random),
        ("rr", Dispatch::RoundRobin),
        ("wrr", Dispatch::WeightedRoundRobin),
        ("uid-hash", Dispatch::UidHash),
    ];
}

impl<'de> Deserialize<'de> for Dispatch {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        units::choice(de, Self::CHOICES)
    }
}
