#!/usr/bin/env bash
# Tests of the Python node, run by scripts/test.sh (or alone, from anywhere):
#   1. setup.sh: the venv with the pinned packages, ringgate_pb2 generated from
#      proto/ringgate.proto;
#   2. unit tests (framing, session table, and the node against an in-process
#      fake gate: handshake, refusals, batching, frame limits, calls, gaps,
#      snapshots);
#   3. end to end (tests/e2e.py): the real gate binary, built here from the
#      workspace, in front of the Python echo and chat nodes, driven by the
#      due client of tests/clients; ringgate-loadtest node-check (the
#      conformance suite) against both nodes when the tree has it; kill -9
#      and restart of the chat node.
# Everything listens on 127.0.0.1 only, each stage is bounded in time, and
# e2e.py kills every process it started.
#
# Environment: RINGGATE_BIN (a ringgate binary to use instead of building
# one), RINGGATE_LOADTEST (a ringgate-loadtest with node-check, likewise),
# RINGGATE_NODE_VENV and PYTHON (see setup.sh).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="${RINGGATE_NODE_VENV:-$HERE/.venv}"
export RINGGATE_NODE_VENV="$VENV"
start=$SECONDS

# Debian's python3 creates venvs only with python3-venv installed.
if ! "${PYTHON:-python3}" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  fi
fi
"$HERE/setup.sh"

target_dir="$(cd "$REPO" && cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
if [ -z "${RINGGATE_BIN:-}" ]; then
  (cd "$REPO" && cargo build --release --bin ringgate)
  RINGGATE_BIN="$target_dir/release/ringgate"
fi
# The conformance suite (ringgate-loadtest node-check), when this tree has it.
if [ -z "${RINGGATE_LOADTEST:-}" ] && [ -d "$REPO/loadtest/src/node_check" ]; then
  (cd "$REPO" && cargo build --release -p ringgate-loadtest)
  RINGGATE_LOADTEST="$target_dir/release/ringgate-loadtest"
fi

echo "python_node: unit tests"
(cd "$HERE" && timeout 120 "$VENV/bin/python" -m unittest discover -s tests -t tests)

echo "python_node: end to end with $RINGGATE_BIN"
timeout -k 10 240 python3 "$HERE/tests/e2e.py" --gate "$RINGGATE_BIN" \
  --python "$VENV/bin/python" --timeout 180 ${RINGGATE_LOADTEST:+--node-check "$RINGGATE_LOADTEST"}

echo "python_node: all tests passed in $((SECONDS - start))s"
