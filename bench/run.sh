#!/usr/bin/env bash
# Local-convergence benchmark: tenet-agent against CFEngine 3 (cf-agent).
#
#   bench/run.sh [N...]        default: 0 1000 10000
#
# For each N, two sandboxes hold the same workload (bench/gen.py):
#   /tmp/tenet-bench/cf3-nN     cf-agent's sandbox
#   /tmp/tenet-bench/tenet-nN   tenet's sandbox (tenet-agent apply --root)
# Correctness first: for both tools a first run, one checker, a second run
# that reports 0 repairs, and a cross-check in which each tool finds the tree
# the other converged already kept.  Then timings with hyperfine, the tools
# side by side in the same invocation:
#   first   fresh sandbox before every run (--prepare resets by rename; the
#           trash is deleted after the last round, never between batches:
#           see "ext4 without a journal" below)
#   noop    the converged tree (--warmup 1); the I/O floor runs here too
#   (first runs also time `floor --first`: the bare changes, no policy, no fsync)
#   parse   parse and validate only: cf-promises -c -f / tenet-agent check
# cf-agent variants:
#   cf-agent_f    cf-agent -K -w WD -f POLICY  (validates the policy every run)
#   cf-agent_in   cf-agent -K -w WD            (policy in WD/inputs; validated
#                                               only when it changed)
# tenet-agent apply parses and validates the tree on every run, like _f.
# Each scenario is split into $ROUNDS hyperfine invocations (default 2) whose
# command order is reversed from one to the next, so that slow drift on a
# noisy machine hits every tool alike; even rounds also swap the sandboxes
# (cf-agent in tenet-nN, tenet in cf3-nN), because the cost of creating files
# differed between the two directories.  bench/summarize.py merges the rounds.
# Peak RSS comes from /usr/bin/time -v (the maximum over the process and the
# children it waited for).  Everything lands in bench/results/.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
RES=$HERE/results
BASE=/tmp/tenet-bench
GEN="$HERE/gen.py"
ROUNDS=${ROUNDS:-2}
if [ "$#" -gt 0 ]; then NS=("$@"); else NS=(0 1000 10000); fi
for n in "${NS[@]}"; do
  case $n in ''|*[!0-9]*) echo "run.sh: N must be a non-negative integer, got '$n'" >&2; exit 2;; esac
done

log() { printf '%s\n' "$*" >&2; }

# ---- tools ----
if ! command -v cf-agent >/dev/null || ! command -v hyperfine >/dev/null || [ ! -x /usr/bin/time ]; then
  log "installing cfengine3 hyperfine time"
  apt-get install -y cfengine3 hyperfine time || { apt-get update && apt-get install -y cfengine3 hyperfine time; }
fi

# ---- build ----
log "building tenet-agent and the floor (release)"
(cd "$REPO" && cargo build --release -p tenet-agent && cargo build --release -p tenet-agent --example floor)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
TENET=$TARGET/release/tenet-agent
FLOOR=$TARGET/release/examples/floor
[ -x "$TENET" ] && [ -x "$FLOOR" ] || { log "run.sh: missing $TENET or $FLOOR"; exit 1; }

mkdir -p "$RES"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "nproc: $(nproc)"
  echo "kernel: $(uname -sr)"
  echo "cpu: $(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)"
  echo "mem: $(awk '/^MemTotal/{print $2 " kB"}' /proc/meminfo)"
  echo "os: $(. /etc/os-release && echo "$PRETTY_NAME")"
  echo "cf-agent: $(cf-agent --version | head -1) (package cfengine3 $(dpkg-query -W -f='${Version}' cfengine3 2>/dev/null))"
  echo "hyperfine: $(hyperfine --version) (package $(dpkg-query -W -f='${Version}' hyperfine 2>/dev/null))"
  echo "GNU time: package $(dpkg-query -W -f='${Version}' time 2>/dev/null)"
  echo "python3: $(python3 -V 2>&1)"
  echo "rustc: $(rustc -V)"
  echo "tenet-agent: $("$TENET" --version 2>&1 | head -1)"
  echo "tenet commit: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo none)$(git -C "$REPO" status --porcelain 2>/dev/null | grep -q . && echo ' (dirty tree)')"
  echo "rounds: $ROUNDS"
} >"$RES/env.txt"

# hyperfine NAME ROUND ARGS...: one invocation, JSON to results/NAME_rROUND.json.
# --ignore-failure keeps the other tools' numbers when one command fails; the
# exit codes land in the JSON and summarize.py flags every failed run.
hf() {
  local name=$1 round=$2; shift 2
  local args=(-N --style basic --ignore-failure --export-json "$RES/${name}_r$round.json" "$@")
  { printf 'hyperfine'; printf ' %q' "${args[@]}"; printf '\n\n'; } >"$RES/${name}_r$round.txt"
  if ! hyperfine "${args[@]}" >>"$RES/${name}_r$round.txt" 2>&1; then
    log "hyperfine $name round $round failed; see $RES/${name}_r$round.txt"
    STATUS=1
  fi
}

# ordered ROUND ITEM...: the items ("name|prepare|command"), one per line,
# in reverse order on even rounds
ordered() {
  local round=$1; shift
  local items=("$@") i
  if [ $((round % 2)) -eq 0 ]; then
    for ((i = ${#items[@]} - 1; i >= 0; i--)); do printf '%s\n' "${items[i]}"; done
  else
    printf '%s\n' "${items[@]}"
  fi
}

# build hyperfine arguments from "name|prepare|command" lines into HF_ARGS
hf_args() {
  HF_ARGS=()
  local line name prep cmd
  local -a preps=() cmds=()
  while IFS= read -r line; do
    name=${line%%|*}; line=${line#*|}
    prep=${line%%|*}; cmd=${line#*|}
    [ -n "$prep" ] && preps+=(--prepare "$prep")
    cmds+=(-n "$name" "$cmd")
  done
  HF_ARGS=("${preps[@]}" "${cmds[@]}")
}

# the timed commands, for the sandbox ROOT
cf_f() { echo "cf-agent -K -w $1/cfwd -f $1/cf3/promises.cf"; }
cf_in() { echo "cf-agent -K -w $1/cfwd"; }
tenet_apply() { echo "$TENET apply $1/tenet --root $1"; }
reset_cmd() { echo "python3 $GEN $N $1 --reset"; }

# peak RSS in KB of one run of a command
rss() { /usr/bin/time -v "$@" 2>&1 >/dev/null | awk -F': ' '/Maximum resident/{print $2}'; }

# the summary line of tenet-agent apply --json: "kept repaired failed blocked"
tenet_summary() {
  python3 -c '
import json, sys
last = None
for line in open(sys.argv[1]):
    line = line.strip()
    if line:
        last = line
try:
    s = json.loads(last)
    assert s.get("type") == "summary"
    print(s["kept"], s["repaired"], s["failed"], s["blocked"])
except Exception as e:
    print("? ? ? ?")
' "$1"
}

STATUS=0
for N in "${NS[@]}"; do
  if [ "$N" -gt 1000 ]; then RUNS=10; else RUNS=20; fi
  PER=$(( (RUNS + ROUNDS - 1) / ROUNDS ))
  CF=$BASE/cf3-n$N
  TN=$BASE/tenet-n$N
  WD=$CF/cfwd
  POL=$CF/cf3/promises.cf
  TPOL=$TN/tenet
  CF_F=$(cf_f "$CF")
  CF_IN=$(cf_in "$CF")
  TAPPLY=$(tenet_apply "$TN")
  RESET_CF=$(reset_cmd "$CF")
  RESET_TN=$(reset_cmd "$TN")
  CLEANUP="rm -rf $CF/.trash $TN/.trash"
  rm -f "$RES"/n"${N}"_*               # results of an earlier run for this N
  chk=$RES/n${N}_check.log
  : >"$chk"
  log "== N=$N: $RUNS runs per command in $ROUNDS rounds"

  # ---- sandboxes ----
  rm -rf "$CF" "$TN"
  DELETED_AT=$(date +%s)
  mkdir -p "$BASE"
  for root in "$CF" "$TN"; do
    python3 "$GEN" "$N" "$root"
    # a private cf-agent workdir in each sandbox, for the sandbox swap below
    mkdir -p "$root/cfwd/inputs"
    ln -sfn /usr/bin "$root/cfwd/bin"                        # cf-agent runs $WD/bin/cf-promises
    CFENGINE_TEST_OVERRIDE_WORKDIR=$root/cfwd cf-key >/dev/null  # a key pair for this workdir
    install -m 600 "$root/cf3/promises.cf" "$root/cfwd/inputs/promises.cf"
  done

  # ---- correctness: cf-agent ----
  set +e
  cf-agent -K -I -w "$WD" -f "$POL" >"$RES/n${N}_cf3_run1.out" 2>&1; rc1=$?
  python3 "$GEN" "$N" "$CF" --verify >>"$chk" 2>&1; v1=$?
  cf-agent -K -I -w "$WD" -f "$POL" >"$RES/n${N}_cf3_run2.out" 2>&1; rc2=$?
  set -e
  info1=$(grep -v 'Setting workdir' "$RES/n${N}_cf3_run1.out" | grep -cE '^ +info: ' || true)
  info2=$(grep -v 'Setting workdir' "$RES/n${N}_cf3_run2.out" | grep -cE '^ +info: ' || true)
  summ2=$(tail -1 "$WD/promise_summary.log")
  case "$summ2" in *"repaired 0.00%, Promises not repaired 0.00%"*) cf_rerun=ok;; *) cf_rerun=FAIL;; esac
  [ "$rc1$rc2" = 00 ] || cf_rerun=FAIL
  [ $v1 -eq 0 ] && cf_verify=ok || cf_verify=FAIL
  {
    echo "cf3 run1 rc=$rc1 info_lines=$info1"
    echo "cf3 run2 rc=$rc2 info_lines=$info2"
    echo "cf3 promise_summary after run2: $summ2"
    echo "cf3 verify=$cf_verify rerun_no_repairs=$cf_rerun"
  } >>"$chk"

  # ---- correctness: tenet ----
  set +e
  $TAPPLY --json >"$RES/n${N}_tenet_run1.jsonl" 2>"$RES/n${N}_tenet_run1.err"; trc1=$?
  python3 "$GEN" "$N" "$TN" --verify >>"$chk" 2>&1; tv1=$?
  $TAPPLY --json >"$RES/n${N}_tenet_run2.jsonl" 2>"$RES/n${N}_tenet_run2.err"; trc2=$?
  set -e
  read -r k1 r1 f1 b1 <<<"$(tenet_summary "$RES/n${N}_tenet_run1.jsonl")"
  read -r k2 r2 f2 b2 <<<"$(tenet_summary "$RES/n${N}_tenet_run2.jsonl")"
  [ $tv1 -eq 0 ] && tn_verify=ok || tn_verify=FAIL
  if [ "$trc1$trc2" = 00 ] && [ "$f1 $b1" = "0 0" ] && [ "$r2 $f2 $b2" = "0 0 0" ]; then
    tn_rerun=ok; else tn_rerun=FAIL; fi
  {
    echo "tenet run1 rc=$trc1 kept=$k1 repaired=$r1 failed=$f1 blocked=$b1"
    echo "tenet run2 rc=$trc2 kept=$k2 repaired=$r2 failed=$f2 blocked=$b2"
    echo "tenet verify=$tn_verify rerun_no_repairs=$tn_rerun"
  } >>"$chk"

  # ---- cross-check: each tool finds the other's converged tree kept ----
  set +e
  cf-agent -K -I -w "$TN/cfwd" -f "$TN/cf3/promises.cf" >"$RES/n${N}_cf3_on_tenet.out" 2>&1; xrc1=$?
  $(tenet_apply "$CF") --json >"$RES/n${N}_tenet_on_cf3.jsonl" 2>&1; xrc2=$?
  set -e
  xsumm=$(tail -1 "$TN/cfwd/promise_summary.log")
  read -r xk xr xf xb <<<"$(tenet_summary "$RES/n${N}_tenet_on_cf3.jsonl")"
  case "$xsumm" in *"repaired 0.00%, Promises not repaired 0.00%"*) x1=ok;; *) x1=FAIL;; esac
  [ "$xrc1" = 0 ] || x1=FAIL
  if [ "$xrc2" = 0 ] && [ "$xr $xf $xb" = "0 0 0" ]; then x2=ok; else x2=FAIL; fi
  {
    echo "cross cf-agent on the tree tenet converged: rc=$xrc1 $x1 ($xsumm)"
    echo "cross tenet on the tree cf-agent converged: rc=$xrc2 kept=$xk repaired=$xr failed=$xf blocked=$xb $x2"
  } >>"$chk"
  [ "$cf_verify$cf_rerun$tn_verify$tn_rerun$x1$x2" = okokokokokok ] || STATUS=1

  # ---- timings ----
  # Odd rounds run each tool in its own sandbox, even rounds swap the
  # sandboxes: on this ext4, creating the same files cost several times more
  # system time in one directory than in its sibling, whichever tool did it.
  # ext4 without a journal (this machine's root) will not reuse an inode freed in
  # the last 60 s, and finds each new inode by scanning past every recently freed
  # one: a batch right after deleting the previous batch's trash paid several times
  # the system time, whichever tool it was. Nothing is deleted while first runs are
  # timed, and the first round waits until the setup's deletions are 61 s old.
  sync
  settle=$(( DELETED_AT + 61 - $(date +%s) ))
  if [ "$settle" -gt 0 ]; then log "waiting ${settle}s for inodes freed by the setup to age"; sleep "$settle"; fi
  for ((round = 1; round <= ROUNDS; round++)); do
    if [ $((round % 2)) -eq 1 ]; then c=$CF t=$TN; else c=$TN t=$CF; fi
    hf_args < <(ordered "$round" \
      "cf-agent_f|$(reset_cmd "$c")|$(cf_f "$c")" \
      "tenet|$(reset_cmd "$t")|$(tenet_apply "$t")" \
      "floor|$(reset_cmd "$t")|$FLOOR --first $N $t" \
      "cf-agent_in|$(reset_cmd "$c")|$(cf_in "$c")")
    hf "n${N}_first" "$round" --runs "$PER" "${HF_ARGS[@]}"
  done
  $CLEANUP
  # The first-run floor leaves its sandbox unconverged: converge both again
  # before the checker and the no-op runs.
  for root in "$CF" "$TN"; do $(tenet_apply "$root") >/dev/null 2>&1 || STATUS=1; done
  for root in "$CF" "$TN"; do python3 "$GEN" "$N" "$root" --verify >>"$chk" 2>&1 || STATUS=1; done
  for ((round = 1; round <= ROUNDS; round++)); do
    if [ $((round % 2)) -eq 1 ]; then c=$CF t=$TN; else c=$TN t=$CF; fi
    hf_args < <(ordered "$round" \
      "cf-agent_f||$(cf_f "$c")" \
      "tenet||$(tenet_apply "$t")" \
      "floor||$FLOOR $N $t" \
      "cf-agent_in||$(cf_in "$c")")
    hf "n${N}_noop" "$round" --runs "$PER" --warmup 1 "${HF_ARGS[@]}"
    hf_args < <(ordered "$round" \
      "cf-promises||cf-promises -c -f $POL" \
      "tenet-check||$TENET check $TPOL")
    hf "n${N}_parse" "$round" --runs "$PER" --warmup 1 "${HF_ARGS[@]}"
  done
  for root in "$CF" "$TN"; do python3 "$GEN" "$N" "$root" --verify >>"$chk" 2>&1 || STATUS=1; done

  # ---- peak RSS ----
  {
    $RESET_CF; echo "cf-agent_f first $(rss $CF_F)"
    echo "cf-agent_f noop $(rss $CF_F)"
    $RESET_CF; echo "cf-agent_in first $(rss $CF_IN)"
    echo "cf-agent_in noop $(rss $CF_IN)"
    $RESET_TN; echo "tenet first $(rss $TAPPLY)"
    echo "tenet noop $(rss $TAPPLY)"
    echo "floor noop $(rss "$FLOOR" "$N" "$TN")"
    echo "cf-promises parse $(rss cf-promises -c -f "$POL")"
    echo "tenet-check parse $(rss "$TENET" check "$TPOL")"
  } >"$RES/n${N}_rss.txt"
  $CLEANUP
  for root in "$CF" "$TN"; do python3 "$GEN" "$N" "$root" --verify >>"$chk" 2>&1 || STATUS=1; done
  log "N=$N: cf3 verify=$cf_verify rerun=$cf_rerun; tenet verify=$tn_verify rerun=$tn_rerun" \
      "(run1 repaired=$r1, run2 repaired=$r2 failed=$f2 blocked=$b2)"
done

python3 "$HERE/summarize.py" "$RES"
if [ $STATUS -ne 0 ]; then
  log "run.sh: a correctness check or a hyperfine run failed; see $RES/n*_check.log"
fi
exit $STATUS
