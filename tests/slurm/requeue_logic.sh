#!/usr/bin/env bash
# requeue_logic.sh srun|mpirun: launch/dtrain.sbatch's preemption path with a
# stand-in binary (fake_dtrain.sh): `scancel --batch --signal=USR1` reaches
# every rank, the ranks "checkpoint" and exit 5, the script requeues the job,
# the second run gets --resume latest and completes.
. "$(dirname "$0")/lib.sh"
launcher=$1
export FAKE_OUT=$WORK/fake
mkdir -p "$FAKE_OUT"
id=$(submit --job-name=fake --output=dtrain-%j.out --nodes=2 --ntasks-per-node=2 \
     --export=ALL,DTRAIN_BIN="$DT_SOURCE/tests/slurm/fake_dtrain.sh",DTRAIN_LAUNCHER="$launcher",FAKE_OUT="$FAKE_OUT" \
     -- config.yaml)
end=$(( $(date +%s) + 60 ))
# every rank has set its trap (a rank signalled before would die of USR1)
until [ "$(find "$FAKE_OUT" -maxdepth 1 -name 'ready.*' | wc -l)" -ge 4 ]; do
    [ "$(date +%s)" -lt $end ] || { show_job "$id"; die "the job did not start"; }
    sleep 0.2
done
scancel --batch --signal=USR1 "$id" || die "scancel --signal failed"
st=$(wait_job "$id" 90)
[ "$st" = COMPLETED ] || { show_job "$id"; die "job $id ended $st, expected COMPLETED after a requeue"; }
[ "$(job_field "$id" Restarts)" = 1 ] || { show_job "$id"; die "Restarts=$(job_field "$id" Restarts), expected 1"; }
n=$(wc -l <"$FAKE_OUT/signals")
[ "$n" -eq 4 ] || { show_job "$id"; die "$n of 4 ranks got SIGUSR1"; }
grep -qx "resumed 1" "$FAKE_OUT/resumed" || { show_job "$id"; die "the requeued run did not get --resume latest"; }
grep -q "requeueing job $id" "$WORK/dtrain-$id.out" || die "the log does not mention the requeue"
echo "job $id via $launcher: signalled, 4 ranks checkpointed, requeued, resumed"
echo PASS
