"""Reads the admin dashboard as a person sees it: headless Chromium, driven over the
Chrome DevTools Protocol (with the ``websockets`` package scripts/test.sh installs).

    python3 tests/common/dashboard_check.py --url http://127.0.0.1:PORT/ \
        --connections 4 --screenshot out.png [--chromium /usr/bin/chromium] [--timeout 20]

Opens the page, waits until its live numbers show ``--connections`` connections and a
non-zero message rate (so the page is fed by the event stream while a load runs), lets it
draw a few seconds of its chart, then prints one JSON object with what the page shows
(the cards by element id, the shard rows by their data attributes, the node rows, the
close reasons) and saves a PNG screenshot. Exits non-zero with a reason on failure.
Chromium is killed (its whole process group) whatever happens.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import inspect

from websockets.sync.client import connect as ws_connect

# websockets 14+ wants a context manager unless told this is deliberate.
LEGACY = {"legacy": True} if "legacy" in inspect.signature(ws_connect).parameters else {}

READ_JS = """(() => {
  const text = (id) => document.getElementById(id).textContent;
  const cards = {};
  for (const el of document.querySelectorAll(".card .v")) cards[el.id] = el.textContent;
  const rows = (id) => Array.from(document.querySelectorAll(`#${id} tbody tr`),
    (tr) => Object.assign({}, tr.dataset, { cells: Array.from(tr.cells, (c) => c.textContent) }));
  return JSON.stringify({ status: text("status"), gate: text("gate"), cards,
                          shards: rows("shards"), nodes: rows("nodes"), closes: rows("closes") });
})()"""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--connections", type=int, required=True)
    ap.add_argument("--screenshot", required=True)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--timeout", type=float, default=20.0)
    a = ap.parse_args()
    end = time.monotonic() + a.timeout
    tmp = tempfile.mkdtemp(prefix="ringgate-dashboard-")
    proc = subprocess.Popen(
        [a.chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--no-proxy-server", "--disable-extensions",
         "--hide-scrollbars", "--window-size=1280,1000", f"--user-data-dir={tmp}",
         "--remote-debugging-port=0", "about:blank"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        return run(a, tmp, end)
    except Exception as e:  # noqa: BLE001 - reported, then non-zero
        print(f"FAIL {type(e).__name__}: {e}", flush=True)
        return 1
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def run(a, tmp: str, end: float) -> int:
    port_file = os.path.join(tmp, "DevToolsActivePort")
    while not (os.path.exists(port_file) and len(open(port_file).read().split("\n")) >= 2):
        if time.monotonic() > end:
            raise TimeoutError("no DevToolsActivePort from chromium")
        time.sleep(0.05)
    port, path = [x.strip() for x in open(port_file).read().split("\n")[:2]]
    ws = ws_connect(f"ws://127.0.0.1:{port}{path}", max_size=64 << 20, open_timeout=5, **LEGACY)
    next_id = [0]

    def call(method: str, params: dict | None = None, session: str | None = None) -> dict:
        next_id[0] += 1
        msg = {"id": next_id[0], "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        ws.send(json.dumps(msg))
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer to {method}")
            reply = json.loads(ws.recv(timeout=left))
            if reply.get("id") == next_id[0]:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    target = call("Target.createTarget", {"url": a.url})["targetId"]
    session = call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]

    def read() -> dict | None:
        r = call("Runtime.evaluate", {"expression": READ_JS, "returnByValue": True}, session)
        if "exceptionDetails" in r:
            return None
        return json.loads(r["result"]["value"])

    def number(text: str) -> float:
        try:
            return float(text.replace(",", ""))
        except ValueError:
            return -1.0

    seen = None
    while True:
        seen = read()
        if seen and seen["cards"].get("total-connections") == f"{a.connections:,}" \
                and number(seen["cards"].get("total-in-rate", "–")) > 0:
            break
        if time.monotonic() > end - 6:
            raise TimeoutError(f"the page never showed {a.connections} connections with "
                               f"traffic; last read: {seen}")
        time.sleep(0.1)
    time.sleep(3.2)  # a few frames of the chart, and rates over whole seconds
    seen = read()
    shot = call("Page.captureScreenshot", {"format": "png"}, session)
    with open(a.screenshot, "wb") as f:
        f.write(base64.b64decode(shot["data"]))
    print(json.dumps(seen), flush=True)
    ws.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
