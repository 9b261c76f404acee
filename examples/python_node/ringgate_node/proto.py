"""The protobuf module generated from ``proto/ringgate.proto`` by ``setup.sh``.

The generated code is never committed: ``setup.sh`` writes it to
``ringgate_node/_generated/`` with the SHA-256 of the .proto it came from, and
this module refuses code generated from another version of the .proto than
the one in the repository (a merge that changes the contract must regenerate).
"""

from __future__ import annotations

import hashlib
import os
import pathlib

PROTOCOL_VERSION = 2
"""The version of the gate <-> node protocol this package speaks (hellos carry it)."""

_HERE = pathlib.Path(__file__).resolve().parent
_GENERATED = _HERE / "_generated"
_REPO_PROTO = _HERE.parents[2] / "proto" / "ringgate.proto"

try:
    from ._generated import ringgate_pb2 as pb  # noqa: F401  (re-exported)
except ImportError as e:  # pragma: no cover - exercised by hand
    raise ImportError(
        "ringgate_node: the protobuf module is not generated yet (or the protobuf "
        "package is missing): run examples/python_node/setup.sh and use the venv "
        f"it creates ({e})"
    ) from e


def _check_fresh() -> None:
    proto = pathlib.Path(os.environ.get("RINGGATE_PROTO", _REPO_PROTO))
    stamp = _GENERATED / "SOURCE_SHA256"
    if not proto.exists() or not stamp.exists():
        return  # installed outside the repository: nothing to compare with
    now = hashlib.sha256(proto.read_bytes()).hexdigest()
    if stamp.read_text().strip() != now:
        raise ImportError(
            f"ringgate_node: {proto} changed since ringgate_pb2.py was generated from it: "
            "run examples/python_node/setup.sh again"
        )


_check_fresh()

# Extension codes of the gate's error replies to clients (docs/node-protocol.md §6).
# A node may use them too: this package answers BUSY when its handlers are
# saturated and TOO_LARGE when a reply cannot fit the gate's frame limit.
EXT_NO_ROUTE = 1
EXT_NODE_DOWN = 2
EXT_TIMEOUT = 3
EXT_BUSY = 4
EXT_TOO_LARGE = 5

EventKind = pb.EventKind
CloseReason = pb.CloseReason
Code = pb.Code

EVENT_NAMES = {
    pb.EVENT_CONNECT: "connect",
    pb.EVENT_BIND: "bind",
    pb.EVENT_UNBIND: "unbind",
    pb.EVENT_DISCONNECT: "disconnect",
}
EVENTS_BY_NAME = {v: k for k, v in EVENT_NAMES.items()}


def code_name(code: int) -> str:
    """``CODE_NOT_FOUND`` -> ``not_found``; unknown numbers as ``code_7``."""
    try:
        return pb.Code.Name(code).removeprefix("CODE_").lower()
    except ValueError:
        return f"code_{code}"


def reason_name(reason: int) -> str:
    """``CLOSE_REBIND`` -> ``rebind``; unknown numbers as ``reason_9``."""
    try:
        return pb.CloseReason.Name(reason).removeprefix("CLOSE_").lower()
    except ValueError:
        return f"reason_{reason}"
