#!/usr/bin/env bash
# The gradient exchange's strategies (comm.update, comm.allreduce,
# comm.dtype) make the same updates:
#  1. sharded on 1-4 ranks, on uneven fake nodes (2 + 1: also a stop
#     request sent to one rank only), and node-aware
#     (hierarchical) on 2 fake nodes of 2, give the per-update losses of
#     the replicated 1-rank run (1e-5); sharded on P > 1, each rank
#     keeps the optimizer state of its share only (rank 0 says how much);
#  2. the update overlapped with the remaining reductions (each bucket's
#     range as its sum completes) is bit-identical to the update applied
#     after all of them (clipping at a norm never reached forces the wait
#     and changes nothing else), replicated and sharded;
#  3. bfloat16 on the wire trains, and really changes the sums;
#  4. non-finite gradients: abort (status 4) and skip, sharded;
#  5. a checkpoint written sharded resumes replicated and the other way
#     round, on other world sizes, on the uninterrupted run's losses.
. "$(dirname "$0")/lib.sh"
cfg="$DT_SOURCE/configs/fashion_mnist_mlp.yaml"
base=(--set train.steps=20 --set train.log_every=1 --set comm.check_replicas_every=1
      --set runtime.threads=1)

ok_run() { # ok_run NAME NP ARGS... : run, require exit 0
    local name=$1 np=$2
    shift 2
    local rc
    rc=$(run "$np" "$WORK/$name" "$@")
    [ "$rc" -eq 0 ] || { cat "$WORK/$name.log"; die "$name exited $rc"; }
}
checksum() { json_field "$WORK/$1/summary.json" param_checksum; }

# 1. strategies against the replicated 1-rank run
ok_run ref 1 "${base[@]}" "$cfg"
for np in 1 2 3 4; do
    ok_run sharded$np "$np" "${base[@]}" --set comm.update=sharded "$cfg"
    grep -q "gradient exchange: sharded update" "$WORK/sharded$np.log" || die "np $np: not sharded"
    share=$(sed -n 's/.*optimizer state for this rank.s share (rank 0: \([0-9]*\) of \([0-9]*\) parameters).*/\1 \2/p' \
        "$WORK/sharded$np.log")
    if [ "$np" -eq 1 ]; then
        [ -z "$share" ] || die "np 1: the optimizer state is a share ($share)"
    else
        [ -n "$share" ] || die "np $np: no optimizer state share in the start-up lines"
        # rank 0's pieces: 1/P of each of the 2 buckets, rounded up to
        # whole cache lines (16 floats)
        awk -v np="$np" '{ exit !($1 <= $2 / np + 2 * 16) }' <<< "$share" \
            || die "np $np: rank 0 keeps the optimizer state of $share parameters, not 1/$np"
    fi
    compare_losses "$WORK/sharded$np/metrics.jsonl" "$WORK/ref/metrics.jsonl" 1e-5 \
        || die "sharded on $np ranks differs from replicated on 1"
done
for update in replicated sharded; do
    DTRAIN_RANKS_PER_NODE=2 ok_run hier_$update 4 "${base[@]}" --set comm.allreduce=hierarchical \
        --set comm.update=$update "$cfg"
    grep -q "on 2 nodes\|hierarchical" "$WORK/hier_$update.log" || die "hierarchical $update: not node-aware"
    compare_losses "$WORK/hier_$update/metrics.jsonl" "$WORK/ref/metrics.jsonl" 1e-5 \
        || die "hierarchical $update on 2x2 differs from replicated on 1"
done

# the loss and stop-flag sums go node first, then across nodes; on uneven
# nodes (2 + 1) over the world instead
DTRAIN_RANKS_PER_NODE=2 ok_run uneven 3 "${base[@]}" --set comm.update=sharded "$cfg"
compare_losses "$WORK/uneven/metrics.jsonl" "$WORK/ref/metrics.jsonl" 1e-5 \
    || die "sharded on uneven fake nodes (2 + 1) differs from replicated on 1"

# ... and a stop request that only the rank alone on its node received
# (SIGTERM to rank 2) reaches the other node's ranks too: every rank stops
# after the same update (status 5). Were the sums node first and then by
# local rank on uneven nodes, rank 1 would never see it and the job would
# hang in the checkpoint's gather until the watchdog ended it.
rank_pid() { # rank_pid LAUNCHER RANK: the pid of that rank's process
    local p
    for p in $(pgrep -P "$1" -x dtrain); do
        tr '\0' '\n' < "/proc/$p/environ" | grep -qx "OMPI_COMM_WORLD_RANK=$2" && { echo "$p"; return; }
    done
}
small_config "$WORK/long.yaml" 20000
DTRAIN_RANKS_PER_NODE=2 start_run 3 "$WORK/stop_one" --set comm.update=sharded \
    --set comm.timeout_s=60 "$WORK/long.yaml"
launcher=$LAUNCHER
wait_for_steps "$WORK/stop_one/metrics.jsonl" 20 60 || die "stop_one: the run did not start"
pid=$(rank_pid "$launcher" 2)
[ -n "$pid" ] || die "stop_one: no process of rank 2"
kill -TERM "$pid"
wait "$launcher"
rc=$?
[ "$rc" -eq 5 ] || { cat "$WORK/stop_one.log"; die "stop sent to rank 2 of 2 + 1: exit $rc, expected 5"; }
grep -q "stopped by a signal at step" "$WORK/stop_one.log" || die "stop_one: no stop message"

# 2. overlapped update == update after all reductions, bit for bit
for update in replicated sharded; do
    for clip in 0 1e30; do
        ok_run ov_${update}_$clip 3 "${base[@]}" --set comm.bucket_kb=64 \
            --set comm.update=$update --set optimizer.clip_grad_norm=$clip "$cfg"
    done
    a=$(checksum ov_${update}_0) b=$(checksum ov_${update}_1e30)
    [ -n "$a" ] && [ "$a" = "$b" ] || die "$update: overlapped update $a, held update $b"
    grep -q "buckets of up to 64 KiB, overlapped" "$WORK/ov_${update}_0.log" || die "$update: not bucketed"
    echo "$update: overlapped and held updates bit-identical ($a)"
done

# 3. bfloat16 on the wire
ok_run f32 2 "${base[@]}" "$cfg"
ok_run bf16 2 "${base[@]}" --set comm.dtype=bfloat16 "$cfg"
grep -q "in bfloat16" "$WORK/bf16.log" || die "bfloat16 not reported"
[ "$(checksum f32)" != "$(checksum bf16)" ] || die "bfloat16 gave the float32 parameters: not compressed"
compare_losses "$WORK/bf16/metrics.jsonl" "$WORK/f32/metrics.jsonl" 2e-2 || die "bfloat16 strays too far"
first=$(train_losses "$WORK/bf16/metrics.jsonl" | head -n 1 | cut -d' ' -f2)
last=$(train_losses "$WORK/bf16/metrics.jsonl" | tail -n 1 | cut -d' ' -f2)
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a * 0.8) }' || die "bfloat16: loss did not fall: $first -> $last"

# 4. non-finite gradients, sharded on 3 ranks
small_config "$WORK/div.yaml" 40 "scheduler: {name: constant}"
div=(--set optimizer.name=sgd --set optimizer.lr=1e30 --set comm.update=sharded)
rc=$(run 3 "$WORK/abort" "${div[@]}" --set optimizer.nonfinite=abort "$WORK/div.yaml")
[ "$rc" -eq 4 ] || { cat "$WORK/abort.log"; die "sharded abort: exit $rc, expected 4"; }
[ "$(grep -c '^dtrain: step [0-9]*: non-finite gradient' "$WORK/abort.log")" -eq 1 ] || die "sharded abort: one message expected"
ok_run skip 3 "${div[@]}" --set optimizer.nonfinite=skip "$WORK/div.yaml"
[ "$(json_field "$WORK/skip/summary.json" skipped_updates)" -gt 0 ] || die "sharded skip: nothing skipped"

# 5. checkpoints across strategies and world sizes
small_config "$WORK/c.yaml" 150
ok_run full 2 "$WORK/c.yaml"
for from in sharded replicated; do
    to=$([ $from = sharded ] && echo replicated || echo sharded)
    small_config "$WORK/c100.yaml" 100
    ok_run first_$from 3 --set comm.update=$from "$WORK/c100.yaml"
    ok_run then_$to 2 --set comm.update=$to \
        --resume "$WORK/first_$from/checkpoints/ckpt-000000000100.dtck" "$WORK/c.yaml"
    grep -q "resumed from .*ckpt-000000000100.dtck: step 100" "$WORK/then_$to.log" || die "$from -> $to: no resume"
    n=$(train_losses "$WORK/then_$to/metrics.jsonl" | wc -l)
    [ "$n" -eq 50 ] || die "$from -> $to: $n updates logged after the resume, expected 50"
    compare_losses "$WORK/then_$to/metrics.jsonl" "$WORK/full/metrics.jsonl" 1e-4 \
        || die "written $from on 3 ranks, resumed $to on 2: losses differ"
done
echo "PASS"
