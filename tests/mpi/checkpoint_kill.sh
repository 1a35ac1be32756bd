#!/usr/bin/env bash
# A rank killed with SIGKILL in the middle of training: the job ends (mpirun
# takes the others down) within 30 s with a non-zero status, and
# --resume latest really resumes (from the newest checkpoint, logging only
# the updates after it) and completes the run with the same param_checksum as
# an uninterrupted run (checkpoints every 50 updates on both). The ranks are
# found by name (pgrep -x dtrain), as users and cluster scripts find them.
. "$(dirname "$0")/lib.sh"
small_config "$WORK/c.yaml" 1200
rc=$(run 3 "$WORK/full" "$WORK/c.yaml")
[ "$rc" -eq 0 ] || { cat "$WORK/full.log"; die "uninterrupted run exited $rc"; }

start_run 3 "$WORK/part" "$WORK/c.yaml"
launcher=$LAUNCHER
wait_for_steps "$WORK/part/metrics.jsonl" 420 60 || die "the run did not start"
job_ranks 3
ranks=$RANKS
victim=$(echo "$ranks" | tail -n 1)
kill -KILL "$victim"
killed_at=$SECONDS
# shellcheck disable=SC2086
launcher_ends_within 30 || { kill -KILL $ranks; die "the job still runs 30 s after a rank was killed"; }
wait "$launcher"
rc=$?
[ "$rc" -ne 0 ] || die "the job exited 0 although a rank was killed"
# Every rank gone too, within the same 30 s (a rank may still be exiting
# when mpirun returns, e.g. an instrumented build writing its report).
# shellcheck disable=SC2086
gone_within $((30 - (SECONDS - killed_at))) $ranks || die "a rank was left running 30 s after the kill"
echo "job ended $((SECONDS - killed_at)) s after the kill, status $rc"

from=$(newest_checkpoint_step "$WORK/part/checkpoints")
[ -n "$from" ] && [ "$from" -ge 400 ] || die "no checkpoint of step >= 400 before the kill (newest: '$from')"
resume_latest 3 "$WORK/part" "$from" 1200 "$WORK/c.yaml"
a=$(json_field "$WORK/full/summary.json" param_checksum)
b=$(json_field "$WORK/part/summary.json" param_checksum)
[ "$a" = "$b" ] || die "param_checksum $b after kill + resume, $a uninterrupted"
echo "kill + resume from step $from on 3 ranks: bit-identical ($a)"
echo "PASS"
