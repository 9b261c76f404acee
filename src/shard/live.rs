//! The settings a shard swaps while it runs, when the configuration is
//! reloaded (`crate::reload`): [`LiveSettings`], carried to every shard by
//! [`Control::Live`] on its control channel.
//!
//! Only values a shard reads when it accepts (or upgrades) a connection, or
//! takes a request, belong here: swapping them changes what new connections
//! get and what the open ones' next requests get, never what is under way.
//! Everything else in [`ShardParams`] is fixed for the life of the shard.
//!
//! To make one more setting live: add its field to [`LiveSettings`], fill
//! it in [`LiveSettings::from_config`], store it in [`Shard::apply_live`],
//! and copy its keys in `crate::reload::diff::merge_live` (which decides
//! what a reload applies).
//!
//! [`Control::Live`]: super::fleet_hooks::Control::Live
//! [`ShardParams`]: super::ShardParams

use std::sync::Arc;

use super::Shard;
use crate::config::Config;
use crate::limits::LimitRules;
use crate::ws::HandshakePolicy;

/// What a reload may change in a running shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveSettings {
    /// The WebSocket upgrade rules of `[network.ws]` (`origins`, `path`,
    /// `trust_proxy`, `mqtt_path`), checked when a client upgrades; `None`
    /// when the gate serves no WebSocket listener.
    pub ws: Option<Arc<HandshakePolicy>>,
    /// `[limits]`: the accept-time limits for new connections; rates and
    /// in-flight caps from every connection's next request (a connection
    /// accepted while no rate was set gets a full bucket then). The
    /// gate-wide per-address maximum is set on `Shared::per_ip`.
    pub limits: LimitRules,
    /// An MQTT connection's cap on requests waiting for replies: the
    /// running `network.mqtt.max_inflight`, or `limits.max_inflight` where
    /// that is smaller.
    pub mqtt_inflight: usize,
}

impl LiveSettings {
    /// The live settings a validated config describes.
    pub fn from_config(cfg: &Config) -> LiveSettings {
        let ws = &cfg.network.ws;
        let limits = LimitRules::from_config(&cfg.limits);
        LiveSettings {
            ws: ws
                .enabled
                .then(|| Arc::new(HandshakePolicy::from_config(ws, cfg.network.mqtt.enabled))),
            limits,
            mqtt_inflight: limits.mqtt_inflight(cfg.network.mqtt.max_inflight),
        }
    }
}

impl Shard {
    /// Takes `live` for the connections accepted (or upgraded) from now on,
    /// and for the next requests of the open ones. (Destructured without
    /// `..`: a new field does not compile until it is stored here.)
    pub(super) fn apply_live(&mut self, live: &LiveSettings) {
        let LiveSettings {
            ws,
            limits,
            mqtt_inflight,
        } = live;
        self.p.conn.ws.clone_from(ws);
        self.p.conn.mqtt.max_inflight = *mqtt_inflight;
        let before = std::mem::replace(&mut self.p.limits, *limits);
        self.limits_swapped(&before);
        tracing::debug!(shard = self.p.id.0, "live settings swapped (reload)");
    }
}
