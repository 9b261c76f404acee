//! The settings a shard swaps while it runs, when the configuration is
//! reloaded (`crate::reload`): [`LiveSettings`], carried to every shard by
//! [`Control::Live`] on its control channel.
//!
//! Only values a shard reads when it accepts (or upgrades) a connection
//! belong here: swapping them changes what new connections get and leaves
//! the open ones as they are. Everything else in [`ShardParams`] is fixed
//! for the life of the shard.
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
use crate::ws::HandshakePolicy;

/// What a reload may change in a running shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveSettings {
    /// The WebSocket upgrade rules of `[network.ws]` (`origins`, `path`,
    /// `trust_proxy`, `mqtt_path`), checked when a client upgrades; `None`
    /// when the gate serves no WebSocket listener.
    pub ws: Option<Arc<HandshakePolicy>>,
}

impl LiveSettings {
    /// The live settings a validated config describes.
    pub fn from_config(cfg: &Config) -> LiveSettings {
        let ws = &cfg.network.ws;
        LiveSettings {
            ws: ws
                .enabled
                .then(|| Arc::new(HandshakePolicy::from_config(ws, cfg.network.mqtt.enabled))),
        }
    }
}

impl Shard {
    /// Takes `live` for the connections accepted (or upgraded) from now on.
    /// (Destructured without `..`: a new field does not compile until it is
    /// stored here.)
    pub(super) fn apply_live(&mut self, live: &LiveSettings) {
        let LiveSettings { ws } = live;
        self.p.conn.ws.clone_from(ws);
        tracing::debug!(shard = self.p.id.0, "live settings swapped (reload)");
    }
}
