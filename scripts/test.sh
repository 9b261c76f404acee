#!/usr/bin/env bash
# Runs ringgate's whole test suite: style checks (rustfmt, clippy), then unit,
# property and integration tests of every workspace member, including the
# independent Python due client.
# Installs what the tests need first (idempotent), so it works on a fresh clone.
set -euo pipefail
cd "$(dirname "$0")/.."

# Style first, so a formatting slip or a lint fails the suite before anything
# is installed or built for the tests: `cargo fmt` clean and `cargo clippy
# -D warnings` clean are part of passing (STYLE.md, workspace hygiene).
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add rustfmt clippy
fi
if ! cargo fmt --all -- --check; then
  echo "scripts/test.sh: FAILED: the code is not formatted as rustfmt formats it" \
    "(diff above). Run 'cargo fmt --all' and commit the result." >&2
  exit 1
fi
if ! cargo clippy --workspace --all-targets -- -D warnings; then
  echo "scripts/test.sh: FAILED: clippy reported warnings, which the suite denies" \
    "(above). Fix them; 'cargo clippy --workspace --all-targets -- -D warnings'" \
    "shows them again." >&2
  exit 1
fi

# What the tests need beyond Rust (each step is skipped when already there):
# - python3 for tests/clients (due_client.py and check_gate.py: stdlib only);
# - the `websockets` package, pinned, for tests/clients/ws_check.py (the third-party
#   WebSocket client) and browser_check.py (its DevTools protocol connection);
# - Debian's chromium, the real browser tests/websocket.rs drives headless.
WEBSOCKETS_VERSION=17.4
apt_updated=
apt_install() {
  if [ -z "$apt_updated" ]; then
    apt-get update -qq >/dev/null
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
if ! command -v python3 >/dev/null 2>&1; then
  apt_install python3
fi
if ! python3 -c "import sys, websockets.sync.client, websockets as w; sys.exit(w.__version__ != '$WEBSOCKETS_VERSION')" >/dev/null 2>&1; then
  if ! python3 -m pip --version >/dev/null 2>&1; then
    apt_install python3-pip
  fi
  # Debian's own python3 is "externally managed" (PEP 668): allow pip to add to it.
  PIP_BREAK_SYSTEM_PACKAGES=1 PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
    python3 -m pip install --quiet "websockets==$WEBSOCKETS_VERSION"
fi
if [ ! -x /usr/bin/chromium ]; then
  apt_install chromium
fi
# The Python node (examples/python_node) builds a venv: Debian's python3
# needs python3-venv for it (installed here, with the one apt-get update).
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  apt_install python3-venv
fi
# MQTT's third-party clients (tests/mqtt): Debian's mosquitto-clients, PyPI's
# paho-mqtt and npm's mqtt (MQTT.js), pinned; MQTT.js goes into
# tests/clients/node_modules (git-ignored). A machine with another node
# (NodeSource's, npm bundled) keeps it: Debian's npm would conflict.
PAHO_VERSION=2.1.0
MQTTJS_VERSION=5.10.4
if ! command -v mosquitto_pub >/dev/null 2>&1; then
  apt_install mosquitto-clients
fi
if ! python3 -c "import sys, paho.mqtt as p; sys.exit(p.__version__ != '$PAHO_VERSION')" >/dev/null 2>&1; then
  if ! python3 -m pip --version >/dev/null 2>&1; then
    apt_install python3-pip
  fi
  PIP_BREAK_SYSTEM_PACKAGES=1 PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
    python3 -m pip install --quiet "paho-mqtt==$PAHO_VERSION"
fi
# The fleet tests start real etcd (v3 API, JSON gateway) and Redis servers
# on loopback ports of their own.
command -v etcd >/dev/null 2>&1 || apt_install etcd-server
command -v redis-server >/dev/null 2>&1 || apt_install redis-server
# tests/admin.rs scrapes the admin port with a real Prometheus.
command -v prometheus >/dev/null 2>&1 || apt_install prometheus
command -v node >/dev/null 2>&1 || apt_install nodejs
command -v npm >/dev/null 2>&1 || apt_install npm
if ! node -e "process.exit(require('./tests/clients/node_modules/mqtt/package.json').version === '$MQTTJS_VERSION' ? 0 : 1)" >/dev/null 2>&1; then
  npm install --silent --prefix tests/clients --no-save --no-package-lock "mqtt@$MQTTJS_VERSION"
fi

# The integration tests open thousands of sockets.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# Tests that measure nothing but correctness still move 10k+ packets; an
# optimised build keeps the suite well inside CI's budget on 2 cores.
# tests/binary.rs runs the real `ringgate` binary and examples/echo_node as a user
# would; `cargo test` alone builds examples only as test harnesses.
cargo build --release --bins --examples
# The second-language node (examples/python_node): its own venv and generated
# protobuf module, unit tests, then end to end behind real gates, with the
# conformance suite (ringgate-loadtest node-check) run against it.
examples/python_node/test.sh
cargo test --workspace --release --all-targets --no-fail-fast "$@"
