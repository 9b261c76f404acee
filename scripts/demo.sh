#!/usr/bin/env bash
# Builds ringgate and starts the echo node and the gate on the embedded default
# config (clients on 0.0.0.0:3553, node on 127.0.0.1:3600). Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin ringgate --example echo_node
target/release/examples/echo_node &
node=$!
trap 'kill $node 2>/dev/null || true' EXIT INT TERM
target/release/ringgate "$@"
