"""python3 -m ringgate_node --listen 127.0.0.1:3601 --service echo|chat"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys

from .node import DEFAULT_MAX_FRAME_BYTES, default_node_id
from .services import SERVICES

_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1 << 20, "mb": 1 << 20,
          "mib": 1 << 20}


def size(text: str) -> int:
    """``4096``, ``16KiB``, ``4MiB`` (K, KB and KiB all mean 1024, as in the gate's config)."""
    m = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 65536, 64KiB, 4MiB)")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m ringgate_node",
                                description="A ringgate backend node (protocol version 2).")
    p.add_argument("--listen", type=address, default=("127.0.0.1", 3601),
                   help="HOST:PORT the gates dial (their [[nodes]] addr); default 127.0.0.1:3601")
    p.add_argument("--service", choices=sorted(SERVICES), required=True)
    p.add_argument("--route", type=int, default=None,
                   help="echo: the route it answers (default 1)")
    p.add_argument("--node-id", default=None,
                   help="NodeHello.node_id (default: <service>@<listen address>/<hostname>)")
    p.add_argument("--max-frame-bytes", type=size, default=DEFAULT_MAX_FRAME_BYTES,
                   help="largest frame this node reads, announced in its hello (default 4MiB)")
    p.add_argument("--call-timeout", type=float, default=5.0,
                   help="seconds a call to the gate waits for its result (default 5)")
    p.add_argument("--no-sessions", action="store_true",
                   help="do not track sessions (no events unless handled, no snapshots)")
    p.add_argument("--log-level", default="info",
                   choices=("debug", "info", "warning", "error"))
    args = p.parse_args(argv)

    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host, port = args.listen
    options = dict(
        node_id=args.node_id if args.node_id is not None else default_node_id(args.service, host, port),
        max_frame_bytes=args.max_frame_bytes,
        call_timeout=args.call_timeout,
        track_sessions=not args.no_sessions,
    )
    if args.route is not None:
        if args.service != "echo":
            p.error("--route is for --service echo")
        options["route"] = args.route
    try:
        node = SERVICES[args.service](**options)
    except ValueError as e:
        p.error(str(e))

    def ready() -> None:
        h, pt = node.address
        replies = sorted(r.route for r in node.routes.values() if r.reply)
        print(f"ringgate_node: {node.service} node {node.node_id!r} listening on {h}:{pt}, "
              f"reply routes {replies}, protocol version 2", flush=True)

    try:
        asyncio.run(node.serve(host, port, on_ready=ready))
    except OSError as e:
        print(f"ringgate_node: cannot listen on {host}:{port}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # pragma: no cover
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
