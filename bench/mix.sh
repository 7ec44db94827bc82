#!/usr/bin/env bash
# The mixed workload (gen.py --mix) beside the standard one, briefly: for N
# (10000 by default), cf-agent on the standard workload, tenet on the standard
# workload and tenet on the standard plus the mixed workload, first run and
# no-op, in one hyperfine invocation each (RUNS runs per command, 3 by default).
# The mixed part is tenet only (CFEngine's users, packages and services promises
# act on the host), so `tenet_mix / cf-agent_f` shows what the new types add on
# top of the like-for-like ratio `tenet / cf-agent_f`. Needs root, cf-agent,
# hyperfine and dpkg-deb; works in /tmp/tenet-bench/mix-*; results in
# bench/results/mix_*.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
RES=$HERE/results
BASE=/tmp/tenet-bench
GEN="$HERE/gen.py"
N=${1:-10000}
RUNS=${RUNS:-3}
case $N in ''|*[!0-9]*) echo "mix.sh: N must be a non-negative integer" >&2; exit 2;; esac
(cd "$REPO" && cargo build --release -p tenet-agent)
TENET=${CARGO_TARGET_DIR:-$REPO/target}/release/tenet-agent
mkdir -p "$RES" "$BASE"
CF=$BASE/mix-cf3-n$N TN=$BASE/mix-tenet-n$N TM=$BASE/mix-mix-n$N
rm -rf "$CF" "$TN" "$TM"
python3 "$GEN" "$N" "$CF"
python3 "$GEN" "$N" "$TN"
python3 "$GEN" "$N" "$TM" --mix
mkdir -p "$CF/cfwd/inputs"
ln -sfn /usr/bin "$CF/cfwd/bin"
CFENGINE_TEST_OVERRIDE_WORKDIR=$CF/cfwd cf-key >/dev/null
CFA="cf-agent -K -w $CF/cfwd -f $CF/cf3/promises.cf"
TA="$TENET apply $TN/tenet --root $TN"
TMA="$TENET apply $TM/tenet --root $TM"
# Correctness: the mixed sandbox converges with nothing failed or blocked, checks,
# and a second run repairs nothing.
$TMA --json | tail -1 >"$RES/mix_n${N}_run1.json"
python3 "$GEN" "$N" "$TM" --verify --mix >"$RES/mix_n${N}_verify.txt"
$TMA --json | tail -1 >"$RES/mix_n${N}_run2.json"
python3 - "$RES/mix_n${N}_run1.json" "$RES/mix_n${N}_run2.json" <<'PY'
import json, sys
one, two = (json.load(open(p)) for p in sys.argv[1:3])
assert one["failed"] == 0 and one["blocked"] == 0, one
assert two["repaired"] == 0 and two["failed"] == 0 and two["blocked"] == 0, two
print("mix: first run repaired %d; second run kept %d, repaired 0" % (one["repaired"], two["kept"]))
PY
hf() {
  local name=$1; shift
  hyperfine -N --style basic --runs "$RUNS" --export-json "$RES/mix_n${N}_$name.json" "$@" \
    | tee "$RES/mix_n${N}_$name.txt"
}
hf first \
  --prepare "python3 $GEN $N $CF --reset" -n cf-agent_f "$CFA" \
  --prepare "python3 $GEN $N $TN --reset" -n tenet "$TA" \
  --prepare "python3 $GEN $N $TM --reset --mix" -n tenet_mix "$TMA"
$CFA >/dev/null 2>&1; $TA >/dev/null; $TMA >/dev/null
hf noop -n cf-agent_f "$CFA" -n tenet "$TA" -n tenet_mix "$TMA"
python3 - "$RES/mix_n${N}_first.json" "$RES/mix_n${N}_noop.json" <<'PY'
import json, sys
for path in sys.argv[1:3]:
    m = {r["command"]: r["median"] * 1000 for r in json.load(open(path))["results"]}
    cf = m["cf-agent_f"]
    print("%-6s cf-agent_f %.0f ms, tenet %.0f ms (%.3f), tenet_mix %.0f ms (%.3f)" % (
        path.rsplit("_", 1)[1][:-5], cf, m["tenet"], m["tenet"] / cf, m["tenet_mix"], m["tenet_mix"] / cf))
PY
rm -rf "$CF/.trash" "$TN/.trash" "$TM/.trash"
