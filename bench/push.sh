#!/usr/bin/env bash
# Push benchmark: tenet-agent push -> tenet-policyd listener -> tenet-agent run,
# against cf-runagent -> cf-serverd -> cfruncommand, on 127.0.0.1.
#
#   bench/push.sh [RUNS] [MEMBERS]      defaults: 10 runs, 100 members
#
# Setup (release binaries, everything under /tmp/tenet-push):
#   a deployment made with tenet-keys (root 1 of 1, admin "alice" for every member,
#   MEMBERS node keys enrolled), a trivial policy (one file promise), MEMBERS
#   members each with its own tenet-policyd (listener on 127.0.0.1, port chosen by
#   the kernel), agent.toml, state directory and sandbox root; m001's policyd is
#   promoted and serves the bundle; every member runs once (trusts root 2, caches
#   the bundle). m001's agent.toml has [push] with every member's listener.
# Scenarios:
#   trigger   one member (m002), hyperfine -N in one invocation:
#               push      tenet-agent push m002 (from m001)
#               local     tenet-agent run on m002 (the same no-op run, started locally)
#               runagent  cf-runagent -H 127.0.0.1:PORT (cf-serverd runs cf-agent on a
#                         1-report policy), as bench/dist.sh sets up CFEngine
#               cf_local  that cf-agent run started locally
#             trigger overhead = median(push) - median(local), and the same for cf3.
#   fanout    tenet-agent push --all --parallel MEMBERS: MEMBERS pushed no-op runs;
#             then one push after publishing a new serial (every member fetches and
#             converges), timed once; every member must report ok.
# Daemons started here are stopped by PID on exit. Results: bench/results/push_*.
set -euo pipefail
RUNS=${1:-10}
N=${2:-100}
case $RUNS$N in *[!0-9]*) echo "push.sh: RUNS and MEMBERS are positive integers" >&2; exit 2;; esac
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
RES=$HERE/results
B=/tmp/tenet-push
CF=$B/cf3
CFPORT=${CFPORT:-15318}
log() { printf '%s\n' "$*" >&2; }

stop_pids() {
  [ -f "$B/pids" ] || return 0
  while read -r p; do
    if [ -n "$p" ] && grep -qE '^(cf-serverd|tenet-policyd)$' "/proc/$p/comm" 2>/dev/null; then
      kill "$p" 2>/dev/null || true
    fi
  done <"$B/pids"
  rm -f "$B/pids"
}
stop_pids
trap stop_pids EXIT

log "building release binaries"
(cd "$REPO" && cargo build --release --locked -q -p tenet-agent -p tenet-policyd -p tenet-keys)
BIN=$REPO/target/release
KEYS=$BIN/tenet-keys AGENT=$BIN/tenet-agent POLICYD=$BIN/tenet-policyd
mkdir -p "$RES"
rm -rf "$B"; mkdir -p "$B/m"
D=$B/deploy

log "deployment: root, admin alice, $N members"
$KEYS init "$D" --root-keys 1 --root-threshold 1 >/dev/null
$KEYS admin-key "$D" alice --member '*' >/dev/null
$KEYS root-next "$D" >/dev/null
$KEYS attest "$D/root/2.root.toml" --key "$D/keys/root-1.key" --deployment "$D" >/dev/null
names=()
for i in $(seq 1 "$N"); do
  m=$(printf 'm%03d' "$i"); names+=("$m")
  mkdir -p "$B/m/$m/root"
  id=$($KEYS node-key --out "$B/m/$m/node" | head -1)
  $KEYS enroll "$D" --member "$m" --key-id "$id" >/dev/null
done

tree() { # tree SERIAL
  local t=$B/trees/$1; mkdir -p "$t"
  { echo '[cluster]'; echo 'name = "bench"'
    for i in $(seq 1 "$N"); do
      printf '\n[[member]]\nname = "m%03d"\naddresses = [{ ip = "10.1.%d.%d", role = "boot" }]\n' "$i" $((i / 250)) $((i % 250 + 1))
    done; } >"$t/cluster.toml"
  printf '[[file]]\npath = "/etc/motd"\ncontent = "serial %s\\n"\nmode = "0644"\n' "$1" >"$t/files.toml"
  $KEYS sign "$t" --deployment "$D" --out "$B/bundles/$1" --serial "$1" >/dev/null
}
tree 1

log "starting $N tenet-policyd listeners"
for m in "${names[@]}"; do
  cat >"$B/m/$m/policyd.toml" <<EOF
member = "$m"
state_dir = "policyd-state"
node_key = "node/localhost.key"
trusted_root = "$D/root/1.root.toml"
[listener]
listen = "127.0.0.1:0"
[serve]
listen = "127.0.0.1:0"
timestamp_key = "$D/keys/timestamp.key"
server_key = "$D/keys/server-tls.key"
[metrics]
listen = "off"
[run]
agent = "$AGENT"
agent_config = "agent.toml"
agent_state = "state"
timeout = "60s"
start = "direct"
EOF
  $POLICYD serve --config "$B/m/$m/policyd.toml" 2>"$B/m/$m/policyd.log" &
  echo $! >>"$B/pids"
done
declare -A listener
for m in "${names[@]}"; do
  for _ in $(seq 200); do
    l=$($POLICYD status --config "$B/m/$m/policyd.toml" 2>/dev/null | sed -n 's/^listener: //p' || true)
    [ -n "$l" ] && break; sleep 0.05
  done
  [ -n "$l" ] || { log "policyd of $m did not start"; cat "$B/m/$m/policyd.log" >&2; exit 1; }
  listener[$m]=$l
done
$POLICYD promote --bundle "$B/bundles/1" --config "$B/m/m001/policyd.toml" >/dev/null
MASTER=$($POLICYD status --config "$B/m/m001/policyd.toml" | sed -n 's/^serving: //p')

addr=""
for m in "${names[@]}"; do addr+="$m = \"${listener[$m]}\", "; done
for m in "${names[@]}"; do
  cat >"$B/m/$m/agent.toml" <<EOF
member = "$m"
master = "$MASTER"
state_dir = "state"
node_key = "node/localhost.key"
trusted_root = "$D/root/1.root.toml"
root = "root"
EOF
done
printf '\n[push]\nkey = "%s"\naddresses = { %s }\n' "$D/keys/admin-alice.key" "${addr%, }" >>"$B/m/m001/agent.toml"
log "first run on every member"
for m in "${names[@]}"; do $AGENT run --config "$B/m/$m/agent.toml" >/dev/null; done

# ---- CFEngine side (set up as in bench/dist.sh) ----
CFCMDS=()
if command -v cf-serverd >/dev/null && command -v cf-runagent >/dev/null; then
  SRV=$CF/srv/wd CLI=$CF/cli/wd
  mkdir -p "$SRV" "$CLI"
  for wd in $SRV $CLI; do
    ln -s /usr/bin "$wd/bin"; CFENGINE_TEST_OVERRIDE_WORKDIR=$wd cf-key >/dev/null; mkdir -p "$wd/inputs"
  done
  CFENGINE_TEST_OVERRIDE_WORKDIR=$SRV cf-key -t "root@127.0.0.1:$CLI/ppkeys/localhost.pub" >/dev/null
  CFENGINE_TEST_OVERRIDE_WORKDIR=$CLI cf-key -t "root@127.0.0.1:$SRV/ppkeys/localhost.pub" >/dev/null
  cat >"$SRV/inputs/promises.cf" <<EOF
body common control { bundlesequence => { "main" }; }
bundle agent main { vars: "unused" string => "x"; }
body server control
{
  port => "$CFPORT";
  bindtointerface => "127.0.0.1";
  allowconnects => { "127.0.0.1" };
  allowallconnects => { "127.0.0.1" };
  allowusers => { "root" };
  cfruncommand => "$SRV/bin/cf-agent -K -w $SRV -f $CF/remote_target.cf";
}
bundle server access_rules
{
  access:
      "$SRV/bin/" admit_ips => { "127.0.0.1" };
  roles:
      ".*" authorize => { "root" };
}
EOF
  cat >"$CF/remote_target.cf" <<'EOF'
body common control { bundlesequence => { "main" }; }
bundle agent main { reports: "remote run ok"; }
EOF
  cat >"$CF/runagent.cf" <<EOF
body common control { bundlesequence => { "main" }; }
bundle agent main { vars: "unused" string => "x"; }
body runagent control { hosts => { "127.0.0.1:$CFPORT" }; }
EOF
  CFENGINE_TEST_OVERRIDE_WORKDIR=$SRV cf-serverd -F -K -f "$SRV/inputs/promises.cf" >"$CF/serverd.log" 2>&1 &
  echo $! >>"$B/pids"
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$CFPORT") 2>/dev/null && break; sleep 0.05; done
  out=$(env CFENGINE_TEST_OVERRIDE_WORKDIR="$CLI" cf-runagent -f "$CF/runagent.cf" -H "127.0.0.1:$CFPORT" 2>&1 || true)
  if printf '%s' "$out" | grep -q "remote run ok"; then
    CFCMDS=(-n runagent "env CFENGINE_TEST_OVERRIDE_WORKDIR=$CLI cf-runagent -f $CF/runagent.cf -H 127.0.0.1:$CFPORT"
            -n cf_local "$SRV/bin/cf-agent -K -w $SRV -f $CF/remote_target.cf")
  else
    log "cf-runagent did not work here; comparing with the baseline figures only: $out"
  fi
else
  log "CFEngine is not installed; comparing with the baseline figures only"
fi

# ---- correctness of one push before timing ----
$AGENT push --json --config "$B/m/m001/agent.toml" m002 >"$RES/push_check.jsonl"
grep -q '"result":"ok"' "$RES/push_check.jsonl" || { log "a push to m002 failed:"; cat "$RES/push_check.jsonl" >&2; exit 1; }

log "trigger: push vs local run vs cf-runagent ($RUNS runs each)"
hyperfine -N --style basic --runs "$RUNS" --warmup 2 --export-json "$RES/push_trigger.json" \
  -n push "$AGENT push --config $B/m/m001/agent.toml m002" \
  -n local "$AGENT run --config $B/m/m002/agent.toml" \
  "${CFCMDS[@]}" >"$RES/push_trigger.txt"

log "fanout: push --all to $N members ($RUNS runs)"
hyperfine -N --style basic --runs "$RUNS" --warmup 1 --export-json "$RES/push_fanout.json" \
  -n "push_all_$N" "$AGENT push --all --parallel $N --config $B/m/m001/agent.toml" >"$RES/push_fanout.txt"

tree 2
$POLICYD promote --bundle "$B/bundles/2" --config "$B/m/m001/policyd.toml" >/dev/null
t0=$(date +%s%N)
$AGENT push --all --parallel "$N" --json --config "$B/m/m001/agent.toml" >"$RES/push_converge.jsonl" || true
t1=$(date +%s%N)
CONVERGE_MS=$(( (t1 - t0) / 1000000 ))
ok=$(grep -c '"type":"push_member".*"result":"ok"\|"result":"ok".*"type":"push_member"' "$RES/push_converge.jsonl" || true)
changed=0
for m in "${names[@]}"; do [ "$(cat "$B/m/$m/root/etc/motd")" = "serial 2" ] && changed=$((changed + 1)); done

python3 - "$RES" "$N" "$CONVERGE_MS" "$ok" "$changed" <<'EOF'
import json, sys
res, n, conv, ok, changed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
def load(name):
    return {r["command"]: r for r in json.load(open(f"{res}/{name}.json"))["results"]}
t, f = load("push_trigger"), load("push_fanout")
ms = lambda r: r["median"] * 1e3
print("| scenario | runs | median ms | min | max |")
print("|---|---|---|---|---|")
for name, r in list(t.items()) + list(f.items()):
    print(f"| {name} | {len(r['times'])} | {ms(r):.1f} | {r['min']*1e3:.1f} | {r['max']*1e3:.1f} |")
ov = ms(t["push"]) - ms(t["local"])
print(f"\ntenet trigger overhead (push - local): {ov:.1f} ms; push/local = {ms(t['push'])/ms(t['local']):.2f}")
if "runagent" in t:
    cov = ms(t["runagent"]) - ms(t["cf_local"])
    print(f"cf3 trigger overhead (cf-runagent - cf-agent local), same run: {cov:.1f} ms")
    print(f"ratio tenet/cf3 overhead: {ov/cov:.2f}; push/cf-runagent round trip: {ms(t['push'])/ms(t['runagent']):.2f}")
else:
    print("cf3 baseline (CF3_BASELINE.md, not this run): overhead 166 - 55 = 111 ms")
    print(f"ratio tenet/cf3-baseline overhead: {ov/111:.2f}")
fa = f[f"push_all_{n}"]
print(f"\npush --all to {n} members, no-op runs: median {ms(fa):.0f} ms (target 2000 ms: {ms(fa)/2000:.2f} of it)")
print(f"push --all to {n} members after a new serial (fetch + converge), one run: {conv} ms; ok {ok}/{n}; members converged {changed}/{n}")
EOF
