#!/usr/bin/env python3
"""Tests for due_client.py / check_gate.py against an in-process fake gate.

    python3 -m unittest tests/clients/test_due_client.py          (from the repo root)
    python3 tests/clients/test_due_client.py serve --port 3553 [--mode corrupt] [...]

The fake gate deliberately does NOT reuse due_client's codec: it parses/encodes with
int.from_bytes/to_bytes so that a symmetric bug in the client codec cannot hide itself.
It echoes route 1, answers heartbeats, replies ext=1 (empty payload) to any other route,
closes connections that declare an oversize packet, and optionally closes idle connections.
Fault modes make it misbehave so we can check that check_gate.py notices.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import due_client  # noqa: E402
from due_client import ConnectionClosed, DueClient, PacketDecoder, PacketFormat, ProtocolError  # noqa: E402

CHECK_GATE = os.path.join(HERE, "check_gate.py")

FAULT_MODES = {
    "corrupt",            # flip a byte in the payload of the 1234th echo reply (server-wide)
    "wrong-seq",          # answer the 777th echo with seq -100
    "drop",               # silently drop the 500th echo reply
    "no-heartbeat",       # ignore heartbeats
    "no-error",           # ignore requests for unserved routes
    "error-payload",      # error replies carry a payload
    "no-oversize-close",  # do not close on oversize size prefix (wait for the body instead)
    "node-down",          # answer route 1 with ext=2
    "tick",               # send unsolicited heartbeats (with timestamp) every 50 ms
    "time",               # answer heartbeats with a timed heartbeat (header 0xC0, size 9)
    "time-no-bit",        # answer heartbeats with a time but header 0x80 (size 9): due misreads it
    "fragment",           # write replies in random small pieces, with tiny pauses
}


class FakeGate:
    def __init__(self, byte_order="big", route_bytes=2, seq_bytes=2, buffer_bytes=5000,
                 modes=(), idle_timeout=None, host="127.0.0.1", port=0):
        unknown = set(modes) - FAULT_MODES
        if unknown:
            raise ValueError(f"unknown fake modes {unknown}")
        self.order = byte_order
        self.rb, self.sb, self.buffer_bytes = route_bytes, seq_bytes, buffer_bytes
        self.modes = set(modes)
        self.idle_timeout = idle_timeout
        self._lock = threading.Lock()
        self.echo_count = 0
        self.packets_in = 0
        self._stop = threading.Event()
        self._conns: set = set()
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((host, port))
        self.lsock.listen(256)
        self.port = self.lsock.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> "FakeGate":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        try:
            self.lsock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() on Linux
        except OSError:
            pass
        self.lsock.close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        self._thread.join(2)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.lsock.accept()
            except OSError:
                return
            if self._stop.is_set():
                conn.close()
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    # -- independent codec ---------------------------------------------------------------
    def _int(self, b: bytes) -> int:
        return int.from_bytes(b, self.order, signed=True)

    def _u32(self, n: int) -> bytes:
        return n.to_bytes(4, self.order, signed=False)

    def _data(self, ext: int, route: int, seq: int, payload: bytes) -> bytes:
        body = bytes([ext]) + route.to_bytes(self.rb, self.order, signed=True)
        if self.sb:
            body += seq.to_bytes(self.sb, self.order, signed=True)
        body += payload
        return self._u32(len(body)) + body

    def _heartbeat(self, with_time: bool, time_bit: bool = True) -> bytes:
        if with_time:
            header = b"\xc0" if time_bit else b"\x80"
            return self._u32(9) + header + time.time_ns().to_bytes(8, self.order, signed=True)
        return self._u32(1) + b"\x80"

    # -- connection handling -------------------------------------------------------------
    def _write(self, conn, wlock, data: bytes) -> None:
        with wlock:
            if "fragment" in self.modes:
                rng = random.Random()
                i = 0
                while i < len(data):
                    n = rng.randint(1, 9)
                    conn.sendall(data[i:i + n])
                    i += n
                    if rng.random() < 0.02:
                        time.sleep(0.001)
            else:
                conn.sendall(data)

    def _serve(self, conn: socket.socket) -> None:
        wlock = threading.Lock()
        closed = threading.Event()
        if "tick" in self.modes:
            def ticker():
                while not closed.wait(0.05):
                    try:
                        self._write(conn, wlock, self._heartbeat(True))
                    except OSError:
                        return
            threading.Thread(target=ticker, daemon=True).start()
        try:
            self._serve_loop(conn, wlock)
        except OSError:
            pass
        finally:
            closed.set()
            with self._lock:
                self._conns.discard(conn)
            conn.close()

    def _serve_loop(self, conn: socket.socket, wlock) -> None:
        conn.settimeout(self.idle_timeout)
        max_size = 1 + self.rb + self.sb + self.buffer_bytes
        buf = b""
        while True:
            try:
                chunk = conn.recv(65536)
            except socket.timeout:
                return  # idle: close
            if not chunk:
                return
            buf += chunk
            out = []
            while len(buf) >= 4:
                size = int.from_bytes(buf[:4], self.order)
                if (size == 0 or size > max_size) and "no-oversize-close" not in self.modes:
                    if out:
                        self._write(conn, wlock, b"".join(out))
                    return  # close (unread data -> RST)
                if len(buf) < 4 + size:
                    break
                body, buf = buf[4:4 + size], buf[4 + size:]
                with self._lock:
                    self.packets_in += 1
                header = body[0]
                if header & 0x80:
                    if "time" in self.modes:
                        out.append(self._heartbeat(True))
                    elif "time-no-bit" in self.modes:
                        out.append(self._heartbeat(True, time_bit=False))
                    elif "no-heartbeat" not in self.modes:
                        out.append(self._heartbeat(False))
                    continue
                route = self._int(body[1:1 + self.rb])
                seq = self._int(body[1 + self.rb:1 + self.rb + self.sb]) if self.sb else 0
                payload = body[1 + self.rb + self.sb:]
                if route == 1:
                    if "node-down" in self.modes:
                        out.append(self._data(2, route, seq, b""))
                        continue
                    with self._lock:
                        self.echo_count += 1
                        n = self.echo_count
                    if "corrupt" in self.modes and n == 1234:
                        payload = bytes([payload[0] ^ 0xFF]) + payload[1:]
                    if "wrong-seq" in self.modes and n == 777 and self.sb:
                        seq = -100  # never outstanding (the checker uses positive seqs)
                    if "drop" in self.modes and n == 500:
                        continue
                    out.append(self._data(0, route, seq, payload))
                elif "no-error" not in self.modes:
                    out.append(self._data(1, route, seq, b"oops" if "error-payload" in self.modes else b""))
            if out:
                self._write(conn, wlock, b"".join(out))


# ==========================================================================================
# codec unit tests (golden bytes, written by hand from the spec)
# ==========================================================================================

class CodecTests(unittest.TestCase):
    def test_golden_big_2_2(self):
        f = PacketFormat("big", 2, 2, 5000)
        self.assertEqual(f.encode_data(1, 2, b"hi"),
                         b"\x00\x00\x00\x07" + b"\x00" + b"\x00\x01" + b"\x00\x02" + b"hi")
        self.assertEqual(f.encode_heartbeat(), b"\x00\x00\x00\x01\x80")
        self.assertEqual(f.encode_data(-2, -1, b"", ext=1),
                         b"\x00\x00\x00\x05\x01\xff\xfe\xff\xff")

    def test_golden_little_4_4(self):
        f = PacketFormat("little", 4, 4, 5000)
        self.assertEqual(f.encode_data(0x01020304, 258, b"x"),
                         b"\x0a\x00\x00\x00" + b"\x00" + b"\x04\x03\x02\x01" + b"\x02\x01\x00\x00" + b"x")
        self.assertEqual(f.encode_heartbeat(), b"\x01\x00\x00\x00\x80")
        self.assertEqual(f.encode_heartbeat(0x0102), b"\x09\x00\x00\x00\xc0\x02\x01" + b"\x00" * 6)

    def test_timed_heartbeat_needs_the_time_bit(self):
        f = PacketFormat("big", 2, 2, 5000)
        t = (0x0102030405060708).to_bytes(8, "big")
        # size 9, header 0xC0 (heartbeat + time bit), i64 time
        self.assertEqual(PacketDecoder(f).feed(b"\x00\x00\x00\x09\xc0" + t),
                         [("heartbeat", 0x0102030405060708)])
        self.assertEqual(f.encode_heartbeat(0x0102030405060708), b"\x00\x00\x00\x09\xc0" + t)
        # a time without the time bit: due's readers would take it as the next packet
        with self.assertRaisesRegex(ProtocolError, "time bit"):
            PacketDecoder(f).feed(b"\x00\x00\x00\x09\x80" + t)
        # the time bit without a time
        with self.assertRaisesRegex(ProtocolError, "time bit"):
            PacketDecoder(f).feed(b"\x00\x00\x00\x01\xc0")
        # other extension bits stay errors in a heartbeat
        with self.assertRaises(ProtocolError):
            PacketDecoder(f).feed(b"\x00\x00\x00\x09\xc1" + t)

    def test_golden_route1_seq0(self):
        f = PacketFormat("big", 1, 0, 16)
        self.assertEqual(f.encode_data(-1, 55, b"ab"), b"\x00\x00\x00\x04\x00\xffab")
        self.assertEqual(PacketDecoder(f).feed(b"\x00\x00\x00\x04\x00\xffab"),
                         [("data", 0, -1, None, b"ab")])

    def test_range_checks(self):
        f = PacketFormat("big", 1, 1, 4)
        with self.assertRaises(ValueError):
            f.encode_data(128, 1, b"")
        with self.assertRaises(ValueError):
            f.encode_data(1, -129, b"")
        with self.assertRaises(ValueError):
            f.encode_data(1, 1, b"12345")
        with self.assertRaises(ValueError):
            f.encode_data(1, 1, b"", ext=128)
        self.assertEqual(len(f.encode_data(1, 1, b"12345", check_payload=False)), 4 + 3 + 5)
        for bad in (dict(byte_order="middle"), dict(route_bytes=3), dict(seq_bytes=8)):
            with self.assertRaises(ValueError):
                PacketFormat(**bad)

    def test_decode_byte_by_byte_and_batched(self):
        for order in ("big", "little"):
            for rb in (1, 2, 4):
                for sb in (0, 1, 2, 4):
                    f = PacketFormat(order, rb, sb, 100)
                    pkts = [("data", 0, 1, 5 if sb else None, b"hello"),
                            ("heartbeat", None),
                            ("data", 2, -3, -7 if sb else None, b""),
                            ("heartbeat", -12345678901234),
                            ("data", 0, 127, 127 if sb else None, bytes(range(100)))]
                    wire = b"".join(
                        f.encode_heartbeat(p[1]) if p[0] == "heartbeat" else f.encode_data(p[2], p[3], p[4], p[1])
                        for p in pkts)
                    # all at once
                    self.assertEqual(PacketDecoder(f).feed(wire), pkts)
                    # byte by byte
                    d, got = PacketDecoder(f), []
                    for i in range(len(wire)):
                        got += d.feed(wire[i:i + 1])
                    self.assertEqual(got, pkts)
                    self.assertEqual(d.buffered, 0)
                    # random chunks
                    rng = random.Random(rb * 10 + sb)
                    d, got, i = PacketDecoder(f), [], 0
                    while i < len(wire):
                        n = rng.randint(1, 13)
                        got += d.feed(wire[i:i + n])
                        i += n
                    self.assertEqual(got, pkts)

    def test_decode_errors(self):
        f = PacketFormat("big", 2, 2, 10)
        with self.assertRaises(ProtocolError):
            PacketDecoder(f).feed(b"\x00\x00\x00\x00")
        with self.assertRaises(ProtocolError):  # detected from the prefix alone
            PacketDecoder(f).feed(b"\x00\x00\x00\x10")
        with self.assertRaises(ProtocolError):  # heartbeat of size 3
            PacketDecoder(f).feed(b"\x00\x00\x00\x03\x80\x00\x00")
        with self.assertRaises(ProtocolError):  # data shorter than header+route+seq
            PacketDecoder(f).feed(b"\x00\x00\x00\x02\x00\x01")
        self.assertEqual(PacketDecoder(f).feed(b"\x00\x00\x00\x0f\x00\x00\x01\x00\x01" + b"0123456789"),
                         [("data", 0, 1, 1, b"0123456789")])
        # good packet followed by garbage: the good one is delivered, then the error sticks
        d = PacketDecoder(f)
        self.assertEqual(d.feed(f.encode_heartbeat() + b"\x00\x00\x00\x00"), [("heartbeat", None)])
        self.assertIsInstance(d.error, ProtocolError)
        with self.assertRaises(ProtocolError):
            d.feed(b"")


# ==========================================================================================
# DueClient against the fake gate
# ==========================================================================================

COMBOS = [
    dict(byte_order="big", route_bytes=2, seq_bytes=2, buffer_bytes=5000),
    dict(byte_order="little", route_bytes=4, seq_bytes=4, buffer_bytes=5000),
    dict(byte_order="big", route_bytes=1, seq_bytes=0, buffer_bytes=300),
    dict(byte_order="little", route_bytes=1, seq_bytes=1, buffer_bytes=64),
    dict(byte_order="big", route_bytes=4, seq_bytes=0, buffer_bytes=5000),
]


class ClientTests(unittest.TestCase):
    def test_request_heartbeat_unknown_route(self):
        for kw in COMBOS:
            for modes in ((), ("fragment", "tick")):
                with self.subTest(kw=kw, modes=modes), FakeGate(modes=modes, **kw) as g:
                    with DueClient("127.0.0.1", g.port, timeout=2, **kw) as c:
                        seq = 5 if kw["seq_bytes"] else None
                        self.assertEqual(c.request(1, 5, b"abc"), ("data", 0, 1, seq, b"abc"))
                        big = bytes(range(256)) * (kw["buffer_bytes"] // 256) + b"z" * (kw["buffer_bytes"] % 256)
                        self.assertEqual(c.request(1, -5, big)[4], big)
                        c.send_heartbeat()
                        while True:  # tick mode may interleave timestamped heartbeats
                            p = c.recv()
                            if p == ("heartbeat", None):
                                break
                            self.assertEqual(p[0], "heartbeat")
                            self.assertIsInstance(p[1], int)
                        unknown = 99 if kw["route_bytes"] == 1 else 999
                        self.assertEqual(c.request(unknown, 9, b"?"),
                                         ("data", 1, unknown, 9 if seq else None, b""))
                        # pipelined burst: many packets in one write, replies coalesced
                        c.send_raw(b"".join(c.format.encode_data(1, i, bytes([i]) * i) for i in range(1, 40)))
                        for i in range(1, 40):
                            self.assertEqual(c.recv_data(), ("data", 0, 1, i if seq else None, bytes([i]) * i))

    def test_eof_and_timeout(self):
        with FakeGate(idle_timeout=0.3) as g:
            c = DueClient("127.0.0.1", g.port, timeout=0.1)
            with self.assertRaises(socket.timeout):
                c.recv()
            with self.assertRaises(ConnectionClosed):
                c.recv(timeout=2)
            with self.assertRaises(ConnectionClosed):  # stays closed
                c.recv(timeout=2)
            c.close()

    def test_oversize_closes(self):
        with FakeGate() as g, DueClient("127.0.0.1", g.port, timeout=2) as c:
            c.send_raw((5100).to_bytes(4, "big") + b"\x00" * 20)
            with self.assertRaises(ConnectionClosed):
                c.recv()


# ==========================================================================================
# check_gate.py (as a subprocess) against good and broken fakes
# ==========================================================================================

def run_check(port: int, *args: str, timeout: float = 120) -> tuple[int, str]:
    cmd = [sys.executable, CHECK_GATE, "--addr", f"127.0.0.1:{port}", *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout + p.stderr


def fmt_args(kw: dict) -> list:
    return ["--byte-order", kw["byte_order"], "--route-bytes", str(kw["route_bytes"]),
            "--seq-bytes", str(kw["seq_bytes"]), "--buffer-bytes", str(kw["buffer_bytes"])]


QUICK = ["--scenario", "heartbeat", "--scenario", "unknown-route", "--scenario", "oversize",
         "--scenario", "echo"]


class CheckGateTests(unittest.TestCase):
    def assertPass(self, rc, out, *names):
        self.assertEqual(rc, 0, out)
        for n in names:
            self.assertRegex(out, rf"(?m)^PASS {n} \(", out)

    def assertFail(self, rc, out, name, reason):
        self.assertNotEqual(rc, 0, out)
        self.assertRegex(out, rf"(?m)^FAIL {name}: .*{reason}", out)

    def test_full_echo_default_format(self):
        with FakeGate() as g:
            rc, out = run_check(g.port, *QUICK)
        self.assertPass(rc, out, "heartbeat", "unknown-route", "oversize", "echo")
        self.assertIn("PASS echo (10000 requests, 50 conns", out)
        self.assertEqual(g.echo_count, 10000 + 5 * 40 + 1)

    def test_format_combos(self):
        for kw in COMBOS[1:]:
            for modes in ((), ("fragment", "tick")):
                with self.subTest(kw=kw, modes=modes), FakeGate(modes=modes, **kw) as g:
                    rc, out = run_check(g.port, *fmt_args(kw), *QUICK, "--echo-conns", "10",
                                        "--echo-requests", "150")
                    self.assertPass(rc, out, "heartbeat", "unknown-route", "oversize", "echo")

    def test_format_mismatch_is_detected(self):
        # gate speaks little-endian, checker assumes big: must not pass
        kw = dict(COMBOS[1])
        with FakeGate(**kw) as g:
            kw["byte_order"] = "big"
            rc, out = run_check(g.port, *fmt_args(kw), "--scenario", "echo", "--echo-conns", "2",
                                "--echo-requests", "5", "--timeout", "1")
        self.assertFail(rc, out, "echo", "")

    def test_broken_gates_fail(self):
        cases = [
            ("corrupt", ["--scenario", "echo"], "echo", "payload mismatch"),
            ("wrong-seq", ["--scenario", "echo"], "echo", "not outstanding"),
            ("drop", ["--scenario", "echo", "--timeout", "1"], "echo", "no response within"),
            ("no-heartbeat", ["--scenario", "heartbeat"], "heartbeat", "no heartbeat reply"),
            ("no-error", ["--scenario", "unknown-route"], "unknown-route", "no reply to route 999"),
            ("error-payload", ["--scenario", "unknown-route"], "unknown-route", "payload"),
            ("no-oversize-close", ["--scenario", "oversize"], "oversize", "kept the connection open"),
            ("node-down", ["--scenario", "echo"], "echo", r"error reply ext=2"),
        ]
        for mode, args, name, reason in cases:
            with self.subTest(mode=mode), FakeGate(modes=[mode]) as g:
                rc, out = run_check(g.port, *args)
                self.assertFail(rc, out, name, reason)
                self.assertEqual(out.count("FAIL"), 1, out)

    def test_heartbeat_time(self):
        hb = ["--scenario", "heartbeat"]
        with FakeGate(modes=["time"]) as g:
            rc, out = run_check(g.port, *hb, "--heartbeat-time")
        self.assertPass(rc, out, "heartbeat")
        self.assertIn("(header 0xC0)", out)
        with FakeGate(modes=["time"], byte_order="little") as g:
            rc, out = run_check(g.port, *hb, "--heartbeat-time", "--byte-order", "little")
        self.assertPass(rc, out, "heartbeat")
        with FakeGate(modes=["time-no-bit"]) as g:
            rc, out = run_check(g.port, *hb)
        self.assertFail(rc, out, "heartbeat", "lacks the time bit")
        with FakeGate() as g:
            rc, out = run_check(g.port, *hb, "--heartbeat-time")
        self.assertFail(rc, out, "heartbeat", "carries no time")

    def test_node_down(self):
        with FakeGate(modes=["node-down"]) as g:
            rc, out = run_check(g.port, "--scenario", "node-down")
        self.assertPass(rc, out, "node-down")
        self.assertIn("ext=2", out)
        with FakeGate() as g:  # node alive: echo reply is not an error
            rc, out = run_check(g.port, "--scenario", "node-down")
        self.assertFail(rc, out, "node-down", "ordinary reply")

    def test_idle(self):
        hb = 0.5  # window [0.75, 2.5]
        with FakeGate(idle_timeout=2 * hb, modes=["tick"]) as g:
            rc, out = run_check(g.port, "--scenario", "idle", "--heartbeat-interval", str(hb))
        self.assertPass(rc, out, "idle")
        with FakeGate(idle_timeout=0.3) as g:
            rc, out = run_check(g.port, "--scenario", "idle", "--heartbeat-interval", str(hb))
        self.assertFail(rc, out, "idle", "too early")
        with FakeGate(idle_timeout=None) as g:
            rc, out = run_check(g.port, "--scenario", "idle", "--heartbeat-interval", str(hb))
        self.assertFail(rc, out, "idle", "still open")

    def test_all_and_unreachable(self):
        with FakeGate(idle_timeout=1.0) as g:
            rc, out = run_check(g.port, "--scenario", "all", "--heartbeat-interval", "0.5",
                                "--echo-conns", "5", "--echo-requests", "50")
        self.assertPass(rc, out, "heartbeat", "echo", "unknown-route", "oversize", "idle")
        self.assertEqual(len(out.strip().splitlines()), 5, out)
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()  # nothing listens there now
        rc, out = run_check(port, "--scenario", "heartbeat")
        self.assertFail(rc, out, "heartbeat", "cannot connect")


def serve_main(argv) -> int:
    p = argparse.ArgumentParser(description="run the fake gate standalone")
    p.add_argument("--port", type=int, default=3553)
    p.add_argument("--mode", action="append", default=[], choices=sorted(FAULT_MODES))
    p.add_argument("--idle-timeout", type=float, default=None)
    due_client.add_packet_args(p)
    a = p.parse_args(argv)
    g = FakeGate(modes=a.mode, idle_timeout=a.idle_timeout, port=a.port, **due_client.format_kwargs(a))
    g.start()
    print(f"fake gate on 127.0.0.1:{g.port} modes={sorted(g.modes)}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        g.stop()
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        sys.exit(serve_main(sys.argv[2:]))
    unittest.main()
