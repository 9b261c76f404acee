//! Start-up and shutdown of a gate: probes the kernel, checks the open-file
//! limit against `max_connections`, binds one `SO_REUSEPORT` listener per
//! shard, spawns the pinned shard threads and hands back a [`Gate`] handle.
//!
//! Everything that can be wrong with the machine or the config is found here,
//! before the first client is accepted, and reported with what to change.
//! The one exception is the admin port: a gate whose admin address cannot
//! be bound still serves its clients, and says so in the log and banner.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use io_uring::{opcode, Probe};

use crate::config::Config;
use crate::connection::Network;
use crate::reload::{ReloadError, ReloadReport, Reloader};
use crate::shard::mailbox::Mailbox;
use crate::shard::ListenerSpec;
use crate::shard::{self, Shard, ShardParams, ShardStats, Shared, StatsSnapshot};

/// File descriptors a gate needs beyond one per client connection: per shard
/// a listener, an eventfd, a ring and one socket per node, plus stdio, log
/// files and some slack for the runtime.
pub fn fd_overhead(cfg: &Config) -> u64 {
    let shards = cfg.shards.cores.len() as u64;
    shards * (3 + cfg.nodes.len() as u64) + 64
}

/// Why a gate could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The registry or the locator ([cluster.registry], [cluster.locator])
    /// could not be reached or refused the gate.
    #[error("fleet ([cluster.registry] / [cluster.locator]): {0}")]
    Fleet(#[from] crate::cluster::FleetError),
    /// The kernel lacks an io_uring feature ringgate needs.
    #[error("io_uring: {feature} is not available on this kernel ({kernel}); ringgate needs Linux 6.1 or newer with io_uring enabled")]
    Kernel {
        /// The missing feature.
        feature: &'static str,
        /// `uname -r`.
        kernel: String,
    },
    /// `max_connections` does not fit the process's open-file limit.
    #[error(
        "network.tcp.max_connections = {max} needs about {need} open files, but this process may open at most {hard} \
         (RLIMIT_NOFILE hard limit); lower max_connections to {fits} or less, or raise the limit (ulimit -n, systemd LimitNOFILE=)"
    )]
    FileLimit {
        /// Configured connections.
        max: usize,
        /// Descriptors needed.
        need: u64,
        /// Hard limit.
        hard: u64,
        /// Largest max_connections that fits.
        fits: u64,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({key}): {source}")]
    Listen {
        /// The config key.
        key: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A TLS certificate or key could not be loaded.
    #[error("{key}: {source}")]
    Tls {
        /// The config section (`network.tcp` or `network.ws`).
        key: &'static str,
        /// What went wrong, naming the file.
        source: crate::tls::TlsError,
    },
    /// A shard failed while setting up.
    #[error("shard {shard} (core {core}) failed to start: {source}")]
    Shard {
        /// Shard index.
        shard: u16,
        /// Its core.
        core: usize,
        /// The OS error.
        source: std::io::Error,
    },
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown kernel".into())
}

fn kernel_at_least(release: &str, major: u32, minor: u32) -> bool {
    let mut it = release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u32>().unwrap_or(0));
    let (a, b) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

/// Checks every io_uring feature the shard loop uses; names the first missing one.
///
/// The probe ring lives on a short-lived thread of its own: tearing down a
/// `SINGLE_ISSUER` ring queues task work to the thread that created it, which
/// interrupts that thread's next blocking syscall with `EINTR`. The caller's
/// thread (`main`, or a test) is kept out of that.
pub fn probe_kernel() -> Result<(), StartError> {
    std::thread::scope(|s| s.spawn(probe_kernel_here).join()).unwrap_or_else(|_| {
        Err(StartError::Kernel {
            feature: "io_uring probe (panicked)",
            kernel: kernel_release(),
        })
    })
}

fn probe_kernel_here() -> Result<(), StartError> {
    let kernel = kernel_release();
    let missing = |feature| StartError::Kernel {
        feature,
        kernel: kernel.clone(),
    };
    if !kernel_at_least(&kernel, 6, 1) {
        return Err(missing(
            "multishot recv/accept with DEFER_TASKRUN (Linux >= 6.1)",
        ));
    }
    let ring = shard::Ring::new(64, 8, 512).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOSYS) | Some(libc::EPERM) => {
            missing("io_uring_setup (disabled: check kernel.io_uring_disabled)")
        }
        Some(libc::EINVAL) => missing(
            "IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, or IORING_REGISTER_PBUF_RING",
        ),
        _ => missing("io_uring ring with a provided-buffer ring"),
    })?;
    let ring = ring.io_uring();
    let params = ring.params();
    if !params.is_feature_ext_arg() {
        return Err(missing("IORING_FEAT_EXT_ARG (wait with timeout)"));
    }
    if !params.is_feature_nodrop() {
        return Err(missing("IORING_FEAT_NODROP"));
    }
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|_| missing("IORING_REGISTER_PROBE"))?;
    for (code, name) in [
        (opcode::AcceptMulti::CODE, "IORING_OP_ACCEPT"),
        (opcode::RecvMulti::CODE, "IORING_OP_RECV"),
        (opcode::Send::CODE, "IORING_OP_SEND"),
        (opcode::Connect::CODE, "IORING_OP_CONNECT"),
        (opcode::Read::CODE, "IORING_OP_READ"),
        (opcode::AsyncCancel2::CODE, "IORING_OP_ASYNC_CANCEL"),
    ] {
        if !probe.is_supported(code) {
            return Err(missing(name));
        }
    }
    Ok(())
}

/// Makes sure the process may open enough files for `max_connections`,
/// raising the soft limit up to the hard one if needed.
pub fn check_file_limit(cfg: &Config) -> Result<u64, StartError> {
    let max = cfg.network.tcp.max_connections;
    let need = max as u64 + fd_overhead(cfg);
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    if lim.rlim_max < need {
        return Err(StartError::FileLimit {
            max,
            need,
            hard: lim.rlim_max,
            fits: lim.rlim_max.saturating_sub(fd_overhead(cfg)),
        });
    }
    if lim.rlim_cur < need {
        lim.rlim_cur = need.max(lim.rlim_cur);
        // SAFETY: setrlimit reads the struct; raising the soft limit up to the hard limit is allowed.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    }
    Ok(lim.rlim_cur)
}

/// Binds one `SO_REUSEPORT` listener per shard on `addr` (refusing a port
/// another process already listens on); returns them and the bound address.
fn bind_all(
    addr: SocketAddr,
    backlog: u32,
    n: usize,
    key: &'static str,
) -> Result<(Vec<std::net::TcpListener>, SocketAddr), StartError> {
    if addr.port() != 0 {
        shard::ensure_port_free(addr).map_err(|source| StartError::Listen { key, addr, source })?;
    }
    let mut out = Vec::with_capacity(n);
    let mut at = addr;
    for _ in 0..n {
        let l = shard::listen(at, backlog).map_err(|source| StartError::Listen {
            key,
            addr: at,
            source,
        })?;
        at = l.local_addr().map_err(|source| StartError::Listen {
            key,
            addr: at,
            source,
        })?;
        out.push(l);
    }
    Ok((out, at))
}

fn load_tls(
    files: Option<(&std::path::Path, &std::path::Path)>,
    key: &'static str,
) -> Result<Option<Arc<rustls::ServerConfig>>, StartError> {
    match files {
        None => Ok(None),
        Some((cert, k)) => crate::tls::load_server_config(cert, k)
            .map(Some)
            .map_err(|source| StartError::Tls { key, source }),
    }
}

/// The listening sockets of each shard and what each serves, and the
/// bound addresses.
struct Bound {
    listeners: Vec<Vec<(TcpListener, ListenerSpec)>>,
    tcp: SocketAddr,
    ws: Option<SocketAddr>,
    mqtt: Option<SocketAddr>,
}

/// Binds TCP, and WebSocket and MQTT when enabled, on every shard.
fn bind_listeners(cfg: &Config) -> Result<Bound, StartError> {
    let mut b = bind_due_listeners(cfg)?;
    let (m, tcp) = (&cfg.network.mqtt, &cfg.network.tcp);
    if m.enabled {
        let n = cfg.shards.cores.len();
        let (ls, addr) = bind_all(m.addr, tcp.backlog, n, "network.mqtt.addr")?;
        let tls = load_tls(m.tls_files(), "network.mqtt")?;
        let spec = ListenerSpec {
            network: if tls.is_some() {
                Network::Mqtts
            } else {
                Network::Mqtt
            },
            handshake_ms: m.connect_timeout.as_millis() as u64,
            tls,
        };
        for (v, l) in b.listeners.iter_mut().zip(ls) {
            v.push((l, spec.clone()));
        }
        b.mqtt = Some(addr);
    }
    Ok(b)
}

/// The TCP and WebSocket listeners (due's packet format).
fn bind_due_listeners(cfg: &Config) -> Result<Bound, StartError> {
    let (tcp, ws) = (&cfg.network.tcp, &cfg.network.ws);
    // Bind every listener up front: errors surface here, and with port 0
    // all shards share the port the first one got.
    let n = cfg.shards.cores.len();
    let (tcp_listeners, tcp_addr) = bind_all(tcp.addr, tcp.backlog, n, "network.tcp.addr")?;
    let tls = load_tls(tcp.tls_files(), "network.tcp")?;
    let tcp_spec = ListenerSpec {
        network: if tls.is_some() {
            Network::Tls
        } else {
            Network::Tcp
        },
        handshake_ms: if tls.is_some() {
            tcp.tls_handshake_timeout.as_millis() as u64
        } else {
            0
        },
        tls,
    };
    let mut out: Vec<Vec<_>> = tcp_listeners
        .into_iter()
        .map(|l| vec![(l, tcp_spec.clone())])
        .collect();
    if !ws.enabled {
        return Ok(Bound {
            listeners: out,
            tcp: tcp_addr,
            ws: None,
            mqtt: None,
        });
    }
    let (ws_listeners, ws_addr) = bind_all(ws.addr, tcp.backlog, n, "network.ws.addr")?;
    let tls = load_tls(ws.tls_files(), "network.ws")?;
    let ws_spec = ListenerSpec {
        network: if tls.is_some() {
            Network::Wss
        } else {
            Network::Ws
        },
        handshake_ms: ws.handshake_timeout.as_millis() as u64,
        tls,
    };
    for (v, l) in out.iter_mut().zip(ws_listeners) {
        v.push((l, ws_spec.clone()));
    }
    Ok(Bound {
        listeners: out,
        tcp: tcp_addr,
        ws: Some(ws_addr),
        mqtt: None,
    })
}

/// A running gate.
pub struct Gate {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<std::io::Result<()>>>,
    tcp_addr: SocketAddr,
    ws_addr: Option<SocketAddr>,
    mqtt_addr: Option<SocketAddr>,
    gate_id: String,
    cores: Vec<usize>,
    fleet: Option<crate::cluster::FleetAgent>,
    admin: Option<crate::admin::Admin>,
    /// Why `[admin]` is enabled but not served.
    admin_error: Option<String>,
    /// The configuration in force and its reload.
    reloader: Arc<Reloader>,
}

impl Gate {
    /// Starts a gate on a validated config. Returns once every shard is
    /// listening (or the first error). It has no file to reload: see
    /// [`Gate::start_from_file`].
    pub fn start(cfg: &Config) -> Result<Gate, StartError> {
        Gate::start_from_file(cfg, None)
    }

    /// Starts a gate on `cfg`, loaded from `file` (`None`: the embedded
    /// default), which [`Gate::reload`] (SIGHUP, `POST /api/reload`)
    /// re-reads.
    pub fn start_from_file(cfg: &Config, file: Option<&Path>) -> Result<Gate, StartError> {
        probe_kernel()?;
        check_file_limit(cfg)?;
        let Bound {
            listeners,
            tcp: tcp_addr,
            ws: ws_addr,
            mqtt: mqtt_addr,
        } = bind_listeners(cfg)?;
        let shards = cfg.shards.cores.len();
        let fixed: Vec<_> = cfg.nodes.iter().map(|n| n.addr).collect();
        let shared = Arc::new(
            Shared::new(
                shards,
                &fixed,
                crate::limits::LimitRules::from_config(&cfg.limits).max_per_ip,
            )
            .map_err(|source| StartError::Shard {
                shard: 0,
                core: cfg.shards.cores[0],
                source,
            })?,
        );
        shared.nodes.set_unix_paths(cfg.unix_node_paths());
        let mailboxes = Mailbox::create(shards, cfg.shards.channel_capacity);
        let (ready_tx, ready_rx) = crossbeam_channel::unbounded();
        let file = file.map(Path::to_path_buf);
        let reloader = Arc::new(Reloader::new(cfg, file, shared.clone()));
        let mut gate = Gate {
            reloader,
            shared,
            threads: Vec::new(),
            tcp_addr,
            ws_addr,
            mqtt_addr,
            gate_id: cfg.gate.id.clone(),
            cores: cfg.shards.cores.clone(),
            fleet: None,
            admin: None,
            admin_error: None,
        };
        let per_shard = cfg.shards.cores.iter().zip(listeners).zip(mailboxes);
        for (i, ((&core, listeners), mailbox)) in per_shard.enumerate() {
            let p = ShardParams::from_config(cfg, i as u16);
            let (shared, ready) = (gate.shared.clone(), ready_tx.clone());
            let t = std::thread::Builder::new()
                .name(format!("ringgate-shard-{i}"))
                .spawn(move || {
                    if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                        tracing::warn!(shard = i, core, "could not pin shard to its core");
                    }
                    if !p.batch_wait.is_zero() {
                        // The batching wait is an hrtimer: without this, the
                        // default 50 µs timer slack stretches every wait.
                        // SAFETY: PR_SET_TIMERSLACK takes a plain integer
                        // and only affects this thread.
                        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, BATCH_TIMER_SLACK_NS) };
                    }
                    match Shard::new(p, listeners, shared, mailbox) {
                        Ok(s) => {
                            let _ = ready.send((i, core, Ok(())));
                            s.run()
                        }
                        Err(e) => {
                            let msg = std::io::Error::new(e.kind(), e.to_string());
                            let _ = ready.send((i, core, Err(e)));
                            Err(msg)
                        }
                    }
                });
            match t {
                Ok(t) => gate.threads.push(t),
                Err(source) => {
                    gate.stop_inner();
                    let shard = i as u16;
                    return Err(StartError::Shard {
                        shard,
                        core,
                        source,
                    });
                }
            }
        }
        drop(ready_tx);
        for _ in 0..gate.threads.len() {
            match ready_rx.recv() {
                Ok((_, _, Ok(()))) => {}
                Ok((shard, core, Err(source))) => {
                    gate.stop_inner();
                    let shard = shard as u16;
                    return Err(StartError::Shard {
                        shard,
                        core,
                        source,
                    });
                }
                Err(_) => break,
            }
        }
        match crate::cluster::FleetAgent::start(cfg, gate.shared.clone(), tcp_addr) {
            Ok(agent) => gate.fleet = agent,
            Err(e) => {
                gate.stop_inner();
                return Err(e.into());
            }
        }
        gate.start_admin(cfg);
        Ok(gate)
    }

    /// Re-reads the config file the gate started with, applies what can
    /// change live and reports what needs a restart (see [`crate::reload`]).
    pub fn reload(&self) -> Result<ReloadReport, ReloadError> {
        self.reloader.reload()
    }

    /// The gate's reloader, for a thread of its own (the signal thread).
    pub fn reloader(&self) -> Arc<Reloader> {
        self.reloader.clone()
    }

    /// Starts the admin port if `[admin]` is enabled. A failure is logged,
    /// not fatal: clients matter more than the operator's port.
    fn start_admin(&mut self, cfg: &Config) {
        if !cfg.admin.enabled {
            return;
        }
        let info = crate::admin::GateInfo {
            id: self.gate_id.clone(),
            name: cfg.gate.name.clone(),
            started_ms: self.shared.epoch_ms,
            cores: self.cores.clone(),
            tcp: self.tcp_addr,
            ws: self.ws_addr,
            mqtt: self.mqtt_addr,
        };
        match crate::admin::Admin::start(self.reloader.clone(), self.shared.clone(), info) {
            Ok(a) => self.admin = Some(a),
            Err(e) => {
                let addr = cfg.admin.addr;
                tracing::error!(%addr, error = %e, "admin port (admin.addr) not served: no metrics, API or dashboard; the gate serves clients anyway");
                self.admin_error = Some(format!("{addr}: {e}"));
            }
        }
    }

    /// The address the admin port (metrics, API, dashboard) listens on;
    /// `None` when `[admin]` is disabled or its address could not be bound.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(crate::admin::Admin::addr)
    }

    /// Asks the gate to drain (see [`Shared::request_drain`]: a hook for now).
    pub fn request_drain(&self) {
        self.shared.request_drain();
    }

    /// The client TCP address every shard listens on.
    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp_addr
    }

    /// The WebSocket address every shard listens on, when enabled.
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.ws_addr
    }

    /// The MQTT address every shard listens on, when enabled.
    pub fn mqtt_addr(&self) -> Option<SocketAddr> {
        self.mqtt_addr
    }

    /// This gate's instance id.
    pub fn id(&self) -> &str {
        &self.gate_id
    }

    /// Counters summed over every shard.
    pub fn stats(&self) -> StatsSnapshot {
        let mut total = StatsSnapshot::default();
        for s in &self.shared.stats {
            total.merge(&s.snapshot());
        }
        total
    }

    /// Counters of each shard.
    pub fn shard_stats(&self) -> Vec<StatsSnapshot> {
        self.shared.stats.iter().map(ShardStats::snapshot).collect()
    }

    /// The startup banner (instance, shards and cores, listeners, nodes).
    pub fn banner(&self, cfg: &Config, origin: &str) -> String {
        let mut b = String::new();
        let line = "─".repeat(58);
        let _ = writeln!(b, "┌{line}┐");
        let _ = writeln!(
            b,
            "  ringgate {}  —  io_uring game gateway",
            env!("CARGO_PKG_VERSION")
        );
        let _ = writeln!(b, "├{line}┤");
        let _ = writeln!(b, "  ID:       {}", self.gate_id);
        let _ = writeln!(b, "  Name:     {}", cfg.gate.name);
        let _ = writeln!(b, "  PID:      {}", std::process::id());
        let _ = writeln!(b, "  Config:   {origin}");
        let _ = writeln!(
            b,
            "  Shards:   {} (cores {:?})",
            self.cores.len(),
            self.cores
        );
        let tls = |on: bool| if on { " (TLS)" } else { "" };
        let _ = writeln!(
            b,
            "  Server:   [tcp] {}{}",
            self.tcp_addr,
            tls(cfg.network.tcp.tls_files().is_some())
        );
        if let Some(ws) = self.ws_addr {
            let scheme = if cfg.network.ws.tls_files().is_some() {
                "wss"
            } else {
                "ws"
            };
            let _ = writeln!(
                b,
                "            [{scheme}] {ws} path {}",
                cfg.network.ws.path
            );
        }
        if let Some(m) = self.mqtt_addr {
            let tls = tls(cfg.network.mqtt.tls_files().is_some());
            let _ = writeln!(b, "            [mqtt] {m}{tls}");
        }
        let _ = writeln!(
            b,
            "  Limits:   max_connections {}, packet buffer_bytes {}",
            cfg.network.tcp.max_connections, cfg.packet.buffer_bytes
        );
        match (&self.admin, &self.admin_error) {
            (Some(a), _) => {
                let _ = writeln!(
                    b,
                    "  Admin:    http://{}/ (metrics, API, dashboard)",
                    a.addr()
                );
            }
            (None, Some(e)) => {
                let _ = writeln!(b, "  Admin:    NOT SERVED ({e})");
            }
            (None, None) => {}
        }
        let nodes: Vec<String> = (cfg.nodes.iter())
            .map(|n| match &n.unix {
                Some(p) => format!("{} (via unix:{})", n.addr, p.display()),
                None => n.addr.to_string(),
            })
            .collect();
        let _ = writeln!(
            b,
            "  Nodes:    {}",
            if nodes.is_empty() {
                "(none)".into()
            } else {
                nodes.join(", ")
            }
        );
        let _ = write!(b, "└{line}┘");
        b
    }

    fn stop_inner(&mut self) {
        if let Some(a) = self.admin.take() {
            a.stop();
        }
        if let Some(f) = self.fleet.take() {
            f.stop();
        }
        self.shared.stop_all();
        for t in self.threads.drain(..) {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(%e, "shard ended with an error"),
                Err(_) => tracing::error!("shard thread panicked"),
            }
        }
    }

    /// Stops accepting, closes every connection (reason `shutdown`) and node
    /// link, and waits for the shards to exit.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    /// Blocks until every shard has exited (after [`Gate::stop`] from elsewhere, or a failure).
    pub fn wait(mut self) -> std::io::Result<()> {
        for t in self.threads.drain(..) {
            t.join()
                .map_err(|_| std::io::Error::other("shard thread panicked"))??;
        }
        Ok(())
    }

    /// Starts a drain: every shard stops accepting (new connections are
    /// refused) and tells nodes (`EVENT_DRAIN`); the registry record goes to
    /// `hang`. Sessions keep being served; [`Gate::stop`] closes the rest.
    pub fn begin_drain(&self) {
        self.shared.drain_all();
        if let Some(f) = &self.fleet {
            f.set_state(crate::fleet::registry::State::Hang);
        }
    }

    /// Client connections open now, over all shards.
    pub fn open_connections(&self) -> usize {
        self.shared
            .connections
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether someone asked for a drain (the admin API).
    pub fn drain_requested(&self) -> bool {
        (self.shared.drain_requested).load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether a shard thread has ended (a failure, or after a stop).
    pub fn finished(&self) -> bool {
        self.threads.iter().any(JoinHandle::is_finished)
    }

    /// A handle that can stop this gate from another thread (e.g. a signal handler thread).
    pub fn stopper(&self) -> Stopper {
        Stopper {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.stop_inner();
        }
    }
}

/// Stops a gate from another thread.
#[derive(Clone)]
pub struct Stopper {
    shared: Arc<Shared>,
}

impl Stopper {
    /// Asks every shard to stop (returns at once).
    pub fn stop(&self) {
        self.shared.stop_all();
    }
}

/// Timer slack of a shard with a `batch_wait`, ns.
const BATCH_TIMER_SLACK_NS: libc::c_ulong = 1_000;

/// Restricts the calling thread, and every thread it starts afterwards, to
/// `cores` (`[shards] control_cores`; empty: no change). Shards pin
/// themselves to their own core, so this places the gate's other threads:
/// signals, admin, fleet agent, log writer.
pub fn pin_control_threads(cores: &[usize]) -> std::io::Result<()> {
    if cores.is_empty() {
        return Ok(());
    }
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cores {
        // SAFETY: CPU_SET writes one bit of `set`, and `c` was checked
        // against this process's cores (well below CPU_SETSIZE).
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed; 0 = this thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions() {
        assert!(kernel_at_least("6.18.0-1-amd64", 6, 1));
        assert!(kernel_at_least("6.1.0", 6, 1));
        assert!(!kernel_at_least("5.15.0-91-generic", 6, 1));
        assert!(!kernel_at_least("garbage", 6, 1));
    }

    #[test]
    fn this_kernel_has_what_we_need() {
        probe_kernel().expect("CI and dev machines run Linux >= 6.1");
    }

    #[test]
    fn file_limit_error_says_what_fits() {
        let mut cfg = Config::default();
        cfg.network.tcp.max_connections = 10_000_000;
        match check_file_limit(&cfg) {
            Err(e @ StartError::FileLimit { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("max_connections = 10000000"), "{msg}");
                assert!(msg.contains("RLIMIT_NOFILE"), "{msg}");
            }
            other => panic!("expected FileLimit, got {other:?}"),
        }
    }
}
