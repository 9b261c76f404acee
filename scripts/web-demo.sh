#!/usr/bin/env bash
# The browser chat demo: builds ringgate, starts the chat node (127.0.0.1:3600),
# the gate (TCP :3553, WebSocket :3554, MQTT :3563 and MQTT over WebSocket on
# :3554/mqtt) and a static server for examples/web on http://127.0.0.1:8080/ .
# Open that page, log in as 42 in one tab and 43 in another, join a room and
# talk; or pick MQTT and publish to Chat/HD_Login/1, Chat/HD_Join/2, ...
# Arguments go to the gate (e.g. -c FILE for another config). Ctrl-C stops
# everything.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin ringgate --example chat_node
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT INT TERM
target/release/examples/chat_node &
pids+=($!)
python3 -m http.server 8080 --bind 127.0.0.1 --directory examples/web >/dev/null 2>&1 &
pids+=($!)
echo "open http://127.0.0.1:8080/ (gate ws://127.0.0.1:3554/, MQTT ws://127.0.0.1:3554/mqtt)"
if [ $# -eq 0 ]; then
  # The defaults, with MQTT clients served too.
  config=$(mktemp --suffix=.toml)
  trap 'kill "${pids[@]}" 2>/dev/null || true; rm -f "$config"' EXIT INT TERM
  printf '[network.mqtt]\nenabled = true\n' >"$config"
  set -- -c "$config"
fi
target/release/ringgate "$@"
