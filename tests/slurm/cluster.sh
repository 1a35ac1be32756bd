#!/usr/bin/env bash
# cluster.sh start|stop STATE_DIR [start-cluster.sh options]: the slurm_cluster
# test fixture. Skips (77) where the cluster cannot run: not root.
action=$1 state=$2
shift 2
here=$(cd "$(dirname "$0")/../../launch/slurm" && pwd)
if [ "$(id -u)" -ne 0 ]; then echo "SKIP: the local Slurm cluster needs root"; exit 77; fi
case $action in
start) exec timeout -k 5 240 "$here/start-cluster.sh" "$@" "$state" ;;
stop) exec timeout -k 5 120 "$here/stop-cluster.sh" "$state" ;;
*) echo "usage: cluster.sh start|stop STATE_DIR [options]" >&2; exit 2 ;;
esac
