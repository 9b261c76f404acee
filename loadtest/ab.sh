#!/usr/bin/env bash
# A/B of two ringgate builds in one run on one machine: is a change a
# regression? Both gates serve the same echo node; rounds interleave A B A B.
#
#   A=/work/before/target/release B=target/release loadtest/ab.sh
#   ROUNDS=5 DURATION=10s CONNS=1000 RATE=20000 loadtest/ab.sh
#
# A and B are directories holding a `ringgate` binary (B defaults to this
# tree's release build; the echo node and load generator always come from
# this tree). Per round and build it measures:
#   echo   closed loop, CONNS connections, depth 1, ECHO_SHARDS shards
#          (1: the box is shared with node and load, as compare.sh does)
#          → requests/s
#   rate   open loop at RATE requests/s over CONNS connections, RATE_SHARDS
#          shards (2: the default config) → p50/p99 and the gate's CPU time
#          (user+system from /proc/<pid>/stat) per round trip
# and prints medians with B/A ratios. IDLE=10000 also holds that many idle
# connections to each build's echo gate and reports RSS per connection.
# NODE_ARGS_A / NODE_ARGS_B give each build its own echo node with these
# arguments (e.g. NODE_ARGS_A=--notify compares a route the gate does not
# track against one it tracks, with one gate binary: A=B=target/release).
# Listens and connects on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

A=${A:?set A to the directory of the baseline ringgate binary}
B=${B:-target/release}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-6s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-1000}
RATE=${RATE:-20000}
ECHO_SHARDS=${ECHO_SHARDS:-1}
RATE_SHARDS=${RATE_SHARDS:-2}
NODE_PORT=${NODE_PORT:-4700}
IDLE=${IDLE:-0}
OUT=${OUT:-target/ab}
LT=target/release/ringgate-loadtest
NODE=target/release/examples/echo_node

cargo build --release --quiet -p ringgate --example echo_node
cargo build --release --quiet -p ringgate-loadtest
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

# shellcheck disable=SC2086 # the node arguments are words
$NODE --listen 127.0.0.1:$NODE_PORT ${NODE_ARGS_A:-} >"$OUT/node-A.log" 2>&1 &
pids+=($!)
NODE_PORT_B=$NODE_PORT
if [ "${NODE_ARGS_A:-}" != "${NODE_ARGS_B:-}" ]; then
  NODE_PORT_B=$((NODE_PORT + 10))
  # shellcheck disable=SC2086
  $NODE --listen 127.0.0.1:$NODE_PORT_B ${NODE_ARGS_B:-} >"$OUT/node-B.log" 2>&1 &
  pids+=($!)
fi
sleep 0.3

declare -A PORT PID
start_gate() { # name bin shards port
  local node_port=$NODE_PORT
  [ "${1%%-*}" = B ] && node_port=$NODE_PORT_B
  cat >"$OUT/$1.toml" <<TOML
[shards]
count = $3
[network.tcp]
addr = "127.0.0.1:$4"
max_connections = 19000
max_outbound_bytes = "4MiB"
[network.ws]
enabled = false
[log]
level = "warn"
[[nodes]]
addr = "127.0.0.1:$node_port"
TOML
  "$2/ringgate" -c "$OUT/$1.toml" >"$OUT/$1.log" 2>&1 &
  PID[$1]=$! PORT[$1]=$4
  pids+=($!)
}
start_gate A-echo "$A" "$ECHO_SHARDS" 4701
start_gate B-echo "$B" "$ECHO_SHARDS" 4702
start_gate A-rate "$A" "$RATE_SHARDS" 4703
start_gate B-rate "$B" "$RATE_SHARDS" 4704
for g in "${!PORT[@]}"; do
  ok=""
  for _ in $(seq 100); do
    if $LT echo --addr 127.0.0.1:${PORT[$g]} --conns 1 --warmup 0s --duration 200ms --json 2>/dev/null |
      python3 -c 'import json,sys; r=json.load(sys.stdin); sys.exit(0 if r["requests"]>0 and r["errors"]==0 else 1)'; then
      ok=1
      break
    fi
    sleep 0.1
  done
  [ -n "$ok" ] || { echo "ab: gate $g not answering on ${PORT[$g]} (see $OUT/$g.log)" >&2; exit 1; }
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
for round in $(seq "$ROUNDS"); do
  for v in A B; do
    echo "ab: round $round/$ROUNDS $v" >&2
    $LT echo --addr 127.0.0.1:${PORT[$v-echo]} --conns "$CONNS" --payload 32 --warmup "$WARMUP" \
      --duration "$DURATION" --json >"$OUT/$v-echo-$round.json" 2>>"$OUT/progress.log"
    pid=${PID[$v-rate]}
    $LT rate --addr 127.0.0.1:${PORT[$v-rate]} --conns "$CONNS" --rate "$RATE" --payload 32 \
      --warmup "$WARMUP" --duration 1ms --json >/dev/null 2>>"$OUT/progress.log"
    t0=$(cpu_ticks "$pid")
    $LT rate --addr 127.0.0.1:${PORT[$v-rate]} --conns "$CONNS" --rate "$RATE" --payload 32 \
      --warmup 0s --duration "$DURATION" --json >"$OUT/$v-rate-$round.json" 2>>"$OUT/progress.log"
    t1=$(cpu_ticks "$pid")
    echo "$((t1 - t0))" >"$OUT/$v-rate-$round.ticks"
  done
done

if [ "$IDLE" != 0 ]; then
  for v in A B; do
    echo "ab: idle $v: $IDLE connections" >&2
    $LT idle --addr 127.0.0.1:${PORT[$v-echo]} --conns "$IDLE" --hold 5s --heartbeat 5s \
      --pid "${PID[$v-echo]}" --json >"$OUT/$v-idle.json" 2>>"$OUT/progress.log"
  done
fi

python3 - "$OUT" "$ROUNDS" "$(getconf CLK_TCK)" <<'PY'
import json, statistics, sys
out, rounds, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def load(v, kind, r): return json.load(open(f"{out}/{v}-{kind}-{r}.json"))
res = {}
for v in "AB":
    echo = [load(v, "echo", r) for r in range(1, rounds + 1)]
    rate = [load(v, "rate", r) for r in range(1, rounds + 1)]
    ticks = [int(open(f"{out}/{v}-rate-{r}.ticks").read()) for r in range(1, rounds + 1)]
    cpu_us = [t / hz * 1e6 / max(x["requests"], 1) for t, x in zip(ticks, rate)]
    lat = lambda x, k: x["latency_us"][k] if "latency_us" in x else x.get(k, 0)
    res[v] = {
        "echo_rps": statistics.median(x["rps"] for x in echo),
        "rate_rps": statistics.median(x["rps"] for x in rate),
        "rate_p50_us": statistics.median(lat(x, "p50") for x in rate),
        "rate_p99_us": statistics.median(lat(x, "p99") for x in rate),
        "gate_cpu_us_per_rt": statistics.median(cpu_us),
    }
print(f"{'metric':24} {'A':>12} {'B':>12} {'B/A':>7}")
for k in res["A"]:
    a, b = res["A"][k], res["B"][k]
    print(f"{k:24} {a:12.1f} {b:12.1f} {b / a if a else 0:7.3f}")
import os
for v in "AB":
    p = f"{out}/{v}-idle.json"
    if os.path.exists(p):
        r = json.load(open(p))
        res[v]["idle_rss_per_conn"] = r.get("rss_per_conn")
        print(f"idle {v}: conns={r.get('conns')} closed={r.get('closed')} rss_per_conn={r.get('rss_per_conn')} B")
json.dump(res, open(f"{out}/summary.json", "w"), indent=1)
PY
