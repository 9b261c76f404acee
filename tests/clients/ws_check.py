#!/usr/bin/env python3
"""Scenario checker for a due-format gate's WebSocket listener (ws and wss).

The WebSocket side is the third-party ``websockets`` library (its synchronous
client), not ringgate code; packets are encoded and decoded with
``due_client.PacketFormat`` (written from the wire spec). due's convention over
WebSocket: every binary message carries exactly one packet, size prefix included.

    python3 tests/clients/ws_check.py --url ws://127.0.0.1:3554/ --scenario all
    python3 tests/clients/ws_check.py --url wss://127.0.0.1:3554/ --cafile cert.pem --scenario echo

The gate must front a node that echoes ``--echo-route`` (default 1) and, for the
``chat`` scenario, the chat example node (routes 1-4, pushes on 100 and 101; give
the echo route another number, e.g. ``--echo-route 10``, when both are behind one
gate). Prints ``PASS name (details)`` / ``FAIL name: reason`` per scenario and exits
0 only if every selected scenario passed.
"""

from __future__ import annotations

import argparse
import os
import random
import select
import ssl
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from due_client import PacketFormat, ProtocolError, add_packet_args, format_kwargs  # noqa: E402

try:
    import websockets
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect as ws_connect
    # websockets >= 17 warns unless connect() is a context manager or legacy=True
    # says "return the open connection directly", which this script wants.
    import inspect
    LEGACY = {"legacy": True} if "legacy" in inspect.signature(ws_connect).parameters else {}
except ImportError as e:  # pragma: no cover - environment problem, reported plainly
    print(f"FAIL setup: the 'websockets' package is missing ({e}); "
          f"scripts/test.sh installs it (pip install websockets)", flush=True)
    sys.exit(2)

ALL_SCENARIOS = ("heartbeat", "echo", "unknown-route", "fragmented", "ping", "text",
                 "oversize", "close", "chat")

# The chat node's routes (docs/chat.md).
LOGIN, JOIN, SAY, WHISPER, ROOM_MESSAGE, WHISPER_MESSAGE = 1, 2, 3, 4, 100, 101


class ScenarioFailed(Exception):
    pass


class SerializedTLS:
    """Hands ``websockets`` TLS sockets whose reads and writes never overlap.

    ``websockets``' sync client reads in a background thread while the caller sends. On
    an ``ssl.SSLSocket`` that runs ``SSL_read`` and ``SSL_write`` on one OpenSSL
    connection at the same time from two threads, which CPython does not serialize and
    OpenSSL does not support. With TLS 1.3 the server's post-handshake session tickets
    wake the reader just as the upgrade request is written, and now and then (between 1
    in 30 and 1 in 1,000 connections here) the request is never sent at all. A
    single-threaded OpenSSL client and rustls clients never lost one in 1,000
    connections. Passed as ``ssl=``, this wraps each socket in :class:`_LockedTLSSocket`.
    """

    def __init__(self, context: ssl.SSLContext):
        self.context = context

    def wrap_socket(self, sock, server_hostname=None):
        return _LockedTLSSocket(self.context.wrap_socket(sock, server_hostname=server_hostname))


class _LockedTLSSocket:
    """An SSLSocket whose recv (non-blocking, retried after select) and sendall hold one
    lock; every other attribute is the socket's."""

    def __init__(self, tls: ssl.SSLSocket):
        self._tls = tls
        self._lock = threading.Lock()

    def recv(self, bufsize: int) -> bytes:
        timeout = self._tls.gettimeout()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                try:
                    self._tls.setblocking(False)
                    return self._tls.recv(bufsize)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                    pass
                except ssl.SSLEOFError:
                    return b""
                finally:
                    self._tls.settimeout(timeout)
            wait = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
            if wait <= 0:
                raise TimeoutError("timed out")
            select.select([self._tls], [], [], wait)

    def sendall(self, data) -> None:
        with self._lock:
            self._tls.sendall(data)

    def __getattr__(self, name):
        return getattr(self._tls, name)


def short(b: bytes, n: int = 24) -> str:
    h = b.hex()
    return h if len(h) <= 2 * n else h[: 2 * n] + f"...({len(b)} bytes)"


class Ctx:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.url = args.url
        self.fmt = PacketFormat(**format_kwargs(args))
        self.timeout = args.timeout
        self.ssl = None
        if self.url.startswith("wss://"):
            self.ssl = SerializedTLS(ssl.create_default_context(cafile=args.cafile))
        elif args.cafile:
            raise SystemExit("--cafile is for wss:// URLs")

    def connect(self, **kw):
        """An open connection (upgrade done). ``proxy=None``: never use a proxy from the
        environment for a loopback gate."""
        opts = dict(ssl=self.ssl, proxy=None, open_timeout=self.timeout,
                    close_timeout=self.timeout, ping_interval=None, **LEGACY)
        opts.update(kw)
        try:
            return ws_connect(self.url, **opts)
        except Exception as e:  # noqa: BLE001
            raise ScenarioFailed(f"cannot open {self.url}: {type(e).__name__}: {e}") from e

    # -- one packet per binary message ---------------------------------------------
    def packet(self, route: int, seq: int, payload: bytes) -> bytes:
        return self.fmt.encode_data(route, seq, payload)

    def decode(self, msg) -> tuple:
        """The one packet a server message carries (strict: binary, whole, nothing after)."""
        if isinstance(msg, str):
            raise ScenarioFailed(f"gate sent a text message {msg[:40]!r}; expected binary")
        if len(msg) < 4:
            raise ScenarioFailed(f"binary message of {len(msg)} bytes: no room for a size prefix")
        size = int.from_bytes(msg[:4], self.fmt.byte_order)
        if size != len(msg) - 4:
            raise ScenarioFailed(f"message of {len(msg)} bytes holds size prefix {size}: "
                                 f"not exactly one packet ({short(msg)})")
        try:
            self.fmt.check_size(size)
            return self.fmt.decode_body(msg[4:])
        except ProtocolError as e:
            raise ScenarioFailed(f"malformed packet from gate: {e} ({short(msg)})") from e

    def recv_packet(self, ws, timeout: float | None = None, skip_heartbeats: bool = True):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ScenarioFailed(f"no packet within {timeout or self.timeout:g}s")
            try:
                msg = ws.recv(timeout=remaining)
            except TimeoutError:
                continue
            except ConnectionClosed as e:
                raise ScenarioFailed(f"connection closed while waiting for a packet: {close_text(e)}")
            pkt = self.decode(msg)
            if pkt[0] == "heartbeat" and skip_heartbeats:
                continue
            return pkt

    def request(self, ws, route: int, seq: int, payload: bytes) -> tuple:
        ws.send(self.packet(route, seq, payload))
        return self.recv_packet(ws)


def close_text(e: ConnectionClosed) -> str:
    rcvd = f"gate sent close {e.rcvd.code}" if e.rcvd is not None else "no close frame from the gate"
    return f"{rcvd} ({type(e).__name__})"


def expect_close(ctx: Ctx, ws, code: int, what: str, wait: float = 3.0) -> str:
    """Waits for the gate to close ``ws`` with ``code``; data packets meanwhile fail."""
    t0 = time.monotonic()
    deadline = t0 + wait
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ScenarioFailed(f"connection still open {wait:g}s after {what}")
        try:
            msg = ws.recv(timeout=remaining)
        except TimeoutError:
            continue
        except ConnectionClosed as e:
            if e.rcvd is None:
                raise ScenarioFailed(f"after {what} the connection ended without a close frame "
                                     f"(expected close {code}): {type(e).__name__}")
            if e.rcvd.code != code:
                raise ScenarioFailed(f"after {what} the gate closed with {e.rcvd.code} "
                                     f"{e.rcvd.reason!r}, expected {code}")
            return f"close {code} in {time.monotonic() - t0:.3f}s"
        pkt = ctx.decode(msg)
        if pkt[0] != "heartbeat":
            raise ScenarioFailed(f"after {what} the gate sent {pkt!r} instead of closing")


def check_echo(ctx: Ctx, ws, label: str, rng: random.Random, n: int, window: int,
               big_every: int = 10) -> int:
    """Pipelined requests on the echo route, every reply checked exactly."""
    route = ctx.args.echo_route
    outstanding: dict = {}
    sent = done = 0
    while done < n:
        while sent < n and len(outstanding) < window:
            sent += 1
            seq = sent % 32767 or 1
            # Mostly small payloads (7-bit frame lengths), every big_every-th one large
            # enough for the 16-bit length form, up to the packet limit.
            if sent % big_every == 0:
                size = rng.randint(126, ctx.fmt.buffer_bytes)
            else:
                size = rng.randint(0, 64)
            payload = rng.randbytes(size)
            outstanding[seq] = (sent, payload)
            try:
                ws.send(ctx.packet(route, seq, payload))
            except ConnectionClosed as e:
                raise ScenarioFailed(f"{label}: closed while sending #{sent}: {close_text(e)}")
        pkt = ctx.recv_packet(ws)
        if pkt[0] != "data":
            continue
        _, ext, r, seq, payload = pkt
        if ext != 0 or r != route:
            raise ScenarioFailed(f"{label}: reply ext={ext} route={r} seq={seq}, expected an echo "
                                 f"on route {route}")
        entry = outstanding.pop(seq, None)
        if entry is None:
            raise ScenarioFailed(f"{label}: reply with seq {seq} that is not outstanding")
        if entry[1] != payload:
            raise ScenarioFailed(f"{label}: payload mismatch for request #{entry[0]} (seq {seq}): "
                                 f"sent {short(entry[1])}, got {short(payload)}")
        done += 1
    return done


# -- scenarios --------------------------------------------------------------------------

def scenario_heartbeat(ctx: Ctx) -> str:
    with ctx.connect() as ws:
        t0 = time.monotonic()
        ws.send(ctx.fmt.encode_heartbeat())
        pkt = ctx.recv_packet(ws, timeout=2.0, skip_heartbeats=False)
        if pkt[0] != "heartbeat":
            raise ScenarioFailed(f"expected a heartbeat back, got {pkt!r}")
        if pkt[1] is None and ctx.args.heartbeat_time:
            raise ScenarioFailed("heartbeat reply carries no time (--heartbeat-time: "
                                 "expected size 9, header 0xC0)")
        # A time in the reply was decoded only if its header had the time bit 0x40.
        extra = f", server time {pkt[1]} (header 0xC0)" if pkt[1] is not None else ""
        return f"reply in {time.monotonic() - t0:.3f}s{extra}"


def scenario_echo(ctx: Ctx) -> str:
    a = ctx.args
    conns = [ctx.connect() for _ in range(a.echo_conns)]
    results = [0] * len(conns)
    errors: list = []
    barrier = threading.Barrier(len(conns) + 1)

    def worker(i: int) -> None:
        try:
            barrier.wait()
            results[i] = check_echo(ctx, conns[i], f"conn {i}", random.Random(a.seed * 7919 + i),
                                    a.echo_requests, a.window)
        except ScenarioFailed as e:
            errors.append(str(e))
        except Exception as e:  # noqa: BLE001
            errors.append(f"conn {i}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(len(conns))]
    try:
        for t in threads:
            t.start()
        barrier.wait()
        t0 = time.monotonic()
        for t in threads:
            t.join()
        dt = time.monotonic() - t0
    finally:
        for ws in conns:
            ws.close()
    total = sum(results)
    if errors:
        raise ScenarioFailed(f"{errors[0]} (+{len(errors) - 1} more); {total} verified; seed {a.seed}")
    want = a.echo_conns * a.echo_requests
    if total != want:
        raise ScenarioFailed(f"{total}/{want} replies accounted for")
    return f"{total} requests, {a.echo_conns} conns, {dt:.2f}s"


def scenario_unknown_route(ctx: Ctx) -> str:
    route = ctx.args.unknown_route
    with ctx.connect() as ws:
        pkt = ctx.request(ws, route, 77, b"is anybody there?")
        if pkt[0] != "data":
            raise ScenarioFailed(f"expected a data packet, got {pkt!r}")
        _, ext, r, seq, payload = pkt
        if (r, seq) != (route, 77):
            raise ScenarioFailed(f"reply for route {r} seq {seq}, expected route {route} seq 77")
        if ext == 0 or payload:
            raise ScenarioFailed(f"expected an error reply (ext != 0, empty payload), got ext={ext} "
                                 f"payload {short(payload)}")
        # The connection stays usable.
        echo = ctx.request(ws, ctx.args.echo_route, 78, b"still here")
        if echo[0] != "data" or echo[1] != 0 or echo[4] != b"still here":
            raise ScenarioFailed(f"echo after the error reply failed: {echo!r}")
        return f"route {route}: ext={ext}"


def scenario_fragmented(ctx: Ctx) -> str:
    route = ctx.args.echo_route
    with ctx.connect() as ws:
        payload = bytes(range(256)) * 8  # 2048 bytes
        data = ctx.packet(route, 5, payload)
        # A packet split across frames at awkward places: inside the size prefix, inside
        # the header, and in the payload; the library sends a continuation per item.
        cuts = [0, 2, 6, 100, 1000, len(data)]
        ws.send(data[cuts[i]:cuts[i + 1]] for i in range(len(cuts) - 1))
        pkt = ctx.recv_packet(ws)
        if pkt[:4] != ("data", 0, route, 5) or pkt[4] != payload:
            raise ScenarioFailed(f"fragmented request not echoed exactly: got {pkt[:4]!r}")
        # One-byte fragments of a small packet, then an ordinary message.
        small = ctx.packet(route, 6, b"tiny pieces")
        ws.send(small[i:i + 1] for i in range(len(small)))
        pkt = ctx.recv_packet(ws)
        if pkt[:4] != ("data", 0, route, 6) or pkt[4] != b"tiny pieces":
            raise ScenarioFailed(f"one-byte fragments not echoed exactly: got {pkt!r}")
        pkt = ctx.request(ws, route, 7, b"whole")
        if pkt[4] != b"whole":
            raise ScenarioFailed(f"message after fragments: {pkt!r}")
        return f"{len(cuts) - 1} and {len(small)} fragments reassembled"


def scenario_ping(ctx: Ctx) -> str:
    with ctx.connect() as ws:
        t0 = time.monotonic()
        pongs = [ws.ping(f"ping {i}".encode()) for i in range(3)]
        for i, ev in enumerate(pongs):
            if not ev.wait(3.0):
                raise ScenarioFailed(f"no pong for ping {i} within 3s")
        dt = time.monotonic() - t0
        pkt = ctx.request(ws, ctx.args.echo_route, 9, b"after pings")
        if pkt[4] != b"after pings":
            raise ScenarioFailed(f"echo after pings: {pkt!r}")
        return f"3 pongs in {dt:.3f}s"


def scenario_text(ctx: Ctx) -> str:
    with ctx.connect() as ws:
        pkt = ctx.request(ws, ctx.args.echo_route, 1, b"binary first")
        if pkt[4] != b"binary first":
            raise ScenarioFailed(f"echo before the text message: {pkt!r}")
        ws.send("a text message")
        return expect_close(ctx, ws, 1003, "a text message")


def scenario_oversize(ctx: Ctx) -> str:
    limit = 4 + ctx.fmt.data_overhead + ctx.fmt.buffer_bytes
    with ctx.connect() as ws:
        # The largest legal message is echoed...
        payload = b"L" * ctx.fmt.buffer_bytes
        pkt = ctx.request(ws, ctx.args.echo_route, 11, payload)
        if pkt[:4] != ("data", 0, ctx.args.echo_route, 11) or pkt[4] != payload:
            raise ScenarioFailed(f"message of exactly {limit} bytes not echoed: {pkt[:4]!r}")
        # ...one byte more closes the connection with 1009.
        ws.send(b"\x00" * (limit + 1))
        detail = expect_close(ctx, ws, 1009, f"a {limit + 1}-byte message")
    return f"{limit} bytes echoed, {limit + 1} bytes: {detail}"


def scenario_close(ctx: Ctx) -> str:
    ws = ctx.connect()
    pkt = ctx.request(ws, ctx.args.echo_route, 3, b"before close")
    if pkt[4] != b"before close":
        raise ScenarioFailed(f"echo before close: {pkt!r}")
    t0 = time.monotonic()
    ws.close(1000, "bye")  # sends close 1000, waits for the gate's close and the TCP end
    dt = time.monotonic() - t0
    rcvd = ws.protocol.close_rcvd
    if rcvd is None:
        raise ScenarioFailed("the gate did not answer the close frame with its own")
    if rcvd.code != 1000:
        raise ScenarioFailed(f"the gate answered close 1000 with close {rcvd.code}")
    if ws.protocol.close_rcvd_then_sent:
        raise ScenarioFailed("the gate's close came first; expected it to answer ours")
    try:
        ws.recv(timeout=1.0)
        raise ScenarioFailed("recv after the closing handshake returned data")
    except websockets.exceptions.ConnectionClosedOK:
        pass
    except ConnectionClosed as e:
        raise ScenarioFailed(f"closing handshake not clean: {close_text(e)}")
    return f"close 1000 answered with 1000 in {dt:.3f}s"


def scenario_chat(ctx: Ctx) -> str:
    a, b = ctx.args.chat_uid, ctx.args.chat_uid + 1
    room = f"room{a}"
    with ctx.connect() as wa, ctx.connect() as wb:
        def call(ws, route, seq, text, want):
            pkt = ctx.request(ws, route, seq, text.encode())
            got = pkt[4].decode(errors="replace") if pkt[0] == "data" else repr(pkt)
            if pkt[0] != "data" or pkt[1:4] != (0, route, seq) or got != want:
                raise ScenarioFailed(f"route {route} {text!r}: got {pkt[1:4]!r} {got!r}, want {want!r}")

        call(wa, JOIN, 1, room, "error not logged in")
        call(wa, LOGIN, 2, str(a), f"ok {a}")
        call(wb, LOGIN, 1, str(b), f"ok {b}")
        call(wa, JOIN, 3, room, f"joined {room}")
        call(wb, JOIN, 2, room, f"joined {room}")
        # say: the room message reaches both members (the sender before "sent").
        wa.send(ctx.packet(SAY, 4, b"hi all"))
        want_room = f"{a}@{room}: hi all".encode()
        pkt = ctx.recv_packet(wa)
        if pkt[1:4] != (0, ROOM_MESSAGE, 0) or pkt[4] != want_room:
            raise ScenarioFailed(f"sender: expected route 100 {want_room!r} first, got {pkt!r}")
        pkt = ctx.recv_packet(wa)
        if pkt[1:4] != (0, SAY, 4) or pkt[4] != b"sent":
            raise ScenarioFailed(f"sender: expected 'sent', got {pkt!r}")
        pkt = ctx.recv_packet(wb)
        if pkt[1:4] != (0, ROOM_MESSAGE, 0) or pkt[4] != want_room:
            raise ScenarioFailed(f"other member: expected route 100 {want_room!r}, got {pkt!r}")
        # whisper: pushed to the user's connection.
        call(wa, WHISPER, 5, f"{b} psst", "delivered")
        pkt = ctx.recv_packet(wb)
        if pkt[1:4] != (0, WHISPER_MESSAGE, 0) or pkt[4] != f"{a}: psst".encode():
            raise ScenarioFailed(f"whisper: expected route 101 '{a}: psst', got {pkt!r}")
        call(wa, WHISPER, 6, f"{b + 1000} anyone?", "error offline")
    return f"users {a} and {b}: login, join {room}, say, whisper"


SCENARIOS = {
    "heartbeat": scenario_heartbeat,
    "echo": scenario_echo,
    "unknown-route": scenario_unknown_route,
    "fragmented": scenario_fragmented,
    "ping": scenario_ping,
    "text": scenario_text,
    "oversize": scenario_oversize,
    "close": scenario_close,
    "chat": scenario_chat,
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Check a due-format gate's WebSocket listener.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--url", required=True, help="ws://HOST:PORT/PATH or wss://...")
    p.add_argument("--cafile", default=None, help="PEM certificate(s) to trust for wss")
    p.add_argument("--scenario", action="append", choices=list(SCENARIOS) + ["all"],
                   help="scenario to run (repeatable); 'all' = " + ", ".join(ALL_SCENARIOS))
    p.add_argument("--timeout", type=float, default=5.0, help="per-reply timeout, seconds")
    p.add_argument("--echo-route", type=int, default=1)
    p.add_argument("--unknown-route", type=int, default=999)
    p.add_argument("--echo-conns", type=int, default=20)
    p.add_argument("--echo-requests", type=int, default=100, help="requests per connection")
    p.add_argument("--window", type=int, default=10, help="requests in flight per connection")
    p.add_argument("--chat-uid", type=int, default=4200, help="first of the two chat users")
    p.add_argument("--heartbeat-time", action="store_true",
                   help="the gate has heartbeat_time = true: its heartbeat reply must carry "
                        "the time (size 9, header 0xC0)")
    p.add_argument("--seed", type=int, default=None)
    add_packet_args(p)
    args = p.parse_args(argv)
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    names = args.scenario or ["all"]
    if "all" in names:
        names = [n for n in names if n != "all"] + [n for n in ALL_SCENARIOS if n not in names]
    ctx = Ctx(args)
    print(f"websockets {websockets.__version__}, {args.url}, seed {args.seed}", flush=True)
    failed = 0
    for name in names:
        try:
            print(f"PASS {name} ({SCENARIOS[name](ctx)})", flush=True)
        except ScenarioFailed as e:
            failed += 1
            print(f"FAIL {name}: {e}", flush=True)
        except Exception as e:  # noqa: BLE001
            failed += 1
            print(f"FAIL {name}: unexpected {type(e).__name__}: {e}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
