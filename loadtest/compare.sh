#!/usr/bin/env bash
# Compares ringgate (gate + echo node) with references on the same workload,
# in one run on one machine, interleaving A B A B and reporting medians.
#
#   loadtest/compare.sh                 # 3 rounds × {100, 1000} conns, 10 s each
#   ROUNDS=5 DURATION=20s CONNS="100 1000 5000" loadtest/compare.sh
#   IDLE=10000 loadtest/compare.sh      # also: RSS per idle connection
#
# References:
#   one-hop  ringgate-loadtest serve-echo: a due-format echo server, no gate in
#            between (the ceiling for one hop), on the same cores as the gate.
# Every server listens on 127.0.0.1 only; the load generator connects only there.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-"100 1000"}
DEPTH=${DEPTH:-1}
PAYLOAD=${PAYLOAD:-32}
IDLE=${IDLE:-0}
GATE_PORT=${GATE_PORT:-4553}
NODE_PORT=${NODE_PORT:-4600}
ECHO_PORT=${ECHO_PORT:-4555}
OUT=${OUT:-target/compare}

cargo build --release --quiet -p ringgate --bin ringgate --example echo_node
cargo build --release --quiet -p ringgate-loadtest
BIN=target/release
LT=$BIN/ringgate-loadtest
mkdir -p "$OUT"
rm -f "$OUT"/*.json

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

cat > "$OUT/gate.toml" <<TOML
[network.tcp]
addr = "127.0.0.1:$GATE_PORT"
max_connections = 19000
max_outbound_bytes = "4MiB"
[log]
level = "warn"
[[nodes]]
addr = "127.0.0.1:$NODE_PORT"
TOML

$BIN/examples/echo_node --listen 127.0.0.1:$NODE_PORT >"$OUT/node.log" 2>&1 &
pids+=($!)
sleep 0.3
$BIN/ringgate -c "$OUT/gate.toml" >"$OUT/gate.log" 2>&1 &
gate_pid=$!
pids+=($gate_pid)
$LT serve-echo --listen 127.0.0.1:$ECHO_PORT --threads 2 >"$OUT/serve-echo.log" 2>&1 &
echo_pid=$!
pids+=($echo_pid)
# Wait until the gate answers on route 1 (its node links are up).
for _ in $(seq 100); do
  if $LT echo --addr 127.0.0.1:$GATE_PORT --conns 1 --warmup 0s --duration 200ms --json 2>/dev/null \
      | python3 -c 'import json,sys; r=json.load(sys.stdin); sys.exit(0 if r["requests"]>0 and r["errors"]==0 else 1)'; then
    break
  fi
  sleep 0.1
done

run() { # name addr conns round
  $LT echo --addr "$2" --conns "$3" --depth "$DEPTH" --payload "$PAYLOAD" --warmup "$WARMUP" \
     --duration "$DURATION" --json 2>>"$OUT/progress.log" >"$OUT/$1-$3-$4.json"
}

for round in $(seq "$ROUNDS"); do
  for c in $CONNS; do
    echo "round $round/$ROUNDS, $c conns: ringgate" >&2
    run ringgate 127.0.0.1:$GATE_PORT "$c" "$round"
    echo "round $round/$ROUNDS, $c conns: one-hop" >&2
    run one-hop 127.0.0.1:$ECHO_PORT "$c" "$round"
  done
done

if [ "$IDLE" -gt 0 ]; then
  echo "idle: $IDLE connections to the gate, then to serve-echo" >&2
  $LT idle --addr 127.0.0.1:$GATE_PORT --conns "$IDLE" --hold 5s --heartbeat 5s --pid $gate_pid --json \
     2>>"$OUT/progress.log" >"$OUT/idle-ringgate.json"
  $LT idle --addr 127.0.0.1:$ECHO_PORT --conns "$IDLE" --hold 5s --heartbeat 5s --pid $echo_pid --json \
     2>>"$OUT/progress.log" >"$OUT/idle-one-hop.json"
fi

python3 - "$OUT" "$ROUNDS" "$CONNS" "$DEPTH" "$PAYLOAD" "$DURATION" <<'PY'
import json, os, statistics, sys
out, rounds, conns, depth, payload, duration = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), *sys.argv[4:]
def load(name, c):
    rs = []
    for r in range(1, rounds + 1):
        p = f"{out}/{name}-{c}-{r}.json"
        if os.path.exists(p):
            rs.append(json.load(open(p)))
    return rs
def med(rs, f):
    return statistics.median(f(r) for r in rs) if rs else float("nan")
print(f"echo closed loop, depth {depth}, {payload} B payload, {duration} per run, median of {rounds} interleaved runs")
print(f"{'target':<10} {'conns':>6} {'rps':>10} {'p50 us':>8} {'p99 us':>8} {'p99.9 us':>9} {'errors':>7} {'rps vs one-hop':>15}")
for c in conns:
    base = load("one-hop", c)
    for name in ("ringgate", "one-hop"):
        rs = load(name, c)
        rps = med(rs, lambda r: r["rps"])
        ratio = rps / med(base, lambda r: r["rps"])
        errs = sum(r["errors"] + r["mismatches"] + r["closed"] for r in rs)
        print(f"{name:<10} {c:>6} {rps:>10.0f} {med(rs, lambda r: r['latency_us']['p50']):>8.0f} "
              f"{med(rs, lambda r: r['latency_us']['p99']):>8.0f} {med(rs, lambda r: r['latency_us']['p999']):>9.0f} "
              f"{errs:>7} {ratio:>15.2f}")
for name in ("ringgate", "one-hop"):
    p = f"{out}/idle-{name}.json"
    if os.path.exists(p):
        r = json.load(open(p))
        print(f"idle {name}: " + ", ".join(f"{k}={v}" for k, v in r.items() if "rss" in k or k in ("conns", "closed", "heartbeats_answered")))
PY
