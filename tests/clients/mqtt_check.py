#!/usr/bin/env python3
"""Independent MQTT acceptance client for ringgate's mqant-style MQTT listener.

Written from the protocol description (mqant's gate as documented in the
research notes: requests are PUBLISHes to ``<service>/<handler>/<msgid>``,
answered by a QoS 0 PUBLISH on the same topic whose payload is
``{"Trace":"<16 hex>","Error":"...","Result":...}``; two segments are a
notification; pushes arrive without subscribing), not from ringgate's code.
It drives the third-party client library paho-mqtt (2.x).

The gate must front a node serving service ``Echo`` with:
  HD_Echo   reply JSON {"topic": <request topic>, "body": <payload as text>};
            as a notification: a push on Echo/OnNotify with the payload
  HD_Bytes  reply bytes 00 01 ff 'bin' (Result = base64)
  HD_Raw    reply b"raw:" + payload with no wrapper
  HD_Push   a push on Echo/OnPush ("push-body"), then reply "pushed" (string)
  HD_Slow   never replies
  HD_Err    replies with error "boom"

Usage: mqtt_check.py --host 127.0.0.1 --port N --max-inflight 5 --request-timeout 1
Prints PASS/FAIL per scenario; exit status 1 if any failed, 2 if paho is missing.
"""

import argparse
import base64
import json
import queue
import re
import select
import socket
import sys
import threading
import time
import traceback

try:
    import paho.mqtt
    import paho.mqtt.client as mqtt
except ImportError:
    print("FAIL setup: the Python package paho-mqtt is not installed "
          "(pip install paho-mqtt==2.1.0; scripts/test.sh installs it)")
    sys.exit(2)

if not paho.mqtt.__version__.startswith("2."):
    print(f"FAIL setup: paho-mqtt 2.x needed, found {paho.mqtt.__version__}")
    sys.exit(2)

TRACE_RE = re.compile(r"^[0-9a-f]{16}$")
PROTOCOLS = {"3.1": mqtt.MQTTv31, "3.1.1": mqtt.MQTTv311}


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


# --ws-path: speak MQTT over WebSocket (paho's "websockets" transport) on
# that upgrade path instead of plain TCP.
WS_PATH = None


def new_client(**kw):
    """A paho client on the transport the command line chose."""
    if WS_PATH is None:
        return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kw)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, transport="websockets", **kw)
    c.ws_set_options(path=WS_PATH)
    return c


class Conn:
    """One paho client, its network loop in a thread, every PUBLISH it
    receives queued (topic, payload)."""

    def __init__(self, host, port, proto="3.1.1", client_id=None, keepalive=30):
        self.proto = proto
        if client_id is None:
            client_id = f"check-{proto}-{time.monotonic_ns() % 10**9}"
        self.c = new_client(client_id=client_id, protocol=PROTOCOLS[proto], clean_session=True)
        self.msgs = queue.Queue()
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.connack = None
        self.subacks = queue.Queue()
        self.unsubacks = queue.Queue()
        self.pingresps = 0
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = lambda c, u, f, rc, p: self.disconnected.set()
        self.c.on_message = lambda c, u, m: self.msgs.put((m.topic, m.payload, m.qos))
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.put((mid, rcs))
        self.c.on_unsubscribe = lambda c, u, mid, rcs, p: self.unsubacks.put(mid)
        self.c.on_log = self._on_log
        self.c.connect(host, port, keepalive=keepalive)
        self.c.loop_start()
        check(self.connected.wait(5), f"no CONNACK within 5 s (MQTT {proto})")
        check(self.connack == 0 or str(self.connack) == "Success",
              f"CONNACK refused: {self.connack}")

    def _on_connect(self, c, u, flags, rc, props):
        self.connack = rc
        self.connected.set()

    def _on_log(self, c, u, level, buf):
        if "PINGRESP" in buf:
            self.pingresps += 1

    def publish(self, topic, payload, qos=0):
        return self.c.publish(topic, payload, qos=qos)

    def recv(self, timeout=3.0):
        try:
            return self.msgs.get(timeout=timeout)
        except queue.Empty:
            raise Failure(f"nothing received within {timeout} s")

    def recv_on(self, topic, timeout=3.0):
        end = time.monotonic() + timeout
        while True:
            t, p, q = self.recv(max(0.01, end - time.monotonic()))
            check(q == 0, f"gate published at QoS {q}, mqant always uses 0")
            if t == topic:
                return p
            raise Failure(f"expected a PUBLISH on {topic!r}, got one on {t!r}: {p[:200]!r}")

    def nothing(self, within):
        try:
            t, p, _ = self.msgs.get(timeout=within)
        except queue.Empty:
            return
        raise Failure(f"unexpected PUBLISH on {t!r}: {p[:200]!r}")

    def request(self, topic, payload, qos=0, timeout=3.0):
        """Publishes a request and returns the parsed wrapper of its reply."""
        self.publish(topic, payload, qos)
        return wrapper(self.recv_on(topic, timeout))

    def close(self):
        try:
            self.c.disconnect()
        finally:
            self.c.loop_stop()


def wrapper(raw):
    try:
        w = json.loads(raw)
    except ValueError:
        raise Failure(f"reply is not JSON: {raw[:200]!r}")
    check(isinstance(w, dict), f"reply is not a JSON object: {raw[:200]!r}")
    check(set(w) >= {"Trace", "Error", "Result"}, f"reply lacks Trace/Error/Result: {w}")
    check(isinstance(w["Trace"], str) and TRACE_RE.match(w["Trace"]),
          f"Trace is not 16 lowercase hex digits: {w['Trace']!r}")
    check(isinstance(w["Error"], str), f"Error is not a string: {w['Error']!r}")
    return w


def ok_result(w):
    check(w["Error"] == "", f"unexpected Error {w['Error']!r}")
    return w["Result"]


# ---------------------------------------------------------------------------
# Scenarios: each takes (args, proto) and raises Failure.
# ---------------------------------------------------------------------------

def sc_connect(a, proto):
    c = Conn(a.host, a.port, proto)
    c.close()
    check(c.disconnected.wait(3), "no clean disconnect")
    return "CONNACK accepted"


def sc_empty_client_id(a, proto):
    # paho sends a zero-length client id as asked for MQTT 3.1.1 (3.1.1
    # §3.1.3.1 lets the server assign one); for 3.1 paho makes one up.
    c = Conn(a.host, a.port, proto, client_id="")
    try:
        r = ok_result(c.request("Echo/HD_Echo/1", b"{}"))
        check(r["topic"] == "Echo/HD_Echo/1", f"wrong echo {r}")
    finally:
        c.close()
    return "CONNACK 0 and a working session"


def sc_echo(a, proto):
    c = Conn(a.host, a.port, proto)
    try:
        traces = set()
        for i, body in enumerate([b'{"a":1,"b":[1,2]}', b"plain text", b"", b"[1,2,3]"], 1):
            topic = f"Echo/HD_Echo/{i}"
            w = c.request(topic, body)
            traces.add(w["Trace"])
            r = ok_result(w)
            check(r == {"topic": topic, "body": body.decode()}, f"echo of {body!r}: {r}")
        check(len(traces) == 1, f"Trace changed within one connection: {traces}")
        # A msgid is any string; the reply comes on the exact topic.
        w = c.request("Echo/HD_Echo/face", b"x")
        check(ok_result(w)["topic"] == "Echo/HD_Echo/face", f"{w}")
    finally:
        c.close()
    return "JSON Result, topic kept, Trace constant"


def sc_bytes(a, proto):
    c = Conn(a.host, a.port, proto)
    try:
        r = ok_result(c.request("Echo/HD_Bytes/1", b"x"))
        check(isinstance(r, str), f"bytes Result is not a base64 string: {r!r}")
        check(base64.b64decode(r) == b"\x00\x01\xffbin", f"base64 decodes wrong: {r!r}")
    finally:
        c.close()
    return "Result is base64 of the bytes"


def sc_raw(a, proto):
    c = Conn(a.host, a.port, proto)
    try:
        c.publish("Echo/HD_Raw/1", b"hello")
        p = c.recv_on("Echo/HD_Raw/1")
        check(p == b"raw:hello", f"raw reply was {p!r}")
    finally:
        c.close()
    return "payload unwrapped"


def sc_push(a, proto):
    # No SUBSCRIBE at all: pushes arrive anyway.
    c = Conn(a.host, a.port, proto)
    try:
        c.publish("Echo/HD_Push/1", b"{}")
        p = c.recv_on("Echo/OnPush")
        check(p == b"push-body", f"push payload {p!r}")
        r = ok_result(wrapper(c.recv_on("Echo/HD_Push/1")))
        check(r == "pushed", f"reply after push: {r!r}")
    finally:
        c.close()
    return "push before reply, no subscription"


def sc_notify(a, proto):
    c = Conn(a.host, a.port, proto)
    try:
        c.publish("Echo/HD_Echo", b"note")
        # The node shows it got the notification by pushing it back on another topic.
        p = c.recv_on("Echo/OnNotify")
        check(p == b"note", f"notification reached the node as {p!r}")
        c.nothing(0.5)
    finally:
        c.close()
    return "delivered, no reply"


def sc_qos(a, proto):
    c = Conn(a.host, a.port, proto)
    try:
        for qos in (1, 2):
            info = c.publish(f"Echo/HD_Echo/q{qos}", b"{}", qos=qos)
            info.wait_for_publish(3)
            check(info.is_published(), f"QoS {qos} PUBLISH not acknowledged")
            r = ok_result(wrapper(c.recv_on(f"Echo/HD_Echo/q{qos}")))
            check(r["topic"] == f"Echo/HD_Echo/q{qos}", f"{r}")
            c.nothing(0.3)  # exactly one reply, also for QoS 2
        # Notifications at QoS 1 and 2 are acknowledged as well.
        for qos in (1, 2):
            info = c.publish("Echo/HD_Slow", b"", qos=qos)
            info.wait_for_publish(3)
            check(info.is_published(), f"QoS {qos} notification not acknowledged")
    finally:
        c.close()
    return "PUBACK; PUBREC/PUBREL/PUBCOMP; one reply each"


def sc_subscribe(a, proto):
    c = Conn(a.host, a.port, proto)
    try:
        res, mid = c.c.subscribe([("Echo/#", 1), ("x/y", 2), ("z", 0)])
        check(res == mqtt.MQTT_ERR_SUCCESS, f"subscribe send failed {res}")
        try:
            got_mid, rcs = c.subacks.get(timeout=3)
        except queue.Empty:
            raise Failure("no SUBACK")
        check(got_mid == mid, f"SUBACK for mid {got_mid}, sent {mid}")
        codes = [int(getattr(rc, "value", rc)) for rc in rcs]
        check(len(codes) == 3 and all(x in (0, 1, 2) for x in codes),
              f"SUBACK return codes {codes}")
        res, mid = c.c.unsubscribe(["Echo/#", "x/y"])
        try:
            got = c.unsubacks.get(timeout=3)
        except queue.Empty:
            raise Failure("no UNSUBACK")
        check(got == mid, f"UNSUBACK for mid {got}, sent {mid}")
        ok_result(c.request("Echo/HD_Echo/after-sub", b"{}"))
    finally:
        c.close()
    return f"SUBACK codes {codes}, UNSUBACK"


def sc_ping(a, proto):
    # keepalive 1 s with the loop running: paho pings every second and
    # disconnects itself if a PINGRESP does not come within the keepalive.
    c = Conn(a.host, a.port, proto, keepalive=1)
    try:
        time.sleep(3.5)
        check(not c.disconnected.is_set(), "disconnected while pinging")
        check(c.pingresps >= 2, f"only {c.pingresps} PINGRESP in 3.5 s")
        ok_result(c.request("Echo/HD_Echo/p", b"{}"))
    finally:
        c.close()
    return f"{c.pingresps} PINGRESP, still connected"


def sc_slow(a, proto):
    c = Conn(a.host, a.port, proto)
    try:
        t = time.monotonic()
        w = c.request("Echo/HD_Slow/1", b"{}", timeout=a.request_timeout + 5)
        took = time.monotonic() - t
        check(w["Error"] == "deadline exceeded", f"Error {w['Error']!r}")
        check(took >= a.request_timeout * 0.9, f"deadline after only {took:.2f} s")
        ok_result(c.request("Echo/HD_Echo/2", b"{}"))
    finally:
        c.close()
    return f"after {took:.2f} s"


def sc_errors(a, proto):
    c = Conn(a.host, a.port, proto)
    try:
        cases = [
            ("Echo/HD_Err/1", b"{}", "boom"),
            ("Nope/HD_X/2", b"{}", "Service(type:Nope) not found"),
            ("Echo/HD_Nope/3", b"{}", "Remote function(HD_Nope) not found"),
            ("Echo/HD_Echo/4", b'{"a":}', "The JSON format is incorrect"),
            ("Echo/HD_Echo/5", b"{not json}", "The JSON format is incorrect"),
        ]
        for topic, body, err in cases:
            w = c.request(topic, body)
            check(w["Error"] == err, f"{topic}: Error {w['Error']!r}, want {err!r}")
        # The connection still works.
        ok_result(c.request("Echo/HD_Echo/6", b"{}"))
    finally:
        c.close()
    return "boom, service, function, JSON"


def sc_queue_full(a, proto):
    n = a.max_inflight
    c = Conn(a.host, a.port, proto)
    try:
        for i in range(1, n + 2):
            c.publish(f"Echo/HD_Slow/{i}", b"{}")
        got = {}
        deadline = time.monotonic() + a.request_timeout + 5
        while len(got) < n + 1:
            t, p, _ = c.recv(max(0.01, deadline - time.monotonic()))
            check(t not in got, f"two replies on {t}")
            got[t] = wrapper(p)["Error"]
        full = [t for t, e in got.items() if e == "the work queue is full!"]
        late = [t for t, e in got.items() if e == "deadline exceeded"]
        check(full == [f"Echo/HD_Slow/{n + 1}"], f"queue-full replies: {full} ({got})")
        check(len(late) == n, f"deadline replies: {late} ({got})")
        ok_result(c.request("Echo/HD_Echo/again", b"{}"))
    finally:
        c.close()
    return f"{n} in flight, request {n + 1} refused"


def sc_keepalive_close(a, proto):
    # CONNECT with keepalive 1 s, read the CONNACK, then send nothing more
    # (the paho loop is driven by hand and stopped, so it cannot ping).
    c = new_client(client_id="silent", protocol=PROTOCOLS[proto])
    done = threading.Event()
    c.on_connect = lambda *x: done.set()
    t0 = time.monotonic()
    c.connect(a.host, a.port, keepalive=1)
    while not done.is_set() and time.monotonic() - t0 < 5:
        c.loop_read()
    check(done.is_set(), "no CONNACK")
    sock = c.socket()
    while True:
        left = 5 - (time.monotonic() - t0)
        check(left > 0, "not closed within 5 s")
        r, _, _ = select.select([sock], [], [], left)
        if r:
            try:
                data = sock.recv(4096)
            except (ConnectionResetError, OSError):
                data = b""
            if not data:
                break
            raise Failure(f"gate sent {data!r} to a silent client")
    took = time.monotonic() - t0
    check(1.4 <= took <= 2.6, f"closed {took:.2f} s after CONNECT (want 1.5 x 1 s)")
    try:
        sock.close()
    except OSError:
        pass
    return f"closed after {took:.2f} s"


SCENARIOS = [
    ("connect", sc_connect),
    ("empty-client-id", sc_empty_client_id),
    ("echo", sc_echo),
    ("bytes", sc_bytes),
    ("raw", sc_raw),
    ("push", sc_push),
    ("notify", sc_notify),
    ("qos", sc_qos),
    ("subscribe", sc_subscribe),
    ("ping", sc_ping),
    ("slow", sc_slow),
    ("errors", sc_errors),
    ("queue-full", sc_queue_full),
    ("keepalive-close", sc_keepalive_close),
]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--max-inflight", type=int, default=20)
    p.add_argument("--request-timeout", type=float, default=10.0)
    p.add_argument("--protocol", action="append", choices=list(PROTOCOLS))
    p.add_argument("--scenario", action="append", choices=[n for n, _ in SCENARIOS])
    p.add_argument("--ws-path", help="MQTT over WebSocket on this path (--port: the ws listener)")
    a = p.parse_args()
    global WS_PATH
    WS_PATH = a.ws_path
    protos = a.protocol or list(PROTOCOLS)
    names = a.scenario or [n for n, _ in SCENARIOS]
    failed = 0
    over = f"WebSocket {WS_PATH}" if WS_PATH else "TCP"
    print(f"paho-mqtt {paho.mqtt.__version__} over {over}", flush=True)
    for proto in protos:
        for name, fn in SCENARIOS:
            if name not in names:
                continue
            label = f"{name} mqtt{proto}"
            try:
                detail = fn(a, proto)
                print(f"PASS {label} ({detail})", flush=True)
            except Failure as e:
                failed += 1
                print(f"FAIL {label}: {e}", flush=True)
            except Exception as e:  # a crash is a failure too, with its trace
                failed += 1
                print(f"FAIL {label}: {type(e).__name__}: {e}", flush=True)
                traceback.print_exc()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
