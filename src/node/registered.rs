//! A node in the registry: its record (due's instance record: service,
//! state, routes with flags, route names, events, endpoint, weight) put
//! under a lease when it starts serving, its state changes published, and
//! its graceful stop: `hang` first, so gates stop sending it stateless
//! requests while users bound to it are still served, then deregistered.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::options::Options;
use crate::fleet::registry::{Kind, Record, Registration, Registry, RouteRecord, State};
use crate::link::proto::NodeState;

/// How a node registers itself (see [`NodeBuilder::registry`](super::NodeBuilder::registry)).
#[derive(Clone)]
pub(crate) struct RegistrySetup {
    pub(crate) registry: Arc<dyn Registry>,
    /// The address gates dial; `None`: the listener's (loopback if it
    /// listens on every interface).
    pub(crate) advertise: Option<SocketAddr>,
}

/// The registry's state for a node state.
pub(crate) fn registry_state(s: NodeState) -> State {
    match s {
        NodeState::Work => State::Work,
        NodeState::Busy => State::Busy,
        NodeState::Hang => State::Hang,
        NodeState::Shut => State::Shut,
    }
}

/// The node's record.
pub(crate) fn node_record(o: &Options, endpoint: SocketAddr, state: NodeState) -> Record {
    let flags = |route: i32| o.flags.iter().find(|f| f.route == route);
    let routes = (o.routes.iter())
        .map(|r| RouteRecord {
            id: r.route,
            internal: flags(r.route).is_some_and(|f| f.internal),
            stateful: flags(r.route).is_some_and(|f| f.stateful),
            authorized: flags(r.route).is_some_and(|f| f.authorized),
        })
        .collect();
    Record {
        id: o.node_id.clone(),
        kind: Kind::Node,
        name: o.service.clone(),
        state: registry_state(state),
        routes,
        names: (o.routes.iter())
            .filter_map(|r| Some((r.name.clone()?, r.route)))
            .collect(),
        events: o.events.iter().map(|(k, _)| k.to_proto()).collect(),
        endpoint: endpoint.to_string(),
        weight: o.weight,
        epoch_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        ..Record::default()
    }
}

/// Registers the node; failures are logged (the node serves its static
/// gates anyway) and `None` returned.
pub(crate) fn register(
    setup: &RegistrySetup,
    o: &Options,
    local: SocketAddr,
    state: NodeState,
) -> Option<Registration> {
    let mut endpoint = setup.advertise.unwrap_or(local);
    if endpoint.ip().is_unspecified() {
        endpoint.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    match setup.registry.register(node_record(o, endpoint, state)) {
        Ok(r) => {
            tracing::info!(node = %o.node_id, %endpoint, "node registered");
            Some(r)
        }
        Err(e) => {
            tracing::error!(node = %o.node_id, error = %e, "node: cannot register; gates that discover nodes will not find it");
            None
        }
    }
}

/// The wait in [`NodeHandle::drain`](super::NodeHandle::drain) between
/// `hang` and leaving, when none is given.
pub const DEFAULT_DRAIN_GRACE: Duration = Duration::from_secs(2);
