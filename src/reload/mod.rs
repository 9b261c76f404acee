//! Reloading the configuration of a running gate (SIGHUP, `POST
//! /api/reload`, `ringgate admin reload`): what can change live changes,
//! the rest is named and kept until a restart.
//!
//! ```text
//!  reload ─▶ Config::load(the file the gate started with)   a bad file: nothing changes,
//!        │                                                  the error names file, line, key
//!        ├─▶ diff::plan(in force, file) ─▶ applied / needs_restart
//!        ├─▶ [log] level      ─▶ the log filter's reload handle (admin::log_level)
//!        ├─▶ [[nodes]]        ─▶ NodeTable::set_fixed: shards dial new nodes and close
//!        │                       removed ones as a node that left the registry
//!        │                       (waiting requests answered NODE_DOWN, routes forgotten)
//!        ├─▶ [limits] max_connections_per_ip ─▶ Shared::per_ip (new connections)
//!        └─▶ LiveSettings     ─▶ Control::Live to every shard, answered once swapped
//!                                (WebSocket upgrade rules: new connections only;
//!                                [limits]: new connections, and open ones' next request)
//! ```
//!
//! Every key the file changes that cannot change live (listen addresses,
//! shards, packet format, TLS files, cluster, admin...) is logged once per
//! reload as a warning and listed in `needs_restart`; the gate keeps running
//! with the value in force. A gate started without a file (the embedded
//! default) has nothing to reload.
//!
//! Reloads are serialised (one lock), and compare the file with the
//! configuration *in force*, not with the file as last read: a key left for
//! a restart is reported again on every reload until the gate restarts.

pub mod diff;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;

pub use diff::{show, Change, Plan};

use crate::admin::SHARD_ANSWER_TIMEOUT;
use crate::config::{Config, ConfigError};
use crate::shard::fleet_hooks::Control;
use crate::shard::live::LiveSettings;
use crate::shard::Shared;

/// What a reload did.
#[derive(Clone, Debug, Serialize)]
pub struct ReloadReport {
    /// The file read, `None` when the gate started without one (then
    /// nothing changes).
    pub file: Option<String>,
    /// Keys whose value from the file is in force now.
    pub applied: Vec<Change>,
    /// Keys whose value in the file differs but which keep their running
    /// value until the gate restarts.
    pub needs_restart: Vec<Change>,
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file could not be read, is not valid TOML, or breaks a rule; the
    /// message names the file, the line and the key.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The file is valid, but its live part together with the running
    /// values of what needs a restart is not (e.g. `[[nodes]]` emptied by a
    /// file that also turns a registry on).
    #[error(
        "{file}: the keys that change live do not fit the running configuration ({source}); \
         restart the gate to take this file"
    )]
    Mixed {
        /// The file.
        file: String,
        /// The rule the mix breaks.
        source: ConfigError,
    },
}

impl ReloadError {
    /// The dotted key the error is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            ReloadError::Config(e) | ReloadError::Mixed { source: e, .. } => e.key(),
        }
    }
}

/// Reloads one gate's configuration; shared by the signal thread and the
/// admin port.
#[derive(Debug)]
pub struct Reloader {
    /// The file the gate started with (`None`: the embedded default).
    file: Option<PathBuf>,
    shared: Arc<Shared>,
    /// The configuration in force (held only to read or swap it, so the
    /// admin port never waits for a reload).
    in_force: Mutex<Arc<Config>>,
    /// Held for a whole reload: one at a time.
    serial: Mutex<()>,
}

impl Reloader {
    /// A reloader for a gate that runs `cfg`, loaded from `file` (`None`:
    /// not from a file).
    pub fn new(cfg: &Config, file: Option<PathBuf>, shared: Arc<Shared>) -> Reloader {
        Reloader {
            file,
            shared,
            in_force: Mutex::new(Arc::new(cfg.clone())),
            serial: Mutex::new(()),
        }
    }

    /// The configuration in force now (what `GET /api/config` shows).
    pub fn current(&self) -> Arc<Config> {
        self.in_force
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The file a reload reads, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Re-reads the file, applies what can change live and logs every key
    /// that differs (applied: info; needs a restart: one warning each). A
    /// bad file changes nothing and is logged as a warning.
    pub fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let _one_at_a_time = self.serial.lock().unwrap_or_else(|p| p.into_inner());
        let in_force = self.current();
        let Some(path) = &self.file else {
            tracing::info!("reload: the gate started without a config file (embedded default); nothing to reload");
            return Ok(ReloadReport {
                file: None,
                applied: Vec::new(),
                needs_restart: Vec::new(),
            });
        };
        let name = path.display().to_string();
        let refused = |e: ReloadError| {
            tracing::warn!(file = %name, key = e.key().unwrap_or(""), "reload refused, the configuration in force is kept: {e}");
            e
        };
        let loaded = Config::load(path).map_err(|e| refused(e.into()))?;
        let mut plan = diff::plan(&in_force, &loaded);
        if let Err(source) = plan.in_force.clone().validate() {
            let file = name.clone();
            return Err(refused(ReloadError::Mixed { file, source }));
        }
        keep_level_without_handle(&in_force, &mut plan);
        self.apply(&in_force, &plan.in_force);
        for c in &plan.applied {
            tracing::info!(key = %c.key, "{} changed: applied ({} -> {})", c.key, show(&c.old), show(&c.new));
        }
        for c in &plan.needs_restart {
            let why = c.note.as_deref().unwrap_or("needs a restart");
            tracing::warn!(key = %c.key, "{} changed: {why}; kept {}", c.key, show(&c.old));
        }
        tracing::info!(
            file = %name,
            applied = plan.applied.len(),
            needs_restart = plan.needs_restart.len(),
            "configuration reloaded"
        );
        // Last, so that the lines above are written under the old filter
        // (a quieter level would hide why the log went quiet).
        let level = &plan.in_force.log.level;
        if *level != in_force.log.level {
            if let Err(e) = crate::admin::log_level::replace(level) {
                tracing::error!(level = %level, "reload: the log filter could not be replaced: {e}");
            }
        }
        *self.in_force.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(plan.in_force);
        Ok(ReloadReport {
            file: Some(name),
            applied: plan.applied,
            needs_restart: plan.needs_restart,
        })
    }

    /// Puts the node list and the shards' live settings of `after` into
    /// effect over `before` (the log filter is the caller's, last).
    fn apply(&self, before: &Config, after: &Config) {
        let addrs: Vec<_> = after.nodes.iter().map(|n| n.addr).collect();
        let (old_paths, new_paths) = (before.unix_node_paths(), after.unix_node_paths());
        for n in after
            .nodes
            .iter()
            .filter(|n| before.nodes.iter().any(|b| b.addr == n.addr))
        {
            if old_paths.get(&n.addr) != new_paths.get(&n.addr) {
                tracing::warn!(node = %n.addr, unix = ?n.unix, "nodes.unix changed: links already up keep their socket; the new one is used when they next connect");
            }
        }
        self.shared.nodes.set_unix_paths(new_paths);
        if self.shared.nodes.set_fixed(&addrs) {
            self.wake_all();
        }
        let live = LiveSettings::from_config(after);
        self.shared.per_ip.set_max(live.limits.max_per_ip);
        if live != LiveSettings::from_config(before) {
            self.send_live(live);
        }
    }

    /// Hands `live` to every shard and waits (up to
    /// [`SHARD_ANSWER_TIMEOUT`] each) until each has swapped it in, so that
    /// a reload that returns is in force for the next connection.
    fn send_live(&self, live: LiveSettings) {
        let settings = Arc::new(live);
        let controls = &self.shared.fleet.controls;
        let (done, swapped) = crossbeam_channel::bounded(controls.len());
        let mut sent = 0;
        for (shard, (tx, _)) in controls.iter().enumerate() {
            let c = Control::Live {
                settings: settings.clone(),
                done: done.clone(),
            };
            match tx.send_timeout(c, SHARD_ANSWER_TIMEOUT) {
                Ok(()) => sent += 1,
                Err(_) => tracing::warn!(
                    shard,
                    "reload: shard's command queue stayed full; it keeps its old live settings"
                ),
            }
            self.shared.wakers.notify(shard);
        }
        for _ in 0..sent {
            if swapped.recv_timeout(SHARD_ANSWER_TIMEOUT).is_err() {
                tracing::warn!("reload: a shard has not taken the new live settings yet");
                break;
            }
        }
    }

    fn wake_all(&self) {
        for s in 0..self.shared.wakers.len() {
            self.shared.wakers.notify(s);
        }
    }
}

/// A process that installed no reloadable log filter (a gate embedded in
/// another program, a test) cannot take a new `[log] level`: it keeps the
/// running one and the change moves to `needs_restart`, with a note.
fn keep_level_without_handle(before: &Config, plan: &mut Plan) {
    if crate::admin::log_level::current().is_some() {
        return;
    }
    if let Some(i) = plan.applied.iter().position(|c| c.key == "log.level") {
        let mut c = plan.applied.remove(i);
        c.note = Some(format!(
            "not applied: {}",
            crate::admin::log_level::LogLevelError::Unsupported
        ));
        plan.needs_restart.push(c);
        plan.in_force.log.level.clone_from(&before.log.level);
    }
}
