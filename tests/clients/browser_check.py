#!/usr/bin/env python3
"""A real browser against a gate's WebSocket listener: headless Chromium driven over the
Chrome DevTools Protocol (CDP), which this script speaks with the ``websockets`` library.

    python3 tests/clients/browser_check.py --gate ws://127.0.0.1:3554/ [--gate wss://...] \
        [--chromium /usr/bin/chromium] [--timeout 50]

The gate must front the chat example node (examples/chat_node.rs). For each ``--gate``:

1. ``tests/web/chat_check.html`` (served from 127.0.0.1 by an ``http.server`` started
   here) logs in, joins a room, says something, receives the room message (route 100),
   whispers to itself, gets an error reply for an unknown route and closes cleanly; it
   sets ``window.chatResult``, which is polled with ``Runtime.evaluate``.
2. The shipped page ``examples/web/index.html`` is driven through its forms (gate URL,
   connect, log in, join, say) until its log shows the room message.

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
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gate", action="append", required=True, help="ws:// or wss:// URL (repeatable)")
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--timeout", type=float, default=50.0, help="overall limit, seconds")
    p.add_argument("--uid", type=int, default=7001, help="first user id (two per gate)")
    args = p.parse_args(argv)
    deadline = Deadline(args.timeout)
    # SIGTERM (e.g. the Rust test's own deadline) unwinds through the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    failed = 0
    srv = serve_pages()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    browser = cdp = None
    try:
        ignore = any(g.startswith("wss://") for g in args.gate)
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
    except Exception as e:  # noqa: BLE001
        failed += 1
        tail = browser.tail() if browser else ""
        print(f"FAIL setup: {type(e).__name__}: {e}\n{tail}", flush=True)
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
