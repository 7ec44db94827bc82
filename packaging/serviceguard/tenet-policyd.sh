#!/bin/bash
# tenet-policyd.sh: Serviceguard external_script of the tenet-policyd package.
#
#   external_script /etc/cmcluster/tenet-policyd/tenet-policyd.sh
#
# Serviceguard runs it as `tenet-policyd.sh start|stop|validate` with no PATH and the
# package's SG_* variables; after the relocatable IP (and the package filesystem with
# the bundle) on start, and before they go on halt. It makes this node the tenet master
# (`tenet-policyd start`: starts the listener if it is not running, promotes, returns
# once serving) and demotes it on halt (`tenet-policyd stop`; the listener keeps
# running, as cfservd did in the csync package).
#
# After a start that serves, it runs this member's master-move plans (`tenet-agent
# event master-move MEMBER`, MEMBER the `member` of the policyd configuration;
# pev_tenet_master_move no turns it off, an agent that is not installed is skipped),
# then compares the cluster's nodes (`cmviewcl -f line -l node`) with the cluster
# members of the bundle it serves and its inventory (`tenet-keys members --from
# serviceguard`): when they differ (a node added with cmapplyconf, or one removed), the
# proposed cluster config, its diff and commands.txt (the exact commands for an
# administrator to review and sign; nothing is signed here) are written to
# pev_tenet_members_dir. Neither ever fails the start; both are logged.
#
# Settings: the package's pev_ parameters (pev_tenet_policyd, pev_tenet_config,
# pev_tenet_bundle, pev_tenet_master_move, pev_tenet_agent, pev_tenet_agent_config,
# pev_tenet_agent_args, pev_tenet_keys, pev_tenet_root, pev_tenet_members_dir,
# pev_tenet_admin_tree, pev_tenet_admin_deployment), which sg_source_pkg_env exports as
# PEV_TENET_*; else the defaults below.
#
# Exit codes (Serviceguard's): 0 success; 1 failure, halt the package and do not
# restart it (invalid configuration, bundle refused: the same on every node);
# 2 failure, try the package on another node (tenet-policyd missing here, or could
# not start or answer). validate: 0 valid, 1 invalid.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
umask 022

# Serviceguard's utility functions and the package environment, where installed.
if [ -z "${SG_UTILS:-}" ] && [ -r /etc/cmcluster.conf ]; then
	. /etc/cmcluster.conf
	SG_UTILS=${SGCONF:-/usr/local/cmcluster/conf}/scripts/mscripts/utils.sh
fi
if [ -n "${SG_UTILS:-}" ] && [ -r "$SG_UTILS" ]; then
	. "$SG_UTILS" && sg_source_pkg_env "$@"
fi

POLICYD=${PEV_TENET_POLICYD:-/usr/sbin/tenet-policyd}
CONFIG=${PEV_TENET_CONFIG:-/etc/tenet/policyd.toml}
BUNDLE=${PEV_TENET_BUNDLE:-/srv/tenet/bundle}
MASTER_MOVE=${PEV_TENET_MASTER_MOVE:-yes}
AGENT=${PEV_TENET_AGENT:-/usr/sbin/tenet-agent}
AGENT_CONFIG=${PEV_TENET_AGENT_CONFIG-/etc/tenet/agent.toml}
KEYS=${PEV_TENET_KEYS:-/usr/sbin/tenet-keys}
ROOT=${PEV_TENET_ROOT:-/etc/tenet/root.toml}
MEMBERS_DIR=${PEV_TENET_MEMBERS_DIR:-/var/lib/tenet/members}
# cmviewcl: Serviceguard's commands directory (SGSBIN of /etc/cmcluster.conf).
PATH=$PATH:${SGSBIN:-/usr/local/cmcluster/bin}

say() { echo "$(date '+%b %e %T') - Node \"${SG_NODE:-$(uname -n)}\": tenet-policyd ($SG_PACKAGE): $*"; }

installed() {
	if [ ! -x "$POLICYD" ]; then
		say "ERROR: $POLICYD is not installed on this node"
		return 1
	fi
	if [ ! -r "$CONFIG" ]; then
		say "ERROR: $CONFIG is missing on this node"
		return 1
	fi
}

# master_move: this member's master-move plans; logged, never a failure.
master_move() {
	case $MASTER_MOVE in yes | true | 1) ;; *) return 0 ;; esac
	if [ ! -x "$AGENT" ]; then
		say "$AGENT is not installed; no master-move event sent"
		return 0
	fi
	member=$(sed -n 's/^[[:space:]]*member[[:space:]]*=[[:space:]]*"\([^"]*\)".*$/\1/p' "$CONFIG" | head -n 1)
	if [ -z "$member" ]; then
		say "no member in $CONFIG; no master-move event sent"
		return 0
	fi
	set -- event master-move "$member" --id "serviceguard-$SG_PACKAGE-master-move-$(date +%s%N)-$$"
	[ -n "$AGENT_CONFIG" ] && set -- "$@" --config "$AGENT_CONFIG"
	# shellcheck disable=SC2086 # PEV_TENET_AGENT_ARGS: options split at spaces
	mout=$("$AGENT" "$@" ${PEV_TENET_AGENT_ARGS:-} </dev/null 2>&1)
	mrc=$?
	say "master-move ($mrc): $mout"
	[ $mrc -eq 0 ] || say "WARNING: the master-move plans of $member did not all run ($mrc); serving all the same"
}

# members_sync: the cluster's nodes against the served bundle's members; logged.
members_sync() {
	[ -x "$KEYS" ] || return 0
	mkdir -p "$MEMBERS_DIR" 2>/dev/null
	set -- members --from serviceguard --bundle "$BUNDLE" --root "$ROOT" --out "$MEMBERS_DIR"
	[ -n "${PEV_TENET_ADMIN_TREE:-}" ] && set -- "$@" --admin-tree "$PEV_TENET_ADMIN_TREE"
	[ -n "${PEV_TENET_ADMIN_DEPLOYMENT:-}" ] && set -- "$@" --admin-deployment "$PEV_TENET_ADMIN_DEPLOYMENT"
	report=$("$KEYS" "$@" </dev/null 2>&1)
	case $? in
	0) rm -f "$MEMBERS_DIR/commands.txt" ;;
	1)
		printf '%s\n' "$report" >"$MEMBERS_DIR/commands.txt"
		say "the tenet cluster members differ from the cluster's nodes; to sign: $MEMBERS_DIR/commands.txt"
		;;
	*) say "WARNING: membership not compared: $report" ;;
	esac
}

case ${1:-} in
start)
	installed || exit 2
	out=$("$POLICYD" start --config "$CONFIG" --bundle "$BUNDLE" 2>&1)
	rc=$?
	say "$out"
	case $rc in
	0) master_move; members_sync; exit 0 ;;
	3 | 4) say "ERROR: tenet-policyd start failed ($rc); not trying other nodes"; exit 1 ;;
	*) say "ERROR: tenet-policyd start failed ($rc)"; exit 2 ;;
	esac
	;;
stop)
	# Not installed: nothing of ours can be serving here.
	installed || exit 0
	out=$("$POLICYD" stop --config "$CONFIG" 2>&1)
	rc=$?
	say "$out"
	[ $rc -eq 0 ] || { say "ERROR: tenet-policyd stop failed ($rc)"; exit 1; }
	exit 0
	;;
validate)
	installed || exit 1
	out=$("$POLICYD" validate --config "$CONFIG" 2>&1)
	rc=$?
	say "$out"
	[ $rc -eq 0 ] || exit 1
	exit 0
	;;
*)
	echo "usage: $0 start|stop|validate" >&2
	exit 1
	;;
esac
