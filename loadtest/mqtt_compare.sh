#!/usr/bin/env bash
# MQTT through ringgate against due's packets through the same gate and
# node, and against Debian's mosquitto broker relaying publish → subscriber
# (each client subscribes to its own topic, so the broker echoes). Rounds
# interleave; medians are printed. Per target: closed-loop echo (requests/s,
# p99) at CONNS connections, then an open loop at RATE/s with the CPU time
# of the serving processes per message (from /proc/<pid>/stat).
#
#   ROUNDS=3 DURATION=5s CONNS=1000 RATE=20000 loadtest/mqtt_compare.sh
#
# Needs `mosquitto` (apt-get install mosquitto). Loopback only; stops what it starts.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s}
CONNS=${CONNS:-1000}
RATE=${RATE:-20000}
OUT=${OUT:-target/mqtt-compare}
LT=target/release/ringgate-loadtest
command -v mosquitto >/dev/null || { echo "mqtt_compare: install mosquitto (apt-get install mosquitto)" >&2; exit 1; }
cargo build --release --quiet -p ringgate --bin ringgate --example echo_node
cargo build --release --quiet -p ringgate-loadtest
rm -rf "$OUT" && mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

target/release/examples/echo_node --listen 127.0.0.1:4960 >"$OUT/node.log" 2>&1 &
NODE=$!; pids+=($NODE)
cat >"$OUT/gate.toml" <<TOML
[network.tcp]
addr = "127.0.0.1:4953"
max_connections = 19000
[network.ws]
enabled = false
[network.mqtt]
enabled = true
addr = "127.0.0.1:4963"
[log]
level = "warn"
[[nodes]]
addr = "127.0.0.1:4960"
TOML
target/release/ringgate -c "$OUT/gate.toml" >"$OUT/gate.log" 2>&1 &
GATE=$!; pids+=($GATE)
cat >"$OUT/mosquitto.conf" <<CONF
listener 4983 127.0.0.1
allow_anonymous true
max_connections -1
CONF
mosquitto -c "$OUT/mosquitto.conf" >"$OUT/mosquitto.log" 2>&1 &
BROKER=$!; pids+=($BROKER)
sleep 1

# name → loadtest transport arguments, and the pids whose CPU is counted
declare -A ARGS=(
  [due-tcp]="--transport tcp --addr 127.0.0.1:4953"
  [mqtt]="--transport mqtt --addr 127.0.0.1:4963"
  [mosquitto]="--transport mqtt --addr 127.0.0.1:4983 --mqtt-subscribe"
)
declare -A PIDS=([due-tcp]="$GATE $NODE" [mqtt]="$GATE $NODE" [mosquitto]="$BROKER")
cpu_ticks() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }

for round in $(seq "$ROUNDS"); do
  for t in due-tcp mqtt mosquitto; do
    echo "mqtt_compare: round $round/$ROUNDS $t" >&2
    # shellcheck disable=SC2086
    $LT echo ${ARGS[$t]} --conns "$CONNS" --payload 32 --warmup "$WARMUP" --duration "$DURATION" \
      --json >"$OUT/$t-echo-$round.json" 2>>"$OUT/progress.log"
    # shellcheck disable=SC2086
    t0=$(cpu_ticks ${PIDS[$t]})
    # shellcheck disable=SC2086
    $LT rate ${ARGS[$t]} --conns "$CONNS" --rate "$RATE" --payload 32 --warmup 0s \
      --duration "$DURATION" --json >"$OUT/$t-rate-$round.json" 2>>"$OUT/progress.log"
    # shellcheck disable=SC2086
    t1=$(cpu_ticks ${PIDS[$t]})
    echo "$((t1 - t0))" >"$OUT/$t-rate-$round.ticks"
  done
done

python3 - "$OUT" "$ROUNDS" "$(getconf CLK_TCK)" <<'PY'
import json, statistics, sys
out, rounds, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def load(t, k, r): return json.load(open(f"{out}/{t}-{k}-{r}.json"))
def lat(x, k): return x["latency_us"][k] if "latency_us" in x else x.get(k, 0)
print(f"{'target':10} {'echo rps':>10} {'(range)':>17} {'p99 us':>7} {'errors':>6} "
      f"{'rate rps':>9} {'rate p99':>8} {'CPU us/msg':>10}")
for t in ["due-tcp", "mqtt", "mosquitto"]:
    e = [load(t, "echo", r) for r in range(1, rounds + 1)]
    g = [load(t, "rate", r) for r in range(1, rounds + 1)]
    ticks = [int(open(f"{out}/{t}-rate-{r}.ticks").read()) for r in range(1, rounds + 1)]
    cpu = [k / hz * 1e6 / max(x["requests"], 1) for k, x in zip(ticks, g)]
    rps = [x["rps"] for x in e]
    print(f"{t:10} {statistics.median(rps):10.0f} {min(rps):8.0f}–{max(rps):<8.0f} "
          f"{statistics.median(lat(x, 'p99') for x in e):7.0f} "
          f"{sum(x.get('errors', 0) + x.get('mismatches', 0) for x in e):6d} "
          f"{statistics.median(x['rps'] for x in g):9.0f} "
          f"{statistics.median(lat(x, 'p99') for x in g):8.0f} {statistics.median(cpu):10.1f}")
print("(CPU: gate + echo node for due-tcp and mqtt; the broker alone for mosquitto)")
PY
