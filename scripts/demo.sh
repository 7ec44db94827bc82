#!/usr/bin/env bash
# The whole loop on one machine, with nothing to configure:
#   a throwaway deployment (root, policy, timestamp and server keys), three members
#   (alpha, beta, gamma) with their own keys enrolled, the shipped dce-cluster
#   example signed, a tenet-policyd promoted on loopback, and each member's
#   `tenet-agent run` fetching, verifying and converging its own sandbox root.
# Then the policy server stops and the members run again from their caches, and
# beta takes over the dce package: its failover plan runs from beta's cache.
# Everything lives in one temporary directory, removed at the end; the daemon is
# stopped by PID. Nothing outside the temporary directory is touched.
#   scripts/demo.sh [--keep]
set -euo pipefail
KEEP=${1:-}
REPO=$(cd "$(dirname "$0")/.." && pwd)
W=$(mktemp -d /tmp/tenet-demo.XXXXXX)
PID=
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
  if [ "$KEEP" = --keep ]; then echo "kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
say() { printf '\n== %s\n' "$*"; }

echo "building tenet (release; the first build takes a few minutes)"
(cd "$REPO" && cargo build -q --release -p tenet-keys -p tenet-policyd -p tenet-agent --bins)
T=$REPO/target/release
K=$T/tenet-keys P=$T/tenet-policyd A=$T/tenet-agent

say "a new deployment: root (2 of 3), policy, timestamp and server keys"
"$K" init "$W/deployment" | sed 's/^/   /'

say "three members: each makes its key, the administrator enrols it"
for m in alpha beta gamma; do
  id=$("$K" node-key --out "$W/$m/state" | grep -o '[0-9a-f]\{64\}' | head -1)
  "$K" enroll "$W/deployment" --member "$m" --key-id "$id" | sed 's/^/   /'
done

say "sign the shipped dce-cluster example"
"$K" sign "$REPO/policies/examples/dce-cluster" --deployment "$W/deployment" --out "$W/package/bundle" | sed 's/^/   /'

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SERVE=$(free_port) LISTEN=$(free_port)
"$K" node-key --out "$W/master" >/dev/null
cat >"$W/policyd.toml" <<TOML
member = "gamma"
state_dir = "$W/master/state"
node_key = "$W/master/localhost.key"
trusted_root = "$W/deployment/root/1.root.toml"
[listener]
listen = "127.0.0.1:$LISTEN"
[serve]
listen = "127.0.0.1:$SERVE"
timestamp_key = "$W/deployment/keys/timestamp.key"
server_key = "$W/deployment/keys/server-tls.key"
[metrics]
listen = "off"
TOML
say "tenet-policyd: start the listener, then promote it as the HA engine would"
"$P" serve --config "$W/policyd.toml" 2>"$W/policyd.log" &
PID=$!
for _ in $(seq 100); do
  code=0; "$P" status --config "$W/policyd.toml" >/dev/null 2>&1 || code=$?
  [ "$code" = 7 ] && break
  kill -0 "$PID" 2>/dev/null || { cat "$W/policyd.log"; exit 1; }
  sleep 0.1
done
"$P" promote --config "$W/policyd.toml" --bundle "$W/package/bundle" | sed 's/^/   /'
"$P" status --config "$W/policyd.toml" | sed 's/^/   /' || true

for m in alpha beta gamma; do
  mkdir -p "$W/$m/root/etc"
  printf 'ssh\t\t22/tcp\n' >"$W/$m/root/etc/services"
  cat >"$W/$m/agent.toml" <<TOML
member = "$m"
master = "127.0.0.1:$SERVE"
state_dir = "$W/$m/state"
trusted_root = "$W/deployment/root/1.root.toml"
root = "$W/$m/root"
TOML
done

run_all() {
  for m in alpha beta gamma; do
    echo "-- $m"
    code=0; "$A" run --config "$W/$m/agent.toml" 2>&1 | sed 's/^/   /' || code=$?
    # 10: the master was unreachable and the member converged from its cache.
    [ "$code" = 0 ] || echo "   (exit $code)"
  done
}
say "each member fetches, verifies and converges its sandbox"
run_all
say "a second run: nothing to do"
run_all
say "the master goes away: members keep their configuration from the cache"
kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
run_all

say "alpha fails; beta takes over the dce package and runs its failover plan from its cache"
# Stand-ins for DCE's start programs in beta's sandbox, and the owner's stale files.
mkdir -p "$W/beta/root/usr/bin" "$W/beta/root/opt/dcelocal/var/dced" "$W/beta/root/opt/dcelocal/var/security/creds"
for p in start.dce start.dfs; do
  printf '#!/bin/sh\necho "%s ran"\n' "$p" >"$W/beta/root/usr/bin/$p"
  chmod 755 "$W/beta/root/usr/bin/$p"
done
: >"$W/beta/root/opt/dcelocal/var/dced/Ep.db"
"$A" plan simulate --config "$W/beta/agent.toml" --member beta --event package-start:dce --holds dce 2>&1 | sed 's/^/   /'
echo "   --"
"$A" event package-start dce --id demo-takeover-1 --config "$W/beta/agent.toml" 2>&1 | sed 's/^/   /'
say "the HA engine reports the same event again: it is not run twice"
"$A" event package-start dce --id demo-takeover-1 --config "$W/beta/agent.toml" 2>&1 | sed 's/^/   /'
echo
echo "alpha's /etc/services now ends with: $(tail -1 "$W/alpha/root/etc/services")"
