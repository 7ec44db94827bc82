#!/usr/bin/env bash
# Distribution benchmark: tenet (tenet-policyd -> tenet-agent run) against
# CFEngine 3 (cf-serverd -> cf-agent copy_from compare=digest), on 127.0.0.1.
#
#   bench/dist.sh [RUNS]        default 5 runs per scenario and tool
#
# The tree (bench/dist_gen.py): 10,000 files of 198 bytes in 100 directories
# and 10 files of 1 MiB, deterministic.
#   cf3:   cf-serverd serves CF/tree; cf-agent -K -w CF/cli copies it to
#          CF/dst with copy_from compare=digest, depth_search inf (the protocol
#          of the CFEngine baseline).
#   tenet: TN/policy holds files/ (the tree) and dist.toml, one [[file]]
#          promise per file: source = its path under files/, path = /dist/...
#          Signed with tenet-keys sign, served by a promoted tenet-policyd;
#          one enrolled member, m1, runs tenet-agent run into its sandbox root
#          TN/m1/root, so the tree lands in TN/m1/root/dist.
# Scenarios, cf-agent and tenet in one hyperfine invocation:
#   full   empty destination; for tenet also a fresh state directory (no
#          cache, no trust state).  --prepare renames the old ones into .trash
#          and syncs; .trash is deleted after the last round (see below).  A third
#          command, `cp -a` of tenet's tree into a fresh directory, times the
#          file system's floor for writing 10,010 new files in the same runs.
#   noop   nothing changed (--warmup 1).
#   one    --prepare rewrites s42/f04242 (198 bytes, new content each time):
#          cf3 in its served tree; tenet in the policy tree, then signs a new
#          bundle (serial + 1) and promotes it.
# Each scenario is split into $ROUNDS invocations (default 2) with the command
# order reversed from one to the next.  After each scenario's rounds, diff -rq
# between each source tree and its destination; any difference fails the script.
# Server peak RSS: VmHWM of cf-serverd and tenet-policyd after all runs.
# Signed bundles go to /dev/shm/tenet-dist (tmpfs): tenet-keys sign fsyncs
# every blob, which takes ~48 s for this tree on this disk, too long for a
# --prepare step.  Everything else lives in /tmp/tenet-dist.
set -euo pipefail
RUNS=${1:-5}
case $RUNS in ''|*[!0-9]*|0) echo "dist.sh: RUNS must be a positive integer, got '$RUNS'" >&2; exit 2;; esac
ROUNDS=${ROUNDS:-2}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
# shellcheck source=bench/cf3_copy.sh
. "$HERE/cf3_copy.sh"
RES=$HERE/results
B=/tmp/tenet-dist
SHM=/dev/shm/tenet-dist
CF=$B/cf TN=$B/tenet FLOOR=$B/floor
GEN="$HERE/dist_gen.py"
log() { printf '%s\n' "$*" >&2; }

# ---- daemons: stopped by PID on exit (also those of an interrupted run) ----
stop_pid() {
  local f=$1 p
  [ -f "$f" ] || return 0
  p=$(cat "$f")
  # only if that PID still runs one of our daemons (PIDs are reused)
  if [ -n "$p" ] && grep -qE '^(cf-serverd|tenet-policyd)$' "/proc/$p/comm" 2>/dev/null; then
    kill "$p" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$f"
}
cleanup() { stop_pid "$B/cf-serverd.pid"; stop_pid "$B/policyd.pid"; rm -rf "$SHM"; }
stop_pid "$B/cf-serverd.pid"; stop_pid "$B/policyd.pid"
trap cleanup EXIT

# ---- tools ----
if ! command -v cf-serverd >/dev/null || ! command -v hyperfine >/dev/null; then
  log "installing cfengine3 hyperfine"
  apt-get install -y cfengine3 hyperfine || { apt-get update && apt-get install -y cfengine3 hyperfine; }
fi
log "building tenet-keys, tenet-policyd and tenet-agent (release)"
(cd "$REPO" && cargo build -q --release -p tenet-keys -p tenet-policyd -p tenet-agent --bins)
T=${CARGO_TARGET_DIR:-$REPO/target}/release
K=$T/tenet-keys P=$T/tenet-policyd A=$T/tenet-agent

rm -rf "$B" "$SHM"
DELETED_AT=$(date +%s)
mkdir -p "$B" "$SHM" "$RES"
rm -f "$RES"/dist_*
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "nproc: $(nproc)"
  echo "kernel: $(uname -sr)"
  echo "cpu: $(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)"
  echo "mem: $(awk '/^MemTotal/{print $2 " kB"}' /proc/meminfo)"
  echo "os: $(. /etc/os-release && echo "$PRETTY_NAME")"
  echo "fs /tmp: $(df -T /tmp | awk 'NR==2{print $2}')"
  echo "cf-agent: $(cf-agent --version | head -1) (package cfengine3 $(dpkg-query -W -f='${Version}' cfengine3 2>/dev/null))"
  echo "hyperfine: $(hyperfine --version)"
  echo "rustc: $(rustc -V)"
  echo "tenet commit: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo none)$(git -C "$REPO" status --porcelain -- . ':!bench' 2>/dev/null | grep -q . && echo ' (dirty tree)')"
  echo "runs: $RUNS in $ROUNDS rounds"
} >"$RES/dist_env.txt"

# ---- the tree, twice: cf3's served tree and tenet's policy tree ----
log "generating the tree"
mkdir -p "$TN/policy/files" "$CF"
python3 "$GEN" tree "$TN/policy/files"
cp -a "$TN/policy/files" "$CF/tree"
python3 "$GEN" policy "$TN/policy/files" "$TN/policy/dist.toml"
cat >"$TN/policy/cluster.toml" <<'TOML'
# The distribution benchmark: one member, m1, fetches from the policy server.
[cluster]
name = "dist"
policy_server = "tenet"

[[member]]
name = "m1"
hostname = "m1.example.com"
addresses = [ { ip = "10.0.0.1", role = "boot" } ]

[[member]]
name = "srv"
hostname = "srv.example.com"
addresses = [ { ip = "10.0.0.2", role = "boot" } ]

[[package]]
name = "tenet"
hostname = "tenet.example.com"
ip = "10.0.0.10"
members = ["srv"]
configuration = "rotating"
TOML

# ---- cf3: cf-serverd and the copy policy (as the baseline protocol) ----
CFPORT=$(free_port)
SRV=$CF/srv CLI=$CF/cli DST=$CF/dst
cf3_copy_setup "$SRV" "$CLI" "$CFPORT" "$CF/tree" "$DST"
CFENGINE_TEST_OVERRIDE_WORKDIR=$SRV cf-serverd -F -K -f "$SRV/inputs/promises.cf" >"$CF/serverd.log" 2>&1 &
echo $! >"$B/cf-serverd.pid"

# ---- tenet: deployment, member m1, bundle 1, tenet-policyd promoted ----
log "tenet deployment and the first bundle"
"$K" init "$TN/dep" >/dev/null
mkdir -p "$TN/m1"
ID=$("$K" node-key --out "$TN/m1/key" | grep -o '[0-9a-f]\{64\}' | head -1)
"$K" enroll "$TN/dep" --member m1 --key-id "$ID" >/dev/null
"$K" node-key --out "$TN/srv" >/dev/null
"$K" sign "$TN/policy" --deployment "$TN/dep" --out "$SHM/b0" >"$RES/dist_sign.txt" 2>&1
echo 0 >"$B/count"
LISTEN=$(free_port) SERVE=$(free_port)
cat >"$TN/policyd.toml" <<TOML
member = "srv"
state_dir = "$TN/srv/state"
node_key = "$TN/srv/localhost.key"
trusted_root = "$TN/dep/root/1.root.toml"
[listener]
listen = "127.0.0.1:$LISTEN"
[serve]
listen = "127.0.0.1:$SERVE"
timestamp_key = "$TN/dep/keys/timestamp.key"
server_key = "$TN/dep/keys/server-tls.key"
[metrics]
listen = "off"
TOML
"$P" serve --config "$TN/policyd.toml" 2>"$TN/policyd.log" &
echo $! >"$B/policyd.pid"
for i in $(seq 100); do
  code=0; "$P" status --config "$TN/policyd.toml" >/dev/null 2>&1 || code=$?
  [ "$code" = 7 ] && break
  kill -0 "$(cat "$B/policyd.pid")" 2>/dev/null || { cat "$TN/policyd.log" >&2; exit 1; }
  [ "$i" -lt 100 ] || { log "tenet-policyd did not start"; cat "$TN/policyd.log" >&2; exit 1; }
  sleep 0.1
done
"$P" promote --config "$TN/policyd.toml" --bundle "$SHM/b0" >"$RES/dist_promote.txt"
cat >"$TN/m1/agent.toml" <<TOML
member = "m1"
master = "127.0.0.1:$SERVE"
state_dir = "$TN/m1/state"
node_key = "$TN/m1/key/localhost.key"
trusted_root = "$TN/dep/root/1.root.toml"
root = "$TN/m1/root"
TOML
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$CFPORT") 2>/dev/null && break; sleep 0.2; done

# ---- prepare steps ----
cat >"$B/cf_full.sh" <<EOF
#!/bin/sh
# full copy: move the destination aside (renamed, deleted by --cleanup), sync
set -e
mkdir -p $CF/.trash
if [ -e $DST ]; then mv $DST $CF/.trash/dst.\$(date +%s%N); fi
sync
EOF
cat >"$B/tenet_full.sh" <<EOF
#!/bin/sh
# full sync: a fresh member state (no cache, no trust state) and an empty root
set -e
mkdir -p $TN/.trash
s=\$(date +%s%N)
if [ -e $TN/m1/state ]; then mv $TN/m1/state $TN/.trash/state.\$s; fi
if [ -e $TN/m1/root ]; then mv $TN/m1/root $TN/.trash/root.\$s; fi
mkdir -p $TN/m1/root
sync
EOF
cat >"$B/floor_full.sh" <<EOF
#!/bin/sh
# the floor: the same tree copied locally with cp -a (no network, no checks, no fsync)
set -e
mkdir -p $FLOOR/.trash
if [ -e $FLOOR/dst ]; then mv $FLOOR/dst $FLOOR/.trash/dst.\$(date +%s%N); fi
sync
EOF
cat >"$B/cf_one.sh" <<EOF
#!/bin/sh
# one file changed in the served tree (new content each time)
set -e
n=\$((\$(cat $B/count) + 1)); echo \$n >$B/count
sleep 1.1
python3 $GEN mutate $CF/tree/s42/f04242 \$n
sync
EOF
cat >"$B/tenet_one.sh" <<EOF
#!/bin/sh
# one file changed in the policy tree; sign a new bundle (serial + 1), promote it
set -e
n=\$((\$(cat $B/count) + 1)); echo \$n >$B/count
python3 $GEN mutate $TN/policy/files/s42/f04242 \$n
$K sign $TN/policy --deployment $TN/dep --out $SHM/b\$n >/dev/null 2>&1
$P promote --config $TN/policyd.toml --bundle $SHM/b\$n >/dev/null
for d in $SHM/b*; do [ "\$d" = $SHM/b\$n ] || rm -rf "\$d"; done
sync
EOF
chmod +x "$B"/*.sh

CFA="cf-agent -K -w $CLI"
TAG="$A run --config $TN/m1/agent.toml"
STATUS=0
check() { # LABEL: both destinations against their sources
  local l=$1 ok=1
  if ! diff -rq "$CF/tree" "$DST" >"$RES/dist_diff_cf.txt" 2>&1; then ok=0; log "$l: cf3 destination differs"; head -5 "$RES/dist_diff_cf.txt" >&2; fi
  if ! diff -rq "$TN/policy/files" "$TN/m1/root/dist" >"$RES/dist_diff_tenet.txt" 2>&1; then ok=0; log "$l: tenet destination differs"; head -5 "$RES/dist_diff_tenet.txt" >&2; fi
  if [ $ok = 1 ]; then
    echo "$l: identical (cf3 $(find "$DST" -type f | wc -l) files, tenet $(find "$TN/m1/root/dist" -type f | wc -l) files)" >>"$RES/dist_check.log"
  else
    echo "$l: MISMATCH" >>"$RES/dist_check.log"; STATUS=1
  fi
}
tsum() { tail -1 "$1" | tr -d '\n'; }
: >"$RES/dist_check.log"

# ---- correctness: full, no change, one change, for both ----
log "correctness runs"
"$B/cf_full.sh"; "$B/tenet_full.sh"
$CFA -I >"$RES/dist_cf_run1.out" 2>&1 || STATUS=1
$TAG --json >"$RES/dist_tenet_run1.jsonl" 2>"$RES/dist_tenet_run1.err" || STATUS=1
check "first run"
$CFA -I >"$RES/dist_cf_run2.out" 2>&1 || STATUS=1
$TAG --json >"$RES/dist_tenet_run2.jsonl" 2>"$RES/dist_tenet_run2.err" || STATUS=1
"$B/cf_one.sh"; "$B/tenet_one.sh"
$CFA -I >"$RES/dist_cf_run3.out" 2>&1 || STATUS=1
$TAG --json >"$RES/dist_tenet_run3.jsonl" 2>"$RES/dist_tenet_run3.err" || STATUS=1
check "after one change"
{
  echo "cf3 no-change re-run info lines: $(grep -c 'info:' "$RES/dist_cf_run2.out" || true)"
  echo "cf3 one-change re-run info lines: $(grep -c 'info:' "$RES/dist_cf_run3.out" || true)"
  echo "tenet first run:  $(tsum "$RES/dist_tenet_run1.jsonl")"
  echo "tenet no change:  $(tsum "$RES/dist_tenet_run2.jsonl")"
  echo "tenet one change: $(tsum "$RES/dist_tenet_run3.jsonl")"
} >>"$RES/dist_check.log"
grep -q '"repaired":0,' "$RES/dist_tenet_run2.jsonl" || { log "tenet no-change run repaired something"; STATUS=1; }
grep -q '"repaired":1,' "$RES/dist_tenet_run3.jsonl" || { log "tenet one-change run did not repair exactly one"; STATUS=1; }

# ---- timings ----
hf() { # NAME ROUND ARGS...
  local name=$1 round=$2; shift 2
  local args=(-N --style basic --ignore-failure --export-json "$RES/dist_${name}_r$round.json" "$@")
  { printf 'hyperfine'; printf ' %q' "${args[@]}"; printf '\n\n'; } >"$RES/dist_${name}_r$round.txt"
  if ! hyperfine "${args[@]}" >>"$RES/dist_${name}_r$round.txt" 2>&1; then
    log "hyperfine $name round $round failed; see $RES/dist_${name}_r$round.txt"; STATUS=1
  fi
}
# runs of round R: RUNS split over ROUNDS, the first rounds take the remainder
per() { local r=$1; echo $(( RUNS / ROUNDS + (r <= RUNS % ROUNDS ? 1 : 0) )); }
pair() { # NAME ROUND CF-PREPARE TENET-PREPARE [HYPERFINE OPTIONS...]
  # With FLOOR_CMD set, that command (prepared by FLOOR_PREP) runs third, as "cp -a".
  local name=$1 round=$2 pc=$3 pt=$4 n; shift 4
  n=$(per "$round"); [ "$n" -gt 0 ] || return 0
  local c=() t=() f=() fc=()
  if [ -n "$pc" ]; then c=(--prepare "$pc"); fi
  if [ -n "$pt" ]; then t=(--prepare "$pt"); fi
  if [ -n "${FLOOR_CMD:-}" ]; then f=(--prepare "$FLOOR_PREP"); fc=(-n "cp -a" "$FLOOR_CMD"); fi
  if [ $((round % 2)) -eq 1 ]; then
    hf "$name" "$round" --runs "$n" "$@" "${c[@]}" "${t[@]}" "${f[@]}" -n cf-agent "$CFA" -n tenet "$TAG" "${fc[@]}"
  else
    hf "$name" "$round" --runs "$n" "$@" "${t[@]}" "${c[@]}" "${f[@]}" -n tenet "$TAG" -n cf-agent "$CFA" "${fc[@]}"
  fi
}
# ext4 without a journal (this machine's root file system) will not reuse an inode
# freed in the last 60 s: each new inode is found by scanning past every recently
# freed one, which made a run after 30,000 deletions 2-3 times slower for all three
# commands. So nothing is deleted while full syncs are timed (the trash goes after the
# last round), and the first round waits until the setup's deletions are 61 s old.
sync
settle=$(( DELETED_AT + 61 - $(date +%s) ))
if [ "$settle" -gt 0 ]; then log "waiting ${settle}s for inodes freed by the setup to age"; sleep "$settle"; fi
for ((r = 1; r <= ROUNDS; r++)); do
  log "full, round $r ($(date -u +%H:%M:%S))"
  FLOOR_PREP="$B/floor_full.sh" FLOOR_CMD="cp -a $TN/policy/files $FLOOR/dst" \
    pair full "$r" "$B/cf_full.sh" "$B/tenet_full.sh"
done
check "after full"
rm -rf "$CF/.trash" "$TN/.trash" "$FLOOR/.trash"
for ((r = 1; r <= ROUNDS; r++)); do
  log "no change, round $r ($(date -u +%H:%M:%S))"
  pair noop "$r" "" "" --warmup 1
done
check "after no change"
for ((r = 1; r <= ROUNDS; r++)); do
  log "one file changed, round $r ($(date -u +%H:%M:%S))"
  pair one "$r" "$B/cf_one.sh" "$B/tenet_one.sh"
done
check "after one change"

# ---- server peak RSS ----
{
  echo "cf-serverd $(awk '/^VmHWM/{print $2}' "/proc/$(cat "$B/cf-serverd.pid")/status")"
  echo "tenet-policyd $(awk '/^VmHWM/{print $2}' "/proc/$(cat "$B/policyd.pid")/status")"
} >"$RES/dist_rss.txt"

python3 - "$RES" <<'EOF' | tee "$RES/dist_summary.txt"
import glob, json, math, os, statistics, sys
res = sys.argv[1]
targets = {"full": 0.2, "noop": 0.05, "one": 0.1}
names = {"full": "full sync", "noop": "no change", "one": "one file changed"}
print("| scenario | cf-agent ms median (min-max) | tenet ms median (min-max) | tenet/cf-agent | target | met |")
print("|---|---|---|---|---|---|")
floor = {}
geo = lambda xs: math.exp(sum(map(math.log, xs)) / len(xs))
for s in ("full", "noop", "one"):
    times = {"cf-agent": [], "tenet": [], "cp -a": []}
    ratios, failed = [], 0
    for f in sorted(glob.glob(os.path.join(res, "dist_%s_r*.json" % s))):
        med = {}
        for r in json.load(open(f))["results"]:
            times[r["command"]] += r["times"]
            failed += sum(1 for c in r.get("exit_codes", []) if c)
            med[r["command"]] = statistics.median(r["times"])
        ratios.append(med["tenet"] / med["cf-agent"])
        if "cp -a" in med:
            floor.setdefault("cf", []).append(med["cp -a"] / med["cf-agent"])
            floor.setdefault("tenet", []).append(med["tenet"] / med["cp -a"])
    if times["cp -a"]:
        floor["times"] = times["cp -a"]
    cell = lambda t: "%.0f (%.0f-%.0f)" % (statistics.median(t) * 1e3, min(t) * 1e3, max(t) * 1e3)
    ratio = math.exp(sum(map(math.log, ratios)) / len(ratios))
    print("| %s | %s | %s | %.3f | <= %g | %s |" % (names[s], cell(times["cf-agent"]), cell(times["tenet"]),
          ratio, targets[s], ("yes" if ratio <= targets[s] else "no") + (" (%d failed runs)" % failed if failed else "")))
rss = dict(l.split() for l in open(os.path.join(res, "dist_rss.txt")))
if floor.get("times"):
    t = floor["times"]
    print()
    print("full sync floor, cp -a of the same tree in the same runs (local, no checks, no fsync): "
          "%.0f ms median (%.0f-%.0f); cp -a/cf-agent %.3f, tenet/cp -a %.3f" % (
          statistics.median(t) * 1e3, min(t) * 1e3, max(t) * 1e3, geo(floor["cf"]), geo(floor["tenet"])))
print()
print("server peak RSS (VmHWM): cf-serverd %s KB, tenet-policyd %s KB (ratio %.2f)" % (
    rss["cf-serverd"], rss["tenet-policyd"], int(rss["tenet-policyd"]) / int(rss["cf-serverd"])))
print("ratio: geometric mean over rounds of the per-round median ratio")
EOF
cat "$RES/dist_check.log"
[ $STATUS -eq 0 ] || log "dist.sh: a check or a run failed; see $RES/dist_check.log"
exit $STATUS
