#!/usr/bin/env bash
# Fleet benchmark: N simulated members (tests/examples/fleet.rs) against one
# tenet-policyd on loopback, serving the distribution tree (bench/dist_gen.py:
# 10,000 files of 198 bytes, 10 of 1 MiB; one [[file]] promise each).
#
#   bench/fleet.sh [MEMBERS] [INTERVAL]       defaults 10000 60 (seconds)
#
# Each member has its own enrolled node key and its own source address (127.1.x.y),
# polls every INTERVAL seconds (member i first at INTERVAL*i/MEMBERS) and does what
# tenet-agent run does on the wire: a new pinned mutual-TLS connection, roots,
# timestamp, and when new, the manifest and the missing blobs (each hashed).
# Serial 1 is promoted first; every member starts holding it (verified once from the
# signed bundle), or with COLD=1 fetches it over the wire. After one interval of
# polling, serial 2 (one file changed) is promoted; the tool reports how long until
# every member held it, policyd's CPU (utime+stime) and peak memory (VmHWM), its own,
# and every failed poll by kind. Exit 0 only when every member holds serial 2 and no
# poll failed.
#   LIMITS=$'max_connections = 2048\nmax_handshakes = 512'   extra [limits] lines for policyd.toml
#   POLICYD=PATH                      another build of the daemon
# Everything runs in one temporary directory (on /dev/shm when writable), removed on
# exit; the daemon is stopped by PID. The report also goes to
# bench/results/fleet_MEMBERS.txt.
set -euo pipefail
N=${1:-10000}
INTERVAL=${2:-60}
case $N in ''|*[!0-9]*|0) echo "fleet.sh: MEMBERS must be a positive integer, got '$N'" >&2; exit 2;; esac
case $INTERVAL in ''|*[!0-9]*|0) echo "fleet.sh: INTERVAL must be a positive integer, got '$INTERVAL'" >&2; exit 2;; esac
REPO=$(cd "$(dirname "$0")/.." && pwd)
GEN="$REPO/bench/dist_gen.py"
RES="$REPO/bench/results"
TMPBASE=/tmp
[ -d /dev/shm ] && [ -w /dev/shm ] && TMPBASE=/dev/shm
W=$(mktemp -d "$TMPBASE/tenet-fleet.XXXXXX")
PID=
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
log() { printf '%s\n' "$*" >&2; }

log "building (release)"
(cd "$REPO" && cargo build -q --release -p tenet-keys -p tenet-policyd --bins \
  && cargo build -q --release -p tenet-tests --example fleet)
T=${CARGO_TARGET_DIR:-$REPO/target}/release
K=$T/tenet-keys P=${POLICYD:-$T/tenet-policyd} F=$T/examples/fleet

log "deployment with $N members"
"$F" setup "$W" "$N" >&2
log "generating the tree and signing serials 1 and 2"
mkdir -p "$W/tree/files"
python3 "$GEN" tree "$W/tree/files"
python3 "$GEN" policy "$W/tree/files" "$W/tree/dist.toml"
t0=$SECONDS
"$K" sign "$W/tree" --deployment "$W/deploy" --out "$W/b1" >/dev/null 2>&1
python3 "$GEN" mutate "$W/tree/files/s42/f04242" 1
"$K" sign "$W/tree" --deployment "$W/deploy" --out "$W/b2" >/dev/null 2>&1
log "signed in $((SECONDS - t0)) s; manifest $(wc -c <"$W/b1/manifest.toml") bytes"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
LISTEN=$(free_port) SERVE=$(free_port)
cat >"$W/policyd.toml" <<TOML
member = "srv"
state_dir = "$W/state"
node_key = "$W/srv/localhost.key"
trusted_root = "$W/deploy/root/1.root.toml"
[listener]
listen = "127.0.0.1:$LISTEN"
[serve]
listen = "127.0.0.1:$SERVE"
timestamp_key = "$W/deploy/keys/timestamp.key"
server_key = "$W/deploy/keys/server-tls.key"
[metrics]
listen = "off"
[limits]
${LIMITS:-}
TOML
# policyd and the tool each hold one descriptor per connection.
ulimit -n "$(ulimit -Hn)"
"$P" serve --config "$W/policyd.toml" 2>"$W/policyd.log" &
PID=$!
deadline=$((SECONDS + 20))
until code=0; "$P" status --config "$W/policyd.toml" >/dev/null 2>&1 || code=$?; [ "$code" = 7 ]; do
  [ $SECONDS -lt $deadline ] || { log "policyd did not start:"; cat "$W/policyd.log" >&2; exit 1; }
  kill -0 "$PID" || { log "policyd exited:"; cat "$W/policyd.log" >&2; exit 1; }
  sleep 0.1
done
"$P" promote --config "$W/policyd.toml" --bundle "$W/b1" >/dev/null

SEED=(--seed "$W/b1")
[ "${COLD:-0}" = 1 ] && SEED=()
mkdir -p "$RES"
OUT="$RES/fleet_$N.txt"
{
  echo "bench/fleet.sh $N $INTERVAL${COLD:+ (COLD=$COLD)}${LIMITS:+ (LIMITS='${LIMITS//$'\n'/; }')}"
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  commit: $(git -C "$REPO" rev-parse --short HEAD)"
  echo "machine: $(nproc) cores, $(awk '/MemTotal/{print $2" KB"}' /proc/meminfo); load before: $(cut -d' ' -f1-3 /proc/loadavg); compilers running: $(pgrep -c -x rustc || true)"
} | tee "$OUT"
log "running: $N members, interval $INTERVAL s"
rc=0
"$F" run "$W" "127.0.0.1:$SERVE" "$N" "$INTERVAL" "${SEED[@]}" --pid "$PID" -- \
  "$P" promote --config "$W/policyd.toml" --bundle "$W/b2" | tee -a "$OUT" || rc=$?
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg); compilers running: $(pgrep -c -x rustc || true)" | tee -a "$OUT"
if [ "$rc" != 0 ]; then
  log "policyd log (last 20 lines):"
  tail -20 "$W/policyd.log" >&2
fi
exit "$rc"
