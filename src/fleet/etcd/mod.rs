//! [`EtcdRegistry`]: the [`Registry`] on etcd, with due's key layout, kept
//! alive and followed through etcd restarts, compactions and outages.
//!
//! It talks to etcd's **v3 JSON gRPC gateway** (HTTP/1.1 + JSON on the client
//! port, paths under `/v3/`, so etcd **3.4 or newer**; 3.3 served them under
//! `/v3beta/`) rather than gRPC: the `etcd-client` crate's build script needs
//! `protoc`, which a fresh machine lacks and the project does not install.
//! Unary calls go through `ureq` (`client.rs`); the watch stream is read by
//! hand (`stream.rs`) so that a watcher can wake every half second to see
//! whether it should stop. Plain `http://` only: TLS and auth are not
//! supported.
//!
//! ```text
//! key    /{namespace}/{kind}/{id}        e.g. /services/node/n1 (as due)
//! value  the Record as JSON, plus due's "name" (= kind)
//! lease  one per Registration, TTL from the options; kept alive every TTL/3;
//!        re-granted (record re-put) whenever it is found gone; revoked on
//!        deregister
//! watch  prefix /{namespace}/{kind}/ (with the slash), range_end = prefix
//!        with its last byte + 1; list, then watch from list revision + 1
//! ```
//!
//! Every loop here retries forever with a backoff of 100 ms doubling to 2 s,
//! warns on its first failure and says when it has recovered; only dropping
//! its handle stops it (due gives up after 3 tries, or at the first watch
//! error). Control threads only.

mod client;
mod keeper;
mod stream;
mod watcher;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, warn};

use self::client::Client;
use super::registry::{
    admit, Kind, OnChange, Record, Registration, Registry, RegistryError, WatchHandle,
};

/// The endpoint used by default: a local etcd's client port.
pub const DEFAULT_ENDPOINT: &str = "127.0.0.1:2379";
/// due's namespace, so keys read `/services/{gate|node}/{id}` as due's do.
pub const DEFAULT_NAMESPACE: &str = "services";
/// Lease TTL: how long a crashed instance stays listed. Keep-alives go out
/// every TTL/3, so two can be lost in a row without losing the lease. (due
/// uses 11 s, pitaya 60 s.)
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);
/// The shortest TTL accepted: etcd's own minimum lease TTL with its default
/// timing (1.5 election timeouts, rounded up to whole seconds).
pub const MIN_TTL: Duration = Duration::from_secs(2);
/// Time to open a TCP connection to an endpoint before trying the next.
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(3);
/// Time for etcd to answer a request (a watch: to confirm its creation).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// How often a watcher re-lists even though its watch seems healthy: a
/// half-open connection delivers nothing and reports no error. (pitaya
/// resyncs every 120 s.)
pub const DEFAULT_RESYNC: Duration = Duration::from_secs(60);

/// How to reach etcd and how to keep records there.
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// Client endpoints as `host:port` (an `http://` prefix is accepted),
    /// tried in order when one fails. Default: [`DEFAULT_ENDPOINT`].
    pub endpoints: Vec<String>,
    /// First level of every key; slashes around it are ignored. Default:
    /// [`DEFAULT_NAMESPACE`].
    pub namespace: String,
    /// Lease TTL, rounded up to whole seconds; at least [`MIN_TTL`].
    /// Default: [`DEFAULT_TTL`].
    pub ttl: Duration,
    /// TCP connect timeout per endpoint. Default: [`DEFAULT_DIAL_TIMEOUT`].
    pub dial_timeout: Duration,
    /// Answer timeout per request. Default: [`DEFAULT_REQUEST_TIMEOUT`].
    pub request_timeout: Duration,
    /// Period of a watcher's full re-list. Default: [`DEFAULT_RESYNC`].
    pub resync: Duration,
}

impl Default for EtcdOptions {
    fn default() -> EtcdOptions {
        EtcdOptions {
            endpoints: vec![DEFAULT_ENDPOINT.to_string()],
            namespace: DEFAULT_NAMESPACE.to_string(),
            ttl: DEFAULT_TTL,
            dial_timeout: DEFAULT_DIAL_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            resync: DEFAULT_RESYNC,
        }
    }
}

impl EtcdOptions {
    /// Checks the options and normalises endpoints (no `http://`, no
    /// trailing `/`) and the namespace (no surrounding `/`).
    pub fn validate(&mut self) -> Result<(), RegistryError> {
        let bad = |why: String| Err(RegistryError::Options(why));
        for ep in &mut self.endpoints {
            let trimmed = ep
                .trim()
                .trim_start_matches("http://")
                .trim_end_matches('/');
            if trimmed.is_empty() || trimmed.contains('/') {
                return bad(format!(
                    "endpoint {ep:?} is not host:port (https is not supported)"
                ));
            }
            *ep = trimmed.to_string();
        }
        if self.endpoints.is_empty() {
            return bad("no etcd endpoint given".into());
        }
        self.namespace = self.namespace.trim_matches('/').to_string();
        if self.namespace.is_empty() {
            return bad("the namespace is empty".into());
        }
        if self.ttl < MIN_TTL {
            return bad(format!(
                "ttl {:?} is below the minimum {MIN_TTL:?}",
                self.ttl
            ));
        }
        for (name, d) in [
            ("dial_timeout", self.dial_timeout),
            ("request_timeout", self.request_timeout),
            ("resync", self.resync),
        ] {
            if d.is_zero() {
                return bad(format!("{name} is zero"));
            }
        }
        Ok(())
    }

    /// The TTL in whole seconds, as etcd takes it.
    fn ttl_secs(&self) -> i64 {
        self.ttl.as_secs() as i64 + i64::from(self.ttl.subsec_nanos() > 0)
    }
}

/// The registry on etcd. Cheap to clone; clones share one HTTP agent.
#[derive(Clone)]
pub struct EtcdRegistry {
    client: Arc<Client>,
    opts: Arc<EtcdOptions>,
}

impl EtcdRegistry {
    /// A registry with these options (validated). Connects lazily: nothing
    /// is sent before the first `register` or `watch`.
    pub fn new(mut opts: EtcdOptions) -> Result<EtcdRegistry, RegistryError> {
        opts.validate()?;
        Ok(EtcdRegistry {
            client: Arc::new(Client::new(&opts)),
            opts: Arc::new(opts),
        })
    }

    /// The options in use (validated and normalised).
    pub fn options(&self) -> &EtcdOptions {
        &self.opts
    }

    /// The key of an instance: `/{namespace}/{kind}/{id}`.
    pub fn key(&self, kind: Kind, id: &str) -> String {
        format!("{}{id}", self.prefix(kind))
    }

    /// The prefix a watcher of `kind` follows: `/{namespace}/{kind}/`. The
    /// trailing slash matters: due's `/services/node` also matched
    /// `/services/nodeX/...`.
    pub fn prefix(&self, kind: Kind) -> String {
        format!("/{}/{kind}/", self.opts.namespace)
    }
}

impl fmt::Debug for EtcdRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdRegistry")
            .field("opts", &self.opts)
            .finish()
    }
}

impl Registry for EtcdRegistry {
    fn register(&self, mut rec: Record) -> Result<Registration, RegistryError> {
        admit(&mut rec)?;
        let key = self.key(rec.kind, &rec.id);
        keeper::register(self.client.clone(), key, self.opts.ttl_secs(), rec)
    }

    fn watch(&self, kind: Kind, on_change: OnChange) -> Result<WatchHandle, RegistryError> {
        let w = watcher::Watcher::new(
            self.client.clone(),
            self.prefix(kind),
            self.opts.resync,
            on_change,
        );
        w.start()
    }
}

/// The value stored for `rec`: its JSON plus due's `"name"` (the kind).
fn encode(rec: &Record) -> Result<Vec<u8>, RegistryError> {
    let encode_err = |source| RegistryError::Encode {
        id: rec.id.clone(),
        source,
    };
    let mut v = serde_json::to_value(rec).map_err(encode_err)?;
    if let Some(map) = v.as_object_mut() {
        map.insert("name".into(), rec.kind.as_str().into());
    }
    serde_json::to_vec(&v).map_err(encode_err)
}

/// The end of the key range holding every key that starts with `prefix`:
/// the prefix with its last byte increased (carrying past 0xff bytes).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // every key: etcd's "\0" range_end
}

/// Shortest backoff after a failure.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest backoff: a recovered etcd is noticed within 2 s.
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The failures of one retry loop: it warns on the first, stays quiet
/// (debug) while they repeat, says so (info) on recovery, and paces the
/// retries.
struct Health {
    what: String,
    failures: u32,
    backoff: Duration,
}

impl Health {
    fn new(what: String) -> Health {
        Health {
            what,
            failures: 0,
            backoff: BACKOFF_MIN,
        }
    }

    /// Records a failure; returns how long to wait before retrying.
    fn failed(&mut self, e: &RegistryError) -> Duration {
        self.failures += 1;
        if self.failures == 1 {
            warn!(error = %e, "{}: failed; retrying until etcd answers", self.what);
        } else {
            debug!(error = %e, failures = self.failures, "{}: failed again", self.what);
        }
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        wait
    }

    /// Records a success.
    fn recovered(&mut self) {
        if self.failures > 0 {
            info!(failures = self.failures, "{}: recovered", self.what);
        }
        self.failures = 0;
        self.backoff = BACKOFF_MIN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end(b"/services/node/"), b"/services/node0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), b"\0");
    }

    #[test]
    fn options_are_checked_and_normalised() {
        let mut o = EtcdOptions {
            endpoints: vec!["http://127.0.0.1:2379/".into()],
            namespace: "/ns/".into(),
            ttl: Duration::from_millis(2500),
            ..EtcdOptions::default()
        };
        o.validate().unwrap();
        assert_eq!(o.endpoints, ["127.0.0.1:2379"]);
        assert_eq!(o.namespace, "ns");
        assert_eq!(o.ttl_secs(), 3);
        let reg = EtcdRegistry::new(o).unwrap();
        assert_eq!(reg.key(Kind::Gate, "g1"), "/ns/gate/g1");
        assert_eq!(reg.prefix(Kind::Node), "/ns/node/");

        let short = EtcdOptions {
            ttl: Duration::from_secs(1),
            ..EtcdOptions::default()
        };
        assert!(EtcdRegistry::new(short)
            .unwrap_err()
            .to_string()
            .contains("ttl"));
        let tls = EtcdOptions {
            endpoints: vec!["https://etcd:2379".into()],
            ..EtcdOptions::default()
        };
        assert!(EtcdRegistry::new(tls).is_err());
    }

    #[test]
    fn values_carry_dues_name_field() {
        let rec = Record {
            id: "g1".into(),
            kind: Kind::Gate,
            name: "gate".into(),
            ..Record::default()
        };
        let v: serde_json::Value = serde_json::from_slice(&encode(&rec).unwrap()).unwrap();
        assert_eq!(v["name"], "gate");
        assert_eq!(v["kind"], "gate");
        assert_eq!(serde_json::from_value::<Record>(v).unwrap(), rec);
    }
}
