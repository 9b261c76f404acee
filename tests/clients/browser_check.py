#!/usr/bin/env python3
"""A real browser against a gate's WebSocket listener: headless Chromium driven over the
Chrome DevTools Protocol (CDP), which this script speaks with the ``websockets`` library.

    python3 tests/clients/browser_check.py --gate ws://127.0.0.1:3554/ [--gate wss://...] \
        [--mqtt ws://127.0.0.1:3554/mqtt] [--chromium /usr/bin/chromium] [--timeout 50]

A ``--gate`` must front the chat example node (examples/chat_node.rs). For each ``--gate``:

1. ``tests/web/chat_check.html`` (served from 127.0.0.1 by an ``http.server`` started
   here) logs in, joins a room, says something, receives the room message (route 100),
   whispers to itself, gets an error reply for an unknown route and closes cleanly; it
   sets ``window.chatResult``, which is polled with ``Runtime.evaluate``.
2. The shipped page ``examples/web/index.html`` is driven through its forms (gate URL,
   connect, log in, join, say) until its log shows the room message.

An ``--mqtt`` gate has ``[network.mqtt]`` on and fronts the echo example node
(examples/echo_node.rs, module ``Echo``). For each ``--mqtt`` URL the shipped page is switched
to MQTT: its codec is checked in the page against bytes built here (docs/mqtt.md's PUBLISH,
a CONNECT, remaining lengths; a byte stream decoded whole, cut at every offset and byte by
byte), then it connects (keep-alive 1 s), sends ``Echo/HD_Echo/1`` ``{"a":1}`` and must show
the wrapped reply with Result ``{"a":1}``, sends ``Echo/HD_Push/2`` and must show the push on
``Echo/OnPush`` before the reply ``"pushed"``, shows ``Echo/HD_Err/3``'s ``boom``, counts two
PINGRESPs and closes (DISCONNECT, then the WebSocket close).

Prints ``PASS <scheme> ...`` / ``FAIL <scheme> ...`` per gate and exits 0 only if all pass.
For wss the gate's certificate is self-signed: Chromium runs with
``--ignore-certificate-errors`` (a test-only shortcut; the TLS handshake still happens).
Chromium is killed (its whole process group) whatever happens; everything is bounded by
``--timeout`` seconds.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse

try:
    from websockets.sync.client import connect as ws_connect
    import inspect
    # websockets >= 17: legacy=True returns the open connection (no context manager).
    LEGACY = {"legacy": True} if "legacy" in inspect.signature(ws_connect).parameters else {}
except ImportError as e:  # pragma: no cover
    print(f"FAIL setup: the 'websockets' package is missing ({e}); scripts/test.sh installs it",
          flush=True)
    sys.exit(2)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVED = ("/tests/web/", "/examples/web/")


class CheckFailed(Exception):
    pass


class Deadline:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds
        self.seconds = seconds

    def left(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise CheckFailed(f"overall time limit of {self.seconds:g}s reached")
        return left


# -- the page server ------------------------------------------------------------------------

class PageHandler(http.server.SimpleHTTPRequestHandler):
    """Serves only tests/web/ and examples/web/ of the repository."""

    def send_head(self):
        path = urllib.parse.urlsplit(self.path).path
        if not path.startswith(SERVED) or ".." in path:
            self.send_error(404)
            return None
        return super().send_head()

    def end_headers(self):
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, fmt, *args):  # quiet
        pass


def serve_pages() -> http.server.ThreadingHTTPServer:
    handler = functools.partial(PageHandler, directory=REPO)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


# -- Chromium and CDP -----------------------------------------------------------------------

class Chromium:
    def __init__(self, exe: str, ignore_cert_errors: bool, deadline: Deadline):
        self.dir = tempfile.mkdtemp(prefix="ringgate-chromium-")
        args = [
            exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-dev-shm-usage", "--no-proxy-server",
            "--disable-extensions", "--mute-audio",
            f"--user-data-dir={self.dir}", "--remote-debugging-port=0",
        ]
        if ignore_cert_errors:
            args.append("--ignore-certificate-errors")
        args.append("about:blank")
        self.stderr_path = os.path.join(self.dir, "chromium.stderr")
        self.stderr = open(self.stderr_path, "wb")
        # A session of its own: the browser and every helper process it forks are one
        # process group, killed together at the end.
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self.stderr, start_new_session=True)
        self.endpoint = self._endpoint(deadline)

    def _endpoint(self, deadline: Deadline) -> str:
        path = os.path.join(self.dir, "DevToolsActivePort")
        while True:
            if self.proc.poll() is not None:
                raise CheckFailed(f"chromium exited with {self.proc.returncode}: {self.tail()}")
            try:
                with open(path) as f:
                    lines = f.read().split("\n")
                if len(lines) >= 2 and lines[0].strip().isdigit() and lines[1].strip():
                    return f"ws://127.0.0.1:{lines[0].strip()}{lines[1].strip()}"
            except FileNotFoundError:
                pass
            if deadline.left() < 0.1:
                raise CheckFailed("no DevToolsActivePort from chromium")
            time.sleep(0.05)

    def tail(self) -> str:
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read()[-2000:].decode(errors="replace")
        except OSError:
            return ""

    def kill(self) -> None:
        if self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        # Helpers may outlive the main process briefly: make sure the group is gone.
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                break
            time.sleep(0.05)
        self.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Cdp:
    """Just enough CDP: commands on the browser endpoint, flattened page sessions."""

    def __init__(self, endpoint: str, deadline: Deadline):
        self.deadline = deadline
        self.ws = ws_connect(endpoint, proxy=None, max_size=64 << 20, ping_interval=None,
                             open_timeout=min(10.0, deadline.left()), compression=None, **LEGACY)
        self.next_id = 0

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        while True:
            raw = self.ws.recv(timeout=self.deadline.left())
            reply = json.loads(raw)
            if reply.get("id") != self.next_id:
                continue  # an event
            if "error" in reply:
                raise CheckFailed(f"CDP {method}: {reply['error']}")
            return reply["result"]

    def open_page(self, url: str) -> str:
        target = self.call("Target.createTarget", {"url": url})["targetId"]
        return self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]

    def eval(self, session: str, expr: str):
        r = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True}, session)
        if "exceptionDetails" in r:
            return None  # e.g. the page is still loading
        return r["result"].get("value")

    def poll(self, session: str, expr: str, what: str, limit: float = 20.0):
        end = time.monotonic() + min(limit, self.deadline.left())
        while True:
            v = self.eval(session, expr)
            if v:
                return v
            if time.monotonic() > end:
                raise CheckFailed(f"timed out waiting for {what}")
            time.sleep(0.05)

    def close(self) -> None:
        self.ws.close()


# -- the checks -----------------------------------------------------------------------------

def check_test_page(cdp: Cdp, base: str, gate: str, uid: int) -> str:
    query = urllib.parse.urlencode({"gate": gate, "uid": uid, "room": "lobby",
                                    "text": "hello from chromium"})
    session = cdp.open_page(f"{base}/tests/web/chat_check.html?{query}")
    try:
        res = cdp.poll(session, "window.chatResult && JSON.stringify(window.chatResult)",
                       "window.chatResult from tests/web/chat_check.html")
    except CheckFailed as e:
        log = cdp.eval(session, "JSON.stringify(window.chatLog || [])")
        raise CheckFailed(f"{e}; page log: {log}") from e
    res = json.loads(res)
    if not res["ok"]:
        raise CheckFailed(f"test page: {res['detail']}; page log: {res['log']}")
    want = f"{uid}@lobby: hello from chromium"
    if res["detail"] != want:
        raise CheckFailed(f"test page room message {res['detail']!r}, want {want!r}")
    return res["detail"]


def check_example_page(cdp: Cdp, base: str, gate: str, uid: int) -> str:
    session = cdp.open_page(f"{base}/examples/web/index.html")
    cdp.poll(session, "document.readyState === 'complete' && !!document.getElementById('url')",
             "examples/web/index.html to load")

    def submit(form: str, field: str, value: str) -> None:
        js = (f"(() => {{ document.getElementById({json.dumps(field)}).value = {json.dumps(value)};"
              f" document.getElementById({json.dumps(form)}).requestSubmit(); return true; }})()")
        cdp.eval(session, js)

    def wait_log(text: str) -> None:
        try:
            cdp.poll(session, f"document.getElementById('log').innerText.includes({json.dumps(text)})",
                     f"{text!r} in the page's log", limit=10.0)
        except CheckFailed as e:
            log = cdp.eval(session, "document.getElementById('log').innerText")
            raise CheckFailed(f"example page: {e}; log:\n{log}") from e

    submit("connect", "url", gate)
    wait_log(f"connected to {gate}")
    submit("login", "uid", str(uid))
    wait_log(f"login #1: ok {uid}")
    submit("join", "room", "plaza")
    wait_log("join #2: joined plaza")
    submit("say", "text", "hi from the example page")
    line = f"[room] {uid}@plaza: hi from the example page"
    wait_log(line)
    wait_log("say #3: sent")
    return line


# -- the MQTT mode of the example page --------------------------------------------------------

def mqtt_publish_bytes(topic: bytes, payload: bytes) -> bytes:
    """A QoS 0 PUBLISH written here from MQTT 3.1.1 §2.2.3 and §3.3 (not with the page's code)."""
    body = len(topic).to_bytes(2, "big") + topic + payload
    n, rl = len(body), bytearray()
    while True:
        b, n = n % 128, n // 128
        rl.append(b | (0x80 if n else 0))
        if not n:
            break
    return bytes([0x30]) + bytes(rl) + body


# Run in the page: its codec against bytes given here. Returns a JSON string.
CODEC_JS = """(() => {
  const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  const unhex = (h) => new Uint8Array(h.match(/../g).map((x) => parseInt(x, 16)));
  const show = (p) => p.type === "publish"
    ? `publish ${p.topic} ${p.qos} ${hex(p.payload)}`
    : p.type === "suback" ? `suback ${p.id} ${p.codes.join(",")}` : p.type;
  const attempt = (f) => { try { return f(); } catch (e) { return `threw ${e && e.message}`; } };
  const stream = unhex(%(stream)s);
  const out = { publish: attempt(() => hex(mqttPublish("Echo/HD_Echo/7", '{"a":1}'))),
                connect: attempt(() => hex(mqttConnect("c1", 30))),
                lengths: [0, 127, 128, 16383, 16384, 268435455].map(
                  (n) => attempt(() => hex(mqttRemainingLength(n)))),
                whole: attempt(() => new MqttDecoder().push(stream).map(show)),
                splits: [], bytewise: [] };
  for (let cut = 1; cut < stream.length; cut++) {
    // The first piece as bytes, the second as the ArrayBuffer a WebSocket gives.
    out.splits.push(attempt(() => {
      const d = new MqttDecoder();
      return d.push(stream.subarray(0, cut)).concat(d.push(stream.slice(cut).buffer))
        .map(show).join(" | ");
    }));
  }
  out.bytewise = attempt(() => {
    const d = new MqttDecoder();
    const got = [];
    for (const b of stream) got.push(...d.push(new Uint8Array([b])).map(show));
    return got;
  });
  try { new MqttDecoder().push(unhex("30ffffffff01")); out.fiveByteVarint = "accepted"; }
  catch (e) { out.fiveByteVarint = "refused"; }
  return JSON.stringify(out);
})()"""


def check_mqtt_codec(cdp: Cdp, session: str) -> None:
    """The page's encoder against the bytes in docs/mqtt.md and the specification; its
    decoder against one byte stream (CONNACK, a PUBLISH whose remaining length takes
    two bytes, PINGRESP, SUBACK) given whole, cut in two at every offset, and byte by byte."""
    big = bytes(range(32, 127)) * 3  # 285 bytes of payload
    stream = (bytes.fromhex("20020000") + mqtt_publish_bytes(b"Echo/OnPush", big)
              + bytes.fromhex("d000") + bytes.fromhex("9004000700 01".replace(" ", "")))
    want = ["connack", f"publish Echo/OnPush 0 {big.hex()}", "pingresp", "suback 7 0,1"]
    got = cdp.eval(session, CODEC_JS % {"stream": json.dumps(stream.hex())})
    if not got:
        raise CheckFailed("the page's codec check threw (are mqttPublish/MqttDecoder defined?)")
    got = json.loads(got)
    doc = "3017000e4563686f2f48445f4563686f2f377b2261223a317d"  # docs/mqtt.md
    if got["publish"] != doc:
        raise CheckFailed(f"page PUBLISH bytes {got['publish']}, want {doc}")
    connect = "100e00044d5154540402001e00026331"
    if got["connect"] != connect:
        raise CheckFailed(f"page CONNECT bytes {got['connect']}, want {connect}")
    lengths = ["00", "7f", "8001", "ff7f", "808001", "ffffff7f"]
    if got["lengths"] != lengths:
        raise CheckFailed(f"page remaining lengths {got['lengths']}, want {lengths}")
    if got["whole"] != want:
        raise CheckFailed(f"decoding the whole stream gave {got['whole']}, want {want}")
    for cut, s in enumerate(got["splits"], 1):
        if s != " | ".join(want):
            raise CheckFailed(f"decoding the stream cut at byte {cut} gave {s!r}")
    if got["bytewise"] != want:
        raise CheckFailed(f"decoding byte by byte gave {got['bytewise']}")
    if got["fiveByteVarint"] != "refused":
        raise CheckFailed("a 5-byte remaining length was accepted")


def check_mqtt_page(cdp: Cdp, base: str, url: str) -> str:
    """examples/web/index.html in MQTT mode against a gate fronting the echo node
    (examples/echo_node.rs, module Echo)."""
    session = cdp.open_page(f"{base}/examples/web/index.html")
    cdp.poll(session, "document.readyState === 'complete' && !!document.getElementById('proto')",
             "examples/web/index.html to load")
    check_mqtt_codec(cdp, session)

    def set_fields(form: str | None, **fields: str) -> None:
        sets = " ".join(f"document.getElementById({json.dumps(k.replace('_', '-'))}).value = "
                        f"{json.dumps(v)};" for k, v in fields.items())
        submit = f"document.getElementById({json.dumps(form)}).requestSubmit();" if form else ""
        cdp.eval(session, f"(() => {{ {sets} {submit} return true; }})()")

    def lines() -> list[str]:
        raw = cdp.eval(session, "JSON.stringify(Array.from(document.getElementById('log')"
                                ".children, (d) => d.textContent))")
        # Each line is "<local time>  <text>".
        return [ln.split("  ", 1)[-1] for ln in json.loads(raw or "[]")]

    def wait_line(prefix: str, what: str, limit: float = 10.0) -> tuple[int, str]:
        """(index, text) of the first log line starting with ``prefix``."""
        end = time.monotonic() + limit
        while True:
            for i, ln in enumerate(lines()):
                if ln.startswith(prefix):
                    return i, ln
            if time.monotonic() > end:
                raise CheckFailed(f"MQTT page: no {what} ({prefix!r}) in its log:\n"
                                  + "\n".join(lines()))
            cdp.deadline.left()
            time.sleep(0.05)

    def wrapper(line: str, topic: str) -> dict:
        text = line[len(f"← {topic}: "):]
        try:
            w = json.loads(text)
        except ValueError as e:
            raise CheckFailed(f"reply on {topic} is not JSON: {text!r}") from e
        if list(w) != ["Trace", "Error", "Result"] or not re.fullmatch(r"[0-9a-f]{16}", w["Trace"]):
            raise CheckFailed(f"reply on {topic} is not mqant's wrapper: {text!r}")
        return w

    # Choose MQTT: the page swaps its forms and moves the URL to /mqtt.
    cdp.eval(session, "(() => { const s = document.getElementById('proto'); s.value = 'mqtt';"
                      " s.dispatchEvent(new Event('change')); return true; })()")
    shown = cdp.eval(session, "document.getElementById('due-forms').hidden && "
                              "!document.getElementById('mqtt-forms').hidden && "
                              "document.getElementById('url').value.endsWith('/mqtt')")
    if not shown:
        raise CheckFailed("choosing MQTT did not show the MQTT forms and a /mqtt URL")
    set_fields("connect", url=url, client_id="browser-check", keepalive="1")
    wait_line(f"MQTT connected to {url} as browser-check", "CONNACK")

    set_fields("publish", topic="Echo/HD_Echo/1", payload='{"a":1}')
    _, echo = wait_line("← Echo/HD_Echo/1: ", "reply to Echo/HD_Echo/1")
    w = wrapper(echo, "Echo/HD_Echo/1")
    if w["Error"] != "" or w["Result"] != {"a": 1}:
        raise CheckFailed(f"Echo/HD_Echo/1 answered {w}, want Result {{'a': 1}}")

    set_fields("publish", topic="Echo/HD_Push/2", payload="push from chromium")
    reply, line = wait_line("← Echo/HD_Push/2: ", "reply to Echo/HD_Push/2")
    w = wrapper(line, "Echo/HD_Push/2")
    if w["Error"] != "" or w["Result"] != "pushed":
        raise CheckFailed(f"Echo/HD_Push/2 answered {w}, want Result 'pushed'")
    push, _ = wait_line("[push] Echo/OnPush: push from chromium", "push on Echo/OnPush")
    if push > reply:
        raise CheckFailed(f"the push came after the reply:\n" + "\n".join(lines()))

    set_fields("publish", topic="Echo/HD_Err/3", payload="{}")
    _, line = wait_line("← Echo/HD_Err/3: ", "reply to Echo/HD_Err/3")
    w = wrapper(line, "Echo/HD_Err/3")
    if w["Error"] != "boom" or w["Result"] is not None:
        raise CheckFailed(f"Echo/HD_Err/3 answered {w}, want Error 'boom'")

    # Keep-alive 1 s: a PINGREQ every 0.5 s, each PINGRESP counted by the page.
    cdp.poll(session, "parseInt(document.getElementById('pings').textContent, 10) >= 2",
             "two PINGRESPs counted by the page (keep-alive 1 s)", limit=5.0)
    # Disconnect: DISCONNECT, then the WebSocket close. The gate drops the connection on
    # DISCONNECT without a close frame, so Chromium may report 1006 as well as 1000.
    cdp.eval(session, "document.getElementById('connect').requestSubmit(), true")
    _, closed = wait_line("closed after DISCONNECT: code ", "close after DISCONNECT")
    if closed.split("code ", 1)[1].split()[0] not in ("1000", "1006"):
        raise CheckFailed(f"unexpected close: {closed!r}")
    return f"{echo}; {closed}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gate", action="append", default=[],
                   help="ws:// or wss:// URL of a gate fronting the chat node (repeatable)")
    p.add_argument("--mqtt", action="append", default=[], metavar="URL",
                   help="ws:// URL (e.g. ws://127.0.0.1:3554/mqtt) of a gate with [network.mqtt] "
                        "on, fronting the echo node: drives the example page in MQTT mode (repeatable)")
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--timeout", type=float, default=50.0, help="overall limit, seconds")
    p.add_argument("--uid", type=int, default=7001, help="first user id (two per gate)")
    args = p.parse_args(argv)
    if not args.gate and not args.mqtt:
        p.error("give at least one --gate or --mqtt")
    deadline = Deadline(args.timeout)
    # SIGTERM (e.g. the Rust test's own deadline) unwinds through the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    failed = 0
    srv = serve_pages()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    browser = cdp = None
    try:
        ignore = any(g.startswith("wss://") for g in args.gate + args.mqtt)
        browser = Chromium(args.chromium, ignore, deadline)
        cdp = Cdp(browser.endpoint, deadline)
        version = cdp.call("Browser.getVersion")["product"]
        print(f"{version}, pages from {base}" + (", --ignore-certificate-errors" if ignore else ""),
              flush=True)
        for i, gate in enumerate(args.gate):
            scheme = gate.split(":", 1)[0]
            uid = args.uid + 2 * i
            try:
                t0 = time.monotonic()
                room = check_test_page(cdp, base, gate, uid)
                example = check_example_page(cdp, base, gate, uid + 1)
                print(f"PASS {scheme} {gate} ({time.monotonic() - t0:.2f}s): test page got "
                      f"{room!r}; example page showed {example!r}", flush=True)
            except CheckFailed as e:
                failed += 1
                print(f"FAIL {scheme} {gate}: {e}", flush=True)
        for url in args.mqtt:
            try:
                t0 = time.monotonic()
                echo = check_mqtt_page(cdp, base, url)
                print(f"PASS mqtt {url} ({time.monotonic() - t0:.2f}s): example page in MQTT mode "
                      f"showed {echo!r}, the push on Echo/OnPush before its reply, HD_Err's "
                      f"error, PINGRESPs; its codec matched the reference bytes", flush=True)
            except CheckFailed as e:
                failed += 1
                print(f"FAIL mqtt {url}: {e}", flush=True)
    except Exception as e:  # noqa: BLE001
        failed += 1
        tail = browser.tail() if browser else ""
        print(f"FAIL setup: {type(e).__name__}: {e}\n{traceback.format_exc()}{tail}", flush=True)
    finally:
        if cdp is not None:
            try:
                cdp.close()
            except Exception:  # noqa: BLE001
                pass
        if browser is not None:
            browser.kill()
        srv.shutdown()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
