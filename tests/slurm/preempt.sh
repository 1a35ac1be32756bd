#!/usr/bin/env bash
# preempt.sh: a real dtrain job on 4 ranks (2 nodes x 2) is signalled like a
# preemption or a time-limit warning (scancel --batch --signal=USR1), writes
# a checkpoint, exits 5, is requeued by launch/dtrain.sbatch, resumes from
# the checkpoint and finishes with the same param_checksum as an
# uninterrupted run of the same configuration (submitted alongside).
. "$(dirname "$0")/lib.sh"
STEPS=300
# checkpoints only on the stop signal (and at the end): the resume must use
# the one the signal wrote
slurm_config "$WORK/ref.yaml" "$WORK/ref" "checkpoint: {every_steps: 0}"
slurm_config "$WORK/run.yaml" "$WORK/run" "checkpoint: {every_steps: 0}"
shape=(--nodes=2 --ntasks-per-node=2 --output=dtrain-%j.out)
ref=$(submit --job-name=reference "${shape[@]}" -- "$WORK/ref.yaml")
id=$(submit --job-name=preempted "${shape[@]}" -- "$WORK/run.yaml")

# signal once the run is well under way (a train record with step >= 30)
end=$(( $(date +%s) + 90 ))
until [ "$(last_train_step "$WORK/run/metrics.jsonl")" -ge 30 ] 2>/dev/null; do
    [ "$(date +%s)" -lt $end ] || { show_job "$id"; die "job $id did not reach step 30"; }
    [ -s "$WORK/run/summary.json" ] && die "the run finished before it could be signalled; raise STEPS"
    sleep 0.1
done
scancel --batch --signal=USR1 "$id" || die "scancel --signal failed"
echo "signalled job $id at step $(last_train_step "$WORK/run/metrics.jsonl")"

st=$(wait_job "$ref" 180)
[ "$st" = COMPLETED ] || { show_job "$ref"; die "reference job $ref ended $st"; }
st=$(wait_job "$id" 180)
[ "$st" = COMPLETED ] || { show_job "$id"; die "job $id ended $st, expected COMPLETED after a requeue"; }
log=$WORK/dtrain-$id.out
grep -q "dtrain exited with 5" "$log" || { show_job "$id"; die "dtrain did not exit 5 after the signal"; }
grep -q "requeueing job $id" "$log" || { show_job "$id"; die "the job was not requeued"; }
[ "$(job_field "$id" Restarts)" = 1 ] || { show_job "$id"; die "Restarts=$(job_field "$id" Restarts), expected 1"; }
# dtrain's own lines (not the sbatch script's "resuming from"): the first run
# stopped at step N with a checkpoint, the second resumed from that step, and
# the train records never go back (a restart from step 1 would).
stopped=$(sed -n 's/.*stopped by a signal at step \([0-9]*\) of.*/\1/p' "$log" | head -n 1)
[ -n "$stopped" ] || { show_job "$id"; die "no 'stopped by a signal at step' line from dtrain"; }
grep -q "^resumed from .*ckpt-0*$stopped\.dtck: step $stopped," "$log" \
    || { show_job "$id"; die "dtrain did not say 'resumed from ...ckpt-$stopped.dtck: step $stopped'"; }
sed -n 's/^{"kind":"train","step":\([0-9]*\),.*/\1/p' "$WORK/run/metrics.jsonl" |
    awk 'NR > 1 && $1 <= prev { printf "step %d after %d\n", $1, prev; bad = 1 } { prev = $1 } END { exit bad }' \
    || die "the train records of the preempted job go back: it started again instead of resuming"
s=$WORK/run/summary.json r=$WORK/ref/summary.json
[ "$(json_field "$s" steps)" = $STEPS ] || die "steps $(json_field "$s" steps), expected $STEPS"
a=$(json_field "$s" param_checksum) b=$(json_field "$r" param_checksum)
[ -n "$a" ] && [ "$a" = "$b" ] || die "param_checksum $a after preemption and resume, $b uninterrupted"
echo "job $id: preempted at step $stopped, requeued, resumed; param_checksum $a = uninterrupted run (job $ref)"
echo PASS
