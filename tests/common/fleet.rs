//! A fleet for tests: real etcd and Redis on loopback ports, gates on
//! them with no static nodes, and registered "game" nodes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::etcd::Etcd;
use super::redis::RedisServer;
use super::{test_config, Client};
use ringgate::config::{Config, LocatorBackend, RegistryBackend};
use ringgate::fleet::etcd::{EtcdOptions, EtcdRegistry};
use ringgate::fleet::locator::Locator;
use ringgate::fleet::redis_locator::{RedisLocator, RedisOptions};
use ringgate::fleet::registry::Registry;
use ringgate::gate::Gate;
use ringgate::node::{CloseReason, Context, EventContext, EventKind, Node, NodeHandle};
use ringgate::UserId;

pub const ECHO: i32 = 1;
pub const LOGIN: i32 = 5;
/// Sets setting "room" to the payload.
pub const SET_ROOM: i32 = 6;
/// Answers setting "room" (empty if none).
pub const GET_ROOM: i32 = 7;
/// A stateful route: answers the node's id.
pub const STATEFUL: i32 = 4;
/// Binds the user to the answering node for stateful routes.
pub const BIND_HERE: i32 = 8;

pub struct Engines {
    pub etcd: Etcd,
    pub redis: RedisServer,
    pub ns: String,
}

pub fn engines(ns: &str) -> Engines {
    super::init_logs();
    Engines {
        etcd: Etcd::start(),
        redis: RedisServer::start(),
        ns: ns.into(),
    }
}

impl Engines {
    pub fn registry(&self) -> Arc<dyn Registry> {
        Arc::new(
            EtcdRegistry::new(EtcdOptions {
                endpoints: vec![self.etcd.endpoint()],
                namespace: self.ns.clone(),
                ttl: Duration::from_secs(2),
                ..EtcdOptions::default()
            })
            .expect("etcd registry"),
        )
    }

    pub fn locator(&self) -> Arc<dyn Locator> {
        Arc::new(
            RedisLocator::new(RedisOptions {
                url: self.redis.url(),
                prefix: format!("{}:locate", self.ns),
                ..RedisOptions::default()
            })
            .expect("redis locator"),
        )
    }

    /// A gate with no static nodes, on this registry and locator.
    pub fn gate(&self, id: &str) -> (Gate, Config) {
        self.gate_with(id, |_| {})
    }

    pub fn gate_with(&self, id: &str, tweak: impl FnOnce(&mut Config)) -> (Gate, Config) {
        // test_config wants a node; this gate finds its nodes in etcd.
        let mut cfg = test_config(&["127.0.0.1:1".parse().unwrap()]);
        cfg.nodes.clear();
        cfg.gate.id = id.into();
        let c = &mut cfg.cluster;
        c.registry.backend = RegistryBackend::Etcd;
        c.registry.endpoints = vec![self.etcd.endpoint()];
        c.registry.namespace = self.ns.clone();
        c.registry.ttl = Duration::from_secs(2);
        c.locator.backend = LocatorBackend::Redis;
        c.locator.url = self.redis.url();
        c.locator.prefix = format!("{}:locate", self.ns);
        cfg.session.deliver_settings = true;
        tweak(&mut cfg);
        cfg.validate().expect("fleet config is valid");
        (Gate::start(&cfg).expect("gate starts"), cfg)
    }
}

/// What a node heard: (kind, session, uid, reason) of every event.
pub type Heard = Arc<Mutex<Vec<(EventKind, u64, i64, Option<CloseReason>)>>>;

/// A registered "game" node answering ECHO with its id; LOGIN binds the uid
/// in the payload.
pub fn node(e: &Engines, id: &'static str, heard: Option<Heard>) -> NodeHandle {
    let mut b = Node::builder("game")
        .node_id(id)
        .listen("127.0.0.1:0".parse().unwrap())
        .registry(e.registry(), None)
        .locator(e.locator())
        .route(ECHO, move |ctx: &mut Context| {
            ctx.reply(id.as_bytes().to_vec())
        })
        .route(LOGIN, move |ctx: &mut Context| {
            let uid: i64 = std::str::from_utf8(ctx.payload()).unwrap().parse().unwrap();
            ctx.bind(UserId(uid)).unwrap();
            ctx.reply(id.as_bytes().to_vec());
        })
        .route(STATEFUL, move |ctx: &mut Context| {
            ctx.reply(id.as_bytes().to_vec())
        })
        .stateful(STATEFUL)
        .route(BIND_HERE, move |ctx: &mut Context| {
            ctx.bind_node().unwrap();
            ctx.reply(id.as_bytes().to_vec());
        })
        .route(SET_ROOM, |ctx: &mut Context| {
            let room = String::from_utf8(ctx.payload().to_vec()).unwrap();
            ctx.set_settings(&[("room", &room)], &[]).unwrap();
            ctx.reply(room.into_bytes());
        })
        .route(GET_ROOM, |ctx: &mut Context| {
            let room = ctx.settings().get("room").cloned().unwrap_or_default();
            ctx.reply(room.into_bytes());
        })
        .workers(2);
    if let Some(heard) = heard {
        b = b.on_event(
            &[EventKind::Bind, EventKind::Disconnect],
            move |ev: &mut EventContext| {
                let reason = (ev.kind() == EventKind::Disconnect).then(|| ev.reason());
                heard
                    .lock()
                    .unwrap()
                    .push((ev.kind(), ev.session().0, ev.uid().0, reason));
            },
        );
    }
    b.bind().expect("bind node").spawn()
}

pub fn ask(c: &mut Client, route: i32, payload: &str) -> (u8, String) {
    c.send(route, 0, payload.as_bytes());
    let p = c.recv_data().expect("a reply");
    (p.ext, String::from_utf8(p.payload.to_vec()).unwrap())
}

/// Waits until every shard of each gate has a link up to each of `nodes`
/// nodes.
pub fn wait_linked(gates: &[&Gate], cfg: &Config, nodes: u64) {
    let want = nodes * cfg.shards.cores.len() as u64;
    super::wait_until(super::PATIENCE, "every shard of every gate linked", || {
        gates.iter().all(|g| g.stats().links_up == want)
    });
}
