//! The admin port: an HTTP server on threads of its own, never on a shard,
//! for the people and tools that operate a gate (`[admin]` in the config;
//! `docs/admin.md` lists every endpoint and metric).
//!
//! ```text
//!  GET  /metrics            Prometheus text format       (metrics)
//!  GET  /api/...            info, config, stats, sessions, users   (api)
//!  POST /api/kick|broadcast|drain|reload,  PUT /api/log-level      (api)
//!  GET  /                   the live dashboard (dashboard.html, embedded)
//!  GET  /events             one JSON snapshot per second (server-sent events)
//! ```
//!
//! | file          | what it owns                                               |
//! |---------------|------------------------------------------------------------|
//! | `http`        | the HTTP/1.1 server: accept, read a request, write a reply |
//! | `server`      | routing, the token, replies                                |
//! | `metrics`     | `/metrics`: per-shard counters merged at scrape time       |
//! | `api`         | the JSON API; questions to shards over `Control` channels  |
//! | `config_view` | the effective config as JSON, secrets left out             |
//! | `dashboard`   | the page, its snapshots and the SSE streams                |
//! | `log_level`   | the log filter's reload handle, installed by `main`        |
//! | `cli`         | `ringgate admin <verb>` and its blocking API client        |
//!
//! What it must not do: hold a lock a shard takes, or make a shard wait.
//! Counters are read from atomics; questions about sessions go to shards
//! as [`Control::Admin`] on their bounded command channels, and the admin
//! thread (not the shard) waits for the answer, with a timeout.

mod api;
pub mod cli;
mod config_view;
mod dashboard;
mod http;
pub mod log_level;
mod metrics;
mod server;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::reload::Reloader;
use crate::shard::admin_ops::AdminOp;
use crate::shard::fleet_hooks::Control;
use crate::shard::Shared;

pub use log_level::set_log_reload;

/// How long the admin thread waits for a shard to take a question and to
/// answer it (a shard answers within a loop turn, normally well under a
/// millisecond; this only bounds a stuck one).
pub const SHARD_ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// What the gate tells the admin port about itself at start.
#[derive(Clone, Debug)]
pub struct GateInfo {
    /// The gate's instance id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// When it started (unix ms).
    pub started_ms: u64,
    /// The core each shard is pinned to.
    pub cores: Vec<usize>,
    /// Client TCP address.
    pub tcp: SocketAddr,
    /// WebSocket address, when served.
    pub ws: Option<SocketAddr>,
    /// MQTT address, when served.
    pub mqtt: Option<SocketAddr>,
}

/// Everything the server threads share.
#[derive(Debug)]
struct State {
    shared: Arc<Shared>,
    /// The configuration in force (it changes with a reload) and the reload.
    reloader: Arc<Reloader>,
    info: GateInfo,
    /// The bound admin address.
    addr: SocketAddr,
    /// Failed accepts on the admin port (`/metrics`).
    accept_errors: Arc<AtomicU64>,
    /// Server-sent-event streams open now (at most [`dashboard::MAX_SSE`]).
    sse: AtomicUsize,
    /// Set when the gate stops.
    stop: Arc<AtomicBool>,
}

/// Why a shard did not answer an admin question.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// Its command queue stayed full, or it did not answer in time.
    #[error("shard {0} did not answer within {SHARD_ANSWER_TIMEOUT:?}")]
    Timeout(usize),
    /// The shard has stopped.
    #[error("shard {0} has stopped")]
    Gone(usize),
}

impl State {
    /// Asks shard `shard` a question built by `op` around a fresh reply
    /// channel, wakes it, and waits for its answer.
    fn ask<T>(
        &self,
        shard: usize,
        op: impl FnOnce(crossbeam_channel::Sender<T>) -> AdminOp,
    ) -> Result<T, AskError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let Some((ctl, _)) = self.shared.fleet.controls.get(shard) else {
            return Err(AskError::Gone(shard));
        };
        ctl.send_timeout(Control::Admin(op(tx)), SHARD_ANSWER_TIMEOUT)
            .map_err(|_| AskError::Timeout(shard))?;
        self.shared.wakers.notify(shard);
        rx.recv_timeout(SHARD_ANSWER_TIMEOUT).map_err(|e| match e {
            crossbeam_channel::RecvTimeoutError::Timeout => AskError::Timeout(shard),
            crossbeam_channel::RecvTimeoutError::Disconnected => AskError::Gone(shard),
        })
    }

    fn shards(&self) -> usize {
        self.shared.stats.len()
    }

    /// The configuration in force now.
    fn cfg(&self) -> Arc<Config> {
        self.reloader.current()
    }
}

/// The configuration as `GET /api/config` shows it (shaped like the file,
/// secrets left out); a reload compares two of these key by key.
pub(crate) fn config_json(cfg: &Config) -> serde_json::Value {
    config_view::effective(cfg)
}

/// The running admin port; stops with [`Admin::stop`] or when dropped.
pub struct Admin {
    state: Arc<State>,
    server: Option<http::Server>,
}

impl Admin {
    /// Binds `[admin] addr` of the configuration in force and starts the
    /// server threads; `reloader` answers `GET /api/config` and `POST
    /// /api/reload`.
    pub fn start(
        reloader: Arc<Reloader>,
        shared: Arc<Shared>,
        info: GateInfo,
    ) -> std::io::Result<Admin> {
        let cfg = reloader.current();
        let listener = std::net::TcpListener::bind(cfg.admin.addr)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            shared,
            reloader,
            info,
            addr,
            accept_errors: Arc::new(AtomicU64::new(0)),
            sse: AtomicUsize::new(0),
            stop: Arc::new(AtomicBool::new(false)),
        });
        let st = state.clone();
        let server = http::Server::start(
            listener,
            server::WORKERS,
            state.stop.clone(),
            state.accept_errors.clone(),
            Arc::new(move |req| server::handle(&st, req)),
        )?;
        tracing::info!(%addr, "admin port listening (metrics, API, dashboard)");
        Ok(Admin {
            state,
            server: Some(server),
        })
    }

    /// The address the admin server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.state.addr
    }

    /// Stops the server threads (event streams end within a second).
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        if let Some(server) = self.server.take() {
            server.join();
        }
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.stop_inner();
    }
}
