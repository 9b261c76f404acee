"""echo: every request on the echo route is answered with its own payload."""

from __future__ import annotations

from ..node import Context, Node

DEFAULT_ROUTE = 1


def make(*, route: int = DEFAULT_ROUTE, **node_options) -> Node:
    node = Node("echo", **node_options)

    @node.route(route)  # a reply route: the gate waits for one reply per request
    def echo(ctx: Context) -> None:
        ctx.reply(ctx.payload)  # same route and seq, carrying the request_id

    return node
