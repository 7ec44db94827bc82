#!/usr/bin/env bash
# Server load on the policy server's serving port, on loopback:
#   1. new mutual-TLS polls per second (each poll: TCP connect, TLS 1.3 handshake
#      with both certificates checked, GET /v1/timestamp, close);
#   2. sequential requests on one HTTP/1.1 keep-alive connection (as an agent fetches);
#   3. memory of the daemon holding COUNT idle mutual-TLS connections.
#   bench/policyd_load.sh [SECONDS] [CONCURRENCY] [IDLE_COUNT]   (defaults 10 64 10000)
# Everything runs in a temporary directory; the daemon is stopped by PID on exit.
# POLICYD=PATH runs another build of the daemon (to compare two commits in one session).
set -euo pipefail
SECONDS_=${1:-10}
CONC=${2:-64}
IDLE=${3:-10000}
REPO=$(cd "$(dirname "$0")/.." && pwd)
W=$(mktemp -d /tmp/tenet-load.XXXXXX)
PID= IDLE_PID=
cleanup() {
  [ -n "$IDLE_PID" ] && kill "$IDLE_PID" 2>/dev/null || true
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
log() { printf '%s\n' "$*" >&2; }

log "building (release)"
(cd "$REPO" && cargo build -q --release -p tenet-keys -p tenet-policyd --bins \
  && cargo build -q --release -p tenet-policyd --example load)
T=$REPO/target/release
K=$T/tenet-keys P=${POLICYD:-$T/tenet-policyd} L=$T/examples/load

# A deployment, one enrolled member (the load client), a signed bundle.
"$K" init "$W/dep" >/dev/null
ID=$("$K" node-key --out "$W/member" | grep -o '[0-9a-f]\{64\}' | head -1)
"$K" enroll "$W/dep" --member alpha --key-id "$ID" >/dev/null
"$K" sign "$REPO/policies/examples/dce-cluster" --deployment "$W/dep" --out "$W/bundle" >/dev/null 2>&1
"$K" node-key --out "$W/node" >/dev/null
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
LISTEN=$(free_port) SERVE=$(free_port)
cat >"$W/policyd.toml" <<TOML
member = "gamma"
state_dir = "$W/state"
node_key = "$W/node/localhost.key"
trusted_root = "$W/dep/root/1.root.toml"
[listener]
listen = "127.0.0.1:$LISTEN"
[serve]
listen = "127.0.0.1:$SERVE"
timestamp_key = "$W/dep/keys/timestamp.key"
server_key = "$W/dep/keys/server-tls.key"
[metrics]
listen = "off"
[limits]
max_connections = $((IDLE + 1000))
handshake_timeout = "30s"
idle_timeout = "10m"
TOML
# Each process holds one descriptor per connection; raise the soft limit to the hard one.
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -gt $((IDLE + 100)) ] || { log "open-file limit $(ulimit -n) is too low for $IDLE connections"; exit 2; }
"$P" serve --config "$W/policyd.toml" 2>"$W/policyd.log" &
PID=$!
deadline=$((SECONDS + 20))
until "$P" status --config "$W/policyd.toml" >/dev/null 2>&1; [ $? -eq 7 ]; do
  [ $SECONDS -lt $deadline ] || { log "policyd did not start:"; cat "$W/policyd.log" >&2; exit 1; }
  kill -0 "$PID" || { log "policyd exited:"; cat "$W/policyd.log" >&2; exit 1; }
  sleep 0.1
done
"$P" promote --config "$W/policyd.toml" --bundle "$W/bundle" >/dev/null
rss() { awk '/^VmRSS/{print $2}' "/proc/$PID/status"; }
hwm() { awk '/^VmHWM/{print $2}' "/proc/$PID/status"; }

log "polls: $SECONDS_ s, $CONC concurrent clients"
POLL=$("$L" poll "$W/member/localhost.key" "$W/dep/root/1.root.toml" "127.0.0.1:$SERVE" "$SECONDS_" "$CONC") || { log "$POLL"; cat "$W/policyd.log" >&2; exit 1; }
echo "new mutual-TLS polls: $POLL (policyd VmHWM $(hwm) KB)"

log "sequential: 20000 requests on one keep-alive connection"
SEQ=$("$L" seq "$W/member/localhost.key" "$W/dep/root/1.root.toml" "127.0.0.1:$SERVE" 20000) || { log "$SEQ"; cat "$W/policyd.log" >&2; exit 1; }
echo "keep-alive requests: $SEQ"

log "idle: $IDLE connections"
BEFORE=$(rss)
mkfifo "$W/hold"
"$L" idle "$W/member/localhost.key" "$W/dep/root/1.root.toml" "127.0.0.1:$SERVE" "$IDLE" <"$W/hold" >"$W/idle.out" 2>&1 &
IDLE_PID=$!
exec 3>"$W/hold"
deadline=$((SECONDS + 300))
until grep -q "idle $IDLE ready" "$W/idle.out"; do
  [ $SECONDS -lt $deadline ] || { log "idle connections not ready"; cat "$W/idle.out" >&2; exit 1; }
  kill -0 "$IDLE_PID" 2>/dev/null || { log "load client failed:"; cat "$W/idle.out" >&2; exit 1; }
  sleep 0.2
done
HELD=$(rss)
# Every connection must still be open on the server's side when memory is read.
OPEN=$(ss -Htn state established "( sport = :$SERVE )" 2>/dev/null | wc -l)
echo "idle connections: $IDLE held ($OPEN established at the server); policyd VmRSS $BEFORE KB before, $HELD KB holding them ($(( (HELD - BEFORE) * 1024 / IDLE )) bytes each); VmHWM $(hwm) KB"
exec 3>&-
wait "$IDLE_PID" || true
IDLE_PID=
