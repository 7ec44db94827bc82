#!/bin/sh
# tenet-policyd-service.sh: Serviceguard service_cmd of the tenet-policyd package.
#
#   service_name    tenet-policyd-watch
#   service_cmd     "/etc/cmcluster/tenet-policyd/tenet-policyd-service.sh /etc/tenet/policyd.toml"
#   service_restart none
#
# A foreground monitor: it runs while this node's tenet-policyd serves the bundle and
# exits non-zero as soon as it does not (7: the daemon stopped serving; 1: the daemon
# cannot be reached, e.g. it died), which Serviceguard treats as a service failure and
# fails the package over. Serviceguard passes no PATH and no environment; the
# configuration file is the first argument, tenet-policyd's path the second.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
CONFIG=${1:-/etc/tenet/policyd.toml}
POLICYD=${2:-/usr/sbin/tenet-policyd}
exec "$POLICYD" watch --config "$CONFIG" --interval 2s
