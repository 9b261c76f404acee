//! `[cluster]`: how the gate spreads requests over the nodes serving a
//! route (due's `[cluster.gate] dispatch`), and the fleet's shared services.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::{units, ConfigError};

/// `[cluster] dispatch`: round robin spreads evenly with no state to lose
/// and is what a single gate did before; due's own default is `random`.
pub const DEFAULT_DISPATCH: Dispatch = Dispatch::RoundRobin;

/// `[cluster.registry] ttl`: due's 11 s lease, rounded; a crashed gate or
/// node leaves the registry at most this long after its last keep-alive.
pub const DEFAULT_REGISTRY_TTL: Duration = Duration::from_secs(10);
/// `[cluster.registry] namespace`: due's, so records sit at `/services/{kind}/{id}`.
pub const DEFAULT_NAMESPACE: &str = "services";
/// `[cluster.registry] endpoints`: a local etcd.
pub const DEFAULT_ETCD_ENDPOINT: &str = "127.0.0.1:2379";
/// `[cluster.locator] url`: a local Redis, database 0.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/0";
/// `[cluster.locator] prefix`: due's key shapes under ringgate's own prefix.
pub const DEFAULT_LOCATOR_PREFIX: &str = "ringgate:locate";
/// `[cluster.locator] session_ttl`: long enough for a player to reconnect
/// after a network change or an app restart, short enough not to hoard.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(300);
/// `[cluster.*] timeout`: one request to etcd or Redis.
pub const DEFAULT_FLEET_TIMEOUT: Duration = Duration::from_secs(3);

/// `[cluster]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// How a stateless request picks one of the nodes serving its route.
    pub dispatch: Dispatch,
    /// `[cluster.registry]`: where gates and nodes find each other.
    pub registry: RegistryConfig,
    /// `[cluster.locator]`: which gate holds a user, across gates.
    pub locator: LocatorConfig,
}

impl ClusterConfig {
    /// Checks the registry and locator settings.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let r = &self.registry;
        if r.backend == RegistryBackend::Etcd {
            if r.endpoints.is_empty() {
                return Err(ConfigError::rule(
                    "cluster.registry.endpoints",
                    "at least one etcd endpoint (host:port) is needed",
                ));
            }
            if r.ttl < Duration::from_secs(2) {
                return Err(ConfigError::rule(
                    "cluster.registry.ttl",
                    format!(
                        "must be at least 2s (keep-alives go every ttl/3), got {:?}",
                        r.ttl
                    ),
                ));
            }
            if r.namespace.is_empty() || r.namespace.contains('/') {
                return Err(ConfigError::rule(
                    "cluster.registry.namespace",
                    "must be a non-empty name without '/'",
                ));
            }
        }
        let l = &self.locator;
        if l.backend == LocatorBackend::Redis {
            if !(l.url.starts_with("redis://") || l.url.starts_with("rediss://")) {
                return Err(ConfigError::rule(
                    "cluster.locator.url",
                    format!("must be a redis:// URL, got {:?}", l.url),
                ));
            }
            if l.prefix.is_empty() {
                return Err(ConfigError::rule(
                    "cluster.locator.prefix",
                    "must not be empty",
                ));
            }
        }
        Ok(())
    }
}

/// `[cluster.registry]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// `none` (static `[[nodes]]` only) or `etcd`.
    pub backend: RegistryBackend,
    /// etcd client endpoints, host:port.
    pub endpoints: Vec<String>,
    /// Key prefix: records live at `/{namespace}/{gate|node}/{id}`.
    pub namespace: String,
    /// Lease of this gate's record.
    #[serde(deserialize_with = "units::duration")]
    pub ttl: Duration,
    /// One request to etcd.
    #[serde(deserialize_with = "units::duration")]
    pub timeout: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            backend: RegistryBackend::None,
            endpoints: vec![DEFAULT_ETCD_ENDPOINT.into()],
            namespace: DEFAULT_NAMESPACE.into(),
            ttl: DEFAULT_REGISTRY_TTL,
            timeout: DEFAULT_FLEET_TIMEOUT,
        }
    }
}

/// `cluster.registry.backend`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RegistryBackend {
    /// No registry: the gate dials `[[nodes]]` only.
    #[default]
    None,
    /// etcd v3 (3.4 or later).
    Etcd,
}

impl RegistryBackend {
    /// Names as written in the file.
    pub const CHOICES: &'static [(&'static str, RegistryBackend)] = &[
        ("none", RegistryBackend::None),
        ("etcd", RegistryBackend::Etcd),
    ];
}

impl<'de> Deserialize<'de> for RegistryBackend {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        units::choice(de, Self::CHOICES)
    }
}

/// `[cluster.locator]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocatorConfig {
    /// `none` (users are known to this gate only) or `redis`.
    pub backend: LocatorBackend,
    /// Redis URL, `redis://host:port/db`.
    pub url: String,
    /// Key prefix (due's shapes under it: `{prefix}:user:{uid}:gate`, ...).
    pub prefix: String,
    /// One request to Redis.
    #[serde(deserialize_with = "units::duration")]
    pub timeout: Duration,
    /// How long a user's settings outlive its last change or its session
    /// (mqant's session storage): a reconnect on any gate within it gets
    /// them back. "0s": no session store.
    #[serde(deserialize_with = "units::duration")]
    pub session_ttl: Duration,
}

impl Default for LocatorConfig {
    fn default() -> Self {
        LocatorConfig {
            backend: LocatorBackend::None,
            url: DEFAULT_REDIS_URL.into(),
            prefix: DEFAULT_LOCATOR_PREFIX.into(),
            timeout: DEFAULT_FLEET_TIMEOUT,
            session_ttl: DEFAULT_SESSION_TTL,
        }
    }
}

/// `cluster.locator.backend`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LocatorBackend {
    /// No locator.
    #[default]
    None,
    /// Redis 6 or later.
    Redis,
}

impl LocatorBackend {
    /// Names as written in the file.
    pub const CHOICES: &'static [(&'static str, LocatorBackend)] = &[
        ("none", LocatorBackend::None),
        ("redis", LocatorBackend::Redis),
    ];
}

impl<'de> Deserialize<'de> for LocatorBackend {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        units::choice(de, Self::CHOICES)
    }
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
