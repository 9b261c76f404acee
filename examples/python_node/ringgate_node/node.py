"""A ringgate backend node on asyncio: routes, events, calls, snapshots.

    node = Node("echo")

    @node.route(1)                      # a reply route: one reply per request
    def echo(ctx):
        ctx.reply(ctx.payload)

    asyncio.run(node.serve("127.0.0.1", 3601))

Handlers may be plain functions or coroutines. A session's requests and
events reach its handlers one at a time, in the order the gate sent them
(a coroutine handler holds back the next message of the same session until it
returns); different sessions run concurrently.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import itertools
import logging
import os
import signal
import socket
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable

from .framing import MAX_U32
from .link import Link
from .framing import MessageTooLarge
from .proto import (
    EVENT_NAMES,
    EVENTS_BY_NAME,
    EXT_BUSY,
    EXT_NO_ROUTE,
    EXT_TOO_LARGE,
    PROTOCOL_VERSION,
    code_name,
    pb,
    reason_name,
)
from .sessions import (
    BIND,
    CONNECT,
    DISCONNECT,
    KINDS,
    UNBIND,
    Session,
    ShardSessions,
    SnapshotResult,
    home_shard,
    shard_of,
)

log = logging.getLogger("ringgate_node")

DEFAULT_MAX_FRAME_BYTES = 4 << 20
# Snapshot requests answered BUSY or not at all are asked again after this
# long, doubling up to the max, while the link stays up.
SNAPSHOT_RETRY_MIN, SNAPSHOT_RETRY_MAX = 0.2, 5.0


class CallError(Exception):
    """The gate answered a call with a code other than OK."""

    def __init__(self, op: str, result: pb.CallResult):
        self.op = op
        self.result = result
        self.code = result.code
        self.code_name = code_name(result.code)
        detail = f": {result.message}" if result.message else ""
        super().__init__(f"{op}: {self.code_name}{detail}")


class CallTimeout(TimeoutError):
    """No CallResult within the call's timeout. The gate may still have done it."""


class GateUnavailable(ConnectionError):
    """No open link to that gate (or every link closed while the call waited:
    the gate may or may not have done it)."""


@dataclass
class Route:
    route: int
    handler: Callable[["Context"], Any]
    reply: bool  # announced in reply_routes: the gate waits for one reply per request
    timeout_ms: int  # reply routes: the gate's wait; 0 = its link.request_timeout


@dataclass
class _Pending:
    future: asyncio.Future
    gate_id: str
    op: str


def _payload(p: bytes | bytearray | memoryview | str) -> bytes:
    return p.encode() if isinstance(p, str) else bytes(p)


def _target(uid: int | None, session_id: int | None) -> pb.Target:
    if (uid is None) == (session_id is None):
        raise ValueError("give exactly one of uid= or session_id=")
    return pb.Target(uid=uid) if uid is not None else pb.Target(session_id=session_id)


def _targets(uids: Iterable[int], session_ids: Iterable[int]) -> list[pb.Target]:
    return [pb.Target(uid=u) for u in uids] + [pb.Target(session_id=s) for s in session_ids]


class Gate:
    """One gate process (a GateHello.gate_id and epoch) and this node's links to it.

    Its methods are the node's calls to that gate. Each waits for the gate's
    CallResult and returns it, raising CallError for a code other than OK
    (``check=False`` returns it instead), CallTimeout, or GateUnavailable;
    with ``wait=False`` the call is sent with call_id 0 (nothing is answered)
    and the method returns None at once.
    """

    def __init__(self, node: "Node", hello: pb.GateHello):
        self.node = node
        self.gate_id = hello.gate_id
        self.epoch_ms = hello.epoch_ms
        self.shards = hello.shards
        self.request_timeout_ms = hello.request_timeout_ms
        self.links: dict[int, Link] = {}  # shard -> its current link
        self.tables: dict[int, ShardSessions] = {}  # shard -> sessions
        self._rr = itertools.count()

    def __repr__(self) -> str:
        return f"<gate {self.gate_id} epoch={self.epoch_ms} links={sorted(self.links)}>"

    # -- sessions -----------------------------------------------------------
    def table(self, shard: int) -> ShardSessions:
        t = self.tables.get(shard)
        if t is None:
            t = self.tables[shard] = ShardSessions(self.gate_id, shard)
        return t

    def sessions(self) -> Iterable[Session]:
        """Every live session of this gate this node knows of."""
        for t in list(self.tables.values()):
            yield from list(t.sessions.values())

    def session(self, session_id: int) -> Session | None:
        t = self.tables.get(shard_of(session_id))
        return t.sessions.get(session_id) if t else None

    # -- links --------------------------------------------------------------
    def link_for(self, session_id: int | None = None, uid: int | None = None) -> Link | None:
        """The link of the session's shard (or of the uid's home shard) when
        open, else any open link: the gate routes calls and pushes across its
        shards, the right link only saves it a hop."""
        shard = None
        if session_id is not None:
            shard = shard_of(session_id)
        elif uid is not None and self.shards:
            shard = home_shard(uid, self.shards)
        if shard is not None:
            link = self.links.get(shard)
            if link is not None and link.ready:
                return link
        ready = [l for l in self.links.values() if l.ready]
        if not ready:
            return None
        return ready[next(self._rr) % len(ready)]

    def send_push(self, push: pb.Push, prefer: Link | None = None) -> bool:
        """Sends a Push (a reply or a packet for a session) on ``prefer`` when
        open, else on any link (the gate routes it to the session's shard).
        False when no link is open."""
        link = prefer if prefer is not None and prefer.ready else self.link_for(push.session_id)
        if link is None:
            log.debug("%r: no open link: push for session %#x dropped", self, push.session_id)
            return False
        return link.send(pb.ToGate(push=push))

    # -- calls --------------------------------------------------------------
    async def call(self, op: str, msg, *, session_id: int | None = None,
                   uid: int | None = None, link: Link | None = None,
                   timeout: float | None = None, check: bool = True) -> pb.CallResult:
        """Sends ``Call{op: msg}`` and waits for its CallResult.

        The call goes on ``link`` if given, else the link of ``session_id``'s
        shard or ``uid``'s home shard, else any open link. ``timeout``
        defaults to the node's ``call_timeout``.
        """
        link = link if link is not None and link.ready else self.link_for(session_id, uid)
        if link is None:
            raise GateUnavailable(f"{op}: no open link to gate {self.gate_id}")
        call_id = self.node._next_call_id()
        fut = asyncio.get_running_loop().create_future()
        self.node._pending[call_id] = _Pending(fut, self.gate_id, op)
        try:
            link.send(pb.ToGate(call=self._call(call_id, op, msg)))
            result = await asyncio.wait_for(fut, timeout or self.node.call_timeout)
        except TimeoutError:
            raise CallTimeout(f"{op}: no answer from gate {self.gate_id} within "
                              f"{timeout or self.node.call_timeout:g}s") from None
        finally:
            self.node._pending.pop(call_id, None)
        if check and result.code != pb.CODE_OK:
            raise CallError(op, result)
        return result

    def cast(self, op: str, msg, *, session_id: int | None = None, uid: int | None = None) -> None:
        """Sends ``Call{op: msg}`` with call_id 0: the gate answers nothing."""
        link = self.link_for(session_id, uid)
        if link is None:
            raise GateUnavailable(f"{op}: no open link to gate {self.gate_id}")
        link.send(pb.ToGate(call=self._call(0, op, msg)))

    @staticmethod
    def _call(call_id: int, op: str, msg) -> pb.Call:
        call = pb.Call(call_id=call_id)
        sub = getattr(call, op)
        sub.SetInParent()  # an empty request (stat, snapshot) is still "set"
        sub.MergeFrom(msg)
        return call

    def _op(self, op: str, msg, wait: bool, session_id: int | None = None,
            uid: int | None = None, check: bool = True):
        if wait:
            return self.call(op, msg, session_id=session_id, uid=uid, check=check)
        self.cast(op, msg, session_id=session_id, uid=uid)
        return _done()

    def push(self, payload, *, route: int, seq: int = 0, ext: int = 0,
             uid: int | None = None, session_id: int | None = None, wait: bool = True,
             check: bool = True):
        """A packet for a user (``uid=``) or a session; unknown -> CODE_NOT_FOUND."""
        msg = pb.PushTo(target=_target(uid, session_id), route=route, seq=seq,
                        payload=_payload(payload), ext=ext)
        return self._op("push", msg, wait, session_id, uid, check)

    def multicast(self, payload, *, route: int, seq: int = 0, uids: Iterable[int] = (),
                  session_ids: Iterable[int] = (), wait: bool = True):
        """A packet for many users/sessions; ``result.delivered`` counts those found."""
        msg = pb.Multicast(targets=_targets(uids, session_ids), route=route, seq=seq,
                           payload=_payload(payload))
        return self._op("multicast", msg, wait)

    def broadcast(self, payload, *, route: int, seq: int = 0, bound_only: bool = False,
                  wait: bool = True):
        msg = pb.Broadcast(route=route, seq=seq, payload=_payload(payload), bound_only=bound_only)
        return self._op("broadcast", msg, wait)

    def kick(self, *, uid: int | None = None, session_id: int | None = None,
             flush: bool = False, wait: bool = True):
        return self._op("kick", pb.Kick(target=_target(uid, session_id), flush=flush), wait,
                        session_id, uid)

    async def bind(self, session_id: int, uid: int) -> pb.CallResult:
        """Binds ``uid`` to the session (the gate's ``rebind`` policy decides
        about an older session of that user: kick it, or CODE_ALREADY_BOUND)."""
        # On the uid's home shard, which holds the user's entry.
        r = await self.call("bind", pb.Bind(session_id=session_id, uid=uid), uid=uid)
        s = self.session(session_id)
        if s is not None:
            s.uid = uid  # the BIND event will say the same
        return r

    async def unbind(self, *, uid: int | None = None,
                     session_id: int | None = None) -> pb.CallResult:
        r = await self.call("unbind", _target(uid, session_id), session_id=session_id,
                            uid=uid)
        s = self.session(session_id) if session_id is not None else None
        if s is not None:
            s.uid = 0
        return r

    async def set_settings(self, *, uid: int | None = None, session_id: int | None = None,
                           set: dict[str, str] | None = None,
                           remove: Iterable[str] = ()) -> pb.CallResult:
        """Sets / removes session settings (kept by the gate: snapshots carry them)."""
        remove = list(remove)
        msg = pb.Settings(target=_target(uid, session_id), set=set or {}, remove=remove)
        r = await self.call("settings", msg, session_id=session_id, uid=uid)
        s = self.session(session_id) if session_id is not None else None
        if s is not None:
            s.settings.update(set or {})
            for k in remove:
                s.settings.pop(k, None)
        return r

    def get_ip(self, *, uid: int | None = None, session_id: int | None = None):
        """-> result.ip, result.port."""
        return self.call("get_ip", _target(uid, session_id), session_id=session_id,
                            uid=uid)

    def is_online(self, *, uid: int | None = None, session_id: int | None = None):
        """-> result.online (and result.session_id)."""
        return self.call("is_online", _target(uid, session_id), session_id=session_id,
                            uid=uid)

    def stat(self):
        """-> result.stat: connections and bound users, per shard."""
        return self.call("stat", pb.StatRequest())

    def subscribe(self, channel: str, *, uids: Iterable[int] = (),
                  session_ids: Iterable[int] = (), wait: bool = True):
        session_ids = list(session_ids)
        msg = pb.ChannelMembers(channel=channel, targets=_targets(uids, session_ids))
        return self._op("subscribe", msg, wait, session_ids[0] if len(session_ids) == 1 else None)

    def unsubscribe(self, channel: str, *, uids: Iterable[int] = (),
                    session_ids: Iterable[int] = (), wait: bool = True):
        session_ids = list(session_ids)
        msg = pb.ChannelMembers(channel=channel, targets=_targets(uids, session_ids))
        return self._op("unsubscribe", msg, wait, session_ids[0] if len(session_ids) == 1 else None)

    def publish(self, channel: str, payload, *, route: int, seq: int = 0, wait: bool = True):
        """A packet for every member of ``channel``; ``result.delivered`` counts them."""
        msg = pb.Publish(channel=channel, route=route, seq=seq, payload=_payload(payload))
        return self._op("publish", msg, wait)

    def snapshot(self, shard: int) -> Awaitable[pb.CallResult]:
        """Asks the shard for a Snapshot of its sessions: the pages rebuild
        this node's table of that shard (and reach the on_snapshot handlers)
        before the CallResult arrives."""
        link = self.links.get(shard)
        if link is None or not link.ready:
            raise GateUnavailable(f"snapshot: no open link to gate {self.gate_id} shard {shard}")
        return self.node._request_snapshot(link)


async def _done() -> None:
    return None


class Context:
    """A client request (a Deliver) and the means to answer it."""

    def __init__(self, node: "Node", link: Link, d: pb.Deliver, route: Route):
        self.node = node
        self.link = link
        self.gate: Gate = link.gate
        self.session_id: int = d.session_id
        self.uid: int = d.uid  # 0: no user bound
        self.route: int = d.route
        self.seq: int = d.seq
        self.payload: bytes = d.payload
        self.settings: dict[str, str] = dict(d.settings)  # with session.deliver_settings
        self.request_id: int = d.request_id
        self.expects_reply: bool = route.reply
        self.replied = False

    def __repr__(self) -> str:
        return f"<request route={self.route} seq={self.seq} session={self.session_id:#x} uid={self.uid}>"

    def text(self) -> str:
        return self.payload.decode("utf-8", errors="replace")

    @property
    def session(self) -> Session:
        """The node's record of this session (made now if it never heard of it)."""
        t = self.gate.table(shard_of(self.session_id))
        s = t.sessions.get(self.session_id)
        if s is None:
            s = t.sessions[self.session_id] = Session(self.gate.gate_id, self.session_id, self.uid)
        return s

    def reply(self, payload=b"", *, ext: int = 0) -> bool:
        """The reply: a packet with the request's route and seq for this
        client, carrying the request_id. Once per request; on a reply route
        the gate forwards the first reply and drops any later one (and one
        that comes after the route's timeout). False when no link is open."""
        if self.replied:
            raise RuntimeError(f"{self!r}: already replied")
        self.replied = True
        push = pb.Push(session_id=self.session_id, route=self.route, seq=self.seq,
                       payload=_payload(payload), ext=ext, request_id=self.request_id)
        try:
            return self.gate.send_push(push, prefer=self.link)
        except MessageTooLarge as e:
            # The client gets an answer now rather than TIMEOUT later: an
            # empty reply with the TOO_LARGE extension code.
            log.error("%r: reply not sent: %s; answering TOO_LARGE instead", self, e)
            push.payload, push.ext = b"", EXT_TOO_LARGE
            self.gate.send_push(push, prefer=self.link)
            return False

    def push(self, payload, *, route: int, seq: int = 0, ext: int = 0) -> bool:
        """Another packet for this client (not a reply: request_id 0)."""
        push = pb.Push(session_id=self.session_id, route=route, seq=seq,
                       payload=_payload(payload), ext=ext)
        return self.gate.send_push(push, prefer=self.link)

    # Calls about this session.
    def bind(self, uid: int):
        return self.gate.bind(self.session_id, uid)

    def unbind(self):
        return self.gate.unbind(session_id=self.session_id)

    def set_settings(self, set: dict[str, str] | None = None, remove: Iterable[str] = ()):
        return self.gate.set_settings(session_id=self.session_id, set=set, remove=remove)

    def subscribe(self, channel: str, wait: bool = True):
        return self.gate.subscribe(channel, session_ids=[self.session_id], wait=wait)

    def unsubscribe(self, channel: str, wait: bool = True):
        return self.gate.unsubscribe(channel, session_ids=[self.session_id], wait=wait)

    def kick(self, flush: bool = True, wait: bool = True):
        return self.gate.kick(session_id=self.session_id, flush=flush, wait=wait)


class EventContext:
    """A session event (connect, bind, unbind, disconnect)."""

    def __init__(self, link: Link, ev: pb.Event, session: Session):
        self.link = link
        self.gate: Gate = link.gate
        self.kind: int = ev.kind
        self.kind_name: str = EVENT_NAMES.get(ev.kind, f"kind_{ev.kind}")
        self.session_id: int = ev.session_id
        self.uid: int = ev.uid
        self.reason: int = ev.reason
        self.reason_name: str = reason_name(ev.reason)
        self.ip: str = ev.ip
        self.port: int = ev.port
        self.network: str = ev.network
        self.seq: int = ev.seq
        self.session = session

    def __repr__(self) -> str:
        return f"<event {self.kind_name} session={self.session_id:#x} uid={self.uid} seq={self.seq}>"


class Node:
    """A backend node: the gates dial it; it serves routes and tracks sessions.

    service:          name announced in the NodeHello.
    node_id:          same on every link of this process; "" lets the gate
                      name the node by its address.
    max_frame_bytes:  largest frame this node reads (announced; larger ones
                      close the link).
    track_sessions:   subscribe to all four session events and ask every new
                      link for a snapshot, keeping ``Gate.sessions()`` up to
                      date; otherwise only the events that have handlers.
    call_timeout:     seconds a call waits for its CallResult.
    max_inflight:     requests being handled or waiting for their session's
                      previous one, at most; above it a request on a reply
                      route is answered at once with the BUSY extension code
                      (and a notification is dropped), so a flood costs
                      bounded memory while the links stay read (pings
                      answered).
    ping_after:       seconds of silence from a gate before the node pings.
    idle_timeout:     seconds of silence after which the node closes a link
                      (the gate pings idle links every link.heartbeat_interval).
    """

    def __init__(self, service: str, *, node_id: str = "",
                 max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, track_sessions: bool = True,
                 call_timeout: float = 3.0, max_inflight: int = 10_000,
                 ping_after: float = 5.0, idle_timeout: float = 15.0):
        if not 1024 <= max_frame_bytes <= MAX_U32:
            raise ValueError("max_frame_bytes must be at least 1024 and fit in 32 bits")
        self.service = service
        self.node_id = node_id
        self.max_frame_bytes = max_frame_bytes
        self.track_sessions = track_sessions
        self.call_timeout = call_timeout
        self.max_inflight = max_inflight
        self.inflight = 0
        self.shed = 0  # requests refused with BUSY (or dropped) over max_inflight
        self._shed_logged = 0.0
        self.ping_after = ping_after
        self.idle_timeout = idle_timeout
        self.routes: dict[int, Route] = {}
        self._event_handlers: dict[int, list[Callable]] = collections.defaultdict(list)
        self._snapshot_handlers: list[Callable] = []
        self.gates: dict[str, Gate] = {}
        self.links: set[Link] = set()
        self._pending: dict[int, _Pending] = {}
        self._call_ids = itertools.count(1)
        self._nonces = itertools.count(1)
        self._lanes: dict[tuple[str, int], collections.deque] = {}
        self._tasks: set[asyncio.Task] = set()  # handlers, snapshot requests
        self._link_tasks: set[asyncio.Task] = set()  # one read loop per link
        self._server: asyncio.base_events.Server | None = None
        self._watchdog: asyncio.Task | None = None
        self.address: tuple[str, int] | None = None

    # -- declaring what the node serves ---------------------------------------
    def route(self, route: int, *, reply: bool = True, timeout_ms: int = 0):
        """Decorator: ``handler(ctx)`` serves client ``route``.

        reply=True (a reply route): the gate waits for exactly one
        ``ctx.reply(...)`` per request and answers the client itself with an
        error code when it does not come within ``timeout_ms`` (0: the gate's
        link.request_timeout) or the link drops. reply=False: a notification;
        the node may push or not.
        """
        if not -(1 << 31) <= route < (1 << 31):
            raise ValueError("a route is a 32-bit signed integer")

        def deco(fn):
            if route in self.routes:
                raise ValueError(f"route {route} already has a handler")
            self.routes[route] = Route(route, fn, reply, timeout_ms)
            return fn

        return deco

    def on_event(self, *kinds: int | str):
        """Decorator: ``handler(ev)`` for the given kinds (names or EventKind numbers)."""
        ks = [EVENTS_BY_NAME[k] if isinstance(k, str) else k for k in kinds] or list(KINDS)

        def deco(fn):
            for k in ks:
                self._event_handlers[k].append(fn)
            return fn

        return deco

    def on_snapshot(self, fn):
        """Decorator: ``handler(gate, result: SnapshotResult)`` after each
        snapshot has replaced a shard's session table."""
        self._snapshot_handlers.append(fn)
        return fn

    def events(self) -> list[int]:
        if self.track_sessions:
            return list(KINDS)
        return sorted(k for k, hs in self._event_handlers.items() if hs)

    def node_hello(self) -> pb.NodeHello:
        replies = sorted(r.route for r in self.routes.values() if r.reply)
        return pb.NodeHello(
            service=self.service,
            node_id=self.node_id,
            # Notifications only: a reply route is announced in reply_routes
            # (the gate serves the union of both lists).
            routes=sorted(r.route for r in self.routes.values() if not r.reply),
            version=PROTOCOL_VERSION,
            events=self.events(),
            max_frame_bytes=self.max_frame_bytes,
            reply_routes=[pb.RouteSpec(route=r, timeout_ms=self.routes[r].timeout_ms)
                          for r in replies],
            snapshot=self.track_sessions,
        )

    # -- running --------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Listens; returns the bound address. Gates connect from then on."""
        self._server = await asyncio.start_server(self._accept, host, port, reuse_address=True,
                                                  limit=1 << 16)
        sock = self._server.sockets[0]
        self.address = sock.getsockname()[:2]
        self._watchdog = asyncio.get_running_loop().create_task(self._watch())
        return self.address

    async def serve(self, host: str, port: int, on_ready: Callable[[], None] | None = None) -> None:
        """Listens and serves until SIGINT/SIGTERM (or cancellation)."""
        await self.start(host, port)
        if on_ready:
            on_ready()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # pragma: no cover
                pass
        try:
            await stop.wait()
        finally:
            await self.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._watchdog is not None:
            self._watchdog.cancel()
        for link in list(self.links):
            link.close("node stopping")
        # Closed links end their read loops by themselves (cancelling a
        # connection task of asyncio.start_server makes asyncio log an error).
        if self._link_tasks:
            await asyncio.wait(list(self._link_tasks), timeout=2)
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # pragma: no cover
                pass
        link = Link(self, reader, writer)
        self.links.add(link)
        log.debug("%r: connected", link)
        task = asyncio.current_task()
        self._link_tasks.add(task)
        try:
            await link.run()
        finally:
            self.links.discard(link)
            self._link_tasks.discard(task)

    async def _watch(self) -> None:
        """Pings quiet links and closes silent ones (a gate that vanished
        without a FIN), and links that never said hello."""
        period = max(0.05, min(1.0, self.ping_after / 2))
        while True:
            await asyncio.sleep(period)
            now = asyncio.get_running_loop().time()
            for link in list(self.links):
                silent = now - link.last_rx
                if link.hello is None:
                    if silent > self.idle_timeout:
                        link.close(f"no GateHello within {self.idle_timeout:g}s")
                elif silent > self.idle_timeout:
                    link.close(f"the gate has been silent for {silent:.1f}s")
                elif silent > self.ping_after and now - link.last_ping > self.ping_after:
                    link.last_ping = now
                    link.send(pb.ToGate(ping=pb.Ping(nonce=next(self._nonces))))

    # -- links ------------------------------------------------------------------
    def _attach(self, link: Link, hello: pb.GateHello) -> None:
        gate = self.gates.get(hello.gate_id)
        if gate is not None and gate.epoch_ms != hello.epoch_ms:
            log.info("gate %s restarted (epoch %d -> %d): forgetting its sessions and event "
                     "counters", hello.gate_id, gate.epoch_ms, hello.epoch_ms)
            self._retire(gate, "the gate restarted")
            gate = None
        if gate is None:
            gate = self.gates[hello.gate_id] = Gate(self, hello)
        old = gate.links.get(hello.shard)
        gate.links[hello.shard] = link
        link.gate = gate
        link.table = gate.table(hello.shard)
        if old is not None and old is not link:
            old.close("replaced by a new link from the same gate shard")
        if self.track_sessions:
            link.table.begin_snapshot(0)  # NodeHello.snapshot: pages come first
        log.info("link up: gate %s shard %d/%d from %s (gate max frame %d bytes)",
                 hello.gate_id, hello.shard, hello.shards, link.peer, link.peer_max)

    def _detach(self, link: Link, reason: str) -> None:
        gate = link.gate
        if gate is None:
            log.info("link from %s closed before its hello: %s", link.peer, reason)
            return
        log.info("link down: gate %s shard %d: %s", gate.gate_id, link.shard, reason)
        if gate.links.get(link.shard) is link:
            del gate.links[link.shard]
            if link.table is not None and link.table.snapshot_pending is not None:
                link.table.abandon_snapshot()  # the next link asks again
        if not any(l.ready for l in gate.links.values()):
            self._fail_calls(gate.gate_id, f"every link to gate {gate.gate_id} closed "
                                            "(the gate may or may not have done it)")

    def _retire(self, gate: Gate, reason: str) -> None:
        for link in list(gate.links.values()):
            link.close(reason)
        self._fail_calls(gate.gate_id, reason)
        if self.gates.get(gate.gate_id) is gate:
            del self.gates[gate.gate_id]

    def _fail_calls(self, gate_id: str, why: str) -> None:
        for call_id, p in list(self._pending.items()):
            if p.gate_id == gate_id and not p.future.done():
                p.future.set_exception(GateUnavailable(f"{p.op}: {why}"))

    def _next_call_id(self) -> int:
        return next(self._call_ids)

    # -- messages from the gate ---------------------------------------------------
    def _on_deliver(self, link: Link, d: pb.Deliver) -> None:
        route = self.routes.get(d.route)
        if route is None:
            log.warning("%r: a request for route %d, which this node does not serve", link, d.route)
            if d.request_id:  # tracked: answer it now rather than leave the gate to time out
                link.gate.send_push(pb.Push(session_id=d.session_id, route=d.route, seq=d.seq,
                                            ext=EXT_NO_ROUTE, request_id=d.request_id), link)
            return
        ctx = Context(self, link, d, route)
        if self.inflight >= self.max_inflight:
            self.shed += 1
            now = link.loop.time()
            if now - self._shed_logged > 1.0:
                self._shed_logged = now
                log.warning("%d requests in flight (max_inflight): answering BUSY (%d so far)",
                            self.inflight, self.shed)
            if route.reply:
                ctx.reply(b"", ext=EXT_BUSY)
            return
        self.inflight += 1
        self._dispatch((link.gate.gate_id, d.session_id), lambda: self._run(route.handler, ctx, ctx))

    def _on_event(self, link: Link, ev: pb.Event) -> None:
        table = link.table
        if table.snapshot_pending == 0:
            # The hello's snapshot comes before any event: this gate sent none.
            log.info("%r: no snapshot after the hello (the gate does not send them)", link)
            table.abandon_snapshot()
        gap = table.check_seq(ev.kind, ev.seq)
        session = table.apply_event(ev.kind, ev.session_id, ev.uid, ev.ip, ev.port, ev.network)
        if gap and table.snapshot_pending is None and not table.retry_delay:
            log.warning("%r: %s event seq %d after a gap (events were lost): asking for a "
                        "snapshot", link, EVENT_NAMES.get(ev.kind, ev.kind), ev.seq)
            self._request_snapshot(link)
        handlers = self._event_handlers.get(ev.kind)
        if handlers:
            ectx = EventContext(link, ev, session)
            for h in handlers:
                self._dispatch((link.gate.gate_id, ev.session_id),
                               lambda h=h: self._run(h, ectx, None))

    def _on_result(self, link: Link, r: pb.CallResult) -> None:
        p = self._pending.get(r.call_id)
        if p is None or p.future.done():
            log.debug("%r: CallResult for call %d, which is no longer waited for", link, r.call_id)
            return
        p.future.set_result(r)

    def _on_snapshot_page(self, link: Link, snap: pb.Snapshot) -> None:
        table = link.table
        if table.snapshot_pending is None:
            table.begin_snapshot(snap.call_id)  # unasked for: take it all the same
        sessions = [
            Session(link.gate.gate_id, s.session_id, s.uid, s.ip, s.port, s.network, dict(s.settings))
            for s in snap.sessions
        ]
        result = table.add_page(sessions, snap.last, list(snap.event_seqs), snap.call_id)
        if result is None:
            return
        bound = sum(1 for s in result.sessions.values() if s.uid)
        log.info("snapshot of gate %s shard %d (%s): %d sessions, %d bound; %d unknown before, "
                 "%d gone", result.gate_id, result.shard,
                 "hello" if result.call_id == 0 else f"call {result.call_id}",
                 len(result.sessions), bound, len(result.added), len(result.removed))
        for h in self._snapshot_handlers:
            r = self._run(h, link.gate, None, result)
            if r is not None:
                self._spawn(r)

    def _request_snapshot(self, link: Link) -> Awaitable[pb.CallResult]:
        table = link.table
        gate = link.gate
        call_id = self._next_call_id()
        table.begin_snapshot(call_id)
        fut = asyncio.get_running_loop().create_future()
        self._pending[call_id] = _Pending(fut, gate.gate_id, "snapshot")
        link.send(pb.ToGate(call=Gate._call(call_id, "snapshot", pb.SnapshotRequest())))

        async def wait() -> pb.CallResult:
            try:
                r = await asyncio.wait_for(fut, self.call_timeout)
                if r.code != pb.CODE_OK:
                    raise CallError("snapshot", r)
                return r
            except BaseException as e:
                if table.snapshot_pending == call_id:
                    table.abandon_snapshot()
                retry = isinstance(e, TimeoutError) or (
                    isinstance(e, CallError) and e.code == pb.CODE_BUSY)
                if retry and table.stale and link.ready:
                    # The view stays stale until a snapshot lands: ask again later.
                    table.retry_delay = min(SNAPSHOT_RETRY_MAX,
                                            max(SNAPSHOT_RETRY_MIN, table.retry_delay * 2))
                    link.loop.call_later(table.retry_delay, self._retry_snapshot, link)
                log.warning("%r: snapshot request failed: %s%s", link, e or type(e).__name__,
                            f"; asking again in {table.retry_delay:g}s" if retry and table.stale
                            and link.ready else "")
                raise
            finally:
                self._pending.pop(call_id, None)

        task = self._spawn(wait())
        return task

    def _retry_snapshot(self, link: Link) -> None:
        if link.ready and link.table.stale and link.table.snapshot_pending is None:
            self._request_snapshot(link)

    # -- running handlers -----------------------------------------------------------
    def _spawn(self, aw: Awaitable) -> asyncio.Task:
        task = asyncio.ensure_future(aw)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            pass  # already logged where it was raised

    def _run(self, fn: Callable, arg, ctx: Context | None, *more) -> Awaitable | None:
        """Calls a handler; returns an awaitable when it is a coroutine. Errors
        are logged, never raised into the link."""
        try:
            r = fn(arg, *more)
        except Exception:
            log.exception("handler %s failed on %r", getattr(fn, "__name__", fn), arg)
            self._after(ctx)
            return None
        if inspect.isawaitable(r):
            return self._finish(fn, arg, ctx, r)
        self._after(ctx)
        return None

    async def _finish(self, fn, arg, ctx: Context | None, aw: Awaitable) -> None:
        try:
            await aw
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("handler %s failed on %r", getattr(fn, "__name__", fn), arg)
        self._after(ctx)

    def _after(self, ctx: Context | None) -> None:
        if ctx is None:
            return
        self.inflight -= 1
        if ctx.expects_reply and not ctx.replied:
            log.warning("%r: the handler returned without a reply: the gate answers the client "
                        "with its TIMEOUT code when the route's timeout expires", ctx)

    def _dispatch(self, key: tuple[str, int], fn: Callable[[], Awaitable | None]) -> None:
        """Runs ``fn`` now when nothing of this session is running, else after it."""
        lane = self._lanes.get(key)
        if lane is not None:
            lane.append(fn)
            return
        aw = fn()
        if aw is None:
            return
        lane = self._lanes[key] = collections.deque()
        self._spawn(self._drain(key, lane, aw))

    async def _drain(self, key, lane: collections.deque, aw: Awaitable) -> None:
        try:
            await aw
            while lane:
                aw = lane.popleft()()
                if aw is not None:
                    await aw
        finally:
            del self._lanes[key]


def default_node_id(service: str, host: str, port: int) -> str:
    """Stable across restarts at one address: ``<service>@<host>:<port>/<hostname>``."""
    return f"{service}@{host}:{port}/{os.uname().nodename}"
