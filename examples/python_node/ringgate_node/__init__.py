"""A ringgate backend node in Python (asyncio), written from proto/ringgate.proto.

Public API: ``Node`` (routes, event and snapshot handlers), ``Context`` (a
request: ``reply``, ``push`` and calls about its session), ``EventContext``,
``Gate`` (calls to one gate), ``Session``, and the call errors.
"""

from .framing import MessageTooLarge, ProtocolError
from .node import (
    CallError,
    CallTimeout,
    Context,
    EventContext,
    Gate,
    GateUnavailable,
    Node,
    default_node_id,
)
from .proto import PROTOCOL_VERSION, pb
from .sessions import Session, SnapshotResult

__all__ = [
    "CallError",
    "CallTimeout",
    "Context",
    "EventContext",
    "Gate",
    "GateUnavailable",
    "MessageTooLarge",
    "Node",
    "PROTOCOL_VERSION",
    "ProtocolError",
    "Session",
    "SnapshotResult",
    "default_node_id",
    "pb",
]
