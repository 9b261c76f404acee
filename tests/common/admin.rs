//! The admin port in tests: a gate with its admin port on a free loopback
//! port and a node that logs users in, a client of the admin API, a small
//! closed-loop load, and a throwaway Prometheus server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ringgate::admin::cli::AdminClient;
use ringgate::config::Config;
use ringgate::gate::Gate;
use ringgate::node::{Context, Node, NodeHandle};
use ringgate::UserId;
use serde_json::Value;

use super::{test_config, wait_until, Client};

/// Echo route of [`admin_node`].
pub const ECHO: i32 = 1;
/// Login route of [`admin_node`]: binds the decimal uid in the payload.
pub const LOGIN: i32 = 10;

/// A node that echoes (route 1) and logs users in (route 10).
pub fn admin_node() -> NodeHandle {
    Node::builder("admin-test")
        .listen("127.0.0.1:0".parse().unwrap())
        .workers(2)
        .route(ECHO, |ctx: &mut Context| {
            let p = ctx.payload().clone();
            ctx.reply(p);
        })
        .route(LOGIN, |ctx: &mut Context| {
            let uid: i64 = std::str::from_utf8(ctx.payload()).unwrap().parse().unwrap();
            match ctx.bind(UserId(uid)) {
                Ok(()) => ctx.reply(format!("ok {uid}")),
                Err(e) => ctx.reply(format!("error {e}")),
            }
        })
        .bind()
        .expect("bind the admin test node")
        .spawn()
}

/// A gate (admin port on 127.0.0.1:0, `tweak` applied) in front of
/// [`admin_node`], every shard's link up.
pub struct AdminStack {
    pub gate: Gate,
    pub node: NodeHandle,
    pub cfg: Config,
}

impl AdminStack {
    pub fn start(tweak: impl FnOnce(&mut Config)) -> AdminStack {
        super::init_logs();
        let node = admin_node();
        let mut cfg = test_config(&[node.local_addr()]);
        cfg.admin.addr = "127.0.0.1:0".parse().unwrap();
        tweak(&mut cfg);
        cfg.validate().expect("admin test config is valid");
        let gate = Gate::start(&cfg).expect("gate starts");
        let shards = cfg.shards.cores.len() as u64;
        wait_until(Duration::from_secs(5), "every shard's link up", || {
            gate.stats().links_up == shards
        });
        AdminStack { gate, node, cfg }
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.gate.admin_addr().expect("the admin port is served")
    }

    /// An API client with the config's token (if any).
    pub fn api(&self) -> AdminClient {
        let t = &self.cfg.admin.token;
        AdminClient::new(self.admin_addr(), (!t.is_empty()).then(|| t.clone()))
    }

    /// A client connected to the gate.
    pub fn client(&self) -> Client {
        Client::connect(self.gate.tcp_addr(), self.cfg.packet)
    }

    /// A client logged in as `uid`.
    pub fn login(&self, uid: i64) -> Client {
        let mut c = self.client();
        c.send(LOGIN, 1, uid.to_string().as_bytes());
        let p = c.recv_data().expect("login reply");
        assert_eq!(p.payload.as_ref(), format!("ok {uid}").as_bytes());
        c
    }
}

/// `GET path`, expecting 200: the JSON body.
pub fn get(api: &AdminClient, path: &str) -> Value {
    api.ok("GET", path, None)
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// Clients that each send an echo request and wait for its reply, in a
/// loop, `gap` apart, until stopped: counts requests and replies.
pub struct Load {
    stop: Arc<AtomicBool>,
    pub sent: Arc<AtomicU64>,
    pub answered: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
    started: Instant,
}

impl Load {
    pub fn start(clients: Vec<Client>, gap: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let (sent, answered) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let threads = clients
            .into_iter()
            .map(|mut c| {
                let (stop, sent, answered) = (stop.clone(), sent.clone(), answered.clone());
                std::thread::spawn(move || {
                    let mut seq = 0;
                    while !stop.load(Ordering::Relaxed) {
                        seq = (seq + 1) % 30000;
                        c.send(ECHO, seq, b"ping");
                        sent.fetch_add(1, Ordering::Relaxed);
                        c.recv_data().expect("echo reply");
                        answered.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(gap);
                    }
                })
            })
            .collect();
        Load {
            stop,
            sent,
            answered,
            threads,
            started: Instant::now(),
        }
    }

    /// Stops the clients (each finishes its request); returns (requests,
    /// seconds it ran).
    pub fn stop(self) -> (u64, f64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("load client");
        }
        let n = self.sent.load(Ordering::Relaxed);
        assert_eq!(n, self.answered.load(Ordering::Relaxed));
        (n, self.started.elapsed().as_secs_f64())
    }
}

/// A throwaway Prometheus server on a free loopback port scraping one
/// target every second; its data in a temp dir; killed on drop.
pub struct Prometheus {
    child: Child,
    pub addr: SocketAddr,
    dir: PathBuf,
}

impl Prometheus {
    pub fn start(target: SocketAddr) -> Prometheus {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ringgate-prometheus-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: ringgate\n    static_configs:\n      - targets: ['{target}']\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let addr: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run prometheus ({e}): scripts/test.sh installs Debian's prometheus")
            });
        let p = Prometheus { child, addr, dir };
        let api = ureq_agent();
        wait_until(Duration::from_secs(15), "prometheus to be ready", || {
            api.get(format!("http://{addr}/-/ready"))
                .call()
                .is_ok_and(|r| r.status() == 200)
        });
        p
    }

    /// The value of an instant query that yields one sample, if it does.
    pub fn query(&self, q: &str) -> Option<f64> {
        let url = format!("http://{}/api/v1/query", self.addr);
        let mut r = ureq_agent().get(&url).query("query", q).call().ok()?;
        let v: Value = serde_json::from_str(&r.body_mut().read_to_string().ok()?).ok()?;
        let res = v["data"]["result"].as_array()?;
        if res.len() != 1 {
            return None;
        }
        res[0]["value"][1].as_str()?.parse().ok()
    }

    /// The log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ureq_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .proxy(None)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into()
}
