#!/usr/bin/env python3
"""Scenario checker for a due-format gate (ringgate) fronting an echo node on route 1.

    python3 tests/clients/check_gate.py --addr 127.0.0.1:3553 --scenario all
    python3 tests/clients/check_gate.py --addr 127.0.0.1:3553 --scenario idle --heartbeat-interval 1.0
    python3 tests/clients/check_gate.py --addr 127.0.0.1:3553 --scenario node-down   # node killed

Prints one line per scenario (``PASS name (details)`` / ``FAIL name: reason``) and exits
0 only if every selected scenario passed.  ``all`` = heartbeat, echo, unknown-route,
oversize, idle (not node-down, which needs the node to be dead).
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from due_client import (  # noqa: E402
    EXT_NAMES,
    ConnectionClosed,
    DueClient,
    PacketFormat,
    ProtocolError,
    add_packet_args,
    describe,
    format_kwargs,
    parse_addr,
)

ALL_SCENARIOS = ("heartbeat", "echo", "unknown-route", "oversize", "idle")


class ScenarioFailed(Exception):
    pass


def ext_text(ext: int) -> str:
    return f"ext={ext} ({EXT_NAMES.get(ext, 'unknown extension')})"


def short(b: bytes, n: int = 24) -> str:
    h = b.hex()
    return h if len(h) <= 2 * n else h[: 2 * n] + f"...({len(b)} bytes)"


class Ctx:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.host, self.port = args.addr
        self.kw = format_kwargs(args)
        self.fmt = PacketFormat(**self.kw)
        self.timeout = args.timeout
        self.echo_route = args.echo_route
        if not self.fmt.route_fits(self.echo_route):
            raise SystemExit(f"--echo-route {self.echo_route} does not fit in {args.route_bytes} byte(s)")
        if args.unknown_route is None:
            lo, hi = self.fmt.route_range()
            self.unknown_route = 999 if self.fmt.route_fits(999) else hi
        else:
            self.unknown_route = args.unknown_route
            if not self.fmt.route_fits(self.unknown_route):
                raise SystemExit(f"--unknown-route {self.unknown_route} does not fit in "
                                 f"{args.route_bytes} byte(s)")
        # positive seqs usable without wrap-around
        self.max_seq = self.fmt.seq_range()[1] if self.fmt.seq_bytes else None
        if self.max_seq is not None and args.window >= self.max_seq:
            raise SystemExit(f"--window {args.window} must be < {self.max_seq} with --seq-bytes "
                             f"{args.seq_bytes} (in-flight seqs must be distinct)")

    def connect(self, timeout: float | None = None) -> DueClient:
        try:
            return DueClient(self.host, self.port, timeout=self.timeout if timeout is None else timeout,
                             **self.kw)
        except OSError as e:
            raise ScenarioFailed(f"cannot connect to {self.host}:{self.port}: {e}") from e

    def seq_for(self, i: int) -> int | None:
        """Seq for the i-th (1-based) request of a connection: i, wrapped into 1..max when needed."""
        if self.max_seq is None:
            return None
        return (i - 1) % self.max_seq + 1


# -- echo machinery --------------------------------------------------------------------------

def run_echo_session(ctx: Ctx, client: DueClient, n: int, window: int, rng: random.Random,
                     label: str) -> int:
    """Pipelined request/response on the echo route; raises ScenarioFailed on any mismatch."""
    seq_enabled = ctx.max_seq is not None
    outstanding: dict = {}  # key (seq, or payload when seq absent) -> (i, seq, payload)
    used_payloads: set = set()
    sent = done = 0
    while done < n:
        while sent < n and len(outstanding) < window:
            sent += 1
            seq = ctx.seq_for(sent)
            while True:
                payload = rng.randbytes(rng.randint(1, 64))
                if payload not in used_payloads:
                    break
            used_payloads.add(payload)
            key = seq if seq_enabled else payload
            outstanding[key] = (sent, seq, payload)
            try:
                client.send(ctx.echo_route, seq, payload)
            except ConnectionClosed as e:
                raise ScenarioFailed(f"{label}: connection closed while sending request #{sent}: {e}")
        try:
            pkt = client.recv()
        except socket.timeout:
            pend = sorted(v[0] for v in outstanding.values())
            raise ScenarioFailed(f"{label}: no response within {ctx.timeout}s; {done}/{n} answered, "
                                 f"waiting for request(s) #{pend[:10]}")
        except ConnectionClosed as e:
            raise ScenarioFailed(f"{label}: connection closed after {done}/{n} responses: {e}")
        except ProtocolError as e:
            raise ScenarioFailed(f"{label}: malformed packet from gate after {done}/{n} responses: {e}")
        if pkt[0] == "heartbeat":
            continue
        _, ext, route, seq, payload = pkt
        if ext != 0:
            raise ScenarioFailed(f"{label}: error reply {ext_text(ext)} for route={route} seq={seq} "
                                 f"(expected echo)")
        if route != ctx.echo_route:
            raise ScenarioFailed(f"{label}: response on route {route}, expected {ctx.echo_route} "
                                 f"(seq={seq})")
        if seq_enabled:
            entry = outstanding.pop(seq, None)
            if entry is None:
                raise ScenarioFailed(f"{label}: response with seq {seq} that is not outstanding "
                                     f"(outstanding: {sorted(outstanding)[:10]}); payload {short(payload)}")
            if entry[2] != payload:
                raise ScenarioFailed(f"{label}: payload mismatch for request #{entry[0]} seq={seq}: "
                                     f"sent {short(entry[2])}, got {short(payload)}")
        else:
            entry = outstanding.pop(payload, None)
            if entry is None:
                raise ScenarioFailed(f"{label}: response payload {short(payload)} matches no "
                                     f"outstanding request (seq field absent; matched by payload)")
        done += 1
    return done


def echo_check(ctx: Ctx, client: DueClient, n: int, label: str, seed: int) -> None:
    run_echo_session(ctx, client, n, min(ctx.args.window, n), random.Random(seed), label)


# -- scenarios ---------------------------------------------------------------------------------

def scenario_heartbeat(ctx: Ctx) -> str:
    with ctx.connect() as c:
        t0 = time.monotonic()
        c.send_heartbeat()
        deadline = t0 + 2.0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ScenarioFailed("no heartbeat reply within 2s")
            try:
                pkt = c.recv(remaining)
            except socket.timeout:
                raise ScenarioFailed("no heartbeat reply within 2s")
            except ConnectionClosed as e:
                raise ScenarioFailed(f"connection closed instead of heartbeat reply: {e}")
            except ProtocolError as e:
                raise ScenarioFailed(f"malformed reply: {e}")
            if pkt[0] == "heartbeat":
                dt = time.monotonic() - t0
                if pkt[1] is None and ctx.args.heartbeat_time:
                    raise ScenarioFailed("heartbeat reply carries no time (--heartbeat-time: "
                                         "expected size 9, header 0xC0)")
                # A time in the reply was decoded only if its header had the time bit 0x40.
                extra = f", server time {pkt[1]} (header 0xC0)" if pkt[1] is not None else ""
                return f"reply in {dt:.3f}s{extra}"
            raise ScenarioFailed(f"unexpected packet instead of heartbeat: {describe(pkt)}")


def scenario_echo(ctx: Ctx) -> str:
    a = ctx.args
    nconn, nreq = a.echo_conns, a.echo_requests
    clients = []
    try:
        for i in range(nconn):
            clients.append(ctx.connect())
        barrier = threading.Barrier(nconn + 1)
        results = [0] * nconn
        errors: list = []

        def worker(idx: int) -> None:
            rng = random.Random(a.seed * 100003 + idx)
            try:
                barrier.wait()
                results[idx] = run_echo_session(ctx, clients[idx], nreq, a.window, rng, f"conn {idx}")
            except ScenarioFailed as e:
                errors.append(str(e))
            except threading.BrokenBarrierError:
                errors.append(f"conn {idx}: barrier broken")
            except Exception as e:  # noqa: BLE001
                errors.append(f"conn {idx}: {type(e).__name__}: {e}")

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(nconn)]
        for t in threads:
            t.start()
        barrier.wait()
        t0 = time.monotonic()
        for t in threads:
            t.join()
        dt = time.monotonic() - t0
    finally:
        for c in clients:
            c.close()
    total = sum(results)
    if errors:
        more = f" (+{len(errors) - 1} more failing connection(s))" if len(errors) > 1 else ""
        raise ScenarioFailed(f"{errors[0]}{more}; {total}/{nconn * nreq} responses verified; seed {a.seed}")
    if total != nconn * nreq:
        raise ScenarioFailed(f"only {total}/{nconn * nreq} responses accounted for")
    return f"{total} requests, {nconn} conns, {dt:.2f}s"


def _expect_error_reply(ctx: Ctx, route: int, wait: float) -> str:
    seq = 77 if ctx.max_seq is not None else None
    with ctx.connect() as c:
        t0 = time.monotonic()
        try:
            c.send(route, seq, b"is anybody there?")
        except ConnectionClosed as e:
            raise ScenarioFailed(f"connection closed while sending: {e}")
        deadline = t0 + wait
        while True:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise socket.timeout()
                pkt = c.recv(remaining)
            except socket.timeout:
                raise ScenarioFailed(f"no reply to route {route} seq {seq} within {wait:g}s")
            except ConnectionClosed as e:
                raise ScenarioFailed(f"connection closed instead of an error reply: {e}")
            except ProtocolError as e:
                raise ScenarioFailed(f"malformed reply: {e}")
            if pkt[0] == "heartbeat":
                continue
            dt = time.monotonic() - t0
            _, ext, r, s, payload = pkt
            if r != route or s != seq:
                raise ScenarioFailed(f"reply for route={r} seq={s}, expected route={route} seq={seq} "
                                     f"({describe(pkt)})")
            if ext == 0:
                raise ScenarioFailed(f"got an ordinary reply (ext=0, payload {short(payload)}) on route "
                                     f"{route}; expected an error reply with ext != 0")
            if payload:
                raise ScenarioFailed(f"error reply {ext_text(ext)} carries a {len(payload)}-byte payload; "
                                     f"expected empty")
            return f"route {route}: {ext_text(ext)} in {dt:.3f}s"


def scenario_unknown_route(ctx: Ctx) -> str:
    return _expect_error_reply(ctx, ctx.unknown_route, 2.0)


def scenario_node_down(ctx: Ctx) -> str:
    return _expect_error_reply(ctx, ctx.echo_route, 1.0)


def scenario_oversize(ctx: Ctx) -> str:
    n_good, n_req = 5, 20
    good = []
    bad = None
    try:
        for i in range(n_good):
            good.append(ctx.connect())
        for i, c in enumerate(good):
            echo_check(ctx, c, n_req, f"good conn {i} (before)", seed=ctx.args.seed + i)
        bad = ctx.connect()
        # make sure the bad connection is a normal, working one before misbehaving
        echo_check(ctx, bad, 1, "bad conn (before)", seed=ctx.args.seed + 99)
        declared = ctx.fmt.buffer_bytes + 100
        junk = bytes((0,)) + b"\x00" * ctx.fmt.route_bytes + b"\x00" * ctx.fmt.seq_bytes + b"X" * 32
        t0 = time.monotonic()
        try:
            bad.send_raw(ctx.fmt.encode_size(declared) + junk)
        except ConnectionClosed:
            pass  # already closed: fine, recv below will confirm
        deadline = t0 + 3.0
        how = None
        while how is None:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise socket.timeout()
                bad.recv(remaining)  # ignore anything the gate might send meanwhile
            except ConnectionClosed as e:
                how = str(e)
            except ProtocolError:
                continue
            except socket.timeout:
                raise ScenarioFailed(f"gate kept the connection open 3s after a size prefix of "
                                     f"{declared} (buffer_bytes={ctx.fmt.buffer_bytes})")
        dt = time.monotonic() - t0
        for i, c in enumerate(good):
            echo_check(ctx, c, n_req, f"good conn {i} (after)", seed=ctx.args.seed + 50 + i)
    finally:
        for c in good:
            c.close()
        if bad is not None:
            bad.close()
    return (f"bad conn closed in {dt:.3f}s ({how}); {n_good} good conns echoed "
            f"{2 * n_req} requests each")


def scenario_idle(ctx: Ctx) -> str:
    hb = ctx.args.heartbeat_interval
    lo, hi = 1.5 * hb, 3 * hb + 1.0
    with ctx.connect() as c:
        t_last = time.monotonic()
        try:
            pkt = c.request(ctx.echo_route, ctx.seq_for(1), b"then silence", timeout=2.0)
        except socket.timeout:
            raise ScenarioFailed("initial request not answered within 2s")
        except ConnectionClosed as e:
            raise ScenarioFailed(f"connection closed before the initial reply: {e}")
        if pkt[1] != 0 or pkt[4] != b"then silence":
            raise ScenarioFailed(f"bad reply to the initial request: {describe(pkt)}")
        heartbeats = 0
        while True:
            remaining = t_last + hi - time.monotonic()
            try:
                if remaining <= 0:
                    raise socket.timeout()
                pkt = c.recv(remaining)
            except socket.timeout:
                raise ScenarioFailed(f"connection still open {hi:.2f}s after the last client packet "
                                     f"(heartbeat interval {hb:g}s; expected close after ~{2 * hb:g}s)")
            except ConnectionClosed as e:
                dt = time.monotonic() - t_last
                if dt < lo:
                    raise ScenarioFailed(f"connection closed too early: {dt:.3f}s after the last client "
                                         f"packet, expected >= {lo:.2f}s (heartbeat interval {hb:g}s)")
                extra = f", ignored {heartbeats} server heartbeat(s)" if heartbeats else ""
                return f"closed after {dt:.2f}s, window [{lo:.2f}, {hi:.2f}]s ({e}){extra}"
            except ProtocolError as e:
                raise ScenarioFailed(f"malformed packet while idle: {e}")
            if pkt[0] == "heartbeat":
                heartbeats += 1
                continue
            raise ScenarioFailed(f"unexpected data packet while idle: {describe(pkt)}")


SCENARIOS = {
    "heartbeat": scenario_heartbeat,
    "echo": scenario_echo,
    "unknown-route": scenario_unknown_route,
    "oversize": scenario_oversize,
    "idle": scenario_idle,
    "node-down": scenario_node_down,
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Check a due-format gate against its scenarios.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--addr", type=parse_addr, default=("127.0.0.1", 3553), help="gate HOST:PORT")
    p.add_argument("--scenario", action="append", choices=list(SCENARIOS) + ["all"],
                   help="scenario to run (repeatable); 'all' = " + ", ".join(ALL_SCENARIOS))
    p.add_argument("--heartbeat-interval", type=float, default=1.0,
                   help="gate's heartbeat interval in seconds (idle scenario)")
    p.add_argument("--heartbeat-time", action="store_true",
                   help="the gate has heartbeat_time = true: its heartbeat reply must carry "
                        "the time (size 9, header 0xC0)")
    p.add_argument("--timeout", type=float, default=5.0, help="per-response timeout (echo)")
    p.add_argument("--echo-route", type=int, default=1)
    p.add_argument("--unknown-route", type=int, default=None,
                   help="route nobody serves (default 999, or the largest route if 999 does not fit)")
    p.add_argument("--echo-conns", type=int, default=50)
    p.add_argument("--echo-requests", type=int, default=200, help="requests per connection")
    p.add_argument("--window", type=int, default=10, help="max in-flight requests per connection")
    p.add_argument("--seed", type=int, default=None, help="random seed for payloads")
    add_packet_args(p)
    args = p.parse_args(argv)
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    if args.window < 1:
        p.error("--window must be >= 1")
    names = args.scenario or ["all"]
    if "all" in names:
        names = [n for n in names if n != "all"] + [n for n in ALL_SCENARIOS if n not in names]
    ctx = Ctx(args)
    failed = 0
    for name in names:
        try:
            detail = SCENARIOS[name](ctx)
            print(f"PASS {name} ({detail})", flush=True)
        except ScenarioFailed as e:
            failed += 1
            print(f"FAIL {name}: {e}", flush=True)
        except Exception as e:  # noqa: BLE001 - report anything else as a failure too
            failed += 1
            print(f"FAIL {name}: unexpected {type(e).__name__}: {e}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
