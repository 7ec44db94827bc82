#!/usr/bin/env bash
# Regenerates fuzz/seeds/: a small corpus of valid inputs for each fuzz target, made
# from the shipped example trees and a throwaway deployment (tenet-keys init, the
# dce-cluster example signed and timestamped) in a temporary directory. The seeds are
# committed; run this again when a document format changes.
#   fuzz/seeds.sh
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
S=$REPO/fuzz/seeds
W=$(mktemp -d /tmp/tenet-fuzz-seeds.XXXXXX)
trap 'rm -rf "$W"' EXIT

(cd "$REPO" && cargo build -q --locked -p tenet-keys --bin tenet-keys)
K=${CARGO_TARGET_DIR:-$REPO/target}/debug/tenet-keys

rm -rf "$S"
mkdir -p "$S"/{root,manifest,timestamp,runreq,policy,agent_config,policyd_config}

# policy: a tree is cluster.toml, then NUL, "path\n", bytes for each further file.
tree() {
  local dir=$1 first=1 rel
  cat "$dir/cluster.toml"
  (cd "$dir" && find . -type f ! -name cluster.toml | sed 's#^\./##' | sort) | while read -r rel; do
    printf '\0%s\n' "$rel"
    cat "$dir/$rel"
  done
}
for ex in dce-cluster nfs-cluster; do
  tree "$REPO/policies/examples/$ex" >"$S/policy/$ex"
  for f in "$REPO/policies/examples/$ex"/*.toml; do
    cp "$f" "$S/policy/$ex-$(basename "$f")"
  done
done

# root, manifest, timestamp: a real deployment and bundle.
"$K" init "$W/deploy" >/dev/null
for m in alpha beta gamma; do
  id=$("$K" node-key --out "$W/$m" | grep -o '[0-9a-f]\{64\}' | head -1)
  "$K" enroll "$W/deploy" --member "$m" --key-id "$id" >/dev/null
done
"$K" admin-key "$W/deploy" alice --member '*' --class 'maint_*' >/dev/null
"$K" root-next "$W/deploy" >/dev/null
"$K" sign "$REPO/policies/examples/dce-cluster" --deployment "$W/deploy" --out "$W/bundle" >/dev/null
"$K" timestamp "$W/bundle" --key "$W/deploy/keys/timestamp.key" >/dev/null
cp "$W/deploy/root/1.root.toml" "$S/root/root.toml"
cp "$W/deploy/root/1.root.toml.sig" "$S/root/root.toml.sig"
# The root target splits its input at NUL into a document and its signatures.
{ cat "$W/deploy/root/1.root.toml"; printf '\0'; cat "$W/deploy/root/1.root.toml.sig"; } >"$S/root/bootstrap"
cp "$W/deploy/root/2.root.toml" "$S/root/root-next.toml"
cp "$W/bundle/manifest.toml" "$S/manifest/manifest.toml"
cp "$W/bundle/manifest.toml.sig" "$S/manifest/manifest.toml.sig"
cp "$W/bundle/timestamp.toml" "$S/timestamp/timestamp.toml"
cp "$W/bundle/timestamp.toml.sig" "$S/timestamp/timestamp.toml.sig"

# runreq: requests the target's fixed root accepts (deployment, member alpha, issued
# at the target's clock), and a signature header.
req() {
  cat <<TOML
schema = 1
kind = "runreq"
deployment = "1f63766877b11c62791bb77c0ea94006"
member = "alpha"
nonce = "5be0a4f1c2d3e4f5a6b7c8d9e0f1a2b3"
issued = 2026-11-21T22:10:00Z
expires = 2026-11-21T22:15:00Z
dry_run = $1
classes = [$2]
TOML
}
req false '"maint_restart"' >"$S/runreq/apply"
req true '' >"$S/runreq/dry-run"
printf '%064x:%0128x\n' 1 2 >"$S/runreq/header"

cat >"$S/agent_config/readme" <<'TOML'
member = "alpha"
master = "tenet-master.example.com:8741"     # the policyd package's relocatable name
trusted_root = "/etc/tenet/root.toml"        # root v1 from enrolment, root.toml.sig beside it
TOML
cat >"$S/agent_config/full" <<'TOML'
member = "beta"
master = "[fd00::1]:8741"
trusted_root = "root.toml"
state_dir = "/var/lib/tenet"
node_key = "/var/lib/tenet/localhost.key"
root = "/"
connect_timeout = "5s"

[push]
key = "/root/.tenet/admin-alice.key"
port = 8740
addresses = { alpha = "192.0.2.1", beta = "2001:db8::2" }
TOML

cat >"$S/policyd_config/full" <<'TOML'
member = "alpha"
state_dir = "/var/lib/tenet/policyd"
node_key = "/var/lib/tenet/ppkeys/localhost.key"
trusted_root = "/var/lib/tenet/trust/root.toml"

[listener]
listen = "0.0.0.0:8740"

[serve]
listen = "0.0.0.0:8741"
timestamp_key = "/srv/tenet/keys/timestamp.key"
server_key = "/srv/tenet/keys/server-tls.key"
timestamp_ttl = "6h"
watch_interval = "10s"

[run]
agent = "/usr/bin/tenet-agent"
agent_config = "/etc/tenet/agent.toml"
agent_state = "/var/lib/tenet"
timeout = "10m"
max_skew = "2m"

[metrics]
listen = "127.0.0.1:8742"

[limits]
max_connections = 256
handshake_timeout = "10s"
header_read_timeout = "10s"
idle_timeout = "60s"
max_header_bytes = 16384
h2_max_concurrent_streams = 16
drain_timeout = "10s"
TOML
cat >"$S/policyd_config/minimal" <<'TOML'
member = "gamma"
state_dir = "state"
node_key = "localhost.key"
trusted_root = "root.toml"
[metrics]
listen = "off"
TOML

find "$S" -type f | sort | xargs wc -c | tail -1
