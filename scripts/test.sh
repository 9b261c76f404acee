#!/usr/bin/env bash
# Runs ringgate's whole test suite: unit, property and integration tests of
# every workspace member, including the independent Python due client.
# Installs what the tests need first (idempotent), so it works on a fresh clone.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the tests need beyond Rust: python3 (stdlib only, for tests/clients).
if ! command -v python3 >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq python3 >/dev/null
fi

# The integration tests open thousands of sockets.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# Tests that measure nothing but correctness still move 10k+ packets; an
# optimised build keeps the suite well inside CI's budget on 2 cores.
cargo test --workspace --release --all-targets "$@"
