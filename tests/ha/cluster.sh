#!/bin/bash
# tests/ha/cluster.sh -- tenet's policy server as a Pacemaker package on a REAL
# 3-node Pacemaker 2.1 + Corosync 3 cluster with STONITH, on this one machine.
#
# Each node is its own network + mount + UTS namespace (hostname nodeN, 10.213.X.1N on
# eth0), plugged into a bridge that lives in a namespace of its own; a client namespace
# (10.213.X.50) sits on the same bridge. Nothing is connected to the root namespace or
# routed off the machine. Per node, the harness starts corosync, pacemakerd and a
# `tenet-policyd serve` listener inside the node's namespaces. The cluster runs the
# group tenet-master = IPaddr2 VIP (10.213.X.100) + ocf:tenet:policyd, and fences with
# the test-only agent fence_tenet_netns.
#
# A second group, dce = IPaddr2 (10.213.X.101) + ocf:tenet:package package=dce, runs the
# DCE plans of tests/ha/policy/plans.toml (`dce-up`): each node's sandbox has
# tests/ha/fake-dce as /usr/bin/start.dce, start.dfs, stop.dfs and stop.dce, logging to
# sandbox/var/log/dce.log.
#
# The "package filesystem" is STATE/pkg, bind-mounted at /run/tenet/pkg in every node
# (shared storage mounted everywhere, not moved): it holds bundle -> bundles/N and the
# online keys. Each node sees its own STATE/nN at /run/tenet/node (policyd.toml,
# agent.toml, node key, root, state, the agent's sandbox root `sandbox`) and a private
# /etc/hosts naming the VIP `tenet-master`; agents name the master tenet-master:8741.
#
# usage: cluster.sh up | down | status | env
#                   | publish SERIAL [OUT]     sign STATE/policy (tests/ha/policy, copied by `up`) as
#                                              SERIAL into pkg/bundles/SERIAL (or into OUT) and
#                                              flip pkg/bundle to it (not with OUT)
#                   | grow                     node4 joins the running cluster: the membership
#                                              alert (packaging/pacemaker/tenet-members-alert)
#                                              in the CIB, node4 in every corosync.conf, one
#                                              `corosync-cfgtool -R`, corosync and pacemakerd
#                                              on node4; no tenet key or listener there yet
#                                              (it joins with `tenet-agent join`; then `listener 4`)
#                   | agent N [ARGS]           tenet-agent run --json in node N (agent.toml there)
#                   | listener N               start node N's tenet-policyd listener if it is not running
#                   | active                   the node holding the VIP
#                   | failover crash|standby|app   fault the active node; wait until the group runs
#                                              elsewhere and the bundle is fetched over the VIP; print times
#                   | fault crash|standby|app  only the fault (prints the node); then `wait-moved FROM T0`
#                   | wait-moved FROM T0_MS    wait as failover does, print RESULT
#                   | recover FROM MODE        rejoin / unstandby / restart listener + cleanup
#                   | exec N CMD...            run CMD in node N's namespaces
#                   | dce-up                   the DCE package: seed every sandbox (fake
#                                              /usr/bin/start.dce..., Ep.db, creds), cache the
#                                              bundle, add group dce (VIP 10.213.X.101 +
#                                              ocf:tenet:package package=dce); print its node
#                   | dce-node                 the node holding the dce VIP
#                   | dce-seed N               a stale Ep.db and creds/* in node N's sandbox
#                   | dce-failover crash|standby   fault the dce node; wait for start.dfs on the
#                                              takeover node; print RESULT ... dce_takeover_ms=
#                   | dce-refresh              re-probe dce-pkg everywhere; wait for every probe
#   env: PFX (namespace prefix; `up` picks tn$$ when unset and prints it; every later
#        command needs the same PFX), STATE (default /var/tmp/tenet-ha-$PFX),
#        TENET_BIN (default REPO/target/debug), TOKEN (corosync token ms, default 1000).
#
# Installs, for the run only: /usr/sbin/fence_tenet_netns and
# /usr/lib/ocf/resource.d/tenet/{policyd,package} (removed by `down` once no run uses them).
# `down` kills every process of the run by PID (ip netns pids), deletes the namespaces
# and STATE; it is idempotent. Needs root, iproute2, util-linux, pacemaker, corosync,
# resource-agents.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CMD=${1:-}
if [ -z "${PFX:-}" ]; then
	if [ "$CMD" = up ]; then PFX=tn$$; else
		echo "cluster.sh: set PFX to the prefix \`up\` printed" >&2
		exit 2
	fi
fi
STATE=${STATE:-/var/tmp/tenet-ha-$PFX}
TENET_BIN=${TENET_BIN:-$REPO/target/debug}
# Each node mounts a private /tmp, which hides binaries built in a checkout under
# /tmp: `up` copies them to $STATE/bin, and every command after it runs those.
[ -x "$STATE/bin/tenet-agent" ] && TENET_BIN=$STATE/bin
TOKEN=${TOKEN:-1000}
# 3 nodes; `grow` adds node4 (member node4) to the running cluster.
NODES=$(cat "$STATE/node-count" 2>/dev/null || echo 3)
BRNS=$PFX-br
CLNS=$PFX-cl
GROUP=tenet-master
OCF_DIR=/usr/lib/ocf/resource.d/tenet
FENCE=/usr/sbin/fence_tenet_netns
USERS=/run/tenet-ha-users
MEMBERS=(none alpha beta gamma node4)

log() { printf '%s %s\n' "$(date +%T.%3N)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now_ms() { date +%s%3N; }
ns_of() { echo "$PFX-n$1"; }
holder() { cat "$STATE/n$1/holder.pid" 2>/dev/null; }
nx() { local n=$1; shift; nsenter -t "$(holder "$n")" -n -m -u -- "$@"; }
net() { cat "$STATE/net"; }
vip() { echo "$(net).100"; }
dce_vip() { echo "$(net).101"; }
P() { "$TENET_BIN/tenet-policyd" "$@"; }
K() { "$TENET_BIN/tenet-keys" "$@"; }

# 10.213.X.0/24: X from our pid, moved on while any existing namespace uses it (the
# fence agent and the tests look addresses up, so runs must not share a subnet).
pick_net() {
	local x=$(( ($$ % 200) + 20 )) tries ns used
	for tries in $(seq 1 200); do
		used=0
		for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
			ip -n "$ns" -o -4 addr show 2>/dev/null | grep " 10\.213\.$x\." >/dev/null && { used=1; break; }
		done
		[ $used = 0 ] && { echo "10.213.$x"; return 0; }
		x=$(( (x - 19) % 200 + 20 ))
	done
	return 1
}

corosync_conf() {
	local i
	cat <<EOF
totem {
    version: 2
    cluster_name: tenet-$PFX
    transport: knet
    crypto_cipher: none
    crypto_hash: none
    token: $TOKEN
}
logging {
    to_stderr: no
    to_logfile: yes
    logfile: /var/log/corosync/corosync.log
    to_syslog: no
    timestamp: hires
}
quorum {
    provider: corosync_votequorum
}
nodelist {
EOF
	for i in $(seq 1 $NODES); do
		printf '    node {\n        name: node%s\n        nodeid: %s\n        ring0_addr: %s.%s\n    }\n' "$i" "$i" "$(net)" $((10 + i))
	done
	echo "}"
}

link_ns() { # link_ns NS VETH ADDR: a namespace on the bridge
	ip netns add "$1" || return 1
	ip -n "$BRNS" link add "$2" type veth peer name eth0 netns "$1" || return 1
	ip -n "$BRNS" link set "$2" master br0 up
	ip -n "$1" link set lo up
	ip -n "$1" addr add "$3/24" dev eth0
	ip -n "$1" link set eth0 up
}

# The node's files that live outside its namespaces (they survive a crash).
node_files() {
	local i=$1 d=$STATE/n$1 m=${MEMBERS[$1]}
	mkdir -p "$d/policyd-state" "$d/agent-state" "$d/sandbox/etc"
	chmod 700 "$d/policyd-state" "$d/agent-state"
	# A member that joins (node4) makes its key with `tenet-agent join`.
	[ -e "$STATE/nodes/$m/localhost.key" ] && install -m 600 "$STATE/nodes/$m/localhost.key" "$d/node.key"
	cp "$STATE/deploy/root/1.root.toml" "$d/root.toml"
	cp "$STATE/deploy/root/1.root.toml.sig" "$d/root.toml.sig"
	printf '127.0.0.1 localhost\n%s.%s node%s\n%s tenet-master\n' "$(net)" $((10 + i)) "$i" "$(vip)" >"$d/hosts"
	cat >"$d/policyd.toml" <<EOF
# node$i ($m); relative paths resolve in /run/tenet/node (this directory)
member = "$m"
state_dir = "policyd-state"
node_key = "node.key"
trusted_root = "root.toml"
[listener]
listen = "0.0.0.0:8740"
[serve]
listen = "0.0.0.0:8741"
timestamp_key = "/run/tenet/pkg/keys/timestamp.key"
server_key = "/run/tenet/pkg/keys/server-tls.key"
watch_interval = "200ms"
join_dir = "/run/tenet/pkg/join"
[metrics]
listen = "127.0.0.1:8742"
[limits]
drain_timeout = "1s"
[run]
# the root this node's agent verified last (a join token's admin key is checked there)
agent_state = "agent-state"
EOF
	[ -e "$d/agent.toml" ] || agent_toml "$i" tenet-master:8741
}

agent_toml() { # agent_toml N MASTER
	cat >"$STATE/n$1/agent.toml" <<EOF
member = "${MEMBERS[$1]}"
master = "$2"
state_dir = "agent-state"
node_key = "node.key"
trusted_root = "root.toml"
root = "sandbox"
connect_timeout = "2s"
EOF
}

node_up() {
	local i=$1 d=$STATE/n$1 r
	r=$d/root
	rm -rf "$r" && mkdir -p "$r"/{etc-corosync,lib-corosync,lib-pacemaker,log-pacemaker,log-corosync,tmp}
	cp -a /etc/corosync/. "$r/etc-corosync/"
	cp -a /var/lib/pacemaker/. "$r/lib-pacemaker/"
	chown hacluster:haclient "$r/log-pacemaker"
	chmod 1777 "$r/tmp"
	corosync_conf >"$r/etc-corosync/corosync.conf"
	if [ -e "$STATE/cib.xml" ]; then
		install -o hacluster -g haclient -m 600 "$STATE/cib.xml" "$r/lib-pacemaker/cib/cib.xml"
	fi
	node_files "$i"
	# Each start of the node is a boot: a new boot id beneath the agent's root, so the
	# packages it had started before a crash count as not running here any more.
	mkdir -p "$d/sandbox/proc/sys/kernel/random" &&
		cat /proc/sys/kernel/random/uuid >"$d/sandbox/proc/sys/kernel/random/boot_id"
	# The holder owns the node's mount and UTS namespaces (the netns is named).
	ip netns exec "$(ns_of "$i")" unshare -m -u --propagation private /bin/sh -c "
		hostname node$i
		mount -t tmpfs -o mode=755 tmpfs /run
		mkdir -p /run/crm /run/resource-agents /run/lock /run/tenet/pkg /run/tenet/node
		chown hacluster:haclient /run/crm
		mount -t tmpfs -o mode=1777 tmpfs /dev/shm
		mount --bind $r/etc-corosync  /etc/corosync
		mount --bind $r/lib-corosync  /var/lib/corosync
		mount --bind $r/lib-pacemaker /var/lib/pacemaker
		mount --bind $r/log-pacemaker /var/log/pacemaker
		mount --bind $r/log-corosync  /var/log/corosync
		mount --bind $r/tmp           /tmp
		mount --bind $d/hosts         /etc/hosts
		mount --bind $STATE/pkg       /run/tenet/pkg
		mount --bind $d               /run/tenet/node
		echo ready > $d/holder.ready
		exec sleep infinity" </dev/null >"$d/holder.log" 2>&1 &
	echo $! >"$d/holder.pid"
	disown
	local t0; t0=$(now_ms)
	until [ -e "$d/holder.ready" ]; do
		[ $(( $(now_ms) - t0 )) -lt 5000 ] || die "node$i: namespaces not ready: $(cat "$d/holder.log")"
		sleep 0.02
	done
	rm -f "$d/holder.ready"
	nx "$i" corosync || die "corosync failed on node$i"
	nx "$i" env PCMK_logfile=/var/log/pacemaker/pacemaker.log PCMK_logfacility=none \
		setsid pacemakerd </dev/null >"$d/pacemakerd.out" 2>&1 &
	disown
	if [ -e "$d/node.key" ]; then listener_up "$i" || return 1; fi
	log "node$i up (holder $(holder "$i"), listener $(cat "$d/listener.pid"))"
}

# Starts node N's tenet-policyd listener in its namespaces unless one answers.
listener_up() {
	local i=$1 d=$STATE/n$1 t0 rc
	P status --config "$d/policyd.toml" >/dev/null 2>&1
	rc=$?
	[ $rc = 0 ] || [ $rc = 7 ] && return 0
	nx "$i" setsid "$TENET_BIN/tenet-policyd" serve --config /run/tenet/node/policyd.toml \
		</dev/null >>"$d/policyd.log" 2>&1 &
	disown
	t0=$(now_ms)
	while :; do
		P status --config "$d/policyd.toml" >"$d/listener.status" 2>&1
		rc=$?
		if [ $rc = 0 ] || [ $rc = 7 ]; then
			sed -n 's/^pid: //p' "$d/listener.status" >"$d/listener.pid"
			return 0
		fi
		[ $(( $(now_ms) - t0 )) -lt 15000 ] || { log "node$i: listener does not answer: $(tail -3 "$d/policyd.log")"; return 1; }
		sleep 0.02
	done
}

wait_online() { # wait_online N COUNT: COUNT nodes online with a DC, as seen from node N
	local n=$1 want=${2:-$NODES} t0 x on dc
	t0=$(now_ms)
	while :; do
		x=$(nx "$n" crm_mon -1 -X 2>/dev/null)
		on=$(grep -c '<node name=.*online="true"' <<<"$x")
		dc=$(grep -c 'current_dc.*present="true"' <<<"$x")
		[ "${on:-0}" -ge "$want" ] && [ "${dc:-0}" -ge 1 ] && break
		[ $(( $(now_ms) - t0 )) -lt 60000 ] || die "nodes not online after 60 s"
		sleep 0.2
	done
	log "$on nodes online with a DC after $(( $(now_ms) - t0 )) ms"
}

configure() {
	local n=$1
	nx "$n" crm_attribute -t rsc_defaults -n resource-stickiness -v 100 >/dev/null
	nx "$n" crm_attribute -t rsc_defaults -n migration-threshold -v 1 >/dev/null
	nx "$n" cibadmin -C -o resources -X "
<primitive id=\"fence-netns\" class=\"stonith\" type=\"fence_tenet_netns\">
  <instance_attributes id=\"fence-netns-ia\">
    <nvpair id=\"fence-netns-hl\" name=\"pcmk_host_list\" value=\"node1 node2 node3\"/>
    <nvpair id=\"fence-netns-ra\" name=\"pcmk_reboot_action\" value=\"off\"/>
    <nvpair id=\"fence-netns-st\" name=\"state\" value=\"$STATE\"/>
  </instance_attributes>
  <operations><op id=\"fence-netns-mon\" name=\"monitor\" interval=\"60s\"/></operations>
</primitive>" || return 1
	nx "$n" cibadmin -C -o resources -X "
<group id=\"$GROUP\">
  <primitive id=\"tenet-vip\" class=\"ocf\" provider=\"heartbeat\" type=\"IPaddr2\">
    <instance_attributes id=\"tenet-vip-ia\">
      <nvpair id=\"tenet-vip-ip\" name=\"ip\" value=\"$(vip)\"/>
      <nvpair id=\"tenet-vip-cidr\" name=\"cidr_netmask\" value=\"24\"/>
      <nvpair id=\"tenet-vip-nic\" name=\"nic\" value=\"eth0\"/>
    </instance_attributes>
    <operations>
      <op id=\"tenet-vip-mon\" name=\"monitor\" interval=\"2s\" timeout=\"20s\"/>
    </operations>
  </primitive>
  <primitive id=\"tenet-policyd\" class=\"ocf\" provider=\"tenet\" type=\"policyd\">
    <instance_attributes id=\"tenet-policyd-ia\">
      <nvpair id=\"tenet-policyd-bundle\" name=\"bundle\" value=\"/run/tenet/pkg/bundle\"/>
      <nvpair id=\"tenet-policyd-config\" name=\"config\" value=\"/run/tenet/node/policyd.toml\"/>
      <nvpair id=\"tenet-policyd-binary\" name=\"binary\" value=\"$TENET_BIN/tenet-policyd\"/>
    </instance_attributes>
    <operations>
      <op id=\"tenet-policyd-start\" name=\"start\" interval=\"0s\" timeout=\"60s\"/>
      <op id=\"tenet-policyd-stop\" name=\"stop\" interval=\"0s\" timeout=\"60s\"/>
      <op id=\"tenet-policyd-mon\" name=\"monitor\" interval=\"1s\" timeout=\"20s\"/>
    </operations>
  </primitive>
</group>"
}

# The node holding the VIP (by its interfaces).
active_node() {
	local i
	for i in $(seq 1 $NODES); do
		[ -n "$(holder "$i")" ] || continue
		ip -n "$(ns_of "$i")" -o addr show 2>/dev/null | grep " $(vip)/" >/dev/null && { echo "$i"; return 0; }
	done
	return 1
}

# A live node other than $1.
other_node() {
	local i
	for i in $(seq 1 $NODES); do
		[ "$i" != "${1:-}" ] && [ -n "$(holder "$i")" ] && kill -0 "$(holder "$i")" 2>/dev/null && { echo "$i"; return 0; }
	done
	return 1
}

# Whether node N's policyd serves.
serving() { P status --config "$STATE/n$1/policyd.toml" >/dev/null 2>&1; }

wait_group() { # wait_group N: the group started and policyd serving on some node; print it
	local n=$1 t0 a
	t0=$(now_ms)
	while :; do
		a=$(active_node) && serving "$a" &&
			nx "$n" crm_mon -1 -X 2>/dev/null | grep 'resource id="tenet-policyd".*role="Started".*active="true"' >/dev/null &&
			{ echo "$a"; return 0; }
		[ $(( $(now_ms) - t0 )) -lt 60000 ] || { log "group not started after 60 s"; nx "$n" crm_mon -1 -r -f >&2; return 1; }
		sleep 0.1
	done
}

# One fetch over the VIP from the client namespace: a dry run of an agent that has no
# cache, so exit 0 means the bundle was fetched and verified from whoever serves.
probe_fetch() {
	ip netns exec "$CLNS" "$TENET_BIN/tenet-agent" run --dry-run --json --config "$STATE/probe/agent.toml" >/dev/null 2>&1
}

install_shared() {
	mkdir -p "$USERS" && : >"$USERS/$PFX"
	install -m 755 "$HERE/fence_tenet_netns" "$FENCE"
	install -d -m 755 "$OCF_DIR"
	install -m 755 "$REPO/packaging/ocf/tenet-policyd" "$OCF_DIR/policyd"
	install -m 755 "$REPO/packaging/ocf/tenet-package" "$OCF_DIR/package"
}

remove_shared() {
	rm -f "$USERS/$PFX"
	# Other runs of this harness on the machine may still use them.
	[ -n "$(ls -A "$USERS" 2>/dev/null)" ] && return 0
	rm -f "$FENCE" "$OCF_DIR/policyd" "$OCF_DIR/package"
	rmdir "$OCF_DIR" "$USERS" 2>/dev/null
	return 0
}

cmd_publish() { # publish SERIAL [OUT]
	local serial=$1 out=${2:-} tree
	tree=$STATE/trees/$serial
	rm -rf "$tree" && mkdir -p "$tree"
	for f in "$STATE"/policy/*.toml; do
		sed "s/@SERIAL@/$serial/g; s/@NET@/$(net)/g" "$f" >"$tree/${f##*/}"
	done
	if [ -n "$out" ]; then
		K sign "$tree" --deployment "$STATE/deploy" --out "$out" --serial "$serial" >/dev/null 2>&1 || die "sign $serial failed"
		return 0
	fi
	K sign "$tree" --deployment "$STATE/deploy" --out "$STATE/pkg/bundles/$serial" --serial "$serial" >/dev/null 2>&1 || die "sign $serial failed"
	ln -sfn "bundles/$serial" "$STATE/pkg/bundle.new" && mv -T "$STATE/pkg/bundle.new" "$STATE/pkg/bundle"
	log "published serial $serial"
}

cmd_up() {
	local t0 i m id a
	[ -e "$STATE/up" ] && die "already up (cluster.sh down first)"
	for t in "$TENET_BIN/tenet-policyd" "$TENET_BIN/tenet-agent" "$TENET_BIN/tenet-keys"; do
		[ -x "$t" ] || die "$t missing: cargo build --workspace"
	done
	t0=$(now_ms)
	mkdir -p "$STATE" && chmod 755 "$STATE"
	: >"$STATE/up"
	# A failed or interrupted `up` leaves nothing behind.
	trap 'log "up failed; tearing down"; cmd_down' EXIT
	trap 'exit 1' INT TERM
	mkdir -p "$STATE/bin"
	for t in tenet-policyd tenet-agent tenet-keys; do
		cp "$TENET_BIN/$t" "$STATE/bin/$t" || die "cannot copy $t to $STATE/bin"
	done
	TENET_BIN=$STATE/bin
	echo "$PFX" >"$STATE/pfx"
	pick_net >"$STATE/net" || die "no free 10.213.X.0/24"
	install_shared

	# The deployment: keys, members alpha beta gamma (node1..3), serial 1 published.
	K init --root-keys 1 --root-threshold 1 "$STATE/deploy" >/dev/null || die "tenet-keys init"
	for i in 1 2 3; do
		m=${MEMBERS[$i]}
		id=$(K node-key --out "$STATE/nodes/$m" | grep -o '[0-9a-f]\{64\}' | head -1)
		K enroll "$STATE/deploy" --member "$m" --key-id "$id" >/dev/null || die "enroll $m"
	done
	mkdir -p "$STATE/pkg/keys" "$STATE/pkg/bundles"
	cp -r "$HERE/policy" "$STATE/policy"
	install -m 600 "$STATE/deploy/keys/timestamp.key" "$STATE/deploy/keys/server-tls.key" "$STATE/pkg/keys/"
	cmd_publish 1
	# The client namespace's probe: alpha's key, its own (empty) state, master = VIP.
	mkdir -p "$STATE/probe/state" "$STATE/probe/sandbox"
	chmod 700 "$STATE/probe/state"
	cp "$STATE/nodes/alpha/localhost.key" "$STATE/probe/node.key"
	cp "$STATE/deploy/root/1.root.toml" "$STATE/probe/root.toml"
	cp "$STATE/deploy/root/1.root.toml.sig" "$STATE/probe/root.toml.sig"
	cat >"$STATE/probe/agent.toml" <<EOF
member = "alpha"
master = "$(vip):8741"
state_dir = "state"
node_key = "node.key"
trusted_root = "root.toml"
root = "sandbox"
connect_timeout = "1s"
EOF

	# Preseeded CIB: no 20 s dc-deadtime wait, fencing on.
	cibadmin --empty >"$STATE/cib.xml"
	for kv in dc-deadtime=2s stonith-enabled=true stonith-timeout=20s no-quorum-policy=stop; do
		CIB_file=$STATE/cib.xml crm_attribute -t crm_config -n "${kv%%=*}" -v "${kv#*=}" >/dev/null
	done

	ip netns add "$BRNS" || die "netns $BRNS"
	ip -n "$BRNS" link add br0 type bridge
	ip -n "$BRNS" link set br0 up
	ip -n "$BRNS" link set lo up
	for i in $(seq 1 $NODES); do link_ns "$(ns_of "$i")" "v$i" "$(net).$((10 + i))" || die "link node$i"; done
	link_ns "$CLNS" vcl "$(net).50" || die "link client"
	for i in $(seq 1 $NODES); do node_up "$i" || die "node$i"; done
	wait_online 1
	configure 1 || die "cibadmin"
	a=$(wait_group 1) || die "group did not start"
	trap - EXIT INT TERM
	log "cluster $PFX up in $(( $(now_ms) - t0 )) ms; $GROUP on node$a, VIP $(vip)"
	echo "PFX=$PFX STATE=$STATE NET=$(net) ACTIVE=$a"
}

kill_ns() { # SIGKILL every process of a namespace by PID, then delete it
	local ns=$1 k p
	ip netns list 2>/dev/null | grep -w "^$ns" >/dev/null || return 0
	for k in 1 2 3 4 5 6 7 8 9 10; do
		p=$(ip netns pids "$ns" 2>/dev/null)
		[ -z "$p" ] && break
		# shellcheck disable=SC2086 # a list of PIDs
		kill -9 $p 2>/dev/null
		sleep 0.1
	done
	ip netns del "$ns" 2>/dev/null
}

crash_node() { # a hard failure: the node's link goes, everything in it is killed
	local i=$1
	ip -n "$BRNS" link set "v$i" down 2>/dev/null
	kill_ns "$(ns_of "$i")"
	rm -f "$STATE/n$i/holder.pid"
}

cmd_grow() {
	local i=$((NODES + 1)) n
	[ "$i" -le 4 ] || die "the harness has members for 4 nodes"
	n=$(other_node) || die "no live node"
	# The alert runs as hacluster: its script, tenet-keys and the proposal directory.
	install -m 755 "$REPO/packaging/pacemaker/tenet-members-alert" "$STATE/bin/tenet-members-alert"
	install -d -m 755 -o hacluster -g haclient "$STATE/pkg/members"
	nx "$n" cibadmin --modify --allow-create --scope alerts -X "
<alerts>
  <alert id=\"tenet-members\" path=\"$STATE/bin/tenet-members-alert\">
    <select><select_nodes/></select>
    <instance_attributes id=\"tenet-members-ia\">
      <nvpair id=\"tenet-members-keys\" name=\"tenet_keys\" value=\"$STATE/bin/tenet-keys\"/>
      <nvpair id=\"tenet-members-bundle\" name=\"tenet_bundle\" value=\"/run/tenet/pkg/bundle\"/>
      <nvpair id=\"tenet-members-root\" name=\"tenet_root\" value=\"/run/tenet/node/root.toml\"/>
      <nvpair id=\"tenet-members-tree\" name=\"tenet_admin_tree\" value=\"$STATE/policy\"/>
      <nvpair id=\"tenet-members-dep\" name=\"tenet_admin_deployment\" value=\"$STATE/deploy\"/>
    </instance_attributes>
    <recipient id=\"tenet-members-dir\" value=\"/run/tenet/pkg/members\"/>
  </alert>
</alerts>" || die "cibadmin: the alert"
	echo "$i" >"$STATE/node-count"
	NODES=$i
	# Every node's corosync.conf names the new node; one reload applies it everywhere.
	for n in $(seq 1 $((i - 1))); do corosync_conf >"$STATE/n$n/root/etc-corosync/corosync.conf"; done
	n=$(other_node) || die "no live node"
	nx "$n" corosync-cfgtool -R >/dev/null || die "corosync-cfgtool -R"
	link_ns "$(ns_of "$i")" "v$i" "$(net).$((10 + i))" || die "link node$i"
	node_up "$i" || die "node$i"
	wait_online "$n" "$i"
	echo "$i"
}

cmd_rejoin() {
	local i=$1 n
	crash_node "$i"
	ip -n "$BRNS" link del "v$i" 2>/dev/null
	rm -f "$STATE/cib.xml" # the node takes the CIB from the cluster
	link_ns "$(ns_of "$i")" "v$i" "$(net).$((10 + i))" || die "relink node$i"
	node_up "$i" || die "node$i"
	wait_online "$i"
}

cmd_down() {
	local i
	for i in $(seq 1 $NODES); do kill_ns "$(ns_of "$i")"; done
	kill_ns "$CLNS"
	kill_ns "$BRNS"
	remove_shared
	case $STATE in /var/tmp/tenet-ha-*) rm -rf "$STATE" ;; *) rm -f "$STATE/up" ;; esac
	log "down ($PFX)"
}

cmd_status() {
	local n a
	n=$(other_node) || { echo "no live node"; return 1; }
	nx "$n" crm_mon -1 -r -f
	a=$(active_node) && echo "VIP $(vip) on node$a"
	for i in $(seq 1 $NODES); do
		printf 'node%s: ' "$i"
		P status --config "$STATE/n$i/policyd.toml" 2>&1 | head -2 | tr '\n' ' '
		echo
	done
}

cmd_fault() { # fault MODE: prints the active node it faulted
	local mode=$1 a o
	a=$(active_node) || die "the VIP is nowhere"
	o=$(other_node "$a") || die "no other node"
	case $mode in
	crash) crash_node "$a" ;;
	standby) nx "$o" crm_attribute -t nodes -N "node$a" -n standby -v on >/dev/null ;;
	# The application fails: the policyd listener dies (SIGKILL by PID); the monitor
	# sees it, the group moves (migration-threshold=1).
	app) kill -9 "$(P status --config "$STATE/n$a/policyd.toml" | sed -n 's/^pid: //p')" ;;
	*) die "unknown fault $mode" ;;
	esac
	echo "$a"
}

cmd_wait_moved() { # wait-moved FROM T0_MS
	local from=$1 t0=$2 new="" t_vip="" t_serve="" t_fetch="" i x start_ms
	while [ $(( $(now_ms) - t0 )) -lt 90000 ]; do
		if [ -z "$t_vip" ]; then
			for i in $(seq 1 $NODES); do
				[ "$i" = "$from" ] && continue
				ip -n "$(ns_of "$i")" -o addr show 2>/dev/null | grep " $(vip)/" >/dev/null && { t_vip=$(( $(now_ms) - t0 )); new=$i; }
			done
		fi
		if [ -n "$t_vip" ] && [ -z "$t_serve" ] && serving "$new"; then t_serve=$(( $(now_ms) - t0 )); fi
		if [ -n "$t_serve" ] && probe_fetch; then t_fetch=$(( $(now_ms) - t0 )); break; fi
		[ -n "$t_vip" ] && sleep 0.01 || sleep 0.05
	done
	[ -n "$t_fetch" ] || { log "no takeover within 90 s"; cmd_status >&2; return 1; }
	# The RA's start, as the cluster timed it (exec-time of the last start op).
	x=$(nx "$new" cibadmin -Q -o status 2>/dev/null | grep -o '<lrm_rsc_op [^>]*operation="start"[^>]*' |
		grep "tenet-policyd_last_0\|id=\"tenet-policyd_last" | grep -o 'exec-time="[0-9]*"' | tail -1 | tr -dc 0-9)
	start_ms=${x:-unknown}
	echo "RESULT from=node$from to=node$new vip_ms=$t_vip serving_ms=$t_serve fetch_ms=$t_fetch ra_start_ms=$start_ms takeover_ms=$((t_fetch - t_vip))"
}

cmd_recover() { # recover FROM MODE: bring the faulted node back as a standby member
	local from=$1 mode=$2 o
	o=$(other_node "$from") || die "no live node"
	case $mode in
	crash) cmd_rejoin "$from" ;;
	standby) nx "$o" crm_attribute -t nodes -N "node$from" -n standby -D >/dev/null 2>&1 ;;
	app) listener_up "$from" || die "listener"; nx "$o" crm_resource --cleanup -r tenet-policyd >/dev/null 2>&1 ;;
	esac
	wait_online "$o" >/dev/null 2>&1
}

# The departed member's endpoint map and credentials in node N's sandbox.
dce_seed() {
	local s=$STATE/n$1/sandbox
	mkdir -p "$s/opt/dcelocal/var/dced" "$s/opt/dcelocal/var/security/creds"
	echo endpoints >"$s/opt/dcelocal/var/dced/Ep.db"
	echo a >"$s/opt/dcelocal/var/security/creds/a"
	echo b >"$s/opt/dcelocal/var/security/creds/b"
}

# The node holding the dce VIP.
dce_node() {
	local i
	for i in $(seq 1 $NODES); do
		[ -n "$(holder "$i")" ] || continue
		ip -n "$(ns_of "$i")" -o addr show 2>/dev/null | grep " $(dce_vip)/" >/dev/null && { echo "$i"; return 0; }
	done
	return 1
}

wait_dce() { # wait_dce N: dce-pkg started on the node holding the dce VIP; print it
	local n=$1 t0 a
	t0=$(now_ms)
	while :; do
		a=$(dce_node) &&
			nx "$n" crm_mon -1 -X 2>/dev/null | grep 'resource id="dce-pkg".*role="Started".*active="true"' >/dev/null &&
			{ echo "$a"; return 0; }
		[ $(( $(now_ms) - t0 )) -lt 60000 ] || { log "dce not started after 60 s"; nx "$n" crm_mon -1 -r -f >&2; return 1; }
		sleep 0.1
	done
}

cmd_dce_up() {
	local i s n
	for i in $(seq 1 $NODES); do
		[ -n "$(holder "$i")" ] || continue
		s=$STATE/n$i/sandbox
		mkdir -p "$s/usr/bin" "$s/var/log"
		for p in start.dce start.dfs stop.dfs stop.dce; do install -m 755 "$HERE/fake-dce" "$s/usr/bin/$p"; done
		dce_seed "$i"
		# The plans come from the cached bundle: make sure there is one.
		nx "$i" "$TENET_BIN/tenet-agent" run --config /run/tenet/node/agent.toml >/dev/null 2>&1 ||
			die "node$i: tenet-agent run failed"
	done
	n=$(other_node) || die "no live node"
	nx "$n" cibadmin -C -o resources -X "
<group id=\"dce\">
  <primitive id=\"dce-vip\" class=\"ocf\" provider=\"heartbeat\" type=\"IPaddr2\">
    <instance_attributes id=\"dce-vip-ia\">
      <nvpair id=\"dce-vip-ip\" name=\"ip\" value=\"$(dce_vip)\"/>
      <nvpair id=\"dce-vip-cidr\" name=\"cidr_netmask\" value=\"24\"/>
      <nvpair id=\"dce-vip-nic\" name=\"nic\" value=\"eth0\"/>
    </instance_attributes>
    <operations>
      <op id=\"dce-vip-mon\" name=\"monitor\" interval=\"2s\" timeout=\"20s\"/>
    </operations>
  </primitive>
  <primitive id=\"dce-pkg\" class=\"ocf\" provider=\"tenet\" type=\"package\">
    <instance_attributes id=\"dce-pkg-ia\">
      <nvpair id=\"dce-pkg-package\" name=\"package\" value=\"dce\"/>
      <nvpair id=\"dce-pkg-config\" name=\"config\" value=\"/run/tenet/node/agent.toml\"/>
      <nvpair id=\"dce-pkg-binary\" name=\"binary\" value=\"$TENET_BIN/tenet-agent\"/>
      <nvpair id=\"dce-pkg-lock\" name=\"lock_timeout\" value=\"30s\"/>
    </instance_attributes>
    <operations>
      <op id=\"dce-pkg-start\" name=\"start\" interval=\"0s\" timeout=\"60s\"/>
      <op id=\"dce-pkg-stop\" name=\"stop\" interval=\"0s\" timeout=\"60s\"/>
      <op id=\"dce-pkg-mon\" name=\"monitor\" interval=\"2s\" timeout=\"20s\"/>
    </operations>
  </primitive>
</group>" || die "cibadmin dce"
	wait_dce "$n"
}

# dce-failover MODE: fault the dce node; wait until the dce VIP is up elsewhere and
# start.dfs has run there; the takeover time is from the VIP up to start.dfs done.
cmd_dce_failover() {
	local mode=$1 a o t0 new="" t_vip="" t_vip_abs="" dfs="" i log
	a=$(dce_node) || die "the dce VIP is nowhere"
	o=$(other_node "$a") || die "no other node"
	t0=$(now_ms)
	case $mode in
	crash) crash_node "$a" ;;
	standby) nx "$o" crm_attribute -t nodes -N "node$a" -n standby -v on >/dev/null ;;
	*) die "unknown fault $mode" ;;
	esac
	while [ $(( $(now_ms) - t0 )) -lt 90000 ]; do
		if [ -z "$t_vip" ]; then
			for i in $(seq 1 $NODES); do
				[ "$i" = "$a" ] && continue
				ip -n "$(ns_of "$i")" -o addr show 2>/dev/null | grep " $(dce_vip)/" >/dev/null &&
					{ t_vip_abs=$(now_ms); t_vip=$((t_vip_abs - t0)); new=$i; }
			done
		fi
		if [ -n "$new" ]; then
			log=$STATE/n$new/sandbox/var/log/dce.log
			# The first start.dfs that ended after the fault.
			dfs=$(awk -v t="${t0}000000" '$1 == "start.dfs" && $3 >= t { print substr($3, 1, 13); exit }' "$log" 2>/dev/null)
			[ -n "$dfs" ] && break
		fi
		sleep 0.01
	done
	[ -n "$dfs" ] || { log "no dce takeover within 90 s"; cmd_status >&2; return 1; }
	echo "RESULT from=node$a to=node$new vip_ms=$t_vip dfs_ms=$((dfs - t0)) dce_takeover_ms=$((dfs - t_vip_abs))"
}

# Re-probes dce-pkg on every node and waits until each live node has answered.
cmd_dce_refresh() {
	local n t0 want got
	n=$(other_node) || die "no live node"
	want=0
	for i in $(seq 1 $NODES); do [ -n "$(holder "$i")" ] && want=$((want + 1)); done
	nx "$n" crm_resource --refresh -r dce-pkg >/dev/null 2>&1 || die "crm_resource --refresh"
	t0=$(now_ms)
	while :; do
		got=$(nx "$n" cibadmin -Q -o status 2>/dev/null | grep -c '<lrm_rsc_op id="dce-pkg_last_0"[^>]*operation="monitor"')
		[ "${got:-0}" -ge "$want" ] && nx "$n" crm_mon -1 -X 2>/dev/null |
			grep 'resource id="dce-pkg".*role="Started".*active="true"' >/dev/null && break
		[ $(( $(now_ms) - t0 )) -lt 30000 ] || die "dce-pkg not re-probed on $want nodes in 30 s"
		sleep 0.1
	done
}

case $CMD in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
env) echo "PFX=$PFX STATE=$STATE NET=$(net) VIP=$(vip)" ;;
publish) cmd_publish "$2" "${3:-}" ;;
agent) n=$2; shift 2; nx "$n" "$TENET_BIN/tenet-agent" run --json --config /run/tenet/node/agent.toml "$@" ;;
agent-master) agent_toml "$2" "$3" ;;
listener) listener_up "$2" ;;
active) active_node ;;
grow) cmd_grow ;;
fault) cmd_fault "$2" ;;
wait-moved) cmd_wait_moved "$2" "$3" ;;
failover) t0=$(now_ms); a=$(cmd_fault "$2") && cmd_wait_moved "$a" "$t0" ;;
recover) cmd_recover "$2" "$3" ;;
exec) n=$2; shift 2; nx "$n" "$@" ;;
dce-up) cmd_dce_up ;;
dce-node) dce_node ;;
dce-seed) dce_seed "$2" ;;
dce-failover) cmd_dce_failover "$2" ;;
dce-refresh) cmd_dce_refresh ;;
*) sed -n 2,52p "$0"; exit 2 ;;
esac
