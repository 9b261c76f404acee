//! [`RedisLocator`]: the fleet's [`Locator`] on one Redis server, in due's
//! key shapes so due's tooling and habits carry over.
//!
//! # Keys (prefix `p`, default [`DEFAULT_PREFIX`])
//!
//! ```text
//! {p}:user:{uid}:gate     STRING  "gate|session|epoch"   (due: gate id only)
//! {p}:user:{uid}:node     HASH    service -> node id     (as due)
//! {p}:gate:{gate}:users   SET     uids bound on the gate (crash cleanup; new)
//! {p}:session:{uid}       HASH    session settings, PEXPIRE'd (new)
//! {p}:cluster:gate:event  channel BindGate/UnbindGate JSON (due's + sid, epoch)
//! {p}:cluster:node:event  channel BindNode/UnbindNode JSON (due's)
//! ```
//! Locator keys have no TTL; a dead gate's users are released by
//! [`purge_gate`](Locator::purge_gate).
//!
//! # Round trips
//!
//! | operation | Redis | round trips |
//! |---|---|---|
//! | `bind_gate`, `unbind_gate`, `bind_node`, `unbind_node` | EVALSHA (write + PUBLISH in one script) | 1 |
//! | `locate_gate` / `locate_gates` / `locate_node` | GET / MGET / HGET | 1 (`locate_gates` of none: 0) |
//! | `purge_gate` | EVALSHA per 256 users | ⌈users / 256⌉, at least 1 |
//! | `store_session` | MULTI DEL HSET PEXPIRE EXEC, pipelined | 1 |
//! | `load_session` / `touch_session` / `delete_session` | HGETALL / PEXPIRE / DEL | 1 |
//!
//! Plus, once per new connection, its setup, and once per script after a
//! Redis restart, SCRIPT LOAD and the retried EVALSHA (2 more).
//!
//! # Connection
//!
//! One connection behind a mutex, opened on first use (so [`RedisLocator::new`]
//! does no I/O and succeeds while Redis is down) and dropped on any I/O
//! error. A call that finds its reused connection closed by the server
//! (restart, `CLIENT KILL`, idle timeout) retries once on a new one; a
//! timeout is never retried, since the command may have run. (Should a
//! server run a command and die before replying, the retry runs it again:
//! a bind finds its own binding and changes nothing, an unbind reports
//! `false`.) Subscriptions use a connection of their own each.
//!
//! # Minimum Redis: 5.0
//!
//! Lua scripting with EVALSHA (2.6), multi-field HSET (4.0), and SPOP with
//! a count inside a script that then writes, which needs scripts replicated
//! by effects, the default from 5.0. No KEEPTTL (6.0) and no `SET … GET`
//! (6.2): scripts do GET+SET. Tested on 7.0. Single Redis only: the scripts
//! build key names, which Redis Cluster forbids.

mod options;
mod scripts;
mod subscriber;
mod wire;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use redis::{Client, Connection, RedisResult};

pub use self::options::{
    RedisOptions, DEFAULT_CONNECT_TIMEOUT, DEFAULT_IO_TIMEOUT, DEFAULT_PREFIX, DEFAULT_URL,
};
use self::scripts::{Keys, Scripts, PURGE_BATCH};
use self::subscriber::Subscriber;
use crate::fleet::locator::{
    Binding, LocateEvent, Locator, LocatorError, Notice, Subscription, Uid,
};

/// The locator on Redis. See the module docs for keys, round trips and
/// the minimum server version.
pub struct RedisLocator {
    client: Client,
    /// `host:port/db`, for error messages and logs.
    addr: String,
    keys: Keys,
    connect_timeout: Duration,
    io_timeout: Duration,
    conn: Mutex<Option<Connection>>,
    scripts: Scripts,
}

impl fmt::Debug for RedisLocator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLocator")
            .field("addr", &self.addr)
            .field("prefix", &self.keys.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisLocator {
    /// Checks the URL; connects on first use, so Redis may be down now.
    pub fn new(opts: RedisOptions) -> Result<RedisLocator, LocatorError> {
        let client = Client::open(opts.url.as_str()).map_err(|source| LocatorError::BadUrl {
            url: opts.url.clone(),
            source,
        })?;
        let info = client.get_connection_info();
        let addr = format!("{}/{}", info.addr, info.redis.db);
        let at_least_1ms = |d: Duration| d.max(Duration::from_millis(1));
        Ok(RedisLocator {
            client,
            addr,
            keys: Keys {
                prefix: opts.prefix,
            },
            connect_timeout: at_least_1ms(opts.connect_timeout),
            io_timeout: at_least_1ms(opts.io_timeout),
            conn: Mutex::new(None),
            scripts: Scripts::new(),
        })
    }

    /// The server as `host:port/db`, as error messages name it.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    fn connect(&self, op: &'static str) -> Result<Connection, LocatorError> {
        let err = |source| LocatorError::Connect {
            addr: self.addr.clone(),
            op,
            source,
        };
        let con = self
            .client
            .get_connection_with_timeout(self.connect_timeout)
            .map_err(err)?;
        con.set_read_timeout(Some(self.io_timeout)).map_err(err)?;
        con.set_write_timeout(Some(self.io_timeout)).map_err(err)?;
        Ok(con)
    }

    /// Runs `f` on the shared connection (see "Connection" in the module
    /// docs for when it reconnects and retries).
    fn call<T>(
        &self,
        op: &'static str,
        mut f: impl FnMut(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, LocatorError> {
        let mut slot = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let mut retried = false;
        loop {
            let reused = slot.is_some();
            let con = match slot.as_mut() {
                Some(con) => con,
                None => slot.insert(self.connect(op)?),
            };
            let e = match f(con) {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if e.is_io_error() || e.is_unrecoverable_error() {
                *slot = None;
            }
            if reused && !retried && e.is_connection_dropped() {
                retried = true;
                continue;
            }
            return Err(LocatorError::Command {
                addr: self.addr.clone(),
                op,
                source: e,
            });
        }
    }

    fn parse(&self, op: &'static str, key: String, value: String) -> Result<Binding, LocatorError> {
        Binding::parse(&value).ok_or_else(|| LocatorError::Corrupt {
            addr: self.addr.clone(),
            op,
            key,
            value,
        })
    }
}

/// The subscription thread's connect and reply timeouts at most: dropping
/// a [`Subscription`] waits for a connect or a PING in flight.
const SUBSCRIBE_WAIT_MAX: Duration = Duration::from_secs(1);

/// A TTL in milliseconds for PEXPIRE, at least 1.
fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, i64::MAX as u64)
}

impl Locator for RedisLocator {
    fn bind_gate(&self, uid: Uid, b: &Binding) -> Result<Option<Binding>, LocatorError> {
        let key = self.keys.user_gate(uid);
        let event = LocateEvent::BindGate {
            uid,
            binding: b.clone(),
        };
        let mut inv = self.scripts.bind_gate.prepare_invoke();
        inv.key(&key)
            .key(self.keys.gate_users(&b.gate))
            .key(self.keys.gate_channel())
            .arg(b.encode())
            .arg(uid)
            .arg(wire::encode(&event))
            .arg(&self.keys.prefix)
            .arg(&b.gate);
        let old: Option<String> = self.call("bind_gate", |con| inv.invoke(con))?;
        old.map(|v| self.parse("bind_gate", key, v)).transpose()
    }

    fn unbind_gate(&self, uid: Uid, b: &Binding) -> Result<bool, LocatorError> {
        let event = LocateEvent::UnbindGate {
            uid,
            binding: b.clone(),
        };
        let mut inv = self.scripts.unbind_gate.prepare_invoke();
        inv.key(self.keys.user_gate(uid))
            .key(self.keys.gate_users(&b.gate))
            .key(self.keys.gate_channel())
            .arg(b.encode())
            .arg(uid)
            .arg(wire::encode(&event));
        self.call("unbind_gate", |con| inv.invoke(con))
    }

    fn locate_gate(&self, uid: Uid) -> Result<Option<Binding>, LocatorError> {
        let key = self.keys.user_gate(uid);
        let v: Option<String> =
            self.call("locate_gate", |con| redis::cmd("GET").arg(&key).query(con))?;
        v.map(|v| self.parse("locate_gate", key, v)).transpose()
    }

    fn locate_gates(&self, uids: &[Uid]) -> Result<Vec<Option<Binding>>, LocatorError> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = uids.iter().map(|&u| self.keys.user_gate(u)).collect();
        let values: Vec<Option<String>> = self.call("locate_gates", |con| {
            redis::cmd("MGET").arg(&keys).query(con)
        })?;
        keys.into_iter()
            .zip(values)
            .map(|(k, v)| v.map(|v| self.parse("locate_gates", k, v)).transpose())
            .collect()
    }

    fn bind_node(
        &self,
        uid: Uid,
        service: &str,
        node: &str,
    ) -> Result<Option<String>, LocatorError> {
        let event = LocateEvent::BindNode {
            uid,
            service: service.to_owned(),
            node: node.to_owned(),
        };
        self.node_script(
            "bind_node",
            &self.scripts.bind_node,
            (uid, service, node),
            event,
        )
    }

    fn unbind_node(&self, uid: Uid, service: &str, node: &str) -> Result<bool, LocatorError> {
        let event = LocateEvent::UnbindNode {
            uid,
            service: service.to_owned(),
            node: node.to_owned(),
        };
        self.node_script(
            "unbind_node",
            &self.scripts.unbind_node,
            (uid, service, node),
            event,
        )
    }

    fn locate_node(&self, uid: Uid, service: &str) -> Result<Option<String>, LocatorError> {
        let key = self.keys.user_node(uid);
        self.call("locate_node", |con| {
            redis::cmd("HGET").arg(&key).arg(service).query(con)
        })
    }

    fn locate_nodes(&self, uid: Uid) -> Result<BTreeMap<String, String>, LocatorError> {
        let key = self.keys.user_node(uid);
        self.call("locate_nodes", |con| {
            redis::cmd("HGETALL").arg(&key).query(con)
        })
    }

    fn purge_gate(&self, gate: &str) -> Result<usize, LocatorError> {
        let gate_json = serde_json::to_string(gate).expect("a string serializes");
        let mut inv = self.scripts.purge_gate.prepare_invoke();
        inv.key(self.keys.gate_users(gate))
            .key(self.keys.gate_channel())
            .arg(&self.keys.prefix)
            .arg(gate)
            .arg(gate_json)
            .arg(PURGE_BATCH);
        let mut released = 0;
        loop {
            let (n, left): (usize, usize) = self.call("purge_gate", |con| inv.invoke(con))?;
            released += n;
            if left == 0 {
                return Ok(released);
            }
        }
    }

    fn subscribe(
        &self,
        on_notice: Box<dyn FnMut(Notice) + Send>,
    ) -> Result<Subscription, LocatorError> {
        let sub = Subscriber {
            client: self.client.clone(),
            addr: self.addr.clone(),
            channels: [self.keys.gate_channel(), self.keys.node_channel()],
            connect_timeout: self.connect_timeout.min(SUBSCRIBE_WAIT_MAX),
            io_timeout: self.io_timeout.min(SUBSCRIBE_WAIT_MAX),
        };
        Subscription::spawn("redis-locator-sub", move |stop| sub.run(on_notice, &stop))
    }

    fn store_session(
        &self,
        uid: Uid,
        settings: &BTreeMap<String, String>,
        ttl: Duration,
    ) -> Result<(), LocatorError> {
        let key = self.keys.session(uid);
        let mut p = redis::pipe();
        p.atomic().cmd("DEL").arg(&key).ignore();
        if !settings.is_empty() {
            p.cmd("HSET").arg(&key).arg(settings).ignore();
            p.cmd("PEXPIRE").arg(&key).arg(ttl_ms(ttl)).ignore();
        }
        self.call("store_session", |con| p.query(con))
    }

    fn load_session(&self, uid: Uid) -> Result<Option<BTreeMap<String, String>>, LocatorError> {
        let key = self.keys.session(uid);
        let m: BTreeMap<String, String> = self.call("load_session", |con| {
            redis::cmd("HGETALL").arg(&key).query(con)
        })?;
        Ok((!m.is_empty()).then_some(m))
    }

    fn touch_session(&self, uid: Uid, ttl: Duration) -> Result<bool, LocatorError> {
        let key = self.keys.session(uid);
        let ms = ttl_ms(ttl);
        self.call("touch_session", |con| {
            redis::cmd("PEXPIRE").arg(&key).arg(ms).query(con)
        })
    }

    fn delete_session(&self, uid: Uid) -> Result<(), LocatorError> {
        let key = self.keys.session(uid);
        self.call("delete_session", |con| {
            redis::cmd("DEL").arg(&key).query(con)
        })
    }
}

impl RedisLocator {
    /// Runs a node script (`bind_node` or `unbind_node`: the same keys and
    /// arguments) that publishes `event`, the change it makes.
    fn node_script<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        script: &redis::Script,
        (uid, service, node): (Uid, &str, &str),
        event: LocateEvent,
    ) -> Result<T, LocatorError> {
        let mut inv = script.prepare_invoke();
        inv.key(self.keys.user_node(uid))
            .key(self.keys.node_channel())
            .arg(service)
            .arg(node)
            .arg(wire::encode(&event));
        self.call(op, |con| inv.invoke(con))
    }
}
