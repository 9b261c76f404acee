#!/usr/bin/env bash
# Coverage-guided fuzzing of every decoder a client (or a node) can reach:
# runs each cargo-fuzz target in fuzz/ for a while, one after another, and
# prints executions and exec/s per target. Fails if any target crashed.
#
#   scripts/fuzz.sh [seconds-per-target] [target...]
#   scripts/fuzz.sh --cmin [target...]
#
# Default: 60 s for each of the targets in fuzz/fuzz_targets/. On the
# stable toolchain: RUSTC_BOOTSTRAP=1 lets it accept the -Z flags
# cargo-fuzz passes (the sanitizer, coverage instrumentation). Installs
# cargo-fuzz when it is missing. One target runs at a time (libFuzzer uses
# one core per job).
#
# Each run starts from the committed corpus (fuzz/corpus/<target>/) and the
# regressions (fuzz/regressions/<target>/), read-only, and writes what it
# finds to a scratch corpus, fuzz/target/corpus/<target>/ (git-ignored),
# kept between runs. A crash's input lands in fuzz/artifacts/<target>/:
# see docs/fuzzing.md for turning it into a regression.
#
# --cmin folds the scratch corpus into the committed one: `cargo fuzz cmin`
# over both, then, if that still leaves more than CORPUS_FILES files or
# CORPUS_BYTES bytes, the subset of it that keeps the most coverage
# (fuzz/cap_corpus.py). Review and commit fuzz/corpus/ afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

CORPUS_FILES=200
CORPUS_BYTES=$((1 << 20))
cmin=
if [ "${1:-}" = --cmin ]; then
  cmin=1
  shift
  set -- 1 "$@"
fi
seconds=${1:-60}
shift || true
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
  echo "usage: scripts/fuzz.sh [seconds-per-target] [target...]" >&2
  exit 2
fi
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for f in fuzz/fuzz_targets/*.rs; do
    targets+=("$(basename "$f" .rs)")
  done
fi
for t in "${targets[@]}"; do
  if [ ! -f "fuzz/fuzz_targets/$t.rs" ]; then
    echo "scripts/fuzz.sh: no fuzz target '$t' (fuzz/fuzz_targets/$t.rs)" >&2
    exit 2
  fi
done

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
# Release build with debug assertions and overflow checks (-a), and
# AddressSanitizer (cargo-fuzz's default): the dependencies under the
# decoders (bytes, httparse, prost) use unsafe code.
build_flags=(-a)
# Build first (all targets in one cargo run, or the one asked for), so that
# build time is not fuzzing time and a build error stops here.
if [ "${#targets[@]}" -eq 1 ]; then
  cargo fuzz build "${build_flags[@]}" "${targets[0]}"
else
  cargo fuzz build "${build_flags[@]}"
fi

if [ -n "$cmin" ]; then
  for t in "${targets[@]}"; do
    work=fuzz/target/cmin/$t
    rm -rf "$work" "$work.merged" "$work.control"
    mkdir -p "$work" "$work.merged" "fuzz/target/corpus/$t"
    cp fuzz/corpus/"$t"/* fuzz/target/corpus/"$t"/* "$work"/ 2>/dev/null || true
    cargo fuzz cmin "${build_flags[@]}" "$t" "$work" >"$work.log" 2>&1
    files=$(find "$work" -type f | wc -l)
    bytes=$(find "$work" -type f -exec cat {} + | wc -c)
    rm -rf "fuzz/corpus/$t"
    if [ "$files" -le "$CORPUS_FILES" ] && [ "$bytes" -le "$CORPUS_BYTES" ]; then
      cp -r "$work" "fuzz/corpus/$t"
      echo "$t: cargo fuzz cmin kept $files files, $bytes bytes"
    else
      cargo fuzz run "${build_flags[@]}" "$t" "$work.merged" "$work" -- \
        -merge=1 -merge_control_file="$work.control" >>"$work.log" 2>&1
      echo -n "$t: cargo fuzz cmin kept $files files, $bytes bytes; "
      python3 fuzz/cap_corpus.py "$work.control" "fuzz/corpus/$t" "$CORPUS_FILES" "$CORPUS_BYTES"
    fi
  done
  exit 0
fi

logs=fuzz/target/logs
mkdir -p "$logs"
results=()
failed=()
for t in "${targets[@]}"; do
  corpus=fuzz/target/corpus/$t
  mkdir -p "$corpus" "fuzz/corpus/$t" "fuzz/regressions/$t"
  log=$logs/$t.log
  echo "== $t: ${seconds}s (log: $log)"
  status=ok
  # -timeout: an input slower than 5 s is a finding (a decoder must not
  # be made to spin); -rss_limit_mb: so is one that needs over 2 GB.
  if ! cargo fuzz run "${build_flags[@]}" "$t" "$corpus" "fuzz/corpus/$t" "fuzz/regressions/$t" -- \
    -max_total_time="$seconds" -print_final_stats=1 -timeout=5 -rss_limit_mb=2048 \
    >"$log" 2>&1; then
    status=CRASH
    failed+=("$t")
    grep -E "^(==[0-9]+==ERROR|thread '.*' panicked|SUMMARY|artifact_prefix|Test unit written)" "$log" |
      head -n 8 >&2 || true
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  if [ -z "$runs" ]; then
    # No final stats (a crash): the last "#N ... exec/s: R" status line.
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
    runs=$(sed -E 's/^#([0-9]+).*/\1/' <<<"$last")
    rate=$(sed -nE 's/.*exec\/s: ([0-9]+).*/\1/p' <<<"$last")
  fi
  results+=("$(printf '%-12s %8s %12s %8s  %s' "$t" "$seconds" "${runs:--}" "${rate:--}" "$status")")
done

echo
printf '%-12s %8s %12s %8s  %s\n' target seconds executions exec/s result
for r in "${results[@]}"; do
  echo "$r"
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "scripts/fuzz.sh: FAILED: crashed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
