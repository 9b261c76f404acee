#!/usr/bin/env python3
"""A node that stays alive but reads slowly, and one client flooding it.

Measures what a slow node costs the gate: its RSS over the run, and what
the client got back (replies by extension code). Protocol v2 by hand (no
protobuf module needed): the node announces route 1 as answered, pings
every 500 ms so the gate never takes it for dead or hung, reads RATE
bytes/s and never replies.

    loadtest/slow_node.py --gate target/release/ringgate [--seconds 8] [--rate 80000]

Loopback only, bounded in time; starts and stops its own gate.
"""
import argparse
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def frame(batch: bytes) -> bytes:
    return struct.pack(">I", len(batch)) + batch


def field(num: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (payload < 128 bytes)."""
    return bytes((num << 3 | 2, len(payload))) + payload


# ToGateBatch{ToGate{hello: NodeHello{service "slow", version 2, reply_routes [{route 1}]}}}
NODE_HELLO = frame(field(1, field(1, field(1, b"slow") + b"\x20\x02" + field(7, b"\x08\x01"))))
# ToGateBatch{ToGate{ping: Ping{nonce 1}}}
PING = frame(field(1, field(2, b"\x08\x01")))


def slow_node(listener: socket.socket, rate: int, stop: threading.Event):
    def serve(conn):
        conn.recv(4096)  # GateHello (small; read in one go)
        conn.sendall(NODE_HELLO)
        last_ping = 0.0
        while not stop.is_set():
            now = time.monotonic()
            if now - last_ping >= 0.5:
                conn.sendall(PING)
                last_ping = now
            conn.settimeout(0.1)
            try:
                if not conn.recv(max(1, rate // 10)):
                    return
            except socket.timeout:
                pass
            time.sleep(0.1)

    listener.settimeout(0.2)
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except socket.timeout:
            continue
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gate", default="target/release/ringgate")
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--rate", type=int, default=80_000, help="bytes/s the node reads")
    ap.add_argument("--payload", type=int, default=4096)
    a = ap.parse_args()

    node_l = socket.socket()
    node_l.bind(("127.0.0.1", 0))
    node_l.listen(16)
    node_port = node_l.getsockname()[1]
    tcp_port = free_port()
    cfg = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    cfg.write(f"""
[network.tcp]
addr = "127.0.0.1:{tcp_port}"
[network.ws]
enabled = false
[[nodes]]
addr = "127.0.0.1:{node_port}"
""")
    cfg.close()
    stop = threading.Event()
    threading.Thread(target=slow_node, args=(node_l, a.rate, stop), daemon=True).start()
    gate = subprocess.Popen([a.gate, "--config", cfg.name], stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        base = rss_kib(gate.pid)
        c = socket.create_connection(("127.0.0.1", tcp_port))
        body = b"\x00" + struct.pack(">hh", 1, 1) + b"x" * a.payload
        pkt = struct.pack(">I", len(body)) + body
        codes = {}
        done = threading.Event()

        def read():
            buf = b""
            while not done.is_set():
                try:
                    c.settimeout(0.2)
                    chunk = c.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
                while len(buf) >= 4:
                    n = struct.unpack(">I", buf[:4])[0]
                    if len(buf) < 4 + n:
                        break
                    hdr = buf[4]
                    if not hdr & 0x80:
                        codes[hdr & 0x7F] = codes.get(hdr & 0x7F, 0) + 1
                    buf = buf[4 + n:]

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        peak, sent, end = base, 0, time.monotonic() + a.seconds
        next_sample = 0.0
        batch = pkt * 16
        while time.monotonic() < end:
            c.sendall(batch)
            sent += 16
            if time.monotonic() >= next_sample:
                peak = max(peak, rss_kib(gate.pid))
                next_sample = time.monotonic() + 0.1
        peak = max(peak, rss_kib(gate.pid))
        time.sleep(0.5)
        done.set()
        final = rss_kib(gate.pid)
        names = {0: "reply", 1: "NO_ROUTE", 2: "NODE_DOWN", 3: "TIMEOUT", 4: "BUSY", 5: "TOO_LARGE"}
        print(f"sent {sent} requests of {a.payload} B in {a.seconds:.0f} s "
              f"({sent * a.payload / a.seconds / 1e6:.0f} MB/s); node reads {a.rate} B/s")
        print(f"gate RSS: start {base / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB "
              f"(+{(peak - base) / 1024:.1f} MiB), end {final / 1024:.1f} MiB")
        print("client got: " + ", ".join(f"{names.get(k, k)} {v}" for k, v in sorted(codes.items())))
    finally:
        stop.set()
        gate.terminate()
        gate.wait(5)
        os.unlink(cfg.name)


if __name__ == "__main__":
    sys.exit(main())
