//! Stateful routing from the node's side (due's `BindNode` / `UnbindNode`):
//! bind a user to one node instance of a service, so that the gate sends
//! the service's stateful routes ([`NodeBuilder::stateful`](super::NodeBuilder::stateful))
//! to that instance whatever its state; and unbind it, compare-and-delete,
//! so a node that lost the user cannot remove another node's binding.
//!
//! | operation | goes on the link of | blocking result |
//! |---|---|---|
//! | `bind_node`, `unbind_node` | the target's shard | bound / removed |

use super::error::NodeError;
use super::gate_client::{GateClient, Via};
use super::messages::valid;
use super::session_context::SessionContext;
use super::types::Target;
use crate::link::proto::{call, NodeBinding};

/// The `Call` op binding (or unbinding) `to`'s user; empty strings name
/// the calling node and its service.
fn node_binding_op(to: Target, service: &str, node: &str, bind: bool) -> call::Op {
    let b = NodeBinding {
        target: Some(to.to_proto()),
        service: service.into(),
        node_id: node.into(),
    };
    if bind {
        call::Op::BindNode(b)
    } else {
        call::Op::UnbindNode(b)
    }
}

impl GateClient {
    /// Binds the user of a session (or a bound user) to node `node` of
    /// `service` and waits for the gate: that service's stateful routes
    /// from this user go to that node from now on. Empty `service` / `node`
    /// mean the calling node's own. [`NodeError::Invalid`]: the session has
    /// no user; [`NodeError::NotFound`]: it is gone.
    pub fn bind_node(
        &self,
        to: impl Into<Target>,
        service: &str,
        node: &str,
    ) -> Result<(), NodeError> {
        let to = valid(to.into())?;
        self.call(Via::To(to), node_binding_op(to, service, node, true))
            .map(drop)
    }

    /// Removes the binding of `service` if it still names `node` (empty:
    /// as in [`GateClient::bind_node`]). Returns whether it did.
    pub fn unbind_node(
        &self,
        to: impl Into<Target>,
        service: &str,
        node: &str,
    ) -> Result<bool, NodeError> {
        let to = valid(to.into())?;
        let r = self.call(Via::To(to), node_binding_op(to, service, node, false))?;
        Ok(r.delivered > 0)
    }
}

impl<W> SessionContext<'_, W> {
    /// Binds this session's user to this node for this node's service and
    /// waits for the gate ([`GateClient::bind_node`]): from now on the
    /// service's stateful routes from this user come here.
    pub fn bind_node(&mut self) -> Result<(), NodeError> {
        let op = node_binding_op(self.target(), "", "", true);
        self.call_here(op)
    }

    /// [`bind_node`](Self::bind_node) without waiting (in order with this
    /// handler's replies on the request's link).
    pub fn bind_node_nowait(&mut self) -> Result<(), NodeError> {
        let op = node_binding_op(self.target(), "", "", true);
        self.cast_here(op)
    }

    /// Removes this user's binding to this node for this node's service,
    /// if it still names this node, and waits for the gate.
    pub fn unbind_node(&mut self) -> Result<(), NodeError> {
        let op = node_binding_op(self.target(), "", "", false);
        self.call_here(op)
    }
}
