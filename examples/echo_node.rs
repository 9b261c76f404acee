//! An echo node: serves route 1 by replying with the same route, seq and
//! payload. The gate's benchmarks and the quick start use it.
//!
//! It is also the mqant module `Echo` for MQTT clients (service `"Echo"`;
//! module names are case-sensitive). Requests are PUBLISHes to
//! `Echo/<handler>/<msgid>`; the reply comes on the same topic as
//! `{"Trace":..,"Error":..,"Result":..}`:
//!
//! | handler | answer |
//! |---|---|
//! | `HD_Echo` | `Result`: the JSON object sent (`reply_json`); not an object: `Error` |
//! | `HD_Bytes` | `Result`: the payload's bytes in base64 (`reply_bytes`) |
//! | `HD_Raw` | the payload itself, no wrapper (`reply_raw`) |
//! | `HD_Push` | first a PUBLISH of the payload on `Echo/OnPush`, then `Result: "pushed"` |
//! | `HD_Slow` | never answers: the gate answers `Error: "deadline exceeded"` |
//! | `HD_Err` | `Error: "boom"` (`reply_error`) |
//!
//! ```text
//! cargo run --release --example echo_node                    # cfg.nodes[0].addr
//! cargo run --release --example echo_node -- --listen 127.0.0.1:3601
//! cargo run --release --example echo_node -- --config etc/ringgate.toml
//! ```
//! Options: `--listen ADDR` (overrides the config), `--config PATH` (default:
//! `etc/ringgate.toml` if present, else the embedded defaults), `--workers N`
//! (default 0: handlers inline on the link threads), `--delay 300ms` (answer
//! every echo after a fixed delay: a slow backend to try the gate with; it
//! runs handlers on 64 workers unless `--workers` says otherwise),
//! `--id ID` and `--weight N` (its node id and `wrr` weight), `--listen-unix
//! PATH` (also serve a Unix socket, for a gate on this host whose `[[nodes]]`
//! entry says `unix = "PATH"`; default: that entry's `unix`, if any).
//!
//! In a fleet (docs/fleet.md) the node registers itself in the registry the
//! config names (`[cluster.registry] backend = "etcd"`, or `--etcd HOST:PORT`)
//! so gates that watch it dial it; `--advertise ADDR` is the address they
//! dial (default: the listen address).

use std::net::SocketAddr;
use std::path::PathBuf;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use ringgate::config::{units::parse_duration, Config, RegistryBackend};
use ringgate::fleet::etcd::{EtcdOptions, EtcdRegistry};
use ringgate::node::{Context, Node, NodeBuilder};

/// The service name: mqant's module name for MQTT topics (`Echo/HD_Echo/1`).
const SERVICE: &str = "Echo";

/// The route this node serves for due clients. Every request gets its echo, so it is an
/// answered route (`route`, not `notify`): the gate tracks each request and
/// answers the client with TIMEOUT if the echo does not come.
const ECHO_ROUTE: i32 = 1;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let mut listen: Option<SocketAddr> = None;
    let mut unix: Option<PathBuf> = None;
    let mut config: Option<PathBuf> = None;
    let mut workers = 0usize;
    let mut notify = false;
    let mut delay = Duration::ZERO;
    let mut id: Option<String> = None;
    let mut weight = 1u32;
    let mut etcd: Option<String> = None;
    let mut advertise: Option<SocketAddr> = None;
    let mut workers_given = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--listen" => listen = Some(value("--listen")?.parse().context("--listen ADDR")?),
            "--config" => config = Some(value("--config")?.into()),
            "--listen-unix" => unix = Some(value("--listen-unix")?.into()),
            "--workers" => {
                workers = value("--workers")?.parse().context("--workers N")?;
                workers_given = true;
            }
            "--notify" => notify = true,
            "--delay" => {
                let text = value("--delay")?;
                delay =
                    parse_duration(&text).map_err(|e| anyhow::anyhow!("--delay {text}: {e}"))?;
            }
            "--id" => id = Some(value("--id")?),
            "--weight" => weight = value("--weight")?.parse().context("--weight N")?,
            "--etcd" => etcd = Some(value("--etcd")?),
            "--advertise" => {
                advertise = Some(value("--advertise")?.parse().context("--advertise ADDR")?)
            }
            "-h" | "--help" => {
                println!(
                    "usage: echo_node [--listen ADDR] [--listen-unix PATH] [--config PATH] [--workers N] [--notify]\n\
                     \x20                [--delay DURATION] [--id ID] [--weight N] [--etcd HOST:PORT] [--advertise ADDR]"
                );
                println!("  --notify  announce the route as a notification: the gate tracks no");
                println!("            reply (the replies are plain pushes); to measure tracking");
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }

    let (cfg, origin) = Config::load_or_default(config.as_deref())?;
    let addr = match listen {
        Some(addr) => addr,
        None => match cfg.nodes.first() {
            Some(n) => n.addr,
            None => bail!("{origin} lists no [[nodes]]; pass --listen ADDR"),
        },
    };
    if unix.is_none() && listen.is_none() {
        unix = cfg.nodes.first().and_then(|n| n.unix.clone());
    }
    if !delay.is_zero() && !workers_given {
        // A sleeping handler holds its thread: give the delay room.
        workers = 64;
    }

    let echo = move |ctx: &mut Context| {
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let p = ctx.take_payload();
        ctx.reply(p);
    };
    let mut builder = Node::builder(SERVICE)
        .listen(addr)
        .workers(workers)
        .weight(weight);
    if let Some(id) = id {
        builder = builder.node_id(id);
    }
    if let Some(path) = unix {
        builder = builder.listen_unix(path);
    }
    let reg = &cfg.cluster.registry;
    let endpoints = match etcd {
        Some(e) => Some(vec![e]),
        None => (reg.backend == RegistryBackend::Etcd).then(|| reg.endpoints.clone()),
    };
    if let Some(endpoints) = endpoints {
        let registry = EtcdRegistry::new(EtcdOptions {
            endpoints,
            namespace: reg.namespace.clone(),
            ttl: reg.ttl,
            ..EtcdOptions::default()
        })?;
        builder = builder.registry(Arc::new(registry), advertise);
    }
    let builder = mqtt_handlers(builder);
    let node = if notify {
        builder.notify(ECHO_ROUTE, echo)
    } else {
        builder.route(ECHO_ROUTE, echo)
    }
    .bind()?;
    println!(
        "echo node \"{SERVICE}\" serving route {ECHO_ROUTE} and {SERVICE}/HD_* on {}",
        node.local_addr()
    );
    node.run()?;
    Ok(())
}

/// The handlers of module `Echo` for MQTT clients (see the module docs).
pub fn mqtt_handlers(builder: NodeBuilder) -> NodeBuilder {
    builder
        .handler("HD_Echo", |ctx: &mut Context| {
            let p = ctx.take_payload();
            match serde_json::from_slice::<serde_json::Value>(&p) {
                Ok(v) if v.is_object() => ctx.reply_json(p),
                _ => ctx.reply_error("HD_Echo wants a JSON object"),
            }
        })
        .handler("HD_Bytes", |ctx: &mut Context| {
            let p = ctx.take_payload();
            ctx.reply_bytes(p);
        })
        .handler("HD_Raw", |ctx: &mut Context| {
            let p = ctx.take_payload();
            ctx.reply_raw(p);
        })
        .handler("HD_Push", |ctx: &mut Context| {
            let p = ctx.take_payload();
            ctx.push_topic_nowait("Echo/OnPush", p);
            ctx.reply_string("pushed");
        })
        // Never answers: the gate answers "deadline exceeded" after its
        // MQTT request timeout (the SDK logs the missing reply at debug).
        .handler("HD_Slow", |_: &mut Context| {})
        .handler("HD_Err", |ctx: &mut Context| ctx.reply_error("boom"))
}
