#!/usr/bin/env bash
# A small MLP on the synthetic data set on NP ranks: it must learn (test
# accuracy >= 0.9), write every output field, and allocate nothing inside the
# training loop (train_loop_allocations counts dt_ allocations there).
. "$(dirname "$0")/lib.sh"
np=${1:-2}
cat > "$WORK/small.yaml" <<YAML
run: {name: small, seed: 3}
data: {dir: $DT_TEST_DATA/ok}
model: {layers: [{dense: 64}, relu, {dense: 10}]}
train: {epochs: 4, global_batch: 32, log_every: 10}
optimizer: {name: momentum, lr: 0.05}
scheduler: {name: constant, warmup_steps: 10}
YAML
rc=$(run "$np" "$WORK/out" "$WORK/small.yaml")
[ "$rc" -eq 0 ] || { cat "$WORK/out.log"; die "exit $rc"; }
s="$WORK/out/summary.json"
for key in test_accuracy test_loss train_loss steps epochs world_size global_batch \
           wall_seconds samples_per_second data forward backward communication optimizer \
           evaluation param_checksum blas_core train_loop_allocations; do
    [ -n "$(json_field "$s" "$key")" ] || die "summary.json lacks $key"
done
acc=$(json_field "$s" test_accuracy)
awk -v a="$acc" 'BEGIN { exit !(a >= 0.9) }' || die "test_accuracy $acc < 0.9"
[ "$(json_field "$s" steps)" = 128 ] || die "steps $(json_field "$s" steps), expected 4 epochs x 32"
[ "$(json_field "$s" world_size)" = "$np" ] || die "world_size"
[ "$(json_field "$s" train_loop_allocations)" = 0 ] || die "the training loop allocated"
evals=$(grep -c '"kind":"eval"' "$WORK/out/metrics.jsonl")
[ "$evals" -eq 4 ] || die "$evals eval records, expected one per epoch (4)"
trains=$(grep -c '"kind":"train"' "$WORK/out/metrics.jsonl")
[ "$trains" -eq 13 ] || die "$trains train records, expected 13 (every 10 of 128, and the last)"
[ -s "$WORK/out/config.resolved.yaml" ] || die "no config.resolved.yaml"
# The resolved config must load again and describe the same run.
"$DTRAIN" --check "$WORK/out/config.resolved.yaml" > "$WORK/check.log" 2>&1 \
    || { cat "$WORK/check.log"; die "config.resolved.yaml does not load"; }
echo "test_accuracy $acc on $np ranks"
echo "PASS"
