#!/usr/bin/env bash
# single_node.sh PORT: a cluster of its own with one node (the machine's real
# hostname, no namespaces), the small job on 4 ranks through srun, and the
# cluster stopped again, also when the job fails.
port=$1
[ "$(id -u)" -eq 0 ] || { echo "SKIP: the local Slurm cluster needs root"; exit 77; }
export DT_SLURM_STATE=${DT_SLURM_WORK:-${TMPDIR:-/tmp}}/slurm-single-node
slurm=$(cd "$(dirname "$0")/../../launch/slurm" && pwd)
trap 'timeout -k 5 120 "$slurm/stop-cluster.sh" "$DT_SLURM_STATE"' EXIT
timeout -k 5 240 "$slurm/start-cluster.sh" --nodes 1 --cpus 8 --port "$port" "$DT_SLURM_STATE" || { echo "FAIL: cluster did not start"; exit 1; }
bash "$(dirname "$0")/job.sh" 1 4 srun
