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
# Settings: the package's pev_ parameters (pev_tenet_policyd, pev_tenet_config,
# pev_tenet_bundle), which sg_source_pkg_env exports as PEV_TENET_*; else the defaults
# below.
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

case ${1:-} in
start)
	installed || exit 2
	out=$("$POLICYD" start --config "$CONFIG" --bundle "$BUNDLE" 2>&1)
	rc=$?
	say "$out"
	case $rc in
	0) exit 0 ;;
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
