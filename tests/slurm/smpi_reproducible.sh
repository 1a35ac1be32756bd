#!/usr/bin/env bash
# smpi_reproducible.sh SMPI_DTRAIN: comm.reproducible on the simulated 16 x 8
# cluster. SMPI runs every rank's computation for real, so the bits of a
# 128-rank run can be checked on one machine: a tiny MLP (784-16-10, so a
# P = 128 run takes seconds) on the synthetic data set, global batch 128
# (128 leaves of 1 sample), 3 updates with clipping at a norm that is
# reached, on P = 1, 2, 16, 128 sharded and P = 8, 16, 32, 64, 128
# replicated: every logged loss and param_checksum must be the same. Real
# time here (2 shared cores): about 20 s in all, 4 s for a P = 128 run.
. "$(dirname "$0")/../lib.sh"
smpi_dtrain=$1
[ -x "$smpi_dtrain" ] || skip "no SMPI build at $smpi_dtrain"
new_work_dir dtrain-smpi-repro
cat >"$WORK/tiny.yaml" <<YAML
run: {seed: 0, out_dir: $WORK/unused}
data: {dir: $DT_TEST_DATA/ok}
model: {layers: [{dense: 16}, relu, {dense: 10}]}
train: {steps: 3, global_batch: 128, log_every: 1, eval_every: 0}
optimizer: {name: momentum, lr: 0.05, clip_grad_norm: 0.5}
comm: {reproducible: true}
YAML
sweep() { # sweep NAME "RANKS" UPDATE
    timeout -k 5 600 /usr/bin/python3 "$DT_SOURCE/launch/scaling" --backend smpi --smpi-dtrain "$smpi_dtrain" \
        --platform fast --ranks "$2" --batch 128 --steps 3 --out "$WORK/$1" "$WORK/tiny.yaml" \
        --set comm.update="$3" >"$WORK/$1.log" 2>&1 || { cat "$WORK/$1.log"; die "launch/scaling ($1) failed"; }
}
t0=$SECONDS
sweep sharded "1 2 16 128" sharded
sweep replicated "8 16 32 64 128" replicated
first=
for s in sharded replicated; do
    runs=$WORK/$s/runs.csv
    [ "$(column status "$runs" | sort -u)" = ok ] || { cat "$WORK/$s.log"; die "$s: not every run succeeded"; }
    for d in $(column out_dir "$runs"); do
        grep -qE "^ +reproducible: true$" "$d/config.resolved.yaml" || die "$d: not reproducible"
        { sed -n 's/^{"kind":"train","step":\([0-9]*\),"epoch":[0-9]*,"loss":\([^,]*\),.*/train \1 \2/p' "$d/metrics.jsonl"
          grep '"kind":"eval"' "$d/metrics.jsonl"
          echo "param_checksum $(json_field "$d/summary.json" param_checksum)"
          echo "world_size $(json_field "$d/summary.json" world_size)"; } > "$d.logged"
        [ "$(grep -c '^train ' "$d.logged")" -eq 3 ] || die "$d: not 3 train lines"
        [ "$(grep -c '"kind":"eval"' "$d.logged")" -eq 1 ] || die "$d: no eval line"
        grep -qE '^param_checksum [0-9a-f]{16}$' "$d.logged" || die "$d: no param_checksum"
        if [ -z "$first" ]; then first=$d; continue; fi
        diff <(grep -v world_size "$first.logged") <(grep -v world_size "$d.logged") \
            || die "$(grep world_size "$d.logged") differs from $(grep world_size "$first.logged")"
        echo "$s $(grep world_size "$d.logged"): the same bits ($(grep param_checksum "$d.logged"))"
    done
done
echo "took $((SECONDS - t0)) s"
echo PASS
