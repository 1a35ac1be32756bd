#!/usr/bin/env bash
# stop-cluster.sh - stop the cluster that start-cluster.sh started.
#
#   launch/slurm/stop-cluster.sh [--purge] [--quiet] [STATE_DIR]
#
#   STATE_DIR  default /tmp/dtrain-slurm
#   --purge    delete STATE_DIR afterwards (logs included)
#   --quiet    say nothing when there is nothing to stop
#
# Cancels the jobs, then stops the daemons by the pids in STATE_DIR/run (each
# checked against its command line), then ends what a crash may have left:
# slurmstepd processes of this cluster (recognised by their working directory
# or an open file under STATE_DIR) and their descendants, the job's ranks.
# Nothing is signalled by name. Exit status 1 if something survived.
set -uo pipefail

state=/tmp/dtrain-slurm purge=0 quiet=0
while [ $# -gt 0 ]; do
    case $1 in
    --purge) purge=1; shift ;;
    --quiet) quiet=1; shift ;;
    -h | --help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "stop-cluster: unknown option $1" >&2; exit 2 ;;
    *) state=$1; shift ;;
    esac
done
case $state in /*) ;; *) state=$PWD/$state ;; esac
state=${state%/}
conf=$state/etc/slurm.conf
export SLURM_CONF=$conf
said=0
say() { echo "[stop-cluster] $*"; said=1; }

[ -d "$state" ] || { [ $quiet -eq 1 ] || say "no $state, nothing to stop"; exit 0; }

. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh" # alive, daemon_pid
stop_pid() { # PID NAME: SIGTERM, up to 10 s, then SIGKILL
    local pid=$1 name=$2 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 100); do
        alive "$pid" || { say "$name (pid $pid) stopped"; return 0; }
        sleep 0.1
    done
    say "$name (pid $pid) ignored SIGTERM: SIGKILL"
    kill -KILL "$pid" 2>/dev/null
    sleep 0.2
}
# Slurm/munge processes that belong to this state dir
leftovers() {
    local d pid f
    for d in /proc/[0-9]*; do
        pid=${d#/proc/}
        case $(cat "$d/comm" 2>/dev/null) in munged | slurmctld | slurmd | slurmstepd | slurmscriptd) ;; *) continue ;; esac
        alive "$pid" || continue
        f=$(readlink "$d/cwd" 2>/dev/null) && [[ $f == "$state"/* ]] && { echo "$pid"; continue; }
        for f in "$d"/fd/*; do
            f=$(readlink "$f" 2>/dev/null) && [[ $f == "$state"/* ]] && { echo "$pid"; break; }
        done
    done
}
descendants() { # PID...: the pids and every descendant
    local -A parent
    local d st set=" $* " grew=1 p
    for d in /proc/[0-9]*; do
        st=$(cat "$d/stat" 2>/dev/null) || continue
        st=${st##*) }
        parent[${d#/proc/}]=$(cut -d' ' -f2 <<<"$st")
    done
    while [ $grew -eq 1 ]; do
        grew=0
        for p in "${!parent[@]}"; do
            [[ $set == *" ${parent[$p]} "* && $set != *" $p "* ]] && { set+="$p "; grew=1; }
        done
    done
    echo $set
}

# 1. Jobs first, while slurmctld runs, so that slurmstepd ends the ranks.
ctld=$(daemon_pid "$state/run/slurmctld.pid" slurmctld -f "$conf" || true)
if [ -n "$ctld" ] && [ -n "$(squeue -h -o %i 2>/dev/null)" ]; then
    say "cancelling jobs: $(squeue -h -o %i | paste -sd' ' -)"
    scancel --partition=local 2>/dev/null
    end=$(( $(date +%s) + 20 ))
    while [ -n "$(squeue -h -o %i 2>/dev/null)" ] && [ "$(date +%s)" -lt $end ]; do sleep 0.2; done
fi

# 2. The daemons, by pid file.
for f in "$state"/run/slurmd-*.pid; do
    [ -e "$f" ] || continue
    n=${f##*/slurmd-}; n=${n%.pid}
    pid=$(daemon_pid "$f" slurmd -N "$n") && stop_pid "$pid" "slurmd $n"
    rm -f "$f"
done
[ -n "$ctld" ] && stop_pid "$ctld" slurmctld
rm -f "$state/run/slurmctld.pid"
pid=$(daemon_pid "$state/run/munged.pid" "--socket=$state/munge-run/munge.socket") && stop_pid "$pid" munged
rm -f "$state/run/munged.pid"

# 3. What a crash left: slurmstepd (it rewrites its environment and argv, so
#    it is recognised by the files it holds open) and the job processes below.
roots=$(leftovers)
if [ -n "$roots" ]; then
    all=$(descendants $roots)
    say "ending leftover processes: $all"
    kill -TERM $all 2>/dev/null
    sleep 1
    kill -KILL $all 2>/dev/null
    sleep 0.3
fi

left=$(leftovers | paste -sd' ' -)
if [ -n "$left" ]; then
    say "WARNING: still running: $left"
    exit 1
fi
[ $said -eq 0 ] && [ $quiet -eq 1 ] || say "nothing left running from $state"
if [ $purge -eq 1 ]; then rm -rf "$state"; say "removed $state"; fi
exit 0
