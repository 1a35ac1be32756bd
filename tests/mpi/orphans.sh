#!/usr/bin/env bash
# No orphans: when the launcher is killed as a batch system's time limit
# does (SIGTERM, then SIGKILL soon after, to mpirun), or with SIGKILL
# alone, no rank outlives it by more than a few seconds.
. "$(dirname "$0")/lib.sh"
small_config "$WORK/c.yaml" 1000000
grace=5

# gone_within SECONDS PID... : every PID has ended (or is a zombie) in time
gone_within() {
    local limit=$1 start=$SECONDS pid state
    shift
    for pid in "$@"; do
        while :; do
            state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)
            [ -z "$state" ] || [ "$state" = Z ] && break
            if [ $((SECONDS - start)) -ge "$limit" ]; then
                kill -KILL "$@" 2>/dev/null
                return 1
            fi
            sleep 0.1
        done
    done
}

for how in term-then-kill kill; do
    $MPIEXEC -np 3 "$DTRAIN" --set run.out_dir="$WORK/$how" "$WORK/c.yaml" > "$WORK/$how.log" 2>&1 &
    launcher=$!
    wait_for_steps "$WORK/$how/metrics.jsonl" 100 60 || die "$how: the run did not start"
    ranks=$(pgrep -P "$launcher" -x dtrain)
    [ "$(echo "$ranks" | wc -w)" -eq 3 ] || die "$how: expected 3 ranks named dtrain, found: $ranks"
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
