#!/usr/bin/env python3
"""How long clients wait for an answer when their node dies or hangs.

Starts a gate and the echo example node (release builds), keeps CONNS
clients each with one request in flight, then SIGSTOPs (or SIGKILLs) the
node and measures, for every client, the time from the signal to the
answer of its waiting request (the gate's NODE_DOWN / TIMEOUT error).
Then it restarts the node and checks replies come back.

    loadtest/node_stop.py [--signal STOP|KILL] [--conns 50] [--hang-timeout 1s]

Loopback only, bounded in time; starts and stops everything it uses.
"""
import argparse
import os
import signal
import socket
import statistics
import struct
import subprocess
import tempfile
import threading
import time

NAMES = {0: "reply", 1: "NO_ROUTE", 2: "NODE_DOWN", 3: "TIMEOUT", 4: "BUSY", 5: "TOO_LARGE"}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def packet(seq: int) -> bytes:
    body = b"\x00" + struct.pack(">hh", 1, seq) + b"ping"
    return struct.pack(">I", len(body)) + body


def recv_packet(s: socket.socket):
    def exact(n):
        b = b""
        while len(b) < n:
            c = s.recv(n - len(b))
            if not c:
                raise EOFError
            b += c
        return b
    while True:
        n = struct.unpack(">I", exact(4))[0]
        body = exact(n)
        if body[0] & 0x80:
            continue  # heartbeat
        return body[0] & 0x7F


def client(port, stop, signalled, out):
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(30)
    seq = 0
    while not stop.is_set():
        seq = (seq + 1) % 30000
        s.sendall(packet(seq))
        try:
            code = recv_packet(s)
        except (OSError, EOFError):
            return
        if code != 0 and signalled[0] is not None:
            out.append((time.monotonic() - signalled[0], code))
            return
        time.sleep(0.005)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--signal", default="STOP", choices=["STOP", "KILL"])
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--hang-timeout", default="1s")
    ap.add_argument("--gate", default="target/release/ringgate")
    ap.add_argument("--node", default="target/release/examples/echo_node")
    a = ap.parse_args()
    node_port, tcp_port = free_port(), free_port()
    cfg = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    cfg.write(f"""
[network.tcp]
addr = "127.0.0.1:{tcp_port}"
[network.ws]
enabled = false
[link]
hang_timeout = "{a.hang_timeout}"
[[nodes]]
addr = "127.0.0.1:{node_port}"
""")
    cfg.close()
    quiet = subprocess.DEVNULL
    node = subprocess.Popen([a.node, "--listen", f"127.0.0.1:{node_port}"], stderr=quiet, stdout=quiet)
    gate = subprocess.Popen([a.gate, "--config", cfg.name], stderr=quiet, stdout=quiet)
    try:
        time.sleep(1.0)
        stop, signalled, out = threading.Event(), [None], []
        threads = [threading.Thread(target=client, args=(tcp_port, stop, signalled, out),
                                    daemon=True) for _ in range(a.conns)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        signalled[0] = time.monotonic()
        node.send_signal(getattr(signal, "SIG" + a.signal))
        for t in threads:
            t.join(timeout=15)
        waits = sorted(w for w, _ in out)
        codes = {}
        for _, c in out:
            codes[NAMES.get(c, c)] = codes.get(NAMES.get(c, c), 0) + 1
        print(f"SIG{a.signal} of the node with {a.conns} clients each waiting on a request "
              f"(hang_timeout {a.hang_timeout}):")
        if waits:
            print(f"  answered {len(waits)}/{a.conns}: {codes}; signal → error reply "
                  f"min {waits[0] * 1000:.0f} ms, median {statistics.median(waits) * 1000:.0f} ms, "
                  f"max {waits[-1] * 1000:.0f} ms")
        else:
            print(f"  answered 0/{a.conns}")
        # Recovery: a fresh node, and requests are served again.
        if a.signal == "STOP":
            node.send_signal(signal.SIGKILL)
        node.wait(5)
        node = subprocess.Popen([a.node, "--listen", f"127.0.0.1:{node_port}"], stderr=quiet, stdout=quiet)
        s = socket.create_connection(("127.0.0.1", tcp_port))
        s.settimeout(10)
        start = time.monotonic()
        while True:
            s.sendall(packet(1))
            if recv_packet(s) == 0:
                break
            time.sleep(0.02)
        print(f"  restarted node serving again after {(time.monotonic() - start) * 1000:.0f} ms")
    finally:
        stop.set()
        for p in (node, gate):
            p.kill()
            p.wait(5)
        os.unlink(cfg.name)


if __name__ == "__main__":
    main()
