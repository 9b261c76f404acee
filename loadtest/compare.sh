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
#   NODE_UNIX=1 / GATE_B_NODE_UNIX=1: that gate dials the echo node over its
#                Unix socket (`[[nodes]] unix`) instead of loopback TCP
#
# Opt-in sections (off by default; both need the ringgate target):
#   PUSH=1  the gate also dials the load generator's own node (LT_NODE_PORT,
#           4601), then per round: `push --conns PUSH_CONNS(1000) --rate 0`
#           (pushes by uid, both shards) and `broadcast --conns BCAST_CONNS(10000)
#           --interval BCAST_INTERVAL(200ms)`; prints pushes/s, deliveries/s, losses
#           and latencies (median of the rounds).
#   WS=1    the gate also serves WebSocket on WS_PORT (4554), a second gate serves
#           wss on WSS_PORT (4559; its tcp on WSS_TCP_PORT, 4551) with a self-signed
#           certificate made by openssl in $OUT; per round: echo at WS_CONNS(1000)
#           conns over tcp, ws and wss interleaved, and `connect --conns
#           WS_STORM(2000)` over ws and wss; prints rps, p99 and ratios vs tcp,
#           and handshakes/s.
#   ECHO=0 skips the main echo rounds: PUSH=1 WS=1 ECHO=0 TARGETS=ringgate loadtest/compare.sh
#   CPU=1   per round and target, an open-loop `rate --rate CPU_RATE(20000) --conns
#           CPU_CONNS(1000)` with `--cpu-pid` on the target's processes: prints
#           the CPU time per round trip of each (gate, node; echo; nginx
#           workers + their upstream echo), medians and ranges, and the ratio
#           of the gate's (nginx's) to the one-hop echo's. CPU time per
#           message is far steadier than throughput on a shared box.
#           CPU=1 ECHO=0 TARGETS="ringgate one-hop nginx" loadtest/compare.sh
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
DURATION=${DURATION:-6s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-"100 1000"}
DEPTH=${DEPTH:-1}
PAYLOAD=${PAYLOAD:-32}
IDLE=${IDLE:-0}
STORM=${STORM:-0}
STORM_RATE=${STORM_RATE:-0}
TARGETS=${TARGETS:-"ringgate one-hop nginx glommio"}
GATE_SHARDS=${GATE_SHARDS:-}
# Shards of the gates under test. The echo node runs on the same machine and
# each shard brings one busy node-link reader, so half the cores as shards
# gives ringgate as many busy threads as each reference gets (serve-echo,
# nginx and glommio run one thread/worker/executor per core). On a 2-core box:
# 1 shard (measured 1.3-1.6x the rps of 2 shards there; docs/tuning.md).
# A `count` or `cores` in GATE_SHARDS / GATE_B_SHARDS wins.
GATE_COUNT=${GATE_COUNT:-$(( $(nproc) / 2 > 0 ? $(nproc) / 2 : 1 ))}
GATE_TCP=${GATE_TCP:-}
GATE_EXTRA=${GATE_EXTRA:-}
GATE_B_SHARDS=${GATE_B_SHARDS:-}
GATE_B_TCP=${GATE_B_TCP:-}
GATE_B_EXTRA=${GATE_B_EXTRA:-}
# [shards] lines with the default shard count, unless they choose their own.
with_count() {
  case "$1" in
    *count*|*cores*) printf '%s' "$1" ;;
    *) printf 'count = %s\n%s' "$GATE_COUNT" "$1" ;;
  esac
}
PREBUILT=${PREBUILT:-}
GATE_PORT=${GATE_PORT:-4553}
GATE_B_PORT=${GATE_B_PORT:-4558}
NODE_PORT=${NODE_PORT:-4600}
ECHO_PORT=${ECHO_PORT:-4555}
NGINX_PORT=${NGINX_PORT:-4556}
GLOMMIO_PORT=${GLOMMIO_PORT:-4557}
OUT=${OUT:-target/compare}
PUSH=${PUSH:-0}
PUSH_CONNS=${PUSH_CONNS:-1000}
PUSH_LOGIN_ROUTE=${PUSH_LOGIN_ROUTE:-11}
BCAST_CONNS=${BCAST_CONNS:-10000}
BCAST_INTERVAL=${BCAST_INTERVAL:-200ms}
LT_NODE_PORT=${LT_NODE_PORT:-4601}
WS=${WS:-0}
WS_PORT=${WS_PORT:-4554}
WSS_PORT=${WSS_PORT:-4559}
WSS_TCP_PORT=${WSS_TCP_PORT:-4551}
WS_CONNS=${WS_CONNS:-1000}
WS_STORM=${WS_STORM:-2000}
ECHO=${ECHO:-1}
CPU=${CPU:-0}
CPU_RATE=${CPU_RATE:-20000}
CPU_CONNS=${CPU_CONNS:-1000}
[ "$ECHO" != 0 ] || CONNS=" "

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
  GLOMMIO_BIN=target/release/ringgate-glommio-echo
  if has glommio; then
    # A crate of its own (not in the workspace): glommio is built only here,
    # into the shared target dir so it reuses ringgate's compiled dependencies.
    if ! CARGO_TARGET_DIR=target cargo build --release --quiet \
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

extra_ports=""
[ "$PUSH" != 1 ] || extra_ports="$extra_ports $LT_NODE_PORT"
[ "$WS" != 1 ] || extra_ports="$extra_ports $WS_PORT $WSS_PORT $WSS_TCP_PORT"
if { [ "$PUSH" = 1 ] || [ "$WS" = 1 ]; } && ! has ringgate; then
  note "PUSH=1 and WS=1 need the ringgate target; skipping them"
  PUSH=0 WS=0 extra_ports=""
fi
for port in $GATE_PORT $GATE_B_PORT $NODE_PORT $ECHO_PORT $NGINX_PORT $GLOMMIO_PORT $extra_ports; do
  if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
    echo "compare: port $port is already in use on 127.0.0.1 (another compare.sh?)" >&2
    exit 1
  fi
done

# --- servers --------------------------------------------------------------
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

gate_toml() { # port shards tcp extra [ws lines] [more [[nodes]]]
  cat <<TOML
[shards]
$2
[network.tcp]
addr = "127.0.0.1:$1"
max_connections = 19000
max_outbound_bytes = "4MiB"
$3
[network.ws]
${5:-enabled = false}
[log]
level = "warn"
[[nodes]]
addr = "127.0.0.1:$NODE_PORT"
${UNIX_LINE:-}
${6:-}
$4
TOML
}
NODE_UNIX=${NODE_UNIX:-0}
GATE_B_NODE_UNIX=${GATE_B_NODE_UNIX:-0}
NODE_SOCK="$OUT/node.sock"
unix_line() { [ "$1" != 1 ] || printf 'unix = "%s"' "$NODE_SOCK"; }
gate_pid="" gate_b_pid="" node_pid=""
if has ringgate || has ringgate-b; then
  node_unix=()
  [ "$NODE_UNIX" != 1 ] && [ "$GATE_B_NODE_UNIX" != 1 ] || node_unix=(--listen-unix "$NODE_SOCK")
  $NODE_BIN --listen 127.0.0.1:$NODE_PORT "${node_unix[@]}" >"$OUT/node.log" 2>&1 &
  node_pid=$!
  pids+=($node_pid)
  sleep 0.3
fi
if has ringgate; then
  gate_ws="" gate_nodes=""
  [ "$WS" != 1 ] || gate_ws=$'enabled = true\naddr = "127.0.0.1:'"$WS_PORT"'"'
  [ "$PUSH" != 1 ] || gate_nodes=$'[[nodes]]\naddr = "127.0.0.1:'"$LT_NODE_PORT"'"'
  UNIX_LINE=$(unix_line "$NODE_UNIX") gate_toml "$GATE_PORT" "$(with_count "$GATE_SHARDS")" "$GATE_TCP" "$GATE_EXTRA" "$gate_ws" "$gate_nodes" >"$OUT/gate.toml"
  $GATE_BIN -c "$OUT/gate.toml" >"$OUT/gate.log" 2>&1 &
  gate_pid=$!
  pids+=($gate_pid)
fi
if has ringgate-b; then
  UNIX_LINE=$(unix_line "$GATE_B_NODE_UNIX") gate_toml "$GATE_B_PORT" "$(with_count "$GATE_B_SHARDS")" "$GATE_B_TCP" "$GATE_B_EXTRA" >"$OUT/gate-b.toml"
  $GATE_BIN -c "$OUT/gate-b.toml" >"$OUT/gate-b.log" 2>&1 &
  gate_b_pid=$!
  pids+=($gate_b_pid)
fi
# WS=1: a second gate serving wss (self-signed certificate), same echo node.
wss_pid=""
if [ "$WS" = 1 ]; then
  if openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
      -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 \
      -keyout "$OUT/wss-key.pem" -out "$OUT/wss-cert.pem" >"$OUT/openssl.log" 2>&1; then
    gate_toml "$WSS_TCP_PORT" "$(with_count "$GATE_SHARDS")" "$GATE_TCP" "$GATE_EXTRA" \
      $'enabled = true\naddr = "127.0.0.1:'"$WSS_PORT"$'"\ncert_file = "'"$OUT/wss-cert.pem"$'"\nkey_file = "'"$OUT/wss-key.pem"'"' \
      >"$OUT/gate-wss.toml"
    $GATE_BIN -c "$OUT/gate-wss.toml" >"$OUT/gate-wss.log" 2>&1 &
    wss_pid=$!
    pids+=($wss_pid)
  else
    note "openssl could not make a certificate (see $OUT/openssl.log): no wss"
  fi
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

# --- CPU=1: CPU time per round trip at a fixed offered load ----------------
cpu_pids() { # target -> --cpu-pid flags
  case "$1" in
    ringgate) echo "--cpu-pid gate=$gate_pid --cpu-pid node=$node_pid" ;;
    ringgate-b) echo "--cpu-pid gate=$gate_b_pid --cpu-pid node=$node_pid" ;;
    one-hop) echo "--cpu-pid echo=$echo_pid" ;;
    nginx)
      local f="" w
      for w in $nginx_pid $(pgrep -P "$nginx_pid" 2>/dev/null); do f="$f --cpu-pid nginx=$w"; done
      echo "$f --cpu-pid echo=$echo_pid" ;;
    glommio) echo "--cpu-pid echo=$glommio_pid" ;;
  esac
}
if [ "$CPU" = 1 ]; then
  for round in $(seq "$ROUNDS"); do
    for t in $TARGETS; do
      note "cpu round $round/$ROUNDS: rate $CPU_RATE/s over $CPU_CONNS conns: $t"
      # shellcheck disable=SC2046
      $LT rate --addr "${ADDR[$t]}" --conns "$CPU_CONNS" --rate "$CPU_RATE" --payload "$PAYLOAD" \
        --warmup "$WARMUP" --duration "$DURATION" $(cpu_pids "$t") --json \
        2>>"$OUT/progress.log" >"$OUT/cpu-$t-$round.json" ||
        { note "cpu $t round $round failed"; rm -f "$OUT/cpu-$t-$round.json"; }
    done
  done
fi

# --- WS=1: echo over tcp, ws and wss; handshakes per second --------------
if [ "$WS" = 1 ]; then
  # openssl's `req -x509` certificate is a CA certificate, which webpki
  # refuses as a server's own: the client skips verification (--insecure).
  declare -A WS_ARGS=(
    [tcp]="--addr 127.0.0.1:$GATE_PORT" [ws]="--transport ws --addr 127.0.0.1:$WS_PORT"
    [wss]="--transport wss --insecure --addr 127.0.0.1:$WSS_PORT"
  )
  ws_kinds="tcp ws"
  [ -z "$wss_pid" ] || ws_kinds="tcp ws wss"
  for k in $ws_kinds; do
    ok=""
    for _ in $(seq 100); do
      # shellcheck disable=SC2086
      if $LT echo ${WS_ARGS[$k]} --conns 1 --warmup 0s --duration 200ms --json 2>/dev/null |
        python3 -c 'import json,sys; r=json.load(sys.stdin); sys.exit(0 if r["requests"]>0 and r["errors"]==0 else 1)'; then
        ok=1; break
      fi
      sleep 0.1
    done
    [ -n "$ok" ] || { note "ws section: $k not answering (logs in $OUT)"; ws_kinds=${ws_kinds/$k/}; }
  done
  for round in $(seq "$ROUNDS"); do
    for k in $ws_kinds; do
      note "ws round $round/$ROUNDS: echo over $k, $WS_CONNS conns"
      # shellcheck disable=SC2086
      $LT echo ${WS_ARGS[$k]} --conns "$WS_CONNS" --depth "$DEPTH" --payload "$PAYLOAD" --warmup "$WARMUP" \
        --duration "$DURATION" --json 2>>"$OUT/progress.log" >"$OUT/ws-echo-$k-$round.json" ||
        { note "ws echo $k round $round failed"; rm -f "$OUT/ws-echo-$k-$round.json"; }
    done
    for k in $ws_kinds; do
      [ "$k" != tcp ] || continue
      note "ws round $round/$ROUNDS: connect storm of $WS_STORM over $k"
      # shellcheck disable=SC2086
      $LT connect ${WS_ARGS[$k]} --conns "$WS_STORM" --reset --json \
        2>>"$OUT/progress.log" >"$OUT/ws-storm-$k-$round.json" ||
        { note "ws storm $k round $round failed"; rm -f "$OUT/ws-storm-$k-$round.json"; }
      sleep 1
    done
  done
fi

# --- PUSH=1: pushes by uid and broadcasts from the load generator's node ---
if [ "$PUSH" = 1 ]; then
  for round in $(seq "$ROUNDS"); do
    node_args=(--addr "127.0.0.1:$GATE_PORT" --node-listen "127.0.0.1:$LT_NODE_PORT"
      --login-route "$PUSH_LOGIN_ROUTE" --warmup "$WARMUP" --duration "$DURATION" --json)
    note "push round $round/$ROUNDS: push --conns $PUSH_CONNS --rate 0"
    $LT push "${node_args[@]}" --conns "$PUSH_CONNS" --rate 0 \
      2>>"$OUT/progress.log" >"$OUT/push-$round.json" ||
      { note "push round $round failed"; rm -f "$OUT/push-$round.json"; }
    note "push round $round/$ROUNDS: broadcast --conns $BCAST_CONNS --interval $BCAST_INTERVAL"
    $LT broadcast "${node_args[@]}" --conns "$BCAST_CONNS" --interval "$BCAST_INTERVAL" \
      2>>"$OUT/progress.log" >"$OUT/broadcast-$round.json" ||
      { note "broadcast round $round failed"; rm -f "$OUT/broadcast-$round.json"; }
  done
fi

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

# --- PUSH=1 / WS=1 / CPU=1 tables (appended to summary.json) ---------------
if [ "$PUSH" = 1 ] || [ "$WS" = 1 ] || [ "$CPU" = 1 ]; then
python3 - "$OUT" "$ROUNDS" "$PUSH" "$WS" "$WS_CONNS" "$WS_STORM" "$PUSH_CONNS" "$BCAST_CONNS" "$BCAST_INTERVAL" \
  "$CPU" "$TARGETS" "$CPU_RATE" "$CPU_CONNS" "$PAYLOAD" "$DURATION" <<'PY'
import json, os, statistics, sys
(out, rounds, push, ws, ws_conns, ws_storm, push_conns, bcast_conns, bcast_interval,
 cpu, targets, cpu_rate, cpu_conns, payload, duration) = sys.argv[1:]
targets = targets.split()
rounds = int(rounds)

def load(pattern):
    rs = []
    for r in range(1, rounds + 1):
        p = f"{out}/{pattern}-{r}.json"
        if os.path.exists(p):
            rs.append(json.load(open(p)))
    return rs

def med(rs, f):
    return statistics.median(f(r) for r in rs) if rs else None

def cell(v, fmt):
    return "-" if v is None else format(v, fmt)

def ratio(a, b):
    return round(a / b, 2) if a is not None and b else None

summary = json.load(open(f"{out}/summary.json"))
if ws == "1":
    print(f"\nWebSocket: echo at {ws_conns} conns over tcp / ws / wss (one gate for tcp and ws, "
          f"a second for wss), median of {rounds} interleaved rounds")
    print(f"{'transport':<9} {'rps':>8} {'min–max':>15} {'p50 us':>7} {'p99 us':>7} {'p99.9 us':>8} "
          f"{'errors':>6} {'rps vs tcp':>10} {'p99 vs tcp':>10}")
    rows = {}
    for k in ("tcp", "ws", "wss"):
        rs = load(f"ws-echo-{k}")
        rows[k] = {
            "runs": len(rs),
            "rps": med(rs, lambda r: r["rps"]),
            "rps_min": min((r["rps"] for r in rs), default=None),
            "rps_max": max((r["rps"] for r in rs), default=None),
            "p50_us": med(rs, lambda r: r["latency_us"]["p50"]),
            "p99_us": med(rs, lambda r: r["latency_us"]["p99"]),
            "p999_us": med(rs, lambda r: r["latency_us"]["p999"]),
            "errors": sum(r["errors"] + r["mismatches"] + r["closed"] + r["failed"] + r["connect_failures"] for r in rs),
        }
    for k, r in rows.items():
        r["rps_vs_tcp"] = ratio(r["rps"], rows["tcp"]["rps"])
        r["p99_vs_tcp"] = ratio(r["p99_us"], rows["tcp"]["p99_us"])
        span = "-" if r["rps_min"] is None else f"{r['rps_min']:.0f}–{r['rps_max']:.0f}"
        print(f"{k:<9} {cell(r['rps'], '.0f'):>8} {span:>15} {cell(r['p50_us'], '.0f'):>7} "
              f"{cell(r['p99_us'], '.0f'):>7} {cell(r['p999_us'], '.0f'):>8} {r['errors']:>6} "
              f"{cell(r['rps_vs_tcp'], '.2f'):>10} {cell(r['p99_vs_tcp'], '.2f'):>10}")
    print(f"\nWebSocket handshakes: connect --conns {ws_storm} as fast as possible "
          f"(connect + TLS + upgrade until the 101, then one request), median of {rounds}")
    print(f"{'transport':<9} {'handshakes/s':>12} {'conn/s':>8} {'failures':>8} {'hs p50 us':>9} "
          f"{'hs p99 us':>9} {'reply p99 us':>12}")
    storms = {}
    for k in ("ws", "wss"):
        rs = load(f"ws-storm-{k}")
        s = storms[k] = {
            "runs": len(rs),
            "handshakes_per_s": med(rs, lambda r: r["handshakes_per_s"]),
            "connects_per_s": med(rs, lambda r: r["connects_per_s"]),
            "failures": sum(r["failures"] for r in rs),
            "handshake_p50_us": med(rs, lambda r: r["handshake_us"]["p50"]),
            "handshake_p99_us": med(rs, lambda r: r["handshake_us"]["p99"]),
            "reply_p99_us": med(rs, lambda r: r["first_reply_us"]["p99"]),
        }
        print(f"{k:<9} {cell(s['handshakes_per_s'], '.0f'):>12} {cell(s['connects_per_s'], '.0f'):>8} "
              f"{s['failures']:>8} {cell(s['handshake_p50_us'], '.0f'):>9} {cell(s['handshake_p99_us'], '.0f'):>9} "
              f"{cell(s['reply_p99_us'], '.0f'):>12}")
    summary["ws"] = {"conns": int(ws_conns), "echo": rows, "storm_conns": int(ws_storm), "storm": storms}
if push == "1":
    print(f"\nNode pushes (the load generator's own node, gate on both shards), median of {rounds} rounds")
    print(f"{'scenario':<9} {'conns':>6} {'sent/s':>9} {'deliv/s':>9} {'lost':>6} {'dups':>5} {'p50 us':>7} "
          f"{'p90 us':>7} {'p99 us':>7} {'p99.9 us':>8} {'max us':>7}")
    res = {}
    for name, pattern, sent in (("push", "push", "pushes_per_s"), ("broadcast", "broadcast", None)):
        rs = load(pattern)
        lost_key = "lost" if name == "push" else "missing"
        r = res[name] = {
            "runs": len(rs),
            "conns": med(rs, lambda r: r["conns"]),
            "sent_per_s": med(rs, lambda r: r[sent]) if sent else None,
            "broadcasts": med(rs, lambda r: r.get("broadcasts", 0)),
            "deliveries_per_s": med(rs, lambda r: r["deliveries_per_s"]),
            lost_key: sum(r[lost_key] for r in rs),
            "duplicates": sum(r["duplicates"] for r in rs),
            "failures": sum(r["connect_failures"] + r["closed"] + r["failed"] for r in rs),
            **{k: med(rs, lambda r, k=k: r["latency_us"][k]) for k in ("p50", "p90", "p99", "p999", "max")},
        }
        label = name
        print(f"{label:<9} {cell(r['conns'], '.0f'):>6} {cell(r['sent_per_s'], '.0f'):>9} {cell(r['deliveries_per_s'], '.0f'):>9} "
              f"{r[lost_key]:>6} {r['duplicates']:>5} {cell(r['p50'], '.0f'):>7} {cell(r['p90'], '.0f'):>7} "
              f"{cell(r['p99'], '.0f'):>7} {cell(r['p999'], '.0f'):>8} {cell(r['max'], '.0f'):>7}")
        if r["failures"]:
            print(f"  {name}: {r['failures']} connections failed or closed (see {out}/progress.log)")
    print(f"  push: sent/s = pushes by uid per second (as fast as possible, bounded in flight); "
          f"broadcast: {cell(res['broadcast']['broadcasts'], '.0f')} broadcasts per run, "
          f"deliveries/s = broadcasts/s x conns; lost / missing summed over the rounds")
    summary["push"] = res
if cpu == "1":
    def cpu_us(r, name):
        return sum(u["us_per_msg"] for u in r.get("cpu", []) if u["name"] == name)

    # What each target's CPU is: the process in front (the gate, the relay, the
    # echo server itself) and, for two-hop targets, the one behind it.
    FRONT = {"ringgate": "gate", "ringgate-b": "gate", "one-hop": "echo", "nginx": "nginx", "glommio": "echo"}
    BACK = {"ringgate": "node", "ringgate-b": "node", "nginx": "echo"}
    rows = {}
    for t in targets:
        rs = load(f"cpu-{t}")
        if not rs:
            continue
        front = [cpu_us(r, FRONT[t]) for r in rs]
        back = [cpu_us(r, BACK[t]) for r in rs] if t in BACK else None
        total = [f + (back[i] if back else 0) for i, f in enumerate(front)]
        rows[t] = {
            "runs": len(rs),
            "rps": statistics.median(r["rps"] for r in rs),
            "p50_us": statistics.median(r["latency_us"]["p50"] for r in rs),
            "p99_us": statistics.median(r["latency_us"]["p99"] for r in rs),
            "front": FRONT[t], "front_us": statistics.median(front), "front_range": [min(front), max(front)],
            "back": BACK.get(t), "back_us": statistics.median(back) if back else None,
            "back_range": [min(back), max(back)] if back else None,
            "total_us": statistics.median(total),
            "loadgen_us": statistics.median(cpu_us(r, "self") for r in rs),
        }
    base = rows.get("one-hop", {}).get("front_us")
    ng = rows.get("nginx", {}).get("front_us")
    print(f"\nCPU per round trip: rate {cpu_rate}/s over {cpu_conns} conns, {payload} B payload, {duration} per run, "
          f"median of {rounds} interleaved rounds (min–max); us of CPU per reply")
    print(f"{'target':<10} {'rps':>7} {'p50 us':>7} {'p99 us':>7} {'front':>6} {'us/msg':>7} {'min–max':>12} "
          f"{'behind':>6} {'us/msg':>7} {'total':>7} {'front vs echo':>13} {'vs nginx':>8}")
    for t, r in rows.items():
        fr = f"{r['front_range'][0]:.1f}–{r['front_range'][1]:.1f}"
        r["front_vs_one_hop"] = ratio(r["front_us"], base)
        r["front_vs_nginx"] = ratio(r["front_us"], ng)
        print(f"{t:<10} {r['rps']:>7.0f} {r['p50_us']:>7.0f} {r['p99_us']:>7.0f} {r['front']:>6} {r['front_us']:>7.2f} "
              f"{fr:>12} {r['back'] or '-':>6} {cell(r['back_us'], '.2f'):>7} "
              f"{r['total_us']:>7.2f} {cell(r['front_vs_one_hop'], '.2f'):>13} "
              f"{cell(r['front_vs_nginx'], '.2f'):>8}")
    print("  front = the process clients connect to (gate, nginx relay, echo server); behind = the node "
          "(ringgate) or nginx's upstream echo; total = both")
    summary["cpu"] = {"rate": int(cpu_rate), "conns": int(cpu_conns), "rows": rows}
with open(f"{out}/summary.json", "w") as f:
    json.dump(summary, f, indent=1)
PY
fi
