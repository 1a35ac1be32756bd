#!/usr/bin/env bash
# balance.sh: comm.balance moves where the global batch is cut, never what
# an update computes.
# Ranks of unequal speed are made with the test hook
# DTRAIN_TEST_BALANCE_SKEW=R:F (rank R's compute is counted F times
# longer): 2 ranks with rank 1 at 3x, and 3 ranks, sharded update, with
# rank 2 at 2x. The cut must move away from the slow rank (the end-of-run
# line names at least one re-cut and the slow rank's shard is well below an
# even one), and every one of 60 updates (the first cut comes after 17)
# must have 1 rank's loss to a relative 1e-5, with the replicas checked
# after every update. A job whose two ranks run different OpenBLAS kernels
# says so at start-up and still matches 1 rank. Then comm.balance with
# comm.reproducible is refused with exit 2 and a message naming both keys.
. "$(dirname "$0")/lib.sh"
cfg="$DT_SOURCE/configs/fashion_mnist_mlp.yaml"
sets=(--set train.steps=60 --set train.log_every=1 --set train.eval_every=0
      --set checkpoint.every_steps=0 --set comm.check_replicas_every=1
      --set runtime.threads=1 "$cfg")

rc=$(run 1 "$WORK/np1" "${sets[@]}")
[ "$rc" -eq 0 ] || { cat "$WORK/np1.log"; die "1 rank exited $rc"; }
grep -q '^balance:' "$WORK/np1.log" && die "1 rank printed a balance line (nothing to balance)"

# check_cut NP SLOW_RANK MAX_SHARD OUT: the run's balance line re-cut at
# least once and gave SLOW_RANK at most MAX_SHARD samples
check_cut() {
    local np=$1 slow=$2 max=$3 out=$4 line shard cuts
    line=$(grep '^balance: shards' "$out.log") || { cat "$out.log"; die "np $np: no balance line"; }
    echo "np $np: $line"
    cuts=$(echo "$line" | sed -n 's/.* after \([0-9]*\) re-cut.*/\1/p')
    [ "${cuts:-0}" -ge 1 ] || die "np $np: the cut never moved ($line)"
    shard=$(echo "$line" | sed 's/^balance: shards //; s/ of [0-9]* after.*//' | tr ',' '\n' |
            sed -n "$((slow + 1))p" | awk '{ print $1 }')
    [ -n "$shard" ] && [ "$shard" -le "$max" ] \
        || die "np $np: rank $slow (counted slower) got ${shard:-?} samples, expected at most $max"
    compare_losses "$WORK/np1/metrics.jsonl" "$out/metrics.jsonl" 1e-5 \
        || die "np $np: losses differ from 1 rank's"
    [ "$(train_losses "$out/metrics.jsonl" | wc -l)" -eq 60 ] || die "np $np: not 60 updates logged"
}

rc=$(DTRAIN_TEST_BALANCE_SKEW=1:3 run 2 "$WORK/np2" --set comm.balance=true "${sets[@]}")
[ "$rc" -eq 0 ] || { cat "$WORK/np2.log"; die "2 ranks exited $rc"; }
check_cut 2 1 48 "$WORK/np2"
grep -q "shards sized to each rank's measured speed" "$WORK/np2.log" \
    || die "the start-up line does not say the shards are balanced"

rc=$(DTRAIN_TEST_BALANCE_SKEW=2:2 run 3 "$WORK/np3" --set comm.balance=true \
     --set comm.update=sharded "${sets[@]}")
[ "$rc" -eq 0 ] || { cat "$WORK/np3.log"; die "3 ranks exited $rc"; }
check_cut 3 2 36 "$WORK/np3"

# the loss must actually fall (a frozen model would pass the comparisons)
first=$(train_losses "$WORK/np1/metrics.jsonl" | head -n 1 | cut -d' ' -f2)
last=$(train_losses "$WORK/np1/metrics.jsonl" | tail -n 1 | cut -d' ' -f2)
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a * 0.8) }' || die "loss did not fall: $first -> $last"

# The ranks of a mixed job (here one on OpenBLAS's AVX2 kernel, one on its
# SSE3 fallback, as on nodes of two CPU kinds) run at different speeds; the
# start-up line must not name rank 0's kernel as if it were everyone's.
grep '^run ' "$WORK/np2.log" | grep -q 'another kernel' \
    && die "a job of one kernel says its ranks differ: $(grep '^run ' "$WORK/np2.log")"
# shellcheck disable=SC2086
timeout -k 5 600 $MPIEXEC -np 1 -x DTRAIN_BLAS_REEXEC=0 -x OPENBLAS_CORETYPE=Haswell \
    "$DTRAIN" --set "run.out_dir=$WORK/mixed" --set comm.balance=true "${sets[@]}" : \
    -np 1 -x DTRAIN_BLAS_REEXEC=0 -x OPENBLAS_CORETYPE=Prescott \
    "$DTRAIN" --set "run.out_dir=$WORK/mixed" --set comm.balance=true "${sets[@]}" \
    > "$WORK/mixed.log" 2>&1 || { cat "$WORK/mixed.log"; die "the mixed-kernel job failed"; }
grep '^run ' "$WORK/mixed.log" | grep -q 'OpenBLAS Haswell on rank 0, another kernel on other ranks' \
    || { cat "$WORK/mixed.log"; die "the start-up line of a mixed-kernel job does not say so"; }
compare_losses "$WORK/np1/metrics.jsonl" "$WORK/mixed/metrics.jsonl" 1e-5 \
    || die "mixed kernels: losses differ from 1 rank's"

rc=$(run 2 "$WORK/repro" --set comm.balance=true --set comm.reproducible=true "${sets[@]}")
[ "$rc" -eq 2 ] || { cat "$WORK/repro.log"; die "balance with reproducible exited $rc, expected 2"; }
grep -q "comm.balance: true cannot be exact with comm.reproducible: true" "$WORK/repro.log" \
    || { cat "$WORK/repro.log"; die "no message naming comm.balance and comm.reproducible"; }
echo "PASS"
