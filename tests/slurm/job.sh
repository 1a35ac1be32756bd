#!/usr/bin/env bash
# job.sh NODES TASKS_PER_NODE srun|mpirun: submit launch/dtrain.sbatch with
# the small config through the local cluster; the job must complete and
# summary.json must describe NODES x TASKS ranks, 200 updates, a learnt model.
. "$(dirname "$0")/lib.sh"
nodes=$1 tasks=$2 launcher=$3
np=$((nodes * tasks))
slurm_config "$WORK/small.yaml" "$WORK/out"
id=$(submit --job-name=dtrain --output=dtrain-%j.out --nodes="$nodes" --ntasks-per-node="$tasks" \
     --export=ALL,DTRAIN_LAUNCHER="$launcher" -- "$WORK/small.yaml" --set train.log_every=50)
st=$(wait_job "$id" 120)
[ "$st" = COMPLETED ] || { show_job "$id"; die "job $id ended $st, expected COMPLETED"; }
s=$WORK/out/summary.json
[ -s "$s" ] || { show_job "$id"; die "no summary.json"; }
[ "$(json_field "$s" world_size)" = $np ] || die "world_size $(json_field "$s" world_size), expected $np"
[ "$(json_field "$s" nodes)" = "$nodes" ] || die "nodes $(json_field "$s" nodes), expected $nodes"
[ "$(json_field "$s" steps)" = 200 ] || die "steps $(json_field "$s" steps), expected 200"
[ "$(json_field "$s" global_batch)" = 32 ] || die "global_batch $(json_field "$s" global_batch)"
[ "$(json_field "$s" threads)" = 1 ] || die "threads $(json_field "$s" threads), expected 1 (--cpus-per-task=1)"
acc=$(json_field "$s" test_accuracy)
awk -v a="$acc" 'BEGIN { exit !(a >= 0.9) }' || die "test_accuracy $acc < 0.9"
[[ $(json_field "$s" param_checksum) =~ ^[0-9a-f]{16}$ ]] || die "param_checksum '$(json_field "$s" param_checksum)'"
grep -q "$launcher" "$WORK/dtrain-$id.out" || die "the job log does not show the $launcher launch"
echo "job $id: $nodes x $tasks ranks via $launcher, test_accuracy $acc, param_checksum $(json_field "$s" param_checksum)"
echo PASS
