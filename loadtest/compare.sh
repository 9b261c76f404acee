#!/usr/bin/env bash
# Compares ringgate (gate + echo node) with references on the same workload,
# in one run on one machine, interleaving the targets (A B C D A B C D …) and
# reporting medians.
#
#   loadtest/compare.sh                 # 3 rounds × {100, 1000} conns × 4 targets, 10 s each: ~7 min
#   ROUNDS=5 DURATION=20s CONNS="100 1000 5000" loadtest/compare.sh
#   IDLE=10000 loadtest/compare.sh      # also: RSS per idle connection
#   STORM=10000 loadtest/compare.sh     # also: a connection storm per target and round
#   TARGETS=ringgate ROUNDS=3 DURATION=5s GATE_SHARDS="buffer_count = 64" loadtest/compare.sh
#
# Targets (TARGETS picks a subset, in this order):
#   ringgate  client → gate → echo node → gate → client (two hops, batched link).
#   one-hop   ringgate-loadtest serve-echo --threads 2: a due-format echo server,
#             no gate in between (the ceiling for one hop; every ratio's base).
#   nginx     Debian's nginx, stream module, 2 workers: a plain TCP relay in front
#             of the same serve-echo (two hops, like the gate, but no decoding).
#             Installed with apt-get if missing; skipped if that is impossible.
#   glommio   loadtest/glommio-echo: the one-hop echo on glommio 0.9, the runtime
#             the design first named (DESIGN.md, "Runtime decision").
#
#   ringgate-b  (opt-in) a second gate on GATE_B_PORT with its own knobs, fed by
#             the same echo node: A/B-tests a config change inside one run.
#
# Gate config knobs for tuning runs (TOML lines, newline-separated):
#   GATE_SHARDS  lines under [shards]       e.g. "ring_entries = 256"
#   GATE_TCP     lines under [network.tcp]  e.g. "backlog = 128"
#   GATE_EXTRA   appended at the end        e.g. $'[link]\nmax_frame_bytes = "64KiB"'
#   GATE_B_SHARDS, GATE_B_TCP, GATE_B_EXTRA: the same for ringgate-b, e.g.
#   TARGETS="ringgate ringgate-b" GATE_B_SHARDS="buffer_count = 64" loadtest/compare.sh
#
# PREBUILT=DIR runs the binaries in DIR (ringgate, echo_node, ringgate-loadtest,
# ringgate-glommio-echo) instead of building: a saved build stays comparable
# while the tree changes.
#
# Every server listens on 127.0.0.1 only; the load generator connects only there.
# Results: one table on stdout, every run's JSON and $OUT/summary.json.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-"100 1000"}
DEPTH=${DEPTH:-1}
PAYLOAD=${PAYLOAD:-32}
IDLE=${IDLE:-0}
STORM=${STORM:-0}
STORM_RATE=${STORM_RATE:-0}
TARGETS=${TARGETS:-"ringgate one-hop nginx glommio"}
GATE_SHARDS=${GATE_SHARDS:-}
GATE_TCP=${GATE_TCP:-}
GATE_EXTRA=${GATE_EXTRA:-}
GATE_B_SHARDS=${GATE_B_SHARDS:-}
GATE_B_TCP=${GATE_B_TCP:-}
GATE_B_EXTRA=${GATE_B_EXTRA:-}
PREBUILT=${PREBUILT:-}
GATE_PORT=${GATE_PORT:-4553}
GATE_B_PORT=${GATE_B_PORT:-4558}
NODE_PORT=${NODE_PORT:-4600}
ECHO_PORT=${ECHO_PORT:-4555}
NGINX_PORT=${NGINX_PORT:-4556}
GLOMMIO_PORT=${GLOMMIO_PORT:-4557}
OUT=${OUT:-target/compare}

has() { [[ " $TARGETS " == *" $1 "* ]]; }
note() { echo "compare: $*" >&2; }
skipped=()
skip() { # target reason
  note "skipping $1: $2"
  skipped+=("$1: $2")
  TARGETS=" $TARGETS "
  TARGETS=${TARGETS/ $1 / }
}

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
rm -f "$OUT"/*.json "$OUT"/progress.log

# --- builds ---------------------------------------------------------------
if [ -n "$PREBUILT" ]; then
  GATE_BIN=$PREBUILT/ringgate NODE_BIN=$PREBUILT/echo_node
  LT=$PREBUILT/ringgate-loadtest GLOMMIO_BIN=$PREBUILT/ringgate-glommio-echo
  [ -x "$GLOMMIO_BIN" ] || ! has glommio || skip glommio "no $GLOMMIO_BIN"
else
  cargo build --release --quiet -p ringgate --bin ringgate --example echo_node
  cargo build --release --quiet -p ringgate-loadtest
  GATE_BIN=target/release/ringgate NODE_BIN=target/release/examples/echo_node
  LT=target/release/ringgate-loadtest
  GLOMMIO_BIN=target/glommio-echo/release/ringgate-glommio-echo
  if has glommio; then
    # A crate of its own (not in the workspace): glommio is built only here.
    if ! CARGO_TARGET_DIR=target/glommio-echo cargo build --release --quiet \
        --manifest-path loadtest/glommio-echo/Cargo.toml 2>"$OUT/glommio-build.log"; then
      skip glommio "build failed: $(grep -m1 '^error' "$OUT/glommio-build.log" || tail -1 "$OUT/glommio-build.log")"
    fi
  fi
fi

# --- nginx (Debian's, with the stream module) -----------------------------
NGINX_MODULE=/usr/lib/nginx/modules/ngx_stream_module.so
nginx_ready() {
  command -v nginx >/dev/null || return 1
  nginx -V 2>&1 | grep -q -- '--with-stream=dynamic' || return 0
  [ -e "$NGINX_MODULE" ]
}
if has nginx && ! nginx_ready; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
  if command -v apt-get >/dev/null; then
    note "installing nginx and libnginx-mod-stream with apt-get"
    pkgs=(nginx libnginx-mod-stream)
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y --no-install-recommends "${pkgs[@]}" >"$OUT/apt.log" 2>&1 ||
      { $SUDO apt-get update >>"$OUT/apt.log" 2>&1 &&
        $SUDO apt-get install -y --no-install-recommends "${pkgs[@]}" >>"$OUT/apt.log" 2>&1; } || true
  fi
  nginx_ready || skip nginx "nginx with the stream module is not installed and apt-get could not install it (see $OUT/apt.log)"
fi

# --- machine --------------------------------------------------------------
CPUS=$(nproc)
MODEL=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || echo unknown)
KERNEL=$(uname -r)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
echo "machine: $CPUS cpus, $MODEL, Linux $KERNEL; load average before: $LOAD_BEFORE"

for port in $GATE_PORT $GATE_B_PORT $NODE_PORT $ECHO_PORT $NGINX_PORT $GLOMMIO_PORT; do
  if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
    echo "compare: port $port is already in use on 127.0.0.1 (another compare.sh?)" >&2
    exit 1
  fi
done

# --- servers --------------------------------------------------------------
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

gate_toml() { # port shards tcp extra
  cat <<TOML
[shards]
$2
[network.tcp]
addr = "127.0.0.1:$1"
max_connections = 19000
max_outbound_bytes = "4MiB"
$3
[network.ws]
enabled = false
[log]
level = "warn"
[[nodes]]
addr = "127.0.0.1:$NODE_PORT"
$4
TOML
}
gate_pid="" gate_b_pid=""
if has ringgate || has ringgate-b; then
  $NODE_BIN --listen 127.0.0.1:$NODE_PORT >"$OUT/node.log" 2>&1 &
  pids+=($!)
  sleep 0.3
fi
if has ringgate; then
  gate_toml "$GATE_PORT" "$GATE_SHARDS" "$GATE_TCP" "$GATE_EXTRA" >"$OUT/gate.toml"
  $GATE_BIN -c "$OUT/gate.toml" >"$OUT/gate.log" 2>&1 &
  gate_pid=$!
  pids+=($gate_pid)
fi
if has ringgate-b; then
  gate_toml "$GATE_B_PORT" "$GATE_B_SHARDS" "$GATE_B_TCP" "$GATE_B_EXTRA" >"$OUT/gate-b.toml"
  $GATE_BIN -c "$OUT/gate-b.toml" >"$OUT/gate-b.log" 2>&1 &
  gate_b_pid=$!
  pids+=($gate_b_pid)
fi
# serve-echo: the one-hop target, and the upstream of nginx.
$LT serve-echo --listen 127.0.0.1:$ECHO_PORT --threads 2 >"$OUT/serve-echo.log" 2>&1 &
echo_pid=$!
pids+=($echo_pid)

nginx_pid=""
if has nginx; then
  {
    if nginx -V 2>&1 | grep -q -- '--with-stream=dynamic'; then echo "load_module $NGINX_MODULE;"; fi
    [ "$(id -u)" -ne 0 ] || echo "user root;"
    # Each relayed connection takes two descriptors; stay under the hard limit.
    nofile=$(ulimit -Hn)
    [ "$nofile" = unlimited ] && nofile=65536
    [ "$nofile" -le 65536 ] || nofile=65536
    cat <<NGINX
worker_processes 2;
worker_cpu_affinity auto;
worker_rlimit_nofile $nofile;
daemon off;
pid $OUT/nginx.pid;
error_log $OUT/nginx-error.log warn;
events {
    worker_connections $((nofile - 100));
}
stream {
    server {
        listen 127.0.0.1:$NGINX_PORT reuseport backlog=4096;
        proxy_pass 127.0.0.1:$ECHO_PORT;
    }
}
NGINX
  } >"$OUT/nginx.conf"
  nginx -p "$OUT" -e "$OUT/nginx-error.log" -c "$OUT/nginx.conf" >"$OUT/nginx.log" 2>&1 &
  nginx_pid=$!
  pids+=($nginx_pid)
fi

glommio_pid=""
if has glommio; then
  $GLOMMIO_BIN --listen 127.0.0.1:$GLOMMIO_PORT --threads 2 >"$OUT/glommio.log" 2>&1 &
  glommio_pid=$!
  pids+=($glommio_pid)
fi

declare -A ADDR=(
  [ringgate]=127.0.0.1:$GATE_PORT [ringgate-b]=127.0.0.1:$GATE_B_PORT [one-hop]=127.0.0.1:$ECHO_PORT
  [nginx]=127.0.0.1:$NGINX_PORT [glommio]=127.0.0.1:$GLOMMIO_PORT
)

# Wait until each target answers on route 1 (the gate: its node links are up).
answers() {
  $LT echo --addr "$1" --conns 1 --warmup 0s --duration 200ms --json 2>/dev/null |
    python3 -c 'import json,sys; r=json.load(sys.stdin); sys.exit(0 if r["requests"]>0 and r["errors"]==0 else 1)'
}
for t in $TARGETS; do
  ok=""
  for _ in $(seq 100); do
    if answers "${ADDR[$t]}"; then ok=1; break; fi
    sleep 0.1
  done
  [ -n "$ok" ] || skip "$t" "not answering on ${ADDR[$t]} after 10 s (logs in $OUT)"
done

run() { # target conns round
  $LT echo --addr "${ADDR[$1]}" --conns "$2" --depth "$DEPTH" --payload "$PAYLOAD" --warmup "$WARMUP" \
     --duration "$DURATION" --json 2>>"$OUT/progress.log" >"$OUT/$1-$2-$3.json" ||
    { note "run $1 $2 conns round $3 failed"; rm -f "$OUT/$1-$2-$3.json"; }
}
storm() { # target round
  $LT connect --addr "${ADDR[$1]}" --conns "$STORM" --rate "$STORM_RATE" --reset --json \
     2>>"$OUT/progress.log" >"$OUT/storm-$1-$2.json" ||
    { note "storm $1 round $2 failed"; rm -f "$OUT/storm-$1-$2.json"; }
}

for round in $(seq "$ROUNDS"); do
  for c in $CONNS; do
    for t in $TARGETS; do
      note "round $round/$ROUNDS, $c conns: $t"
      run "$t" "$c" "$round"
    done
  done
  if [ "$STORM" -gt 0 ]; then
    for t in $TARGETS; do
      note "round $round/$ROUNDS, storm of $STORM: $t"
      storm "$t" "$round"
      sleep 1
    done
  fi
done

if [ "$IDLE" -gt 0 ]; then
  declare -A PID=([ringgate]=$gate_pid [ringgate-b]=$gate_b_pid [one-hop]=$echo_pid [nginx]=$nginx_pid [glommio]=$glommio_pid)
  for t in $TARGETS; do
    [ "$t" != nginx ] || continue # a master and workers: one pid says little
    note "idle: $IDLE connections to $t"
    $LT idle --addr "${ADDR[$t]}" --conns "$IDLE" --hold 5s --heartbeat 5s --pid "${PID[$t]}" --json \
       2>>"$OUT/progress.log" >"$OUT/idle-$t.json" || note "idle $t failed"
  done
fi

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
printf '%s\n' "${skipped[@]}" >"$OUT/skipped.txt"
python3 - "$OUT" "$ROUNDS" "$CONNS" "$DEPTH" "$PAYLOAD" "$DURATION" "$TARGETS" "$STORM" \
  "$CPUS" "$MODEL" "$KERNEL" "$LOAD_BEFORE" "$LOAD_AFTER" <<'PY'
import json, os, statistics, sys
(out, rounds, conns, depth, payload, duration, targets, storm,
 cpus, model, kernel, load_before, load_after) = sys.argv[1:]
rounds, conns, targets, storm = int(rounds), conns.split(), targets.split(), int(storm)
skipped = [l for l in open(f"{out}/skipped.txt").read().splitlines() if l]

def load(pattern):
    rs = []
    for r in range(1, rounds + 1):
        p = f"{out}/{pattern}-{r}.json"
        if os.path.exists(p):
            rs.append(json.load(open(p)))
    return rs

def med(rs, f):
    return statistics.median(f(r) for r in rs) if rs else None

def ratio(a, b):
    return round(a / b, 2) if a is not None and b else None

def cell(v, fmt):
    return "-" if v is None else format(v, fmt)

rows = []
for c in conns:
    got = {t: load(f"{t}-{c}") for t in targets}
    rps = {t: med(rs, lambda r: r["rps"]) for t, rs in got.items()}
    for t in targets:
        rs = got[t]
        rows.append({
            "target": t, "conns": int(c), "runs": len(rs),
            "rps": rps[t] and round(rps[t]),
            "rps_min": round(min(r["rps"] for r in rs)) if rs else None,
            "rps_max": round(max(r["rps"] for r in rs)) if rs else None,
            "p50_us": med(rs, lambda r: r["latency_us"]["p50"]),
            "p99_us": med(rs, lambda r: r["latency_us"]["p99"]),
            "p999_us": med(rs, lambda r: r["latency_us"]["p999"]),
            "errors": sum(r["errors"] + r["mismatches"] + r["closed"] + r["failed"] + r["connect_failures"] for r in rs),
            "rps_vs_one_hop": ratio(rps[t], rps.get("one-hop")),
            "rps_vs_nginx": ratio(rps[t], rps.get("nginx")),
            "rps_vs_ringgate": ratio(rps[t], rps.get("ringgate")),
        })
ab = "ringgate-b" in targets

print(f"echo closed loop, depth {depth}, {payload} B payload, {duration} per run, "
      f"median of {rounds} interleaved rounds (rps min–max across rounds)")
print(f"{'target':<10} {'conns':>6} {'rps':>8} {'min–max':>15} {'p50 us':>7} {'p99 us':>7} "
      f"{'p99.9 us':>8} {'errors':>6} {'vs one-hop':>10} {'vs nginx':>8}" + (f" {'vs ringgate':>11}" if ab else ""))
for r in rows:
    span = "-" if r["rps_min"] is None else f"{r['rps_min']}–{r['rps_max']}"
    print(f"{r['target']:<10} {r['conns']:>6} {cell(r['rps'], '.0f'):>8} {span:>15} "
          f"{cell(r['p50_us'], '.0f'):>7} {cell(r['p99_us'], '.0f'):>7} {cell(r['p999_us'], '.0f'):>8} "
          f"{r['errors']:>6} {cell(r['rps_vs_one_hop'], '.2f'):>10} {cell(r['rps_vs_nginx'], '.2f'):>8}"
          + (f" {cell(r['rps_vs_ringgate'], '.2f'):>11}" if ab else ""))

storms = []
if storm:
    print(f"\nconnection storm: {storm} connections as fast as possible, one request each, "
          f"median of {rounds} rounds")
    print(f"{'target':<10} {'conn/s':>8} {'elapsed s':>9} {'failures':>8} {'connect p99 us':>14} "
          f"{'reply p50 us':>12} {'reply p99 us':>12} {'reply max us':>12}")
    for t in targets:
        rs = load(f"storm-{t}")
        s = {
            "target": t, "runs": len(rs),
            "connects_per_s": med(rs, lambda r: r["connects_per_s"]),
            "elapsed_s": med(rs, lambda r: r["elapsed_s"]),
            "failures": sum(r["failures"] for r in rs),
            "connect_p99_us": med(rs, lambda r: r["connect_us"]["p99"]),
            "reply_p50_us": med(rs, lambda r: r["first_reply_us"]["p50"]),
            "reply_p99_us": med(rs, lambda r: r["first_reply_us"]["p99"]),
            "reply_max_us": med(rs, lambda r: r["first_reply_us"]["max"]),
        }
        storms.append(s)
        print(f"{t:<10} {cell(s['connects_per_s'], '.0f'):>8} {cell(s['elapsed_s'], '.2f'):>9} "
              f"{s['failures']:>8} {cell(s['connect_p99_us'], '.0f'):>14} {cell(s['reply_p50_us'], '.0f'):>12} "
              f"{cell(s['reply_p99_us'], '.0f'):>12} {cell(s['reply_max_us'], '.0f'):>12}")

idle = {}
for t in targets:
    p = f"{out}/idle-{t}.json"
    if os.path.exists(p):
        r = json.load(open(p))
        idle[t] = {k: r.get(k) for k in ("conns", "closed", "rss_delta", "rss_per_conn", "rss_per_conn_end")}
        print(f"idle {t}: " + ", ".join(f"{k}={v}" for k, v in idle[t].items()))
for s in skipped:
    print(f"skipped {s}")
print(f"load average after: {load_after}")

summary = {
    "machine": {"cpus": int(cpus), "model": model, "kernel": kernel,
                "load_before": load_before, "load_after": load_after},
    "params": {"rounds": rounds, "duration": duration, "depth": int(depth), "payload": int(payload),
               "conns": [int(c) for c in conns], "targets": targets, "storm": storm},
    "echo": rows, "storm": storms, "idle": idle, "skipped": skipped,
}
with open(f"{out}/summary.json", "w") as f:
    json.dump(summary, f, indent=1)
print(f"summary: {out}/summary.json")
PY
