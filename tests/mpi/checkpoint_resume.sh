#!/usr/bin/env bash
# Exact resume: a run stopped by SIGTERM mid-epoch and resumed with
# --resume latest ends bit-identical (param_checksum) to an uninterrupted
# run, with identical per-update losses; and a checkpoint written on 2 ranks
# resumes on 3 and on 1 rank with the same losses to float tolerance.
. "$(dirname "$0")/lib.sh"
small_config "$WORK/c.yaml" 1500

rc=$(run 2 "$WORK/full" "$WORK/c.yaml")
[ "$rc" -eq 0 ] || { cat "$WORK/full.log"; die "uninterrupted run exited $rc"; }

# Stopped part-way: signal the ranks (as Slurm's --signal does) once the run
# is under way, mid-epoch (32 updates per epoch, 50 per checkpoint).
start_run 2 "$WORK/part" "$WORK/c.yaml"
launcher=$LAUNCHER
wait_for_steps "$WORK/part/metrics.jsonl" 333 60 || die "the run did not start"
pkill -TERM -P "$launcher" -x dtrain  # this job's ranks only
wait "$launcher"
rc=$?
[ "$rc" -eq 5 ] || { cat "$WORK/part.log"; die "stopped run exited $rc, expected 5"; }
grep -q "stopped by a signal at step" "$WORK/part.log" || die "no stop message"
stopped=$(train_losses "$WORK/part/metrics.jsonl" | tail -n 1 | cut -d' ' -f1)
[ "$stopped" -lt 1500 ] || die "the run finished before the signal"
echo "stopped at step $stopped"

resume_latest 2 "$WORK/part" "$stopped" 1500 "$WORK/c.yaml"
a=$(json_field "$WORK/full/summary.json" param_checksum)
b=$(json_field "$WORK/part/summary.json" param_checksum)
[ "$a" = "$b" ] || die "param_checksum $b after resume, $a uninterrupted"
diff <(train_losses "$WORK/full/metrics.jsonl") <(train_losses "$WORK/part/metrics.jsonl") \
    > "$WORK/diff" || { head "$WORK/diff"; die "per-update losses differ"; }
echo "stop + resume on 2 ranks: bit-identical ($a)"

# Another world size: the checkpoint of step 1000 (written by 2 ranks),
# resumed on 3 and on 1 (the run length may change on resume). The resumed
# runs must say so and log only updates 1001..1500: a run that ignored
# --resume would log 1..1500, and its losses would match the 2-rank run's
# just as well (training is deterministic).
small_config "$WORK/c1000.yaml" 1000
rc=$(run 2 "$WORK/first" "$WORK/c1000.yaml")
[ "$rc" -eq 0 ] || die "1000-step run exited $rc"
for np in 3 1; do
    rc=$(run "$np" "$WORK/np$np" --resume "$WORK/first/checkpoints/ckpt-000000001000.dtck" "$WORK/c.yaml")
    [ "$rc" -eq 0 ] || { cat "$WORK/np$np.log"; die "resume on $np ranks exited $rc"; }
    [ "$(json_field "$WORK/np$np/summary.json" world_size)" = "$np" ] || die "world_size"
    [ "$(json_field "$WORK/np$np/summary.json" steps)" = 1500 ] || die "steps"
    check_resumed "$WORK/np$np.log" "$WORK/np$np/metrics.jsonl" 1000 1500
    grep -q "written by 2 ranks" "$WORK/np$np.log" || die "the resume on $np ranks does not name the writer's 2 ranks"
    compare_losses "$WORK/np$np/metrics.jsonl" "$WORK/full/metrics.jsonl" 1e-4 \
        || die "losses after resuming on $np ranks differ from the 2-rank run"
done
echo "PASS"
