#!/usr/bin/env bash
# Builds the fuzz targets of fuzz/ and runs each for SECONDS (default 15), seeded with
# the committed corpus fuzz/seeds/TARGET. CI runs it as a smoke test; run it by hand
# with a longer time for a real search (docs/fuzzing.md).
#   scripts/fuzz.sh [SECONDS] [TARGET...]
# Environment: FUZZ_JOBS (targets run at once; default: the number of cores),
# FUZZ_RSS_MB (per-target memory limit; default 2048), FUZZ_TARGET_DIR (build
# directory; default fuzz/target, kept apart from the workspace's).
# Needs cargo-fuzz (cargo install cargo-fuzz --locked --version 0.13.2). Builds on a
# stable toolchain: no sanitizer (-s none), since AddressSanitizer is nightly-only.
# A crash, a timeout or the memory limit fails the run (exit 1); the input that did
# it is in fuzz/artifacts/TARGET/ (replay: fuzz/target/.../release/TARGET FILE).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
FUZZ=$REPO/fuzz
SECONDS_EACH=${1:-15}
shift || true
ALL=(root manifest timestamp runreq policy agent_config policyd_config)
TARGETS=("${@:-${ALL[@]}}")
JOBS=${FUZZ_JOBS:-$(nproc)}
RSS_MB=${FUZZ_RSS_MB:-2048}
TARGET_DIR=${FUZZ_TARGET_DIR:-$FUZZ/target}
BIN=$TARGET_DIR/x86_64-unknown-linux-gnu/release

case $SECONDS_EACH in
  '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]" >&2; exit 2 ;;
esac
for t in "${TARGETS[@]}"; do
  [ -f "$FUZZ/fuzz_targets/$t.rs" ] || { echo "no fuzz target $t (have: ${ALL[*]})" >&2; exit 2; }
done
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked --version 0.13.2" >&2
  exit 2
fi

# The fuzzed crates build with the workspace's locked versions: fuzz/Cargo.lock starts
# as a copy of the workspace's whenever that changed, and cargo adds the harness.
lock_sum=$(sha256sum "$REPO/Cargo.lock" | cut -d' ' -f1)
if [ ! -f "$FUZZ/Cargo.lock" ] || [ "$(cat "$FUZZ/.lock-source" 2>/dev/null)" != "$lock_sum" ]; then
  cp "$REPO/Cargo.lock" "$FUZZ/Cargo.lock"
  echo "$lock_sum" >"$FUZZ/.lock-source"
fi

start=$(date +%s)
echo "building ${#TARGETS[@]} fuzz target(s)"
if [ ${#TARGETS[@]} -eq ${#ALL[@]} ]; then
  (cd "$FUZZ" && cargo fuzz build -s none --target-dir "$TARGET_DIR")
else
  for t in "${TARGETS[@]}"; do
    (cd "$FUZZ" && cargo fuzz build -s none --target-dir "$TARGET_DIR" "$t")
  done
fi
built=$(date +%s)
echo "built in $((built - start)) s"

mkdir -p "$FUZZ/logs"
# Crashes of earlier runs stay where they are; only this run's count.
touch "$FUZZ/logs/.started"
run_one() {
  local t=$1
  local dict=()
  mkdir -p "$FUZZ/corpus/$t" "$FUZZ/artifacts/$t"
  [ -f "$FUZZ/dicts/$t.dict" ] && dict=(-dict="$FUZZ/dicts/$t.dict")
  # The first directory collects new inputs; the seeds are only read.
  "$BIN/$t" "$FUZZ/corpus/$t" "$FUZZ/seeds/$t" "${dict[@]}" \
    -max_total_time="$SECONDS_EACH" -rss_limit_mb="$RSS_MB" -timeout=10 \
    -artifact_prefix="$FUZZ/artifacts/$t/" -print_final_stats=1 \
    >"$FUZZ/logs/$t.log" 2>&1
}
export -f run_one
export FUZZ BIN SECONDS_EACH RSS_MB
echo "running each for ${SECONDS_EACH} s, ${JOBS} at a time"
printf '%s\n' "${TARGETS[@]}" | xargs -P "$JOBS" -I{} bash -c 'run_one {} || true'

passed=0 failed=0
printf '%-16s %12s %10s %8s  %s\n' target execs execs/s corpus result
for t in "${TARGETS[@]}"; do
  log=$FUZZ/logs/$t.log
  stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -1; }
  execs=$(stat number_of_executed_units)
  rate=$(stat average_exec_per_sec)
  corpus=$(find "$FUZZ/corpus/$t" -type f | wc -l)
  if grep -qE '^(==[0-9]+== ERROR: libFuzzer|SUMMARY: libFuzzer|thread .* panicked)' "$log" \
    || [ -z "$execs" ] || [ -n "$(find "$FUZZ/artifacts/$t" -type f -newer "$FUZZ/logs/.started")" ]; then
    result="FAILED (see fuzz/logs/$t.log, fuzz/artifacts/$t/)"
    failed=$((failed + 1))
  else
    result=ok
    passed=$((passed + 1))
  fi
  printf '%-16s %12s %10s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "$corpus" "$result"
done
echo "fuzzing took $(($(date +%s) - built)) s after the build"
for t in "${TARGETS[@]}"; do
  if grep -qE 'ERROR: libFuzzer|panicked' "$FUZZ/logs/$t.log"; then
    echo "== $t"
    grep -E -A12 'panicked|ERROR: libFuzzer' "$FUZZ/logs/$t.log" | head -40
  fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
