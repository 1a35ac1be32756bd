#!/usr/bin/env bash
# The collective watchdog (comm.timeout_s): one rank of 3 stops responding
# (SIGSTOP) mid-run. The two live ranks must each print one line naming the
# step and the timeout, the job must end with status 6 within the timeout
# + 30 s, no rank may be left behind, and --resume latest must then reach
# the uninterrupted run's param_checksum.
. "$(dirname "$0")/lib.sh"
timeout_s=4
# Long enough that the stop lands mid-run on a fast, idle machine: 1200
# updates once finished in 0.7 s, before the SIGSTOP found its rank.
steps=6000
small_config "$WORK/c.yaml" $steps "comm: {timeout_s: $timeout_s}"
rc=$(run 3 "$WORK/full" "$WORK/c.yaml")
[ "$rc" -eq 0 ] || { cat "$WORK/full.log"; die "uninterrupted run exited $rc"; }

start_run 3 "$WORK/part" "$WORK/c.yaml"
launcher=$LAUNCHER
wait_for_steps "$WORK/part/metrics.jsonl" 420 60 || die "the run did not start"
job_ranks 3
ranks=$RANKS
victim=$(echo "$ranks" | tail -n 1)
kill -STOP "$victim"
stopped_at=$SECONDS
if ! launcher_ends_within $((timeout_s + 30)); then
    kill -KILL $ranks "$launcher" 2>/dev/null
    cat "$WORK/part.log"
    die "the job still runs $((timeout_s + 30)) s after a rank stopped responding"
fi
wait "$launcher"
rc=$?
took=$((SECONDS - stopped_at))
[ "$rc" -eq 6 ] || { cat "$WORK/part.log"; die "the job exited $rc, expected 6 (watchdog)"; }
# One line per live rank; the stopped rank may add its own when mpirun's
# SIGCONT + SIGTERM wakes it past its deadline. One line per rank at most.
said=$(sed -n "s/^dtrain: rank \([0-9]*\): step [0-9]*: .* did not complete within comm.timeout_s = $timeout_s s .*/\1/p" "$WORK/part.log")
[ "$(echo "$said" | sort -u | wc -w)" -ge 2 ] && [ "$(echo "$said" | wc -w)" = "$(echo "$said" | sort -u | wc -w)" ] \
    || { cat "$WORK/part.log"; die "expected one watchdog line from each live rank, got ranks: $said"; }
# every rank gone
# shellcheck disable=SC2086
gone_within $((timeout_s + 30 - (SECONDS - stopped_at))) $ranks || die "a rank was left running"
echo "watchdog ended the job $took s after the stop, status $rc"

# --resume latest really resumes: from the checkpoint `latest` names, with
# only the updates after it (a run that started again would reach the same
# checksum too).
ck=$(readlink "$WORK/part/checkpoints/latest" 2>/dev/null || cat "$WORK/part/checkpoints/latest")
from=$(basename "$ck" | sed -n 's/^ckpt-0*\([0-9][0-9]*\)\.dtck$/\1/p')
[ -n "$from" ] || die "checkpoints/latest names '$ck', not a checkpoint"
resume_latest 3 "$WORK/part" "$from" $steps "$WORK/c.yaml"
a=$(json_field "$WORK/full/summary.json" param_checksum)
b=$(json_field "$WORK/part/summary.json" param_checksum)
[ "$a" = "$b" ] || die "param_checksum $b after watchdog + resume, $a uninterrupted"
echo "resumed from $(basename "$ck"): bit-identical ($a)"
echo "PASS"
