#!/usr/bin/env bash
# No orphans: when the launcher is killed as a batch system's time limit
# does (SIGTERM, then SIGKILL soon after, to mpirun), or with SIGKILL
# alone, no rank outlives it by more than a few seconds.
. "$(dirname "$0")/lib.sh"
small_config "$WORK/c.yaml" 1000000
grace=5

for how in term-then-kill kill; do
    start_run 3 "$WORK/$how" "$WORK/c.yaml"
    launcher=$LAUNCHER
    wait_for_steps "$WORK/$how/metrics.jsonl" 100 60 || die "$how: the run did not start"
    job_ranks 3
    ranks=$RANKS
    if [ "$how" = term-then-kill ]; then
        kill -TERM "$launcher"
        sleep 0.2
    fi
    kill -KILL "$launcher" 2>/dev/null
    wait "$launcher" 2>/dev/null
    # shellcheck disable=SC2086
    gone_within "$grace" $ranks || die "$how: a rank outlived the killed launcher by $grace s"
    echo "$how: every rank gone within $grace s of the launcher"
done
echo "PASS"
