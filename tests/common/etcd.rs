//! A real etcd for tests: the `etcd` binary on free loopback ports with a
//! temporary data directory, killed (and the directory removed) on drop,
//! restartable on the same ports and data; raw calls to its JSON gateway
//! that do not go through the code under test; and a TCP proxy that can
//! hold watch requests and cut connections.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};

/// How long etcd may take to answer after (re)starting.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A running etcd, killed on drop.
pub struct Etcd {
    client_port: u16,
    peer_port: u16,
    dir: PathBuf,
    child: Option<Child>,
    http: ureq::Agent,
}

/// A key's value and lease, read raw.
#[derive(Debug)]
pub struct RawKv {
    pub value: Vec<u8>,
    pub lease: i64,
}

impl Etcd {
    /// Starts etcd on free ports with a fresh data directory and waits
    /// until it answers.
    pub fn start() -> Etcd {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("ringgate-etcd-{}-{n}-{nanos}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        // Hold both listeners until both ports are chosen, so they differ.
        let (a, b) = (free_port(), free_port());
        let mut etcd = Etcd {
            client_port: a.local_addr().unwrap().port(),
            peer_port: b.local_addr().unwrap().port(),
            dir,
            child: None,
            http: ureq::Agent::config_builder()
                .proxy(None)
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(5)))
                .build()
                .into(),
        };
        drop((a, b));
        etcd.spawn();
        etcd
    }

    /// The client endpoint, `127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// Kills etcd (SIGKILL: no graceful anything).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills etcd if it runs, then starts it again on the same ports and
    /// data directory and waits until it answers.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn spawn(&mut self) {
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("etcd.log"))
            .unwrap();
        let child = Command::new("etcd")
            .arg("--name=default")
            .arg(format!("--data-dir={}", self.dir.join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=default={peer}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run etcd ({e}): install etcd-server; scripts/test.sh does")
            });
        self.child = Some(child);
        let end = Instant::now() + START_TIMEOUT;
        loop {
            let health = self.http.get(format!("{client}/health")).call();
            if let Ok(mut r) = health {
                if r.body_mut()
                    .read_to_string()
                    .unwrap_or_default()
                    .contains("true")
                {
                    return;
                }
            }
            let exited = self.child.as_mut().unwrap().try_wait().unwrap();
            if exited.is_some() || Instant::now() > end {
                let log = fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default();
                let tail = &log[log.len().saturating_sub(3000)..];
                panic!("etcd did not come up (exit: {exited:?}); its log ends with:\n{tail}");
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// POSTs `body` to the gateway's `path`; the answer's JSON (errors
    /// included).
    pub fn call(&self, path: &str, body: Value) -> Value {
        let url = format!("http://{}{path}", self.endpoint());
        let mut resp = self
            .http
            .post(url)
            .send(body.to_string())
            .expect("etcd answers");
        serde_json::from_slice(&resp.body_mut().read_to_vec().unwrap()).unwrap()
    }

    /// The value and lease of `key`, if it exists.
    pub fn get(&self, key: &str) -> Option<RawKv> {
        let r = self.call("/v3/kv/range", json!({ "key": B64.encode(key) }));
        let kv = r["kvs"].get(0)?;
        Some(RawKv {
            value: B64.decode(kv["value"].as_str().unwrap_or("")).unwrap(),
            lease: int(&kv["lease"]),
        })
    }

    /// Puts `key` = `value` with no lease.
    pub fn put(&self, key: &str, value: &[u8]) {
        let r = self.call(
            "/v3/kv/put",
            json!({ "key": B64.encode(key), "value": B64.encode(value) }),
        );
        assert!(r.get("error").is_none(), "put {key}: {r}");
    }

    /// The remaining TTL of `lease` in seconds; -1 once it is gone.
    pub fn lease_ttl(&self, lease: i64) -> i64 {
        int(&self.call("/v3/lease/timetolive", json!({ "ID": lease.to_string() }))["TTL"])
    }

    /// Revokes `lease` (deleting its keys).
    pub fn revoke(&self, lease: i64) {
        let r = self.call("/v3/lease/revoke", json!({ "ID": lease.to_string() }));
        assert!(r.get("error").is_none(), "revoke {lease}: {r}");
    }

    /// Compacts away every revision before the current one; returns it.
    pub fn compact(&self) -> i64 {
        let rev = int(&self.call("/v3/kv/range", json!({ "key": "AA==" }))["header"]["revision"]);
        let r = self.call(
            "/v3/kv/compaction",
            json!({ "revision": rev.to_string(), "physical": true }),
        );
        assert!(r.get("error").is_none(), "compact at {rev}: {r}");
        rev
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A listener on a free loopback port (drop it to free the port).
fn free_port() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

/// An int64 as the gateway writes it (a string), 0 if absent.
fn int(v: &Value) -> i64 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or(v.as_i64())
        .unwrap_or(0)
}

/// A TCP proxy in front of etcd. While [`hold_watches`](Proxy::hold_watches)
/// is on, it keeps each new watch request (a connection whose first bytes
/// are `POST /v3/watch`) until it is turned off; [`cut`](Proxy::cut) closes
/// every connection it carries.
pub struct Proxy {
    port: u16,
    shared: Arc<ProxyShared>,
    accept: Option<thread::JoinHandle<()>>,
}

#[derive(Default)]
struct ProxyShared {
    hold: AtomicBool,
    held: AtomicUsize,
    stop: AtomicBool,
    conns: Mutex<Vec<TcpStream>>,
}

impl Proxy {
    /// Starts a proxy to `target` (`host:port`) on a free loopback port.
    pub fn start(target: &str) -> Proxy {
        let listener = free_port();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(ProxyShared::default());
        let (s, target) = (shared.clone(), target.to_string());
        let accept = thread::spawn(move || {
            while !s.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((down, _)) => s.carry(down, &target),
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Proxy {
            port,
            shared,
            accept: Some(accept),
        }
    }

    /// The proxy's endpoint, `127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Holds (true) or releases (false) watch requests.
    pub fn hold_watches(&self, on: bool) {
        self.shared.hold.store(on, Ordering::SeqCst);
    }

    /// How many watch requests were held so far.
    pub fn held(&self) -> usize {
        self.shared.held.load(Ordering::SeqCst)
    }

    /// Closes every connection through the proxy.
    pub fn cut(&self) {
        for c in self.shared.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.cut();
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

impl ProxyShared {
    /// Connects `down` to `target` and pumps both ways on two threads.
    fn carry(self: &Arc<Self>, down: TcpStream, target: &str) {
        down.set_nonblocking(false).unwrap();
        let Ok(up) = TcpStream::connect(target) else {
            return; // etcd is down: the client sees its connection close
        };
        let mut conns = self.conns.lock().unwrap();
        conns.push(down.try_clone().unwrap());
        conns.push(up.try_clone().unwrap());
        drop(conns);
        let (d2, u2) = (down.try_clone().unwrap(), up.try_clone().unwrap());
        let s = self.clone();
        thread::spawn(move || s.pump(down, up, true));
        let s = self.clone();
        thread::spawn(move || s.pump(u2, d2, false));
    }

    /// Copies `from` to `to`; on the way up, holds a watch request first if
    /// asked to.
    fn pump(&self, mut from: TcpStream, mut to: TcpStream, upwards: bool) {
        let mut buf = [0u8; 16 << 10];
        let mut first = upwards;
        while let Ok(n @ 1..) = from.read(&mut buf) {
            if first && buf[..n].starts_with(b"POST /v3/watch") && self.hold.load(Ordering::SeqCst)
            {
                self.held.fetch_add(1, Ordering::SeqCst);
                while self.hold.load(Ordering::SeqCst) && !self.stop.load(Ordering::SeqCst) {
                    thread::sleep(Duration::from_millis(10));
                }
            }
            first = false;
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    }
}
