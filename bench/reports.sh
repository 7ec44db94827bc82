#!/usr/bin/env bash
# Members' run reports on the master, on loopback: 10,000 members every 5 minutes is
# 33 reports a second.
#   bench/reports.sh [SECONDS] [RATE] [MEMBERS] [CEILING_THREADS]   (defaults 120 33 10000 8)
#   1. RATE reports a second for SECONDS, member after member, each on a new mutual-TLS
#      connection with that member's key (as an agent's run sends it);
#   2. while that runs, the status page (/) and one member's page every second: latency;
#   3. the ceiling: as many reports as CEILING_THREADS senders get through in 20 s;
#   then policyd's peak RSS (VmHWM) and the database's size.
# Everything runs in a temporary directory; the daemon is stopped by PID on exit.
set -euo pipefail
SECONDS_=${1:-120}
RATE=${2:-33}
MEMBERS=${3:-10000}
THREADS=${4:-8}
REPO=$(cd "$(dirname "$0")/.." && pwd)
W=$(mktemp -d /tmp/tenet-reports.XXXXXX)
PID= PAGE_PID=
cleanup() {
  [ -n "$PAGE_PID" ] && kill "$PAGE_PID" 2>/dev/null || true
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
log() { printf '%s\n' "$*" >&2; }

log "building (release)"
(cd "$REPO" && cargo build -q --release -p tenet-keys -p tenet-policyd --bins \
  && cargo build -q --release -p tenet-tests --example report_load)
T=$REPO/target/release
K=$T/tenet-keys P=$T/tenet-policyd L=$T/examples/report_load

log "deployment with $MEMBERS members"
"$K" init "$W/deploy" >/dev/null
"$K" node-key --out "$W/node" >/dev/null
"$L" setup "$W" "$MEMBERS" >&2
"$K" sign "$W/tree" --deployment "$W/deploy" --out "$W/bundle" >/dev/null
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
LISTEN=$(free_port) SERVE=$(free_port) PAGE=$(free_port)
cat >"$W/policyd.toml" <<TOML
member = "master"
state_dir = "$W/state"
node_key = "$W/node/localhost.key"
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
# Every sender is 127.0.0.1: lift the per-address caps a real fleet never meets.
max_connections_per_address = 256
max_handshakes_per_address = 64
[reports]
database = "$W/pkg/reports.db"
page = "127.0.0.1:$PAGE"
TOML
mkdir -p "$W/pkg"
"$P" serve --config "$W/policyd.toml" 2>"$W/policyd.log" &
PID=$!
deadline=$((SECONDS + 20))
until "$P" status --config "$W/policyd.toml" >/dev/null 2>&1; [ $? -eq 7 ]; do
  [ $SECONDS -lt $deadline ] || { log "policyd did not start:"; cat "$W/policyd.log" >&2; exit 1; }
  kill -0 "$PID" || { log "policyd exited:"; cat "$W/policyd.log" >&2; exit 1; }
  sleep 0.1
done
"$P" promote --config "$W/policyd.toml" --bundle "$W/bundle" >/dev/null
hwm() { awk '/^VmHWM/{print $2}' "/proc/$PID/status"; }
rss() { awk '/^VmRSS/{print $2}' "/proc/$PID/status"; }
log "policyd serving; RSS $(rss) KB"

# Every member reports once first, so the page lists them all.
log "filling: one report per member"
"$L" send "$W" "127.0.0.1:$SERVE" 1000 $(( MEMBERS / 1000 + 1 )) "$MEMBERS" >&2

echo "policyd VmHWM after one report per member: $(hwm) KB (RSS $(rss) KB)"
log "steady: $RATE reports/s for $SECONDS_ s, the page read every second meanwhile"
( while :; do
    "$L" page "127.0.0.1:$PAGE" / 1 >>"$W/page.txt" 2>&1 || true
    "$L" page "127.0.0.1:$PAGE" /member/m00042 1 >>"$W/member.txt" 2>&1 || true
    sleep 1
  done ) &
PAGE_PID=$!
STEADY=$("$L" send "$W" "127.0.0.1:$SERVE" "$RATE" "$SECONDS_" "$MEMBERS")
kill "$PAGE_PID" 2>/dev/null || true; wait "$PAGE_PID" 2>/dev/null || true; PAGE_PID=
echo "$STEADY"
echo "policyd VmHWM after the steady run: $(hwm) KB (RSS now $(rss) KB)"
lat() { grep -o 'p50 [0-9.]*ms' "$1" | awk '{print $2+0}' | sort -n | awk '{a[NR]=$1} END {print "reads " NR ", median " a[int((NR+1)/2)] " ms, max " a[NR] " ms"}'; }
echo "status page / during the run ($MEMBERS members): $(lat "$W/page.txt")"
echo "member page during the run: $(lat "$W/member.txt")"
"$L" page "127.0.0.1:$PAGE" / 20
"$L" page "127.0.0.1:$PAGE" /member/m00042 20

log "ceiling: $THREADS senders for 20 s"
"$L" ceiling "$W" "127.0.0.1:$SERVE" 20 "$THREADS" "$MEMBERS"
echo "policyd VmHWM at the end: $(hwm) KB"
echo "database: $(du -k "$W/pkg/reports.db" | cut -f1) KB ($(ls "$W/pkg"))"
