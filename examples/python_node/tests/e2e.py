#!/usr/bin/env python3
"""End to end: real ringgate gates in front of the Python echo and chat nodes,
driven by real due-protocol clients (tests/clients/due_client.py).

    e2e.py --gate target/release/ringgate --python examples/python_node/.venv/bin/python

With --node-check, ringgate-loadtest's conformance suite also runs against
both nodes while the gates stay linked to them.

Two gates, `py-e2e-a` (2 shards, link frames of at most 8 KiB) and
`py-e2e-b` (1 shard), both dial both nodes: the echo node (route 10, frames
of at most 16 KiB) and the chat node (routes 1-6). Everything listens on
127.0.0.1, on free ports. The steps run in order (later ones build on the
sessions of earlier ones) and stop at the first failure; each prints PASS or
FAIL, the last line is "e2e: N passed, M failed". Every process started here
is killed at the end, whatever happens; the whole run is bounded by
--timeout (SIGALRM). Logs stay in a temporary directory, named on failure
and removed on success.

Standard library only (no protobuf here: the gate is the only peer of the nodes).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(REPO / "tests" / "clients"))
from due_client import ConnectionClosed, DueClient  # noqa: E402

ECHO_ROUTE = 10
LOGIN, JOIN, SAY, WHISPER, WHO, LOGOUT = 1, 2, 3, 4, 5, 6
ROOM_ROUTE, WHISPER_ROUTE = 100, 101
EXT_NODE_DOWN = 2
PATIENCE = 15.0  # seconds for anything that normally takes milliseconds


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def eventually(what, fn, within=PATIENCE):
    """Calls fn() until it returns a true value; fails after ``within`` seconds."""
    end = time.monotonic() + within
    last = None
    while True:
        try:
            last = fn()
            if last:
                return last
        except (OSError, ConnectionClosed) as e:
            last = e
        if time.monotonic() > end:
            raise Failure(f"timed out waiting for {what} (last: {last!r})")
        time.sleep(0.05)


class Proc:
    """A child process in its own session, output to a log file."""

    def __init__(self, name: str, argv: list[str], logdir: pathlib.Path, env=None):
        self.name = name
        self.argv = argv
        self.log = logdir / f"{name}.log"
        self.env = env
        self.p: subprocess.Popen | None = None

    def start(self):
        f = open(self.log, "ab")
        f.write(f"--- start {' '.join(self.argv)}\n".encode())
        f.flush()
        self.p = subprocess.Popen(self.argv, stdout=f, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True, env=self.env)
        f.close()
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_log(self, pattern: str, count: int = 1, within=PATIENCE):
        rx = re.compile(pattern)

        def seen():
            check(self.p.poll() is None, f"{self.name} exited ({self.p.returncode}); see {self.log}")
            return len(rx.findall(self.text())) >= count

        eventually(f"{count} x /{pattern}/ in {self.name}'s log", seen, within)

    def kill9(self):
        if self.p and self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGKILL)
            self.p.wait()

    def stop(self, within=5.0) -> int | None:
        """SIGTERM, then SIGKILL after ``within``; the exit status."""
        if not self.p:
            return None
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
                self.p.wait(within)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()
            except ProcessLookupError:
                pass
        return self.p.returncode


class Run:
    def __init__(self, args):
        self.args = args
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="ringgate-pynode-e2e-"))
        self.procs: list[Proc] = []
        self.clients: list[DueClient] = []
        self.echo_addr = f"127.0.0.1:{free_port()}"
        self.chat_addr = f"127.0.0.1:{free_port()}"
        self.gate_a = free_port()
        self.gate_b = free_port()
        self.seq = 0

    # -- processes --------------------------------------------------------------
    def node(self, name, *argv) -> Proc:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        p = Proc(name, [self.args.python, "-m", "ringgate_node", *argv], self.dir, env)
        self.procs.append(p)
        return p.start()

    def gate(self, name, port, shards, extra_link="") -> Proc:
        cfg = self.dir / f"{name}.toml"
        cfg.write_text(f"""
[gate]
id = "{name}"
[shards]
count = {shards}
buffer_count = 256
[network.tcp]
addr = "127.0.0.1:{port}"
[network.tcp.heartbeat]
interval = "60s"
[network.ws]
enabled = false
[link]
reconnect_min = "20ms"
reconnect_max = "200ms"
{extra_link}
[[nodes]]
addr = "{self.echo_addr}"
[[nodes]]
addr = "{self.chat_addr}"
""")
        p = Proc(name, [self.args.gate, "-c", str(cfg)], self.dir)
        self.procs.append(p)
        return p.start()

    def client(self, port) -> DueClient:
        c = DueClient("127.0.0.1", port, timeout=PATIENCE)
        self.clients.append(c)
        return c

    def cleanup(self):
        for c in self.clients:
            c.close()
        for p in reversed(self.procs):
            p.stop()

    # -- client helpers -----------------------------------------------------------
    def next_seq(self) -> int:
        self.seq = self.seq % 30000 + 1
        return self.seq

    def ask(self, c: DueClient, route: int, text: str) -> str:
        """A chat request; its reply text (ext 0, same route and seq)."""
        seq = self.next_seq()
        kind, ext, r, s, payload = c.request(route, seq, text.encode())
        check((ext, r, s) == (0, route, seq),
              f"route {route} {text!r}: reply ext={ext} route={r} seq={s} payload={payload!r}")
        return payload.decode()

    def who_is(self, c: DueClient, expected: str):
        eventually(f"who = {expected!r}", lambda: self.ask(c, WHO, "") == expected)


# -- the steps ------------------------------------------------------------------------

def step_start(run: Run):
    """Nodes and gates start; every gate shard links to both nodes."""
    run.echo = run.node("echo-node", "--listen", run.echo_addr, "--service", "echo",
                        "--route", str(ECHO_ROUTE), "--max-frame-bytes", "16KiB")
    run.chat = run.node("chat-node", "--listen", run.chat_addr, "--service", "chat")
    run.echo.wait_log("listening on")
    run.chat.wait_log("listening on")
    # Gate A writes frames of at most 8 KiB to the nodes and accepts at most
    # 8 KiB from them: pipelined replies of 4.9 KB must be split by the node.
    run.gate("py-e2e-a", run.gate_a, 2, 'max_frame_bytes = "8KiB"')
    run.gate("py-e2e-b", run.gate_b, 1)
    for node in (run.echo, run.chat):
        node.wait_log(r"link up: gate py-e2e-a shard 0/2")
        node.wait_log(r"link up: gate py-e2e-a shard 1/2")
        node.wait_log(r"link up: gate py-e2e-b shard 0/1")
    run.chat.wait_log(r"snapshot of gate py-e2e-a shard \d \(hello\)", 2)
    run.chat.wait_log(r"snapshot of gate py-e2e-b shard 0 \(hello\)")
    return "3 links per node; chat node got its hello snapshots"


def step_echo(run: Run):
    """Echo round trips on both gates, pipelined, big ones split by frame limits."""
    total = 0
    for port in (run.gate_a, run.gate_b):
        clients = [run.client(port) for _ in range(4)]
        for i, c in enumerate(clients):
            sizes = [0, 1, 7, 100, 1000, 4000, 4900] * 4
            reqs = [(seq, os.urandom(n)) for seq, n in enumerate(sizes, start=1)]
            # All in one write: the gate reads them together, delivers them in
            # batches below the echo node's 16 KiB, and the node's replies to a
            # read must be cut below gate A's 8 KiB.
            c.send_raw(b"".join(c.format.encode_data(ECHO_ROUTE, s, p) for s, p in reqs))
            want = dict(reqs)
            for _ in reqs:
                _, ext, r, s, payload = c.recv_data()
                check(ext == 0, f"echo: error reply ext={ext} for seq {s}")
                check(r == ECHO_ROUTE and want.pop(s, None) == payload,
                      f"echo: wrong reply route={r} seq={s} len={len(payload)}")
                total += 1
            check(not want, f"echo: no reply for seqs {sorted(want)}")
        for c in clients:
            c.close()
    checker = subprocess.run(
        [sys.executable, str(REPO / "tests" / "clients" / "check_gate.py"),
         "--addr", f"127.0.0.1:{run.gate_a}", "--scenario", "echo", "--scenario", "unknown-route",
         "--echo-route", str(ECHO_ROUTE), "--echo-conns", "4", "--echo-requests", "50"],
        capture_output=True, text=True, timeout=60)
    check(checker.returncode == 0, f"check_gate.py failed:\n{checker.stdout}{checker.stderr}")
    return f"{total} pipelined round trips (0..4900 bytes) on 2 gates; check_gate.py echo + unknown-route PASS"


def step_chat(run: Run):
    """Login (bind), rooms (subscribe/publish), whisper (push by uid), per gate."""
    c = run.client(run.gate_a)
    check(run.ask(c, JOIN, "lobby") == "error not logged in", "join before login")
    check(run.ask(c, LOGIN, "nobody").startswith("error "), "login with a bad id")
    c.close()
    run.u42, run.u7 = run.client(run.gate_a), run.client(run.gate_a)
    check(run.ask(run.u42, LOGIN, "42") == "ok 42", "login 42")
    check(run.ask(run.u7, LOGIN, "7") == "ok 7", "login 7")
    check(run.ask(run.u42, JOIN, "lobby") == "joined lobby", "42 joins")
    check(run.ask(run.u7, JOIN, "lobby") == "joined lobby", "7 joins")
    # say: the room message reaches both, the sender before its `sent`.
    seq = run.next_seq()
    run.u42.send(SAY, seq, b"hi all")
    got = run.u42.recv_data()
    check(got[1:] == (0, ROOM_ROUTE, 0, b"42@lobby: hi all"), f"say: sender got {got}")
    got = run.u42.recv_data()
    check(got[1:] == (0, SAY, seq, b"sent"), f"say: reply {got}")
    got = run.u7.recv_data()
    check(got[1:] == (0, ROOM_ROUTE, 0, b"42@lobby: hi all"), f"say: member got {got}")
    # whisper: a push by uid, wherever the user's session lives.
    check(run.ask(run.u42, WHISPER, "7 psst") == "delivered", "whisper to 7")
    got = run.u7.recv_data()
    check(got[1:] == (0, WHISPER_ROUTE, 0, b"42: psst"), f"whisper: 7 got {got}")
    check(run.ask(run.u42, WHISPER, "99 anyone") == "error offline", "whisper to nobody")
    # Gate B is another gate: user 7 there is not user 7 of gate A, 42 is unknown there.
    run.b7 = run.client(run.gate_b)
    check(run.ask(run.b7, LOGIN, "7") == "ok 7", "login 7 on gate B")
    check(run.ask(run.b7, WHISPER, "42 hello") == "error offline", "gate B knows no 42")
    return "login, join, say (room message before `sent`), whisper, offline, two gates apart"


def step_events(run: Run):
    """connect / bind / unbind / disconnect reach the node's session table (who)."""
    run.who_is(run.u42, "online 7,42; sessions 2")
    run.who_is(run.b7, "online 7; sessions 1")
    c = run.client(run.gate_a)
    run.who_is(run.u42, "online 7,42; sessions 3")  # connect
    check(run.ask(c, LOGIN, "5") == "ok 5", "login 5")
    run.who_is(run.u42, "online 5,7,42; sessions 3")  # bind
    check(run.ask(c, LOGOUT, "") == "bye 5", "logout 5")
    run.who_is(run.u42, "online 7,42; sessions 3")  # unbind
    c.close()
    run.who_is(run.u42, "online 7,42; sessions 2")  # disconnect
    # rebind = "kick": a second login as 7 on gate B closes the first session.
    b7b = run.client(run.gate_b)
    check(run.ask(b7b, LOGIN, "7") == "ok 7", "second login as 7 on gate B")
    try:
        run.b7.recv(timeout=PATIENCE)
        closed = False
    except ConnectionClosed:
        closed = True
    check(closed, "the first session of user 7 on gate B is closed by the rebind")
    run.who_is(b7b, "online 7; sessions 1")
    run.b7 = b7b
    log = run.chat.text()
    for what in ("chat: connect", "chat: bind", "chat: unbind", "chat: disconnect session=.* reason=rebind"):
        check(re.search(what, log), f"the chat node logged no {what!r}")
    return "who follows connect, bind, unbind, disconnect; rebind kick seen as disconnect reason=rebind"


class Skip(Exception):
    pass


def step_conformance(run: Run):
    """ringgate-loadtest node-check plays one more gate against both live nodes
    (while gates A and B stay linked); the real gates still work after it."""
    if not run.args.node_check:
        raise Skip("no ringgate-loadtest with node-check given (--node-check)")
    rows = []
    for name, addr in (("echo", run.echo_addr), ("chat", run.chat_addr)):
        r = subprocess.run([run.args.node_check, "node-check", "--node", addr],
                           capture_output=True, text=True, timeout=120)
        (run.dir / f"node-check-{name}.txt").write_text(r.stdout + r.stderr)
        check(r.returncode == 0, f"node-check against the {name} node failed:\n{r.stdout}{r.stderr}")
        summary = [l for l in r.stdout.splitlines() if re.match(r"\d+ passed, \d+ failed", l)]
        rows.append(f"{name}: {summary[-1] if summary else r.stdout.strip().splitlines()[-1]}")
    # The checker's garbage and oversized frames closed its own links only.
    run.who_is(run.u42, "online 7,42; sessions 2")
    c = run.client(run.gate_b)
    got = c.request(ECHO_ROUTE, 1, b"after node-check")
    check(got[1:] == (0, ECHO_ROUTE, 1, b"after node-check"), f"echo after node-check: {got}")
    c.close()
    return "; ".join(rows) + "; gates A and B unaffected"


def step_restart(run: Run):
    """kill -9 the chat node; sessions change while it is down; a new process
    learns every live session (uids, rooms) from the hello snapshots."""
    run.chat.kill9()
    # The gate answers a chat request itself now: NODE_DOWN.
    seq = run.next_seq()
    got = run.u42.request(WHO, seq, b"", timeout=PATIENCE)
    check(got[1:4] == (EXT_NODE_DOWN, WHO, seq) and got[4] == b"",
          f"request while the chat node is down: {got}")
    # While it is down: 7 leaves gate A (a disconnect the node never sees),
    # a new session arrives (a connect it never sees).
    run.u7.close()
    newcomer = run.client(run.gate_a)
    time.sleep(0.3)  # let the gate process both before the node comes back
    run.chat = run.node("chat-node-2", "--listen", run.chat_addr, "--service", "chat")
    run.chat.wait_log("listening on")
    run.chat.wait_log(r"snapshot of gate py-e2e-a shard \d \(hello\)", 2)
    run.chat.wait_log(r"snapshot of gate py-e2e-b shard 0 \(hello\)")
    # Only a snapshot can tell this process about 42, the newcomer and B's 7.
    run.who_is(run.u42, "online 42; sessions 2")
    run.who_is(run.b7, "online 7; sessions 1")
    # ... and about 42's rooms (kept in the session settings the snapshot carries).
    seq = run.next_seq()
    run.u42.send(SAY, seq, b"still here")
    got = run.u42.recv_data()
    check(got[1:] == (0, ROOM_ROUTE, 0, b"42@lobby: still here"), f"say after restart: {got}")
    got = run.u42.recv_data()
    check(got[1:] == (0, SAY, seq, b"sent"), f"say after restart: reply {got}")
    newcomer.close()
    run.who_is(run.u42, "online 42; sessions 1")  # events flow again after the snapshot
    return "NODE_DOWN while down; after restart who/rooms rebuilt from snapshots, events resume"


def step_stop(run: Run):
    """SIGTERM stops the nodes cleanly (exit 0)."""
    for p in (run.echo, run.chat):
        status = p.stop()
        check(status == 0, f"{p.name} exited with {status} on SIGTERM; see {p.log}")
    return "both nodes exit 0 on SIGTERM"


STEPS = [step_start, step_echo, step_chat, step_events, step_conformance, step_restart, step_stop]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gate", required=True, help="the ringgate binary")
    ap.add_argument("--python", required=True, help="the venv python that runs ringgate_node")
    ap.add_argument("--node-check", default=None,
                    help="a ringgate-loadtest binary with the node-check command (else that step is skipped)")
    ap.add_argument("--timeout", type=int, default=180, help="seconds for the whole run")
    args = ap.parse_args()

    run = Run(args)

    def on_alarm(*_):
        raise Failure(f"the whole run took over {args.timeout}s")

    def on_term(signum, _):
        raise Failure(f"stopped by signal {signum}")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, on_term)
    signal.alarm(args.timeout)
    passed = failed = skipped = 0
    start = time.monotonic()
    try:
        for step in STEPS:
            t0 = time.monotonic()
            try:
                detail = step(run)
            except Skip as e:
                skipped += 1
                print(f"SKIP {step.__name__[5:]}: {e}", flush=True)
                continue
            except Exception as e:
                failed += 1
                print(f"FAIL {step.__name__[5:]}: {e}", flush=True)
                if not isinstance(e, Failure):
                    traceback.print_exc()
                break
            passed += 1
            print(f"PASS {step.__name__[5:]} ({time.monotonic() - t0:.1f}s): {detail}", flush=True)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # nothing interrupts the clean-up
        run.cleanup()
    complete = not failed and passed + skipped == len(STEPS)
    if not complete:
        print(f"logs kept in {run.dir}:", flush=True)
        for p in run.procs:
            tail = p.text().splitlines()[-15:]
            print(f"--- {p.log.name} (last {len(tail)} lines)\n" + "\n".join(tail), flush=True)
    else:
        shutil.rmtree(run.dir, ignore_errors=True)
    print(f"e2e took {time.monotonic() - start:.1f}s", flush=True)
    print(f"e2e: {passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""),
          flush=True)
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
