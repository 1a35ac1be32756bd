#!/usr/bin/env bash
# start-cluster.sh - start a real Slurm cluster on this machine: munged,
# slurmctld and one slurmd per node, from Debian's packages, every file under
# one state directory, no systemd. For tests and for trying launch/dtrain.sbatch.
#
#   launch/slurm/start-cluster.sh [--nodes N] [--cpus C] [--port P] [--no-install] [STATE_DIR]
#   . STATE_DIR/env.sh            # SLURM_CONF and friends for sbatch/squeue/scontrol
#   sbatch --nodes=1 --ntasks-per-node=4 launch/dtrain.sbatch configs/x.yaml
#   launch/slurm/stop-cluster.sh STATE_DIR
#
#   STATE_DIR     default /tmp/dtrain-slurm
#   --nodes N     emulated nodes, one slurmd each (default 1). With N > 1 each
#                 slurmd runs in its own UTS + mount namespace (hostname = node
#                 name, private PMIx directory), so MPI sees N separate hosts
#                 and talks TCP over loopback between them. Needs root.
#   --cpus C      CPUs each node advertises (default 16; may exceed the real
#                 count: ranks are then oversubscribed)
#   --port P      slurmctld port; the slurmds use P+1 .. P+N (default 6817, or
#                 $DTRAIN_SLURM_PORT). Two clusters at once need different ports.
#   --no-install  fail instead of installing missing packages with apt-get
#   --timeout S   seconds to wait for the nodes to become idle (default 60)
#
# Must run as root. Starting again with the same options while the cluster
# runs does nothing; with other options it is an error (stop it first).
# Every daemon's pid is in STATE_DIR/run/; stop-cluster.sh stops them by pid.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
state=/tmp/dtrain-slurm nodes=1 cpus=16 port=${DTRAIN_SLURM_PORT:-6817} install=1 wait_s=60
while [ $# -gt 0 ]; do
    case $1 in
    --nodes) nodes=$2; shift 2 ;;
    --cpus) cpus=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --no-install) install=0; shift ;;
    --timeout) wait_s=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "start-cluster: unknown option $1" >&2; exit 2 ;;
    *) state=$1; shift ;;
    esac
done
case $state in /*) ;; *) state=$PWD/$state ;; esac
state=${state%/}
[[ $nodes =~ ^[1-9][0-9]*$ && $cpus =~ ^[1-9][0-9]*$ && $port =~ ^[1-9][0-9]*$ ]] \
    || { echo "start-cluster: --nodes, --cpus and --port take positive integers" >&2; exit 2; }

t0=$(date +%s%N)
say() { printf '[start-cluster %5.2fs] %s\n' "$(( $(date +%s%N) - t0 ))e-9" "$*"; }
die() { echo "start-cluster: ERROR: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root (munged, slurmctld and slurmd run as root here)"

# ---- packages -----------------------------------------------------------------
packages="slurmctld slurmd slurm-client munge"
missing=0
for cmd in munged munge slurmctld slurmd sbatch srun scontrol sinfo squeue scancel; do
    command -v $cmd >/dev/null 2>&1 || missing=1
done
if [ $missing -eq 1 ]; then
    [ $install -eq 1 ] || die "Slurm or munge is not installed ($packages); run without --no-install"
    say "installing $packages"
    aptlog=$(mktemp /tmp/start-cluster-apt.XXXXXX)
    export DEBIAN_FRONTEND=noninteractive
    apt_install() { apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 $packages; }
    if ! apt_install >"$aptlog" 2>&1; then
        apt-get update -q -o DPkg::Lock::Timeout=300 >>"$aptlog" 2>&1 || true
        apt_install >>"$aptlog" 2>&1 || { tail -n 20 "$aptlog" >&2; die "apt-get install $packages failed"; }
    fi
    rm -f "$aptlog"
fi

# ---- helpers --------------------------------------------------------------------
. "$here/lib.sh" # alive, daemon_pid
# retry SECONDS CMD...: run CMD every 0.1 s until it succeeds or time is up
retry() {
    local end=$(( $(date +%s) + $1 ))
    shift
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt $end ] || return 1
        sleep 0.1
    done
}
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if [ "$nodes" -eq 1 ]; then node_names=$(hostname -s); else node_names=$(seq -f 'node%g' 1 "$nodes"); fi
nodelist=$(echo $node_names | tr ' ' ,)
conf=$state/etc/slurm.conf
socket=$state/munge-run/munge.socket

# ---- configuration ----------------------------------------------------------------
mkdir -p "$state"/{etc,log,run,ctld,slurmd,munge,munge-run,pmix}
chmod 755 "$state" "$state/munge-run" # munged wants its socket's dir world-searchable
chmod 700 "$state/munge"              # ... and its key private
node_lines=
i=0
for n in $node_names; do
    i=$((i + 1))
    node_lines+="NodeName=$n NodeHostname=$n NodeAddr=127.0.0.1 Port=$((port + i)) CPUs=$cpus"
    node_lines+=" Sockets=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=1000 State=UNKNOWN"$'\n'
done
new_conf=$(sed -e "s|@STATE@|$state|g" -e "s|@HOST@|$(hostname -s)|g" -e "s|@CTLD_PORT@|$port|g" \
                -e "s|@SLURMD_PORT@|$((port + 1))|g" -e "s|@CPUS@|$cpus|g" -e "s|@NODELIST@|$nodelist|g" \
                "$here/slurm.conf.in" | awk -v nodes="$node_lines" '$0 == "@NODES@" { printf "%s", nodes; next } 1')

ctld=$(daemon_pid "$state/run/slurmctld.pid" slurmctld -f "$conf" || true)
if [ -n "$ctld" ]; then
    [ "$new_conf" = "$(cat "$conf" 2>/dev/null)" ] \
        || die "a cluster with another configuration runs from $state; stop it first (stop-cluster.sh $state)"
else
    # Nothing runs from here, or only remains of a crash: clean those up.
    "$here/stop-cluster.sh" --quiet "$state" || true
    busy=
    for p in $(seq "$port" $((port + nodes))); do port_in_use "$p" && busy+=" $p"; done
    [ -z "$busy" ] || die "TCP port(s)$busy on 127.0.0.1 in use (another cluster?); choose another --port"
fi
printf '%s\n' "$new_conf" >"$conf"
# PMIx client directories under the state dir (read from slurm.conf's directory)
echo "PMIxCliTmpDirBase=$state/pmix" >"$state/etc/mpi.conf"
cat >"$state/env.sh" <<ENV
# . this file: the Slurm commands then talk to the cluster in $state
export SLURM_CONF=$conf
# Jobs inherit this environment. Open MPI between emulated nodes: TCP over
# loopback only. PMIx 4.2's gds/shmem crashes MPI_Init in large srun steps.
export OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo PMIX_MCA_gds=hash
ENV
export SLURM_CONF=$conf PMIX_MCA_gds=hash

# ---- munged -----------------------------------------------------------------------------
if [ ! -s "$state/munge/munge.key" ]; then
    head -c 1024 /dev/urandom >"$state/munge/munge.key"
    chmod 400 "$state/munge/munge.key"
fi
if daemon_pid "$state/run/munged.pid" "--socket=$socket" >/dev/null; then
    say "munged already running"
else
    rm -f "$socket" "$socket.lock"
    munged --socket="$socket" --key-file="$state/munge/munge.key" --pid-file="$state/run/munged.pid" \
        --log-file="$state/log/munged.log" --seed-file="$state/munge/seed" \
        || { tail -n 5 "$state/log/munged.log" >&2; die "munged did not start"; }
    say "munged started, pid $(cat "$state/run/munged.pid")"
fi
munge -S "$socket" -n | unmunge -S "$socket" >/dev/null || die "munge cannot encode and decode a credential"

# ---- slurmctld ------------------------------------------------------------------------------
if [ -n "$ctld" ]; then
    say "slurmctld already running, pid $ctld"
else
    rm -rf "$state/slurmd"/* "$state/run/slurmctld.pid"
    from=$(stat -c %s "$state/log/slurmctld.log" 2>/dev/null || echo 0)
    slurmctld -c -f "$conf" || die "slurmctld did not start (log $state/log/slurmctld.log)"
    ctld_up() { scontrol ping 2>/dev/null | grep -q 'is UP'; }
    if ! retry 30 ctld_up; then
        tail -c +$((from + 1)) "$state/log/slurmctld.log" | tail -n 10 >&2
        die "slurmctld does not answer (log $state/log/slurmctld.log)"
    fi
    say "slurmctld started, pid $(cat "$state/run/slurmctld.pid")"
fi

# ---- slurmd per node ----------------------------------------------------------------------------
# Emulated nodes share one kernel. Without separate namespaces the PMIx
# plugins of two slurmstepds create the same directory ("File exists") and
# Open MPI's shared-memory files of two "nodes" collide (named after the
# hostname), so each slurmd gets its own hostname and PMIx directory.
isolate=0
if [ "$nodes" -gt 1 ]; then
    if unshare --uts --mount true 2>/dev/null; then isolate=1
    else echo "start-cluster: WARNING: unshare is not permitted; MPI steps across nodes will fail" >&2; fi
fi
for n in $node_names; do
    if daemon_pid "$state/run/slurmd-$n.pid" slurmd -N "$n" >/dev/null; then
        say "slurmd $n already running"
        continue
    fi
    rm -f "$state/run/slurmd-$n.pid"
    mkdir -p "$state/slurmd/$n"
    if [ $isolate -eq 1 ]; then
        mkdir -p "$state/nodes/$n/pmix"
        unshare --uts --mount sh -c 'hostname "$1" && mount --bind "$2" "$3" && exec slurmd -f "$4" -N "$1"' \
            sh "$n" "$state/nodes/$n/pmix" "$state/pmix" "$conf" || die "slurmd $n did not start"
    else
        slurmd -f "$conf" -N "$n" || die "slurmd $n did not start (log $state/log/slurmd-$n.log)"
    fi
    retry 15 test -s "$state/run/slurmd-$n.pid" \
        || { tail -n 10 "$state/log/slurmd-$n.log" >&2; die "slurmd $n wrote no pid file"; }
    say "slurmd $n started, pid $(cat "$state/run/slurmd-$n.pid")"
done

# ---- wait until every node takes jobs ------------------------------------------------------------
all_idle() {
    local s
    s=$(sinfo -h -N -o '%T' 2>/dev/null) && [ -n "$s" ] && ! grep -qvE '^(idle|mixed|allocated)$' <<<"$s"
}
if ! retry "$wait_s" all_idle; then
    scontrol update nodename="$nodelist" state=resume >/dev/null 2>&1 || true # left DOWN by an old run
    retry 15 all_idle || { sinfo -N -l >&2; die "nodes not idle after ${wait_s}s (logs in $state/log)"; }
fi
say "cluster up: $(sinfo -h -N -o '%N %T %c CPUs' | paste -sd, -)"
echo "  use:  . $state/env.sh    stop: $here/stop-cluster.sh $state"
