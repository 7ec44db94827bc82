#!/usr/bin/env bash
# tenet-policyd's peak RSS (VmHWM from /proc/PID/status) serving the distribution
# benchmark's bundle (bench/dist_gen.py: 10,000 files of 198 bytes and 10 of 1 MiB,
# one [[file]] promise each), read at four points:
#   1. promoted with serial 1;
#   2. after one member's full sync of serial 1 (tenet-agent run);
#   3. promoted with serial 2 (one file changed);
#   4. after the member's sync of serial 2.
# Then, when CFEngine is installed, cf-serverd's VmHWM serving the same tree to
# cf-agent (copy_from, compare => "digest", as bench/dist.sh): a full sync, then a
# sync after one more file changed. Both daemons are measured in the same run.
#   bench/policyd_rss.sh
# Everything runs in a temporary directory (bundles on /dev/shm when it exists);
# the daemon is stopped by its PID on exit. POLICYD=PATH measures another build of
# the daemon (to compare two commits in one session).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/cf3_copy.sh
. "$REPO/bench/cf3_copy.sh"
GEN="$REPO/bench/dist_gen.py"
TMPBASE=/tmp
[ -d /dev/shm ] && [ -w /dev/shm ] && TMPBASE=/dev/shm
W=$(mktemp -d "$TMPBASE/tenet-rss.XXXXXX")
PID= CFPID=
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
  [ -n "$CFPID" ] && kill "$CFPID" 2>/dev/null && wait "$CFPID" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
log() { printf '%s\n' "$*" >&2; }

log "building (release)"
(cd "$REPO" && cargo build -q --release -p tenet-keys -p tenet-policyd -p tenet-agent --bins)
T=$REPO/target/release
K=$T/tenet-keys P=${POLICYD:-$T/tenet-policyd} A=$T/tenet-agent

log "generating the tree and signing serials 1 and 2"
mkdir -p "$W/policy/files"
python3 "$GEN" tree "$W/policy/files"
python3 "$GEN" policy "$W/policy/files" "$W/policy/dist.toml"
cat >"$W/policy/cluster.toml" <<'TOML'
[cluster]
name = "dist"

[[member]]
name = "m1"
hostname = "m1.example.com"
addresses = [ { ip = "10.0.0.1", role = "boot" } ]

[[member]]
name = "srv"
hostname = "srv.example.com"
addresses = [ { ip = "10.0.0.2", role = "boot" } ]
TOML
"$K" init "$W/dep" >/dev/null
ID=$("$K" node-key --out "$W/m1/key" | grep -o '[0-9a-f]\{64\}' | head -1)
"$K" enroll "$W/dep" --member m1 --key-id "$ID" >/dev/null
"$K" node-key --out "$W/srv" >/dev/null
"$K" sign "$W/policy" --deployment "$W/dep" --out "$W/b1" >/dev/null 2>&1
python3 "$GEN" mutate "$W/policy/files/s42/f04242" 1
"$K" sign "$W/policy" --deployment "$W/dep" --out "$W/b2" >/dev/null 2>&1
FILES=$(grep -c "^\[\[file\]\]" "$W/b1/manifest.toml" || true)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
LISTEN=$(free_port) SERVE=$(free_port)
cat >"$W/policyd.toml" <<TOML
member = "srv"
state_dir = "$W/srv/state"
node_key = "$W/srv/localhost.key"
trusted_root = "$W/dep/root/1.root.toml"
[listener]
listen = "127.0.0.1:$LISTEN"
[serve]
listen = "127.0.0.1:$SERVE"
timestamp_key = "$W/dep/keys/timestamp.key"
server_key = "$W/dep/keys/server-tls.key"
[metrics]
listen = "off"
[reports]
page = "off"
TOML
cat >"$W/m1/agent.toml" <<TOML
member = "m1"
master = "127.0.0.1:$SERVE"
state_dir = "$W/m1/state"
node_key = "$W/m1/key/localhost.key"
trusted_root = "$W/dep/root/1.root.toml"
root = "$W/m1/root"
TOML
mkdir -p "$W/m1/root"

"$P" serve --config "$W/policyd.toml" 2>"$W/policyd.log" &
PID=$!
deadline=$((SECONDS + 20))
until code=0; "$P" status --config "$W/policyd.toml" >/dev/null 2>&1 || code=$?; [ "$code" = 7 ]; do
  [ $SECONDS -lt $deadline ] || { log "policyd did not start:"; cat "$W/policyd.log" >&2; exit 1; }
  kill -0 "$PID" || { log "policyd exited:"; cat "$W/policyd.log" >&2; exit 1; }
  sleep 0.1
done
kb() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/${2:-$PID}/status"; }
report() { printf '%-44s VmHWM %7s KB   VmRSS %7s KB\n' "$1" "$(kb VmHWM "${2:-}")" "$(kb VmRSS "${2:-}")"; }

echo "tenet-policyd serving the distribution bundle ($FILES manifest entries)"
report "started, standby"
"$P" promote --config "$W/policyd.toml" --bundle "$W/b1" >/dev/null
report "1. promoted, serial 1"
"$A" run --config "$W/m1/agent.toml" >"$W/run1.txt" 2>&1 || { cat "$W/run1.txt" >&2; exit 1; }
report "2. after a member's full sync of serial 1"
"$P" promote --config "$W/policyd.toml" --bundle "$W/b2" >/dev/null
report "3. promoted, serial 2 (one file changed)"
"$A" run --config "$W/m1/agent.toml" >"$W/run2.txt" 2>&1 || { cat "$W/run2.txt" >&2; exit 1; }
report "4. after the member's sync of serial 2"

command -v cf-serverd >/dev/null && command -v cf-agent >/dev/null || {
  log "cf-serverd or cf-agent not installed: no CFEngine figure"
  exit 0
}
CF=$W/cf3 CFPORT=$(free_port)
SRV=$CF/srv CLI=$CF/cli DST=$CF/dst TREE=$W/policy/files
cf3_copy_setup "$SRV" "$CLI" "$CFPORT" "$TREE" "$DST"
CFENGINE_TEST_OVERRIDE_WORKDIR=$SRV cf-serverd -F -K -f "$SRV/inputs/promises.cf" >"$CF/serverd.log" 2>&1 &
CFPID=$!
deadline=$((SECONDS + 20))
until python3 -c "import socket; socket.create_connection(('127.0.0.1', $CFPORT), 1)" 2>/dev/null; do
  [ $SECONDS -lt $deadline ] || { log "cf-serverd did not start:"; cat "$CF/serverd.log" >&2; exit 1; }
  kill -0 "$CFPID" || { log "cf-serverd exited:"; cat "$CF/serverd.log" >&2; exit 1; }
  sleep 0.1
done
cfrun() {
  CFENGINE_TEST_OVERRIDE_WORKDIR=$CLI cf-agent -K -w "$CLI" >"$CF/$1.txt" 2>&1 || { cat "$CF/$1.txt" >&2; exit 1; }
}
echo "cf-serverd serving the same tree to cf-agent (copy_from, compare => digest)"
report "started" "$CFPID"
cfrun run1
diff -rq "$TREE" "$DST" >&2 || { log "cf-agent's copy differs from the tree"; exit 1; }
report "1. after cf-agent's full sync" "$CFPID"
python3 "$GEN" mutate "$TREE/s43/f04343" 2
cfrun run2
cmp "$TREE/s43/f04343" "$DST/s43/f04343" >&2 || { log "cf-agent did not copy the changed file"; exit 1; }
report "2. after cf-agent's sync of one changed file" "$CFPID"
