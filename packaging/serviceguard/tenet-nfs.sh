#!/bin/bash
# tenet-nfs.sh: Serviceguard external_script of the NFS package (the example
# policies/examples/nfs-cluster; file lock migration as the Serviceguard NFS toolkit's
# lock_migration.sh does it).
#
#   external_script /etc/cmcluster/nfs/tenet-nfs.sh
#
# Serviceguard runs it as `tenet-nfs.sh start|stop|validate` with no PATH and the
# package's SG_* variables. In the toolkit's order, on start it runs after the volume
# groups are active, the filesystems mounted and exported and the package IP added, and
# before the package's services (tenet-nfs.conf's `tenet-agent watch`, the toolkit's
# nfs.flm) start; on halt, in the exact reverse, after the services are halted and
# before the IP, the exports and the filesystems go. It runs
#   start:  tenet-agent event package-start PKG --id ID   (nfs-migrate-locks)
#   stop:   tenet-agent event package-stop PKG --id ID    (nfs-release-locks)
#   validate: tenet-agent plan simulate: the package has package-start plans here
# PKG is pev_tenet_package, else the Serviceguard package's name (SG_PACKAGE).
#
# The start's event id (`sg-PKG-start-` and a stamp) is kept in PEV_TENET_RUN_DIR
# (emptied at boot) until the package is halted: a start Serviceguard runs again on this
# node replays the finished event (nothing runs) or, after an interrupted one (the
# agent killed, a run_script_timeout), continues it with --resume, so no finished step
# runs twice. After a failed step the id is dropped: the next start is a new event.
# The stop's id is kept likewise until the stop has run to its end.
#
# Settings: the package's pev_ parameters, which sg_source_pkg_env exports as
# PEV_TENET_*: pev_tenet_agent, pev_tenet_agent_config, pev_tenet_agent_args (more
# tenet-agent options, split at spaces), pev_tenet_package, pev_tenet_member (the tenet
# member for validate; default SG_NODE), pev_tenet_run_dir.
# Messages go through Serviceguard's sg_log when its utils.sh is there (the package
# log), else to stderr.
#
# Exit codes (Serviceguard's): 0 success; 1 failure (a failed or refused step, named in
# the log; the agent missing; no bundle). validate: 0 valid, 1 invalid.
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

AGENT=${PEV_TENET_AGENT:-/usr/sbin/tenet-agent}
AGENT_CONFIG=${PEV_TENET_AGENT_CONFIG-/etc/tenet/agent.toml}
AGENT_ARGS=${PEV_TENET_AGENT_ARGS:-}
PKG=${PEV_TENET_PACKAGE:-${SG_PACKAGE:-}}
MEMBER=${PEV_TENET_MEMBER:-${SG_NODE:-$(uname -n)}}
RUN_DIR=${PEV_TENET_RUN_DIR:-/var/run/tenet}

log() {
	if type sg_log >/dev/null 2>&1; then
		sg_log 0 "tenet ($PKG): $*"
	else
		echo "tenet ($PKG): $*" >&2
	fi
}

# Runs tenet-agent event KIND for PKG with the id kept in RUN_DIR/sg-PKG-SIDE.id.
event() {
	local kind=$1 side=$2 base idfile id out rc
	EVENT_RC=1
	base=sg-$(printf '%s' "$PKG" | tr -c 'A-Za-z0-9._-' _)
	idfile=$RUN_DIR/$base-$side.id
	if [ ! -s "$idfile" ]; then
		mkdir -p "$RUN_DIR" &&
			echo "$base-$side-$(date -u +%Y%m%dT%H%M%SZ)-$$" >"$idfile.new" &&
			mv "$idfile.new" "$idfile" || return 1
	fi
	id=$(cat "$idfile") || return 1
	# shellcheck disable=SC2086 # AGENT_ARGS: options split at spaces
	out=$("$AGENT" event "$kind" "$PKG" --id "$id" "${config[@]}" $AGENT_ARGS </dev/null 2>&1)
	rc=$?
	log "$out"
	if [ $rc -eq 8 ]; then
		log "$kind $PKG: event $id was interrupted; continuing it"
		# shellcheck disable=SC2086
		out=$("$AGENT" event "$kind" "$PKG" --id "$id" --resume "${config[@]}" $AGENT_ARGS </dev/null 2>&1)
		rc=$?
		log "$out"
	fi
	EVENT_RC=$rc
	return $rc
}

config=()
[ -n "$AGENT_CONFIG" ] && config=(--config "$AGENT_CONFIG")

installed() {
	if [ -z "$PKG" ]; then
		log "ERROR: no package: set pev_tenet_package or run under Serviceguard (SG_PACKAGE)"
		return 1
	fi
	if [ ! -x "$AGENT" ]; then
		log "ERROR: $AGENT is not installed on this node"
		return 1
	fi
}

base=sg-$(printf '%s' "$PKG" | tr -c 'A-Za-z0-9._-' _)
case ${1:-} in
start)
	installed || exit 1
	event package-start start
	case $EVENT_RC in
	0) exit 0 ;;
	1) rm -f "$RUN_DIR/$base-start.id" ;; # a failed step: the next start is a new event
	esac
	log "ERROR: tenet-agent event package-start $PKG failed ($EVENT_RC)"
	exit 1
	;;
stop)
	installed || exit 1
	# The halt ends the start's event: the next start is a new one.
	rm -f "$RUN_DIR/$base-start.id"
	event package-stop stop
	case $EVENT_RC in 0 | 1) rm -f "$RUN_DIR/$base-stop.id" ;; esac
	[ "$EVENT_RC" -eq 0 ] && exit 0
	log "ERROR: tenet-agent event package-stop $PKG failed ($EVENT_RC)"
	exit 1
	;;
validate)
	installed || exit 1
	# shellcheck disable=SC2086
	out=$("$AGENT" plan simulate --json --member "$MEMBER" --event "package-start:$PKG" \
		--holds "$PKG" "${config[@]}" $AGENT_ARGS </dev/null 2>&1)
	rc=$?
	if [ $rc -ne 0 ]; then
		log "ERROR: tenet-agent plan simulate failed ($rc): $out"
		exit 1
	fi
	if ! printf '%s\n' "$out" | grep -q '"type":"plan"'; then
		log "ERROR: no package-start plan of $PKG for member $MEMBER: $(printf '%s\n' "$out" | sed -n 's/.*"type":"note","message":"\([^"]*\)".*/\1/p')"
		exit 1
	fi
	log "package-start plans of $PKG for $MEMBER: $(printf '%s\n' "$out" | sed -n 's/.*"type":"plan".*"plan":"\([^"]*\)".*/\1/p' | tr '\n' ' ')"
	exit 0
	;;
*)
	echo "usage: $0 start|stop|validate" >&2
	exit 1
	;;
esac
